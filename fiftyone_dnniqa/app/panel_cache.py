"""The statistics cache of the "Quality vs Performance" panel: a small LRU keyed by the
view, its latest modification, the fields, the target and the panel's settings; and
:class:`PanelState`, which keeps the App's own events (opening, view and filter changes)
from writing the panel's state."""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict

import fiftyone as fo
from bson import json_util

from ..analysis.panel_stats import BINS, HIST_BINS, MAX_POINTS, N_BOOT

__all__ = ["CACHE", "cache_key", "PanelState", "SHOWN", "QUIET_EVENTS"]


class _LRU:
    """A small thread-safe LRU of statistics (the App runs callbacks in threads)."""

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

    def clear(self):
        with self._lock:
            self._d.clear()
            self.hits = self.misses = 0


#: statistics computed by the panel, keyed by :func:`cache_key`
CACHE = _LRU()


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


#: the events the App fires by itself: a panel opening, a change of view or of sidebar filters
QUIET_EVENTS = frozenset({"on_load", "on_change_view"})
#: per panel id, what those events computed (read over the App's panel state)
SHOWN = _LRU(size=64)


class PanelState:
    """The panel's state as the panel reads and writes it.

    An event the App fires by itself (:data:`QUIET_EVENTS`) writes nothing to the App's
    panel state: in the App (FiftyOne 1.22) a panel-state write answering a view change
    makes the App reset its view, and the user's sidebar filters with it, seconds later
    (and the reset fires the next view change: a loop; measured in Chromium with a panel
    whose on_change_view only sets one state key). This is necessary, not sufficient: the
    panel's data patch (or its computation) still resets the filters in the browser test.
    Those events keep what they
    computed in :data:`SHOWN`, for this panel, which reads over the App's state; an event
    from the user's own input writes the App's state as before and drops those keys from
    :data:`SHOWN`.
    """

    def __init__(self, ctx):
        self._state = ctx.panel.state
        self._id = ctx.panel.id or "panel"
        self.quiet = ctx.params.get("__method__") in QUIET_EVENTS

    def _memo(self) -> dict:
        return SHOWN.get(self._id) or {}

    def get(self, key, default=None):
        memo = self._memo()
        return memo[key] if key in memo else self._state.get(key, default)

    def set(self, key, value=None):
        update = dict(key) if isinstance(key, dict) else {key: value}
        memo = dict(self._memo())
        if self.quiet:
            memo.update(update)
        else:
            self._state.set(update)
            for k in update:
                memo.pop(k, None)
        SHOWN.put(self._id, memo)

    def app_state(self, key, default=None):
        """What the App's own panel state holds for ``key`` (not the memo)."""
        return self._state.get(key, default)
