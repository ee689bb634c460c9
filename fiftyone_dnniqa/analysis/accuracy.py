"""Accuracy of an unlabelled batch from its quality scores, with intervals that hold.

Statistics only (no FiftyOne). An :class:`AccuracyModel` is fitted on labelled source
data (quality and correctness per sample, optionally the shift each sample belongs to)
and estimates the accuracy of a new group of images from their quality alone. Every
estimator reads the quality score only, never the task model:

* ``isotonic``: mean of the monotone map quality -> P(correct) (the performance prior);
* ``atc``: average thresholded confidence (Garg et al., ICLR 2022): the threshold ``t``
  puts the source's error rate strictly below it, the estimate is the share of the new
  images with quality ``>= t``;
* ``doc``: difference of confidences (Guillory et al., ICCV 2021): source accuracy plus
  the change in mean quality;
* ``doc_fit``: DoC with the slope fitted over the source's shifts (a linear regression
  of group accuracy on group mean quality);
* ``quantile``: a ridge regression of group accuracy on the group's quality quantiles.

Intervals are split-conformal over groups: the estimator is refitted without each
source family (or group), predicts the left-out groups, and the residuals, scaled by
``sqrt(p (1 - p) / n + tau^2)`` (binomial noise of a group of ``n`` images plus the
shift-to-shift spread ``tau`` the residuals show beyond it), give the quantile that
widens any new estimate. The interval is for the accuracy one would *measure* on those
images if they were labelled.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Sequence

import numpy as np
from scipy.stats import norm
from sklearn.isotonic import IsotonicRegression

from .resampling import as_float, factorize

__all__ = [
    "ESTIMATORS", "DEFAULT_ESTIMATOR", "QUANTILE_LEVELS", "AccuracyModel", "atc_threshold",
    "atc_estimate", "conformal_quantile", "fit_accuracy_model", "estimate_slices", "resolve_estimator",
    "GROUP_ESTIMATORS",
]

ESTIMATORS = ("isotonic", "atc", "doc", "doc_fit", "quantile")
#: estimators that learn across the source's groups, so need them
GROUP_ESTIMATORS = ("doc_fit", "quantile")
#: ``benchmarks/accuracy.py``'s dev split (250 photos, other corruption families than the
#: ones estimated): doc_fit 0.043 per-group error, coverage 0.92; quantile 0.034, 0.92.
#: doc_fit stays the default: quantile refuses fewer than 7 labelled groups, doc_fit
#: works from 3 (and on the test split the two are within 0.002 of each other). It
#: needs groups, so without them ``"auto"`` falls back to ``isotonic``
DEFAULT_ESTIMATOR = "doc_fit"
QUANTILE_LEVELS = (0.1, 0.25, 0.5, 0.75, 0.9)
_RIDGE = 1e-2  # ridge penalty on the standardised quantile features
_PSEUDO_GROUPS = 20  # calibration groups made when the source names none
_FORMAT = "fiftyone-dnniqa/accuracy-model"


# ---------------------------------------------------------------------------
# The estimators, as plain functions
# ---------------------------------------------------------------------------


def atc_threshold(quality, correct) -> float:
    """ATC's threshold: the share of source samples strictly below it is the source error.

    With ``k = round(error * n)``, the threshold is the ``k``-th smallest score (0-based),
    or ``+inf`` when every sample is wrong.
    """
    q = np.sort(as_float(quality, "quality"))
    y = as_float(correct, "correct")
    if not len(q) or len(q) != len(y):
        raise ValueError("quality and correct must be non-empty and of equal length")
    k = int(np.floor((1.0 - float(np.mean(y))) * len(q) + 0.5))
    return float(q[k]) if k < len(q) else float("inf")


def atc_estimate(threshold: float, quality) -> float:
    """ATC's accuracy estimate: the share of scores at or above the threshold."""
    q = as_float(quality, "quality")
    return float(np.mean(q >= threshold)) if len(q) else float("nan")


def _isotonic(q, y):
    iso = IsotonicRegression(increasing=True, out_of_bounds="clip").fit(q, y)
    return {"knots_x": np.asarray(iso.X_thresholds_, float).tolist(),
            "knots_y": np.asarray(iso.y_thresholds_, float).tolist()}


def _group_table(q, y, codes):
    """Per source group: quality values, accuracy, size (groups of one sample dropped)."""
    out = []
    for g in np.unique(codes):
        sel = codes == g
        if sel.sum() >= 2:
            out.append((q[sel], float(y[sel].mean()), int(sel.sum())))
    return out


