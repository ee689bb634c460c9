"""The Dodge & Karam (2016) suite.

"Understanding how image quality affects deep neural networks" (QoMEX 2016):
Gaussian blur (sigma 1..9, kernel about 4 sigma wide), additive Gaussian
noise (std 10..100 on the 0-255 scale), JPEG (quality 20..2), JPEG 2000
(target PSNR 40..20 dB) and contrast reduction (blend towards grey). The
paper gives ranges, not five levels: the severities here are evenly spaced
over each range (:data:`DK_LEVELS`; contrast stops at 0.9 since 1 is a flat
grey image). The functions also take raw levels (:func:`corrupt`).
"""

from __future__ import annotations

import math
from typing import Callable, Dict, Optional, Tuple

import torch
from PIL import features

from .filters import _batched, _pil_roundtrip, _randn, _sep_filter


@_batched
def gaussian_blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur; the kernel spans about 4 sigma (2*ceil(2 sigma)+1 taps)."""
    if sigma <= 0:
        return x.clone()
    radius = max(1, math.ceil(2 * sigma))
    t = torch.arange(-radius, radius + 1, dtype=torch.float64)
    k = torch.exp(-0.5 * (t / sigma) ** 2)
    k = k / k.sum()
    return _sep_filter(x, k, k, "reflect").clamp_(0, 1)


@_batched
def gaussian_noise(x: torch.Tensor, std: float, generator: Optional[torch.Generator] = None) -> torch.Tensor:
    """Additive Gaussian noise; ``std`` on the 0-255 scale."""
    noise = _randn(x.shape, generator, x.device, x.dtype)
    return (x + noise * (std / 255.0)).clamp_(0, 1)


@_batched
def contrast(x: torch.Tensor, level: float) -> torch.Tensor:
    """Blends the image towards uniform mid-grey: 0 keeps it, 1 is flat grey."""
    if not 0 <= level <= 1:
        raise ValueError("contrast level must be in [0, 1]")
    return x * (1 - level) + 0.5 * level


@_batched
def jpeg(x: torch.Tensor, quality: int) -> torch.Tensor:
    """JPEG round trip at ``quality`` (1..100), through torchvision's codec."""
    from torchvision.io import decode_jpeg, encode_jpeg  # deferred: imports torch._dynamo (about 2 s)

    q = int(min(100, max(1, quality)))
    u8 = (x.detach().cpu() * 255).round_().clamp_(0, 255).to(torch.uint8)
    out = [decode_jpeg(encode_jpeg(img, quality=q)) for img in u8]
    return torch.stack(out).to(x.device, x.dtype).div_(255.0)


@_batched
def jpeg2000(x: torch.Tensor, psnr: float) -> torch.Tensor:
    """JPEG 2000 round trip aiming at ``psnr`` dB (Pillow's OpenJPEG, 9/7 wavelet).

    OpenJPEG's rate control lands within about 1.5 dB of the target.
    """
    if not features.check("jpg_2000"):
        raise RuntimeError("JPEG 2000 needs Pillow built with OpenJPEG "
                           "(PIL.features.check('jpg_2000') is False)")
    return _pil_roundtrip(x, "JPEG2000", quality_mode="dB", quality_layers=[float(psnr)], irreversible=True)


#: name -> function(x, level); the demo and sweeps use these names
CORRUPTIONS: Dict[str, Callable[..., torch.Tensor]] = {
    "gaussian_blur": gaussian_blur,
    "gaussian_noise": gaussian_noise,
    "jpeg": jpeg,
    "jpeg2000": jpeg2000,
    "contrast": contrast,
}


def corrupt(x: torch.Tensor, name: str, level, generator: Optional[torch.Generator] = None) -> torch.Tensor:
    """Applies corruption ``name`` at a raw ``level`` (sigma, std, quality, PSNR or blend)."""
    if name not in CORRUPTIONS:
        raise ValueError(f"unknown corruption '{name}'; choose from {', '.join(CORRUPTIONS)}")
    if name == "gaussian_noise":
        return gaussian_noise(x, level, generator=generator)
    return CORRUPTIONS[name](x, level)


#: Dodge & Karam levels per severity 1..5 (raw units of :data:`CORRUPTIONS`)
DK_LEVELS: Dict[str, Tuple] = {
    "dk_gaussian_blur": (1.0, 3.0, 5.0, 7.0, 9.0),  # sigma (pixels)
    "dk_gaussian_noise": (10.0, 32.5, 55.0, 77.5, 100.0),  # std, 0-255 scale
    "dk_jpeg": (20, 16, 11, 7, 2),  # quality
    "dk_jpeg2000": (40.0, 35.0, 30.0, 25.0, 20.0),  # target PSNR, dB
    "dk_contrast": (0.1, 0.3, 0.5, 0.7, 0.9),  # blend towards grey
}

#: name -> function(x, level, generator): the suite's entries in the registry
DODGE_KARAM: Dict[str, Callable] = {
    "dk_gaussian_blur": lambda x, v, g: gaussian_blur(x, v),
    "dk_gaussian_noise": lambda x, v, g: gaussian_noise(x, v, generator=g),
    "dk_jpeg": lambda x, v, g: jpeg(x, v),
    "dk_jpeg2000": lambda x, v, g: jpeg2000(x, v),
    "dk_contrast": lambda x, v, g: contrast(x, v),
}
