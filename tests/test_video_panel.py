"""The panel on video datasets (issue 30 item 3): the timeline data against the frames as
stored and the planted episodes and outcomes, the clip a click opens, the worst videos, and
the panel's events as the App calls them.

Three short real videos (pans over shared photos, libx264) with darkness episodes at known
frames, scored in place every STEP-th frame by a brightness metric (the oracle of which
frames are low is the planted episode); frame boxes that the "detector" misses mostly in
the episodes, with a real ``evaluate_detections`` and ``evaluate_classifications`` on frames."""

import json
from unittest import mock

import numpy as np
import pytest

import fiftyone as fo
import fiftyone.operators as foo

from bson import ObjectId

import fiftyone_dnniqa as dq
from fiftyone_dnniqa.analysis.video_targets import (clip_support, clip_view, current_video, frame_seconds,
                                                    timeline_videos, video_timelines,
                                                    worst_video_rows)
from fiftyone_dnniqa.analysis.video import find_segments
from fiftyone_dnniqa.app import panels as P
from fiftyone_dnniqa.app.plots import timeline_figure, timeline_point_id
from fiftyone_dnniqa.core.images import read_image
from fiftyone_dnniqa.core.video import write_video
from fiftyone_dnniqa.corruptions.episodes import Episode, episode_frames
from fiftyone_dnniqa.metrics.base import InputSpec, QualityMetric

from test_panel import FakeApp, plugin  # noqa: F401  (the fixture)

N, STEP, FPS = 36, 3, 12
#: per video: its photo and its darkness episode (None: a clean video)
PLAN = [(3, Episode(13, 24, "low_light", 5)), (7, Episode(4, 12, "low_light", 5)), (10, None)]
FIELD = "iqa_brightness"


class Brightness(QualityMetric):
    """Mean pixel value (a dark frame scores low)."""

    name = "brightness"
    input_spec = InputSpec()

    def score(self, images, references=None):
        return images.double().mean(dim=(1, 2, 3))


def _sampled():
    return list(range(1, N + 1, STEP))


@pytest.fixture(scope="module")
def scored(imagenet_files, tmp_path_factory):
    """The videos scored every STEP-th frame, their true episodes and planted outcomes
    (per video, frame -> "miss", "extra" or "hit"; frame -> classification right)."""
    folder = tmp_path_factory.mktemp("video-panel")
    rng = np.random.default_rng(0)
    ds = fo.Dataset()
    truth = []
    for k, (photo, episode) in enumerate(PLAN):
        frames, _ = episode_frames(read_image(imagenet_files[photo]), N, size=(96, 72),
                                   episodes=[episode] if episode else [], seed=k)
        path = str(folder / f"clip{k}.mp4")
        write_video(path, frames, fps=FPS, codec="libx264")
        sample = fo.Sample(filepath=path)
        outcomes, right = {}, {}
        for fn in range(1, N + 1):
            bad = episode is not None and fn in episode
            u = rng.random()
            outcomes[fn] = "miss" if u < (0.8 if bad else 0.1) else "extra" if u > 0.92 else "hit"
            right[fn] = rng.random() > (0.7 if bad else 0.1)
            sample.frames[fn] = _labels(outcomes[fn], right[fn])
        ds.add_sample(sample)
        truth.append((sample.id, episode, outcomes, right))
    ds.evaluate_detections("frames.pred", gt_field="frames.gt", eval_key="det")
    ds.evaluate_classifications("frames.cls_pred", gt_field="frames.cls_gt", eval_key="cls")
    ds.persistent = True  # as the App's
    dq.compute_quality(ds, Brightness(), frame_step=STEP, progress=False, num_workers=0)
    yield ds, truth
    ds.delete()


def _labels(outcome, right):
    box = [0.2, 0.2, 0.4, 0.4]
    preds = [] if outcome == "miss" else [fo.Detection(label="car", bounding_box=box, confidence=0.9)]
    if outcome == "extra":
        preds.append(fo.Detection(label="car", bounding_box=[0.7, 0.7, 0.2, 0.2], confidence=0.5))
    return fo.Frame(gt=fo.Detections(detections=[fo.Detection(label="car", bounding_box=box)]),
                    pred=fo.Detections(detections=preds), cls_gt=fo.Classification(label="road"),
                    cls_pred=fo.Classification(label="road" if right else "sky", confidence=0.8))


def _stored(ds, sid):
    """The video's scored frames and scores, read frame by frame."""
    sample = ds[sid]
    pairs = sorted((fn, f[FIELD]) for fn, f in sample.frames.items() if f[FIELD] is not None)
    return [p[0] for p in pairs], [p[1] for p in pairs]


