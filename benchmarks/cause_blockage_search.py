"""Issue 29, session 23: does a dark band along one edge carry lens dirt through heavy JPEG?
(dev only, out of fold)

Its results (``results/cause.search.md``) were measured at commit da9266a, before the blockage
detector shipped: since then the cached features end with the edge statistics (and the head's
format is 5), so run that commit to reproduce them.

    nice -n 10 python benchmarks/cause_blockage_search.py --cache /tmp/dnniqa-cause

``lens_dirt`` from severity 2 holds a partial blockage (a finger, a strap, a hood: a dark,
soft-edged band coming in from one edge, ``corruptions/camera.py``). The band covers tens of
JPEG blocks, so the block means that even quality 2 keeps still show it, where the namer's
features (sharpness, noise, the proxy's early maps) are taken over by the blocks. The
:func:`~fiftyone_dnniqa.metrics.blockage.edge_statistics` (written here first; 6 per image: at two strip depths, how much darker the darkest
edge strip is than the interior, than the opposite strip, and its brightest quarter than the
interior) are appended to the cached features (the images rendered again from their
recipes) and tried three ways, on the shipped head's own examples and judged as
``cause_compression_context_search.Judge`` does (thresholds chosen on one half of the dev
images, measured on the other, both ways round):

- in the namer's input, or in both heads';
- with the session 22 heavy-compression copies (8 per image) in the namer's training;
- a *blockage detector*: a logistic regression on the 6 statistics alone, trained out of fold
  for "a partial blockage is present" (``lens_dirt`` at severity 2 or more, a label from the
  recipe), whose probability is maxed with the namer's weather probability, or which names
  weather from a threshold of its own (the namer's weather threshold still chosen by the
  budget); also *stacked* (the namer's weather logit as a seventh input), gated by the
  namer's weather probability, or replacing it. Replacing it is no candidate: snow, frost
  and spatter would no longer be named beside another family, which the held-out
  combinations do not hold; the last column measures that on trained combinations.

Each again on a second draw of the held-out combinations on the dev images (every
combination on every image, seeded apart), with thresholds chosen on the whole first draw.
Prints markdown (``results/cause.search.md``, section "Session 23").
"""

from __future__ import annotations

import argparse
import os
import sys

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
sys.path.insert(0, HERE)

import cause_combine_search as combine  # noqa: E402
import cause_compression_context_search as context  # noqa: E402
import train_cause_head as T  # noqa: E402
from cause_compound import compound_recipes  # noqa: E402

from fiftyone_dnniqa.core.images import InputSpec  # noqa: E402
from fiftyone_dnniqa.metrics.backbones import load_backbone  # noqa: E402
from fiftyone_dnniqa.metrics.blockage import edge_statistics  # noqa: E402
from fiftyone_dnniqa.metrics.cause import FAMILIES  # noqa: E402
from fiftyone_dnniqa.metrics.cause_training import load_clean_images, recipe_generator, render  # noqa: E402

WEATHER = FAMILIES.index("weather_occlusion")


def edge_columns(cache, examples, seed, tag):
    """:func:`edge_statistics` of every example of ``examples`` (rendered again from its
    recipe with the generator its features were made with), cached."""
    def build():
        proxy = load_backbone(T.SETTINGS["backbone"])
        clean, _ = load_clean_images(T.split_files("dev"), InputSpec(resize=proxy.resize, crop=proxy.crop))
        return torch.cat([edge_statistics(render(clean[r.image], r, recipe_generator(seed, n)).unsqueeze(0))
                          for n, r in enumerate(examples["recipes"])])
    return T._cached(cache, f"blockage-edges-{tag}", build)


def widened(examples, columns):
    return dict(examples, X=torch.cat([examples["X"].float(), columns.float()], 1))


def blockage_out_of_fold(train_ex, train_inputs, scored):
    """The blockage detector's probability on each of ``scored`` (``{name: (examples,
    inputs)}``), fitted on ``train_inputs`` of ``train_ex`` without the example's image fold."""
    X, y = train_inputs.float().numpy(), np.array([T.blocked(r) for r in train_ex["recipes"]])
    image = np.array([r.image for r in train_ex["recipes"]])
    out = {n: torch.zeros(len(e["recipes"])) for n, (e, _) in scored.items()}
    for k in range(T.FOLDS):
        fit_on = image % T.FOLDS != k
        scale = StandardScaler().fit(X[fit_on])
        model = LogisticRegression(max_iter=2000).fit(scale.transform(X[fit_on]), y[fit_on])
        for n, (e, cols) in scored.items():
            m = torch.tensor([r.image % T.FOLDS == k for r in e["recipes"]])
            out[n][m] = torch.from_numpy(model.predict_proba(scale.transform(cols[m].float().numpy()))[:, 1]).float()
    return out


