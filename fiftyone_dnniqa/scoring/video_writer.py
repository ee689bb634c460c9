"""Scoring videos, the way out: frame scores and reasons as frame fields, and each video's
summaries as sample fields, in the layout of :mod:`.video_fields`.

:class:`VideoValues` keeps every sampled frame's score per job (those read before the run
and those scored in it), so a video's summaries are computed once its last frame is in,
and the low share of every video at the end, against one level for the whole view. A shard
of a sharded run (:mod:`.shards`) holds whole videos, so it writes their frames and summaries
itself; with the default level, the low shares wait for the last shard to end
(:func:`~.video_execute.finish_video_shards`), which computes the level over the whole view.
"""

from __future__ import annotations

import mimetypes
from typing import Dict, List, Optional

import fiftyone as fo

from ..core.video import VideoInfo
from .runs import extra_field
from .scorers import structured
from .writer import structured_labels
from .video_fields import (FLOAT_SUMMARIES, INT_SUMMARIES, default_low_level, frame_error_path, frame_path,
                           summary_field, video_error_field, video_summary)
from .video_loading import split_key

#: at most this many per-video reasons are kept in the run record
MAX_RECORDED = 10000


class VideoValues:
    """The writer's state: per job and video, ``{frame_number: score}`` of the sampled
    frames holding a score; per video, its sample id; the videos ended since the last flush.

    ``values[j][v]`` holds floats for a float metric, and ``True`` per frame for a
    structured one (its labels are not summarised)."""

    def __init__(self, ids: List[str], fields: List[str], metrics, values, frame_step: int,
                 low_level: Optional[float], fill_metadata: Dict[int, str], shard: bool = False):
        self.ids = list(ids)
        self._rows = {s: v for v, s in enumerate(self.ids)}  # sample id -> video
        self.fields = fields
        self.metrics = metrics
        self.values = values  # [job][video] -> {frame_number: score}
        self.frame_step = frame_step
        self.low_level = low_level
        self.fill_metadata = fill_metadata  # row -> filepath, where sample.metadata is missing
        self.failed: List[Dict[int, int]] = [{} for _ in fields]  # [job] video -> frames failed
        self.ended: Dict[int, dict] = {}  # video -> its end item, until flushed
        self.video_errors: Dict[str, str] = {}  # sample id -> why (this call)
        self.videos_done = 0
        # a shard holds some of the view's videos: the default level, of all of them, waits for
        # the last shard (video_execute.finish_video_shards)
        self.level_later = shard and low_level is None

    def declare(self, dataset, j: int) -> bool:
        """Declares job ``j``'s frame and summary fields (:func:`declare_video_fields`)."""
        return declare_video_fields(dataset, self.fields[j], self.metrics[j])

    def end_video(self, item: dict) -> None:
        """A video's stream has ended: its summaries are written with the next flush."""
        self.ended[item["video"]] = item
        self.videos_done += 1
        if item.get("video_error") and len(self.video_errors) < MAX_RECORDED:
            self.video_errors[self.ids[item["video"]]] = item["video_error"]

    def flush(self, dataset, jobs) -> None:
        """Writes the jobs' pending frame scores and reasons, then the summaries (and missing
        metadata) of the videos that ended."""
        for j, job in enumerate(jobs):
            scores, errors = _by_video(job.scores), _by_video(job.errors)
            for sid, frames in scores.items():
                v = self._rows[sid]
                for n, s in frames.items():
                    if s is None:
                        self.values[j][v].pop(n, None)
                        self.failed[j][v] = self.failed[j].get(v, 0) + 1
                    else:
                        self.values[j][v][n] = True if structured(job.metric) else s
            if scores:
                self._write_frames(dataset, j, job, scores)
            if any(r is not None for f in errors.values() for r in f.values()) or (errors and job.has_error_field):
                path = frame_error_path(self.fields[j])
                if not job.has_error_field:
                    dataset.add_frame_field(path[len("frames."):], fo.StringField)
                    job.has_error_field = True
                dataset.set_values(path, errors, key_field="id")
            job.scores, job.errors = {}, {}
        if self.ended:
            self._write_summaries(dataset, jobs, sorted(self.ended))
            self.ended = {}

    def _write_frames(self, dataset, j: int, job, scores) -> None:
        path = frame_path(self.fields[j])
        if not structured(job.metric):
            dataset.set_values(path, scores, key_field="id")
            return
        labels, extras = {}, {name: {} for name in getattr(job.metric, "extra_fields", ())}
        for sid, frames in scores.items():
            labels[sid] = {}
            for values in extras.values():
                values[sid] = {}
            for n, row in frames.items():
                labels[sid][n], more = structured_labels(job.metric, row) if row is not None else (None, None)
                for name, values in extras.items():
                    values[sid][n] = float(more[name]) if more is not None else None
        dataset.set_values(path, labels, key_field="id")
        for name, values in extras.items():
            dataset.set_values(extra_field(path, name), values, key_field="id")

    def _write_summaries(self, dataset, jobs, rows: List[int]) -> None:
        for j, job in enumerate(jobs):
            out = {n: {} for n in FLOAT_SUMMARIES + INT_SUMMARIES}
            for v in rows:
                summary = self._summary(j, v, level=None)
                for n, value in summary.items():
                    out[n][self.ids[v]] = value
            names = INT_SUMMARIES if structured(job.metric) else FLOAT_SUMMARIES[:2] + INT_SUMMARIES
            for n in names:
                dataset.set_values(summary_field(self.fields[j], n), out[n], key_field="id")
            reasons = {self.ids[v]: self.ended[v].get("video_error") for v in rows}
            dataset.set_values(video_error_field(self.fields[j]), reasons, key_field="id")
        metadata = {self.ids[v]: video_metadata(VideoInfo(**self.ended[v]["info"]), self.fill_metadata[v],
                                                self.ended[v]["decoded"]) for v in rows
                    if v in self.fill_metadata and self.ended[v].get("info") and self.ended[v]["decoded"]}
        if metadata:
            dataset.set_values("metadata", metadata, key_field="id")

    def _summary(self, j: int, v: int, level) -> dict:
        frames = self.values[j][v]
        scores = [] if structured(self.metrics[j]) else list(frames.values())
        summary = video_summary(scores, self.failed[j].get(v, 0), level, self.metrics[j].higher_is_better)
        if structured(self.metrics[j]):
            summary["frames"] = len(frames)
        return summary

    def finish(self, dataset, jobs) -> None:
        """The low share of every video of the view holding scores, against one level per
        float job: ``low_level``, or the default percentile over all their frames; the
        level goes to the job's run record. A shard of a run with the default level leaves
        them to the last shard (``level_later``)."""
        for j, job in enumerate(jobs):
            if structured(job.metric) or self.level_later:
                continue
            job.results.low_level = write_low_shares(dataset, self.ids, self.fields[j], job.metric,
                                                     self.values[j], self.low_level)

    def record_outcome(self, jobs) -> None:
        """What the run records besides its counts: frame step, videos that failed, why."""
        for job in jobs:
            job.results.frame_step = self.frame_step
            job.results.num_videos_done = self.videos_done
            job.results.num_videos_failed = len(self.video_errors)
            job.results.video_failures = dict(self.video_errors)


