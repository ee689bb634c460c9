"""Per-sample performance targets from evaluations already in a FiftyOne dataset.

The user never names fields: :func:`list_targets` finds the evaluations that
``evaluate_classifications`` / ``evaluate_detections`` / ``evaluate_segmentations`` left
in the dataset and :func:`get_target` turns one into a per-sample vector, read with
``values()`` (one aggregation, no per-document Python loops).

Targets by evaluation type (``kind`` values; the first is the default):

* classification, ``simple`` / ``top-k``: ``correct`` (the per-sample boolean field
  ``<eval_key>``; 1.0 / 0.0; video datasets store the per-sample mean of the frames),
  ``confidence`` (``<pred_field>.confidence``).
* classification, ``binary``: ``correct`` (``<eval_key>`` is "TP"/"FP"/"TN"/"FN";
  correct = TP or TN), ``confidence``.
* detection (any method): ``f1``, ``precision``, ``recall``, ``tp``, ``fp``, ``fn`` from
  the per-sample counts ``<eval_key>_tp/_fp/_fn``. With ``tp, fp, fn`` counts:
  ``precision = tp / (tp + fp)`` and is NaN (undefined, so dropped by the analysis as
  missing) for a sample without predictions; ``recall = tp / (tp + fn)`` and is NaN for a
  sample without ground truth; ``f1 = 2 tp / (2 tp + fp + fn)``, which is 0 whenever
  something was missed or hallucinated and nothing matched, and is defined as **1** for
  a sample with neither ground truth nor predictions (nothing to find, nothing found).
* segmentation: ``accuracy``, ``precision``, ``recall`` (``<eval_key>_accuracy`` ...).

Samples outside the evaluated view have no value and come back as NaN.

Object level: :func:`object_outcomes` gives one row per predicted or ground-truth object
with its "tp"/"fp"/"fn" status (the objects' ``<eval_key>`` attribute), confidence, and
optionally a per-object quality attribute (e.g. a score computed on the object's patch).

:class:`PerformancePrior` maps a quality score to expected accuracy (isotonic, monotone),
fitted on an evaluated view, and predicts the accuracy of unlabelled images from their
quality alone; :func:`heldout_error` measures how well that works.
"""

from __future__ import annotations

import datetime as _dt
import json
import math
import os
from dataclasses import asdict, dataclass, field
from typing import Any, Dict, List, NamedTuple, Optional, Tuple

import numpy as np

__all__ = [
    "NoEvaluationError", "TargetInfo", "ObjectOutcomes", "list_targets", "get_target",
    "object_outcomes", "field_higher_is_better", "PerformancePrior", "AccuracyEstimate",
    "HeldoutResult", "heldout_error",
]


class NoEvaluationError(ValueError):
    """The samples carry no (usable) evaluation to take performance targets from."""


_HOWTO = (
    "Run an evaluation with an eval_key first, e.g. "
    "dataset.evaluate_classifications('predictions', gt_field='ground_truth', eval_key='eval') "
    "or dataset.evaluate_detections('predictions', gt_field='ground_truth', eval_key='eval')."
)

_KINDS = {
    ("classification", "binary"): ("correct", "confidence"),
    ("classification", None): ("correct", "confidence"),
    ("detection", None): ("f1", "precision", "recall", "tp", "fp", "fn"),
    ("segmentation", None): ("accuracy", "precision", "recall"),
}

# Targets that are 0/1 per sample (AUROC makes sense for them).
BINARY_KINDS = ("correct",)


def _kinds_for(etype, method):
    return _KINDS.get((etype, method)) or _KINDS.get((etype, None)) or ()


@dataclass
class TargetInfo:
    """One evaluation found in the dataset and the targets it can give."""

    eval_key: str
    type: str
    method: Optional[str]
    pred_field: Optional[str]
    gt_field: Optional[str]
    kinds: Tuple[str, ...]
    timestamp: Optional[str] = None

    @property
    def default_kind(self) -> str:
        return self.kinds[0]

    def to_dict(self) -> dict:
        d = asdict(self)
        d["kinds"] = list(self.kinds)
        d["default_kind"] = self.default_kind
        return d


def _timestamp(info):
    ts = getattr(info, "timestamp", None)
    if ts is None:
        return None
    return ts.isoformat() if hasattr(ts, "isoformat") else str(ts)