def _hand_segments(frames, scores, level):
    """Runs of at least 2 consecutive sampled frames below ``level`` (a plain loop)."""
    runs, cur = [], []
    for fn, q in zip(frames, scores):
        if q < level:
            cur.append(fn)
        else:
            runs.append(cur)
            cur = []
    runs.append(cur)
    return [[r[0], r[-1]] for r in runs if len(r) >= 2]


def _level(ds):
    """The run's level, by hand: the 20th percentile of every scored frame."""
    return np.percentile([q for sid in ds.values("id") for q in _stored(ds, sid)[1]], 20)


def test_timelines_are_the_stored_frames_with_outcomes_and_segments(scored):
    ds, truth = scored
    ids = [t[0] for t in truth]
    level = _level(ds)
    tl = video_timelines(ds, FIELD, ids, eval_key="det")
    assert tl["level"] == pytest.approx(level) and tl["eval_key"] == "det"
    assert tl["outcomes"] == ["missed objects", "false positives"]
    for v, (sid, episode, outcomes, _) in zip(tl["videos"], truth):
        frames, scores = _stored(ds, sid)
        assert v["id"] == sid and v["name"] == f"clip{ids.index(sid)}.mp4"
        assert v["frames"] == frames == _sampled() and v["quality"] == pytest.approx(scores)
        assert v["outcomes"]["missed objects"] == [f for f in frames if outcomes[f] == "miss"]
        assert v["outcomes"]["false positives"] == [f for f in frames if outcomes[f] == "extra"]
        assert v["segments"] == _hand_segments(frames, scores, level)
        assert v["step"] == STEP and v["last_frame"] == N
        if episode is None:
            assert v["segments"] == []
        else:  # the planted episode, within one sampling step
            (first, last), = v["segments"]
            assert episode.start <= first < episode.start + STEP and episode.end - STEP < last <= episode.end
    cls = video_timelines(ds, FIELD, ids[:1], eval_key="cls")
    _, _, _, right = truth[0]
    assert cls["outcomes"] == ["wrong"]
    assert cls["videos"][0]["outcomes"]["wrong"] == [f for f in _sampled() if not right[f]]


def test_the_videos_shown_and_the_worst_rows(scored):
    ds, truth = scored
    level = _level(ds)
    share = {sid: np.mean(np.asarray(_stored(ds, sid)[1]) < level) for sid, *_ in truth}
    worst = sorted(share, key=lambda s: -share[s])
    assert share[worst[0]] > share[worst[1]] > share[worst[2]] == 0
    assert timeline_videos(ds, FIELD) == worst
    assert timeline_videos(ds, FIELD, k=2) == worst[:2]
    assert timeline_videos(ds, FIELD, video=worst[2]) == [worst[2]]
    assert timeline_videos(ds.select(worst[1]), FIELD, video="not-a-video") == [worst[1]]
    found = find_segments(ds, FIELD)
    rows = worst_video_rows(ds, FIELD, found, k=2)
    assert [r["id"] for r in rows] == worst[:2]
    for r in rows:
        scores = _stored(ds, r["id"])[1]
        assert r["low_share"] == pytest.approx(share[r["id"]])
        assert (r["mean"], r["min"], r["frames"]) == pytest.approx((np.mean(scores), np.min(scores), len(scores)))
        assert r["segments"] == 1


def test_a_click_opens_the_segment_or_a_window(scored):
    ds, truth = scored
    sid, episode = truth[0][:2]
    v = video_timelines(ds, FIELD, [sid])["videos"][0]
    (first, last), = v["segments"]
    assert clip_support(v, first + STEP) == [first, last]  # inside the segment
    assert clip_support(v, 1) == [1, 1 + 2 * STEP]  # a clean frame: two steps either side, from frame 1
    assert clip_support(v, N - 2) == [N - 2 - 2 * STEP, N]  # not past the last frame
    clip = clip_view(ds, sid, [first, last])
    assert len(clip) == 1 and clip.values("support") == [[first, last]]
    assert clip.values("sample_id") == [sid]
    assert clip.first().frames.keys() and min(clip.first().frames.keys()) >= first


