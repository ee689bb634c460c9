"""Decoding and encoding videos (core/video.py) and the episode clips (corruptions/episodes.py),
checked against PyAV called directly and against numpy on the pixels."""

import functools
import os

import av
import numpy as np
import pytest
import torch

from fiftyone_dnniqa.core.images import read_image
from fiftyone_dnniqa.core.video import VideoError, iter_frames, open_video, video_info, write_video
from fiftyone_dnniqa.corruptions.episodes import default_episodes, episode_frames

N_FRAMES = 40


def pyav_frames(path):
    """Every frame of ``path`` as PyAV decodes it, RGB arrays in decode order."""
    with av.open(path) as c:
        return [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]


@functools.lru_cache(maxsize=4)
def episode_clip(photo, n, motion, seed):
    """The frames and episodes of a clip over ``photo`` (made once per test session)."""
    return episode_frames(read_image(photo), n, motion=motion, seed=seed)


@pytest.fixture(scope="module")
def clip(imagenet_files, tmp_path_factory):
    frames, episodes = episode_clip(imagenet_files[3], N_FRAMES, "zoom", 1)
    path = str(tmp_path_factory.mktemp("video") / "clip.mp4")
    write_video(path, frames, fps=25, codec="libx264")
    return path, frames, episodes


@pytest.mark.parametrize("step", [1, 3, 7])
def test_frame_step_gives_pyav_frames_by_number(clip, step):
    path, _, _ = clip
    direct = pyav_frames(path)
    got = list(iter_frames(path, frame_step=step))
    assert [n for n, _ in got] == list(range(1, len(direct) + 1, step))
    for n, frame in got:
        assert frame.dtype == torch.uint8 and frame.shape == (120, 160, 3)
        assert np.array_equal(frame.numpy(), direct[n - 1])


def test_keep_drops_frames_and_counts_them(clip):
    path, _, _ = clip
    with open_video(path) as reader:
        got = [n for n, _ in reader.frames(2, keep=lambda n: n > 20)]
        assert got == list(range(21, N_FRAMES + 1, 2))
        assert reader.decoded == N_FRAMES and reader.error is None


def test_info_and_the_encoder(clip, tmp_path):
    path, frames, _ = clip
    info = video_info(path)
    with av.open(path) as c:
        s = c.streams.video[0]
        assert (info.frame_count, info.width, info.height) == (s.frames, 160, 120)
        assert info.frame_rate == pytest.approx(float(s.average_rate)) == pytest.approx(25.0)
    assert info.duration == pytest.approx(N_FRAMES / 25, abs=0.05)
    assert info.size_bytes == os.path.getsize(path) and info.codec == "h264"
    # the decoded frames are the frames given, up to the codec's losses (4:2:0 chroma on
    # textured photos costs a few levels); a flat colour comes back within rounding
    direct = pyav_frames(path)
    err = np.median([np.abs(d.astype(float) - f.numpy()).mean() for d, f in zip(direct, frames)])
    assert len(direct) == N_FRAMES and err < 10.0
    flat = np.zeros((120, 160, 3), np.uint8) + np.array([200, 100, 50], np.uint8)
    write_video(str(tmp_path / "flat.mp4"), [flat] * 3, fps=25)
    assert np.abs(pyav_frames(str(tmp_path / "flat.mp4"))[0].astype(int) - flat).max() <= 2
    for codec, ext in (("mpeg4", "mp4"), ("libvpx", "webm")):
        other = str(tmp_path / f"c.{ext}")
        assert write_video(other, frames[:8], fps=10, codec=codec) == 8
        assert len(pyav_frames(other)) == 8 and video_info(other).frame_rate == pytest.approx(10.0)


def test_variable_frame_rate_numbers_frames_in_decode_order(clip, tmp_path):
    _, frames, _ = clip
    rng = np.random.default_rng(0)
    times = np.concatenate([[0.0], np.cumsum(rng.uniform(0.01, 0.2, N_FRAMES - 1))])
    path = str(tmp_path / "vfr.mp4")
    write_video(path, frames, fps=25, timestamps=times)
    with av.open(path) as c:
        pts = [float(f.pts * f.time_base) for f in c.decode(video=0)]
    assert np.allclose(pts, times, atol=1e-3)  # the file really has these irregular times
    got = list(iter_frames(path))
    assert [n for n, _ in got] == list(range(1, N_FRAMES + 1))
    assert all(np.array_equal(f.numpy(), d) for (_, f), d in zip(got, pyav_frames(path)))
    assert video_info(path).variable_rate


