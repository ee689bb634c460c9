"""The compound section of ``benchmarks/cause.py``: images with several degradations at
once, in combinations (or a pipeline order) the head never saw in training.

On the test split (images the head never saw):
- every combination of :data:`HELD_OUT_COMPOUNDS` (never drawn in training), in the
  capture's order, each family at its own severity 3, 4 or 5;
- two trained combinations in an order training never used (:data:`HELD_OUT_ORDERS`:
  noise blurred afterwards, as a denoiser would; noise added after compression).
Measured per group: the share of images whose most likely family is one of the true ones,
the share where every true family is stored (named), per-family recall and false-alarm
rate (a family stored on an image that does not hold it), and per family the Spearman
correlation of its severity output with the true severity over the images holding it.
The other side of naming second families: on the test set's single degradations, the
share of images on which a family they do not hold is stored too (:func:`extra_families`).
"""

from __future__ import annotations

import numpy as np
from scipy.stats import spearmanr

from fiftyone_dnniqa.corruptions.compound import family_severities
from fiftyone_dnniqa.metrics.cause import FAMILIES, FAMILY_OF, NONE
from fiftyone_dnniqa.metrics.cause_training import Recipe

#: corruption combinations never drawn in training (``train_cause_head.py``): a night shot
#: (dark and noisy), soft and compressed, shaky hand-held (blurred and noisy), hazy and
#: soft, a dirty lens on a compressed frame, a night shot dark, shaken and compressed
HELD_OUT_COMPOUNDS = (("low_light", "gaussian_noise"), ("defocus_blur", "jpeg_compression"),
                      ("motion_blur", "shot_noise"), ("fog", "gaussian_blur"), ("lens_dirt", "dk_jpeg"),
                      ("low_light", "motion_blur", "jpeg_compression"))
#: trained combinations in an order training never used (applied as listed)
HELD_OUT_ORDERS = (("shot_noise", "defocus_blur"), ("dk_jpeg", "gaussian_noise"))
#: goals at severities 3-5 (issue 29)
GOALS = {"top1_in_true_set": 0.90, "all_named": 0.80}


def compound_name(names, order):
    return (" > " if order == "given" else " + ").join(names)


def compound_recipes(n, stride=3, seed=7):
    """``[(recipe, name)]``: each held-out combination and order on every ``stride``-th
    test image (offset per combination), every family at a severity drawn from 3..5."""
    rng = np.random.default_rng(seed)
    out = []
    groups = [(c, "pipeline") for c in HELD_OUT_COMPOUNDS] + [(c, "given") for c in HELD_OUT_ORDERS]
    for k, (names, order) in enumerate(groups):
        for i in range(n):
            if (i + k) % stride == 0:
                steps = tuple((name, int(rng.integers(3, 6))) for name in names)
                out.append((Recipe(i, steps, order=order), compound_name(names, order)))
    return out


def _measures(idx, recipes, probs, fam_sev, stored):
    truth = [family_severities(recipes[k].steps) for k in idx]
    named = [{lab for lab, _ in stored[k]} for k in idx]
    top = [FAMILIES[int(probs[k].argmax())] for k in idx]
    out = {"n": len(idx),
           "top1_in_true_set": float(np.mean([t in tr for t, tr in zip(top, truth)])),
           "all_named": float(np.mean([set(tr) <= nm for tr, nm in zip(truth, named)]))}
    recall, false_alarm, rho = {}, {}, {}
    for f in FAMILIES:
        holds = [j for j, tr in enumerate(truth) if f in tr]
        lacks = [j for j, tr in enumerate(truth) if f not in tr]
        if holds:
            recall[f] = float(np.mean([f in named[j] for j in holds]))
            pred = [float(fam_sev[idx[j], FAMILIES.index(f)]) for j in holds]
            true = [truth[j][f] for j in holds]
            rho[f] = float(spearmanr(pred, true).statistic) if len(set(true)) > 1 else None
        if lacks:
            false_alarm[f] = float(np.mean([f in named[j] for j in lacks]))
    out.update(recall=recall, false_alarm=false_alarm, severity_spearman=rho)
    return out


