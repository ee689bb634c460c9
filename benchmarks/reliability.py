"""Reliability figures: hostile inputs, fuzzed bytes, a process killed mid-run.

    python benchmarks/reliability.py [--out benchmarks/results/reliability.md]

Counts, for each scenario, the cases tried, the cases survived (the run
finished and every sample has a score or a recorded reason) and the samples
lost (readable images left without a score, or scores that differ from a
clean run). Lost must be 0.
"""

from __future__ import annotations

import argparse
import io
import os
import signal
import subprocess
import sys
import tempfile
import textwrap
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
from sample_data import IMAGES  # noqa: E402
DATA = IMAGES
sys.path.insert(0, os.path.join(ROOT, "tests"))


def corpus_scenario(tmp, good, metrics):
    import numpy as np
    import fiftyone as fo
    import fiftyone_dnniqa as dq
    from corpus import build_corpus

    cases, must_score = build_corpus(tmp)
    ds = fo.Dataset()
    ds.add_samples([fo.Sample(filepath=p) for p in good + list(cases.values())], progress=False)
    clean = fo.Dataset()
    clean.add_samples([fo.Sample(filepath=p) for p in good], progress=False)
    res = dq.compute_quality(ds, metrics, batch_size=4)
    dq.compute_quality(clean, metrics, batch_size=4)
    tried = survived = lost = 0
    for field, r in res.items():
        by_path = dict(zip(ds.values("filepath"), zip(ds.values(field), ds.values(field + "_error"))))
        ref = dict(zip(clean.values("filepath"), clean.values(field)))
        for name, path in cases.items():
            tried += 1
            score, reason = by_path[path]
            ok = r.status == "completed" and (score is None) != (reason is None)
            if name in must_score and score is None:
                ok = False
                lost += 1
            survived += ok
        for p in good:
            if by_path[p][0] is None or not np.isclose(by_path[p][0], ref[p], rtol=1e-5, atol=1e-6):
                lost += 1
    ds.delete()
    clean.delete()
    return tried, survived, lost


def fuzz_scenario(n, seed=0):
    import numpy as np
    from PIL import Image
    from fiftyone_dnniqa.core.images import ImageLoadError, read_image

    rng = np.random.default_rng(seed)
    seeds = []
    for fmt in ("PNG", "JPEG", "GIF", "WEBP", "TIFF", "BMP"):
        b = io.BytesIO()
        Image.fromarray(rng.integers(0, 256, (24, 32, 3), dtype=np.uint8)).save(b, format=fmt)
        seeds.append(b.getvalue())
    path = os.path.join(tempfile.mkdtemp(), "fuzz.img")
    survived = 0
    for _ in range(n):
        data = bytearray(seeds[rng.integers(len(seeds))])
        for _ in range(rng.integers(0, 16)):
            data[rng.integers(len(data))] = rng.integers(256)
        if rng.random() < 0.5:
            data = data[: rng.integers(len(data) + 1)]
        with open(path, "wb") as f:
            f.write(bytes(data))
        try:
            x = read_image(path, max_pixels=4_000_000)
            survived += x.ndim == 3 and x.shape[0] == 3
        except ImageLoadError:
            survived += 1
    return n, survived, 0


KILL = textwrap.dedent("""
    import sys, time
    import fiftyone as fo, fiftyone_dnniqa as dq
    from fiftyone_dnniqa.metrics.base import InputSpec, QualityMetric
    class Slow(QualityMetric):
        name = "slow"
        input_spec = InputSpec(resize=16, crop=16)
        def score(self, images, references=None):
            time.sleep(float(sys.argv[2]))
            return images.mean(dim=(1, 2, 3)).double()
    dq.compute_quality(fo.load_dataset(sys.argv[1]), Slow(), batch_size=2, num_workers=0, write_every=2)
""")


def kill_scenario(good, rounds):
    import fiftyone as fo

    tried = survived = lost = 0
    for k in range(rounds):
        ds = fo.Dataset(persistent=True)
        ds.add_samples([fo.Sample(filepath=p) for p in good], progress=False)
        proc = subprocess.Popen([sys.executable, "-c", KILL, ds.name, "0.1"])
        t = time.time()
        while time.time() - t < 60:
            ds.reload()
            if ds.has_sample_field("iqa_slow") and ds.count("iqa_slow") >= 2 + 2 * k:
                break
            time.sleep(0.05)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        ds.reload()
        before = dict(zip(ds.values("id"), ds.values("iqa_slow")))
        subprocess.run([sys.executable, "-c", KILL, ds.name, "0"], check=True, capture_output=True)
        ds.reload()
        after = dict(zip(ds.values("id"), ds.values("iqa_slow")))
        tried += 1
        missing = sum(v is None for v in after.values())
        changed = sum(1 for i, v in before.items() if v is not None and after[i] != v)
        lost += missing + changed
        survived += missing == 0 and changed == 0
        ds.delete()
    return tried, survived, lost


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--fuzz", type=int, default=2000, help="fuzzed files to decode")
    ap.add_argument("--kills", type=int, default=3, help="SIGKILL-and-resume rounds")
    ap.add_argument("--out", help="write the markdown table here")
    args = ap.parse_args(argv)
    os.environ.setdefault("FIFTYONE_DO_NOT_TRACK", "true")
    os.environ.setdefault("FIFTYONE_SHOW_PROGRESS_BARS", "false")

    good = sorted(os.path.join(DATA, f) for f in os.listdir(DATA))[:12] if os.path.isdir(DATA) else []
    if not good:
        sys.exit(f"no images in {DATA}")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        rows.append(("bad-input corpus x {piqe, aligned}", *corpus_scenario(tmp, good, ["piqe", "aligned"])))
    rows.append(("fuzzed image bytes through the loader", *fuzz_scenario(args.fuzz)))
    rows.append(("SIGKILL mid-run, then resume", *kill_scenario(good, args.kills)))
    lines = ["# Reliability", "", f"{os.cpu_count()} cores; {len(good)} real ImageNet photos beside the bad files.", "",
             "| scenario | cases tried | cases survived | samples lost |", "|---|---:|---:|---:|"]
    lines += [f"| {name} | {t} | {s} | {l} |" for name, t, s, l in rows]
    total = [sum(r[i] for r in rows) for i in (1, 2, 3)]
    lines.append(f"| **total** | **{total[0]}** | **{total[1]}** | **{total[2]}** |")
    text = "\n".join(lines)
    print(text)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text + "\n")
    return 0 if total[2] == 0 and total[0] == total[1] else 1


if __name__ == "__main__":
    sys.exit(main())
