"""fiftyone-dnniqa: which images are hard for deep networks.

Library first: metrics, scoring and analysis are plain Python; the FiftyOne
operators and panels (:mod:`fiftyone_dnniqa.app`) are thin faces over them.
See ARCHITECTURE.md for the layers.
"""

# Scoring a dataset, and its run records
from .api import compute_quality
from .core.devices import resolve_device
from .core.images import ImageLoadError, read_image
from .scoring import (
    FieldBusyError,
    QualityRunConfig,
    QualityRunResults,
    ShardedRun,
    default_field,
    delete_quality_run,
    get_quality_run_info,
    list_quality_runs,
    load_quality_run,
)
from .app.sharding import rerun_shard

# Metrics
from .metrics import QualityMetric, create_metric, list_metrics, metric_traits, register_metric
from .metrics.training import fit_tg_iqa
from .metrics.weights import MissingWeightsError

# Corruptions
from .corruptions import build_sweep

# Analysis
from .analysis import auroc, correlate, correlations, rank_fields
from .analysis.difficulty import hard_samples, save_hard_view, tag_hard_samples
from .analysis.prior import PerformancePrior, apply_prior
from .analysis.report import render_report, write_report
from .analysis.targets import NoEvaluationError, get_target, list_targets

# The FiftyOne plugin entry point (fiftyone.yml's __init__.py imports it from here)
from .app.plugin import register
from .version import __version__

__all__ = [
    "compute_quality", "resolve_device", "ImageLoadError", "read_image", "FieldBusyError",
    "QualityRunConfig", "QualityRunResults", "ShardedRun", "default_field", "delete_quality_run",
    "get_quality_run_info", "list_quality_runs", "load_quality_run", "rerun_shard",
    "QualityMetric", "create_metric", "list_metrics", "metric_traits", "register_metric",
    "fit_tg_iqa", "MissingWeightsError", "build_sweep",
    "auroc", "correlate", "correlations", "rank_fields", "hard_samples", "save_hard_view",
    "tag_hard_samples", "PerformancePrior", "apply_prior", "render_report", "write_report",
    "NoEvaluationError", "get_target", "list_targets", "register", "__version__",
]
