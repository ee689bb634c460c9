"""Relating quality scores to model performance: correlations and AUROC with
bootstrap confidence intervals.

Plain numpy/scipy functions over array-likes; nothing here touches FiftyOne.

Conventions
-----------
* Every function drops pairs where either value is NaN, None or +-inf and reports the
  number of pairs used (``n``) and dropped (``n_missing``).
* Spearman's rho is the primary statistic; Kendall's tau-b and Pearson's r sit beside it.
* Every estimate carries a percentile bootstrap interval (``n_boot`` resamples,
  ``confidence`` level, reproducible through ``seed``), computed without a loop over
  samples (see :mod:`.resampling`).
* ``clusters=`` (a label per sample, e.g. its video) resamples whole clusters instead of
  samples: the interval for samples that are not independent (frames of one video).
* ``higher_is_better=False`` flips the sign of the quality score first, so a positive
  correlation (or an AUROC above 0.5) always means "better quality, better performance".
"""

from __future__ import annotations

import math
import warnings
from typing import Any, Dict, List, Mapping

import numpy as np
from scipy import stats

from .resampling import (KENDALL_BOOT_CAP, MIN_PAIRS, as_float, bootstrap_auroc,
                         bootstrap_correlation, clean_pairs, factorize, first_appearance_codes,
                         is_binary, make_rng, orient, percentile_ci)
from .results import AUROC, METHODS, Correlation, FieldRank

__all__ = ["METHODS", "correlate", "correlations", "auroc", "rank_fields"]


# ---------------------------------------------------------------------------
# Correlations
# ---------------------------------------------------------------------------


def point_estimate(method, q, t):
    """``(estimate, p_value)`` of ``method`` from scipy (its warnings silenced)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if method == "spearman":
            r = stats.spearmanr(q, t)
        elif method == "kendall":
            r = stats.kendalltau(q, t)
        else:
            r = stats.pearsonr(q, t)
    return float(r.statistic), float(r.pvalue)


def check_method(method):
    """``method`` lower-cased; ValueError unless it is one of :data:`METHODS`."""
    m = str(method).lower()
    if m not in METHODS:
        raise ValueError(f"unknown correlation method {method!r}; use one of {', '.join(METHODS)}")
    return m


def check_confidence(confidence):
    """ValueError unless ``0 < confidence < 1``."""
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
    clusters=None,
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
            ``sqrt(cap / n)`` (see :mod:`.resampling`); with clusters the subsample
            keeps whole clusters (about ``cap`` samples), so both the spread within and
            between clusters shrink with the share kept.
        clusters: a label per sample (None for independent samples): the bootstrap
            resamples whole clusters; fewer than 3 clusters give no interval.
    """
    method = check_method(method)
    check_confidence(confidence)
    (q, t), n_missing, mask = clean_pairs(quality, target, names=["quality", "target"])
    codes = cluster_codes(clusters, mask)
    q = orient(q, higher_is_better)
    n = len(q)
    res = Correlation(method=method, estimate=float("nan"), ci_low=float("nan"),
                      ci_high=float("nan"), n=n, n_missing=n_missing, p_value=float("nan"),
                      confidence=confidence, n_boot=int(n_boot),
                      higher_is_better=bool(higher_is_better))
    if n < MIN_PAIRS:
        res.note = f"need at least {MIN_PAIRS} complete pairs, got {n}"
        return res
    if np.all(q == q[0]) or np.all(t == t[0]):
        which = "quality" if np.all(q == q[0]) else "target"
        res.note = f"{which} is constant: correlation undefined"
        return res
    est, p = point_estimate(method, q, t)
    res.estimate, res.p_value = est, p
    if n_boot and n_boot > 0 and _enough_clusters(codes, res):
        rng = make_rng(seed)
        lo, hi = _boot_corr_ci(method, q, t, est, int(n_boot), confidence, rng,
                               kendall_boot_cap, codes)
        res.ci_low, res.ci_high = lo, hi
    return res


def cluster_codes(clusters, mask):
    """Codes (by first appearance) of the cluster labels of the pairs kept by ``mask``;
    None for none. ValueError for a missing label."""
    if clusters is None:
        return None
    codes = factorize(clusters, len(mask))[0][mask]
    if (codes < 0).any():
        raise ValueError("clusters has missing labels (None/NaN) for complete pairs")
    return first_appearance_codes(codes)


def _enough_clusters(codes, res) -> bool:
    """False (and a note on ``res``) with fewer than :data:`MIN_PAIRS` clusters."""
    n_clusters = 0 if codes is None or not codes.size else int(codes.max()) + 1
    if codes is not None and n_clusters < MIN_PAIRS:
        res.note = f"{n_clusters} cluster(s): no cluster bootstrap interval (need {MIN_PAIRS})"
        return False
    return True