def test_the_figure_draws_level_segments_outcomes_and_the_clip(scored):
    ds, truth = scored
    ids = [t[0] for t in truth]
    tl = video_timelines(ds.set_field("metadata.frame_rate", None), FIELD, ids, eval_key="det")  # in frames
    assert [v["frame_rate"] for v in tl["videos"]] == [None] * 3 and [v["seconds"] for v in tl["videos"]] == [None] * 3
    fig = timeline_figure(tl, highlight={"id": ids[1], "support": [4, 10]})
    quality = [t for t in fig["data"] if t["mode"] == "lines+markers"]
    assert [t["name"] for t in quality] == [v["name"] for v in tl["videos"]]
    assert [t["yaxis"] for t in quality] == ["y", "y2", "y3"]
    every = [q for v in tl["videos"] for q in v["quality"]] + [tl["level"]]
    ranges = [fig["layout"][f"yaxis{a}"]["range"] for a in ("", "2", "3")]
    assert ranges[0] == ranges[1] == ranges[2]  # one scale: a clean video does not zoom into its noise
    assert ranges[0][0] < min(every) and ranges[0][1] > max(every)
    for t, v in zip(quality, tl["videos"]):
        assert t["ids"] == [json.dumps([v["id"], f]) for f in v["frames"]] and t["y"] == v["quality"]
    misses = [t for t in fig["data"] if t["name"] == "frames with missed objects (det)"]
    assert [t["x"] for t in misses] == [v["outcomes"]["missed objects"] for v in tl["videos"]]
    assert [t["showlegend"] for t in misses] == [True, False, False]
    shapes = fig["layout"]["shapes"]
    rects = [(s["yref"], s["x0"], s["x1"]) for s in shapes if s["type"] == "rect" and s["line"]["width"] == 0]
    half = STEP / 2
    assert rects == [(f"y{'' if i == 0 else i + 1} domain", a - half, b + half)
                     for i, v in enumerate(tl["videos"]) for a, b in v["segments"]]
    assert [s["y0"] for s in shapes if s["type"] == "line"] == [tl["level"]] * 3
    outlined = [s for s in shapes if s["type"] == "rect" and s["line"]["width"] == 2]
    assert [(o["yref"], o["x0"], o["x1"]) for o in outlined] == [("y2 domain", 4 - half, 10 + half)]
    assert fig["layout"]["xaxis"]["title"]["text"] == "frame number (frame rate unknown)"
    assert quality[0]["text"][:2] == ["frame 1", f"frame {1 + STEP}"]
    assert timeline_figure({**tl, "videos": [{**tl["videos"][0], "frames": []}]}) is None


def test_the_panel_shows_the_timeline_and_a_click_shows_the_clip(plugin, scored):  # noqa: F811
    ds, truth = scored
    P.CACHE.clear()
    app = FakeApp(ds)
    app.call("on_load")
    assert "patch_panel_state" not in app.names() and app.form_writes() == {}  # the App's own event
    props = app.properties()
    assert "timeline" in props and "ranking" not in props and props["video_field"].get("default") is None
    traces = app.plots["timeline"]
    level = _level(ds)
    share = {sid: np.mean(np.asarray(_stored(ds, sid)[1]) < level) for sid, *_ in truth}
    shown = [json.loads(t["ids"][0])[0] for t in traces if t["mode"] == "lines+markers"]
    assert shown == sorted(share, key=lambda s: -share[s])
    assert [r["segments"] for r in app.data["worst_videos"]] == [1, 1, 0]
    assert app.rendered()["video_field"] == FIELD
    header = props["video_header"]["default"]
    assert header.startswith(f"**3** videos in the view, **{3 * len(_sampled())}** sampled frames")

    sid, episode = truth[0][:2]
    first, last = find_segments(ds, FIELD).by_video()[sid][0]
    app.call("on_click_timeline", id=timeline_point_id(sid, first + STEP), x=first + STEP)
    clip = app.set_views[-1]
    assert clip._is_clips and clip.values("sample_id") == [sid] and clip.values("support") == [[first, last]]
    app.view = clip
    app.call("on_change_view")  # the App answers set_view: the panel keeps the 3 videos, the clip outlined
    assert "patch_panel_state" not in app.names()
    header = app.properties()["video_header"]["default"]
    assert header.startswith(f"**1** clip in the grid (frames {first}-{last} of clip0.mp4)") and "**3** videos" in header
    outlined = [s for s in app.properties()["timeline"]["view"]["layout"]["shapes"] if s["line"].get("width") == 2]
    assert [x for s in outlined for x in (s["x0"], s["x1"])] == pytest.approx(  # seconds: the rate is known
        [(first - 1 - STEP / 2) / FPS, (last - 1 + STEP / 2) / FPS])
    app.call("on_click_back")
    assert len(app.set_views[-1]) == 3 and not app.set_views[-1]._is_clips

    app.view = ds.view()
    app.call("on_change_view")
    app.user_changes("video", truth[2][0], "on_change_video")  # one video: its timeline alone
    assert [t["name"] for t in app.plots["timeline"] if t["mode"] == "lines+markers"] == ["clip2.mp4"]
    n_views = len(app.set_views)
    app.call("on_click_timeline", id="nonsense")
    assert "notify" in app.names() and len(app.set_views) == n_views


