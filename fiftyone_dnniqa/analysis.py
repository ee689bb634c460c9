"""Relating quality scores to model performance: statistics with confidence intervals.

Plain numpy/scipy functions over array-likes; nothing here touches FiftyOne.

Conventions
-----------
* Every function drops pairs where either value is NaN, None or +-inf and reports the
  number of pairs used (``n``) and dropped (``n_missing``).
* Spearman's rho is the primary statistic; Kendall's tau-b and Pearson's r sit beside it.
* Every estimate carries a percentile bootstrap interval (``n_boot`` resamples,
  ``confidence`` level, reproducible through ``seed``).
* ``higher_is_better=False`` flips the sign of the quality score first, so a positive
  correlation (or an AUROC above 0.5) always means "better quality, better performance".

Speed
-----
The bootstrap never loops over samples in Python. A block of resamples is represented
by a ``(block, n)`` matrix of multiplicities (how often each sample was drawn), built
with one ``bincount``. Statistics are then computed exactly from those weights:

* Spearman: the rank of a value inside a resample is the (exclusive) cumulative count of
  the values below it plus half its own tie-group's count plus one half; with the data
  sorted once, that is a ``cumsum`` per resample, i.e. O(n) instead of a sort. The
  correlation is the count-weighted Pearson correlation of those ranks, which is exactly
  ``scipy.stats.spearmanr`` of the resampled arrays.
* Pearson: count-weighted Pearson correlation of the values.
* Kendall: ``tau_b = c^T S c / sqrt((N^2 - sum_g Wx_g^2) (N^2 - sum_g Wy_g^2))`` with
  ``S_ij = sign(x_i - x_j) sign(y_i - y_j)`` and ``W_g`` the resampled counts of each tie
  group: a matrix product per block. The matrix is O(m^2), so the bootstrap runs on a
  random subsample of at most ``kendall_boot_cap`` pairs (default 1000) when n is larger;
  the deviations of the subsample's bootstrap replicates from the subsample's own tau
  are scaled by ``sqrt(m / n)`` (tau's standard error shrinks like ``1/sqrt(n)``) and
  centred on the full-data tau. The point estimate and p-value always use
  ``scipy.stats.kendalltau`` on all pairs.
* AUROC: Mann-Whitney rank formula with the same resampled ranks, bootstrapped
  stratified by class so every resample has both classes.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import asdict, dataclass, field
from typing import Any, Dict, Iterator, List, Mapping, Optional, Sequence, Tuple

import numpy as np
from scipy import stats

__all__ = [
    "Correlation", "AUROC", "BinRow", "GroupRow", "FieldRank", "Distribution",
    "METHODS", "correlate", "correlations", "auroc", "binned_performance", "group_table",
    "group_level_correlation", "group_level_correlations", "rank_fields", "distribution",
    "wilson_interval", "format_table",
]

METHODS = ("spearman", "kendall", "pearson")

# Elements per (resamples x samples) block of multiplicities: bounds bootstrap memory
# to a few tens of MB whatever n is.
_BLOCK_ELEMENTS = 1 << 22
# Above this many pairs the Kendall bootstrap runs on a subsample (see module docstring).
KENDALL_BOOT_CAP = 1000
# Minimum number of pairs for a correlation.
_MIN_PAIRS = 3


# ---------------------------------------------------------------------------
# Result types
# ---------------------------------------------------------------------------


def _num(v):
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


def _jsonable(obj):
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return [_jsonable(v) for v in obj.tolist()]
    return _num(obj)


def _fmt(v, digits=3):
    if v is None:
        return ""
    if isinstance(v, (float, np.floating)):
        v = float(v)
        if not math.isfinite(v):
            return "nan"
        if v != 0 and (abs(v) >= 1e5 or abs(v) < 10 ** -digits):
            return f"{v:.{digits}g}"
        return f"{v:.{digits}f}"
    return str(v)


def _fmt_ci(est, lo, hi, digits=3):
    if est is None or not math.isfinite(float(est)):
        return "nan"
    if lo is None or hi is None or not (math.isfinite(float(lo)) and math.isfinite(float(hi))):
        return _fmt(est, digits)
    return f"{_fmt(est, digits)} [{_fmt(lo, digits)}, {_fmt(hi, digits)}]"


class _Interval:
    """An estimate with a confidence interval (``ci_low``, ``ci_high``)."""

    @property
    def ci(self) -> Tuple[float, float]:
        return (self.ci_low, self.ci_high)

    def to_dict(self) -> dict:
        return _jsonable(asdict(self))


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
            "estimate": _fmt_ci(self.estimate, self.ci_low, self.ci_high),
            "p": _fmt(self.p_value),
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
            "auroc": _fmt_ci(self.estimate, self.ci_low, self.ci_high),
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
        return _jsonable(asdict(self))

    def to_row(self) -> dict:
        return {
            "quality bin": f"[{_fmt(self.lo)}, {_fmt(self.hi)}]",
            "n": self.n,
            "mean quality": _fmt(self.mean_quality),
            "mean target": _fmt_ci(self.mean_target, self.ci_low, self.ci_high),
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
        d = _jsonable(d)
        d["group"] = _jsonable(self.group) if isinstance(self.group, (tuple, list)) else (
            _num(self.group) if isinstance(self.group, (int, float, np.generic)) else str(self.group))
        d["correlation"] = None if self.correlation is None else self.correlation.to_dict()
        return d

    def to_row(self) -> dict:
        row = {
            "group": self.group if not isinstance(self.group, tuple) else ", ".join(map(str, self.group)),
            "n": self.n,
            "mean quality": _fmt(self.mean_quality),
            "mean target": _fmt_ci(self.mean_target, self.ci_low, self.ci_high),
        }
        if self.correlation is not None:
            c = self.correlation
            row[c.method] = _fmt_ci(c.estimate, c.ci_low, c.ci_high)
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
            row[m] = _fmt_ci(c.estimate, c.ci_low, c.ci_high)
        if self.auroc is not None:
            row["auroc"] = _fmt_ci(self.auroc.estimate, self.auroc.ci_low, self.auroc.ci_high)
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
        return _jsonable(asdict(self))

    def to_row(self) -> dict:
        return {k: (_fmt(getattr(self, k)) if k not in ("n", "n_missing") else getattr(self, k))
                for k in ("n", "n_missing", "mean", "std", "min", "p5", "p25", "median",
                          "p75", "p95", "max")}


# ---------------------------------------------------------------------------
# Input cleaning
# ---------------------------------------------------------------------------


def _as_float(x, name="values") -> np.ndarray:
    """1-D float array; None becomes NaN. Raises a clear error for non-numeric input."""
    if hasattr(x, "detach") and hasattr(x, "cpu"):  # torch tensors without importing torch
        x = x.detach().cpu().numpy()
    a = np.asarray(x)
    if a.dtype != float:
        try:
            a = a.astype(float)
        except (TypeError, ValueError) as e:
            raise TypeError(f"{name} must be numeric (None/NaN allowed for missing): {e}") from None
    if a.ndim != 1:
        if a.ndim == 2 and 1 in a.shape:
            a = a.reshape(-1)
        else:
            raise ValueError(f"{name} must be 1-D, got shape {a.shape}")
    return a


def _clean(*arrays, names=None):
    """Float arrays with every position that is non-finite in any of them removed.

    Returns ``(cleaned_arrays, n_missing, mask)``.
    """
    names = names or [f"array {i}" for i in range(len(arrays))]
    arrs = [_as_float(a, nm) for a, nm in zip(arrays, names)]
    n = len(arrs[0])
    for a, nm in zip(arrs[1:], names[1:]):
        if len(a) != n:
            raise ValueError(f"length mismatch: {names[0]} has {n} values, {nm} has {len(a)}")
    mask = np.ones(n, dtype=bool)
    for a in arrs:
        mask &= np.isfinite(a)
    n_missing = int(n - mask.sum())
    if n_missing:
        arrs = [a[mask] for a in arrs]
    return arrs, n_missing, mask


def _orient(q, higher_is_better):
    return q if higher_is_better else -q


# ---------------------------------------------------------------------------
# Bootstrap machinery (vectorised)
# ---------------------------------------------------------------------------


def _rng(seed):
    return seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)


def _block_size(n, n_boot):
    return int(max(1, min(n_boot, _BLOCK_ELEMENTS // max(n, 1))))


def _stratified_sampler(codes):
    """Index sampler that resamples within each stratum (keeps every stratum's size)."""
    codes = np.asarray(codes)
    perm = np.argsort(codes, kind="stable")
    sizes = np.bincount(codes)
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    slot_start = starts[codes[perm]]
    slot_size = sizes[codes[perm]]

    def sample(rng, k):
        u = rng.random((k, len(perm)))
        return perm[slot_start + (u * slot_size).astype(np.int64)]

    return sample


def _count_blocks(rng, n, n_boot, sampler=None) -> Iterator[np.ndarray]:
    """Yield ``(block, n)`` integer matrices of bootstrap multiplicities."""
    b = _block_size(n, n_boot)
    dt = np.int32 if n < 2**31 - 1 else np.int64
    done = 0
    while done < n_boot:
        k = min(b, n_boot - done)
        idx = rng.integers(0, n, size=(k, n), dtype=dt) if sampler is None else sampler(rng, k)
        W = np.empty((k, n), dtype=dt)  # counts <= n fit the index type
        for r in range(k):  # rows of the block (resamples), not samples
            W[r] = np.bincount(idx[r], minlength=n)
        yield W
        done += k


def _tie_groups(sorted_values):
    """``None`` when all values differ, else ``(group_starts, group_of_each_position)``."""
    v = sorted_values
    if len(v) == 0:
        return None
    new = np.empty(len(v), dtype=bool)
    new[0] = True
    np.not_equal(v[1:], v[:-1], out=new[1:])
    if new.all():
        return None
    return np.flatnonzero(new), np.cumsum(new) - 1


def _resample_ranks(W, ties):
    """Average ranks inside each resample, for data sorted ascending.

    ``W`` holds the multiplicities in sorted order; the rank of a sample is the number
    of resampled values below it plus (its tie group's resampled count + 1) / 2.
    """
    return (_centred_ranks2(W, ties) + (W.sum(axis=1, keepdims=True) + 1)) * 0.5


def _centred_ranks2(W, ties):
    """Twice (rank - mean rank) inside each resample, as integers (see _resample_ranks).

    With N the resample size the mean rank is (N + 1) / 2 whatever the ties, so
    ``2 * rank - (N + 1) = 2 * cum - count - N`` with ``cum`` the inclusive cumulative
    count of the sample's tie group: exact integer arithmetic, no sort.
    """
    N = W.sum(axis=1, keepdims=True, dtype=np.int64)
    if ties is None:
        c = np.cumsum(W, axis=1, dtype=np.int64)
        c *= 2
        c -= W
    else:
        starts, gidx = ties
        G = np.add.reduceat(W, starts, axis=1, dtype=np.int64)
        c = np.cumsum(G, axis=1)
        c *= 2
        c -= G
        c = np.take(c, gidx, axis=1)
    c -= N
    return c


def _small_int(a):
    """int32 copy when the values fit (random gathers move half the bytes)."""
    if a.size and max(abs(int(a.max())), abs(int(a.min()))) < 2**31 - 1:
        return a.astype(np.int32)
    return a


def _weighted_corr(W, a, b):
    """Row-wise Pearson correlation of ``a`` and ``b`` with weights ``W`` (all (k, n);
    ``a``/``b`` may be 1-D and broadcast)."""
    W = W.astype(float, copy=False)
    N = W.sum(axis=1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        ma = (W * a).sum(axis=1, keepdims=True) / N
        mb = (W * b).sum(axis=1, keepdims=True) / N
        da = a - ma
        db = b - mb
        Wda = W * da
        cov = np.einsum("ij,ij->i", Wda, db)
        va = np.einsum("ij,ij->i", Wda, da)
        vb = np.einsum("ij,ij->i", W * db, db)
        r = cov / np.sqrt(va * vb)
    return np.clip(r, -1.0, 1.0)


def _weighted_corr_centred(W, a, b):
    """Like _weighted_corr for ``a``/``b`` already of weighted mean zero."""
    Wf = W.astype(float)
    Wa = Wf * a
    cov = np.einsum("ij,ij->i", Wa, b)
    va = np.einsum("ij,ij->i", Wa, a)
    Wf *= b
    vb = np.einsum("ij,ij->i", Wf, b)
    with np.errstate(invalid="ignore", divide="ignore"):
        r = cov / np.sqrt(va * vb)
    return np.clip(r, -1.0, 1.0)


class _SpearmanBoot:
    def __init__(self, x, y):
        o = np.argsort(x, kind="stable")
        self.order = o
        self.x_ties = _tie_groups(x[o])
        ys = y[o]
        self.oy = np.argsort(ys, kind="stable")
        self.inv_oy = np.empty_like(self.oy)
        self.inv_oy[self.oy] = np.arange(len(self.oy))
        self.y_ties = _tie_groups(ys[self.oy])

    def __call__(self, W):
        """``W`` in x-sorted order."""
        W = _small_int(W)
        rx = _centred_ranks2(W, self.x_ties).astype(float)
        ry = _small_int(_centred_ranks2(np.take(W, self.oy, axis=1), self.y_ties))
        ry = np.take(ry, self.inv_oy, axis=1).astype(float)
        return _weighted_corr_centred(W, rx, ry)


class _PearsonBoot:
    """Weighted Pearson r of resamples from five weighted sums (one matrix product);
    the data are standardised once so the moment formula does not lose precision."""

    def __init__(self, x, y):
        a = (x - x.mean()) / (x.std() or 1.0)
        b = (y - y.mean()) / (y.std() or 1.0)
        self.V = np.stack([a, b, a * a, b * b, a * b], axis=1)

    def __call__(self, W):
        S = W.astype(float) @ self.V
        N = W.sum(axis=1).astype(float)
        ma, mb = S[:, 0] / N, S[:, 1] / N
        cov = S[:, 4] / N - ma * mb
        va = S[:, 2] / N - ma * ma
        vb = S[:, 3] / N - mb * mb
        with np.errstate(invalid="ignore", divide="ignore"):
            r = cov / np.sqrt(va * vb)
        return np.clip(r, -1.0, 1.0)


def _spearman_from_counts(x, y, W):
    """Spearman rho of each resample given multiplicities ``W`` (k, n) in input order.

    Exposed for tests: equals ``spearmanr(x[idx], y[idx])`` with ``W = bincount(idx)``.
    """
    s = _SpearmanBoot(np.asarray(x, float), np.asarray(y, float))
    return s(np.take(np.atleast_2d(W), s.order, axis=1))


def _sum_sq_groups(W, ties):
    if ties is None:
        Wf = W.astype(float)
        return np.einsum("ij,ij->i", Wf, Wf)
    G = np.add.reduceat(W, ties[0], axis=1).astype(float)
    return np.einsum("ij,ij->i", G, G)


class _KendallBoot:
    """Kendall tau-b of resamples of (x, y) via the pairwise sign matrix."""

    def __init__(self, x, y):
        o = np.argsort(x, kind="stable")
        x = x[o]
        y = y[o]
        self.order = o
        self.x_ties = _tie_groups(x)
        self.oy = np.argsort(y, kind="stable")
        self.y_ties = _tie_groups(y[self.oy])
        # float32 is exact here: entries are -1/0/1 and the products stay far below 2**24
        # per row for the capped sizes.
        self.S = (np.sign(x[:, None] - x[None, :]) * np.sign(y[:, None] - y[None, :])).astype(np.float32)

    def __call__(self, W):
        """``W`` in x-sorted order."""
        Wf = W.astype(np.float32)
        num = np.einsum("ij,ij->i", (Wf @ self.S).astype(float), W.astype(float))
        N = W.sum(axis=1).astype(float)
        dx = N * N - _sum_sq_groups(W, self.x_ties)
        dy = N * N - _sum_sq_groups(np.take(W, self.oy, axis=1), self.y_ties)
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.clip(num / np.sqrt(dx * dy), -1.0, 1.0)


def _kendall_from_counts(x, y, W):
    """Kendall tau-b of each resample given multiplicities ``W`` in input order (tests)."""
    k = _KendallBoot(np.asarray(x, float), np.asarray(y, float))
    return k(np.atleast_2d(W)[:, k.order])


def _run_boot(stat, n, n_boot, rng, sampler=None):
    out = [stat(W) for W in _count_blocks(rng, n, n_boot, sampler)]
    return np.concatenate(out) if out else np.empty(0)


def _percentile_ci(boot, confidence):
    boot = np.asarray(boot, float)
    ok = np.isfinite(boot)
    if boot.size == 0 or ok.sum() < max(2, 0.5 * boot.size):
        return float("nan"), float("nan")
    a = (1.0 - confidence) / 2.0
    lo, hi = np.quantile(boot[ok], [a, 1.0 - a])
    return float(lo), float(hi)


def _fisher_se_ci(boot, estimate, confidence):
    """``tanh(atanh(estimate) +- z * SE)``, SE the bootstrap standard deviation of
    ``atanh``: always contains the estimate and stays inside (-1, 1)."""
    from scipy.stats import norm

    boot = np.asarray(boot, float)
    ok = boot[np.isfinite(boot)]
    if ok.size < max(2, 0.5 * boot.size) or not math.isfinite(estimate):
        return float("nan"), float("nan")
    lim = 1 - 1e-9
    se = np.std(np.arctanh(np.clip(ok, -lim, lim)), ddof=1)
    z = np.arctanh(np.clip(estimate, -lim, lim))
    q = norm.ppf(1 - (1 - confidence) / 2)
    return float(np.tanh(z - q * se)), float(np.tanh(z + q * se))


# ---------------------------------------------------------------------------
# Correlations
# ---------------------------------------------------------------------------


def _point(method, q, t):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if method == "spearman":
            r = stats.spearmanr(q, t)
        elif method == "kendall":
            r = stats.kendalltau(q, t)
        else:
            r = stats.pearsonr(q, t)
    return float(r.statistic), float(r.pvalue)


def _check_method(method):
    m = str(method).lower()
    if m not in METHODS:
        raise ValueError(f"unknown correlation method {method!r}; use one of {', '.join(METHODS)}")
    return m


def _check_conf(confidence):
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")


def correlate(
    quality,
    target,
    method: str = "spearman",
    higher_is_better: bool = True,
    n_boot: int = 1000,
    confidence: float = 0.95,
    seed=0,
    kendall_boot_cap: int = KENDALL_BOOT_CAP,
) -> Correlation:
    """Correlation between a quality score and a per-sample performance target.

    Args:
        quality: per-sample quality scores (array-like; None/NaN/inf are dropped pairwise).
        target: per-sample performance (correctness as bool/0-1, F1, confidence, ...).
        method: "spearman" (default), "kendall" (tau-b) or "pearson".
        higher_is_better: False for scores where lower means better quality; the
            estimate is then sign-flipped so positive always means "better quality,
            better performance".
        n_boot: bootstrap resamples for the percentile interval (0 for none).
        confidence: interval level.
        seed: int or ``np.random.Generator``; the same seed gives the same interval.
        kendall_boot_cap: largest n bootstrapped exactly for Kendall; larger inputs are
            bootstrapped on a subsample of this size and the interval rescaled by
            ``sqrt(cap / n)`` (see the module docstring).
    """
    method = _check_method(method)
    _check_conf(confidence)
    (q, t), n_missing, _ = _clean(quality, target, names=["quality", "target"])
    q = _orient(q, higher_is_better)
    n = len(q)
    res = Correlation(method=method, estimate=float("nan"), ci_low=float("nan"),
                      ci_high=float("nan"), n=n, n_missing=n_missing, p_value=float("nan"),
                      confidence=confidence, n_boot=int(n_boot),
                      higher_is_better=bool(higher_is_better))
    if n < _MIN_PAIRS:
        res.note = f"need at least {_MIN_PAIRS} complete pairs, got {n}"
        return res
    if np.all(q == q[0]) or np.all(t == t[0]):
        which = "quality" if np.all(q == q[0]) else "target"
        res.note = f"{which} is constant: correlation undefined"
        return res
    est, p = _point(method, q, t)
    res.estimate, res.p_value = est, p
    if n_boot and n_boot > 0:
        rng = _rng(seed)
        lo, hi = _boot_corr_ci(method, q, t, est, int(n_boot), confidence, rng,
                               kendall_boot_cap)
        res.ci_low, res.ci_high = lo, hi
    return res


def _boot_corr_ci(method, q, t, est, n_boot, confidence, rng, kendall_boot_cap):
    n = len(q)
    if method == "spearman":
        s = _SpearmanBoot(q, t)
        boot = _run_boot(s, n, n_boot, rng)
        return _percentile_ci(boot, confidence)
    if method == "pearson":
        boot = _run_boot(_PearsonBoot(q, t), n, n_boot, rng)
        return _percentile_ci(boot, confidence)
    # kendall
    cap = max(int(kendall_boot_cap), 10)
    if n <= cap:
        k = _KendallBoot(q, t)
        boot = _run_boot(k, n, n_boot, rng)
        return _percentile_ci(boot, confidence)
    sub = rng.choice(n, size=cap, replace=False)
    qs, ts = q[sub], t[sub]
    k = _KendallBoot(qs, ts)
    tau_sub = _point("kendall", qs, ts)[0]
    if not math.isfinite(tau_sub):
        return float("nan"), float("nan")
    boot = _run_boot(k, cap, n_boot, rng)
    lo, hi = _percentile_ci(boot, confidence)
    scale = math.sqrt(cap / n)
    return (float(np.clip(est + (lo - tau_sub) * scale, -1, 1)),
            float(np.clip(est + (hi - tau_sub) * scale, -1, 1)))


def correlations(quality, target, higher_is_better: bool = True, n_boot: int = 1000,
                 confidence: float = 0.95, seed=0,
                 kendall_boot_cap: int = KENDALL_BOOT_CAP) -> Dict[str, Correlation]:
    """Spearman, Kendall and Pearson (in that order) with their intervals."""
    return {
        m: correlate(quality, target, method=m, higher_is_better=higher_is_better,
                     n_boot=n_boot, confidence=confidence, seed=seed,
                     kendall_boot_cap=kendall_boot_cap)
        for m in METHODS
    }


# ---------------------------------------------------------------------------
# AUROC of low quality detecting errors
# ---------------------------------------------------------------------------


def _as_binary(v, name="correct"):
    if not np.all((v == 0) | (v == 1)):
        bad = v[(v != 0) & (v != 1)][:3]
        raise ValueError(f"{name} must be binary (True/False or 1/0), found values like {bad.tolist()}")
    return v.astype(bool)


def auroc(quality, correct, higher_is_better: bool = True, n_boot: int = 1000,
          confidence: float = 0.95, seed=0) -> AUROC:
    """AUROC of quality separating correct samples from errors.

    The estimate is P(quality of a correct sample > quality of an error) + 0.5 P(tie),
    i.e. ``sklearn.metrics.roc_auc_score(correct, quality)`` (with ``-quality`` when
    ``higher_is_better=False``): how well *low* quality detects errors. Computed with
    the Mann-Whitney rank formula (average ranks for ties). The bootstrap resamples
    correct samples and errors separately (stratified), so each resample has both.
    With only one class present the estimate is NaN and ``note`` says why.
    """
    _check_conf(confidence)
    (q, c), n_missing, _ = _clean(quality, correct, names=["quality", "correct"])
    c = _as_binary(c)
    q = _orient(q, higher_is_better)
    n = len(q)
    n_pos = int(c.sum())
    n_neg = n - n_pos
    res = AUROC(estimate=float("nan"), ci_low=float("nan"), ci_high=float("nan"), n=n,
                n_missing=n_missing, n_pos=n_pos, n_neg=n_neg, confidence=confidence,
                n_boot=int(n_boot), higher_is_better=bool(higher_is_better))
    if n_pos == 0 or n_neg == 0:
        res.note = ("no samples" if n == 0 else
                    f"only one class present ({n_pos} correct, {n_neg} errors): AUROC undefined")
        return res
    o = np.argsort(q, kind="stable")
    qs = q[o]
    pos = c[o]
    ranks = stats.rankdata(qs)
    u = ranks[pos].sum() - n_pos * (n_pos + 1) / 2.0
    res.estimate = float(u / (n_pos * n_neg))
    if n_boot and n_boot > 0:
        ties = _tie_groups(qs)
        posf = pos.astype(float)

        def stat(W):
            r = _resample_ranks(W, ties)
            return (np.einsum("ij,ij->i", W * posf, r) - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg)

        boot = _run_boot(stat, n, int(n_boot), _rng(seed), _stratified_sampler(pos.astype(np.int64)))
        res.ci_low, res.ci_high = _percentile_ci(boot, confidence)
    return res


# ---------------------------------------------------------------------------
# Means with intervals
# ---------------------------------------------------------------------------


def wilson_interval(successes, n, confidence: float = 0.95):
    """Wilson score interval for binomial proportions (vectorised; NaN where n == 0)."""
    k = np.asarray(successes, float)
    n = np.asarray(n, float)
    z = stats.norm.ppf(0.5 + confidence / 2.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        p = k / n
        denom = 1.0 + z * z / n
        centre = (p + z * z / (2 * n)) / denom
        half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return centre - half, centre + half


def _is_binary(t):
    return bool(t.size) and bool(np.all((t == 0) | (t == 1)))


def _grouped_means(codes, n_groups, q, t, confidence, binary=None):
    """Per-group n, mean quality, mean target and the target's interval (vectorised)."""
    cnt = np.bincount(codes, minlength=n_groups).astype(float)
    sq = np.bincount(codes, weights=q, minlength=n_groups)
    st = np.bincount(codes, weights=t, minlength=n_groups)
    with np.errstate(invalid="ignore", divide="ignore"):
        mq = sq / cnt
        mt = st / cnt
    if binary is None:
        binary = _is_binary(t)
    if binary:
        lo, hi = wilson_interval(st, cnt, confidence)
        kind = "wilson"
    else:
        # t interval: two-pass variance for accuracy
        dev = t - mt[codes]
        ss = np.bincount(codes, weights=dev * dev, minlength=n_groups)
        with np.errstate(invalid="ignore", divide="ignore"):
            sd = np.sqrt(ss / (cnt - 1))
            tq = stats.t.ppf(0.5 + confidence / 2.0, np.maximum(cnt - 1, 1))
            half = tq * sd / np.sqrt(cnt)
        half = np.where(cnt > 1, half, np.nan)
        lo, hi = mt - half, mt + half
        kind = "t"
    return cnt.astype(int), mq, mt, lo, hi, kind


def binned_performance(quality, target, bins: int = 10, strategy: str = "quantile",
                       confidence: float = 0.95) -> List[BinRow]:
    """Mean target per quality bin (e.g. accuracy by quality decile).

    ``strategy="quantile"`` gives (roughly) equal-count bins (tied edges merge, so there
    may be fewer bins than asked); ``"uniform"`` equal-width bins. Binary targets get a
    Wilson interval, continuous ones a t interval. Bins are half-open ``[lo, hi)`` except
    the last, which includes the maximum. Empty bins are kept with n = 0 and NaN means.
    """
    _check_conf(confidence)
    if int(bins) < 1:
        raise ValueError("bins must be >= 1")
    (q, t), _, _ = _clean(quality, target, names=["quality", "target"])
    if len(q) == 0:
        return []
    if strategy == "quantile":
        edges = np.unique(np.quantile(q, np.linspace(0, 1, int(bins) + 1)))
    elif strategy == "uniform":
        edges = np.linspace(q.min(), q.max(), int(bins) + 1)
    else:
        raise ValueError(f"unknown strategy {strategy!r}; use 'quantile' or 'uniform'")
    if len(edges) == 1:  # constant quality: one bin
        edges = np.array([edges[0], edges[0]])
    k = len(edges) - 1
    codes = np.clip(np.searchsorted(edges, q, side="right") - 1, 0, k - 1)
    cnt, mq, mt, lo, hi, kind = _grouped_means(codes, k, q, t, confidence)
    return [BinRow(lo=float(edges[i]), hi=float(edges[i + 1]), n=int(cnt[i]),
                   mean_quality=float(mq[i]), mean_target=float(mt[i]), ci_low=float(lo[i]),
                   ci_high=float(hi[i]), interval=kind) for i in range(k)]


# ---------------------------------------------------------------------------
# Groups
# ---------------------------------------------------------------------------


def _factorize(groups, n):
    """Integer codes (−1 for a missing group) and the group labels.

    ``groups`` is a 1-D array-like of hashable labels (None/NaN = missing), or a 2-D
    array-like / list of tuples of shape (n, k) for composite keys, whose labels are
    tuples.
    """
    import pandas as pd

    if isinstance(groups, (list, tuple)) and len(groups) and isinstance(groups[0], tuple):
        cols = list(zip(*groups))
        arr = None
    else:
        arr = np.asarray(groups, dtype=object) if not isinstance(groups, np.ndarray) else groups
        cols = None
        if arr.ndim == 2:
            cols = [arr[:, j] for j in range(arr.shape[1])]
    if cols is None:
        if len(arr) != n:
            raise ValueError(f"groups has {len(arr)} values for {n} samples")
        try:
            codes, uniques = pd.factorize(arr, sort=True, use_na_sentinel=True)
        except TypeError:
            codes, uniques = pd.factorize(arr, sort=False, use_na_sentinel=True)
        return np.asarray(codes, dtype=np.int64), list(np.asarray(uniques, dtype=object))
    if len(cols[0]) != n:
        raise ValueError(f"groups has {len(cols[0])} values for {n} samples")
    col_codes, col_uniques = [], []
    for col in cols:
        col = np.asarray(col, dtype=object)
        try:
            c, u = pd.factorize(col, sort=True, use_na_sentinel=True)
        except TypeError:
            c, u = pd.factorize(col, sort=False, use_na_sentinel=True)
        col_codes.append(np.asarray(c, dtype=np.int64))
        col_uniques.append(list(np.asarray(u, dtype=object)))
    M = np.stack(col_codes, axis=1)
    bad = (M < 0).any(axis=1)
    codes = np.full(n, -1, dtype=np.int64)
    if (~bad).any():
        uniq_rows, inv = np.unique(M[~bad], axis=0, return_inverse=True)
        codes[~bad] = inv.reshape(-1)
        labels = [tuple(col_uniques[j][r[j]] for j in range(len(cols))) for r in uniq_rows]
    else:
        labels = []
    return codes, labels


def _clean_groups(quality, target, groups, higher_is_better):
    qa = _as_float(quality, "quality")
    ta = _as_float(target, "target")
    if len(qa) != len(ta):
        raise ValueError(f"length mismatch: quality has {len(qa)} values, target has {len(ta)}")
    codes, labels = _factorize(groups, len(qa))
    mask = np.isfinite(qa) & np.isfinite(ta) & (codes >= 0)
    n_missing = int(len(qa) - mask.sum())
    q = _orient(qa[mask], higher_is_better)
    t = ta[mask]
    codes = codes[mask]
    # drop labels with no remaining samples and renumber
    present = np.bincount(codes, minlength=len(labels)) > 0 if len(codes) else np.zeros(len(labels), bool)
    remap = np.cumsum(present) - 1
    codes = remap[codes] if len(codes) else codes
    labels = [lab for lab, p in zip(labels, present) if p]
    return q, t, codes, labels, n_missing


def group_table(quality, target, groups, method: Optional[str] = "spearman",
                higher_is_better: bool = True, n_boot: int = 1000, confidence: float = 0.95,
                seed=0, min_n: int = 1) -> List[GroupRow]:
    """Per-group breakdown (per class, per tag, per corruption...).

    Each row: group label, n, mean quality (as given, not sign-flipped), mean target with
    a Wilson (binary) or t (continuous) interval, and, unless ``method`` is None, the
    within-group correlation with its bootstrap interval (NaN with a note for groups too
    small or constant). Rows are sorted by group label; groups with fewer than ``min_n``
    samples are left out.
    """
    _check_conf(confidence)
    q, t, codes, labels, _ = _clean_groups(quality, target, groups, True)
    G = len(labels)
    if G == 0:
        return []
    cnt, mq, mt, lo, hi, kind = _grouped_means(codes, G, q, t, confidence, binary=_is_binary(t))
    rows = []
    order = np.argsort(codes, kind="stable")
    bounds = np.concatenate([[0], np.cumsum(cnt)])
    rng = _rng(seed)
    for g in range(G):  # loop over groups, not samples
        if cnt[g] < min_n:
            continue
        corr = None
        if method is not None:
            idx = order[bounds[g]:bounds[g + 1]]
            corr = correlate(q[idx], t[idx], method=method, higher_is_better=higher_is_better,
                             n_boot=n_boot, confidence=confidence, seed=rng)
        rows.append(GroupRow(group=labels[g], n=int(cnt[g]), mean_quality=float(mq[g]),
                             mean_target=float(mt[g]), ci_low=float(lo[g]), ci_high=float(hi[g]),
                             interval=kind, correlation=corr))
    return rows


def _rowwise_corr(A, B, method):
    """Correlation of each row of A with the same row of B ((k, G) arrays)."""
    if method == "pearson":
        return _weighted_corr(np.ones_like(A), A, B)
    if method == "spearman":
        return _weighted_corr(np.ones_like(A), stats.rankdata(A, axis=1), stats.rankdata(B, axis=1))
    # kendall tau-b via pairwise signs, chunked over rows
    k, G = A.shape
    out = np.empty(k)
    step = max(1, _BLOCK_ELEMENTS // max(G * G, 1))
    for s in range(0, k, step):
        a = A[s:s + step]
        b = B[s:s + step]
        sa = np.sign(a[:, :, None] - a[:, None, :])
        sb = np.sign(b[:, :, None] - b[:, None, :])
        num = np.einsum("kij,kij->k", sa, sb)
        den = np.sqrt(np.einsum("kij,kij->k", sa, sa) * np.einsum("kij,kij->k", sb, sb))
        with np.errstate(invalid="ignore", divide="ignore"):
            out[s:s + step] = num / den
    return out


def group_level_correlations(quality, target, groups, higher_is_better: bool = True,
                             n_boot: int = 1000, confidence: float = 0.95, seed=0,
                             min_group_size: int = 1,
                             methods: Sequence[str] = METHODS) -> Dict[str, Correlation]:
    """Correlation between per-group mean quality and per-group mean target.

    E.g. accuracy per (corruption, severity) group against the group's mean quality.
    ``n`` of each result is the number of groups, ``n_samples`` the samples in them and
    ``n_missing`` the samples dropped (missing values, missing group, or groups smaller
    than ``min_group_size``). The bootstrap resamples samples *within* each group
    (stratified: group sizes stay fixed), recomputes the group means, and correlates
    them again; all methods share the same resamples. The interval is the
    estimate +- z bootstrap standard errors on Fisher's z scale: resampled group means
    are noisier than the data's own and pull percentile intervals below the estimate.
    """
    _check_conf(confidence)
    methods = [_check_method(m) for m in methods]
    q, t, codes, labels, n_missing = _clean_groups(quality, target, groups, higher_is_better)
    G = len(labels)
    if G and min_group_size > 1:
        cnt = np.bincount(codes, minlength=G)
        keep_g = cnt >= min_group_size
        if not keep_g.all():
            keep = keep_g[codes]
            n_missing += int((~keep).sum())
            remap = np.cumsum(keep_g) - 1
            q, t, codes = q[keep], t[keep], remap[codes[keep]]
            G = int(keep_g.sum())
    n_samples = len(q)

    def empty(m, note):
        return Correlation(method=m, estimate=float("nan"), ci_low=float("nan"),
                           ci_high=float("nan"), n=G, n_missing=n_missing, p_value=float("nan"),
                           confidence=confidence, n_boot=int(n_boot),
                           higher_is_better=bool(higher_is_better), level="group",
                           n_samples=n_samples, note=note)

    if G < _MIN_PAIRS:
        return {m: empty(m, f"need at least {_MIN_PAIRS} groups, got {G}") for m in methods}
    cnt = np.bincount(codes, minlength=G).astype(float)
    gq = np.bincount(codes, weights=q, minlength=G) / cnt
    gt = np.bincount(codes, weights=t, minlength=G) / cnt
    out = {}
    for m in methods:
        if np.all(gq == gq[0]) or np.all(gt == gt[0]):
            out[m] = empty(m, "group means are constant: correlation undefined")
            continue
        est, p = _point(m, gq, gt)
        out[m] = Correlation(method=m, estimate=est, ci_low=float("nan"), ci_high=float("nan"),
                             n=G, n_missing=n_missing, p_value=p, confidence=confidence,
                             n_boot=int(n_boot), higher_is_better=bool(higher_is_better),
                             level="group", n_samples=n_samples)
    if n_boot and n_boot > 0 and any(math.isfinite(c.estimate) for c in out.values()):
        sampler = _stratified_sampler(codes)
        # group means of a resample: weights summed per group (codes sorted once)
        o = np.argsort(codes, kind="stable")
        starts = np.concatenate([[0], np.cumsum(cnt.astype(np.int64))[:-1]])
        qo, to = q[o], t[o]
        boots = {m: [] for m in out}
        for W in _count_blocks(_rng(seed), n_samples, int(n_boot), sampler):
            Wo = W[:, o].astype(float)
            bq = np.add.reduceat(Wo * qo, starts, axis=1) / cnt
            bt = np.add.reduceat(Wo * to, starts, axis=1) / cnt
            for m in boots:
                boots[m].append(_rowwise_corr(bq, bt, m))
        for m, parts in boots.items():
            if math.isfinite(out[m].estimate):
                # a resample's group means are noisier than the data's own, which pulls
                # resampled correlations below the estimate (worst near 1): the interval is
                # the estimate +- z * bootstrap SE on Fisher's z scale
                out[m].ci_low, out[m].ci_high = _fisher_se_ci(np.concatenate(parts), out[m].estimate,
                                                              confidence)
    return out


def group_level_correlation(quality, target, groups, method: str = "spearman",
                            higher_is_better: bool = True, n_boot: int = 1000,
                            confidence: float = 0.95, seed=0,
                            min_group_size: int = 1) -> Correlation:
    """One method of :func:`group_level_correlations` (Spearman by default)."""
    m = _check_method(method)
    return group_level_correlations(quality, target, groups, higher_is_better=higher_is_better,
                                    n_boot=n_boot, confidence=confidence, seed=seed,
                                    min_group_size=min_group_size, methods=[m])[m]


# ---------------------------------------------------------------------------
# Ranking several quality fields
# ---------------------------------------------------------------------------


def rank_fields(qualities: Mapping[str, Any], target, n_boot: int = 1000,
                confidence: float = 0.95, seed=0, auroc_if_binary: bool = True,
                kendall_boot_cap: int = KENDALL_BOOT_CAP) -> List[FieldRank]:
    """Rank quality fields by how well they track the target.

    ``qualities`` maps a name to ``(values, higher_is_better)`` or to bare values
    (higher is better). Each row has Spearman, Kendall and Pearson with intervals and,
    when the target is binary, the AUROC of low quality flagging errors. Rows are sorted
    by Spearman rho, best first (NaN last). Each field uses its own complete pairs.
    """
    tgt = _as_float(target, "target")
    finite_t = tgt[np.isfinite(tgt)]
    binary = auroc_if_binary and _is_binary(finite_t)
    rows = []
    for name, spec in qualities.items():
        if isinstance(spec, tuple) and len(spec) == 2 and isinstance(spec[1], (bool, np.bool_)):
            values, hib = spec
        else:
            values, hib = spec, True
        cs = correlations(values, tgt, higher_is_better=bool(hib), n_boot=n_boot,
                          confidence=confidence, seed=seed, kendall_boot_cap=kendall_boot_cap)
        au = auroc(values, tgt, higher_is_better=bool(hib), n_boot=n_boot,
                   confidence=confidence, seed=seed) if binary else None
        rows.append(FieldRank(name=str(name), higher_is_better=bool(hib), spearman=cs["spearman"],
                              kendall=cs["kendall"], pearson=cs["pearson"], auroc=au))
    rows.sort(key=lambda r: (-r.spearman.estimate if math.isfinite(r.spearman.estimate)
                             else math.inf))
    return rows


# ---------------------------------------------------------------------------
# Distribution
# ---------------------------------------------------------------------------


def distribution(quality, bins=30) -> Distribution:
    """Histogram (``bins`` as in ``np.histogram``) and quantiles of a score."""
    (q,), n_missing, _ = _clean(quality, names=["quality"])
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
    s = _fmt(v) if isinstance(v, (float, np.floating)) else ("" if v is None else str(v))
    return s.replace("|", "\\|").replace("\n", " ")


def format_table(rows, columns: Optional[Sequence[str]] = None) -> str:
    """Markdown table of result rows (dataclasses from this module, or dicts).

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
