"""Trains the shipped cause head, reproducibly, from the ImageNet sample's dev split.

    python benchmarks/train_cause_head.py --out fiftyone_dnniqa/metrics/data/cause_head.safetensors

The dev split is the alignment benchmark's: the sample's images sorted by file name, even
positions (250 images; the odd ones are the test split, which ``benchmarks/cause.py``
evaluates on). No labels are read: every example is a clean view or a corrupted copy
labelled by its corruption (``fiftyone_dnniqa.metrics.cause_training``). The same seed
gives the same head; the examples' features are cached (``--cache``) so that retraining
(and the benchmark's held-out experiments) costs seconds.

The shipped head is a :class:`~fiftyone_dnniqa.metrics.cause.PairedCauseHead`: a
single-degradation head (:data:`DECIDER`: mostly one degradation per copy) and
compound-trained heads (:data:`SETTINGS`: half the copies compounds, uniform pairs,
every other family under compression, and blur beyond severity 5). The mean of their probabilities decides clean or
not (the gate leaves 98% of the dev clean views clean, out of fold) and names the most
likely family; the namer names the others, from thresholds that spend a budget of wrong
extra families on the dev single degradations where they name the most of the benchmark's
held-out combinations rendered on the dev images (:func:`budgeted_thresholds`, out of fold).
A blockage detector on the edge statistics (:func:`fit_blockage_detector`) then adds weather
where a partial blockage is more likely than not, on top of those thresholds. The combinations of
``cause_compound.HELD_OUT_COMPOUNDS`` never occur in training (a copy that would hold
one is drawn again): ``benchmarks/cause.py`` asks the head about them on the test split.
"""

from __future__ import annotations

import argparse
import hashlib
import inspect
import os
import sys
import time
from typing import Optional

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
sys.path.insert(0, HERE)

from cause_compound import HELD_OUT_COMPOUNDS, compound_recipes  # noqa: E402
from sample_data import IMAGES  # noqa: E402

import fiftyone_dnniqa.corruptions as corruptions_pkg  # noqa: E402
import fiftyone_dnniqa.metrics.blockage as blockage_module  # noqa: E402
import fiftyone_dnniqa.metrics.cause as cause_module  # noqa: E402
import fiftyone_dnniqa.metrics.cause_training as cause_training  # noqa: E402
from fiftyone_dnniqa.core.images import InputSpec  # noqa: E402
from fiftyone_dnniqa.corruptions.compound import family_severities  # noqa: E402
from fiftyone_dnniqa.metrics.backbones import load_backbone  # noqa: E402
from fiftyone_dnniqa.metrics.blockage import EDGE_STATISTICS, BlockageDetector  # noqa: E402
from fiftyone_dnniqa.metrics.cause import (  # noqa: E402
    FAMILIES, FAMILY_OF, FORMAT_VERSION, SHIPPED_HEAD, CauseHead, PairedCauseHead, save_cause_head,
)
from fiftyone_dnniqa.metrics.cause_training import (  # noqa: E402
    build_examples, draw_recipes, load_clean_images, train_cause_ensemble,
)
from fiftyone_dnniqa.metrics.training import seeded_standardised_head  # noqa: E402