def _info(samples, key) -> Optional[TargetInfo]:
    info = samples.get_evaluation_info(key)
    cfg = info.config
    etype = getattr(cfg, "type", None)
    method = getattr(cfg, "method", None)
    kinds = _kinds_for(etype, method)
    if not kinds:
        return None
    return TargetInfo(eval_key=key, type=etype, method=method,
                      pred_field=getattr(cfg, "pred_field", None),
                      gt_field=getattr(cfg, "gt_field", None), kinds=tuple(kinds),
                      timestamp=_timestamp(info))


def list_targets(samples) -> List[TargetInfo]:
    """Evaluations on ``samples``' dataset usable as performance targets, newest first.

    Evaluations of unsupported types (e.g. regression) are left out.
    """
    out = []
    for key in samples.list_evaluations():
        ti = _info(samples, key)
        if ti is not None:
            out.append(ti)
    out.sort(key=lambda t: t.timestamp or "", reverse=True)
    return out


def _pick(samples, eval_key, kind) -> TargetInfo:
    if eval_key is not None:
        if eval_key not in samples.list_evaluations():
            keys = samples.list_evaluations()
            raise NoEvaluationError(
                f"no evaluation {eval_key!r} on this dataset"
                + (f"; available: {', '.join(keys)}" if keys else f". {_HOWTO}"))
        ti = _info(samples, eval_key)
        if ti is None:
            cfg = samples.get_evaluation_info(eval_key).config
            raise NoEvaluationError(
                f"evaluation {eval_key!r} is of type {getattr(cfg, 'type', '?')!r}, which gives "
                "no per-sample performance target; supported: classification, detection, "
                "segmentation")
        if kind is not None and kind not in ti.kinds:
            raise ValueError(f"evaluation {eval_key!r} ({ti.type}) gives targets "
                             f"{', '.join(ti.kinds)}, not {kind!r}")
        return ti
    targets = list_targets(samples)
    if not targets:
        raise NoEvaluationError(f"the dataset has no classification or detection evaluation. {_HOWTO}")
    if kind is None:
        return targets[0]
    for ti in targets:
        if kind in ti.kinds:
            return ti
    raise NoEvaluationError(
        f"no evaluation on this dataset gives the target {kind!r} (found: "
        + ", ".join(f"{t.eval_key} ({t.type})" for t in targets) + ")")


def _floats(values) -> np.ndarray:
    return np.asarray(values, dtype=object).astype(float) if len(values) else np.zeros(0)


def _require_fields(samples, fields, ti):
    missing = [f for f in fields if not samples.has_field(f)]
    if missing:
        raise NoEvaluationError(
            f"evaluation {ti.eval_key!r} has no field(s) {', '.join(missing)} on this dataset "
            "(were they deleted or renamed?); re-run the evaluation with eval_key="
            f"{ti.eval_key!r}")


def detection_rates(tp, fp, fn) -> Dict[str, np.ndarray]:
    """Per-sample precision, recall and F1 from TP/FP/FN counts (NaN counts stay NaN).

    See the module docstring for the 0/0 conventions.
    """
    tp, fp, fn = (np.asarray(v, dtype=float) for v in (tp, fp, fn))
    with np.errstate(invalid="ignore", divide="ignore"):
        precision = np.where(tp + fp > 0, tp / (tp + fp), np.nan)
        recall = np.where(tp + fn > 0, tp / (tp + fn), np.nan)
        denom = 2 * tp + fp + fn
        f1 = np.where(denom > 0, 2 * tp / denom, 1.0)
    f1 = np.where(np.isnan(tp) | np.isnan(fp) | np.isnan(fn), np.nan, f1)
    return {"precision": precision, "recall": recall, "f1": f1}


