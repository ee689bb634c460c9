"""Throughput of compute_quality against the loops users would write.

Side by side, in one run, on the same files:
  decode       decode-only loop (read_image), one process
  tight        decode + the pyiqa metric called directly, one process
  engine       compute_quality end to end (decode workers, scoring, write-back)
  naive        per-sample ``iter_samples(autosave=True)`` loop

    python benchmarks/throughput.py --metric piqe --n 500

Images: ../shared/data/imagenet-sample (500 ImageNet photos).
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
DATA = os.path.normpath(os.path.join(HERE, "..", "..", "shared", "data", "imagenet-sample", "images"))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--metric", default="piqe")
    ap.add_argument("--n", type=int, default=500, help="number of images")
    ap.add_argument("--images", default=DATA, help="folder of images")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--out", help="write the markdown table to this file")
    args = ap.parse_args(argv)

    os.environ.setdefault("FIFTYONE_DO_NOT_TRACK", "true")
    import torch
    import fiftyone as fo

    import fiftyone_dnniqa as dq
    from fiftyone_dnniqa.loading import read_image, to_float

    files = sorted(os.path.join(args.images, f) for f in os.listdir(args.images))
    files = [f for f in files if f.lower().endswith((".jpeg", ".jpg", ".png"))][: args.n]
    if not files:
        sys.exit(f"no images in {args.images}")
    n = len(files)
    device = dq.resolve_device(args.device)
    metric = dq.create_metric(args.metric, device=device)
    rows = []

    # warm-up: the first calls of a metric pay one-off costs in every variant
    for f in files[:5]:
        metric.score(to_float(read_image(f).unsqueeze(0)).to(device))

    t = time.perf_counter()
    for f in files:
        read_image(f)
    rows.append(("decode only (1 process)", n / (time.perf_counter() - t)))

    # compute bound: the metric alone on pre-decoded tensors (a subset, to bound memory)
    decoded = [to_float(read_image(f).unsqueeze(0)).to(device) for f in files[:100]]
    t = time.perf_counter()
    for x in decoded:
        metric.score(x)
    rows.append((f"{args.metric} alone on decoded tensors ({torch.get_num_threads()} threads)",
                 len(decoded) / (time.perf_counter() - t)))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    t = time.perf_counter()
    for x in decoded:
        metric.score(x)
    one = len(decoded) / (time.perf_counter() - t)
    torch.set_num_threads(threads)
    cores = os.cpu_count() or 1
    rows.append((f"{args.metric} alone, 1 thread, x {cores} cores (ideal parallel bound)", one * cores))
    del decoded

    t = time.perf_counter()
    for f in files:
        float(metric._net(to_float(read_image(f).unsqueeze(0)).to(device))[0]) if hasattr(metric, "_net") \
            else float(metric.score(to_float(read_image(f).unsqueeze(0)).to(device))[0])
    tight = n / (time.perf_counter() - t)
    rows.append((f"tight loop: decode + {args.metric} called directly", tight))

    ds = fo.Dataset()
    ds.add_samples([fo.Sample(filepath=f) for f in files], progress=False)

    t = time.perf_counter()
    for s in ds.iter_samples(autosave=True, progress=False):
        s["naive"] = float(metric.score(to_float(read_image(s.filepath).unsqueeze(0)).to(device))[0])
    naive = n / (time.perf_counter() - t)
    rows.append(("naive iter_samples(autosave=True) loop", naive))

    t = time.perf_counter()
    res = dq.compute_quality(ds, metric, field="engine", device=device, progress=False)
    engine = n / (time.perf_counter() - t)
    assert res.num_scored == n, res.summary()
    rows.append(("compute_quality (end to end, with write-back)", engine))

    info = (f"{platform.node() or 'machine'}: {os.cpu_count()} cores, torch {torch.__version__}, "
            f"device {device}, {n} images, metric {args.metric}")
    lines = [f"# Throughput: {args.metric} on {n} ImageNet images", "", info, "",
             "| variant | images/s |", "|---|---:|"]
    lines += [f"| {name} | {v:.1f} |" for name, v in rows]
    lines += ["", f"compute_quality / tight loop: **{engine / tight:.2f}x** (floor 0.80)",
              f"compute_quality / naive loop: **{engine / naive:.2f}x** (target 3x)",
              f"compute_quality / ideal parallel bound: **{engine / (one * cores):.2f}x**",
              "", f"3x the naive loop would be {3 * naive:.0f} images/s; the metric alone, one image "
              f"per core with no decoding or I/O, reaches {one * cores:.0f} images/s here."]
    text = "\n".join(lines)
    print(text)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text + "\n")
    fo.delete_dataset(ds.name)


if __name__ == "__main__":
    main()
