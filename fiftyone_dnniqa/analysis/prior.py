"""The performance prior: quality -> expected accuracy.

:class:`PerformancePrior` maps a quality score to expected accuracy (isotonic, monotone),
fitted on an evaluated view, and predicts the accuracy of unlabelled images from their
quality alone; it carries an :class:`~.accuracy.AccuracyModel` (the estimator chosen on
``benchmarks/accuracy.py``'s dev split, with conformal intervals) for the accuracy of a
batch. :func:`heldout_error` measures how well the map works, :func:`apply_prior` stores
the expected accuracy of a collection's samples, and :func:`expected_accuracy_table`
gives the batch's expected accuracy with its interval, overall and per slice.
"""

from __future__ import annotations

import datetime as _dt
import json
import math
import os
from dataclasses import asdict, dataclass, field
from typing import Any, Dict, List, NamedTuple, Optional

import numpy as np
from sklearn.isotonic import IsotonicRegression, isotonic_regression

import fiftyone as fo

from .accuracy import AccuracyModel, estimate_slices, fit_accuracy_model, resolve_estimator
from .fields import PRIORS_KEY, field_higher_is_better, prior_fields
from .resampling import as_float, clean_pairs, count_blocks, factorize, make_rng, percentile_ci
from .results import jsonable
from .targets import get_target, pick_target, to_floats

__all__ = ["PerformancePrior", "AccuracyEstimate", "HeldoutResult", "heldout_error", "apply_prior",
           "expected_accuracy_table"]


class AccuracyEstimate(NamedTuple):
    mean: float
    ci_low: float
    ci_high: float


_FORMAT = "fiftyone-dnniqa/performance-prior"
_GRID = 256  # points on which bootstrap refits are stored


def _clean_pair(x, y):
    (x, y), n_missing, _ = clean_pairs(x, y, names=["quality", "target"])
    return x, y, n_missing


