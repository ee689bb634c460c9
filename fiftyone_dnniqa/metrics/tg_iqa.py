"""TG-IQA: a task-guided quality head trained to predict classifier errors.

Following the task-guided trained metric of Drenkow & Unberath (2025), a
small head on the frozen features of a pretrained proxy backbone learns to
predict whether *reference classifiers* classify an image correctly. It is
fitted once on corrupted copies of a labelled clean set
(:func:`fit_tg_iqa`), saved as JSON plus safetensors (no pickle), and then
scores any dataset without labels (``create_metric("tg_iqa", path=...)``).
Its score is the predicted probability that a classifier is right (higher =
better).
"""

from __future__ import annotations

import json
import os
from typing import Optional

import torch

from safetensors.torch import load_file

from .aligned import confidence, resized_square
from .backbones import load_backbone
from .base import InputSpec, QualityMetric
from .registry import register_metric

FORMAT_VERSION = 1
CONFIG_FILE = "tg_iqa.json"
WEIGHTS_FILE = "tg_iqa.safetensors"

#: corruptions the head is trained on by default: ImageNet-C's 15 common ones
#: (the Dodge & Karam set and ImageNet-C's extra 4 stay unseen for checking)
DEFAULT_TRAIN_SUITE = "imagenet_c"


class TGIQAHead(torch.nn.Module):
    """Standardisation, one hidden layer and a logit."""

    def __init__(self, in_features: int, hidden: int = 8):
        super().__init__()
        self.register_buffer("mean", torch.zeros(in_features))
        self.register_buffer("std", torch.ones(in_features))
        self.net = torch.nn.Sequential(
            torch.nn.Linear(in_features, hidden), torch.nn.GELU(), torch.nn.Linear(hidden, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net((x - self.mean) / self.std)[:, 0]


#: ``"confidence"``: 11 statistics of the proxy's prediction (max probability,
#: margin, normalised negative entropy, energy, top-5 log-probabilities, logit
#: spread and maximum): generalises from a few dozen labelled images.
#: ``"pooled"``: those plus the proxy's 1280 pooled features: needs hundreds of
#: labelled images or more (with 40 it learns the images, not the conditions)
FEATURE_SETS = ("confidence", "pooled")


def confidence_features(logits: torch.Tensor) -> torch.Tensor:
    """The ``"confidence"`` feature set from logits (B, C)."""
    logits = logits.float()
    stats = [confidence(logits, s) for s in ("max_prob", "margin", "neg_entropy")]
    stats.append(confidence(logits, "energy") / 10)
    top = torch.log_softmax(logits, 1).topk(5, 1).values
    return torch.cat([torch.stack(stats, dim=1), top, logits.std(1, keepdim=True) / 5,
                      logits.max(1, keepdim=True).values / 10], dim=1)


def _proxy_features(backbone, images: torch.Tensor, features: str = "confidence"):
    """The feature set ``features`` of the proxy on ``images``, and the logits."""
    x = resized_square(images, backbone.crop)
    model = backbone.model
    if not hasattr(model, "forward_head"):
        raise ValueError(f"TG-IQA needs a timm backbone (efficientnet_lite* or timm:<name>), not {backbone.name}")
    fmap = model.forward_features(backbone.normalize(x).contiguous(memory_format=torch.channels_last))
    logits = model.forward_head(fmap).float()
    conf = confidence_features(logits)
    if features == "confidence":
        return conf, logits
    if features != "pooled":
        raise ValueError(f"features must be one of {FEATURE_SETS}, not {features!r}")
    pooled = model.forward_head(fmap, pre_logits=True).float()
    return torch.cat([pooled, conf], dim=1), logits


@register_metric("tg_iqa")
class TGIQAMetric(QualityMetric):
    """Scores images with a head saved by :func:`fit_tg_iqa`.

    Args:
        path: the folder :func:`fit_tg_iqa` wrote
    """

    name = "tg_iqa"
    higher_is_better = True
    supports_amp = True
    supports_lanes = True

    def __init__(self, path: Optional[str] = None):
        super().__init__()
        if not path:
            raise ValueError("tg_iqa scores with a fitted head: pass path= (the folder fit_tg_iqa wrote)")
        cfg_path = os.path.join(path, CONFIG_FILE)
        if not os.path.isfile(cfg_path):
            raise FileNotFoundError(f"no TG-IQA head in {path!r} ({CONFIG_FILE} missing): fit one with fit_tg_iqa")
        with open(cfg_path) as f:
            self.config = json.load(f)
        if self.config.get("format_version") != FORMAT_VERSION:
            raise ValueError(f"{cfg_path}: unsupported format_version {self.config.get('format_version')}")
        self.path = os.path.abspath(path)
        self.backbone = load_backbone(self.config["backbone"])
        self.backbone.model.to(memory_format=torch.channels_last)
        self.head = TGIQAHead(self.config["in_features"], self.config["hidden"])
        self.head.load_state_dict(load_file(os.path.join(path, WEIGHTS_FILE)))
        self.head.eval()
        self.input_spec = InputSpec(resize=self.backbone.resize, crop=self.backbone.crop)

    def to(self, device):
        super().to(device)
        self.backbone.model.to(self.device)
        self.head.to(self.device)
        return self

    @torch.inference_mode()
    def score(self, images, references=None):
        self._check_batch(images)
        feats, _ = _proxy_features(self.backbone, images.to(self.device), self.config.get("features", "pooled"))
        return torch.sigmoid(self.head(feats.float())).double().cpu()

    def describe(self):
        return {"path": self.path, "backbone": self.config["backbone"],
                "reference_classifiers": self.config["reference_classifiers"]}
