"""Planning a run on video: its settings and fields, checked before any video is opened.

:func:`video_settings` resolves ``frame_step`` and ``low_level`` for a collection (refusing
them on images, and what a run on video cannot do: objects, to_clips views; reference metrics
are refused by :func:`check_video_metrics`); :func:`check_video_fields` refuses
fields (:mod:`.video_fields`' layout) that cannot hold what the run writes.
"""

from __future__ import annotations

import math
import operator
from typing import Optional

import fiftyone as fo

from .field_checks import describe_field
from .runs import METHOD, extra_field, is_classifications_field
from .scorers import structured
from .video_fields import (FLOAT_SUMMARIES, INT_SUMMARIES, frame_error_path, frame_path, summary_field,
                           video_error_field)


def video_settings(samples, frame_step, low_level, patches_field=None, queued=False) -> Optional[int]:
    """The frame step of a call on ``samples`` (1 by default on video; None on images),
    refusing settings the collection cannot take. A ``queued`` call (``shards=N``) splits
    the videos, whole, into shards (:mod:`.video_execute`), so it is planned as any other."""
    if samples.media_type != "video":
        if frame_step is not None or low_level is not None:
            raise ValueError(f"frame_step and low_level apply to video collections; this one holds "
                             f"{samples.media_type} samples")
        return None
    if getattr(samples, "_is_clips", False):
        raise ValueError("this is a to_clips view, whose clips share their frames with the videos: "
                         "score the videos (the dataset, or a view of whole videos)")
    if patches_field is not None:
        raise ValueError("patches_field scores the objects of images; on video, score the frames "
                         "(or the objects of to_frames(sample_frames=True))")
    try:
        step = 1 if frame_step is None else None if isinstance(frame_step, bool) else operator.index(frame_step)
    except TypeError:
        step = None
    if step is None or step < 1:
        raise ValueError(f"frame_step must be an integer >= 1 (every Nth frame, from frame 1), got {frame_step!r}")
    if low_level is not None and not (isinstance(low_level, (int, float)) and math.isfinite(low_level)):
        raise ValueError(f"low_level must be a finite number, got {low_level!r}")
    return step


def check_video_metrics(metrics) -> None:
    """Metrics a run on video can use: those of single images (no reference)."""
    paired = [m.name for m in metrics if m.needs_reference]
    if paired:
        raise ValueError(f"{', '.join(paired)} compare(s) each image with a reference image; frames of "
                         "videos have none: choose no-reference metrics")


def _fields(field: str, metric):
    """``(path, fits, holds)`` of every field a run on video writes for ``metric``."""
    floats = _of(fo.FloatField)
    if structured(metric):
        out = [(frame_path(field), is_classifications_field, f"labels of {metric.name} (Classifications)")]
        out += [(extra_field(frame_path(field), n), floats, f"{metric.name}'s {n} (floats)")
                for n in getattr(metric, "extra_fields", ())]
        names = INT_SUMMARIES
    else:
        out = [(frame_path(field), floats, "frame scores (floats)")]
        names = FLOAT_SUMMARIES + INT_SUMMARIES
    out.append((frame_error_path(field), _of(fo.StringField), "failure reasons (strings)"))
    out += [(summary_field(field, n), floats if n in FLOAT_SUMMARIES else _of(fo.IntField), f"video {n} values")
            for n in names]
    out.append((video_error_field(field), _of(fo.StringField), "video failure reasons (strings)"))
    return out


def check_video_fields(dataset, field: str, metric, overwrite: bool = False) -> None:
    """Refuses a run on video whose frame or summary fields (:mod:`.video_fields`) exist
    with another type, or (without ``overwrite``) were not written by a quality run on
    video of ``field``."""
    ours = field in dataset.list_runs(method=METHOD) and getattr(
        dataset.get_run_info(field).config, "frame_step", None) is not None
    for path, fits, holds in _fields(field, metric):
        current = dataset.get_field(path)
        if current is None:
            continue
        if not fits(current):
            raise ValueError(f"field '{path}' is {describe_field(current)}, which cannot hold {holds}; "
                             "choose another field")
        if current.read_only:
            raise ValueError(f"field '{path}' is read-only; choose another field")
        if not ours and not overwrite:
            raise ValueError(f"field '{path}' already exists and was not written by a run on video of "
                             f"'{field}'; pass overwrite=True to replace its values or choose another field")


def _of(kind):
    return lambda f: isinstance(f, kind)
