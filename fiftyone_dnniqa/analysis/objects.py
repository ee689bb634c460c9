"""Objects against outcomes: is a badly rated object missed (or a badly rated prediction
false), and is that more than its size?

Ground-truth objects (``side="gt"``): quality against found (TP) or missed (FN), so the
rate by quality bin is **recall**. Predictions (``side="pred"``): quality against matched
(TP) or false (FP), so the rate is **precision**. The statistics and intervals are the
images': Spearman with a bootstrap interval, AUROC (how well low quality flags a miss),
rates by quality bin with Wilson intervals. Beside quality, the box area gets the same
statistics, and quality's effect *given* size is measured within size strata (quantile
buckets of box area): per stratum, and pooled as the within-stratum AUROC
``sum_s U_s / sum_s n_pos_s n_neg_s`` (pairs compared only inside a stratum), with a
stratified bootstrap interval. So "small" and "degraded" can be told apart.

:func:`object_statistics_arrays` is the pure computation; :func:`object_statistics` reads
a dataset's detection evaluation and object quality attribute.
"""

from __future__ import annotations

from dataclasses import dataclass, field as dc_field
from typing import List, Optional, Sequence

import numpy as np
from fiftyone import ViewField as F

from ..scoring.patch_plan import object_run_key
from ..scoring.runs import list_quality_runs
from .correlation import auroc, correlate
from .fields import field_direction
from .grouping import binned_performance, wilson_interval
from .resampling import bootstrap_auroc, clean_pairs, make_rng, orient, percentile_ci
from .results import jsonable
from .targets import object_outcomes

__all__ = ["ObjectStatistics", "object_statistics", "object_statistics_arrays", "size_strata",
           "within_strata_auroc", "object_quality_runs", "object_bin_view"]

#: what "correct" means on each side, and the rate it gives
SIDES = {"gt": ("found", "missed", "recall"), "pred": ("matched", "false", "precision")}


@dataclass
class ObjectStatistics:
    """Everything the panel and the report show in object mode (see the module docstring)."""

    side: str
    higher_is_better: bool
    n_objects: int
    n_scored: int
    quality: dict  # {"spearman": Correlation, "auroc": AUROC} as dicts
    size: dict  # the same for box area, and quality's Spearman with area
    bins: list  # rate by quality bin
    size_bins: list  # rate by size stratum
    strata: list  # per size stratum: range, n, rate, quality's AUROC and Spearman
    given_size: dict  # pooled within-stratum AUROC with its interval
    area_unit: str = "pixels"
    labels: dict = dc_field(default_factory=dict)  # words: correct, error, rate
    meta: dict = dc_field(default_factory=dict)  # eval_key, label field, attribute, counts

    def to_dict(self) -> dict:
        return jsonable(dict(self.__dict__))


def size_strata(area, strata: int = 3, edges: Optional[Sequence[float]] = None) -> np.ndarray:
    """Stratum code per object (``-1`` for no area): quantile buckets of ``area``, or the
    buckets between explicit ``edges`` (e.g. COCO's ``[32**2, 96**2]`` pixels)."""
    a = np.asarray(area, dtype=float)
    codes = np.full(len(a), -1)
    ok = np.isfinite(a)
    if not ok.any():
        return codes
    if edges is None:
        cuts = np.unique(np.quantile(a[ok], np.linspace(0, 1, int(strata) + 1))[1:-1])
    else:
        cuts = np.asarray(sorted(edges), dtype=float)
    codes[ok] = np.searchsorted(cuts, a[ok], side="right")
    return codes


def within_strata_auroc(quality, correct, codes, higher_is_better: bool = True, n_boot: int = 1000,
                        confidence: float = 0.95, seed=0) -> dict:
    """AUROC of quality with pairs compared only inside a stratum: ``sum_s U_s / sum_s
    n_pos_s n_neg_s``; its interval resamples correct objects and errors within each stratum."""
    (q, c, g), _, _ = clean_pairs(quality, correct, np.asarray(codes, dtype=float), names=["q", "c", "g"])
    q = orient(q, higher_is_better)
    rng = make_rng(seed)
    num, den, boots = 0.0, 0.0, []
    for s in np.unique(g[g >= 0]):
        qs, cs = q[g == s], c[g == s].astype(bool)
        n_pos, n_neg = int(cs.sum()), int((~cs).sum())
        if n_pos == 0 or n_neg == 0:
            continue
        w = n_pos * n_neg
        num += auroc(qs, cs, n_boot=0).estimate * w
        den += w
        if n_boot:
            o = np.argsort(qs, kind="stable")
            boots.append((w, bootstrap_auroc(qs[o], cs[o], int(n_boot), rng)))
    out = {"estimate": float("nan"), "ci_low": float("nan"), "ci_high": float("nan"), "n_pairs": int(den)}
    if den:
        out["estimate"] = num / den
        if boots:
            pooled = sum(w * b for w, b in boots) / den
            out["ci_low"], out["ci_high"] = percentile_ci(pooled, confidence)
    return out


