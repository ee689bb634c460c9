"""Scoring: run metrics over a FiftyOne view, fast and safely, with run records.

:func:`~.plan.plan_quality` resolves and checks a call into a :class:`~.plan.QualityPlan`;
:func:`~.execute.execute_plan` runs it (whole, or one :class:`~.shards.ShardSpec` of it).

The names below are imported on first use (PEP 562): the loader (:mod:`.loading`) then
imports without FiftyOne, which only the plan, the run records and the writer need.
"""

from ..core.lazy import lazy_exports

#: public name -> the module of this package that defines it
_API = {
    "execute_plan": ".execute", "FieldBusyError": ".locks", "FieldLock": ".locks",
    "error_field_for": ".names", "QualityPlan": ".plan", "default_field": ".plan", "plan_quality": ".plan",
    **dict.fromkeys(["METHOD", "QualityRunConfig", "QualityRunResults", "build_run_config",
                     "delete_quality_run", "get_quality_run_info",
                     "failure_reason", "list_quality_run_statuses",
                     "list_quality_runs", "load_quality_run"], ".runs"),
    **dict.fromkeys(["check_field_can_hold_scores", "describe_field", "field_problem"], ".field_checks"),
    **dict.fromkeys(["ShardedRun", "ShardSpec", "ShardStore", "shard_specs"], ".shards"),
    **dict.fromkeys(["patch_capable_fields", "object_run_key", "min_field_for"], ".patch_plan"),
    **dict.fromkeys(["pixel_box", "box_problem"], ".patches"), "polyline_box": "..core.boxes",
}

__all__ = [
    "execute_plan", "plan_quality", "QualityPlan", "default_field", "FieldBusyError", "FieldLock",
    "METHOD", "QualityRunConfig", "QualityRunResults", "build_run_config", "delete_quality_run",
    "error_field_for", "get_quality_run_info", "list_quality_runs", "load_quality_run",
    "failure_reason", "list_quality_run_statuses",
    "check_field_can_hold_scores", "describe_field", "field_problem",
    "ShardedRun", "ShardSpec", "ShardStore", "shard_specs",
    "patch_capable_fields", "object_run_key", "min_field_for", "pixel_box", "box_problem", "polyline_box",
]


__getattr__, __dir__ = lazy_exports(__name__, _API, __all__)
