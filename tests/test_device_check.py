"""The GPU check's preparation, on the CPU (issue 18).

* ``benchmarks/device_check.py --cpu`` runs end to end where FiftyOne cannot be imported,
  as on the GPU machine, and writes its Markdown table and JSON file.
* The package imports its metrics, corruptions and loader without FiftyOne (its ``__init__``
  resolves the public names on first use) and keeps its public API.
* The same image gets the same ``aligned`` score whatever the batch size, the other images
  of its batch and their order, the loader workers and the decode path. Tolerances:
  ``BATCHING`` (1e-4 on a score in [0, 1]; fp32 on the CPU differs by about 5e-7 between
  batchings) for what only regroups the same pixels, ``DECODE`` (0.02, as
  test_device_decode.py) where libjpeg-turbo and PIL round the pixels differently.
"""

import importlib
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

import fiftyone_dnniqa as dq

from conftest import IMAGENET, ROOT

BATCHING = 1e-4
DECODE = 0.02
BLOCK_FIFTYONE = "import sys; sys.modules['fiftyone'] = None; "  # what the GPU machine lacks


def test_the_package_imports_its_metrics_and_loader_without_fiftyone():
    code = BLOCK_FIFTYONE + (
        "import fiftyone_dnniqa as dq, fiftyone_dnniqa.metrics as m, fiftyone_dnniqa.corruptions as c; "
        "import fiftyone_dnniqa.scoring.loading, fiftyone_dnniqa.core.images; "
        "assert 'aligned' in m.list_metrics(source='dnniqa') and 'motion_blur' in c.list_corruptions(); "
        "assert dq.create_metric is m.create_metric; print('ok')")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr[-2000:]


def test_the_public_api_is_unchanged_by_the_lazy_init():
    for name in dq.__all__:
        value = getattr(dq, name)
        module = importlib.import_module(dq._API[name], "fiftyone_dnniqa")
        assert value is getattr(module, name), name
    assert set(dq.__all__) <= set(dir(dq))
    assert dq.analysis.__name__ == "fiftyone_dnniqa.analysis"  # subpackages as attributes, as before
    with pytest.raises(AttributeError):
        dq.no_such_name
    from fiftyone_dnniqa import analysis, compute_quality  # noqa: F401
    from fiftyone_dnniqa.corruptions import build_sweep
    assert build_sweep is dq.build_sweep


@pytest.fixture(scope="module")
def smoke(tmp_path_factory, imagenet_files):
    """One ``--cpu`` run of the device check on the sample's photos, FiftyOne blocked."""
    tmp = tmp_path_factory.mktemp("device-check")
    out = tmp / "out"
    argv = ["device_check.py", "--cpu", str(out), "--work", str(tmp / "work"),
            "--photos", os.path.join(IMAGENET, "images")]
    code = BLOCK_FIFTYONE + (f"import runpy; sys.argv = {argv!r}; "
                             "runpy.run_path('benchmarks/device_check.py', run_name='__main__')")
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    run = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True,
                         timeout=600)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    with open(out / "device-check.json") as f:
        report = json.load(f)
    return report, (out / "device-check.md").read_text()


def _rows(report, section):
    return [r for r in report["rows"] if r["section"] == section]


def test_smoke_run_writes_every_section(smoke):
    report, md = smoke
    sections = {r["section"] for r in report["rows"]}
    assert sections == {"setup", "agreement", "corruptions", "decode", "invariance", "out of memory", "objects",
                        "targets"}
    assert not [r for r in report["rows"] if r["status"] in ("FAIL", "error")], report["rows"]
    assert "section crashed" not in md and "| section | check | value | target | status |" in md
    meta = report["meta"]
    assert meta["pipeline"].startswith("in-memory sink")
    assert meta["machine"]["device"] == "cpu" and set(meta["sections"]) >= {"agreement", "throughput"}


def test_smoke_run_skips_only_what_needs_cuda(smoke):
    report, _ = smoke
    agreement = _rows(report, "agreement")
    labels = [r["check"].split(":")[0] for r in agreement]
    for name in ("aligned", "aligned tta=flip", "aligned tta=multiscale", "aligned_fr", "tg_iqa", "piqe"):
        assert name in labels, labels
    assert any(label.startswith("aligned_task") for label in labels)
    for r in agreement + _rows(report, "corruptions") + _rows(report, "out of memory") + _rows(report, "targets"):
        assert r["status"].startswith("skipped: no CUDA"), r
    for r in agreement:  # the CPU side of every metric really ran
        n = report["meta"]["sizes"]["agree"]
        assert r["value"] == f"CPU side only: {n} of {n} scores finite", r