def _pair_stats(values, correct, hib, n_boot, confidence, seed) -> dict:
    return {"spearman": correlate(values, correct, "spearman", hib, n_boot, confidence, seed).to_dict(),
            "auroc": auroc(values, correct, hib, n_boot, confidence, seed).to_dict()}


def object_statistics_arrays(quality, correct, area, side: str = "gt", higher_is_better: bool = True,
                             bins: int = 5, strata: int = 3, edges=None, n_boot: int = 1000,
                             confidence: float = 0.95, seed=0, area_unit: str = "pixels") -> ObjectStatistics:
    """Object-mode statistics from per-object ``quality``, ``correct`` (1 found/matched, 0
    missed/false, NaN unevaluated) and box ``area``."""
    if side not in SIDES:
        raise ValueError("side must be 'gt' or 'pred'")
    q, c, a = (np.asarray(v, dtype=float) for v in (quality, correct, area))
    scored = np.isfinite(q) & np.isfinite(c)
    codes = size_strata(np.where(scored, a, np.nan), strata, edges)
    size = _pair_stats(a, c, True, n_boot, confidence, seed)
    size["quality_spearman"] = correlate(q, a, "spearman", True, n_boot, confidence, seed).to_dict()
    rows = []
    for s in range(int(codes.max()) + 1 if (codes >= 0).any() else 0):
        m = codes == s
        k, n = int(c[m].sum()), int(m.sum())
        lo, hi = (float(x) for x in wilson_interval(k, n, confidence))
        rows.append({"stratum": s, "area_lo": float(np.min(a[m])) if n else None,
                     "area_hi": float(np.max(a[m])) if n else None, "n": n,
                     "rate": k / n if n else float("nan"), "ci_low": lo, "ci_high": hi,
                     **_pair_stats(q[m], c[m], higher_is_better, n_boot, confidence, seed)})
    return ObjectStatistics(
        side=side, higher_is_better=bool(higher_is_better), n_objects=int(np.isfinite(c).sum()),
        n_scored=int(scored.sum()), quality=_pair_stats(q, c, higher_is_better, n_boot, confidence, seed),
        size=size, bins=[b.to_dict() for b in binned_performance(q, c, bins, confidence=confidence)],
        size_bins=[{k: r[k] for k in ("stratum", "area_lo", "area_hi", "n", "rate", "ci_low", "ci_high")}
                   for r in rows],
        strata=rows, given_size=within_strata_auroc(q, c, codes, higher_is_better, n_boot, confidence, seed),
        area_unit=area_unit, labels=dict(zip(("correct", "error", "rate"), SIDES[side])))


def object_quality_runs(samples) -> List[dict]:
    """The object runs of ``samples``' dataset: ``{key, patches_field, attribute, metric,
    higher_is_better}`` each (the attribute is read on ``patches_field``'s objects)."""
    ds = samples._root_dataset
    out = []
    for key in list_quality_runs(ds, kind="objects"):
        cfg = ds.get_run_info(key).config
        out.append({"key": key, "patches_field": cfg.patches_field, "attribute": cfg.attribute,
                    "metric": cfg.metric, "higher_is_better": cfg.higher_is_better})
    return out


def object_statistics(samples, attribute: str, eval_key: Optional[str] = None, side: str = "gt",
                      higher_is_better: Optional[bool] = None, bins: int = 5, strata: int = 3,
                      edges=None, n_boot: int = 1000, confidence: float = 0.95, seed=0) -> ObjectStatistics:
    """Object-mode statistics of a detection evaluation (``eval_key``; None: the newest) and
    the object quality ``attribute`` on that ``side``'s objects. The direction comes from
    the object run that wrote it unless ``higher_is_better`` is given."""
    out = object_outcomes(samples, eval_key, side=side, quality=attribute)
    hib = field_direction(samples, object_run_key(out.label_field, attribute), higher_is_better)
    stats = object_statistics_arrays(out.quality, out.correct, out.area, side, hib, bins, strata, edges,
                                     n_boot, confidence, seed, out.area_unit)
    stats.meta = {"eval_key": out.eval_key, "label_field": out.label_field, "attribute": attribute,
                  "counts": out.counts}
    return stats


def object_bin_view(samples, label_field: str, attribute: str, lo: float, hi: float, last: bool = False,
                    eval_key: Optional[str] = None, outcome: Optional[str] = None):
    """The objects of ``label_field`` whose ``attribute`` is in ``[lo, hi)`` (``[lo, hi]``
    when ``last``), optionally only those with ``outcome`` ("tp", "fp", "fn") under
    ``eval_key``, as a patches view (what a click on a bin shows)."""
    a = F(attribute)
    cond = (a >= lo) & ((a <= hi) if last else (a < hi))
    if outcome is not None:
        if eval_key is None:
            raise ValueError("outcome needs eval_key")
        cond = cond & (F(eval_key) == outcome)
    return samples.filter_labels(label_field, cond).to_patches(label_field)
