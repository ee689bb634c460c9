"""Objects with real detectors: does an object's patch quality predict that a real detector
misses it on a degraded copy of a real photo?

Protocol (one command, CPU; ``benchmarks/detectors.py`` loads the detectors):

1. Real photos: the first ``--photos`` of ../shared/data/imagenet-sample (sorted by name).
2. **Pseudo ground truth**: D2Go's detections (int8 Faster R-CNN, COCO) on each clean photo
   at score >= ``--ref-score`` (0.7) are the reference objects; photos without one are left
   out, then the first ``--images`` photos with references are kept.
3. Degraded copies: each kept photo at severity 0 (the photo itself) and at severities
   1..5 of each of ``--corruptions`` (the package's ``apply_corruption``, seeded), saved
   as PNG (lossless: detectors and metrics read the same 8-bit pixels).
4. Both real detectors, D2Go and FastestDet (float one-stage, 352 x 352), run on every
   copy; their detections at score >= their ``--thresholds`` are the predictions. One
   FiftyOne dataset holds the copies, the references (``ground_truth``) and each
   detector's predictions (``d2go``, ``fastestdet``); FiftyOne's ``evaluate_detections``
   (IoU 0.5; class-agnostic unless ``--classwise``) marks each reference found / missed and
   each prediction matched / false, per detector.
5. Quality on every object's patch: ``compute_quality(ds, m, patches_field=...)`` for
   ``aligned``, ``piqe`` and ``entropy`` on the references and on both detectors'
   predictions; box area beside them; the detector's own score on its predictions (the
   limit anchor for false predictions); the severity applied (an oracle a user lacks).
6. Statistics (the package's ``object_statistics``): AUROC (low score flags an error),
   AUROC given size (pairs compared only within tertiles of box area) and per size
   stratum, with 95% bootstrap intervals; a verdict against the goal.

    python benchmarks/objects_real.py          # writes benchmarks/results/objects_real.*
    python benchmarks/objects_real.py --quick  # a smoke run (tests/test_objects_benchmark.py)
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import sys
import tempfile
import time

import numpy as np
import torch
from PIL import Image

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import detectors  # noqa: E402
from sample_data import IMAGES  # noqa: E402

#: one corruption of each of four families: blur, noise, compression, contrast. All 19 at five
#: severities would be about five times the run, too slow for a shared 2-core machine
CORRUPTIONS = ("gaussian_blur", "gaussian_noise", "jpeg_compression", "contrast")
DETECTORS = ("d2go", "fastestdet")
THRESHOLDS = {"d2go": 0.7, "fastestdet": 0.5}
#: each score on the references (found / missed) and on the predictions (matched / false)
ORACLE = "severity"


def log(*a):
    print(time.strftime("%H:%M:%S"), *a, flush=True)


def references(args, d2go):
    """``[(path, [(x0, y0, x1, y1, score, label)])]``: the first ``args.images`` photos
    among the first ``args.photos`` on which D2Go detects something at ``>= args.ref_score``."""
    from fiftyone_dnniqa.core.images import read_image

    files = sorted(os.path.join(args.data, f) for f in os.listdir(args.data))[:args.photos]
    out = []
    for path in files:
        refs = [d for d in d2go(read_image(path)) if d[4] >= args.ref_score]
        if refs:
            out.append((path, refs))
        if len(out) == args.images:
            break
    return out


def copies(args, refs, folder, models):
    """Every degraded copy, its detections by each detector, and seconds spent:
    ``(rows, seconds)`` with rows ``{filepath, clean, corruption, severity, refs, dets}``."""
    from fiftyone_dnniqa.core.images import read_image
    from fiftyone_dnniqa.corruptions.table import apply_corruption

    took = {"corrupt": 0.0, **{n: 0.0 for n in models}}
    n_images = 0
    rows = []
    for i, (path, ref) in enumerate(refs):
        clean = read_image(path)
        variants = [("none", 0)] + [(c, s) for c in args.corruptions for s in args.severities if s]
        for j, (name, sev) in enumerate(variants):
            t0 = time.perf_counter()
            if sev:
                gen = torch.Generator().manual_seed(args.seed * 1_000_003 + i * 1009 + j)
                x = apply_corruption(clean.float() / 255, name, sev, generator=gen)
                img = (x * 255).round().clamp(0, 255).to(torch.uint8)
                fp = os.path.join(folder, f"{i:04d}_{name}_{sev}.png")
                Image.fromarray(img.permute(1, 2, 0).numpy()).save(fp, compress_level=1)
            else:
                img, fp = clean, path
            took["corrupt"] += time.perf_counter() - t0
            dets = {}
            for n, model in models.items():
                t0 = time.perf_counter()
                dets[n] = model(img)
                took[n] += time.perf_counter() - t0
            n_images += 1
            rows.append({"filepath": fp, "clean": path, "corruption": name, "severity": sev, "refs": ref,
                         "dets": dets, "size": (img.shape[2], img.shape[1])})
        if (i + 1) % 10 == 0:
            log(f"{i + 1}/{len(refs)} photos, {n_images} copies")
    return rows, took


def build_dataset(args, rows):
    """The copies with references, predictions and one detection evaluation per detector."""
    import fiftyone as fo

    ds = fo.Dataset()
    samples = []
    for r in rows:
        w, h = r["size"]
        gt = detectors.to_detections(r["refs"], w, h)
        for d in gt.detections:  # the clean photo's score, and the degradation applied (the oracle)
            d["ref_score"], d[ORACLE] = d.confidence, float(r["severity"])
            d.confidence = None
        preds = {n: detectors.to_detections(r["dets"][n], w, h, args.thresholds[n]) for n in r["dets"]}
        for n, p in preds.items():
            for d in p.detections:
                d[ORACLE] = float(r["severity"])
        samples.append(fo.Sample(filepath=r["filepath"], clean_filepath=r["clean"], corruption=r["corruption"],
                                 severity=r["severity"], ground_truth=gt, **preds))
    ds.add_samples(samples, progress=False)
    ds.compute_metadata(progress=False)
    for n in args.detectors:
        ds.evaluate_detections(n, gt_field="ground_truth", eval_key=f"eval_{n}", iou=0.5,
                               classwise=args.classwise, progress=False)
    return ds


def score(ds, metrics, fields):
    """Object attributes ``iqa_<metric>`` on each field's objects; seconds per (field, metric)."""
    import fiftyone_dnniqa as dq

    took = {}
    for f in fields:
        for m in metrics:
            t0 = time.perf_counter()
            r = dq.compute_quality(ds, m, patches_field=f, progress=False)
            took[f"{f}/{m}"] = time.perf_counter() - t0
            log(f"{f} objects scored with {m}: {r.num_scored} scored, {r.num_failed} without a patch, "
                f"{took[f'{f}/{m}']:.1f} s")
    return took


