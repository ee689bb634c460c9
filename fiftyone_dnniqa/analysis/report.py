"""Self-contained HTML reports of the quality runs of a dataset.

One file, plots embedded as PNG. Every string that comes from the dataset
(names, labels, file paths, field names, failure reasons) is HTML-escaped.
"""

from __future__ import annotations

import datetime
import os
from typing import List, Optional, Sequence

import numpy as np

from ..scoring.runs import list_quality_runs, load_quality_run
from .breakdowns import cause_field, slice_labels
from .correlation import rank_fields
from .fields import score_runs
from .grouping import binned_performance, group_table
from .prior import PerformancePrior, heldout_error
from .report_answers import answers_section
from .report_runs import _esc, _figure, _png_base64, _rows_table, _table, run_section
from .results import fmt_size, fmt_short
from .targets import NoEvaluationError, get_target, list_targets, to_floats

__all__ = ["performance_section", "render_report", "safe_join", "write_report"]


def safe_join(folder: str, name: str) -> str:
    """``folder/name``, refusing names that would leave ``folder``."""
    if not name or name in (".", "..") or os.path.isabs(name) or os.sep in name \
            or (os.altsep and os.altsep in name) or "\x00" in name:
        raise ValueError(f"'{name}' is not a plain file name")
    root = os.path.realpath(folder)
    path = os.path.realpath(os.path.join(root, name))
    if os.path.dirname(path) != root:
        raise ValueError(f"'{name}' would be written outside {folder}")
    return path


def _curve_png(curves, title: str) -> str:
    fig, ax = _figure(6, 3.2)
    for name, rows in curves.items():
        x = np.arange(1, len(rows) + 1) / len(rows) * 100
        y = [r.mean_target for r in rows]
        ax.plot(x, y, marker="o", ms=3, label=name)
        ax.fill_between(x, [r.ci_low for r in rows], [r.ci_high for r in rows], alpha=0.15)
    ax.set_xlabel("quality decile, worst to best (% of samples)")
    ax.set_ylabel("performance")
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=7)
    return _png_base64(fig)


def _breakdowns(samples, ids, order, q, t, hib, info, kind, n_boot, max_groups) -> List[str]:
    """Per class (classifications), per tag set and per predicted cause (the newest
    ``cause`` run's most likely cause), each against the best field ``q``."""
    parts = []
    gt = samples.values(f"{info.gt_field}.label") if info.type == "classification" else None
    if gt is not None:
        gt = np.array([None if g is None else str(g) for g in gt])[order]
        rows = group_table(q, t, gt, higher_is_better=hib, n_boot=min(n_boot, 200), min_n=5)
        rows = sorted(rows, key=lambda r: r.mean_target)[:max_groups]
        parts.append(f"<h3>Hardest classes (by mean {_esc(kind)}; at least 5 samples)</h3>")
        parts.append(_rows_table([r.to_row() for r in rows]))
    tags = samples.values("tags")
    tag_of = np.array([",".join(sorted(tg)) if tg else None for tg in tags])[order]
    if any(v is not None for v in tag_of):
        parts.append("<h3>Per tag set</h3>")
        parts.append(_rows_table([r.to_row() for r in group_table(q, t, tag_of, higher_is_better=hib,
                                                                    n_boot=min(n_boot, 200))]))
    causes = cause_field(samples)
    if causes is not None:
        cause_of = slice_labels(samples, "cause", ids, info.eval_key)
        if any(v is not None for v in cause_of):
            parts.append(f"<h3>Per predicted cause (<code>{_esc(causes)}</code>, its most likely cause)</h3>")
            parts.append(_rows_table([r.to_row() for r in group_table(q, t, cause_of, higher_is_better=hib,
                                                                        n_boot=min(n_boot, 200))]))
    return parts


def _prior_section(best, q, t, hib, mean_t, n_boot) -> List[str]:
    """A performance prior from the best field, checked on a held-out half."""
    held = heldout_error(q, t, higher_is_better=hib, n_boot=n_boot)
    o = held.overall
    prior = PerformancePrior.fit(q, t, higher_is_better=hib)
    est = prior.predict_accuracy(q, n_boot=n_boot)
    return [f"<h3>Performance prior from <code>{_esc(best)}</code></h3>",
            "<p>A monotone (isotonic) map from quality to expected accuracy, fitted on one "
            "random half and checked on the other: it predicts the accuracy of new, unevaluated "
            "images from their quality alone (<code>dq.PerformancePrior</code>).</p>",
            _table(["split", "n", "predicted accuracy", "95% interval", "actual", "absolute error"],
                   [["held-out half", fmt_size(o["n"]), fmt_short(o["predicted"]),
                     f"[{fmt_short(o['ci_low'])}, {fmt_short(o['ci_high'])}]", fmt_short(o["actual"]),
                     fmt_short(o["abs_error"])],
                    ["all (fitted on all)", fmt_size(int(np.isfinite(q).sum())), fmt_short(est.mean),
                     f"[{fmt_short(est.ci_low)}, {fmt_short(est.ci_high)}]", fmt_short(mean_t), ""]])]


