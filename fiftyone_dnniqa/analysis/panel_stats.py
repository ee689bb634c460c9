"""The statistics of the "Quality vs Performance" panel, as plain functions (no App).

* :func:`panel_statistics` turns a view, its quality fields and an evaluation target
  into a JSON-able dict: the ranking of the fields by how well they track the target
  (:func:`~fiftyone_dnniqa.analysis.correlation.rank_fields`) and, for every field, the
  target per quantile bin (:func:`~fiftyone_dnniqa.analysis.grouping.binned_performance`),
  the histogram for correct and wrong predictions and a subsample of (quality,
  confidence) points. Everything is read with two ``values()`` aggregations (the
  target, then the quality fields and the confidence together) and computed on numpy
  vectors: no per-sample loop, so a 100k-sample view takes seconds.
* :func:`bin_view` is the view a click on a bin selects; :func:`parse_bin_id` reads the
  id a plotted bin carries.
"""

from __future__ import annotations

import json
import math
import time
from typing import List, Optional, Sequence, Tuple

import numpy as np
import pandas as pd

import fiftyone as fo
from fiftyone import ViewField as F

from ..scoring.patch_plan import min_field_for
from .correlation import rank_fields
from .fields import field_higher_is_better, quality_fields
from .grouping import binned_performance
from .objects import object_quality_runs
from .targets import BINARY_KINDS, get_target, pick_target, to_floats

__all__ = [
    "NoQualityFieldsError", "panel_statistics", "bin_view", "bin_id", "parse_bin_id", "outcome_view", "quality_fields",
    "numeric_fields", "object_mean_fields", "rankable_fields", "TARGET_LABELS",
]

#: bootstrap resamples used by the panel (the library's default is 1000)
N_BOOT = 200
#: quantile bins of the accuracy-versus-quality curve
BINS = 10
#: bins of the correct/wrong histogram
HIST_BINS = 30
#: most points sent to the browser in the confidence scatter
MAX_POINTS = 5000

TARGET_LABELS = {
    "correct": "accuracy", "confidence": "confidence", "f1": "F1", "precision": "precision",
    "recall": "recall", "tp": "true positives", "fp": "false positives", "fn": "missed objects",
    "accuracy": "pixel accuracy",
}


class NoQualityFieldsError(ValueError):
    """The dataset has no quality scores to relate to performance."""


def no_quality_message() -> str:
    return ("No quality scores on this dataset yet: run 'Compute image quality' (operator "
            "compute_quality) first, or pick a numeric field to rank.")


def numeric_fields(samples) -> List[str]:
    """Top-level float fields that an evaluation did not write (candidates to rank)."""
    ds = samples._root_dataset
    evals = list(ds.list_evaluations())
    out = []
    for name in ds.get_field_schema(ftype=fo.FloatField):
        if any(name == k or name.startswith(k + "_") for k in evals):
            continue
        out.append(name)
    return out


def object_mean_fields(samples) -> List[str]:
    """The per-image aggregates that object runs write and that still exist: each run's
    mean over an image's scored objects (the run key), then their minimum (``<key>_min``).
    Quality of whole images in the panel's image mode even when only objects were scored."""
    ds = samples._root_dataset
    out = []
    for run in object_quality_runs(ds):
        out += [f for f in (run["key"], min_field_for(run["key"])) if ds.has_sample_field(f)]
    return out


def rankable_fields(samples) -> List[str]:
    """What the panel's image mode ranks by default: the image quality fields, then the
    per-image aggregates of the object runs (all there is after object runs only)."""
    qf = quality_fields(samples)
    return qf + [f for f in object_mean_fields(samples) if f not in qf]


def direction(samples, field) -> Tuple[bool, bool]:
    """(higher_is_better, known): from the field's quality run (for an object run's
    per-image minimum, that run's), else assumed True."""
    hib = field_higher_is_better(samples, field)
    if hib is None and field.endswith("_min"):
        hib = {min_field_for(r["key"]): r["higher_is_better"]
               for r in object_quality_runs(samples)}.get(field)
    return (True, False) if hib is None else (bool(hib), True)


def _finite_list(a) -> list:
    return [float(v) if math.isfinite(v) else None for v in np.asarray(a, float).tolist()]


def align_values(ids_from, ids_to, values):
    """``values`` (ordered like ``ids_from``) reordered like ``ids_to`` (NaN if absent)."""
    ids_from = np.asarray(ids_from)
    ids_to = np.asarray(ids_to)
    if len(ids_from) == len(ids_to) and np.array_equal(ids_from, ids_to):
        return values
    pos = pd.Index(ids_from).get_indexer(ids_to)
    out = np.full(len(ids_to), np.nan)
    ok = pos >= 0
    out[ok] = values[pos[ok]]
    return out


