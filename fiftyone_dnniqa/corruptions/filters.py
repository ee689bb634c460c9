"""Tensor primitives both corruption suites build on.

Padding with scipy / OpenCV border rules, depthwise and separable filters,
scipy's Gaussian, the random draws (all through an optional generator, so a
CPU generator gives the same draws whatever device the images are on) and a
Pillow encode / decode round trip.
"""

from __future__ import annotations

import io
from typing import List, Optional

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

Tensor = torch.Tensor


def _batched(fn):
    def wrapper(x: torch.Tensor, *args, **kwargs):
        if x.ndim == 3:
            return fn(x.unsqueeze(0), *args, **kwargs)[0]
        if x.ndim != 4:
            raise ValueError(f"expected (3, H, W) or (B, 3, H, W), got {tuple(x.shape)}")
        return fn(x, *args, **kwargs)

    wrapper.__name__, wrapper.__doc__ = fn.__name__, fn.__doc__
    return wrapper


# ----------------------------------------------------- padding and filters


def _pad_index(n: int, before: int, after: int, mode: str, device) -> Tensor:
    """Source indices for padding an axis of length ``n`` (any pad width)."""
    i = torch.arange(-before, n + after, device=device)
    if mode == "replicate":  # scipy 'nearest'
        return i.clamp(0, n - 1)
    if mode == "symmetric":  # scipy 'reflect': d c b a | a b c d
        i = i.remainder(2 * n)
        return torch.where(i >= n, 2 * n - 1 - i, i)
    if mode == "reflect":  # OpenCV BORDER_REFLECT_101, scipy 'mirror': d c b | a b c d
        if n == 1:
            return torch.zeros_like(i)
        p = 2 * n - 2
        i = i.remainder(p)
        return torch.where(i >= n, p - i, i)
    raise ValueError(f"unknown padding mode {mode!r}")


def _pad(x: Tensor, left: int, right: int, top: int, bottom: int, mode: str) -> Tensor:
    h, w = x.shape[-2:]
    if left or right:
        x = x.index_select(-1, _pad_index(w, left, right, mode, x.device))
    if top or bottom:
        x = x.index_select(-2, _pad_index(h, top, bottom, mode, x.device))
    return x


def _filter2d(x: Tensor, kernel: Tensor, mode: str) -> Tensor:
    """Depthwise 2-D correlation with a centred kernel, like ``cv2.filter2D``."""
    kh, kw = kernel.shape
    c = x.shape[1]
    xp = _pad(x, kw // 2, kw - 1 - kw // 2, kh // 2, kh - 1 - kh // 2, mode)
    return F.conv2d(xp, kernel.to(x).expand(c, 1, kh, kw), groups=c)


def _sep_filter(x: Tensor, taps_h: Optional[Tensor], taps_w: Optional[Tensor], mode: str) -> Tensor:
    """Separable depthwise correlation: ``taps_w`` along W, then ``taps_h`` along H."""
    c = x.shape[1]
    if taps_w is not None and taps_w.numel() > 1:
        r = taps_w.numel() // 2
        x = F.conv2d(_pad(x, r, r, 0, 0, mode), taps_w.to(x).view(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c)
    if taps_h is not None and taps_h.numel() > 1:
        r = taps_h.numel() // 2
        x = F.conv2d(_pad(x, 0, 0, r, r, mode), taps_h.to(x).view(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c)
    return x


def _gauss_taps(sigma: float, truncate: float = 4.0) -> Tensor:
    """scipy's Gaussian kernel: radius ``int(truncate * sigma + 0.5)``."""
    r = int(truncate * float(sigma) + 0.5)
    t = torch.arange(-r, r + 1, dtype=torch.float64)
    k = torch.exp(-0.5 * (t / float(sigma)) ** 2)
    return k / k.sum()


def _gauss_filter(x: Tensor, sigma, mode: str = "replicate", truncate: float = 4.0) -> Tensor:
    """``skimage.filters.gaussian`` on each channel (default mode 'nearest')."""
    sy, sx = (sigma, sigma) if isinstance(sigma, (int, float)) else sigma
    th = _gauss_taps(sy, truncate) if sy > 0 else None
    tw = _gauss_taps(sx, truncate) if sx > 0 else None
    return _sep_filter(x, th, tw, mode)


# ---------------------------------------------------------- random draws


def _rand(shape, gen: Optional[torch.Generator], device, dtype=torch.float32) -> Tensor:
    dev = gen.device if gen is not None else device
    return torch.rand(shape, generator=gen, device=dev, dtype=dtype).to(device)


def _randn(shape, gen: Optional[torch.Generator], device, dtype=torch.float32) -> Tensor:
    dev = gen.device if gen is not None else device
    return torch.randn(shape, generator=gen, device=dev, dtype=dtype).to(device)


def _uniform_list(n: int, lo: float, hi: float, gen: Optional[torch.Generator]) -> List[float]:
    u = torch.rand(n, generator=gen, device=gen.device if gen is not None else "cpu", dtype=torch.float64)
    return (lo + (hi - lo) * u).tolist()


def _randint(low: int, high: int, gen: Optional[torch.Generator]) -> int:
    """Uniform integer in ``[low, high)``."""
    dev = gen.device if gen is not None else "cpu"
    return int(torch.randint(low, high, (1,), generator=gen, device=dev).item())


# ------------------------------------------------------- codec round trip


def _to_u8(x: Tensor) -> Tensor:
    return (x.detach().float().cpu() * 255).round_().clamp_(0, 255).to(torch.uint8)


def _pil_roundtrip(x: Tensor, fmt: str, **save_kw) -> Tensor:
    """Encodes and decodes every image of a batch with Pillow."""
    out = []
    for img in _to_u8(x):
        buf = io.BytesIO()
        Image.fromarray(np.ascontiguousarray(img.permute(1, 2, 0).numpy())).save(buf, format=fmt, **save_kw)
        buf.seek(0)
        dec = np.asarray(Image.open(buf).convert("RGB"))
        out.append(torch.from_numpy(dec.copy()).permute(2, 0, 1))
    return torch.stack(out).to(x.device, x.dtype).div_(255.0)
