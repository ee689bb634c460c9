"""FiftyOne panels (thin): "Quality vs Performance".

The statistics live in plain functions that need no App:

* :func:`panel_statistics` turns a view, its quality fields and an evaluation target
  into a JSON-able dict: the ranking of the fields by how well they track the target
  (:func:`~fiftyone_dnniqa.analysis.rank_fields`) and, for every field, the target per
  quantile bin (:func:`~fiftyone_dnniqa.analysis.binned_performance`), the histogram for
  correct and wrong predictions and a subsample of (quality, confidence) points.
  Everything is read with two ``values()`` aggregations (the target, then the quality
  fields and the confidence together) and computed on numpy vectors: no per-sample
  loop, so a 100k-sample view takes seconds.
* :func:`plot_traces` turns that dict into plotly traces and layouts.
* :func:`bin_view` is the view a click on a bin selects.

:class:`QualityPerformancePanel` only wires these to the App: inputs in panel state,
plots and table in panel data, an in-process cache keyed by view, fields and target so
re-renders and view round trips do not recompute, and callbacks that set the App's view.
"""

from __future__ import annotations

import hashlib
import json
import math
import threading
import time
from collections import OrderedDict
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

import fiftyone.operators as foo
import fiftyone.operators.types as types

__all__ = [
    "NoQualityFieldsError", "panel_statistics", "plot_traces", "bin_view", "quality_fields",
    "numeric_fields", "QualityPerformancePanel",
]

#: bootstrap resamples used by the panel (the library's default is 1000)
N_BOOT = 200
#: quantile bins of the accuracy-versus-quality curve
BINS = 10
#: bins of the correct/wrong histogram
HIST_BINS = 30
#: most points sent to the browser in the confidence scatter
MAX_POINTS = 5000

_RUN_QUALITY = "'Compute image quality'"

TARGET_LABELS = {
    "correct": "accuracy", "confidence": "confidence", "f1": "F1", "precision": "precision",
    "recall": "recall", "tp": "true positives", "fp": "false positives", "fn": "missed objects",
    "accuracy": "pixel accuracy",
}


class NoQualityFieldsError(ValueError):
    """The dataset has no quality scores to relate to performance."""


def _no_quality_message():
    return (f"No quality scores on this dataset yet: run {_RUN_QUALITY} (operator "
            "compute_quality) first, or pick a numeric field to rank.")


# ---------------------------------------------------------------------------
# Fields
# ---------------------------------------------------------------------------


def quality_fields(samples) -> List[str]:
    """Fields written by quality runs (and performance priors) that still exist."""
    from .runs import list_quality_runs

    ds = samples._root_dataset
    fields = list(list_quality_runs(ds))
    fields += [f for f in ds.info.get("dnniqa_priors", {}) if f not in fields]
    return [f for f in fields if ds.has_sample_field(f)]


def numeric_fields(samples) -> List[str]:
    """Top-level float fields that an evaluation did not write (candidates to rank)."""
    import fiftyone as fo

    ds = samples._root_dataset
    evals = list(ds.list_evaluations())
    out = []
    for name in ds.get_field_schema(ftype=fo.FloatField):
        if any(name == k or name.startswith(k + "_") for k in evals):
            continue
        out.append(name)
    return out


def _direction(samples, field) -> Tuple[bool, bool]:
    """(higher_is_better, known): from the field's quality run, else assumed True."""
    from .difficulty import field_direction

    try:
        return bool(field_direction(samples, field)), True
    except ValueError:
        return True, False


# ---------------------------------------------------------------------------
# Statistics
# ---------------------------------------------------------------------------


def _floats(values) -> np.ndarray:
    """Float vector from ``values()`` output: None becomes NaN (vectorised)."""
    a = np.asarray(values, dtype=object)
    if a.size == 0:
        return np.zeros(0)
    a[np.equal(a, None)] = np.nan
    return a.astype(float)


def _finite_list(a) -> list:
    return [float(v) if math.isfinite(v) else None for v in np.asarray(a, float).tolist()]


