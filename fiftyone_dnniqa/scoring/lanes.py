"""CPU lanes: several loader batches scored at once, each lane with its own copy of the
metrics on its own thread, instead of one batch at a time across torch's intra-op threads.

Torch's intra-op threads meet at the end of every parallel region, so one core taken by
another program (the browser drawing the App, a test suite, even a job at ``nice 19``)
stalls every operator on its slowest thread. Lanes share nothing while they score: a busy
core slows one lane, not all. ``benchmarks/lanes.py`` (``aligned``, 120 real photos, 2
cores): idle, 50.4 img/s in lanes against 40.8 in one lane; beside one busy process, 33.5
against 6.1; beside one at ``nice 19``, 43.5 against 35.8.

A lane records into a :class:`LaneJob` and hands the records over when its batch is done;
the calling thread replays them into the real :class:`~.scorers.Job` in the loader's order,
so writing, progress and failure handling stay single-threaded.
"""

from __future__ import annotations

import collections
import contextlib
import copy
import logging
import queue
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field as dc_field
from typing import Callable, Iterable, Iterator, List, Optional, Sequence, Tuple

import torch

from .scorers import Job

__all__ = ["LaneJob", "Lanes", "lane_split", "open_lanes", "scored_batches", "weight_bytes"]

logger = logging.getLogger(__name__)

#: at most this many lanes: each holds a copy of every metric the main process runs
MAX_LANES = 4
#: the copies of every lane but the first together hold at most this many bytes of weights
COPY_BUDGET_BYTES = 2 * 2**30


