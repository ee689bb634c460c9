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

In linear light, before clipping, a pixel of linear value ``v`` has mean ``v * 2**-stops``
and variance ``gain * mean / FULL_WELL + (gain * READ_NOISE / FULL_WELL) ** 2``: the
Poisson-Gaussian model of a raw sensor.
"""

from __future__ import annotations

from typing import Callable, Dict, Optional, Tuple

import torch

from .filters import Tensor, _randn

#: photo-electrons for a linear value of 1 at the normal exposure (a small-pixel sensor)
FULL_WELL = 10000.0
#: read noise, electrons (standard deviation)
READ_NOISE = 2.0

#: severity -> (stops darker in linear light, stops of gain the camera adds): the light
#: on the sensor falls by ``stops + gain_stops``; at severity 5 a mid-grey pixel
#: (linear 0.21) collects about 8 electrons
CAMERA_LEVELS: Dict[str, Tuple] = {
    "low_light": ((1.0, 1.0), (2.0, 1.5), (3.0, 2.0), (4.0, 2.5), (5.0, 3.0)),
}


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


#: name -> function(x, level, generator)
CAMERA: Dict[str, Callable[[Tensor, object, Optional[torch.Generator]], Tensor]] = {
    "low_light": _c_low_light,
}
