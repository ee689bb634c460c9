"""Parts of ``benchmarks/cause.py``: the cleanvision comparison, the cost of ``cause``
beside ``aligned``, the real-photo check, and the written report."""

from __future__ import annotations

import json
import os
import time

import numpy as np
import torch
from PIL import Image, ImageFilter

from fiftyone_dnniqa.core.images import InputSpec, prepare, read_image, to_float
from fiftyone_dnniqa.corruptions import SUITES
from fiftyone_dnniqa.demo import packaged_photos
from fiftyone_dnniqa.metrics import create_metric
from fiftyone_dnniqa.metrics.blockage import edge_statistics
from fiftyone_dnniqa.metrics.cause import (
    FAMILIES, FAMILY_OF, NONE, image_statistics, multiscale_statistics, regional_statistics,
)
from fiftyone_dnniqa.metrics.shared_forward import clear_memo, proxy_outputs

#: cleanvision check -> the family it speaks for (in this order when several fire)
CHECKS = {"blurry": "blur", "dark": "exposure", "light": "exposure", "low_information": "contrast_haze"}


def cleanvision_checks(test, probs, stored):
    """cleanvision's checks and the head on the same images: per family, the share flagged
    (severity >= 3); on clean images, the share flagged by anything; top-1 accuracy."""
    from cleanvision import Imagelab  # deferred: a benchmark-only dependency

    t0 = time.time()
    lab = Imagelab(filepaths=test["pngs"], verbose=False)
    lab.find_issues({k: {} for k in CHECKS}, n_jobs=1, verbose=False)
    issues = lab.issues.reindex(test["pngs"])
    flags = {k: issues[f"is_{k}_issue"].to_numpy(bool) for k in CHECKS}
    seconds = time.time() - t0
    names = test["names"]
    cv_first = []
    for k in range(len(names)):
        hit = [CHECKS[c] for c in CHECKS if flags[c][k]]
        cv_first.append(hit[0] if hit else NONE)
    ours = [{lab for lab, _ in s} for s in stored]
    rows = {}
    for fam in FAMILIES:
        idx = [k for k, n in enumerate(names) if FAMILY_OF.get(n) == fam]
        checks = [c for c in CHECKS if CHECKS[c] == fam]
        rows[fam] = {"n": len(idx), "ours_flagged": float(np.mean([fam in ours[k] for k in idx])),
                     "cleanvision_checks": checks,
                     "cleanvision_flagged": float(np.mean([any(flags[c][k] for c in checks) for k in idx]))
                     if checks else None}
    clean = [k for k, n in enumerate(names) if n == "clean"]
    out = {"per_family": rows, "seconds": round(seconds, 1),
           "clean_flagged_ours": float(np.mean([stored[k][0][0] != NONE for k in clean])),
           "clean_flagged_cleanvision": float(np.mean([cv_first[k] != NONE for k in clean])),
           "clean_flagged_by_check": {c: float(flags[c][clean].mean()) for c in CHECKS}}
    for label, members in (("dodge_karam", set(SUITES["dodge_karam"])),
                           ("imagenet_c_15", {n for n in SUITES["imagenet_c"] if n in FAMILY_OF})):
        idx = [k for k, n in enumerate(names) if n in members]
        out[f"top1_{label}"] = {"ours": float(np.mean([stored[k][0][0] == FAMILY_OF[names[k]] for k in idx])),
                                "cleanvision": float(np.mean([cv_first[k] == FAMILY_OF[names[k]] for k in idx]))}
    return out


def _time_metric_calls(batches, aligned, cause):
    """Seconds for aligned alone, aligned then cause on each batch, and cause alone."""
    out = {}
    for mode in ("aligned", "aligned+cause", "cause"):
        best = float("inf")
        for _ in range(2):
            clear_memo()
            t = time.perf_counter()
            for x in batches:
                if mode != "cause":
                    aligned.score(x.clone())
                else:
                    clear_memo()  # alone: no shared forward pass to reuse
                if mode != "aligned":
                    cause.score(x.clone())
            best = min(best, time.perf_counter() - t)
        out[mode] = best
    return out


