"""Scoring: run metrics over a FiftyOne view, fast and safely, with run records.

:func:`~.plan.plan_quality` resolves and checks a call into a :class:`~.plan.QualityPlan`;
:func:`~.execute.execute_plan` runs it (whole, or one :class:`~.shards.ShardSpec` of it).
"""

from .execute import execute_plan
from .locks import FieldBusyError, FieldLock
from .plan import QualityPlan, default_field, plan_quality
from .runs import (
    METHOD,
    QualityRunConfig,
    QualityRunResults,
    build_run_config,
    delete_quality_run,
    error_field_for,
    get_quality_run_info,
    list_quality_runs,
    load_quality_run,
)
from .shards import ShardedRun, ShardSpec, ShardStore, shard_specs

__all__ = [
    "execute_plan", "plan_quality", "QualityPlan", "default_field", "FieldBusyError", "FieldLock",
    "METHOD", "QualityRunConfig", "QualityRunResults", "build_run_config", "delete_quality_run",
    "error_field_for", "get_quality_run_info", "list_quality_runs", "load_quality_run",
    "ShardedRun", "ShardSpec", "ShardStore", "shard_specs",
]
