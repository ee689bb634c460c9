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

import datetime
import json
import os
from typing import Dict, Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from .aligned import confidence, resized_square
from .base import InputSpec, QualityMetric

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


class TGIQAMetric(QualityMetric):
    """Scores images with a head saved by :func:`fit_tg_iqa`.

    Args:
        path: the folder :func:`fit_tg_iqa` wrote
    """

    name = "tg_iqa"
    higher_is_better = True
    supports_amp = True

    def __init__(self, path: Optional[str] = None):
        super().__init__()
        if not path:
            raise ValueError("tg_iqa scores with a fitted head: pass path= (the folder fit_tg_iqa wrote)")
        from safetensors.torch import load_file

        from ..backbones import load_backbone

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


def train_head(features: torch.Tensor, correct: torch.Tensor, hidden: int = 8, epochs: int = 300,
               weight_decay: float = 1e-2, lr: float = 3e-3, seed: int = 0) -> TGIQAHead:
    """Full-batch AdamW fit of a :class:`TGIQAHead` predicting ``correct``
    (0..1, soft targets allowed) from ``features``."""
    X = features.float()
    y = correct.float()
    gen_state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    try:
        head = TGIQAHead(X.shape[1], hidden)
    finally:
        torch.random.set_rng_state(gen_state)
    head.mean.copy_(X.mean(0))
    head.std.copy_(X.std(0).clamp_min(1e-6))
    opt = torch.optim.AdamW(head.parameters(), lr=lr, weight_decay=weight_decay)
    for _ in range(epochs):
        opt.zero_grad()
        loss = F.binary_cross_entropy_with_logits(head(X), y)
        loss.backward()
        opt.step()
    return head.eval()


def _correct(logits: torch.Tensor, targets: Sequence[Sequence[int]]) -> torch.Tensor:
    pred = logits.argmax(1).tolist()
    return torch.tensor([float(p in t) for p, t in zip(pred, targets)])


