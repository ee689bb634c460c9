"""Task models of other families for the benchmarks, and the proxies that never contain them.

``--task-models`` of ``alignment.py`` and ``accuracy.py`` takes a comma-separated list:
a package backbone name (``efficientnet_lite2``), ``timm:<name>`` or ``torchvision:<name>``
(weights from the standard caches), or ``torchvision:<name>=<file>`` / ``timm:<name>=<file>``:
the architecture built without weights and a state dict file loaded into it with
``strict=True``. A relative file name is read from :data:`MODELS` ($DNNIQA_MODELS, else the
workspace's ``shared/models`` beside the repository), which holds the real MobileNetV2
weights these benchmarks were run with (never committed, never needed by the package).

A model's short name (``mobilenet_v2``, ``efficientnet_lite2``) names its arrays and rows.
"""

from __future__ import annotations

import os

import numpy as np


from sample_data import MODELS  # noqa: E402 (one home for the models folder)

MOBILENET_V2 = "torchvision:mobilenet_v2=mobilenet_v2_imagenet_float.pth"
PROXY = "efficientnet_lite0"
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)

#: for each task model, the proxies averaged in its label-free ensemble: the package's proxy
#: and one network of another family than the task model, never the task model itself
CROSS_PROXIES = {
    "efficientnet_lite1": (PROXY, "mobilenet_v2"),
    "efficientnet_lite2": (PROXY, "mobilenet_v2"),
    "mobilenet_v2": (PROXY, "efficientnet_lite1"),
}


def parse_task_models(spec):
    """``"a,torchvision:b=file"`` -> ``[(short name, full name, weights path or None)]``."""
    out = []
    for item in [s.strip() for s in spec.split(",") if s.strip()]:
        name, _, path = item.partition("=")
        if path and not os.path.isabs(path):
            path = os.path.join(MODELS, path)
        out.append((short_name(name), name, path or None))
    return out


def short_name(name):
    """``torchvision:mobilenet_v2`` -> ``mobilenet_v2``; package names unchanged."""
    return name.split(":", 1)[1] if ":" in name else name


def missing_weights(parsed):
    """The weight files named in ``parsed`` that are not on disk."""
    return [p for _, _, p in parsed if p and not os.path.exists(p)]


def load_task_model(short, name, path=None):
    """The classifier ``name`` (a package :class:`Backbone`), from ``path`` when given: the
    architecture built without weights, the state dict loaded with ``strict=True``, the
    architecture's own preprocessing (torchvision: resize 256, centre crop 224, ImageNet
    mean and standard deviation). Its ``name`` is the short name."""
    import dataclasses

    import torch

    from fiftyone_dnniqa.metrics.backbones import Backbone, load_backbone

    if path is None:
        return dataclasses.replace(load_backbone(name), name=short)
    kind, _, arch = name.partition(":")
    if kind == "torchvision":
        import torchvision  # deferred: imports torch._dynamo (about 2 s)

        model = torchvision.models.get_model(arch, weights=None)
        crop, resize = 224, 256
    elif kind == "timm":
        import timm  # deferred: imports torch._dynamo (about 2 s)

        model = timm.create_model(arch, pretrained=False)
        crop = model.pretrained_cfg.get("input_size", (3, 224, 224))[-1]
        resize = round(crop / (model.pretrained_cfg.get("crop_pct") or 0.875))
    else:
        raise SystemExit(f"{name}: a weights file needs torchvision:<name> or timm:<name>")
    model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True), strict=True)
    model.eval()
    return Backbone(short, model, crop=crop, resize=resize, mean=IMAGENET_MEAN, std=IMAGENET_STD,
                    num_classes=1000)


def ensemble_quality(d, task):
    """The label-free score of ``task``'s proxy ensemble (:data:`CROSS_PROXIES`) on the
    arrays ``d``: the mean of each proxy's max-softmax probability (the proxies'
    statistics averaged, as ``create_metric("aligned", proxy=[...])`` does). None when a
    proxy's confidences are not in ``d`` or the ensemble would contain ``task``."""
    members = CROSS_PROXIES.get(task)
    if members is None or task in members:
        return None
    cols = [d["quality:aligned"] if m == PROXY else d.get("confidence:" + m) for m in members]
    if any(c is None for c in cols):
        return None
    return np.mean(np.stack([np.asarray(c, float) for c in cols]), axis=0)
