"""Frame-level performance targets of video datasets, and frame quality against them.

An evaluation of frame fields leaves its outcomes on the frames:
``evaluate_detections("frames.pred", gt_field="frames.gt", eval_key=k)`` writes the counts
``frames.<k>_tp``, ``_fp`` and ``_fn`` (their sums per video on the samples);
``evaluate_classifications`` on frame fields writes ``frames.<k>`` (True/False per frame;
"TP"/"FP"/"TN"/"FN" for the binary method) and the per-video mean. :func:`frame_targets`
reads them one row per frame, with the kinds and conventions of
:func:`~fiftyone_dnniqa.analysis.targets.get_target` (``correct``, ``confidence``; ``f1``,
``precision``, ``recall``, ``tp``, ``fp``, ``fn``; a segmentation's ``accuracy`` ...).

:func:`frame_statistics` relates the frames' quality (``frames.<field>``, written by
``compute_quality(..., frame_step=N)``) to them with the statistics used for images:
Spearman, Kendall and Pearson with bootstrap intervals and, for a 0/1 target, the AUROC of
low quality flagging errors (:func:`~fiftyone_dnniqa.analysis.correlation.rank_fields`),
and the target per quality bin. Frames of one video are not independent, so the
frame-level intervals are a cluster bootstrap over videos (each resample draws whole
videos, ``clusters=`` of :func:`~fiftyone_dnniqa.analysis.correlation.correlate`): as wide
as the evidence of that many videos, not of that many frames. The video-level rows (the
correlation of per-video means, one point per video,
:func:`~fiftyone_dnniqa.analysis.grouping.group_level_correlations`) say whether the
relation also holds across videos.

:func:`summary_statistics` asks which per-video summary (``<field>_mean``, ``_min``,
``_low_share``) best tracks each video's own performance (the per-video values of the
evaluation: summed counts, mean correctness), across videos. :func:`segment_performance`
asks whether the low-quality segments found are hard for the model: its performance on
every evaluated frame inside them (sampled or not) against the frames elsewhere.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Union

import numpy as np
from scipy import stats

from ..scoring.runs import list_quality_runs
from .correlation import rank_fields
from .fields import field_direction
from .grouping import binned_performance, group_level_correlations, wilson_interval
from .resampling import is_binary
from .samples import one_sample
from .targets import (BINARY_KINDS, TargetInfo, binary_correct, detection_rates, get_target, list_targets,
                      pick_target, to_floats)
from .video import SUMMARIES, SegmentsFound, find_segments, frame_field, worst_videos

__all__ = ["FrameTable", "video_quality_fields", "frame_targets", "frame_table",
           "frame_statistics", "summary_statistics", "segment_performance", "quality_timeline",
           "frame_evaluations", "OUTCOME_MARKS", "timeline_videos", "video_timelines", "clip_support",
           "clip_view", "worst_video_rows", "frame_seconds", "current_video"]


@dataclass
class FrameTable:
    """One row per frame of the view's videos: its video, frame number, target and the
    quality fields' scores (NaN where a frame has none)."""

    info: TargetInfo
    kind: str
    sample_ids: np.ndarray
    frame_numbers: np.ndarray
    target: np.ndarray
    quality: Dict[str, np.ndarray]

    def __len__(self):
        return len(self.frame_numbers)


def video_quality_fields(samples) -> List[str]:
    """The quality runs of ``samples``' dataset whose scores are frame fields."""
    ds = samples._root_dataset
    return [k for k in list_quality_runs(ds) if ds.has_frame_field(k)]


def _target_paths(samples, ti: TargetInfo, kind: str) -> List[str]:
    """The frame paths the target is computed from."""
    key = ti.eval_key
    if ti.type == "classification":
        return [f"{ti.pred_field}.confidence"] if kind == "confidence" else [f"frames.{key}"]
    if ti.type == "detection":
        return [f"frames.{key}_{c}" for c in ("tp", "fp", "fn")]
    return [f"frames.{key}_{kind}"]


def _target_values(ti: TargetInfo, kind: str, columns: List[list]) -> np.ndarray:
    if ti.type == "classification" and kind != "confidence":
        return binary_correct(columns[0]) if ti.method == "binary" else to_floats(columns[0])
    if ti.type == "detection":
        tp, fp, fn = (to_floats(c) for c in columns)
        if kind in ("tp", "fp", "fn"):
            return {"tp": tp, "fp": fp, "fn": fn}[kind]
        return detection_rates(tp, fp, fn)[kind]
    return to_floats(columns[0])


def _flatten(per_video: list) -> list:
    return [x for frames in per_video for x in (frames or [])]