class PerformancePrior:
    """Monotone map from a quality score to expected accuracy (isotonic regression).

    Fitted on samples whose correctness is known, it predicts the accuracy of new images
    from their quality alone. The map is stored as knots ``(x, y)`` and evaluated by
    linear interpolation, flat beyond the end knots (exactly scikit-learn's
    ``IsotonicRegression(out_of_bounds="clip").predict``). With ``n_refits > 0`` the fit
    is repeated on bootstrap resamples of the training data and those curves (kept on a
    grid of training quantiles) carry the map's own uncertainty into
    :meth:`predict_accuracy`'s interval. ``accuracy`` (fitted with the map unless
    ``estimator=None``) estimates a batch's accuracy with conformal intervals
    (:meth:`expected_accuracy`). Saved as JSON, never pickled.
    """

    def __init__(self, knots_x, knots_y, higher_is_better: bool = True,
                 field: Optional[str] = None, target: str = "correct",
                 eval_key: Optional[str] = None, n_train: int = 0,
                 train_mean: Optional[float] = None, grid=None, refits=None,
                 created_at: Optional[str] = None, accuracy: Optional[AccuracyModel] = None):
        self.knots_x = np.asarray(knots_x, dtype=float)
        self.knots_y = np.asarray(knots_y, dtype=float)
        if self.knots_x.shape != self.knots_y.shape or self.knots_x.ndim != 1 or not len(self.knots_x):
            raise ValueError("knots_x and knots_y must be non-empty 1-D arrays of equal length")
        if np.any(np.diff(self.knots_x) < 0):
            raise ValueError("knots_x must be sorted ascending")
        self.higher_is_better = bool(higher_is_better)
        self.field = field
        self.target = target
        self.eval_key = eval_key
        self.n_train = int(n_train)
        self.train_mean = None if train_mean is None else float(train_mean)
        self.grid = None if grid is None else np.asarray(grid, dtype=float)
        self.refits = None if refits is None else np.asarray(refits, dtype=float)
        self.created_at = created_at
        self.accuracy = accuracy

    def __repr__(self):
        return (f"<PerformancePrior field={self.field!r} higher_is_better={self.higher_is_better} "
                f"knots={len(self.knots_x)} n_train={self.n_train}>")

    # -- fitting -----------------------------------------------------------------

    @classmethod
    def fit(cls, quality, correct, higher_is_better: bool = True, field: Optional[str] = None,
            target: str = "correct", eval_key: Optional[str] = None, n_refits: int = 100,
            seed=0, estimator: Optional[str] = "auto", groups=None,
            families=None) -> "PerformancePrior":
        """Fits the map on per-sample quality and correctness (or any target in [0, 1]).

        NaN/None pairs are dropped. ``n_refits`` bootstrap refits (0 for none) record
        the map's uncertainty; each is O(n) on pre-sorted data, so they stay cheap.
        ``estimator`` (None: none; ``"auto"``: :func:`.accuracy.resolve_estimator`) is
        fitted too, for the accuracy of a batch, with ``groups`` (the shift of each
        sample, e.g. its corruption or source) and ``families`` calibrating its intervals
        (:func:`.accuracy.fit_accuracy_model`).
        """
        x, y, _ = _clean_pair(quality, correct)
        if len(x) < 2:
            raise ValueError(f"need at least 2 samples with quality and target, got {len(x)}")
        iso = IsotonicRegression(increasing=bool(higher_is_better), out_of_bounds="clip")
        iso.fit(x, y)
        kx = np.asarray(iso.X_thresholds_, dtype=float)
        ky = np.asarray(iso.y_thresholds_, dtype=float)
        grid = refits = None
        if n_refits and n_refits > 0:
            grid, refits = _bootstrap_refits(x, y, bool(higher_is_better), int(n_refits), seed)
        estimator = resolve_estimator(estimator, groups is not None)
        accuracy = None if estimator is None else fit_accuracy_model(
            quality, correct, groups=groups, families=families, estimator=estimator,
            higher_is_better=bool(higher_is_better))
        return cls(kx, ky, higher_is_better=higher_is_better, field=field, target=target,
                   eval_key=eval_key, n_train=len(x), train_mean=float(y.mean()), grid=grid,
                   refits=refits, created_at=_dt.datetime.now(_dt.timezone.utc).isoformat(),
                   accuracy=accuracy)

    @classmethod
    def from_samples(cls, samples, field: str, eval_key: Optional[str] = None,
                     higher_is_better: Optional[bool] = None, kind: str = "correct",
                     n_refits: int = 100, seed=0, estimator: Optional[str] = "auto",
                     groups: Optional[str] = None, families: Optional[str] = None) -> "PerformancePrior":
        """Fits on an evaluated dataset or view: ``field`` holds the quality scores and
        the target comes from :func:`get_target` (``kind`` of ``eval_key``, or of the most
        recent evaluation). ``higher_is_better=None`` reads the direction from the quality
        run that wrote ``field`` (True when there is none). ``groups``/``families``: fields
        naming each sample's shift and its family, for the batch estimator (see :meth:`fit`)."""
        ti = pick_target(samples, eval_key, kind)
        _, target = get_target(samples, ti.eval_key, kind)
        quality = to_floats(samples.values(field))
        if higher_is_better is None:
            hib = field_higher_is_better(samples, field)
            higher_is_better = True if hib is None else hib
        return cls.fit(quality, target, higher_is_better=higher_is_better, field=field,
                       target=kind, eval_key=ti.eval_key, n_refits=n_refits, seed=seed,
                       estimator=estimator, groups=None if groups is None else samples.values(groups),
                       families=None if families is None else samples.values(families))

    # -- prediction --------------------------------------------------------------

    def predict(self, quality) -> np.ndarray:
        """Expected accuracy of each sample (NaN where quality is missing)."""
        q = as_float(quality, "quality")
        out = np.interp(q, self.knots_x, self.knots_y)
        out[~np.isfinite(q)] = np.nan
        return out

    def predict_accuracy(self, quality, n_boot: int = 1000, confidence: float = 0.95,
                         seed=0, resample: bool = True, mapping_uncertainty: bool = True,
                         observed: bool = False) -> AccuracyEstimate:
        """Expected accuracy of a set of images, with a bootstrap interval.

        The estimate is the mean of :meth:`predict` over the finite values. Sources of
        uncertainty in the interval, each vectorised over the bootstrap replicates:

        * ``resample`` (default on): the images are resampled (multiplicities), i.e. the
          set is treated as a sample of a population of images like it;
        * ``mapping_uncertainty`` (default on, when the prior has refits): each
          replicate uses one bootstrap refit of the map, covering how well it is known;
        * ``observed`` (default off): each replicate gets the binomial noise of the
          outcomes (normal approximation, variance ``sum p (1 - p) / n^2``).

        The defaults give an interval for the expected accuracy of images like these.
        For the accuracy that will actually be *measured* on exactly these images use
        ``resample=False, observed=True`` (what :func:`heldout_error` checks).
        """
        q = as_float(quality, "quality")
        q = q[np.isfinite(q)]
        n = len(q)
        if n == 0:
            return AccuracyEstimate(float("nan"), float("nan"), float("nan"))
        p = np.interp(q, self.knots_x, self.knots_y)
        mean = float(p.mean())
        if not n_boot or n_boot <= 0:
            return AccuracyEstimate(mean, float("nan"), float("nan"))
        rng = make_rng(seed)
        use_refits = bool(mapping_uncertainty and self.refits is not None and len(self.refits))
        if use_refits:
            # Sorted by quality, each sample sits between grid points j and j + 1; a
            # curve's mean over a resample is then sum_g C[g] A0[g] + C[g+1] A1[g], with
            # A0/A1 the resample's interpolation weights summed per grid cell.
            g = self.grid
            o = np.argsort(q, kind="stable")
            qs = q[o]
            j = np.clip(np.searchsorted(g, qs, side="right") - 1, 0, len(g) - 1)
            j1 = np.minimum(j + 1, len(g) - 1)
            span = g[j1] - g[j]
            with np.errstate(invalid="ignore", divide="ignore"):
                lam = np.where(span > 0, (np.clip(qs, g[0], g[-1]) - g[j]) / span, 0.0)
            cells, starts = np.unique(j, return_index=True)
            cells1 = np.minimum(cells + 1, len(g) - 1)
            R = len(self.refits)
        clip_p = np.clip(p, 0.0, 1.0)
        pvar = clip_p * (1 - clip_p)
        boots = []
        if resample:
            blocks = (W.astype(float) for W in count_blocks(rng, n, int(n_boot)))
        else:
            b = max(1, min(int(n_boot), (1 << 22) // n))
            blocks = (np.ones((min(b, int(n_boot) - s), n)) for s in range(0, int(n_boot), b))
        for Wf in blocks:
            k = len(Wf)
            if use_refits:
                Ws = np.take(Wf, o, axis=1)
                A1 = np.add.reduceat(Ws * lam, starts, axis=1)
                A0 = np.add.reduceat(Ws, starts, axis=1) - A1
                C = self.refits[rng.integers(0, R, size=k)]  # (k, K)
                m = (np.einsum("ij,ij->i", C[:, cells], A0)
                     + np.einsum("ij,ij->i", C[:, cells1], A1)) / n
            else:
                m = Wf @ p / n
            if observed:
                m = m + rng.standard_normal(k) * np.sqrt(Wf @ pvar) / n
            boots.append(m)
        lo, hi = percentile_ci(np.concatenate(boots), confidence)
        return AccuracyEstimate(mean, lo, hi)

    def accuracy_model(self) -> AccuracyModel:
        """The batch estimator; for a prior saved without one, the isotonic map with
        binomial-only intervals (no calibration on shifts)."""
        if self.accuracy is not None:
            return self.accuracy
        kx, ky = (self.knots_x, self.knots_y) if self.higher_is_better else (-self.knots_x[::-1], self.knots_y[::-1])
        return AccuracyModel("isotonic", {"knots_x": kx.tolist(), "knots_y": ky.tolist()},
                             self.higher_is_better, {}, self.n_train)

    def expected_accuracy(self, quality, slices=None, confidence: float = 0.9) -> List[Dict[str, Any]]:
        """Expected accuracy of a batch, overall and per slice, each with the interval for
        the accuracy that labelling it would measure (:func:`.accuracy.estimate_slices`)."""
        return estimate_slices(self.accuracy_model(), quality, slices, confidence)

    # -- persistence -------------------------------------------------------------

    def to_dict(self) -> dict:
        d = {
            "format": _FORMAT,
            "version": 1,
            "field": self.field,
            "higher_is_better": self.higher_is_better,
            "target": self.target,
            "eval_key": self.eval_key,
            "n_train": self.n_train,
            "train_mean": self.train_mean,
            "created_at": self.created_at,
            "knots": {"x": self.knots_x.tolist(), "y": self.knots_y.tolist()},
        }
        if self.refits is not None:
            d["refits"] = {"grid": self.grid.tolist(), "curves": self.refits.tolist()}
        if self.accuracy is not None:
            d["accuracy"] = self.accuracy.to_dict()
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "PerformancePrior":
        if d.get("format") != _FORMAT:
            raise ValueError(f"not a performance prior (format {d.get('format')!r})")
        if int(d.get("version", 0)) > 1:
            raise ValueError(f"performance prior version {d.get('version')} is newer than this library")
        refits = d.get("refits") or {}
        return cls(d["knots"]["x"], d["knots"]["y"], higher_is_better=d.get("higher_is_better", True),
                   field=d.get("field"), target=d.get("target", "correct"),
                   eval_key=d.get("eval_key"), n_train=d.get("n_train", 0),
                   train_mean=d.get("train_mean"), grid=refits.get("grid"),
                   refits=refits.get("curves"), created_at=d.get("created_at"),
                   accuracy=AccuracyModel.from_dict(d["accuracy"]) if d.get("accuracy") else None)

    def save(self, path: str) -> str:
        """Writes the prior as JSON (atomically) and returns the path."""
        path = os.fspath(path)
        folder = os.path.dirname(os.path.abspath(path))
        os.makedirs(folder, exist_ok=True)
        tmp = path + ".tmp"
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(self.to_dict(), f)
        os.replace(tmp, path)
        return path

    @classmethod
    def load(cls, path: str) -> "PerformancePrior":
        with open(os.fspath(path), encoding="utf-8") as f:
            return cls.from_dict(json.load(f))


_REFIT_UNITS = 4096  # most distinct quality values a bootstrap refit works on


def _bootstrap_refits(x, y, increasing, n_refits, seed):
    """Isotonic refits on bootstrap resamples, evaluated on a quantile grid.

    The data are sorted once and cut into at most ``_REFIT_UNITS`` runs of consecutive
    quality values (the distinct values when there are fewer, else equal-count runs
    placed at their mean quality); a resample is a vector of multiplicities, and each
    refit is one weighted pool-adjacent-violators pass over the runs: O(n) per refit,
    no sort.
    """
    o = np.argsort(x, kind="stable")
    xs, ys = x[o], y[o]
    ux, starts = np.unique(xs, return_index=True)
    if len(ux) > _REFIT_UNITS:
        cut = np.unique(np.searchsorted(xs, np.quantile(xs, np.linspace(0, 1, _REFIT_UNITS + 1)[:-1]),
                                        side="left"))
        starts = cut
        sizes = np.diff(np.append(starts, len(xs)))
        ux = np.add.reduceat(xs, starts) / sizes
    grid = np.unique(np.quantile(xs, np.linspace(0, 1, _GRID)))
    curves = np.empty((n_refits, len(grid)))
    r = 0
    for W in count_blocks(make_rng(seed), len(xs), n_refits):
        Wf = W.astype(float)
        wsum = np.add.reduceat(Wf, starts, axis=1)
        ysum = np.add.reduceat(Wf * ys, starts, axis=1)
        for k in range(len(W)):  # one refit per resample
            keep = wsum[k] > 0
            xk = ux[keep]
            yk = ysum[k][keep] / wsum[k][keep]
            fit = isotonic_regression(yk, sample_weight=wsum[k][keep], increasing=increasing)
            curves[r] = np.interp(grid, xk, fit)
            r += 1
    return grid, curves


# ---------------------------------------------------------------------------
# Held-out check of the prior
# ---------------------------------------------------------------------------


@dataclass
class HeldoutResult:
    """Predicted vs actual accuracy on a held-out split.

    ``overall`` and each ``groups`` row hold: n, predicted, ci_low, ci_high (the
    prediction's bootstrap interval), actual, abs_error, covered (actual inside the
    interval). ``mean_group_abs_error`` averages the groups' errors (unweighted).
    """

    n_train: int
    n_test: int
    n_missing: int
    overall: Dict[str, Any]
    groups: List[Dict[str, Any]] = field(default_factory=list)
    mean_group_abs_error: Optional[float] = None

    def to_dict(self) -> dict:
        return jsonable(asdict(self))


def _split(n, codes, test_fraction, rng):
    """Boolean test mask: ``test_fraction`` of each group (or of all samples)."""
    u = rng.random(n)
    if codes is None:
        codes = np.zeros(n, dtype=np.int64)
    order = np.lexsort((u, codes))
    sizes = np.bincount(codes)
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    pos = np.arange(n) - starts[codes[order]]
    n_test = np.floor(sizes * test_fraction + 0.5).astype(np.int64)
    test = np.zeros(n, dtype=bool)
    test[order] = pos < n_test[codes[order]]
    return test


def heldout_error(quality, correct, groups=None, test_fraction: float = 0.5, seed=0,
                  higher_is_better: bool = True, n_refits: int = 50, n_boot: int = 500,
                  confidence: float = 0.95) -> HeldoutResult:
    """Fits a :class:`PerformancePrior` on one split and checks it on the other.

    The split is random (stratified by group when ``groups`` is given, so every group
    is in both halves). Reports, overall and per group, the predicted accuracy of the
    held-out samples (from quality alone) with its interval for the accuracy measured
    on exactly those samples (map uncertainty plus binomial noise:
    ``predict_accuracy(resample=False, observed=True)``), their actual accuracy, the
    absolute error, and whether the interval covered the actual value.
    """
    if not 0 < test_fraction < 1:
        raise ValueError("test_fraction must be in (0, 1)")
    q = as_float(quality, "quality")
    c = as_float(correct, "correct")
    if len(q) != len(c):
        raise ValueError(f"length mismatch: quality has {len(q)} values, correct has {len(c)}")
    mask = np.isfinite(q) & np.isfinite(c)
    labels = None
    codes = None
    if groups is not None:
        codes, labels = factorize(groups, len(q))
        mask &= codes >= 0
    n_missing = int(len(q) - mask.sum())
    q, c = q[mask], c[mask]
    if codes is not None:
        codes = codes[mask]
        present = np.bincount(codes, minlength=len(labels)) > 0
        remap = np.cumsum(present) - 1
        codes = remap[codes]
        labels = [lab for lab, p in zip(labels, present) if p]
    rng = make_rng(seed)
    test = _split(len(q), codes, test_fraction, rng)
    prior = PerformancePrior.fit(q[~test], c[~test], higher_is_better=higher_is_better,
                                 n_refits=n_refits, seed=rng)

    def row(sel):
        est = prior.predict_accuracy(q[sel], n_boot=n_boot, confidence=confidence, seed=rng,
                                     resample=False, observed=True)
        actual = float(c[sel].mean()) if len(sel) else float("nan")
        err = abs(est.mean - actual)
        covered = bool(est.ci_low <= actual <= est.ci_high) if math.isfinite(est.ci_low) else None
        return {"n": int(len(sel)), "predicted": est.mean, "ci_low": est.ci_low,
                "ci_high": est.ci_high, "actual": actual, "abs_error": err, "covered": covered}

    overall = row(np.flatnonzero(test))
    rows = []
    if codes is not None:
        tidx = np.flatnonzero(test)
        tidx = tidx[np.argsort(codes[tidx], kind="stable")]
        bounds = np.concatenate([[0], np.cumsum(np.bincount(codes[tidx], minlength=len(labels)))])
        for g, lab in enumerate(labels):  # loop over groups, not samples
            sel = tidx[bounds[g]:bounds[g + 1]]
            if not len(sel):
                continue
            r = row(sel)
            r = {"group": lab if not isinstance(lab, np.generic) else lab.item(), **r}
            rows.append(r)
    mge = float(np.mean([r["abs_error"] for r in rows])) if rows else None
    return HeldoutResult(n_train=int((~test).sum()), n_test=int(test.sum()), n_missing=n_missing,
                         overall=overall, groups=rows, mean_group_abs_error=mge)


def _quality_values(samples, prior, quality_field):
    """The collection's ids and quality scores (NaN where missing), checked."""
    qf = quality_field or prior.field
    if not qf:
        raise ValueError("the prior records no quality field: pass quality_field")
    dataset = samples._root_dataset
    if not dataset.has_sample_field(qf):
        raise ValueError(f"'{qf}' is not a field of dataset '{dataset.name}': score it first "
                         f"(compute_quality) with the metric the prior was fitted on")
    ids, q = samples.values(["id", qf])
    return qf, ids, np.array([np.nan if v is None else v for v in q], dtype=float)


def apply_prior(samples, prior: "PerformancePrior", field: str = "expected_accuracy",
                quality_field: Optional[str] = None, n_boot: int = 1000, seed=0,
                overwrite: bool = False, interval: str = "conformal",
                confidence: Optional[float] = None) -> AccuracyEstimate:
    """Predicts the accuracy of (unevaluated) ``samples`` from their quality.

    Stores each sample's expected accuracy (the isotonic map) in ``field`` (samples
    without a quality score get none) and returns the collection's expected accuracy
    with an interval. ``interval="conformal"`` (default): the prior's batch estimator
    (:attr:`PerformancePrior.accuracy`) and its interval for the accuracy labelling the
    collection would measure (``confidence`` 0.9 unless given); priors saved without
    one, and ``interval="bootstrap"``, give the mean of the map with a bootstrap interval
    for images like these (``confidence`` 0.95 unless given). The field is recorded in
    ``dataset.info[PRIORS_KEY]``, so difficulty views know that higher is better.
    """
    if interval not in ("conformal", "bootstrap"):
        raise ValueError(f"interval must be 'conformal' or 'bootstrap', got {interval!r}")
    qf, ids, q = _quality_values(samples, prior, quality_field)
    dataset = samples._root_dataset
    if dataset.has_sample_field(field) and not overwrite and field not in prior_fields(dataset):
        raise ValueError(f"field '{field}' exists; pass overwrite=True or choose another field")
    pred = prior.predict(q)
    if not dataset.has_sample_field(field):
        dataset.add_sample_field(field, fo.FloatField)
    dataset.set_values(field, {i: (float(p) if np.isfinite(v) else None) for i, p, v in zip(ids, pred, q)},
                       key_field="id")
    priors = prior_fields(dataset)
    priors[field] = {"quality_field": qf, "eval_key": prior.eval_key, "target": prior.target}
    dataset.info[PRIORS_KEY] = priors
    dataset.save()
    if interval == "conformal" and prior.accuracy is not None:
        return AccuracyEstimate(*prior.accuracy.interval(q, 0.9 if confidence is None else confidence))
    return prior.predict_accuracy(q, n_boot=n_boot, seed=seed, confidence=confidence or 0.95)


def expected_accuracy_table(samples, prior: "PerformancePrior", slice_field: Optional[str] = None,
                            quality_field: Optional[str] = None,
                            confidence: float = 0.9) -> List[Dict[str, Any]]:
    """Expected accuracy of ``samples`` (a view) from their quality, with its interval,
    overall and per value of ``slice_field`` (e.g. ``"tags"``, ``"predictions.label"``,
    a predicted-cause field; list fields put a sample in each of its values). Rows:
    ``slice, n, n_missing, estimate, low, high``, the overall row (``"all"``) first."""
    _, _, q = _quality_values(samples, prior, quality_field)
    slices = None if slice_field is None else samples.values(slice_field)
    return prior.expected_accuracy(q, slices, confidence)
