"""Accuracy of an unlabelled batch: estimators and their intervals, on shifts never fitted.

Protocol (CPU; see ``benchmarks/results/accuracy.md`` for the command and its time):

1. Arrays: per variant of each dev/test image (clean, and 24 corruptions x 5 severities),
   the corruption, severity, each task model's correctness and max-softmax confidence,
   and the ``aligned`` score (the proxy EfficientNet-Lite0's max softmax probability,
   the statistic ``benchmarks/alignment.py`` chose). Read from ``--arrays``: a file
   written by ``alignment.py --save-arrays`` (its proxy logits give ``aligned``; it saves
   neither the other Lite networks' probabilities nor the second task model on the dev
   split), or files written by this script's ``--extract`` (``alignment.py``'s images,
   corruptions and seeding, per chunk of 8 images; every Lite network on every variant,
   hence also the leave-one-out proxy ensemble: for each task model, the averaged
   probabilities of the *other* EfficientNet-Lite networks, never the task model).
2. Leave-families-out: the 24 corruptions form 5 families (noise, blur, weather,
   photometric, compression/geometric). For each family F, every estimator is fitted
   on the dev split's clean images and the other 4 families and estimates the accuracy
   of each (corruption, severity) group of F on the *test* split, from quality alone.
3. Reported per estimator and per held-out family: mean absolute error of the group
   estimates against the measured group accuracy, and the coverage of the nominal 90%
   intervals (bootstrap 95% intervals over groups). Beside them: the task model's own
   confidence through ATC (what a user with the model in hand would do), the proxy
   ensemble, the bootstrap intervals of the existing prior, an oracle that knows each
   group's dev-split accuracy (the floor set by measuring on finitely many images) and
   the random-split check ``heldout_error`` does (what the prior was judged on before).
4. The default estimator is the one with the lowest dev-split leave-families-out error
   (for the first task model) whose intervals reach their nominal coverage there.

    # score each split (one process each; saved after every 8 images, stop when you like)
    python benchmarks/accuracy.py --extract dev --images 64 --arrays /tmp/dev.npz [--corruptions ...]
    python benchmarks/accuracy.py --extract test --images 80 --arrays /tmp/test.npz [--corruptions ...]
    python benchmarks/accuracy.py --arrays /tmp/dev.npz /tmp/test.npz   # evaluate: results/accuracy.*
    python benchmarks/accuracy.py --arrays /tmp/align.npz   # or arrays of alignment.py --save-arrays
                                                           # (no ensemble; Lite2 has no dev labels there)
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
sys.path.insert(0, HERE)
from sample_data import IMAGENET_SAMPLE  # noqa: E402
import task_models as TM  # noqa: E402

from fiftyone_dnniqa.analysis import accuracy as ACC  # noqa: E402
from fiftyone_dnniqa.analysis.prior import PerformancePrior, heldout_error  # noqa: E402

FAMILIES = {
    "noise": ("gaussian_noise", "shot_noise", "impulse_noise", "speckle_noise", "dk_gaussian_noise"),
    "blur": ("defocus_blur", "glass_blur", "motion_blur", "zoom_blur", "gaussian_blur", "dk_gaussian_blur"),
    "weather": ("snow", "frost", "fog", "spatter"),
    "photometric": ("brightness", "contrast", "saturate", "dk_contrast"),
    "compression/geometric": ("elastic_transform", "pixelate", "jpeg_compression", "dk_jpeg", "dk_jpeg2000"),
}
FAMILY_OF = {c: f for f, cs in FAMILIES.items() for c in cs}
LITE = ("efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2")


def log(*a):
    print(*a, flush=True)


# ---------------------------------------------------------------------------
# Arrays
# ---------------------------------------------------------------------------


CHUNK = 8  # images scored together; the arrays are saved after each chunk


def _score_chunk(nets, rows, tasks, proxy, corruptions, seed):
    """Every variant of a few images through every network (the Lite ones and the other
    task models): the arrays' columns."""
    import torch

    import alignment as AL
    from fiftyone_dnniqa.metrics.aligned import confidence

    labels = np.array([int(r["class_index"]) for r in rows])
    rec = {}
    for cname, sev, x in AL.variants(AL.clean_batch(rows), corruptions, seed):
        probs = {n: torch.softmax(AL.task_logits(b, x), 1) for n, b in nets.items()}
        add = {"corruption": [cname] * len(x), "severity": [sev] * len(x), "label": labels.tolist(),
               "quality:aligned": confidence(torch.log(probs[proxy]), "max_prob").tolist()}
        for n, p in probs.items():
            add["correct:" + n] = (p.argmax(1).numpy() == labels).tolist()
            add["confidence:" + n] = p.amax(1).tolist()
        for t in tasks:  # the leave-one-out proxy ensemble: every other Lite network
            others = [probs[n] for n in LITE if n != t and n in probs]
            add["quality:ensemble:" + t] = (sum(others) / len(others)).amax(1).tolist()
        for key, v in add.items():
            rec.setdefault(key, []).extend(v)
    return rec