def stacked_inputs(edges, probs):
    """The stacked detector's inputs: the 6 edge statistics and the logit of the namer's
    weather probability (out of fold)."""
    return torch.cat([edges.float(), torch.logit(probs[1][:, WEATHER].clamp(1e-4, 1 - 1e-4)).unsqueeze(1)], 1)


def with_blockage(probs, blockage):
    """(deciding, naming) with the naming weather probability maxed with the detector's."""
    naming = probs[1].clone()
    naming[:, WEATHER] = torch.maximum(naming[:, WEATHER], blockage)
    return probs[0], naming


def replaced(probs, blockage):
    """(deciding, naming) with the naming weather probability replaced by the detector's."""
    naming = probs[1].clone()
    naming[:, WEATHER] = blockage
    return probs[0], naming


def own_threshold(blockage, threshold):
    """The detector's probability as a weather probability that reaches any threshold of
    the grid where it reaches ``threshold`` (its own), and none otherwise."""
    return (blockage >= threshold).float() * 0.999


def other_weather_named(gate, th, dev, examples):
    """The share of the namer's dev examples that hold snow, frost or spatter besides
    another family (trained combinations) on which weather is stored (``dev``: their
    probabilities; ``gate``, ``th``: the first draw's): what a detector of blockages alone
    would lose."""
    rows = [i for i, r in enumerate(examples["recipes"]) if len(T.family_severities(r.steps)) > 1
            and any(n in ("snow", "frost", "spatter") and s >= 3 for n, s in r.steps)]
    named = T.named_families(dev[0][rows], dev[1][rows], gate, th)
    return float(named[:, WEATHER].float().mean())