def frame_table(samples, fields: Optional[Sequence[str]] = None, eval_key: Optional[str] = None,
                kind: Optional[str] = None) -> FrameTable:
    """Every frame's target and quality scores, read with one ``values()`` call.

    Args:
        samples: a video dataset or view.
        fields: frame quality fields (default: every video quality run).
        eval_key, kind: the evaluation and target (as
            :func:`~fiftyone_dnniqa.analysis.targets.get_target`; default: the newest
            evaluation and its default kind). It must be an evaluation of frame fields.

    Raises:
        NoEvaluationError: no usable evaluation; ValueError: a sample-level evaluation,
        or a field that is no frame field.
    """
    if samples.media_type != "video":
        raise ValueError(f"this is a {samples.media_type} collection; frame targets need videos")
    ti = pick_target(samples, eval_key, kind)
    kind = kind or ti.default_kind
    if not samples._is_frame_field(ti.gt_field):
        raise ValueError(f"evaluation {ti.eval_key!r} compared sample-level fields; "
                         "use get_target() for its per-video values")
    fields = [frame_field(f) for f in (fields if fields is not None else video_quality_fields(samples))]
    missing = [f for f in fields if not samples._root_dataset.has_frame_field(f)]
    if missing:
        raise ValueError(f"no frame field(s) {', '.join(missing)} on this dataset")
    tpaths = _target_paths(samples, ti, kind)
    cols = samples.values(["id", "frames.frame_number"] + tpaths + [f"frames.{f}" for f in fields])
    ids, numbers = cols[0], cols[1]
    lengths = [len(n or []) for n in numbers]
    target = _target_values(ti, kind, [_flatten(c) for c in cols[2:2 + len(tpaths)]])
    quality = {f: to_floats(_flatten(c)) for f, c in zip(fields, cols[2 + len(tpaths):])}
    return FrameTable(info=ti, kind=kind, sample_ids=np.repeat(np.asarray(ids, dtype=object), lengths),
                      frame_numbers=np.asarray(_flatten(numbers), dtype=np.int64), target=target,
                      quality=quality)


def frame_targets(samples, eval_key: Optional[str] = None, kind: Optional[str] = None):
    """``(sample_ids, frame_numbers, values)``: one row per frame (NaN: not evaluated)."""
    t = frame_table(samples, fields=[], eval_key=eval_key, kind=kind)
    return t.sample_ids, t.frame_numbers, t.target


def _directions(samples, fields, higher_is_better) -> Dict[str, bool]:
    if isinstance(higher_is_better, dict):
        return {f: field_direction(samples, f, higher_is_better.get(f)) for f in fields}
    return {f: field_direction(samples, f, higher_is_better) for f in fields}


def frame_statistics(samples, fields: Optional[Sequence[str]] = None, eval_key: Optional[str] = None,
                     kind: Optional[str] = None,
                     higher_is_better: Union[None, bool, Dict[str, bool]] = None,
                     n_boot: int = 1000, confidence: float = 0.95, seed=0, bins: int = 10) -> dict:
    """Frame quality against the frames' evaluation outcomes (see the module docstring).

    Args:
        fields, eval_key, kind: as :func:`frame_table`.
        higher_is_better: each field's direction (a bool for all, or a dict); default: the
            runs' records.
        n_boot, confidence, seed: the bootstrap of every interval; bins: quantile bins.

    Returns:
        a dict: ``eval_key``, ``kind``, ``binary``, ``n_frames`` (frames with a target),
        ``n_videos``, ``ranking`` (``FieldRank.to_dict()`` rows over frames, best first,
        their intervals resampling whole videos),
        ``table`` (their display rows), ``curves`` (per field, ``BinRow.to_dict()`` rows of
        the target per quality bin) and ``videos`` (per field, the video-level correlations
        as ``Correlation.to_dict()`` by method).
    """
    t = frame_table(samples, fields, eval_key, kind)
    if not t.quality:
        raise ValueError("no frame quality fields: score the videos with "
                         "compute_quality(..., frame_step=N) or name fields")
    hib = _directions(samples, list(t.quality), higher_is_better)
    finite = t.target[np.isfinite(t.target)]
    binary = t.kind in BINARY_KINDS and is_binary(finite)
    ranking = rank_fields({f: (q, hib[f]) for f, q in t.quality.items()}, t.target, n_boot=n_boot,
                          confidence=confidence, seed=seed, auroc_if_binary=binary,
                          clusters=t.sample_ids)
    curves = {f: [b.to_dict() for b in binned_performance(q, t.target, bins=bins, confidence=confidence)]
              for f, q in t.quality.items()}
    videos = {f: {m: c.to_dict() for m, c in group_level_correlations(
        q, t.target, t.sample_ids, higher_is_better=hib[f], n_boot=n_boot, confidence=confidence,
        seed=seed).items()} for f, q in t.quality.items()}
    return {"eval_key": t.info.eval_key, "kind": t.kind, "binary": binary,
            "n_frames": int(finite.size), "n_videos": int(len(set(t.sample_ids.tolist()))),
            "higher_is_better": hib, "ranking": [r.to_dict() for r in ranking],
            "table": [r.to_row() for r in ranking], "curves": curves, "videos": videos}


