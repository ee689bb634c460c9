"""Video datasets: low-quality episodes as clips, and videos ranked by their summaries.

Frame scores are the frame field ``frames.<field>`` that ``compute_quality(video_view,
metric, frame_step=N)`` writes on every N-th frame (1, 1 + N, ...), and the per-video
summaries ``<field>_mean``, ``<field>_min`` and ``<field>_low_share`` beside them.

Segments
--------
A sampled frame is *low* when its score is worse than ``level`` in the metric's direction
(strictly below it where higher is better, above it where lower is better). A *segment* is
a run of low frames among the scored frames of one video, taken in frame order, where each
low frame follows the previous one by at most ``step * (1 + max_gap)`` frames: the frames
between two sampled frames (never scored) do not break a segment, nor do up to ``max_gap``
sampled frames in a row without a score (frames that failed to decode); a scored frame that
is not low does. A segment counts only with at least ``min_length`` low frames. Its support
is ``[first low frame, last low frame]``, so a true episode ``[a, b]`` sampled every ``s``
frames is found as ``[a', b']`` with ``a <= a' < a + s`` and ``b - s < b' <= b``.

``step`` is the run's ``frame_step`` when its record holds one, else the smallest distance
between two scored frames of the video.

The default ``level`` is the one the run recorded (``low_level``: the level its
``<field>_low_share`` counts against; by default the 20th percentile of quality over the
frames it scored); for a field without a run, the same percentile of the view's scored
frames (:func:`~fiftyone_dnniqa.scoring.video_fields.default_low_level`). ``quantile=q``
instead sets it to that quantile of the view's scored frames in the metric's direction
(the worst ``q`` of the frames are low).

:func:`hard_segments` stores the segments of the view's videos as ``TemporalDetections``
(``<field>_segments``: label, number of low frames, their mean and worst score, the
level) and returns ``to_clips`` of them: a view of one clip per segment that tags, saves
and exports like any view (:func:`mark_segments` tags the segments and saves the view).
"""

from __future__ import annotations

from dataclasses import dataclass, field as dc_field
from typing import List, Optional, Tuple

import fiftyone as fo
import numpy as np
from fiftyone import ViewField as F

from ..scoring.runs import list_quality_runs, load_quality_run
from ..scoring.video_fields import FLOAT_SUMMARIES, default_low_level, segments_field
from .difficulty import save_hard_view
from .fields import field_direction
from .targets import to_floats

__all__ = [
    "DEFAULT_MIN_LENGTH", "SUMMARIES", "Segment", "SegmentsFound",
    "frame_field", "low_runs", "run_level", "default_level", "find_segments",
    "hard_segments", "segments_clips", "mark_segments", "worst_videos", "segments_field_for",
]

#: low sampled frames a segment needs by default
DEFAULT_MIN_LENGTH = 2
#: per-video summaries beside a video run's frame field: ``<field>_<name>`` (mean, min, low_share)
SUMMARIES = FLOAT_SUMMARIES


@dataclass
class Segment:
    """One run of low sampled frames of one video (frame numbers are 1-based)."""

    sample_id: str
    first: int
    last: int
    n_low: int
    mean: float
    worst: float

    @property
    def support(self) -> Tuple[int, int]:
        return self.first, self.last


@dataclass
class SegmentsFound:
    """The segments of a view and what found them."""

    field: str
    level: float
    higher_is_better: bool
    min_length: int
    max_gap: int
    segments: List[Segment] = dc_field(default_factory=list)
    steps: dict = dc_field(default_factory=dict)  # sample id -> sampling step used
    n_videos: int = 0
    n_frames: int = 0  # scored frames read

    def by_video(self) -> dict:
        """``{sample_id: [(first, last), ...]}`` in frame order."""
        out = {}
        for s in self.segments:
            out.setdefault(s.sample_id, []).append(s.support)
        return out


def frame_field(field: str) -> str:
    """``field`` without a leading ``frames.``."""
    return field[len("frames."):] if field.startswith("frames.") else field


def segments_field_for(field: str) -> str:
    """The sample field :func:`hard_segments` stores ``field``'s segments in by default
    (deleting or renaming the run takes it along)."""
    return segments_field(field)


def _step_of(frame_numbers: np.ndarray, step: Optional[int]) -> int:
    if step is not None:
        return max(int(step), 1)
    d = np.diff(np.sort(frame_numbers))
    d = d[d > 0]
    return int(d.min()) if d.size else 1


