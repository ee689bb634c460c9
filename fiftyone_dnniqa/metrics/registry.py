"""One registry of quality metrics: a name in, a ready metric out.

Metrics of this package register where they are defined, with the
:func:`register_metric` decorator (pyiqa's and timm's style); every pyiqa
metric is reachable by its pyiqa name through :class:`~.iqa.PyiqaMetric`
when pyiqa is installed (an optional extra; :func:`unavailable_sources` says
why it is not usable otherwise).
Other packages add metrics through the entry-point group
``fiftyone_dnniqa.metrics``: each entry point names a
:class:`~.base.QualityMetric` class or factory (registered under the entry
point's name) or a module whose import registers metrics with the decorator.
"""

from __future__ import annotations

import difflib
import logging
from importlib.metadata import entry_points
from typing import Callable, Dict, List, Optional

from .base import QualityMetric
from .iqa import (
    DATASET_LEVEL_METRICS, PyiqaMetric, PyiqaUnavailableError, pyiqa_configs, pyiqa_metric_names,
    pyiqa_unavailable_reason,
)

logger = logging.getLogger(__name__)

#: the entry-point group third-party packages register metrics under
ENTRY_POINT_GROUP = "fiftyone_dnniqa.metrics"

#: pyiqa metrics whose weights ship with pyiqa itself or need none
OFFLINE_PYIQA_METRICS = (
    "psnr", "psnry", "ssim", "ssimc", "ms_ssim", "cw_ssim", "fsim", "vif",
    "gmsd", "vsi", "mad", "nlpd", "piqe", "entropy",
)

#: the most close names an unknown metric's error suggests
MAX_SUGGESTIONS = 3

_REGISTRY: Dict[str, Callable[..., QualityMetric]] = {}
_entry_points_loaded = False


def register_metric(name: str):
    """Class or factory decorator adding a metric under ``name``."""

    def wrap(factory):
        if name in _REGISTRY and _REGISTRY[name] is not factory:
            raise ValueError(f"metric '{name}' is already registered")
        _REGISTRY[name] = factory
        return factory

    return wrap


def _registry() -> Dict[str, Callable[..., QualityMetric]]:
    """The registry, with the metrics of installed third-party packages added once."""
    global _entry_points_loaded
    if not _entry_points_loaded:
        _entry_points_loaded = True
        for ep in entry_points(group=ENTRY_POINT_GROUP):
            try:
                obj = ep.load()
            except Exception:  # a broken plugin must not break the others
                logger.exception("could not load metric entry point %r", ep.value)
                continue
            if callable(obj) and ep.name not in _REGISTRY:
                register_metric(ep.name)(obj)
    return _REGISTRY


def list_metrics(source: Optional[str] = None, mode: Optional[str] = None) -> List[str]:
    """Names accepted by :func:`create_metric` (pyiqa's only when pyiqa can be
    imported: see :func:`unavailable_sources`).

    Args:
        source (None): ``"dnniqa"`` (this package's and plugins'), ``"pyiqa"``,
            or ``None`` for both
        mode (None): ``"NR"`` (no-reference) or ``"FR"`` (full-reference)
            to keep one kind of pyiqa metric
    """
    if source not in (None, "dnniqa", "pyiqa"):
        raise ValueError(f"source must be 'dnniqa', 'pyiqa' or None, not {source!r}")
    registry = _registry()
    names = []
    if source in (None, "dnniqa"):
        names += sorted(registry)
    if source in (None, "pyiqa"):
        configs = pyiqa_configs()
        names += [n for n in pyiqa_metric_names()
                  if n not in registry and (mode is None or configs[n].get("metric_mode") == mode)]
    return names


def unavailable_sources() -> Dict[str, str]:
    """Sources of metrics that cannot be used here, each with the reason:
    ``{"pyiqa": "pyiqa is not installed; install it with ..."}`` without pyiqa,
    ``{}`` when every source works. Their metrics are not in :func:`list_metrics`."""
    reason = pyiqa_unavailable_reason()
    return {"pyiqa": reason} if reason else {}


def metric_traits(name: str) -> dict:
    """``source``, ``needs_reference``, ``needs_labels`` and ``higher_is_better`` of metric
    ``name``, without building it (no weights are loaded)."""
    registry = _registry()
    if name in registry:
        cls = registry[name]  # a QualityMetric class, or a factory without the traits
        return {"source": "dnniqa", "needs_reference": bool(getattr(cls, "needs_reference", False)),
                "needs_labels": bool(getattr(cls, "needs_labels", False)),
                "higher_is_better": bool(getattr(cls, "higher_is_better", True))}
    cfg = pyiqa_configs().get(name) if name in pyiqa_metric_names() else None
    if cfg is None:
        create_metric(name)  # raises the unknown-name error
    return {"source": "pyiqa", "needs_reference": cfg.get("metric_mode") == "FR", "needs_labels": False,
            "higher_is_better": not cfg.get("lower_better", False)}


def metric_factory(name: str) -> Callable[..., QualityMetric]:
    """What builds metric ``name``: its registered class or factory, or
    :class:`~.iqa.PyiqaMetric` for a pyiqa name (raises the unknown-name error)."""
    registry = _registry()
    if name in registry:
        return registry[name]
    if name in pyiqa_metric_names():
        return PyiqaMetric
    raise _unknown_metric(name)


def create_metric(name, device=None, **options) -> QualityMetric:
    """Builds the metric ``name`` (a :class:`QualityMetric` passes through).

    Raises:
        ValueError: for an unknown name, with a few close names
        PyiqaUnavailableError: (also a ValueError) for a pyiqa metric without pyiqa,
            naming the extra to install
        MissingWeightsError: when the metric's weights are not on disk
    """
    registry = _registry()
    if isinstance(name, QualityMetric):
        metric = name
    elif name in registry:
        metric = registry[name](**options)
    elif name in pyiqa_metric_names():
        metric = PyiqaMetric(name, **options)
    else:
        raise _unknown_metric(name)
    if device is not None:
        metric.to(device)
    return metric


def _unknown_metric(name) -> ValueError:
    """The error for a name no source knows, saying when pyiqa's metrics are unavailable."""
    if name in DATASET_LEVEL_METRICS:
        return ValueError(f"'{name}' is a dataset-level metric: it compares sets of images (one "
                          "number per set), so it gives no per-image score to store")
    pyiqa_missing = pyiqa_unavailable_reason()
    if pyiqa_missing and name in OFFLINE_PYIQA_METRICS:
        return PyiqaUnavailableError(f"Metric '{name}' is a pyiqa metric, and {pyiqa_missing}")
    valid = list_metrics()
    parts = [p for p in str(name).replace(",", " ").split() if p]
    if len(parts) > 1 and all(p in valid for p in parts):
        return ValueError(f"'{name}' names {len(parts)} metrics: give them as a list, one metric each "
                          f"({parts!r})")
    close = difflib.get_close_matches(str(name), valid, n=MAX_SUGGESTIONS, cutoff=0.5)
    hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
    msg = (f"Unknown metric '{name}'.{hint} `fiftyone-dnniqa list-metrics` lists all {len(valid)} "
           "metrics, with what each needs")
    if pyiqa_missing:
        msg += f". pyiqa's metrics are unavailable: {pyiqa_missing}"
    return ValueError(msg)
