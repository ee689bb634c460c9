"""The statistics cache of the "Quality vs Performance" panel: a small LRU keyed by the
view, its latest modification, the fields, the target and the panel's settings; and
:class:`PanelState`, which keeps the App's own events (opening, view and filter changes)
from writing the App's panel state."""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict

import fiftyone as fo
from bson import json_util

from ..analysis.panel_stats import BINS, HIST_BINS, MAX_POINTS, N_BOOT

__all__ = ["LRU", "CACHE", "cache_key", "PanelState", "SHOWN", "QUIET_EVENTS", "INPUTS"]


class LRU:
    """A small thread-safe LRU (the App runs callbacks in threads): statistics, what each
    panel decided, drill-downs."""

    def __init__(self, size=16):
        self.size = size
        self._d: "OrderedDict[str, dict]" = OrderedDict()
        self._lock = threading.Lock()
        self.hits = self.misses = 0

    def get(self, key):
        with self._lock:
            v = self._d.get(key)
            if v is None:
                self.misses += 1
                return None
            self._d.move_to_end(key)
            self.hits += 1
            return v

    def put(self, key, value):
        with self._lock:
            self._d[key] = value
            self._d.move_to_end(key)
            while len(self._d) > self.size:
                self._d.popitem(last=False)

    def discard(self, key):
        with self._lock:
            self._d.pop(key, None)

    def clear(self):
        with self._lock:
            self._d.clear()
            self.hits = self.misses = 0


#: statistics computed by the panel, keyed by :func:`cache_key`
CACHE = LRU()


def cache_key(view, fields, eval_key, kind) -> str:
    """A key for the statistics of ``view``: dataset, view stages, the latest sample
    modification in the view and the dataset's (so edits and re-runs invalidate it),
    sample count, fields, target and the panel's settings. The plotted field is not
    part of it: the statistics hold every field's plots."""
    ds = view._root_dataset
    try:
        n, stamp = view.aggregate([fo.Count(), fo.Max("last_modified_at")])
    except Exception:  # pragma: no cover - datasets without last_modified_at
        n, stamp = view.count(), None
    stages = [{k: v for k, v in st.items() if k != "_uuid"} for st in view._serialize()]
    parts = [ds._doc.id, stages, n, stamp, getattr(ds._doc, "last_modified_at", None),
             list(fields or []), eval_key, kind, N_BOOT, BINS, HIST_BINS, MAX_POINTS]
    raw = json_util.dumps(parts, sort_keys=True)
    return hashlib.sha1(raw.encode()).hexdigest()


#: the events the App fires by itself: a panel opening, a change of view or of sidebar filters,
#: a sample opened, changed or closed in the sample viewer
QUIET_EVENTS = frozenset({"on_load", "on_change_view", "on_change_current_sample"})
#: the panel's inputs: the user sets them in the App's form (which writes them into the App's
#: panel state); the values the panel resolved go to panel data, which the form shows over it
INPUTS = ("mode", "object_run", "target", "fields", "field", "slice_by")
#: per panel id, what the panel last decided (read over the App's panel state)
SHOWN = LRU(size=64)


class PanelState:
    """The panel's state as the panel reads and writes it.

    Why (FiftyOne 1.22, traced in Chromium): the App keeps a panel's state inside its
    workspace, so every write of it (``patch_panel_state``, or the App's form writing an
    input's ``default`` that differs from what it shows) is a workspace change, which
    reloads the dataset page; that reload drops the user's sidebar filters and fires
    ``on_change_view`` (three times: view, filters, extended), whose answer wrote again: a
    loop that reset the grid every few seconds. So an event the App fires by itself
    (:data:`QUIET_EVENTS`) writes no App state: what it decides is kept in :data:`SHOWN`
    for this panel, and :meth:`shown_inputs` goes to panel data (the App's own memory,
    never in the workspace), and the inputs carry no ``default``. An event from the
    user's input writes the App's state too, as the form itself does.

    Reading: an input's value is the App's (the form wrote the user's latest choice there)
    where it holds one, else the panel's; any other key, the panel's decision first.
    """

    def __init__(self, ctx):
        self._state = ctx.panel.state
        self._id = ctx.panel.id or "panel"
        self.quiet = ctx.params.get("__method__") in QUIET_EVENTS

    def _memo(self) -> dict:
        return SHOWN.get(self._id) or {}

    def get(self, key, default=None):
        if key in INPUTS and self._state.get(key) is not None:
            return self._state.get(key)
        memo = self._memo()
        return memo[key] if key in memo else self._state.get(key, default)

    def set(self, key, value=None):
        update = dict(key) if isinstance(key, dict) else {key: value}
        SHOWN.put(self._id, {**self._memo(), **update})
        if not self.quiet:
            self._state.set(update)

    def keep(self, key, value):
        """Keeps ``value`` for this panel only (the App never sees it)."""
        SHOWN.put(self._id, {**self._memo(), key: value})

    def shown_inputs(self) -> dict:
        """The inputs' values as the form must show them (for panel data)."""
        return {k: self.get(k) for k in INPUTS}