def _time_parts(batches, backbone, reps=5):
    """ms per image, best of ``reps`` rounds (interleaved): the proxy's plain pass, the
    pass with the feature-level statistics every metric now gets, and the cheap image
    regional and multiscale statistics ``cause`` adds."""
    def plain(x):
        return backbone.model(backbone.normalize(x).contiguous(memory_format=torch.channels_last))

    def with_levels(x):
        clear_memo()
        return proxy_outputs(backbone, x)

    parts = {"proxy pass": plain, "proxy pass + level statistics": with_levels, "image statistics": image_statistics,
             "regional statistics": regional_statistics, "multiscale statistics": multiscale_statistics,
             "edge statistics": edge_statistics}
    best = {k: float("inf") for k in parts}
    n = sum(len(x) for x in batches)
    with torch.inference_mode():
        for _ in range(reps):
            for name, f in parts.items():
                t = time.perf_counter()
                for x in batches:
                    f(x)
                best[name] = min(best[name], (time.perf_counter() - t) / n * 1000)
    return {k: round(v, 2) for k, v in best.items()}


def cost_of_cause(files, log=print):
    """The extra cost of ``cause`` over ``aligned``, on the CPU: the metrics alone (batches
    of 4, the engine's CPU default), and ``compute_quality`` on a real dataset."""
    import fiftyone as fo  # deferred: only the end-to-end timing needs a database

    from fiftyone_dnniqa import compute_quality

    aligned, cause = create_metric("aligned"), create_metric("cause")
    spec = InputSpec(resize=256, crop=224)
    imgs = [to_float(prepare(read_image(f), spec).unsqueeze(0))[0] for f in files]
    batches = [torch.stack(imgs[k:k + 4]) for k in range(0, len(imgs), 4)]
    calls = {k: round(v / len(imgs) * 1000, 2) for k, v in _time_metric_calls(batches, aligned, cause).items()}
    log(f"  ms per image (metric calls): {calls}")
    parts = _time_parts(batches, aligned.backbones[0])
    log(f"  ms per image (parts): {parts}")
    ds = fo.Dataset()
    try:
        ds.add_samples([fo.Sample(filepath=f) for f in files], progress=False)
        engine = {}
        # built metrics, so that loading the weights is not counted
        for label, metrics, fields in (("aligned", aligned, "a1"), ("aligned+cause", [aligned, cause], ["a2", "c2"]),
                                       ("cause", cause, "c3")):
            clear_memo()
            t = time.perf_counter()
            compute_quality(ds, metrics, field=fields, progress=False, device="cpu")
            engine[label] = round((time.perf_counter() - t) / len(files) * 1000, 2)
        log(f"  ms per image (compute_quality): {engine}")
        sample = ds.first()
        example = {"c2": [(c.label, round(c.confidence, 3)) for c in sample["c2"].classifications],
                   "c2_severity": round(sample["c2_severity"], 2)}
    finally:
        ds.delete()
    return {"images": len(files), "threads": torch.get_num_threads(), "metric_ms_per_image": calls,
            "parts_ms_per_image": parts, "compute_quality_ms_per_image": engine, "example_stored": example}


#: the real-photo check's blur: a Gaussian of this radius (px) on 256 px thumbnails, about
#: 7 px at the head's 224 px input, stronger than any blur of the training (severity 5)
STRONG_BLUR = 8


def real_photo_checks(head_path, photos=None):
    """The head at ``head_path`` on real photos (default: scikit-image's, as packaged), each
    a 256 px thumbnail, clean and blurred by a Gaussian of :data:`STRONG_BLUR` px (beyond the
    training's range, where a head's gate can leave a blurred photo "clean"): each photo's
    stored families, and the shares of blurred photos stored ``blur`` and of clean photos
    with no cause. The same photos as ``tests/test_report_every_run.py``'s fixture."""
    photos = packaged_photos() if photos is None else photos
    if not photos:
        return None
    metric = create_metric("cause", path=head_path)
    spec = InputSpec(resize=metric.backbone.resize, crop=metric.backbone.crop)
    names, clean, blurred = [], [], []
    for name, path in photos:
        with Image.open(path) as im:
            im = im.convert("RGB")
            im.thumbnail((256, 256))
            for kind, image in ((clean, im), (blurred, im.filter(ImageFilter.GaussianBlur(STRONG_BLUR)))):
                kind.append(to_float(prepare(torch.from_numpy(np.asarray(image).copy()).permute(2, 0, 1),
                                             spec).unsqueeze(0))[0])
        names.append(name)
    stored = {}
    for kind, images in (("clean", clean), ("blurred", blurred)):
        rows = metric.score(torch.stack(images)).tolist()
        stored[kind] = [[label for label, _ in metric.labels(r)[0]] for r in rows]
    return {"photos": names, "stored": stored, "blur_radius": STRONG_BLUR,
            "blurred_named_blur": float(np.mean(["blur" in s for s in stored["blurred"]])),
            "clean_no_cause": float(np.mean([not s for s in stored["clean"]]))}


