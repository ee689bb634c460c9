"""CPU lanes against one batch at a time across torch's intra-op threads, side by side.

    python benchmarks/lanes.py                    # aligned, 120 photos, 3 interleaved repeats
    python benchmarks/lanes.py --n 240 --out benchmarks/results/lanes.md

The same ``compute_quality`` call on the same real photos, with the engine's lanes
(``scoring/lanes.py``: one lane per core, each with its own copy of the metric on one
thread) and with one lane (every batch across all of torch's intra-op threads, as the
engine scored before lanes), on an idle machine and beside one CPU-bound process at
``nice 19`` and beside one at normal priority (stand-ins for other programs: a browser, a
test suite, an indexer). Rates
are the run records' images/s; scores must agree.

Images: real ImageNet photos (``$DNNIQA_IMAGENET_SAMPLE``); nothing synthetic. Uses
FiftyOne's configured database; the dataset is deleted at the end.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import statistics
import subprocess
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from app_throughput import make_dataset  # noqa: E402

MODES = ("one lane (intra-op threads)", "lanes")
LOADS = ("idle", "beside a nice-19 busy process", "beside a busy process")


@contextlib.contextmanager
def background(load: str):
    """Nothing, or one busy process (at the lowest priority, or at the same as this one)
    for the duration."""
    if load == "idle":
        yield
        return
    nice = ["nice", "-n", "19"] if "nice" in load else []
    proc = subprocess.Popen(nice + [sys.executable, "-c", "while True: pass"])
    try:
        yield
    finally:
        proc.kill()
        proc.wait()


def run(ds, metric, field: str, mode: str) -> float:
    import fiftyone_dnniqa as dq
    import fiftyone_dnniqa.scoring.execute as execute

    real = execute.open_lanes
    if mode.startswith("one"):
        execute.open_lanes = lambda jobs, device, threads=None: contextlib.nullcontext(None)
    try:
        return dq.compute_quality(ds, metric, field=field, progress=False).images_per_s
    finally:
        execute.open_lanes = real


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=120)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--metric", default="aligned")
    ap.add_argument("--out", help="write the markdown table to this file")
    args = ap.parse_args(argv)
    import torch

    import fiftyone_dnniqa as dq

    ds = make_dataset(args.n)
    metric = dq.create_metric(args.metric)
    rates = {(load, mode): [] for load in LOADS for mode in MODES}
    try:
        for rep in range(args.repeats):
            for load in LOADS:
                with background(load):
                    for mode in MODES:
                        field = f"q_{rep}_{LOADS.index(load)}_{MODES.index(mode)}"
                        rates[(load, mode)].append(run(ds, metric, field, mode))
                        print(f"  {rep + 1}/{args.repeats} {load}, {mode}: {rates[(load, mode)][-1]:.2f} img/s",
                              flush=True)
        values = [np.asarray(ds.values(f), dtype=float) for f in ds.get_field_schema() if f.startswith("q_")]
        diff = max(float(np.max(np.abs(v - values[0]))) for v in values)
    finally:
        ds.delete()
    lines = [f"# CPU lanes against intra-op threads: `{args.metric}` on {args.n} real photos", "",
             f"{platform.node() or 'machine'}: {os.cpu_count()} cores, torch {torch.__version__}, "
             f"{torch.get_num_threads()} intra-op threads by default; {args.repeats} interleaved repeats, medians "
             f"(images/s from the run records: reading, decoding, scoring, writing)", "",
             "| load | one lane (intra-op threads) | lanes | lanes / one lane | runs (one lane; lanes) |",
             "|---|---:|---:|---:|---|"]
    for load in LOADS:
        one, many = (statistics.median(rates[(load, m)]) for m in MODES)
        runs = "; ".join(", ".join(f"{r:.1f}" for r in rates[(load, m)]) for m in MODES)
        lines.append(f"| {load} | {one:.2f} | {many:.2f} | {many / one:.2f} | {runs} |")
    lines += ["", f"Largest score difference between any two runs: {diff:.2e} (thread counts change float "
                  "rounding only). Real photos, a real metric; the busy process is a stand-in for other programs."]
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