def quantile_features(quality) -> np.ndarray:
    """The features the ``quantile`` estimator regresses on: quantiles and the mean."""
    q = np.asarray(quality, float)
    return np.append(np.quantile(q, QUANTILE_LEVELS), q.mean())


def _ridge(X, a):
    """Ridge regression on standardised columns (intercept unpenalised): coefficients
    expressed on the raw features, as ``[intercept, w...]``."""
    mu, sd = X.mean(0), X.std(0)
    # a feature equal in every group (a quantile clipped at the scale's end) has a spread
    # of rounding error only: it carries nothing, and dividing by that would blow it up
    # (left undivided, its coefficient is as small as the error and the intercept absorbs it)
    sd = np.where(sd > 1e-10 * np.maximum(1.0, np.abs(mu)), sd, 1.0)
    Z = (X - mu) / sd
    am = a.mean()
    w = np.linalg.solve(Z.T @ Z + _RIDGE * len(a) * np.eye(Z.shape[1]), Z.T @ (a - am))
    w_raw = w / sd
    return [float(am - mu @ w_raw)] + w_raw.tolist()


def _fit_params(estimator, q, y, codes) -> Dict[str, Any]:
    """The fitted parameters of one estimator (quality already oriented: higher = better)."""
    acc, mean_q = float(y.mean()), float(q.mean())
    if estimator == "isotonic":
        return _isotonic(q, y)
    if estimator == "atc":
        return {"threshold": atc_threshold(q, y)}
    if estimator == "doc":
        return {"source_accuracy": acc, "source_mean": mean_q}
    groups = _group_table(q, y, codes)
    if estimator == "doc_fit":
        if len(groups) < 3:
            return {"intercept": acc - mean_q, "slope": 1.0}
        m = np.array([g[0].mean() for g in groups])
        a = np.array([g[1] for g in groups])
        slope, intercept = np.polyfit(m, a, 1)
        return {"intercept": float(intercept), "slope": float(slope)}
    if estimator == "quantile":
        if len(groups) < len(QUANTILE_LEVELS) + 2:
            raise ValueError(f"the quantile estimator needs at least {len(QUANTILE_LEVELS) + 2} "
                             f"source groups of 2+ samples, got {len(groups)}")
        X = np.stack([quantile_features(g[0]) for g in groups])
        return {"coef": _ridge(X, np.array([g[1] for g in groups]))}
    raise ValueError(f"unknown estimator {estimator!r}; choose from {ESTIMATORS}")


def _predict(estimator, params, q) -> float:
    """Accuracy of one group of (oriented, finite) quality values."""
    if not len(q):
        return float("nan")
    if estimator == "isotonic":
        p = float(np.interp(q, params["knots_x"], params["knots_y"]).mean())
    elif estimator == "atc":
        p = atc_estimate(params["threshold"], q)
    elif estimator == "doc":
        p = params["source_accuracy"] + float(q.mean()) - params["source_mean"]
    elif estimator == "doc_fit":
        p = params["intercept"] + params["slope"] * float(q.mean())
    elif estimator == "quantile":
        c = params["coef"]
        p = c[0] + float(np.dot(c[1:], quantile_features(q)))
    else:
        raise ValueError(f"unknown estimator {estimator!r}; choose from {ESTIMATORS}")
    return float(min(1.0, max(0.0, p)))


# ---------------------------------------------------------------------------
# Conformal intervals
# ---------------------------------------------------------------------------


def conformal_quantile(scores, confidence: float) -> float:
    """Split-conformal quantile: the ``ceil((m + 1) * confidence)``-th smallest of ``m``
    scores (``inf`` when that exceeds ``m``), so a new exchangeable score falls at or
    below it with probability at least ``confidence``."""
    s = np.sort(as_float(scores, "scores"))
    k = math.ceil((len(s) + 1) * confidence)
    return float(s[k - 1]) if 1 <= k <= len(s) else float("inf")


def _binomial_var(p, n):
    """Variance of a measured accuracy over ``n`` images around ``p``, with ``p`` pulled
    half a sample from 0 and 1 so that a perfect estimate still leaves some width."""
    n = np.asarray(n, float)
    pt = (np.asarray(p, float) * n + 0.5) / (n + 1.0)
    return pt * (1 - pt) / n


