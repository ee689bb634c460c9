"""Mean target per quality bin and per group, and correlations between group means.

Binary targets (correctness) get Wilson intervals, continuous ones t intervals; the
within-group and group-level correlations carry bootstrap intervals (see
:mod:`.correlation` for the conventions and :mod:`.resampling` for the bootstrap).
"""

from __future__ import annotations

import math
from typing import Dict, List, Optional, Sequence

import numpy as np
from scipy import stats

from .correlation import check_confidence, check_method, correlate, point_estimate
from .resampling import (MIN_PAIRS, as_float, clean_pairs, count_blocks, factorize, fisher_se_ci,
                         is_binary, make_rng, orient, rowwise_corr, stratified_sampler)
from .results import METHODS, BinRow, Correlation, GroupRow

__all__ = ["wilson_interval", "binned_performance", "group_table",
           "group_level_correlations", "group_level_correlation"]


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


def _grouped_means(codes, n_groups, q, t, confidence, binary=None):
    """Per-group n, mean quality, mean target and the target's interval (vectorised)."""
    cnt = np.bincount(codes, minlength=n_groups).astype(float)
    sq = np.bincount(codes, weights=q, minlength=n_groups)
    st = np.bincount(codes, weights=t, minlength=n_groups)
    with np.errstate(invalid="ignore", divide="ignore"):
        mq = sq / cnt
        mt = st / cnt
    if binary is None:
        binary = is_binary(t)
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
    check_confidence(confidence)
    if int(bins) < 1:
        raise ValueError("bins must be >= 1")
    (q, t), _, _ = clean_pairs(quality, target, names=["quality", "target"])
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


def _clean_groups(quality, target, groups, higher_is_better):
    qa = as_float(quality, "quality")
    ta = as_float(target, "target")
    if len(qa) != len(ta):
        raise ValueError(f"length mismatch: quality has {len(qa)} values, target has {len(ta)}")
    codes, labels = factorize(groups, len(qa))
    mask = np.isfinite(qa) & np.isfinite(ta) & (codes >= 0)
    n_missing = int(len(qa) - mask.sum())
    q = orient(qa[mask], higher_is_better)
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
    check_confidence(confidence)
    q, t, codes, labels, _ = _clean_groups(quality, target, groups, True)
    G = len(labels)
    if G == 0:
        return []
    cnt, mq, mt, lo, hi, kind = _grouped_means(codes, G, q, t, confidence)
    rows = []
    order = np.argsort(codes, kind="stable")
    bounds = np.concatenate([[0], np.cumsum(cnt)])
    rng = make_rng(seed)
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


def _drop_small_groups(q, t, codes, G, min_group_size, n_missing):
    """Leaves out the groups with fewer than ``min_group_size`` samples (renumbering the
    rest); returns ``(q, t, codes, G, n_missing)``."""
    if G and min_group_size > 1:
        cnt = np.bincount(codes, minlength=G)
        keep_g = cnt >= min_group_size
        if not keep_g.all():
            keep = keep_g[codes]
            n_missing += int((~keep).sum())
            remap = np.cumsum(keep_g) - 1
            q, t, codes = q[keep], t[keep], remap[codes[keep]]
            G = int(keep_g.sum())
    return q, t, codes, G, n_missing


def _group_mean_boot(q, t, codes, cnt, methods, n_boot, seed):
    """Bootstrap replicates of each method's correlation of the group means, resampling
    within groups (group sizes fixed); all methods share the resamples."""
    sampler = stratified_sampler(codes)
    # group means of a resample: weights summed per group (codes sorted once)
    o = np.argsort(codes, kind="stable")
    starts = np.concatenate([[0], np.cumsum(cnt.astype(np.int64))[:-1]])
    qo, to = q[o], t[o]
    boots = {m: [] for m in methods}
    for W in count_blocks(make_rng(seed), len(q), n_boot, sampler):
        Wo = W[:, o].astype(float)
        bq = np.add.reduceat(Wo * qo, starts, axis=1) / cnt
        bt = np.add.reduceat(Wo * to, starts, axis=1) / cnt
        for m in boots:
            boots[m].append(rowwise_corr(bq, bt, m))
    return boots


def _group_corr(method, meta, estimate=float("nan"), p_value=float("nan"), note=""):
    """A group-level Correlation without its interval (yet); ``meta`` holds the shared
    fields (``n_boot`` as given)."""
    return Correlation(method=method, estimate=estimate, ci_low=float("nan"),
                       ci_high=float("nan"), n=meta["n"], n_missing=meta["n_missing"],
                       p_value=p_value, confidence=meta["confidence"],
                       n_boot=int(meta["n_boot"]), higher_is_better=meta["higher_is_better"],
                       level="group", n_samples=meta["n_samples"], note=note)


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
    check_confidence(confidence)
    methods = [check_method(m) for m in methods]
    q, t, codes, labels, n_missing = _clean_groups(quality, target, groups, higher_is_better)
    q, t, codes, G, n_missing = _drop_small_groups(q, t, codes, len(labels), min_group_size,
                                                   n_missing)
    meta = dict(n=G, n_missing=n_missing, confidence=confidence, n_boot=n_boot,
                higher_is_better=bool(higher_is_better), n_samples=len(q))
    if G < MIN_PAIRS:
        return {m: _group_corr(m, meta, note=f"need at least {MIN_PAIRS} groups, got {G}")
                for m in methods}
    cnt = np.bincount(codes, minlength=G).astype(float)
    gq = np.bincount(codes, weights=q, minlength=G) / cnt
    gt = np.bincount(codes, weights=t, minlength=G) / cnt
    out = {}
    for m in methods:
        if np.all(gq == gq[0]) or np.all(gt == gt[0]):
            out[m] = _group_corr(m, meta, note="group means are constant: correlation undefined")
            continue
        est, p = point_estimate(m, gq, gt)
        out[m] = _group_corr(m, meta, estimate=est, p_value=p)
    if n_boot and n_boot > 0 and any(math.isfinite(c.estimate) for c in out.values()):
        boots = _group_mean_boot(q, t, codes, cnt, list(out), int(n_boot), seed)
        for m, parts in boots.items():
            if math.isfinite(out[m].estimate):
                # a resample's group means are noisier than the data's own, which pulls
                # resampled correlations below the estimate (worst near 1): the interval is
                # the estimate +- z * bootstrap SE on Fisher's z scale
                out[m].ci_low, out[m].ci_high = fisher_se_ci(np.concatenate(parts),
                                                             out[m].estimate, confidence)
    return out


def group_level_correlation(quality, target, groups, method: str = "spearman",
                            higher_is_better: bool = True, n_boot: int = 1000,
                            confidence: float = 0.95, seed=0,
                            min_group_size: int = 1) -> Correlation:
    """One method of :func:`group_level_correlations` (Spearman by default)."""
    m = check_method(method)
    return group_level_correlations(quality, target, groups, higher_is_better=higher_is_better,
                                    n_boot=n_boot, confidence=confidence, seed=seed,
                                    min_group_size=min_group_size, methods=[m])[m]
