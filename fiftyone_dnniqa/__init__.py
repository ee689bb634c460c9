"""fiftyone-dnniqa: which images are hard for deep networks.

Library first: scoring, metrics and analysis are plain Python; the FiftyOne
operators and panels are thin layers over them.
"""

from .engine import compute_quality, default_field, resolve_device
from .loading import ImageLoadError, read_image
from .locks import FieldBusyError
from .metrics import QualityMetric, create_metric, list_metrics, metric_traits, register_metric
from .report import render_report, write_report
from .sharding import ShardedRun, rerun_shard
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
]


def register(p):
    """FiftyOne plugin entry point: registers the operators and panels."""
    from .plugin import register as _register

    _register(p)
