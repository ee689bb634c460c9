"""The "Quality vs Performance" panel on video datasets: the quality of the sampled frames
over time, for one video or the view's worst, beside the frame evaluation's outcomes and the
low-quality segments (:func:`~fiftyone_dnniqa.analysis.video_targets.video_timelines`); a
click on a point shows its clip (the segment holding the frame, else a few sampled steps
around it) as the App's view; the view's worst videos as a table. While a video is open in
the App's sample viewer (the modal, where the panel also lives) the panel plots that video
and follows the viewer from video to video; a click there closes the viewer, then shows the
clip in the grid (FiftyOne 1.22 has no operator that seeks the viewer's player: its
``set_frame_number`` moves only the image-sequence timeline, checked in Chromium).

Like the image mode, the App's own events write no panel state and the inputs carry no
default (:class:`~.panel_cache.PanelState`); the plot's traces go in its view."""

from __future__ import annotations

import json
from typing import Optional, Tuple

import fiftyone.operators.types as types

from ..analysis.results import fmt
from ..analysis.video import DEFAULT_MIN_LENGTH, find_segments
from ..analysis.video_targets import (TIMELINE_VIDEOS, clip_support, clip_view, current_video, frame_evaluations,
                                      timeline_videos, video_quality_fields, video_timelines, worst_video_rows)
from .drill_down import context_view, drill_down, event_args, origin_view
from .panel_cache import CACHE, PanelState, cache_key
from .panel_tables import unwrapped
from .plots import timeline_figure

__all__ = ["VIEW_VIDEOS", "VideoMode", "video_choices", "video_data", "video_update", "render_video",
           "timeline_click", "modal_video"]

#: the video input's choice for "the view's worst videos" (else a video's id)
VIEW_VIDEOS = "view"
#: videos listed in the worst-videos table (and offered one by one)
WORST_ROWS = 10


def video_choices(dataset) -> dict:
    """The frame quality fields and frame evaluations of a video dataset; empty when the
    panel has no video mode for it (images, or videos without frame scores)."""
    if dataset.media_type != "video":
        return {}
    fields = video_quality_fields(dataset)
    return {"fields": fields, "evals": [t.eval_key for t in frame_evaluations(dataset)]} if fields else {}


def videos_of(view):
    """The videos behind ``view``: the view itself, or for a clips view the videos it clips."""
    if getattr(view, "_is_clips", False):
        return view._source_collection.select(view.distinct("sample_id"))
    return view


def video_data(view, field: str, video: Optional[str] = None) -> dict:
    """What the video mode shows for ``view``: the timeline of ``video`` (or the view's
    worst videos), the worst videos' rows, and the counts of its header."""
    found = find_segments(view, field)
    timeline = video_timelines(view, field, timeline_videos(view, field, video), found=found)
    return {"timeline": timeline, "rows": worst_video_rows(view, field, found, k=WORST_ROWS),
            "n_videos": found.n_videos, "n_frames": found.n_frames, "n_segments": len(found.segments)}


def _row_cells(row: dict) -> dict:
    return {"video": row["name"], "low_share": fmt(row["low_share"]), "mean": fmt(row["mean"]),
            "min": fmt(row["min"]), "frames": row["frames"], "segments": row["segments"]}


def modal_video(ctx) -> Optional[str]:
    """The video open in the App's sample viewer (the modal), None while it is closed: the
    panel then follows it, in the modal and in the grid beneath."""
    return current_video(ctx.view, ctx.current_sample)


def video_update(ctx, choices: Optional[dict] = None) -> Tuple[dict, dict, dict]:
    """``(state update, panel data, figures)`` of the video mode for the App's view (during
    a drill-down, the view it started from, the clip shown outlined): the timeline of the
    video open in the sample viewer, else of the video input's choice. ``choices``: the
    dataset's :func:`video_choices`, where the caller has them."""
    state, ch = PanelState(ctx), choices or video_choices(ctx.dataset)
    field = state.get("video_field") if state.get("video_field") in ch["fields"] else ch["fields"][0]
    video = state.get("video") or VIEW_VIDEOS
    opened = modal_video(ctx)
    base, drill = context_view(ctx)
    view = videos_of(ctx.view if base is None else base)
    update = {"mode": "video", "summary": None, "video_field": field, "video": video, "shown_drill": drill,
              "drill_summary": {"n": len(ctx.view), "label": drill["label"]} if drill else None}
    plotted = opened or (None if video == VIEW_VIDEOS else video)
    key = cache_key(view, [field], None, f"video:{plotted or VIEW_VIDEOS}")
    data = CACHE.get(key)
    if data is None:
        try:
            data = video_data(view, field, plotted)
        except ValueError as e:
            return {**update, "video_summary": None, "video_message": str(e)}, {}, {}
        CACHE.put(key, data)
    tl = data["timeline"]
    opened = opened if [v["id"] for v in tl["videos"]] == [opened] else None
    figure = timeline_figure(tl, highlight=(drill or {}).get("highlight"), in_viewer=bool(opened))
    summary = {k: data[k] for k in ("n_videos", "n_frames", "n_segments")}
    summary.update({"field": field, "level": tl["level"], "higher_is_better": tl["higher_is_better"],
                    "eval_key": tl["eval_key"], "layout": figure["layout"] if figure else None,
                    "opened": _opened_summary(tl["videos"][0]) if opened else None,
                    "shown": [v["name"] for v in tl["videos"]],
                    "clips": {v["id"]: {k: v[k] for k in ("name", "segments", "step", "last_frame")}
                              for v in tl["videos"]},
                    "choices": [(r["id"], r["name"]) for r in data["rows"]]})
    return ({**update, "video_summary": summary, "video_message": None},
            {"worst_videos": unwrapped([_row_cells(r) for r in data["rows"]]), "video_field": field, "video": video},
            {"timeline": figure["data"] if figure else []})


