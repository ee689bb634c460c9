"""Performance and quality per slice of a view: per tag, per ground-truth class.

One table row per slice: its size, the target (accuracy...) with its interval, the mean
quality and, within the slice, the correlation of quality with the target. The panel
and the report show these rows.
"""

from __future__ import annotations

from typing import List, Optional

import numpy as np

from .fields import field_direction
from .grouping import group_table
from .targets import get_target, pick_target, to_floats

__all__ = ["NO_TAGS", "SLICES", "available_slices", "slice_labels", "slice_table"]

#: what a view can be broken down by, and how the panel names it
SLICES = {"tags": "sample tags", "class": "ground-truth class"}
#: the slice of samples without tags
NO_TAGS = "(no tags)"


def available_slices(view, eval_key: Optional[str] = None) -> List[str]:
    """The slices that make sense for ``view`` and its evaluation: tags always; the
    ground-truth class for classification evaluations (a detection image has many)."""
    out = ["tags"]
    try:
        ti = pick_target(view, eval_key, None)
    except ValueError:
        return out
    if ti.type == "classification" and ti.gt_field:
        out.append("class")
    return out


def _align(ids_from, ids_to, values):
    pos = {i: k for k, i in enumerate(ids_from)}
    return np.array([values[pos[i]] if i in pos else None for i in ids_to], dtype=object)


def slice_labels(view, by: str, ids, eval_key: Optional[str] = None) -> np.ndarray:
    """Each sample's slice (aligned with ``ids``): its tags joined by ``", "`` (``NO_TAGS``
    without tags), or its ground-truth class."""
    if by == "tags":
        sids, tags = view.values(["id", "tags"])
        labels = [", ".join(sorted(t)) if t else NO_TAGS for t in tags]
    elif by == "class":
        ti = pick_target(view, eval_key, None)
        if ti.type != "classification" or not ti.gt_field:
            raise ValueError(f"evaluation '{ti.eval_key}' is not a classification: no class per sample")
        sids, labels = view.values(["id", f"{ti.gt_field}.label"])
    else:
        raise ValueError(f"unknown slice '{by}'; choose from {', '.join(SLICES)}")
    return _align(sids, ids, labels)


def slice_table(view, field: str, by: str, eval_key: Optional[str] = None, kind: Optional[str] = None,
                higher_is_better: Optional[bool] = None, n_boot: int = 200, confidence: float = 0.95,
                min_n: int = 2) -> List[dict]:
    """One row per slice of ``view`` (``by``: ``"tags"`` or ``"class"``) with at least
    ``min_n`` samples, worst target first: ``slice``, ``n``, ``target`` (mean with its
    Wilson or t interval, as text), ``mean_quality`` and ``within`` (Spearman of
    ``field`` with the target inside the slice, with its bootstrap interval)."""
    ti = pick_target(view, eval_key, kind)
    kind = kind or ti.default_kind
    ids, target = get_target(view, ti.eval_key, kind)
    sids, q = view.values(["id", field])
    quality = to_floats(_align(sids, ids, q))
    groups = slice_labels(view, by, ids, ti.eval_key)
    rows = group_table(quality, target, groups, higher_is_better=field_direction(view, field, higher_is_better),
                       n_boot=n_boot, confidence=confidence, min_n=min_n)
    rows.sort(key=lambda r: (r.mean_target, str(r.group)))
    out = []
    for r in rows:
        row = r.to_row()
        out.append({"slice": row["group"], "n": row["n"], "target": row["mean target"],
                    "mean_quality": row["mean quality"], "within": row.get("spearman", "")})
    return out
