"""Input cleaning and the vectorised bootstrap behind every interval of the statistics.

Inputs are 1-D float arrays (None becomes NaN); :func:`clean_pairs` drops the positions
that are missing (NaN, None, +-inf) in any of them and counts them.

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
  random subsample of at most ``kendall_boot_cap`` pairs (default
  :data:`KENDALL_BOOT_CAP`) when n is larger; the deviations of the subsample's bootstrap
  replicates from the subsample's own tau are scaled by ``sqrt(m / n)`` (tau's standard
  error shrinks like ``1/sqrt(n)``) and centred on the full-data tau (see
  :func:`.correlation.correlate`). The point estimate and p-value always use
  ``scipy.stats.kendalltau`` on all pairs.
* AUROC: Mann-Whitney rank formula with the same resampled ranks, bootstrapped
  stratified by class so every resample has both classes.
* Clusters (frames of one video): the same matrices, each sample taking the multiplicity
  of its cluster, drawn whole (``clusters=`` of :func:`count_blocks`).
"""

from __future__ import annotations

import math
from typing import Iterator

import numpy as np
import pandas as pd
from scipy import stats
from scipy.stats import norm

__all__ = [
    "KENDALL_BOOT_CAP", "MIN_PAIRS", "as_float", "clean_pairs", "orient", "is_binary",
    "factorize", "make_rng", "stratified_sampler", "count_blocks", "first_appearance_codes",
    "percentile_ci", "fisher_se_ci", "bootstrap_correlation", "bootstrap_auroc", "rowwise_corr",
]

# Elements per (resamples x samples) block of multiplicities: bounds bootstrap memory
# to a few tens of MB whatever n is.
_BLOCK_ELEMENTS = 1 << 22
# Above this many pairs the Kendall bootstrap runs on a subsample (see module docstring).
KENDALL_BOOT_CAP = 1000
# Minimum number of pairs (or groups) for a correlation.
MIN_PAIRS = 3


# ---------------------------------------------------------------------------
# Input cleaning
# ---------------------------------------------------------------------------


def as_float(x, name="values") -> np.ndarray:
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


def clean_pairs(*arrays, names=None):
    """Float arrays with every position that is non-finite in any of them removed.

    Returns ``(cleaned_arrays, n_missing, mask)``.
    """
    names = names or [f"array {i}" for i in range(len(arrays))]
    arrs = [as_float(a, nm) for a, nm in zip(arrays, names)]
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


def orient(q, higher_is_better):
    """``q`` sign-flipped when lower is better, so higher always means better quality."""
    return q if higher_is_better else -q


def is_binary(t):
    """True for a non-empty array of only 0s and 1s."""
    return bool(t.size) and bool(np.all((t == 0) | (t == 1)))


def factorize(groups, n):
    """Integer codes (−1 for a missing group) and the group labels.

    ``groups`` is a 1-D array-like of hashable labels (None/NaN = missing), or a 2-D
    array-like / list of tuples of shape (n, k) for composite keys, whose labels are
    tuples.
    """
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


# ---------------------------------------------------------------------------
# Bootstrap machinery (vectorised)
# ---------------------------------------------------------------------------


def make_rng(seed):
    """A ``np.random.Generator``: ``seed`` itself when it is one, else seeded from it."""
    return seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)


