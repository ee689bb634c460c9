"""The engine's scoring pipeline against an in-memory sink, and the measuring helpers of
``benchmarks/device_check.py``.

The GPU machine has torch, torchvision and timm but no FiftyOne and no MongoDB (and they do
not fit in the files that travel there), so ``compute_quality`` cannot run there. What runs
instead is the engine's own pipeline, the pieces ``scoring/execute.py`` composes, minus the
database: :class:`~fiftyone_dnniqa.scoring.loading.SampleImages` in the engine's own
DataLoader, :func:`~fiftyone_dnniqa.scoring.loading.batch_loader` (batches of loader items,
pinned memory on CUDA, prefetch 4),
:func:`~fiftyone_dnniqa.scoring.loading.decode_jpegs` (nvJPEG on CUDA), and
:class:`~fiftyone_dnniqa.scoring.scorers.Job` with
:func:`~fiftyone_dnniqa.scoring.scorers.score_batch` (grouping, autocast, out-of-memory
back-off, bisection). The writer's ``set_values`` becomes a dict. Videos go the same way
through :class:`~fiftyone_dnniqa.scoring.video_loading.VideoFrames` and
:func:`~fiftyone_dnniqa.scoring.video_loading.frame_batches`, as ``video_execute`` does.
"""

from __future__ import annotations

import subprocess
import threading
import time
from typing import Optional, Sequence

import numpy as np
import torch

from fiftyone_dnniqa.scoring import loading, patches, scorers
from fiftyone_dnniqa.scoring.video_loading import VideoFrames, frame_batches, split_key


def score_files(metric, files: Sequence[str], device: torch.device, batch_size: int = 64,
                num_workers: int = 0, decode: str = "device", amp: bool = True,
                refs: Optional[Sequence[str]] = None, labels: Optional[Sequence] = None,
                state: Optional[dict] = None):
    """Scores ``files`` through the engine's pipeline; returns ``(scores, failures)``.

    ``scores`` is a float array in the order of ``files`` (NaN where a file failed),
    ``failures`` the sink's ``{index: reason}``. ``decode="device"`` hands plain JPEGs to
    ``decode_jpegs`` on ``device``; ``"workers"`` decodes with PIL in the loader workers.
    ``state`` (``{"max_batch": ...}``) is the engine's out-of-memory state: pass one to read
    the batch size the run ended with.
    """
    metric.to(device)
    spec, raw_jpeg = metric.input_spec, decode == "device"
    data = loading.SampleImages(files, [spec], reference_paths=refs, labels=labels, raw_jpeg=raw_jpeg)
    loader = loading.batch_loader(data, batch_size, num_workers, device)
    state = state if state is not None else {}
    state.setdefault("max_batch", batch_size)
    scores, job = _score_into_memory(metric, len(files), loader, device, amp, state, spec if raw_jpeg else None)
    return scores, {int(k): v for k, v in job.failures.items()}


def _score_into_memory(metric, n: int, loader, device, amp, state, decode_spec=None, to_items=None):
    """Runs ``metric`` as the engine's one job over ``loader`` (items ``0..n-1``), first
    decoding each batch on ``device`` when ``decode_spec`` is given and turning it into
    the items to score with ``to_items``; the writer's flush becomes a dict. Returns the
    scores in item order (NaN where one failed) and the job."""
    ids = [str(i) for i in range(n)]
    todo = np.ones((n, 1), dtype=bool)
    job = scorers.Job(metric=metric, field="score", spec_index=0, in_worker=False, todo=todo[:, 0])
    sink = {}
    for batch in loader:
        if decode_spec is not None:
            loading.decode_jpegs(batch, [decode_spec], device)
        scorers.score_batch(job, 0, batch if to_items is None else to_items(batch), ids, todo, device, amp, state)
        sink.update(job.scores)  # the writer's flush, into memory
        job.scores, job.errors = {}, {}
    return np.array([np.nan if sink.get(i) is None else sink[i] for i in ids], dtype=float), job


