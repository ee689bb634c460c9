"""Scale-out on FiftyOne's delegated operations.

``compute_quality(view, ..., shards=N)`` splits the view into N disjoint
ranges of sample ids and queues one delegated ``compute_quality`` operation
per range. Any ``fiftyone delegated launch`` worker sharing the database
(this machine or another; pin one GPU per worker with
``CUDA_VISIBLE_DEVICES``) runs them. Scores merge by sample id in the shared
field; each shard records its own progress, and the run record of the field
shows them together. A failed shard is re-run alone by re-queuing its
operation: it scores only what its range still misses.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass
from typing import List, Optional

from bson import ObjectId

COLLECTION = "dnniqa_shards"


@dataclass(frozen=True)
class ShardSpec:
    """Shard ``index`` of ``count``: sample ids in ``[id_min, id_max)``
    (``None``: unbounded)."""

    index: int
    count: int
    id_min: Optional[str] = None
    id_max: Optional[str] = None

    def view(self, samples):
        from fiftyone import ViewField as F

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


def _now():
    return datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None)


class ShardStore:
    """Per-shard progress of sharded runs, beside FiftyOne's run records."""

    def __init__(self):
        import fiftyone.core.odm as odm

        self.coll = odm.get_db_conn()[COLLECTION]

    @staticmethod
    def _key(dataset, field, index):
        return f"{dataset._doc.id}:{field}:{index}"

    def init(self, dataset, field, specs: List[ShardSpec], operation_ids: List[str]):
        self.delete(dataset, field)
        self.coll.insert_many([
            {"_id": self._key(dataset, field, s.index), "dataset_id": str(dataset._doc.id), "field": field,
             "index": s.index, "count": s.count, "status": "queued", "operation_id": op,
             "num_todo": 0, "num_scored": 0, "num_failed": 0, "failures": {}, "updated": _now()}
            for s, op in zip(specs, operation_ids)
        ])

    def update(self, dataset, field, index, **values):
        values["updated"] = _now()
        self.coll.update_one({"_id": self._key(dataset, field, index)}, {"$set": values})

    def get(self, dataset, field) -> List[dict]:
        return sorted(self.coll.find({"dataset_id": str(dataset._doc.id), "field": field}),
                      key=lambda d: d["index"])

    def delete(self, dataset, field):
        self.coll.delete_many({"dataset_id": str(dataset._doc.id), "field": field})


def merged_status(shards: List[dict]) -> str:
    states = {s["status"] for s in shards}
    for status in ("failed", "interrupted", "running"):
        if status in states:
            return status
    return "completed" if states == {"completed"} else "queued" if states == {"queued"} else "running"


@dataclass
class ShardedRun:
    """What ``compute_quality(..., shards=N)`` returns: the queued operations."""

    fields: List[str]
    specs: List[ShardSpec]
    operation_ids: List[str]

    def __repr__(self):
        return (f"<ShardedRun {', '.join(self.fields)}: {len(self.operation_ids)} delegated operations "
                "queued; run `fiftyone delegated launch` workers to execute them>")


def queue_shards(samples, dataset, names, metrics, fields, count, options) -> ShardedRun:
    """Registers the runs and queues one delegated operation per shard."""
    import fiftyone as fo
    import fiftyone.operators as foo

    from .plugin import PLUGIN_NAME
    from .runs import QualityRunConfig, QualityRunResults

    if not dataset.persistent:
        raise ValueError("delegated workers load the dataset by name: make it persistent first")
    uri = f"{PLUGIN_NAME}/compute_quality"
    try:
        foo.get_operator(uri)
    except Exception:
        raise RuntimeError(
            f"shards=N queues the operator {uri}, which FiftyOne cannot find: run "
            "`fiftyone-dnniqa install-plugin` (or download the plugin) first") from None
    specs = shard_specs(samples, count)
    n = len(samples)
    for f, m in zip(fields, metrics):
        config = QualityRunConfig(
            metric=m.name, field=f, metric_options=m.describe(), higher_is_better=m.higher_is_better,
            reference_field=options["reference_field"] if m.needs_reference else None,
            label_field=options.get("label_field") if m.needs_labels else None,
            device=options["device"], batch_size=options["batch_size"], num_workers=options["num_workers"],
            shards=len(specs),
        )
        samples.register_run(f, config, overwrite=True, cleanup=False)
        dataset.save_run_results(f, QualityRunResults(samples, config, f, status="queued", num_samples=n),
                                 overwrite=True, cache=False)
        if not dataset.has_sample_field(f):
            dataset.add_sample_field(f, fo.FloatField)
    op_ids = []
    for spec in specs:
        params = dict(options, metric=names[0], metrics=list(names), fields=list(fields),
                      shard=spec.to_params())
        result = foo.execute_operator(uri, ctx={"view": samples.view(), "params": params},
                                      request_delegation=True)
        op_ids.append(str(result.result["id"]))
    store = ShardStore()
    for f in fields:
        store.init(dataset, f, specs, op_ids)
    return ShardedRun(fields=list(fields), specs=specs, operation_ids=op_ids)


def rerun_shard(samples, field: str, index: int) -> str:
    """Re-queues shard ``index`` of the sharded run ``field`` (e.g. after its
    worker died); it scores only what its range still misses. Returns the new
    operation id."""
    from fiftyone.operators.delegated import DelegatedOperationService

    dataset = samples._root_dataset
    store = ShardStore()
    shard = next((s for s in store.get(dataset, field) if s["index"] == index), None)
    if shard is None:
        raise ValueError(f"'{field}' has no shard {index}")
    op = DelegatedOperationService().rerun_operation(ObjectId(shard["operation_id"]))
    store.update(dataset, field, index, status="queued", operation_id=str(op.id))
    return str(op.id)
