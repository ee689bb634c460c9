"""Weights are never unpickled blindly, reports escape dataset strings,
outputs stay in their folder, no input reaches a shell or eval."""

import ast
import os

import pytest

import fiftyone as fo
import fiftyone_dnniqa as dq
from fiftyone_dnniqa.analysis.report import render_report, safe_join, write_report

from conftest import ROOT

PKG = os.path.join(ROOT, "fiftyone_dnniqa")
SCRIPT = "<script>alert('x')</script>"


def _package_calls():
    for dirpath, _, files in os.walk(PKG):
        for f in files:
            if f.endswith(".py"):
                path = os.path.join(dirpath, f)
                with open(path, encoding="utf-8") as fh:
                    tree = ast.parse(fh.read(), path)
                for node in ast.walk(tree):
                    yield path, node


def test_no_eval_shell_or_pickle_in_the_package():
    for path, node in _package_calls():
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            names = [a.name for a in node.names] + ([node.module] if isinstance(node, ast.ImportFrom) else [])
            for n in names:
                assert n not in ("pickle", "subprocess", "dill", "cloudpickle", "shelve"), (path, n)
        if isinstance(node, ast.Call):
            fn = node.func
            name = fn.attr if isinstance(fn, ast.Attribute) else getattr(fn, "id", "")
            owner = fn.value.id if isinstance(fn, ast.Attribute) and isinstance(fn.value, ast.Name) else ""
            # the builtins (a method such as torch's module.eval() is something else)
            if name in ("eval", "exec") and (isinstance(fn, ast.Name) or owner == "builtins"):
                pytest.fail(f"{path}:{node.lineno} calls {name}")
            if owner == "os" and name in ("system", "popen"):
                pytest.fail(f"{path}:{node.lineno} calls os.{name}")
            if any(k.arg == "shell" for k in node.keywords):
                pytest.fail(f"{path}:{node.lineno} passes shell=")
            if owner == "torch" and name == "load":
                kw = {k.arg: k.value for k in node.keywords}
                assert "weights_only" in kw and getattr(kw["weights_only"], "value", None) is True, \
                    f"{path}:{node.lineno}: torch.load without weights_only=True"


def test_report_escapes_every_dataset_string(tmp_path, make_dataset, imagenet_files):
    evil = tmp_path / f"{SCRIPT.replace('/', '_')}.jpg"
    evil.write_bytes(open(imagenet_files[0], "rb").read())
    ds = make_dataset([str(evil), str(tmp_path / f"missing{SCRIPT.replace('/', '_')}.jpg")],
                      ground_truth=[fo.Classification(label=SCRIPT), fo.Classification(label=SCRIPT)])
    ds.tags = [SCRIPT]
    dq.compute_quality(ds, "entropy", field="q_script_test", num_workers=0)
    page = render_report(ds)
    assert "<script" not in page.lower()
    assert "&lt;script&gt;" in page
    assert "q_script_test" in page and "missing file" in page
    path = write_report(ds, str(tmp_path / "r.html"))
    with pytest.raises(FileExistsError):
        write_report(ds, path)


def test_output_paths_cannot_escape_their_folder(tmp_path):
    assert safe_join(str(tmp_path), "report.html") == os.path.join(os.path.realpath(tmp_path), "report.html")
    for bad in ("../x.html", "/etc/passwd", "a/b.html", "..", "", "x\x00.html"):
        with pytest.raises(ValueError):
            safe_join(str(tmp_path), bad)
    (tmp_path / "link.html").symlink_to("/tmp/elsewhere.html")
    with pytest.raises(ValueError, match="outside"):
        safe_join(str(tmp_path), "link.html")


def test_report_operator_refuses_path_traversal(tmp_path, make_dataset, imagenet_files):
    import fiftyone.operators as foo
    from fiftyone_dnniqa.app.plugin import PLUGIN_NAME, install_plugin

    install_plugin(overwrite=True)
    ds = make_dataset(imagenet_files[:2])
    uri = f"{PLUGIN_NAME}/write_quality_report"
    with pytest.raises(Exception, match="plain file name"):
        foo.execute_operator(uri, ctx={"dataset": ds, "params": {
            "folder": str(tmp_path), "filename": "../escaped.html"}})
    assert not (tmp_path.parent / "escaped.html").exists()
    good = foo.execute_operator(uri, ctx={"dataset": ds, "params": {
        "folder": str(tmp_path / "reports"), "filename": "r.html"}})
    assert good.error is None, good.error
    assert os.path.isfile(good.result["path"])
