"""Mutation testing with mutmut, one module at a time against that module's own tests.

Each module is mutated in a throw-away copy of the repository (mutmut 3 writes its
``mutants/`` folder there) and only the test files that belong to it are run. The
counts of killed / survived / timed-out mutants per module are kept in
``results/mutation.json`` (a run of some modules updates their rows only) and rendered
as one Markdown table, with every surviving mutant listed under it: the line it changed
and, when ``mutation_equivalents.toml`` lists it as equivalent, the one-line reason.
The target counts killed (and timed-out) mutants among the non-equivalent ones.

    python benchmarks/mutation.py                       # every module below
    python benchmarks/mutation.py --module analysis/tables.py --keep

Not part of CI: a module takes from a minute (pure statistics) to far longer (modules
whose tests start FiftyOne's database).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import tomllib

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
MUTMUT = os.path.join(os.path.dirname(sys.executable), "mutmut")
RESULTS = os.path.join(HERE, "results", "mutation.json")
EQUIVALENTS = os.path.join(HERE, "mutation_equivalents.toml")
sys.path.insert(0, HERE)
from sample_data import IMAGENET_SAMPLE  # noqa: E402

STATS = ["tests/test_analysis.py"]
#: The scale test (a million samples, 12 s) is left out of mutation runs: every mutant
#: of a correlation would pay for it, and the smaller scipy oracles cover the same code.
FAST_STATS = ["--deselect", "tests/test_analysis.py::test_a_million_samples_match_scipy"]
#: module (under fiftyone_dnniqa/) -> (test files that must kill its mutants, extra pytest args)
MODULES = {
    "analysis/tables.py": (STATS, FAST_STATS),
    "analysis/results.py": (STATS + ["tests/test_results.py"], FAST_STATS),
    "analysis/correlation.py": (STATS + ["tests/test_bootstrap_oracle.py"], FAST_STATS),
    "analysis/grouping.py": (STATS + ["tests/test_grouping.py"], FAST_STATS),
    "analysis/resampling.py": (STATS + ["tests/test_bootstrap_oracle.py", "tests/test_grouping.py"],
                               FAST_STATS),
    "analysis/panel_stats.py": (["tests/test_panel_stats.py"], []),
    "analysis/report.py": (["tests/test_report_render.py"], []),
    "analysis/accuracy.py": (["tests/test_accuracy.py"], []),
    "analysis/breakdowns.py": (["tests/test_breakdowns.py"], []),
    "scoring/scorers.py": (["tests/test_scoring_units.py"], []),
    "scoring/writer.py": (["tests/test_scoring_units.py"], []),
    # the object engine's path and failed runs go through execute_plan too
    "scoring/execute.py": (["tests/test_execute.py", "tests/test_objects.py", "tests/test_failed_runs.py"], []),
    "metrics/aligned.py": (["tests/test_aligned_units.py"], []),
    # the loader: its dataset and DataLoader reach the tests through the engine's runs
    "scoring/loading.py": (["tests/test_loading.py", "tests/test_device_decode.py", "tests/test_execute.py",
                            "tests/test_objects.py"], []),
    "scoring/lanes.py": (["tests/test_lanes.py"], []),
}


#: Modules whose tests use FiftyOne's database: a mutant's test process must open its own
#: connection (a client forked with the parent's connection hangs), so mutmut forks them
#: from a fork server that has collected the tests but never connected.
USES_DATABASE = ("analysis/panel_stats.py", "analysis/report.py", "analysis/accuracy.py",
                 "analysis/breakdowns.py", "scoring/")


def _config(module: str, tests, extra) -> str:
    isolation = "forkserver" if module.startswith(USES_DATABASE) else "fork"
    return "\n".join([
        "", "[tool.mutmut]", f'process_isolation = "{isolation}"',
        f'source_paths = ["fiftyone_dnniqa/{module}"]',
        "pytest_add_cli_args_test_selection = [" + ", ".join(f'"{t}"' for t in tests) + "]",
        "pytest_add_cli_args = [" + ", ".join(f'"{a}"' for a in extra) + "]",
        'also_copy = ["tests/", "tools/", "benchmarks/", "fiftyone_dnniqa/"]', "",
    ])


def _mutmut(args, work, env, timeout=600) -> str:
    return subprocess.run([MUTMUT, *args], cwd=work, env=env, capture_output=True, text=True,
                          timeout=timeout).stdout


#: ``mutmut show`` for many mutants in one process (one start-up instead of one per mutant)
_SHOW_ALL = """
import json, sys
from mutmut.__main__ import find_mutant, get_diff_for_mutant
names = json.load(sys.stdin)
print(json.dumps([get_diff_for_mutant(n, path=find_mutant(n).path) for n in names]))
"""


def _diffs(names, work, env) -> list[str]:
    if not names:
        return []
    out = subprocess.run([sys.executable, "-c", _SHOW_ALL], cwd=work, env=env, input=json.dumps(names),
                         capture_output=True, text=True, timeout=600)
    return json.loads(out.stdout.strip().splitlines()[-1])


def changed_lines(diff: str) -> tuple[list[str], list[str]]:
    """The removed and added lines of a unified diff, stripped."""
    lines = [ln for ln in diff.splitlines() if not ln.startswith(("---", "+++"))]
    return ([ln[1:].strip() for ln in lines if ln.startswith("-")],
            [ln[1:].strip() for ln in lines if ln.startswith("+")])


def function_of(name: str) -> str:
    """``pkg.mod.x_func__mutmut_3`` -> ``func``; ``pkg.mod.xǁClsǁmeth__mutmut_3`` -> ``Cls.meth``."""
    last = re.sub(r"__mutmut_\d+$", "", name.rsplit(".", 1)[-1])
    return last[2:] if last.startswith("x_") else last.lstrip("x").strip("ǁ").replace("ǁ", ".")


def load_equivalents(path: str = EQUIVALENTS) -> list[dict]:
    if not os.path.isfile(path):
        return []
    with open(path, "rb") as f:
        return tomllib.load(f).get("equivalent", [])


def _float_literal_case(line: str) -> str:
    return re.sub(r'float\("([-+]?\w+)"\)', lambda m: m.group(0).lower(), line)


def equivalence(module: str, survivor: dict, equivalents) -> str | None:
    """The reason a survivor is equivalent, matched on module, function and changed lines."""
    before, after = survivor["before"], survivor["after"]
    if before != after and _float_literal_case(before) == _float_literal_case(after):
        return 'float() reads "nan"/"inf" in any case'
    for e in equivalents:
        if (e["module"] == module and e["function"] == survivor["function"]
                and e["before"] == survivor["before"] and e["after"] == survivor["after"]):
            return e["reason"]
    return None


def _prepare(work: str, module: str, tests, extra) -> dict:
    """Copies the repository into ``work`` with mutmut's configuration for ``module``;
    returns the environment mutants run in."""
    for name in ("fiftyone_dnniqa", "tests", "tools", "benchmarks"):
        shutil.copytree(os.path.join(ROOT, name), os.path.join(work, name),
                        ignore=shutil.ignore_patterns("__pycache__"))
    with open(os.path.join(ROOT, "pyproject.toml")) as f:
        config = f.read()
    with open(os.path.join(work, "pyproject.toml"), "w") as f:
        f.write(config + _config(module, tests, extra))
    # one OpenMP thread: a mutant's process is forked, and a child forked after its parent
    # used torch's thread pool hangs at its first parallel operation (a false "timed out");
    # mutants already run two at a time. The copy is elsewhere: the real photos are where
    # the repository finds them
    return dict(os.environ, HF_HUB_OFFLINE="1", TORCH_HOME=os.path.join(ROOT, ".torch-home"),
                OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", DNNIQA_IMAGENET_SAMPLE=IMAGENET_SAMPLE)


def mutate(module: str, tests, extra, timeout: int, keep: bool) -> dict:
    """Runs mutmut on ``module`` in a copy of the repository; returns its counts and survivors."""
    work = tempfile.mkdtemp(prefix="dnniqa-mutmut-")
    try:
        env = _prepare(work, module, tests, extra)
        t = time.perf_counter()
        run = subprocess.run([MUTMUT, "run"], cwd=work, env=env, capture_output=True, text=True,
                             timeout=timeout)
        elapsed = time.perf_counter() - t
        _mutmut(["export-cicd-stats"], work, env)
        stats_path = os.path.join(work, "mutants", "mutmut-cicd-stats.json")
        if run.returncode != 0 or not os.path.isfile(stats_path):
            return {"module": module, "error": (run.stdout + run.stderr).strip().splitlines()[-1:]}
        with open(stats_path) as f:
            stats = json.load(f)
        names = [ln.strip().split(":")[0] for ln in _mutmut(["results"], work, env).splitlines()
                 if ln.strip().endswith("survived")]
        survivors = []
        for name, diff in zip(names, _diffs(names, work, env)):
            before, after = changed_lines(diff)
            survivors.append({"name": name, "function": function_of(name),
                              "before": " / ".join(before), "after": " / ".join(after)})
        return {"module": module, "tests": tests, "extra": extra, "seconds": round(elapsed),
                "date": time.strftime("%Y-%m-%d"), "survivors": survivors, **stats}
    finally:
        if keep:
            print(f"kept {work}", flush=True)
        else:
            shutil.rmtree(work, ignore_errors=True)


def collect(work: str, module: str, tests, extra) -> dict:
    """A row from a kept (possibly still running) mutmut copy: what was checked so far.

    For a module whose run cannot finish in the time at hand; the table says how many of
    its mutants were checked."""
    from mutmut.stats import status_by_exit_code  # a development tool, only needed here

    with open(os.path.join(work, "mutants", "fiftyone_dnniqa", module + ".meta")) as f:
        codes = json.load(f)["exit_code_by_key"]
    status = {name: status_by_exit_code[code] for name, code in codes.items()}
    checked = {n: st for n, st in status.items() if st != "not checked"}
    names = sorted((n for n, st in checked.items() if st == "survived"), key=_natural)
    env = dict(os.environ, HF_HUB_OFFLINE="1")
    survivors = []
    for name, diff in zip(names, _diffs(names, work, env)):
        before, after = changed_lines(diff)
        survivors.append({"name": name, "function": function_of(name),
                          "before": " / ".join(before), "after": " / ".join(after)})
    count = lambda *kinds: sum(st in kinds for st in checked.values())  # noqa: E731
    return {"module": module, "tests": tests, "extra": extra, "seconds": None,
            "date": time.strftime("%Y-%m-%d"), "survivors": survivors, "total": len(checked),
            "killed": count("killed"), "survived": count("survived"), "timeout": count("timeout"),
            "no_tests": count("no tests"), "skipped": count("skipped"),
            "partial": f"{len(checked)} of {len(status)} mutants checked"}


def recheck(module: str, tests, extra, row: dict, timeout: int) -> dict:
    """``row`` after a rerun of just its survivors (by name, on unchanged code: a test
    added for them counts without rerunning the whole module): those now killed or timed
    out move to those counts, the rest stay listed, and the row's note says so."""
    from mutmut.stats import status_by_exit_code  # a development tool, only needed here

    names = [sv["name"] for sv in row.get("survivors") or [] if sv.get("name")]
    if not names:
        return row
    work = tempfile.mkdtemp(prefix="dnniqa-mutmut-")
    try:
        env = _prepare(work, module, tests, extra)
        subprocess.run([MUTMUT, "run", *names], cwd=work, env=env, capture_output=True, text=True,
                       timeout=timeout)
        with open(os.path.join(work, "mutants", "fiftyone_dnniqa", module + ".meta")) as f:
            codes = json.load(f)["exit_code_by_key"]
    finally:
        shutil.rmtree(work, ignore_errors=True)
    status = {n: status_by_exit_code[codes[n]] for n in names if codes.get(n) is not None}
    out = dict(row, tests=tests, extra=extra, survivors=[sv for sv in row["survivors"]
                               if status.get(sv.get("name")) not in ("killed", "timeout")])
    for kind in ("killed", "timeout"):
        moved = sum(st == kind for st in status.values())
        out[kind] += moved
        out["survived"] -= moved
    gone = len(row["survivors"]) - len(out["survivors"])
    note = (f"its {len(names)} survivors rerun on {time.strftime('%Y-%m-%d')} after tests were added "
            f"for them: {gone} killed")
    out["note"] = "; ".join(filter(None, [row.get("note"), note]))
    return out


