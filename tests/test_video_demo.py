"""The video demo (``fiftyone-dnniqa demo --video``): its table by hand, the whole path
(build, score in place, find segments, print) on a tiny dataset, the command's arguments,
and the App's "Find hard segments" operator on the demo's dataset."""

import numpy as np
import pytest

import fiftyone as fo
import fiftyone.operators as foo
from fiftyone.operators.executor import ExecutionContext

from fiftyone_dnniqa import cli
from fiftyone_dnniqa.analysis.video import find_segments
from fiftyone_dnniqa.app import view_operators
from fiftyone_dnniqa.app.plugin import PLUGIN_NAME
from fiftyone_dnniqa.corruptions.episodes import default_episodes
from fiftyone_dnniqa.demo import episode_rows, run_video_demo
from fiftyone_dnniqa.scoring import load_quality_run

SEGMENTS = f"{PLUGIN_NAME}/find_hard_segments"


def test_episode_rows_by_hand():
    truth = {"a": [("blur", 5, 10), ("noise", 20, 25), ("dark", 40, 45)], "b": [("jpeg", 1, 4)]}
    found = {"a": [(5, 9), (19, 25), (30, 31)], "b": [(1, 3)]}
    rows = episode_rows(truth, found, {"a": "cat", "b": "dog"}, step=2)
    assert [(r["video"], r["true episode"], r["degradation"], r["segment found"], r["match"]) for r in rows] == [
        ("cat", "5-10", "blur", "5-9", "within a step"),  # 5 <= 5 < 7 and 8 < 9 <= 10
        ("cat", "20-25", "noise", "19-25", "overlaps"),  # starts before the episode
        ("cat", "40-45", "dark", "-", "missed"),
        ("cat", "-", "-", "30-31", "false alarm"),
        ("dog", "1-4", "jpeg", "1-3", "within a step"),
    ]
    # two segments inside one episode: both listed, not "within a step"
    rows = episode_rows({"a": [("blur", 1, 20)]}, {"a": [(1, 5), (9, 19)]}, {"a": "cat"}, step=2)
    assert rows == [{"video": "cat", "true episode": "1-20", "degradation": "blur",
                     "segment found": "1-5, 9-19", "match": "overlaps"}]


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    """The video demo on one tiny video (16 frames of 48 x 32, every frame scored by entropy)."""
    lines = []
    name = "dnniqa-video-demo-test"
    dataset, clips = run_video_demo(name=name, metric="entropy", frame_step=1, device="cpu", num_workers=0,
                                    print_fn=lines.append, folder=str(tmp_path_factory.mktemp("demo")),
                                    n_frames=16, size=(48, 32), videos=1, persistent=False)
    yield dataset, clips, "\n".join(lines)
    if fo.dataset_exists(name):
        fo.delete_dataset(name)


def test_video_demo_path_on_tiny_videos(demo):
    dataset, clips, text = demo
    assert len(dataset) == 1 and dataset.media_type == "video"
    truth = [(e.corruption, e.start, e.end) for e in default_episodes(16)]
    sample = dataset.first()
    assert sample.metadata.total_frame_count == 16 and sample.metadata.frame_width == 48
    assert [(d.label, *d.support) for d in sample.true_episodes.detections] == truth
    # every frame scored
    run = load_quality_run(dataset, "iqa_entropy")
    assert run.num_scored == 16 and run.config.frame_step == 1
    # the segments are those below the 30% quantile of the frames, the clips are them,
    # and the table lists every true episode beside them; then the run's own level
    scores = np.array(dataset.values("frames.iqa_entropy", unwind=True), dtype=float)
    found = find_segments(dataset, "iqa_entropy", quantile=0.3)
    assert found.level == np.quantile(scores, 0.3) and f"low: below {found.level:.3f}" in text
    assert f"At the run's own level ({run.low_level:.3f}" in text
    supports = [[s.first, s.last] for s in found.segments]
    assert clips.values("support") == supports
    ids, photos = dataset.values(["id", "photo"])
    rows = episode_rows({i: truth for i in ids}, found.by_video(), dict(zip(ids, photos)), step=1)
    assert sum(r["true episode"] != "-" for r in rows) == 4
    for r in rows:
        assert "| " + " | ".join(r.values()) + " |" in text


def test_cli_demo_video_arguments(monkeypatch):
    calls = []
    monkeypatch.setattr(cli, "run_video_demo", lambda **kw: calls.append(kw))
    cli.main(["demo", "--video"])
    cli.main(["demo", "--video", "--metric", "piqe", "--frame-step", "3", "--name", "mine", "--device", "cpu"])
    assert calls == [dict(name="dnniqa-video-demo", metric="aligned", frame_step=2, device="auto"),
                     dict(name="mine", metric="piqe", frame_step=3, device="cpu")]
    with pytest.raises(SystemExit, match="one --metric"):
        cli.main(["demo", "--video", "--metric", "piqe", "--metric", "entropy"])
    with pytest.raises(SystemExit, match="goes with --video"):
        cli.main(["demo", "--frame-step", "2"])


def test_find_hard_segments_operator(demo, installed_plugin, monkeypatch):
    """Thin over hard_segments: the segments at the run's level, tagged and saved, the App
    switched to them; the form offers the video runs."""
    dataset, _, _ = demo
    dataset.persistent = True  # the operator reloads the dataset by name
    op = foo.get_operator(SEGMENTS)
    ctx = ExecutionContext(request_params={"dataset_name": dataset.name, "params": {}})
    props = op.resolve_input(ctx).type.properties
    assert props["field"].type.values == ["iqa_entropy"] and props["min_length"].default == 2

    found = find_segments(dataset, "iqa_entropy", min_length=1)  # the run's own level
    supports = [[s.first, s.last] for s in found.segments]
    assert found.level == load_quality_run(dataset, "iqa_entropy").low_level and supports
    res = foo.execute_operator(SEGMENTS, ctx={"view": dataset.view(), "params": {
        "field": "iqa_entropy", "min_length": 1, "tag": "dip", "view_name": "dips"}})
    assert res.error is None
    n = len(supports)
    assert res.result == {"count": n, "unit": "segments", "view_name": "dips", "tag": "dip", "tagged": n}
    assert dataset.load_saved_view("dips").values("support") == supports
    assert dataset.count_label_tags("iqa_entropy_segments") == {"dip": n}
    assert [(r.operator_uri, r.params) for r in res.executor._requests] == [("set_view", {"name": "dips"})]

    # from the App: reload, name the saved view, then the dialog
    monkeypatch.setattr(view_operators, "SAVED_VIEW_WAITS_S", (0.0, 0.0))
    res = foo.execute_operator(SEGMENTS, ctx={"view": dataset.view(), "current_sample": None, "params": {
        "field": "iqa_entropy", "min_length": 1, "level": float(found.level), "view_name": "dips"}})
    assert res.error is None
    uris = [r.operator_uri for r in res.executor._requests]
    assert uris == ["reload_dataset", "set_view", "set_view", "show_output"], uris
    assert res.executor._requests[-1].params["results"] == {"count": n, "unit": "segments", "view_name": "dips"}
