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
with its "tp"/"fp"/"fn" status (the objects' ``<eval_key>`` attribute), confidence, box
area, and optionally a per-object quality attribute (the score ``compute_quality(...,
patches_field=...)`` computed on the object's patch).

:class:`PerformancePrior` maps a quality score to expected accuracy (isotonic, monotone),
fitted on an evaluated view, and predicts the accuracy of unlabelled images from their
quality alone; :func:`heldout_error` measures how well that works.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Dict, List, Optional, Tuple

import fiftyone as fo
import numpy as np
from fiftyone import ViewField as F

from ..core.boxes import polyline_box

__all__ = [
    "NoEvaluationError", "TargetInfo", "ObjectOutcomes", "list_targets", "get_target",
    "object_outcomes", "detection_rates", "pick_target", "to_floats", "binary_correct",
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


def pick_target(samples, eval_key, kind) -> TargetInfo:
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


def to_floats(values) -> np.ndarray:
    """Float vector from ``values()`` output: None becomes NaN (vectorised)."""
    a = np.asarray(values, dtype=object)
    if a.size == 0:
        return np.zeros(0)
    a[np.equal(a, None)] = np.nan
    return a.astype(float)


def _require_fields(samples, fields, ti):
    missing = [f for f in fields if not samples.has_field(f)]
    if missing:
        raise NoEvaluationError(
            f"evaluation {ti.eval_key!r} has no field(s) {', '.join(missing)} on this dataset "
            "(were they deleted or renamed?); re-run the evaluation with eval_key="
            f"{ti.eval_key!r}")


def binary_correct(values) -> np.ndarray:
    """Correctness from a binary classification evaluation's per-sample (or per-frame)
    outcomes: "TP"/"TN" are 1.0, "FP"/"FN" 0.0, None NaN; numbers (a video's per-sample
    mean of its frames) are kept."""
    vals = np.asarray(values, dtype=object)
    s = vals.astype(str)
    out = np.full(len(vals), np.nan)
    out[(s == "TP") | (s == "TN")] = 1.0
    out[(s == "FP") | (s == "FN")] = 0.0
    other = ~np.isin(s, ["TP", "TN", "FP", "FN", "None"])
    if other.any():
        out[other] = vals[other].astype(float)
    return out


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
    ti = pick_target(samples, eval_key, kind)
    kind = kind or ti.default_kind
    key = ti.eval_key
    if ti.type == "classification":
        if kind == "confidence":
            path = f"{ti.pred_field}.confidence"
            ids, vals = samples.values(["id", path])
            return np.asarray(ids), to_floats(vals)
        _require_fields(samples, [key], ti)
        ids, vals = samples.values(["id", key])
        vals = np.asarray(vals, dtype=object)
        if ti.method == "binary":
            return np.asarray(ids), binary_correct(vals)
        return np.asarray(ids), to_floats(vals)
    if ti.type == "detection":
        fields = [f"{key}_tp", f"{key}_fp", f"{key}_fn"]
        _require_fields(samples, fields, ti)
        ids, tp, fp, fn = samples.values(["id"] + fields)
        tp, fp, fn = to_floats(tp), to_floats(fp), to_floats(fn)
        if kind in ("tp", "fp", "fn"):
            return np.asarray(ids), {"tp": tp, "fp": fp, "fn": fn}[kind]
        return np.asarray(ids), detection_rates(tp, fp, fn)[kind]
    if ti.type == "segmentation":
        f = f"{key}_{kind}"
        _require_fields(samples, [f], ti)
        ids, vals = samples.values(["id", f])
        return np.asarray(ids), to_floats(vals)
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
    area: Optional[np.ndarray] = None  # box area (NaN without a box)
    area_unit: str = "pixels"  # or "fraction of the image" when an image's size is unknown

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
    ti = pick_target(samples, eval_key, "f1")
    if ti.type != "detection":
        raise ValueError(f"evaluation {ti.eval_key!r} is a {ti.type} evaluation, not detection")
    label_field = ti.gt_field if side == "gt" else ti.pred_field
    if samples._is_frame_field(label_field):
        raise ValueError("object_outcomes() supports image datasets; "
                         f"{label_field!r} is a frame-level field")
    _, list_path = samples._get_label_field_path(label_field)
    key = ti.eval_key
    paths = [f"{list_path}.id", f"{list_path}.{key}", f"{list_path}.confidence"]
    if quality:
        paths.append(f"{list_path}.{quality}")
    flat = samples.values(paths, unwind=True)
    # boxes are lists themselves: unwinding would flatten their coordinates too. A
    # polyline is measured through its box, as it is scored
    polylines = _is_polylines(samples, label_field)
    ids, counts, widths, heights, boxes = samples.values(
        ["id", F(list_path).length(), "metadata.width", "metadata.height",
         f"{list_path}.{'points' if polylines else 'bounding_box'}"])
    counts = np.nan_to_num(to_floats(counts)).astype(np.int64)  # None (no label) -> 0
    obj_ids = np.asarray(flat[0], dtype=object)
    sample_ids = np.repeat(np.asarray(ids, dtype=object), counts)
    if len(sample_ids) != len(obj_ids):  # defensive: should not happen
        raise RuntimeError("object counts do not match the unwound objects")
    outcome = np.asarray(flat[1], dtype=object)
    correct = np.full(len(outcome), np.nan)
    correct[outcome == "tp"] = 1.0
    correct[(outcome == "fp") | (outcome == "fn")] = 0.0
    conf = to_floats(flat[2])
    q = to_floats(flat[3]) if quality else None
    boxes = [polyline_box(b) if polylines else b for v in boxes for b in (v or [])]
    area, unit = _box_areas(boxes, np.repeat(to_floats(widths), counts), np.repeat(to_floats(heights), counts))
    return ObjectOutcomes(eval_key=key, side=side, label_field=label_field,
                          sample_ids=sample_ids, object_ids=obj_ids, outcome=outcome,
                          correct=correct, confidence=conf, quality=q, area=area, area_unit=unit)


def _is_polylines(samples, label_field) -> bool:
    field = samples.get_field(label_field)
    return getattr(field, "document_type", None) is fo.Polylines


def _box_areas(boxes, widths, heights):
    """Box areas in pixels when every image's size is known (its metadata), else as a
    fraction of the image; NaN for an object without a box."""
    rel = np.array([b[2] * b[3] if b is not None and len(b) == 4 else np.nan for b in boxes], dtype=float)
    if len(rel) and np.isfinite(widths).all() and np.isfinite(heights).all():
        return rel * widths * heights, "pixels"
    return rel, "fraction of the image"