def _block_size(n, n_boot):
    return int(max(1, min(n_boot, _BLOCK_ELEMENTS // max(n, 1))))


def stratified_sampler(codes):
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


def count_blocks(rng, n, n_boot, sampler=None, clusters=None) -> Iterator[np.ndarray]:
    """Yield ``(block, n)`` integer matrices of bootstrap multiplicities.

    ``clusters`` (one code per sample, in the order the statistic reads the samples):
    each resample draws C whole clusters with replacement, ``rng.integers(0, C, (block, C))``
    with the clusters numbered by first appearance, and every sample takes its cluster's
    multiplicity; with one sample per cluster this is the ordinary bootstrap, draw for draw.
    """
    if clusters is not None and sampler is not None:
        raise ValueError("a cluster bootstrap draws whole clusters: no sampler")
    codes = None if clusters is None else first_appearance_codes(clusters)
    units = n if codes is None else int(codes.max(initial=-1)) + 1
    b = _block_size(n, n_boot)
    dt = np.int32 if n < 2**31 - 1 else np.int64
    done = 0
    while done < n_boot:
        k = min(b, n_boot - done)
        idx = rng.integers(0, units, size=(k, units), dtype=dt) if sampler is None else sampler(rng, k)
        W = np.empty((k, units), dtype=dt)  # counts <= n fit the index type
        for r in range(k):  # rows of the block (resamples), not samples
            W[r] = np.bincount(idx[r], minlength=units)
        yield W if codes is None else np.take(W, codes, axis=1)
        done += k


def first_appearance_codes(labels) -> np.ndarray:
    """Codes 0..C-1 of ``labels`` numbered in the order they first appear."""
    _, first, inv = np.unique(np.asarray(labels), return_index=True, return_inverse=True)
    return np.argsort(np.argsort(first, kind="stable"), kind="stable")[inv.reshape(-1)]


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
    the data are standardised once so the moment formula does not lose precision.

    A resample that drew one value of x (or of y) only has no correlation (NaN, as
    scipy): the moment formula cannot tell its variance, a rounding error, from zero,
    so the few resamples whose variance is that small are checked exactly."""

    _TINY_VARIANCE = 1e-8  # of the standardised data, whose variance is 1

    def __init__(self, x, y):
        self.x, self.y = x, y
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
        suspect = np.flatnonzero(np.minimum(va, vb) <= self._TINY_VARIANCE)
        r[suspect[_one_value_drawn(W[suspect], self.x) | _one_value_drawn(W[suspect], self.y)]] = np.nan
        return np.clip(r, -1.0, 1.0)


def _one_value_drawn(W, v):
    """Rows of multiplicities ``W`` that drew a single distinct value of ``v``."""
    drawn = W > 0
    return np.where(drawn, v, np.inf).min(axis=1) == np.where(drawn, v, -np.inf).max(axis=1)


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


def _run_boot(stat, n, n_boot, rng, sampler=None, clusters=None):
    out = [stat(W) for W in count_blocks(rng, n, n_boot, sampler, clusters)]
    return np.concatenate(out) if out else np.empty(0)


def percentile_ci(boot, confidence):
    """Percentile interval of bootstrap replicates (NaN when fewer than half are finite)."""
    boot = np.asarray(boot, float)
    ok = np.isfinite(boot)
    if boot.size == 0 or ok.sum() < max(2, 0.5 * boot.size):
        return float("nan"), float("nan")
    a = (1.0 - confidence) / 2.0
    lo, hi = np.quantile(boot[ok], [a, 1.0 - a])
    return float(lo), float(hi)


def fisher_se_ci(boot, estimate, confidence):
    """``tanh(atanh(estimate) +- z * SE)``, SE the bootstrap standard deviation of
    ``atanh``: always contains the estimate and stays inside (-1, 1)."""
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
# Bootstrap replicates of the statistics
# ---------------------------------------------------------------------------


_BOOTS = {"spearman": _SpearmanBoot, "kendall": _KendallBoot, "pearson": _PearsonBoot}


def bootstrap_correlation(method, x, y, n_boot, rng, clusters=None) -> np.ndarray:
    """``n_boot`` bootstrap replicates of the ``method`` correlation ("spearman",
    "kendall" or "pearson") of the float arrays ``x`` and ``y``, resampled from ``rng``;
    with ``clusters`` (a code per pair) whole clusters are resampled (:func:`count_blocks`;
    Spearman and Kendall read the pairs, and so number the clusters, in x-sorted order).

    Kendall builds an O(n^2) matrix: subsample large inputs first (see the module
    docstring)."""
    stat = _BOOTS[method](x, y)
    if clusters is not None and method != "pearson":
        clusters = np.asarray(clusters)[stat.order]
    return _run_boot(stat, len(x), n_boot, rng, clusters=clusters)


def bootstrap_auroc(q_sorted, pos, n_boot, rng, clusters=None) -> np.ndarray:
    """``n_boot`` bootstrap replicates of the AUROC of ``q_sorted`` (ascending) separating
    ``pos`` (bool, same order; both classes present) from the rest.

    Mann-Whitney with the resampled ranks. Resampled within each class, so every resample
    keeps the numbers of positives and negatives; with ``clusters`` (codes in the same
    order) whole clusters are resampled instead, and a resample of one class is NaN."""
    ties = _tie_groups(q_sorted)
    posf = pos.astype(float)

    def stat(W):
        r = _resample_ranks(W, ties)
        n_pos = W @ posf
        n_neg = W.sum(axis=1) - n_pos
        with np.errstate(invalid="ignore", divide="ignore"):
            return (np.einsum("ij,ij->i", W * posf, r) - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg)

    sampler = stratified_sampler(pos.astype(np.int64)) if clusters is None else None
    return _run_boot(stat, len(pos), n_boot, rng, sampler, clusters)


def rowwise_corr(A, B, method):
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