def extract(path, split, n_images, parsed, proxy, corruptions, seed):
    """Scores every variant of ``split``'s images with every EfficientNet-Lite network (the
    package's backbones) and every other task model of ``parsed``
    (:func:`task_models.parse_task_models`; ``alignment.py``'s images, corruptions and
    seeding, with seed ``seed + chunk``) and saves the arrays after each chunk of
    :data:`CHUNK` images, so an interrupted run leaves every group with fewer images rather
    than fewer groups; run again with the same options, it goes on from there (:func:`_resume`)."""
    import torch

    import alignment as AL
    from fiftyone_dnniqa.metrics.backbones import load_backbone

    nets = {n: load_backbone(n) for n in LITE}
    nets.update({s: TM.load_task_model(s, n, p) for s, n, p in parsed if s not in nets})
    tasks = [s for s, _, _ in parsed]
    for b in nets.values():
        b.model.to(memory_format=torch.channels_last)
    rows = AL.load_rows(n_images, n_images)[split]
    rec, spent = _resume(path, split, corruptions, nets)
    done, t0 = len(set(rec.get("image", []))), time.time() - spent
    for c, i in enumerate(range(0, len(rows), CHUNK)):
        if i < done:
            continue
        part = _score_chunk(nets, rows[i:i + CHUNK], tasks, proxy, corruptions, seed + c)
        n_chunk = len(rows[i:i + CHUNK])
        part["image"] = [i + k % n_chunk for k in range(len(part["label"]))]
        for key, v in part.items():
            rec.setdefault(key, []).extend(v)
        arrays = {f"{split}:{k}": np.asarray(v) for k, v in rec.items()}
        arrays[f"meta:{split}_extract_s"] = np.array(time.time() - t0)
        np.savez(path + ".tmp.npz", **arrays)
        os.replace(path + ".tmp.npz", path)
        log(f"  [{split}] {i + n_chunk}/{len(rows)} images, {time.time() - t0:.0f} s")
    return path


def _resume(path, split, corruptions, nets):
    """What an interrupted :func:`extract` left at ``path`` (``{column: list}``) and the seconds
    it took; ``({}, 0.0)`` when nothing is there. Refused when it scored other corruptions or
    other networks."""
    if not os.path.exists(path):
        return {}, 0.0
    with np.load(path, allow_pickle=False) as f:
        rec = {k.split(":", 1)[1]: f[k].tolist() for k in f.files if k.startswith(split + ":")}
        spent = float(f[f"meta:{split}_extract_s"]) if f"meta:{split}_extract_s" in f.files else 0.0
    if not rec:
        return {}, 0.0
    if set(rec["corruption"]) - {"clean"} != set(corruptions) or {
            k[8:] for k in rec if k.startswith("correct:")} != set(nets):
        raise SystemExit(f"{path} holds other corruptions or networks: move it away to start afresh")
    log(f"  [{split}] going on from {len(set(rec['image']))} images in {path}")
    return rec, spent


