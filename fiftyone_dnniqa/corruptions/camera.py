"""The camera suite: degradations as an image sensor produces them.

Not a published benchmark (those keep their own constants in :mod:`.dodge_karam` and
:mod:`.imagenet_c`): a physical model of the capture, with the constants stated here.

``low_light``: a scene photographed with less light than the exposure needs, the camera
raising its gain (ISO) to make up for part of it. The image goes back to linear light
(the sRGB decoding curve, IEC 61966-2-1), the light reaching the sensor falls by
``2 ** -(stops + gain_stops)``, the photosites count photo-electrons (Poisson shot noise;
:data:`FULL_WELL` electrons for a linear value of 1 at the normal exposure) and the
readout adds Gaussian read noise (:data:`READ_NOISE` electrons), then the gain
``2 ** gain_stops`` lifts the signal back up: the image ends ``stops`` darker in linear
light, with the noise of the gain. Each colour channel comes from its own photosites, so
the noise is independent per channel: colour (chroma) speckle as well as grain, as in a
raw capture. The result is clipped and re-encoded with the sRGB curve.

``lens_dirt``: dirt on the front element, out of focus because it sits far in front of
the focal plane. Smudges and drops (soft discs of random position and size) scatter the
light that passes them: under each the image is replaced, by the disc's opacity, with a
strongly blurred copy lifted towards a veiling grey; a partial blockage (a finger, a
strap, a hood) comes in from one edge as a dark, soft-edged band. Every image draws
:data:`MAX_SPOTS` discs and its blockage's edge whatever the severity, and a severity
uses the first of them, so that at one seed a higher severity blots a superset of the
area a lower one does, more opaquely.

In linear light, before clipping, a pixel of linear value ``v`` has mean ``v * 2**-stops``
and variance ``gain * mean / FULL_WELL + (gain * READ_NOISE / FULL_WELL) ** 2``: the
Poisson-Gaussian model of a raw sensor.
"""

from __future__ import annotations

from typing import Callable, Dict, Optional, Tuple

import torch

from .filters import Tensor, _gauss_filter, _rand, _randn

#: photo-electrons for a linear value of 1 at the normal exposure (a small-pixel sensor)
FULL_WELL = 10000.0
#: read noise, electrons (standard deviation)
READ_NOISE = 2.0

#: severity -> (stops darker in linear light, stops of gain the camera adds): the light
#: on the sensor falls by ``stops + gain_stops``; at severity 5 a mid-grey pixel
#: (linear 0.21) collects about 8 electrons
CAMERA_LEVELS: Dict[str, Tuple] = {
    "low_light": ((1.0, 1.0), (2.0, 1.5), (3.0, 2.0), (4.0, 2.5), (5.0, 3.0)),
    # (discs used, their largest radius as a share of the short side, opacity, blockage
    # depth as a share of the side it enters from)
    "lens_dirt": ((3, 0.12, 0.45, 0.0), (5, 0.15, 0.6, 0.08), (7, 0.18, 0.72, 0.14), (9, 0.21, 0.82, 0.2),
                  (12, 0.24, 0.9, 0.26)),
}
#: discs every ``lens_dirt`` image draws (a severity uses the first few)
MAX_SPOTS = 12
#: the blur of what is seen through dirt (a share of the short side) and the veil's grey
DIRT_BLUR, DIRT_VEIL, DIRT_GREY = 0.03, 0.35, 0.75


def srgb_to_linear(x: Tensor) -> Tensor:
    """The sRGB decoding curve (IEC 61966-2-1): encoded values in [0, 1] to linear light."""
    return torch.where(x <= 0.04045, x / 12.92, ((x.clamp(min=0.04045) + 0.055) / 1.055) ** 2.4)


def linear_to_srgb(x: Tensor) -> Tensor:
    """The sRGB encoding curve: linear light in [0, 1] to encoded values."""
    return torch.where(x <= 0.0031308, x * 12.92, 1.055 * x.clamp(min=0.0031308) ** (1 / 2.4) - 0.055)


