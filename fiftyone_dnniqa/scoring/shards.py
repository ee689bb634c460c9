"""Shard state of scale-out runs on FiftyOne's delegated operations.

``compute_quality(view, ..., shards=N)`` splits the view into N disjoint
ranges of sample ids (:func:`shard_specs`) and queues one delegated
``compute_quality`` operation per range (:mod:`fiftyone_dnniqa.app.sharding`). Any ``fiftyone delegated launch`` worker sharing the database
(this machine or another; pin one GPU per worker with
``CUDA_VISIBLE_DEVICES``) runs them. Scores merge by sample id in the shared
field; each shard records its own progress, and the run record of the field
shows them together. A failed shard is re-run alone by re-queuing its
operation: it scores only what its range still misses.

On video the ranges are of video ids: a shard scores whole videos (their sampled frames,
their summaries), so per-video summaries and per-video resume hold as in one call, and
its counts are of frames (:mod:`.video_execute`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import List, Optional

from bson import ObjectId
from fiftyone import ViewField as F

from .store import SHARDS, collection, prune_orphans, utc_now
from .video_fields import frame_path, summary_field


@dataclass(frozen=True)
class ShardSpec:
    """Shard ``index`` of ``count``: sample ids in ``[id_min, id_max)``
    (``None``: unbounded)."""

    index: int
    count: int
    id_min: Optional[str] = None
    id_max: Optional[str] = None

    def view(self, samples):
        if self.id_min is not None:
            samples = samples.match(F("_id") >= ObjectId(self.id_min))
        if self.id_max is not None:
            samples = samples.match(F("_id") < ObjectId(self.id_max))
        return samples

    def to_params(self) -> dict:
        return {"index": self.index, "count": self.count, "id_min": self.id_min, "id_max": self.id_max}

    @classmethod
    def from_params(cls, d: dict) -> "ShardSpec":
        return cls(int(d["index"]), int(d["count"]), d.get("id_min"), d.get("id_max"))


def shard_specs(samples, count: int) -> List[ShardSpec]:
    """Splits ``samples`` into ``count`` id ranges of (nearly) equal size."""
    if count < 1:
        raise ValueError("shards must be at least 1")
    ids = sorted(samples.values("id"))  # fixed-length hex: string order is ObjectId order
    if not ids:
        return [ShardSpec(0, 1)]
    count = min(count, len(ids))
    cuts = [ids[(len(ids) * k) // count] for k in range(1, count)]
    bounds = [None] + cuts + [None]
    return [ShardSpec(k, count, bounds[k], bounds[k + 1]) for k in range(count)]


class ShardStore:
    """Per-shard progress of sharded runs, beside FiftyOne's run records."""

    def __init__(self):
        self.coll = collection(SHARDS)
        prune_orphans()  # FiftyOne's dataset.delete() has no hook: drop deleted datasets' state here

    @staticmethod
    def _key(dataset, field, index):
        return f"{dataset._doc.id}:{field}:{index}"

    def init(self, dataset, field, specs: List[ShardSpec], operation_ids: List[str]):
        self.delete(dataset, field)
        self.coll.insert_many([
            {"_id": self._key(dataset, field, s.index), "dataset_id": str(dataset._doc.id), "field": field,
             "index": s.index, "count": s.count, "status": "queued", "operation_id": op,
             "num_todo": 0, "num_scored": 0, "num_failed": 0, "failures": {}, "updated": utc_now()}
            for s, op in zip(specs, operation_ids)
        ])

    def update(self, dataset, field, index, **values):
        values["updated"] = utc_now()
        self.coll.update_one({"_id": self._key(dataset, field, index)}, {"$set": values})

    def get(self, dataset, field) -> List[dict]:
        return sorted(self.coll.find({"dataset_id": str(dataset._doc.id), "field": field}),
                      key=lambda d: d["index"])

    def rename(self, dataset, field, new_field):
        shards = self.get(dataset, field)
        self.delete(dataset, field)
        for d in shards:
            d.update(_id=self._key(dataset, new_field, d["index"]), field=new_field)
        if shards:
            self.coll.insert_many(shards)

    def delete(self, dataset, field):
        self.coll.delete_many({"dataset_id": str(dataset._doc.id), "field": field})


def merged_status(shards: List[dict]) -> str:
    states = {s["status"] for s in shards}
    for status in ("failed", "interrupted", "running"):
        if status in states:
            return status
    return "completed" if states == {"completed"} else "queued" if states == {"queued"} else "running"


def merge_shards(dataset, key: str, results) -> None:
    """A sharded run's record (``results``, as loaded): its shards' progress, added up. On
    video the counts are of frames, as one call's are (``num_frames_scored``...), with the
    videos that could not be read; ``progress`` is of videos."""
    shards = ShardStore().get(dataset, key)
    video = getattr(results.config, "frame_step", None) is not None
    keys = ("index", "status", "num_todo", "num_scored", "num_failed", "operation_id", "error")
    keys += ("num_videos_failed",) if video else ()
    results.shards = [{k: s.get(k) for k in keys} for s in shards]
    results.status = merged_status(shards) if shards else results.status
    results.num_todo = sum(s.get("num_todo", 0) for s in shards)
    results.num_scored = sum(s.get("num_scored", 0) for s in shards)
    results.num_failed = sum(s.get("num_failed", 0) for s in shards)
    results.failures = {k: v for s in shards for k, v in (s.get("failures") or {}).items()}
    results.elapsed_s = max([s.get("elapsed_s") or 0 for s in shards] or [0])
    results.num_with_scores = dataset.count(frame_path(key) if video else key)
    done = results.num_with_scores
    if video:
        results.num_frames_scored, results.num_frames_failed = results.num_scored, results.num_failed
        results.num_videos_failed = sum(s.get("num_videos_failed") or 0 for s in shards)
        results.video_failures = {k: v for s in shards for k, v in (s.get("video_failures") or {}).items()}
        done = dataset.count(summary_field(key, "frames"))  # videos ended
    results.progress = done / results.num_samples if results.num_samples else 1.0


@dataclass
class ShardedRun:
    """What ``compute_quality(..., shards=N)`` returns: the queued operations."""

    fields: List[str]
    specs: List[ShardSpec]
    operation_ids: List[str]

    def __repr__(self):
        return (f"<ShardedRun {', '.join(self.fields)}: {len(self.operation_ids)} delegated operations "
                "queued; run `fiftyone delegated launch` workers to execute them>")
