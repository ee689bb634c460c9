"""fiftyone-dnniqa: which images are hard for deep networks.

Library first: scoring, metrics and analysis are plain Python; the FiftyOne
operators and panels are thin layers over them.
"""

from .analysis import auroc, correlate, correlations, rank_fields
from .difficulty import hard_samples, save_hard_view, tag_hard_samples
from .engine import compute_quality, default_field, resolve_device
from .loading import ImageLoadError, read_image
from .locks import FieldBusyError
from .metrics.tg_iqa import fit_tg_iqa
from .performance import NoEvaluationError, PerformancePrior, apply_prior, get_target, list_targets
from .metrics import QualityMetric, create_metric, list_metrics, metric_traits, register_metric
from .report import render_report, write_report
from .sharding import ShardedRun, rerun_shard
from .sweep import build_sweep
from .runs import (
    QualityRunConfig,
    QualityRunResults,
    delete_quality_run,
    get_quality_run_info,
    list_quality_runs,
    load_quality_run,
)
from .weights import MissingWeightsError

__version__ = "0.1.0"

__all__ = [
    "compute_quality", "create_metric", "list_metrics", "register_metric", "QualityMetric",
    "list_quality_runs", "load_quality_run", "delete_quality_run", "get_quality_run_info",
    "QualityRunConfig", "QualityRunResults", "MissingWeightsError", "ImageLoadError",
    "read_image", "default_field", "resolve_device", "metric_traits", "FieldBusyError",
    "render_report", "write_report", "ShardedRun", "rerun_shard",
    "correlate", "correlations", "auroc", "rank_fields", "get_target", "list_targets",
    "NoEvaluationError", "PerformancePrior", "hard_samples", "tag_hard_samples", "save_hard_view",
    "build_sweep", "fit_tg_iqa", "apply_prior",
]


def register(p):
    """FiftyOne plugin entry point: registers the operators and panels."""
    from .plugin import register as _register

    _register(p)
