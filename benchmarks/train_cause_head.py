"""Trains a cause head, reproducibly, from the ImageNet sample's dev split: with
:data:`SETTINGS`, issue 29's gated compound candidate (not shipped). The shipped head
(``fiftyone_dnniqa/metrics/data/cause_head.safetensors``) was trained by this script at
commit 07c2241 (its settings in :data:`SETTINGS`' comment), on examples rendered by the
corruption code of then.

    python benchmarks/train_cause_head.py --out /tmp/candidate.safetensors

The dev split is the alignment benchmark's: the sample's images sorted by file name, even
positions (250 images; the odd ones are the test split, which ``benchmarks/cause.py``
evaluates on). No labels are read: every example is a clean view or a corrupted copy
labelled by its corruption (``fiftyone_dnniqa.metrics.cause_training``). The same seed
gives the same head; the examples' features are cached (``--cache``) so that retraining
(and the benchmark's held-out-family experiments) costs seconds.

The corruption combinations of :data:`HELD_OUT_COMPOUNDS` never occur in training (a
copy that would hold one is drawn again): ``benchmarks/cause.py`` asks the head about
them on the test split.
"""

from __future__ import annotations

import argparse
import hashlib
import inspect
import os
import sys
import time

import torch
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
sys.path.insert(0, HERE)

from sample_data import IMAGES  # noqa: E402

import fiftyone_dnniqa.corruptions as corruptions_pkg  # noqa: E402
import fiftyone_dnniqa.metrics.cause as cause_module  # noqa: E402
import fiftyone_dnniqa.metrics.cause_training as cause_training  # noqa: E402
from fiftyone_dnniqa.core.images import InputSpec  # noqa: E402
from fiftyone_dnniqa.metrics.backbones import load_backbone  # noqa: E402
from fiftyone_dnniqa.metrics.cause import (  # noqa: E402
    FAMILIES, FORMAT_VERSION, SHIPPED_HEAD, CauseHead, save_cause_head,
)
from fiftyone_dnniqa.metrics.cause_training import (  # noqa: E402
    build_examples, calibrate_gate, draw_recipes, load_clean_images, train_cause_ensemble,
)
from fiftyone_dnniqa.metrics.training import seeded_standardised_head  # noqa: E402

#: the gated candidate's settings (issue 29; NOT the shipped head, which meets more of the
#: issue's goals: benchmarks/results/cause.search.md). The shipped head was trained by this
#: script at commit 07c2241 with copies=8, compound=0.2, hidden=64, epochs=150, one member
#: and per-family thresholds. Chosen on the dev split alone (5 folds by image, each fold's
#: images scored by heads fitted without them): three heads of 128 hidden units from
#: successive seeds merged into one kept 95.0% of ImageNet-C's single corruptions
#: (severity 3-5) right and stored with 96% of clean views clean, against 93.3% for one
#: head; the gate on the largest probability leaves 96% of the held-out clean views clean;
#: a second family is named from 0.4 (0.3: 83.4% of the held-out combinations fully
#: named but compression falsely named on 37% of them; 0.5: 80.0%). Uniform pairs of
#: families (``pair_copies``) lowered single-corruption accuracy (94.1%).
SETTINGS = dict(backbone="efficientnet_lite0", copies=12, clean_views=2, compound=0.5, pair_copies=0, hidden=128,
                members=3, epochs=300, weight_decay=5e-2, seed=0, target_none=0.96, false_alarm=0.1, floor=0.4)
#: the shipped head's recipe (this script at commit 07c2241): its draw (8 copies per image,
#: a fifth of them compounds, 2 clean views) and its training (:func:`train_single_head`)
SHIPPED_DRAW = dict(copies=8, clean_views=2, compound=0.2, pair_copies=0, seed=0)
SHIPPED_RECIPE = dict(hidden=64, epochs=150, weight_decay=5e-2, seed=0)
#: corruption combinations never drawn in training, for the benchmark's compound section:
#: a night shot (dark and noisy), soft and compressed, shaky hand-held (blurred and
#: noisy), hazy and soft, a dirty lens on a compressed frame, a night shot dark, shaken and
#: compressed
HELD_OUT_COMPOUNDS = (("low_light", "gaussian_noise"), ("defocus_blur", "jpeg_compression"),
                      ("motion_blur", "shot_noise"), ("fog", "gaussian_blur"), ("lens_dirt", "dk_jpeg"),
                      ("low_light", "motion_blur", "jpeg_compression"))


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
               cause_training.recipe_generator,
               cause_module.image_statistics, cause_module.cause_features):
        digest.update(inspect.getsource(fn).encode())
    digest.update(repr(HELD_OUT_COMPOUNDS).encode())
    return digest.hexdigest()[:10]


