"""Scoring, step two: run a :class:`~.plan.QualityPlan` over its view (or one shard of it).

Every image is decoded once (in DataLoader workers, or in batches on the device),
scored by every metric that still needs it, and the scores are written back in chunks
with ``set_values(..., key_field="id")``: an interrupted run keeps what it computed and
a re-run scores only the samples still missing a score. Unreadable files are recorded
per sample, never fatal. A plan on objects (``plan.patches``) runs the same way over the
objects' patches (:mod:`.patch_execute`): one decode per image, one score per object; a
plan on video (``plan.frame_step``) over the videos' sampled frames (:mod:`.video_execute`):
one decode per video, one score per sampled frame.
"""

from __future__ import annotations

import contextlib
import datetime
import logging
import os
import time
from dataclasses import dataclass
from typing import List, Optional

import numpy as np

from .field_checks import check_field_can_hold_scores
from .lanes import open_lanes, scored_batches
from .loading import SampleImages, batch_loader, decode_jpegs
from .locks import FieldLock
from .patch_execute import object_values, patch_loader, read_patch_work, score_patches
from .plan import QualityPlan
from .runs import QualityRunResults, build_run_config, failure_reason
from .scorers import Job, WorkerScorer, score_batch
from .shards import ShardSpec, ShardStore
from .video_execute import finish_video_shards, read_video_work, score_videos, video_loader, video_values
from .video_fields import frame_path
from .video_plan import check_video_fields
from .writer import Progress, WriteCadence, declare_fields, flush

logger = logging.getLogger(__name__)


@dataclass
class _Work:
    """What one execution reads: the view's samples and which of them each job needs."""

    ids: list
    filepaths: list
    ref_paths: Optional[list]
    labels: Optional[list]
    todo: np.ndarray  # (n, n_jobs) bool
    rows: np.ndarray  # the samples to load
    not_images: dict  # row -> reason


def execute_plan(plan: QualityPlan, shard: Optional[ShardSpec] = None):
    """Scores ``plan``'s view (or the ``shard`` of it) and returns the results: one
    :class:`~.runs.QualityRunResults`, or a dict by field when the plan has many metrics."""
    started = time.perf_counter()
    started_at = datetime.datetime.now(datetime.timezone.utc)
    samples = shard.view(plan.samples) if shard is not None else plan.samples
    if plan.frame_step is not None:
        work = read_video_work(plan, samples)
        writer = video_values(plan, work, shard=shard is not None)
    elif plan.patches is not None:
        work = read_patch_work(plan, samples)
        writer = object_values(plan, work)
    else:
        work, writer = _read_work(plan, samples), None
    cores = os.cpu_count() or 1
    num_workers = plan.num_workers if plan.num_workers is not None else min(4, cores)
    dev = plan.device
    # On CPU, per-image metrics run inside the loader workers, one image per core. When
    # one does, all do: a batched metric in the main process would fight the workers
    # for the same cores.
    in_workers = (dev.type == "cpu" and num_workers > 0 and plan.decode != "device"
                  and any(m.cpu_per_image for m in plan.metrics))
    # On CUDA the workers only read JPEG bytes and nvJPEG decodes whole batches. On a CPU of
    # 2 cores, decoding in the workers steals the cores of the metric's threads: decoding in
    # the main process between batches measured 1.13x faster (benchmarks/throughput.py)
    raw_jpeg = plan.frame_step is None and (plan.decode == "device" or (plan.decode == "auto" and not in_workers and (
        dev.type == "cuda" or cores <= 2)))
    specs = list(dict.fromkeys(m.input_spec for m in plan.metrics))
    jobs = [Job(metric=m, field=f, spec_index=specs.index(m.input_spec), in_worker=in_workers,
                todo=work.todo[:, j]) for j, (m, f) in enumerate(zip(plan.metrics, plan.fields))]
    batch_size = plan.batch_size
    if batch_size is None:
        # CPU: small batches stay in cache (Lite0 scores about 2x faster at 4 than at 32);
        # GPU: large batches fill the device
        batch_size = (64 if dev.type == "cuda" else 4) if all(sp.fixed_size for sp in specs) else 8
    batch_size = max(1, int(batch_size))

    with contextlib.ExitStack() as stack:
        for job in jobs:  # one writer per field (per shard of a sharded run)
            suffix = f"@{shard.index}" if shard is not None else ""
            stack.enter_context(FieldLock(plan.dataset, job.field + suffix))
        for job in jobs:  # the plan checked the fields; they may have changed since (a queued run)
            check_field_can_hold_scores(plan.dataset, job.field, plan.overwrite, job.metric)
            if plan.frame_step is not None:
                check_video_fields(plan.dataset, job.field, job.metric, plan.overwrite)
        # From here on, the runs this call registers end "completed", "interrupted" or "failed"
        outcome = stack.enter_context(_Outcome(plan.dataset, started, shard, writer))
        # Run records first, so a killed run still shows up as not finished ("running")
        for job in jobs:
            job.results = _register_run(plan, samples, job, batch_size, num_workers, len(work.ids),
                                        started_at, shard)
            outcome.jobs.append(job)
            if writer is not None:
                job.has_error_field = writer.declare(plan.dataset, len(outcome.jobs) - 1)
                continue
            declare_fields(plan.dataset, job)  # a float field, or labels and their extra fields
            job.has_error_field = plan.dataset.has_sample_field(job.error_field)
        if plan.frame_step is not None:
            loader = video_loader(plan, work, jobs, specs, batch_size, num_workers)
            score_videos(plan, jobs, work, loader, batch_size, writer, _raise_first_failure)
        elif writer is not None:
            loader = patch_loader(plan, work, jobs, specs, batch_size, num_workers, raw_jpeg)
            score_patches(plan, jobs, work, specs, loader, raw_jpeg, batch_size, writer, _raise_first_object_failure)
        else:
            loader = _loader(plan, work, jobs, specs, batch_size, num_workers, raw_jpeg)
            _score_rows(plan, jobs, work, specs, loader, raw_jpeg, batch_size)

    if shard is not None and plan.frame_step is not None:
        _end_video_shards(plan, shard, jobs)
    out = {job.field: job.results for job in jobs}
    return out if plan.many else out[plan.fields[0]]


