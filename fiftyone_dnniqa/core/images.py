"""Images as tensors: decoding that never crashes a run, and the input a metric asks for.

:func:`read_image` turns any file PIL can read into an RGB ``uint8`` tensor
``(3, H, W)``, applying EXIF orientation and converting grayscale, palette,
RGBA, CMYK and 16-bit images correctly. Anything else raises
:class:`ImageLoadError` with a short reason that the engine records per
sample. :class:`InputSpec` says how a metric wants its images sized;
:func:`prepare` applies it.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from typing import Optional

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageOps, UnidentifiedImageError


@dataclass(frozen=True)
class InputSpec:
    """What a metric wants its images to look like before ``score``.

    Attributes:
        resize: ``None`` scores at native resolution; an int resizes the
            shorter side to that many pixels (then ``crop`` applies).
        crop: side of a square center crop taken after ``resize``.
        max_side: native-resolution images whose longer side exceeds this are
            downscaled to it (``None``: never).
    """

    resize: Optional[int] = None
    crop: Optional[int] = None
    max_side: Optional[int] = None

    @property
    def fixed_size(self) -> bool:
        """Whether every image comes out the same size (so batches stack)."""
        return self.crop is not None


#: images above this many pixels are refused unless the caller raises it
DEFAULT_MAX_PIXELS = 100_000_000


class ImageLoadError(Exception):
    """A file could not be turned into an image; ``str(e)`` is the reason."""


def read_image(path: str, max_pixels: Optional[int] = DEFAULT_MAX_PIXELS) -> torch.Tensor:
    """Decodes ``path`` into an RGB ``uint8`` tensor of shape ``(3, H, W)``.

    Raises:
        ImageLoadError: missing, empty, truncated, oversized or non-image files
    """
    if not path:
        raise ImageLoadError("no filepath")
    if not os.path.exists(path):
        raise ImageLoadError("missing file" if not os.path.islink(path) else "broken symlink")
    if not os.path.isfile(path):
        raise ImageLoadError("not a regular file")
    if os.path.getsize(path) == 0:
        raise ImageLoadError("empty file (0 bytes)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as im:
                w, h = im.size
                if max_pixels and w * h > max_pixels:
                    raise ImageLoadError(
                        f"image too large ({w}x{h} > {max_pixels} pixels); raise max_pixels to score it"
                    )
                im.load()
                return _to_rgb_tensor(im)
    except ImageLoadError:
        raise
    except UnidentifiedImageError:
        raise ImageLoadError("not an image (unrecognised format)") from None
    except Image.DecompressionBombError as e:
        raise ImageLoadError(f"image too large ({e})") from None
    except (OSError, SyntaxError, ValueError, EOFError) as e:
        msg = str(e) or type(e).__name__
        if "truncat" in msg.lower() or isinstance(e, EOFError):
            msg = f"truncated or corrupt file ({msg})"
        raise ImageLoadError(msg) from None


def _to_rgb_tensor(im: Image.Image) -> torch.Tensor:
    im = ImageOps.exif_transpose(im)
    if im.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        arr = np.asarray(im, dtype=np.float64)
        if im.mode == "F":
            top = 1.0 if arr.max(initial=0) <= 1.0 else 65535.0
        else:
            top = 65535.0
        arr = np.clip(arr / top * 255.0 + 0.5, 0, 255).astype(np.uint8)
        arr = np.repeat(arr[..., None], 3, axis=2)
    else:
        if im.mode == "P" and "transparency" in im.info:
            im = im.convert("RGBA")
        if im.mode != "RGB":
            im = im.convert("RGB")
        arr = np.array(im)  # a writable copy torch can own
    return torch.from_numpy(arr).permute(2, 0, 1).contiguous()


def prepare(image: torch.Tensor, spec: InputSpec) -> torch.Tensor:
    """Resizes/crops a ``uint8`` image ``(3, H, W)`` as ``spec`` asks."""
    _, h, w = image.shape
    size = None
    if spec.resize is not None:
        s = spec.resize / min(h, w)
        size = (max(1, round(h * s)), max(1, round(w * s)))
    elif spec.max_side is not None and max(h, w) > spec.max_side:
        s = spec.max_side / max(h, w)
        size = (max(1, round(h * s)), max(1, round(w * s)))
    if size is not None and size != (h, w):
        x = image.unsqueeze(0).float()
        x = F.interpolate(x, size=size, mode="bilinear", antialias=True, align_corners=False)
        image = x.round_().clamp_(0, 255).to(torch.uint8)[0]
    if spec.crop is not None:
        c = spec.crop
        _, h, w = image.shape
        if h < c or w < c:  # only without ``resize``: pad with black
            image = F.pad(image, (0, max(0, c - w), 0, max(0, c - h)))
            _, h, w = image.shape
        top, left = (h - c) // 2, (w - c) // 2
        image = image[:, top:top + c, left:left + c]
    return image


def to_float(batch: torch.Tensor) -> torch.Tensor:
    """``uint8`` images to float in ``[0, 1]``."""
    return batch.float().div_(255.0)
