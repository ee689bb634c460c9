"""The ``video`` section of ``benchmarks/device_check.py``: frames of videos scored as a
video run scores them, CUDA against the CPU, and how fast.

Clips are written on the spot: a slow pan over a carried photo (real pixels, synthetic
motion) with the default bad episodes of :mod:`fiftyone_dnniqa.corruptions.episodes`
(blur, noise, darkness, JPEG blocking over known frames), encoded with libx264 (CRF 18) by
:func:`~fiftyone_dnniqa.core.video.write_video`. They are decoded by the run's own loader,
:class:`~fiftyone_dnniqa.scoring.video_loading.VideoFrames` (FiftyOne-free: PyAV in the
DataLoader workers), and scored by the engine's ``score_batch`` into memory
(``device_pipeline.score_video_frames``). PyAV is not on the GPU machine: it travels as a
wheel when ``--prepare --video`` made room for it (device_check.py); without it the section
says so and skips.
"""

from __future__ import annotations

import os
import time

import numpy as np
import torch

import device_pipeline as P
from fiftyone_dnniqa.core import video as V
from fiftyone_dnniqa.core.images import read_image
from fiftyone_dnniqa.corruptions.episodes import episode_frames
from fiftyone_dnniqa.metrics import create_metric

#: clips per run, frames per clip, (width, height); the loader batch
SIZES = {"gpu": dict(videos=8, frames=96, size=(320, 240), batch=64),
         "cpu": dict(videos=1, frames=16, size=(96, 64), batch=8)}
#: episode frames must score below clean ones more often than not: P(clean > episode) above
#: this (each kind's own AUROC is reported: aligned does not see every kind, e.g. darkness)
AUROC_MIN = 0.5
PYAV_MISSING = ("PyAV not importable: its wheel (34 MiB) travels only with `--prepare --video` "
                "(device_check.py), which makes room for it")


def auroc(clean, worse) -> float:
    """P(a clean frame scores above an episode frame), ties half: the Mann-Whitney AUROC, by
    counting every pair."""
    clean, worse = np.asarray(clean, float)[:, None], np.asarray(worse, float)[None, :]
    return float(((clean > worse) + 0.5 * (clean == worse)).mean())


def make_clips(files, folder, videos, frames, size):
    """``videos`` clips (one carried photo each) with the default episodes; returns their
    paths and, per clip, ``{frame number: corruption}`` of its episode frames."""
    os.makedirs(folder, exist_ok=True)
    paths, bad = [], []
    for k in range(videos):
        clip, episodes = episode_frames(read_image(files[k]), frames, size=size, motion="pan", seed=k)
        paths.append(os.path.join(folder, f"clip{k}.mp4"))
        V.write_video(paths[-1], clip, fps=25, codec="libx264")
        bad.append({n: e.corruption for e in episodes for n in e.frames})
    return paths, bad


