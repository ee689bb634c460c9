"""Training the cause head without human labels: corrupted copies of clean images,
labelled by the corruptions that made them (:func:`fit_cause_head`).

Each clean image gives clean views (labelled "none") and corrupted copies. A single copy
draws a family uniformly, then one of its corruptions and a severity 1..5. A ``compound``
share of the copies degrade the image several times, as cameras do: half follow the
capture's pipeline (2 to 4 of exposure, sensor noise, blur and compression), half draw 2
or 3 families of any kind; every family its own corruption and severity, applied in the
capture's order (:func:`~..corruptions.compound.compose`). Each family's severity is its
own target, so one image is both "blur 3" and "noise 4".
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import List, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn.functional as F

from ..core.devices import resolve_device
from ..core.images import ImageLoadError, InputSpec, prepare, read_image, to_float
from ..corruptions import apply_corruption
from ..corruptions.compound import compose, family_severities
from .backbones import load_backbone
from .cause import FAMILIES, FAMILY_OF, CauseHead, CauseMetric, cause_features, save_cause_head
from .training import seeded_standardised_head

def corruptions_by_family(corruptions: Optional[Sequence[str]] = None) -> dict:
    """``{family: [corruption names]}`` of ``corruptions`` (default: every one with a family)."""
    names = list(FAMILY_OF) if corruptions is None else list(corruptions)
    unknown = [n for n in names if n not in FAMILY_OF]
    if unknown:
        raise ValueError(f"corruption(s) {unknown} belong to no cause family; known: {sorted(FAMILY_OF)}")
    out = {}
    for n in names:
        out.setdefault(FAMILY_OF[n], []).append(n)
    return out


@dataclass
class Recipe:
    """One training example: an image index, and the corruptions applied to it."""

    image: int
    steps: Tuple[Tuple[str, int], ...]  # (corruption, severity); empty for a clean view
    flip: bool = False
    #: "pipeline": the capture's order (:func:`~..corruptions.compound.compose`); "given": as listed
    order: str = "pipeline"


#: the families a camera's own pipeline degrades, in the order it does
CAMERA_PIPELINE = ("exposure", "noise", "blur", "compression")


def _draw_families(keys: Sequence[str], compound: float, rng) -> List[str]:
    """One family, or (with probability ``compound``) 2 to 4 of the camera pipeline's or
    2 to 3 of any."""
    if len(keys) < 2 or rng.random() >= compound:
        return [keys[rng.integers(len(keys))]]
    camera = [k for k in CAMERA_PIPELINE if k in keys]
    if len(camera) >= 2 and rng.random() < 0.5:
        return [camera[i] for i in sorted(rng.choice(len(camera), int(rng.integers(2, len(camera) + 1)), replace=False))]
    return [keys[i] for i in rng.choice(len(keys), int(rng.integers(2, min(3, len(keys)) + 1)), replace=False)]


def draw_recipes(num_images: int, copies: int = 8, clean_views: int = 2, compound: float = 0.2,
                 corruptions: Optional[Sequence[str]] = None, seed: int = 0,
                 exclude: Sequence[Sequence[str]] = (), pair_copies: int = 0,
                 compressed_copies: int = 0, strong_blur_copies: int = 0) -> List[Recipe]:
    """Per image: ``clean_views`` clean views (the second and later mirrored) and
    ``copies`` corrupted ones, a ``compound`` share of them with several families; then
    (after every image's, so that they leave those draws as they were) ``pair_copies``
    per image of two families drawn uniformly among the pairs, so that every pair (a
    weather family under compression, say) is seen; then ``compressed_copies`` per image
    of one other family followed by compression, as every camera's picture ends
    compressed; then ``strong_blur_copies`` per image blurred beyond severity 5 (a blur at
    severity 5, then another at 3-5, half of them with one other family at 1-5), so that a
    photo far out of focus is still called blurred. A copy holding every corruption of one
    of the ``exclude`` sets (held out for an evaluation) is drawn again."""
    fams = corruptions_by_family(corruptions)
    keys = sorted(fams, key=FAMILIES.index)
    held = [set(e) for e in exclude]
    rng = np.random.default_rng(seed)

    def pick(family):
        return fams[family][rng.integers(len(fams[family]))]

    def copy(i, draw_steps):
        """Image ``i`` under ``draw_steps()``, drawn again while it holds a held-out set."""
        while True:
            steps = draw_steps()
            if not any(h <= {n for n, _ in steps} for h in held):
                return Recipe(i, steps, flip=bool(rng.integers(2)))

    def at_any_severity(draw_families):
        return lambda: tuple((pick(f), int(rng.integers(1, 6))) for f in draw_families())

    not_blur = [k for k in keys if k != "blur"]

    def strong_blur():
        steps = ((pick("blur"), 5), (pick("blur"), int(rng.integers(3, 6))))
        if not_blur and rng.random() < 0.5:
            steps += ((pick(not_blur[rng.integers(len(not_blur))]), int(rng.integers(1, 6))),)
        return steps

    out = []
    for i in range(num_images):
        out += [Recipe(i, (), flip=v % 2 == 1) for v in range(clean_views)]
        out += [copy(i, at_any_severity(lambda: _draw_families(keys, compound, rng))) for _ in range(copies)]
    pair = (lambda: [keys[j] for j in sorted(rng.choice(len(keys), 2, replace=False))]) if len(keys) > 1 else None
    for i in range(num_images if pair else 0):
        out += [copy(i, at_any_severity(pair)) for _ in range(pair_copies)]
    others = [k for k in keys if k != "compression"]
    compressed = (lambda: [others[rng.integers(len(others))], "compression"]) if "compression" in keys and others else None
    for i in range(num_images if compressed else 0):
        out += [copy(i, at_any_severity(compressed)) for _ in range(compressed_copies)]
    for i in range(num_images if "blur" in keys else 0):
        out += [copy(i, strong_blur) for _ in range(strong_blur_copies)]
    return out


def targets(recipe: Recipe) -> Tuple[List[float], float, List[float]]:
    """The multi-label family target, the overall severity (the largest of the steps')
    and each family's severity (0 where absent) of ``recipe``; a corruption of no family
    (an evaluation's held-out one) sets no label."""
    sev = family_severities((n, s) for n, s in recipe.steps if n in FAMILY_OF)
    y = [1.0 if f in sev else 0.0 for f in FAMILIES]
    return y, float(max((s for _, s in recipe.steps), default=0)), [float(sev.get(f, 0)) for f in FAMILIES]


def render(clean: torch.Tensor, recipe: Recipe, generator: torch.Generator) -> torch.Tensor:
    """The image of ``recipe`` from its ``clean`` (3, H, W) image."""
    x = clean.flip(-1) if recipe.flip else clean
    if all(n in FAMILY_OF for n, _ in recipe.steps):
        return compose(x, recipe.steps, generator, order=recipe.order)
    for name, severity in recipe.steps:  # a corruption of no family: alone, for the held-out checks
        x = apply_corruption(x, name, severity, generator=generator)
    return x


def featurise(images: Sequence[torch.Tensor], backbone, device, batch_size: int = 16) -> torch.Tensor:
    """:func:`~.cause.cause_features` of ``images`` (each (3, H, W), equal sizes), in batches."""
    out = []
    for k in range(0, len(images), batch_size):
        x = torch.stack(list(images[k:k + batch_size])).to(device)
        with torch.inference_mode():
            out.append(cause_features(backbone, x).cpu())
    return torch.cat(out) if out else torch.zeros(0)


def recipe_generator(seed: int, index: int) -> torch.Generator:
    """The generator that renders recipe number ``index``: seeded by both, so that every
    example renders the same whichever others are rendered with it (or in parallel)."""
    return torch.Generator().manual_seed(seed * 1_000_003 + index)


def build_examples(clean: Sequence[torch.Tensor], recipes: Sequence[Recipe], backbone, device,
                   seed: int = 0, batch_size: int = 16, progress=None, start: int = 0):
    """Features (N, D), family targets (N, K), overall severities (N,) and family
    severities (N, K) of ``recipes`` over the ``clean`` images; ``recipes`` are numbers
    ``start``, ``start + 1``... of their set (:func:`recipe_generator`)."""
    feats, ys, sevs, fam_sevs, buffer = [], [], [], [], []
    for n, r in enumerate(recipes):
        buffer.append(render(clean[r.image], r, recipe_generator(seed, start + n)))
        y, s, fs = targets(r)
        ys.append(y)
        sevs.append(s)
        fam_sevs.append(fs)
        if len(buffer) == batch_size or n == len(recipes) - 1:
            feats.append(featurise(buffer, backbone, device, batch_size))
            buffer = []
            if progress is not None:
                progress((n + 1) / len(recipes), f"featurised {n + 1} of {len(recipes)} examples")
    return torch.cat(feats), torch.tensor(ys), torch.tensor(sevs), torch.tensor(fam_sevs)


def train_cause_head(X: torch.Tensor, Y: torch.Tensor, severity: torch.Tensor, family_severity: torch.Tensor,
                     hidden: int = 64, epochs: int = 150, lr: float = 3e-3, weight_decay: float = 5e-2,
                     severity_weight: float = 0.5, clean_weight: float = 3.0, mild_target: float = 0.5,
                     seed: int = 0) -> CauseHead:
    """Full-batch AdamW fit of a :class:`~.cause.CauseHead`: binary cross-entropy per
    family, plus ``severity_weight`` times the squared severity errors (in fifths): the
    overall one, and each present family's own. Clean examples weigh ``clean_weight``; a
    family at severity 1, often invisible, is a soft positive (``mild_target``)."""
    X, Y, severity, family_severity = X.float(), Y.float().clone(), severity.float(), family_severity.float()
    Y[family_severity == 1] *= mild_target
    weight = torch.where(severity == 0, clean_weight, 1.0).unsqueeze(1)
    present = (family_severity > 0).float()
    head = seeded_standardised_head(lambda: CauseHead(X.shape[1], hidden), X, seed)
    opt = torch.optim.AdamW(head.parameters(), lr=lr, weight_decay=weight_decay)
    for _ in range(epochs):
        opt.zero_grad()
        logits, sev, fam_sev = head(X)
        bce = (F.binary_cross_entropy_with_logits(logits, Y, reduction="none") * weight).mean()
        fam_err = (((fam_sev - family_severity) / 5) ** 2 * present).sum() / present.sum().clamp_min(1)
        loss = bce + severity_weight * (F.mse_loss(sev / 5, severity / 5) + fam_err)
        loss.backward()
        opt.step()
    return head.eval()


def train_cause_ensemble(X: torch.Tensor, Y: torch.Tensor, severity: torch.Tensor, family_severity: torch.Tensor,
                         members: int = 1, seed: int = 0, **train_kw) -> CauseHead:
    """``members`` heads (seeds ``seed``, ``seed + 1``...) merged into one
    :class:`~.cause.CauseHead`: their hidden units side by side, the outputs averaged (the
    logits and severities of the members' mean; they share the standardisation)."""
    heads = [train_cause_head(X, Y, severity, family_severity, seed=seed + m, **train_kw) for m in range(members)]
    if members == 1:
        return heads[0]
    merged = CauseHead(X.shape[1], sum(h.net[0].out_features for h in heads))
    with torch.no_grad():
        merged.mean.copy_(heads[0].mean)
        merged.std.copy_(heads[0].std)
        merged.net[0].weight.copy_(torch.cat([h.net[0].weight for h in heads]))
        merged.net[0].bias.copy_(torch.cat([h.net[0].bias for h in heads]))
        merged.net[2].weight.copy_(torch.cat([h.net[2].weight for h in heads], dim=1) / members)
        merged.net[2].bias.copy_(torch.stack([h.net[2].bias for h in heads]).mean(0))
    return merged.eval()


def calibrate_gate(X: torch.Tensor, Y: torch.Tensor, severity: torch.Tensor, family_severity: torch.Tensor,
                   groups: torch.Tensor, target_none: float = 0.96, false_alarm: float = 0.1, floor: float = 0.4,
                   folds: int = 5, **train_kw) -> Tuple[float, List[float]]:
    """The gate and the per-family thresholds of :func:`~.cause.cause_labels`, from
    out-of-fold probabilities (the head refitted ``folds`` times, each time without one
    fold of images, ``groups``): the gate leaves a share ``target_none`` of the clean
    views clean (their largest probability under it); a family besides the most likely
    is named from the probability that a share ``false_alarm`` of the corrupted views
    without it reach (at least ``floor``)."""
    probs = torch.zeros(len(X), len(FAMILIES))
    for k in range(folds):
        train = groups % folds != k
        head = train_cause_ensemble(X[train], Y[train], severity[train], family_severity[train], **train_kw)
        with torch.no_grad():
            probs[~train] = torch.sigmoid(head(X[~train].float())[0])
    clean = severity == 0
    gate = float(torch.quantile(probs[clean].max(1).values, target_none))
    thresholds = []
    for k in range(len(FAMILIES)):
        without = probs[~clean & (family_severity[:, k] == 0), k]
        thresholds.append(round(max(floor, float(torch.quantile(without, 1 - false_alarm))), 6))
    return round(gate, 6), thresholds


def load_clean_images(images, spec: InputSpec) -> Tuple[List[torch.Tensor], int]:
    """Prepared float images (3, crop, crop) of ``images``: file paths, (3, H, W) tensors
    in [0, 1], or a FiftyOne collection (its ``filepath``); and how many were unreadable."""
    if hasattr(images, "values") and not isinstance(images, (list, tuple)):
        images = images.values("filepath")
    out, skipped = [], 0
    for item in images:
        if torch.is_tensor(item):
            if item.ndim != 3 or item.shape[0] != 3:
                raise ValueError(f"image tensors must be (3, H, W), got {tuple(item.shape)}")
            out.append(F.interpolate(item.float().unsqueeze(0), size=(spec.crop, spec.crop), mode="bilinear",
                                     antialias=True, align_corners=False)[0].clamp(0, 1))
            continue
        try:
            out.append(to_float(prepare(read_image(str(item)), spec).unsqueeze(0))[0])
        except ImageLoadError:
            skipped += 1
    return out, skipped


def fit_cause_head(clean_images, path: str, backbone: str = "efficientnet_lite0", copies: int = 12,
                   clean_views: int = 2, compound: float = 0.5, corruptions: Optional[Sequence[str]] = None,
                   hidden: int = 128, epochs: int = 300, weight_decay: float = 5e-2, members: int = 3,
                   target_none: float = 0.96, false_alarm: float = 0.1, device: str = "auto", batch_size: int = 16,
                   seed: int = 0, progress=None, pair_copies: int = 4, compressed_copies: int = 10) -> CauseMetric:
    """Fits a cause head on corrupted copies of clean images (no labels needed) and saves
    it to ``path`` (a ``.safetensors`` file).

    Args:
        clean_images: clean photographs: file paths, (3, H, W) tensors in [0, 1], or a
            FiftyOne dataset or view
        path: the file to write
        backbone ("efficientnet_lite0"): the frozen proxy (a timm backbone)
        copies (12), clean_views (2), compound (0.5): per image, corrupted copies, clean
            views, and the share of copies with several families (:func:`draw_recipes`)
        pair_copies (4), compressed_copies (10): per image, copies of two families drawn
            uniformly, and of one family then compression (the shipped head's namer's draw)
        corruptions (None): corruption names (default: every one with a family, :data:`~.cause.FAMILY_OF`)
        hidden, epochs, weight_decay: the head and its full-batch AdamW training
        members (3): heads trained from successive seeds, merged into one (:func:`train_cause_ensemble`)
        target_none (0.96), false_alarm (0.1): the share of held-out clean views the gate
            leaves clean, and of corrupted views a family they lack is named on (:func:`calibrate_gate`)
        device ("auto"), batch_size (16): where and how the proxy runs
        seed (0): seeds the draws, the corruptions and the head
        progress (None): callable ``f(fraction, label)``

    With 10 images or more, the gate and the per-family thresholds are calibrated on
    images left out of five refits (:func:`calibrate_gate`); with fewer the thresholds
    are 0.5 and there is no gate.

    Returns:
        the fitted :class:`~.cause.CauseMetric`
    """
    dev = resolve_device(device)
    proxy = load_backbone(backbone)
    proxy.model.to(dev).to(memory_format=torch.channels_last)
    spec = InputSpec(resize=proxy.resize, crop=proxy.crop)
    clean, skipped = load_clean_images(clean_images, spec)
    if len(clean) < 4:
        raise ValueError(f"the cause head needs at least 4 readable clean images, got {len(clean)}")
    recipes = draw_recipes(len(clean), copies, clean_views, compound, corruptions, seed, pair_copies=pair_copies,
                           compressed_copies=compressed_copies)
    X, Y, sev, fam_sev = build_examples(clean, recipes, proxy, dev, seed, batch_size, progress)
    kw = dict(hidden=hidden, epochs=epochs, weight_decay=weight_decay, seed=seed, members=members)
    head = train_cause_ensemble(X, Y, sev, fam_sev, **kw)
    groups = torch.tensor([r.image for r in recipes])
    gate, thresholds = (calibrate_gate(X, Y, sev, fam_sev, groups, target_none, false_alarm, **kw) if len(clean) >= 10
                        else (None, [0.5] * len(FAMILIES)))
    config = {"backbone": backbone, "gate": gate, "thresholds": thresholds,
              "corruptions": sorted({n for r in recipes for n, _ in r.steps}),
              "copies": copies, "clean_views": clean_views, "compound": compound, "pair_copies": pair_copies,
              "compressed_copies": compressed_copies, "seed": seed, "members": members,
              "epochs": epochs, "weight_decay": weight_decay, "target_none": target_none, "false_alarm": false_alarm,
              "num_images": len(clean),
              "num_skipped": skipped, "num_examples": int(X.shape[0])}
    save_cause_head(path, head, config)
    return CauseMetric(path)
