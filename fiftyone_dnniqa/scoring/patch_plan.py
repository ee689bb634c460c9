"""Scoring objects, the plan's part: which objects, where their scores go, all checked.

``compute_quality(samples, metric, patches_field="ground_truth")`` scores every object of a
``Detections`` or ``Polylines`` field (through the polylines' boxes), or the objects of a
``to_patches`` / ``to_evaluation_patches`` view. For an object attribute ``attr`` (default
``iqa_<metric>``) of field ``gt``, a run writes:

* ``gt.detections.<attr>``: the object's score; ``gt.detections.<attr>_error``: why an
  object has none (a degenerate box, an unreadable image...);
* ``gt_<attr>`` (the run key) and ``gt_<attr>_min``: the mean and the minimum over the
  sample's scored objects, as ordinary sample fields.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import List, Optional

import fiftyone as fo

from .names import error_field_for
from .runs import list_quality_runs

#: label types whose objects can be scored, and the list inside each
PATCH_TYPES = {fo.Detections: "detections", fo.Polylines: "polylines"}


@dataclass
class PatchTarget:
    """The objects a plan scores."""

    samples: object  # the (source) samples holding the objects
    field: str  # the Detections / Polylines field
    list_path: str  # "<field>.detections" or "<field>.polylines"
    kind: str  # "detections" or "polylines"
    object_ids: Optional[set] = None  # only these objects (a patches view), else all

    @property
    def box_path(self) -> str:
        return f"{self.list_path}.{'bounding_box' if self.kind == 'detections' else 'points'}"


def object_run_key(patches_field: str, attribute: str) -> str:
    """The run key (and the sample field of the per-sample mean) of an object run."""
    return f"{patches_field}_{attribute}"


def min_field_for(key: str) -> str:
    """The sample field holding the minimum object score of each sample."""
    return f"{key}_min"


def patch_capable_fields(samples) -> List[str]:
    """The fields of ``samples``' dataset whose objects can be scored (``Detections``,
    ``Polylines``), for forms and choices."""
    schema = samples._root_dataset.get_field_schema(embedded_doc_type=tuple(PATCH_TYPES))
    return sorted(schema)


def resolve_patches(samples, patches_field: Optional[str]) -> PatchTarget:
    """The objects to score: those of ``patches_field`` in ``samples``, or the patches of a
    ``to_patches`` / ``to_evaluation_patches`` view (``patches_field`` may then be omitted
    for ``to_patches``)."""
    is_patches = getattr(samples, "_is_patches", False)
    if is_patches and patches_field is None:
        patches_field = getattr(samples, "patches_field", None)
        if patches_field is None:
            raise ValueError("this evaluation patches view holds two label fields: pass "
                             "patches_field (the ground truth or the predictions)")
    dataset = samples._root_dataset
    field = dataset.get_field(patches_field) if dataset.has_sample_field(patches_field) else None
    doc = getattr(field, "document_type", None)
    if doc not in PATCH_TYPES:
        found = ", ".join(patch_capable_fields(samples)) or "none"
        raise ValueError(f"patches_field '{patches_field}' must be a Detections or Polylines field of "
                         f"dataset '{dataset.name}' (such fields: {found})")
    kind = PATCH_TYPES[doc]
    object_ids = None
    if is_patches:
        in_view = getattr(samples.get_field(patches_field), "document_type", None)
        if in_view in PATCH_TYPES:  # evaluation patches: each patch holds a list of objects
            object_ids = set(samples.values(f"{patches_field}.{kind}.id", unwind=True))
        else:
            object_ids = set(samples.values(f"{patches_field}.id"))
        source = dataset.select(sorted(set(samples.values("sample_id"))))
    else:
        source = samples
    return PatchTarget(source, patches_field, f"{patches_field}.{kind}", kind, object_ids)


def check_patch_fields(dataset, target: PatchTarget, attribute: str, key: str, overwrite: bool) -> None:
    """Refuses an object run whose attribute or aggregate fields cannot hold its values,
    or would replace values no quality run of that key wrote (without ``overwrite``)."""
    ours = key in list_quality_runs(dataset, kind="all")
    if ours:
        cfg = dataset.get_run_info(key).config
        if getattr(cfg, "patches_field", None) != target.field:
            raise ValueError(f"'{key}' is the key of an image quality run; choose another field")
    checks = [(f"{target.list_path}.{attribute}", fo.FloatField),
              (f"{target.list_path}.{error_field_for(attribute)}", fo.StringField),
              (min_field_for(key), fo.FloatField)]
    for path, kind in checks:
        existing = dataset.get_field(path)
        if existing is None:
            continue
        if not isinstance(existing, kind):
            raise ValueError(f"'{path}' is a {type(existing).__name__}, which cannot hold "
                             f"{'scores' if kind is fo.FloatField else 'failure reasons'}; choose another field")
        if not ours and not overwrite:
            raise ValueError(f"'{path}' already exists and was not written by compute_quality; pass "
                             "overwrite=True to replace its values or choose another field")


def object_label_classes(dataset, target: PatchTarget) -> list:
    """The classes of the objects' labels (for task-guided metrics scoring objects)."""
    classes = dataset.classes.get(target.field) or dataset.default_classes
    return list(classes or dataset.distinct(f"{target.list_path}.label"))