def get_target(samples, eval_key: Optional[str] = None,
               kind: Optional[str] = None) -> Tuple[np.ndarray, np.ndarray]:
    """Per-sample performance vector from an evaluation already in the dataset.

    Args:
        samples: a FiftyOne dataset or view (the vector follows its sample order).
        eval_key: the evaluation to use; None picks the most recent evaluation (the most
            recent one that gives ``kind`` when ``kind`` is given).
        kind: which target (see the module docstring); None uses the evaluation type's
            default: ``correct`` for classification, ``f1`` for detection, ``accuracy``
            for segmentation.

    Returns:
        ``(ids, values)``: sample id strings and float values (NaN where the sample was
        not evaluated).

    Raises:
        NoEvaluationError: when there is no suitable evaluation.
    """
    ti = _pick(samples, eval_key, kind)
    kind = kind or ti.default_kind
    key = ti.eval_key
    if ti.type == "classification":
        if kind == "confidence":
            path = f"{ti.pred_field}.confidence"
            ids, vals = samples.values(["id", path])
            return np.asarray(ids), _floats(vals)
        _require_fields(samples, [key], ti)
        ids, vals = samples.values(["id", key])
        vals = np.asarray(vals, dtype=object)
        if ti.method == "binary":
            # image datasets store "TP"/"FP"/"TN"/"FN"; video datasets a per-sample mean
            s = vals.astype(str)
            out = np.full(len(vals), np.nan)
            out[(s == "TP") | (s == "TN")] = 1.0
            out[(s == "FP") | (s == "FN")] = 0.0
            other = ~np.isin(s, ["TP", "TN", "FP", "FN", "None"])
            if other.any():
                out[other] = vals[other].astype(float)
            return np.asarray(ids), out
        return np.asarray(ids), _floats(vals)
    if ti.type == "detection":
        fields = [f"{key}_tp", f"{key}_fp", f"{key}_fn"]
        _require_fields(samples, fields, ti)
        ids, tp, fp, fn = samples.values(["id"] + fields)
        tp, fp, fn = _floats(tp), _floats(fp), _floats(fn)
        if kind in ("tp", "fp", "fn"):
            return np.asarray(ids), {"tp": tp, "fp": fp, "fn": fn}[kind]
        return np.asarray(ids), detection_rates(tp, fp, fn)[kind]
    if ti.type == "segmentation":
        f = f"{key}_{kind}"
        _require_fields(samples, [f], ti)
        ids, vals = samples.values(["id", f])
        return np.asarray(ids), _floats(vals)
    raise NoEvaluationError(f"evaluation {key!r} of type {ti.type!r} is not supported")


# ---------------------------------------------------------------------------
# Object level
# ---------------------------------------------------------------------------


@dataclass
class ObjectOutcomes:
    """One row per object of one side ("pred" or "gt") of a detection evaluation.

    ``correct`` is 1 for "tp" and 0 for "fp" (predictions) or "fn" (ground truth), NaN
    for objects the evaluation did not label (e.g. crowd objects, or outside the
    evaluated view).
    """

    eval_key: str
    side: str
    label_field: str
    sample_ids: np.ndarray
    object_ids: np.ndarray
    outcome: np.ndarray
    correct: np.ndarray
    confidence: np.ndarray
    quality: Optional[np.ndarray] = None

    def __len__(self):
        return len(self.object_ids)

    @property
    def counts(self) -> Dict[str, int]:
        vals, cnt = np.unique(self.outcome.astype(str), return_counts=True)
        return {str(v): int(c) for v, c in zip(vals, cnt)}


def object_outcomes(samples, eval_key: Optional[str] = None, side: str = "gt",
                    quality: Optional[str] = None) -> ObjectOutcomes:
    """Object-level TP/FP/FN of a detection evaluation.

    Args:
        samples: dataset or view.
        eval_key: a detection evaluation (None: the most recent one).
        side: "gt" (correct = the object was found: TP vs FN) or "pred" (correct = the
            prediction matched: TP vs FP).
        quality: optional name of a per-object attribute holding a quality score (for
            example one computed on the object's patch); returned aligned with the
            objects, NaN where an object lacks it.
    """
    if side not in ("gt", "pred"):
        raise ValueError("side must be 'gt' or 'pred'")
    ti = _pick(samples, eval_key, "f1")
    if ti.type != "detection":
        raise ValueError(f"evaluation {ti.eval_key!r} is a {ti.type} evaluation, not detection")
    label_field = ti.gt_field if side == "gt" else ti.pred_field
    if samples._is_frame_field(label_field):
        raise ValueError("object_outcomes() supports image datasets; "
                         f"{label_field!r} is a frame-level field")
    _, list_path = samples._get_label_field_path(label_field)
    key = ti.eval_key
    from fiftyone import ViewField as F

    paths = [f"{list_path}.id", f"{list_path}.{key}", f"{list_path}.confidence"]
    if quality:
        paths.append(f"{list_path}.{quality}")
    flat = samples.values(paths, unwind=True)
    ids, counts = samples.values(["id", F(list_path).length()])
    counts = np.nan_to_num(_floats(counts)).astype(np.int64)  # None (no label) -> 0
    obj_ids = np.asarray(flat[0], dtype=object)
    sample_ids = np.repeat(np.asarray(ids, dtype=object), counts)
    if len(sample_ids) != len(obj_ids):  # defensive: should not happen
        raise RuntimeError("object counts do not match the unwound objects")
    outcome = np.asarray(flat[1], dtype=object)
    correct = np.full(len(outcome), np.nan)
    correct[outcome == "tp"] = 1.0
    correct[(outcome == "fp") | (outcome == "fn")] = 0.0
    conf = _floats(flat[2])
    q = _floats(flat[3]) if quality else None
    return ObjectOutcomes(eval_key=key, side=side, label_field=label_field,
                          sample_ids=sample_ids, object_ids=obj_ids, outcome=outcome,
                          correct=correct, confidence=conf, quality=q)


