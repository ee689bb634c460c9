"""Run quality metrics over a FiftyOne view, fast and safely.

:func:`compute_quality` decodes every image once (in DataLoader workers),
scores it with one or several metrics, and writes the scores back in chunks
with ``set_values(..., key_field="id")``: an interrupted run keeps what it
computed and a re-run scores only the samples still missing a score.
Unreadable files are recorded per sample, never fatal.
"""

from __future__ import annotations

import contextlib
import datetime
import logging
import math
import os
import time
from dataclasses import dataclass, field as dc_field
from typing import Callable, Dict, List, Optional, Sequence, Union

import numpy as np
import torch

import fiftyone as fo

from .loading import DEFAULT_MAX_PIXELS, SampleImages, collate_items, decode_jpegs, to_float
from .locks import FieldLock
from .metrics import QualityMetric, create_metric
from .runs import (
    QualityRunConfig,
    QualityRunResults,
    error_field_for,
    list_quality_runs,
)

logger = logging.getLogger(__name__)

ProgressCallback = Callable[[float, str], None]


def default_field(metric: Union[str, QualityMetric]) -> str:
    """The default score field of a metric (or metric name): ``iqa_<name>``."""
    name = metric if isinstance(metric, str) else metric.name
    return "iqa_" + "".join(c if c.isalnum() else "_" for c in name)


def resolve_device(device: Union[str, torch.device, None] = "auto") -> torch.device:
    """``"auto"`` picks CUDA when present, else the CPU."""
    if device in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("device='cuda' was asked for but no CUDA device is available")
    return device


@dataclass
class _Job:
    """One metric of a call and where its scores go."""

    metric: QualityMetric
    field: str
    spec_index: int
    in_worker: bool
    todo: np.ndarray  # bool per sample of the view
    results: Optional[QualityRunResults] = None
    scores: Dict[str, Optional[float]] = dc_field(default_factory=dict)
    errors: Dict[str, Optional[str]] = dc_field(default_factory=dict)
    failures: Dict[str, str] = dc_field(default_factory=dict)
    num_scored: int = 0
    has_error_field: bool = False

    @property
    def error_field(self):
        return error_field_for(self.field)


class _WorkerScorer:
    """Scores per-image CPU metrics inside a loader worker (picklable)."""

    def __init__(self, jobs: List[_Job], todo_rows: np.ndarray, main_specs: set):
        self.metrics = [(j, job.metric, job.spec_index) for j, job in enumerate(jobs) if job.in_worker]
        self.todo_rows = todo_rows  # (n_items, n_jobs) bool
        self.main_specs = main_specs

    def __call__(self, item: dict) -> dict:
        row = self.todo_rows[item["index"]]
        scores, errors = {}, {}
        for j, metric, k in self.metrics:
            if not row[j]:
                continue
            if metric.needs_reference and "references" not in item:
                continue  # the main process records the reference failure
            try:
                img = to_float(item["images"][k].unsqueeze(0))
                ref = to_float(item["references"][k].unsqueeze(0)) if metric.needs_reference else None
                scores[j] = float(_call_metric(metric, img, ref, [item.get("label")])[0])
            except Exception as e:  # isolate the sample, keep the run going
                errors[j] = _metric_error(e)
        item["scores"], item["metric_errors"] = scores, errors
        for k in range(len(item["images"])):
            if k not in self.main_specs:  # do not ship pixels nobody needs back
                item["images"][k] = None
                if "references" in item:
                    item["references"][k] = None
        return item


def _call_metric(metric, images, refs, labels):
    if getattr(metric, "uses_sample_labels", False):
        return metric.score(images, refs, labels=labels)
    return metric.score(images, refs)


