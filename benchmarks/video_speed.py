"""How fast frames of videos are scored in place, against the two bounds of the pipeline.

Real photos (the ImageNet sample) made into synthetic clips: a slow pan over each photo,
``--size`` pixels, ``--frames`` frames, encoded with libx264 (CRF 18) by PyAV; the clips
are real H.264 files, the motion is synthetic. For each metric and frame step, three
measurements take turns, repetition after repetition, in this one run:

- **decode**: the run's own loader (``VideoFrames`` in ``--workers`` DataLoader workers:
  PyAV decoding, RGB conversion of the sampled frames, preparation to the metric's input),
  iterated without scoring: the bound decoding sets;
- **metric**: the metric alone on the same frames, decoded and prepared beforehand, in
  batches of the engine's size: the bound the metric sets;
- **end to end**: ``compute_quality(videos, metric, frame_step=N)`` rescoring everything
  (``overwrite=True``; building the metric excluded), the frames written to the database.

Rates are sampled frames per second (medians over repetitions; the decode bound also as
every frame decoded, sampled or not); ``e2e / bound`` is the end to end rate over the lower
of the two bounds. torch uses ``--threads`` threads.

    python benchmarks/video_speed.py [--videos 2] [--frames 48] [--reps 2] [--metric aligned ...]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

import fiftyone as fo  # noqa: E402
import fiftyone_dnniqa as dq  # noqa: E402
from fiftyone_dnniqa.core.images import prepare, read_image, to_float  # noqa: E402
from fiftyone_dnniqa.core.video import iter_frames, write_video  # noqa: E402
from fiftyone_dnniqa.corruptions.episodes import episode_frames  # noqa: E402
from fiftyone_dnniqa.scoring.loading import batch_loader  # noqa: E402
from fiftyone_dnniqa.scoring.video_loading import VideoFrames  # noqa: E402

from sample_data import IMAGENET_SAMPLE as PHOTOS  # noqa: E402

RESULTS = os.path.join(HERE, "results", "video-speed.md")

READING = """\
Reading: the metric is the bound on CPU; decoding costs a few percent of it. A frame step
decodes every frame still (inter-frame codecs need them) but converts and prepares only
the sampled ones, so the decoded-frames rate rises with the step. A per-image CPU metric
(entropy) scores inside the loader workers, one per core, so its end-to-end rate can pass
the one-process 'metric' bound; a batched metric (aligned) scores in the main process
while the workers decode."""

GPU_NOTE = """\
GPU path (not measured here: no GPU on this host). The frames are decoded on the CPU by
PyAV in the loader workers and shipped to the GPU as uint8 batches (pinned memory), so on
a GPU the decode bound above, per CPU core, is the ceiling: one 2-core host decodes
H.264 at the 'decode' rate while a GPU scores Lite0 at thousands of frames per second. A
GPU decoder (NVDEC through torchcodec's CUDA device, or PyAV with hwaccel) would lift that
ceiling; the loader's items would then carry device tensors and skip the worker processes.
That path is not built: PyAV's wheel has no CUDA decoders, and torchcodec needs FFmpeg
installed on the system."""


def make_videos(folder, n, frames, size):
    photos = sorted(os.path.join(PHOTOS, "images", f) for f in os.listdir(os.path.join(PHOTOS, "images")))
    paths = []
    for k in range(n):
        clip, _ = episode_frames(read_image(photos[k * 11]), frames, size=size, motion="pan", episodes=[])
        path = os.path.join(folder, f"v{k}.mp4")
        write_video(path, clip, fps=25, codec="libx264")
        paths.append(path)
    return paths


def decode_rate(paths, spec, step, workers, batch):
    n = len(paths)
    data = VideoFrames(paths, np.ones((n, 1), bool), [[frozenset()] for _ in paths], step, [spec])
    loader = batch_loader(data, batch, workers, torch.device("cpu"))
    t, count = time.perf_counter(), 0
    for items in loader:
        count += sum("frame" in it for it in items)
    return count / (time.perf_counter() - t)


def metric_rate(metric, batches):
    t = time.perf_counter()
    with torch.no_grad():
        for x in batches:
            metric.score(x)
    return sum(len(x) for x in batches) / (time.perf_counter() - t)


def e2e_rate(dataset, name, step, workers, batch):
    r = dq.compute_quality(dataset, name, frame_step=step, overwrite=True, progress=False,
                           num_workers=workers, batch_size=batch)
    return r.num_frames_scored / r.elapsed_s


def measure(paths, dataset, name, step, args):
    metric = dq.create_metric(name)
    batch = args.batch or (4 if metric.input_spec.fixed_size else 8)
    frames = [prepare(f.permute(2, 0, 1), metric.input_spec) for p in paths
              for _, f in iter_frames(p, step)]
    batches = [to_float(torch.stack(frames[i:i + batch])) for i in range(0, len(frames), batch)]
    rates = {"decode": [], "metric": [], "e2e": []}
    e2e_rate(dataset, name, step, args.workers, batch)  # warm-up: builds, caches, first writes
    for _ in range(args.reps):
        rates["decode"].append(decode_rate(paths, metric.input_spec, step, args.workers, batch))
        rates["metric"].append(metric_rate(metric, batches))
        rates["e2e"].append(e2e_rate(dataset, name, step, args.workers, batch))
    return {k: statistics.median(v) for k, v in rates.items()}, len(frames)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--videos", type=int, default=2)
    p.add_argument("--frames", type=int, default=48)
    p.add_argument("--size", type=int, nargs=2, default=(320, 240), metavar=("W", "H"))
    p.add_argument("--steps", type=int, nargs="+", default=[1, 4])
    p.add_argument("--metric", action="append", help="metrics (default: aligned, entropy)")
    p.add_argument("--reps", type=int, default=2)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--batch", type=int, default=None)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--output", default=RESULTS)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    metrics = args.metric or ["aligned", "entropy"]
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        paths = make_videos(folder, args.videos, args.frames, tuple(args.size))
        dataset = fo.Dataset()
        dataset.add_samples([fo.Sample(filepath=x) for x in paths])
        try:
            for name in metrics:
                for step in args.steps:
                    rate, n = measure(paths, dataset, name, step, args)
                    bound = min(rate["decode"], rate["metric"])
                    rows.append((name, step, n, rate["decode"], rate["metric"], rate["e2e"], rate["e2e"] / bound))
                    print(rows[-1], flush=True)
        finally:
            dataset.delete()
    write_table(rows, args)


def write_table(rows, args):
    head = ("| metric | frame step | frames scored | decode (frames/s) | decoded, all frames (frames/s) "
            "| metric (frames/s) | end to end (frames/s) | e2e / bound |\n|---|---|---|---|---|---|---|---|\n")
    body = "".join(f"| {m} | {s} | {n} | {d:.1f} | {d * s:.0f} | {r:.1f} | {e:.1f} | {q:.2f} |\n"
                   for m, s, n, d, r, e, q in rows)
    text = (f"# Video scoring speed (benchmarks/video_speed.py)\n\n"
            f"{args.videos} synthetic pans over real ImageNet photos, {args.frames} frames of "
            f"{args.size[0]}x{args.size[1]} each, H.264 (libx264, CRF 18) by PyAV; "
            f"{os.cpu_count()} CPU cores (shared host), torch threads {args.threads}, "
            f"{args.workers} loader workers, median of {args.reps} repetitions taken in turns in one run. "
            "Rates are sampled frames per second; decode = the run's loader without scoring, metric = "
            "the metric alone on frames decoded beforehand, end to end = compute_quality(frame_step=N) "
            "with the database writes. Host load average at the end of the run: "
            f"{os.getloadavg()[0]:.1f} (other work shares these cores, so absolute rates are low; "
            "the ratios are side by side).\n\n" + head + body + "\n" + READING + "\n\n" + GPU_NOTE + "\n")
    os.makedirs(os.path.dirname(args.output), exist_ok=True)
    with open(args.output, "w") as f:
        f.write(text)
    print(text)


if __name__ == "__main__":
    main()