def summary_statistics(samples, field: str, eval_key: Optional[str] = None, kind: Optional[str] = None,
                       higher_is_better: Optional[bool] = None, n_boot: int = 1000,
                       confidence: float = 0.95, seed=0) -> List[dict]:
    """The per-video summaries of ``field`` ranked by how well they track each video's
    performance (:func:`~fiftyone_dnniqa.analysis.targets.get_target` on the videos; one pair
    per video): ``FieldRank.to_dict()`` rows, best first. A higher low share is worse; the
    minimum counts only where higher is better (it is the best frame otherwise)."""
    key = frame_field(field)
    hib = field_direction(samples, key, higher_is_better)
    ds = samples._root_dataset
    names = [n for n in SUMMARIES if ds.has_sample_field(f"{key}_{n}") and (n != "min" or hib)]
    if not names:
        raise ValueError(f"no per-video summaries of '{key}': score the videos with "
                         "compute_quality(..., frame_step=N) first")
    ids, target = get_target(samples, eval_key, kind)
    cols = samples.values(["id"] + [f"{key}_{n}" for n in names])
    order = {sid: k for k, sid in enumerate(cols[0])}
    at = np.array([order[i] for i in ids], dtype=np.int64)
    qualities = {f"{key}_{n}": (to_floats(c)[at], hib if n != "low_share" else False)
                 for n, c in zip(names, cols[1:])}
    finite = target[np.isfinite(target)]
    ranking = rank_fields(qualities, target, n_boot=n_boot, confidence=confidence, seed=seed,
                          auroc_if_binary=is_binary(finite))
    return [r.to_dict() for r in ranking]


def _mean_interval(values: np.ndarray, binary: bool, confidence: float):
    """Mean with a Wilson (0/1 values) or t interval; NaN without values."""
    n = len(values)
    if not n:
        return float("nan"), float("nan"), float("nan")
    mean = float(values.mean())
    if binary:
        lo, hi = wilson_interval(values.sum(), n, confidence)
        return mean, float(lo), float(hi)
    if n < 2:
        return mean, float("nan"), float("nan")
    half = stats.t.ppf(0.5 + confidence / 2, n - 1) * values.std(ddof=1) / np.sqrt(n)
    return mean, mean - half, mean + half


def segment_performance(samples, found: SegmentsFound, eval_key: Optional[str] = None,
                        kind: Optional[str] = None, confidence: float = 0.95) -> List[dict]:
    """The target on the frames inside the segments ``found`` (from
    :func:`~fiftyone_dnniqa.analysis.video.find_segments` on ``samples``), every evaluated
    frame between a segment's ends, against the frames elsewhere: rows ``frames`` ("in
    segments", "elsewhere"), ``n``, ``mean_target``, ``ci_low``, ``ci_high`` (Wilson for a
    0/1 target, t otherwise; frames of one video are not independent, so read the intervals
    as a lower bound on the uncertainty)."""
    t = frame_table(samples, [], eval_key, kind)
    inside = np.zeros(len(t), dtype=bool)
    for sid, spans in found.by_video().items():  # loop over videos and their segments
        of_video = t.sample_ids == sid
        for first, last in spans:
            inside |= of_video & (t.frame_numbers >= first) & (t.frame_numbers <= last)
    ok = np.isfinite(t.target)
    binary = t.kind in BINARY_KINDS and is_binary(t.target[ok])
    rows = []
    for name, mask in (("in segments", inside & ok), ("elsewhere", ~inside & ok)):
        mean, lo, hi = _mean_interval(t.target[mask], binary, confidence)
        rows.append({"frames": name, "n": int(mask.sum()), "mean_target": mean, "ci_low": lo, "ci_high": hi})
    return rows