def statistics(ds, args, metrics):
    """``{detector: {"gt"|"pred": {score: ObjectStatistics dict}}}``; box area is in every entry's
    ``size``; the detector's score (``confidence``) on the predictions only."""
    from fiftyone_dnniqa import object_statistics

    out = {}
    runs = set(ds.list_runs())
    if getattr(args, "completed", None) is not None:  # --from-dataset: the runs its log says ended
        runs &= args.completed
    for n in args.detectors:
        out[n] = {}
        for side, field in (("gt", "ground_truth"), ("pred", n)):
            scores = {m: (f"iqa_{m}", None) for m in metrics if f"{field}_iqa_{m}" in runs}
            scores[ORACLE] = (ORACLE, False)
            if side == "pred":
                scores["detector score"] = ("confidence", True)
            out[n][side] = {k: object_statistics(ds, attr, eval_key=f"eval_{n}", side=side, higher_is_better=hib,
                                                 n_boot=args.n_boot).to_dict()
                            for k, (attr, hib) in scores.items()}
    return out


def _num(x):
    """A statistic as a float: NaN where there is none (stored as None in JSON)."""
    return float("nan") if x is None else float(x)


def verdict(stats, goal=0.80):
    """Per detector: does ``aligned`` reach AUROC given size >= ``goal`` for the misses, with
    an interval above box area's AUROC and PIQE's given-size AUROC (non-overlapping)?"""
    out = {}
    for n, st in stats.items():
        gt = st["gt"]
        if "aligned" not in gt:
            continue
        a = gt["aligned"]["given_size"]
        rivals = {"box area": next(iter(gt.values()))["size"]["auroc"]}
        if "piqe" in gt:
            rivals["piqe (given size)"] = gt["piqe"]["given_size"]
        ahead = {k: bool(_num(a["ci_low"]) > _num(r["ci_high"])) for k, r in rivals.items()}
        reaches = bool(_num(a["estimate"]) >= goal)
        out[n] = {"aligned_given_size": a, "reaches": reaches, "ahead": ahead, "met": reaches and all(ahead.values())}
    return out


