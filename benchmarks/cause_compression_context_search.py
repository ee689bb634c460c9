"""Issue 29, session 22: can the namer see lens dirt under heavy JPEG? (dev only, out of fold)

Its results (``results/cause.search.md``) were measured at commit da9266a, before the blockage
detector shipped: since then the cached features end with the edge statistics (and the head's
format is 5), so run that commit to reproduce them.

    nice -n 10 python benchmarks/cause_compression_context_search.py --cache /tmp/dnniqa-cause

On the shipped head's own examples (``train_cause_head.py``'s cache), every variant scored out
of fold (5 folds by image) and its second-family thresholds chosen as the shipped head's are
(:func:`train_cause_head.budgeted_thresholds`), on one half of the dev images and measured on
the other (both ways round). Two ideas, each aimed at the loss session 21 located (weather
on lens dirt + Dodge & Karam's JPEG: AUC 0.79):

- **features compression barely moves**: a second namer reading only the columns whose median
  shift from an image's clean views to its single compressed copies (severity 3-5) is under
  ``cut`` clean-view standard deviations; its probabilities replace the namer's, or are
  averaged or maxed with them;
- **heavy compression under every family**: 8 copies per image of one family other than
  compression (any corruption, severity 1-5) followed by a compression at severity 3-5 (any
  codec; the held-out combinations drawn again), added to the namer's training (two random
  draws of them, to see how much a draw moves the measure); the namer also trained longer or
  with more weight decay;
- **a linear weather detector**: logistic regression on the standardised features, weather
  or not, whose probability's AUC on lens dirt + JPEG is set against the namer's.

Prints markdown (``results/cause.search.md``, section "Session 22").
"""

from __future__ import annotations

import argparse
import os
import sys

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.preprocessing import StandardScaler

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
sys.path.insert(0, HERE)

import cause_combine_search as combine  # noqa: E402
import train_cause_head as T  # noqa: E402
from cause_compound import HELD_OUT_COMPOUNDS  # noqa: E402

from fiftyone_dnniqa.metrics.cause import FAMILIES, FAMILY_OF  # noqa: E402
from fiftyone_dnniqa.metrics.cause_training import (  # noqa: E402
    Recipe, corruptions_by_family, train_cause_ensemble,
)

K = len(FAMILIES)
WEATHER = FAMILIES.index("weather_occlusion")
DIRT_JPEG = "lens_dirt + dk_jpeg"


def heavy_recipes(num_images, copies, seed):
    """Per image ``copies`` of one family other than compression then a compression at 3-5."""
    rng = np.random.default_rng(seed)
    by_family = {family: sorted(names) for family, names in corruptions_by_family().items()}
    others = sorted(f for f in by_family if f != "compression")
    held = [set(h) for h in HELD_OUT_COMPOUNDS]
    out = []
    for i in range(num_images):
        for _ in range(copies):
            while True:
                names = by_family[others[rng.integers(len(others))]]
                first, codec = names[rng.integers(len(names))], by_family["compression"][rng.integers(3)]
                if not any(h <= {first, codec} for h in held):
                    break
            out.append(Recipe(i, ((first, int(rng.integers(1, 6))), (codec, int(rng.integers(3, 6)))),
                              flip=bool(rng.integers(2))))
    return out


def compression_shift(examples):
    """Per column: the median over images of the shift from the clean views' mean to the
    single compressed copies' mean (severity 3-5), in clean-view standard deviations."""
    X, rs = examples["X"].float(), examples["recipes"]
    image = torch.tensor([r.image for r in rs])
    clean = examples["severity"] == 0
    comp = torch.tensor([len(r.steps) == 1 and r.steps[0][1] >= 3 and FAMILY_OF.get(r.steps[0][0]) == "compression"
                         for r in rs])
    sd = X[clean].std(0).clamp_min(1e-6)
    shifts = [(X[comp & (image == i)].mean(0) - X[clean & (image == i)].mean(0)) / sd
              for i in image[comp].unique().tolist()]
    return torch.stack(shifts).abs().median(0).values


