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
                         bootstrap_correlation, clean_pairs, is_binary, make_rng, orient,
                         percentile_ci)
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
            ``sqrt(cap / n)`` (see :mod:`.resampling`).
    """
    method = check_method(method)
    check_confidence(confidence)
    (q, t), n_missing, _ = clean_pairs(quality, target, names=["quality", "target"])
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
    if n_boot and n_boot > 0:
        rng = make_rng(seed)
        lo, hi = _boot_corr_ci(method, q, t, est, int(n_boot), confidence, rng,
                               kendall_boot_cap)
        res.ci_low, res.ci_high = lo, hi
    return res


def _boot_corr_ci(method, q, t, est, n_boot, confidence, rng, kendall_boot_cap):
    if method != "kendall":
        return percentile_ci(bootstrap_correlation(method, q, t, n_boot, rng), confidence)
    n = len(q)
    cap = max(int(kendall_boot_cap), 10)
    if n <= cap:
        return percentile_ci(bootstrap_correlation("kendall", q, t, n_boot, rng), confidence)
    # bootstrap a subsample; rescale its spread to n and centre it on the full-data tau
    sub = rng.choice(n, size=cap, replace=False)
    qs, ts = q[sub], t[sub]
    tau_sub = point_estimate("kendall", qs, ts)[0]
    if not math.isfinite(tau_sub):
        return float("nan"), float("nan")
    boot = bootstrap_correlation("kendall", qs, ts, n_boot, rng)
    bounds = np.asarray(percentile_ci(boot, confidence))
    lo, hi = np.clip(est + (bounds - tau_sub) * math.sqrt(cap / n), -1, 1)
    return float(lo), float(hi)


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
    check_confidence(confidence)
    (q, c), n_missing, _ = clean_pairs(quality, correct, names=["quality", "correct"])
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
    if n_boot and n_boot > 0:
        boot = bootstrap_auroc(qs, pos, int(n_boot), make_rng(seed))
        res.ci_low, res.ci_high = percentile_ci(boot, confidence)
    return res


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
                          confidence=confidence, seed=seed, kendall_boot_cap=kendall_boot_cap)
        au = auroc(values, tgt, higher_is_better=bool(hib), n_boot=n_boot,
                   confidence=confidence, seed=seed) if binary else None
        rows.append(FieldRank(name=str(name), higher_is_better=bool(hib), spearman=cs["spearman"],
                              kendall=cs["kendall"], pearson=cs["pearson"], auroc=au))
    rows.sort(key=lambda r: (-r.spearman.estimate if math.isfinite(r.spearman.estimate)
                             else math.inf))
    return rows
