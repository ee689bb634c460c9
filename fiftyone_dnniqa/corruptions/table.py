"""The registry of every suite: names, severities and :func:`apply_corruption`.

Every corruption is known by name (``dk_*`` for Dodge & Karam, the ImageNet-C
names as published, the camera suite's ``low_light``) and applied at a
severity 1..5, which picks its parameters (the published ones for the two
published suites); severity 0 is the clean image.
"""

from __future__ import annotations

import operator
from typing import Callable, Dict, List, Optional, Tuple

import torch

from .camera import CAMERA, CAMERA_LEVELS
from .dodge_karam import DK_LEVELS, DODGE_KARAM
from .filters import Tensor
from .imagenet_c import IMAGENET_C, IMAGENET_C_LEVELS

#: suite -> corruption names
SUITES: Dict[str, Tuple[str, ...]] = {
    "dodge_karam": tuple(DK_LEVELS),
    "imagenet_c": ("gaussian_noise", "shot_noise", "impulse_noise", "defocus_blur", "glass_blur",
                   "motion_blur", "zoom_blur", "snow", "frost", "fog", "brightness", "contrast",
                   "elastic_transform", "pixelate", "jpeg_compression"),
    "imagenet_c_extra": ("speckle_noise", "gaussian_blur", "spatter", "saturate"),
    # a suite of its own: a physical model of the capture, not a published benchmark, so
    # the published suites (and results quoted against them) keep their exact members
    "camera": tuple(CAMERA_LEVELS),
}

#: name -> (function(x, level, generator), levels for severities 1..5)
_REGISTRY: Dict[str, Tuple[Callable, Tuple]] = {n: (DODGE_KARAM[n], DK_LEVELS[n]) for n in DK_LEVELS}
_REGISTRY.update({n: (IMAGENET_C[n], IMAGENET_C_LEVELS[n]) for n in IMAGENET_C_LEVELS})
_REGISTRY.update({n: (CAMERA[n], CAMERA_LEVELS[n]) for n in CAMERA_LEVELS})


def list_corruptions(suite: Optional[str] = None) -> List[str]:
    """Corruption names of ``suite`` (every suite when ``None``)."""
    if suite is None:
        return [n for names in SUITES.values() for n in names]
    if suite not in SUITES:
        raise ValueError(f"unknown suite '{suite}'; choose from {', '.join(SUITES)}")
    return list(SUITES[suite])


def _check_name(name: str) -> None:
    if name not in _REGISTRY:
        raise ValueError(f"unknown corruption '{name}'; choose from {', '.join(list_corruptions())}")


def _check_severity(severity, lowest: int) -> int:
    try:
        sev = None if isinstance(severity, bool) else operator.index(severity)
    except TypeError:
        sev = None
    if sev is None or not lowest <= sev <= 5:
        raise ValueError(f"severity must be an integer {lowest}..5, got {severity!r}")
    return sev


def corruption_level(name: str, severity: int):
    """The parameter(s) of ``name`` at ``severity`` 1..5 (published, or the camera suite's)."""
    _check_name(name)
    return _REGISTRY[name][1][_check_severity(severity, 1) - 1]


def apply_corruption(x: Tensor, name: str, severity: int,
                     generator: Optional[torch.Generator] = None) -> Tensor:
    """Corrupts ``x`` (``(3, H, W)`` or ``(B, 3, H, W)``, RGB in [0, 1]) with ``name`` at ``severity``.

    Returns a tensor of the same shape, device and dtype with values in
    [0, 1]; severity 0 returns a copy. Random draws come from ``generator``
    (any device), so a seeded generator makes the result reproducible.
    """
    _check_name(name)
    sev = _check_severity(severity, 0)
    if not torch.is_tensor(x) or not x.is_floating_point():
        raise ValueError("expected a floating-point image tensor in [0, 1]")
    if x.ndim not in (3, 4) or x.shape[-3] != 3:
        raise ValueError(f"expected (3, H, W) or (B, 3, H, W), got {tuple(x.shape)}")
    if sev == 0:
        return x.clone()
    x4 = x.unsqueeze(0) if x.ndim == 3 else x
    work = x4.detach() if x4.dtype in (torch.float32, torch.float64) else x4.detach().float()
    fn, levels = _REGISTRY[name]
    out = fn(work, levels[sev - 1], generator).clamp(0, 1).to(x.dtype)
    return out[0] if x.ndim == 3 else out
