"""The plugin as FiftyOne sees it: manifest, registration, operators executed
through FiftyOne's own machinery (immediate and delegated)."""

import asyncio
import http.server
import json
import os
import subprocess
import sys
import threading
from types import SimpleNamespace
import zipfile

import pytest
import yaml

import fiftyone as fo
import fiftyone.operators as foo
import fiftyone.plugins as fop
from fiftyone.plugins.context import build_plugin_contexts

import fiftyone_dnniqa as dq
from fiftyone_dnniqa.app.plugin import ENTRY_POINT, PLUGIN_NAME, install_plugin, manifest
from fiftyone_dnniqa.metrics import registry as R
from fiftyone_dnniqa.metrics.base import QualityMetric
from fiftyone_dnniqa.scoring import execute as execute_module

from conftest import ROOT

URI = f"{PLUGIN_NAME}/compute_quality"


def test_repository_manifest_lists_every_operator_and_panel():
    with open(os.path.join(ROOT, "fiftyone.yml")) as f:
        assert yaml.safe_load(f) == manifest()
    with open(os.path.join(ROOT, "__init__.py")) as f:
        assert f.read() == ENTRY_POINT


@pytest.fixture(scope="module")
def plugin():
    path = install_plugin(overwrite=True)
    yield path


def _our_context():
    for ctx in build_plugin_contexts(enabled=True):
        if ctx.name == PLUGIN_NAME:
            return ctx
    raise AssertionError(f"{PLUGIN_NAME} not found among {[p.name for p in fop.list_plugins()]}")


def test_operators_are_really_registered(plugin):
    ctx = _our_context()
    assert ctx.errors == [], "\n".join(ctx.errors)  # FiftyOne only logs these
    registered = {op.name for op in ctx.instances}
    assert registered == set(manifest()["operators"]) | set(manifest()["panels"])
    uris = {op.uri for op in foo.list_operators()}
    assert URI in uris


def test_downloadable_as_a_plugin_archive(tmp_path, monkeypatch):
    """``fiftyone plugins download <url>`` on an archive of the repository."""
    archive = tmp_path / "serve" / "fiftyone-dnniqa.zip"
    archive.parent.mkdir()
    with zipfile.ZipFile(archive, "w") as z:
        for name in ("fiftyone.yml", "__init__.py"):
            z.write(os.path.join(ROOT, name), f"fiftyone-dnniqa/{name}")
        pkg = os.path.join(ROOT, "fiftyone_dnniqa")
        for dirpath, _, files in os.walk(pkg):
            for f in files:
                if f.endswith(".py"):
                    full = os.path.join(dirpath, f)
                    z.write(full, "fiftyone-dnniqa/" + os.path.relpath(full, ROOT))
    handler = lambda *a, **k: http.server.SimpleHTTPRequestHandler(*a, directory=str(archive.parent), **k)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    plugins_dir = tmp_path / "plugins"
    monkeypatch.setattr(fo.config, "plugins_dir", str(plugins_dir))
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/fiftyone-dnniqa.zip"
        got = fop.download_plugin(url, overwrite=True)
    finally:
        server.shutdown()
    assert PLUGIN_NAME in got
    ctx = _our_context()
    assert ctx.errors == [] and ctx.plugin_definition.directory.startswith(str(plugins_dir))
    assert {op.name for op in ctx.instances} >= {"compute_quality"}

    # Without the pip-installed package, the plugin imports its own copy
    script = f"""
import sys
sys.meta_path = [f for f in sys.meta_path if "editable" not in repr(f).lower()]
sys.path = [p for p in sys.path if "editable" not in p.lower()]
try:
    import fiftyone_dnniqa
    sys.exit("the package is still importable: " + fiftyone_dnniqa.__file__)
except ImportError:
    pass
from fiftyone.plugins.context import build_plugin_contexts
ctx = [c for c in build_plugin_contexts() if c.name == {PLUGIN_NAME!r}][0]
assert ctx.errors == [], ctx.errors
assert "compute_quality" in {{op.name for op in ctx.instances}}
import fiftyone_dnniqa
print(fiftyone_dnniqa.__file__)
"""
    env = dict(os.environ, FIFTYONE_PLUGINS_DIR=str(plugins_dir))
    out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True,
                         cwd=str(tmp_path))
    assert out.returncode == 0, out.stderr[-2000:] + out.stdout[-2000:]
    assert out.stdout.strip().splitlines()[-1].startswith(str(plugins_dir))


def test_compute_quality_operator_immediate(plugin, imagenet_files, make_dataset):
    ds = make_dataset(imagenet_files[:5])
    result = foo.execute_operator(URI, ctx={
        "dataset": ds, "view": ds.limit(4),
        "params": {"metric": "entropy", "field": "q_entropy", "device": "cpu"},
    })
    assert result.error is None, result.error
    assert result.result["scored"] == 4
    assert ds.count("q_entropy") == 4
    assert dq.list_quality_runs(ds) == ["q_entropy"]


