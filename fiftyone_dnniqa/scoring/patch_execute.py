"""Scoring objects, the engine's part: which objects each metric still needs, a loader of
their images, and the loop that crops and scores them.

Each image is decoded once for all of its objects (in the loader workers, or in batches on
the device); :class:`~.patches.PatchCropper` cuts the objects' patches from it, and the
ordinary scorers score them as items of their own, keyed by object id. The writer
(:class:`~.patch_writer.ObjectValues`) stores each score on its object and the per-sample
aggregates. Degenerate boxes and unreadable images are recorded per object, never fatal.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import List, Optional

import numpy as np

from ..core.boxes import polyline_box
from .lanes import open_lanes, scored_batches
from .loading import SampleImages, batch_loader, decode_jpegs
from .patch_writer import ObjectValues
from .patches import NATIVE, PatchCropper, batch_objects, box_problem
from .plan import QualityPlan
from .scorers import Job, WorkerScorer, score_batch
from .writer import Progress, WriteCadence


@dataclass
class PatchWork:
    """What one run on objects reads: every object of the view's samples, and which of
    them each job needs (``ids``, ``todo`` are per object, as the scorers index them)."""

    ids: list  # object ids
    obj_rows: np.ndarray  # the sample row of each object
    boxes: list
    labels: Optional[list]
    todo: np.ndarray  # (n_objects, n_jobs) bool
    pre_errors: dict  # object -> reason it has no patch, known without the image
    sample_ids: list
    filepaths: list
    ref_paths: Optional[list]
    rows: np.ndarray  # the samples to load
    crops: list  # per loaded sample: its objects to crop, (object, box, label)
    values: np.ndarray  # (n_objects, n_jobs) current scores, NaN for none


def _nested(values):
    return [v if v is not None else [] for v in values]


def _flat_labels(plan, samples, counts) -> Optional[list]:
    """Each object's label for metrics that rate against it: the object's own (no
    ``label_field``), or its sample's ``label_field``."""
    if not plan.label_path or not any(m.uses_sample_labels for m in plan.metrics):
        return None
    values = samples.values(plan.label_path)
    if plan.label_path.startswith(plan.patches.list_path + "."):
        return [x for v in _nested(values) for x in v]
    return [v for v, c in zip(values, counts) for _ in range(c)]


def _current_scores(plan, samples, counts) -> np.ndarray:
    """``(n_objects, n_jobs)``: the scores the objects hold already (NaN for none)."""
    values = np.full((int(sum(counts)), len(plan.metrics)), np.nan)
    for j, a in enumerate(plan.attributes):
        path = f"{plan.patches.list_path}.{a}"
        if samples._root_dataset.get_field(path) is None:
            continue
        col = [x for v, c in zip(samples.values(path), counts) for x in (v or [None] * c)]
        values[:, j] = [np.nan if x is None else x for x in col]
    return values


def read_patch_work(plan: QualityPlan, samples) -> PatchWork:
    """Reads the view's objects once: ids, boxes, labels, current scores and what to do."""
    t = plan.patches
    sample_ids, filepaths, obj_ids, boxes = samples.values(["id", "filepath", f"{t.list_path}.id", t.box_path])
    obj_ids, boxes = _nested(obj_ids), _nested(boxes)
    counts = [len(v) for v in obj_ids]
    kinds = samples.values("_media_type", _allow_missing=True) if samples.media_type == "mixed" else None
    rows = np.repeat(np.arange(len(sample_ids)), counts)
    ids = [x for v in obj_ids for x in v]
    flat_boxes = [polyline_box(b) if t.kind == "polylines" else b for v in boxes for b in v]
    labels = _flat_labels(plan, samples, counts)
    values = _current_scores(plan, samples, counts)
    todo = np.ones(values.shape, dtype=bool) if plan.overwrite else np.isnan(values)
    if t.object_ids is not None:
        todo &= np.array([oid in t.object_ids for oid in ids], dtype=bool).reshape(-1, 1)
    pre_errors = {}
    for k in np.flatnonzero(todo.any(axis=1)):
        kind = kinds[rows[k]] if kinds is not None else "image"
        reason = box_problem(flat_boxes[k]) if kind == "image" else f"{kind} sample: quality metrics score images"
        if reason:
            pre_errors[int(k)] = reason
    crop_todo = todo.any(axis=1)
    crop_todo[list(pre_errors)] = False
    load = np.unique(rows[crop_todo])
    crops = [[] for _ in load]
    where = {int(r): i for i, r in enumerate(load)}
    for k in np.flatnonzero(crop_todo):
        crops[where[int(rows[k])]].append((int(k), flat_boxes[k], labels[k] if labels is not None else None))
    ref_paths = samples.values(plan.reference_field) if plan.reference_field else None
    return PatchWork(ids, rows, flat_boxes, labels, todo, pre_errors, list(sample_ids), filepaths, ref_paths,
                     load, crops, values)


def object_values(plan: QualityPlan, work: PatchWork) -> ObjectValues:
    """The writer's state for ``work``."""
    return ObjectValues(plan.patches.list_path, plan.attributes, plan.fields, work.ids, work.obj_rows,
                        work.sample_ids, work.values)


def patch_loader(plan, work: PatchWork, jobs, specs, batch_size, num_workers, raw_jpeg):
    """The DataLoader over the samples whose objects need scoring: each item is one decoded
    image, cut into its objects' patches in the worker (unless decoded later on the device)."""
    main_specs = {job.spec_index for job in jobs if not job.in_worker}
    scorer = WorkerScorer(jobs, work.todo, main_specs) if any(j.in_worker for j in jobs) else None
    cropper = None if raw_jpeg else PatchCropper(work.crops, specs, plan.patch_margin, plan.min_patch_side,
                                                 scorer)
    data = SampleImages(
        [work.filepaths[i] for i in work.rows], [NATIVE],
        reference_paths=[work.ref_paths[i] for i in work.rows] if work.ref_paths is not None else None,
        max_pixels=plan.max_pixels, postprocess=cropper, raw_jpeg=raw_jpeg,
    )
    return batch_loader(data, batch_size, num_workers, plan.device)


def score_patches(plan, jobs: List[Job], work: PatchWork, specs, loader, raw_jpeg, batch_size,
                  writer: ObjectValues, raise_first_failure) -> None:
    """Crops (where the workers did not) and scores the objects, writing as it goes."""
    for k, reason in work.pre_errors.items():
        for j, job in enumerate(jobs):
            if work.todo[k, j]:
                job.record(work.ids[k], None, reason)
    # on the device (or for unreadable images): the main process cuts the patches
    cropper = PatchCropper(work.crops, specs, plan.patch_margin, plan.min_patch_side)
    bar = Progress(plan.progress, len(work.rows))
    state = {"max_batch": batch_size}
    cadence = WriteCadence(plan.write_every)

    def score(batch, lane_jobs):
        if raw_jpeg:
            decode_jpegs(batch, [NATIVE], plan.device, plan.max_pixels)
        objects = batch_objects(batch, cropper)
        for j, job in enumerate(lane_jobs):
            score_batch(job, j, objects, work.ids, work.todo, plan.device, plan.amp, state)

    try:
        if not plan.skip_failures:
            raise_first_failure(jobs)
        with open_lanes(jobs, plan.device) as lanes:
            for batch in scored_batches(lanes, loader, score, jobs):
                bar.update(len(batch))
                cadence.add(len(batch), lambda: writer.flush(plan.dataset, jobs))
                if not plan.skip_failures:
                    raise_first_failure(jobs)
        writer.flush(plan.dataset, jobs)
    finally:
        bar.close()
