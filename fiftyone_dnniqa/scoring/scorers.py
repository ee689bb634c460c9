"""Scoring, the inner loop: one metric over the items of a loader batch.

A :class:`Job` is one metric of a call and where its scores go. Two scorers share one
contract, "record a score or a reason for every item the job still needs":
:class:`WorkerScorer` scores per-image CPU metrics inside the loader workers, and
:func:`score_batch` scores in the main process, grouping equally sized images, halving
the batch on out-of-memory and isolating a failing sample by bisection.

Most metrics give one float per image. A metric with ``outputs = "classifications"``
(``cause``) gives a row per image (``score`` returns (B, D)); its rows travel as lists of
floats, and the writer turns each into labels with the metric's ``labels(row)``.
"""

from __future__ import annotations

import contextlib
import logging
import math
from dataclasses import dataclass, field as dc_field
from typing import TYPE_CHECKING, Dict, List, Optional

import numpy as np
import torch

from ..core.images import to_float
from ..metrics import QualityMetric
from .names import error_field_for

if TYPE_CHECKING:  # the run record needs FiftyOne; the inner loop does not
    from .runs import QualityRunResults

logger = logging.getLogger(__name__)


@dataclass
class Job:
    """One metric of a call and where its scores go."""

    metric: QualityMetric
    field: str
    spec_index: int
    in_worker: bool
    todo: np.ndarray  # bool per sample of the view
    results: Optional["QualityRunResults"] = None
    scores: Dict[str, Optional[float]] = dc_field(default_factory=dict)
    errors: Dict[str, Optional[str]] = dc_field(default_factory=dict)
    failures: Dict[str, str] = dc_field(default_factory=dict)
    num_scored: int = 0
    has_error_field: bool = False
    fields_ready: bool = False  # the writer declared the fields of a structured metric

    @property
    def error_field(self):
        return error_field_for(self.field)

    def record(self, sid, score, reason) -> None:
        """Records sample ``sid``'s score, or the reason it has none."""
        if reason is None and score is not None and not all(map(math.isfinite, _as_list(score))):
            score, reason = None, f"metric returned {score}"
        if reason is None:
            self.scores[sid] = [float(v) for v in score] if structured(self.metric) else float(score)
            self.num_scored += 1
            if self.has_error_field:
                self.errors[sid] = None  # clear an earlier failure
        else:
            self.scores[sid] = None
            self.errors[sid] = reason
            self.failures[sid] = reason


def structured(metric) -> bool:
    """Whether ``metric`` gives a row of values per image rather than one float."""
    return getattr(metric, "outputs", "float") != "float"


def _as_list(score):
    return list(score) if isinstance(score, (list, tuple)) else [score]


def call_metric(metric, images, refs, labels):
    """``metric.score``, with the samples' labels for metrics that rate against them."""
    if metric.uses_sample_labels:
        return metric.score(images, refs, labels=labels)
    return metric.score(images, refs)


def metric_error(e: BaseException) -> str:
    """A failure reason for a metric's exception: its type and first line."""
    msg = str(e).strip().splitlines()[0] if str(e).strip() else ""
    return f"metric error: {type(e).__name__}" + (f": {msg[:200]}" if msg else "")


def is_oom(e: BaseException) -> bool:
    return isinstance(e, torch.cuda.OutOfMemoryError) or "out of memory" in str(e).lower()


class WorkerScorer:
    """Scores per-image CPU metrics inside a loader worker (picklable)."""

    def __init__(self, jobs: List[Job], todo_rows: np.ndarray, main_specs: set):
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
                out = call_metric(metric, img, ref, [item.get("label")])[0]
                scores[j] = out.tolist() if structured(metric) else float(out)
            except Exception as e:  # isolate the sample, keep the run going
                errors[j] = metric_error(e)
        item["scores"], item["metric_errors"] = scores, errors
        for k in range(len(item["images"])):
            if k not in self.main_specs:  # do not ship pixels nobody needs back
                item["images"][k] = None
                if "references" in item:
                    item["references"][k] = None
        return item


def score_batch(job: Job, job_index: int, batch, sub_ids, sub_todo, dev, amp, state) -> None:
    """Scores one loader batch for one metric, recording failures."""
    todo_items = []
    for item in batch:
        i = item["index"]
        if not sub_todo[i, job_index]:
            continue
        sid = sub_ids[i]
        if "error" in item:
            job.record(sid, None, item["error"])
        elif job.metric.needs_reference and "references" not in item:
            job.record(sid, None, item.get("ref_error", "no reference image"))
        elif job.in_worker:
            if job_index in item["scores"]:
                job.record(sid, item["scores"][job_index], None)
            else:
                job.record(sid, None, item["metric_errors"][job_index])
        else:
            todo_items.append(item)
    # Group equally sized images so native-resolution metrics still batch
    groups: Dict[tuple, list] = {}
    for item in todo_items:
        groups.setdefault(tuple(item["images"][job.spec_index].shape), []).append(item)
    for items in groups.values():
        _score_group(job, items, sub_ids, dev, amp, state)


def _score_group(job, items, sub_ids, dev, amp, state):
    start = 0
    while start < len(items):
        chunk = items[start:start + state["max_batch"]]
        try:
            scores = _run_metric(job.metric, chunk, job.spec_index, dev, amp)
        except Exception as e:
            if is_oom(e) and len(chunk) > 1:
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
                job.record(sub_ids[chunk[0]["index"]], None, metric_error(e))
            start += len(chunk)
            continue
        for item, s in zip(chunk, scores.tolist()):
            job.record(sub_ids[item["index"]], s, None)
        start += len(chunk)


def autocast(metric, dev, amp):
    """Mixed precision for ``metric`` on ``dev``: bf16 autocast (fp16 where the GPU lacks
    bf16) on CUDA when ``amp`` is on and the metric supports it, else full precision."""
    if dev.type == "cuda" and amp and metric.supports_amp:
        return torch.autocast("cuda", dtype=torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16)
    return contextlib.nullcontext()


def _run_metric(metric, chunk, k, dev, amp):
    images = to_float(torch.stack([it["images"][k] for it in chunk]).to(dev, non_blocking=True))
    refs = None
    if metric.needs_reference:
        refs = to_float(torch.stack([it["references"][k] for it in chunk]).to(dev, non_blocking=True))
    labels = [it.get("label") for it in chunk]
    with autocast(metric, dev, amp):
        out = call_metric(metric, images, refs, labels)
    if structured(metric):
        out = out.double().cpu()
        if out.ndim != 2 or out.shape[0] != len(chunk):
            raise RuntimeError(f"{metric.name} returned values of shape {tuple(out.shape)} for "
                               f"{len(chunk)} images (expected one row per image)")
        return out
    out = out.reshape(-1).double().cpu()
    if out.numel() != len(chunk):
        raise RuntimeError(f"{metric.name} returned {out.numel()} scores for {len(chunk)} images")
    return out
