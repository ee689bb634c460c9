"""Issue 29, the combined direction, on the dev split only (out of fold): the shipped
single-degradation head (or the mean of its probabilities and the compound heads') decides
clean or degraded and names the primary family; compound-trained heads add second families.
Session 18's search: its numbers were measured with ``train_cause_head.SETTINGS`` as of
commit d2945c8 (no pairs or compressed copies in the committed draw; ``--pairs`` added
them) and the caches named below.

    nice -n 10 python benchmarks/cause_combine_search.py --cache /tmp/s17/cause \
        --v2 /tmp/dnniqa-cause/dev-v2-6a29164258-all-8-2-0.2-0.pt --pairs /tmp/s17/cause/extra_pairs4.pt

Writes ``benchmarks/results/cause.combine.md``. Inputs (cached features):
- the shipped head's recipe's examples (format 2: 250 dev images x 8 copies + 2 clean
  views, 20% compounds; ``train_cause_head.py`` at 2b32ce1 built this cache), to refit
  the recipe without one fold of images (not bit-identical to the shipped file, whose
  examples were rendered by older corruption code);
- the compound training examples of ``train_cause_head.SETTINGS`` (12 copies, half
  compounds), to refit the compound heads without one fold;
- ``--pairs``: the 4 uniform pairs per image that ``draw_recipes(pair_copies=4)`` adds;
- the benchmark's held-out combinations and orders rendered on the dev images
  (:func:`dev_heldout_examples`).
Every dev example is scored by heads fitted without its image (5 folds by image); the
thresholds come from those out-of-fold probabilities (the "bound" rows: from the very
combinations they are judged on, an optimistic bound; the row after: from the other half
of the dev images). The criterion is :data:`CRITERION`, fixed before any test measurement.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
sys.path.insert(0, HERE)

from cause_compound import compound_recipes  # noqa: E402
import train_cause_head  # noqa: E402
from train_cause_head import SETTINGS, dev_examples, split_files, train_decider  # noqa: E402

from fiftyone_dnniqa.core.images import InputSpec  # noqa: E402
from fiftyone_dnniqa.corruptions import SUITES  # noqa: E402
from fiftyone_dnniqa.corruptions.compound import family_severities  # noqa: E402
from fiftyone_dnniqa.metrics.backbones import load_backbone  # noqa: E402
from fiftyone_dnniqa.metrics.cause import FAMILIES, FAMILY_OF, SHIPPED_HEAD, load_cause_head  # noqa: E402
from fiftyone_dnniqa.metrics.cause_training import (  # noqa: E402
    build_examples, load_clean_images, train_cause_ensemble,
)

K = len(FAMILIES)
FOLDS = 5
#: the shipped head's recipe (trained by train_cause_head.py at 07c2241)
SHIPPED_RECIPE = dict(hidden=64, epochs=150, weight_decay=5e-2, seed=0)
#: fixed before the test split is read (the brief of session 18): a rule ships only if, on
#: the dev split out of fold, all four hold
CRITERION = {"all_named": 0.82, "false_alarm_max": 0.10, "singles_clean": "at the shipped head's level",
             "held_out_refit_mean": "no more than 2 points under the shipped head's"}


def dev_heldout_examples(cache):
    """The benchmark's held-out combinations and orders on the dev images (seeded apart from the test's)."""
    key = f"{cache}/dev_heldout.pt"
    if os.path.isfile(key):
        return torch.load(key, weights_only=False)
    rn = compound_recipes(250, seed=11)
    proxy = load_backbone("efficientnet_lite0")
    proxy.model.to(memory_format=torch.channels_last)
    clean, _ = load_clean_images(split_files("dev"), InputSpec(resize=proxy.resize, crop=proxy.crop))
    X, Y, sev, fs = build_examples(clean, [r for r, _ in rn], proxy, torch.device("cpu"), 99, 16, None)
    out = {"recipes": [r for r, _ in rn], "names": [n for _, n in rn], "X": X, "Y": Y, "severity": sev,
           "family_severity": fs}
    torch.save(out, key)
    return out


def _images(recipes):
    return torch.tensor([r.image for r in recipes])


def drop_compression_prior(dev, keep_share, seed=0):
    """Indices of the compound examples to train on: of the copies holding blur and noise
    and compression, only ``keep_share`` kept (the camera pipeline puts compression on
    75% of blur-and-noise copies; the heads learn that prior)."""
    rng = np.random.default_rng(seed)
    keep = []
    for k, r in enumerate(dev["recipes"]):
        fams = {FAMILY_OF[n] for n, _ in r.steps}
        if {"blur", "noise", "compression"} <= fams and rng.random() >= keep_share:
            continue
        keep.append(k)
    return torch.tensor(keep)


def with_pairs(dev, pairs):
    """``dev`` and the uniform pairs' examples (``draw_recipes(pair_copies=)``) together."""
    out = {k: torch.cat([dev[k], pairs[k]]) for k in ("X", "Y", "severity", "family_severity")}
    out["recipes"] = list(dev["recipes"]) + list(pairs["recipes"])
    return out


