"""Sharded runs on video (issue 30 item 1): ``compute_quality(videos, metric, frame_step=N,
shards=K)`` queues FiftyOne delegated operations, each scoring a range of whole videos; the
operations run here for real (FiftyOne's delegated service, in this process). Oracles: one
unsharded call on the same videos, and frames PyAV decodes directly (their mean by numpy)."""

import math

import av
import numpy as np
import pytest

import fiftyone as fo
import fiftyone_dnniqa as dq
from fiftyone.operators.delegated import DelegatedOperationService
from fiftyone_dnniqa.core.video import write_video
from fiftyone_dnniqa.metrics import register_metric
from fiftyone_dnniqa.metrics.base import InputSpec, QualityMetric
from fiftyone_dnniqa.scoring import video_loading
from fiftyone_dnniqa.scoring.shards import ShardedRun, ShardStore

from test_video_core import episode_clip, spoil

N = 16  # frames per video
VIDEOS = 5  # clean clips; the dataset adds a spoiled copy and a missing file
STEP = 3
SUMMARIES = ("mean", "min", "low_share", "frames", "failed", "error")


class ShardFrameMean(QualityMetric):
    """Mean pixel value at native size; remembers how many frames it scored (shards run in
    this process: the delegated operations are executed here)."""

    name = "shard_frame_mean"
    input_spec = InputSpec()
    calls = 0

    def score(self, images, references=None):
        type(self).calls += len(images)
        return images.double().mean(dim=(1, 2, 3))


try:  # shards queue operations by metric name
    register_metric("shard_frame_mean")(ShardFrameMean)
except ValueError:
    pass


def pyav_frame_means(path):
    with av.open(path) as c:
        return [f.to_ndarray(format="rgb24").astype(np.float64).mean() / 255.0 for f in c.decode(video=0)]


@pytest.fixture(scope="module")
def videos(imagenet_files, installed_plugin, tmp_path_factory):
    """Five 16-frame episode clips (160x120, libx264), a copy of the first with 3 packets
    spoiled (frames that fail to decode) first and a missing file third; a persistent dataset
    of them, and the values of one unsharded call on it (field ``one``): the oracle of every
    sharded run."""
    folder = tmp_path_factory.mktemp("shard-videos")
    paths = []
    for k in range(VIDEOS):
        frames, _ = episode_clip(imagenet_files[10 + k], N, "pan" if k % 2 else "zoom", k)
        paths.append(str(folder / f"v{k}.mp4"))
        write_video(paths[-1], frames, fps=25, codec="libx264")
    spoil(paths[0], str(folder / "spoiled.mp4"), {8, 9, 10})
    paths = [str(folder / "spoiled.mp4")] + paths[:1] + [str(folder / "missing.mp4")] + paths[1:]
    ds = fo.Dataset()
    ds.add_samples([fo.Sample(filepath=p) for p in paths])
    ds.persistent = True
    one = dq.compute_quality(ds, "shard_frame_mean", field="one", frame_step=STEP, num_workers=0, progress=False)
    assert one.num_frames_failed > 0 and one.num_videos_failed == 1
    yield ds, one, _values(ds, "one")
    ds.delete()


def _values(ds, field):
    """Frame scores (by frame number) and summaries of each video, by sample id."""
    ds.reload()
    numbers, scores = ds.values(["frames.frame_number", f"frames.{field}"])
    frames = [{n: s for n, s in zip(ns, ss) if s is not None} for ns, ss in zip(numbers, scores)]
    summaries = zip(*ds.values([f"{field}_{n}" for n in SUMMARIES]))
    return {sid: (f, tuple(s)) for sid, f, s in zip(ds.values("id"), frames, summaries)}


def _run_queued(ds):
    DelegatedOperationService().execute_queued_operations(dataset_name=ds.name)


def test_shards_score_whole_videos_as_one_call_does(videos):
    ds, one, oracle = videos
    run = dq.compute_quality(ds, "shard_frame_mean", field="sharded", frame_step=STEP, shards=3, num_workers=0,
                             batch_size=4)
    assert isinstance(run, ShardedRun) and len(run.operation_ids) == 3
    parts = [spec.view(ds).values("id") for spec in run.specs]
    assert sum(map(len, parts)) == len(ds) and set().union(*parts) == set(ds.values("id"))  # whole videos
    r = dq.load_quality_run(ds, "sharded")
    assert r.status == "queued" and r.config.shards == 3 and r.config.frame_step == STEP

    ShardFrameMean.calls = 0
    _run_queued(ds)
    r = dq.load_quality_run(ds, "sharded")
    assert r.status == "completed" and [s["status"] for s in r.shards] == ["completed"] * 3
    # frames scored and failed, per shard: those of its videos in the one call
    assert [s["num_scored"] for s in r.shards] == [sum(oracle[v][1][3] for v in part) for part in parts]
    assert [s["num_failed"] for s in r.shards] == [sum(oracle[v][1][4] for v in part) for part in parts]
    assert [s["num_videos_failed"] for s in r.shards] == [sum(oracle[v][1][5] is not None for v in part)
                                                          for part in parts]
    assert r.num_scored == r.num_frames_scored == ShardFrameMean.calls == one.num_frames_scored
    assert r.num_failed == r.num_frames_failed == one.num_frames_failed > 0 and r.num_videos_failed == 1
    assert r.num_with_scores == one.num_frames_scored and r.progress == 1.0 and r.num_todo == len(ds)  # videos

    got = _values(ds, "sharded")
    assert got == oracle  # every frame score and every video summary, low shares included
    everything = [s for frames, _ in oracle.values() for s in frames.values()]
    assert r.low_level == one.low_level == pytest.approx(np.percentile(everything, 20))
    for sid, path in list(zip(ds.values("id"), ds.values("filepath")))[3::2]:  # PyAV decoding directly
        want = pyav_frame_means(path)
        frames = got[sid][0]
        assert sorted(frames) == list(range(1, N + 1, STEP))
        assert [frames[n] for n in (1, 1 + STEP)] == pytest.approx([want[0], want[STEP]], abs=1e-6)

    dq.delete_quality_run(ds, "sharded")
    ds.reload()
    assert not [f for f in ds.get_frame_field_schema() if f.startswith("sharded")]
    assert not [f for f in ds.get_field_schema() if f.startswith("sharded")]
    assert ShardStore().get(ds, "sharded") == []


