"""Building blocks of the ImageNet-C corruptions (deterministic; the draws stay in :mod:`.imagenet_c`).

Defocus disk, line-kernel motion blur, ``clipped_zoom``, Pillow's BOX
resampling, the frost textures, OpenCV-style Canny edges, capped distance
transform and histogram equalisation (water spatter), and the wavefront
schedule of the glass-blur pixel shuffle: a sequential loop in the
reference, run here in wavefronts of independent pixels with the same
result.
"""

from __future__ import annotations

import functools
import importlib.util
import math
import os
from typing import Sequence, Tuple

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from .filters import Tensor, _filter2d, _sep_filter

# ------------------------------------------------------ blur and resampling


def _disk(radius: int, alias_blur: float) -> Tensor:
    """Anti-aliased disk kernel of ``defocus_blur`` (17x17 up to radius 8)."""
    if radius <= 8:
        ax, ksize = torch.arange(-8, 9), 3
    else:
        ax, ksize = torch.arange(-radius, radius + 1), 5
    yy, xx = torch.meshgrid(ax, ax, indexing="ij")
    d = ((xx ** 2 + yy ** 2) <= radius ** 2).double()
    d /= d.sum()
    t = torch.arange(ksize, dtype=torch.float64) - (ksize - 1) / 2
    g = torch.exp(-(t ** 2) / (2 * alias_blur ** 2))
    g /= g.sum()
    return _sep_filter(d[None, None], g, g, "reflect")[0, 0]


def _motion_blur(x: Tensor, radius: int, sigma: float, angles: Sequence[float]) -> Tensor:
    """Line-kernel motion blur, one angle (degrees) per image.

    A one-sided Gaussian of ``2 radius + 1`` taps laid along the direction,
    edges replicated; taps that would shift by the full image size are
    dropped (not renormalised), as in the reference.
    """
    b, c, h, w = x.shape
    width = 2 * radius + 1
    t = torch.arange(width, dtype=torch.float64)
    k = torch.exp(-(t ** 2) / (2 * sigma ** 2)) / (math.sqrt(2 * math.pi) * sigma)
    k = k / k.sum()
    weights = torch.zeros(width, b, dtype=torch.float64)
    dys = torch.zeros(width, b, dtype=torch.long)
    dxs = torch.zeros(width, b, dtype=torch.long)
    for j, angle in enumerate(angles):
        a = math.radians(angle)
        p0, p1 = width * math.sin(a), width * math.cos(a)
        hyp = math.hypot(p0, p1)
        for i in range(width):
            dy = -math.ceil(i * p0 / hyp - 0.5)
            dx = -math.ceil(i * p1 / hyp - 0.5)
            if abs(dy) >= h or abs(dx) >= w:
                break
            weights[i, j], dys[i, j], dxs[i, j] = k[i], dy, dx
    weights = weights.to(x.device, x.dtype)
    dys, dxs = dys.to(x.device), dxs.to(x.device)
    ar_h = torch.arange(h, device=x.device)
    ar_w = torch.arange(w, device=x.device)
    out = torch.zeros_like(x)
    for i in range(width):
        rows = (ar_h[None] - dys[i][:, None]).clamp(0, h - 1)  # (B, H)
        cols = (ar_w[None] - dxs[i][:, None]).clamp(0, w - 1)  # (B, W)
        s = x.gather(2, rows[:, None, :, None].expand(b, c, h, w))
        s = s.gather(3, cols[:, None, None, :].expand(b, c, h, w))
        out += weights[i].view(b, 1, 1, 1) * s
    return out


def _zoom_taps(n: int, z: float, device) -> Tuple[Tensor, Tensor, Tensor]:
    """Linear-interpolation taps of a centre crop zoomed by ``z``.

    Crop ``ceil(n / z)`` centred samples, resample to ``round(crop * z)``
    with end points aligned (``scipy.ndimage.zoom(order=1)``); output ``o``
    is ``(1 - w) x[i0] + w x[i1]``.
    """
    ch = math.ceil(n / z)
    top = (n - ch) // 2
    out_n = round(ch * z)
    o = torch.arange(out_n, dtype=torch.float64)
    pos = o * ((ch - 1) / (out_n - 1)) if out_n > 1 else torch.zeros(out_n, dtype=torch.float64)
    i0 = pos.floor().clamp(0, ch - 1)
    wt = pos - i0
    i0 = i0.long()
    i1 = (i0 + 1).clamp(max=ch - 1)
    return (top + i0).to(device), (top + i1).to(device), wt.to(device)