K = len(FAMILIES)
FOLDS = 5
#: the namer (issue 29; chosen on the dev split alone, out of fold:
#: benchmarks/results/cause.search.md): three heads of 128 hidden units from successive
#: seeds merged into one; 12 copies per image, half compounds, 4 uniform pairs of families
#: and 10 copies of one family then compression per image, 2 blurred beyond severity 5
#: (session 21: without them the namer called real photos blurred by 8 px hazy or dirty and
#: pulled the mean under the gate on 4 of 9; the decider gets 1). The gate leaves 98% of the dev
#: clean views clean (a margin for the test split's resolution: a gate set at 96% on 125
#: photos left 89.6-91.6% clean on the other 125 one time in 20). Second families spend a
#: budget: wrong extra families on at most 4.5% of the dev single degradations (severity
#: 3-5), each family's false alarms on held-out combinations at most 8%
#: (:func:`budgeted_thresholds`). The blockage detector (session 24): a logistic regression on
#: the edge statistics for "a partial blockage is present" (``lens_dirt`` at severity 2 or
#: more), fitted on the namer's examples, names weather from its own decision boundary
#: (``blockage_threshold``) on top of the namer's thresholds, which are chosen without it: it
#: spends no budget of theirs, so it never takes a family from an image (session 23's
#: detector did, and the shaky, noisy photo of the App walk-through lost its blur)
SETTINGS = dict(backbone="efficientnet_lite0", copies=12, clean_views=2, compound=0.5, pair_copies=4,
                compressed_copies=10, strong_blur_copies=2, hidden=128, members=3, epochs=300, weight_decay=5e-2,
                seed=0, target_none=0.98, false_alarm=0.08, extra_budget=0.045, blockage_threshold=0.5)
#: the decider: the recipe of the single-degradation head shipped before (commit 07c2241):
#: 8 copies per image, a fifth of them compounds, 64 hidden units, one severity per image;
#: and 1 copy per image blurred beyond severity 5
DECIDER = dict(copies=8, clean_views=2, compound=0.2, strong_blur_copies=1, hidden=64, epochs=150, weight_decay=5e-2,
               seed=2)
#: the thresholds :func:`budgeted_thresholds` tries
THRESHOLD_GRID = np.round(np.arange(0.3, 1.0, 0.05), 2)
#: the corruption modules that render the examples (not the sweeps' or the videos')
RENDERING_MODULES = ("filters.py", "dodge_karam.py", "imagenet_c.py", "imagenet_c_ops.py", "camera.py", "table.py",
                     "compound.py")


def rendering_fingerprint() -> str:
    """A hash of the code that renders and featurises the examples (the corruptions, the
    training recipes, the head's features): cached features are rebuilt when it changes."""
    folder = os.path.dirname(corruptions_pkg.__file__)
    files = sorted(os.path.join(folder, f) for f in os.listdir(folder) if f in RENDERING_MODULES)
    digest = hashlib.sha1()
    for path in files:
        with open(path, "rb") as f:
            digest.update(f.read())
    for fn in (cause_training.Recipe, cause_training._draw_families, cause_training.draw_recipes,
               cause_training.targets, cause_training.render, cause_training.build_examples,
               cause_training.recipe_generator, compound_recipes,
               cause_module.image_statistics, cause_module.regional_statistics, cause_module.multiscale_statistics,
               blockage_module.edge_statistics, cause_module.cause_features):
        digest.update(inspect.getsource(fn).encode())
    digest.update(repr(HELD_OUT_COMPOUNDS).encode())
    return digest.hexdigest()[:10]


def split_files(split: str):
    """The sample's images of ``split`` ("dev": even positions by file name, "test": odd)."""
    files = sorted(os.listdir(IMAGES))
    return [os.path.join(IMAGES, f) for f in (files[0::2] if split == "dev" else files[1::2])]


def _cached(cache, name, build):
    key = f"{cache}/{name}-v{FORMAT_VERSION}-{rendering_fingerprint()}.pt"
    if os.path.isfile(key):
        return torch.load(key, weights_only=False)
    out = build()
    os.makedirs(cache, exist_ok=True)
    torch.save(out, key)
    return out


