"""Issue 29, session 21: where naming every family of a held-out combination fails (dev only).

    nice -n 10 python benchmarks/cause_generalisation_search.py --cache /tmp/s19/regional --out /tmp/s21

On the examples of ``cause_multiscale_search.py`` (session 20's multiscale features: the namer
recipe of its candidate B), out of fold (5 folds by image), four questions:

- **seen**: the namer trained with another draw of the held-out combinations themselves
  (every combination and order on every dev image, severities 3-5): how far naming goes when the
  combination is not new, i.e. whether the features hold the information at all;
- **coverage**: twice the compound examples (8 more uniform pairs and 20 more compressed copies
  per image, another seed): whether more combinations of the same kinds close the gap;
- **strong blur**: 2 copies per image blurred beyond severity 5 (a blur at 5 then another at
  3-5, half with one other family) in the namer's training, and 1 in the decider's: whether
  strongly blurred photos need them (dev photos blurred by a Gaussian of 7, 10 and 14 px at 224 px);
- **another codec**: 4 copies per image of one other family then heavy WebP (quality 12, 6
  or 2 for severity 3, 4 or 5), a codec the benchmark never uses: whether heavy compression of
  another kind teaches the namer to see dirt under heavy JPEG;
- **separability**: per family of each held-out combination, the AUC of the namer's probability
  against the dev single degradations (severity 3-5) that lack the family, and the share named at
  the threshold that 5% of those single degradations reach; and, for lens dirt under Dodge &
  Karam's JPEG, the share with a weather probability of 0.45 or more per pair of severities.

Prints markdown (``results/cause.search.md``, section "Session 21").
"""

from __future__ import annotations

import argparse
import functools
import os
import sys
import time

import numpy as np
import torch
from sklearn.metrics import roc_auc_score

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
sys.path.insert(0, HERE)

import cause_combine_search as combine  # noqa: E402
import cause_multiscale_search as ms  # noqa: E402
import cause_regional_search as regional  # noqa: E402
from cause_compound import HELD_OUT_COMPOUNDS, compound_recipes  # noqa: E402
from train_cause_head import SETTINGS, split_files  # noqa: E402

from fiftyone_dnniqa.core.images import InputSpec  # noqa: E402
from fiftyone_dnniqa.corruptions.compound import compose  # noqa: E402
from fiftyone_dnniqa.corruptions.filters import _gauss_filter, _pil_roundtrip  # noqa: E402
from fiftyone_dnniqa.metrics.backbones import load_backbone  # noqa: E402
from fiftyone_dnniqa.metrics.cause import FAMILIES, FAMILY_OF, cause_features  # noqa: E402
from fiftyone_dnniqa.metrics.cause_training import (  # noqa: E402
    Recipe, draw_recipes, load_clean_images, recipe_generator,
)

K = len(FAMILIES)
BLUR, WEATHER = FAMILIES.index("blur"), FAMILIES.index("weather_occlusion")
#: the Gaussian blurs (px at 224 px) of the dev photos the strong-blur question checks (the
#: training's strongest, gaussian_blur at 5, is 6 px)
CHECK_SIGMAS = (7.0, 10.0, 14.0)


@functools.lru_cache(maxsize=1)
def dev_inputs():
    """The proxy and the dev split's clean images at its input size (loaded once)."""
    proxy = load_backbone(SETTINGS["backbone"])
    clean, _ = load_clean_images(split_files("dev"), InputSpec(resize=proxy.resize, crop=proxy.crop))
    return proxy, clean


def _cached_set(out, name, build):
    key = f"{out}/generalisation-{name}.pt"
    if os.path.isfile(key):
        return torch.load(key, weights_only=False)
    t0 = time.time()
    built = build()
    print(f"  {name}: {len(built['recipes'])} examples featurised in {time.time() - t0:.0f} s")
    torch.save(built, key)
    return built


#: WebP quality per severity of the "another codec" question
WEBP_QUALITY = {3: 12, 4: 6, 5: 2}


def webp_examples(copies=4, seed=505):
    """Per dev image ``copies`` of one family other than compression (any of its corruptions,
    severity 1-5) then WebP at a severity of 3-5 (:data:`WEBP_QUALITY`), as examples with
    both families' targets."""
    rng = np.random.default_rng(seed)
    proxy, clean = dev_inputs()
    others = sorted({f for f in FAMILY_OF.values() if f != "compression"})
    images, recipes, Y, severity, family_severity = [], [], [], [], []
    for i in range(len(clean)):
        for c in range(copies):
            family = others[rng.integers(len(others))]
            names = [n for n, f in FAMILY_OF.items() if f == family]
            name, s, cs = names[rng.integers(len(names))], int(rng.integers(1, 6)), int(rng.integers(3, 6))
            x = compose(clean[i], ((name, s),), recipe_generator(seed, i * copies + c))
            images.append(_pil_roundtrip(x[None], "WEBP", quality=WEBP_QUALITY[cs])[0])
            recipes.append(Recipe(i, ((name, s),)))
            fam = {family: s, "compression": cs}
            Y.append([1.0 if f in fam else 0.0 for f in FAMILIES])
            severity.append(float(max(s, cs)))
            family_severity.append([float(fam.get(f, 0)) for f in FAMILIES])
    X = []
    for k in range(0, len(images), 16):
        with torch.inference_mode():
            X.append(cause_features(proxy, torch.stack(images[k:k + 16])))
    return {"recipes": recipes, "X": torch.cat(X), "Y": torch.tensor(Y), "severity": torch.tensor(severity),
            "family_severity": torch.tensor(family_severity)}