def load(paths):
    """``(dev, test, meta)``: per-split dicts of arrays from one or more files;
    ``quality:aligned`` computed from the proxy logits when a file came from
    ``alignment.py --save-arrays``."""
    a = {}
    for path in paths:
        with np.load(path, allow_pickle=False) as f:
            a.update({k: f[k] for k in f.files})
    splits = {"dev": {}, "test": {}}
    for key in a:
        split, _, name = key.partition(":")
        if split in splits and (name in ("corruption", "severity", "image", "label", "proxy_logits")
                                or name.startswith(("correct:", "confidence:", "quality:"))):
            splits[split][name] = a[key]
    for d in [d for d in splits.values() if d]:  # a file may hold one split
        if "quality:aligned" not in d and "proxy_logits" in d:
            z = d.pop("proxy_logits").astype(np.float64)
            z = np.exp(z - z.max(1, keepdims=True))
            d["quality:aligned"] = (z / z.sum(1, keepdims=True)).max(1)
        for task in TM.CROSS_PROXIES:
            q = TM.ensemble_quality(d, task) if "quality:aligned" in d else None
            if q is not None:
                d["quality:proxies:" + task] = q
        d["group"] = np.array([f"{c}/{s}" for c, s in zip(d["corruption"], d["severity"])])
        d["family"] = np.array([FAMILY_OF.get(c, "clean") for c in d["corruption"]])
    meta = {k: float(a[k]) for k in a if k.startswith("meta:")}
    return splits["dev"], splits["test"], meta


# ---------------------------------------------------------------------------
# Leave-families-out evaluation
# ---------------------------------------------------------------------------


def quality_key(source, task):
    return {"aligned": "quality:aligned", "own confidence": "confidence:" + task,
            "ensemble": "quality:ensemble:" + task, "proxies": "quality:proxies:" + task}[source]


#: the rows of the proxy pairs that never contain the task model (``task_models.CROSS_PROXIES``)
CROSS = "proxy pair, never the task model"


def method_list(default):
    """(label, quality source, estimator, interval): what the tables compare."""
    rows = [(f"{e} (aligned)", "aligned", e, "conformal") for e in ACC.ESTIMATORS]
    rows.append(("isotonic (aligned), bootstrap intervals", "aligned", "isotonic", "bootstrap"))
    rows.append(("reference: ATC on the task model's own confidence", "own confidence", "atc", "conformal"))
    rows.append((f"proxy ensemble, leave-one-out: {default}", "ensemble", default, "conformal"))
    rows.append(("proxy ensemble, leave-one-out: atc", "ensemble", "atc", "conformal"))
    rows.append((f"{CROSS}: {default}", "proxies", default, "conformal"))
    rows.append((f"{CROSS}: {ACC.DEFAULT_ESTIMATOR}", "proxies", ACC.DEFAULT_ESTIMATOR, "conformal"))
    rows.append((f"{CROSS}: atc", "proxies", "atc", "conformal"))
    return list(dict.fromkeys(rows))


def _fit(fit, task, source, estimator, interval, seed):
    q, y = fit[quality_key(source, task)], fit["correct:" + task].astype(float)
    if interval == "bootstrap":
        return PerformancePrior.fit(q, y, n_refits=50, seed=seed, estimator=None)
    return ACC.fit_accuracy_model(q, y, groups=fit["group"], families=fit["family"], estimator=estimator)


FITS = {
    "others": "the other families (leave-families-out: the target)",
    "all": "every family, the estimated one included (no shift)",
    "own": "clean + the estimated family alone (the shift labelled)",
}


def fit_mask(families, family, fit_on="others"):
    """Which fit rows estimate ``family``'s groups: see ``FITS``."""
    if fit_on == "others":
        return families != family
    if fit_on == "all":
        return np.ones(len(families), bool)
    if fit_on == "own":
        return (families == family) | (families == "clean")
    raise ValueError(f"fit_on must be one of {tuple(FITS)}")


def lofo(fit_d, eval_d, task, method, confidence, n_boot, seed=0, fit_on="others"):
    """Per held-out family: fit on ``fit_d`` without it (or as ``fit_on`` says), estimate
    each of its groups in ``eval_d``; one row per group."""
    _, source, estimator, interval = method
    key = quality_key(source, task)
    if key not in fit_d or key not in eval_d or "correct:" + task not in fit_d:
        return []
    rows = []
    for fam in [f for f in FAMILIES if f in set(eval_d["family"].tolist())]:
        keep = fit_mask(fit_d["family"], fam, fit_on)
        model = _fit({k: v[keep] for k, v in fit_d.items()}, task, source, estimator, interval, seed)
        for g in sorted(set(eval_d["group"][eval_d["family"] == fam].tolist())):
            sel = eval_d["group"] == g
            q = eval_d[key][sel]
            if interval == "bootstrap":
                est, lo, hi = model.predict_accuracy(q, n_boot=n_boot, confidence=confidence, seed=seed,
                                                     resample=False, observed=True)
            else:
                est, lo, hi = model.interval(q, confidence)
            measured = float(eval_d["correct:" + task][sel].mean())
            rows.append({"family": fam, "group": g, "n": int(sel.sum()), "predicted": est, "low": lo,
                         "high": hi, "measured": measured, "covered": bool(lo <= measured <= hi)})
    return rows