def test_unreadable_truncated_and_empty_files_give_reasons(clip, tmp_path):
    path, frames, _ = clip
    garbage = tmp_path / "garbage.mp4"
    garbage.write_bytes(os.urandom(4000))
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    no_frames = str(tmp_path / "none.mp4")
    write_video(no_frames, [], size=(160, 120))
    for bad, reason in ((str(garbage), "not a readable video"), (str(empty), "empty file"),
                        (str(tmp_path / "missing.mp4"), "missing file"), (no_frames, "no video stream")):
        with pytest.raises(VideoError, match=reason):
            video_info(bad)
    mkv = str(tmp_path / "whole.mkv")
    write_video(mkv, frames, fps=25)
    data = open(mkv, "rb").read()
    cut = tmp_path / "cut.mkv"
    cut.write_bytes(data[: len(data) // 2])
    with open_video(str(cut)) as reader:
        got = [n for n, _ in reader.frames()]
    assert 0 < len(got) < N_FRAMES and got == list(range(1, len(got) + 1))
    assert len(got) == len(pyav_frames(str(cut)))
    assert reader.error == f"truncated: {len(got)} of {N_FRAMES} declared frames decoded"


def spoil(src, dst, packets):
    """Copies ``src`` to ``dst`` with the payload of the given packets (decode order, from 0)
    replaced by garbage: frames that fail to decode mid-stream."""
    with av.open(src) as i, av.open(dst, "w") as o:
        stream = i.streams.video[0]
        out = o.add_stream_from_template(stream)
        for k, p in enumerate(p for p in i.demux(stream) if p.size):
            if k in packets:
                q = av.Packet(b"\xff\xff\xff\xff" + bytes(p.size))
                q.pts, q.dts, q.time_base, q.is_keyframe = p.pts, p.dts, p.time_base, p.is_keyframe
                p = q
            p.stream = out
            o.mux(p)


def test_a_corrupt_packet_costs_its_frame_only(clip, tmp_path):
    path, _, _ = clip
    bad = str(tmp_path / "mid.mp4")
    spoil(path, bad, {10, 11})
    got = list(iter_frames(bad))
    failed = [n for n, f in got if isinstance(f, str)]
    assert [n for n, _ in got] == list(range(1, N_FRAMES + 1))  # every frame keeps its number
    assert len(failed) == 2 and all("failed to decode" in f for _, f in got if isinstance(f, str))
    assert all(abs(n - 12) <= 3 for n in failed)  # within the decoder's reordering delay
    # the frames before the broken ones are the file's own
    direct = pyav_frames(path)
    assert all(np.array_equal(f.numpy(), direct[n - 1]) for n, f in got[:min(failed) - 1])


def test_default_episodes_are_separated_by_clean_frames():
    eps = default_episodes(48)
    assert [e.corruption for e in eps] == ["dk_gaussian_blur", "dk_gaussian_noise", "low_light", "dk_jpeg"]
    covered = [n for e in eps for n in e.frames]
    assert len(covered) == len(set(covered)) == 4 * max(3, 48 // 10)
    assert 1 not in covered and 48 not in covered
    assert all(b.start - a.end > 1 for a, b in zip(eps, eps[1:]))
    with pytest.raises(ValueError):
        default_episodes(10)


def _sharpness(frame):
    g = frame.float().mean(-1).numpy()
    return np.var(g[1:-1, 1:-1] * 4 - g[:-2, 1:-1] - g[2:, 1:-1] - g[1:-1, :-2] - g[1:-1, 2:])


def test_episodes_degrade_their_frames(clip):
    _, frames, episodes = clip
    blur, noise, dark, _ = episodes
    clean = [n for n in range(1, N_FRAMES + 1) if not any(n in e for e in episodes)]
    sharp = {n: _sharpness(frames[n - 1]) for n in range(1, N_FRAMES + 1)}
    assert max(sharp[n] for n in blur.frames) < min(sharp[n] for n in clean)
    assert min(sharp[n] for n in noise.frames) > max(sharp[n] for n in clean)
    bright = {n: float(frames[n - 1].float().mean()) for n in range(1, N_FRAMES + 1)}
    assert max(bright[n] for n in dark.frames) < 0.5 * min(bright[n] for n in clean)
    # the motion: consecutive clean frames differ (a zoom), and by little
    a, b = frames[clean[0] - 1].float(), frames[clean[1] - 1].float()
    assert 0 < (a - b).abs().mean() < 30