def _resolve_target(samples, eval_key, kind):
    """The :class:`~fiftyone_dnniqa.analysis.targets.TargetInfo` and kind to use.

    :func:`~fiftyone_dnniqa.analysis.targets.pick_target` chooses (the given evaluation,
    else the most recent one that gives ``kind``) and raises with the how-to, the
    evaluations found, the keys available or the targets the evaluation gives.
    """
    ti = pick_target(samples, eval_key, kind)
    return ti, kind or ti.default_kind


def _field_plots(q, target, conf, correct, ids, binary, bins, hist_bins, confidence,
                 max_points, seed):
    """Curve, histogram and scatter data of one quality vector."""
    curve = [b.to_dict() for b in binned_performance(q, target, bins=bins, strategy="quantile",
                                                     confidence=confidence)]
    histogram = None
    ok = np.isfinite(q) & np.isfinite(target)
    if binary and ok.any():
        qv, tv = q[ok], target[ok]
        edges = np.histogram_bin_edges(qv, bins=int(hist_bins))
        k = len(edges) - 1
        codes = np.clip(np.searchsorted(edges, qv, side="right") - 1, 0, k - 1)
        histogram = {
            "edges": _finite_list(edges),
            "correct": np.bincount(codes[tv == 1], minlength=k).tolist(),
            "wrong": np.bincount(codes[tv == 0], minlength=k).tolist(),
        }
    scatter = None
    if conf is not None:
        idx = np.flatnonzero(np.isfinite(q) & np.isfinite(conf))
        n_total = len(idx)
        if n_total > max_points:
            idx = np.sort(np.random.default_rng(seed).choice(idx, size=int(max_points), replace=False))
        scatter = {
            "ids": np.asarray(ids)[idx].astype(str).tolist(),
            "quality": _finite_list(q[idx]),
            "confidence": _finite_list(conf[idx]),
            "correct": None if correct is None else _finite_list(correct[idx]),
            "n_total": int(n_total),
            "n_shown": int(len(idx)),
        }
    return {"curve": curve, "histogram": histogram, "scatter": scatter}


