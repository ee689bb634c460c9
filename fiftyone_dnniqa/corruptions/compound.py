"""Several degradations at once, in the order a camera produces them.

Every corruption of the suites with a family (:data:`FAMILY_OF`) belongs to one stage of
the capture (:data:`PIPELINE`): the scene (haze, fog, low contrast), the front of the lens
(snow, frost, spatter, dirt), the optics and the motion during the exposure (blur), the
sensor (the exposure, then the sensor noise: ``low_light`` already carries the shot and
read noise of its own gain, a noise step adds a noisier sensor or processing grain), the
resampling (pixelation) and last the encoder (compression). Blur comes before the noise
because both defocus and motion act on the light before the photosites count it; an
image blurred after its noise (the order of a denoising step) is a different image, which
:func:`compose` makes with ``order="given"``.

:func:`compose` applies ``(name, severity)`` steps in that order, each at its own
severity, with one seeded generator, so one image can be "blur 3" and "noise 4".
"""

from __future__ import annotations

from typing import Dict, Iterable, Optional, Sequence, Tuple

import torch

from .filters import Tensor
from .table import apply_corruption

#: the capture's stages, first to last (each a degradation family)
PIPELINE = ("contrast_haze", "weather_occlusion", "blur", "exposure", "noise", "low_resolution", "compression")
#: corruption name -> its family (the stage of :data:`PIPELINE` it happens at).
#: ``elastic_transform`` (a geometric warp) and ``saturate`` (a colour change) have none
FAMILY_OF: Dict[str, str] = {
    **{n: "blur" for n in ("dk_gaussian_blur", "defocus_blur", "glass_blur", "motion_blur",
                            "zoom_blur", "gaussian_blur")},
    **{n: "noise" for n in ("dk_gaussian_noise", "gaussian_noise", "shot_noise", "impulse_noise",
                             "speckle_noise")},
    **{n: "compression" for n in ("dk_jpeg", "dk_jpeg2000", "jpeg_compression")},
    **{n: "exposure" for n in ("brightness", "low_light")},
    **{n: "contrast_haze" for n in ("dk_contrast", "contrast", "fog")},
    **{n: "weather_occlusion" for n in ("snow", "frost", "spatter", "lens_dirt")},
    "pixelate": "low_resolution",
}

Step = Tuple[str, int]


def step_family(name: str) -> str:
    """The family of corruption ``name``; a ``ValueError`` for one of no family."""
    if name not in FAMILY_OF:
        raise ValueError(f"corruption '{name}' belongs to no family; known: {', '.join(sorted(FAMILY_OF))}")
    return FAMILY_OF[name]


def pipeline_order(steps: Iterable[Step]) -> Tuple[Step, ...]:
    """``steps`` sorted by their family's stage in :data:`PIPELINE` (stable within a stage)."""
    return tuple(sorted(steps, key=lambda s: PIPELINE.index(step_family(s[0]))))


def family_severities(steps: Iterable[Step]) -> Dict[str, int]:
    """``{family: severity}`` of ``steps`` (the largest where a family comes twice)."""
    out: Dict[str, int] = {}
    for name, severity in steps:
        fam = step_family(name)
        out[fam] = max(out.get(fam, 0), int(severity))
    return out


def compose(x: Tensor, steps: Sequence[Step], generator: Optional[torch.Generator] = None,
            order: str = "pipeline") -> Tensor:
    """``x`` ((3, H, W) or (B, 3, H, W) in [0, 1]) degraded by every ``(name, severity)``
    of ``steps``: in the capture's order (``order="pipeline"``, :func:`pipeline_order`) or
    as given (``"given"``). Shape, dtype and device are kept; all draws come from
    ``generator``. No steps returns a copy."""
    if order not in ("pipeline", "given"):
        raise ValueError(f"order must be 'pipeline' or 'given', not {order!r}")
    ordered = pipeline_order(steps) if order == "pipeline" else tuple(steps)
    for name, _ in ordered:
        step_family(name)
    out = x.clone()
    for name, severity in ordered:
        out = apply_corruption(out, name, severity, generator=generator)
    return out