def _zoom(x: Tensor, z: float, crop: bool = True) -> Tensor:
    """``clipped_zoom``: centre crop of ``x`` zoomed by ``z`` (cut back to ``x``'s size if ``crop``)."""
    h, w = x.shape[-2:]
    for dim, n in ((2, h), (3, w)):
        i0, i1, wt = _zoom_taps(n, z, x.device)
        if crop:
            i0, i1, wt = i0[:n], i1[:n], wt[:n]
        shape = [1, 1, 1, 1]
        shape[dim] = -1
        wt = wt.to(x.dtype).view(shape)
        x = torch.lerp(x.index_select(dim, i0), x.index_select(dim, i1), wt)
    return x


def _apply_sep_matrix(x: Tensor, ah: Tensor, aw: Tensor) -> Tensor:
    return torch.einsum("oh,bchw,pw->bcop", ah, x, aw)


def _pil_box_matrix(n_in: int, n_out: int) -> Tensor:
    """Pillow's BOX resampling weights (``Image.resize(..., Image.BOX)``)."""
    scale = n_in / n_out
    fs = max(scale, 1.0)
    support = 0.5 * fs
    center = (torch.arange(n_out, dtype=torch.float64) + 0.5) * scale
    xmin = (center - support + 0.5).floor().clamp(min=0)
    xmax = (center + support + 0.5).floor().clamp(max=n_in)
    xs = torch.arange(n_in, dtype=torch.float64)[None]
    arg = (xs - center[:, None] + 0.5) / fs
    wts = ((arg > -0.5) & (arg <= 0.5) & (xs >= xmin[:, None]) & (xs < xmax[:, None])).double()
    return wts / wts.sum(1, keepdim=True).clamp(min=1e-12)


# ---------------------------------------------------------- frost textures


def _frost_dir() -> str:
    try:
        spec = importlib.util.find_spec("imagecorruptions")
    except (ImportError, ValueError):
        spec = None
    folder = None
    if spec is not None and spec.submodule_search_locations:
        folder = os.path.join(list(spec.submodule_search_locations)[0], "frost")
    if folder is None or not os.path.isdir(folder):
        raise RuntimeError("the frost corruption needs the ImageNet-C frost textures: "
                           "pip install imagecorruptions")
    return folder


#: the reference draws one of the first five textures
_FROST_FILES = ("frost1.png", "frost2.png", "frost3.png", "frost4.jpg", "frost5.jpg")


@functools.lru_cache(maxsize=20)
def _frost_texture(idx: int, h: int, w: int) -> Tensor:
    """Frost texture ``idx`` as uint8 ``(3, h', w')``, scaled to cover ``(h, w)`` with a 10% margin."""
    with Image.open(os.path.join(_frost_dir(), _FROST_FILES[idx])) as im:
        tex = torch.from_numpy(np.asarray(im.convert("RGB")).copy()).permute(2, 0, 1)
    fh, fw = tex.shape[1:]
    scale = 1.0
    if fh < h or fw < w:
        scale = max(h / fh if fh < h else 0.0, w / fw if fw < w else 0.0)
    scale *= 1.1
    nh, nw = int(math.ceil(fh * scale)), int(math.ceil(fw * scale))
    big = F.interpolate(tex[None].float(), size=(nh, nw), mode="bicubic", align_corners=False)[0]
    return big.round_().clamp_(0, 255).to(torch.uint8)


# --------------------------------------------------- spatter: edges, distance


def _rgb_to_gray(x: Tensor) -> Tensor:
    return 0.299 * x[:, 0:1] + 0.587 * x[:, 1:2] + 0.114 * x[:, 2:3]


_SOBEL = torch.tensor([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]])


def _canny(img: Tensor, low: float, high: float) -> Tensor:
    """Canny edges (OpenCV's rules: 3x3 Sobel, L1 magnitude, 8-connected hysteresis).

    ``img`` is ``(B, 1, H, W)`` with values on the 0-255 scale; returns a bool mask.
    """
    gx = _filter2d(img, _SOBEL, "replicate").round().long()
    gy = _filter2d(img, _SOBEL.t().contiguous(), "replicate").round().long()
    ax, ay = gx.abs(), gy.abs()
    mag = ax + ay
    mp = F.pad(mag, (1, 1, 1, 1))
    left, right = mp[..., 1:-1, :-2], mp[..., 1:-1, 2:]
    up, down = mp[..., :-2, 1:-1], mp[..., 2:, 1:-1]
    ul, ur = mp[..., :-2, :-2], mp[..., :-2, 2:]
    dl, dr = mp[..., 2:, :-2], mp[..., 2:, 2:]
    tg22 = int(0.4142135623730950488 * (1 << 15) + 0.5)
    ys = ay << 15
    tg22x = ax * tg22
    tg67x = tg22x + (ax << 16)
    horiz = ys < tg22x
    vert = ys > tg67x
    opposite = (gx < 0) ^ (gy < 0)
    nms = torch.where(
        horiz, (mag > left) & (mag >= right),
        torch.where(vert, (mag > up) & (mag >= down),
                    torch.where(opposite, (mag > ur) & (mag > dl), (mag > ul) & (mag > dr))))
    cand = nms & (mag > low)
    edges = cand & (mag > high)
    while True:
        grown = edges
        for _ in range(8):
            grown = cand & (F.max_pool2d(grown.float(), 3, 1, 1) > 0)
        if torch.equal(grown, edges):
            return edges
        edges = grown