def panel_statistics(view, fields: Optional[Sequence[str]] = None, eval_key: Optional[str] = None,
                     kind: Optional[str] = None, field: Optional[str] = None, bins: int = BINS,
                     hist_bins: int = HIST_BINS, n_boot: int = N_BOOT, confidence: float = 0.95,
                     max_points: int = MAX_POINTS, seed: int = 0) -> dict:
    """Everything the "Quality vs Performance" panel shows, as a JSON-able dict.

    Reads the target with :func:`~fiftyone_dnniqa.performance.get_target` and the quality
    fields (plus the prediction confidence of a classification) with one more ``values()``
    call; everything else is numpy on those vectors.

    Args:
        view: a dataset or view (its evaluation gives the target).
        fields: quality fields to rank (default: every quality run's field; with only
            object runs, their per-image means and minima).
        eval_key, kind: the target (see :func:`~fiftyone_dnniqa.performance.get_target`;
            default: the most recent evaluation and its default kind).
        field: the field whose plots are returned at the top level (default: the
            best-ranked); every field's plots are in ``per_field``.
        bins: quantile bins of the curve; hist_bins: bins of the histogram.
        n_boot, confidence, seed: bootstrap of the ranking's intervals.
        max_points: most (quality, confidence) pairs returned for a scatter (a
            reproducible random subsample when there are more).

    Returns:
        a dict with ``ranking`` (``FieldRank.to_dict()`` rows, best first), ``table``
        (display rows), and for ``field``: ``curve`` (``BinRow.to_dict()`` rows),
        ``histogram`` (binary targets: ``edges``, ``correct``, ``wrong`` counts; else
        None) and ``scatter`` (classification: ``ids``, ``quality``, ``confidence``,
        ``correct``, ``n_total``, ``n_shown``; else None); ``per_field`` holds those
        three for every field. Also what was used (``eval_key``, ``kind``, ``field``,
        ``fields``, ``higher_is_better``, counts) and ``timings``.

    Raises:
        NoEvaluationError: no usable evaluation.
        NoQualityFieldsError: no quality fields.
    """
    t0 = time.perf_counter()
    ti, kind = _resolve_target(view, eval_key, kind)
    fields = list(dict.fromkeys(fields)) if fields else rankable_fields(view)
    if field is not None and field not in fields:
        fields.append(field)
    if not fields:
        raise NoQualityFieldsError(no_quality_message())
    missing = [f for f in fields if not view.has_field(f)]
    if missing:
        raise NoQualityFieldsError(f"no field(s) {', '.join(missing)} on this dataset")

    ids, target = get_target(view, ti.eval_key, kind)
    classification = ti.type == "classification"
    paths = ["id"] + fields
    if classification and kind != "confidence":
        paths.append(f"{ti.pred_field}.confidence")
    read = view.values(paths)
    vectors = [align_values(read[0], ids, to_floats(v)) for v in read[1:]]
    qualities = dict(zip(fields, vectors))
    conf = correct = None
    if classification:
        conf = target if kind == "confidence" else vectors[-1]
        if kind == "correct":
            correct = target
        else:
            c_ids, c_vals = get_target(view, ti.eval_key, "correct")
            correct = align_values(c_ids, ids, c_vals)
    t_read = time.perf_counter()

    finite_t = target[np.isfinite(target)]
    binary = kind in BINARY_KINDS and bool(finite_t.size) and bool(np.isin(finite_t, (0.0, 1.0)).all())
    directions = {f: direction(view, f) for f in fields}
    ranking = rank_fields({f: (qualities[f], directions[f][0]) for f in fields}, target,
                          n_boot=n_boot, confidence=confidence, seed=seed,
                          auroc_if_binary=binary)
    if field is None:
        field = ranking[0].name
    per_field = {f: _field_plots(qualities[f], target, conf, correct, ids, binary, bins, hist_bins,
                                 confidence, max_points, seed) for f in fields}
    t_stats = time.perf_counter()

    table = []
    for r in ranking:
        row = r.to_row()
        row["direction"] = ("higher" if r.higher_is_better else "lower") + (
            "" if directions[r.name][1] else " (assumed)")
        table.append(row)

    return {
        "eval_key": ti.eval_key, "eval_type": ti.type, "kind": kind,
        "target_label": TARGET_LABELS.get(kind, kind), "binary": binary,
        "n_samples": int(len(ids)), "n_target": int(finite_t.size),
        "fields": fields, "field": field,
        "higher_is_better": {f: directions[f][0] for f in fields},
        "n_boot": int(n_boot), "confidence": float(confidence), "bins": int(bins),
        "ranking": [r.to_dict() for r in ranking], "table": table,
        **per_field[field], "per_field": per_field,
        "timings": {"read_s": t_read - t0, "stats_s": t_stats - t_read, "total_s": t_stats - t0},
    }


OUTCOMES = ("correct", "wrong")


def bin_id(field, lo, hi, last, outcome=None) -> str:
    """The id a curve point or histogram bar carries: everything a click needs (a
    histogram bar also its outcome, ``"correct"`` or ``"wrong"``)."""
    return json.dumps([field, lo, hi, bool(last)] + ([outcome] if outcome else []))


def parse_bin_id(value) -> Optional[Tuple[str, float, float, bool, Optional[str]]]:
    """``(field, lo, hi, last, outcome)`` from a bin id (``outcome`` None for a curve
    point), or None when it is not one."""
    try:
        field, lo, hi, last, *rest = json.loads(value)
        lo, hi = float(lo), float(hi)
    except (TypeError, ValueError):
        return None
    if not isinstance(field, str) or not (math.isfinite(lo) and math.isfinite(hi)) or lo > hi:
        return None
    if rest and (len(rest) > 1 or rest[0] not in OUTCOMES):
        return None
    return field, lo, hi, bool(last), (rest[0] if rest else None)


def outcome_view(view, eval_key: str, kind: str, outcome: str):
    """The samples of ``view`` whose binary target (``kind`` of evaluation ``eval_key``)
    is ``outcome``: ``"correct"`` (1) or ``"wrong"`` (0)."""
    if outcome not in OUTCOMES:
        raise ValueError(f"outcome must be one of {OUTCOMES}, not {outcome!r}")
    ids, target = get_target(view, eval_key, kind)
    keep = target == (1.0 if outcome == "correct" else 0.0)
    return view.select(list(np.asarray(ids)[keep]), ordered=False)


def bin_view(view, field: str, lo: float, hi: float, last: bool = False):
    """The samples of ``view`` whose ``field`` lies in ``[lo, hi)`` (``[lo, hi]`` for the
    last bin), as the curve and histogram bins count them."""
    upper = F(field) <= hi if last else F(field) < hi
    return view.match((F(field) >= lo) & upper)