def oracle_rows(dev, test, task):
    """The floor of finite measurement: each test group estimated by the accuracy of the
    same (corruption, severity) on the dev images."""
    rows = []
    for g in sorted(set(test["group"][test["family"] != "clean"].tolist())):
        sel, dsel = test["group"] == g, dev["group"] == g
        if dsel.any() and "correct:" + task in dev:
            rows.append({"family": FAMILY_OF[g.split("/")[0]], "group": g, "n": int(sel.sum()),
                         "predicted": float(dev["correct:" + task][dsel].mean()),
                         "measured": float(test["correct:" + task][sel].mean())})
    return rows


def summarize(rows, n_boot, seed=0):
    """MAE and coverage over groups, with bootstrap 95% intervals (groups resampled)."""
    if not rows:
        return None
    err = np.array([abs(r["predicted"] - r["measured"]) for r in rows])
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(rows), (n_boot, len(rows)))
    out = {"groups": len(rows), "mae": float(err.mean()),
           "mae_ci": np.percentile(err[idx].mean(1), [2.5, 97.5]).tolist()}
    if "covered" in rows[0]:
        cov = np.array([r["covered"] for r in rows], float)
        out.update(coverage=float(cov.mean()), coverage_ci=np.percentile(cov[idx].mean(1), [2.5, 97.5]).tolist(),
                   width=float(np.mean([r["high"] - r["low"] for r in rows])))
    out["per_family"] = {}
    for fam in FAMILIES:
        sub = [r for r in rows if r["family"] == fam]
        if sub:
            out["per_family"][fam] = {"mae": float(np.mean([abs(r["predicted"] - r["measured"]) for r in sub])),
                                      "coverage": (float(np.mean([r["covered"] for r in sub]))
                                                   if "covered" in sub[0] else None)}
    return out


def choose_default(dev, task, confidence, n_boot):
    """The estimator with the lowest dev-split leave-families-out error among those whose
    intervals reach ``confidence`` there (the lowest error of all when none does)."""
    scores = {}
    for e in ACC.ESTIMATORS:
        scores[e] = summarize(lofo(dev, dev, task, ("", "aligned", e, "conformal"), confidence, n_boot), n_boot)
    ok = [e for e in scores if scores[e]["coverage"] >= confidence] or list(scores)
    return min(ok, key=lambda e: scores[e]["mae"]), scores


def random_split(test, task, n_boot):
    """The check the prior was judged on before: ``heldout_error`` with a random half of
    every group of the test split (95% intervals), all groups including clean."""
    res = heldout_error(test["quality:aligned"], test["correct:" + task].astype(float), groups=test["group"],
                        n_boot=n_boot, seed=0)
    cov = np.mean([r["covered"] for r in res.groups])
    return {"overall_abs_error": res.overall["abs_error"], "group_mae": res.mean_group_abs_error,
            "group_coverage_95": float(cov), "groups": len(res.groups)}


# ---------------------------------------------------------------------------
# Report
# ---------------------------------------------------------------------------


def _ci(v, ci):
    return f"{v:.3f} [{ci[0]:.3f}, {ci[1]:.3f}]"


def method_table(results, task, confidence):
    fams = list(FAMILIES)
    lines = [f"| estimator (quality) | intervals | groups | MAE | coverage ({confidence:.0%} nominal) | mean width | "
             + " | ".join(f"{f} MAE / cov." for f in fams) + " |", "|---|---|---|---|---|---|" + "---|" * len(fams)]
    for label, summ, interval in results[task]["methods"]:
        if summ is None:
            continue
        cov = _ci(summ["coverage"], summ["coverage_ci"]) if "coverage" in summ else "-"
        width = f"{summ['width']:.3f}" if "width" in summ else "-"
        per = []
        for f in fams:
            pf = summ["per_family"].get(f)
            per.append("-" if pf is None else f"{pf['mae']:.3f} / " + (
                "-" if pf["coverage"] is None else f"{pf['coverage']:.2f}"))
        lines.append(f"| {label} | {interval} | {summ['groups']} | {_ci(summ['mae'], summ['mae_ci'])} | {cov} | "
                     f"{width} | " + " | ".join(per) + " |")
    return lines


