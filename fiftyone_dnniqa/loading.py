"""Files to tensors: decoding that never crashes a run.

:func:`read_image` turns any file PIL can read into an RGB ``uint8`` tensor
``(3, H, W)``, applying EXIF orientation and converting grayscale, palette,
RGBA, CMYK and 16-bit images correctly. Anything else raises
:class:`ImageLoadError` with a short reason that the engine records per
sample.
"""

from __future__ import annotations

import os
import warnings
from typing import Callable, List, Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageOps, UnidentifiedImageError

from .metrics.base import InputSpec

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


def jpeg_bytes(path: str, max_pixels: Optional[int] = DEFAULT_MAX_PIXELS) -> Optional[torch.Tensor]:
    """The raw bytes of ``path`` if a batched JPEG decoder can take the file as it is.

    That is an RGB or grayscale JPEG without EXIF rotation, within ``max_pixels``;
    only its header is parsed here. Returns None for anything else (CMYK, rotated,
    other formats, unreadable files), which :func:`read_image` decodes instead.
    """
    try:
        with Image.open(path) as im:
            w, h = im.size
            if im.format != "JPEG" or im.mode not in ("RGB", "L") or (max_pixels and w * h > max_pixels):
                return None
            if im.getexif().get(0x0112, 1) not in (None, 1):  # EXIF orientation
                return None
        with open(path, "rb") as f:
            data = f.read()
    except Exception:
        return None
    return torch.frombuffer(bytearray(data), dtype=torch.uint8)


def decode_jpegs(
    items: Sequence[dict], specs: Sequence[InputSpec], device: torch.device,
    max_pixels: Optional[int] = DEFAULT_MAX_PIXELS,
) -> None:
    """Decodes the raw JPEGs of loader ``items`` on ``device`` and prepares them.

    One batched ``torchvision.io.decode_jpeg`` call (nvJPEG on CUDA) for the items
    that carry ``jpeg`` bytes; if it fails, each file is decoded alone, and a file
    that still fails goes through :func:`read_image`, so it gets the same image or
    the same recorded reason as when the loader workers decode it. Items gain
    ``images`` (on ``device``) or ``error`` in place.
    """
    todo = [it for it in items if "jpeg" in it]
    if not todo:
        return
    from torchvision.io import ImageReadMode, decode_jpeg

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torchvision 0.29 deprecates its decoders for TorchCodec
        try:
            images = decode_jpeg([it["jpeg"] for it in todo], mode=ImageReadMode.RGB, device=device)
        except Exception:  # one bad file fails the whole call
            images = []
            for it in todo:
                try:
                    images.append(decode_jpeg(it["jpeg"], mode=ImageReadMode.RGB, device=device))
                except Exception:
                    images.append(None)
    for it, image in zip(todo, images):
        del it["jpeg"]
        path = it.pop("path")
        if image is None:
            try:
                image = read_image(path, max_pixels).to(device)
            except ImageLoadError as e:
                it["error"] = str(e)
                continue
        it["images"] = [prepare(image, s) for s in specs]


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


class SampleImages(torch.utils.data.Dataset):
    """Decodes the images of a list of samples, one item per sample.

    Each item is a dict with ``index``, and either ``images`` (one prepared
    ``uint8`` tensor per distinct input spec), ``references`` likewise, or
    ``error`` (the reason it could not be read), plus ``label`` when
    ``labels`` are given. With ``raw_jpeg``, plain JPEGs come back undecoded
    as ``jpeg`` bytes and their ``path``, for :func:`decode_jpegs` to decode in
    batches on the scoring device. ``postprocess``, if given,
    runs on each decoded item inside the loader worker (the engine scores
    per-image CPU metrics there).
    """

    def __init__(
        self,
        filepaths: Sequence[str],
        specs: Sequence[InputSpec],
        reference_paths: Optional[Sequence[Optional[str]]] = None,
        max_pixels: Optional[int] = DEFAULT_MAX_PIXELS,
        postprocess: Optional[Callable[[dict], dict]] = None,
        labels: Optional[Sequence] = None,
        raw_jpeg: bool = False,
    ):
        if raw_jpeg and postprocess is not None:
            raise ValueError("raw_jpeg items are decoded later: they cannot be postprocessed in the workers")
        self.filepaths = list(filepaths)
        self.specs = list(specs)
        self.reference_paths = reference_paths
        self.max_pixels = max_pixels
        self.postprocess = postprocess
        self.labels = labels
        self.raw_jpeg = raw_jpeg

    def __len__(self) -> int:
        return len(self.filepaths)

    def __getitem__(self, index: int) -> dict:
        item = {"index": index}
        if self.labels is not None:
            item["label"] = self.labels[index]
        image = None
        if self.raw_jpeg:
            data = jpeg_bytes(self.filepaths[index], self.max_pixels)
            if data is not None:
                item["jpeg"], item["path"] = data, self.filepaths[index]
        if "jpeg" not in item:
            try:
                image = read_image(self.filepaths[index], self.max_pixels)
            except ImageLoadError as e:
                item["error"] = str(e)
                return item
        ref = None
        if self.reference_paths is not None:
            ref_path = self.reference_paths[index]
            try:
                ref = read_image(ref_path, self.max_pixels)
            except ImageLoadError as e:
                item["ref_error"] = f"reference {ref_path!r}: {e}"
        if image is not None:
            item["images"] = [prepare(image, s) for s in self.specs]
        if ref is not None:
            item["references"] = [prepare(ref, s) for s in self.specs]
        if self.postprocess is not None:
            item = self.postprocess(item)
        return item


def collate_items(items: List[dict]) -> List[dict]:
    return items
