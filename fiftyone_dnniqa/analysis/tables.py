"""A score's distribution and Markdown tables of results."""

from __future__ import annotations

from typing import Mapping, Optional, Sequence

import numpy as np

from .resampling import clean_pairs
from .results import Distribution, fmt

__all__ = ["distribution", "format_table"]


# ---------------------------------------------------------------------------
# Distribution
# ---------------------------------------------------------------------------


def distribution(quality, bins=30) -> Distribution:
    """Histogram (``bins`` as in ``np.histogram``) and quantiles of a score."""
    (q,), n_missing, _ = clean_pairs(quality, names=["quality"])
    n = len(q)
    if n == 0:
        nan = float("nan")
        return Distribution(n=0, n_missing=n_missing, mean=nan, std=nan, min=nan, p5=nan,
                            p25=nan, median=nan, p75=nan, p95=nan, max=nan)
    qs = np.quantile(q, [0.0, 0.05, 0.25, 0.5, 0.75, 0.95, 1.0])
    counts, edges = np.histogram(q, bins=bins)
    return Distribution(n=n, n_missing=n_missing, mean=float(q.mean()),
                        std=float(q.std(ddof=1)) if n > 1 else float("nan"),
                        min=float(qs[0]), p5=float(qs[1]), p25=float(qs[2]), median=float(qs[3]),
                        p75=float(qs[4]), p95=float(qs[5]), max=float(qs[6]),
                        counts=[int(c) for c in counts], edges=[float(e) for e in edges])


# ---------------------------------------------------------------------------
# Markdown
# ---------------------------------------------------------------------------


def _cell(v):
    return fmt(v).replace("|", "\\|").replace("\n", " ")


def format_table(rows, columns: Optional[Sequence[str]] = None) -> str:
    """Markdown table of result rows (the types of :mod:`.results`, or dicts).

    Dataclasses contribute their ``to_row()`` (estimates shown as ``est [lo, hi]``);
    dicts are used as they are. Columns default to the union of keys in first-seen order.
    """
    if rows is None:
        rows = []
    if isinstance(rows, Mapping):  # e.g. the dict returned by correlations()
        rows = list(rows.values())
    elif hasattr(rows, "to_row"):
        rows = [rows]
    dicts = []
    for r in rows:
        if hasattr(r, "to_row"):
            dicts.append(r.to_row())
        elif isinstance(r, Mapping):
            dicts.append(dict(r))
        elif hasattr(r, "to_dict"):
            dicts.append(r.to_dict())
        else:
            raise TypeError(f"cannot tabulate {type(r).__name__}")
    if columns is None:
        columns = []
        for d in dicts:
            for k in d:
                if k not in columns:
                    columns.append(k)
    lines = ["| " + " | ".join(_cell(c) for c in columns) + " |",
             "|" + "|".join(" --- " for _ in columns) + "|"]
    for d in dicts:
        lines.append("| " + " | ".join(_cell(d.get(c)) for c in columns) + " |")
    return "\n".join(lines)
