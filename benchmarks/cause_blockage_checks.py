"""Where the shipped cause head's blockage detector names weather, and where it does not
(issue 29): lens dirt of every severity under a very heavy JPEG, and black bars on one side
or two (test split)

    python benchmarks/cause_blockage_checks.py

``lens_dirt`` holds its blockage band from severity 2 on, deeper with the severity; severity 1
is smudges alone. Black bars on two opposite sides are how letterboxed or pillarboxed frames
(video, screenshots) look; a dark bar on one side only is the shape of a strap or a hood.
Prints two markdown tables (``results/cause.search.md``, session 24).
"""

from __future__ import annotations

import argparse
import os
import sys

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
sys.path.insert(0, HERE)

from train_cause_head import split_files  # noqa: E402

from fiftyone_dnniqa.core.images import InputSpec  # noqa: E402
from fiftyone_dnniqa.corruptions.compound import compose  # noqa: E402
from fiftyone_dnniqa.metrics import create_metric  # noqa: E402
from fiftyone_dnniqa.metrics.cause_training import load_clean_images  # noqa: E402

#: bar depth, as a share of the side (27 px at 224)
BAR = 0.12
BARS = {"none": (), "letterbox (top and bottom)": ("top", "bottom"), "pillarbox (left and right)": ("left", "right"),
        "one bar (top)": ("top",)}
DEGRADATIONS = (None, ("motion_blur", 4), ("gaussian_noise", 4), ("jpeg_compression", 4))


def barred(x: torch.Tensor, sides) -> torch.Tensor:
    """``x`` (B, 3, H, W) with black bars :data:`BAR` deep on ``sides``."""
    y = x.clone()
    h, w = x.shape[-2:]
    dh, dw = int(h * BAR), int(w * BAR)
    for side in sides:
        region = {"top": (..., slice(0, dh), slice(None)), "bottom": (..., slice(h - dh, None), slice(None)),
                  "left": (..., slice(None), slice(0, dw)), "right": (..., slice(None), slice(w - dw, None))}[side]
        y[region] = 0
    return y


def stored(metric, x):
    """Per image: (weather stored, any cause stored)."""
    with torch.inference_mode():
        labels = [metric.labels(r)[0] for r in metric.score(x).tolist()]
    return (np.array(["weather_occlusion" in {lab for lab, _ in ls} for ls in labels]),
            np.array([bool(ls) for ls in labels]))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=100)
    args = ap.parse_args(argv)
    torch.set_num_threads(max(1, int(os.environ.get("OMP_NUM_THREADS", "2"))))
    metric = create_metric("cause")
    clean, _ = load_clean_images(split_files("test")[:args.images],
                                 InputSpec(resize=metric.backbone.resize, crop=metric.backbone.crop))
    x = torch.stack(clean)
    rng = np.random.default_rng(4)
    quality = rng.integers(3, 6, len(x))
    print(f"Lens dirt under Dodge & Karam's JPEG (severity 3-5, drawn per photo), {len(x)} test photos: weather "
          "stored\n\n| lens_dirt severity | weather stored |\n|---|---|")
    for severity in range(1, 6):
        y = torch.stack([compose(xi, (("lens_dirt", severity), ("dk_jpeg", int(q))), torch.Generator().manual_seed(k))
                         for k, (xi, q) in enumerate(zip(x, quality))])
        print(f"| {severity} | {100 * stored(metric, y)[0].mean():.0f}% |", flush=True)
    print(f"\nBlack bars {100 * BAR:.0f}% deep on {len(x)} test photos, clean or under one degradation at "
          "severity 4: weather stored (any cause stored)\n")
    names = ["clean"] + [d[0] for d in DEGRADATIONS[1:]]
    print("| bars | " + " | ".join(names) + " |\n|---|" + "---|" * len(names))
    for label, sides in BARS.items():
        cells = []
        for step in DEGRADATIONS:
            y = barred(x, sides)
            if step:
                y = torch.stack([compose(yi, (step,), torch.Generator().manual_seed(k)) for k, yi in enumerate(y)])
            weather, any_cause = stored(metric, y)
            cells.append(f"{100 * weather.mean():.0f}% ({100 * any_cause.mean():.0f}%)")
        print(f"| {label} | " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()
