"""The statistics cache of the "Quality vs Performance" panel: a small LRU keyed by the
view, its latest modification, the fields, the target and the panel's settings."""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict

import fiftyone as fo
from bson import json_util

from ..analysis.panel_stats import BINS, HIST_BINS, MAX_POINTS, N_BOOT

__all__ = ["CACHE", "cache_key"]


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