def video(ctx, tolerance: dict, spearman_min: float):
    if V.av is None:
        ctx.add("video", "PyAV", PYAV_MISSING, skip="no PyAV")
        return
    cfg = SIZES["gpu" if ctx.cuda else "cpu"]
    t = time.perf_counter()
    paths, bad = make_clips(ctx.files, os.path.join(ctx.work, "videos"), cfg["videos"], cfg["frames"], cfg["size"])
    n_bad = sum(len(b) for b in bad)
    ctx.add("video", "clips", f"{len(paths)} x {cfg['frames']} frames, {cfg['size'][0]}x{cfg['size'][1]}, libx264 "
            f"CRF 18 (PyAV {V.av.__version__}), {n_bad} frames in episodes; written in "
            f"{time.perf_counter() - t:.1f} s")
    metric, cpu, batch = create_metric("aligned"), torch.device("cpu"), cfg["batch"]
    # decoding binds on a GPU: a worker per clip, up to the cores (the smoke run: none)
    w = min(len(paths), os.cpu_count() or 1) if ctx.cuda else ctx.size["workers"]
    t = time.perf_counter()
    ref, decoded, errors = P.score_video_frames(metric, paths, cpu, batch_size=batch, num_workers=w, amp=False)
    seconds = time.perf_counter() - t
    keys = sorted(ref)
    want = len(paths) * cfg["frames"]
    ctx.add("video", "VideoFrames decodes every frame written, each scored",
            f"{sum(decoded.values())} decoded, {len(keys)} scored of {want}; {len(errors)} stream errors",
            f"{want}, {want}, 0", sum(decoded.values()) == len(keys) == want and not errors)
    ref_scores = np.array([np.nan if ref[k] is None else ref[k] for k in keys])
    scores = ref_scores
    if ctx.cuda:
        for amp, tag, tol in ((True, "bf16 autocast", tolerance["cuda_amp"]), (False, "fp32", tolerance["cuda_fp32"])):
            got, _, _ = P.score_video_frames(metric, paths, ctx.dev, batch_size=batch, num_workers=w, amp=amp)
            got = np.array([np.nan if got.get(k) is None else got[k] for k in keys])
            scores = got if amp else scores
            ctx.add("video", f"aligned on frames: CUDA {tag} vs CPU", P.compare(got, ref_scores),
                    f"ρ ≥ {spearman_min}, max|Δ| ≤ {tol}", P.agrees(got, ref_scores, spearman_min, tol))
    else:
        ctx.add("video", "aligned on frames: CUDA vs CPU",
                f"CPU side only: {int(np.isfinite(ref_scores).sum())} of {len(keys)} scores finite",
                f"ρ ≥ {spearman_min}", cuda_only=True)
    kind = np.array([bad[v].get(n, "") for v, n in keys])
    clean = scores[kind == ""]
    area = auroc(clean, scores[kind != ""])
    per_kind = {k: auroc(clean, scores[kind == k]) for k in dict.fromkeys(kind[kind != ""])}
    ctx.meta["video"] = {"frames": [list(k) for k in keys], "corruption": kind.tolist(), "scores": scores.tolist(),
                         "cpu_scores": ref_scores.tolist(), "auroc": area, "auroc_by_kind": per_kind}
    ctx.add("video", f"episode frames score worse ({ctx.dev.type}): AUROC, clean above episode",
            f"{area:.3f} ({len(clean)} clean, {int((kind != '').sum())} episode frames); by kind: "
            + ", ".join(f"{k} {a:.2f}" for k, a in per_kind.items()), f"> {AUROC_MIN}", area > AUROC_MIN)
    _speed(ctx, metric, paths, batch, w, None if ctx.cuda else int(np.isfinite(ref_scores).sum()) / seconds)


def _speed(ctx, metric, paths, batch, workers, cpu_rate=None):
    """Frames per second: (a) the loader alone, (b) the metric alone on frames prepared
    beforehand, (c) the two as a run does them (on the CPU: ``cpu_rate``, the reference
    pass's, so the smoke run scores the frames once less)."""
    spec, pool = metric.input_spec, []
    if ctx.cuda:  # warm-up
        P.score_video_frames(metric, paths[:1], ctx.dev, batch_size=batch, num_workers=0)
    a = P.rate(lambda: P.decode_video_only(paths, spec, ctx.dev, 1, batch, workers, keep=pool))
    pool = [x.to(ctx.dev) for x in pool]
    b = P.rate(lambda: P.compute_only(metric, pool, len(pool), batch, ctx.dev))
    c = cpu_rate or P.rate(lambda: sum(s is not None for s in P.score_video_frames(
        metric, paths, ctx.dev, batch_size=batch, num_workers=workers)[0].values()))
    ratio = c / min(a, b)
    row = dict(a=a, b=b, c=c, efficiency=ratio, binding="decode" if a < b else "compute", frames=len(pool),
               workers=workers, batch=batch)
    ctx.meta["video_speed"] = row
    ctx.add("video", f"frames/s: (a) decoded by VideoFrames, (b) aligned alone, (c) end to end; {len(pool)} "
            f"frames, batch {batch}, {workers} workers",
            f"a={a:.1f}, b={b:.1f}, c={c:.1f}: c / min(a, b) = {ratio:.2f} ({row['binding']} bound binds)",
            "≥ 0.85", ratio >= 0.85, cuda_only=True)
