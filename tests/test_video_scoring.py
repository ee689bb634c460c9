"""Scoring the frames of videos in place (issue 30): the field layout against a hand
computation from frames PyAV decodes directly, the rank of degradation episodes under a real
metric, resume after an interrupted run, bad files, deletion, and to_frames views."""

import math
import os

import av
import numpy as np
import pytest
import torch
from sklearn.metrics import roc_auc_score

import fiftyone as fo
import fiftyone_dnniqa as dq
from fiftyone_dnniqa.analysis.video import hard_segments
from fiftyone_dnniqa.core.video import write_video
from fiftyone_dnniqa.metrics.base import InputSpec, QualityMetric
from fiftyone_dnniqa.scoring import video_loading

from test_video_core import episode_clip, spoil

N = 40  # frames per clip


class FrameMean(QualityMetric):
    """Mean pixel value at native size (the oracle recomputes it from PyAV's frames)."""

    name = "frame_mean"
    input_spec = InputSpec()

    def __init__(self, interrupt_after=None):
        super().__init__()
        self.calls, self.returned, self.interrupt_after = 0, 0, interrupt_after

    def score(self, images, references=None):
        self.calls += len(images)
        if self.interrupt_after is not None and self.calls > self.interrupt_after:
            raise KeyboardInterrupt
        self.returned += len(images)
        return images.double().mean(dim=(1, 2, 3))


class FrameSpread(QualityMetric):
    """Pixel standard deviation, lower is better (a direction other than FrameMean's)."""

    name = "frame_spread"
    higher_is_better = False
    input_spec = InputSpec()

    def score(self, images, references=None):
        return images.double().flatten(1).std(dim=1)


def pyav_frames(path):
    with av.open(path) as c:
        return [f.to_ndarray(format="rgb24").astype(np.float64) / 255.0 for f in c.decode(video=0)]


@pytest.fixture(scope="module")
def clips(imagenet_files, tmp_path_factory):
    """Two episode clips (pan and zoom, 160x120, libx264) and their true episodes."""
    folder = tmp_path_factory.mktemp("videos")
    out = []
    for k, (photo, motion) in enumerate(((imagenet_files[5], "pan"), (imagenet_files[3], "zoom"))):
        frames, episodes = episode_clip(photo, N, motion, seed=k)
        path = str(folder / f"clip{k}.mp4")
        write_video(path, frames, fps=25, codec="libx264")
        out.append((path, episodes, frames))
    return out


@pytest.fixture
def videos(clips, make_dataset):
    return make_dataset([p for p, _, _ in clips])


def _opens(monkeypatch):
    opened = []
    real = video_loading.open_video

    def counting(path):
        opened.append(path)
        return real(path)

    monkeypatch.setattr(video_loading, "open_video", counting)
    return opened


def test_frames_and_summaries_equal_a_hand_computation(videos, clips, monkeypatch):
    opened = _opens(monkeypatch)
    step = 3
    results = dq.compute_quality(videos, [FrameMean(), FrameSpread()], frame_step=step, num_workers=0,
                                 batch_size=5, progress=False)
    assert sorted(opened) == sorted(p for p, _, _ in clips)  # one decode per video for both metrics
    numbers = list(range(1, N + 1, step))
    oracle = {"iqa_frame_mean": [[f.mean() for f in pyav_frames(p)] for p, _, _ in clips],
              "iqa_frame_spread": [[f.std(ddof=1) for f in pyav_frames(p)] for p, _, _ in clips]}
    for field, higher in (("iqa_frame_mean", True), ("iqa_frame_spread", False)):
        per_video = [np.array([v[n - 1] for n in numbers]) for v in oracle[field]]
        everything = np.concatenate(per_video)
        level = np.percentile(everything, 20 if higher else 80)
        r = results[field]
        assert (r.status, r.config.frame_step, r.num_frames_scored, r.num_frames_failed) == (
            "completed", step, everything.size, 0)
        assert r.low_level == pytest.approx(level) and r.num_with_scores == everything.size
        frame_numbers = videos.values("frames.frame_number")
        stored = videos.values(f"frames.{field}")
        for vals, fns, want in zip(stored, frame_numbers, per_video):
            assert fns == numbers
            assert np.allclose(vals, want, atol=1e-6)
        summaries = videos.values([f"{field}_{n}" for n in ("mean", "min", "low_share", "frames", "failed")])
        for v, want in enumerate(per_video):
            worse = want < level if higher else want > level
            got = [s[v] for s in summaries]
            assert got[:3] == pytest.approx([want.mean(), want.min(), worse.mean()], abs=1e-6)
            assert got[3:] == [want.size, 0]
        assert videos.values(f"{field}_error") == [None, None]
    meta = videos.first().metadata
    assert isinstance(meta, fo.VideoMetadata)
    assert (meta.total_frame_count, meta.frame_width, meta.frame_height) == (N, 160, 120)
    assert meta.frame_rate == pytest.approx(25.0) and meta.duration == pytest.approx(N / 25, abs=0.05)