def _scale(p, n, tau2):
    return np.sqrt(_binomial_var(p, n) + tau2)


# ---------------------------------------------------------------------------
# The model
# ---------------------------------------------------------------------------


@dataclass
class AccuracyModel:
    """A fitted estimator plus its conformal calibration (residuals of held-out groups).

    ``calibration`` holds, per held-out source group, the measured accuracy, the
    estimate the estimator made without that group's family, and the group size.
    """

    estimator: str
    params: Dict[str, Any]
    higher_is_better: bool = True
    calibration: Dict[str, List[float]] = field(default_factory=dict)
    n_train: int = 0

    def _oriented(self, quality):
        q = as_float(quality, "quality")
        q = q[np.isfinite(q)]
        return q if self.higher_is_better else -q

    def predict(self, quality) -> float:
        """Estimated accuracy of a group of images (NaN quality ignored)."""
        return _predict(self.estimator, self.params, self._oriented(quality))

    @property
    def tau2(self) -> float:
        """Shift-to-shift variance of the held-out residuals beyond binomial noise."""
        a, p, n = (np.asarray(self.calibration.get(k, []), float) for k in ("measured", "predicted", "n"))
        if not len(a):
            return 0.0
        return float(max(0.0, np.mean((a - p) ** 2 - _binomial_var(p, n))))

    def interval(self, quality, confidence: float = 0.9):
        """``(estimate, low, high)`` for the accuracy measured on these images. Without
        calibration residuals (a prior saved before them), binomial noise only."""
        q = self._oriented(quality)
        p = _predict(self.estimator, self.params, q)
        if not len(q):
            return p, float("nan"), float("nan")
        a, pc, n = (np.asarray(self.calibration.get(k, []), float) for k in ("measured", "predicted", "n"))
        tau2 = self.tau2
        if len(a):
            qhat = conformal_quantile(np.abs(a - pc) / _scale(pc, n, tau2), confidence)
        else:  # no calibration: binomial noise only, normal quantile
            qhat = float(norm.ppf(0.5 + confidence / 2))
        half = qhat * float(_scale(p, len(q), tau2))
        return p, max(0.0, p - half), min(1.0, p + half)

    def to_dict(self) -> dict:
        return {"format": _FORMAT, "version": 1, "estimator": self.estimator, "params": self.params,
                "higher_is_better": self.higher_is_better, "calibration": self.calibration,
                "n_train": self.n_train}

    @classmethod
    def from_dict(cls, d: dict) -> "AccuracyModel":
        if d.get("format") != _FORMAT:
            raise ValueError(f"not an accuracy model (format {d.get('format')!r})")
        if d.get("estimator") not in ESTIMATORS:  # e.g. saved by a newer version
            raise ValueError(f"unknown estimator {d.get('estimator')!r} in a saved accuracy model; "
                             f"this version reads {ESTIMATORS}")
        return cls(d["estimator"], d["params"], bool(d.get("higher_is_better", True)),
                   d.get("calibration") or {}, int(d.get("n_train", 0)))