def _poisson(rate: Tensor, gen: Optional[torch.Generator]) -> Tensor:
    """Poisson counts of ``rate``, drawn on the generator's device (same draws anywhere)."""
    dev = gen.device if gen is not None else rate.device
    return torch.poisson(rate.to(dev), generator=gen).to(rate.device)


def sensor_capture(linear: Tensor, light: float, gain: float, gen: Optional[torch.Generator],
                   full_well: float = FULL_WELL, read_noise: float = READ_NOISE) -> Tensor:
    """Linear light ``linear`` captured with ``light`` times the normal exposure and read
    out at ``gain``: shot noise, read noise, then the gain (not clipped)."""
    electrons = _poisson((linear.clamp(min=0) * (light * full_well)).double(), gen)
    electrons = electrons + _randn(linear.shape, gen, linear.device, torch.float64) * read_noise
    return (electrons * (gain / full_well)).to(linear.dtype)


def _c_low_light(x: Tensor, c, gen: Optional[torch.Generator]) -> Tensor:
    stops, gain_stops = c
    linear = srgb_to_linear(x.clamp(0, 1))
    captured = sensor_capture(linear, 2.0 ** -(stops + gain_stops), 2.0 ** gain_stops, gen)
    return linear_to_srgb(captured.clamp(0, 1))


def _dirt_masks(b: int, h: int, w: int, c, gen: Optional[torch.Generator], device) -> Tuple[Tensor, Tensor]:
    """Opacity (B, 1, H, W) in [0, 1] of the discs, and of the blockage, at level ``c``."""
    spots, radius, opacity, block = c
    draws = _rand((b, MAX_SPOTS, 4), gen, device, torch.float64)  # y, x, radius share, softness
    edge = _rand((b, 2), gen, device, torch.float64)  # which edge, where along it the band bulges
    side = min(h, w)
    yy = torch.arange(h, device=device, dtype=torch.float64).view(1, 1, h, 1).expand(b, 1, h, w)
    xx = torch.arange(w, device=device, dtype=torch.float64).view(1, 1, 1, w).expand(b, 1, h, w)
    d = draws[:, :spots, :, None, None]
    r = side * radius * (0.4 + 0.6 * d[:, :, 2])
    dist = ((yy - d[:, :, 0] * h) ** 2 + (xx - d[:, :, 1] * w) ** 2).sqrt()
    discs = 1 - (1 - opacity * torch.sigmoid((r - dist) / (r * (0.15 + 0.35 * d[:, :, 3])))).prod(1, keepdim=True)
    which = (edge[:, 0] * 4).long().clamp(max=3).view(b, 1, 1, 1)
    to_edge = torch.where(which == 0, yy, torch.where(which == 1, h - 1 - yy, torch.where(which == 2, xx, w - 1 - xx)))
    along = torch.where(which < 2, xx / w, yy / h)
    depth = block * side * (1 - 0.5 * (along - edge[:, 1].view(b, 1, 1, 1)) ** 2)
    band = torch.sigmoid((depth - to_edge) / (0.04 * side)) if block > 0 else torch.zeros_like(discs)
    return discs.float(), band.float()


def _c_lens_dirt(x: Tensor, c, gen: Optional[torch.Generator]) -> Tensor:
    b, _, h, w = x.shape
    discs, band = (m.to(x.dtype) for m in _dirt_masks(b, h, w, c, gen, x.device))
    seen = _gauss_filter(x, DIRT_BLUR * min(h, w)) * (1 - DIRT_VEIL) + DIRT_VEIL * DIRT_GREY
    out = x * (1 - discs) + seen * discs  # through the smudges and drops
    return out * (1 - band) + 0.08 * seen * band  # the blockage: dark, a little light leaks round it


#: name -> function(x, level, generator)
CAMERA: Dict[str, Callable[[Tensor, object, Optional[torch.Generator]], Tensor]] = {
    "low_light": _c_low_light,
    "lens_dirt": _c_lens_dirt,
}