def _end_video_shards(plan: QualityPlan, shard: ShardSpec, jobs: List[Job]) -> None:
    """After a shard of a run on video has completed: the run's end, if it was the last
    (:func:`~.video_execute.finish_video_shards`); should that fail, the shard is marked
    failed, so that re-running it finishes the run."""
    try:
        finish_video_shards(plan)
    except Exception as e:
        for job in jobs:
            ShardStore().update(plan.dataset, job.field, shard.index, status="failed",
                                error=f"could not end the run: {failure_reason(e)}")
        raise


def _read_work(plan: QualityPlan, samples) -> _Work:
    """Reads the view once: ids, paths, labels, and which samples each metric needs."""
    ids, filepaths = samples.values(["id", "filepath"])
    n = len(ids)
    todo = np.ones((n, len(plan.metrics)), dtype=bool)
    if not plan.overwrite:
        for j, f in enumerate(plan.fields):
            if plan.dataset.has_sample_field(f):
                todo[:, j] = [v is None for v in samples.values(f)]
    not_images = {}
    if samples.media_type == "mixed":
        for i, kind in enumerate(samples.values("_media_type", _allow_missing=True)):
            if kind != "image":
                not_images[i] = f"{kind} sample: quality metrics score images"
    rows = np.array([i for i in np.flatnonzero(todo.any(axis=1)) if i not in not_images], dtype=int)
    ref_paths = samples.values(plan.reference_field) if plan.reference_field else None
    labels = None
    if plan.label_path and any(m.uses_sample_labels for m in plan.metrics):
        labels = samples.values(plan.label_path)
    return _Work(ids, filepaths, ref_paths, labels, todo, rows, not_images)


def _register_run(plan, samples, job, batch_size, num_workers, n, started_at, shard=None):
    """The run record of ``job``'s field (a shard records its progress beside the run's)."""
    dataset, dev = plan.dataset, plan.device
    num_todo = int(job.todo.sum())
    if shard is not None:  # the queuing call registered the run; record this shard's progress
        ShardStore().update(dataset, job.field, shard.index, status="running", num_todo=num_todo,
                            device=str(dev), started_at=started_at.isoformat())
        config = dataset.get_run_info(job.field).config
    else:
        patches = plan.patch_settings(plan.fields.index(job.field))
        extra = dict(patch_margin=plan.patch_margin, min_patch_side=plan.min_patch_side) if patches else {}
        if plan.frame_step is not None:  # a run on video: its sampling and its quality level
            extra = dict(frame_step=plan.frame_step, low_level=plan.low_level)
        config = build_run_config(job.metric, job.field, plan.reference_field, plan.label_field,
                                  overwrite=plan.overwrite, patches=patches, device=str(dev),
                                  batch_size=batch_size, num_workers=num_workers, **extra)
        samples.register_run(job.field, config, overwrite=True, cleanup=False)
    # status: "running", QualityRunResults' default
    results = QualityRunResults(samples, config, job.field, num_samples=n, num_todo=num_todo,
                                device=str(dev), started_at=started_at.isoformat())
    if shard is None:
        dataset.save_run_results(job.field, results, overwrite=True, cache=False)
    return results


def _loader(plan, work, jobs, specs, batch_size, num_workers, raw_jpeg):
    """The DataLoader over the rows to score, with per-image metrics run in its workers."""
    rows = work.rows
    sub_todo = work.todo[rows]
    main_specs = {job.spec_index for job in jobs if not job.in_worker}
    postprocess = WorkerScorer(jobs, sub_todo, main_specs) if any(j.in_worker for j in jobs) else None
    data = SampleImages(
        [work.filepaths[i] for i in rows], specs,
        reference_paths=[work.ref_paths[i] for i in rows] if work.ref_paths is not None else None,
        max_pixels=plan.max_pixels, postprocess=postprocess,
        labels=[work.labels[i] for i in rows] if work.labels is not None else None,
        raw_jpeg=raw_jpeg,
    )
    return batch_loader(data, batch_size, num_workers, plan.device)