class CrashingReader:
    """A video reader whose decoder crashes (an error PyAV's reader does not turn into a
    reason) after ``after`` sampled frames."""

    def __init__(self, reader, after):
        self.reader, self.after = reader, after

    def __getattr__(self, name):
        return getattr(self.reader, name)

    def __enter__(self):
        self.reader.__enter__()
        return self

    def __exit__(self, *exc):
        return self.reader.__exit__(*exc)

    def frames(self, *args, **kwargs):
        for k, item in enumerate(self.reader.frames(*args, **kwargs)):
            if k == self.after:
                raise RuntimeError("decoder crashed")
            yield item


def test_a_failed_shard_is_reported_and_its_rerun_scores_only_whats_missing(videos, monkeypatch):
    ds, one, oracle = videos
    run = dq.compute_quality(ds, "shard_frame_mean", field="failing", frame_step=STEP, shards=2, num_workers=0,
                             batch_size=1, write_every=1)
    lost = run.specs[1].view(ds)
    assert len(lost) == 4  # the clean clips v1..v4
    crash = lost.values("filepath")[1]  # shard 1's second video crashes its decoder after 2 sampled frames
    real = video_loading.open_video
    monkeypatch.setattr(video_loading, "open_video",
                        lambda path: CrashingReader(real(path), 2) if path == crash else real(path))
    _run_queued(ds)
    r = dq.load_quality_run(ds, "failing")
    assert r.status == "failed" and [s["status"] for s in r.shards] == ["completed", "failed"]
    assert "decoder crashed" in r.shards[1]["error"]
    got = _values(ds, "failing")
    for sid in run.specs[0].view(ds).values("id"):  # the other shard's videos keep their frames and
        # summaries; the low share, against the level of the whole view, waits for the last shard
        assert got[sid][0] == oracle[sid][0]
        assert got[sid][1][:2] == oracle[sid][1][:2] and got[sid][1][2:] == (None,) + oracle[sid][1][3:]
    held = sum(len(got[sid][0]) for sid in lost.values("id"))
    assert held == math.ceil(N / STEP) + 2  # the first video, and the crashed one's first 2 frames

    opened = []
    monkeypatch.setattr(video_loading, "open_video", lambda path: opened.append(path) or real(path))
    ShardFrameMean.calls = 0
    dq.rerun_shard(ds, "failing", 1)
    _run_queued(ds)
    assert opened == lost.values("filepath")[1:]  # the videos it had not finished
    assert ShardFrameMean.calls == len(lost) * math.ceil(N / STEP) - held  # and only their missing frames
    r = dq.load_quality_run(ds, "failing")
    assert r.status == "completed" and r.low_level == pytest.approx(one.low_level)
    assert _values(ds, "failing") == oracle
    dq.delete_quality_run(ds, "failing")


def test_a_sharded_run_with_another_step_revisits_every_video(videos):
    ds, _, oracle = videos
    dq.compute_quality(ds, "shard_frame_mean", field="restep", frame_step=2 * STEP, low_level=0.4, num_workers=0,
                       progress=False)
    held = {sid: frames for sid, (frames, _) in _values(ds, "restep").items()}  # of frames 1, 7, 13
    ShardFrameMean.calls = 0
    dq.compute_quality(ds, "shard_frame_mean", field="restep", frame_step=STEP, low_level=0.4, shards=2,
                       num_workers=0)
    _run_queued(ds)
    assert ShardFrameMean.calls == sum(len(oracle[sid][0]) - len(held[sid]) for sid in held) > 0
    got = _values(ds, "restep")
    for sid, (frames, summaries) in got.items():
        want = oracle[sid][0]
        assert {n: frames[n] for n in want} == want and summaries[3] == len(want)
        assert summaries[2] == (pytest.approx(np.mean([s < 0.4 for s in want.values()])) if want else None)
    r = dq.load_quality_run(ds, "restep")
    assert r.low_level == r.config.low_level == 0.4 and r.config.frame_step == STEP
    dq.delete_quality_run(ds, "restep")


def test_shards_on_video_refuse_objects_and_references(videos):
    ds, _, _ = videos
    with pytest.raises(ValueError, match="frames of videos have none"):
        dq.compute_quality(ds, "psnr", frame_step=STEP, shards=2)
    with pytest.raises(ValueError, match="patches_field scores the objects of images"):
        dq.compute_quality(ds, "shard_frame_mean", patches_field="boxes", shards=2)
    assert "iqa_psnr" not in dq.list_quality_runs(ds)