def low_runs(frame_numbers, values, level: float, higher_is_better: bool = True,
             min_length: int = DEFAULT_MIN_LENGTH, step: Optional[int] = None,
             max_gap: int = 1) -> Tuple[List[Tuple[int, int, int, float, float]], int]:
    """The segments of one video (see the module docstring), no FiftyOne.

    Args:
        frame_numbers, values: the video's frames and their scores (NaN or None: not
            scored; dropped).
        step: the sampling step; None: the smallest distance between scored frames.

    Returns:
        ``([(first, last, n_low, mean, worst), ...], step)``, in frame order.
    """
    if int(min_length) < 1:
        raise ValueError("min_length must be at least 1")
    if int(max_gap) < 0:
        raise ValueError("max_gap must be non-negative")
    fn = np.asarray(frame_numbers, dtype=float)
    v = to_floats(values)
    ok = np.isfinite(v) & np.isfinite(fn)
    fn, v = fn[ok].astype(np.int64), v[ok]
    order = np.argsort(fn, kind="stable")
    fn, v = fn[order], v[order]
    step = _step_of(fn, step)
    low = v < level if higher_is_better else v > level
    # a low frame continues the run of the scored frame before it when that one is low
    # too and close enough; every other low frame starts a run
    near = np.diff(fn) <= step * (1 + int(max_gap))
    continues = np.concatenate([[False], low[:-1] & near]) & low
    at = np.flatnonzero(low)  # the low frames; each run is a contiguous stretch of them
    if not at.size:
        return [], step
    bounds = np.flatnonzero(~continues[at])
    n = np.diff(np.concatenate([bounds, [at.size]]))
    lows = v[at]
    means = np.add.reduceat(lows, bounds) / n
    worst = (np.minimum if higher_is_better else np.maximum).reduceat(lows, bounds)
    firsts, lasts = fn[at[bounds]], fn[at[bounds + n - 1]]
    keep = n >= int(min_length)
    runs = [(int(a), int(b), int(c), float(m), float(w))
            for a, b, c, m, w in zip(firsts[keep], lasts[keep], n[keep], means[keep], worst[keep])]
    return runs, step


def _video_run(samples, field: str):
    """The config of the quality run on video of ``field``, or None."""
    ds = samples._root_dataset
    key = frame_field(field)
    if key not in list_quality_runs(ds):
        return None
    config = ds.get_run_info(key).config
    return config if getattr(config, "frame_step", None) is not None else None


def run_level(samples, field: str) -> Optional[float]:
    """The quality level the video run of ``field`` used for its low shares (the
    ``low_level`` it was given, else the one it computed), or None."""
    config = _video_run(samples, field)
    if config is None:
        return None
    level = getattr(config, "low_level", None)
    if level is None:
        level = getattr(load_quality_run(samples, frame_field(field)), "low_level", None)
    return None if level is None else float(level)


def _check_video(samples, field):
    if samples.media_type != "video":
        raise ValueError(f"this is a {samples.media_type} collection; segments need videos")
    key = frame_field(field)
    if not samples._root_dataset.has_frame_field(key):
        raise ValueError(f"'{key}' is not a frame field of dataset '{samples._root_dataset.name}'"
                         " (score the videos with compute_quality(..., frame_step=N) first)")
    return key


def default_level(samples, field: str, higher_is_better: bool, quantile: Optional[float] = None,
                  scores=None) -> float:
    """The level of :func:`find_segments` when none is given (see the module docstring);
    ``scores``: the view's frame scores, read from ``samples`` when None."""
    if quantile is None:
        recorded = run_level(samples, field)
        if recorded is not None:
            return recorded
    elif not 0 < quantile < 1:
        raise ValueError("quantile must be in (0, 1)")
    if scores is None:
        scores = to_floats(samples.values(f"frames.{frame_field(field)}", unwind=True))
    scores = np.asarray(scores, float)
    scores = scores[np.isfinite(scores)]
    if not scores.size:
        raise ValueError(f"no scored frames in '{frame_field(field)}' to set a level from")
    if quantile is None:
        return default_low_level(scores.tolist(), higher_is_better)
    return float(np.quantile(scores, quantile if higher_is_better else 1 - quantile))


def find_segments(samples, field: str, level: Optional[float] = None,
                  min_length: int = DEFAULT_MIN_LENGTH, max_gap: int = 1,
                  step: Optional[int] = None, higher_is_better: Optional[bool] = None,
                  quantile: Optional[float] = None) -> SegmentsFound:
    """The low-quality segments of every video of ``samples`` (see the module docstring);
    reads the frames with one ``values()`` call and writes nothing.

    Args:
        field: the frame field (``iqa_aligned`` or ``frames.iqa_aligned``).
        level: frames worse than this are low (default: see the module docstring).
        quantile: the level is this quantile of the view's scored frames instead.
        min_length: low sampled frames a segment needs.
        max_gap: sampled frames in a row without a score that may lie inside a segment.
        step: the sampling step (default: the run's, else inferred per video).
        higher_is_better: the direction (default: the run's).
    """
    key = _check_video(samples, field)
    hib = field_direction(samples, key, higher_is_better)
    ids, frame_numbers, scores = samples.values(["id", "frames.frame_number", f"frames.{key}"])
    if step is None:
        config = _video_run(samples, key)
        step = None if config is None else int(config.frame_step)
    if level is None:
        flat = to_floats([x for per in scores for x in (per or [])])
        level = default_level(samples, key, hib, quantile, scores=flat)
    found = SegmentsFound(field=key, level=float(level), higher_is_better=hib,
                          min_length=int(min_length), max_gap=int(max_gap), n_videos=len(ids))
    for sid, fns, vals in zip(ids, frame_numbers, scores):  # loop over videos
        fns, vals = fns or [], vals or []
        runs, used = low_runs(fns, vals, level, hib, min_length, step, max_gap)
        found.steps[sid] = used
        found.n_frames += int(np.isfinite(to_floats(vals)).sum()) if vals else 0
        found.segments += [Segment(sid, *r) for r in runs]
    return found


