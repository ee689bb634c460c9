"""The report's section of each quality run, whatever kind of run it is, and the HTML
pieces every part of the report draws with.

* a score per image: the run's record, summary statistics, a histogram, the
  lowest-quality images, the images that could not be scored;
* a score per object (keyed by its per-image mean): the same, over the per-image means,
  with the objects' own counts;
* predicted causes (``cause``: a ``Classifications`` field and ``<field>_severity``): how
  many images each cause has, the combinations of causes in words ("dark and noisy") with
  each family's mean severity, the most severe images with their causes;
* a run that did not complete says why; a field with no score in the view says so.

Numbers are written by :mod:`.results`' formatting functions only. Every string from the
dataset is HTML-escaped.
"""

from __future__ import annotations

import base64
import html
import io
from collections import Counter
from typing import Dict, List, Sequence

import numpy as np

from ..scoring.runs import load_quality_run
from .breakdowns import NO_CAUSE, OLD_NO_CAUSE, cause_text, first_cause
from .report_answers import thumbnails_section
from .results import fmt, fmt_size
from .targets import to_floats

__all__ = ["run_kind", "run_section"]

#: quantiles of the summary tables, with their column names
QUANTILES = (("min", 0), ("5%", 0.05), ("median", 0.5), ("95%", 0.95), ("max", 1))


def _esc(value) -> str:
    return html.escape(str(value), quote=True)


def _figure(width: float, height: float):
    """A figure and its axes outside pyplot: drawing a report neither switches the
    process's backend nor closes (or adds to) the caller's open figures."""
    import matplotlib.pyplot as plt  # deferred: matplotlib is heavy and only reports need it

    fig = plt.Figure(figsize=(width, height), dpi=100)
    return fig, fig.subplots()


def _png_base64(fig) -> str:
    """``fig`` as base64 PNG text for a data: URL."""
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return base64.b64encode(buf.getvalue()).decode()