def _features(recipes, seed, log, names=None, split="dev", n=None):
    """Features of ``recipes`` rendered (from ``seed``) on the first ``n`` (default all)
    images of ``split``."""
    proxy = load_backbone(SETTINGS["backbone"])
    proxy.model.to(memory_format=torch.channels_last)
    clean, skipped = load_clean_images(split_files(split)[:n], InputSpec(resize=proxy.resize, crop=proxy.crop))
    t0 = time.time()
    X, Y, sev, fam_sev = build_examples(clean, recipes, proxy, torch.device("cpu"), seed, 16)
    log(f"  {len(recipes)} examples featurised in {time.time() - t0:.0f} s")
    out = {"recipes": recipes, "X": X, "Y": Y, "severity": sev, "family_severity": fam_sev,
           "num_images": len(clean), "num_skipped": skipped}
    return dict(out, names=names) if names else out


def dev_examples(cache, log=print):
    """The namer's training examples (:data:`SETTINGS`' draw on the dev images, cached)."""
    s = SETTINGS
    name = (f"dev-{s['copies']}-{s['clean_views']}-{s['compound']}-p{s['pair_copies']}-c{s['compressed_copies']}"
            f"-b{s['strong_blur_copies']}-{s['seed']}")
    return _cached(cache, name, lambda: _features(
        draw_recipes(250, s["copies"], s["clean_views"], s["compound"], None, s["seed"], exclude=HELD_OUT_COMPOUNDS,
                     pair_copies=s["pair_copies"], compressed_copies=s["compressed_copies"],
                     strong_blur_copies=s["strong_blur_copies"]), s["seed"], log))


def decider_examples(cache, log=print):
    """The decider's training examples (:data:`DECIDER`'s draw on the dev images, cached)."""
    d = DECIDER
    name = f"decider-{d['copies']}-{d['clean_views']}-{d['compound']}-b{d['strong_blur_copies']}-{d['seed']}"
    return _cached(cache, name,
                   lambda: _features(draw_recipes(250, d["copies"], d["clean_views"], d["compound"], None, d["seed"],
                                                  exclude=HELD_OUT_COMPOUNDS,
                                                  strong_blur_copies=d["strong_blur_copies"]), d["seed"], log))


def held_out_combinations(cache, log=print):
    """The benchmark's held-out combinations and orders rendered on the dev images (seeded
    apart from the test's): the namer's thresholds are calibrated on them."""
    drawn = compound_recipes(250, seed=11)
    return _cached(cache, "dev-held-out-combinations", lambda: _features(
        [r for r, _ in drawn], 99, log, names=[n for _, n in drawn]))


def train_decider(X, Y, severity, hidden=64, epochs=150, lr=3e-3, weight_decay=5e-2, severity_weight=0.5,
                  clean_weight=3.0, mild_target=0.5, seed=2) -> CauseHead:
    """The decider's training (one severity for the image, format 2), as the head shipped
    at commit 07c2241 was trained: binary cross-entropy per family (clean examples weigh
    ``clean_weight``, severity 1 a soft positive) plus the overall severity's squared error."""
    X, Y, severity = X.float(), Y.float().clone(), severity.float()
    Y[severity == 1] *= mild_target
    weight = torch.where(severity == 0, clean_weight, 1.0).unsqueeze(1)
    head = seeded_standardised_head(lambda: CauseHead(X.shape[1], hidden, per_family=False), X, seed)
    opt = torch.optim.AdamW(head.parameters(), lr=lr, weight_decay=weight_decay)
    for _ in range(epochs):
        opt.zero_grad()
        logits, sev, _ = head(X)
        bce = (F.binary_cross_entropy_with_logits(logits, Y, reduction="none") * weight).mean()
        loss = bce + severity_weight * F.mse_loss(sev / 5, severity / 5)
        loss.backward()
        opt.step()
    return head.eval()


def _rows(examples, keep):
    return torch.ones(len(examples["X"]), dtype=torch.bool) if keep is None else keep(examples["recipes"])


def blocked(recipe) -> bool:
    """The recipe holds a partial blockage (``lens_dirt`` from severity 2 holds its band)."""
    return any(name == "lens_dirt" and severity >= 2 for name, severity in recipe.steps)