def _declare_segments_field(samples, name: str):
    ds = samples._root_dataset
    if ds.has_sample_field(name):
        f = ds.get_field(name)
        if getattr(f, "document_type", None) is not fo.TemporalDetections:
            raise ValueError(f"'{name}' is a field of another type; pick another segments_field")
        return
    ds.add_sample_field(name, fo.EmbeddedDocumentField, embedded_doc_type=fo.TemporalDetections)


def hard_segments(samples, field: str, level: Optional[float] = None,
                  min_length: int = DEFAULT_MIN_LENGTH, max_gap: int = 1,
                  step: Optional[int] = None, higher_is_better: Optional[bool] = None,
                  quantile: Optional[float] = None, segments_field: Optional[str] = None,
                  label: str = "low quality"):
    """A ``to_clips`` view of the low-quality segments of ``samples``' videos, one clip per
    segment, in video and frame order: :func:`find_segments` (same arguments), then
    :func:`segments_clips`."""
    found = find_segments(samples, field, level=level, min_length=min_length, max_gap=max_gap,
                          step=step, higher_is_better=higher_is_better, quantile=quantile)
    return segments_clips(samples, found, segments_field=segments_field, label=label)


def segments_clips(samples, found: SegmentsFound, segments_field: Optional[str] = None,
                   label: str = "low quality"):
    """Stores ``found`` on ``samples``' videos as ``TemporalDetections`` in ``segments_field``
    (default ``<field>_segments``; a video without segments gets None), each with ``label``,
    ``n_low``, ``mean``, ``worst`` and ``level``, and returns ``to_clips`` of them (the clips
    carry it as a ``Classification``)."""
    if getattr(samples, "_is_clips", False):
        raise ValueError("segments are stored on whole videos: pass the videos' view, not a clips view")
    name = segments_field or segments_field_for(found.field)
    _declare_segments_field(samples, name)
    per_video = {sid: [] for sid in found.steps}
    for s in found.segments:
        per_video[s.sample_id].append(fo.TemporalDetection(
            label=label, support=[s.first, s.last], n_low=s.n_low, mean=s.mean, worst=s.worst,
            level=found.level))
    samples.set_values(name, {sid: fo.TemporalDetections(detections=d) if d else None
                              for sid, d in per_video.items()}, key_field="id")
    return samples.to_clips(name)


def mark_segments(clips, tag: Optional[str] = None, view_name: Optional[str] = None) -> dict:
    """Tags the segments of a :func:`hard_segments` view (label tags on the videos'
    ``TemporalDetections``, so they outlive the view) and saves the view, each when given;
    returns ``count`` and ``unit`` ("segments"), ``tag``/``tagged`` and ``view_name`` as
    done."""
    field = getattr(clips, "_classification_field", None)
    if not getattr(clips, "_is_clips", False) or not field:
        raise ValueError("mark_segments takes the clips view of hard_segments()")
    out = {"count": clips.count(), "unit": "segments"}
    if view_name:
        out["view_name"] = save_hard_view(clips, view_name, overwrite=True)
    if tag:
        if not isinstance(tag, str):
            raise ValueError("tag must be a non-empty string")
        clips.tag_labels(tag, label_fields=field)
        out["tag"], out["tagged"] = tag, out["count"]
    return out


def worst_videos(samples, field: str, by: str = "low_share", k: Optional[int] = None,
                 higher_is_better: Optional[bool] = None):
    """``samples``' videos sorted by one of their summaries, worst first (only videos that
    have it): ``low_share`` (the share of low frames, higher is worse), ``mean`` (in the
    metric's direction) or ``min`` (the lowest frame score: the worst frame where higher is
    better; refused where lower is better, since it is then the best frame); the first
    ``k`` when given."""
    if by not in SUMMARIES:
        raise ValueError(f"by must be one of {', '.join(SUMMARIES)}, not {by!r}")
    key = frame_field(field)
    path = f"{key}_{by}"
    if not samples._root_dataset.has_sample_field(path):
        raise ValueError(f"no summary field '{path}': score the videos with "
                         "compute_quality(..., frame_step=N) first")
    hib = field_direction(samples, key, higher_is_better)
    if by == "min" and not hib:
        raise ValueError(f"'{path}' holds each video's best frame ('{key}': lower is better); "
                         "rank by low_share or mean")
    worse_high = True if by == "low_share" else not hib
    view = samples.match(F(path).exists()).sort_by(path, reverse=worse_high)
    return view if k is None else view.limit(int(k))
