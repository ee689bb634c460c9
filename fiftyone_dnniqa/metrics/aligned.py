"""DNN-aligned quality: how confidently a pretrained proxy classifier sees
the image.

A network's confidence falls when imaging conditions (blur, noise, low light)
destroy the evidence it relies on, and it does so in the network's terms, not
a human observer's. The proxy is a pretrained ImageNet classifier, never the
user's task model; no reference and no labels are needed.
"""

from __future__ import annotations

import math
from typing import Sequence, Union

import torch
import torch.nn.functional as F

from .base import InputSpec, QualityMetric

STATISTICS = ("max_prob", "margin", "neg_entropy", "energy")


def confidence(logits: torch.Tensor, statistic: str = "max_prob", temperature: float = 1.0) -> torch.Tensor:
    """Per-image confidence statistic of ``logits`` (B, C); higher = more confident.

    - ``max_prob``: largest softmax probability
    - ``margin``: top-1 minus top-2 probability
    - ``neg_entropy``: 1 - H(p) / log C, in [0, 1]
    - ``energy``: T * logsumexp(logits / T) (negative free energy)
    """
    z = logits.float() / temperature
    if statistic == "energy":
        return temperature * torch.logsumexp(z, dim=1)
    p = F.softmax(z, dim=1)
    if statistic == "max_prob":
        return p.max(dim=1).values
    if statistic == "margin":
        top = p.topk(2, dim=1).values
        return top[:, 0] - top[:, 1]
    if statistic == "neg_entropy":
        h = -(p * torch.log(p.clamp_min(1e-12))).sum(dim=1)
        return 1 - h / math.log(p.shape[1])
    raise ValueError(f"unknown statistic '{statistic}'; choose from {', '.join(STATISTICS)}")


class AlignedMetric(QualityMetric):
    """Image-only, label-free DNN-aligned quality (higher = better).

    Args:
        backbone ("efficientnet_lite0"): a backbone name (see
            :func:`fiftyone_dnniqa.backbones.list_backbones`) or a list of
            them, whose statistics are averaged (an ensemble)
        statistic ("max_prob"): one of :data:`STATISTICS`
        temperature (1.0): softmax temperature
    """

    name = "aligned"
    higher_is_better = True
    supports_amp = True

    def __init__(self, backbone: Union[str, Sequence[str]] = "efficientnet_lite0",
                 statistic: str = "max_prob", temperature: float = 1.0):
        super().__init__()
        from ..backbones import load_backbone

        if statistic not in STATISTICS:
            raise ValueError(f"unknown statistic '{statistic}'; choose from {', '.join(STATISTICS)}")
        if temperature <= 0:
            raise ValueError("temperature must be positive")
        names = [backbone] if isinstance(backbone, str) else list(backbone)
        if not names:
            raise ValueError("give at least one backbone")
        self.backbone_names = names
        self.statistic = statistic
        self.temperature = float(temperature)
        self.backbones = [load_backbone(n) for n in names]
        for b in self.backbones:  # faster convolutions on CPU and with GPU autocast
            b.model.to(memory_format=torch.channels_last)
        big = max(self.backbones, key=lambda b: b.crop)
        self.input_spec = InputSpec(resize=big.resize, crop=big.crop)

    def to(self, device):
        super().to(device)
        for b in self.backbones:
            b.model.to(self.device)
        return self

    def logits(self, images: torch.Tensor):
        """Each backbone's logits for ``images`` (B, 3, H, W) in [0, 1]."""
        out = []
        for b in self.backbones:
            x = images
            if x.shape[-1] != b.crop or x.shape[-2] != b.crop:
                x = F.interpolate(x, size=(b.crop, b.crop), mode="bilinear", antialias=True,
                                  align_corners=False)
            out.append(b.model(b.normalize(x).contiguous(memory_format=torch.channels_last)))
        return out

    @torch.inference_mode()
    def score(self, images, references=None):
        self._check_batch(images)
        images = images.to(self.device)
        stats = [confidence(z, self.statistic, self.temperature) for z in self.logits(images)]
        return torch.stack(stats).mean(dim=0).double().cpu()

    def describe(self):
        return {"backbone": self.backbone_names if len(self.backbone_names) > 1 else self.backbone_names[0],
                "statistic": self.statistic, "temperature": self.temperature}