def performance_section(samples, fields: Sequence[str], eval_key: Optional[str] = None,
                        n_boot: int = 500, max_groups: int = 15) -> List[str]:
    """HTML of how each quality field relates to an evaluation: the ranking,
    accuracy versus quality, per-class, per-tag and per-cause breakdowns, and a
    performance prior checked on a held-out half. Only runs that score with floats
    (:func:`.fields.score_runs`) are ranked."""
    try:
        targets = list_targets(samples)
        ids, t = get_target(samples, eval_key)
    except NoEvaluationError as e:
        return ["<h2>Quality versus performance</h2>", f"<p>{_esc(e)}</p>"]
    info = next(ti for ti in targets if eval_key is None or ti.eval_key == eval_key)
    key, kind = info.eval_key, info.default_kind
    dataset = samples._root_dataset
    fields = score_runs(samples, fields)
    if not fields:
        return []
    cols = samples.values(["id"] + list(fields))
    pos = {i: k for k, i in enumerate(cols[0])}
    order = np.array([pos[i] for i in ids], dtype=int)
    qualities = {f: (to_floats(cols[j + 1])[order], dataset.get_run_info(f).config.higher_is_better)
                 for j, f in enumerate(fields)}
    finite_t = t[np.isfinite(t)]
    mean_t = float(finite_t.mean()) if finite_t.size else None  # an empty view has no mean
    parts = [f"<h2>Quality versus performance: evaluation <code>{_esc(key)}</code> ({_esc(kind)})</h2>",
             f"<p>{_esc(info.type)} evaluation of <code>{_esc(info.pred_field)}</code> against "
             f"<code>{_esc(info.gt_field)}</code>; mean {_esc(kind)} {fmt_short(mean_t)} over "
             f"{fmt_size(int(np.isfinite(t).sum()))} samples. Spearman is primary; intervals are bootstrap 95%.</p>"]
    ranks = rank_fields(qualities, t, n_boot=n_boot)
    parts.append("<h3>Which quality field predicts performance</h3>")
    parts.append(_rows_table([r.to_row() for r in ranks]))
    if not ranks[0].n:  # a field without scores in the view ranks last: none has any
        return parts + ["<p>No quality scores in this view: nothing to bin or break down.</p>"]
    curves = {}
    for f, (q, hib) in qualities.items():
        if np.isfinite(q).any():
            curves[f] = binned_performance(q if hib else -q, t, bins=10)
    png = _curve_png(curves, f"{kind} per quality decile")
    parts.append(f"<img alt='performance versus quality' src='data:image/png;base64,{png}'>")
    best = ranks[0].name
    q, hib = qualities[best]
    parts.append(f"<h3>Per decile of <code>{_esc(best)}</code></h3>")
    parts.append(_rows_table([r.to_row() for r in binned_performance(q, t, bins=10)]))
    parts += _breakdowns(samples, ids, order, q, t, hib, info, kind, n_boot, max_groups)
    if kind == "correct" and np.isfinite(t).sum() >= 40:
        parts += _prior_section(best, q, t, hib, mean_t, n_boot)
    return parts


def render_report(samples, fields: Optional[Sequence[str]] = None, worst: int = 10,
                  eval_key: Optional[str] = None) -> str:
    """The HTML report of the quality runs ``fields`` (default: all) of ``samples``,
    whatever each holds (scores per image or per object, predicted causes; failed and
    empty runs say so), and, when the collection has an evaluation, of how the runs that
    score with floats relate to it (``eval_key``; default the newest)."""
    dataset = samples._root_dataset
    fields = list(fields) if fields else list_quality_runs(dataset)
    for field in fields:
        load_quality_run(dataset, field)  # an unknown name is refused before anything is drawn
    ids, paths = samples.values(["id", "filepath"])
    parts = [
        "<!DOCTYPE html><html><head><meta charset='utf-8'>",
        f"<title>Image quality report: {_esc(dataset.name)}</title>",
        "<style>body{font-family:sans-serif;max-width:960px;margin:2em auto;color:#222}"
        "table{border-collapse:collapse;margin:.5em 0 1.5em}td,th{border:1px solid #ccc;"
        "padding:3px 8px;font-size:13px;text-align:left}th{background:#f3f3f3}"
        "code{background:#f3f3f3;padding:1px 4px}.thumbs{display:flex;flex-wrap:wrap;gap:8px}"
        "figure{margin:0;width:170px;font-size:12px}figure small{color:#777;word-break:break-all}"
        "</style></head><body>",
        f"<h1>Image quality report: {_esc(dataset.name)}</h1>",
        f"<p>{fmt_size(len(ids))} samples; generated "
        f"{_esc(datetime.datetime.now(datetime.timezone.utc).strftime('%Y-%m-%d %H:%M UTC'))} "
        "by fiftyone-dnniqa.</p>",
    ]
    if not fields:
        parts.append("<p>This dataset has no quality runs yet.</p>")
    else:
        parts += answers_section(samples, fields, eval_key)
    label_fields = _label_fields(samples, eval_key)
    paths_by_id = dict(zip(ids, paths))
    for field in fields:
        parts += run_section(samples, field, worst, label_fields, paths_by_id)
    if fields:
        parts += performance_section(samples, fields, eval_key)
    parts.append("</body></html>")
    return "\n".join(parts)


def _label_fields(samples, eval_key) -> List[str]:
    """The classification evaluation's ground truth and predictions, shown under thumbnails."""
    targets = [t for t in list_targets(samples) if eval_key is None or t.eval_key == eval_key]
    if not targets or targets[0].type != "classification":
        return []
    return [f for f in (targets[0].gt_field, targets[0].pred_field) if f]


def write_report(samples, path: str, fields: Optional[Sequence[str]] = None,
                 overwrite: bool = False, eval_key: Optional[str] = None) -> str:
    """Writes :func:`render_report` to ``path`` and returns the path."""
    if os.path.exists(path) and not overwrite:
        raise FileExistsError(f"{path} exists; pass overwrite=True")
    text = render_report(samples, fields, eval_key=eval_key)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)
    return path