def namer_out_of_fold(examples, scored, columns):
    """The namer's recipe on ``columns`` only, each of ``scored`` by the fit without its fold."""
    s = T.SETTINGS
    out = {n: torch.zeros(len(e["X"]), K) for n, e in scored.items()}
    for k in range(T.FOLDS):
        keep = torch.tensor([r.image % T.FOLDS != k for r in examples["recipes"]])
        head = train_cause_ensemble(examples["X"][keep][:, columns].float(), examples["Y"][keep],
                                    examples["severity"][keep], examples["family_severity"][keep], hidden=s["hidden"],
                                    epochs=s["epochs"], weight_decay=s["weight_decay"], seed=s["seed"],
                                    members=s["members"])
        for n, e in scored.items():
            m = torch.tensor([r.image % T.FOLDS == k for r in e["recipes"]])
            with torch.no_grad():
                out[n][m] = torch.sigmoid(head(e["X"][m][:, columns].float())[0])
    return out


def linear_weather_out_of_fold(examples, scored, c):
    """A logistic regression (inverse regularisation ``c``) for weather on the standardised
    features, each of ``scored`` by the fit without its fold (in every family's column)."""
    X, y = examples["X"].float().numpy(), examples["Y"][:, WEATHER].numpy() > 0.5
    image = np.array([r.image for r in examples["recipes"]])
    out = {n: torch.zeros(len(e["X"]), K) for n, e in scored.items()}
    for k in range(T.FOLDS):
        fit_on = image % T.FOLDS != k
        scale = StandardScaler().fit(X[fit_on])
        model = LogisticRegression(C=c, max_iter=2000).fit(scale.transform(X[fit_on]), y[fit_on])
        for n, e in scored.items():
            m = np.array([r.image % T.FOLDS == k for r in e["recipes"]])
            p = model.predict_proba(scale.transform(e["X"][torch.from_numpy(m)].float().numpy()))[:, 1]
            out[n][torch.from_numpy(m)] = torch.from_numpy(p).float().unsqueeze(1).expand(-1, K)
    return out


class Judge:
    """All named (per combination) and wrong extras on the dev images, thresholds chosen on
    the other half of the images; the weather AUC on lens dirt + JPEG."""

    def __init__(self, namer_ex, held):
        self.single, self.own, self.combos, self.truths = T.calibration_rows(namer_ex, held)
        self.names = [held["names"][i] for i in self.combos]
        self.s_half = np.array([namer_ex["recipes"][i].image % 2 for i in self.single])
        self.c_half = np.array([held["recipes"][i].image % 2 for i in self.combos])
        self.clean = namer_ex["severity"] == 0

    def __call__(self, dev, held):
        """``dev``, ``held``: (deciding, naming) probabilities out of fold."""
        gate = T.gate_for(dev[0][self.clean], T.SETTINGS["target_none"])
        ok, extras = np.zeros(len(self.combos), bool), []
        for half in (0, 1):
            s_in = [self.single[j] for j in np.where(self.s_half != half)[0]]
            c_in = np.where(self.c_half != half)[0]
            rows_in = [self.combos[j] for j in c_in]
            th = T.budgeted_thresholds((dev[0][s_in], dev[1][s_in]), self.own[self.s_half != half],
                                       (held[0][rows_in], held[1][rows_in]), [self.truths[j] for j in c_in], gate,
                                       T.SETTINGS["extra_budget"], T.SETTINGS["false_alarm"])
            c_out = np.where(self.c_half == half)[0]
            named = T.named_families(held[0][[self.combos[j] for j in c_out]],
                                     held[1][[self.combos[j] for j in c_out]], gate, th)
            for j, row in zip(c_out, named):
                ok[j] = all(row[t] for t in self.truths[j])
            s_out = [self.single[j] for j in np.where(self.s_half == half)[0]]
            wrong = T.named_families(dev[0][s_out], dev[1][s_out], gate, th) & \
                ~torch.nn.functional.one_hot(self.own[self.s_half == half], K).bool()
            extras.append(float(wrong.any(1).float().mean()))
        per = {c: float(ok[[n == c for n in self.names]].mean()) for c in sorted(set(self.names))}
        return float(ok.mean()), float(np.mean(extras)), per, self.dirt_auc(dev[1], held[1])

    def dirt_auc(self, dev_naming, held_naming):
        """The AUC of the weather probability: lens dirt + JPEG against the single
        degradations (severity 3-5) of other families."""
        neg = [i for i, o in zip(self.single, self.own.tolist()) if o != WEATHER]
        pos = [self.combos[j] for j, n in enumerate(self.names) if n == DIRT_JPEG]
        return roc_auc_score(np.r_[np.ones(len(pos)), np.zeros(len(neg))],
                             np.r_[held_naming[pos, WEATHER].numpy(), dev_naming[neg, WEATHER].numpy()])


