"""One registry of quality metrics: a name in, a ready metric out.

``create_metric("piqe")`` builds any pyiqa metric by its pyiqa name; metrics
of this package register themselves with :func:`register_metric`.
"""

from __future__ import annotations

import difflib
from typing import Callable, Dict, List, Optional

from .base import InputSpec, QualityMetric
from .iqa import PyiqaMetric, pyiqa_configs, pyiqa_metric_names

_REGISTRY: Dict[str, Callable[..., QualityMetric]] = {}

#: pyiqa metrics whose weights ship with pyiqa itself or need none
OFFLINE_PYIQA_METRICS = (
    "psnr", "psnry", "ssim", "ssimc", "ms_ssim", "cw_ssim", "fsim", "vif",
    "gmsd", "vsi", "mad", "nlpd", "piqe", "entropy",
)


def register_metric(name: str):
    """Class or factory decorator adding a metric under ``name``."""

    def wrap(factory):
        if name in _REGISTRY:
            raise ValueError(f"metric '{name}' is already registered")
        _REGISTRY[name] = factory
        return factory

    return wrap


def _register_builtin():
    from .aligned import AlignedFRMetric, AlignedMetric, AlignedTaskMetric

    register_metric("aligned")(AlignedMetric)
    register_metric("aligned_task")(AlignedTaskMetric)
    register_metric("aligned_fr")(AlignedFRMetric)
    from .tg_iqa import TGIQAMetric

    register_metric("tg_iqa")(TGIQAMetric)
    from .zsclip import ZSCLIPMetric

    register_metric("zsclip")(ZSCLIPMetric)


def list_metrics(source: Optional[str] = None, mode: Optional[str] = None) -> List[str]:
    """Names accepted by :func:`create_metric`.

    Args:
        source (None): ``"dnniqa"`` (this package's), ``"pyiqa"``, or ``None``
            for both
        mode (None): ``"NR"`` (no-reference) or ``"FR"`` (full-reference)
            to keep one kind of pyiqa metric
    """
    names = []
    if source in (None, "dnniqa"):
        names += sorted(_REGISTRY)
    if source in (None, "pyiqa"):
        configs = pyiqa_configs()
        names += [n for n in pyiqa_metric_names()
                  if n not in _REGISTRY and (mode is None or configs[n].get("metric_mode") == mode)]
    if source not in (None, "dnniqa", "pyiqa"):
        raise ValueError(f"source must be 'dnniqa', 'pyiqa' or None, not {source!r}")
    return names


def metric_traits(name: str) -> dict:
    """``source``, ``needs_reference``, ``needs_labels`` and ``higher_is_better`` of metric
    ``name``, without building it (no weights are loaded)."""
    if name in _REGISTRY:
        cls = _REGISTRY[name]
        return {"source": "dnniqa", "needs_reference": bool(getattr(cls, "needs_reference", False)),
                "needs_labels": bool(getattr(cls, "needs_labels", False)),
                "higher_is_better": bool(getattr(cls, "higher_is_better", True))}
    cfg = pyiqa_configs().get(name)
    if cfg is None:
        create_metric(name)  # raises the unknown-name error
    return {"source": "pyiqa", "needs_reference": cfg.get("metric_mode") == "FR", "needs_labels": False,
            "higher_is_better": not cfg.get("lower_better", False)}


def create_metric(name, device=None, **options) -> QualityMetric:
    """Builds the metric ``name`` (a :class:`QualityMetric` passes through).

    Raises:
        ValueError: for an unknown name, listing the valid ones
        MissingWeightsError: when the metric's weights are not on disk
    """
    if isinstance(name, QualityMetric):
        metric = name
    elif name in _REGISTRY:
        metric = _REGISTRY[name](**options)
    elif name in pyiqa_configs():
        metric = PyiqaMetric(name, **options)
    else:
        valid = list_metrics()
        close = difflib.get_close_matches(str(name), valid, n=3)
        hint = f" Did you mean {', '.join(close)}?" if close else ""
        raise ValueError(
            f"Unknown metric '{name}'.{hint} Valid metrics: {', '.join(valid)}"
        )
    if device is not None:
        metric.to(device)
    return metric


_register_builtin()

__all__ = [
    "InputSpec", "QualityMetric", "PyiqaMetric", "OFFLINE_PYIQA_METRICS",
    "create_metric", "list_metrics", "metric_traits", "register_metric",
]
