"""Scoring videos, the engine's part: what each metric still needs, the loader of sampled
frames, and the loop that scores them (:func:`~.execute.execute_plan` runs it for a plan
with ``frame_step``).

Each video is decoded once, in the loader workers, for all the metrics
(:class:`~.video_loading.VideoFrames`); the ordinary scorers score its frames as items
keyed ``"<sample id>:<frame number>"``, batched across videos, and
:class:`~.video_writer.VideoValues` writes them in the layout of :mod:`.video_fields`.
Resumable per video: a video whose summaries a run with the same ``frame_step`` wrote,
with no frame or video failure, is not decoded again; any other is, and only its sampled
frames without a score are converted and scored. Unreadable, truncated or empty videos
and frames failing mid-stream are recorded with their reason, never fatal.

Sharded (``shards=N``): a shard is a range of video ids (:func:`~.shards.shard_specs`), so
no video's frames are split; :func:`prepare_video_shards` readies the fields before the
shards are queued, each shard resumes and summarises its own videos, and the last shard to
end writes what depends on the whole view (:func:`finish_video_shards`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List, Optional

import numpy as np

from .lanes import open_lanes, scored_batches
from .loading import batch_loader
from .plan import QualityPlan
from .runs import list_quality_runs
from .scorers import Job, WorkerScorer, score_batch, structured
from .shards import ShardStore, merged_status
from .video_fields import frame_path, sampled, summary_field, video_error_field
from .video_loading import VideoFrames, frame_batches
from .video_writer import VideoValues, declare_video_fields, write_low_shares
from .writer import Progress, WriteCadence


@dataclass
class VideoWork:
    """What one run on video reads: the view's videos, and what each job needs of them."""

    ids: list
    filepaths: list
    labels: Optional[list]
    todo: np.ndarray  # (n_videos, n_jobs) bool: the job revisits the video
    rows: np.ndarray  # the videos to decode
    done: list  # [video][job] frozenset of the sampled frame numbers holding a score
    values: list  # [job][video] {frame_number: score (True for a structured metric)}
    fill_metadata: Dict[int, str]  # row -> filepath, where sample.metadata is missing


def _same_step(dataset, field: str, frame_step: int) -> bool:
    """Whether the record of ``field`` is of a run on video with this frame step."""
    if field not in list_quality_runs(dataset):
        return False
    return getattr(dataset.get_run_info(field).config, "frame_step", None) == frame_step


def _held(samples, field: str, frame_step: int, is_structured: bool, n: int) -> list:
    """Per video, ``{frame_number: score}`` of its sampled frames holding one."""
    held = [{} for _ in range(n)]
    if not samples._root_dataset.has_frame_field(field):
        return held
    numbers, scores = samples.values(["frames.frame_number", frame_path(field)])
    for v, (fns, values) in enumerate(zip(numbers, scores)):
        for fn, s in zip(fns or [], values or []):
            if s is not None and sampled(fn, frame_step):
                held[v][fn] = True if is_structured else s
    return held


def read_video_work(plan: QualityPlan, samples) -> VideoWork:
    """Reads the view once: ids, paths, metadata, labels, the frames already scored and
    which videos each job revisits."""
    ids, filepaths, metadata = samples.values(["id", "filepath", "metadata"])
    n, dataset, step = len(ids), plan.dataset, plan.frame_step
    todo = np.ones((n, len(plan.metrics)), dtype=bool)
    values = []
    for j, (f, m) in enumerate(zip(plan.fields, plan.metrics)):
        if plan.overwrite:
            values.append([{} for _ in range(n)])
            continue
        values.append(_held(samples, f, step, structured(m), n))
        if _same_step(dataset, f, step) and dataset.has_sample_field(summary_field(f, "frames")):
            scored, failed, reasons = samples.values(
                [summary_field(f, "frames"), summary_field(f, "failed"), video_error_field(f)])
            todo[:, j] = [s is None or bool(x) or r is not None for s, x, r in zip(scored, failed, reasons)]
    done = [[frozenset(values[j][v]) for j in range(len(plan.metrics))] for v in range(n)]
    rows = np.flatnonzero(todo.any(axis=1))
    labels = None
    if plan.label_path and any(m.uses_sample_labels for m in plan.metrics):
        labels = samples.values(plan.label_path)
    fill = {int(v): filepaths[v] for v in rows if metadata[v] is None}
    return VideoWork(list(ids), filepaths, labels, todo, rows, done, values, fill)


