"""The panel on a video dataset in a real browser (issue 30 item 3): compute frame quality
from the Compute form with a frame step, open the panel, see the timeline, click a point of a
dip and check that the App's grid now shows that episode's clip; then open a video in the
sample viewer, where the panel plots that video (in seconds) and follows the viewer to the
next video, and a click on a dip closes the viewer and shows the clip.

Three short real videos (pans over shared photos, libx264, 12 fps) with a blur and a
darkness episode at known frames and one clean video; frame boxes that a "detector" misses
mostly in the episodes, with a real frame-level ``evaluate_detections``. The oracle of the
click is the planted episode: one clip, of the clicked video, whose frames are the episode's
within one sampling step; the view is the one the App itself requests (its GraphQL query),
rebuilt here. The App server, the plugin and headless Chromium as in ``test_browser.py``."""

import json
import re
import time
import uuid

import numpy as np
import pytest

import fiftyone as fo

import fiftyone_dnniqa as dq
from fiftyone_dnniqa.core.images import read_image
from fiftyone_dnniqa.core.video import video_info, write_video
from fiftyone_dnniqa.corruptions.episodes import Episode, episode_frames
from fiftyone_dnniqa.scoring.video_writer import video_metadata

from test_browser import PANEL_LABEL, _app_page, _dismiss, _open_operator, _save, _wait_for, sync_playwright  # noqa: F401

N, FPS, STEP = 30, 12, 3
#: per video: its photo and its episode (None: a clean video); the photos score high when clean
PLAN = [(0, Episode(13, 21, "dk_gaussian_blur", 4)), (7, Episode(4, 12, "low_light", 5)), (10, None)]
FIELD = "iqa_aligned"


@pytest.fixture(scope="module")
def videos(imagenet_files, tmp_path_factory):
    """The dataset (persistent, as the App's) and per video its true episode; shared by the
    module's tests (the first scores it from the Compute form)."""
    tmp_path = tmp_path_factory.mktemp("browser-video")
    ds = fo.Dataset(f"dnniqa-browser-video-{uuid.uuid4().hex[:8]}", persistent=True)
    rng = np.random.default_rng(0)
    box = [0.2, 0.2, 0.4, 0.4]
    try:
        truth = []
        for k, (photo, episode) in enumerate(PLAN):
            frames, _ = episode_frames(read_image(imagenet_files[photo]), N, size=(128, 96),
                                       episodes=[episode] if episode else [], seed=k)
            path = str(tmp_path / f"clip{k}.mp4")
            write_video(path, frames, fps=FPS, codec="libx264")
            sample = fo.Sample(filepath=path, metadata=video_metadata(video_info(path), path))
            for fn in range(1, N + 1):  # the detector misses the box mostly inside the episode
                missed = rng.random() < (0.8 if episode and fn in episode else 0.1)
                sample.frames[fn] = fo.Frame(
                    gt=fo.Detections(detections=[fo.Detection(label="car", bounding_box=box)]),
                    pred=fo.Detections(detections=[] if missed else [
                        fo.Detection(label="car", bounding_box=box, confidence=0.9)]))
            ds.add_sample(sample)
            truth.append((sample.id, episode))
        ds.evaluate_detections("frames.pred", gt_field="frames.gt", eval_key="det")
        yield ds, truth
    finally:
        ds.delete()


def _count(page):
    """The App's count above the grid ("3 samples"; "1 clip" on a clips view)."""
    texts = page.get_by_text(re.compile(r"^\s*\d[\d,]* (samples?|clips?)\s*$")).all_inner_texts()
    return int(texts[0].split()[0].replace(",", "")) if texts else None


def _views_requested(page):
    """The view stages of every GraphQL query the App sends (the grid's included)."""
    views = []

    def record(request):
        if request.method == "POST" and "graphql" in request.url:
            try:
                view = (json.loads(request.post_data or "{}").get("variables") or {}).get("view")
            except ValueError:
                return
            if view:
                views.append(view)

    page.on("request", record)
    return views


def _score_from_the_form(page, url, ds, tmp_path):
    """Compute image quality from the form: the default metric (aligned), every STEP-th frame."""
    _open_operator(page, url, ds.name, "Compute image quality", "Compute image quality").first.click(timeout=20_000)
    page.get_by_text("Score every Nth frame", exact=True).first.wait_for(timeout=60_000)
    step = page.locator("xpath=//*[normalize-space(text())='Score every Nth frame']/following::input[1]").first
    assert _wait_for(lambda: step.input_value() == str(round(FPS / 3)), 30), step.input_value()  # from the frame rate
    step.fill(str(STEP))
    page.wait_for_timeout(1500)  # the App settles the params before Execute reads them
    _save(page, tmp_path, "video_1_form.png")
    page.get_by_role("button", name="Execute").click(timeout=30_000)
    page.get_by_text("Frames scored").first.wait_for(timeout=240_000)
    _save(page, tmp_path, "video_2_result.png")
    page.get_by_role("button", name="Done").click(timeout=20_000)


