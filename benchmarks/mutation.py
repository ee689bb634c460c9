"""Mutation testing with mutmut, one module at a time against that module's own tests.

Each module is mutated in a throw-away copy of the repository (mutmut 3 writes its
``mutants/`` folder there), only the test files that belong to it are run, and the
counts of killed / survived / timed-out mutants land in one Markdown table, with the
surviving mutants listed under it (``mutmut show <name>`` in that copy shows one).

    python benchmarks/mutation.py                       # every module below
    python benchmarks/mutation.py --module analysis/tables.py --out /tmp/m.md

Not part of CI: a module takes from a minute (pure statistics) to far longer (modules
whose tests start FiftyOne's database).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
MUTMUT = os.path.join(os.path.dirname(sys.executable), "mutmut")

STATS = ["tests/test_analysis.py"]
#: module (under fiftyone_dnniqa/) -> the test files that must kill its mutants
MODULES = {
    "analysis/tables.py": STATS,
    "analysis/results.py": STATS,
    "analysis/correlation.py": STATS,
    "analysis/grouping.py": STATS,
    "analysis/resampling.py": STATS,
    "analysis/panel_stats.py": ["tests/test_panel.py", "tests/test_regressions.py"],
    "analysis/report.py": ["tests/test_report_performance.py", "tests/test_security.py",
                           "tests/test_regressions.py"],
    "scoring/scorers.py": ["tests/test_engine.py", "tests/test_regressions.py"],
    "scoring/writer.py": ["tests/test_engine.py", "tests/test_regressions.py"],
    "scoring/execute.py": ["tests/test_engine.py", "tests/test_regressions.py"],
    "metrics/aligned.py": ["tests/test_aligned.py", "tests/test_aligned_variants.py",
                           "tests/test_regressions.py"],
}


def _config(module: str, tests) -> str:
    return "\n".join([
        "", "[tool.mutmut]",
        f'source_paths = ["fiftyone_dnniqa/{module}"]',
        "pytest_add_cli_args_test_selection = [" + ", ".join(f'"{t}"' for t in tests) + "]",
        'also_copy = ["tests/", "tools/", "fiftyone_dnniqa/"]', "",
    ])


def mutate(module: str, tests, timeout: int) -> dict:
    """Runs mutmut on ``module`` in a copy of the repository; returns its counts."""
    work = tempfile.mkdtemp(prefix="dnniqa-mutmut-")
    try:
        for name in ("fiftyone_dnniqa", "tests", "tools"):
            shutil.copytree(os.path.join(ROOT, name), os.path.join(work, name),
                            ignore=shutil.ignore_patterns("__pycache__"))
        with open(os.path.join(ROOT, "pyproject.toml")) as f:
            config = f.read()
        with open(os.path.join(work, "pyproject.toml"), "w") as f:
            f.write(config + _config(module, tests))
        env = dict(os.environ, HF_HUB_OFFLINE="1", TORCH_HOME=os.path.join(ROOT, ".torch-home"))
        t = time.perf_counter()
        run = subprocess.run([MUTMUT, "run"], cwd=work, env=env, capture_output=True, text=True,
                             timeout=timeout)
        elapsed = time.perf_counter() - t
        subprocess.run([MUTMUT, "export-cicd-stats"], cwd=work, env=env, capture_output=True, timeout=300)
        stats_path = os.path.join(work, "mutants", "mutmut-cicd-stats.json")
        if run.returncode != 0 or not os.path.isfile(stats_path):
            return {"module": module, "error": (run.stdout + run.stderr).strip().splitlines()[-1:]}
        with open(stats_path) as f:
            stats = json.load(f)
        results = subprocess.run([MUTMUT, "results"], cwd=work, env=env, capture_output=True,
                                 text=True, timeout=300).stdout
        survivors = [ln.strip().split(":")[0] for ln in results.splitlines() if ln.strip().endswith("survived")]
        return {"module": module, "tests": tests, "seconds": round(elapsed), "survivors": survivors, **stats}
    finally:
        shutil.rmtree(work, ignore_errors=True)


def table(rows) -> str:
    out = ["| module | tests | mutants | killed | survived | no tests | timed out | killed % | s |",
           "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        if "error" in r:
            out.append(f"| {r['module']} | | error: {' '.join(r['error'])} | | | | | | |")
            continue
        total = r["total"] - r.get("skipped", 0)
        pct = 100 * r["killed"] / total if total else float("nan")
        out.append(f"| {r['module']} | {', '.join(os.path.basename(t) for t in r['tests'])} | {total} | "
                   f"{r['killed']} | {r['survived']} | {r['no_tests']} | {r['timeout']} | {pct:.0f} | "
                   f"{r['seconds']} |")
    return "\n".join(out)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--module", action="append", choices=sorted(MODULES),
                    help="module to mutate (repeatable; default: all)")
    ap.add_argument("--timeout", type=int, default=3 * 3600, help="seconds per module")
    ap.add_argument("--out", default=os.path.join(HERE, "results", "mutation.md"))
    args = ap.parse_args(argv)
    rows = []
    for module in args.module or list(MODULES):
        rows.append(mutate(module, MODULES[module], args.timeout))
        print(table(rows[-1:]).splitlines()[-1], flush=True)
    text = ["# Mutation testing (mutmut, each module against its own tests)", "",
            f"`python benchmarks/mutation.py` on {os.cpu_count()} CPU cores, {time.strftime('%Y-%m-%d')}.", "",
            table(rows), ""]
    for r in rows:
        if r.get("survivors"):
            text += [f"## Surviving mutants of {r['module']}", ""] + [f"- `{s}`" for s in r["survivors"]] + [""]
    with open(args.out, "w") as f:
        f.write("\n".join(text))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
