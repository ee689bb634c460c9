"""Issue 29, session 20: statistics robust to noise for blur, and a budget for second families (dev only).

    nice -n 10 python benchmarks/cause_regional_search.py --cache /tmp/s19/regional --skip-refits  # the sets
    nice -n 10 python benchmarks/cause_multiscale_search.py --cache /tmp/s19/regional

On the examples of ``cause_regional_search.py`` (their 406 features: image, level and
regional statistics), re-rendered with the same seeds, two sets of statistics are added:
- ``spectral``: :func:`spectral_statistics` (here only: it did not help), the luminance's power
  spectrum as 6 radial band shares and, in two mid ranges, the weakest of 8 orientation
  sectors against the strongest and the median after a white-noise floor;
- ``multiscale``: ``cause.multiscale_statistics`` (now in the head's features on this branch).
For each, out of fold (5 folds by image): the rule of ``cause_regional_search.py`` with
thresholds chosen leaving one combination out, its per-combination shares, then (gate at 98%
of the dev clean views) the curve of one second-family threshold for every family against
single degradations with a wrong extra family, and ``budgeted_thresholds`` chosen on one half
of the images and measured on the other. Prints markdown tables
(``results/cause.search.md``, section "Session 20").
"""

from __future__ import annotations

import argparse
import math
import os
import sys

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
sys.path.insert(0, HERE)

import cause_combine_search as combine  # noqa: E402
import cause_regional_search as regional  # noqa: E402
from train_cause_head import SETTINGS, budgeted_thresholds, named_families, split_files  # noqa: E402

from fiftyone_dnniqa.core.images import InputSpec  # noqa: E402
from fiftyone_dnniqa.corruptions.compound import family_severities  # noqa: E402
from fiftyone_dnniqa.metrics.aligned import resized_square  # noqa: E402
from fiftyone_dnniqa.metrics.backbones import load_backbone  # noqa: E402
from fiftyone_dnniqa.metrics.cause import FAMILIES, FAMILY_OF, multiscale_statistics  # noqa: E402
from fiftyone_dnniqa.metrics.cause_training import load_clean_images, recipe_generator, render  # noqa: E402

K = len(FAMILIES)
BASE_COLUMNS = 406
BANDS = ((1 / 64, 1 / 32), (1 / 32, 1 / 16), (1 / 16, 1 / 8), (1 / 8, 1 / 4), (1 / 4, 3 / 8), (3 / 8, 1 / 2))
MID_RANGES = ((1 / 32, 1 / 8), (1 / 16, 1 / 4))
SECTORS = 8