def fit_blockage_detector(X, recipes, first_column, weather_threshold) -> Optional[BlockageDetector]:
    """The blockage detector on the edge statistics (columns ``first_column`` on) of ``X``,
    fitted for :func:`blocked` ``recipes``: a plain logistic regression whose own threshold
    (:data:`SETTINGS`' ``blockage_threshold``) reads as ``weather_threshold``, the head's, so
    that the larger of it and the namer's weather probability names weather exactly where
    either reaches its own threshold. None where weather is never named second
    (``weather_threshold`` 1) or the examples hold one class only."""
    labels = [blocked(r) for r in recipes]
    if weather_threshold >= 1 or len(set(labels)) < 2:
        return None
    edges = X[:, first_column:first_column + len(EDGE_STATISTICS)].double().numpy()
    scale = StandardScaler().fit(edges)
    model = LogisticRegression(max_iter=2000).fit(scale.transform(edges), labels)
    detector = BlockageDetector(first_column, SETTINGS["blockage_threshold"], reads=weather_threshold)
    with torch.no_grad():
        detector.mean.copy_(torch.from_numpy(scale.mean_))
        detector.std.copy_(torch.from_numpy(scale.scale_))
        detector.linear.weight.copy_(torch.from_numpy(model.coef_))
        detector.linear.bias.copy_(torch.from_numpy(model.intercept_))
    return detector.eval()


def fit_paired_head(decider_ex, namer_ex, keep=None, weather_threshold=None) -> PairedCauseHead:
    """The shipped kind of head fitted on the examples that ``keep(recipes)`` (a boolean
    mask; default all) leaves in each set: the decider and the namer on the columns before
    the edge statistics; given the head's ``weather_threshold``, the blockage detector on
    those too (:func:`fit_blockage_detector`)."""
    a, b = _rows(decider_ex, keep), _rows(namer_ex, keep)
    d, s = DECIDER, SETTINGS
    first = namer_ex["X"].shape[1] - len(EDGE_STATISTICS)
    decider = train_decider(decider_ex["X"][a][:, :first], decider_ex["Y"][a], decider_ex["severity"][a],
                            hidden=d["hidden"], epochs=d["epochs"], weight_decay=d["weight_decay"], seed=d["seed"])
    namer = train_cause_ensemble(namer_ex["X"][b][:, :first], namer_ex["Y"][b], namer_ex["severity"][b],
                                 namer_ex["family_severity"][b], hidden=s["hidden"], epochs=s["epochs"],
                                 weight_decay=s["weight_decay"], seed=s["seed"], members=s["members"])
    recipes = [r for r, k in zip(namer_ex["recipes"], b.tolist()) if k]
    detector = None if weather_threshold is None else fit_blockage_detector(namer_ex["X"][b], recipes, first,
                                                                             weather_threshold)
    return PairedCauseHead(decider, namer, detector).eval()


def out_of_fold(decider_ex, namer_ex, sets, fit=fit_paired_head):
    """``{name: (deciding, naming) probabilities}`` of each of ``sets`` (``{name: examples}``
    over the dev images), each example scored by a head fitted without its image's fold."""
    out = {n: (torch.zeros(len(e["X"]), K), torch.zeros(len(e["X"]), K)) for n, e in sets.items()}
    for k in range(FOLDS):
        head = fit(decider_ex, namer_ex, lambda rs: torch.tensor([r.image % FOLDS != k for r in rs]))
        for n, e in sets.items():
            m = torch.tensor([r.image % FOLDS == k for r in e["recipes"]])
            with torch.no_grad():
                deciding, naming, _, _ = head.outputs(e["X"][m].float())
            out[n][0][m], out[n][1][m] = deciding, naming
    return out


def gate_for(deciding: torch.Tensor, target_none: float) -> float:
    """The gate that leaves a share ``target_none`` of these (clean) views' largest probability under it."""
    return float(torch.quantile(deciding.max(1).values, target_none))