def test_seconds_are_frame_numbers_over_the_frame_rate(scored):
    """FiftyOne's frame 1 shows at 0 s: frame n at (n - 1) / fps, here 12 fps (written so)."""
    ds, truth = scored
    assert frame_seconds([1, 4, 13, 37], 12) == [0.0, 0.25, 1.0, 3.0]  # by hand
    assert frame_seconds([1, 2], 0.0) is None and frame_seconds([1], None) is None
    assert frame_seconds([1], float("nan")) is None
    ids = [t[0] for t in truth]
    assert [ds[sid].metadata.frame_rate for sid in ids] == [FPS] * 3  # as stored by the scoring
    tl = video_timelines(ds, FIELD, ids, eval_key="det")
    fig = timeline_figure(tl, highlight={"id": ids[0], "support": [4, 10]})
    quality = [t for t in fig["data"] if t["mode"] == "lines+markers"]
    for t, sid in zip(quality, ids):
        frames = _stored(ds, sid)[0]
        assert t["x"] == pytest.approx([(f - 1) / FPS for f in frames])
        assert t["text"][1] == f"frame {frames[1]}, {(frames[1] - 1) / FPS:.2f} s"  # the hover says both
    assert fig["layout"]["xaxis"]["title"]["text"] == "time (s)"
    (first, last), = tl["videos"][0]["segments"]
    step_s = STEP / FPS
    segment = [s for s in fig["layout"]["shapes"] if s["type"] == "rect" and s["yref"] == "y domain"
               and s["line"]["width"] == 0]
    assert [x for s in segment for x in (s["x0"], s["x1"])] == pytest.approx(
        [(first - 1) / FPS - step_s / 2, (last - 1) / FPS + step_s / 2])
    outlined = [s for s in fig["layout"]["shapes"] if s["line"].get("width") == 2]
    assert [x for s in outlined for x in (s["x0"], s["x1"])] == pytest.approx([3 / FPS - step_s / 2,
                                                                                9 / FPS + step_s / 2])
    # one video of unknown rate: the shared axis in frame numbers, the hover of the others says both
    mixed = ds.set_field("metadata.frame_rate", (fo.ViewField("$_id") == ObjectId(ids[1])).if_else(None, FPS))
    fig = timeline_figure(video_timelines(mixed, FIELD, ids, eval_key="det"))
    quality = [t for t in fig["data"] if t["mode"] == "lines+markers"]
    assert [t["x"] for t in quality] == [_stored(ds, sid)[0] for sid in ids]
    assert [t["text"][1] for t in quality] == [f"frame {1 + STEP}, {STEP / FPS:.2f} s", f"frame {1 + STEP}",
                                                f"frame {1 + STEP}, {STEP / FPS:.2f} s"]


def test_the_video_behind_the_sample_viewer(scored):
    ds, truth = scored
    sid, other = truth[0][0], truth[1][0]
    assert current_video(ds, sid) == sid and current_video(ds.view(), other) == other
    assert current_video(ds, None) is None and current_video(ds, "not-an-id") is None
    assert current_video(ds.select(other), sid) is None  # not in the view
    clips = clip_view(ds, sid, [4, 10])
    assert current_video(clips, clips.first().id) == sid  # a clip: the video it cuts
    images = fo.Dataset()
    try:
        image = fo.Sample(filepath="/nowhere/a.jpg")
        images.add_sample(image)
        assert current_video(images, image.id) is None
    finally:
        images.delete()


class ModalApp(FakeApp):
    """The App with its sample viewer: ``current_sample`` (None: closed) goes with every event."""

    current_sample = None

    def call(self, method, **event):
        execute = foo.execute_operator

        def with_sample(uri, ctx=None, **kwargs):
            return execute(uri, ctx={**ctx, "current_sample": self.current_sample}, **kwargs)

        with mock.patch.object(foo, "execute_operator", with_sample):
            return super().call(method, **event)


def _plotted(app):
    """The videos the timeline plots, from its points' ids."""
    return [json.loads(t["ids"][0])[0] for t in app.plots["timeline"] if t["mode"] == "lines+markers"]


