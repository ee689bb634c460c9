"""Issue 29, session 19, after the test read: three dev-only analyses of the paired rule.

    python benchmarks/cause_regional_search.py --cache /tmp/s19/regional   # builds the caches read here
    git show main:fiftyone_dnniqa/metrics/data/cause_head.safetensors > /tmp/main_head.safetensors
    python benchmarks/cause_tradeoffs.py --cache /tmp/s19/regional --s-decides /tmp/s19/regional/regional-oof-10.pt \
        --thresholds-of /tmp/main_head.safetensors

Reads ``cause_regional_search``'s out-of-fold probabilities (S: the single-degradation
head, C: the compound-trained heads; every dev example scored by heads fitted without its
image) and prints, as recorded in ``benchmarks/results/cause.search.md`` on main:
1. how far a gate set at 96% clean on the clean views of half the dev images carries to
   the other half (200 random halves);
2. the rule's dev numbers with the gate at 96-98% of the dev clean views;
3. the trade-off of second families: for one threshold on C's probabilities, the share of
   held-out combinations fully named, of them with a false family, and of single
   degradations (severity 3-5) with an extra family, when the mean of S and C decides
   and when S decides alone with the shipped head's thresholds (S's own labels kept).
   Those thresholds fit the shipped head's recipe as refitted on session 18's format-2
   cache (``--s-decides``: the out-of-fold file of ``cause_regional_search``'s first
   version, which read that cache with ``--v2``), not an S refitted on today's rendering;
4. S deciding with C's per-family thresholds chosen, leaving one combination out, to keep
   each family's false alarms at a rate on the other combinations (and on single
   degradations too), and the candidate's own thresholds on dev single degradations.
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

import cause_combine_search as combine  # noqa: E402
import cause_regional_search as regional  # noqa: E402

from fiftyone_dnniqa.corruptions.compound import family_severities  # noqa: E402
from fiftyone_dnniqa.metrics.cause import FAMILIES, FAMILY_OF  # noqa: E402


def gate_transfer(P, dev, rounds=200, seed=0):
    clean = (dev["severity"] == 0).numpy()
    img = np.array([r.image for r in dev["recipes"]])
    rng = np.random.default_rng(seed)
    for rule, probs in (("mean", (P["S_dev"] + P["C_dev"]) / 2), ("S", P["S_dev"]), ("C", P["C_dev"])):
        top = probs.max(1).values.numpy()
        rates = []
        for _ in range(rounds):
            half = np.isin(img, rng.permutation(img.max() + 1)[:(img.max() + 1) // 2])
            rates.append((top[clean & ~half] < np.quantile(top[clean & half], 0.96)).mean())
        print(f"gate transfer, {rule}: mean {np.mean(rates):.3f}, sd {np.std(rates):.3f}, "
              f"5th percentile {np.quantile(rates, 0.05):.3f}")


def tradeoff(P, Ps, dev, held, shipped_thresholds):
    recipes = dev["recipes"]
    single = [i for i, r in enumerate(recipes) if len(r.steps) == 1 and r.steps[0][1] >= 3]
    combos = [i for i, n in enumerate(held["names"]) if " + " in n]
    truth = [set(family_severities(held["recipes"][i].steps)) for i in combos]
    gate = float(torch.quantile(((P["S_dev"] + P["C_dev"]) / 2)[dev["severity"] == 0].max(1).values, 0.96))
    for t in (0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9):
        row = [f"{t}"]
        for decides in ("mean", "S"):
            if decides == "mean":
                ns = combine.averaged(P["S_dev"][single], P["C_dev"][single], gate, t, "C")
                nh = combine.averaged(P["S_held"][combos], P["C_held"][combos], gate, t, "C")
            else:
                ns = combine.combine(Ps["S_dev"][single], Ps["C_dev"][single], shipped_thresholds, t, "S", True)
                nh = combine.combine(Ps["S_held"][combos], Ps["C_held"][combos], shipped_thresholds, t, "S", True)
            named = [{FAMILIES[k] for k in n} for n in nh]
            row += [np.mean([tr <= n for tr, n in zip(truth, named)]), np.mean([bool(n - tr) for tr, n in zip(truth, named)]),
                    np.mean([bool({FAMILIES[k] for k in n} - {FAMILY_OF[recipes[i].steps[0][0]]}) for n, i in zip(ns, single)])]
        print("| " + " | ".join(row[:1] + [f"{100 * v:.1f}%" for v in row[1:]]) + " |")


def _extra(named, recipes, single):
    return float(np.mean([bool({FAMILIES[k] for k in n} - {FAMILY_OF[recipes[i].steps[0][0]]})
                          for n, i in zip(named, single)]))


def s_decides_per_family(Ps, dev, held, shipped_thresholds, rate, on_singles):
    """S's labels, then C's other families from per-family thresholds chosen leaving one
    combination out (false alarms <= ``rate`` on the other combinations of the other
    half of the images, and with ``on_singles`` on the dev single degradations too)."""
    recipes, names = dev["recipes"], held["names"]
    images = combine._images(held["recipes"])
    single = [i for i, r in enumerate(recipes) if len(r.steps) == 1 and r.steps[0][1] >= 3]
    first = combine.shipped_named(Ps["S_held"], shipped_thresholds)
    first_dev = combine.shipped_named(Ps["S_dev"], shipped_thresholds)

    def choose(idx):
        truth = [set(family_severities(held["recipes"][i].steps)) for i in idx]
        out = []
        for k, family in enumerate(FAMILIES):
            lacks = [i for i, t in zip(idx, truth) if family not in t]
            others = [i for i in single if FAMILY_OF[recipes[i].steps[0][0]] != family]
            chosen = 1.0
            for t in np.round(np.arange(0.3, 1.0, 0.05), 2):
                fa = np.mean([bool(first[i]) and (k in first[i] or float(Ps["C_held"][i, k]) >= t) for i in lacks])
                fs = np.mean([bool(first_dev[i]) and (k in first_dev[i] or float(Ps["C_dev"][i, k]) >= t)
                              for i in others]) if on_singles else 0.0
                if fa <= rate and fs <= rate:
                    chosen = float(t)
                    break
            out.append(chosen)
        return out

    named = [None] * len(names)
    for half in (0, 1):
        for combo in sorted({n for n in names if " + " in n}):
            second = choose([i for i in range(len(names)) if images[i] % 2 == half and names[i] != combo
                             and " + " in names[i]])
            for i in range(len(names)):
                if images[i] % 2 != half and (names[i] == combo or " + " not in names[i]):
                    named[i] = combine.combine(Ps["S_held"][i:i + 1], Ps["C_held"][i:i + 1], shipped_thresholds,
                                               second, "S", True)[0]
    m = combine.measures(dev, held, first_dev, named)
    second = choose([i for i in range(len(names)) if " + " in names[i]])
    extra = _extra(combine.combine(Ps["S_dev"][single], Ps["C_dev"][single], shipped_thresholds, second, "S", True),
                   recipes, single)
    print(f"S decides, C's per-family thresholds at {rate}{' (singles too)' if on_singles else ''}, leaving one "
          f"combination out: all named {m['combos_all']:.3f}, worst false alarm {max(m['combos_fa'].values()):.3f}; "
          f"singles with an extra family {extra:.3f}")


def candidate_on_singles(P, dev, second=(0.55, 0.3, 0.45, 0.3, 0.3, 0.3, 0.3)):
    """The paired candidate's rule (its thresholds, as calibrated on the branch) on the dev single degradations."""
    recipes = dev["recipes"]
    single = [i for i, r in enumerate(recipes) if len(r.steps) == 1 and r.steps[0][1] >= 3]
    mean = (P["S_dev"] + P["C_dev"]) / 2
    gate = float(torch.quantile(mean[dev["severity"] == 0].max(1).values, 0.96))
    named = combine.averaged(P["S_dev"][single], P["C_dev"][single], gate, 2.0, "C")
    named = [n if not n else [n[0]] + [k for k in range(len(FAMILIES)) if k != n[0] and float(P["C_dev"][i, k]) >= second[k]]
             for n, i in zip(named, single)]
    print(f"the candidate's rule on dev single degradations: an extra family on {_extra(named, recipes, single):.3f}")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cache", default="/tmp/dnniqa-cause")
    ap.add_argument("--s-decides", default=None, help="out-of-fold probabilities whose S is the shipped recipe")
    ap.add_argument("--thresholds-of", default=combine.SHIPPED_HEAD,
                    help="the head whose thresholds S decides with (on this branch: main's cause_head.safetensors)")
    args = ap.parse_args(argv)
    sets = torch.load(f"{args.cache}/regional-sets-{regional.COMPRESSED_COPIES}-v2.pt", weights_only=False)
    P = torch.load(f"{args.cache}/regional-oof-{regional.COMPRESSED_COPIES}-v2.pt")
    dev, held = sets["dev"], sets["held"]
    shipped = combine.load_cause_head(args.thresholds_of)[1]["thresholds"]
    gate_transfer(P, dev)
    for q in (0.96, 0.97, 0.98):
        clean = dev["severity"] == 0
        gate = float(torch.quantile(((P["S_dev"] + P["C_dev"]) / 2)[clean].max(1).values, q))
        named = combine.averaged(P["S_dev"], P["C_dev"], gate, 2.0, "C")
        m = combine.measures(dev, held, named, combine.averaged(P["S_held"], P["C_held"], gate, 2.0, "C"))
        print(f"gate at {q} of the dev clean views: clean {m['clean']:.3f}, ImageNet-C {m['imagenet_c']:.3f}, "
              f"D&K {m['dodge_karam']:.3f}")
    print("| second from | mean decides: all named | false family | singles extra | S decides: all named | "
          "false family | singles extra |")
    Ps = torch.load(args.s_decides) if args.s_decides else P
    tradeoff(P, Ps, dev, held, shipped)
    for rate, on_singles in ((0.08, False), (0.05, True), (0.08, True)):
        s_decides_per_family(Ps, dev, held, shipped, rate, on_singles)
    candidate_on_singles(P, dev)


if __name__ == "__main__":
    main()