def _cell(d):
    if d is None or d.get("estimate") is None or not np.isfinite(d["estimate"]):
        return "n/a"
    return f"{d['estimate']:.3f} [{d['ci_low']:.3f}, {d['ci_high']:.3f}]"


def _side_table(side_stats, label):
    lines = [f"| {label} | AUROC | AUROC given size | " + " | ".join(f"stratum {s} AUROC" for s in range(3)) + " |",
             "|---|---|---|---|---|---|"]
    first = next(iter(side_stats.values()))
    for k, st in side_stats.items():
        name = {ORACLE: "severity applied (oracle)"}.get(k, f"`{k}`" if k != "detector score" else k)
        strata = [_cell(r["auroc"]) for r in st["strata"]] + ["n/a"] * (3 - len(st["strata"]))
        lines.append(f"| {name} | {_cell(st['quality']['auroc'])} | {_cell(st['given_size'])} | "
                     + " | ".join(strata[:3]) + " |")
    strata = [f"{r['area_lo']:.0f}..{r['area_hi']:.0f} px, n {r['n']}, rate {r['rate']:.2f}" for r in first["strata"]]
    lines.append(f"| box area | {_cell(first['size']['auroc'])} | - | " + " | ".join(strata + [""] * (3 - len(strata)))
                 + " |")
    return lines


def timing_lines(took, scored, n_copies, n_objects):
    """Seconds, per image or object, and each ratio to the first row's (D2Go per image when
    the run detected, else ``aligned`` per reference), all from the same run."""
    rows = [(f"{k} on {n_copies} copies", t, n_copies) for k, t in took["detect"].items()]
    rows += [(f"`{k.split('/')[1]}` on {n_objects[k.split('/')[0]]} objects of `{k.split('/')[0]}`", t,
              n_objects[k.split("/")[0]]) for k, t in scored.items()]
    if not rows:
        return ["(no timings recorded)"]
    base = rows[0][1] / max(rows[0][2], 1)
    lines = ["| step | total (s) | per image or object (ms) | ratio to the first row |", "|---|---|---|---|"]
    lines += [f"| {name} | {t:.1f} | {1000 * t / max(n, 1):.1f} | {t / max(n, 1) / base:.2f} |" for name, t, n in rows]
    return lines


def report(args, stats, counts, took, scored, n_objects, verdicts, elapsed):
    n_copies = counts["copies"]
    lines = [
        "# Objects with real detectors: object-patch quality against found / missed",
        "",
        f"Command: `python benchmarks/objects_real.py {' '.join(a if a != args.note else '<the note below>' for a in sys.argv[1:])}`; {elapsed / 60:.1f} min on "
        f"{os.cpu_count()} CPU cores ({platform.processor() or platform.machine()}), shared with other jobs.",
        "",
        f"Data: {counts['photos']} real ImageNet-sample photos (of the first {args.photos}) on which D2Go detects "
        f"at least one object at score >= {args.ref_score}: {counts['references']} reference objects. "
        "**The references are pseudo ground truth**: D2Go's own detections on the clean photo, not human boxes. "
        f"{n_copies} copies: each photo clean and at severities {','.join(map(str, args.severities))} of "
        f"{', '.join(args.corruptions)} (the package's corruptions, one per family; all 19 at 5 severities would "
        "be about five times the run on this shared 2-core machine).",
        "",
        f"Detectors (real, pretrained on COCO): D2Go int8 Faster R-CNN (predictions at score >= "
        f"{args.thresholds['d2go']}), FastestDet (>= {args.thresholds['fastestdet']}). FiftyOne's "
        f"`evaluate_detections`, IoU 0.5, {'classwise' if args.classwise else 'class-agnostic (found = localised)'}. "
        f"Outcomes: {counts['outcomes']}. Recall of the references on the clean photos: "
        + ", ".join(f"{k} {v:.2f}" for k, v in counts.get("clean_recall", {}).items()) + ".",
        *(["", args.note] if args.note else []),
        "",
        "AUROC: how well a low score flags an error (a missed reference, or a false prediction); 0.5 is chance. "
        "*Given size*: pairs compared only inside a tertile of box area. 95% bootstrap intervals (objects "
        "resampled; copies of one photo are not independent, so read them as a lower bound on the uncertainty).",
        "",
    ]
    for n, st in stats.items():
        lines += [f"## {n}", "", f"References missed by {n} (found = 1):", ""] + _side_table(st["gt"], "score")
        lines += ["", f"Predictions of {n}, false vs matched (the detector's score is the limit anchor):", ""]
        lines += _side_table(st["pred"], "score") + [""]
    lines += ["## Verdict", "", "Goal: `aligned` on the references' patches reaches AUROC given size >= 0.80 for the "
              "misses of both detectors, ahead of box area and PIQE with non-overlapping intervals.", ""]
    for n, v in verdicts.items():
        ahead = ", ".join(f"{'ahead of' if ok else 'NOT ahead of'} {k}" for k, ok in v["ahead"].items())
        lines.append(f"- {n}: `aligned` given size {_cell(v['aligned_given_size'])}: "
                     f"{'reaches' if v['reaches'] else 'misses'} 0.80; {ahead}. **{'met' if v['met'] else 'not met'}**.")
    lines += ["", "## Time", "", "Seconds on this run's machine; ratios side by side are what carries over.", ""]
    lines += timing_lines(took, scored, n_copies, n_objects) + [""] + what_is_real(args)
    return "\n".join(lines) + "\n"