def write_low_shares(dataset, ids: List[str], field: str, metric, values, low_level: Optional[float]):
    """Writes each video's low share (``values[v]``: ``{frame_number: score}`` of the video
    ``ids[v]``) against ``low_level``, or the default percentile over all these frames;
    returns the level."""
    everything = [s for frames in values for s in frames.values()]
    level = low_level if low_level is not None else default_low_level(everything, metric.higher_is_better)
    shares = {ids[v]: video_summary(list(frames.values()), 0, level, metric.higher_is_better)["low_share"]
              for v, frames in enumerate(values) if frames}
    if shares:
        dataset.set_values(summary_field(field, "low_share"), shares, key_field="id")
    return level


def declare_video_fields(dataset, field: str, metric) -> bool:
    """Declares the frame and summary fields a run on video of ``metric`` writes into
    ``field``; returns whether the frame error field exists already (it is added with the
    first failure)."""
    name = frame_path(field)[len("frames."):]
    if not dataset.has_frame_field(name):
        if structured(metric):
            dataset.add_frame_field(name, fo.EmbeddedDocumentField, embedded_doc_type=fo.Classifications)
        else:
            dataset.add_frame_field(name, fo.FloatField)
    for extra in getattr(metric, "extra_fields", ()) if structured(metric) else ():
        if not dataset.has_frame_field(extra_field(name, extra)):
            dataset.add_frame_field(extra_field(name, extra), fo.FloatField)
    kinds = {n: fo.IntField for n in INT_SUMMARIES}
    if not structured(metric):
        kinds.update({n: fo.FloatField for n in FLOAT_SUMMARIES})
    for n, kind in kinds.items():
        if not dataset.has_sample_field(summary_field(field, n)):
            dataset.add_sample_field(summary_field(field, n), kind)
    if not dataset.has_sample_field(video_error_field(field)):
        dataset.add_sample_field(video_error_field(field), fo.StringField)
    return dataset.has_frame_field(frame_error_path(field)[len("frames."):])


def _by_video(values: dict) -> Dict[str, Dict[int, object]]:
    """``{"<sid>:<n>": value}`` -> ``{sid: {n: value}}`` (set_values' frame syntax)."""
    out: Dict[str, Dict[int, object]] = {}
    for key, value in values.items():
        sid, n = split_key(key)
        out.setdefault(sid, {})[n] = value
    return out


def video_metadata(info: VideoInfo, path: str, frame_count: Optional[int] = None) -> fo.VideoMetadata:
    """``sample.metadata`` from what PyAV read (no ffprobe): ``frame_count`` the frames
    decoded where known, else the count the container declares."""
    return fo.VideoMetadata(size_bytes=info.size_bytes, mime_type=mimetypes.guess_type(path)[0],
                            frame_width=info.width, frame_height=info.height, frame_rate=info.frame_rate,
                            total_frame_count=info.frame_count if frame_count is None else frame_count,
                            duration=info.duration, encoding_str=info.codec)