def _score_rows(plan, jobs: List[Job], work: _Work, specs, loader, raw_jpeg, batch_size):
    """Decodes and scores the rows of the view, writing scores as it goes (the caller's
    :class:`_Outcome` ends the runs, and saves what a failed call had not written yet).
    On a CPU, several batches are scored at once in lanes (:mod:`.lanes`)."""
    for i, reason in work.not_images.items():
        for j, job in enumerate(jobs):
            if work.todo[i, j]:
                job.record(work.ids[i], None, reason)
    sub_todo = work.todo[work.rows]
    sub_ids = [work.ids[i] for i in work.rows]
    bar = Progress(plan.progress, len(work.rows))
    state = {"max_batch": batch_size}
    cadence = WriteCadence(plan.write_every)

    def score(batch, lane_jobs):
        if raw_jpeg:
            decode_jpegs(batch, specs, plan.device, plan.max_pixels)
        for job_index, job in enumerate(lane_jobs):
            score_batch(job, job_index, batch, sub_ids, sub_todo, plan.device, plan.amp, state)

    try:
        if not plan.skip_failures:  # a non-image sample of a mixed view, even with no batch to load
            _raise_first_failure(jobs)
        with open_lanes(jobs, plan.device) as lanes:
            for batch in scored_batches(lanes, loader, score, jobs):
                bar.update(len(batch))
                cadence.add(len(batch), lambda: flush(plan.dataset, jobs))
                if not plan.skip_failures:
                    _raise_first_failure(jobs)
        flush(plan.dataset, jobs)
    finally:
        bar.close()


class _Outcome:
    """Ends the runs a call registered (``jobs``), however the call ends: ``completed``;
    ``interrupted`` by KeyboardInterrupt; or ``failed``, with the exception's type and
    text, for any other exception, which then propagates. On an exception, the scores not
    yet written are saved first where they can be. A killed process ends nothing: its runs
    stay ``running``."""

    def __init__(self, dataset, started, shard=None, writer=None):
        self.dataset, self.started, self.shard = dataset, started, shard
        self.writer = writer  # a run on objects writes through its ObjectValues
        self.jobs: List[Job] = []

    def __enter__(self):
        return self

    def __exit__(self, kind, exc, tb):
        if kind is None:
            status, error = "completed", None
        elif issubclass(kind, KeyboardInterrupt):
            status, error = "interrupted", "KeyboardInterrupt"
        else:
            status, error = "failed", failure_reason(exc)
        if kind is not None:
            for job in self.jobs:  # keep what was computed, if the database takes it
                try:
                    if self.writer is not None:
                        self.writer.flush(self.dataset, self.jobs)
                        break
                    flush(self.dataset, [job])
                except Exception:
                    logger.exception("could not save the last scores of '%s'", job.field)
        elapsed = time.perf_counter() - self.started
        for job in self.jobs:
            _finish_run(self.dataset, job, status, error, elapsed, self.shard)
        return False


def _raise_first_failure(jobs, what="sample"):
    for job in jobs:
        if job.failures:
            sid, reason = next(iter(job.failures.items()))
            raise RuntimeError(f"could not score {what} {sid} ({job.field}): {reason}")


def _raise_first_object_failure(jobs):
    _raise_first_failure(jobs, "object")


def _finish_run(dataset, job, status, error, elapsed, shard=None):
    r = job.results
    r.status = status
    r.error = error
    r.num_scored = job.num_scored
    r.num_failed = len(job.failures)
    r.failures = dict(list(job.failures.items())[:10000])
    r.elapsed_s = round(elapsed, 3)
    done = r.num_scored + r.num_failed
    r.images_per_s = round(done / elapsed, 2) if elapsed > 0 else 0.0
    r.finished_at = datetime.datetime.now(datetime.timezone.utc).isoformat()
    video = getattr(getattr(r, "config", None), "frame_step", None) is not None
    if video:  # a run on video counts frames (its samples and todo count videos)
        r.num_frames_scored, r.num_frames_failed = r.num_scored, r.num_failed
    try:
        try:
            r.num_with_scores = dataset.count(frame_path(job.field) if video else job.field)
        except ValueError:  # the run failed before its field was created
            r.num_with_scores = 0
        if shard is not None:
            extra = {k: getattr(r, k, None) for k in ("num_videos_done", "num_videos_failed")} if video else {}
            if video:
                extra["video_failures"] = dict(list(getattr(r, "video_failures", {}).items())[:1000])
            ShardStore().update(dataset, job.field, shard.index, status=status, error=error,
                                num_scored=r.num_scored, num_failed=r.num_failed,
                                failures=dict(list(job.failures.items())[:1000]),
                                elapsed_s=r.elapsed_s, finished_at=r.finished_at, **extra)
            return
        dataset.save_run_results(job.field, r, overwrite=True, cache=False)
    except Exception:  # never mask the run's own outcome
        logger.exception("could not save the run record of '%s'", job.field)