def _prepare_labels(dataset, metrics, label_field):
    """Gives task-guided metrics their classes; returns the label path to read."""
    needy = [m for m in metrics if m.needs_labels]
    if not needy:
        return None
    if label_field is None:
        missing = [m.name for m in needy if getattr(m, "classes", None) is None
                   or getattr(m, "uses_sample_labels", False)]
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
    else:
        raise ValueError(f"label_field '{label_field}' must be a Classification or string field, "
                         f"not {type(f).__name__}")
    classes = dataset.classes.get(label_field) or dataset.default_classes or dataset.distinct(path)
    if not classes:
        raise ValueError(f"label_field '{label_field}' holds no labels")
    for m in needy:  # classes the caller gave win over the label field's
        if getattr(m, "classes", None) is None or getattr(m, "default_classes", False):
            m.set_classes(classes)
            if hasattr(m, "default_classes"):
                m.default_classes = False
    return path


def _metric_error(e: BaseException) -> str:
    msg = str(e).strip().splitlines()[0] if str(e).strip() else ""
    return f"metric error: {type(e).__name__}" + (f": {msg[:200]}" if msg else "")


def _is_oom(e: BaseException) -> bool:
    return isinstance(e, torch.cuda.OutOfMemoryError) or "out of memory" in str(e).lower()


