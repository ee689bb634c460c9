"""Throughput of compute_quality against its bounds and the loops users write.

For each metric set, side by side in one run, on the same files:
  (a) decode      the engine's loader alone (workers decode and resize): I/O + decode bound
  (b) compute     the metrics alone on pre-decoded tensors, with the engine's parallelism
                  (per-image CPU metrics: one image per core; others: batched, all threads)
  (c) engine      compute_quality end to end, write-back included
  (d) naive       a per-sample ``iter_samples(autosave=True)`` loop
  (e) tight       decode + the metrics called directly, one process, no database
efficiency = (c) / min((a), (b)); where decode and compute share the same cores (CPU), also
(c) / (1 / (1/a + 1/b)), the bound when they cannot overlap. For several metrics, (c) against
the sum of separate calls. Peak memory sums the RSS of the process and its loader workers
(forked pages shared with the parent are counted in each).

A second table measures each pipeline choice for ``aligned`` end to end, one change at a
time: where JPEGs are decoded (loader workers with PIL, or batched on the device with
``torchvision.io.decode_jpeg``, nvJPEG on CUDA), and on CUDA autocast off and larger batches.

    python benchmarks/throughput.py                 # CPU, or the GPU when there is one
    python benchmarks/throughput.py --device cuda --n 20000 --out benchmarks/results/throughput-gpu.md

Images: ../shared/data/imagenet-sample (500 ImageNet photos); ``--n`` above the number of
files cycles through them again (the files are then in the page cache).
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
from sample_data import IMAGES  # noqa: E402
DATA = IMAGES
SETS = {"aligned": ["aligned"], "piqe": ["piqe"], "aligned+piqe": ["aligned", "piqe"],
        "aligned+piqe+entropy": ["aligned", "piqe", "entropy"]}


class PeakRSS:
    """Peak resident memory of this process and its children while active."""

    def __init__(self):
        import psutil

        self.proc = psutil.Process()
        self.peak = 0
        self._stop = threading.Event()

    def _sample(self):
        total = self.proc.memory_info().rss
        for c in self.proc.children(recursive=True):
            try:
                total += c.memory_info().rss
            except Exception:
                pass
        self.peak = max(self.peak, total)

    def _run(self):
        while not self._stop.wait(0.05):
            self._sample()

    def __enter__(self):
        self._sample()
        self.t = threading.Thread(target=self._run, daemon=True)
        self.t.start()
        return self

    def __exit__(self, *a):
        self._stop.set()
        self.t.join()


def timed(fn, n):
    with PeakRSS() as mem:
        t = time.perf_counter()
        fn()
        secs = time.perf_counter() - t
    return n / secs, mem.peak / 2**30


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sets", default=",".join(SETS), help=f"metric sets among {', '.join(SETS)}")
    ap.add_argument("--n", type=int, default=500, help="number of images")
    ap.add_argument("--images", default=DATA, help="folder of images")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--out", help="write the markdown table to this file")
    ap.add_argument("--no-ablations", action="store_true", help="skip the table of pipeline choices")
    args = ap.parse_args(argv)

    os.environ.setdefault("FIFTYONE_DO_NOT_TRACK", "true")
    import torch
    import fiftyone as fo

    import fiftyone_dnniqa as dq
    from fiftyone_dnniqa.core.images import prepare, read_image, to_float
    from fiftyone_dnniqa.scoring.loading import SampleImages, collate_items

    files = sorted(os.path.join(args.images, f) for f in os.listdir(args.images))
    files = [f for f in files if f.lower().endswith((".jpeg", ".jpg", ".png"))]
    if not files:
        sys.exit(f"no images in {args.images}")
    files = (files * (args.n // len(files) + 1))[: args.n]
    n = len(files)
    device = dq.resolve_device(args.device)
    workers = min(4, os.cpu_count() or 1)
    ds = fo.Dataset()
    ds.add_samples([fo.Sample(filepath=f) for f in files], progress=False)
    lines = [f"# Throughput on {n} ImageNet images", "",
             f"{platform.node() or 'machine'}: {os.cpu_count()} cores, "
             f"{torch.cuda.get_device_name(0) if device.type == 'cuda' else 'no GPU'}, torch {torch.__version__}, "
             f"device {device}, {workers} loader workers", "",
             "| metrics | (a) decode | (b) compute | (c) compute_quality | (d) naive loop | "
             "(e) tight loop | c / min(a, b) | c / (a+b serial) | c / d | c / e | peak GiB (c) | "
             "peak GiB (d) |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    notes = []
    single_times = {}
    for set_name in args.sets.split(","):
        names = SETS[set_name]
        metrics = [dq.create_metric(m, device=device) for m in names]
        specs = list(dict.fromkeys(m.input_spec for m in metrics))

        def decode():
            data = SampleImages(files, specs)
            loader = torch.utils.data.DataLoader(data, batch_size=16, num_workers=workers,
                                                 collate_fn=collate_items, prefetch_factor=4)
            for _ in loader:
                pass

        a, _ = timed(decode, n)

        # (b): per-metric rate on pre-decoded tensors, combined as 1 / sum(1 / rate)
        sub = files[: min(n, 100)]
        per_image_total = 0.0
        for m in metrics:
            xs = [to_float(prepare(read_image(f), m.input_spec)).unsqueeze(0) for f in sub]
            m.score(xs[0].to(device))  # warm-up
            if m.cpu_per_image and device.type == "cpu":
                threads = torch.get_num_threads()
                torch.set_num_threads(1)
                t = time.perf_counter()
                for x in xs:
                    m.score(x)
                rate = len(xs) / (time.perf_counter() - t) * workers
                torch.set_num_threads(threads)
            else:
                batch = torch.cat(xs)
                bs = 64 if device.type == "cuda" else 4  # the engine's default batch sizes
                t = time.perf_counter()
                for i in range(0, len(batch), bs):
                    m.score(batch[i:i + bs].to(device))
                if device.type == "cuda":
                    torch.cuda.synchronize()
                rate = len(xs) / (time.perf_counter() - t)
            per_image_total += 1 / rate
        b = 1 / per_image_total

        field = "e_" + set_name.replace("+", "_")
        fields = [f"{field}_{m.name}" for m in metrics]
        c, c_mem = timed(lambda: dq.compute_quality(ds, metrics, field=fields, device=device,
                                                    progress=False), n)
        if len(metrics) == 1:
            single_times[names[0]] = n / c

        def naive():
            for s in ds.iter_samples(autosave=True, progress=False):
                img = read_image(s.filepath)
                for m, f in zip(metrics, fields):
                    s["n_" + f] = float(m.score(to_float(prepare(img, m.input_spec)).unsqueeze(0).to(device))[0])

        d, d_mem = timed(naive, n)

        def tight():
            for f in files:
                img = read_image(f)
                for m in metrics:
                    float(m.score(to_float(prepare(img, m.input_spec)).unsqueeze(0).to(device))[0])

        e, _ = timed(tight, n)
        both = 1 / (1 / a + 1 / b)  # decode and compute sharing the same cores
        lines.append(f"| {set_name} | {a:.1f} | {b:.1f} | {c:.1f} | {d:.1f} | {e:.1f} | {c / min(a, b):.2f} | "
                     f"{c / both:.2f} | {c / d:.2f} | {c / e:.2f} | {c_mem:.2f} | {d_mem:.2f} |")
        if len(metrics) > 1:
            missing = [x for x in names if x not in single_times]
            for x in missing:
                m1 = dq.create_metric(x, device=device)
                r, _ = timed(lambda: dq.compute_quality(ds, m1, field=f"single_{x}", device=device,
                                                        progress=False), n)
                single_times[x] = n / r
            separate = sum(single_times[x] for x in names)
            notes.append(f"{set_name}: one call {n / c:.1f} s, separate calls {separate:.1f} s "
                         f"({separate / (n / c):.2f}x the one call)")
    lines += [""] + [f"- {x}" for x in notes]
    if "aligned" in args.sets.split(",") and not args.no_ablations:
        lines += ["", ablations(ds, device, n, workers)]
    text = "\n".join(lines)
    print(text)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text + "\n")
    fo.delete_dataset(ds.name)


def ablations(ds, device, n, workers, reps=3):
    """``aligned`` end to end under each pipeline choice, one change at a time.

    The configurations run round-robin ``reps`` times; the table gives the median rate,
    since single runs on a shared machine vary by about 10%.
    """
    import numpy as np
    import torch

    import fiftyone_dnniqa as dq

    cuda = device.type == "cuda"
    configs = [("default (decode=\"auto\")", {}),
               ("decode=\"workers\": PIL in the loader workers", {"decode": "workers"}),
               ("decode=\"device\": batched decode_jpeg " + ("(nvJPEG)" if cuda else "in the main process"),
                {"decode": "device"})]
    if cuda:
        configs += [("autocast off (float32)", {"amp": False}), ("batch 128", {"batch_size": 128}),
                    ("batch 256", {"batch_size": 256})]
    metric = dq.create_metric("aligned", device=device)
    rates, mems = {}, {}
    for r in range(reps):
        for k, (label, change) in enumerate(configs):
            rate, mem = timed(lambda: dq.compute_quality(ds, metric, field=f"abl{k}_{r}", device=device,
                                                         progress=False, **change), n)
            rates.setdefault(k, []).append(rate)
            mems[k] = max(mems.get(k, 0.0), mem)
            if cuda:
                torch.cuda.empty_cache()
    out = [f"## Pipeline choices: aligned end to end, {n} images, {workers} loader workers, "
           f"median of {reps} interleaved runs", "",
           "| configuration | images/s (median) | runs | vs default | peak GiB |", "|---|---:|---|---:|---:|"]
    base = float(np.median(rates[0]))
    for k, (label, _) in enumerate(configs):
        med = float(np.median(rates[k]))
        out.append(f"| {label} | {med:.1f} | {', '.join(f'{x:.0f}' for x in rates[k])} | {med / base:.2f} | "
                   f"{mems[k]:.2f} |")
    return "\n".join(out)


if __name__ == "__main__":
    main()
