"""The fields a run on video writes: the layout analysis and the App read (no FiftyOne here).

``compute_quality(video_view, metric, frame_step=N)`` (N >= 1) scores frames 1, 1 + N,
1 + 2N... of each video (FiftyOne's frame numbers: 1-based, in decode order) and writes,
for a run keyed ``<field>`` (the same default name an image run uses, ``iqa_aligned``):

Frame fields
- ``frames.<field>``: the frame's score (float); a structured metric (``cause``) writes its
  ``Classifications`` here and its extra floats to ``frames.<field>_<name>``
  (``frames.iqa_cause_severity``), as on images
- ``frames.<field>_error``: why a sampled frame has no score (it failed to decode, the
  metric failed on it)

Sample (per-video) fields, over the video's sampled frames that hold a score
- ``<field>_mean``, ``<field>_min``: float (for a float metric; ``min`` is the minimum
  value, whatever the metric's direction)
- ``<field>_low_share``: the share of them worse than the run's quality level (worse in the
  metric's own direction: below it when higher is better, above it otherwise); the level
  is ``low_level=`` or, by default, the 20th percentile of quality (the 20th percentile of
  the values when higher is better, the 80th otherwise) over all sampled frames of the
  view holding a score when the run ends; the run record keeps it (``results.low_level``)
- ``<field>_frames``: sampled frames scored (int), ``<field>_failed``: sampled frames
  without a score (int)
- ``<field>_error``: why the video as a whole could not be read (unreadable, no video
  stream, no frames), or why it ended early (``truncated: 24 of 50 declared frames
  decoded``); None for a video read to its end
- ``<field>_segments``: written by analysis (``hard_segments``), not by scoring: the
  low-quality episodes as ``TemporalDetections``; deleting or renaming the run takes it along

The run record (``load_quality_run``): ``config.frame_step``; ``results.num_samples`` and
``num_todo`` count videos, ``num_scored`` and ``num_failed`` count frames (also as
``num_frames_scored``, ``num_frames_failed``), ``num_videos_failed``, ``low_level``.
"""

from __future__ import annotations

from typing import Dict, List, Optional, Sequence

import numpy as np

from .names import error_field_for

#: the per-video summaries, by suffix: float (mean, min, low share) and int (counts)
FLOAT_SUMMARIES = ("mean", "min", "low_share")
INT_SUMMARIES = ("frames", "failed")

#: default quality level of ``<field>_low_share``: this percentile of quality
LOW_PERCENTILE = 20.0


def frame_path(field: str) -> str:
    """``frames.<field>``: where each sampled frame's score goes."""
    return f"frames.{field}"


def frame_error_path(field: str) -> str:
    """``frames.<field>_error``: why a sampled frame has no score."""
    return f"frames.{error_field_for(field)}"


def summary_field(field: str, name: str) -> str:
    """The per-video sample field ``<field>_<name>`` (``mean``, ``min``, ``low_share``,
    ``frames``, ``failed``)."""
    if name not in FLOAT_SUMMARIES + INT_SUMMARIES:
        raise ValueError(f"unknown video summary '{name}'")
    return f"{field}_{name}"


def segments_field(field: str) -> str:
    """``<field>_segments``: the sample field the low-quality episodes of a run on
    ``field`` (or ``frames.<field>``) are stored in by default."""
    field = field[len("frames."):] if field.startswith("frames.") else field
    return f"{field}_segments"


def video_error_field(field: str) -> str:
    """``<field>_error`` on the video sample: why the video could not be read (whole)."""
    return error_field_for(field)


def summary_fields(field: str, structured: bool = False) -> List[str]:
    """Every per-video sample field a run on ``field`` writes (a structured metric has
    no mean, minimum or low share)."""
    names = INT_SUMMARIES if structured else FLOAT_SUMMARIES + INT_SUMMARIES
    return [summary_field(field, n) for n in names] + [video_error_field(field)]


def sampled(frame_number: int, frame_step: int) -> bool:
    """Whether ``frame_number`` (1-based) is one of frames 1, 1 + step, 1 + 2 step..."""
    return (frame_number - 1) % frame_step == 0


def default_low_level(values: Sequence[float], higher_is_better: bool) -> Optional[float]:
    """The default quality level: the 20th percentile of quality over ``values``."""
    v = np.asarray([x for x in values if x is not None], dtype=float)
    if not v.size:
        return None
    return float(np.percentile(v, LOW_PERCENTILE if higher_is_better else 100.0 - LOW_PERCENTILE))


def video_summary(scores: Sequence[float], failed: int, level: Optional[float],
                  higher_is_better: bool) -> Dict[str, Optional[float]]:
    """The summaries of one video from its sampled frames' scores (``level``: None leaves
    the low share empty)."""
    v = np.asarray(scores, dtype=float)
    out: Dict[str, Optional[float]] = {"frames": int(v.size), "failed": int(failed)}
    if not v.size:
        return dict(out, mean=None, min=None, low_share=None)
    low_share = None
    if level is not None:
        low_share = float((v < level).mean() if higher_is_better else (v > level).mean())
    return dict(out, mean=float(v.mean()), min=float(v.min()), low_share=low_share)