def what_is_real(args):
    return ["## What is real here, and what is not", "",
            "- Real: the photos, both detectors (pretrained COCO weights, run as published), the package's "
            "corruptions on the decoded photos, FiftyOne's evaluation, every score computed by "
            "`compute_quality(..., patches_field=...)` on the saved pixels.",
            f"- Pseudo: the ground truth is D2Go's clean detections at score >= {args.ref_score}. For D2Go, a "
            "reference is 'missed' when degradation makes D2Go lose what it saw on the clean photo; for "
            "FastestDet, misses also include objects it never finds on the clean photo (a weaker detector, "
            "another label space), which no image-quality score can predict.",
            "- Synthetic: the degradations (the package's corruptions), not natural shifts.",
            "- `severity applied` is an oracle (the known corruption level), not available to a user: it "
            "bounds what a degradation score can do here."]


def run(args):
    """The whole protocol; returns ``(dataset, stats, report facts)``; the caller deletes the dataset."""
    t0 = time.perf_counter()
    models = {n: detectors.load(n, args.models) for n in args.detectors}
    d2go = models["d2go"] if "d2go" in models else detectors.load("d2go", args.models)
    refs = references(args, d2go)
    log(f"{len(refs)} photos with references, {sum(len(r) for _, r in refs)} references")
    rows, took = copies(args, refs, args.folder, models)
    ds = build_dataset(args, rows)
    log("evaluated: " + json.dumps(outcome_counts(ds, args)))
    scored = score(ds, args.metrics, ["ground_truth"] + list(args.detectors))
    return finish(ds, args, refs_counts(ds), {"detect": took}, scored, t0)


def outcome_counts(ds, args):
    return {n: {s: {str(k): int(v) for k, v in zip(*np.unique(ds.values(f"{f}.detections.eval_{n}", unwind=True),
                                                               return_counts=True))}
                for s, f in (("gt", "ground_truth"), ("pred", n))} for n in args.detectors}


def refs_counts(ds):
    """Photos, references, copies, and each detector's recall on the clean photos."""
    from fiftyone import ViewField as F  # deferred like every FiftyOne import here

    clean = ds.match(F("severity") == 0)
    n = clean.count("ground_truth.detections")
    recall = {k[len("eval_"):]: clean.count_values(f"ground_truth.detections.{k}").get("tp", 0) / max(n, 1)
              for k in ds.list_evaluations()}
    return {"photos": len(clean), "references": n, "copies": len(ds), "clean_recall": recall}


def finish(ds, args, counts, took, scored, t0):
    """Statistics and report facts of an evaluated, scored dataset."""
    counts = {**counts, "outcomes": outcome_counts(ds, args)}
    n_objects = {f: ds.count(f"{f}.detections") for f in ["ground_truth"] + list(args.detectors)}
    stats = statistics(ds, args, args.metrics)
    facts = {"counts": counts, "took": took, "scored": scored, "n_objects": n_objects, "verdict": verdict(stats),
             "elapsed_s": time.perf_counter() - t0}
    return ds, stats, facts