def field_higher_is_better(samples, field: str) -> Optional[bool]:
    """The direction recorded by the quality run that wrote ``field``, or None."""
    try:
        ds = samples._root_dataset
        if field in ds.list_runs():
            cfg = ds.get_run_info(field).config
            hib = getattr(cfg, "higher_is_better", None)
            return None if hib is None else bool(hib)
    except Exception:  # pragma: no cover - unreadable run records
        return None
    return None


# ---------------------------------------------------------------------------
# Performance prior: quality -> expected accuracy
# ---------------------------------------------------------------------------


class AccuracyEstimate(NamedTuple):
    mean: float
    ci_low: float
    ci_high: float


_FORMAT = "fiftyone-dnniqa/performance-prior"
_GRID = 256  # points on which bootstrap refits are stored


def _clean_pair(x, y):
    from .analysis import _clean

    (x, y), n_missing, _ = _clean(x, y, names=["quality", "target"])
    return x, y, n_missing


class PerformancePrior:
    """Monotone map from a quality score to expected accuracy (isotonic regression).

    Fitted on samples whose correctness is known, it predicts the accuracy of new images
    from their quality alone. The map is stored as knots ``(x, y)`` and evaluated by
    linear interpolation, flat beyond the end knots (exactly scikit-learn's
    ``IsotonicRegression(out_of_bounds="clip").predict``). With ``n_refits > 0`` the fit
    is repeated on bootstrap resamples of the training data and those curves (kept on a
    grid of training quantiles) carry the map's own uncertainty into
    :meth:`predict_accuracy`'s interval. Saved as JSON, never pickled.
    """

    def __init__(self, knots_x, knots_y, higher_is_better: bool = True,
                 field: Optional[str] = None, target: str = "correct",
                 eval_key: Optional[str] = None, n_train: int = 0,
                 train_mean: Optional[float] = None, grid=None, refits=None,
                 created_at: Optional[str] = None):
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

    def __repr__(self):
        return (f"<PerformancePrior field={self.field!r} higher_is_better={self.higher_is_better} "
                f"knots={len(self.knots_x)} n_train={self.n_train}>")

    # -- fitting -----------------------------------------------------------------

    @classmethod
    def fit(cls, quality, correct, higher_is_better: bool = True, field: Optional[str] = None,
            target: str = "correct", eval_key: Optional[str] = None, n_refits: int = 100,
            seed=0) -> "PerformancePrior":
        """Fits the map on per-sample quality and correctness (or any target in [0, 1]).

        NaN/None pairs are dropped. ``n_refits`` bootstrap refits (0 for none) record
        the map's uncertainty; each is O(n) on pre-sorted data, so they stay cheap.
        """
        from sklearn.isotonic import IsotonicRegression

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
        return cls(kx, ky, higher_is_better=higher_is_better, field=field, target=target,
                   eval_key=eval_key, n_train=len(x), train_mean=float(y.mean()), grid=grid,
                   refits=refits, created_at=_dt.datetime.now(_dt.timezone.utc).isoformat())

    @classmethod
    def from_samples(cls, samples, field: str, eval_key: Optional[str] = None,
                     higher_is_better: Optional[bool] = None, kind: str = "correct",
                     n_refits: int = 100, seed=0) -> "PerformancePrior":
        """Fits on an evaluated dataset or view: ``field`` holds the quality scores and
        the target comes from :func:`get_target` (``kind`` of ``eval_key``, or of the most
        recent evaluation). ``higher_is_better=None`` reads the direction from the quality
        run that wrote ``field`` (True when there is none)."""
        ti = _pick(samples, eval_key, kind)
        _, target = get_target(samples, ti.eval_key, kind)
        quality = _floats(samples.values(field))
        if higher_is_better is None:
            hib = field_higher_is_better(samples, field)
            higher_is_better = True if hib is None else hib
        return cls.fit(quality, target, higher_is_better=higher_is_better, field=field,
                       target=kind, eval_key=ti.eval_key, n_refits=n_refits, seed=seed)

    # -- prediction --------------------------------------------------------------

    def predict(self, quality) -> np.ndarray:
        """Expected accuracy of each sample (NaN where quality is missing)."""
        from .analysis import _as_float

        q = _as_float(quality, "quality")
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
        from .analysis import _as_float, _count_blocks, _percentile_ci, _rng

        q = _as_float(quality, "quality")
        q = q[np.isfinite(q)]
        n = len(q)
        if n == 0:
            return AccuracyEstimate(float("nan"), float("nan"), float("nan"))
        p = np.interp(q, self.knots_x, self.knots_y)
        mean = float(p.mean())
        if not n_boot or n_boot <= 0:
            return AccuracyEstimate(mean, float("nan"), float("nan"))
        rng = _rng(seed)
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
            blocks = (W.astype(float) for W in _count_blocks(rng, n, int(n_boot)))
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
        lo, hi = _percentile_ci(np.concatenate(boots), confidence)
        return AccuracyEstimate(mean, lo, hi)

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
                   refits=refits.get("curves"), created_at=d.get("created_at"))

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
    from sklearn.isotonic import isotonic_regression

    from .analysis import _count_blocks, _rng

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
    for W in _count_blocks(_rng(seed), len(xs), n_refits):
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
        from .analysis import _jsonable

        return _jsonable(asdict(self))


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
    from .analysis import _as_float, _factorize, _rng

    if not 0 < test_fraction < 1:
        raise ValueError("test_fraction must be in (0, 1)")
    q = _as_float(quality, "quality")
    c = _as_float(correct, "correct")
    if len(q) != len(c):
        raise ValueError(f"length mismatch: quality has {len(q)} values, correct has {len(c)}")
    mask = np.isfinite(q) & np.isfinite(c)
    labels = None
    codes = None
    if groups is not None:
        codes, labels = _factorize(groups, len(q))
        mask &= codes >= 0
    n_missing = int(len(q) - mask.sum())
    q, c = q[mask], c[mask]
    if codes is not None:
        codes = codes[mask]
        present = np.bincount(codes, minlength=len(labels)) > 0
        remap = np.cumsum(present) - 1
        codes = remap[codes]
        labels = [lab for lab, p in zip(labels, present) if p]
    rng = _rng(seed)
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