def _pct(v):
    return "-" if v is None else f"{100 * v:.1f}%"


def write_report(res, folder):
    """``cause.md`` and ``cause.json`` in ``folder``."""
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, "cause.json"), "w") as f:
        json.dump(res, f, indent=1, default=str)
    h = res["headline"]
    lines = ["# Cause head: which imaging condition (benchmarks/cause.py)", "",
             f"Test split of the ImageNet sample ({res['num_test_images']} images the head was not trained on), "
             "224 px crops, severities 3-5. Stored = the first label written to the field "
             "(\"none\" on a corrupted image is wrong); arg-max = the most likely family.", "",
             "| measure | target | stored | arg-max | n |", "|---|---|---|---|---|"]
    for key, label, target in (("dodge_karam", "top-1 family, Dodge & Karam 5", ">= 90%"),
                               ("imagenet_c_15", "top-1 family, ImageNet-C 15 (14 with a family)", ">= 80%"),
                               ("imagenet_c_19", "top-1 family, ImageNet-C 15 + 4 (17 with a family)", "-"),
                               ("low_light", "top-1 family, low light (camera suite)", "-")):
        a = h[key]
        lines.append(f"| {label} | {target} | {_pct(a['stored'])} | {_pct(a['argmax'])} | {a['n']} |")
    lines.append(f"| \"none\" on clean images | >= 90% | {_pct(h['clean_none_rate'])} | | "
                 f"{res['num_test_images']} |")
    for k, v in h.items():
        if k.startswith("compound:"):
            lines.append(f"| both families flagged, {k[9:]} | - | {_pct(v['both_flagged'])} | | {v['n']} |")
    lines += ["", f"Severity: Spearman {h['severity_spearman']:.3f} with the true severity (clean = 0); "
              f"mean predicted by true severity {h['severity_by_true']}.", "",
              "## Per corruption (stored label)", "", "| corruption | family | stored | arg-max | n |",
              "|---|---|---|---|---|"]
    for c, a in h["per_corruption"].items():
        lines.append(f"| {c} | {FAMILY_OF[c]} | {_pct(a['stored'])} | {_pct(a['argmax'])} | {a['n']} |")
    lines += ["", f"No family (predictions listed, not scored): {json.dumps(h['unassigned'])}", ""]
    lines += (_held_out_lines(res.get("held_out")) + _real_photo_lines(res.get("real_photos"))
              + _cleanvision_lines(res.get("cleanvision")) + _cost_lines(res.get("cost")))
    with open(os.path.join(folder, "cause.md"), "w") as f:
        f.write("\n".join(lines) + "\n")


def _held_out_lines(ho):
    if not ho:
        return []
    lines = ["## Held out of training", "",
             "One corruption left out (its family keeps other members), the measured head's recipe refitted on "
             "the dev examples (rendered by today's code) without it: is its own family the most likely "
             "(arg-max), and is it stored?", "",
             "| held-out corruption | family | arg-max = own family | stored = own family | arg-max confusions |",
             "|---|---|---|---|---|"]
    for c, v in ho["corruptions"].items():
        a = v["accuracy"]
        lines.append(f"| {c} | {FAMILY_OF[c]} | {_pct(a['argmax'])} | {_pct(a['stored'])} | {v['argmax_confusion']} |")
    mean = {k: float(np.mean([v["accuracy"][k] for v in ho["corruptions"].values()])) for k in ("argmax", "stored")}
    lines += ["", f"Mean over held-out corruptions: arg-max {_pct(mean['argmax'])}, stored {_pct(mean['stored'])}.", "",
              "One whole family left out: what is named instead (shares of its images), and the "
              "nearest families by their mean effect on the head's features (each example's features "
              "minus its clean image's, standardised; Euclidean and cosine distance between the "
              "families' mean shifts, nearest first)", "",
              "| held-out family | arg-max family | stored label | nearest, Euclidean | nearest, cosine |",
              "|---|---|---|---|---|"]
    hits = {"euclidean": 0, "cosine": 0}
    for f, v in ho["families"].items():
        near = v.get("nearest", {})
        named = max(v["argmax"], key=v["argmax"].get)
        cells = []
        for kind in hits:
            order = near.get(kind, [])
            hits[kind] += bool(order) and order[0] == named
            cells.append(_nearest_cell(order, named))
        lines.append(f"| {f} | {v['argmax']} | {v['stored']} | " + " | ".join(cells) + " |")
    if any("nearest" in v for v in ho["families"].values()):
        n = len(ho["families"])
        lines += ["", f"The family named most often (arg-max) is the nearest one for {hits['euclidean']} of {n} "
                      f"families held out whole by Euclidean distance, {hits['cosine']} of {n} by cosine distance."]
    return lines + [""]


