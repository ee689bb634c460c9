"""Scoring, step one: a plan. Everything a call asks for is resolved and checked here,
before any image is read or any record is written.

:func:`plan_quality` builds the metrics, resolves the fields, the device, the labels
and the reference field, and refuses a call that cannot succeed; the resulting
:class:`QualityPlan` is run by :func:`~fiftyone_dnniqa.scoring.execute.execute_plan`
(whole, or one shard of it).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Callable, List, Optional, Sequence, Union

import torch

import fiftyone as fo

from ..core.devices import resolve_device
from ..core.images import DEFAULT_MAX_PIXELS
from ..metrics import QualityMetric, create_metric
from ..metrics.options import checked_options_per_metric
from .field_checks import check_field_can_hold_scores
from .names import error_field_for
from .patch_plan import (PatchTarget, check_patch_fields, object_label_classes, object_run_key,
                         resolve_patches)
from .patches import DEFAULT_MARGIN, DEFAULT_MIN_SIDE
from .runs import build_run_config, extra_field, list_quality_runs
from .video_plan import check_video_fields, check_video_metrics, video_settings

ProgressCallback = Callable[[float, str], None]

DECODE_MODES = ("auto", "workers", "device")


def default_field(metric: Union[str, QualityMetric]) -> str:
    """The default score field of a metric (or metric name): ``iqa_<name>``."""
    name = metric if isinstance(metric, str) else metric.name
    return "iqa_" + "".join(c if c.isalnum() else "_" for c in name)


@dataclass
class QualityPlan:
    """A resolved, checked scoring call: what to score, with what, into which fields."""

    samples: object
    dataset: object
    names: List[Union[str, QualityMetric]]  # the metrics as the caller named them
    metrics: List[QualityMetric]
    fields: List[str]  # the run keys: score fields, or the per-sample mean of an object run
    many: bool  # a list of metrics was given: results come back as a dict
    device: Optional[torch.device]  # None for a plan only queued as shards
    device_arg: str = "auto"
    batch_size: Optional[int] = None
    num_workers: Optional[int] = None
    overwrite: bool = False
    skip_failures: bool = True
    progress: Union[bool, ProgressCallback, None] = None
    reference_field: Optional[str] = None
    label_field: Optional[str] = None
    label_path: Optional[str] = None  # where per-sample labels are read, if a metric reads them
    metric_options: Optional[dict] = None
    amp: bool = True
    max_pixels: Optional[int] = DEFAULT_MAX_PIXELS
    write_every: int = 500
    decode: str = "auto"
    patches: Optional[PatchTarget] = None  # the objects to score, for a run on objects
    attributes: Optional[List[str]] = None  # per metric, the object attribute of its scores
    patch_margin: float = DEFAULT_MARGIN
    min_patch_side: int = DEFAULT_MIN_SIDE
    frame_step: Optional[int] = None  # a run on video: every Nth frame from frame 1 (None: images)
    low_level: Optional[float] = None  # a run on video: the level of the low share (None: percentile)

    def patch_settings(self, j: int = 0):
        """``(patches_field, patches_path, attribute)`` of metric ``j``'s run record, or None."""
        if self.patches is None:
            return None
        return self.patches.field, self.patches.list_path, self.attributes[j]

    def options(self) -> dict:
        """The call's settings as operator parameters (what a shard's operation needs);
        metric options as a JSON object, as the operator's form takes them."""
        return dict(device=str(self.device_arg), batch_size=self.batch_size, num_workers=self.num_workers,
                    overwrite=self.overwrite, reference_field=self.reference_field,
                    label_field=self.label_field,
                    metric_options=json.dumps(self.metric_options) if self.metric_options else None,
                    write_every=self.write_every, decode=self.decode,
                    patches_field=self.patches.field if self.patches is not None else None,
                    attributes=self.attributes, patch_margin=self.patch_margin,
                    min_patch_side=self.min_patch_side, frame_step=self.frame_step, low_level=self.low_level)


