"""The public scoring call: plan, then score here or queue the shards.

:func:`compute_quality` composes the layers below it: the scoring plan and its execution
(:mod:`fiftyone_dnniqa.scoring`) and, for ``shards=N``, the delegated operations of the
plugin (:mod:`fiftyone_dnniqa.app.sharding`).
"""

from __future__ import annotations

from typing import Optional, Sequence, Union

import torch

from .app.sharding import queue_shards
from .core.images import DEFAULT_MAX_PIXELS
from .metrics import QualityMetric
from .scoring import execute_plan, plan_quality
from .scoring.patches import DEFAULT_MARGIN, DEFAULT_MIN_SIDE
from .scoring.plan import ProgressCallback, sync_frames_to_videos


def compute_quality(
    samples,
    metric: Union[str, QualityMetric, Sequence[Union[str, QualityMetric]]] = "aligned",
    field: Union[str, Sequence[str], None] = None,
    device: Union[str, torch.device] = "auto",
    batch_size: Optional[int] = None,
    num_workers: Optional[int] = None,
    overwrite: bool = False,
    skip_failures: bool = True,
    progress: Union[bool, ProgressCallback, None] = None,
    reference_field: Optional[str] = None,
    label_field: Optional[str] = None,
    metric_options: Optional[dict] = None,
    amp: bool = True,
    max_pixels: Optional[int] = DEFAULT_MAX_PIXELS,
    write_every: int = 500,
    shards: Optional[int] = None,
    decode: str = "auto",
    patches_field: Optional[str] = None,
    patch_margin: float = DEFAULT_MARGIN,
    min_patch_side: int = DEFAULT_MIN_SIDE,
    frame_step: Optional[int] = None,
    low_level: Optional[float] = None,
):
    """Scores the images of ``samples`` (or the frames of its videos) with one or several
    quality metrics.

    Args:
        samples: a FiftyOne dataset or view of images, or of videos (then every
            ``frame_step``-th frame is scored in place; ``to_frames`` views are images)
        metric ("aligned"): a registry name or :class:`QualityMetric`, or a list
            of them; each image is decoded once for all of them
        field (None): the field (or list of fields) to store scores in;
            defaults to ``iqa_<metric>``. The field name is also the run key
        device ("auto"): ``"auto"``, ``"cpu"``, ``"cuda"``, ``"cuda:1"``...
        batch_size (None): images per batch (default for fixed-size inputs:
            64 on GPU, 4 on CPU; 8 otherwise); halved on out-of-memory
        num_workers (None): decoding processes (default: up to 4, one per
            core); 0 decodes in the calling process
        overwrite (False): rescore samples that already have a score, and
            allow writing to a field this package did not create
        skip_failures (True): record unreadable images and go on; if False,
            the first failure raises (after the scores so far are saved)
        progress (None): True/False for a progress bar (None: FiftyOne's
            default), or a callable ``f(fraction, label)``
        reference_field (None): filepath field of the reference images for
            full-reference metrics (``psnr``, ``ssim``...)
        label_field (None): a ``Classification`` (or string) field whose
            classes task-guided metrics (``aligned_task``, ``zsclip``) use
            when not given their classes; metrics that rate each image against
            its own label read it per sample
        metric_options (None): options for :func:`create_metric` when
            ``metric`` is a single name
        amp (True): use CUDA autocast for metrics that support it
        max_pixels: refuse images larger than this (decompression bombs)
        write_every (500): samples per database write (and at least every
            10 s); a killed process loses at most the scores since the last write
        shards (None): split the view into this many disjoint id ranges and
            queue one delegated operation per range for ``fiftyone delegated
            launch`` workers (metrics by name only); returns a
            :class:`~fiftyone_dnniqa.scoring.shards.ShardedRun` instead of results.
            On video the ranges hold whole videos (a video's frames are never split):
            each shard writes its videos' frames and summaries, and the last to end
            writes the low shares against the level of the whole view, as one call would
        decode ("auto"): where images are decoded. ``"workers"``: the loader
            workers decode every file with PIL; ``"device"``: the workers read
            plain JPEGs' bytes and the main process decodes them in batches on
            the scoring device (nvJPEG on CUDA) and resizes them there, other
            files as with ``"workers"``; ``"auto"``: ``"device"`` on CUDA, and on
            CPUs of at most 2 cores unless a per-image metric runs in the workers
        patches_field (None): score the objects of this ``Detections`` or ``Polylines``
            field (polylines through their boxes) instead of the images; a
            ``to_patches`` view scores its patches without it. Each object's box,
            grown by ``patch_margin`` and clipped to the image, is cut from the image
            (decoded once for all its objects) and resized as the metric wants; the
            score goes to the object's attribute ``field`` (default ``iqa_<metric>``),
            e.g. ``ground_truth.detections.iqa_aligned``, and why an object has none
            to ``<field>_error`` on the object. The run key,
            ``<patches_field>_<field>``, is the sample field of the mean over the
            sample's objects; ``<key>_min`` holds their minimum. Task-guided metrics
            without ``label_field`` rate each object against its own label
        patch_margin (0.2): context around each box: its width and height grow by
            this fraction (FiftyOne's ``alpha``), half on each side
        min_patch_side (8): boxes with a side under this many image pixels are
            recorded as too small, not scored
        frame_step (None): on video, score frames 1, 1 + N, 1 + 2N... (FiftyOne's frame
            numbers, in decode order; default 1: every frame). Each video is decoded once
            (PyAV, in the loader workers; nothing is written to disk) for all the metrics.
            A frame's score goes to the frame field ``frames.<field>`` (why it has none to
            ``frames.<field>_error``), each video's summaries to ``<field>_mean``,
            ``<field>_min``, ``<field>_low_share``, ``<field>_frames`` (frames scored),
            ``<field>_failed`` and ``<field>_error`` (why the video could not be read); a
            re-run decodes only the videos not finished and scores only their missing frames
            (:mod:`fiftyone_dnniqa.scoring.video_fields`). Needs ``pip install av``
        low_level (None): on video, the quality level of ``<field>_low_share`` (the share
            of a video's sampled frames worse than it, in the metric's direction); default:
            the 20th percentile of quality over all scored frames of the view

    Returns:
        a :class:`QualityRunResults` for a single metric, or a dict mapping
        each field to its results when a list of metrics was given
    """
    queue = shards is not None and shards > 1
    plan = plan_quality(
        samples, metric, field=field, device=device, batch_size=batch_size, num_workers=num_workers,
        overwrite=overwrite, skip_failures=skip_failures, progress=progress,
        reference_field=reference_field, label_field=label_field, metric_options=metric_options,
        amp=amp, max_pixels=max_pixels, write_every=write_every, decode=decode, queued=queue,
        patches_field=patches_field, patch_margin=patch_margin, min_patch_side=min_patch_side,
        frame_step=frame_step, low_level=low_level,
    )
    if queue:
        return queue_shards(plan, shards)
    results = execute_plan(plan)
    if getattr(samples, "_is_frames", False):  # a to_frames view: its images are the videos' frames
        sync_frames_to_videos(samples, plan)
    return results