def oof(v2, dev, held, subset=None, drop=None, members=3, train=None, log=print):
    """Out-of-fold probabilities: the shipped recipe's (on ``dev`` and ``held``) and the
    compound heads' (on ``dev`` and ``held``, their own severities too), trained on
    ``train`` (default ``dev``; its first examples must be ``dev``'s). ``drop(name)``
    leaves a corruption out of both trainings (the held-out refits)."""
    train = dev if train is None else train
    g2, g3, gh = _images(v2["recipes"]), _images(dev["recipes"]), _images(held["recipes"])
    gt = _images(train["recipes"])
    sub = torch.ones(len(g3), dtype=torch.bool) if subset is None else torch.zeros(len(g3), dtype=torch.bool)
    if subset is not None:
        sub[subset] = True

    def lacks(recipes):
        return torch.tensor([drop is None or not any(drop(n) for n, _ in r.steps) for r in recipes])

    sub = torch.cat([sub, torch.ones(len(gt) - len(g3), dtype=torch.bool)])
    ok2, okt = lacks(v2["recipes"]), lacks(train["recipes"]) & sub
    s = SETTINGS
    out = {"S_dev": torch.zeros(len(g3), K), "S_held": torch.zeros(len(gh), K), "C_dev": torch.zeros(len(g3), K),
           "C_held": torch.zeros(len(gh), K), "C_held_sev": torch.zeros(len(gh), K)}
    for k in range(FOLDS):
        t0 = time.time()
        tr2, trt = (g2 % FOLDS != k) & ok2, (gt % FOLDS != k) & okt
        single = train_decider(v2["X"][tr2], v2["Y"][tr2], v2["severity"][tr2], **SHIPPED_RECIPE)
        comp = train_cause_ensemble(train["X"][trt], train["Y"][trt], train["severity"][trt],
                                    train["family_severity"][trt],
                                    hidden=s["hidden"], epochs=s["epochs"], weight_decay=s["weight_decay"],
                                    seed=s["seed"], members=members)
        d, h = g3 % FOLDS == k, gh % FOLDS == k
        with torch.no_grad():
            out["S_dev"][d] = torch.sigmoid(single(dev["X"][d].float())[0])
            out["S_held"][h] = torch.sigmoid(single(held["X"][h].float())[0])
            out["C_dev"][d] = torch.sigmoid(comp(dev["X"][d].float())[0])
            logits, _, fsev = comp(held["X"][h].float())
            out["C_held"][h], out["C_held_sev"][h] = torch.sigmoid(logits), fsev
        log(f"  fold {k}: {time.time() - t0:.0f} s")
    return out


def shipped_named(S, thresholds):
    """The shipped rule: every family at or above its threshold, most likely first (a list per row)."""
    out = []
    for p in S.tolist():
        fl = sorted((k for k in range(K) if p[k] >= thresholds[k]), key=lambda k: -p[k])
        out.append(fl)
    return out