def _point(content, sample_id, frame):
    """The centre of the timeline's point of ``frame`` of video ``sample_id``: the quality
    line holding it, as plotly holds the traces (their points carry the video and frame)."""
    plot = content.locator(".js-plotly-plot").first
    trace, index = plot.evaluate(
        "(gd, id) => { const t = gd.data.findIndex(d => d.mode === 'lines+markers' && d.ids.includes(id));"
        " return [t, t < 0 ? -1 : gd.data[t].ids.indexOf(id)]; }", json.dumps([sample_id, frame]))
    assert trace >= 0, (sample_id, frame)
    box = plot.locator(".scatterlayer .trace").nth(trace).locator(".points path").nth(index).bounding_box()
    return box["x"] + box["width"] / 2, box["y"] + box["height"] / 2


def test_the_timeline_of_a_video_dataset_and_a_click_on_a_dip(sync_playwright, videos, app_server, tmp_path):
    url, log_path = app_server
    ds, truth = videos
    with _app_page(sync_playwright, tmp_path, log_path, "video_panel_failure.png") as (page, errors):
        t = [time.perf_counter()]
        _score_from_the_form(page, url, ds, tmp_path)
        t.append(time.perf_counter())
        ds.reload()
        sampled = list(range(1, N + 1, STEP))
        assert ds.values(f"frames.{FIELD}", unwind=True).count(None) == 3 * (N - len(sampled))
        assert [fn for fn, q in zip(ds.values("frames.frame_number", unwind=True),
                                    ds.values(f"frames.{FIELD}", unwind=True)) if q is not None] == sampled * 3

        views = _views_requested(page)
        page.locator('[data-cy="new-panel-btn"]:visible').first.click(timeout=20_000)
        page.get_by_text(PANEL_LABEL, exact=True).first.click(timeout=20_000)
        content = page.locator('[data-cy="panel-content-quality_vs_performance"]')
        content.locator("svg text", has_text=f"{FIELD} of the sampled frames over time").first \
            .wait_for(timeout=120_000)
        content.get_by_text(re.compile(r"^3 videos in the view, 30 sampled frames scored")).wait_for(timeout=60_000)
        page.wait_for_timeout(1000)  # plotly lays the points out
        _dismiss(page)
        _save(page, tmp_path, "video_3_timeline.png")
        t.append(time.perf_counter())

        # a point of the blur episode's dip
        sid, episode = truth[0]
        dip = next(f for f in sampled if f in episode)
        x, y = _point(content, sid, dip)
        page.mouse.move(x, y)
        page.wait_for_timeout(300)
        page.mouse.click(x, y)
        assert _wait_for(lambda: _count(page) == 1, 60), _count(page)
        clip = fo.DatasetView._build(ds, next(v for v in reversed(views) if "ToClips" in json.dumps(v)))
        assert len(clip) == 1 and clip.values("sample_id") == [sid]
        (first, last), = clip.values("support")
        assert episode.start <= first < episode.start + STEP and episode.end - STEP < last <= episode.end
        content.get_by_text(re.compile(rf"^1 clip in the grid \(frames {first}-{last} of clip0\.mp4\)")) \
            .wait_for(timeout=60_000)
        _save(page, tmp_path, "video_4_clip.png")
        t.append(time.perf_counter())

        content.get_by_role("button", name="Back to the view before the drill-down").click(timeout=30_000)
        assert _wait_for(lambda: _count(page) == 3, 60), _count(page)
        content.get_by_text(re.compile(r"^3 videos in the view, 30 sampled frames scored")).wait_for(timeout=60_000)
        assert content.get_by_role("button", name="Back to the view before the drill-down").count() == 0
        page.wait_for_timeout(1000)  # plotly lays the points out
        _save(page, tmp_path, "video_5_back.png")
        assert not [e for e in errors if "entry is loading" not in e], errors
    print("\nseconds: form to scores {:.1f}, panel with its timeline {:.1f}, click to clip {:.1f}".format(
        *np.diff(t)))


def _timeline_of(content):
    """The timeline's quality lines as plotly holds them: ``(video id, frames, x)`` per line."""
    plot = content.locator(".js-plotly-plot").first
    lines = plot.evaluate("gd => gd.data.filter(d => d.mode === 'lines+markers').map(d => [d.ids, d.x])")
    return [(json.loads(ids[0])[0], [json.loads(i)[1] for i in ids], x) for ids, x in lines]