def second_draw(gate, th, second, truths_second, names_second):
    """All named per combination on ``second`` (another draw of the held-out combinations on
    the dev images), with the gate and thresholds chosen on the whole first draw."""
    named = T.named_families(second[0], second[1], gate, th)
    ok = np.array([all(row[t] for t in truth) for row, truth in zip(named, truths_second)])
    combos = [j for j, n in enumerate(names_second) if " + " in n]
    per = {c: float(ok[[n == c for n in names_second]].mean()) for c in sorted(set(names_second)) if " + " in c}
    return float(ok[combos].mean()), per, dict(zip(FAMILIES, th))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cache", default="/tmp/dnniqa-cause", help="train_cause_head.py's cache")
    args = ap.parse_args(argv)
    torch.set_num_threads(max(1, int(os.environ.get("OMP_NUM_THREADS", "2"))))
    cache = args.cache
    dec, nam, held = T.decider_examples(cache), T.dev_examples(cache), T.held_out_combinations(cache)
    e_dec = edge_columns(cache, dec, T.DECIDER["seed"], "decider")
    e_nam = edge_columns(cache, nam, T.SETTINGS["seed"], "namer")
    e_held = edge_columns(cache, held, 99, "held")
    dec2, nam2, held2 = widened(dec, e_dec), widened(nam, e_nam), widened(held, e_held)
    judge = context.Judge(nam, held)
    rows = []

    def add(name, p):
        named, extras, per, auc = judge(p["dev"], p["held"])
        rows.append((name, named, extras, per, auc))
        print(f"  {name}: {100 * named:.1f}% all named", flush=True)

    scored, scored2 = {"dev": nam, "held": held}, {"dev": nam2, "held": held2}
    base = T._cached(cache, "context-oof-base", lambda: T.out_of_fold(dec, nam, scored))
    add("the shipped recipe", base)
    add("+ edge statistics, namer", T._cached(cache, "blockage-oof-namer", lambda: T.out_of_fold(dec, nam2, scored2)))
    both = T._cached(cache, "blockage-oof-both", lambda: T.out_of_fold(dec2, nam2, scored2))
    add("+ edge statistics, both heads", both)
    for seed in (908, 909):
        heavy = T._cached(cache, f"heavy-8-{seed}", lambda seed=seed: T._features(
            context.heavy_recipes(250, 8, seed), seed, print))
        heavy2 = widened(heavy, edge_columns(cache, heavy, seed, f"heavy-{seed}"))
        add(f"+ edge statistics, both heads, + 8 heavy-compression copies per image (draw {seed})",
            T._cached(cache, f"blockage-oof-heavy-{seed}",
                      lambda heavy2=heavy2: T.out_of_fold(dec2, combine.with_pairs(nam2, heavy2), scored2)))
    block = blockage_out_of_fold(nam, e_nam, {"dev": (nam, e_nam), "held": (held, e_held)})
    add("the shipped recipe + blockage detector",
        {s: with_blockage(base[s], block[s]) for s in ("dev", "held")})
    add("+ edge statistics, both heads, + blockage detector",
        {s: with_blockage(both[s], block[s]) for s in ("dev", "held")})

    drawn = compound_recipes(250, stride=1, seed=12)
    again = T._cached(cache, "blockage-held-again", lambda: T._features([r for r, _ in drawn], 98, print,
                                                                         names=[n for _, n in drawn]))
    e_again = edge_columns(cache, again, 98, "held-again")
    again2 = widened(again, e_again)
    p_again = T._cached(cache, "blockage-oof-again", lambda: T.out_of_fold(dec2, nam2, {"again": again2}))["again"]
    p_again_base = T._cached(cache, "blockage-oof-again-base",
                             lambda: T.out_of_fold(dec, nam, {"again": again}))["again"]
    block_again = blockage_out_of_fold(nam, e_nam, {"again": (again, e_again)})["again"]
    truths = [{FAMILIES.index(f) for f in T.family_severities(r.steps)} for r in again["recipes"]]

    print("\n" + "\n".join(context.judged_table(rows, "variant (dev, out of fold; thresholds from the other half of "
                                                       "the images)")))
    combos = sorted(rows[0][3])
    print(f"\nThe blockage detector maxed in, with a threshold of its own, or stacked on the namer; each row also on "
          f"a second draw of the held-out combinations on the {again['num_images']} dev images (every combination on "
          "every image, out of fold), thresholds chosen on the whole first draw. Last column: weather stored on the "
          "namer's dev examples that hold snow, frost or spatter at 3-5 besides another family (trained "
          "combinations, out of fold):\n")
    print("| namer | detector | first draw: all named / wrong extras | second draw: all named | "
          + " | ".join(combos) + " | thresholds (first draw) | snow, frost, spatter + another: weather stored |")
    print("|---|---|---|---|" + "---|" * len(combos) + "---|---|")
    stacked_dev = stacked_inputs(e_nam, base["dev"])
    stacked = blockage_out_of_fold(nam, stacked_dev,
                                   {"dev": (nam, stacked_dev),
                                    "held": (held, stacked_inputs(e_held, base["held"])),
                                    "again": (again, stacked_inputs(e_again, p_again_base))})
    gated = {s: block[s] * (base[s][1][:, WEATHER] >= 0.1).float() for s in ("dev", "held")}
    gated["again"] = block_again * (p_again_base[1][:, WEATHER] >= 0.1).float()
    plain = dict(block, again=block_again)

    def own(detector, threshold):
        return lambda p, s: with_blockage(p, own_threshold(detector[s], threshold))

    rules = [("the shipped recipe", base, p_again_base, "none", lambda p, s: p)]
    for namer, first, later in (("the shipped recipe", base, p_again_base), ("edge statistics in both heads", both,
                                                                             p_again)):
        if namer != "the shipped recipe":
            rules.append((namer, first, later, "maxed", lambda p, s: with_blockage(p, plain[s])))
        rules += [(namer, first, later, f"own threshold {t}", own(plain, t)) for t in (0.5, 0.6, 0.7, 0.8, 0.9, 0.95)]
    rules += [("the shipped recipe", base, p_again_base, f"stacked on the namer's weather, own threshold {t}",
               own(stacked, t)) for t in (0.5, 0.7)]
    rules.append(("the shipped recipe", base, p_again_base, "own threshold 0.5 where the namer's weather >= 0.1",
                  own(gated, 0.5)))
    rules.append(("the shipped recipe", base, p_again_base, "stacked, replacing the namer's weather (not a candidate)",
                  lambda p, s: replaced(p, stacked[s])))
    for namer, first, later, label, rule in rules:
        p1 = {s: rule(first[s], s) for s in ("dev", "held")}
        named, extras, _, _ = judge(p1["dev"], p1["held"])
        gate, chosen = T.gate_and_thresholds(p1["dev"], p1["held"], nam, held)
        n2, per, th = second_draw(gate, chosen, rule(later, "again"), truths, again["names"])
        other = other_weather_named(gate, chosen, p1["dev"], nam)
        print(f"| {namer} | {label} | {100 * named:.1f}% / {100 * extras:.1f}% | {100 * n2:.1f}% | "
              + " | ".join(f"{100 * per[c]:.0f}%" for c in combos) + " | "
              + ", ".join(f"{f} {v:.2f}" for f, v in th.items() if v < 1) + f" | {100 * other:.0f}% |")


if __name__ == "__main__":
    main()