def combine(S, C, thresholds, second, primary="S", with_shipped=False):
    """Families named per row: none where the shipped rule names none; else the primary
    (the shipped rule's first, ``"C"``: the compound heads' most likely, ``"avg"``: the
    mean probabilities' most likely), then every other family the compound heads give at
    least ``second`` (one number or one per family); ``with_shipped``: the shipped rule's
    other families too."""
    second = [second] * K if isinstance(second, (int, float)) else list(second)
    out = []
    for named, s, c in zip(shipped_named(S, thresholds), S.tolist(), C.tolist()):
        if not named:
            out.append([])
            continue
        first = named[0] if primary == "S" else int(np.argmax(c if primary == "C" else np.add(s, c)))
        rest = {k for k in range(K) if k != first and c[k] >= second[k]}
        if with_shipped:
            rest |= set(named) - {first}
        out.append([first] + sorted(rest, key=lambda k: -c[k]))
    return out


def averaged(S, C, gate, second, second_from="mean"):
    """Mean probabilities with one gate on their largest (the primary family), then every
    other family whose mean probability (``second_from="C"``: the compound heads') reaches ``second``."""
    A = (S + C) / 2
    out = []
    for a, c in zip(A.tolist(), C.tolist()):
        top = int(np.argmax(a))
        other = a if second_from == "mean" else c
        out.append([] if a[top] < gate else [top] + sorted((k for k in range(K) if k != top and other[k] >= second),
                                                        key=lambda k: -other[k]))
    return out


def second_thresholds(C_dev, dev, rate, floor):
    """Per family, the probability that a share ``rate`` of the out-of-fold training
    compounds lacking it reach (at least ``floor``)."""
    fs = dev["family_severity"]
    comp = torch.tensor([len(r.steps) > 1 for r in dev["recipes"]])
    return [max(floor, float(torch.quantile(C_dev[comp & (fs[:, k] == 0), k], 1 - rate))) for k in range(K)]


def measures(dev, held, named_dev, named_held):
    """Dev measures of one rule: clean, singles (severity 3-5), held-out combinations and orders."""
    ic14 = {n for n in SUITES["imagenet_c"] if n in FAMILY_OF}
    dk = set(SUITES["dodge_karam"])
    R = dev["recipes"]

    def single_acc(names):
        idx = [i for i, r in enumerate(R) if len(r.steps) == 1 and r.steps[0][1] >= 3 and r.steps[0][0] in names]
        return float(np.mean([bool(named_dev[i]) and FAMILIES[named_dev[i][0]] == FAMILY_OF[R[i].steps[0][0]]
                              for i in idx]))

    out = {"clean": float(np.mean([not named_dev[i] for i, r in enumerate(R) if not r.steps])),
           "imagenet_c": single_acc(ic14), "dodge_karam": single_acc(dk)}
    for group, mark in (("combos", " + "), ("orders", " > ")):
        idx = [i for i, n in enumerate(held["names"]) if mark in n]
        truth = [set(family_severities(held["recipes"][i].steps)) for i in idx]
        nm = [{FAMILIES[k] for k in named_held[i]} for i in idx]
        first = [FAMILIES[named_held[i][0]] if named_held[i] else None for i in idx]
        out[f"{group}_top1"] = float(np.mean([f in t for f, t in zip(first, truth)]))
        out[f"{group}_all"] = float(np.mean([t <= n for t, n in zip(truth, nm)]))
        fa = {f: float(np.mean([f in n for t, n in zip(truth, nm) if f not in t])) for f in FAMILIES}
        out[f"{group}_fa"] = fa
    lens = [i for i, n in enumerate(held["names"]) if n.startswith("lens_dirt")]
    out["lens_all"] = float(np.mean([{"weather_occlusion", "compression"} <= {FAMILIES[k] for k in named_held[i]}
                                     for i in lens]))
    return out


def row(tag, m):
    fa = m["combos_fa"]
    worst = max(fa, key=fa.get)
    return (f"| {tag} | {100 * m['clean']:.1f}% | {100 * m['imagenet_c']:.1f}% | {100 * m['dodge_karam']:.1f}% | "
            f"{100 * m['combos_top1']:.1f}% | {100 * m['combos_all']:.1f}% | {100 * m['lens_all']:.1f}% | "
            f"{worst} {100 * fa[worst]:.1f}% (mean {100 * np.mean(list(fa.values())):.1f}%) | "
            f"{100 * m['orders_all']:.1f}% |")