def spectral_statistics(x: torch.Tensor) -> torch.Tensor:
    """(B, 10): log band shares of the luminance's power spectrum (Hann window), then per mid
    range the log ratio of the weakest orientation sector to the strongest and to the median,
    each after the highest band's power (white noise's floor) is taken off."""
    lum = 0.299 * x[:, 0] + 0.587 * x[:, 1] + 0.114 * x[:, 2]
    _, h, w = lum.shape
    window = torch.outer(torch.hann_window(h, periodic=False), torch.hann_window(w, periodic=False))
    power = torch.fft.rfft2((lum - lum.mean((1, 2), keepdim=True)) * window).abs().square() / (h * w)
    fy = torch.fft.fftfreq(h)[:, None].expand(h, w // 2 + 1)
    fx = torch.fft.rfftfreq(w)[None].expand(h, w // 2 + 1)
    radius = (fy.square() + fx.square()).sqrt()
    sector = ((torch.atan2(fy, fx) + math.pi / 2) / math.pi * SECTORS).long().clamp(0, SECTORS - 1)
    bands = torch.stack([power[:, (radius >= lo) & (radius < hi)].mean(1) for lo, hi in BANDS], 1) + 1e-9
    floor = bands[:, -1:]
    out = [torch.log(bands / bands.sum(1, keepdim=True))]
    for lo, hi in MID_RANGES:
        ring = (radius >= lo) & (radius < hi)
        per = torch.stack([power[:, ring & (sector == s)].mean(1) for s in range(SECTORS)], 1)
        signal = (per - floor).clamp_min(0) + 1e-3 * floor
        weakest = signal.min(1).values
        out.append(torch.stack([torch.log(weakest / signal.max(1).values),
                                torch.log(weakest / signal.median(1).values)], 1))
    return torch.cat(out, 1)


STATISTICS = {"spectral": spectral_statistics, "multiscale": multiscale_statistics}


def added_statistics(sets, cache, which):
    """``{set name: (N, d)}`` of ``STATISTICS[which]`` on every example, re-rendered as
    ``cause_regional_search.example_sets`` rendered it (cached)."""
    key = f"{cache}/added-{which}.pt"
    if os.path.isfile(key):
        return torch.load(key)
    proxy = load_backbone(SETTINGS["backbone"])
    spec = InputSpec(resize=proxy.resize, crop=proxy.crop)
    dev_clean, _ = load_clean_images(split_files("dev"), spec)
    test_clean, _ = load_clean_images(split_files("test"), spec)
    base = len(sets["dev"]["recipes"])
    plan = {"dev": (dev_clean, SETTINGS["seed"], 0), "single": (dev_clean, regional.SINGLE_DRAW["seed"], 0),
            "compressed": (dev_clean, SETTINGS["seed"], base), "held": (dev_clean, 99, 0), "test": (test_clean, 1, 0)}
    out = {}
    for name, (clean, seed, start) in plan.items():
        recipes, rows = sets[name]["recipes"], []
        for k in range(0, len(recipes), 16):
            x = torch.stack([render(clean[r.image], r, recipe_generator(seed, start + k + j))
                             for j, r in enumerate(recipes[k:k + 16])])
            rows.append(STATISTICS[which](resized_square(x, proxy.crop).float().clamp(0, 1)))
        out[name] = torch.cat(rows)
    torch.save(out, key)
    return out


def with_added(sets, added):
    return {n: dict(d, X=torch.cat([d["X"][:, :BASE_COLUMNS].float()] + [a[n] for a in added], 1))
            for n, d in sets.items()}


def per_combination(P, dev, held, shipped):
    """Each held-out group's share fully named by the rule (thresholds at ``regional.RATE``)."""
    _, _, named = combine.lowest_feasible(P, dev, held, shipped, regional.RATE)
    out = {}
    for combo in sorted(set(held["names"])):
        idx = [i for i, n in enumerate(held["names"]) if n == combo]
        out[combo] = float(np.mean([set(family_severities(held["recipes"][i].steps)) <= {FAMILIES[k] for k in named[i]}
                                    for i in idx]))
    return out


def probabilities(P, dev, held):
    """Deciding (mean) and naming probabilities, singles at severity 3-5 and their family,
    held-out combinations and their families, the gate at 98% of the dev clean views."""
    R = dev["recipes"]
    single = [i for i, r in enumerate(R) if len(r.steps) == 1 and r.steps[0][1] >= 3 and r.steps[0][0] in FAMILY_OF]
    combos = [i for i, n in enumerate(held["names"]) if " + " in n]
    mean_dev, mean_held = (P["S_dev"] + P["C_dev"]) / 2, (P["S_held"] + P["C_held"]) / 2
    return {"gate": float(torch.quantile(mean_dev[dev["severity"] == 0].max(1).values, 0.98)),
            "singles": (mean_dev[single], P["C_dev"][single]),
            "own": torch.tensor([FAMILIES.index(FAMILY_OF[R[i].steps[0][0]]) for i in single]),
            "single_images": np.array([R[i].image for i in single]),
            "combos": (mean_held[combos], P["C_held"][combos]),
            "truths": [{FAMILIES.index(f) for f in family_severities(held["recipes"][i].steps)} for i in combos],
            "combo_images": np.array([held["recipes"][i].image for i in combos])}


def measure(p, thresholds, singles_mask=None, combos_mask=None):
    """Single degradations with a wrong extra family, combinations fully named, worst false alarm."""
    sm = np.ones(len(p["own"]), bool) if singles_mask is None else singles_mask
    cm = np.ones(len(p["truths"]), bool) if combos_mask is None else combos_mask
    s = named_families(*p["singles"], p["gate"], thresholds)[torch.from_numpy(sm)]
    own = torch.nn.functional.one_hot(p["own"][torch.from_numpy(sm)], K).bool()
    c = named_families(*p["combos"], p["gate"], thresholds)[torch.from_numpy(cm)]
    truth = torch.zeros(len(c), K, dtype=torch.bool)
    for j, t in enumerate(t for t, m in zip(p["truths"], cm) if m):
        truth[j, list(t)] = True
    false = (c & ~truth).float().sum(0) / (~truth).float().sum(0).clamp_min(1)
    return float((s & ~own).any(1).float().mean()), float((c | ~truth).all(1).float().mean()), float(false.max())


def budget_cross_fitted(p, budget):
    """:func:`budgeted_thresholds` chosen on one half of the images, measured on the other (both ways)."""
    rows = []
    for half in (0, 1):
        sm, cm = p["single_images"] % 2 == half, p["combo_images"] % 2 == half
        th = budgeted_thresholds(tuple(t[torch.from_numpy(sm)] for t in p["singles"]), p["own"][torch.from_numpy(sm)],
                                 tuple(t[torch.from_numpy(cm)] for t in p["combos"]),
                                 [t for t, m in zip(p["truths"], cm) if m], p["gate"], budget, 0.08)
        rows.append(measure(p, th, ~sm, ~cm))
    return [float(np.mean([r[0] for r in rows])), float(np.mean([r[1] for r in rows])), max(r[2] for r in rows)]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cache", default="/tmp/dnniqa-cause")
    ap.add_argument("--budget", type=float, default=0.045)
    args = ap.parse_args(argv)
    torch.set_num_threads(max(1, int(os.environ.get("OMP_NUM_THREADS", "2"))))
    sets = torch.load(f"{args.cache}/regional-sets-{regional.COMPRESSED_COPIES}-v2.pt", weights_only=False)
    shipped = combine.load_cause_head(combine.SHIPPED_HEAD)[1]["thresholds"]
    print(combine.HEADER)
    for variant in ("none", "spectral", "multiscale", "multiscale+spectral"):
        parts = [] if variant == "none" else variant.split("+")
        s = with_added(sets, [added_statistics(sets, args.cache, w) for w in parts])
        key = f"{args.cache}/oof-{variant}.pt"
        if os.path.isfile(key):
            P = torch.load(key)
        else:
            P = regional.out_of_fold(s["single"], combine.with_pairs(s["dev"], s["compressed"]), s["dev"], s["held"])
            torch.save(P, key)
        print(combine.row(f"{variant}, LOCO", regional.leave_one_combination_out(P, s["dev"], s["held"], shipped)))
        print("  fully named per group:", {k: round(v, 3) for k, v in per_combination(P, s["dev"], s["held"],
                                                                                       shipped).items()})
        p = probabilities(P, s["dev"], s["held"])
        for t in (0.5, 0.6, 0.7, 0.75, 0.8):
            extra, named, false = measure(p, [t] * K)
            print(f"  gate 98%, second families from {t}: all named {named:.3f}, singles with a wrong extra "
                  f"{extra:.3f}, worst false alarm {false:.3f}")
        extra, named, false = budget_cross_fitted(p, args.budget)
        print(f"  budget {args.budget}, cross-fitted: all named {named:.3f}, singles with a wrong extra {extra:.3f}, "
              f"worst false alarm {false:.3f}")


if __name__ == "__main__":
    main()