def _shows_only(content, sid):
    """True once the timeline plots video ``sid`` alone (read again while the App re-renders)."""
    try:
        lines = _timeline_of(content)
    except Exception:  # the plot is being replaced
        return False
    return [line[0] for line in lines] == [sid]


def test_the_panel_in_the_sample_viewer_follows_the_video(sync_playwright, videos, app_server, tmp_path):
    """Open a scored video in the sample viewer (the modal): the panel's tab there plots that
    video's quality over time in seconds (12 fps: frame n at (n - 1) / 12 s), beside the
    player; the viewer's next arrow moves the panel to the next video, writing no workspace
    (as the grid's panel, issue 28); a click on a dip closes the viewer and the grid shows
    the episode's clip."""
    url, log_path = app_server
    ds, truth = videos
    ds.reload()
    if not ds.has_frame_field(FIELD):  # run alone: scored here rather than from the form
        dq.compute_quality(ds, "aligned", frame_step=STEP, progress=False, num_workers=0)
    sampled = list(range(1, N + 1, STEP))
    with _app_page(sync_playwright, tmp_path, log_path, "video_modal_failure.png") as (page, errors):
        t = [time.perf_counter()]
        views = _views_requested(page)
        page.goto(f"{url}/datasets/{ds.name}", wait_until="domcontentloaded")
        page.locator('[data-cy="looker"]').first.wait_for(timeout=60_000)
        page.wait_for_timeout(1500)  # the App's "Explore Enterprise" popover comes, and covers the grid
        _dismiss(page)
        page.locator('[data-cy="looker"]').first.click(timeout=60_000)  # the grid's first video: clip0
        modal = page.locator("#modal")
        modal.locator('[data-cy="panel-tab-quality_vs_performance"]').click(timeout=60_000)
        modal.locator('[title="Split horizontally"]').first.click(timeout=30_000)  # the player beside the panel
        content = modal.locator('[data-cy="panel-content-quality_vs_performance"]')
        content.get_by_text(re.compile(r"^clip0\.mp4, the video open in the sample viewer: 10 frames scored in "
                                       rf"{FIELD} \(every 3rd frame at 12 fps\); 1 low-quality segment ")) \
            .wait_for(timeout=120_000)
        assert _wait_for(lambda: _shows_only(content, truth[0][0]), 60)
        (_, frames, x), = _timeline_of(content)
        assert frames == sampled and x == pytest.approx([(f - 1) / FPS for f in sampled])
        assert content.locator("svg text", has_text="time (s)").count() == 1
        t.append(time.perf_counter())

        writes = []  # the App's workspace writes: none while the panel follows the viewer
        page.on("request", lambda r: writes.append(r.post_data) if r.method == "POST" and
                "setSpaces" in (r.post_data or "") else None)
        modal.locator('[data-cy="nav-right-button"]').click(timeout=30_000)
        sid, episode = truth[1]
        assert _wait_for(lambda: _shows_only(content, sid), 60), _timeline_of(content)
        content.get_by_text(re.compile(r"^clip1\.mp4, the video open in the sample viewer")).wait_for(timeout=60_000)
        page.wait_for_timeout(1000)  # plotly lays the points out
        _dismiss(page)
        _save(page, tmp_path, "video_6_sample_viewer.png")
        assert writes == [], writes
        t.append(time.perf_counter())

        dip = next(f for f in sampled if f in episode)
        px, py = _point(content, sid, dip)
        page.mouse.move(px, py)
        page.wait_for_timeout(300)
        page.mouse.click(px, py)
        assert _wait_for(lambda: _count(page) == 1 and not modal.locator('[data-cy="modal-content"]').count(), 60)
        clip = fo.DatasetView._build(ds, next(v for v in reversed(views) if "ToClips" in json.dumps(v)))
        assert len(clip) == 1 and clip.values("sample_id") == [sid]
        (first, last), = clip.values("support")
        assert episode.start <= first < episode.start + STEP and episode.end - STEP < last <= episode.end
        grid = page.locator('[data-cy="panel-content-quality_vs_performance"]')  # the grid's panel now
        grid.get_by_text(re.compile(rf"^1 clip in the grid \(frames {first}-{last} of clip1\.mp4\)")) \
            .wait_for(timeout=60_000)
        grid.get_by_role("button", name="Back to the view before the drill-down").wait_for(timeout=30_000)
        page.wait_for_timeout(1000)  # plotly lays the points out
        _save(page, tmp_path, "video_7_clip_from_the_viewer.png")
        assert not [e for e in errors if "entry is loading" not in e], errors
        t.append(time.perf_counter())
    print("\nseconds: viewer with the panel's timeline {:.1f}, next video {:.1f}, click to clip {:.1f}".format(
        *np.diff(t)))
