"""The extra cost of ``cause`` over ``aligned`` on the CPU: the cost section of
``benchmarks/cause.py`` alone, without the test split's other measurements.

    python benchmarks/cause_cost.py --rounds 3

Each round times the metric calls, the parts of ``cause`` and ``compute_quality`` on the
test split's first ``--images`` photos (:func:`cause_report.cost_of_cause`) and prints the
section's table; run it from two checkouts one after the other, round by round, to compare
them on the same machine.
"""

from __future__ import annotations

import argparse
import os
import sys

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
sys.path.insert(0, HERE)

from cause_report import _cost_lines, cost_of_cause  # noqa: E402
from train_cause_head import split_files  # noqa: E402


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=48, help="test photos (the report times 48)")
    ap.add_argument("--rounds", type=int, default=1)
    args = ap.parse_args(argv)
    torch.set_num_threads(max(1, int(os.environ.get("OMP_NUM_THREADS", "2"))))
    for r in range(args.rounds):
        print(f"round {r + 1} of {args.rounds}\n")
        print("\n".join(_cost_lines(cost_of_cause(split_files("test")[:args.images], log=lambda *_: None))))


if __name__ == "__main__":
    main()