def plot(path, rows_by_label):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(rows_by_label), figsize=(5.2 * len(rows_by_label), 4.8), dpi=110,
                             squeeze=False)
    colours = dict(zip(FAMILIES, plt.rcParams["axes.prop_cycle"].by_key()["color"]))
    for ax, (label, rows) in zip(axes[0], rows_by_label.items()):
        for fam in FAMILIES:
            sub = [r for r in rows if r["family"] == fam]
            if not sub:
                continue
            m = np.array([r["measured"] for r in sub])
            p = np.array([r["predicted"] for r in sub])
            err = np.array([[r["predicted"] - r["low"] for r in sub], [r["high"] - r["predicted"] for r in sub]])
            ax.errorbar(m, p, yerr=err, fmt="o", ms=3, lw=0.7, alpha=0.8, color=colours[fam], label=fam)
        ax.plot([0, 1], [0, 1], "k--", lw=0.8)
        ax.set_xlim(-0.02, 1.02)
        ax.set_ylim(-0.02, 1.02)
        ax.set_xlabel("measured group accuracy (test split)")
        ax.set_ylabel("predicted, with its interval")
        ax.set_title(label, fontsize=9)
        ax.legend(fontsize=7, title="held-out family", title_fontsize=7)
    fig.tight_layout()
    fig.savefig(path)


def evaluate_all(dev, test, tasks, args):
    """Every method for every task model; the default chosen on dev."""
    default, dev_scores = choose_default(dev, tasks[0], args.confidence, args.n_boot)
    results = {}
    for task in tasks:
        if "correct:" + task not in test:
            continue
        methods, group_rows = [], {}
        for m in method_list(default):
            rows = lofo(dev, test, task, m, args.confidence, args.n_boot, args.seed)
            group_rows[m[0]] = rows
            methods.append((m[0], summarize(rows, args.n_boot, args.seed), m[3]))
        oracle = oracle_rows(dev, test, task)
        methods.append(("oracle: the group's dev-split accuracy (floor of finite measurement)",
                        summarize(oracle, args.n_boot, args.seed), "-"))
        results[task] = {"methods": methods, "groups": group_rows, "random_split": random_split(test, task, 300),
                         "accuracy": float(test["correct:" + task].mean()),
                         "sources": error_sources(dev, test, task, default, args, group_rows)}
    return default, dev_scores, results


def decomposed_methods(default):
    """The methods whose error ``error_sources`` splits: the chosen and the library's
    estimators and ATC on ``aligned``, the own-confidence reference, the ensemble's ATC."""
    wanted = {f"{e} (aligned)" for e in (default, ACC.DEFAULT_ESTIMATOR, "atc")}
    wanted |= {"reference: ATC on the task model's own confidence", "proxy ensemble, leave-one-out: atc",
               f"{CROSS}: {default}", f"{CROSS}: atc"}
    return [m for m in method_list(default) if m[0] in wanted]


def error_sources(dev, test, task, default, args, others):
    """Where the error comes from: each method's test-split MAE when fitted on the other
    families (the target: ``others``, the rows already estimated that way), on every
    family (no shift left) and on the estimated family alone (the shift labelled).
    ``{label: {fit_on: summary}}``."""
    out = {}
    for m in decomposed_methods(default):
        rows = {f: others[m[0]] if f == "others" else lofo(dev, test, task, m, args.confidence, args.n_boot,
                                                           args.seed, fit_on=f) for f in FITS}
        fits = {f: summarize(r, args.n_boot, args.seed) for f, r in rows.items()}
        if all(v is not None for v in fits.values()):
            out[m[0]] = fits
    return out


def sources_table(sources):
    fams = list(FAMILIES)
    lines = ["| estimator (quality) | fitted on | MAE | " + " | ".join(f"{f} MAE" for f in fams) + " |",
             "|---|---|---|" + "---|" * len(fams)]
    for label, fits in sources.items():
        for fit_on, summ in fits.items():
            per = [f"{summ['per_family'][f]['mae']:.3f}" if f in summ["per_family"] else "-" for f in fams]
            lines.append(f"| {label} | {FITS[fit_on]} | {_ci(summ['mae'], summ['mae_ci'])} | " + " | ".join(per)
                         + " |")
    return lines


