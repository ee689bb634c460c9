"""The Compute form on video (issue 30 item 3): a "Score every Nth frame" input on video
collections only, its default from the videos' frame rate, no objects and no
reference-image metrics for videos, Shards where the App can schedule; the operator passes
the step on, so every Nth frame of each (tiny, real MP4) video gets its frame field, in one
call or in delegated shards of whole videos."""

import math

import numpy as np
import pytest
from PIL import Image

import fiftyone as fo
import fiftyone.operators as foo
from fiftyone.operators.delegated import DelegatedOperationService

import fiftyone_dnniqa as dq
from fiftyone_dnniqa.app.forms import default_frame_step
from fiftyone_dnniqa.app.plugin import PLUGIN_NAME
from fiftyone_dnniqa.core.video import write_video

from test_forms import _resolve

URI = f"{PLUGIN_NAME}/compute_quality"
FRAMES = (12, 7)  # frames of each video
FPS = 24


def _frames(n, seed):
    """A moving gradient with noise, 32x32."""
    rng = np.random.default_rng(seed)
    ramp = np.linspace(0, 200, 32)
    return [np.clip(np.roll(ramp, 2 * i)[None, :, None] + rng.normal(0, 10, (32, 32, 3)), 0, 255).astype(np.uint8)
            for i in range(n)]


def _boxes():
    return fo.Detections(detections=[fo.Detection(label="car", bounding_box=[0.1, 0.1, 0.5, 0.5])])


@pytest.fixture(scope="module")
def datasets(installed_plugin, tmp_path_factory):
    """A video dataset (two tiny MP4s, their frame rate in the metadata) and an image one,
    both with a Detections field; persistent, as the App's."""
    folder = tmp_path_factory.mktemp("video-form")
    videos = fo.Dataset()
    for k, n in enumerate(FRAMES):
        path = str(folder / f"v{k}.mp4")
        write_video(path, _frames(n, k), fps=FPS, codec="mpeg4")
        videos.add_sample(fo.Sample(filepath=path, boxes=_boxes(), metadata=fo.VideoMetadata(frame_rate=FPS)))
    images = fo.Dataset()
    for k in range(2):
        path = str(folder / f"i{k}.png")
        Image.fromarray(_frames(1, k)[0]).save(path)
        images.add_sample(fo.Sample(filepath=path, boxes=_boxes()))
    for ds in (videos, images):
        ds.persistent = True
    yield videos, images
    for ds in (videos, images):
        ds.delete()


def test_the_form_offers_a_frame_step_on_video_only(datasets):
    videos, images = datasets
    props, valid = _resolve(videos, {"metrics": ["entropy"]})
    step = props["frame_step"]
    assert step.view.label == "Score every Nth frame" and step.default == round(FPS / 3) == 8
    assert valid.invalid and [e.path.strip(".") for e in valid.errors] == ["frame_step"]  # required
    _, valid = _resolve(videos, {"metrics": ["entropy"], "frame_step": step.default})  # as the App sends it
    assert not valid.invalid
    assert "patches_field" not in props and "decode" not in props
    props, _ = _resolve(videos, {"metrics": ["entropy"], "frame_step": 0})
    assert props["frame_step"].invalid
    # frames of videos have no reference images
    props, valid = _resolve(videos, {"metrics": ["entropy", "psnr"]})
    assert valid.invalid and "psnr" in props["metrics"].error_message and "reference_field" not in props

    props, valid = _resolve(images, {"metrics": ["entropy"]})
    assert "frame_step" not in props and "patches_field" in props and "decode" in props
    assert not valid.invalid


def test_the_default_step_follows_the_frame_rate(datasets):
    videos, _ = datasets
    assert default_frame_step(videos) == 8  # 24 fps: 3 scored frames per second
    assert default_frame_step(videos.set_field("metadata.frame_rate", 90.0)) == 30
    assert default_frame_step(videos.set_field("metadata.frame_rate", 2.0)) == 1
    assert default_frame_step(videos.set_field("metadata", None)) == 10  # not yet probed


def test_the_operator_scores_every_nth_frame(datasets):
    videos, _ = datasets
    res = foo.execute_operator(URI, ctx={"view": videos.view(), "params": {
        "metrics": ["entropy"], "frame_step": 3, "num_workers": 0, "device": "cpu"}})
    assert res.error is None, res.error
    assert res.result["unit"] == "frames"  # the result dialog counts frames, not images
    assert res.result["scored"] == sum(math.ceil(n / 3) for n in FRAMES)
    videos.reload()
    for sample, n in zip(videos, FRAMES):
        scored = {fn: f["iqa_entropy"] for fn, f in sample.frames.items() if f["iqa_entropy"] is not None}
        assert sorted(scored) == list(range(1, n + 1, 3))  # frames 1, 4, 7, 10
        assert all(math.isfinite(v) for v in scored.values())
        assert sample["iqa_entropy_frames"] == math.ceil(n / 3)
        assert sample["iqa_entropy_mean"] == pytest.approx(np.mean(list(scored.values())))


def test_shards_are_offered_on_video_where_the_app_can_schedule(datasets, monkeypatch):
    videos, _ = datasets
    monkeypatch.setattr(fo.config, "allow_legacy_orchestrators", True)
    props, _ = _resolve(videos, {"metrics": ["entropy"], "frame_step": 3})
    assert "whole videos" in props["shards"].view.description and "schedule_note" not in props
    monkeypatch.setattr(fo.config, "allow_legacy_orchestrators", False)
    props, _ = _resolve(videos, {"metrics": ["entropy"], "frame_step": 3})
    assert "shards" not in props and "fiftyone delegated launch" in props["schedule_note"].view.label


def test_the_operator_queues_shards_of_whole_videos(datasets):
    videos, _ = datasets
    res = foo.execute_operator(URI, ctx={"view": videos.view(), "params": {
        "metrics": ["entropy"], "field": "sharded", "frame_step": 4, "shards": 2, "num_workers": 0,
        "device": "cpu"}})
    assert res.error is None, res.error
    assert res.result["status"] == "queued" and res.result["queued"] == 2
    DelegatedOperationService().execute_queued_operations(dataset_name=videos.name)
    videos.reload()
    for sample, n in zip(videos, FRAMES):  # each video's sampled frames, in the shard that holds it
        scored = sorted(fn for fn, f in sample.frames.items() if f["sharded"] is not None)
        assert scored == list(range(1, n + 1, 4)) and sample["sharded_frames"] == len(scored)
    r = dq.load_quality_run(videos, "sharded")
    assert r.status == "completed" and [s["num_scored"] for s in r.shards] == [math.ceil(n / 4) for n in FRAMES]
    dq.delete_quality_run(videos, "sharded")
