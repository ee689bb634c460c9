"""Self-contained HTML reports of the quality runs of a dataset.

One file, plots embedded as PNG. Every string that comes from the dataset
(names, labels, file paths, field names, failure reasons) is HTML-escaped.
"""

from __future__ import annotations

import base64
import datetime
import html
import io
import os
from typing import List, Optional, Sequence

import numpy as np


def safe_join(folder: str, name: str) -> str:
    """``folder/name``, refusing names that would leave ``folder``."""
    if not name or name in (".", "..") or os.path.isabs(name) or os.sep in name or "/" in name \
            or (os.altsep and os.altsep in name) or "\x00" in name:
        raise ValueError(f"'{name}' is not a plain file name")
    root = os.path.realpath(folder)
    path = os.path.realpath(os.path.join(root, name))
    if os.path.dirname(path) != root:
        raise ValueError(f"'{name}' would be written outside {folder}")
    return path


def _esc(value) -> str:
    return html.escape(str(value), quote=True)


def _histogram_png(values: np.ndarray, title: str) -> str:
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 2.6), dpi=100)
    ax.hist(values, bins=min(40, max(5, len(values) // 5)), color="#4c72b0")
    ax.set_title(title, fontsize=10)
    ax.set_ylabel("samples")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode()


def _table(header: Sequence[str], rows: List[Sequence]) -> str:
    head = "".join(f"<th>{_esc(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{_esc(c)}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _fmt(v) -> str:
    return "n/a" if v is None or (isinstance(v, float) and not np.isfinite(v)) else f"{v:.4g}"


def render_report(samples, fields: Optional[Sequence[str]] = None, worst: int = 10) -> str:
    """The HTML report of the quality runs ``fields`` (default: all) of ``samples``."""
    from .runs import list_quality_runs, load_quality_run

    dataset = samples._root_dataset
    fields = list(fields) if fields else list_quality_runs(dataset)
    ids, paths = samples.values(["id", "filepath"])
    parts = [
        "<!DOCTYPE html><html><head><meta charset='utf-8'>",
        f"<title>Image quality report: {_esc(dataset.name)}</title>",
        "<style>body{font-family:sans-serif;max-width:960px;margin:2em auto;color:#222}"
        "table{border-collapse:collapse;margin:.5em 0 1.5em}td,th{border:1px solid #ccc;"
        "padding:3px 8px;font-size:13px;text-align:left}th{background:#f3f3f3}"
        "code{background:#f3f3f3;padding:1px 4px}</style></head><body>",
        f"<h1>Image quality report: {_esc(dataset.name)}</h1>",
        f"<p>{len(ids)} samples; generated "
        f"{_esc(datetime.datetime.now(datetime.timezone.utc).strftime('%Y-%m-%d %H:%M UTC'))} "
        "by fiftyone-dnniqa.</p>",
    ]
    if not fields:
        parts.append("<p>This dataset has no quality runs yet.</p>")
    for field in fields:
        r = load_quality_run(dataset, field)
        cfg = r.config
        values = np.array([np.nan if v is None else v for v in samples.values(field)], dtype=float)
        ok = values[np.isfinite(values)]
        better = "higher" if cfg.higher_is_better else "lower"
        parts.append(f"<h2><code>{_esc(field)}</code>: {_esc(cfg.metric)} ({better} is better)</h2>")
        parts.append(_table(
            ["status", "scored", "failed", "with scores", "missing in view", "options", "device", "seconds"],
            [[r.status, r.num_scored, r.num_failed, r.num_with_scores, int(len(values) - len(ok)),
              cfg.metric_options or "", r.device, r.elapsed_s]]))
        if len(ok):
            q = np.quantile(ok, [0, 0.05, 0.5, 0.95, 1])
            parts.append(_table(["n", "mean", "min", "5%", "median", "95%", "max"],
                                [[len(ok), _fmt(ok.mean())] + [_fmt(v) for v in q]]))
            png = _histogram_png(ok, f"{field} ({cfg.metric})")
            parts.append(f"<img alt='{_esc(field)} distribution' src='data:image/png;base64,{png}'>")
            order = np.argsort(values if cfg.higher_is_better else -values)  # worst first; NaN last
            rows = [[paths[i], _fmt(values[i])] for i in order[:worst] if np.isfinite(values[i])]
            parts.append(f"<h3>{len(rows)} lowest-quality samples</h3>")
            parts.append(_table(["filepath", field], rows))
        if r.failures:
            by_id = dict(zip(ids, paths))
            rows = [[by_id.get(sid, sid), reason] for sid, reason in list(r.failures.items())[:20]]
            parts.append(f"<h3>Could not score ({r.num_failed})</h3>")
            parts.append(_table(["filepath", "reason"], rows))
    parts.append("</body></html>")
    return "\n".join(parts)


def write_report(samples, path: str, fields: Optional[Sequence[str]] = None,
                 overwrite: bool = False) -> str:
    """Writes :func:`render_report` to ``path`` and returns the path."""
    if os.path.exists(path) and not overwrite:
        raise FileExistsError(f"{path} exists; pass overwrite=True")
    text = render_report(samples, fields)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)
    return path