def report(dev, test, meta, tasks, args, elapsed):
    t0 = time.time()
    default, dev_scores, results = evaluate_all(dev, test, tasks, args)
    os.makedirs(args.out, exist_ok=True)
    last = [t for t in tasks if t in results][-1]
    plot(os.path.join(args.out, args.stem + ".png"),
         {f"{default} on aligned ({last})": results[last]["groups"][f"{default} (aligned)"],
          f"ATC on {last}'s own confidence": results[last]["groups"][
              "reference: ATC on the task model's own confidence"]})
    md = render(dev, test, meta, tasks, args, default, dev_scores, results, elapsed + time.time() - t0)
    with open(os.path.join(args.out, args.stem + ".md"), "w") as f:
        f.write("\n".join(md) + "\n")
    with open(os.path.join(args.out, args.stem + ".json"), "w") as f:
        json.dump({"args": vars(args), "default": default, "library_default": ACC.DEFAULT_ESTIMATOR,
                   "dev_selection": dev_scores, "meta": meta,
                   "results": {t: {"methods": [{"method": m, "interval": i, **(s or {})} for m, s, i in r["methods"]],
                                   "random_split": r["random_split"], "groups": r["groups"],
                                   "error_sources": r["sources"]}
                               for t, r in results.items()}}, f, indent=1)
    log("\n".join(md))
    return 0


def verdict(r, default, args, task=None):
    """Targets met or not (for the estimator chosen on dev and the library's default, on
    ``aligned`` and on ``task``'s proxy pair), the measurement's own floor, and ensemble vs
    own confidence."""
    summ = {label: sm for label, sm, _ in r["methods"]}
    rows = r["groups"][f"{default} (aligned)"]
    n = np.array([x["n"] for x in rows])
    floor = noise_floor(rows)
    ens, own = summ[f"proxy ensemble, leave-one-out: {default}"], summ[
        "reference: ATC on the task model's own confidence"]
    out = []
    estimators = {default: "chosen on dev"}
    estimators.setdefault(ACC.DEFAULT_ESTIMATOR, "the library's default")
    pair = " + ".join(TM.CROSS_PROXIES.get(task, ()))
    for est, which in estimators.items():
        for label, on in ((f"{est} (aligned)", ""), (f"{CROSS}: {est}", f" on the proxy pair {pair}")):
            ours = summ.get(label)
            if ours is None:
                continue
            met = ours["mae"] <= 0.04 and ours["coverage"] >= args.confidence
            out.append(f"Targets (per-group MAE <= 0.04, coverage >= {args.confidence:.2f}) with `{est}` ({which})"
                       f"{on}: {'met' if met else 'not met'} (MAE {ours['mae']:.3f}, coverage "
                       f"{ours['coverage']:.2f}).")
    out.append(f"A perfect estimate of each group's expected accuracy would still be off by about {floor:.3f} on "
               f"average (binomial noise of groups of {int(np.median(n))} images: mean of sqrt(2/pi p(1-p)/n))"
               + (", so an MAE of 0.04 cannot be seen at this size." if floor >= 0.04 else "."))
    if ens is not None and own is not None:
        better = ens["mae"] < own["mae"] and ens["coverage"] >= args.confidence
        out.append(f"Label-free leave-one-out ensemble (`{default}`) vs the task model's own-confidence ATC: "
                   f"MAE {ens['mae']:.3f} vs {own['mae']:.3f}, coverage {ens['coverage']:.2f} vs "
                   f"{own['coverage']:.2f}: the ensemble {'beats' if better else 'does not beat'} it.")
    return out + [""]


def noise_floor(rows):
    """How far a perfect estimate of each group's expected accuracy lands from its measured
    accuracy on average: the mean of sqrt(2/pi p(1-p)/n) over the groups ``rows``."""
    m, n = np.array([x["measured"] for x in rows]), np.array([x["n"] for x in rows])
    return float(np.mean(np.sqrt(2 / np.pi * m * (1 - m) / n)))


#: what a fit reaching the target says: the shift is ... (see ``FITS``)
REACHED_WHEN = {"all": "among the fitted families", "own": "itself labelled"}