def judged_table(rows, first_column):
    """Markdown lines of :class:`Judge`'s rows ``(name, all named, wrong extras, per
    combination, weather AUC)``."""
    combos = sorted(rows[0][3])
    lines = [f"| {first_column} | all named | singles with a wrong extra | weather AUC, lens dirt + JPEG | "
             + " | ".join(combos) + " |", "|---|---|---|---|" + "---|" * len(combos)]
    return lines + [f"| {name} | {100 * named:.1f}% | {100 * extras:.1f}% | {auc:.3f} | "
                    + " | ".join(f"{100 * per[c]:.0f}%" for c in combos) + " |"
                    for name, named, extras, per, auc in rows]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cache", default="/tmp/dnniqa-cause", help="train_cause_head.py's cache")
    ap.add_argument("--cuts", type=float, nargs="+", default=[0.25, 0.5, 1.0])
    args = ap.parse_args(argv)
    torch.set_num_threads(max(1, int(os.environ.get("OMP_NUM_THREADS", "2"))))
    decider_ex, namer_ex = T.decider_examples(args.cache), T.dev_examples(args.cache)
    held = T.held_out_combinations(args.cache)
    scored = {"dev": namer_ex, "held": held}
    judge = Judge(namer_ex, held)
    rows = []

    def add(name, dev, hld):
        named, extras, per, auc = judge(dev, hld)
        rows.append((name, named, extras, per, auc))
        print(f"  {name}: {100 * named:.1f}% all named", flush=True)

    base = T._cached(args.cache, "context-oof-base", lambda: T.out_of_fold(decider_ex, namer_ex, scored))
    add("the shipped recipe", base["dev"], base["held"])
    shift = compression_shift(namer_ex)
    for cut in args.cuts:
        columns = torch.where(shift < cut)[0]
        inv = T._cached(args.cache, f"context-oof-invariant-{cut}",
                        lambda: namer_out_of_fold(namer_ex, scored, columns))
        for rule, f in (("replaces", lambda a, b: b), ("averaged", lambda a, b: (a + b) / 2),
                        ("maxed", torch.maximum)):
            add(f"invariant namer ({len(columns)} of {len(shift)} columns, shift < {cut}) {rule}",
                (base["dev"][0], f(base["dev"][1], inv["dev"])), (base["held"][0], f(base["held"][1], inv["held"])))
    for seed, change in ((908, {}), (909, {}), (908, dict(epochs=600)), (908, dict(epochs=600, weight_decay=0.3))):
        heavy = T._cached(args.cache, f"heavy-8-{seed}", lambda: T._features(heavy_recipes(250, 8, seed), seed, print))
        label = ", ".join([f"draw {seed}"] + [f"{k.replace('_', ' ')} {v}" for k, v in change.items()])

        def fit(change=change, heavy=heavy):
            before = dict(T.SETTINGS)
            T.SETTINGS.update(change)
            try:
                return T.out_of_fold(decider_ex, combine.with_pairs(namer_ex, heavy), scored)
            finally:
                T.SETTINGS.clear()
                T.SETTINGS.update(before)
        p = T._cached(args.cache, "context-oof-" + label.replace(" ", "").replace(",", "-"), fit)
        add(f"+ 8 copies per image under heavy compression ({label})", p["dev"], p["held"])
    linear = []
    for c in (0.01, 0.1, 1.0):
        p = T._cached(args.cache, f"context-oof-linear-{c}", lambda: linear_weather_out_of_fold(namer_ex, scored, c))
        linear.append(f"C = {c}: {judge.dirt_auc(p['dev'], p['held']):.3f}")
    print("\n" + "\n".join(judged_table(rows, "namer (dev, out of fold; thresholds from the other half of the images)")))
    print("\nA linear weather detector (logistic regression, out of fold), its AUC on lens dirt + JPEG: "
          + "; ".join(linear))


if __name__ == "__main__":
    main()
