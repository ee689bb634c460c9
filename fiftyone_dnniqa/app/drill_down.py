"""The panel's drill-downs: a click sets the App's view, and until the user changes the view
(or presses Back) the panel keeps describing the view the drill-down started from, with the
selection highlighted. Shared by the panel's image, object and video modes."""

from __future__ import annotations

import fiftyone as fo
from bson import json_util

from .panel_cache import LRU, PanelState

__all__ = ["DRILLS", "view_stages", "context_view", "origin_view", "event_args", "drill_down", "back",
           "leave_viewer"]


#: each drill-down by the view it set (its dataset and stages): the panel in the sample
#: viewer and the one beside the grid are two panels with two states (FiftyOne 1.22), so a
#: drill-down that one starts, the other reads from here while the App's view is the one set
DRILLS = LRU(size=64)


def _drill_key(ctx, stages: str) -> str:
    return f"{ctx.dataset.name}\n{stages}"


def view_stages(view) -> str:
    """A view's stages as text, without the ids the App may renew."""
    return json_util.dumps([{k: v for k, v in st.items() if k != "_uuid"} for st in view._serialize()],
                           sort_keys=True)


def context_view(ctx):
    """During a drill-down, the view it started from and the drill-down's record, else
    ``(None, None)`` (also when the user has since moved to another view, which ends the
    drill-down)."""
    state, stages = PanelState(ctx), view_stages(ctx.view)
    base, drill = state.get("base_view"), state.get("drill")
    if not base or not drill:  # one the other surface's panel started, for the App's view
        base, drill = DRILLS.get(_drill_key(ctx, stages)) or (None, None)
        if not base:
            return None, None
        state.set({"base_view": base, "drill": drill})
    elif stages != drill.get("stages"):
        state.set("base_view", None)
        state.set("drill", None)
        return None, None
    return fo.DatasetView._build(ctx.dataset, json_util.loads(base)), drill


def origin_view(ctx):
    """The view the panel describes: the drill-down's start, else the App's view."""
    view, _ = context_view(ctx)
    return ctx.view if view is None else view


def event_args(ctx) -> dict:
    """Plotly event arguments: the App sends them at the top level of the params."""
    args = dict(ctx.params.get("event_args") or {})
    args.update(ctx.params)
    return args


def leave_viewer(ctx):
    """Closes the App's sample viewer, if open, before a drill-down or Back changes the view:
    FiftyOne 1.22 fails ("sample with id ... not found") when the view changes under an open
    sample that the new view lacks (seen in Chromium)."""
    if ctx.current_sample:
        ctx.ops.close_sample()


def drill_down(ctx, view, highlight, label, origin=None):
    """Sets the App's view to ``view`` (the sample viewer closed first); keeps the view it
    came from (for the plots, which highlight ``highlight``, and the Back button) and
    ``label`` (what the grid shows)."""
    leave_viewer(ctx)
    state = PanelState(ctx)
    if not state.get("base_view"):
        state.set("base_view", json_util.dumps((origin or ctx.view)._serialize()))
    drill = {"stages": view_stages(view), "highlight": highlight, "label": label}
    state.set("drill", drill)
    DRILLS.put(_drill_key(ctx, drill["stages"]), (state.get("base_view"), drill))
    ctx.ops.set_view(view)


def back(ctx):
    """Ends the drill-down: the App's view goes back to where it started (the sample viewer
    closed first)."""
    leave_viewer(ctx)
    state = PanelState(ctx)
    stages = state.get("base_view")
    drill = state.get("drill")
    if drill:
        DRILLS.discard(_drill_key(ctx, drill["stages"]))  # ended, for every surface
    state.set("base_view", None)
    state.set("drill", None)
    if stages:
        ctx.ops.set_view(fo.DatasetView._build(ctx.dataset, json_util.loads(stages)))