def limit_lines(sources, default, floor=0.0):
    """What the three fits say of the 0.04 target, for the estimators on ``aligned`` and on
    the proxy pair; nothing is said of it where binomial noise alone (``floor``) exceeds it."""
    if floor >= 0.04:
        return [f"Groups this small are off by about {floor:.3f} from binomial noise alone: the fits cannot say "
                "whether 0.04 is in reach."]
    out = []
    for est, on in [(e, q) for e in dict.fromkeys((default, ACC.DEFAULT_ESTIMATOR))
                    for q in ("aligned", "the proxy pair")]:
        fits = sources.get(f"{est} (aligned)" if on == "aligned" else f"{CROSS}: {est}")
        if fits is None:
            continue
        mae = {f: fits[f]["mae"] for f in FITS}
        if mae["others"] <= 0.04:
            says = "0.04 is reached on shifts never fitted"
        elif any(mae[f] <= 0.04 for f in REACHED_WHEN):
            says = "0.04 is reached only when the shift is " + " or ".join(
                REACHED_WHEN[f] for f in REACHED_WHEN if mae[f] <= 0.04)
        else:
            says = "0.04 is out of reach of one map from this proxy's confidence, however it is fitted"
        out.append(f"`{est}` on {'`aligned`' if on == 'aligned' else on}: {mae['others']:.3f} without the family, "
                   f"{mae['all']:.3f} with every family, {mae['own']:.3f} on the family alone: {says}.")
    return out