def fit_tg_iqa(
    samples,
    label_field: str,
    path: str,
    backbone: str = "efficientnet_lite0",
    reference_classifiers: Optional[Sequence[str]] = None,
    corruptions: Optional[Sequence[str]] = None,
    severities: Sequence[int] = (0, 1, 2, 3, 4, 5),
    copies: int = 6,
    class_map: Optional[Dict[str, Sequence[int]]] = None,
    features: str = "confidence",
    hidden: int = 8,
    epochs: int = 300,
    weight_decay: float = 1e-2,
    device: str = "auto",
    batch_size: int = 16,
    seed: int = 0,
    overwrite: bool = False,
    progress=None,
) -> TGIQAMetric:
    """Fits a TG-IQA head on corrupted copies of a labelled clean set.

    Each image gets ``copies`` corrupted versions (a random corruption from
    ``corruptions`` at a random severity from ``severities``); the head learns
    from the frozen proxy's features whether the reference classifiers get
    each copy right.

    Args:
        samples: a FiftyOne dataset or view of clean, labelled images
        label_field: a ``Classification`` field; its labels must name
            ImageNet classes (see :func:`~fiftyone_dnniqa.backbones.match_classes`)
        path: folder to write the head to
        backbone ("efficientnet_lite0"): the frozen proxy
        reference_classifiers (None): classifiers whose correctness is
            learned (default: the proxy itself); keep the models you will
            evaluate out of this list
        corruptions (None): corruption names (default: ImageNet-C's 15)
        severities: severities drawn from, 0 being the clean image
        copies (6): corrupted copies per image
        class_map (None): ``{label: [ImageNet indices]}`` for unmatched labels
        features ("confidence"): the proxy's inputs to the head, one of
            :data:`FEATURE_SETS`
        hidden (8): hidden units of the head
        epochs, weight_decay: full-batch AdamW training of the head
        device ("auto"): where the backbones run
        batch_size (16): images per forward pass
        seed (0): seeds the corruptions and the head
        overwrite (False): replace a head already in ``path``
        progress (None): callable ``f(fraction, label)``

    Returns:
        the fitted :class:`TGIQAMetric`
    """
    from safetensors.torch import save_file

    from ..backbones import load_backbone, match_classes
    from ..corruptions import SUITES, apply_corruption
    from ..engine import resolve_device
    from ..loading import ImageLoadError, prepare, read_image, to_float

    if os.path.exists(os.path.join(path, CONFIG_FILE)) and not overwrite:
        raise FileExistsError(f"{path!r} already holds a TG-IQA head; pass overwrite=True to replace it")
    corruptions = list(corruptions or SUITES[DEFAULT_TRAIN_SUITE])
    severities = [int(s) for s in severities]
    if features not in FEATURE_SETS:
        raise ValueError(f"features must be one of {FEATURE_SETS}, not {features!r}")
    if not corruptions or not severities or copies < 1:
        raise ValueError("need at least one corruption, one severity and one copy")
    dev = resolve_device(device)
    paths, labels = samples.values(["filepath", label_field + ".label"])
    keep = [i for i, lb in enumerate(labels) if lb is not None]
    if len(keep) < 20:
        raise ValueError(f"TG-IQA needs at least 20 labelled images in '{label_field}', found {len(keep)}")
    matched = match_classes(sorted({labels[i] for i in keep}), class_map)
    proxy = load_backbone(backbone)
    proxy.model.to(dev).to(memory_format=torch.channels_last)
    refs = [proxy] if not reference_classifiers else [
        proxy if r == backbone else load_backbone(r) for r in reference_classifiers]
    for r in refs:
        r.model.to(dev).to(memory_format=torch.channels_last)
    spec = InputSpec(resize=proxy.resize, crop=proxy.crop)
    rng = np.random.default_rng(seed)
    gen = torch.Generator().manual_seed(seed)

    feats, targets, skipped = [], [], 0
    buffer, buffer_targets = [], []

    def flush():
        if not buffer:
            return
        x = torch.stack(buffer).to(dev)
        with torch.inference_mode():
            f, z = _proxy_features(proxy, x, features)
            correct = [_correct(z, buffer_targets) if r is proxy else _correct(
                _proxy_features(r, x)[1], buffer_targets) for r in refs]
        feats.append(f.cpu())
        targets.append(torch.stack(correct).mean(0))
        buffer.clear()
        buffer_targets.clear()

    for done, i in enumerate(keep):
        try:
            clean = to_float(prepare(read_image(paths[i]), spec).unsqueeze(0))
        except ImageLoadError:
            skipped += 1
            continue
        for _ in range(copies):
            name = corruptions[rng.integers(len(corruptions))]
            severity = severities[rng.integers(len(severities))]
            img = clean[0] if severity == 0 else apply_corruption(clean[0], name, severity, generator=gen)
            buffer.append(img)
            buffer_targets.append(matched[labels[i]])
            if len(buffer) >= batch_size:
                flush()
        if progress is not None:
            progress((done + 1) / len(keep), f"corrupted and featurised {done + 1} of {len(keep)} images")
    flush()
    X = torch.cat(feats)
    y = torch.cat(targets)
    if y.min() == y.max():
        raise ValueError("the reference classifiers were always right (or always wrong) on the copies: "
                         "use stronger corruptions or more severities")

    head = train_head(X, y, hidden=hidden, epochs=epochs, weight_decay=weight_decay, seed=seed)
    with torch.no_grad():
        train_loss = float(F.binary_cross_entropy_with_logits(head(X), y))

    os.makedirs(path, exist_ok=True)
    save_file({k: v.contiguous() for k, v in head.state_dict().items()}, os.path.join(path, WEIGHTS_FILE))
    config = {
        "format_version": FORMAT_VERSION, "backbone": backbone,
        "reference_classifiers": [r.name for r in refs], "features": features,
        "in_features": int(X.shape[1]), "hidden": hidden,
        "corruptions": corruptions, "severities": severities, "copies": copies, "seed": seed,
        "epochs": epochs, "weight_decay": weight_decay, "num_images": len(keep) - skipped,
        "num_skipped": skipped, "num_examples": int(X.shape[0]), "mean_correct": float(y.mean()),
        "train_loss": round(train_loss, 5), "label_field": label_field,
        "created_at": datetime.datetime.now(datetime.timezone.utc).isoformat(),
    }
    with open(os.path.join(path, CONFIG_FILE), "w") as f:
        json.dump(config, f, indent=2)
    return TGIQAMetric(path)