def _codes(groups, n, rng_seed=0):
    """Group codes; without groups, random pseudo-groups (which see no shift)."""
    if groups is None:
        return np.random.default_rng(rng_seed).permutation(n) % min(_PSEUDO_GROUPS, max(1, n // 2))
    codes, _ = factorize(groups, n)
    return codes


def _calibrate(estimator, q, y, codes, units) -> Dict[str, List[float]]:
    """Residuals of each source group predicted by a fit without its unit (family)."""
    measured, predicted, sizes = [], [], []
    for u in np.unique(units):
        out = units == u
        if out.all() or (~out).sum() < 2:
            continue
        try:
            params = _fit_params(estimator, q[~out], y[~out], codes[~out])
        except ValueError:  # too few groups left for this estimator
            continue
        for g in np.unique(codes[out]):
            sel = out & (codes == g)
            measured.append(float(y[sel].mean()))
            predicted.append(_predict(estimator, params, q[sel]))
            sizes.append(int(sel.sum()))
    return {"measured": measured, "predicted": predicted, "n": sizes}


def resolve_estimator(estimator: Optional[str], has_groups: bool) -> Optional[str]:
    """``"auto"``: :data:`DEFAULT_ESTIMATOR`, or ``isotonic`` when it needs groups and
    there are none; any other name is checked; None stays None (no estimator)."""
    if estimator == "auto":
        return DEFAULT_ESTIMATOR if has_groups or DEFAULT_ESTIMATOR not in GROUP_ESTIMATORS else "isotonic"
    if estimator is not None and estimator not in ESTIMATORS:
        raise ValueError(f"unknown estimator {estimator!r}; choose from {ESTIMATORS}")
    return estimator


def fit_accuracy_model(quality, correct, groups=None, families=None, estimator: str = "auto",
                       higher_is_better: bool = True) -> AccuracyModel:
    """Fits ``estimator`` on labelled source samples and calibrates its intervals.

    ``groups``: per sample, the shift it belongs to (e.g. "fog/3"); the group-level
    estimators (``doc_fit``, ``quantile``) learn across them and the conformal residuals
    are per group. ``families``: per sample, a coarser unit left out together during
    calibration (e.g. the corruption family), so the residuals measure estimates on
    shifts unlike the fitted ones; default: each group is its own family. Without
    groups (``isotonic``, ``atc`` and ``doc`` only), random pseudo-groups calibrate the
    binomial part only: the interval then knows nothing of shifts.
    """
    estimator = resolve_estimator(estimator, groups is not None)
    if estimator is None:
        raise ValueError(f"estimator must be one of {ESTIMATORS} or 'auto'")
    if groups is None and estimator in GROUP_ESTIMATORS:
        raise ValueError(f"the {estimator} estimator learns across shifts: pass groups")
    q = as_float(quality, "quality")
    y = as_float(correct, "correct")
    if len(q) != len(y):
        raise ValueError(f"length mismatch: quality has {len(q)} values, correct has {len(y)}")
    codes = _codes(groups, len(q))
    units = codes if families is None else factorize(families, len(q))[0]
    keep = np.isfinite(q) & np.isfinite(y) & (codes >= 0) & (units >= 0)
    q, y, codes, units = q[keep], y[keep], codes[keep], units[keep]
    if len(q) < 2:
        raise ValueError(f"need at least 2 samples with quality and target, got {len(q)}")
    q = q if higher_is_better else -q
    params = _fit_params(estimator, q, y, codes)
    return AccuracyModel(estimator, params, bool(higher_is_better),
                         _calibrate(estimator, q, y, codes, units), int(len(q)))


# ---------------------------------------------------------------------------
# Per slice
# ---------------------------------------------------------------------------


def _slice_members(slices, n) -> Dict[Any, np.ndarray]:
    """Label -> sample indices; a sample whose label is a list (tags) is in each."""
    if len(slices) != n:
        raise ValueError(f"slices has {len(slices)} entries for {n} samples")
    members: Dict[Any, List[int]] = {}
    for i, lab in enumerate(slices):
        labs = lab if isinstance(lab, (list, tuple, set, np.ndarray)) else [lab]
        for one in labs:
            if one is None or (isinstance(one, float) and math.isnan(one)):
                continue
            members.setdefault(one.item() if isinstance(one, np.generic) else one, []).append(i)
    return {k: np.asarray(v, dtype=np.int64) for k, v in members.items()}


def _label_order(label):
    """Numbers first, in numeric order (9 before 10), then other labels as text."""
    numeric = isinstance(label, (int, float)) and not isinstance(label, bool)
    return not numeric, label if numeric else str(label)


def estimate_slices(model: AccuracyModel, quality, slices: Optional[Sequence] = None,
                    confidence: float = 0.9, overall_label: str = "all") -> List[Dict[str, Any]]:
    """Expected accuracy, with its conformal interval, of all images and of each slice.

    ``slices``: one label per sample (a class, a predicted cause) or a list of labels
    (tags). Rows: ``slice, n, n_missing, estimate, low, high`` (``n`` counts samples
    with a quality score), the overall row first, then slices by label (numbers in
    numeric order, then the others alphabetically).
    """
    q = as_float(quality, "quality")
    finite = np.isfinite(q)

    def row(label, idx):
        est, lo, hi = model.interval(q[idx], confidence)
        n_ok = int(finite[idx].sum())
        return {"slice": label, "n": n_ok, "n_missing": int(len(idx) - n_ok),
                "estimate": est, "low": lo, "high": hi}

    rows = [row(overall_label, np.arange(len(q)))]
    if slices is not None:
        members = _slice_members(slices, len(q))
        for label in sorted(members, key=_label_order):
            rows.append(row(label, members[label]))
    return rows
