"""Quality metrics: the :class:`QualityMetric` protocol and the registry.

``create_metric("piqe")`` builds any pyiqa metric by its pyiqa name; this
package's metrics (``aligned``, ``aligned_task``, ``aligned_fr``, ``cause``, ``tg_iqa``,
``zsclip``) register themselves where they are defined.
"""

from . import aligned, cause, tg_iqa, zsclip  # noqa: F401  (their decorators register them)
from .base import InputSpec, QualityMetric
from .iqa import PyiqaMetric
from .registry import (
    ENTRY_POINT_GROUP,
    OFFLINE_PYIQA_METRICS,
    _REGISTRY,
    create_metric,
    list_metrics,
    metric_traits,
    register_metric,
)

__all__ = [
    "InputSpec", "QualityMetric", "PyiqaMetric", "OFFLINE_PYIQA_METRICS", "ENTRY_POINT_GROUP",
    "create_metric", "list_metrics", "metric_traits", "register_metric",
]