def split_files(split: str):
    """The sample's images of ``split`` ("dev": even positions by file name, "test": odd)."""
    files = sorted(os.listdir(IMAGES))
    return [os.path.join(IMAGES, f) for f in (files[0::2] if split == "dev" else files[1::2])]


def dev_examples(cache: str, limit=None, corruptions=None, log=print, draw=None):
    """Recipes, features, family targets and severities of the dev split (cached), drawn
    as ``draw`` says (copies, clean_views, compound, pair_copies, seed; default :data:`SETTINGS`)."""
    s = draw or SETTINGS
    pairs = f"-p{s['pair_copies']}" if s["pair_copies"] else ""
    key = (f"{cache}/dev-v{FORMAT_VERSION}-{rendering_fingerprint()}-{limit or 'all'}-{s['copies']}-{s['clean_views']}-{s['compound']}"
           f"{pairs}-{s['seed']}.pt")
    if os.path.isfile(key):
        return torch.load(key, weights_only=False)
    proxy = load_backbone(SETTINGS["backbone"])
    proxy.model.to(memory_format=torch.channels_last)
    files = split_files("dev")[:limit]
    clean, skipped = load_clean_images(files, InputSpec(resize=proxy.resize, crop=proxy.crop))
    recipes = draw_recipes(len(clean), s["copies"], s["clean_views"], s["compound"], corruptions, s["seed"],
                           exclude=HELD_OUT_COMPOUNDS, pair_copies=s["pair_copies"])
    t0 = time.time()

    calls = [0]

    def progress(frac, label):
        calls[0] += 1
        if calls[0] % 20 == 0 or frac >= 1:
            log(f"  {label} ({time.time() - t0:.0f} s)")

    X, Y, sev, fam_sev = build_examples(clean, recipes, proxy, torch.device("cpu"), s["seed"], 16, progress)
    out = {"recipes": recipes, "X": X, "Y": Y, "severity": sev, "family_severity": fam_sev, "num_images": len(clean),
           "num_skipped": skipped, "seconds": time.time() - t0}
    os.makedirs(cache, exist_ok=True)
    torch.save(out, key)
    return out


def train_single_head(X, Y, severity, hidden=64, epochs=150, lr=3e-3, weight_decay=5e-2, severity_weight=0.5,
                      clean_weight=3.0, mild_target=0.5, seed=0) -> CauseHead:
    """The shipped head's training (format 2: one severity for the image), as committed at 07c2241."""
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


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True,
                    help=f"the file to write (the shipped head, {SHIPPED_HEAD}, is not this script's settings)")
    ap.add_argument("--cache", default="/tmp/dnniqa-cause")
    ap.add_argument("--limit", type=int, default=None, help="dev images (default: all 250)")
    args = ap.parse_args(argv)
    torch.set_num_threads(max(1, int(os.environ.get("OMP_NUM_THREADS", "2"))))
    t0 = time.time()
    ex = dev_examples(args.cache, args.limit)
    s = SETTINGS
    kw = dict(hidden=s["hidden"], epochs=s["epochs"], weight_decay=s["weight_decay"], seed=s["seed"],
              members=s["members"])
    head = train_cause_ensemble(ex["X"], ex["Y"], ex["severity"], ex["family_severity"], **kw)
    groups = torch.tensor([r.image for r in ex["recipes"]])
    gate, thresholds = calibrate_gate(ex["X"], ex["Y"], ex["severity"], ex["family_severity"], groups,
                                      target_none=s["target_none"], false_alarm=s["false_alarm"],
                                      floor=s["floor"], **kw)
    config = {"backbone": s["backbone"], "gate": gate, "thresholds": thresholds,
              "corruptions": sorted({n for r in ex["recipes"] for n, _ in r.steps}),
              "copies": s["copies"], "clean_views": s["clean_views"], "compound": s["compound"],
              "pair_copies": s["pair_copies"], "members": s["members"], "seed": s["seed"], "epochs": s["epochs"],
              "weight_decay": s["weight_decay"], "target_none": s["target_none"], "false_alarm": s["false_alarm"],
              "num_images": ex["num_images"], "num_skipped": ex["num_skipped"],
              "num_examples": int(ex["X"].shape[0]), "trained_on": "ImageNet sample, dev split (even positions)",
              "held_out_compounds": [list(c) for c in HELD_OUT_COMPOUNDS]}
    save_cause_head(args.out, head, config)
    print(f"gate {gate}, thresholds {dict(zip(FAMILIES, thresholds))}")
    print(f"wrote {args.out} ({os.path.getsize(args.out) / 1e6:.2f} MB) from {ex['num_images']} images, "
          f"{ex['X'].shape[0]} examples, in {time.time() - t0:.0f} s")


if __name__ == "__main__":
    main()