def render(dev, test, meta, tasks, args, default, dev_scores, results, elapsed):
    n_img = {k: len(set(d["image"].tolist())) for k, d in (("dev", dev), ("test", test))}
    corr = sorted(set(test["corruption"].tolist()) - {"clean"})
    extract_s = sum(v for k, v in meta.items() if k.endswith("extract_s"))
    md = ["# Accuracy of an unlabelled batch: estimators and intervals on held-out corruption families", "",
          f"`python benchmarks/accuracy.py --arrays {' '.join(os.path.basename(p) for p in args.arrays)}"
          + (f" --stem {args.stem}" if args.stem != "accuracy" else "") + "` on "
          f"{platform.node() or 'this machine'} ({os.cpu_count()} CPU cores): evaluation {elapsed:.0f} s"
          + ("; scoring the arrays (`--extract`, one process per split, side by side, 1 thread each, on a "
             "host shared with other jobs) took " + " and ".join(
                 f"{v / 60:.0f} min ({k.split(':')[1].split('_')[0]})" for k, v in meta.items()
                 if k.endswith("extract_s")) + "." if extract_s else "."), "",
          f"- Images: {n_img['dev']} dev + {n_img['test']} test ImageNet photos (imagenet-sample); corruptions "
          f"({len(corr)}): {', '.join(corr)}, severities 1..5, plus clean; "
          f"{len(test['group'])} test samples, about {len(test['group']) // max(1, len(set(test['group'].tolist())))} "
          "per (corruption, severity) group.",
          "- Families: " + "; ".join(f"{f}: {', '.join(c for c in cs if c in corr)}" for f, cs in FAMILIES.items()
                                     if any(c in corr for c in cs)) + ".",
          "- Leave-families-out: fitted on the dev split's clean images and the other families, evaluated on "
          "the test split's groups of the held-out family; every family held out in turn. Quality: `aligned` "
          "(EfficientNet-Lite0's max softmax probability), never the task model. Proxy pair (never the task "
          "model): the mean of two networks' max softmax probabilities, Lite0 + MobileNetV2 for a Lite task "
          "model, Lite0 + Lite1 for MobileNetV2 (`task_models.CROSS_PROXIES`). MobileNetV2: real ImageNet "
          "weights (a float state dict from `$DNNIQA_MODELS`); corruptions synthetic, photos real.",
          f"- Intervals: nominal {args.confidence:.0%}. Conformal: residuals of the fit's own held-out "
          "families, scaled by binomial noise plus the shift spread. Bootstrap: the existing "
          "`PerformancePrior.predict_accuracy(resample=False, observed=True)` (map refits + binomial noise). "
          "MAE and coverage: over groups, bootstrap 95% intervals resampling groups.", "",
          f"## Default chosen on the dev split (leave-families-out within dev, {tasks[0]})", "",
          "| estimator | dev MAE | dev coverage |", "|---|---|---|"]
    for e, sc in dev_scores.items():
        md.append(f"| {e}{' (chosen)' if e == default else ''} | {sc['mae']:.3f} | {sc['coverage']:.2f} |")
    md += ["", f"Chosen: `{default}`; the library's `DEFAULT_ESTIMATOR` is `{ACC.DEFAULT_ESTIMATOR}`.", ""]
    for task, r in results.items():
        rs = r["random_split"]
        md += [f"## {task} (test accuracy {r['accuracy']:.3f})", ""] + method_table(results, task, args.confidence)
        md += ["", f"Random-split check (`heldout_error`, same test split, every group halved, 95% intervals): "
                   f"overall error {rs['overall_abs_error']:.3f}, per-group MAE {rs['group_mae']:.3f}, coverage "
                   f"{rs['group_coverage_95']:.2f} over {rs['groups']} groups.", ""] + verdict(r, default, args, task)
        if r["sources"]:
            md += [f"### Where {task}'s error comes from", "",
                   ("The same test groups, each method fitted three ways on the dev split: without the estimated "
                    "family (the protocol above), with every family (nothing left unseen), and on clean images "
                    "plus the estimated family alone (its shift labelled, as a user who labelled some images of "
                    "that condition could fit). MAE with bootstrap 95% intervals over groups."), ""]
            md += sources_table(r["sources"]) + [""] + limit_lines(
                r["sources"], default, noise_floor(r["groups"][f"{default} (aligned)"])) + [""]
    md += ["## Bootstrap intervals and the plot", "",
           "Each MAE and coverage above carries a bootstrap 95% interval over the held-out groups (1 group = "
           "1 resampling unit). The plot shows, per held-out group of the last task model, the estimate "
           "and its interval against the measured accuracy; the dashed line is a perfect estimate.", ""]
    md += [f"![predicted versus measured group accuracy]({args.stem}.png)", ""]
    return md


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--arrays", nargs="+", required=True,
                    help="arrays (.npz) from alignment.py --save-arrays or from --extract (one per split)")
    ap.add_argument("--extract", choices=("dev", "test"), default=None,
                    help="score this split's variants and save them to the (single) --arrays path, then stop")
    ap.add_argument("--images", type=int, default=40, help="images of the split for --extract (at most 250)")
    ap.add_argument("--task-models", default="efficientnet_lite1,efficientnet_lite2," + TM.MOBILENET_V2,
                    help="comma-separated; <name>=<state dict file> for a user's weights (see task_models.py)")
    ap.add_argument("--proxy", default="efficientnet_lite0")
    ap.add_argument("--corruptions", default=None, help="comma-separated (default: every suite)")
    ap.add_argument("--confidence", type=float, default=0.9, help="nominal coverage of the intervals")
    ap.add_argument("--n-boot", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--out", default=os.path.join(HERE, "results"))
    ap.add_argument("--stem", default="accuracy", help="name of the result files: <out>/<stem>.md, .json, .png")
    args = ap.parse_args(argv)
    parsed = TM.parse_task_models(args.task_models)
    tasks = [s for s, _, _ in parsed]
    if args.proxy in tasks:
        raise SystemExit("the proxy must not be one of the task models")
    started = time.time()
    if args.extract:
        if not os.path.isdir(os.path.join(IMAGENET_SAMPLE, "images")):
            log(f"skipped: no images at {IMAGENET_SAMPLE}")
            return 0
        import torch

        from fiftyone_dnniqa.corruptions import list_corruptions

        torch.set_num_threads(args.threads or 1)  # 1 thread: 5x faster than 2 on a busy host (measured)
        corruptions = args.corruptions.split(",") if args.corruptions else list_corruptions()
        missing = TM.missing_weights(parsed)
        if missing:
            log(f"skipped: no weights at {missing} (set DNNIQA_MODELS)")
            return 0
        extract(args.arrays[0], args.extract, args.images, parsed, args.proxy, corruptions, args.seed)
        return 0
    missing = [p for p in args.arrays if not os.path.exists(p)]
    if missing:
        raise SystemExit(f"no arrays at {missing}: run with --extract, or alignment.py --save-arrays")
    dev, test, meta = load(args.arrays)
    return report(dev, test, meta, tasks, args, time.time() - started)


if __name__ == "__main__":
    sys.exit(main())
