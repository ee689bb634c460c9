"""Memory stays flat over a run: resident memory while scoring many times
more samples than the loader's buffer holds.

    python benchmarks/memory.py --metric aligned --repeat 4

The 500 sample photos are added ``repeat`` times (as distinct samples); the
resident memory of the process (and, separately, of its loader workers) is
read at each progress step.
"""

from __future__ import annotations

import argparse
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
from sample_data import IMAGES  # noqa: E402
DATA = IMAGES


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--metric", default="aligned")
    ap.add_argument("--repeat", type=int, default=4)
    ap.add_argument("--out")
    args = ap.parse_args(argv)
    os.environ.setdefault("FIFTYONE_DO_NOT_TRACK", "true")
    import psutil
    import fiftyone as fo
    import fiftyone_dnniqa as dq

    files = sorted(os.path.join(DATA, f) for f in os.listdir(DATA))
    ds = fo.Dataset()
    ds.add_samples([fo.Sample(filepath=f) for _ in range(args.repeat) for f in files], progress=False)
    me = psutil.Process()
    points = []

    def progress(fraction, label):
        kids = sum(c.memory_full_info().uss for c in me.children(recursive=True))
        points.append((fraction, me.memory_info().rss / 2**20, kids / 2**20))

    metric = dq.create_metric(args.metric)
    res = dq.compute_quality(ds, metric, progress=progress)
    buffer = res.config.batch_size * 4 * max(1, res.config.num_workers)
    picks = [points[int(k * (len(points) - 1) / 8)] for k in range(9)]
    lines = [f"# Memory over a run: {args.metric} on {len(ds):,} samples", "",
             f"{os.cpu_count()} cores; batch {res.config.batch_size}, {res.config.num_workers} workers: "
             f"the loader buffers at most {buffer} images, {len(ds) / buffer:.0f}x fewer than the run scores.", "",
             "| progress | main process RSS (MiB) | loader workers USS (MiB) |", "|---:|---:|---:|"]
    lines += [f"| {f:.0%} | {m:.0f} | {k:.0f} |" for f, m, k in picks]
    late = [m for f, m, _ in points if f >= 0.25]
    lines += ["", f"growth of the main process from 25% to the end: {max(late) - late[0]:+.0f} MiB"]
    text = "\n".join(lines)
    print(text)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text + "\n")
    ds.delete()


if __name__ == "__main__":
    sys.exit(main())
