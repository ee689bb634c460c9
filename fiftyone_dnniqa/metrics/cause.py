"""Why an image is hard: the imaging condition behind a low score.

A small head on the ``aligned`` proxy's early feature maps (each channel's mean and
spread at strides 2 to 16, where blur, noise and blocking still show) plus cheap image,
regional, multiscale and edge statistics predicts an independent probability for each degradation family
(:data:`FAMILIES`) and a severity (0 clean .. 5). It is trained without human labels on
the corruption suites applied to clean photographs (:func:`~.cause_training.fit_cause_head`),
and saved as one safetensors file whose metadata holds its configuration. The shipped
head (:data:`SHIPPED_HEAD`) is a :class:`PairedCauseHead` trained by
``python benchmarks/train_cause_head.py``.

``compute_quality(view, "cause")`` stores a ``Classifications`` field: every family
whose probability reaches the threshold, most likely first, or no label at all (an empty
``Classifications``, severity 0) where none does; and ``<field>_severity``. A head with a
``gate`` in its configuration decides clean or not once, on its largest probability,
then names the most likely family and every other one over its own threshold.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from typing import Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from safetensors import safe_open
from safetensors.torch import save_file

from ..corruptions.compound import FAMILY_OF as CORRUPTION_FAMILY
from .aligned import resized_square
from .backbones import load_backbone
from .base import InputSpec, QualityMetric
from .blockage import EDGE_STATISTICS, BlockageDetector, edge_statistics
from .registry import register_metric
from .shared_forward import proxy_outputs

#: 5: a paired head with a blockage detector (:class:`~.blockage.BlockageDetector`);
#: 4: a paired head (a single-degradation head and a compound-trained one, :class:`PairedCauseHead`);
#: 3: a severity per family besides the overall one; 2: the head reads feature-level
#: statistics (1 read the pooled features)
FORMAT_VERSION = 5
#: the formats this version reads
READABLE_FORMATS = (2, 3, 4, 5)
#: the degradation families, in the order of the head's outputs
FAMILIES = ("blur", "noise", "compression", "exposure", "contrast_haze", "weather_occlusion",
            "low_resolution")
#: what ``cause_labels`` calls an image in which no family reaches the threshold (stored as no label)
NONE = "none"
#: corruption name -> family (one home: the corruptions' own table, :mod:`..corruptions.compound`).
#: ``low_light`` is the camera suite's under-exposure with the sensor noise of its gain,
#: ``lens_dirt`` its smudges, drops and partial blockage; ``elastic_transform`` (a
#: geometric warp) and ``saturate`` (a colour change) fit no family and are left out of
#: training, for the held-out checks
FAMILY_OF: Dict[str, str] = CORRUPTION_FAMILY
#: what each family means, for forms, reports and the README
FAMILY_TEXT = {
    "blur": "out of focus, camera or subject motion",
    "noise": "sensor noise, grain, salt and pepper",
    "compression": "JPEG / JPEG 2000 artefacts",
    "exposure": "too dark (low light) or too bright",
    "contrast_haze": "washed out: low contrast, haze, fog",
    "weather_occlusion": "snow, frost, spatter, dirt on the lens, a partial blockage",
    "low_resolution": "too few pixels, blown up (pixelated)",
}
#: mean luminance (the 224 px input) under which an exposure problem is "dark": on the
#: dev split, clean photos have a median of 0.47, 95% of ``low_light`` copies at severity 1
#: stay under 0.39 and 95% of ``brightness`` copies at severity 1 over 0.45
DARK_BELOW = 0.42
STATISTICS = ("mean", "std", "dark", "bright", "log_laplacian", "log_noise", "log_gradient",
              "entropy", "saturation", "dark_channel", "block8", "flat_diffs", "hf_ratio")
#: statistics over the image's 4 x 4 regions (a blockage, a smudge or a vignette darkens
#: or softens part of the frame only), after the feature levels' in the head's input
REGIONAL_STATISTICS = ("region_mean_min", "region_mean_max", "region_mean_spread", "region_contrast_min",
                       "region_contrast_max", "region_contrast_spread", "region_contrast_min_to_median",
                       "region_saturation_min", "region_saturation_spread")
#: the regions per side of :func:`regional_statistics`
REGIONS = 4
#: the scales of :func:`multiscale_statistics` (full, half and quarter size)
SCALES = 3
MULTISCALE_STATISTICS = tuple(f"{name}_{direction}_scale{scale}" for scale in range(SCALES) for direction in
                              ("0", "90", "45", "135") for name in ("log_energy", "kurtosis")
                              ) + tuple(f"weakest_to_strongest_direction_scale{scale}" for scale in range(SCALES))
_DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data")
#: the head trained by ``benchmarks/train_cause_head.py`` on the ImageNet sample's dev split
SHIPPED_HEAD = os.path.join(_DATA, "cause_head.safetensors")


#: the 3 x 3 kernels of :func:`image_statistics`: the Laplacian, and Immerkaer's noise
#: estimator (the difference of two Laplacians, blind to edges and ramps)
_KERNELS = (((0, 1, 0), (1, -4, 1), (0, 1, 0)), ((1, -2, 1), (-2, 4, -2), (1, -2, 1)))
#: the window of the dark channel (px, square)
DARK_WINDOW = 7


def _laplacian_and_noise(lum: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    """Both kernels of :data:`_KERNELS` on ``lum`` (B, H, W), valid part, in one convolution."""
    k = torch.tensor(_KERNELS, dtype=lum.dtype, device=lum.device).unsqueeze(1)
    out = F.conv2d(lum.unsqueeze(1), k)
    return out[:, 0], out[:, 1]


def _running_min(x: torch.Tensor, size: int, dim: int) -> torch.Tensor:
    """The minimum over a centred window of ``size`` (odd) along ``dim``, the edges padded
    with +inf: exact, as a min is in any order."""
    half = size // 2
    pad = [0, 0] * (x.dim() - 1 - dim % x.dim()) + [half, half]
    padded = F.pad(x, pad, value=float("inf"))
    n = x.shape[dim]
    out = padded.narrow(dim, 0, n)
    for shift in range(1, size):
        out = torch.minimum(out, padded.narrow(dim, shift, n))
    return out


def _dark_channel(darkest: torch.Tensor, window: int = DARK_WINDOW) -> torch.Tensor:
    """(B, H, W): the minimum of ``darkest`` (B, H, W: each pixel's darkest channel) over a
    ``window`` x ``window`` square around each pixel (He et al.'s dark channel, which haze
    lifts); separable."""
    return _running_min(_running_min(darkest, window, -1), window, -2)


def image_statistics(x: torch.Tensor) -> torch.Tensor:
    """Cheap per-image statistics (B, len(STATISTICS)) of ``x`` (B, 3, H, W) in [0, 1]:
    exposure, sharpness, a noise estimate (Immerkaer), grey-level entropy, colour, haze
    (dark channel), 8-pixel blockiness and repeated pixels (pixelation)."""
    x = x.float().clamp(0, 1)
    lum = 0.299 * x[:, 0] + 0.587 * x[:, 1] + 0.114 * x[:, 2]
    b, h, w = lum.shape
    lap, immerkaer = _laplacian_and_noise(lum)
    noise = immerkaer.abs().mean((1, 2)) * math.sqrt(math.pi / 2) / 6
    dx, dy = lum[:, :, 1:] - lum[:, :, :-1], lum[:, 1:] - lum[:, :-1]
    adx = dx.abs()
    grad = adx.mean((1, 2)) + dy.abs().mean((1, 2))
    bins = (lum * 63.999).long().view(b, -1)
    hist = torch.zeros(b, 64, device=x.device).scatter_add_(1, bins, torch.ones_like(bins, dtype=torch.float))
    p = hist / hist.sum(1, keepdim=True)
    entropy = -(p * torch.log2(p.clamp_min(1e-12))).sum(1) / 6
    mn, mx = torch.aminmax(x, dim=1)
    saturation = ((mx - mn) / mx.clamp_min(1e-3)).mean((1, 2))
    dark = _dark_channel(mn).mean((1, 2))
    cols = torch.arange(dx.shape[-1], device=x.device) % 8 == 7  # JPEG block boundaries
    block8 = torch.log((adx[..., cols].mean((1, 2)) + 1e-4) / (adx[..., ~cols].mean((1, 2)) + 1e-4))
    flat = (adx < 1 / 512).float().mean((1, 2))
    hf = torch.log((lap.abs().mean((1, 2)) + 1e-4) / (grad + 1e-4))
    stats = [lum.mean((1, 2)), lum.std((1, 2)), (lum < 0.1).float().mean((1, 2)),
             (lum > 0.9).float().mean((1, 2)), torch.log(lap.var((1, 2)) + 1e-6), torch.log(noise + 1e-5),
             torch.log(grad + 1e-5), entropy, saturation, dark, block8, flat, hf]
    return torch.stack(stats, dim=1)


def regional_statistics(x: torch.Tensor) -> torch.Tensor:
    """(B, len(REGIONAL_STATISTICS)) of ``x`` (B, 3, H, W) in [0, 1] over :data:`REGIONS`
    x :data:`REGIONS` regions: the lowest, highest and spread of the regions' mean
    luminance and of their log contrast (luminance standard deviation), the lowest
    contrast against the median, the lowest and spread of their mean saturation."""
    x = x.float().clamp(0, 1)
    lum = 0.299 * x[:, 0] + 0.587 * x[:, 1] + 0.114 * x[:, 2]
    mx = x.max(1).values
    saturation = (mx - x.min(1).values) / mx.clamp_min(1e-3)
    pooled = F.adaptive_avg_pool2d(torch.stack([lum, lum * lum, saturation], 1), REGIONS).flatten(2)
    mean, sat = pooled[:, 0], pooled[:, 2]
    contrast = torch.log((pooled[:, 1] - mean * mean).clamp_min(0).sqrt() + 1e-3)
    low = contrast.min(1).values
    return torch.stack([mean.min(1).values, mean.max(1).values, mean.std(1), low, contrast.max(1).values,
                        contrast.std(1), low - contrast.median(1).values, sat.min(1).values, sat.std(1)], dim=1)


def multiscale_statistics(x: torch.Tensor) -> torch.Tensor:
    """(B, len(MULTISCALE_STATISTICS)) of ``x`` (B, 3, H, W) in [0, 1]: at each of
    :data:`SCALES` (2 x 2 averages in between) and for the luminance's first differences
    along 0, 90, 45 and 135 degrees, their log energy and kurtosis, then the log ratio of
    the weakest direction's energy to the strongest. Noise makes the differences Gaussian
    (kurtosis 3) at the fine scale and averages away at the coarse ones, where blur still
    shows as lost energy; motion blur takes one direction's energy."""
    x = x.float().clamp(0, 1)
    lum = (0.299 * x[:, 0] + 0.587 * x[:, 1] + 0.114 * x[:, 2]).unsqueeze(1)
    out = []
    for scale in range(SCALES):
        if scale:
            lum = F.avg_pool2d(lum, 2)
        y = lum[:, 0]
        energies = []
        for d in (y[:, :, 1:] - y[:, :, :-1], y[:, 1:] - y[:, :-1], y[:, 1:, 1:] - y[:, :-1, :-1],
                  y[:, 1:, :-1] - y[:, :-1, 1:]):
            d = d.flatten(1)
            energy = d.square().mean(1) + 1e-10
            energies.append(energy)
            out += [torch.log(energy), torch.log(d.pow(4).mean(1) / energy.square() + 1e-6)]
        e = torch.stack(energies, 1)
        out.append(torch.log(e.min(1).values / e.max(1).values))
    return torch.stack(out, dim=1)


def cause_features(backbone, images: torch.Tensor) -> torch.Tensor:
    """The head's input: :func:`image_statistics` of ``images`` (B, 3, H, W) in [0, 1],
    then the per-channel mean and spread of the proxy's first feature levels (from the
    pass shared with ``aligned`` on the same batch, :func:`~.shared_forward.proxy_outputs`),
    then :func:`regional_statistics`, :func:`multiscale_statistics` and
    :func:`~.blockage.edge_statistics`. A head reads its
    first ``in_features`` columns (heads saved before the later statistics ignore them).
    The pooled features are not used: they are trained to ignore the imaging conditions
    (on the benchmark's dev split they named the family right 62% of the time, the
    feature levels 94%)."""
    x = resized_square(images, backbone.crop)
    levels = proxy_outputs(backbone, x).levels
    if levels is None:
        raise ValueError(f"the cause head needs a timm backbone with feature levels (efficientnet_lite* or "
                         f"timm:<name>), not {backbone.name}")
    return torch.cat([image_statistics(x), levels.float(), regional_statistics(x), multiscale_statistics(x),
                      edge_statistics(x)], dim=1)


class CauseHead(torch.nn.Module):
    """Standardisation, one hidden layer, then one logit per family, an overall severity
    and a severity per family (``per_family=False``: a format-2 head, whose one severity
    stands for every family's)."""

    def __init__(self, in_features: int, hidden: int = 64, num_families: int = len(FAMILIES),
                 per_family: bool = True):
        super().__init__()
        self.per_family = per_family
        self.register_buffer("mean", torch.zeros(in_features))
        self.register_buffer("std", torch.ones(in_features))
        outputs = 2 * num_families + 1 if per_family else num_families + 1
        self.net = torch.nn.Sequential(torch.nn.Linear(in_features, hidden), torch.nn.GELU(),
                                       torch.nn.Linear(hidden, outputs))

    @property
    def in_features(self) -> int:
        """How many of :func:`cause_features`' first columns the head reads."""
        return int(self.mean.numel())

    def outputs(self, x: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """What :class:`CauseMetric` stores, from features ``x`` (B, D >= in_features): the
        probabilities that decide clean or not and name the most likely family, those that
        name the others (here the same), the overall and the per-family severities."""
        logits, severity, family_severity = self(x[:, :self.in_features])
        probs = torch.sigmoid(logits)
        return probs, probs, severity, family_severity

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Family logits (B, K), the overall severity (B,) and each family's severity
        (B, K), 0..5 (unclamped); a family's severity means "if it is present"."""
        out = self.net((x - self.mean) / self.std)
        if not self.per_family:
            k = out.shape[1] - 1
            return out[:, :k], 5 * out[:, k], (5 * out[:, k:]).expand(-1, k)
        k = (out.shape[1] - 1) // 2
        return out[:, :k], 5 * out[:, k], 5 * out[:, k + 1:]


class PairedCauseHead(torch.nn.Module):
    """Format 4: a single-degradation head (``decider``, trained mostly on one
    degradation at a time) and a compound-trained one (``namer``). The mean of their
    probabilities decides clean or not and names the most likely family (more single
    degradations named right than either alone); the namer's probabilities name the
    other families and its severities are the image's. Format 5 adds a ``blockage``
    detector (:class:`~.blockage.BlockageDetector`): the weather probability that names
    ``weather_occlusion`` beside the deciding family is the larger of the namer's and the
    detector's (on the head's scale: its own threshold reads as the head's weather threshold).
    It only adds weather: the deciding probabilities, and the namer's for the other
    families, are the pair's own."""

    def __init__(self, decider: CauseHead, namer: CauseHead, blockage: Optional[BlockageDetector] = None):
        super().__init__()
        self.decider, self.namer, self.blockage = decider, namer, blockage

    @property
    def in_features(self) -> int:
        parts = (self.decider, self.namer) + ((self.blockage,) if self.blockage is not None else ())
        return max(part.in_features for part in parts)

    def outputs(self, x: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """As :meth:`CauseHead.outputs`: the mean probabilities decide, the namer's (and the
        blockage detector's, for weather) name the others."""
        decider = torch.sigmoid(self.decider(x[:, :self.decider.in_features])[0])
        naming, _, severity, family_severity = self.namer.outputs(x)
        deciding = (decider + naming) / 2
        if self.blockage is not None:
            weather = FAMILIES.index("weather_occlusion")
            naming = naming.clone()
            naming[:, weather] = torch.maximum(naming[:, weather], self.blockage(x))
        return deciding, naming, severity, family_severity


def _shape(head: CauseHead) -> dict:
    return {"in_features": head.in_features, "hidden": int(head.net[0].out_features), "per_family": head.per_family}


def _from_shape(shape: dict) -> CauseHead:
    return CauseHead(shape["in_features"], shape["hidden"], per_family=shape["per_family"])


def save_cause_head(path: str, head, config: dict) -> None:
    """Writes ``head`` (a :class:`CauseHead` or :class:`PairedCauseHead`) and its
    ``config`` (JSON, in the file's metadata) to ``path``."""
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    if isinstance(head, PairedCauseHead):
        config = dict(config, format_version=4 if head.blockage is None else 5, families=list(FAMILIES),
                      decider=_shape(head.decider), namer=_shape(head.namer))
        if head.blockage is not None:
            config["blockage"] = {"first_column": head.blockage.first_column, "statistics": list(EDGE_STATISTICS),
                                  "threshold": head.blockage.threshold, "reads": head.blockage.reads}
    else:
        config = dict(config, format_version=3 if head.per_family else 2, families=list(FAMILIES),
                      in_features=head.in_features, hidden=int(head.net[0].out_features))
    save_file({k: v.detach().contiguous().cpu() for k, v in head.state_dict().items()}, path,
              metadata={"config": json.dumps(config)})


def _blockage(path: str, config: dict) -> BlockageDetector:
    """The (untrained) blockage detector a format-5 head's ``config["blockage"]`` describes."""
    if tuple(config.get("statistics", ())) != EDGE_STATISTICS:
        raise ValueError(f"{path}: its blockage detector reads {config.get('statistics')}, expected "
                         f"{list(EDGE_STATISTICS)}")
    return BlockageDetector(config["first_column"], config.get("threshold", 0.5), config.get("reads"))


def load_cause_head(path: str):
    """The head saved at ``path`` (a :class:`CauseHead`, or a :class:`PairedCauseHead`
    for formats 4 and 5) and its configuration."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"no cause head at {path!r}: train one with fit_cause_head "
                                "(or python benchmarks/train_cause_head.py for the shipped one)")
    with safe_open(path, framework="pt") as f:
        meta = f.metadata() or {}
        state = {k: f.get_tensor(k) for k in f.keys()}
    if "config" not in meta:
        raise ValueError(f"{path}: not a cause head (no configuration in its metadata)")
    config = json.loads(meta["config"])
    if config.get("format_version") not in READABLE_FORMATS:
        raise ValueError(f"{path}: unsupported format_version {config.get('format_version')} (this version reads "
                         f"{', '.join(map(str, READABLE_FORMATS))}); refit the head with fit_cause_head")
    if tuple(config.get("families", ())) != FAMILIES:
        raise ValueError(f"{path}: trained for families {config.get('families')}, expected {list(FAMILIES)}")
    # format 2 (one severity for the image) still reads: each family gets the image's severity
    if config["format_version"] in (4, 5):
        blockage = _blockage(path, config["blockage"]) if config["format_version"] == 5 else None
        head = PairedCauseHead(_from_shape(config["decider"]), _from_shape(config["namer"]), blockage)
    else:
        head = CauseHead(config["in_features"], config["hidden"], per_family=config["format_version"] == 3)
    head.load_state_dict(state)
    return head.eval(), config


def cause_labels(row: Sequence[float], threshold=0.5, gate: Optional[float] = None
                 ) -> Tuple[List[Tuple[str, float]], float]:
    """``([(family, probability), ...], severity)`` from one row of :meth:`CauseMetric.score`:
    the families at or above ``threshold`` (one number, or one per family), most likely
    first, or ``[("none", 1 - max)]``. With a ``gate``, the image is degraded when its
    most likely family reaches the gate: that family is named first, then every other
    one at or above its threshold; below the gate it is "none". A paired head's row
    (:class:`PairedCauseHead`) also holds the namer's probabilities (after the
    brightness): the families besides the deciding ones are named from those."""
    k = len(FAMILIES)
    probs = [float(v) for v in row[:k]]
    naming = [float(v) for v in row[2 * k + 2:3 * k + 2]] if len(row) >= 3 * k + 2 else probs
    thresholds = [float(threshold)] * k if isinstance(threshold, (int, float)) else list(threshold)
    top = max(range(k), key=probs.__getitem__)
    if gate is None:
        decided = [j for j in range(k) if probs[j] >= thresholds[j]]
    else:
        decided = [top] if probs[top] >= gate else []
    if not decided:
        return [(NONE, 1.0 - probs[top])], float(row[k])
    first = sorted(((FAMILIES[j], probs[j]) for j in decided), key=lambda t: -t[1])
    others = sorted(((FAMILIES[j], naming[j]) for j in range(k) if j not in decided and naming[j] >= thresholds[j]),
                    key=lambda t: -t[1])
    return first + others, float(row[k])


def family_attributes(row: Sequence[float], family: str) -> Dict[str, object]:
    """``{"severity": s}`` of ``family`` in one row of :meth:`CauseMetric.score` (and
    ``"direction"``: "dark" or "bright", for exposure)."""
    k = len(FAMILIES)
    out: Dict[str, object] = {"severity": round(float(row[k + 1 + FAMILIES.index(family)]), 2)}
    if family == "exposure":
        out["direction"] = "dark" if float(row[2 * k + 1]) < DARK_BELOW else "bright"
    return out


@register_metric("cause")
class CauseMetric(QualityMetric):
    """The imaging condition behind a low score: a probability per degradation family
    (:data:`FAMILIES`) and a severity.

    ``score`` returns (B, 3K + 2): the K family probabilities, the severity (0 clean ..
    5) and more (:meth:`score`). The engine stores them as a ``Classifications`` field (:func:`cause_labels`) and a
    float ``<field>_severity`` (``outputs = "classifications"``).

    Args:
        path (None): a head saved by :func:`~.cause_training.fit_cause_head`; ``None`` for
            the shipped head (trained on the ImageNet sample)
        threshold (None): the probability from which a family is reported (a blockage
            detector's own probability included); ``None`` for the head's own thresholds,
            one per family, calibrated when it was fitted so that held-out clean images are
            called "none" (at least 0.5), and its own ``gate`` if it has one
            (:func:`cause_labels`)
    """

    name = "cause"
    higher_is_better = False  # the severity: 0 is a clean image
    supports_amp = True
    supports_lanes = True
    #: what ``score`` returns per image, for the engine: family probabilities and a severity
    outputs = "classifications"
    extra_fields = ("severity",)

    def __init__(self, path: Optional[str] = None, threshold: Optional[float] = None):
        super().__init__()
        if threshold is not None and not 0 < float(threshold) < 1:
            raise ValueError(f"threshold must be between 0 and 1, not {threshold!r}")
        self.path = os.path.abspath(path) if path else SHIPPED_HEAD
        self.head, self.config = load_cause_head(self.path)
        self.threshold = float(threshold) if threshold is not None else None
        self.thresholds = ([self.threshold] * len(FAMILIES) if threshold is not None
                           else [float(t) for t in self.config.get("thresholds", [0.5] * len(FAMILIES))])
        self.gate = None if threshold is not None or self.config.get("gate") is None else float(self.config["gate"])
        if threshold is not None and getattr(self.head, "blockage", None) is not None:
            self.head.blockage.reads = self.head.blockage.threshold  # its own probability, against the user's
        self.backbone = load_backbone(self.config["backbone"])
        self.backbone.model.to(memory_format=torch.channels_last)
        self.input_spec = InputSpec(resize=self.backbone.resize, crop=self.backbone.crop)
        with open(self.path, "rb") as f:
            self.sha1 = hashlib.sha1(f.read()).hexdigest()[:12]

    def to(self, device):
        super().to(device)
        self.backbone.model.to(self.device)
        self.head.to(self.device)
        return self

    @torch.inference_mode()
    def probabilities(self, images: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Family probabilities (B, K), overall severities (B,) and each family's severity
        (B, K, "if present") of ``images`` (B, 3, H, W) in [0, 1]."""
        probs, severity, family_severity, _, _ = self._forward(images)
        return probs, severity, family_severity

    def _forward(self, images):
        self._check_batch(images)
        feats = cause_features(self.backbone, images.to(self.device))
        with torch.autocast(self.device.type, enabled=False):
            probs, naming, severity, family_severity = self.head.outputs(feats.float())
        brightness = feats[:, STATISTICS.index("mean")].float()
        return probs, severity.clamp(0, 5), family_severity.clamp(0, 5), brightness, naming

    @torch.inference_mode()
    def score(self, images, references=None):
        """(B, 3K + 2): the K family probabilities that decide (:func:`cause_labels`), the
        overall severity, the K family severities, the mean luminance (which way an
        exposure problem goes), and the K probabilities that name the other families
        (a paired head's namer's; otherwise the first K again)."""
        probs, severity, family_severity, brightness, naming = self._forward(images)
        return torch.cat([probs, severity.unsqueeze(1), family_severity, brightness.unsqueeze(1), naming],
                         dim=1).double().cpu()

    def labels(self, row: Sequence[float]) -> Tuple[List[Tuple[str, float]], Dict[str, float]]:
        """One image's stored values: ``[(label, confidence)]`` and ``{"severity": s}``.

        An image in which no family reaches its threshold (:func:`cause_labels` calls it
        ``"none"``) stores no label, an empty ``Classifications`` (no chip on a clean image
        in the App's grid), and severity 0."""
        labels, severity = cause_labels(row, self.thresholds, self.gate)
        if [label for label, _ in labels] == [NONE]:
            return [], {"severity": 0.0}
        return labels, {"severity": severity}

    def label_attributes(self, row: Sequence[float]) -> Dict[str, Dict[str, object]]:
        """Attributes of each stored label of one image (:meth:`labels`): its family's own
        ``severity`` (0..5), and for ``exposure`` its ``direction`` ("dark" or "bright")."""
        return {label: family_attributes(row, label) for label, _ in self.labels(row)[0]}

    def describe(self):
        shipped = self.path == SHIPPED_HEAD
        return {"path": "shipped" if shipped else self.path, "sha1": self.sha1, "threshold": self.threshold,
                "thresholds": dict(zip(FAMILIES, self.thresholds)), "gate": self.gate, "backbone": self.config["backbone"]}