def _strong_blur(copies, seed):
    proxy, clean = dev_inputs()
    return regional.featurise(clean, draw_recipes(len(clean), 0, 0, 0.0, None, seed, exclude=HELD_OUT_COMPOUNDS,
                                                  strong_blur_copies=copies), proxy, seed)


def _seen():
    proxy, clean = dev_inputs()
    seen = compound_recipes(len(clean), stride=1, seed=211)
    return dict(regional.featurise(clean, [r for r, _ in seen], proxy, 211), names=[n for _, n in seen])


def _coverage():
    proxy, clean = dev_inputs()
    return regional.featurise(clean, draw_recipes(len(clean), 0, 0, 0.0, None, 303, exclude=HELD_OUT_COMPOUNDS,
                                                  pair_copies=8, compressed_copies=20), proxy, 303)


def _blur_check():
    """The dev photos blurred by each of :data:`CHECK_SIGMAS` (features only)."""
    proxy, clean = dev_inputs()
    X, recipes = [], []
    for sigma in CHECK_SIGMAS:
        for k in range(0, len(clean), 16):
            with torch.inference_mode():
                X.append(cause_features(proxy, _gauss_filter(torch.stack(clean[k:k + 16]), sigma).clamp(0, 1)))
            recipes += [Recipe(i, ()) for i in range(k, min(k + 16, len(clean)))]
    return {"X": torch.cat(X), "recipes": recipes}


def extra_sets(out):
    """The new examples of the five questions on the dev images (features as the sets', each cached)."""
    builds = {"seen": _seen, "coverage": _coverage, "strong_C": lambda: _strong_blur(2, 404),
              "strong_S": lambda: _strong_blur(1, 405), "check": _blur_check, "webp": webp_examples}
    return {name: _cached_set(out, name, build) for name, build in builds.items()}


def out_of_fold(v2, train, scored):
    """``{name: (S, C)}`` probabilities of each of ``scored`` by the pair fitted without its image's fold."""
    out = {n: (torch.zeros(len(d["X"]), K), torch.zeros(len(d["X"]), K)) for n, d in scored.items()}
    g2, gt = combine._images(v2["recipes"]), combine._images(train["recipes"])
    for k in range(combine.FOLDS):
        single, comp = regional.fit_pair(v2, train, torch.as_tensor(g2 % combine.FOLDS != k),
                                         torch.as_tensor(gt % combine.FOLDS != k))
        for n, d in scored.items():
            m = torch.as_tensor(combine._images(d["recipes"]) % combine.FOLDS == k)
            S, C, _ = regional.scores(single, comp, d["X"][m])
            out[n][0][m], out[n][1][m] = S, C
    return out


def separability(P, dev, held):
    """Per held-out combination and family: the AUC against the single degradations lacking it,
    and the share named at those singles' 95th percentile."""
    p = ms.probabilities(P, dev, held)
    singles, combos = p["singles"][1].numpy(), p["combos"][1].numpy()
    own = p["own"].numpy()
    names = [held["names"][i] for i, n in enumerate(held["names"]) if " + " in n]
    rows = []
    for combo in sorted(set(names)):
        m = np.array([n == combo for n in names])
        for k in sorted(p["truths"][int(np.where(m)[0][0])]):
            pos, neg = combos[m, k], singles[own != k, k]
            auc = roc_auc_score(np.r_[np.ones(len(pos)), np.zeros(len(neg))], np.r_[pos, neg])
            rows.append(f"| {combo} | {FAMILIES[k]} | {auc:.3f} | {100 * np.mean(pos >= np.quantile(neg, 0.95)):.0f}% |")
    return rows


