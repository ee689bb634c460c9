"""DNN-aligned quality: how confidently a pretrained proxy classifier sees
the image.

A network's confidence falls when imaging conditions (blur, noise, low light)
destroy the evidence it relies on, and it does so in the network's terms, not
a human observer's. The proxy is a pretrained ImageNet classifier, never the
user's task model; no reference and no labels are needed.
"""

from __future__ import annotations

import hashlib
import math
from typing import Sequence, Union

import torch
import torch.nn.functional as F

from .backbones import load_backbone, match_classes
from .base import InputSpec, QualityMetric
from .registry import register_metric
from .shared_forward import proxy_outputs

STATISTICS = ("max_prob", "margin", "neg_entropy", "energy")
TTA_MODES = (None, "flip", "multiscale")
#: ``tta="multiscale"``'s reduced view: this fraction of the backbone's input side
MULTISCALE_FRACTION = 0.8


def reduced_size(crop: int, fraction: float = MULTISCALE_FRACTION) -> int:
    """Side of the reduced view: ``fraction`` of ``crop``, a multiple of 8 (176 for 224)."""
    return max(32, int(round(crop * fraction / 8)) * 8)


def resized_square(images: torch.Tensor, size: int) -> torch.Tensor:
    """``images`` (B, 3, H, W) resized to ``size`` x ``size`` (bilinear, antialiased);
    unchanged when already that size."""
    if images.shape[-1] == size and images.shape[-2] == size:
        return images
    return F.interpolate(images, size=(size, size), mode="bilinear", antialias=True, align_corners=False)


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
        backbone ("efficientnet_lite0"): a backbone name (see
            :func:`fiftyone_dnniqa.backbones.list_backbones`) or a list of
            them, whose statistics are averaged (an ensemble)
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
    """

    name = "aligned"
    higher_is_better = True
    supports_amp = True

    def __init__(self, backbone: Union[str, Sequence[str]] = "efficientnet_lite0",
                 statistic: str = "max_prob", temperature: float = 1.0, tta=None):
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

    def logits(self, images: torch.Tensor):
        """Each backbone's logits for ``images`` (B, 3, H, W) in [0, 1], its
        test-time views combined (``tta``)."""
        out = []
        for b in self.backbones:
            def run(x, b=b):
                return b.model(b.normalize(x).contiguous(memory_format=torch.channels_last))

            x = resized_square(images, b.crop)
            z = proxy_outputs(b, x).logits  # shared with ``cause`` when it scores the same batch
            if self.tta == "flip":
                z = (z + run(x.flip(-1))) / 2
            elif self.tta == "multiscale":
                z = mean_probability_logits([z, run(x.flip(-1)), run(resized_square(images, reduced_size(b.crop)))])
            out.append(z)
        return out

    @torch.inference_mode()
    def score(self, images, references=None):
        self._check_batch(images)
        images = images.to(self.device)
        stats = [confidence(z, self.statistic, self.temperature) for z in self.logits(images)]
        return torch.stack(stats).mean(dim=0).double().cpu()

    def describe(self):
        out = {"backbone": self.backbone_names if len(self.backbone_names) > 1 else self.backbone_names[0],
               "statistic": self.statistic, "temperature": self.temperature}
        if self.tta:
            out["tta"] = self.tta
        return out


def grouped_logits(logits: torch.Tensor, groups: torch.Tensor) -> torch.Tensor:
    """Logits of task classes made of backbone classes: ``logsumexp`` over
    each group. ``groups`` is a (C, K) bool membership matrix."""
    mask = torch.zeros_like(groups, dtype=logits.dtype).masked_fill_(~groups, float("-inf"))
    mask = mask.to(logits.device)
    return torch.logsumexp(logits.unsqueeze(1) + mask.unsqueeze(0), dim=2)


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
        backbone, statistic, temperature, tta: as :class:`AlignedMetric`
    """

    name = "aligned_task"
    needs_labels = True
    LABEL_MODES = ("set", "sample")

    def __init__(self, classes=None, class_map=None, label_mode: str = "set",
                 backbone="efficientnet_lite0", statistic: str = "max_prob", temperature: float = 1.0,
                 tta=None):
        if label_mode not in self.LABEL_MODES:
            raise ValueError(f"label_mode must be one of {', '.join(self.LABEL_MODES)}, not {label_mode!r}")
        super().__init__(backbone=backbone, statistic=statistic, temperature=temperature, tta=tta)
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
        backbone, temperature, tta: as :class:`AlignedMetric`
    """

    name = "aligned_fr"
    needs_reference = True

    def __init__(self, divergence: str = "js", backbone="efficientnet_lite0", temperature: float = 1.0,
                 tta=None):
        if divergence not in DIVERGENCES:
            raise ValueError(f"divergence must be one of {', '.join(DIVERGENCES)}, not {divergence!r}")
        super().__init__(backbone=backbone, temperature=temperature, tta=tta)
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