def test_smoke_run_times_images_against_their_objects(smoke):
    report, _ = smoke
    rows = _rows(report, "objects")
    assert [r["check"] for r in rows] == [f"aligned, decode {d}: 3 images, then their 21 objects"
                                          for d in ("device", "workers")]
    for r in rows:  # the CPU ran both sides in full; the ratio's target is the GPU's
        assert r["value"].endswith("(3 images and 21 objects scored)") and r["status"] == "skipped: no CUDA", r


def test_smoke_run_checks_invariance_and_decoding_for_real(smoke):
    report, _ = smoke
    real = _rows(report, "invariance") + _rows(report, "decode")
    assert len(_rows(report, "invariance")) == len(report["meta"]["sizes"]["inv_batches"]) + 3
    for r in real:
        assert r["status"] == "pass", r
    for r in _rows(report, "invariance"):
        diff = float(r["value"].split("max|Δ|=")[1].split()[0])
        assert np.isfinite(diff) and diff <= DECODE
    assert report["throughput"]
    for t in report["throughput"]:
        assert all(np.isfinite(t[k]) and t[k] > 0 for k in ("a", "b", "c", "efficiency")), t
        assert t["binding"] in ("decode", "compute")


# The same image, the same score, through compute_quality on the CPU


@pytest.fixture(scope="module")
def photos(imagenet_files):
    return imagenet_files[:6], imagenet_files[6:12]


def _scores(make_dataset, files, **kw):
    ds = make_dataset(files)
    dq.compute_quality(ds, "aligned", device="cpu", progress=False, **kw)
    return dict(zip(ds.values("filepath"), ds.values("iqa_aligned")))


@pytest.fixture(scope="module")
def baseline(photos, tmp_path_factory):
    """The photos scored in one batch, PIL decoding in the main process."""
    import fiftyone as fo

    ds = fo.Dataset()
    ds.add_samples([fo.Sample(filepath=f) for f in photos[0]], progress=False)
    dq.compute_quality(ds, "aligned", device="cpu", batch_size=6, num_workers=0, decode="workers",
                       progress=False)
    out = dict(zip(ds.values("filepath"), ds.values("iqa_aligned")))
    ds.delete()
    return out


def _same(got, base, tol):
    assert set(base) <= set(got)
    diffs = [abs(got[f] - base[f]) for f in base]
    assert max(diffs) <= tol, diffs


@pytest.mark.parametrize("batch_size", [1, 4])
def test_batch_size_does_not_change_a_score(photos, baseline, make_dataset, batch_size):
    got = _scores(make_dataset, photos[0], batch_size=batch_size, num_workers=0, decode="workers")
    _same(got, baseline, BATCHING)


def test_other_images_and_order_do_not_change_a_score(photos, baseline, make_dataset):
    mixed = list(photos[0]) + list(photos[1])
    order = np.random.default_rng(0).permutation(len(mixed))
    got = _scores(make_dataset, [mixed[i] for i in order], batch_size=4, num_workers=0, decode="workers")
    _same(got, baseline, BATCHING)


def test_loader_workers_do_not_change_a_score(photos, baseline, make_dataset):
    got = _scores(make_dataset, photos[0], batch_size=4, num_workers=2, decode="workers")
    _same(got, baseline, BATCHING)


@pytest.mark.parametrize("decode, tol", [("workers", BATCHING), ("device", DECODE)])
def test_the_device_checks_object_pipeline_scores_as_an_object_run(photos, make_dataset, decode, tol):
    """What the GPU machine times for objects (no FiftyOne there) gives the scores
    ``compute_quality`` writes on the objects of a real dataset."""
    sys.path.insert(0, os.path.join(ROOT, "benchmarks"))
    import device_checks
    import device_pipeline
    import fiftyone as fo

    files = list(photos[0][:3])
    boxes = device_checks.object_boxes(len(files))
    ds = make_dataset(files)
    ds.set_values("gt", [fo.Detections(detections=[fo.Detection(label="x", bounding_box=b) for b in bs])
                         for bs in boxes])
    dq.compute_quality(ds, "aligned", patches_field="gt", device="cpu", batch_size=2, num_workers=0,
                       decode="workers", progress=False)
    by_file = dict(zip(ds.values("filepath"), ds.values("gt.detections.iqa_aligned")))
    engine = [v for f in files for v in by_file[f]]
    got = device_pipeline.score_objects(dq.create_metric("aligned"), files, boxes, torch.device("cpu"),
                                        batch_size=2, decode=decode)
    assert len(engine) == len(got) == 21
    assert np.max(np.abs(np.asarray(engine, float) - got)) <= tol


def test_decode_path_changes_a_score_by_rounding_only(photos, baseline, make_dataset):
    got = _scores(make_dataset, photos[0], batch_size=4, num_workers=0, decode="device")
    _same(got, baseline, DECODE)