def apply_prior(samples, prior: "PerformancePrior", field: str = "expected_accuracy",
                quality_field: Optional[str] = None, n_boot: int = 1000, seed=0,
                overwrite: bool = False) -> AccuracyEstimate:
    """Predicts the accuracy of (unevaluated) ``samples`` from their quality.

    Stores each sample's expected accuracy in ``field`` (samples without a
    quality score get none) and returns the collection's expected accuracy
    with a bootstrap interval. The field is recorded in
    ``dataset.info["dnniqa_priors"]``, so difficulty views know that higher
    is better.
    """
    import fiftyone as fo

    qf = quality_field or prior.field
    if not qf:
        raise ValueError("the prior records no quality field: pass quality_field")
    dataset = samples._root_dataset
    if not dataset.has_sample_field(qf):
        raise ValueError(f"'{qf}' is not a field of dataset '{dataset.name}': score it first "
                         f"(compute_quality) with the metric the prior was fitted on")
    if dataset.has_sample_field(field) and not overwrite and field not in dataset.info.get("dnniqa_priors", {}):
        raise ValueError(f"field '{field}' exists; pass overwrite=True or choose another field")
    ids, q = samples.values(["id", qf])
    q = np.array([np.nan if v is None else v for v in q], dtype=float)
    pred = prior.predict(q)
    if not dataset.has_sample_field(field):
        dataset.add_sample_field(field, fo.FloatField)
    dataset.set_values(field, {i: (float(p) if np.isfinite(v) else None) for i, p, v in zip(ids, pred, q)},
                       key_field="id")
    priors = dict(dataset.info.get("dnniqa_priors", {}))
    priors[field] = {"quality_field": qf, "eval_key": prior.eval_key, "target": prior.target}
    dataset.info["dnniqa_priors"] = priors
    dataset.save()
    return prior.predict_accuracy(q, n_boot=n_boot, seed=seed)
