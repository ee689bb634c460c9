"""How fast ``aligned`` scores with a proxy the user chooses, beside the default Lite0.

Real photos (the ImageNet sample) and real weights: the shipped EfficientNet-Lite0 and
Lite2, and MobileNetV2's float ImageNet state dict given as a user's file
(``$DNNIQA_MODELS/mobilenet_v2_imagenet_float.pth``, else ``../shared/models``). Each
metric scores the same photos, prepared once by its own input spec (decoding and
preparation are left out: the metric call only), in batches of ``--batch``; the metrics
take turns, repetition after repetition, and the table gives each one's median
images/s and its ratio to Lite0's, measured side by side in this one run.

    python benchmarks/proxy_speed.py [--images 32] [--batch 16] [--reps 5] [--threads 2]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

import fiftyone_dnniqa as dq  # noqa: E402
from fiftyone_dnniqa.core.images import prepare, read_image, to_float  # noqa: E402

from sample_data import IMAGENET_SAMPLE as PHOTOS, MODELS  # noqa: E402 (one home for both folders)
MNV2 = os.path.join(MODELS, "mobilenet_v2_imagenet_float.pth")
TV = "torchvision:mobilenet_v2"
#: label -> create_metric options
SETTINGS = {
    "Lite0 (default)": {},
    "MobileNetV2 (user file)": {"proxy": TV, "weights": MNV2},
    "Lite0 + MobileNetV2": {"proxy": ["efficientnet_lite0", TV], "weights": [None, MNV2]},
    "Lite2 + MobileNetV2": {"proxy": ["efficientnet_lite2", TV], "weights": [None, MNV2]},
}


def batches_for(metric, images, batch):
    """The photos prepared by ``metric``'s input spec, in batches of equal-sized images
    (an ensemble of several recipes reads native sizes: the engine groups equal sizes)."""
    prepared = [prepare(im, metric.input_spec) for im in images]
    groups = {}
    for x in prepared:
        groups.setdefault(tuple(x.shape), []).append(x)
    return [to_float(torch.stack(g[i:i + batch])) for g in groups.values() for i in range(0, len(g), batch)]


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--images", type=int, default=32)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--reps", type=int, default=5)
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args(argv)
    if not os.path.isfile(MNV2):
        sys.exit(f"no MobileNetV2 weights at {MNV2} (set DNNIQA_MODELS)")
    torch.set_num_threads(args.threads)
    folder = os.path.join(PHOTOS, "images")
    files = sorted(os.path.join(folder, f) for f in os.listdir(folder))[::7][:args.images]
    images = [read_image(f) for f in files]
    metrics = {label: dq.create_metric("aligned", **options) for label, options in SETTINGS.items()}
    inputs = {label: batches_for(m, images, args.batch) for label, m in metrics.items()}
    seconds = {label: [] for label in metrics}
    for label, m in metrics.items():  # warm-up
        m.score(inputs[label][0])
    for _ in range(args.reps):
        for label, m in metrics.items():
            start = time.perf_counter()
            for x in inputs[label]:
                m.score(x)
            seconds[label].append(time.perf_counter() - start)
    base = len(images) / statistics.median(seconds["Lite0 (default)"])
    print(f"aligned on {len(images)} real photos, CPU, {args.threads} threads, batch {args.batch}, "
          f"median of {args.reps} interleaved runs (metric calls only)")
    print("| proxy | input | batches | images/s | vs Lite0 |\n|---|---|---|---|---|")
    for label, m in metrics.items():
        rate = len(images) / statistics.median(seconds[label])
        spec = m.input_spec
        shape = f"resize {spec.resize}, crop {spec.crop}" if spec.crop else f"native, max side {spec.max_side}"
        print(f"| {label} | {shape} | {len(inputs[label])} | {rate:.1f} | {rate / base:.2f} |")


if __name__ == "__main__":
    main()