def score_objects(metric, files: Sequence[str], boxes: Sequence[Sequence], device: torch.device,
                  batch_size: int = 64, num_workers: int = 0, decode: str = "device", amp: bool = True,
                  margin: float = patches.DEFAULT_MARGIN):
    """Scores the objects of ``files`` the way an object run does; returns one score per
    box (NaN where one failed), in the order of ``boxes`` (``boxes[i]``: file ``i``'s
    ``[x, y, w, h]`` boxes, relative).

    Each image is decoded once at its own size (``patches.NATIVE``), then cut into its
    objects' patches by :class:`~fiftyone_dnniqa.scoring.patches.PatchCropper`: in the
    loader workers (``decode="workers"``) or, after ``decode_jpegs`` on ``device``, in the
    main process, as ``patch_execute.score_patches`` does; ``score_batch`` scores all the
    objects of a loader batch, in chunks of at most ``batch_size``.
    """
    metric.to(device)
    raw_jpeg = decode == "device"
    rows, k = [], 0
    for bs in boxes:
        rows.append([(k + j, list(b), None) for j, b in enumerate(bs)])
        k += len(bs)
    cropper = patches.PatchCropper(rows, [metric.input_spec], margin)
    data = loading.SampleImages(files, [patches.NATIVE], raw_jpeg=raw_jpeg,
                                postprocess=None if raw_jpeg else cropper)
    loader = loading.batch_loader(data, batch_size, num_workers, device)
    return _score_into_memory(metric, k, loader, device, amp, {"max_batch": batch_size},
                              patches.NATIVE if raw_jpeg else None,
                              lambda batch: patches.batch_objects(batch, cropper))[0]


def _video_loader(paths, spec, frame_step, batch_size, num_workers, device):
    n = len(paths)
    data = VideoFrames(paths, np.ones((n, 1), dtype=bool), [[frozenset()] for _ in paths], frame_step, [spec])
    return loading.batch_loader(data, batch_size, num_workers, device)


def score_video_frames(metric, paths: Sequence[str], device: torch.device, frame_step: int = 1,
                       batch_size: int = 64, num_workers: int = 0, amp: bool = True):
    """Scores the sampled frames of the videos ``paths`` as a video run does (``VideoFrames``
    in the engine's DataLoader, ``frame_batches``, ``score_batch``); returns ``({(video,
    frame number): score or None}, {video: frames decoded}, {video: why it ended early})``."""
    metric.to(device)
    ids = [str(v) for v in range(len(paths))]
    job = scorers.Job(metric=metric, field="score", spec_index=0, in_worker=False,
                      todo=np.ones(len(paths), dtype=bool))
    state, decoded, errors = {"max_batch": batch_size}, {}, {}
    for batch in _video_loader(paths, metric.input_spec, frame_step, batch_size, num_workers, device):
        frames, keys, todo, ends = frame_batches(batch, ids)
        if frames:
            scorers.score_batch(job, 0, frames, keys, todo, device, amp, state)
        for end in ends:
            decoded[end["video"]] = end["decoded"]
            if end["video_error"]:
                errors[end["video"]] = end["video_error"]
    scores = {}
    for key, score in job.scores.items():
        video, frame = split_key(key)
        scores[int(video), frame] = score
    return scores, decoded, errors


def decode_video_only(paths, spec, device, frame_step, batch_size, num_workers, keep=None) -> int:
    """The decode bound of a video run: its loader alone (PyAV decoding, RGB conversion and
    preparation of the sampled frames); returns the frames it gave. ``keep``, a list, gets
    the prepared frames."""
    done = 0
    for batch in _video_loader(paths, spec, frame_step, batch_size, num_workers, device):
        frames = [it for it in batch if "images" in it]
        done += len(frames)
        if keep is not None:
            keep += [it["images"][0] for it in frames]
    return done


def decode_only(files, spec, device, batch_size, num_workers, decode="device") -> int:
    """The decode bound's work: the loader and (``decode="device"``) ``decode_jpegs``,
    synchronised; returns the number of images decoded."""
    raw_jpeg = decode == "device"
    data = loading.SampleImages(files, [spec], raw_jpeg=raw_jpeg)
    done = 0
    for batch in loading.batch_loader(data, batch_size, num_workers, device):
        if raw_jpeg:
            loading.decode_jpegs(batch, [spec], device)
        done += sum("images" in it for it in batch)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return done