def compute_quality(
    samples,
    metric: Union[str, QualityMetric, Sequence[Union[str, QualityMetric]]] = "piqe",
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
    shards: Optional[int] = None,
    decode: str = "auto",
    _shard=None,
):
    """Scores the images of ``samples`` with one or several quality metrics.

    Args:
        samples: a FiftyOne dataset or view of images
        metric ("piqe"): a registry name or :class:`QualityMetric`, or a list
            of them; each image is decoded once for all of them
        field (None): the field (or list of fields) to store scores in;
            defaults to ``iqa_<metric>``. The field name is also the run key
        device ("auto"): ``"auto"``, ``"cpu"``, ``"cuda"``, ``"cuda:1"``...
        batch_size (None): images per batch (default for fixed-size inputs:
            64 on GPU, 4 on CPU; 8 otherwise); halved on out-of-memory
        num_workers (None): decoding processes (default: up to 4, one per
            core); 0 decodes in the calling process
        overwrite (False): rescore samples that already have a score, and
            allow writing to a field this package did not create
        skip_failures (True): record unreadable images and go on; if False,
            the first failure raises (after the scores so far are saved)
        progress (None): True/False for a progress bar (None: FiftyOne's
            default), or a callable ``f(fraction, label)``
        reference_field (None): filepath field of the reference images for
            full-reference metrics (``psnr``, ``ssim``...)
        label_field (None): a ``Classification`` (or string) field whose
            classes task-guided metrics (``aligned_task``, ``zsclip``) use
            when not given their classes; metrics that rate each image against
            its own label read it per sample
        metric_options (None): options for :func:`create_metric` when
            ``metric`` is a single name
        amp (True): use CUDA autocast for metrics that support it
        max_pixels: refuse images larger than this (decompression bombs)
        write_every (500): samples per database write (and at least every
            10 s); a killed process loses at most the scores since the last write
        shards (None): split the view into this many disjoint id ranges and
            queue one delegated operation per range for ``fiftyone delegated
            launch`` workers (metrics by name only); returns a
            :class:`~fiftyone_dnniqa.sharding.ShardedRun` instead of results
        decode ("auto"): where images are decoded. ``"workers"``: the loader
            workers decode every file with PIL; ``"device"``: the workers read
            plain JPEGs' bytes and the main process decodes them in batches on
            the scoring device (nvJPEG on CUDA) and resizes them there, other
            files as with ``"workers"``; ``"auto"``: ``"device"`` on CUDA, and on
            CPUs of at most 2 cores unless a per-image metric runs in the workers

    Returns:
        a :class:`QualityRunResults` for a single metric, or a dict mapping
        each field to its results when a list of metrics was given
    """
    started = time.perf_counter()
    started_at = datetime.datetime.now(datetime.timezone.utc)
    many = isinstance(metric, (list, tuple))
    metrics = list(metric) if many else [metric]
    if not metrics:
        raise ValueError("pass at least one metric")
    if decode not in ("auto", "workers", "device"):
        raise ValueError(f"decode must be 'auto', 'workers' or 'device', not {decode!r}")
    if metric_options and (many or not isinstance(metric, str)):
        raise ValueError("metric_options applies to a single metric given by name")
    queue = shards is not None and shards > 1 and _shard is None
    if queue and not all(isinstance(m, str) for m in metrics):
        raise ValueError("shards=N queues operations by metric name: pass registry names")
    dev = None if queue else resolve_device(device)
    names = list(metrics)
    metrics = [create_metric(m, **(metric_options or {})) for m in metrics]
    if dev is not None:
        for m in metrics:
            m.to(dev)

    fields = _resolve_fields(metrics, field, many)
    dataset = _check_collection(samples)
    if any(m.needs_reference for m in metrics):
        if not reference_field:
            need = [m.name for m in metrics if m.needs_reference]
            raise ValueError(f"{', '.join(need)} need(s) reference_field, a filepath field of reference images")
        if not dataset.has_sample_field(reference_field):
            raise ValueError(f"reference_field '{reference_field}' is not a field of dataset '{dataset.name}'")
    label_path = _prepare_labels(dataset, metrics, label_field)
    for f, m in zip(fields, metrics):
        _check_field(dataset, f, m, overwrite)
    if queue:
        from .sharding import queue_shards

        return queue_shards(samples, dataset, names, metrics, fields, shards, dict(
            device=str(device), batch_size=batch_size, num_workers=num_workers, overwrite=overwrite,
            reference_field=reference_field, label_field=label_field, metric_options=metric_options,
            write_every=write_every, decode=decode,
        ))
    if _shard is not None:
        samples = _shard.view(samples)

    # Which samples need which metric
    ids, filepaths = samples.values(["id", "filepath"])
    n = len(ids)
    todo = np.ones((n, len(metrics)), dtype=bool)
    if not overwrite:
        for j, f in enumerate(fields):
            if dataset.has_sample_field(f):
                todo[:, j] = np.array([v is None for v in samples.values(f)], dtype=bool)
    not_images = {}
    if samples.media_type == "mixed":
        for i, kind in enumerate(samples.values("_media_type", _allow_missing=True)):
            if kind != "image":
                not_images[i] = f"{kind} sample: quality metrics score images"
    rows = np.array([i for i in np.flatnonzero(todo.any(axis=1)) if i not in not_images], dtype=int)
    ref_paths = samples.values(reference_field) if reference_field else None
    labels = None
    if label_path and any(getattr(m, "uses_sample_labels", False) for m in metrics):
        labels = samples.values(label_path)

    if num_workers is None:
        num_workers = min(4, os.cpu_count() or 1)
    # On CPU, per-image metrics run inside the loader workers, one image per core. When
    # one does, all do: a batched metric in the main process would fight the workers
    # for the same cores.
    score_in_workers = (dev.type == "cpu" and num_workers > 0 and decode != "device"
                        and any(m.cpu_per_image for m in metrics))
    # On CUDA the workers only read JPEG bytes and nvJPEG decodes whole batches. On a CPU of
    # 2 cores, decoding in the workers steals the cores of the metric's threads: decoding in
    # the main process between batches measured 1.13x faster (benchmarks/throughput.py)
    raw_jpeg = decode == "device" or (decode == "auto" and not score_in_workers and (
        dev.type == "cuda" or (os.cpu_count() or 1) <= 2))
    specs = []
    jobs = []
    for j, (m, f) in enumerate(zip(metrics, fields)):
        if m.input_spec not in specs:
            specs.append(m.input_spec)
        jobs.append(_Job(
            metric=m, field=f, spec_index=specs.index(m.input_spec),
            in_worker=score_in_workers,
            todo=todo[:, j],
        ))
    if batch_size is None:
        # CPU: small batches stay in cache (Lite0 scores about 2x faster at 4 than at 32);
        # GPU: large batches fill the device
        batch_size = (64 if dev.type == "cuda" else 4) if all(sp.fixed_size for sp in specs) else 8
    batch_size = max(1, int(batch_size))

    with contextlib.ExitStack() as locks:
        for job in jobs:  # one writer per field (per shard of a sharded run)
            suffix = f"@{_shard.index}" if _shard is not None else ""
            locks.enter_context(FieldLock(dataset, job.field + suffix))
        # Run records first, so a killed run still shows up as not finished
        for job in jobs:
            job.results = _register_run(samples, dataset, job, dev, batch_size, num_workers,
                                        reference_field, n, started_at, _shard, label_field)
            if not dataset.has_sample_field(job.field):
                dataset.add_sample_field(job.field, fo.FloatField)
            job.has_error_field = dataset.has_sample_field(job.error_field)
        _score_rows(dataset, jobs, ids, filepaths, ref_paths, labels, rows, todo, not_images, specs, dev,
                    amp, batch_size, num_workers, max_pixels, write_every, skip_failures,
                    progress, started, _shard, raw_jpeg)

    out = {job.field: job.results for job in jobs}
    return out if many else out[fields[0]]


