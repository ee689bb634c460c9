"""Result types of the statistics (correlations, AUROC, bins, groups, field ranks,
distributions) and the number formatting they share.

Every result has ``to_dict()`` (JSON-friendly: numpy scalars become Python numbers,
NaN/inf become None) and ``to_row()`` (strings for :func:`.tables.format_table`, with
estimates shown as ``est [lo, hi]``).

The formatting functions here are the package's one number format: three decimals for
statistics and intervals (:func:`fmt`, :func:`fmt_ci`, :func:`fmt_short`), plain numbers
for sizes and counts (:func:`fmt_size`), and "n/a" or "n/a (reason)" for a number that
cannot be given (:func:`fmt_na`), never "nan" or scientific notation.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any, Dict, List, Optional, Tuple

import numpy as np

__all__ = [
    "METHODS", "Correlation", "AUROC", "BinRow", "GroupRow", "FieldRank", "Distribution",
    "fmt", "fmt_ci", "fmt_na", "fmt_short", "fmt_size", "jsonable", "num",
]

#: Correlation methods, in reporting order (also the correlation fields of FieldRank).
METHODS = ("spearman", "kendall", "pearson")


def num(v):
    """JSON-friendly number: numpy scalars to Python, NaN/inf to None."""
    if v is None:
        return None
    if isinstance(v, (bool, np.bool_)):
        return bool(v)
    if isinstance(v, (int, np.integer)):
        return int(v)
    if isinstance(v, (float, np.floating)):
        v = float(v)
        return v if math.isfinite(v) else None
    return v


def jsonable(obj):
    """``obj`` with dicts, lists, tuples and arrays made JSON-friendly (see :func:`num`)."""
    if isinstance(obj, dict):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return [jsonable(v) for v in obj.tolist()]
    return num(obj)


def _missing(v) -> bool:
    """None, NaN or +-inf: a number that cannot be shown."""
    if v is None:
        return True
    try:
        return not math.isfinite(float(v))
    except (TypeError, ValueError):
        return False


def fmt_na(reason: Optional[str] = None) -> str:
    """The one way a missing number reads: "n/a", or "n/a (reason)"."""
    reason = str(reason).strip() if reason is not None else ""
    return f"n/a ({reason})" if reason else "n/a"


def fmt(v, digits=3, reason: Optional[str] = None):
    """A statistic: ``digits`` decimals (three by default), never scientific notation.

    NaN/inf read "n/a" (or "n/a (reason)"); None reads "" (an empty cell) unless a
    ``reason`` is given. Integers, strings and booleans are shown as they are.
    """
    if v is None:
        return fmt_na(reason) if reason else ""
    if isinstance(v, (bool, np.bool_)):
        return str(bool(v))
    if isinstance(v, (int, np.integer)):
        return str(int(v))
    if isinstance(v, (float, np.floating)):
        if _missing(v):
            return fmt_na(reason)
        text = f"{float(v):.{digits}f}"
        # -0.0004 rounds to "-0.000": a zero has no sign
        return text[1:] if text.startswith("-") and not text.strip("-0.") else text
    return str(v)


def fmt_short(v, reason: Optional[str] = None) -> str:
    """A statistic in a sentence or caption: :func:`fmt`, "n/a" (with ``reason``) when
    missing, None included. Kept under its old name: it is now the same format."""
    return fmt_na(reason) if _missing(v) else fmt(v)


def fmt_ci(est, lo, hi, digits=3, reason: Optional[str] = None):
    """``est [lo, hi]`` in :func:`fmt`'s format; just ``est`` without a finite interval;
    "n/a" (or "n/a (reason)") without an estimate."""
    if _missing(est):
        return fmt_na(reason)
    if _missing(lo) or _missing(hi):
        return fmt(float(est), digits)
    return f"{fmt(float(est), digits)} [{fmt(float(lo), digits)}, {fmt(float(hi), digits)}]"


def fmt_size(v, reason: Optional[str] = None) -> str:
    """A size or a count (a box area, a number of samples): a plain number, never
    scientific notation. Whole numbers, and anything from 10 up, round to an integer with
    thousands separators ("12,346"); smaller fractions keep three significant digits
    ("2.5", "0.0123"); "n/a" (or "n/a (reason)") when missing."""
    if _missing(v):
        return fmt_na(reason)
    v = float(v)
    if abs(v) >= 10 or v == int(v):
        return f"{int(round(v)):,}"
    return np.format_float_positional(v, precision=3, unique=False, fractional=False, trim="-")


class _Interval:
    """An estimate with a confidence interval (``ci_low``, ``ci_high``)."""

    @property
    def ci(self) -> Tuple[float, float]:
        return (self.ci_low, self.ci_high)

    def to_dict(self) -> dict:
        return jsonable(asdict(self))


@dataclass
class Correlation(_Interval):
    """One correlation with its bootstrap interval.

    ``n`` is the number of pairs correlated (for group-level correlations: groups) and
    ``n_missing`` the number of input samples dropped. ``note`` says why an estimate is
    NaN when it is.
    """

    method: str
    estimate: float
    ci_low: float
    ci_high: float
    n: int
    n_missing: int
    p_value: float
    confidence: float = 0.95
    n_boot: int = 1000
    higher_is_better: bool = True
    level: str = "sample"
    n_samples: Optional[int] = None
    note: str = ""

    def to_row(self) -> dict:
        row = {
            "method": self.method,
            "estimate": fmt_ci(self.estimate, self.ci_low, self.ci_high, reason=self.note),
            "p": fmt(self.p_value),
            "n": self.n,
            "missing": self.n_missing,
        }
        if self.note:
            row["note"] = self.note
        return row


@dataclass
class AUROC(_Interval):
    """How well *low* quality flags errors: P(quality of a correct sample > quality of an
    error), ties counting one half. 0.5 is chance; NaN (with ``note``) when only one class
    is present."""

    estimate: float
    ci_low: float
    ci_high: float
    n: int
    n_missing: int
    n_pos: int
    n_neg: int
    confidence: float = 0.95
    n_boot: int = 1000
    higher_is_better: bool = True
    note: str = ""

    def to_row(self) -> dict:
        row = {
            "auroc": fmt_ci(self.estimate, self.ci_low, self.ci_high, reason=self.note),
            "n": self.n,
            "correct": self.n_pos,
            "errors": self.n_neg,
            "missing": self.n_missing,
        }
        if self.note:
            row["note"] = self.note
        return row


@dataclass
class BinRow:
    """One quality bin: ``[lo, hi)`` (the last bin includes ``hi``)."""

    lo: float
    hi: float
    n: int
    mean_quality: float
    mean_target: float
    ci_low: float
    ci_high: float
    interval: str  # "wilson" for binary targets, "t" for continuous ones

    def to_dict(self) -> dict:
        return jsonable(asdict(self))

    def to_row(self) -> dict:
        return {
            "quality bin": f"[{fmt(self.lo)}, {fmt(self.hi)}]",
            "n": self.n,
            "mean quality": fmt(self.mean_quality),
            "mean target": fmt_ci(self.mean_target, self.ci_low, self.ci_high),
        }


@dataclass
class GroupRow:
    """Per-group summary: size, mean target with its interval, mean quality, and the
    within-group correlation."""

    group: Any
    n: int
    mean_quality: float
    mean_target: float
    ci_low: float
    ci_high: float
    interval: str
    correlation: Optional[Correlation] = None

    def to_dict(self) -> dict:
        d = {k: getattr(self, k) for k in
             ("group", "n", "mean_quality", "mean_target", "ci_low", "ci_high", "interval")}
        d = jsonable(d)
        d["group"] = jsonable(self.group) if isinstance(self.group, (tuple, list)) else (
            num(self.group) if isinstance(self.group, (int, float, np.generic)) else str(self.group))
        d["correlation"] = None if self.correlation is None else self.correlation.to_dict()
        return d

    def to_row(self) -> dict:
        row = {
            "group": self.group if not isinstance(self.group, tuple) else ", ".join(map(str, self.group)),
            "n": self.n,
            "mean quality": fmt(self.mean_quality),
            "mean target": fmt_ci(self.mean_target, self.ci_low, self.ci_high),
        }
        if self.correlation is not None:
            c = self.correlation
            row[c.method] = fmt_ci(c.estimate, c.ci_low, c.ci_high, reason=c.note)
        return row


@dataclass
class FieldRank:
    """One quality field's alignment with the target: all three correlations and, for a
    binary target, the AUROC of low quality flagging errors."""

    name: str
    higher_is_better: bool
    spearman: Correlation
    kendall: Correlation
    pearson: Correlation
    auroc: Optional[AUROC] = None

    @property
    def n(self) -> int:
        return self.spearman.n

    @property
    def n_missing(self) -> int:
        return self.spearman.n_missing

    def to_dict(self) -> dict:
        return {
            "name": self.name,
            "higher_is_better": bool(self.higher_is_better),
            "n": int(self.n),
            "n_missing": int(self.n_missing),
            "spearman": self.spearman.to_dict(),
            "kendall": self.kendall.to_dict(),
            "pearson": self.pearson.to_dict(),
            "auroc": None if self.auroc is None else self.auroc.to_dict(),
        }

    def to_row(self) -> dict:
        row = {"field": self.name}
        for m in METHODS:
            c = getattr(self, m)
            row[m] = fmt_ci(c.estimate, c.ci_low, c.ci_high, reason=c.note)
        if self.auroc is not None:
            a = self.auroc
            row["auroc"] = fmt_ci(a.estimate, a.ci_low, a.ci_high, reason=a.note)
        row["n"] = self.n
        row["missing"] = self.n_missing
        return row


@dataclass
class Distribution:
    """Histogram and summary statistics of one score."""

    n: int
    n_missing: int
    mean: float
    std: float
    min: float
    p5: float
    p25: float
    median: float
    p75: float
    p95: float
    max: float
    counts: List[int] = field(default_factory=list)
    edges: List[float] = field(default_factory=list)

    @property
    def quantiles(self) -> Dict[str, float]:
        return {k: getattr(self, k) for k in ("min", "p5", "p25", "median", "p75", "p95", "max")}

    def to_dict(self) -> dict:
        return jsonable(asdict(self))

    def to_row(self) -> dict:
        return {k: (fmt(getattr(self, k)) if k not in ("n", "n_missing") else getattr(self, k))
                for k in ("n", "n_missing", "mean", "std", "min", "p5", "p25", "median",
                          "p75", "p95", "max")}