def video_values(plan: QualityPlan, work: VideoWork, shard: bool = False) -> VideoValues:
    """The writer's state for ``work`` (``shard``: one shard of a sharded run)."""
    return VideoValues(work.ids, plan.fields, plan.metrics, work.values, plan.frame_step, plan.low_level,
                       work.fill_metadata, shard=shard)


def prepare_video_shards(plan: QualityPlan) -> None:
    """Before a sharded run on video is registered and queued: its fields, declared once for
    all shards; and where the videos' summaries are not of a run with this frame step (the
    record about to be replaced says so), they are marked unfinished, so every shard
    revisits its videos as one call would (:func:`read_video_work`)."""
    for f, m in zip(plan.fields, plan.metrics):
        stale = not _same_step(plan.dataset, f, plan.frame_step)
        if stale and plan.dataset.has_sample_field(summary_field(f, "frames")):
            plan.samples.set_values(summary_field(f, "frames"), [None] * len(plan.samples))
        declare_video_fields(plan.dataset, f, m)


def finish_video_shards(plan: QualityPlan) -> None:
    """Ends a sharded run on video once all its shards have completed (each shard calls it
    after recording its own end; shards ending together write the same values): each
    video's low share against the run's level, computed over the sampled frames of the whole
    view as one call computes it, and the level in the run record."""
    ids = None
    for f, m in zip(plan.fields, plan.metrics):
        if structured(m) or merged_status(ShardStore().get(plan.dataset, f)) != "completed":
            continue
        ids = ids if ids is not None else plan.samples.values("id")
        held = _held(plan.samples, f, plan.frame_step, False, len(ids))
        level = write_low_shares(plan.dataset, ids, f, m, held, plan.low_level)
        results = plan.dataset.load_run_results(f, cache=False)
        results.low_level = level
        plan.dataset.save_run_results(f, results, overwrite=True, cache=False)


def video_loader(plan: QualityPlan, work: VideoWork, jobs: List[Job], specs, batch_size: int, num_workers: int):
    """The DataLoader over the videos to decode; per-image CPU metrics score in its workers."""
    main_specs = {job.spec_index for job in jobs if not job.in_worker}
    scorer = None
    if any(j.in_worker for j in jobs):
        scorer = WorkerScorer(jobs, np.zeros((1, len(jobs)), dtype=bool), main_specs)
    data = VideoFrames(work.filepaths, work.todo, work.done, plan.frame_step, specs, labels=work.labels,
                       postprocess=scorer, max_pixels=plan.max_pixels, rows=work.rows)
    return batch_loader(data, batch_size, num_workers, plan.device)


def score_videos(plan: QualityPlan, jobs: List[Job], work: VideoWork, loader, batch_size: int,
                 writer: VideoValues, raise_first_failure) -> None:
    """Scores the sampled frames the loader yields, writing as it goes; at the end, every
    video's low share against the run's level."""
    bar = Progress(plan.progress, len(work.rows), unit="videos")
    state = {"max_batch": batch_size}
    cadence = WriteCadence(plan.write_every)

    def score(prepared, lane_jobs):
        frames, keys, todo, _ = prepared
        for j, job in enumerate(lane_jobs):
            score_batch(job, j, frames, keys, todo, plan.device, plan.amp, state)

    try:
        prepared = (frame_batches(batch, work.ids) for batch in loader)
        with open_lanes(jobs, plan.device) as lanes:
            for frames, _, _, ends in scored_batches(lanes, prepared, score, jobs):
                _after_batch(plan, jobs, writer, bar, cadence, frames, ends, raise_first_failure)
        writer.flush(plan.dataset, jobs)
        writer.finish(plan.dataset, jobs)
    finally:
        writer.record_outcome(jobs)
        bar.close()


def _after_batch(plan, jobs, writer, bar, cadence, frames, ends, raise_first_failure) -> None:
    """Once a batch's scores are recorded: its finished videos, progress, write-back, and
    the first failure raised unless failures are skipped."""
    for end in ends:
        writer.end_video(end)
    bar.update(len(ends))
    cadence.add(len(frames), lambda: writer.flush(plan.dataset, jobs))
    if not plan.skip_failures:
        raise_first_failure(jobs)
        if writer.video_errors:
            sid, reason = next(iter(writer.video_errors.items()))
            raise RuntimeError(f"could not read video {sid}: {reason}")