def test_low_level_given_and_deleting_the_run(videos, clips):
    dq.compute_quality(videos, FrameMean(), frame_step=10, low_level=0.5, num_workers=0, progress=False)
    want = [np.array([f.mean() for f in pyav_frames(p)][::10]) for p, _, _ in clips]
    assert videos.values("iqa_frame_mean_low_share") == pytest.approx([(w < 0.5).mean() for w in want])
    assert dq.load_quality_run(videos, "iqa_frame_mean").low_level == 0.5
    assert dq.list_quality_runs(videos, kind="videos") == ["iqa_frame_mean"]
    assert dq.list_quality_runs(videos, kind="images") == []
    hard_segments(videos, "iqa_frame_mean", min_length=1)  # analysis's field goes with the run
    before_samples = set(videos.get_field_schema())
    dq.delete_quality_run(videos, "iqa_frame_mean")
    videos.reload()
    assert not [f for f in videos.get_frame_field_schema() if f.startswith("iqa_")]
    assert not [f for f in videos.get_field_schema() if f.startswith("iqa_")]
    assert {f for f in before_samples if f.startswith("iqa_")} == {
        f"iqa_frame_mean_{n}" for n in ("mean", "min", "low_share", "frames", "failed", "error", "segments")}


def test_resume_after_an_interrupt_loses_nothing_and_rescores_nothing(videos, clips):
    step = 2
    first = FrameMean(interrupt_after=27)
    with pytest.raises(KeyboardInterrupt):  # in the second video, after a write (write_every=8)
        dq.compute_quality(videos, first, frame_step=step, num_workers=0, batch_size=4, write_every=8,
                           progress=False)
    assert dq.load_quality_run(videos, "iqa_frame_mean").status == "interrupted"
    held = sum(v is not None for vals in videos.values("frames.iqa_frame_mean") for v in vals)
    assert held == first.returned > N // step  # every score computed was saved
    again = FrameMean()
    r = dq.compute_quality(videos, again, frame_step=step, num_workers=0, progress=False)
    total = len(clips) * len(range(1, N + 1, step))
    assert again.calls == total - held and r.num_frames_scored == total - held
    for vals, (p, _, _) in zip(videos.values("frames.iqa_frame_mean"), clips):
        assert np.allclose(vals, [f.mean() for f in pyav_frames(p)][::step], atol=1e-6)
    assert videos.values("iqa_frame_mean_frames") == [N // step] * len(clips)
    third = FrameMean()  # everything is there now: no video is decoded again
    r = dq.compute_quality(videos, third, frame_step=step, num_workers=0, progress=False)
    assert third.calls == 0 and r.num_todo == 0
    fourth = FrameMean()  # a finer step scores only the frames the coarser one left
    dq.compute_quality(videos, fourth, frame_step=1, num_workers=0, progress=False)
    assert fourth.calls == total and videos.values("iqa_frame_mean_frames") == [N] * len(clips)


def test_bad_files_get_reasons_and_the_run_goes_on(clips, make_dataset, tmp_path):
    path, _, frames = clips[0]
    garbage = tmp_path / "garbage.mp4"
    garbage.write_bytes(os.urandom(3000))
    none = str(tmp_path / "none.mp4")
    write_video(none, [], size=(160, 120))
    whole = str(tmp_path / "whole.mkv")
    write_video(whole, frames, fps=25)
    data = open(whole, "rb").read()
    cut = tmp_path / "cut.mkv"
    cut.write_bytes(data[: len(data) // 2])
    spoiled = str(tmp_path / "spoiled.mp4")
    spoil(path, spoiled, {10, 11})
    rng = np.random.default_rng(1)
    times = np.concatenate([[0.0], np.cumsum(rng.uniform(0.01, 0.2, N - 1))])
    vfr = str(tmp_path / "vfr.mp4")
    write_video(vfr, frames, timestamps=times)
    paths = [str(garbage), none, str(cut), spoiled, vfr, str(tmp_path / "missing.mp4")]
    ds = make_dataset(paths)
    r = dq.compute_quality(ds, FrameMean(), frame_step=1, num_workers=2, progress=False)
    assert r.status == "completed"
    reasons = dict(zip(paths, ds.values("iqa_frame_mean_error")))
    scored = dict(zip(paths, ds.values("iqa_frame_mean_frames")))
    failed = dict(zip(paths, ds.values("iqa_frame_mean_failed")))
    assert reasons[str(garbage)].startswith("not a readable video")
    assert reasons[none].startswith("no video stream") and reasons[paths[-1]] == "missing file"
    n_cut = len(pyav_frames(str(cut)))
    assert reasons[str(cut)] == f"truncated: {n_cut} of {N} declared frames decoded" and scored[str(cut)] == n_cut
    assert reasons[spoiled] is None and (scored[spoiled], failed[spoiled]) == (N - 2, 2)
    errors = ds.values("frames.iqa_frame_mean_error")[paths.index(spoiled)]
    assert sum(e is not None for e in errors) == 2 and all("failed to decode" in e for e in errors if e)
    assert reasons[vfr] is None and (scored[vfr], failed[vfr]) == (N, 0)  # decode order, not timestamps
    vfr_values = ds.values("frames.iqa_frame_mean")[paths.index(vfr)]
    assert np.allclose(vfr_values, [f.mean() for f in pyav_frames(vfr)], atol=1e-6)
    assert r.num_videos_failed == 4 and r.num_frames_failed == 2  # garbage, none, cut, missing
    assert ds.values("metadata.total_frame_count") == [None, None, n_cut, N, N, None]


def test_episode_frames_score_worse_than_the_rest(videos, clips):
    """aligned and the structured cause metric, on one decode (and one proxy pass)."""
    results = dq.compute_quality(videos, ["aligned", "cause"], frame_step=3, progress=False)
    for r in results.values():
        assert r.status == "completed" and r.num_frames_failed == 0 and r.num_frames_scored == 2 * 14
    for vals, sev, fns, (_, episodes, _) in zip(videos.values("frames.iqa_aligned"),
                                                videos.values("frames.iqa_cause_severity"),
                                                videos.values("frames.frame_number"), clips):
        bad = [any(n in e for e in episodes) for n in fns]
        assert fns == list(range(1, N + 1, 3))
        assert roc_auc_score(bad, -np.asarray(vals)) >= 0.9  # worse quality ranks the episode frames first
        assert roc_auc_score(bad, sev) >= 0.9  # and so does the cause head's severity
    low = videos.values("iqa_aligned_low_share")
    assert all(0 < s < 0.5 for s in low)
    causes = videos.values("frames.iqa_cause")
    assert all(isinstance(c, fo.Classifications) for v in causes for c in v)
    assert videos.values("iqa_cause_frames") == [14, 14] and not videos.has_sample_field("iqa_cause_mean")


def test_settings_are_checked(videos, make_dataset, imagenet_files):
    for step in (0, -1, 1.5, True):
        with pytest.raises(ValueError, match="frame_step"):
            dq.compute_quality(videos, FrameMean(), frame_step=step, progress=False)
    with pytest.raises(ValueError, match="low_level"):
        dq.compute_quality(videos, FrameMean(), low_level=math.nan, progress=False)
    with pytest.raises(ValueError, match="video collections"):
        dq.compute_quality(make_dataset(imagenet_files[:1]), FrameMean(), frame_step=2, progress=False)
    with pytest.raises(ValueError, match="to_clips"):
        dq.compute_quality(videos.to_clips([[(1, 5)], [(2, 6)]]), FrameMean(), progress=False)
    videos.add_sample_field("iqa_frame_mean_min", fo.StringField)
    with pytest.raises(ValueError, match="iqa_frame_mean_min"):
        dq.compute_quality(videos, FrameMean(), progress=False)
    assert dq.list_quality_runs(videos) == []


def test_to_frames_views_are_scored_as_images(videos, clips, tmp_path):
    from PIL import Image  # the frames of a to_frames view, written here (FiftyOne would use ffmpeg)

    dq.compute_quality(videos, FrameMean(), frame_step=20, num_workers=0, progress=False)  # fills metadata
    sample = videos.first()
    for n in (1, 21):
        path = str(tmp_path / f"f{n}.png")
        Image.fromarray((pyav_frames(clips[0][0])[n - 1] * 255).round().astype(np.uint8)).save(path)
        sample.frames[n]["filepath"] = path
    sample.save()
    frames = videos.to_frames(sample_frames=False)
    assert frames.media_type == "image" and len(frames) >= 2
    r = dq.compute_quality(frames, FrameMean(), field="frame_q", progress=False, num_workers=0)
    assert r.num_scored == len(frames) == 2 and getattr(r.config, "frame_step", None) is None
    frames = videos.to_frames(sample_frames=False)  # a new view of the same frames shows them too
    got = dict(zip(frames.values("filepath"), frames.values("frame_q")))
    assert len(got) == 2
    for path, value in got.items():
        want = np.asarray(Image.open(path).convert("RGB"), dtype=np.float64).mean() / 255.0
        assert value == pytest.approx(want, abs=1e-6)
    # and the videos' own frames hold them (frames 1 and 21 of the first video)
    assert videos.values("frames.frame_q")[0] == [got[str(tmp_path / "f1.png")], got[str(tmp_path / "f21.png")]]


def test_the_command_line_scores_every_nth_frame(videos, capsys):
    from fiftyone_dnniqa.cli import main

    videos.persistent = True  # the command loads it by name
    main(["score", "--dataset", videos.name, "--metric", "entropy", "--frame-step", "7", "--low-level", "6.5",
          "--quiet"])
    videos.reload()
    want_numbers = list(range(1, N + 1, 7))
    for numbers, values, mean, low in zip(videos.values("frames.frame_number"), videos.values("frames.iqa_entropy"),
                                          videos.values("iqa_entropy_mean"), videos.values("iqa_entropy_low_share")):
        scored = [(n, v) for n, v in zip(numbers, values) if v is not None]
        assert [n for n, _ in scored] == want_numbers
        vals = np.array([v for _, v in scored])
        assert mean == pytest.approx(vals.mean()) and low == pytest.approx((vals < 6.5).mean())
    assert dq.load_quality_run(videos, "iqa_entropy").config.frame_step == 7


class LaneFrameMean(FrameMean):
    """FrameMean, declared safe to copy: runs on video score it in CPU lanes."""

    supports_lanes = True


def test_frames_scored_in_lanes_equal_the_hand_computation(videos, clips, lanes_opened):
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        r = dq.compute_quality(videos, LaneFrameMean(), frame_step=2, num_workers=0, batch_size=3, progress=False)
    finally:
        torch.set_num_threads(before)
    assert lanes_opened == [(2, 1)] and r.num_frames_scored == 2 * len(range(1, N + 1, 2))
    for vals, (path, _, _) in zip(videos.values("frames.iqa_frame_mean"), clips):
        assert np.allclose(vals, [f.mean() for f in pyav_frames(path)][::2], atol=1e-6)
    assert videos.values("iqa_frame_mean_frames") == [N // 2, N // 2]