def _kendall_subsample(rng, n, cap, codes):
    """Positions of the Kendall bootstrap's subsample: ``cap`` samples, or whole clusters
    of about ``cap`` samples in the order drawn (see :func:`correlate`)."""
    if codes is None:
        return rng.choice(n, size=cap, replace=False)
    n_clusters = int(codes.max()) + 1
    draw = rng.choice(n_clusters, size=max(min(n_clusters, MIN_PAIRS), cap * n_clusters // n),
                      replace=False)
    position = np.full(n_clusters, -1)
    position[draw] = np.arange(len(draw))
    kept = np.flatnonzero(position[codes] >= 0)
    return kept[np.argsort(position[codes][kept], kind="stable")]


def _boot_corr_ci(method, q, t, est, n_boot, confidence, rng, kendall_boot_cap, codes=None):
    n = len(q)
    cap = max(int(kendall_boot_cap), 10)
    if method != "kendall" or n <= cap:
        return percentile_ci(bootstrap_correlation(method, q, t, n_boot, rng, codes), confidence)
    # bootstrap a subsample; rescale its spread to n and centre it on the full-data tau
    sub = _kendall_subsample(rng, n, cap, codes)
    qs, ts = q[sub], t[sub]
    tau_sub = point_estimate("kendall", qs, ts)[0]
    if not math.isfinite(tau_sub):
        return float("nan"), float("nan")
    boot = bootstrap_correlation("kendall", qs, ts, n_boot, rng, None if codes is None else codes[sub])
    bounds = np.asarray(percentile_ci(boot, confidence))
    lo, hi = np.clip(est + (bounds - tau_sub) * math.sqrt(len(sub) / n), -1, 1)
    return float(lo), float(hi)


def correlations(quality, target, higher_is_better: bool = True, n_boot: int = 1000,
                 confidence: float = 0.95, seed=0, kendall_boot_cap: int = KENDALL_BOOT_CAP,
                 clusters=None) -> Dict[str, Correlation]:
    """Spearman, Kendall and Pearson (in that order) with their intervals."""
    return {
        m: correlate(quality, target, method=m, higher_is_better=higher_is_better,
                     n_boot=n_boot, confidence=confidence, seed=seed,
                     kendall_boot_cap=kendall_boot_cap, clusters=clusters)
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
          confidence: float = 0.95, seed=0, clusters=None) -> AUROC:
    """AUROC of quality separating correct samples from errors.

    The estimate is P(quality of a correct sample > quality of an error) + 0.5 P(tie),
    i.e. ``sklearn.metrics.roc_auc_score(correct, quality)`` (with ``-quality`` when
    ``higher_is_better=False``): how well *low* quality detects errors. Computed with
    the Mann-Whitney rank formula (average ranks for ties). The bootstrap resamples
    correct samples and errors separately (stratified), so each resample has both;
    with ``clusters`` (a label per sample) it resamples whole clusters, and resamples
    of one class are left out of the interval. With only one class present the estimate is NaN and ``note`` says why.
    """
    check_confidence(confidence)
    (q, c), n_missing, mask = clean_pairs(quality, correct, names=["quality", "correct"])
    codes = cluster_codes(clusters, mask)
    c = _as_binary(c)
    q = orient(q, higher_is_better)
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
    if n_boot and n_boot > 0 and _enough_clusters(codes, res):
        in_order = None if codes is None else codes[o]
        boot = bootstrap_auroc(qs, pos, int(n_boot), make_rng(seed), in_order)
        res.ci_low, res.ci_high = percentile_ci(boot, confidence)
    return res


# ---------------------------------------------------------------------------
# Ranking several quality fields
# ---------------------------------------------------------------------------


def rank_fields(qualities: Mapping[str, Any], target, n_boot: int = 1000,
                confidence: float = 0.95, seed=0, auroc_if_binary: bool = True,
                kendall_boot_cap: int = KENDALL_BOOT_CAP, clusters=None) -> List[FieldRank]:
    """Rank quality fields by how well they track the target.

    ``qualities`` maps a name to ``(values, higher_is_better)`` or to bare values
    (higher is better). Each row has Spearman, Kendall and Pearson with intervals and,
    when the target is binary, the AUROC of low quality flagging errors. Rows are sorted
    by Spearman rho, best first (NaN last). Each field uses its own complete pairs.
    ``clusters`` (a label per sample) makes every interval a cluster bootstrap.
    """
    tgt = as_float(target, "target")
    finite_t = tgt[np.isfinite(tgt)]
    binary = auroc_if_binary and is_binary(finite_t)
    rows = []
    for name, spec in qualities.items():
        if isinstance(spec, tuple) and len(spec) == 2 and isinstance(spec[1], (bool, np.bool_)):
            values, hib = spec
        else:
            values, hib = spec, True
        cs = correlations(values, tgt, higher_is_better=bool(hib), n_boot=n_boot,
                          confidence=confidence, seed=seed, kendall_boot_cap=kendall_boot_cap,
                          clusters=clusters)
        au = auroc(values, tgt, higher_is_better=bool(hib), n_boot=n_boot,
                   confidence=confidence, seed=seed, clusters=clusters) if binary else None
        rows.append(FieldRank(name=str(name), higher_is_better=bool(hib), spearman=cs["spearman"],
                              kendall=cs["kendall"], pearson=cs["pearson"], auroc=au))
    rows.sort(key=lambda r: (-r.spearman.estimate if math.isfinite(r.spearman.estimate)
                             else math.inf))
    return rows
