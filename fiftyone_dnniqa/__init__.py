"""fiftyone-dnniqa: which images are hard for deep networks.

Library first: metrics, scoring and analysis are plain Python; the FiftyOne
operators and panels (:mod:`fiftyone_dnniqa.app`) are thin faces over them.
See ARCHITECTURE.md for the layers.

The public names below are imported on first use (PEP 562), so that
``import fiftyone_dnniqa.metrics`` or ``.core`` does not import FiftyOne: the
metrics, the corruptions and the loader run where FiftyOne is not installed
(``benchmarks/device_check.py`` on a bare GPU machine). ``dq.compute_quality``
and every other name resolve to the same objects as an eager import would give.
"""

from .core.lazy import lazy_exports

#: public name -> the module that defines it, grouped as the API reads
_API = {
    # Scoring a dataset, and its run records
    "compute_quality": ".api", "resolve_device": ".core.devices",
    "ImageLoadError": ".core.images", "read_image": ".core.images",
    **dict.fromkeys(["FieldBusyError", "QualityRunConfig", "QualityRunResults", "ShardedRun",
                     "default_field", "delete_quality_run", "get_quality_run_info",
                     "list_quality_runs", "load_quality_run", "patch_capable_fields"], ".scoring"),
    "rerun_shard": ".app.sharding",
    # Metrics
    **dict.fromkeys(["QualityMetric", "create_metric", "list_metrics", "metric_traits",
                     "register_metric"], ".metrics"),
    "fit_tg_iqa": ".metrics.training", "fit_cause_head": ".metrics.cause_training",
    "MissingWeightsError": ".metrics.weights",
    # Corruptions
    "build_sweep": ".corruptions",
    # Analysis
    **dict.fromkeys(["auroc", "correlate", "correlations", "rank_fields"], ".analysis"),
    **dict.fromkeys(["hard_samples", "hard_objects", "save_hard_view", "tag_hard_samples"],
                    ".analysis.difficulty"),
    **dict.fromkeys(["object_statistics", "object_quality_runs", "object_bin_view"], ".analysis.objects"),
    "object_outcomes": ".analysis.targets",
    **dict.fromkeys(["PerformancePrior", "apply_prior"], ".analysis.prior"),
    **dict.fromkeys(["render_report", "write_report"], ".analysis.report"),
    **dict.fromkeys(["NoEvaluationError", "get_target", "list_targets"], ".analysis.targets"),
    # Videos: low-quality segments, videos ranked, frame quality against frame evaluations
    **dict.fromkeys(["hard_segments", "find_segments", "mark_segments", "worst_videos"], ".analysis.video"),
    **dict.fromkeys(["frame_statistics", "segment_performance"], ".analysis.video_targets"),
    # Quality in FiftyOne's Model Evaluation panel: scenarios of quality bins, custom metrics
    **dict.fromkeys(["add_quality_scenario", "add_quality_metrics"], ".app.model_evaluation"),
    # The FiftyOne plugin entry point (fiftyone.yml's __init__.py imports it from here)
    "register": ".app.plugin",
    "__version__": ".version",
}

#: subpackages and modules reachable as attributes (``dq.analysis``), as after an eager import
_SUBMODULES = {"analysis", "api", "app", "cli", "core", "corruptions", "demo", "metrics", "runs",
               "scoring", "version"}

__all__ = [
    "compute_quality", "resolve_device", "ImageLoadError", "read_image", "FieldBusyError",
    "QualityRunConfig", "QualityRunResults", "ShardedRun", "default_field", "delete_quality_run",
    "get_quality_run_info", "list_quality_runs", "load_quality_run", "patch_capable_fields", "rerun_shard",
    "QualityMetric", "create_metric", "list_metrics", "metric_traits", "register_metric",
    "fit_tg_iqa", "fit_cause_head", "MissingWeightsError", "build_sweep",
    "auroc", "correlate", "correlations", "rank_fields", "hard_samples", "hard_objects", "save_hard_view",
    "tag_hard_samples", "object_statistics", "object_quality_runs", "object_bin_view", "object_outcomes",
    "PerformancePrior", "apply_prior", "render_report", "write_report",
    "NoEvaluationError", "get_target", "list_targets",
    "hard_segments", "find_segments", "mark_segments", "worst_videos", "frame_statistics", "segment_performance",
    "add_quality_scenario", "add_quality_metrics",
    "register", "__version__",
]


__getattr__, __dir__ = lazy_exports(__name__, _API, __all__, _SUBMODULES)
