"""The ``proxies`` section of ``benchmarks/device_check.py``: the aligned metric with a
user's proxy and weights file, alone and in an ensemble, CUDA against the CPU, and their
throughput beside the default proxy's.

No download happens: the user's file is written here, a torchvision MobileNetV2 with random
weights (``torch.manual_seed(0)``) whose BatchNorm statistics are measured on a few carried
photos (left at their initial 0 and 1, its features vanish to 1e-10 and every score is
1/1000) and whose classifier is scaled x30 (softmax confidences spread over 0.1-0.6 instead
of sitting at 1/1000). Synthetic weights, real code path: ``weights=`` reads the file
safely, builds the architecture with no download, loads it strictly.
"""

from __future__ import annotations

import os
import time

import numpy as np
import torch
import torchvision

import device_pipeline as P
from fiftyone_dnniqa.core.images import InputSpec, prepare, read_image, to_float
from fiftyone_dnniqa.metrics import create_metric

MOBILENET = "torchvision:mobilenet_v2"
CLASSIFIER_SCALE = 30.0
#: photos the BatchNorm statistics are measured on
CALIBRATION = 16
#: images each proxy setting is timed on, on a GPU
RATE_IMAGES = 4096


def user_weights(files, path: str) -> str:
    """Writes the user's MobileNetV2 state dict (see the module's text) to ``path``."""
    torch.manual_seed(0)
    model = torchvision.models.mobilenet_v2(weights=None)
    x = to_float(torch.stack([prepare(read_image(f), InputSpec(resize=256, crop=224)) for f in files]))
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.momentum = None  # a plain average over the calibration batch
    model.train()
    with torch.no_grad():
        model((x - mean) / std)
    state = model.state_dict()
    state["classifier.1.weight"] = state["classifier.1.weight"] * CLASSIFIER_SCALE
    os.makedirs(os.path.dirname(path), exist_ok=True)
    torch.save(state, path)
    return path


def configs(weights: str):
    """``(label, create_metric options)`` of the section, the default proxy first."""
    return [("aligned (efficientnet_lite0, its shipped weights)", {}),
            (f"aligned proxy={MOBILENET}, user weights", {"proxy": MOBILENET, "weights": weights}),
            (f"aligned ensemble efficientnet_lite0,{MOBILENET} (user weights)",
             {"proxy": ["efficientnet_lite0", MOBILENET], "weights": [None, weights]})]


def proxies(ctx, tolerance: dict, spearman_min: float):
    """CUDA (bf16 autocast and fp32) against the CPU for each proxy setting, then images
    per second end to end on the device (decode on the device) against the default proxy."""
    weights = user_weights(ctx.files[:CALIBRATION], os.path.join(ctx.work, "proxies", "mobilenet_v2-user.pth"))
    ctx.add("proxies", "user weights file", f"{os.path.basename(weights)}: {os.path.getsize(weights) / 2**20:.1f} "
            f"MiB, random MobileNetV2 (seed 0), BatchNorm measured on {CALIBRATION} photos, classifier "
            f"x{CLASSIFIER_SCALE:g}: synthetic")
    n, w = ctx.size["agree"], ctx.size["workers"]
    files, cpu = ctx.files[:n], torch.device("cpu")
    batch = ctx.size["batches"][0]
    rates, cpu_scores = {}, {}
    for label, opts in configs(weights):
        metric = create_metric("aligned", **opts)
        kw = dict(num_workers=w, decode="workers")
        t = time.perf_counter()
        ref, _ = P.score_files(metric, files, cpu, batch_size=16, amp=False, **kw)
        rates[label] = int(np.isfinite(ref).sum()) / (time.perf_counter() - t)  # the CPU's rate: this pass
        cpu_scores[label] = ref.tolist()
        spread = f"scores {np.nanmin(ref):.3f}-{np.nanmax(ref):.3f}" if np.isfinite(ref).any() else "no score"
        if ctx.cuda:
            for amp, tag, tol in ((True, "bf16 autocast", tolerance["cuda_amp"]),
                                  (False, "fp32", tolerance["cuda_fp32"])):
                got, _ = P.score_files(metric, files, ctx.dev, batch_size=64, amp=amp, **kw)
                ctx.add("proxies", f"{label}: CUDA {tag} vs CPU", P.compare(got, ref) + f"; CPU {spread}",
                        f"ρ ≥ {spearman_min}, max|Δ| ≤ {tol}", P.agrees(got, ref, spearman_min, tol))
        else:
            finite = int(np.isfinite(ref).sum())
            ctx.add("proxies", f"{label}: CUDA vs CPU", f"CPU side only: {finite} of {len(ref)} scores finite "
                    f"({spread})", f"ρ ≥ {spearman_min}", cuda_only=True)
        if ctx.cuda:
            rates[label] = _cuda_rate(metric, ctx.files[:RATE_IMAGES], ctx.dev, batch, w)
    how = (f"CUDA, nvJPEG, batch {batch}, {min(RATE_IMAGES, len(ctx.files))} images" if ctx.cuda
           else f"CPU, PIL, batch 16, the {n} images above")
    base = next(iter(rates.values()))
    for label, r in rates.items():
        ctx.add("proxies", f"{label}: end to end ({how})",
                f"{r:.1f} img/s ({r / base:.2f} of the default proxy's {base:.1f})", "reported")
    ctx.meta["proxies"] = {"weights": weights, "files": files, "cpu_scores": cpu_scores, "img_per_s": rates}


def _cuda_rate(metric, files, dev, batch, workers) -> float:
    """Images per second end to end, nvJPEG decoding, after a warm-up (cuDNN's choices,
    nvJPEG's handles)."""
    P.score_files(metric, files[:2 * batch], dev, batch_size=batch, num_workers=workers, decode="device")
    rate = P.rate(lambda: int(np.isfinite(P.score_files(metric, files, dev, batch_size=batch,
                                                        num_workers=workers, decode="device")[0]).sum()))
    torch.cuda.empty_cache()
    return rate
