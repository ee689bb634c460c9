"""The cause head on images it was not trained on: which imaging condition it names.

    python benchmarks/cause.py                        # the shipped head, on the test split
    python benchmarks/cause.py --head candidate.safetensors   # another (train_cause_head.py --out ...)

Test set: the ImageNet sample's test split (odd positions by file name, 250 images; the
head saw only the even ones), resized and cropped to the proxy's 224 px as in training.
- clean: every test image once;
- every corruption of the suites (Dodge & Karam 5, ImageNet-C 15 + 4, the camera suite's
  ``low_light`` and ``lens_dirt``), at severities 3, 4, 5 in turn: one test image in five
  each; the 5 Dodge & Karam ones on every test image;
- compounds held out of training, one image in three each (``cause_compound.py``).
Reported: top-1 family accuracy of the *stored* label (the first of the ``Classifications``:
a corrupted image called "none" counts as wrong) and of the arg-max family; "none" on clean
images; the compound section; held-out corruptions and families (the head
refitted on the dev examples without them, then asked about them) with their confusions;
real photos blurred beyond the training's range (``cause_report.real_photo_checks``: a gate
can leave them "clean"); and cleanvision's blurry / dark / light / low-information checks on the same images
(written as PNG). ``elastic_transform`` and ``saturate`` belong to no family: their
predictions are listed, not scored. Finally the extra cost of ``cause`` over ``aligned``.
Writes ``benchmarks/results/cause.md`` and ``cause.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections import Counter

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
sys.path.insert(0, HERE)

from cause_compound import compound_lines, compound_recipes, compound_section  # noqa: E402
from cause_report import cleanvision_checks, cost_of_cause, real_photo_checks, write_report  # noqa: E402
from train_cause_head import (  # noqa: E402
    DECIDER, SETTINGS, decider_examples, dev_examples, fit_paired_head, rendering_fingerprint, split_files,
    train_decider,
)

from fiftyone_dnniqa.core.images import InputSpec  # noqa: E402
from fiftyone_dnniqa.corruptions import SUITES  # noqa: E402
from fiftyone_dnniqa.metrics.cause import (  # noqa: E402
    FAMILIES, FAMILY_OF, FORMAT_VERSION, NONE, SHIPPED_HEAD, PairedCauseHead, cause_labels, load_cause_head,
)
from fiftyone_dnniqa.metrics.cause_training import (  # noqa: E402
    Recipe, build_examples, load_clean_images, train_cause_ensemble,
)
from fiftyone_dnniqa.metrics.backbones import load_backbone  # noqa: E402

EVAL = (list(SUITES["dodge_karam"]) + list(SUITES["imagenet_c"]) + list(SUITES["imagenet_c_extra"])
        + list(SUITES["camera"]))
#: held out one at a time: corruptions whose family keeps another member in training
HELD_OUT = [n for n in FAMILY_OF if sum(FAMILY_OF[m] == FAMILY_OF[n] for m in FAMILY_OF) > 1]


def log(*a):
    print(*a, flush=True)


def test_recipes(n, stride=5):
    """The test set's recipes (see the module's docstring) and their names."""
    recipes, names = [Recipe(i, ()) for i in range(n)], ["clean"] * n
    for c, name in enumerate(EVAL):
        every = 1 if name.startswith("dk_") else stride
        for i in range(n):
            if (i + c) % every == 0:
                recipes.append(Recipe(i, ((name, 3 + (i // every + c) % 3),)))
                names.append(name)
    for recipe, name in compound_recipes(n):
        recipes.append(recipe)
        names.append(name)
    return recipes, names


def test_examples(cache, n, png_dir=None):
    """Features of the test set (cached), and its images as PNG files for cleanvision."""
    # the features change with the format and with the corruptions' code
    key = f"{cache}/test-v{FORMAT_VERSION}-c1-{rendering_fingerprint()}-{n}.pt"
    if os.path.isfile(key):
        return torch.load(key, weights_only=False)
    proxy = load_backbone(SETTINGS["backbone"])
    proxy.model.to(memory_format=torch.channels_last)
    clean, _ = load_clean_images(split_files("test")[:n], InputSpec(resize=proxy.resize, crop=proxy.crop))
    recipes, names = test_recipes(len(clean))
    t0 = time.time()
    X, Y, sev, fam_sev = build_examples(clean, recipes, proxy, torch.device("cpu"), seed=1, batch_size=16)
    out = {"recipes": recipes, "names": names, "X": X, "Y": Y, "severity": sev, "family_severity": fam_sev,
           "seconds": time.time() - t0}
    if png_dir:
        out["pngs"] = _write_pngs(clean, recipes, png_dir)
    os.makedirs(cache, exist_ok=True)
    torch.save(out, key)
    return out


def _write_pngs(clean, recipes, folder):
    from PIL import Image  # deferred: only the cleanvision comparison reads files

    from fiftyone_dnniqa.metrics.cause_training import recipe_generator, render

    os.makedirs(folder, exist_ok=True)
    paths = []
    for k, r in enumerate(recipes):
        x = render(clean[r.image], r, recipe_generator(1, k))  # the same draws as the features'
        path = os.path.join(folder, f"{k:05d}.png")
        Image.fromarray((x.clamp(0, 1) * 255).round().byte().permute(1, 2, 0).numpy()).save(path)
        paths.append(path)
    return paths


def predict(head, X, thresholds, gate=None):
    """The deciding probabilities, overall and per-family severities, and the stored
    labels (from rows laid out as :meth:`CauseMetric.score`'s)."""
    with torch.no_grad():
        probs, naming, sev, fam_sev = head.outputs(X.float())
    rows = torch.cat([probs, sev.unsqueeze(1), fam_sev, torch.zeros(len(X), 1), naming], dim=1)
    stored = [cause_labels(row, thresholds, gate)[0] for row in rows.tolist()]
    return probs, sev.clamp(0, 5), fam_sev.clamp(0, 5), stored


def accuracy(names, stored, probs, keep):
    """Stored-label and arg-max top-1 family accuracy over the examples ``keep`` selects."""
    idx = [k for k, n in enumerate(names) if keep(n)]
    if not idx:
        return None
    truth = [FAMILY_OF[names[k]] for k in idx]
    top = [stored[k][0][0] for k in idx]
    arg = [FAMILIES[int(probs[k].argmax())] for k in idx]
    return {"n": len(idx), "stored": float(np.mean([a == b for a, b in zip(top, truth)])),
            "argmax": float(np.mean([a == b for a, b in zip(arg, truth)]))}


def confusion(names, stored, which, probs=None):
    """``{corruption: {stored first label (arg-max family with probs): share}}``."""
    out = {}
    for c in which:
        labels = [stored[k][0][0] if probs is None else FAMILIES[int(probs[k].argmax())]
                  for k, n in enumerate(names) if n == c]
        out[c] = {lab: round(v / len(labels), 3) for lab, v in Counter(labels).most_common()}
    return out


def headline(test, probs, sev, stored):
    names = test["names"]
    dk = set(SUITES["dodge_karam"])
    ic = [n for n in SUITES["imagenet_c"] if n in FAMILY_OF]
    extra = [n for n in SUITES["imagenet_c_extra"] if n in FAMILY_OF]
    res = {"dodge_karam": accuracy(names, stored, probs, lambda n: n in dk),
           "imagenet_c_15": accuracy(names, stored, probs, lambda n: n in ic),
           "imagenet_c_19": accuracy(names, stored, probs, lambda n: n in ic or n in extra),
           "low_light": accuracy(names, stored, probs, lambda n: n == "low_light"),
           "per_corruption": {c: accuracy(names, stored, probs, lambda n, c=c: n == c) for c in EVAL if c in FAMILY_OF}}
    clean = [k for k, n in enumerate(names) if n == "clean"]
    res["clean_none_rate"] = float(np.mean([stored[k][0][0] == NONE for k in clean]))
    res["clean_mean_severity"] = float(sev[clean].mean())
    true_sev = test["severity"].numpy()
    single = [k for k, n in enumerate(names) if n == "clean" or n in FAMILY_OF]
    from scipy.stats import spearmanr  # deferred: only for this number

    res["severity_spearman"] = float(spearmanr(sev[single].numpy(), true_sev[single]).statistic)
    res["severity_by_true"] = {int(s): round(float(sev[[k for k in single if true_sev[k] == s]].mean()), 2)
                               for s in sorted(set(true_sev[single].tolist()))}
    res["unassigned"] = confusion(names, stored, ["elastic_transform", "saturate"])
    return res


def _euclidean(a, b):
    return float(np.linalg.norm(a - b))


def _cosine(a, b):
    return 1 - float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


#: how ``nearest_families`` measures the distance between two families' mean shifts
DISTANCES = {"euclidean": _euclidean, "cosine": _cosine}


def nearest_families(test):
    """The oracle for a family held out whole: the other families, nearest first, by the
    distance between their mean effects on the head's features (each corrupted example's
    features minus its clean image's, standardised by the clean images' spread; averaged
    per family). ``{family: {distance name: [...]}}``, one order per ``DISTANCES``."""
    X, names, recipes = test["X"].double().numpy(), test["names"], test["recipes"]
    clean = {recipes[k].image: k for k, n in enumerate(names) if n == "clean"}
    ref = X[list(clean.values())]
    Z = (X - ref.mean(0)) / (ref.std(0) + 1e-6)
    shifts = {}
    for k, n in enumerate(names):
        if n in FAMILY_OF:
            shifts.setdefault(FAMILY_OF[n], []).append(Z[k] - Z[clean[recipes[k].image]])
    centre = {f: np.mean(v, axis=0) for f, v in shifts.items()}
    out = {}
    for f in centre:
        others = [g for g in centre if g != f]
        out[f] = {name: sorted(others, key=lambda g: dist(centre[f], centre[g])) for name, dist in DISTANCES.items()}
    return out


def refit_recipe(head, cache, thresholds):
    """``refit(drop)``: ``head``'s recipe refitted on the dev examples without the
    corruptions ``drop(name)`` is true of. A paired head refits with today's recipe (both
    heads, and the blockage detector at ``thresholds``' weather one where it has one,
    :func:`~train_cause_head.fit_paired_head`), a one-severity head (format 2) the
    decider's recipe, a per-family one (format 3) :data:`SETTINGS`' merged heads; all on
    examples rendered by today's code."""
    def keep(recipes, drop):
        return torch.tensor([not any(drop(n) for n, _ in r.steps) for r in recipes])

    def own_columns(ex, key):
        """``ex[key]``; for the features, the head's own columns (it reads no later ones)."""
        return ex[key][:, :head.in_features] if key == "X" else ex[key]

    if isinstance(head, PairedCauseHead):
        decider_ex, namer_ex = decider_examples(cache), dev_examples(cache)
        weather = thresholds[FAMILIES.index("weather_occlusion")] if head.blockage is not None else None
        return lambda drop: fit_paired_head(decider_ex, namer_ex, lambda rs: keep(rs, drop), weather)
    if not head.per_family:
        ex, d = decider_examples(cache), DECIDER
        return lambda drop: train_decider(
            *(own_columns(ex, k)[keep(ex["recipes"], drop)] for k in ("X", "Y", "severity")), hidden=d["hidden"],
            epochs=d["epochs"], weight_decay=d["weight_decay"], seed=d["seed"])
    ex, s = dev_examples(cache), SETTINGS
    return lambda drop: train_cause_ensemble(
        *(own_columns(ex, k)[keep(ex["recipes"], drop)] for k in ("X", "Y", "severity", "family_severity")),
        hidden=s["hidden"], epochs=s["epochs"], weight_decay=s["weight_decay"], seed=s["seed"], members=s["members"])


def held_out(refit, test, thresholds, gate=None):
    """Leave one corruption out (is its own family named?), then one family out (what is
    named instead?): the measured head's recipe refitted without them (:func:`refit_recipe`),
    read with its ``thresholds`` and ``gate``."""
    names = test["names"]
    corr = {}
    for c in HELD_OUT:
        probs, _, _, stored = predict(refit(lambda n, c=c: n == c), test["X"], thresholds, gate)
        corr[c] = {"accuracy": accuracy(names, stored, probs, lambda n, c=c: n == c),
                   "confusion": confusion(names, stored, [c])[c],
                   "argmax_confusion": confusion(names, stored, [c], probs)[c]}
        log(f"  held out {c}: arg-max {corr[c]['accuracy']['argmax']:.2f} {corr[c]['argmax_confusion']}")
    fams = {}
    for f in FAMILIES:
        probs, _, _, stored = predict(refit(lambda n, f=f: FAMILY_OF.get(n) == f), test["X"], thresholds, gate)
        members = [c for c in EVAL if FAMILY_OF.get(c) == f]
        fams[f] = {}
        for kind, pick in (("stored", lambda k: stored[k][0][0]), ("argmax", lambda k: FAMILIES[int(probs[k].argmax())])):
            share = Counter(pick(k) for k, n in enumerate(names) if n in members)
            fams[f][kind] = {lab: round(v / sum(share.values()), 3) for lab, v in share.most_common()}
        log(f"  held out family {f}: {fams[f]}")
    for f, order in nearest_families(test).items():
        fams[f]["nearest"] = order
    return {"corruptions": corr, "families": fams}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--head", default=SHIPPED_HEAD)
    ap.add_argument("--images", type=int, default=250, help="test images (at most 250)")
    ap.add_argument("--cache", default="/tmp/dnniqa-cause")
    ap.add_argument("--skip-held-out", action="store_true")
    ap.add_argument("--skip-cleanvision", action="store_true")
    ap.add_argument("--skip-cost", action="store_true")
    args = ap.parse_args(argv)
    torch.set_num_threads(max(1, int(os.environ.get("OMP_NUM_THREADS", "2"))))
    t0 = time.time()
    head, config = load_cause_head(args.head)
    test = test_examples(args.cache, args.images, png_dir=f"{args.cache}/png-{args.images}")
    log(f"test features: {test['X'].shape[0]} examples ({test['seconds']:.0f} s to build)")
    probs, sev, fam_sev, stored = predict(head, test["X"], config["thresholds"], config.get("gate"))
    res = {"head": args.head, "config": config, "num_test_images": args.images, "headline": headline(test, probs, sev, stored),
           "compound": compound_section(test, probs, fam_sev, stored)}
    log(json.dumps({k: v for k, v in res["headline"].items() if k != "per_corruption"}, indent=1))
    log("\n".join(compound_lines(res["compound"])))
    if not args.skip_held_out:
        res["held_out"] = held_out(refit_recipe(head, args.cache, config["thresholds"]), test, config["thresholds"],
                                   config.get("gate"))
    res["real_photos"] = real_photo_checks(args.head)
    log(f"real photos blurred beyond the training's range: blur stored on {res['real_photos']['blurred_named_blur']:.2f}"
        if res["real_photos"] else "real photos: none packaged (install scikit-image)")
    if not args.skip_cleanvision:
        res["cleanvision"] = cleanvision_checks(test, probs, stored)
    if not args.skip_cost:
        res["cost"] = cost_of_cause(split_files("test")[:48], log)
    res["seconds"] = round(time.time() - t0, 1)
    write_report(res, os.path.join(HERE, "results"))
    with open(os.path.join(HERE, "results", "cause.md"), "a") as f:
        f.write("\n".join(compound_lines(res["compound"])) + "\n")
    log(f"done in {res['seconds']:.0f} s")


if __name__ == "__main__":
    main()
