"""The loader of a run on video: sampled frames of many videos as one stream of items.

:class:`VideoFrames` is an ``IterableDataset``: each loader worker takes every n-th video
(``videos[worker::workers]``), decodes it once (:mod:`fiftyone_dnniqa.core.video`), never
writing a frame to disk, and yields one item per sampled frame that some metric still
needs, then an end item per video. The DataLoader batches the items of consecutive
videos together. Items look like the image loader's (:mod:`.loading`), so the same scorers
score them: ``images`` (one prepared ``uint8`` tensor per input spec) or ``error``, plus
``video`` (its row), ``frame`` (its number) and ``todo`` (which jobs need it). An end item
has ``end``, ``decoded`` (frames the stream gave), ``video_error`` (why the video could not
be read, or ended early) and ``info`` (the container's facts, for ``sample.metadata``).
No FiftyOne here: this runs in the workers.
"""

from __future__ import annotations

import dataclasses
from typing import Callable, List, Optional, Sequence

import numpy as np
import torch

from ..core.images import DEFAULT_MAX_PIXELS, InputSpec, prepare
from ..core.video import VideoError, open_video


class VideoFrames(torch.utils.data.IterableDataset):
    """Sampled frames of the videos ``rows`` of ``filepaths`` (a run's view; None: all),
    sharded across workers; items name videos by their row in ``filepaths``.

    ``todo`` ``(n_videos, n_jobs)``: which jobs revisit each video; ``done[v][j]``: the
    frame numbers job ``j`` holds a score for already (skipped: not converted, not
    scored). ``postprocess``, a :class:`~.scorers.WorkerScorer`, scores per-image CPU
    metrics in the worker."""

    def __init__(self, filepaths: Sequence[str], todo: np.ndarray, done: Sequence[Sequence[frozenset]],
                 frame_step: int, specs: Sequence[InputSpec], labels: Optional[Sequence] = None,
                 postprocess: Optional[Callable[[dict], dict]] = None,
                 max_pixels: Optional[int] = DEFAULT_MAX_PIXELS, rows: Optional[Sequence[int]] = None):
        self.filepaths = list(filepaths)
        self.rows = list(range(len(self.filepaths))) if rows is None else [int(v) for v in rows]
        self.todo = np.asarray(todo, dtype=bool)
        self.done = done
        self.frame_step = int(frame_step)
        self.specs = list(specs)
        self.labels = labels
        self.postprocess = postprocess
        self.max_pixels = max_pixels

    @property
    def num_units(self) -> int:
        """Videos: no more loader workers than this are useful."""
        return len(self.rows)

    def __iter__(self):
        worker = torch.utils.data.get_worker_info()
        mine = self.rows
        if worker is not None:
            mine = mine[worker.id::worker.num_workers]
        for v in mine:
            yield from self._video(v)

    def _video(self, v: int):
        try:
            reader = open_video(self.filepaths[v])
        except VideoError as e:
            yield {"video": v, "end": True, "decoded": 0, "video_error": str(e), "info": None}
            return
        with reader:
            info = reader.info
            if self.max_pixels and info.width * info.height > self.max_pixels:
                yield {"video": v, "end": True, "decoded": 0, "info": dataclasses.asdict(info),
                       "video_error": f"frames too large ({info.width}x{info.height} > {self.max_pixels} "
                                      "pixels); raise max_pixels to score them"}
                return
            need = [(j, self.done[v][j]) for j in np.flatnonzero(self.todo[v])]

            def row(n):
                return np.array([self.todo[v, j] and n not in self.done[v][j] for j in range(self.todo.shape[1])])

            for n, frame in reader.frames(self.frame_step, keep=lambda n: any(n not in d for _, d in need)):
                yield self._item(v, n, frame, row(n))
            yield {"video": v, "end": True, "decoded": reader.decoded, "video_error": reader.error,
                   "info": dataclasses.asdict(info)}

    def _item(self, v: int, n: int, frame, todo: np.ndarray) -> dict:
        item = {"video": v, "frame": n, "todo": todo, "index": 0}
        if self.labels is not None:
            item["label"] = self.labels[v]
        if isinstance(frame, str):
            item["error"] = frame
            return item
        image = frame.permute(2, 0, 1)  # (H, W, 3) -> (3, H, W), as read_image gives
        item["images"] = [prepare(image, s) for s in self.specs]
        if self.postprocess is not None:
            self.postprocess.todo_rows = todo[None, :]  # the WorkerScorer reads row item["index"] = 0
            item = self.postprocess(item)
        return item


def frame_batches(batch: List[dict], ids: Sequence[str]):
    """Splits a loader batch into its frame items (re-indexed ``0..k-1`` for the scorers),
    their keys ``"<sample id>:<frame number>"``, their ``todo`` rows ``(k, n_jobs)``, and the
    end items."""
    frames = [it for it in batch if "frame" in it]
    ends = [it for it in batch if it.get("end")]
    for k, it in enumerate(frames):
        it["index"] = k
    keys = [frame_key(ids[it["video"]], it["frame"]) for it in frames]
    todo = np.stack([it["todo"] for it in frames]) if frames else np.zeros((0, 0), dtype=bool)
    return frames, keys, todo, ends


def frame_key(sample_id: str, frame_number: int) -> str:
    """How the scorers key a frame: ``"<sample id>:<frame number>"``."""
    return f"{sample_id}:{frame_number}"


def split_key(key: str):
    """``(sample id, frame number)`` of a :func:`frame_key`."""
    sid, _, n = key.rpartition(":")
    return sid, int(n)