def _align(ids_from, ids_to, values):
    """``values`` (ordered like ``ids_from``) reordered like ``ids_to`` (NaN if absent)."""
    ids_from = np.asarray(ids_from)
    ids_to = np.asarray(ids_to)
    if len(ids_from) == len(ids_to) and np.array_equal(ids_from, ids_to):
        return values
    import pandas as pd

    pos = pd.Index(ids_from).get_indexer(ids_to)
    out = np.full(len(ids_to), np.nan)
    ok = pos >= 0
    out[ok] = values[pos[ok]]
    return out


def _resolve_target(samples, eval_key, kind):
    """The :class:`~fiftyone_dnniqa.performance.TargetInfo` and kind to use."""
    from .performance import NoEvaluationError, get_target, list_targets

    targets = list_targets(samples)
    if eval_key is None:
        if not targets:
            get_target(samples)  # raises NoEvaluationError with the how-to
        usable = [t for t in targets if kind is None or kind in t.kinds]
        if not usable:
            get_target(samples, None, kind)  # raises with the list of evaluations
        ti = usable[0]
    else:
        match = [t for t in targets if t.eval_key == eval_key]
        if not match:
            get_target(samples, eval_key, kind)  # raises: unknown or unsupported key
            raise NoEvaluationError(f"evaluation {eval_key!r} gives no target")
        ti = match[0]
    kind = kind or ti.default_kind
    if kind not in ti.kinds:
        raise ValueError(f"evaluation {ti.eval_key!r} ({ti.type}) gives targets "
                         f"{', '.join(ti.kinds)}, not {kind!r}")
    return ti, kind