def _nearest_cell(order, named):
    """The three nearest families, "(named)" after the one the head named most often."""
    if not order:
        return "-"
    return ", ".join(f + (" (named)" if f == named else "") for f in order[:3])


def _real_photo_lines(rp):
    if not rp:
        return []
    lines = ["## Real photos blurred beyond the training's range", "",
             f"{len(rp['photos'])} packaged photos (scikit-image) as 256 px thumbnails, clean and blurred by a "
             f"Gaussian of {rp['blur_radius']} px (about 7 px at 224, stronger than the training's severity 5): "
             f"blur stored on {_pct(rp['blurred_named_blur'])} of the blurred ones, no cause on "
             f"{_pct(rp['clean_no_cause'])} of the clean ones.", "",
             "| photo | clean: stored | blurred: stored |", "|---|---|---|"]
    for name, c, b in zip(rp["photos"], rp["stored"]["clean"], rp["stored"]["blurred"]):
        lines.append(f"| {name} | {', '.join(c) or '(no cause)'} | {', '.join(b) or '(no cause)'} |")
    return lines + [""]


def _cleanvision_lines(cv):
    if not cv:
        return []
    lines = ["## Against cleanvision 0.3.7 (blurry, dark, light, low_information; default thresholds)", "",
             "| family (severity 3-5) | n | cause head flags it | cleanvision check(s) | cleanvision flags it |",
             "|---|---|---|---|---|"]
    for f, v in cv["per_family"].items():
        lines.append(f"| {f} | {v['n']} | {_pct(v['ours_flagged'])} | {', '.join(v['cleanvision_checks']) or '-'} | "
                     f"{_pct(v['cleanvision_flagged'])} |")
    lines += ["", f"Clean images flagged: cause head {_pct(cv['clean_flagged_ours'])}, cleanvision "
              f"{_pct(cv['clean_flagged_cleanvision'])} (by check: {cv['clean_flagged_by_check']}).",
              f"Top-1 family, cleanvision's first check read as a family: Dodge & Karam "
              f"{_pct(cv['top1_dodge_karam']['cleanvision'])} (head {_pct(cv['top1_dodge_karam']['ours'])}); "
              f"ImageNet-C {_pct(cv['top1_imagenet_c_15']['cleanvision'])} (head {_pct(cv['top1_imagenet_c_15']['ours'])}).",
              ""]
    return lines


def _cost_lines(cost):
    if not cost:
        return []
    m, e = cost["metric_ms_per_image"], cost["compute_quality_ms_per_image"]
    return ["## Cost on the CPU", "",
            f"{cost['images']} images, {cost['threads']} thread(s), ms per image:", "",
            "| | aligned | aligned + cause | cause alone |", "|---|---|---|---|",
            f"| metric calls (batches of 4) | {m['aligned']} | {m['aligned+cause']} | {m['cause']} |",
            f"| compute_quality (built metrics, database writes included) | {e['aligned']} | {e['aligned+cause']} | "
            f"{e['cause']} |", ""] + _parts_lines(cost.get("parts_ms_per_image")) + [
            f"Stored, first image: {cost['example_stored']}", ""]


def _parts_lines(parts):
    if not parts:
        return []
    base = parts["proxy pass"]
    return ["Where the extra time goes (ms per image, best of 5 interleaved rounds, the same batches): "
            + ", ".join(f"{k} {v}" for k, v in parts.items())
            + f". The level statistics add {100 * (parts['proxy pass + level statistics'] / base - 1):.1f}% to "
            "the proxy pass that `aligned` pays for anyway; the rest of `cause` is the image, regional, multiscale "
            "and edge statistics and the head.", ""]