def _capped_distance(zero: Tensor, cap: int) -> Tensor:
    """Euclidean distance to the nearest ``True`` pixel, capped at ``cap``."""
    big = float(2 * cap * cap + 1)
    f = torch.where(zero, 0.0, big).to(torch.float32)
    h, w = f.shape[-2:]
    offs = range(-cap, cap + 1)
    fp = F.pad(f, (cap, cap), value=big)
    g = f.clone()
    for k in offs:
        g = torch.minimum(g, fp[..., cap + k: cap + k + w] + k * k)
    gp = F.pad(g, (0, 0, cap, cap), value=big)
    d2 = g.clone()
    for k in offs:
        d2 = torch.minimum(d2, gp[..., cap + k: cap + k + h, :] + k * k)
    return d2.sqrt().clamp(max=cap)


def _equalize_hist(img: Tensor) -> Tensor:
    """``cv2.equalizeHist`` per image on integer values 0..255 ``(B, 1, H, W)``."""
    b = img.shape[0]
    v = img.reshape(b, -1).long().clamp(0, 255)
    hist = torch.zeros(b, 256, dtype=torch.long, device=img.device).scatter_add_(1, v, torch.ones_like(v))
    total = v.shape[1]
    first = (hist > 0).long().argmax(1, keepdim=True)
    first_count = hist.gather(1, first)
    cum = hist.cumsum(1) - first_count
    scale = 255.0 / (total - first_count).clamp(min=1).double()
    lut = (cum.double() * scale).round().clamp(0, 255)
    lut = torch.where(torch.arange(256, device=img.device)[None] <= first, 0.0, lut)
    lut = torch.where(first_count == total, first.double().expand(b, 256), lut)
    return lut.gather(1, v).reshape(img.shape).to(img.dtype)


# ------------------------------------------------------- glass-blur shuffle


@functools.lru_cache(maxsize=16)
def _glass_schedule(h: int, w: int, d: int) -> Tuple[Tensor, Tensor, Tensor]:
    """Visited pixels of the glass-blur loop, grouped into wavefronts.

    The reference visits ``h = H-d .. d+1`` (rows, descending), ``w = W-d ..
    d+1`` and "swaps" each pixel with a neighbour offset in ``[-d, d-1]``;
    because the swap assigns numpy views, it really copies the neighbour into
    the visited pixel, so values drift along the scan. A visit only touches a
    ``2d x 2d`` box; with ``t = 2d (H-d-h) + (W-d-w)`` two visits sharing a
    wavefront never touch the same pixel, and any two visits that could
    touch the same pixel run in the reference's order, so the wavefronts give
    the sequential loop's result.
    """
    hs = torch.arange(h - d, d, -1) if h - d > d else torch.zeros(0, dtype=torch.long)
    ws = torch.arange(w - d, d, -1) if w - d > d else torch.zeros(0, dtype=torch.long)
    hh, ww = torch.meshgrid(hs, ws, indexing="ij")
    t = (2 * d * (h - d - hh) + (w - d - ww)).reshape(-1)
    order = torch.argsort(t, stable=True)
    counts = torch.bincount(t[order])
    return hh.reshape(-1)[order], ww.reshape(-1)[order], counts[counts > 0]


def _glass_shuffle(src: Tensor, d: int, dy: Tensor, dx: Tensor) -> Tensor:
    """One pass of the glass-blur loop on pixel indices, in place.

    ``src`` ``(B, H*W)`` holds, per pixel, the index of the pixel its value
    comes from; ``dy``/``dx`` ``(B, H, W)`` are the offsets drawn for each
    visited pixel (others are ignored).
    """
    b = src.shape[0]
    h, w = dy.shape[-2:]
    hh, ww, counts = _glass_schedule(h, w, d)
    if not hh.numel():
        return src
    hh, ww = hh.to(src.device), ww.to(src.device)
    visit = hh * w + ww
    partner = (hh + dy[:, hh, ww]) * w + (ww + dx[:, hh, ww])  # (B, N)
    start = 0
    for n in counts.tolist():
        a = visit[start:start + n].expand(b, n)
        src.scatter_(1, a, src.gather(1, partner[:, start:start + n]))
        start += n
    return src