def test_compute_quality_operator_full_reference(plugin, imagenet_files, make_dataset):
    ds = make_dataset(imagenet_files[:3], ref=imagenet_files[:3])
    result = foo.execute_operator(URI, ctx={
        "dataset": ds, "params": {"metric": "psnr", "reference_field": "ref"},
    })
    assert result.error is None, result.error
    assert ds.count("iqa_psnr") == 3


def test_compute_quality_operator_delegated(plugin, imagenet_files, make_dataset):
    from fiftyone.operators.delegated import DelegatedOperationService
    from fiftyone.operators.executor import ExecutionRunState

    ds = make_dataset(imagenet_files[:6])
    ds.persistent = True  # the queue refers to datasets by name
    result = foo.execute_operator(URI, ctx={
        "dataset": ds, "params": {"metric": "piqe"}, "request_delegation": True,
    })
    assert result.delegated
    assert not ds.has_sample_field("iqa_piqe")  # queued, not run
    svc = DelegatedOperationService()
    queued = svc.get_queued_operations(operator=URI, dataset_name=ds.name)
    assert len(queued) == 1
    svc.execute_queued_operations(operator=URI, dataset_name=ds.name)
    op = svc.get(queued[0].id)
    assert op.run_state == ExecutionRunState.COMPLETED, op.result
    ds.reload()
    assert ds.count("iqa_piqe") == 6
    assert op.status.progress == 1.0  # ctx.set_progress reached the queue record


def test_run_operators_show_and_delete(plugin, tmp_path, make_dataset, imagenet_files):
    ds = make_dataset(imagenet_files[:2] + [str(tmp_path / "missing.jpg")])
    dq.compute_quality(ds, "entropy", num_workers=0)
    shown = foo.execute_operator(f"{PLUGIN_NAME}/get_quality_run", ctx={
        "dataset": ds, "params": {"run_key": "iqa_entropy"}})
    assert shown.error is None, shown.error
    assert shown.result["scored"] == 2 and shown.result["failed"] == 1
    assert shown.result["failures"][0]["reason"] == "missing file"
    deleted = foo.execute_operator(f"{PLUGIN_NAME}/delete_quality_run", ctx={
        "dataset": ds, "params": {"run_key": "iqa_entropy"}})
    assert deleted.error is None, deleted.error
    assert not ds.has_sample_field("iqa_entropy") and dq.list_quality_runs(ds) == []


def test_operator_is_callable_from_python(plugin, imagenet_files, make_dataset):
    ds = make_dataset(imagenet_files[:3])
    op = foo.get_operator(URI)
    result = op(ds.limit(2), metric="entropy", field="q")
    assert result.error is None, result.error
    assert ds.count("q") == 2
    again = op(ds, metric="entropy", field="q")  # resumes: only the third sample
    assert again.result["scored"] == 1 and ds.count("q") == 3
    nothing = op(ds, metric="entropy", field="q")
    assert nothing.result["scored"] == 0 and nothing.result["status"] == "completed"


def test_forms_resolve(plugin, imagenet_files, make_dataset):
    from fiftyone.operators.executor import ExecutionContext

    ds = make_dataset(imagenet_files[:2], ref=imagenet_files[:2])
    ds.persistent = True
    op = foo.get_operator(URI)

    def form(params):
        ctx = ExecutionContext(request_params={"dataset_name": ds.name, "params": params})
        return op.resolve_input(ctx).type.properties

    nr = form({"metric": "piqe"})
    assert "reference_field" not in nr and nr["field"].default == "iqa_piqe"
    fr = form({"metric": "ssim"})
    assert fr["reference_field"].type.values == ["ref"]
    assert "metric_error" in form({"metric": "nope"})
    assert foo.get_operator(f"{PLUGIN_NAME}/get_quality_run").resolve_output(None).type.properties
    compute = foo.get_operator(URI)
    done = compute.resolve_output(SimpleNamespace(results={"field": "q", "scored": 2, "images_per_s": 1.0}))
    assert set(done.type.properties) == {"field", "scored", "images_per_s"}
    # a streamed run shows its own output, a failed one its error: no "No value provided" rows
    assert compute.resolve_output(SimpleNamespace(results=None)) is None


class _Broken(QualityMetric):
    """A metric whose weights cannot be read: building it fails after the form was valid."""

    name = "broken"

    def __init__(self, path: str = "/weights/broken.pth"):
        super().__init__()
        raise RuntimeError(f"cannot read the weights file {path}: truncated")