def quality_timeline(samples, field: str, sample_id: str, eval_key: Optional[str] = None,
                     kind: Optional[str] = None) -> dict:
    """One video's quality over time beside its frames' outcomes (for a plot): ``frames``
    (frame numbers of the scored frames), ``quality`` and ``target`` (None where missing),
    with ``eval_key`` and ``kind``; without an evaluation on frames, ``target`` is None."""
    view = samples.select(sample_id)
    key = frame_field(field)
    try:
        t = frame_table(view, [key], eval_key, kind)
        numbers, q, target = t.frame_numbers, t.quality[key], t.target
        used = {"eval_key": t.info.eval_key, "kind": t.kind}
    except ValueError:  # no (frame-level) evaluation: quality alone
        numbers, q = view.values(["frames.frame_number", f"frames.{key}"])
        numbers, q = np.asarray(_flatten(numbers), dtype=np.int64), to_floats(_flatten(q))
        target, used = None, {"eval_key": None, "kind": None}
    ok = np.isfinite(q)

    def as_list(a):
        return [float(v) if np.isfinite(v) else None for v in a[ok]]

    return {"frames": numbers[ok].tolist(), "quality": as_list(q),
            "target": None if target is None else as_list(target), **used}


#: the frame outcomes a timeline marks, by evaluation type: ``(label, kind)``; a frame has
#: the outcome when the kind's value is positive (a count), or zero for ``correct``
OUTCOME_MARKS = {"detection": (("missed objects", "fn"), ("false positives", "fp")),
                 "classification": (("wrong", "correct"),)}
#: videos a timeline of a whole view shows (the worst by low share)
TIMELINE_VIDEOS = 6
#: a click outside every segment opens this many sampled steps either side of the frame
WINDOW_STEPS = 2


def frame_evaluations(samples) -> List[TargetInfo]:
    """The evaluations of ``samples``' dataset that compared frame fields, newest first."""
    return [t for t in list_targets(samples) if t.gt_field and samples._is_frame_field(t.gt_field)]


def timeline_videos(samples, field: str, video: Optional[str] = None, k: int = TIMELINE_VIDEOS) -> List[str]:
    """The ids of the videos a timeline of ``samples`` shows: ``video`` when it is one of
    them; the only one; else the ``k`` worst by the share of low frames (then the rest in
    view order, when fewer have that summary)."""
    ids = samples.values("id")
    if video in ids:
        return [video]
    if len(ids) <= 1:
        return ids
    try:
        worst = worst_videos(samples, field, by="low_share", k=k).values("id")
    except ValueError:  # no per-video summaries: the view's order
        worst = []
    return (worst + [i for i in ids if i not in worst])[:k]


def _outcome_frames(samples, key: str, info: Optional[TargetInfo]) -> Dict[str, Dict[str, set]]:
    """Per outcome label, per video id, the scored frames that have it (none without a
    frame evaluation ``info`` or with one of another type)."""
    out: Dict[str, Dict[str, set]] = {}
    for label, kind in OUTCOME_MARKS.get(getattr(info, "type", None), ()):
        t = frame_table(samples, [key], info.eval_key, kind)
        hit = (t.target == 0) if kind == "correct" else (t.target > 0)
        hit &= np.isfinite(t.quality[key])
        per: Dict[str, set] = {}
        for sid, fn in zip(t.sample_ids[hit], t.frame_numbers[hit]):
            per.setdefault(sid, set()).add(int(fn))
        out[label] = per
    return out


def video_timelines(samples, field: str, video_ids: Sequence[str], eval_key: Optional[str] = None,
                    found: Optional[SegmentsFound] = None) -> dict:
    """The quality over time of the videos ``video_ids`` of ``samples`` (for the panel's
    plot), with the frame evaluation's outcomes and the low-quality segments.

    Args:
        field: the frame quality field.
        eval_key: the frame evaluation whose outcomes to mark (default: the newest one;
            none without one).
        found: the view's segments (default: :func:`find_segments` with its defaults: the
            run's level, at least 2 low frames).

    Returns:
        ``field``, ``level``, ``higher_is_better``, ``eval_key`` (None: no outcomes),
        ``outcomes`` (the labels marked) and ``videos``: per video ``id``, ``name`` (the
        file name), ``frames`` (the scored frames' numbers, ascending), ``quality``,
        ``outcomes`` (label -> the scored frames with it), ``segments`` (``[first, last]``),
        ``step``, ``last_frame`` (the video's last frame number), ``frame_rate`` (its
        metadata's, None when unknown) and ``seconds`` (:func:`frame_seconds` of ``frames``).
    """
    key = frame_field(field)
    found = found if found is not None else find_segments(samples, key)
    chosen = samples.select(list(video_ids), ordered=True)
    ids, paths, rates, numbers, scores = chosen.values(
        ["id", "filepath", "metadata.frame_rate", "frames.frame_number", f"frames.{key}"])
    info = next((t for t in frame_evaluations(samples) if eval_key in (None, t.eval_key)), None)
    marks = _outcome_frames(chosen, key, info)
    spans = found.by_video()
    videos = []
    for sid, path, rate, fns, vals in zip(ids, paths, rates, numbers, scores):  # the few videos shown
        fns = np.asarray(fns or [], dtype=np.int64)
        q = to_floats(vals or [])
        ok = np.isfinite(q)
        order = np.argsort(fns[ok], kind="stable")
        frames, quality = fns[ok][order].tolist(), q[ok][order].tolist()
        videos.append({"id": sid, "name": path.rsplit("/", 1)[-1], "frames": frames, "quality": quality,
                       "frame_rate": _known_rate(rate), "seconds": frame_seconds(frames, rate),
                       "outcomes": {label: sorted(per.get(sid, ())) for label, per in marks.items()},
                       "segments": [list(s) for s in spans.get(sid, [])],
                       "step": int(found.steps.get(sid, 1)), "last_frame": int(fns.max()) if fns.size else 0})
    return {"field": key, "level": found.level, "higher_is_better": found.higher_is_better,
            "eval_key": info.eval_key if marks else None, "outcomes": list(marks), "videos": videos}


