"""Issue 29, session 24: the blockage detector with a false-alarm budget of its own (dev only,
out of fold)

Its results (``results/cause.search.md``) were measured at commit dcabab0, before the blockage
detector shipped: since then the cached features end with the edge statistics (and the head's
format is 5), so run that commit to reproduce them.

    nice -n 10 python benchmarks/cause_blockage_additive_search.py --cache /tmp/dnniqa-cause

Session 23's detector spent the namer's budget of wrong extras, so the budget raised blur's
threshold and shaky, noisy photos lost their blur. Here the namer's second thresholds are
chosen as shipped, on its probabilities alone, and the detector only *adds* weather where
its own probability reaches a threshold of its own: the lowest of :data:`DETECTOR_GRID` at
which it fires on at most :data:`DETECTOR_BUDGET` of the dev single degradations (severity
3-5) of the other families. Naming stays monotone per family, so no image loses a family it
had. Also the detector at its logistic regression's own decision boundary (0.5, nothing
chosen). Judged as session 23 (``cause_blockage_search``): out of fold, thresholds from the
other half of the dev images on the first draw of the held-out combinations, from the whole
first draw on the second. Prints markdown (``results/cause.search.md``, section "Session 24").
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

import cause_blockage_search as blockage  # noqa: E402
import train_cause_head as T  # noqa: E402
from cause_compound import compound_recipes  # noqa: E402

from fiftyone_dnniqa.metrics.cause import FAMILIES  # noqa: E402

WEATHER = FAMILIES.index("weather_occlusion")
#: the detector's own thresholds to choose from
DETECTOR_GRID = (0.5, 0.6, 0.7, 0.8, 0.9, 0.95)
#: the share of dev single degradations of other families it may fire on
DETECTOR_BUDGET = 0.01


def detector_threshold(detector, own, budget=DETECTOR_BUDGET) -> float:
    """The lowest of :data:`DETECTOR_GRID` at which ``detector`` (its probabilities on single
    degradations whose family indices are ``own``) fires on at most ``budget`` of the
    singles of families other than weather (1.0 when none does)."""
    others = detector[own != WEATHER]
    return next((t for t in DETECTOR_GRID if float((others >= t).float().mean()) <= budget), 1.0)


def named_with_detector(probs, detector, gate, thresholds, t) -> torch.Tensor:
    """:func:`train_cause_head.named_families`, with weather also named beside the deciding
    family where ``detector`` reaches ``t``."""
    named = T.named_families(probs[0], probs[1], gate, thresholds)
    return named | ((detector >= t) & (probs[0].max(1).values >= gate)).unsqueeze(1) & \
        (torch.arange(len(FAMILIES)) == WEATHER)


def judge_first_draw(judge, base, block, pick):
    """All named per combination, wrong extras and the detector's thresholds on the first
    draw: every threshold chosen on the other half of the dev images (as ``Judge``), the
    detector's by ``pick(its probabilities on the singles, their family indices)``."""
    gate = T.gate_for(base["dev"][0][judge.clean], T.SETTINGS["target_none"])
    ok, extras, chosen = np.zeros(len(judge.combos), bool), [], []
    for half in (0, 1):
        s_in = [judge.single[j] for j in np.where(judge.s_half != half)[0]]
        c_in = np.where(judge.c_half != half)[0]
        rows_in = [judge.combos[j] for j in c_in]
        th = T.budgeted_thresholds((base["dev"][0][s_in], base["dev"][1][s_in]), judge.own[judge.s_half != half],
                                   (base["held"][0][rows_in], base["held"][1][rows_in]),
                                   [judge.truths[j] for j in c_in], gate, T.SETTINGS["extra_budget"],
                                   T.SETTINGS["false_alarm"])
        t = pick(block["dev"][s_in], judge.own[judge.s_half != half])
        chosen.append(t)
        c_out = [judge.combos[j] for j in np.where(judge.c_half == half)[0]]
        named = named_with_detector((base["held"][0][c_out], base["held"][1][c_out]), block["held"][c_out], gate,
                                    th, t)
        for j, row in zip(np.where(judge.c_half == half)[0], named):
            ok[j] = all(row[f] for f in judge.truths[j])
        s_out = [judge.single[j] for j in np.where(judge.s_half == half)[0]]
        wrong = named_with_detector((base["dev"][0][s_out], base["dev"][1][s_out]), block["dev"][s_out], gate, th,
                                    t) & ~torch.nn.functional.one_hot(judge.own[judge.s_half == half],
                                                                      len(FAMILIES)).bool()
        extras.append(float(wrong.any(1).float().mean()))
    per = {c: float(ok[[n == c for n in judge.names]].mean()) for c in sorted(set(judge.names))}
    return float(ok.mean()), float(np.mean(extras)), per, chosen


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cache", default="/tmp/dnniqa-cause", help="train_cause_head.py's cache")
    args = ap.parse_args(argv)
    torch.set_num_threads(max(1, int(os.environ.get("OMP_NUM_THREADS", "2"))))
    cache = args.cache
    dec, nam, held = T.decider_examples(cache), T.dev_examples(cache), T.held_out_combinations(cache)
    e_nam = blockage.edge_columns(cache, nam, T.SETTINGS["seed"], "namer")
    e_held = blockage.edge_columns(cache, held, 99, "held")
    judge = blockage.context.Judge(nam, held)
    base = T._cached(cache, "context-oof-base", lambda: T.out_of_fold(dec, nam, {"dev": nam, "held": held}))
    block = blockage.blockage_out_of_fold(nam, e_nam, {"dev": (nam, e_nam), "held": (held, e_held)})

    drawn = compound_recipes(250, stride=1, seed=12)
    again = T._cached(cache, "blockage-held-again", lambda: T._features([r for r, _ in drawn], 98, print,
                                                                         names=[n for _, n in drawn]))
    e_again = blockage.edge_columns(cache, again, 98, "held-again")
    p_again = T._cached(cache, "blockage-oof-again-base", lambda: T.out_of_fold(dec, nam, {"again": again}))["again"]
    block_again = blockage.blockage_out_of_fold(nam, e_nam, {"again": (again, e_again)})["again"]
    truths = [{FAMILIES.index(f) for f in T.family_severities(r.steps)} for r in again["recipes"]]
    combos = [j for j, n in enumerate(again["names"]) if " + " in n]
    names = sorted({again["names"][j] for j in combos})
    gate, th = T.gate_and_thresholds(base["dev"], base["held"], nam, held)
    other = [i for i, r in enumerate(nam["recipes"]) if len(T.family_severities(r.steps)) > 1
             and any(n in ("snow", "frost", "spatter") and s >= 3 for n, s in r.steps)]
    single_own = judge.own

    print("| the detector's budget: the dev singles of other families it may fire on | first draw: detector "
          "thresholds (per half) | all named | singles with a wrong extra | second draw: detector threshold | "
          "all named | " + " | ".join(f"{n} (first / second)" for n in names)
          + " | snow, frost, spatter + another: weather stored |")
    print("|---|---|---|---|---|---|" + "---|" * len(names) + "---|")
    rules = [(f"{100 * b:.1f}% of them" + (" (written before the run)" if b == DETECTOR_BUDGET else ""),
              lambda p, own, b=b: detector_threshold(p, own, b)) for b in (0.0, 0.005, DETECTOR_BUDGET, 0.02)]
    rules += [("none: its own decision boundary, 0.5", lambda p, own: 0.5), ("no detector (the shipped recipe)", None)]
    for label, pick in rules:
        detector = {s: block[s] if pick else torch.zeros(len(block[s])) for s in block}
        first = judge_first_draw(judge, base, detector, pick or (lambda p, own: 1.0))
        t = pick(block["dev"][judge.single], single_own) if pick else 1.0
        named2 = named_with_detector(p_again, block_again if pick else torch.zeros(len(block_again)), gate, th, t)
        ok2 = np.array([all(row[f] for f in truth) for row, truth in zip(named2, truths)])
        per2 = {n: float(ok2[[again["names"][j] == n for j in range(len(ok2))]].mean()) for n in names}
        stored = named_with_detector((base["dev"][0][other], base["dev"][1][other]), detector["dev"][other], gate,
                                     th, t)[:, WEATHER].float().mean()
        shown = ", ".join(f"{v:.2f}" for v in first[3]) if pick else "-"
        print(f"| {label} | {shown} | {100 * first[0]:.1f}% | {100 * first[1]:.1f}% | {t:.2f} | "
              f"{100 * ok2[combos].mean():.1f}% | "
              + " | ".join(f"{100 * first[2][n]:.0f}% / {100 * per2[n]:.0f}%" for n in names)
              + f" | {100 * float(stored):.0f}% |", flush=True)
    print(f"\nNamer thresholds (whole first draw, as shipped): " + ", ".join(
        f"{f} {v:.2f}" for f, v in zip(FAMILIES, th) if v < 1) + f"; gate {gate:.5f}")


if __name__ == "__main__":
    main()