def from_dataset(args):
    """The statistics of a dataset a run kept (``--from-dataset``); seconds from its log."""
    import fiftyone as fo

    ds = fo.load_dataset(args.from_dataset)
    args.corruptions = sorted(set(ds.distinct("corruption")) - {"none"})
    args.severities = sorted(set(ds.distinct("severity")) - {0})
    scored = {}
    lines = []
    if args.log:
        with open(args.log) as f:
            lines = f.read().splitlines()
    for line in lines:
        m = re.search(r"(\S+) objects scored with (\S+): .* ([0-9.]+) s$", line.strip())
        if m:
            scored[f"{m[1]}/{m[2]}"] = float(m[3])
    args.completed = {f"{k.split('/')[0]}_iqa_{k.split('/')[1]}" for k in scored} if args.log else None
    return finish(ds, args, refs_counts(ds), {"detect": {}}, scored, time.perf_counter())


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--photos", type=int, default=500, help="photos searched for references")
    ap.add_argument("--images", type=int, default=80, help="photos with references kept")
    ap.add_argument("--ref-score", type=float, default=0.7)
    ap.add_argument("--corruptions", default=",".join(CORRUPTIONS))
    ap.add_argument("--severities", default="1,2,3,4,5")
    ap.add_argument("--detectors", default=",".join(DETECTORS))
    ap.add_argument("--thresholds", default=",".join(f"{k}={v}" for k, v in THRESHOLDS.items()))
    ap.add_argument("--classwise", action="store_true", help="found only with the reference's label")
    ap.add_argument("--metrics", default="aligned,piqe,entropy")
    ap.add_argument("--n-boot", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--quick", action="store_true", help="a smoke run: 30 photos searched, 4 kept, 2 corruptions "
                                                         "at severities 3 and 5, aligned and entropy, 200 resamples")
    ap.add_argument("--data", default=IMAGES)
    ap.add_argument("--models", default=detectors.MODELS)
    ap.add_argument("--out", default=os.path.join(HERE, "results", "objects_real"))
    ap.add_argument("--from-dataset", default=None, help="only the statistics of a dataset a run kept")
    ap.add_argument("--note", default=None, help="a line for the report (what happened to the run)")
    ap.add_argument("--log", default=None, help="with --from-dataset: that run's log, for its timings")
    args = ap.parse_args(argv)
    if args.quick:
        args.photos, args.images, args.corruptions, args.severities = 30, 4, "gaussian_blur,gaussian_noise", "3,5"
        args.metrics, args.n_boot = "aligned,entropy", 200
    args.corruptions = [c for c in args.corruptions.split(",") if c]
    args.severities = [int(s) for s in str(args.severities).split(",") if s]
    args.detectors = [d for d in args.detectors.split(",") if d]
    args.metrics = [m for m in args.metrics.split(",") if m]
    args.thresholds = {**THRESHOLDS, **{k: float(v) for k, v in (kv.split("=") for kv in args.thresholds.split(","))}}
    return args


def main(argv=None):
    args = parse_args(argv)
    torch.set_num_threads(1)  # 2 cores shared with other jobs: one thread each, no spinning
    absent = detectors.missing(args.detectors, args.models)
    if absent:
        sys.exit(f"the detectors' files are not on disk: {absent} (set DNNIQA_MODELS)")
    if args.from_dataset:
        ds, stats, facts = from_dataset(args)
    else:
        with tempfile.TemporaryDirectory(prefix="dnniqa-objects-real-") as folder:
            args.folder = folder
            ds, stats, facts = run(args)
            ds.delete()
    text = report(args, stats, facts["counts"], facts["took"], facts["scored"], facts["n_objects"],
                  facts["verdict"], facts["elapsed_s"])
    with open(args.out + ".md", "w") as f:
        f.write(text)
    with open(args.out + ".json", "w") as f:
        json.dump({"args": {k: v for k, v in vars(args).items() if k != "folder"}, "statistics": stats, **facts,
                   "pseudo_ground_truth": f"D2Go on the clean photo, score >= {args.ref_score}"},
                  f, indent=1, default=lambda o: sorted(o) if isinstance(o, set) else float(o))
    print(text)


if __name__ == "__main__":
    main()