def _opened_summary(v: dict) -> dict:
    """What the header says of the video open in the sample viewer."""
    return {"id": v["id"], "name": v["name"], "frames": len(v["frames"]), "segments": len(v["segments"]),
            "step": v["step"], "frame_rate": v["frame_rate"]}


def timeline_click(args: dict, clips: dict) -> Optional[Tuple[str, list, str]]:
    """``(video id, clip support, video name)`` of a clicked timeline point (its id names the
    video and frame; ``clips``: the shown videos' segments, steps and last frames); None
    when the click names no shown video."""
    try:
        sample_id, frame = json.loads(args.get("id") or "")
        frame = int(frame)
    except (TypeError, ValueError):
        return None
    video = clips.get(sample_id)
    if video is None:
        return None
    return sample_id, clip_support(video, frame), video["name"]


class VideoMode:
    """The video mode's events, mixed into the panel (which calls ``_refresh``)."""

    def on_change_video_field(self, ctx):
        PanelState(ctx).set("video_field", ctx.params.get("value"))
        self._refresh(ctx, force=True)

    def on_change_video(self, ctx):
        PanelState(ctx).set("video", ctx.params.get("value") or VIEW_VIDEOS)
        self._refresh(ctx, force=True)

    def on_click_timeline(self, ctx):
        summary = PanelState(ctx).get("video_summary") or {}
        clicked = timeline_click(event_args(ctx), summary.get("clips") or {})
        if clicked is None:
            ctx.ops.notify("Could not tell which frame was clicked", variant="warning")
            return
        sample_id, support, name = clicked
        origin = videos_of(origin_view(ctx))
        view = clip_view(origin, sample_id, support)
        drill_down(ctx, view, {"id": sample_id, "support": support},
                   f"frames {support[0]}-{support[1]} of {name}", origin)


def _header(panel, state, s):
    worse = "below" if s["higher_is_better"] else "above"
    low = f"at least {DEFAULT_MIN_LENGTH} sampled frames {worse} {fmt(s['level'])}, the run's level"
    segments = f"**{s['n_segments']:,}** low-quality segments ({low})"
    drill, opened = state.get("drill_summary"), s.get("opened")
    if opened:
        rate = f" at {opened['frame_rate']:.4g} fps" if opened["frame_rate"] else " (frame rate unknown)"
        n_seg = opened["segments"]
        panel.md(f"**{opened['name']}**, the video open in the sample viewer: **{opened['frames']:,}** frames "
                 f"scored in `{s['field']}` ({_every(opened['step'])}{rate}); **{n_seg}** low-quality "
                 f"segment{'' if n_seg == 1 else 's'} ({low}).", name="video_header")
    elif drill:
        panel.md(f"**{drill['n']:,}** clip in the grid ({drill['label']}), outlined on the timeline. The "
                 f"panel describes the **{s['n_videos']:,}** videos of the view before the drill-down: "
                 f"{segments}.", name="video_header")
    else:
        panel.md(f"**{s['n_videos']:,}** videos in the view, **{s['n_frames']:,}** sampled frames scored "
                 f"in `{s['field']}`; {segments}.", name="video_header")


def _every(step: int) -> str:
    """1 -> "every frame", 3 -> "every 3rd frame", 11 -> "every 11th frame"."""
    if step <= 1:
        return "every frame"
    suffix = "th" if 10 <= step % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(step % 10, "th")
    return f"every {step}{suffix} frame"


def render_video(panel, state, ch: dict, handlers):
    """The video mode's inputs, plot and table (``handlers``: the panel, for its events)."""
    summary = state.get("video_summary")
    dd = types.DropdownView()
    for f in ch["fields"]:
        dd.add_choice(f, label=f)
    panel.enum("video_field", dd.values(), label="Frame quality run", view=dd,
               on_change=handlers.on_change_video_field)
    if not summary:
        panel.view("video_message", types.Notice(label=state.get("video_message") or "Computing..."))
        return
    _header(panel, state, summary)
    if not summary.get("opened"):  # the sample viewer picks the video while it is open
        videos = types.DropdownView()
        videos.add_choice(VIEW_VIDEOS, label=f"the view's worst videos (up to {TIMELINE_VIDEOS})")
        for sid, name in summary["choices"]:
            videos.add_choice(sid, label=name)
        panel.enum("video", videos.values(), label="Video to plot", view=videos,
                   on_change=handlers.on_change_video)
    if summary.get("layout"):
        panel.plot("timeline", data=(state.get("figures") or {}).get("timeline"), layout=summary["layout"],
                   config={"displaylogo": False, "responsive": True},
                   height=140 + 150 * len(summary["shown"]), on_click=handlers.on_click_timeline)
    if summary.get("opened"):
        return
    table = types.TableView()
    for c, label in (("video", "Video"), ("low_share", "Low share"), ("mean", "Mean"), ("min", "Min"),
                     ("frames", "Frames scored"), ("segments", "Segments")):
        table.add_column(c, label=label)
    panel.list("worst_videos", types.Object(), view=table, label="Worst videos of the view (by share of low frames)")