def second_thresholds(deciding, naming, truths, gate, rate):
    """Per family, the lowest threshold of :data:`THRESHOLD_GRID` at which it is named
    (first by the deciding probabilities, or by its naming probability) on at most a
    share ``rate`` of the images lacking it (``truths``: each image's set of families;
    1.0 where none is low enough). A family's false alarms depend on its own threshold
    alone, and every family named raises the share fully named, so the lowest is best."""
    top = deciding.argmax(1)
    degraded = deciding.max(1).values >= gate
    out = []
    for k, family in enumerate(FAMILIES):
        lacks = torch.tensor([family not in t for t in truths])
        chosen = 1.0
        for t in THRESHOLD_GRID:
            named = degraded & ((top == k) | (naming[:, k] >= t))
            if lacks.any() and float(named[lacks].float().mean()) <= rate:
                chosen = float(t)
                break
        out.append(chosen)
    return out


def named_families(deciding, naming, gate, thresholds) -> torch.Tensor:
    """(N, K) booleans: the families stored per row (the deciding most likely one from the
    gate, then every family whose naming probability reaches its threshold)."""
    named = naming >= torch.tensor(thresholds, dtype=naming.dtype)
    named[torch.arange(len(named)), deciding.argmax(1)] = True
    return named & (deciding.max(1).values >= gate).unsqueeze(1)


def budgeted_thresholds(singles, own, combos, truths, gate, budget, rate):
    """Per family, the second-family threshold (of :data:`THRESHOLD_GRID`, 1.0 = never
    second): starting from none, lower one family's threshold a step at a time, each time
    the family whose step names every family of the most more ``combos`` (held-out
    combinations: (deciding, naming) probabilities and ``truths``, each image's family
    indices) per wrong extra family added on ``singles`` (single degradations, ``own``:
    their family index), as long as the share of singles with a wrong extra family stays
    within ``budget`` and every family's false alarms on the combinations within ``rate``.
    A step that names no more combinations is not taken, so a family stops at a plateau."""
    own_mask = torch.nn.functional.one_hot(own, K).bool()
    truth_mask = torch.zeros(len(truths), K, dtype=torch.bool)
    for i, t in enumerate(truths):
        truth_mask[i, list(t)] = True

    def measure(th):
        s, c = named_families(*singles, gate, th), named_families(*combos, gate, th)
        extra = float((s & ~own_mask).any(1).float().mean())
        all_named = float((c | ~truth_mask).all(1).float().mean())
        false = (c & ~truth_mask).float().sum(0) / (~truth_mask).float().sum(0).clamp_min(1)
        return extra, all_named, float(false.max())

    grid = [1.0] + sorted(THRESHOLD_GRID.tolist(), reverse=True)
    steps = [0] * K
    while True:
        extra0, named0, _ = measure([grid[j] for j in steps])
        best = None
        for k in range(K):
            if steps[k] + 1 == len(grid):
                continue
            trial = list(steps)
            trial[k] += 1
            extra, named, false = measure([grid[j] for j in trial])
            if extra > budget or false > rate or named <= named0:
                continue
            gain = (named - named0) / max(extra - extra0, 1e-4)
            if best is None or gain > best[0]:
                best = (gain, trial)
        if best is None:
            return [float(grid[j]) for j in steps]
        steps = best[1]


def calibration_rows(namer_ex, held):
    """The rows the second thresholds are chosen on: the namer's single degradations at
    severity 3-5 (indices, and each one's family index) and the held-out combinations
    (indices, and each one's set of family indices)."""
    recipes = namer_ex["recipes"]
    single = [i for i, r in enumerate(recipes) if len(r.steps) == 1 and r.steps[0][1] >= 3
              and r.steps[0][0] in FAMILY_OF]
    own = torch.tensor([FAMILIES.index(FAMILY_OF[recipes[i].steps[0][0]]) for i in single])
    combos = [i for i, n in enumerate(held["names"]) if " + " in n]
    truths = [{FAMILIES.index(f) for f in family_severities(held["recipes"][i].steps)} for i in combos]
    return single, own, combos, truths