def plan_quality(
    samples,
    metric: Union[str, QualityMetric, Sequence[Union[str, QualityMetric]]] = "aligned",
    field: Union[str, Sequence[str], None] = None,
    device: Union[str, torch.device] = "auto",
    batch_size: Optional[int] = None,
    num_workers: Optional[int] = None,
    overwrite: bool = False,
    skip_failures: bool = True,
    progress: Union[bool, ProgressCallback, None] = None,
    reference_field: Optional[str] = None,
    label_field: Optional[str] = None,
    metric_options: Optional[dict] = None,
    amp: bool = True,
    max_pixels: Optional[int] = DEFAULT_MAX_PIXELS,
    write_every: int = 500,
    decode: str = "auto",
    queued: bool = False,
    patches_field: Optional[str] = None,
    patch_margin: float = DEFAULT_MARGIN,
    min_patch_side: int = DEFAULT_MIN_SIDE,
    frame_step: Optional[int] = None,
    low_level: Optional[float] = None,
) -> QualityPlan:
    """Resolves and checks a scoring call (arguments as
    :func:`fiftyone_dnniqa.compute_quality`); ``queued`` plans a call that only queues
    shards, so its metrics are built but not moved to a device. With ``patches_field`` (or a
    ``to_patches`` view) the objects are scored: ``field`` then names the object attribute
    (:mod:`.patch_plan`). On a video collection the sampled frames are scored
    (``frame_step``, ``low_level``: :mod:`.video_fields`)."""
    many = isinstance(metric, (list, tuple))
    names = list(metric) if many else [metric]
    if not names:
        raise ValueError("pass at least one metric")
    if decode not in DECODE_MODES:
        raise ValueError(f"decode must be 'auto', 'workers' or 'device', not {decode!r}")
    if queued and not all(isinstance(m, str) for m in names):
        raise ValueError("shards=N queues operations by metric name: pass registry names")
    per_metric = checked_options_per_metric(names, metric_options)  # names and options first
    samples = frames_as_images(samples)
    dataset = check_collection(samples)
    check_not_empty(samples)
    frame_step = video_settings(samples, frame_step, low_level, patches_field, queued)
    dev = None if queued else resolve_device(device)
    metrics = [create_metric(m, **o) for m, o in zip(names, per_metric)]
    if dev is not None:
        for m in metrics:
            m.to(dev)
    fields = resolve_fields(metrics, field, many)
    patches, attributes = None, None
    if patches_field is not None or getattr(samples, "_is_patches", False):
        patches = _plan_patches(samples, dataset, metrics, fields, patches_field, patch_margin, min_patch_side,
                                overwrite)
        samples, attributes = patches.samples, fields
        fields = [object_run_key(patches.field, a) for a in attributes]
    if frame_step is not None:
        check_video_metrics(metrics)
    for f, m in zip(fields, metrics):  # before anything is read, prepared or written
        check_field(dataset, f, m, overwrite)
        if frame_step is not None:
            check_video_fields(dataset, f, m, overwrite)
    check_reference_field(dataset, metrics, reference_field)
    if patches is not None and label_field is None and any(m.needs_labels for m in metrics):
        label_path = _object_labels(dataset, patches, metrics)
    else:
        label_path = prepare_labels(dataset, metrics, label_field)
    return QualityPlan(
        samples=samples, dataset=dataset, names=names, metrics=metrics, fields=fields, many=many,
        device=dev, device_arg=str(device), batch_size=batch_size, num_workers=num_workers,
        overwrite=overwrite, skip_failures=skip_failures, progress=progress,
        reference_field=reference_field, label_field=label_field, label_path=label_path,
        metric_options=metric_options, amp=amp, max_pixels=max_pixels, write_every=write_every,
        decode=decode, patches=patches, attributes=attributes, patch_margin=float(patch_margin),
        min_patch_side=int(min_patch_side), frame_step=frame_step,
        low_level=float(low_level) if low_level is not None else None,
    )


def _plan_patches(samples, dataset, metrics, attributes, patches_field, margin, min_side, overwrite) -> PatchTarget:
    """The objects a call scores, its settings and fields checked (:mod:`.patch_plan`)."""
    if not margin >= 0 or min_side < 1:
        raise ValueError("patch_margin must be >= 0 and min_patch_side >= 1")
    rows = [m.name for m in metrics if getattr(m, "outputs", "float") != "float"]
    if rows:
        raise ValueError(f"objects are scored by metrics giving one number per image; {', '.join(rows)} "
                         "label(s) whole images (score them without patches_field)")
    patches = resolve_patches(samples, patches_field)
    keys = [object_run_key(patches.field, a) for a in attributes]
    resolve_fields(metrics, keys, True)
    for a, k in zip(attributes, keys):
        check_patch_fields(dataset, patches, a, k, overwrite)
    return patches


def _object_labels(dataset, patches: PatchTarget, metrics) -> str:
    """Task-guided metrics scoring objects without ``label_field``: the objects' own labels
    give the classes, and each object is rated against its label."""
    classes = object_label_classes(dataset, patches)
    if not classes:
        raise ValueError(f"the objects of '{patches.field}' have no labels to guide "
                         f"{', '.join(m.name for m in metrics if m.needs_labels)}")
    for m in metrics:
        if m.needs_labels and (m.classes is None or m.default_classes):
            m.set_classes(classes)
    return f"{patches.list_path}.label"


