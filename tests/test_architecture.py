"""The architecture holds: layers and contracts (import-linter), no import cycle (grimp),
imports at the top, metrics from entry points, and the package's promises around runs."""

import ast
import json
import os
import shutil
import subprocess
import sys
import textwrap

import pytest


import fiftyone_dnniqa as dq
from fiftyone_dnniqa.metrics import registry
from fiftyone_dnniqa.scoring import store
from fiftyone_dnniqa.scoring.locks import FieldLock
from fiftyone_dnniqa.scoring.shards import ShardStore, shard_specs

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGE = os.path.join(ROOT, "fiftyone_dnniqa")
LINT = os.path.join(os.path.dirname(sys.executable), "lint-imports")

#: function-local imports allowed: heavy or optional dependencies, deferred on purpose
#: (torchvision and timm import torch._dynamo: about 2 s on every start of the CLI)
DEFERRED = {"pyiqa", "open_clip", "matplotlib", "playwright", "skimage", "sklearn",
            "torchvision", "torchvision.io", "timm", "timm.data",
            "importlinter", "pyiqa.default_model_configs", "pyiqa.utils.download_util",
            "matplotlib.pyplot", "open_clip.constants", "imagecorruptions"}


def _copy_repo(tmp_path):
    """The package, its contracts and tools, in a folder of their own."""
    for name in ("fiftyone_dnniqa", "tools"):
        shutil.copytree(os.path.join(ROOT, name), tmp_path / name,
                        ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(os.path.join(ROOT, "pyproject.toml"), tmp_path / "pyproject.toml")
    return tmp_path


def _lint(folder):
    env = dict(os.environ, PYTHONPATH=str(folder))
    return subprocess.run([LINT, "--no-cache"], cwd=folder, env=env, capture_output=True, text=True,
                          timeout=300)


CYCLES = """
import json, sys
import grimp
import numpy as np
from scipy.sparse import csr_matrix
from scipy.sparse.csgraph import connected_components

graph = grimp.build_graph("fiftyone_dnniqa", cache_dir=None)
modules = sorted(graph.modules)
index = {m: i for i, m in enumerate(modules)}
pairs = [(index[m], index[d]) for m in modules for d in graph.find_modules_directly_imported_by(m)]
rows, cols = zip(*pairs) if pairs else ((), ())
adj = csr_matrix((np.ones(len(rows)), (rows, cols)), shape=(len(modules), len(modules)))
n, labels = connected_components(adj, directed=True, connection="strong")
groups = [sorted(modules[i] for i in np.flatnonzero(labels == k)) for k in range(n)]
print(json.dumps([g for g in groups if len(g) > 1]))
"""


def _cycles(folder):
    """Strongly connected components of more than one module in the package's import graph
    (grimp's graph, scipy's components: an oracle independent of import-linter), built in a
    fresh process so that ``folder``'s copy of the package is the one analysed."""
    env = dict(os.environ, PYTHONPATH=str(folder))
    out = subprocess.run([sys.executable, "-c", CYCLES], cwd=folder, env=env, capture_output=True,
                         text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_contracts_hold():
    out = _lint(ROOT)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "3 kept, 0 broken" in out.stdout


@pytest.mark.parametrize("module, line, contract", [
    ("scoring/_planted.py", "from ..app import panels  # noqa\n", "Layers"),
    ("analysis/_planted_stats.py", "import fiftyone  # noqa\n", "The statistics need no FiftyOne"),
    ("metrics/_planted_ops.py", "import fiftyone.operators as foo  # noqa\n", "Only the App layer"),
])
def test_contracts_fail_on_a_planted_violation(tmp_path, module, line, contract):
    folder = _copy_repo(tmp_path)
    (folder / "fiftyone_dnniqa" / module).write_text(line)
    if "stats" in module:  # the contract names the statistics modules: plant into one of them
        path = folder / "fiftyone_dnniqa" / "analysis" / "tables.py"
        path.write_text(line + path.read_text())
    out = _lint(folder)
    assert out.returncode != 0
    broken = [ln for ln in out.stdout.splitlines() if "BROKEN" in ln]
    assert any(contract.split()[0] in ln for ln in broken) or contract in out.stdout, out.stdout


def test_no_import_cycle():
    assert _cycles(ROOT) == []


def test_a_planted_cycle_is_found(tmp_path):
    folder = _copy_repo(tmp_path)
    (folder / "fiftyone_dnniqa" / "core" / "_a.py").write_text("from . import _b  # noqa\n")
    (folder / "fiftyone_dnniqa" / "core" / "_b.py").write_text("from . import _a  # noqa\n")
    assert ["fiftyone_dnniqa.core._a", "fiftyone_dnniqa.core._b"] in _cycles(folder)


def _function_local_imports(path):
    tree = ast.parse(open(path).read())
    found = []
    for fn in ast.walk(tree):
        if isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
            for node in ast.walk(fn):
                if isinstance(node, ast.Import):
                    found += [(node.lineno, a.name) for a in node.names]
                elif isinstance(node, ast.ImportFrom):
                    found.append((node.lineno, ("." * node.level) + (node.module or "")))
    return found


def test_imports_are_at_the_top_unless_deferring_a_heavy_dependency():
    bad = []
    for folder, _, files in os.walk(PACKAGE):
        for f in files:
            if f.endswith(".py"):
                path = os.path.join(folder, f)
                bad += [f"{os.path.relpath(path, ROOT)}:{n}: {m}"
                        for n, m in _function_local_imports(path) if m not in DEFERRED]
    assert bad == []


def test_the_function_local_import_check_sees_a_planted_one(tmp_path):
    path = tmp_path / "m.py"
    path.write_text("def f():\n    from .engine import x\n    import numpy\n")
    assert _function_local_imports(path) == [(2, ".engine"), (3, "numpy")]


def test_modules_and_functions_stay_small():
    long_modules, long_functions = [], []
    for folder, _, files in os.walk(PACKAGE):
        for f in files:
            if not f.endswith(".py"):
                continue
            path = os.path.join(folder, f)
            src = open(path).read()
            if src.count("\n") > 520:
                long_modules.append(os.path.relpath(path, ROOT))
            for node in ast.walk(ast.parse(src)):
                if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    body = [n for n in node.body if not (isinstance(n, ast.Expr) and isinstance(
                        getattr(n, "value", None), ast.Constant))]  # the docstring is not code
                    length = (node.end_lineno - body[0].lineno + 1) if body else 0
                    if length > 85:
                        long_functions.append(f"{os.path.relpath(path, ROOT)}:{node.name} ({length})")
    assert long_modules == [] and long_functions == []


DIST = """\
import torch
from fiftyone_dnniqa.metrics.base import QualityMetric


class MeanBrightness(QualityMetric):
    name = "mean_brightness"

    def score(self, images, references=None):
        return images.mean(dim=(1, 2, 3)).double().cpu()
"""


def test_third_party_metrics_register_through_entry_points(tmp_path):
    (tmp_path / "brightness_metric.py").write_text(DIST)
    info = tmp_path / "brightness_metric-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: brightness-metric\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(
        "[fiftyone_dnniqa.metrics]\nmean_brightness = brightness_metric:MeanBrightness\n")
    script = textwrap.dedent("""
        import torch, fiftyone_dnniqa as dq
        assert "mean_brightness" in dq.list_metrics(source="dnniqa")
        m = dq.create_metric("mean_brightness")
        x = torch.rand(2, 3, 8, 8)
        print(float((m.score(x) - x.mean(dim=(1, 2, 3)).double()).abs().max()))
    """)
    env = dict(os.environ, PYTHONPATH=str(tmp_path))
    out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert float(out.stdout.strip().splitlines()[-1]) == 0.0
    # and without the distribution, the name is unknown
    assert "mean_brightness" not in registry.list_metrics(source="dnniqa")


def test_old_run_records_still_load(imagenet_files, make_dataset):
    ds = make_dataset(imagenet_files[:4])
    dq.compute_quality(ds, "entropy", num_workers=0)
    doc = ds._doc.runs["iqa_entropy"]
    assert doc.config["cls"] == "fiftyone_dnniqa.scoring.runs.QualityRunConfig"
    doc.config["cls"] = "fiftyone_dnniqa.runs.QualityRunConfig"  # as the flat layout stored it
    doc.save()
    ds.reload()
    results = dq.load_quality_run(ds, "iqa_entropy")
    assert (results.status, results.num_scored) == ("completed", 4)
    assert dq.list_quality_runs(ds) == ["iqa_entropy"]
    dq.delete_quality_run(ds, "iqa_entropy")
    assert not ds.has_sample_field("iqa_entropy")


def test_renaming_a_run_renames_its_fields(imagenet_files, make_dataset):
    ds = make_dataset(imagenet_files[:4])
    dq.compute_quality(ds, "entropy", num_workers=0)
    before = ds.values("iqa_entropy")
    ds.rename_run("iqa_entropy", "sharpness")
    assert not ds.has_sample_field("iqa_entropy") and ds.values("sharpness") == before
    assert dq.list_quality_runs(ds) == ["sharpness"]
    assert dq.load_quality_run(ds, "sharpness").config.field == "sharpness"
    dq.delete_quality_run(ds, "sharpness")
    assert not ds.has_sample_field("sharpness")


def test_nothing_of_a_deleted_dataset_is_left_behind(imagenet_files, make_dataset):
    ds = make_dataset(imagenet_files[:4])
    ds_id = str(ds._doc.id)
    FieldLock(ds, "iqa_x").acquire()._stop.set()  # a lease whose holder never released it
    ShardStore().init(ds, "iqa_x", shard_specs(ds, 2), ["op0", "op1"])
    for name in (store.LOCKS, store.SHARDS):
        assert store.collection(name).count_documents({"dataset_id": ds_id}) > 0
    ds.delete()
    store.prune_orphans()
    for name in (store.LOCKS, store.SHARDS):
        assert store.collection(name).count_documents({"dataset_id": ds_id}) == 0