def _score_rows(dataset, jobs, ids, filepaths, ref_paths, labels, rows, todo, not_images, specs, dev,
                amp, batch_size, num_workers, max_pixels, write_every, skip_failures,
                progress, started, shard=None, raw_jpeg=False):
    """Decodes and scores ``rows`` of the view, writing scores as it goes."""
    for i, reason in not_images.items():
        for j, job in enumerate(jobs):
            if todo[i, j]:
                _record(job, ids[i], None, reason)

    sub_todo = todo[rows]
    main_specs = {job.spec_index for job in jobs if not job.in_worker}
    postprocess = _WorkerScorer(jobs, sub_todo, main_specs) if any(j.in_worker for j in jobs) else None
    data = SampleImages(
        [filepaths[i] for i in rows], specs,
        reference_paths=[ref_paths[i] for i in rows] if ref_paths is not None else None,
        max_pixels=max_pixels, postprocess=postprocess,
        labels=[labels[i] for i in rows] if labels is not None else None,
        raw_jpeg=raw_jpeg,
    )
    # No more workers than batches: a worker started for nothing is shut down at once, and one
    # that exits while the loader stops makes torch's SIGCHLD handler fail the call
    num_workers = min(num_workers, -(-len(rows) // batch_size))
    loader = torch.utils.data.DataLoader(
        data, batch_size=batch_size, shuffle=False, num_workers=num_workers,
        collate_fn=collate_items, pin_memory=dev.type == "cuda",  # page-locked: asynchronous copies
        persistent_workers=False, prefetch_factor=4 if num_workers else None,
    )

    bar = _Progress(progress, len(rows))
    sub_ids = [ids[i] for i in rows]
    state = {"max_batch": batch_size}
    pending = 0
    last_write = time.perf_counter()
    status, error = "completed", None
    try:
        for batch in loader:
            if raw_jpeg:
                decode_jpegs(batch, specs, dev, max_pixels)
            for job_index, job in enumerate(jobs):
                _score_batch(job, job_index, batch, sub_ids, sub_todo, dev, amp, state)
            pending += len(batch)
            bar.update(len(batch))
            if pending >= write_every or time.perf_counter() - last_write > 10:
                _flush(dataset, jobs)
                pending, last_write = 0, time.perf_counter()
            if not skip_failures:
                for job in jobs:
                    if job.failures:
                        sid, reason = next(iter(job.failures.items()))
                        raise RuntimeError(f"could not score sample {sid} ({job.field}): {reason}")
    except KeyboardInterrupt:
        status, error = "interrupted", "KeyboardInterrupt"
        raise
    except BaseException as e:
        status, error = "failed", f"{type(e).__name__}: {e}"
        raise
    finally:
        _flush(dataset, jobs)
        bar.close()
        elapsed = time.perf_counter() - started
        for job in jobs:
            _finish_run(dataset, job, status, error, elapsed, shard)


def _resolve_fields(metrics, field, many) -> List[str]:
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
    return fields


def _check_collection(samples):
    if not hasattr(samples, "_root_dataset"):
        raise TypeError(f"expected a FiftyOne dataset or view, got {type(samples).__name__}")
    media = samples.media_type
    if media == "group":
        raise ValueError("this is a grouped collection: pick its images with "
                         "select_group_slices(media_type='image') or a single slice")
    if media == "video":
        raise ValueError("quality metrics score images; for video, score the frames of "
                         "to_frames(sample_frames=True)")
    if media not in ("image", "mixed"):
        raise ValueError(f"quality metrics score images; this collection's media type is '{media}'")
    return samples._root_dataset


def _check_field(dataset, field, metric, overwrite):
    runs = list_quality_runs(dataset)
    if field in runs:
        cfg = dataset.get_run_info(field).config
        if (cfg.metric, cfg.metric_options) != (metric.name, metric.describe()) and not overwrite:
            raise ValueError(
                f"field '{field}' holds scores of metric '{cfg.metric}' {cfg.metric_options or ''}, not "
                f"'{metric.name}' {metric.describe() or ''}; pass overwrite=True or choose another field"
            )
    elif field in dataset.list_runs():
        raise ValueError(f"'{field}' is the key of another kind of run on this dataset; choose another field")
    elif dataset.has_sample_field(field) and not overwrite:
        raise ValueError(
            f"field '{field}' already exists and was not written by compute_quality; "
            "pass overwrite=True to replace its values or choose another field"
        )
    if dataset.has_sample_field(field) and dataset.get_field(field).read_only:
        raise ValueError(f"field '{field}' is read-only")


def _register_run(samples, dataset, job, dev, batch_size, num_workers, reference_field, n, started_at,
                  shard=None, label_field=None):
    if shard is not None:  # the queuing call registered the run; record this shard's progress
        from .sharding import ShardStore

        ShardStore().update(dataset, job.field, shard.index, status="running", num_todo=int(job.todo.sum()),
                            device=str(dev), started_at=started_at.isoformat())
        config = dataset.get_run_info(job.field).config
        return QualityRunResults(samples, config, job.field, status="running", num_samples=n,
                                 num_todo=int(job.todo.sum()), device=str(dev),
                                 started_at=started_at.isoformat())
    m = job.metric
    config = QualityRunConfig(
        metric=m.name, field=job.field, metric_options=m.describe(),
        higher_is_better=m.higher_is_better,
        reference_field=reference_field if m.needs_reference else None,
        label_field=label_field if m.needs_labels else None,
        device=str(dev), batch_size=batch_size, num_workers=num_workers,
    )
    samples.register_run(job.field, config, overwrite=True, cleanup=False)
    results = QualityRunResults(
        samples, config, job.field, status="running", num_samples=n,
        num_todo=int(job.todo.sum()), device=str(dev), started_at=started_at.isoformat(),
    )
    dataset.save_run_results(job.field, results, overwrite=True, cache=False)
    return results


def _score_batch(job, job_index, batch, sub_ids, sub_todo, dev, amp, state):
    """Scores one loader batch for one metric, recording failures."""
    todo_items = []
    for item in batch:
        i = item["index"]
        if not sub_todo[i, job_index]:
            continue
        sid = sub_ids[i]
        if "error" in item:
            _record(job, sid, None, item["error"])
        elif job.metric.needs_reference and "references" not in item:
            _record(job, sid, None, item.get("ref_error", "no reference image"))
        elif job.in_worker:
            if job_index in item["scores"]:
                _record(job, sid, item["scores"][job_index], None)
            else:
                _record(job, sid, None, item["metric_errors"][job_index])
        else:
            todo_items.append(item)
    if not todo_items:
        return
    # Group equally sized images so native-resolution metrics still batch
    k = job.spec_index
    groups: Dict[tuple, list] = {}
    for item in todo_items:
        groups.setdefault(tuple(item["images"][k].shape), []).append(item)
    for items in groups.values():
        _score_group(job, items, sub_ids, dev, amp, state)


def _score_group(job, items, sub_ids, dev, amp, state):
    k = job.spec_index
    m = job.metric
    start = 0
    while start < len(items):
        chunk = items[start:start + state["max_batch"]]
        try:
            scores = _run_metric(m, chunk, k, dev, amp)
        except Exception as e:
            if _is_oom(e) and len(chunk) > 1:
                state["max_batch"] = max(1, len(chunk) // 2)
                if dev.type == "cuda":
                    torch.cuda.empty_cache()
                logger.warning("out of memory: batch size lowered to %d", state["max_batch"])
                continue
            if len(chunk) > 1:  # isolate the sample(s) that fail
                mid = len(chunk) // 2
                _score_group(job, chunk[:mid], sub_ids, dev, amp, dict(state, max_batch=mid))
                _score_group(job, chunk[mid:], sub_ids, dev, amp, dict(state, max_batch=len(chunk) - mid))
            else:
                _record(job, sub_ids[chunk[0]["index"]], None, _metric_error(e))
            start += len(chunk)
            continue
        for item, s in zip(chunk, scores.tolist()):
            _record(job, sub_ids[item["index"]], s, None)
        start += len(chunk)


def _run_metric(metric, chunk, k, dev, amp):
    images = to_float(torch.stack([it["images"][k] for it in chunk]).to(dev, non_blocking=True))
    refs = None
    if metric.needs_reference:
        refs = to_float(torch.stack([it["references"][k] for it in chunk]).to(dev, non_blocking=True))
    labels = [it.get("label") for it in chunk]
    if dev.type == "cuda" and amp and metric.supports_amp:
        with torch.autocast("cuda", dtype=torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16):
            out = _call_metric(metric, images, refs, labels)
    else:
        out = _call_metric(metric, images, refs, labels)
    out = out.reshape(-1).double().cpu()
    if out.numel() != len(chunk):
        raise RuntimeError(f"{metric.name} returned {out.numel()} scores for {len(chunk)} images")
    return out


def _record(job, sid, score, reason):
    if reason is None and score is not None and not math.isfinite(score):
        score, reason = None, f"metric returned {score}"
    if reason is None:
        job.scores[sid] = float(score)
        job.num_scored += 1
        if job.has_error_field:
            job.errors[sid] = None  # clear an earlier failure
    else:
        job.scores[sid] = None
        job.errors[sid] = reason
        job.failures[sid] = reason


def _flush(dataset, jobs):
    for job in jobs:
        if job.scores:
            dataset.set_values(job.field, job.scores, key_field="id")
            job.scores = {}
        if any(v is not None for v in job.errors.values()) or (job.errors and job.has_error_field):
            if not job.has_error_field:
                dataset.add_sample_field(job.error_field, fo.StringField)
                job.has_error_field = True
            dataset.set_values(job.error_field, job.errors, key_field="id")
        job.errors = {}


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
    try:
        r.num_with_scores = dataset.count(job.field)
        if shard is not None:
            from .sharding import ShardStore

            ShardStore().update(dataset, job.field, shard.index, status=status, error=error,
                                num_scored=r.num_scored, num_failed=r.num_failed,
                                failures=dict(list(job.failures.items())[:1000]),
                                elapsed_s=r.elapsed_s, finished_at=r.finished_at)
            return
        dataset.save_run_results(job.field, r, overwrite=True, cache=False)
    except Exception:  # never mask the run's own outcome
        logger.exception("could not save the run record of '%s'", job.field)


class _Progress:
    def __init__(self, progress, total):
        self.total = max(total, 1)
        self.done = 0
        self.callback = progress if callable(progress) else None
        self.last = 0.0
        self.bar = None
        if self.callback is None:
            show = fo.config.show_progress_bars if progress is None else bool(progress)
            if show and total:
                import fiftyone.core.utils as fou

                self.bar = fou.ProgressBar(total=total)
                self.bar.start()

    def update(self, k):
        self.done += k
        if self.bar is not None:
            self.bar.update(k)
        now = time.monotonic()
        # a callback may write to the database (delegated progress): at most once a second
        if self.callback is not None and (now - self.last >= 1.0 or self.done >= self.total):
            self.last = now
            self.callback(self.done / self.total, f"scored {self.done} of {self.total} images")

    def close(self):
        if self.bar is not None:
            self.bar.close()