def _streamed(ds, params):
    """The lines the App receives for an immediate run (FiftyOne's own server generator)."""
    from fiftyone.operators import executor as foe
    from fiftyone.operators.server import create_response_generator

    result = asyncio.run(foe.execute_or_delegate_operator(
        URI, {"dataset_name": ds.name, "params": dict(params, progress_in_app=True)}, exhaust=False))
    assert result.error is None and result.is_generator, result.error
    return [json.loads(line) for line in create_response_generator(result.result)]


def test_an_error_while_building_the_metric_ends_the_app_run_with_its_message(
        plugin, imagenet_files, make_dataset, monkeypatch):
    """Issue 28 item 1: the error used to die inside the streamed response; the App stayed at
    "Starting: building the metric" for minutes. The App's client reads a line's `error`."""
    monkeypatch.setitem(R._REGISTRY, "broken", _Broken)
    ds = make_dataset(imagenet_files[:2])
    ds.persistent = True
    lines = _streamed(ds, {"metric": "broken", "field": "q"})
    assert lines[0]["body"]["params"]["label"].startswith("Starting")  # the App showed the start
    assert lines[-1]["error"] == "cannot read the weights file /weights/broken.pth: truncated"
    shown = [line["body"]["params"] for line in lines if (line.get("body") or {}).get("operator_uri") == "show_output"]
    assert len(shown) == 1 and "Images scored" not in json.dumps(shown)  # a failure dialog, not "completed"
    failure = shown[0]["outputs"]["type"]["properties"]["failure"]["view"]
    assert (failure["label"], failure["description"]) == (
        "Quality scoring failed", "cannot read the weights file /weights/broken.pth: truncated")
    assert dq.list_quality_runs(ds) == [] and not ds.has_sample_field("q")
    # a run that fails once its record exists is recorded failed, and the App told so too
    monkeypatch.setattr(execute_module, "batch_loader", _raise_disk_error)
    lines = _streamed(ds, {"metric": "entropy", "field": "q2"})
    assert lines[-1]["error"] == "the disk holding the images went away"
    assert dq.load_quality_run(ds, "q2").status == "failed"


def _raise_disk_error(*args, **kwargs):
    raise OSError("the disk holding the images went away")


def test_a_bad_option_or_label_field_is_refused_before_the_run_starts(plugin, imagenet_files, make_dataset):
    ds = make_dataset(imagenet_files[:2], reference_filepath=imagenet_files[:2],
                      ground_truth=[fo.Classification(label="goldfish")] * 2)
    ds.persistent = True
    from fiftyone.operators.executor import ExecutionError

    for params, reason in (
            ({"metric": "aligned", "metric_options": '{"tta": "banana"}'}, "Path: metric_options. Reason: 'aligned' "
             "option 'tta' must be one of null, \"flip\", \"multiscale\", not \"banana\""),
            ({"metric": "aligned", "metric_options": '{"tempreature": 2}'}, "Path: metric_options. Reason: 'aligned' "
             "has no option 'tempreature' (did you mean 'temperature'?)"),
            ({"metric": "aligned_task", "label_field": "reference_filepath"}, "Path: label_field.")):
        with pytest.raises(ExecutionError) as e:  # FiftyOne's validation refuses it: nothing runs
            asyncio.run(_execute(ds, params))
        assert e.value.args[0].startswith("Validation error") and reason in e.value.args[0], e.value.args[0]
    assert dq.list_quality_runs(ds) == []


async def _execute(ds, params):
    from fiftyone.operators import executor as foe

    return await foe.execute_or_delegate_operator(URI, {"dataset_name": ds.name, "params": params})


def test_the_operator_scores_several_metrics_with_a_chosen_proxy(plugin, imagenet_files, make_dataset):
    ds = make_dataset(imagenet_files[:3])
    ds.persistent = True
    op = foo.get_operator(URI)
    result = op(ds, metric=["aligned", "entropy"], proxy="efficientnet_lite1", device="cpu",
                metric_options={"aligned": {"statistic": "margin"}})
    assert result.error is None, result.error
    cfg = dq.get_quality_run_info(ds, "iqa_aligned").config.metric_options
    assert cfg["statistic"] == "margin"
    assert cfg.get("proxy", cfg.get("backbone")) == "efficientnet_lite1"  # not the default Lite0
    direct = make_dataset(imagenet_files[:3])  # the oracle: the API with the same options
    dq.compute_quality(direct, ["aligned", "entropy"], device="cpu", num_workers=0,
                       metric_options={"aligned": {"statistic": "margin", "proxy": "efficientnet_lite1"}})
    for f in ("iqa_aligned", "iqa_entropy"):
        assert ds.values(f) == pytest.approx(direct.values(f), abs=1e-6)
