"""The interface every quality metric implements, ours or pyiqa's."""

from __future__ import annotations

from typing import Optional

import torch

from ..core.images import InputSpec


class QualityMetric:
    """One number per image.

    Subclasses set the class attributes and implement :meth:`score`. Images
    arrive as float tensors ``(B, 3, H, W)``, RGB in ``[0, 1]``, on the
    metric's device; scores leave as a 1-D float tensor of ``B`` values.
    """

    name: str = ""
    higher_is_better: bool = True
    needs_reference: bool = False
    #: task-guided: reads the task's class names (``classes``, or a label field's)
    needs_labels: bool = False
    #: rates each image against its own label: ``score(..., labels=[...])``
    uses_sample_labels: bool = False
    #: the task's class names, for metrics that need labels
    classes = None
    #: ``classes`` is a default the engine may replace with a label field's classes
    default_classes: bool = False
    input_spec: InputSpec = InputSpec()
    #: whether mixed precision (CUDA autocast) is safe for this metric
    supports_amp: bool = False
    #: per-image metrics with small kernels run faster one image per CPU
    #: process than batched across intra-op threads; the engine then scores
    #: them inside its loader workers when running on CPU
    cpu_per_image: bool = False
    #: ``score`` keeps no state between calls, so copies of the metric may score
    #: different batches at once (the engine's CPU lanes, ``scoring/lanes.py``)
    supports_lanes: bool = False

    def __init__(self) -> None:
        self.device = torch.device("cpu")

    def to(self, device) -> "QualityMetric":
        """Moves the metric to ``device`` and returns it."""
        self.device = torch.device(device)
        return self

    def score(
        self, images: torch.Tensor, references: Optional[torch.Tensor] = None
    ) -> torch.Tensor:
        """Scores ``images`` (and ``references``); metrics that use sample labels
        also take ``labels=``, one per image."""
        raise NotImplementedError

    def set_classes(self, classes) -> None:
        """Gives a task-guided metric the task's class names."""
        raise TypeError(f"{self.name} takes no class names")

    def describe(self) -> dict:
        """Options that reproduce this metric, stored in run records."""
        return {}

    def __repr__(self) -> str:
        better = "higher" if self.higher_is_better else "lower"
        ref = ", full-reference" if self.needs_reference else ""
        return f"<{type(self).__name__} {self.name!r} ({better} is better{ref})>"

    def _check_batch(self, images: torch.Tensor, references=None) -> None:
        if images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(
                f"{self.name}: expected images of shape (B, 3, H, W), got {tuple(images.shape)}"
            )
        if self.needs_reference:
            if references is None:
                raise ValueError(f"{self.name} is full-reference: pass references")
            if references.shape != images.shape:
                raise ValueError(
                    f"{self.name}: reference shape {tuple(references.shape)} "
                    f"differs from image shape {tuple(images.shape)}"
                )