def compound_section(test, probs, fam_sev, stored):
    """The measures of every compound group, of all held-out combinations together, and
    of the held-out orders together."""
    names, recipes = test["names"], test["recipes"]
    groups = sorted({n for n in names if "+" in n or ">" in n}, key=names.index)
    res = {"groups": {g: _measures([k for k, n in enumerate(names) if n == g], recipes, probs, fam_sev, stored)
                      for g in groups}}
    res["held_out_combinations"] = _measures([k for k, n in enumerate(names) if " + " in n], recipes, probs,
                                             fam_sev, stored)
    res["held_out_orders"] = _measures([k for k, n in enumerate(names) if " > " in n], recipes, probs,
                                       fam_sev, stored)
    res["singles_extra"] = extra_families(names, recipes, stored)
    res["goals"] = GOALS
    return res


def extra_families(names, recipes, stored):
    """On single degradations (one corruption with a family): the share of images on which
    a family they do not hold is stored besides, and each family's share of being that
    extra one."""
    idx = [k for k, n in enumerate(names) if n in FAMILY_OF and len(recipes[k].steps) == 1]
    extra = [{lab for lab, _ in stored[k]} - {FAMILY_OF[names[k]], NONE} for k in idx]
    return {"n": len(idx), "share": float(np.mean([bool(e) for e in extra])) if idx else None,
            "by_family": {f: float(np.mean([f in e for e in extra])) for f in FAMILIES} if idx else {}}


def _pct(v):
    return "-" if v is None else f"{100 * v:.1f}%"


def _families(d):
    return ", ".join(f"{f} {_pct(v)}" for f, v in d.items())


def compound_lines(sec):
    """Markdown lines of :func:`compound_section`."""
    lines = ["", "## Several degradations at once (held out of training)", "",
             "Test split, every family of an image at its own severity 3-5 (drawn per image). "
             "Combinations marked ' + ' were never drawn in training (in the capture's order: "
             "`fiftyone_dnniqa/corruptions/compound.py`); ' > ' marks a trained combination applied in an "
             "order training never used. Top-1 in set = the most likely family is one of the true ones; "
             "all named = every true family is stored.", "",
             "| compound | n | top-1 in set | all named | recall per family | false alarms (families absent) |",
             "|---|---|---|---|---|---|"]
    rows = list(sec["groups"].items()) + [("**all held-out combinations**", sec["held_out_combinations"]),
                                          ("**all held-out orders**", sec["held_out_orders"])]
    for g, m in rows:
        fa = {f: v for f, v in m["false_alarm"].items() if v > 0}
        lines.append(f"| {g} | {m['n']} | {_pct(m['top1_in_true_set'])} | {_pct(m['all_named'])} | "
                     f"{_families(m['recall'])} | {_families(fa) or '0 everywhere'} |")
    h = sec["held_out_combinations"]
    lines += ["", f"Goals on the held-out combinations: top-1 in set >= {_pct(GOALS['top1_in_true_set'])} "
              f"(measured {_pct(h['top1_in_true_set'])}), all named >= {_pct(GOALS['all_named'])} "
              f"(measured {_pct(h['all_named'])}).", "",
              "Severity per family (Spearman of the family's own severity output with its true severity, over "
              "the held-out combinations holding it): "
              + ", ".join(f"{f} {v:.2f}" for f, v in h["severity_spearman"].items() if v is not None) + "."]
    extra = sec.get("singles_extra")
    if extra and extra["n"]:
        lines += ["", f"On the {extra['n']} single degradations above (one corruption, severity 3-5), a family the image "
                  f"does not hold is stored too on {_pct(extra['share'])} of them (by family: "
                  + (_families({f: v for f, v in extra["by_family"].items() if v > 0}) or "none") + ")."]
    return lines