def parse_metric_options(text: str) -> dict:
    """Metric options written as a JSON object (forms, command lines)."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError as e:
        raise ValueError(f'metric options must be a JSON object, e.g. {{"tta": "flip"}}: {e}') from None
    if not isinstance(value, dict):
        raise ValueError('metric options must be a JSON object, e.g. {"tta": "flip"}')
    return value


def resolve_fields(metrics, field, many) -> List[str]:
    """One valid, distinct field name per metric."""
    if field is None:
        fields = [default_field(m) for m in metrics]
    elif isinstance(field, str):
        if len(metrics) > 1:
            raise ValueError("pass one field per metric (a list) or none")
        fields = [field]
    else:
        fields = list(field)
        if len(fields) != len(metrics):
            raise ValueError(f"got {len(fields)} fields for {len(metrics)} metrics")
    for f in fields:
        if not f.isidentifier() or f.startswith("_"):
            raise ValueError(f"field name '{f}' must be a valid identifier not starting with '_'")
    if len(set(fields)) != len(fields):
        raise ValueError(f"field names must be distinct: {fields}")
    extras = [extra_field(f, n) for m, f in zip(metrics, fields) for n in getattr(m, "extra_fields", ())]
    if set(extras) & set(fields):
        raise ValueError(f"field names must be distinct from the fields written beside them: "
                         f"{sorted(set(extras) & set(fields))}")
    return fields


def frames_as_images(samples):
    """A ``to_frames`` view as the images it shows: a view of its frames dataset, where its
    images live, so scores, fields and the run record land beside them (a FramesView's root
    dataset is the videos' dataset, which holds none of its images)."""
    if not getattr(samples, "_is_frames", False):
        return samples
    return samples._frames_dataset.select(samples.values("id"), ordered=True)


def sync_frames_to_videos(frames_view, plan: "QualityPlan") -> None:
    """Copies the fields a run on a ``to_frames`` view wrote (into its frames dataset) to
    the frames of its videos, as FiftyOne's own edits of such a view do: FiftyOne rebuilds
    a frames dataset from the videos, and fields only the old one held would be lost."""
    names = [n for f, m in zip(plan.fields, plan.metrics)
             for n in [f, error_field_for(f)] + [extra_field(f, e) for e in getattr(m, "extra_fields", ())]]
    names = [n for n in names if plan.dataset.has_sample_field(n)]
    if names:
        frames_view._sync_source(fields=names)


def check_collection(samples):
    """The root dataset of ``samples``, which must be a collection of images or videos."""
    if not hasattr(samples, "_root_dataset"):
        raise TypeError(f"expected a FiftyOne dataset or view, got {type(samples).__name__}")
    media = samples.media_type
    if media == "group":
        raise ValueError("this is a grouped collection: pick its images with "
                         "select_group_slices(media_type='image') or a single slice")
    if media not in ("image", "video", "mixed"):
        raise ValueError(f"quality metrics score images and the frames of videos; this collection's media "
                         f"type is '{media}'")
    return samples._root_dataset


def check_not_empty(samples) -> None:
    """Refuses a view without samples: scoring it would leave an empty "completed" run."""
    if len(samples) == 0:
        what = "patches" if getattr(samples, "_is_patches", False) else "samples"
        raise ValueError(f"this view has no {what}: nothing to score (check its filters or stages); "
                         "no run was recorded")


def check_reference_field(dataset, metrics, reference_field) -> None:
    """Full-reference metrics need an existing reference filepath field."""
    need = [m.name for m in metrics if m.needs_reference]
    if not need:
        return
    if not reference_field:
        raise ValueError(f"{', '.join(need)} need(s) reference_field, a filepath field of reference images")
    if not dataset.has_sample_field(reference_field):
        raise ValueError(f"reference_field '{reference_field}' is not a field of dataset '{dataset.name}'")


def prepare_labels(dataset, metrics, label_field) -> Optional[str]:
    """Gives task-guided metrics their classes; returns the label path to read."""
    needy = [m for m in metrics if m.needs_labels]
    if not needy:
        return None
    if label_field is None:
        missing = [m.name for m in needy if m.classes is None or m.uses_sample_labels]
        if missing:
            raise ValueError(f"{', '.join(missing)} need(s) the task's classes: pass label_field= "
                             "(a Classification field) or the metric's classes option")
        return None
    if not dataset.has_sample_field(label_field):
        raise ValueError(f"label_field '{label_field}' is not a field of dataset '{dataset.name}'")
    f = dataset.get_field(label_field)
    if isinstance(f, fo.EmbeddedDocumentField) and issubclass(f.document_type, fo.Classification):
        path = label_field + ".label"
    elif isinstance(f, fo.StringField):
        path = label_field
    elif getattr(f, "document_type", None) in (fo.Detections, fo.Polylines):
        raise ValueError(f"label_field '{label_field}' holds objects ({f.document_type.__name__}), not one "
                         f"label per image: pass the task's classes as metric_options={{'classes': [...]}}, "
                         f"or patches_field='{label_field}' to rate each object against its own label")
    else:
        raise ValueError(f"label_field '{label_field}' must be a Classification or string field, "
                         f"not {type(f).__name__}")
    classes = dataset.classes.get(label_field) or dataset.default_classes or dataset.distinct(path)
    if not classes:
        raise ValueError(f"label_field '{label_field}' holds no labels")
    for m in needy:  # classes the caller gave win over the label field's
        if m.classes is None or m.default_classes:
            m.set_classes(classes)
    return path


def check_field(dataset, field, metric, overwrite) -> None:
    """Refuses to write ``metric``'s scores into ``field`` when that would fail or lose data:
    a field (or its ``<field>_error`` companion) that cannot hold them
    (:func:`~.field_checks.field_problem`), or another metric's scores without ``overwrite``."""
    check_field_can_hold_scores(dataset, field, overwrite, metric)
    if field in list_quality_runs(dataset):  # the run record decides (QualityRun._validate_run)
        build_run_config(metric, field, overwrite=overwrite).build().validate_run(dataset, field)