def calibrate(decider_ex, namer_ex, held, log=print):
    """The gate (from the namer's clean views, out of fold) and the second thresholds
    (:func:`budgeted_thresholds` on the namer's single degradations at severity 3-5 and
    the held-out combinations, out of fold), from the decider and the namer alone."""
    t0 = time.time()
    probs = out_of_fold(decider_ex, namer_ex, {"dev": namer_ex, "held": held})
    gate, second = gate_and_thresholds(probs["dev"], probs["held"], namer_ex, held)
    log(f"  calibrated out of fold in {time.time() - t0:.0f} s")
    return round(gate, 6), second


def gate_and_thresholds(dev, held_probs, namer_ex, held):
    """The gate and the second thresholds from (deciding, naming) probabilities on the
    namer's examples (``dev``) and on the held-out combinations (``held_probs``)."""
    gate = gate_for(dev[0][namer_ex["severity"] == 0], SETTINGS["target_none"])
    single, own, combos, truths = calibration_rows(namer_ex, held)
    second = budgeted_thresholds((dev[0][single], dev[1][single]), own,
                                 (held_probs[0][combos], held_probs[1][combos]), truths, gate,
                                 SETTINGS["extra_budget"], SETTINGS["false_alarm"])
    return gate, second


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True,
                    help=f"the file to write (install it as {SHIPPED_HEAD} to ship it)")
    ap.add_argument("--cache", default="/tmp/dnniqa-cause")
    args = ap.parse_args(argv)
    torch.set_num_threads(max(1, int(os.environ.get("OMP_NUM_THREADS", "2"))))
    t0 = time.time()
    decider_ex, namer_ex = decider_examples(args.cache), dev_examples(args.cache)
    held = held_out_combinations(args.cache)
    gate, thresholds = calibrate(decider_ex, namer_ex, held)
    head = fit_paired_head(decider_ex, namer_ex, weather_threshold=thresholds[FAMILIES.index("weather_occlusion")])
    s = SETTINGS
    config = {"backbone": s["backbone"], "gate": gate, "thresholds": thresholds,
              "corruptions": sorted({n for r in namer_ex["recipes"] for n, _ in r.steps}),
              "namer_recipe": {k: s[k] for k in ("copies", "clean_views", "compound", "pair_copies", "compressed_copies",
                                          "strong_blur_copies", "members", "seed", "epochs", "weight_decay")},
              "decider_recipe": DECIDER, "target_none": s["target_none"], "false_alarm": s["false_alarm"],
              "extra_budget": s["extra_budget"],
              "blockage_recipe": {"label": "lens_dirt at severity 2 or more", "threshold": s["blockage_threshold"],
                                  "reads_as": "the head's weather threshold",
                                  "added_to": "the namer's thresholds, chosen without it"},
              "thresholds_from": "dev single degradations and the benchmark's held-out combinations on the dev "
                                 "images, out of fold (budgeted_thresholds)",
              "num_images": namer_ex["num_images"], "num_skipped": namer_ex["num_skipped"],
              "num_examples": int(namer_ex["X"].shape[0] + decider_ex["X"].shape[0]),
              "trained_on": "ImageNet sample, dev split (even positions)",
              "held_out_compounds": [list(c) for c in HELD_OUT_COMPOUNDS]}
    save_cause_head(args.out, head, config)
    print(f"gate {gate}, thresholds {dict(zip(FAMILIES, thresholds))}")
    print(f"wrote {args.out} ({os.path.getsize(args.out) / 1e6:.2f} MB) from {namer_ex['num_images']} images, "
          f"{config['num_examples']} examples, in {time.time() - t0:.0f} s")


if __name__ == "__main__":
    main()
