"""Image corruptions on tensors (CPU or GPU).

Images are float tensors ``(B, 3, H, W)`` or ``(3, H, W)``, RGB in ``[0, 1]``.
The Dodge & Karam (2016) distortions, with their parameter ranges: Gaussian
blur (sigma 1..9, kernel about 4 sigma wide), additive Gaussian noise (std
10..100 on the 0-255 scale), JPEG (quality 2..20) and contrast reduction
(blend towards grey, 0..1).
"""

from __future__ import annotations

import math
from typing import Callable, Dict, Optional

import torch
import torch.nn.functional as F


def _batched(fn):
    def wrapper(x: torch.Tensor, *args, **kwargs):
        if x.ndim == 3:
            return fn(x.unsqueeze(0), *args, **kwargs)[0]
        if x.ndim != 4:
            raise ValueError(f"expected (3, H, W) or (B, 3, H, W), got {tuple(x.shape)}")
        return fn(x, *args, **kwargs)

    wrapper.__name__, wrapper.__doc__ = fn.__name__, fn.__doc__
    return wrapper


@_batched
def gaussian_blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur; the kernel spans about 4 sigma (2*ceil(2 sigma)+1 taps)."""
    if sigma <= 0:
        return x.clone()
    radius = max(1, math.ceil(2 * sigma))
    t = torch.arange(-radius, radius + 1, device=x.device, dtype=x.dtype)
    k = torch.exp(-0.5 * (t / sigma) ** 2)
    k = k / k.sum()
    c = x.shape[1]
    y = x
    # reflect padding needs pad < side: tiny images get a truncated kernel
    for dim, side in ((3, x.shape[3]), (2, x.shape[2])):
        pad = min(radius, side - 1)
        if pad == 0:
            continue
        taps = k[radius - pad: radius + pad + 1]
        taps = taps / taps.sum()
        if dim == 3:
            y = F.pad(y, (pad, pad, 0, 0), mode="reflect")
            y = F.conv2d(y, taps.view(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c)
        else:
            y = F.pad(y, (0, 0, pad, pad), mode="reflect")
            y = F.conv2d(y, taps.view(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c)
    return y.clamp_(0, 1)


@_batched
def gaussian_noise(x: torch.Tensor, std: float, generator: Optional[torch.Generator] = None) -> torch.Tensor:
    """Additive Gaussian noise; ``std`` on the 0-255 scale."""
    noise = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
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
    from torchvision.io import decode_jpeg, encode_jpeg

    q = int(min(100, max(1, quality)))
    u8 = (x.detach().cpu() * 255).round_().clamp_(0, 255).to(torch.uint8)
    out = [decode_jpeg(encode_jpeg(img, quality=q)) for img in u8]
    return torch.stack(out).to(x.device, x.dtype).div_(255.0)


#: name -> function(x, level); the demo and sweeps use these names
CORRUPTIONS: Dict[str, Callable[..., torch.Tensor]] = {
    "gaussian_blur": gaussian_blur,
    "gaussian_noise": gaussian_noise,
    "jpeg": jpeg,
    "contrast": contrast,
}


def corrupt(x: torch.Tensor, name: str, level, generator: Optional[torch.Generator] = None) -> torch.Tensor:
    """Applies corruption ``name`` at ``level`` (sigma, std, quality or blend)."""
    if name not in CORRUPTIONS:
        raise ValueError(f"unknown corruption '{name}'; choose from {', '.join(CORRUPTIONS)}")
    if name == "gaussian_noise":
        return gaussian_noise(x, level, generator=generator)
    return CORRUPTIONS[name](x, level)