def lane_split(threads: int, max_lanes: int = MAX_LANES) -> Tuple[int, int]:
    """``(lanes, threads per lane)`` for a budget of ``threads`` intra-op threads: one
    thread per lane up to ``max_lanes`` lanes, the rest shared out as threads."""
    threads = max(1, int(threads))
    lanes = max(1, min(threads, max_lanes))
    return lanes, max(1, threads // lanes)


@dataclass
class LaneJob:
    """A lane's face of a :class:`~.scorers.Job`: the lane's own copy of the metric, and
    the records of the batch it is scoring."""

    job: Job
    metric: object
    records: List[tuple] = dc_field(default_factory=list)

    @property
    def spec_index(self):
        return self.job.spec_index

    @property
    def in_worker(self):
        return self.job.in_worker

    def record(self, sid, score, reason) -> None:
        self.records.append((sid, score, reason))

    def take(self) -> List[tuple]:
        """This batch's records, handed over (the lane is free again)."""
        records, self.records = self.records, []
        return records


class Lanes:
    """``n`` lanes over ``jobs``: lane 0 uses the jobs' own metrics, the others deep copies."""

    def __init__(self, jobs: Sequence[Job], n: int, threads_per_lane: int):
        self.jobs = list(jobs)
        self.n, self.threads_per_lane = n, threads_per_lane
        metrics = [[job.metric for job in self.jobs]]
        metrics += [[job.metric if job.in_worker else copy.deepcopy(job.metric) for job in self.jobs]
                    for _ in range(n - 1)]
        self._free: "queue.SimpleQueue[List[LaneJob]]" = queue.SimpleQueue()
        for lane_metrics in metrics:
            self._free.put([LaneJob(job, m) for job, m in zip(self.jobs, lane_metrics)])
        self._threads_before: Optional[int] = None
        self._pool: Optional[ThreadPoolExecutor] = None

    def __enter__(self) -> "Lanes":
        self._threads_before = torch.get_num_threads()
        torch.set_num_threads(self.threads_per_lane)  # new threads take this count too
        self._pool = ThreadPoolExecutor(self.n, thread_name_prefix="dnniqa-lane")
        return self

    def __exit__(self, *exc) -> None:
        try:
            self._pool.shutdown(wait=True, cancel_futures=True)
        finally:
            torch.set_num_threads(self._threads_before)

    def _run(self, work: Callable, batch) -> List[List[tuple]]:
        lane = self._free.get()
        try:
            work(batch, lane)
            return [lane_job.take() for lane_job in lane]
        finally:
            for lane_job in lane:  # after a failure, nothing of the batch stays behind
                lane_job.records.clear()
            self._free.put(lane)  # free before the batch is replayed: lanes never wait on the caller

    def map(self, work: Callable, batches: Iterable) -> Iterator[tuple]:
        """``work(batch, lane_jobs)`` for each batch on a free lane; yields ``(batch,
        records)`` in the batches' order once each is done (``records``: per job, the
        ``(sid, score, reason)`` its :class:`LaneJob` recorded), with at most ``n + 1``
        batches read ahead."""
        pending: collections.deque = collections.deque()
        for batch in batches:
            pending.append((batch, self._pool.submit(self._run, work, batch)))
            while len(pending) > self.n:
                batch_done, future = pending.popleft()
                yield batch_done, future.result()
        while pending:
            batch_done, future = pending.popleft()
            yield batch_done, future.result()


def _modules(value, depth: int, seen: set) -> Iterator[torch.nn.Module]:
    """The torch modules ``value`` holds: itself, or inside its attributes, lists and dicts,
    ``depth`` levels down."""
    if id(value) in seen or depth < 0:
        return
    seen.add(id(value))
    if isinstance(value, torch.nn.Module):
        yield value
    elif isinstance(value, (list, tuple, set)):
        for item in value:
            yield from _modules(item, depth - 1, seen)
    elif isinstance(value, dict):
        for item in value.values():
            yield from _modules(item, depth - 1, seen)
    elif hasattr(value, "__dict__") and not isinstance(value, (type, torch.Tensor)):
        for item in vars(value).values():
            yield from _modules(item, depth - 1, seen)


def weight_bytes(metric) -> int:
    """Bytes of the parameters and buffers of the torch modules a metric holds (in its
    attributes, three levels down: a list of backbone objects holding their models)."""
    tensors = {id(t): t for m in _modules(metric, 3, set()) for t in (*m.parameters(), *m.buffers())}
    return sum(t.numel() * t.element_size() for t in tensors.values())


def open_lanes(jobs: Sequence[Job], device: torch.device, threads: Optional[int] = None):
    """:class:`Lanes` for a run on the CPU whose metrics score in the main process and
    all declare ``supports_lanes``, with the budget of ``threads`` intra-op threads
    (default: torch's current count), as many as :data:`COPY_BUDGET_BYTES` of copied
    weights allow; a null context (``None``) on CUDA, with one thread, or when nothing
    scores in the main process."""
    budget = torch.get_num_threads() if threads is None else threads
    n, per_lane = lane_split(budget)
    main = [job.metric for job in jobs if not job.in_worker]
    if device.type != "cpu" or n < 2 or not main or not all(m.supports_lanes for m in main):
        return contextlib.nullcontext(None)
    per_copy = sum(weight_bytes(m) for m in main)
    n = min(n, 1 + COPY_BUDGET_BYTES // max(1, per_copy))  # big models: fewer copies
    if n < 2:
        return contextlib.nullcontext(None)
    try:
        return Lanes(jobs, n, per_lane)
    except Exception as e:  # a metric that cannot be copied scores in one lane
        logger.info("one CPU lane: a metric could not be copied (%s)", e)
        return contextlib.nullcontext(None)


def scored_batches(lanes: Optional[Lanes], batches: Iterable, score: Callable, jobs: Sequence[Job]) -> Iterator:
    """Each batch of ``batches`` once ``score(batch, jobs)`` has recorded its results into
    ``jobs``, in order: on ``lanes`` (from :func:`open_lanes`) several at a time, each lane
    recording into its :class:`LaneJob` and replayed here, or one by one when ``lanes``
    is ``None``."""
    if lanes is None:
        for batch in batches:
            score(batch, jobs)
            yield batch
        return
    for batch, records in lanes.map(score, batches):
        for job, job_records in zip(jobs, records):
            for sid, score_value, reason in job_records:
                job.record(sid, score_value, reason)
        yield batch
