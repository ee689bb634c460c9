"""The loader: a view's files to batches of prepared images, in worker processes.

:class:`SampleImages` reads each sample's image (and reference) with
:func:`~fiftyone_dnniqa.core.images.read_image`, or hands plain JPEGs over
undecoded for :func:`decode_jpegs` to decode in batches on the scoring
device. Unreadable files become an ``error`` item, never an exception.
"""

from __future__ import annotations

import concurrent.futures.thread
import warnings
from typing import Callable, List, Optional, Sequence

import torch
from PIL import Image

from ..core.images import DEFAULT_MAX_PIXELS, ImageLoadError, InputSpec, prepare, read_image


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
    from torchvision.io import ImageReadMode, decode_jpeg  # deferred: imports torch._dynamo (about 2 s)

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


def batch_loader(data, batch_size: int, num_workers: int, device: torch.device) -> torch.utils.data.DataLoader:
    """The DataLoader every scoring run reads ``data`` through, in order.

    No more workers than batches (than ``data.num_units`` for an ``IterableDataset`` that
    shards its units, such as videos, across workers): a worker started for nothing is shut
    down at once, and one that exits while the loader stops makes torch's SIGCHLD handler
    fail the call.
    """
    units = getattr(data, "num_units", None)
    num_workers = min(num_workers, units if units is not None else -(-len(data) // batch_size))
    return torch.utils.data.DataLoader(
        data, batch_size=batch_size, shuffle=False, num_workers=num_workers,
        collate_fn=collate_items, pin_memory=device.type == "cuda",  # page-locked: asynchronous copies
        persistent_workers=False, prefetch_factor=4 if num_workers else None,
        worker_init_fn=forget_parent_thread_pools,  # unused without workers
    )


def forget_parent_thread_pools(worker_id: int = 0) -> None:
    """Lets a worker forked from a thread-pool thread exit with status 0.

    FiftyOne runs an operator's ``execute`` in a thread pool. A process forked there
    inherits the pool's registry of threads and joins them at exit, its own thread
    included: "cannot join current thread", exit status 1, which torch reports as a crashed
    worker. The threads are gone after the fork; this empties their registry, as CPython's
    fix for gh-88110 does (in releases after 2024-11; never in 3.11).
    """
    concurrent.futures.thread._threads_queues.clear()