HEADER = ("| rule (dev, 5 folds out of fold) | clean | ImageNet-C | D&K | combos top-1 | combos all named | "
          "lens dirt + JPEG all named | worst false alarm (combos) | orders all named |\n|---|---|---|---|---|---|---|---|---|")


def lowest_feasible(P, dev, held, thresholds, rate=0.10, choose_on=None):
    """The most lenient second-family thresholds whose false alarms on the dev held-out
    combinations themselves stay at or under ``rate`` for every family (an optimistic
    bound: fitted on the very images it is judged on), and the share all named then.
    The rule: the mean gate (96% clean) and primary, second families from the compound
    heads. A family's false alarms depend on its own threshold alone, and every
    family's raises "all named" as it falls, so the lowest feasible one per family is best."""
    clean = dev["severity"] == 0
    gate = float(torch.quantile(((P["S_dev"] + P["C_dev"]) / 2)[clean].max(1).values, 0.96))
    idx = [i for i, n in enumerate(held["names"]) if " + " in n and (choose_on is None or choose_on[i])]
    truth = [set(family_severities(held["recipes"][i].steps)) for i in idx]
    chosen = train_cause_head.second_thresholds(((P["S_held"] + P["C_held"]) / 2)[idx], P["C_held"][idx], truth, gate, rate)
    named = averaged(P["S_held"], P["C_held"], gate, 1.0, "C")
    named = [[] if not nm else [nm[0]] + [k for k in range(K) if k != nm[0] and P["C_held"][i, k] >= chosen[k]]
             for i, nm in enumerate(named)]
    m = measures(dev, held, averaged(P["S_dev"], P["C_dev"], gate, 1.0, "C"), named)
    return chosen, m, named


def cross_fitted(P, dev, held, thresholds, rate=0.10):
    """:func:`lowest_feasible`'s thresholds chosen on the held-out combinations of half the
    dev images (by image parity) and applied to the other half, both ways: an honest dev
    estimate of choosing per-family thresholds on held-out combinations."""
    images = _images(held["recipes"])
    named = [None] * len(images)
    chosen = []
    for half in (0, 1):
        t, _, nm = lowest_feasible(P, dev, held, thresholds, rate, choose_on=(images % 2 == half).tolist())
        chosen.append(t)
        for i in range(len(images)):
            if images[i] % 2 != half:
                named[i] = nm[i]
    clean = dev["severity"] == 0
    gate = float(torch.quantile(((P["S_dev"] + P["C_dev"]) / 2)[clean].max(1).values, 0.96))
    return chosen, measures(dev, held, averaged(P["S_dev"], P["C_dev"], gate, 1.0, "C"), named)


#: the compound heads' training variants: the committed SETTINGS' examples; a lower
#: compression prior (of the copies holding blur, noise and compression, a share kept);
#: 4 uniform pairs of families per image added (``pair_copies=4``)
VARIANTS = (("base", None, False), ("0.5", 0.5, False), ("0.25", 0.25, False), ("pairs4", None, True))


