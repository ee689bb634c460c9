"""Scale-out on FiftyOne's delegated operations: queue one ``compute_quality``
operation per shard of a plan, and re-queue a shard.

Any ``fiftyone delegated launch`` worker sharing the database (this machine or
another; pin one GPU per worker with ``CUDA_VISIBLE_DEVICES``) runs them. Scores merge
by sample id in the shared field; each shard records its own progress
(:class:`~fiftyone_dnniqa.scoring.shards.ShardStore`), and the run record of the field
shows them together. A failed shard is re-run alone by re-queuing its operation: it
scores only what its range still misses. On video a shard is a range of whole videos
(:mod:`fiftyone_dnniqa.scoring.video_execute`): each video's frames and summaries are
written by one shard, and the last shard to end writes what needs the whole view.
"""

from __future__ import annotations

import logging
from types import SimpleNamespace

import fiftyone.operators as foo
from bson import ObjectId
from fiftyone.operators.delegated import DelegatedOperationService

from ..scoring import (QualityPlan, QualityRunResults, ShardedRun, ShardStore, build_run_config, failure_reason,
                       shard_specs)
from ..scoring.video_execute import prepare_video_shards
from ..scoring.writer import declare_fields

logger = logging.getLogger(__name__)

#: the plugin's name in ``fiftyone.yml``
PLUGIN_NAME = "@dnniqa/fiftyone-dnniqa"
#: the operator every shard runs
COMPUTE_QUALITY_URI = f"{PLUGIN_NAME}/compute_quality"


def queue_shards(plan: QualityPlan, count: int) -> ShardedRun:
    """Registers the plan's runs and queues one delegated operation per shard."""
    samples, dataset = plan.samples, plan.dataset
    if not dataset.persistent:
        raise ValueError("delegated workers load the dataset by name: make it persistent first")
    try:
        foo.get_operator(COMPUTE_QUALITY_URI)
    except Exception:
        raise RuntimeError(
            f"shards=N queues the operator {COMPUTE_QUALITY_URI}, which FiftyOne cannot find: run "
            "`fiftyone-dnniqa install-plugin` (or download the plugin) first") from None
    specs = shard_specs(samples, count)  # on video: ranges of videos, never one video's frames split
    n = len(samples)
    options = plan.options()
    video = plan.frame_step is not None
    # on video: fields declared once, summaries of another frame step marked unfinished, all
    # before the record they are read against is replaced
    if video:
        prepare_video_shards(plan)
    registered = []
    try:
        for j, (f, m) in enumerate(zip(plan.fields, plan.metrics)):
            extra = dict(frame_step=plan.frame_step, low_level=plan.low_level) if video else {}
            config = build_run_config(m, f, plan.reference_field, plan.label_field, overwrite=plan.overwrite,
                                      patches=plan.patch_settings(j), device=options["device"],
                                      batch_size=options["batch_size"], num_workers=options["num_workers"],
                                      shards=len(specs), **extra)
            samples.register_run(f, config, overwrite=True, cleanup=False)
            results = QualityRunResults(samples, config, f, status="queued", num_samples=n)
            dataset.save_run_results(f, results, overwrite=True, cache=False)
            registered.append(results)
            if not video:
                declare_fields(dataset, SimpleNamespace(metric=m, field=f))  # once, before the shards start
        op_ids = _queue_operations(plan, samples, specs, options)
        store = ShardStore()
        for f in plan.fields:
            store.init(dataset, f, specs, op_ids)
    except Exception as e:  # a run that was never queued must not stay "queued"
        for results in registered:
            results.status, results.error = "failed", failure_reason(e)
            try:
                dataset.save_run_results(results.key, results, overwrite=True, cache=False)
            except Exception:  # never mask the call's own error
                logger.exception("could not save the run record of '%s'", results.key)
        raise
    return ShardedRun(fields=list(plan.fields), specs=specs, operation_ids=op_ids)


def _queue_operations(plan, samples, specs, options):
    """Queues one delegated operation per shard; returns their ids."""
    op_ids = []
    for spec in specs:
        params = dict(options, metric=plan.names[0], metrics=list(plan.names), fields=list(plan.fields),
                      shard=spec.to_params())
        result = foo.execute_operator(COMPUTE_QUALITY_URI, ctx={"view": samples.view(), "params": params},
                                      request_delegation=True)
        op_ids.append(str(result.result["id"]))
    return op_ids


def rerun_shard(samples, field: str, index: int) -> str:
    """Re-queues shard ``index`` of the sharded run ``field`` (e.g. after its
    worker died); it scores only what its range still misses. Returns the new
    operation id."""
    dataset = samples._root_dataset
    store = ShardStore()
    shard = next((s for s in store.get(dataset, field) if s["index"] == index), None)
    if shard is None:
        raise ValueError(f"'{field}' has no shard {index}")
    op = DelegatedOperationService().rerun_operation(ObjectId(shard["operation_id"]))
    store.update(dataset, field, index, status="queued", operation_id=str(op.id))
    return str(op.id)