def _natural(name: str):
    head, _, num = name.rpartition("_")
    return (head, int(num) if num.isdigit() else 0)


def score(row: dict, equivalents) -> dict:
    """Totals of one row, equivalents set apart."""
    total = row["total"] - row.get("skipped", 0)
    equivalent = sum(equivalence(row["module"], s, equivalents) is not None for s in row["survivors"])
    caught = row["killed"] + row["timeout"]
    real = total - equivalent
    return {"total": total, "equivalent": equivalent, "caught": caught,
            "pct": 100 * caught / real if real else float("nan")}


def render(rows: dict, equivalents) -> str:
    out = ["# Mutation testing (mutmut, each module against its own tests)", "",
           "`python benchmarks/mutation.py`; each row is the latest run of its module, on "
           f"{os.cpu_count()} CPU cores. *Killed %* counts killed and timed-out mutants among "
           "the non-equivalent ones (target: at least 90). A row marked *N of M mutants "
           "checked* is a run cut short (`--collect`): its counts are over the N checked. "
           "Tests added after a module's run count only when it is run again.", "",
           "| module | tests | mutants | killed | timed out | survived | equivalent | no tests | "
           "killed % | s | date |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    for module in sorted(rows):
        r = rows[module]
        if "error" in r:
            out.append(f"| {module} | | error: {' '.join(r['error'])} | | | | | | | | |")
            continue
        s = score(r, equivalents)
        total = f"{s['total']} ({r['partial']})" if r.get("partial") else s["total"]
        seconds = r["seconds"] if r["seconds"] is not None else "cut short"
        out.append(f"| {module} | {', '.join(os.path.basename(t) for t in r['tests'])} | {total} | "
                   f"{r['killed']} | {r['timeout']} | {r['survived']} | {s['equivalent']} | "
                   f"{r['no_tests']} | {s['pct']:.0f} | {seconds} | {r['date']} |")
    out.append("")
    notes = [f"- {module}: {rows[module]['note']}" for module in sorted(rows) if rows[module].get("note")]
    if notes:
        out += ["Rows merged from a targeted rerun (`mutmut run <function's mutants>` in the same kind of "
                "copy, after tests were added for them):", "", *notes, ""]
    for module in sorted(rows):
        survivors = rows[module].get("survivors") or []
        if not survivors:
            continue
        out += [f"## Surviving mutants of {module}", ""]
        for sv in survivors:
            reason = equivalence(module, sv, equivalents)
            change = f"`{sv['before']}` -> `{sv['after']}`".replace("|", "\\|")
            tag = f"equivalent: {reason}" if reason else "**not killed**"
            out.append(f"- `{sv['function']}`: {change}; {tag}")
        out.append("")
    return "\n".join(out)


def _load_rows() -> dict:
    if not os.path.isfile(RESULTS):
        return {}
    with open(RESULTS) as f:
        return json.load(f)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--module", action="append", choices=sorted(MODULES),
                    help="module to mutate (repeatable; default: all)")
    ap.add_argument("--timeout", type=int, default=3 * 3600, help="seconds per module")
    ap.add_argument("--keep", action="store_true", help="keep the mutmut copy (for mutmut show)")
    ap.add_argument("--render", action="store_true", help="only re-render the table from the JSON")
    ap.add_argument("--collect", metavar="DIR",
                    help="record --module's row from the kept mutmut copy DIR (a run cut short)")
    ap.add_argument("--recheck", action="store_true",
                    help="rerun only --module's listed survivors (unchanged code, new tests) and update its row")
    ap.add_argument("--out", default=os.path.join(HERE, "results", "mutation.md"))
    args = ap.parse_args(argv)
    equivalents = load_equivalents()
    for module in [] if args.render else (args.module or list(MODULES)):
        tests, extra = MODULES[module]
        if args.recheck:
            row = recheck(module, tests, extra, _load_rows()[module], args.timeout)
        elif args.collect:
            row = collect(args.collect, module, tests, extra)
        else:
            row = mutate(module, tests, extra, args.timeout, args.keep)
        rows = _load_rows()  # read again: another run may have added its modules meanwhile
        rows[module] = row
        with open(RESULTS, "w") as f:
            json.dump(rows, f, indent=1, ensure_ascii=False)
        print(render({module: row}, equivalents).splitlines()[6], flush=True)
    with open(args.out, "w") as f:
        f.write(render(_load_rows(), equivalents))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