def search(v2, dev, held, thresholds, cache, pairs=None, log=print):
    """Every rule on the out-of-fold probabilities of each variant of :data:`VARIANTS`."""
    lines = [HEADER]
    for name, prior, use_pairs in VARIANTS:
        if use_pairs and pairs is None:
            continue
        key = f"{cache}/combine-oof-{name}.pt"
        if os.path.isfile(key):
            P = torch.load(key)
        else:
            P = oof(v2, dev, held, subset=None if prior is None else drop_compression_prior(dev, prior),
                    train=with_pairs(dev, pairs) if use_pairs else None, log=log)
            torch.save(P, key)
        ptag = ("" if prior is None else
                f", compression on {int(100 * 0.75 * prior / (0.25 + 0.75 * prior))}% of blur+noise")
        ptag += ", + 4 uniform pairs per image" if use_pairs else ""
        if name == "base":
            m = measures(dev, held, shipped_named(P["S_dev"], thresholds), shipped_named(P["S_held"], thresholds))
            lines.append(row("shipped recipe alone", m))
        for primary in ("S", "C", "avg"):
            for t in (0.3, 0.4, 0.5, 0.6):
                m = measures(dev, held, combine(P["S_dev"], P["C_dev"], thresholds, t, primary),
                             combine(P["S_held"], P["C_held"], thresholds, t, primary))
                lines.append(row(f"gate S, primary {primary}, second C >= {t}{ptag}", m))
            for rate, floor in ((0.05, 0.3), (0.1, 0.3), (0.1, 0.4)):
                th = second_thresholds(P["C_dev"], dev, rate, floor)
                m = measures(dev, held, combine(P["S_dev"], P["C_dev"], thresholds, th, primary),
                             combine(P["S_held"], P["C_held"], thresholds, th, primary))
                lines.append(row(f"gate S, primary {primary}, second C per family (FA {rate} on dev compounds, "
                                 f"floor {floor}){ptag}", m))
        clean = dev["severity"] == 0
        A = (P["S_dev"] + P["C_dev"]) / 2
        gate = float(torch.quantile(A[clean].max(1).values, 0.96))
        for source in ("mean", "C"):
            for t in (0.3, 0.35, 0.4, 0.45, 0.5):
                m = measures(dev, held, averaged(P["S_dev"], P["C_dev"], gate, t, source),
                             averaged(P["S_held"], P["C_held"], gate, t, source))
                lines.append(row(f"gate on the mean of S and C ({gate:.3f}: 96% clean), primary its most likely, "
                                 f"second {source} >= {t}{ptag}", m))
        chosen, m, _ = lowest_feasible(P, dev, held, thresholds)
        lines.append(row(f"bound: mean gate and primary, second C per family at the lowest threshold with false alarms "
                         f"<= 10% on these very combinations ({', '.join(f'{t:.2f}' for t in chosen)}){ptag}", m))
        chosen, m = cross_fitted(P, dev, held, thresholds)
        lines.append(row(f"the same, thresholds chosen on the other half of the dev images "
                         f"({'; '.join(', '.join(f'{t:.2f}' for t in c) for c in chosen)}){ptag}", m))
    log("\n".join(lines))
    return lines


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cache", default="/tmp/dnniqa-cause")
    ap.add_argument("--v2", required=True, help="the shipped recipe's training examples (format 2 cache)")
    ap.add_argument("--pairs", default=None, help="features of draw_recipes(pair_copies=4)'s extra examples")
    args = ap.parse_args(argv)
    torch.set_num_threads(max(1, int(os.environ.get("OMP_NUM_THREADS", "2"))))
    v2 = torch.load(args.v2, weights_only=False)
    dev, held = dev_examples(args.cache), dev_heldout_examples(args.cache)
    thresholds = load_cause_head(SHIPPED_HEAD)[1]["thresholds"]
    pairs = torch.load(args.pairs, weights_only=False) if args.pairs else None
    lines = search(v2, dev, held, thresholds, args.cache, pairs)
    head = ["# Cause head: the shipped head combined with compound-trained heads (dev split, out of fold)", "",
            "Written by `benchmarks/cause_combine_search.py`; read with `cause.search.md` (what the rules mean, "
            "and why none ships). S = the shipped head's recipe refitted without each fold's images; C = the "
            "compound heads of `train_cause_head.SETTINGS` (3 x 128 merged), likewise; singles at severity 3-5; "
            "combos = the benchmark's held-out combinations on the dev images (n=500); orders = its held-out "
            "orders (n=167). Criterion, fixed before any test measurement: " + json.dumps(CRITERION), ""]
    with open(os.path.join(HERE, "results", "cause.combine.md"), "w") as f:
        f.write("\n".join(head + lines) + "\n")
    print(json.dumps(CRITERION))


if __name__ == "__main__":
    main()