def _known_rate(frame_rate) -> Optional[float]:
    """``frame_rate`` as a float, None when unknown (missing, zero, negative or NaN)."""
    try:
        rate = float(frame_rate)
    except (TypeError, ValueError):
        return None
    return rate if np.isfinite(rate) and rate > 0 else None


def frame_seconds(frame_numbers: Sequence[int], frame_rate) -> Optional[List[float]]:
    """When each of ``frame_numbers`` (FiftyOne's, 1-based) shows, in seconds from the
    video's start at ``frame_rate`` frames per second: frame 1 at 0 s, frame ``n`` at
    ``(n - 1) / frame_rate``. None when the rate is unknown (the plots then use frame
    numbers)."""
    rate = _known_rate(frame_rate)
    if rate is None:
        return None
    return [(int(n) - 1) / rate for n in frame_numbers]


def current_video(samples, sample_id: Optional[str]) -> Optional[str]:
    """The id of the video behind ``sample_id``, the sample the App's sample viewer shows
    from ``samples``: that sample in a video collection, the video of a clip in a
    ``to_clips`` view; None without a sample or when ``sample_id`` is none of ``samples``'."""
    match = one_sample(samples, sample_id)
    if match is None:
        return None
    if getattr(samples, "_is_clips", False):
        ids = match.values("sample_id")
    else:
        ids = match.values("id") if samples.media_type == "video" else []
    return str(ids[0]) if ids else None


def clip_support(video: dict, frame: int, window: int = WINDOW_STEPS) -> List[int]:
    """The clip a click on ``frame`` of one video of :func:`video_timelines` opens: the
    segment holding it, else ``window`` sampled steps either side (within the video)."""
    for first, last in video["segments"]:
        if first <= frame <= last:
            return [int(first), int(last)]
    reach = window * max(int(video["step"]), 1)
    last = video["last_frame"] or frame + reach
    return [max(1, int(frame) - reach), min(int(last), int(frame) + reach)]


def clip_view(samples, sample_id: str, support: Sequence[int]):
    """A ``to_clips`` view of one clip, frames ``support`` of video ``sample_id``."""
    return samples.select(sample_id).to_clips([[tuple(int(v) for v in support)]])


def worst_video_rows(samples, field: str, found: SegmentsFound, k: int = 10) -> List[dict]:
    """The ``k`` worst videos of ``samples`` by their share of low frames (only videos with
    that summary; none for a field without per-video summaries): per video ``id``, ``name``,
    ``low_share``, ``mean``, ``min`` (None where lower is better: it is then the best
    frame), ``frames`` (scored) and ``segments`` (of ``found``)."""
    key = frame_field(field)
    try:
        view = worst_videos(samples, key, by="low_share", k=k)
    except ValueError:  # no per-video summaries
        return []
    names = (*SUMMARIES, "frames")
    ids, paths, *cols = view.values(["id", "filepath"] + [f"{key}_{n}" for n in names])
    counts = {sid: len(s) for sid, s in found.by_video().items()}
    rows = []
    for i, (sid, path) in enumerate(zip(ids, paths)):
        row = {n: c[i] for n, c in zip(names, cols)}
        if not found.higher_is_better:
            row["min"] = None
        rows.append({"id": sid, "name": path.rsplit("/", 1)[-1], **row, "segments": counts.get(sid, 0)})
    return rows
