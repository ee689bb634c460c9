"""Fitting TG-IQA heads: learn, from corrupted copies of labelled images, when
reference classifiers fail (:func:`fit_tg_iqa`); :class:`~.tg_iqa.TGIQAMetric`
scores with the head it saves."""

from __future__ import annotations

import datetime
import json
import os
from typing import Dict, Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import save_file

from ..core.devices import resolve_device
from ..core.images import ImageLoadError, InputSpec, prepare, read_image, to_float
from ..corruptions import SUITES, apply_corruption
from .backbones import load_backbone, match_classes
from .tg_iqa import (
    CONFIG_FILE,
    DEFAULT_TRAIN_SUITE,
    FEATURE_SETS,
    FORMAT_VERSION,
    WEIGHTS_FILE,
    TGIQAHead,
    TGIQAMetric,
    _proxy_features,
)


def seeded_standardised_head(make_head, X: torch.Tensor, seed):
    """A head built by ``make_head()`` under ``seed`` (the global generator is left as it
    was), its input standardisation (``mean``, ``std`` buffers) set from the features ``X``."""
    state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    try:
        head = make_head()
    finally:
        torch.random.set_rng_state(state)
    head.mean.copy_(X.mean(0))
    head.std.copy_(X.std(0).clamp_min(1e-6))
    return head


def train_head(features: torch.Tensor, correct: torch.Tensor, hidden: int = 8, epochs: int = 300,
               weight_decay: float = 1e-2, lr: float = 3e-3, seed: int = 0) -> TGIQAHead:
    """Full-batch AdamW fit of a :class:`TGIQAHead` predicting ``correct``
    (0..1, soft targets allowed) from ``features``."""
    X = features.float()
    y = correct.float()
    head = seeded_standardised_head(lambda: TGIQAHead(X.shape[1], hidden), X, seed)
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
    refs = [proxy] if not reference_classifiers else [
        proxy if r == backbone else load_backbone(r) for r in reference_classifiers]
    for r in {id(r): r for r in [proxy] + refs}.values():
        r.model.to(dev).to(memory_format=torch.channels_last)

    copies_of = _corrupted_copies(
        [(paths[i], matched[labels[i]]) for i in keep], InputSpec(resize=proxy.resize, crop=proxy.crop),
        corruptions, severities, copies, seed, progress)
    X, y, skipped = _featurise(copies_of, proxy, refs, features, dev, batch_size)
    if y.min() == y.max():
        raise ValueError("the reference classifiers were always right (or always wrong) on the copies: "
                         "use stronger corruptions or more severities")

    head = train_head(X, y, hidden=hidden, epochs=epochs, weight_decay=weight_decay, seed=seed)
    with torch.no_grad():
        train_loss = float(F.binary_cross_entropy_with_logits(head(X), y))
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
    _save_head(path, head, config)
    return TGIQAMetric(path)


def _corrupted_copies(items, spec, corruptions, severities, copies, seed, progress):
    """Yields ``(image, target classes)`` for ``copies`` corrupted versions of each
    ``(path, target classes)`` item (severity 0: the clean image), then ``None`` for
    each unreadable file."""
    rng = np.random.default_rng(seed)
    gen = torch.Generator().manual_seed(seed)
    for done, (path, target) in enumerate(items):
        try:
            clean = to_float(prepare(read_image(path), spec).unsqueeze(0))[0]
        except ImageLoadError:
            yield None
            continue
        for _ in range(copies):
            name = corruptions[rng.integers(len(corruptions))]
            severity = severities[rng.integers(len(severities))]
            yield (clean if severity == 0 else apply_corruption(clean, name, severity, generator=gen)), target
        if progress is not None:
            progress((done + 1) / len(items), f"corrupted and featurised {done + 1} of {len(items)} images")


def _featurise(examples, proxy, refs, features, dev, batch_size):
    """The proxy's features of every example and the reference classifiers' mean
    correctness, in batches; also the number of unreadable files."""
    feats, targets, skipped = [], [], 0
    buffer, buffer_targets = [], []

    def flush():
        x = torch.stack(buffer).to(dev)
        with torch.inference_mode():
            f, z = _proxy_features(proxy, x, features)
            correct = [_correct(z, buffer_targets) if r is proxy else _correct(
                _proxy_features(r, x)[1], buffer_targets) for r in refs]
        feats.append(f.cpu())
        targets.append(torch.stack(correct).mean(0))
        buffer.clear()
        buffer_targets.clear()

    for example in examples:
        if example is None:
            skipped += 1
            continue
        buffer.append(example[0])
        buffer_targets.append(example[1])
        if len(buffer) >= batch_size:
            flush()
    if buffer:
        flush()
    return torch.cat(feats), torch.cat(targets), skipped


def _save_head(path, head, config):
    os.makedirs(path, exist_ok=True)
    save_file({k: v.contiguous() for k, v in head.state_dict().items()}, os.path.join(path, WEIGHTS_FILE))
    with open(os.path.join(path, CONFIG_FILE), "w") as f:
        json.dump(config, f, indent=2)