def test_the_panel_follows_the_video_in_the_sample_viewer(plugin, scored):  # noqa: F811
    ds, truth = scored
    P.CACHE.clear()
    app = ModalApp(ds)
    app.call("on_load")
    assert len(_plotted(app)) == 3 and "video" in app.properties()
    for k, (sid, *_) in enumerate(truth[1:], start=1):  # open a video, then the next one
        app.current_sample = sid
        app.call("on_change_current_sample", value=sid)
        assert "patch_panel_state" not in app.names() and app.form_writes() == {}  # the App's own event
        assert _plotted(app) == [sid]
        frames, scores = _stored(ds, sid)
        line, = [t for t in app.plots["timeline"] if t["mode"] == "lines+markers"]
        assert line["y"] == pytest.approx(scores) and line["x"] == pytest.approx([(f - 1) / FPS for f in frames])
        props = app.properties()
        n_segments = len(_hand_segments(frames, scores, _level(ds)))
        assert props["video_header"]["default"].startswith(
            f"**clip{k}.mp4**, the video open in the sample viewer: **{len(frames)}** frames scored in "
            f"`{FIELD}` (every {STEP}rd frame at {FPS} fps); **{n_segments}** low-quality segment")
        assert "video" not in props and "worst_videos" not in props  # the viewer picks; no table of the view
    app.current_sample = None  # the viewer closed: the view's videos again
    app.call("on_change_current_sample", value=None)
    assert len(_plotted(app)) == 3 and "video" in app.properties() and "patch_panel_state" not in app.names()
    sid = truth[2][0]
    app.call("on_click_timeline", id=timeline_point_id(sid, 1 + 2 * STEP))
    assert "close_sample" not in app.names() and app.set_views[-1].values("support") == [[1, 1 + 4 * STEP]]
    app.current_sample = sid  # a click in the viewer: it closes first, then the grid shows the clip
    app.call("on_click_timeline", id=timeline_point_id(sid, 1 + 2 * STEP))
    names = app.names()
    assert "close_sample" in names and names.index("close_sample") < names.index("set_view")
    assert app.set_views[-1].values("sample_id") == [sid] and app.set_views[-1].values("support") == [[1, 1 + 4 * STEP]]
    app.view = app.set_views[-1]  # the grid shows the clip; the user opens it in the viewer
    app.current_sample = app.view.first().id
    app.call("on_change_current_sample", value=app.current_sample)
    assert _plotted(app) == [sid]  # the clip's video, the clip outlined
    outlined = [s for s in app.properties()["timeline"]["view"]["layout"]["shapes"] if s["line"].get("width") == 2]
    assert [x for s in outlined for x in (s["x0"], s["x1"])] == pytest.approx(
        [(0 - STEP / 2) / FPS, (4 * STEP + STEP / 2) / FPS])
    app.call("on_click_back")  # Back from the viewer: it closes first (the clip is not in the view)
    names = app.names()
    assert names.index("close_sample") < names.index("set_view") and len(app.set_views[-1]) == 3


def test_a_click_in_the_viewers_panel_reads_as_a_drill_down_in_the_grids(plugin, scored):  # noqa: F811
    """The sample viewer's panel and the grid's are two panels (two ids, two states); a
    click in the viewer's shows the clip in the grid, where the grid's panel must then say
    so, outline it and offer Back (found walking the App in Chromium)."""
    ds, truth = scored
    P.CACHE.clear()
    grid, viewer = FakeApp(ds), ModalApp(ds)
    grid.call("on_load")
    sid = truth[1][0]
    viewer.current_sample = sid
    viewer.call("on_load")
    viewer.call("on_click_timeline", id=timeline_point_id(sid, 1 + 2 * STEP))
    clip = viewer.set_views[-1]
    assert clip.values("sample_id") == [sid]
    grid.view = clip  # the viewer closed; the App's view is the clip
    grid.call("on_change_view")
    props = grid.properties()
    assert props["video_header"]["default"].startswith("**1** clip in the grid (frames ")
    assert "back" in props and len(_plotted(grid)) == 3  # the view before the drill-down, clip outlined
    outlined = [s for s in props["timeline"]["view"]["layout"]["shapes"] if s["line"].get("width") == 2]
    assert len(outlined) == 1
    grid.call("on_click_back")
    assert len(grid.set_views[-1]) == 3
    grid.view = grid.set_views[-1]
    grid.call("on_change_view")
    assert "back" not in grid.properties()
    grid.view = clip  # the same clip set again by hand later: no drill-down is left to read
    grid.call("on_change_view")
    assert "back" not in grid.properties()