def decoded_pool(files, spec, device, batch_size=64):
    """``files`` decoded and prepared on ``device``: a list of uint8 (3, H, W) tensors."""
    items = [loading.SampleImages(files, [spec], raw_jpeg=True)[i] for i in range(len(files))]
    for k in range(0, len(items), batch_size):
        loading.decode_jpegs(items[k:k + batch_size], [spec], device)
    return [it["images"][0].to(device) for it in items if "images" in it]


def compute_only(metric, pool, n: int, batch_size: int, device, amp: bool = True) -> int:
    """The compute bound's work: ``score_batch`` on images already decoded on the device,
    ``n`` images in batches of ``batch_size`` cycling through ``pool``."""
    metric.to(device)
    ids = [str(i) for i in range(len(pool))]
    todo = np.ones((len(pool), 1), dtype=bool)
    job = scorers.Job(metric=metric, field="score", spec_index=0, in_worker=False, todo=todo[:, 0])
    state = {"max_batch": batch_size}
    for start in range(0, n, batch_size):
        batch = [{"index": k % len(pool), "images": [pool[k % len(pool)]]}
                 for k in range(start, min(n, start + batch_size))]
        scorers.score_batch(job, 0, batch, ids, todo, device, amp, state)
        job.scores = {}  # score_batch returns scores on the CPU: each batch is synchronised
    return n


def rate(fn) -> float:
    """Images per second of ``fn()``, which returns how many images it handled."""
    t = time.perf_counter()
    done = fn()
    return done / (time.perf_counter() - t)


def spearman(a, b) -> float:
    """Spearman's rank correlation of two score arrays (NaN pairs dropped)."""
    from scipy.stats import spearmanr  # deferred: only the agreement checks need it

    a, b = np.asarray(a, float), np.asarray(b, float)
    keep = np.isfinite(a) & np.isfinite(b)
    if keep.sum() < 3 or np.ptp(a[keep]) == 0 or np.ptp(b[keep]) == 0:
        return float("nan")
    return float(spearmanr(a[keep], b[keep])[0])


def max_abs(a, b) -> float:
    a, b = np.asarray(a, float), np.asarray(b, float)
    if a.shape != b.shape or np.isnan(a).any() != np.isnan(b).any():
        return float("inf")
    d = np.abs(a - b)[np.isfinite(a) & np.isfinite(b)]
    return float(d.max()) if d.size else 0.0


def compare(a, b) -> str:
    """Spearman's ρ and the largest difference of two score arrays, as the report prints them."""
    return f"ρ={spearman(a, b):.5f}, max|Δ|={max_abs(a, b):.2e} (n={len(a)})"


def agrees(a, b, spearman_min: float, tol: Optional[float] = None) -> bool:
    """ρ at least ``spearman_min`` (or undefined: constant scores) and, given ``tol``, no
    difference above it."""
    rho = spearman(a, b)
    return bool((np.isnan(rho) or rho >= spearman_min) and (tol is None or max_abs(a, b) <= tol))


class GPUUtilisation:
    """Samples the GPU's utilisation (percent) every ``period`` seconds while active:
    ``torch.cuda.utilization()`` (NVML), else ``nvidia-smi``."""

    def __init__(self, period: float = 0.2):
        self.period, self.samples = period, []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    @staticmethod
    def read() -> Optional[float]:
        try:
            return float(torch.cuda.utilization())
        except Exception:
            pass
        try:
            out = subprocess.run(["nvidia-smi", "--query-gpu=utilization.gpu", "--format=csv,noheader,nounits"],
                                 capture_output=True, text=True, timeout=5)
            return float(out.stdout.split()[0])
        except Exception:
            return None

    def _run(self):
        while not self._stop.wait(self.period):
            value = self.read()
            if value is not None:
                self.samples.append(value)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()

    def summary(self) -> dict:
        s = np.array(self.samples, dtype=float)
        if not s.size:
            return {"n": 0}
        return {"n": int(s.size), "mean": round(float(s.mean()), 1), "p50": float(np.median(s)),
                "p10": float(np.percentile(s, 10))}
