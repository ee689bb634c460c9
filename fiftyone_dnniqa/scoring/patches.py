"""Objects as patches: box geometry, degenerate boxes, and crops cut from one decoded image.

FiftyOne boxes are ``[x, y, w, h]`` relative to the image. A patch is the box grown by a
context ``margin`` (FiftyOne's ``alpha`` of ``compute_patch_embeddings``: width and height
grow by ``100 * margin`` percent, half on each side), clipped to the image, and cut from the
image decoded once for all of its objects. A box that cannot give a patch gets a reason,
never an exception: no box, zero area, outside the image, or a side under ``min_side``
pixels (measured on the clipped box without its margin).

FiftyOne-free: :class:`PatchCropper` runs in the loader workers (or on the device, after
batched decoding in the main process).
"""

from __future__ import annotations

import math
from typing import Optional, Sequence, Tuple

import torch
import torch.nn.functional as F

from ..core.images import InputSpec, prepare

#: the loader's spec in patch mode: the image as decoded, cropped afterwards
NATIVE = InputSpec()
#: default context margin (box width and height grow by 20%, 10% on each side)
DEFAULT_MARGIN = 0.2
#: default minimum side, in image pixels, of a box worth scoring
DEFAULT_MIN_SIDE = 8

Box = Optional[Sequence[float]]


def box_problem(box: Box) -> Optional[str]:
    """Why a box can give no patch whatever the image (None when it may)."""
    if box is None or len(box) != 4:
        return "no bounding box"
    if not all(v is not None and math.isfinite(v) for v in box):
        return "bounding box has non-finite values"
    if box[2] <= 0 or box[3] <= 0:
        return "zero-area box"
    return None


def pixel_box(box: Box, width: int, height: int, margin: float = DEFAULT_MARGIN,
              min_side: int = DEFAULT_MIN_SIDE) -> Tuple[Optional[Tuple[int, int, int, int]], Optional[str]]:
    """The patch of ``box`` in a ``width`` x ``height`` image: ``((left, top, right, bottom),
    None)`` in pixels (right and bottom exclusive), or ``(None, reason)``."""
    reason = box_problem(box)
    if reason:
        return None, reason
    x, y, w, h = (float(v) for v in box)
    # the object itself, clipped: is it big enough?
    ox0, oy0 = max(0.0, x) * width, max(0.0, y) * height
    ox1, oy1 = min(1.0, x + w) * width, min(1.0, y + h) * height
    if ox1 <= ox0 or oy1 <= oy0:
        return None, "box outside the image"
    if ox1 - ox0 < min_side or oy1 - oy0 < min_side:
        return None, (f"box under {min_side} px ({ox1 - ox0:.0f}x{oy1 - oy0:.0f} px in a "
                      f"{width}x{height} image)")
    mx, my = w * margin / 2, h * margin / 2
    eps = 1e-6  # 0.1 * 100 is 10.000000000000002: a box on the pixel grid stays on it
    left = max(0, int(math.floor((x - mx) * width + eps)))
    top = max(0, int(math.floor((y - my) * height + eps)))
    right = min(width, int(math.ceil((x + w + mx) * width - eps)))
    bottom = min(height, int(math.ceil((y + h + my) * height - eps)))
    return (left, top, right, bottom), None


class PatchCropper:
    """Turns a loader item (one decoded image) into one item per object to score.

    Args:
        objects: per loader row, the ``(object index, box, label)`` of its objects
        specs: the metrics' distinct input specs, applied to each crop
        margin, min_side: as :func:`pixel_box`
        scorer: optional per-object postprocess (the engine's worker scorer)

    Returns ``{"index": row, "objects": [...]}``; each object item has ``index`` (the
    object's index), ``label``, and ``images`` (and ``references``) or ``error``.
    """

    def __init__(self, objects, specs: Sequence[InputSpec], margin: float = DEFAULT_MARGIN,
                 min_side: int = DEFAULT_MIN_SIDE, scorer=None):
        self.objects = objects
        self.specs = list(specs)
        self.margin = margin
        self.min_side = min_side
        self.scorer = scorer

    def __call__(self, item: dict) -> dict:
        image = item["images"][0] if item.get("images") else None
        ref = item["references"][0] if item.get("references") else None
        if image is not None and ref is not None and ref.shape[1:] != image.shape[1:]:
            ref = _resize_like(ref, image)  # the same box, on the reference's pixels
        out = []
        for k, box, label in self.objects[item["index"]]:
            obj = {"index": k, "label": label}
            if image is None:
                obj["error"] = item.get("error", "image not decoded")
                out.append(obj)
                continue
            bounds, reason = pixel_box(box, image.shape[2], image.shape[1], self.margin, self.min_side)
            if reason:
                obj["error"] = reason
                out.append(obj)
                continue
            left, top, right, bottom = bounds
            crop = image[:, top:bottom, left:right].contiguous()  # a copy: never ships the whole image
            obj["images"] = [prepare(crop, s) for s in self.specs]
            if ref is not None:
                ref_crop = ref[:, top:bottom, left:right].contiguous()
                obj["references"] = [prepare(ref_crop, s) for s in self.specs]
            elif "ref_error" in item:
                obj["ref_error"] = item["ref_error"]
            if self.scorer is not None:
                obj = self.scorer(obj)
            out.append(obj)
        return {"index": item["index"], "objects": out}


def batch_objects(batch, cropper: PatchCropper) -> list:
    """The object items of a loader batch: cut in the workers already, or by ``cropper``
    now (images decoded on the device, or unreadable ones)."""
    return [o for item in batch for o in (item if "objects" in item else cropper(item))["objects"]]


def _resize_like(ref: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
    x = F.interpolate(ref.unsqueeze(0).float(), size=tuple(image.shape[1:]), mode="bilinear",
                      antialias=True, align_corners=False)
    return x.round_().clamp_(0, 255).to(torch.uint8)[0]