def dirt_by_severity(P, held):
    """Lens dirt under Dodge & Karam's JPEG: the share with a weather probability >= 0.45 per pair of severities."""
    idx = [i for i, n in enumerate(held["names"]) if n == "lens_dirt + dk_jpeg"]
    sev = np.array([[s for _, s in held["recipes"][i].steps] for i in idx])
    weather = P["C_held"][idx][:, WEATHER].numpy()
    cells = []
    for jpeg in (3, 4, 5):
        cells.append(" | ".join(f"{100 * np.mean(weather[(sev[:, 0] == d) & (sev[:, 1] == jpeg)] >= 0.45):.0f}%"
                                for d in (3, 4, 5)))
    return cells


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cache", default="/tmp/dnniqa-cause", help="cause_multiscale_search.py's cache")
    ap.add_argument("--out", default="/tmp/dnniqa-cause-s21", help="this script's cache")
    args = ap.parse_args(argv)
    os.makedirs(args.out, exist_ok=True)
    torch.set_num_threads(max(1, int(os.environ.get("OMP_NUM_THREADS", "2"))))
    sets = torch.load(f"{args.cache}/regional-sets-{regional.COMPRESSED_COPIES}-v2.pt", weights_only=False)
    s = ms.with_added(sets, [ms.added_statistics(sets, args.cache, "multiscale")])
    new = extra_sets(args.out)
    base = combine.with_pairs(s["dev"], s["compressed"])
    seen = {k: v for k, v in new["seen"].items() if k != "names"}
    variants = {"B's recipe": (s["single"], base),
                "seen: + the held-out combinations (another draw)": (s["single"], combine.with_pairs(base, seen)),
                "coverage: + 8 pairs and 20 compressed copies per image": (s["single"],
                                                                           combine.with_pairs(base, new["coverage"])),
                "strong blur: + 2 copies beyond severity 5 (1 for the decider)":
                    (combine.with_pairs(s["single"], new["strong_S"]), combine.with_pairs(base, new["strong_C"])),
                "another codec: + 4 copies per image of one family then heavy WebP":
                    (s["single"], combine.with_pairs(base, new["webp"]))}
    shipped = combine.load_cause_head(combine.SHIPPED_HEAD)[1]["thresholds"]
    scored = {"dev": s["dev"], "held": s["held"], "check": new["check"]}
    results = {}
    print(combine.HEADER)
    for name, (v2, train) in variants.items():
        key = f"{args.out}/oof-{name.split(':')[0].replace(' ', '_').replace(chr(39), '')}.pt"
        O = torch.load(key) if os.path.isfile(key) else out_of_fold(v2, train, scored)
        torch.save(O, key)
        P = {"S_dev": O["dev"][0], "C_dev": O["dev"][1], "S_held": O["held"][0], "C_held": O["held"][1]}
        results[name] = (O, P)
        print(combine.row(f"{name}, LOCO", regional.leave_one_combination_out(P, s["dev"], s["held"], shipped)))
    sigmas = " / ".join(f"{sigma:.0f}" for sigma in CHECK_SIGMAS)
    print("\n| namer (dev, out of fold) | gate 98%, budget 4.5%: all named | singles with a wrong extra | "
          f"worst false alarm | one threshold 0.6: all named / extras | photos blurred {sigmas} px: blur stored first |"
          "\n|---|---|---|---|---|---|")
    clean = s["dev"]["severity"] == 0
    for name, (O, P) in results.items():
        p = ms.probabilities(P, s["dev"], s["held"])
        extra, named, false = ms.budget_cross_fitted(p, 0.045)
        e6, n6, _ = ms.measure(p, [0.6] * K)
        gate = float(torch.quantile(((O["dev"][0] + O["dev"][1]) / 2)[clean].max(1).values, 0.98))
        mean = (O["check"][0] + O["check"][1]) / 2
        blurred = ((mean.max(1).values >= gate) & (mean.argmax(1) == BLUR)).float().view(len(CHECK_SIGMAS), -1)
        print(f"| {name} | {100 * named:.1f}% | {100 * extra:.1f}% | {100 * false:.1f}% | {100 * n6:.1f}% / "
              f"{100 * e6:.1f}% | " + " / ".join(f"{100 * b:.1f}%" for b in blurred.mean(1).tolist()) + " |")
    for name in ("B's recipe", "seen: + the held-out combinations (another draw)"):
        P = results[name][1]
        print(f"\n{name}: per family of each held-out combination\n\n| combination | family | AUC against "
              "singles lacking it | named where 5% of them are |\n|---|---|---|---|")
        print("\n".join(separability(P, s["dev"], s["held"])))
    print("\nlens dirt (columns: severity 3, 4, 5) under Dodge & Karam's JPEG (rows: severity 3, 4, 5 = quality 11, "
          "7, 2): share with a weather probability >= 0.45\n\n| namer | JPEG | dirt 3 | dirt 4 | dirt 5 |\n|---|---|---|---|---|")
    for name in variants:
        for jpeg, cells in zip((3, 4, 5), dirt_by_severity(results[name][1], s["held"])):
            print(f"| {name.split(':')[0]} | {jpeg} | {cells} |")


if __name__ == "__main__":
    main()
