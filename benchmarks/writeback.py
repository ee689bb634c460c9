"""Writing scores back: how long a million scores take, by chunk size.

    python benchmarks/writeback.py --n 1000000

Builds a synthetic dataset of ``n`` samples (no images), then times the
engine's write path (``set_values(..., key_field="id")`` in chunks) for
several chunk sizes, side by side in one run.
"""

from __future__ import annotations

import argparse
import os
import sys
import time


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--chunks", default="500,5000,50000", help="comma-separated chunk sizes")
    ap.add_argument("--out", help="write the markdown table here")
    args = ap.parse_args(argv)
    os.environ.setdefault("FIFTYONE_DO_NOT_TRACK", "true")
    import numpy as np
    import fiftyone as fo

    from fiftyone_dnniqa.scoring.scorers import Job
    from fiftyone_dnniqa.scoring.writer import flush

    t = time.perf_counter()
    ds = fo.Dataset()
    batch = 100_000
    for start in range(0, args.n, batch):
        ds.add_samples([fo.Sample(filepath=f"/synthetic/{i:08d}.jpg")
                        for i in range(start, min(args.n, start + batch))], progress=False)
    build = time.perf_counter() - t
    ids = ds.values("id")
    rng = np.random.default_rng(0)
    scores = rng.random(args.n).tolist()
    rows = []
    for chunk in [int(c) for c in args.chunks.split(",")]:
        field = f"score_{chunk}"
        ds.add_sample_field(field, fo.FloatField)
        job = Job(metric=None, field=field, spec_index=0, in_worker=False, todo=None)
        t = time.perf_counter()
        for start in range(0, args.n, chunk):
            job.scores = dict(zip(ids[start:start + chunk], scores[start:start + chunk]))
            flush(ds, [job])
        secs = time.perf_counter() - t
        assert ds.count(field) == args.n
        rows.append((chunk, secs))
    lines = [f"# Write-back of {args.n:,} scores", "",
             f"{os.cpu_count()} cores; synthetic dataset built in {build:.0f} s; "
             "the engine's own write path (`set_values(..., key_field='id')` per chunk)", "",
             "| chunk (samples per write) | seconds | scores/s |", "|---:|---:|---:|"]
    lines += [f"| {c:,} | {s:.1f} | {args.n / s:,.0f} |" for c, s in rows]
    text = "\n".join(lines)
    print(text)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text + "\n")
    ds.delete()


if __name__ == "__main__":
    sys.exit(main())