def _field_plots(q, target, conf, correct, ids, binary, bins, hist_bins, confidence,
                 max_points, seed):
    """Curve, histogram and scatter data of one quality vector."""
    from .analysis import binned_performance

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
        fields: quality fields to rank (default: every quality run's field).
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
    from .analysis import rank_fields
    from .performance import BINARY_KINDS, get_target

    t0 = time.perf_counter()
    ti, kind = _resolve_target(view, eval_key, kind)
    fields = list(dict.fromkeys(fields)) if fields else quality_fields(view)
    if field is not None and field not in fields:
        fields.append(field)
    if not fields:
        raise NoQualityFieldsError(_no_quality_message())
    missing = [f for f in fields if not view.has_field(f)]
    if missing:
        raise NoQualityFieldsError(f"no field(s) {', '.join(missing)} on this dataset")

    ids, target = get_target(view, ti.eval_key, kind)
    classification = ti.type == "classification"
    paths = ["id"] + fields
    if classification and kind != "confidence":
        paths.append(f"{ti.pred_field}.confidence")
    read = view.values(paths)
    vectors = [_align(read[0], ids, _floats(v)) for v in read[1:]]
    qualities = dict(zip(fields, vectors))
    conf = correct = None
    if classification:
        conf = target if kind == "confidence" else vectors[-1]
        if kind == "correct":
            correct = target
        else:
            c_ids, c_vals = get_target(view, ti.eval_key, "correct")
            correct = _align(c_ids, ids, c_vals)
    t_read = time.perf_counter()

    finite_t = target[np.isfinite(target)]
    binary = kind in BINARY_KINDS and bool(finite_t.size) and bool(np.isin(finite_t, (0.0, 1.0)).all())
    directions = {f: _direction(view, f) for f in fields}
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


# ---------------------------------------------------------------------------
# Plots
# ---------------------------------------------------------------------------


def _bin_id(field, lo, hi, last) -> str:
    """The id a curve point or histogram bar carries: everything a click needs."""
    return json.dumps([field, lo, hi, bool(last)])


def parse_bin_id(value) -> Optional[Tuple[str, float, float, bool]]:
    """``(field, lo, hi, last)`` from a bin id, or None when it is not one."""
    try:
        field, lo, hi, last = json.loads(value)
        lo, hi = float(lo), float(hi)
    except (TypeError, ValueError):
        return None
    if not isinstance(field, str) or not (math.isfinite(lo) and math.isfinite(hi)) or lo > hi:
        return None
    return field, lo, hi, bool(last)


def bin_view(view, field: str, lo: float, hi: float, last: bool = False):
    """The samples of ``view`` whose ``field`` lies in ``[lo, hi)`` (``[lo, hi]`` for the
    last bin), as the curve and histogram bins count them."""
    from fiftyone import ViewField as F

    upper = F(field) <= hi if last else F(field) < hi
    return view.match((F(field) >= lo) & upper)


def _fmt(v):
    if v is None:
        return "n/a"
    return f"{v:.4g}"


def plot_traces(stats: dict, field: Optional[str] = None) -> Dict[str, Optional[dict]]:
    """Plotly figures (``{"data": traces, "layout": layout, "bins": [...]}``) for the
    ``curve``, ``histogram`` and ``scatter`` of :func:`panel_statistics`' output, for
    ``field`` (default: the one it chose), None where there is nothing to draw.
    ``bins`` lists each clickable point's ``(field, lo, hi, last)`` by point index."""
    field = field or stats["field"]
    plots = stats["per_field"][field]
    hib = stats["higher_is_better"].get(field, True)
    x_title = f"{field} ({'higher' if hib else 'lower'} is better)"
    tl = stats["target_label"]
    margin = {"t": 64, "l": 56, "b": 48, "r": 16}
    out: Dict[str, Optional[dict]] = {"curve": None, "histogram": None, "scatter": None}

    rows = [r for r in plots["curve"] if r["n"]]
    if rows:
        k = len(plots["curve"])
        bins = [(field, r["lo"], r["hi"], i == k - 1) for i, r in enumerate(plots["curve"]) if r["n"]]
        x = [r["mean_quality"] for r in rows]
        interval = "Wilson" if rows[0]["interval"] == "wilson" else "t"
        level = int(round(100 * stats["confidence"]))
        band = {"type": "scatter", "x": x, "mode": "lines", "line": {"width": 0},
                "hoverinfo": "skip", "showlegend": False}
        out["curve"] = {
            "data": [
                {**band, "name": "upper", "y": [r["ci_high"] for r in rows]},
                {**band, "name": f"{level}% interval", "y": [r["ci_low"] for r in rows],
                 "fill": "tonexty", "fillcolor": "rgba(255, 109, 4, 0.2)"},
                {"type": "scatter", "mode": "lines+markers", "name": tl, "x": x,
                 "y": [r["mean_target"] for r in rows], "ids": [_bin_id(*b) for b in bins],
                 "marker": {"size": 9, "color": "#FF6D04"}, "line": {"color": "#FF6D04"},
                 "text": [f"[{_fmt(r['lo'])}, {_fmt(r['hi'])}{']' if b[3] else ')'}: n={r['n']}, "
                          f"{tl} {_fmt(r['mean_target'])} [{_fmt(r['ci_low'])}, {_fmt(r['ci_high'])}]"
                          for r, b in zip(rows, bins)],
                 "hovertemplate": "%{text}<extra></extra>"},
            ],
            "layout": {
                "title": {"text": f"{tl.capitalize()} by quantile bin of {field}<br><sub>"
                                  f"{level}% {interval} interval; click a point for its samples</sub>"},
                "xaxis": {"title": {"text": x_title + ", bin mean"}},
                "yaxis": {"title": {"text": tl}}, "margin": margin, "showlegend": False,
            },
            "bins": bins,
        }

    h = plots["histogram"]
    if h:
        edges = h["edges"]
        k = len(edges) - 1
        bins = [(field, edges[i], edges[i + 1], i == k - 1) for i in range(k)]
        centers = [(edges[i] + edges[i + 1]) / 2 for i in range(k)]
        widths = [edges[i + 1] - edges[i] for i in range(k)]
        ids = [_bin_id(*b) for b in bins]
        common = {"type": "bar", "x": centers, "width": widths, "ids": ids, "opacity": 0.6}
        out["histogram"] = {
            "data": [
                {**common, "name": "correct", "y": h["correct"], "marker": {"color": "#2CA02C"}},
                {**common, "name": "wrong", "y": h["wrong"], "marker": {"color": "#D62728"}},
            ],
            "layout": {
                "title": {"text": f"{field} for correct and wrong predictions<br>"
                                  "<sub>click a bar for its samples</sub>"},
                "barmode": "overlay", "bargap": 0, "xaxis": {"title": {"text": x_title}},
                "yaxis": {"title": {"text": "samples"}}, "margin": margin, "showlegend": True,
            },
            "bins": bins,
        }

    s = plots["scatter"]
    if s and s["n_shown"]:
        shown = (f"random {s['n_shown']:,} of {s['n_total']:,} samples shown"
                 if s["n_shown"] < s["n_total"] else f"{s['n_total']:,} samples")
        groups = [("samples", None)]
        if s["correct"] is not None:
            groups = [("correct", 1.0), ("wrong", 0.0)]
        colors = {"correct": "#2CA02C", "wrong": "#D62728", "samples": "#FF6D04"}
        traces = []
        qx = np.asarray(s["quality"], dtype=object)
        cy = np.asarray(s["confidence"], dtype=object)
        sid = np.asarray(s["ids"], dtype=object)
        c = None if s["correct"] is None else _floats(s["correct"])
        for name, val in groups:
            sel = np.ones(len(sid), bool) if val is None else (c == val)
            traces.append({"type": "scatter", "mode": "markers", "name": name,
                           "x": qx[sel].tolist(), "y": cy[sel].tolist(), "ids": sid[sel].tolist(),
                           "marker": {"size": 5, "opacity": 0.6, "color": colors[name]}})
        out["scatter"] = {
            "data": traces,
            "layout": {
                "title": {"text": f"{field} vs prediction confidence<br><sub>{shown}; "
                                  "lasso or box to select samples</sub>"},
                "xaxis": {"title": {"text": x_title}}, "yaxis": {"title": {"text": "confidence"}},
                "dragmode": "lasso", "margin": margin, "showlegend": True,
            },
        }
    return out


# ---------------------------------------------------------------------------
# Cache
# ---------------------------------------------------------------------------


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
    import fiftyone as fo
    from bson import json_util

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


# ---------------------------------------------------------------------------
# The panel
# ---------------------------------------------------------------------------


_EMPTY_DATA = {"ranking": [], "curve": [], "histogram": [], "scatter": []}


def _target_value(eval_key, kind):
    return f"{eval_key}:{kind}"


def _parse_target(value):
    if not value or ":" not in str(value):
        return None, None
    key, kind = str(value).rsplit(":", 1)
    return key, kind


def _event_args(ctx) -> dict:
    """Plotly event arguments: the App sends them at the top level of the params."""
    args = dict(ctx.params.get("event_args") or {})
    args.update(ctx.params)
    return args


class QualityPerformancePanel(foo.Panel):
    """Ranks the quality fields by how well they track a performance target and plots
    the target against quality; clicking a bin or lassoing points shows those samples."""

    @property
    def config(self):
        return foo.PanelConfig(
            name="quality_vs_performance",
            label="Quality vs Performance",
            surfaces="grid",
            icon="insights",
            help_markdown=(
                "How well do image-quality scores track model performance? The table ranks "
                "the quality fields by Spearman correlation with the chosen target "
                f"(bootstrap {N_BOOT} resamples). Click a point of the curve or a bar of the "
                "histogram to show its samples; lasso points of the scatter to select them."),
        )

    # -- events --------------------------------------------------------------

    def on_load(self, ctx):
        self._refresh(ctx, force=True)

    def on_change_view(self, ctx):
        self._refresh(ctx)

    def on_change_dataset(self, ctx):
        ctx.panel.state.set({"target": None, "fields": None, "field": None, "stats_key": None})
        self._refresh(ctx, force=True)

    def on_change_target(self, ctx):
        self._refresh(ctx, target=ctx.params.get("value"))

    def on_change_fields(self, ctx):
        value = ctx.params.get("value") or []
        if isinstance(value, str):
            value = [value]
        value = [v.get("value") if isinstance(v, dict) else v for v in value]
        self._refresh(ctx, fields=[v for v in value if isinstance(v, str)])

    def on_change_field(self, ctx):
        self._refresh(ctx, field=ctx.params.get("value"))

    def on_click_curve(self, ctx):
        self._show_bin(ctx, "curve")

    def on_click_histogram(self, ctx):
        self._show_bin(ctx, "histogram")

    def on_select_scatter(self, ctx):
        points = _event_args(ctx).get("data") or []
        ids = list(dict.fromkeys(p.get("id") for p in points if isinstance(p, dict) and p.get("id")))
        if not ids:
            return
        ctx.ops.set_view(ctx.view.select(ids))

    # -- helpers -------------------------------------------------------------

    def _choices(self, ctx):
        from .performance import list_targets

        ds = ctx.dataset
        targets = list_targets(ds)
        target_choices = [(_target_value(t.eval_key, k),
                           f"{t.eval_key}: {TARGET_LABELS.get(k, k)} ({t.type}, {t.pred_field})")
                          for t in targets for k in t.kinds]
        default_target = _target_value(targets[0].eval_key, targets[0].default_kind) if targets else None
        qf = quality_fields(ds)
        others = [f for f in numeric_fields(ds) if f not in qf]
        return {"targets": target_choices, "default_target": default_target,
                "quality": qf, "fields": qf + others}

    def _refresh(self, ctx, force=False, target=None, fields=None, field=None):
        from .performance import NoEvaluationError

        state = ctx.panel.state
        ch = self._choices(ctx)
        valid_targets = [v for v, _ in ch["targets"]]
        target = target or state.get("target")
        if target not in valid_targets:
            target = ch["default_target"]
        if fields is None:
            fields = state.get("fields")
            if fields is None:
                fields = ch["quality"]
        fields = [f for f in fields if f in ch["fields"]]
        field = field or state.get("field")
        if field not in fields:
            field = None
        update = {"target": target, "fields": fields, "field": field}

        message = None
        if target is None:
            try:
                from .performance import get_target

                get_target(ctx.view)
                message = "This dataset has no evaluation to take performance from."
            except NoEvaluationError as e:
                message = str(e)
        elif not fields:
            message = (_no_quality_message() if not ch["quality"]
                       else "Pick at least one quality field to rank.")
        if message:
            update.update({"message": message, "stats_key": None, "summary": None})
            state.set(update)
            ctx.panel.data.set(_EMPTY_DATA)
            return

        eval_key, kind = _parse_target(target)
        view = ctx.view
        key = cache_key(view, fields, eval_key, kind)
        if not force and key == state.get("stats_key") and field and field == state.get("field"):
            return  # the App already shows these statistics
        stats = CACHE.get(key)
        if stats is None:
            try:
                stats = panel_statistics(view, fields, eval_key, kind)
            except (NoEvaluationError, NoQualityFieldsError, ValueError) as e:
                update.update({"message": str(e), "stats_key": None, "summary": None})
                state.set(update)
                ctx.panel.data.set(_EMPTY_DATA)
                return
            CACHE.put(key, stats)
        field = field if field in stats["per_field"] else stats["field"]
        figs = plot_traces(stats, field)
        update.update({
            "field": field, "stats_key": key, "message": None,
            "summary": {
                "n_samples": stats["n_samples"], "n_target": stats["n_target"],
                "eval_key": stats["eval_key"], "kind": stats["kind"],
                "target_label": stats["target_label"], "binary": stats["binary"],
                "best": stats["field"], "seconds": round(stats["timings"]["total_s"], 3),
                "any_missing": any(r["missing"] for r in stats["table"]),
                "layouts": {k: (f["layout"] if f else None) for k, f in figs.items()},
                "bins": {k: (f.get("bins") if f else None) for k, f in figs.items()},
            },
        })
        state.set(update)
        ctx.panel.data.set({
            "ranking": stats["table"],
            **{k: (f["data"] if f else []) for k, f in figs.items()},
        })

    def _show_bin(self, ctx, plot):
        args = _event_args(ctx)
        spec = parse_bin_id(args.get("id"))
        if spec is None:  # fall back on the point index and the bins in state
            bins = (ctx.panel.state.get("summary") or {}).get("bins", {}).get(plot) or []
            idx = args.get("idx")
            if isinstance(idx, int) and 0 <= idx < len(bins):
                spec = tuple(bins[idx])
        if spec is None:
            ctx.ops.notify("Could not tell which bin was clicked", variant="warning")
            return
        field, lo, hi, last = spec
        if not ctx.view.has_field(field):
            ctx.ops.notify(f"No field '{field}' in the current view", variant="warning")
            return
        ctx.ops.set_view(bin_view(ctx.view, field, float(lo), float(hi), bool(last)))

    # -- layout --------------------------------------------------------------

    def render(self, ctx):
        panel = types.Object()
        state = ctx.panel.state
        ch = self._choices(ctx)
        summary = state.get("summary") or {}
        layouts = summary.get("layouts") or {}

        if summary:
            panel.md(f"**{summary['n_samples']:,}** samples in the view, **{summary['n_target']:,}** "
                     f"with a target ({summary['eval_key']}: {summary['target_label']}); "
                     f"intervals from {N_BOOT} bootstrap resamples.", name="header")

        if ch["targets"]:
            dd = types.DropdownView()
            for value, label in ch["targets"]:
                dd.add_choice(value, label=label)
            panel.enum("target", dd.values(), label="Performance target", view=dd,
                       default=state.get("target") or ch["default_target"],
                       on_change=self.on_change_target)
        if ch["fields"]:
            ac = types.AutocompleteView(allow_user_input=False, allow_duplicates=False)
            for f in ch["fields"]:
                ac.add_choice(f, label=f)
            panel.list("fields", types.String(), label="Quality fields to rank", view=ac,
                       default=state.get("fields") if state.get("fields") is not None else ch["quality"],
                       on_change=self.on_change_fields)

        message = state.get("message")
        if message:
            panel.view("message", types.Warning(label="Nothing to show yet", description=message))
            return types.Property(panel)

        if not summary:
            panel.view("loading", types.Notice(label="Computing statistics..."))
            return types.Property(panel)

        fields = state.get("fields") or []
        if fields:
            panel.enum("field", fields, label="Field to plot", default=state.get("field"),
                       view=types.DropdownView(), on_change=self.on_change_field)

        table = types.TableView()
        cols = ["field", "direction", "spearman", "kendall", "pearson"]
        if summary.get("binary"):
            cols.append("auroc")
        cols += ["n", "missing"] if summary.get("any_missing") else ["n"]
        labels = {"spearman": "Spearman rho [CI]", "kendall": "Kendall tau [CI]",
                  "pearson": "Pearson r [CI]", "auroc": "AUROC [CI]", "n": "n",
                  "missing": "missing", "field": "Quality field", "direction": "Better"}
        for c in cols:
            table.add_column(c, label=labels[c])
        panel.list("ranking", types.Object(), view=table,
                   label="Quality fields ranked by alignment with the target (best first)")

        config = {"displaylogo": False, "responsive": True}
        if layouts.get("curve"):
            panel.plot("curve", layout=layouts["curve"], config=config, height=380,
                       on_click=self.on_click_curve)
        if layouts.get("histogram"):
            panel.plot("histogram", layout=layouts["histogram"], config=config, height=340,
                       on_click=self.on_click_histogram)
        if layouts.get("scatter"):
            panel.plot("scatter", layout=layouts["scatter"], config=config, height=380,
                       on_selected=self.on_select_scatter)
        return types.Property(panel)