def _histogram_png(values: np.ndarray, title: str) -> str:
    fig, ax = _figure(5, 2.6)
    ax.hist(values, bins=min(40, max(5, len(values) // 5)), color="#4c72b0")
    ax.set_title(title, fontsize=10)
    ax.set_ylabel("samples")
    return _png_base64(fig)


def _table(header: Sequence[str], rows: List[Sequence]) -> str:
    head = "".join(f"<th>{_esc(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{_esc(c)}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _rows_table(rows: List[dict]) -> str:
    if not rows:
        return "<p>none</p>"
    header = list(rows[0])
    return _table(header, [[r.get(h, "") for h in header] for r in rows])


def options_text(options, digits: int = 3) -> str:
    """A run's metric options in words: ``name: value`` joined by ``"; "``, nested
    settings in parentheses, numbers in :func:`.results.fmt`'s format."""
    if isinstance(options, dict):
        return "; ".join(f"{k}: " + (f"({options_text(v)})" if isinstance(v, dict) else options_text(v))
                         for k, v in options.items())
    if isinstance(options, (list, tuple)):
        return ", ".join(options_text(v) for v in options)
    if isinstance(options, (float, np.floating)):
        return fmt(options, digits)
    return str(options)


def run_kind(config) -> str:
    """``"objects"`` (scores per object, keyed by their per-image mean), ``"causes"``
    (labels) or ``"images"`` (a score per image)."""
    if getattr(config, "patches_field", None):
        return "objects"
    return "causes" if (getattr(config, "outputs", "float") or "float") == "classifications" else "images"


def _summary(values: np.ndarray) -> str:
    """n, mean and quantiles of the finite ``values``."""
    q = np.quantile(values, [p for _, p in QUANTILES])
    return _table(["n", "mean"] + [name for name, _ in QUANTILES],
                  [[fmt_size(len(values)), fmt(float(values.mean()))] + [fmt(float(v)) for v in q]])


def _record(r, field: str, kind: str, missing: int) -> List[str]:
    """The heading and the run's record: status, counts, options, device, time; why a run
    that did not complete stopped."""
    cfg = r.config
    better = "higher" if cfg.higher_is_better else "lower"
    if kind == "objects":
        title = (f"{_esc(cfg.metric)} of the objects of <code>{_esc(cfg.patches_field)}</code>, "
                 f"per-image mean ({better} is better)")
    elif kind == "causes":
        title = f"{_esc(cfg.metric)}: predicted causes and their severity (0 clean .. 5)"
    else:
        title = f"{_esc(cfg.metric)} ({better} is better)"
    unit = "objects " if kind == "objects" else ""
    parts = [f"<h2><code>{_esc(field)}</code>: {title}</h2>",
             _table(["status", f"{unit}scored", f"{unit}failed", "with scores", "missing in view", "options",
                     "device", "seconds"],
                    [[r.status, fmt_size(r.num_scored), fmt_size(r.num_failed), fmt_size(r.num_with_scores),
                      fmt_size(missing), options_text(cfg.metric_options), r.device, fmt(float(r.elapsed_s or 0))]])]
    if r.status != "completed":
        why = getattr(r, "error", None) or "no reason recorded"
        parts.append(f"<p>This run ended <strong>{_esc(r.status)}</strong>: {_esc(why)}</p>")
    return parts


def _objects_note(samples, cfg) -> str:
    path = f"{cfg.patches_path}.{cfg.attribute}"
    objects = samples.count(cfg.patches_path) if samples.has_field(cfg.patches_field) else 0
    scored = samples.count(path) if objects else 0
    return (f"<p>{fmt_size(scored)} of the {fmt_size(objects)} objects of <code>{_esc(cfg.patches_field)}</code> "
            f"in this view hold a score (<code>{_esc(path)}</code>); below, each image's mean over its objects "
            f"(<code>{_esc(cfg.field)}_min</code> holds the minimum).</p>")


def _failures(r, paths_by_id: Dict[str, str]) -> List[str]:
    if not r.failures:
        return []
    rows = [[paths_by_id.get(sid, sid), reason] for sid, reason in list(r.failures.items())[:20]]
    return [f"<h3>Could not score ({fmt_size(r.num_failed)})</h3>", _table(["filepath", "reason"], rows)]


def _score_body(samples, field: str, cfg, worst: int, label_fields: Sequence[str]) -> List[str]:
    """Summary, histogram and lowest-quality thumbnails of a float field."""
    values = to_floats(samples.values(field))
    ok = values[np.isfinite(values)]
    if not len(ok):
        return ["<p>No scores in this view.</p>"]
    png = _histogram_png(ok, f"{field} ({cfg.metric})")
    return [_summary(ok), f"<img alt='{_esc(field)} distribution' src='data:image/png;base64,{png}'>",
            f"<h3>{min(worst, len(ok))} lowest-quality images</h3>",
            thumbnails_section(samples, field, cfg.higher_is_better, worst, label_fields)]


def _cause_body(samples, field: str, cfg, worst: int) -> List[str]:
    """How many images each cause has (as the most likely one, and among any of its
    labels), the mean severity of those it comes first in, and the most severe images."""
    labels = samples.values(f"{field}.classifications.label")
    first = [first_cause(ls) for ls in labels]
    sev_field = cfg.extra_field_names[0] if cfg.extra_field_names else None
    has_sev = sev_field is not None and samples.has_field(sev_field)
    severity = to_floats(samples.values(sev_field)) if has_sev else np.full(len(labels), np.nan)
    scored = [i for i, c in enumerate(first) if c is not None]
    if not scored:
        return ["<p>No predicted causes in this view.</p>"]
    firsts = Counter(first[i] for i in scored)
    anywhere = Counter(lab for i in scored for lab in set(labels[i] or []) if lab != OLD_NO_CAUSE)
    anywhere[NO_CAUSE] = firsts.get(NO_CAUSE, 0)
    rows = []
    for cause in sorted(firsts.keys() | anywhere.keys(), key=lambda c: (c == NO_CAUSE, -anywhere[c], c)):
        sel = np.array([first[i] == cause for i in range(len(first))]) & np.isfinite(severity)
        rows.append([cause, fmt_size(firsts.get(cause, 0)), fmt_size(anywhere[cause]),
                     fmt(float(severity[sel].mean())) if sel.any() else fmt(None, reason="never the most likely")])
    parts = ["<h3>Predicted causes</h3>",
             _table(["cause", "images (most likely cause)", "images (any of its labels)", "mean severity"], rows)]
    parts += _combination_table(samples.values(field), severity)
    ok = severity[np.isfinite(severity)]
    if len(ok):
        parts += [f"<h3>Severity (<code>{_esc(sev_field)}</code>)</h3>", _summary(ok),
                  f"<h3>{min(worst, int((ok > 0).sum()))} most severe images</h3>",
                  thumbnails_section(samples, sev_field, False, worst, [field], keep=lambda v: v > 0)]
    return parts


def _combination_table(stored, severity) -> List[str]:
    """The images' combinations of causes in words, most frequent first, with each
    family's mean severity (its label's own ``severity`` where the run stored one, else
    the image's)."""
    combos: Dict[str, List] = {}
    for k, cls in enumerate(stored):
        labels = [c for c in (cls.classifications if cls is not None else []) if c.label != OLD_NO_CAUSE]
        if len(labels) < 2:
            continue
        ways = {c.label: c["direction"] for c in labels if c.has_field("direction") and c["direction"]}
        entry = combos.setdefault(cause_text(sorted(c.label for c in labels), directions=ways), [])
        entry.append({c.label: (c["severity"] if c.has_field("severity") and c["severity"] is not None
                                else severity[k]) for c in labels})
    if not combos:
        return []
    rows = []
    for text, items in sorted(combos.items(), key=lambda kv: (-len(kv[1]), kv[0])):
        sev = {f: [float(i[f]) for i in items if np.isfinite(float(i[f]))] for f in sorted(items[0])}
        rows.append([text, fmt_size(len(items)),
                     ", ".join(f"{f} {fmt(float(np.mean(v)))}" for f, v in sev.items() if v) or fmt(None, reason="none")])
    return ["<h3>Several causes at once</h3>", _table(["causes", "images", "mean severity per family"], rows)]


def run_section(samples, field: str, worst: int, label_fields: Sequence[str],
                paths_by_id: Dict[str, str]) -> List[str]:
    """HTML of quality run ``field`` on ``samples``, whatever it holds (see the module)."""
    dataset = samples._root_dataset
    r = load_quality_run(dataset, field)
    cfg = r.config
    kind = run_kind(cfg)
    present = dataset.has_sample_field(field)
    if not present:
        missing = len(samples)
    elif kind == "causes":
        missing = len(samples) - samples.count(field)
    else:
        missing = int((~np.isfinite(to_floats(samples.values(field)))).sum())
    parts = _record(r, field, kind, missing)
    if kind == "objects":
        parts.append(_objects_note(samples, cfg))
    if not present:
        parts.append(f"<p>The field <code>{_esc(field)}</code> does not exist: nothing was written.</p>")
    elif kind == "causes":
        parts += _cause_body(samples, field, cfg, worst)
    else:
        parts += _score_body(samples, field, cfg, worst, label_fields)
    return parts + _failures(r, paths_by_id)
