"""Image corruptions on tensors (CPU or GPU), and sweeps built from them.

Images are float tensors ``(B, 3, H, W)`` or ``(3, H, W)``, RGB in ``[0, 1]``.
Two published suites and a camera model, each with severities 1..5:

* **Dodge & Karam (2016)** (:mod:`.dodge_karam`): Gaussian blur, Gaussian
  noise, JPEG, JPEG 2000 and contrast reduction, the paper's ranges spread
  evenly over the five severities (:data:`DK_LEVELS`).
* **ImageNet-C** (Hendrycks & Dietterich 2019) (:mod:`.imagenet_c`): 15
  common corruptions plus 4 held-out extras, with the constants of the
  authors' released code as carried by ``imagecorruptions``
  (:data:`IMAGENET_C_LEVELS`), re-implemented on tensors.
* **camera** (:mod:`.camera`): ``low_light``, an under-exposed capture with the shot
  and read noise of the gain that partly makes up for it, and ``lens_dirt``, smudges,
  drops and a partial blockage on the lens (:data:`CAMERA_LEVELS`).

:func:`~.compound.compose` (:mod:`.compound`) applies several corruptions to one image in
the order a camera would (scene, lens, blur, exposure, noise, pixels, compression).

:func:`apply_corruption` (:mod:`.table`) applies any of them by name and
severity; all randomness goes through the optional ``generator``, so a
seeded generator repeats its result, and a CPU generator gives the same
draws whatever device the images are on. :func:`build_sweep`
(:mod:`.sweep`) writes a dataset of corrupted copies of a view's images.
"""

from ..core.lazy import lazy_exports
from .camera import CAMERA_LEVELS
from .dodge_karam import CORRUPTIONS, DK_LEVELS, contrast, corrupt, gaussian_blur, gaussian_noise, jpeg, jpeg2000
from .imagenet_c import IMAGENET_C_LEVELS
from .table import SUITES, apply_corruption, corruption_level, list_corruptions

#: the names of :mod:`.sweep`, imported on first use (PEP 562): sweeps write FiftyOne
#: datasets, the corruptions themselves need no FiftyOne
_SWEEP = ("DEFAULT_CROP", "DEFAULT_RESIZE", "build_sweep", "resolve_corruptions", "save_png")

__all__ = [
    "gaussian_blur", "gaussian_noise", "contrast", "jpeg", "jpeg2000", "corrupt", "CORRUPTIONS",
    "apply_corruption", "corruption_level", "list_corruptions", "SUITES", "DK_LEVELS", "IMAGENET_C_LEVELS",
    "CAMERA_LEVELS",
    "build_sweep", "save_png", "resolve_corruptions", "DEFAULT_RESIZE", "DEFAULT_CROP",
]


__getattr__, __dir__ = lazy_exports(__name__, dict.fromkeys(_SWEEP, ".sweep"), __all__)
