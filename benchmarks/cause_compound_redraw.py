"""A fresh draw of the held-out combinations on the test split, several cause heads side by
side (issue 29)

    python benchmarks/cause_compound_redraw.py --seed 24 shipped=PATH candidate=PATH

``benchmarks/cause.py`` reads every head on one draw of the held-out combinations (seed 7,
each combination on every third test image). Once a candidate has been read there, that
draw is no longer fresh for the next candidate. This renders every held-out combination on
every test image again, at severities and noise drawn from ``--seed`` (use a seed no read
has used), and prints, per combination, the share of images whose every true family each
head names. Same features, same images, one run: the heads' differences are theirs.
"""

from __future__ import annotations

import argparse
import os
import sys

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
sys.path.insert(0, HERE)

from cause import predict  # noqa: E402
from cause_compound import compound_recipes, compound_section  # noqa: E402
from train_cause_head import _cached, _features, split_files  # noqa: E402

from fiftyone_dnniqa.metrics.cause import load_cause_head  # noqa: E402


def redrawn_examples(cache, n, seed):
    """Features of every held-out combination and order on each of the first ``n`` test
    images, severities drawn from ``seed`` and rendered from ``seed + 100`` (cached)."""
    n = min(n, len(split_files("test")))
    drawn = compound_recipes(n, stride=1, seed=seed)
    return _cached(cache, f"redraw-{seed}-test-{n}", lambda: _features(
        [r for r, _ in drawn], seed + 100, print, names=[name for _, name in drawn], split="test", n=n))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("heads", nargs="+", help="NAME=PATH of each cause head to compare")
    ap.add_argument("--seed", type=int, required=True, help="a seed no earlier read used (cause.py's draw: 7)")
    ap.add_argument("--images", type=int, default=250)
    ap.add_argument("--cache", default="/tmp/dnniqa-cause")
    args = ap.parse_args(argv)
    torch.set_num_threads(max(1, int(os.environ.get("OMP_NUM_THREADS", "2"))))
    test = redrawn_examples(args.cache, args.images, args.seed)
    sections = {}
    for spec in args.heads:
        name, path = spec.split("=", 1)
        head, config = load_cause_head(path)
        probs, _, fam_sev, stored = predict(head, test["X"], config["thresholds"], config.get("gate"))
        sections[name] = compound_section(test, probs, fam_sev, stored)
    groups = [g for g in sorted({n for n in test["names"]}, key=test["names"].index) if " + " in g]
    heads = list(sections)
    print(f"Every held-out combination on each of {args.images} test images, severities 3-5 drawn from seed "
          f"{args.seed} (a draw no earlier read used); all named (top-1 in the true set):\n")
    print("| compound | n | " + " | ".join(heads) + " |")
    print("|---|---|" + "---|" * len(heads))
    for g in groups + ["all held-out combinations"]:
        m = {h: (sections[h]["groups"][g] if g in groups else sections[h]["held_out_combinations"]) for h in heads}
        label = g if g in groups else f"**{g}**"
        print(f"| {label} | {m[heads[0]]['n']} | "
              + " | ".join(f"{100 * m[h]['all_named']:.1f}% ({100 * m[h]['top1_in_true_set']:.1f}%)" for h in heads)
              + " |")


if __name__ == "__main__":
    main()
