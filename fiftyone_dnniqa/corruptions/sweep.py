"""Corruption sweeps: a dataset of known corruptions of a view's images.

:func:`build_sweep` writes one image per (clean image, corruption,
severity), plus the clean image itself (severity 0), and returns a dataset
whose samples carry ``corruption``, ``severity``, ``clean_id`` (the source
sample's id), ``reference_filepath`` (the clean image, for full-reference
metrics) and copies of the source's label fields. It is the raw material of
alignment studies: how a metric and a model's accuracy move together as
conditions degrade.
"""

from __future__ import annotations

import hashlib
import os
from typing import Callable, Optional, Sequence

import fiftyone as fo
import numpy as np
import torch
from PIL import Image

from ..core.images import ImageLoadError, InputSpec, prepare, read_image, to_float
from .table import SUITES, apply_corruption, list_corruptions

#: ImageNet-C's protocol: shorter side to 256, then a 224 center crop
DEFAULT_RESIZE, DEFAULT_CROP = 256, 224


def resolve_corruptions(corruptions=None) -> list:
    """Corruption names from names and/or suite names (default: every suite)."""
    if corruptions is None:
        return list_corruptions()
    if isinstance(corruptions, str):
        corruptions = [corruptions]
    names = []
    valid = set(list_corruptions())
    for c in corruptions:
        if c in SUITES:
            names += list(SUITES[c])
        elif c in valid:
            names.append(c)
        else:
            raise ValueError(f"unknown corruption or suite '{c}'; suites: {', '.join(SUITES)}; "
                             f"corruptions: {', '.join(sorted(valid))}")
    return list(dict.fromkeys(names))


def _seed(*parts) -> int:
    return int.from_bytes(hashlib.sha1("|".join(map(str, parts)).encode()).digest()[:8], "little") >> 1


def save_png(x: torch.Tensor, path: str) -> None:
    """Writes a float image ``(3, H, W)`` in [0, 1] as an 8-bit PNG, atomically."""
    arr = (x.clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 0).cpu().numpy()
    tmp = path + ".part"
    Image.fromarray(np.ascontiguousarray(arr)).save(tmp, format="PNG")
    os.replace(tmp, path)  # a killed run never leaves a half-written image


def build_sweep(
    samples,
    output_dir: str,
    name: Optional[str] = None,
    corruptions=None,
    severities: Sequence[int] = (1, 2, 3, 4, 5),
    resize: Optional[int] = DEFAULT_RESIZE,
    crop: Optional[int] = DEFAULT_CROP,
    label_fields: Optional[Sequence[str]] = None,
    seed: int = 0,
    device: str = "cpu",
    overwrite: bool = False,
    persistent: bool = False,
    progress: Optional[Callable[[float, str], None]] = None,
):
    """Builds a corruption sweep dataset from the images of ``samples``.

    Args:
        samples: a FiftyOne dataset or view of clean images
        output_dir: folder for the images (``clean/`` and one folder per
            corruption and severity); existing files are reused, so an
            interrupted sweep resumes
        name (None): the new dataset's name (default ``<source>-sweep``)
        corruptions (None): corruption and/or suite names
            (``"imagenet_c"``, ``"imagenet_c_extra"``, ``"dodge_karam"``);
            default every suite
        severities: severities 1..5 to apply (0, the clean image, is always
            included)
        resize, crop (256, 224): shorter side and center crop applied before
            corrupting (ImageNet-C's protocol); ``None`` keeps native sizes
        label_fields (None): fields copied from the source samples (default:
            every label field)
        seed (0): corruptions are seeded by (seed, source id, corruption,
            severity), so a sweep is reproducible
        device ("cpu"): where the corruptions run (``"cuda"`` works)
        overwrite (False): replace an existing dataset of that name
        persistent (False): make the dataset persistent
        progress (None): callable ``f(fraction, label)``

    Returns:
        the sweep ``fo.Dataset``; images that cannot be read are skipped and
        listed in ``dataset.info["skipped"]``
    """
    names = resolve_corruptions(corruptions)
    severities = sorted({int(s) for s in severities})
    if any(s < 1 or s > 5 for s in severities):
        raise ValueError("severities must be in 1..5 (0, the clean image, is always included)")
    if crop is not None and resize is None:
        resize = crop
    spec = InputSpec(resize=resize, crop=crop)
    dataset_name = name or f"{samples._root_dataset.name}-sweep"
    if fo.dataset_exists(dataset_name):
        if not overwrite:
            raise ValueError(f"dataset '{dataset_name}' exists; pass overwrite=True or another name")
        fo.delete_dataset(dataset_name)
    schema = samples.get_field_schema()
    if label_fields is None:
        label_fields = [f for f, ft in schema.items()
                        if isinstance(ft, fo.EmbeddedDocumentField) and issubclass(ft.document_type, fo.Label)]
    for f in label_fields:
        if f not in schema:
            raise ValueError(f"label field '{f}' is not a field of the collection")

    os.makedirs(output_dir, exist_ok=True)
    dev = torch.device(device)
    dataset = fo.Dataset(dataset_name, persistent=persistent)
    dataset.info["sweep"] = {"source": samples._root_dataset.name, "corruptions": names,
                             "severities": severities, "resize": resize, "crop": crop, "seed": seed}
    ids, paths = samples.values(["id", "filepath"])
    labels = {f: samples.values(f) for f in label_fields}
    skipped = {}
    batch = []
    total = len(ids)
    for k, (sid, src) in enumerate(zip(ids, paths)):
        stem = f"{k:07d}-{os.path.splitext(os.path.basename(src))[0][:60]}"
        stem = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in stem)
        try:
            clean = to_float(prepare(read_image(src), spec).unsqueeze(0)).to(dev)
        except ImageLoadError as e:
            skipped[sid] = str(e)
            continue
        extra = {f: (v[k].copy() if v[k] is not None else None) for f, v in labels.items()}
        clean_path = os.path.join(output_dir, "clean", stem + ".png")
        os.makedirs(os.path.dirname(clean_path), exist_ok=True)
        if not os.path.exists(clean_path):
            save_png(clean[0], clean_path)
        batch.append(fo.Sample(filepath=clean_path, corruption="clean", severity=0, clean_id=sid,
                               reference_filepath=clean_path, **extra))
        for cname in names:
            for sev in severities:
                out = os.path.join(output_dir, cname, str(sev), stem + ".png")
                if not os.path.exists(out):
                    os.makedirs(os.path.dirname(out), exist_ok=True)
                    gen = torch.Generator().manual_seed(_seed(seed, sid, cname, sev))
                    save_png(apply_corruption(clean[0], cname, sev, generator=gen), out)
                batch.append(fo.Sample(
                    filepath=out, corruption=cname, severity=sev, clean_id=sid, reference_filepath=clean_path,
                    **{f: (v.copy() if v is not None else None) for f, v in extra.items()}))
        if len(batch) >= 1000:
            dataset.add_samples(batch, progress=False)
            batch = []
        if progress is not None:
            progress((k + 1) / max(total, 1), f"corrupted {k + 1} of {total} images")
    if batch:
        dataset.add_samples(batch, progress=False)
    if skipped:
        dataset.info["skipped"] = skipped
    dataset.save()
    return dataset
