"""The DNN-aligned metrics through pyiqa's own API: its ``pyiqa.archs`` entry point,
``pyiqa.create_metric("dnn_aligned")`` and pyiqa's conventions, checked against
scores computed here from the proxy classifier directly and against this package's
own ``aligned`` metrics.

The entry point is read from the installed metadata: after editing pyproject.toml,
reinstall (``pip install --no-deps -e .``).
"""

import json
import os
import subprocess
import sys
import textwrap
from importlib.metadata import entry_points

import pytest
import torch
import torch.hub
import torch.nn.functional as F

pyiqa = pytest.importorskip("pyiqa")

import fiftyone_dnniqa as dq  # noqa: E402
from fiftyone_dnniqa.core.images import InputSpec, prepare, read_image, to_float  # noqa: E402
from fiftyone_dnniqa.corruptions import gaussian_blur  # noqa: E402
from fiftyone_dnniqa.metrics import pyiqa_plugin  # noqa: E402
from fiftyone_dnniqa.metrics.backbones import load_backbone  # noqa: E402

NAMES = ("dnn_aligned", "dnn_aligned_fr", "dnn_aligned_task")


@pytest.fixture
def registered():
    """The dnn_* names in pyiqa's table for one test, removed afterwards."""
    pyiqa_plugin.register_metrics()
    yield
    pyiqa_plugin.unregister_metrics()


@pytest.fixture(scope="module")
def picks(imagenet_files):
    return imagenet_files[::42][:12]


@pytest.fixture(scope="module")
def photos(picks):
    """12 real photos, 256 x 256 (both paths resize them to the backbone's 224)."""
    spec = InputSpec(resize=256, crop=256)
    return to_float(torch.stack([prepare(read_image(f), spec) for f in picks]))


@pytest.fixture(scope="module")
def lite0():
    return load_backbone("efficientnet_lite0")


def oracle_max_prob(backbone, x):
    """max softmax probability of EfficientNet-Lite0 on ``x`` resized to 224 (the
    definition of ``aligned``'s default), computed here without the metric's code."""
    x = F.interpolate(x, size=(224, 224), mode="bilinear", antialias=True, align_corners=False)
    with torch.no_grad():
        z = backbone.model((x - 127 / 255) / (128 / 255))
    return F.softmax(z.double(), dim=1).max(dim=1).values


def test_the_entry_point_is_declared_in_pyiqas_arch_group():
    eps = [ep for ep in entry_points(group="pyiqa.archs") if ep.name == "fiftyone_dnniqa"]
    assert len(eps) == 1, "not installed with the entry point: pip install --no-deps -e ."
    # pyiqa calls what the entry point names with no arguments (utils/registry.py)
    assert eps[0].load() is pyiqa_plugin.register_archs


FRESH = textwrap.dedent("""
    import json, sys, torch
    import pyiqa
    assert not any(m.startswith("fiftyone_dnniqa") for m in sys.modules)
    try:
        pyiqa.create_metric("dnn_aligned")
        names = "accepted"
    except AssertionError:
        names = "refused"
    net = pyiqa.archs.build_network({"type": "DNNAligned"})
    x = torch.load(sys.argv[1])
    with torch.no_grad():
        out = net(x)
    print(json.dumps({"module": type(net).__module__, "names": names, "shape": list(out.shape),
                      "scores": out.reshape(-1).tolist()}))
""")


def test_pyiqa_builds_the_architecture_from_its_entry_point_alone(photos, lite0, tmp_path):
    """A fresh process that never imports this package: pyiqa finds DNNAligned by its
    entry point; the metric names are still refused (pyiqa's table has no plugin hook)."""
    torch.save(photos, tmp_path / "x.pt")
    out = subprocess.run([sys.executable, "-c", FRESH, str(tmp_path / "x.pt")], capture_output=True,
                         text=True, timeout=600, env=dict(os.environ, HF_HUB_OFFLINE="1"))
    assert out.returncode == 0, out.stderr[-3000:]
    got = json.loads(out.stdout.strip().splitlines()[-1])
    assert got["module"] == "fiftyone_dnniqa.metrics.pyiqa_plugin"
    assert got["names"] == "refused"
    assert got["shape"] == [len(photos), 1]
    expected = oracle_max_prob(lite0, photos)
    assert torch.allclose(torch.tensor(got["scores"], dtype=torch.float64), expected, atol=1e-5)


def test_create_metric_follows_pyiqas_conventions(registered):
    nr, fr = pyiqa.list_models(metric_mode="NR"), pyiqa.list_models(metric_mode="FR")
    assert {"dnn_aligned", "dnn_aligned_task"} <= set(nr) and "dnn_aligned_fr" in fr
    assert "dnn_aligned_fr" not in nr and "dnn_aligned" not in fr
    m = pyiqa.create_metric("dnn_aligned")
    assert m.lower_better is False and m.score_range == "0, 1" and m.metric_mode == "NR"
    assert type(m.net).__name__ == "DNNAligned"
    f = pyiqa.create_metric("dnn_aligned_fr")
    assert f.lower_better is False and f.metric_mode == "FR"
    with pytest.raises(AssertionError, match=r"\[0, 1\]"):  # pyiqa's own input check holds
        m(torch.full((1, 3, 32, 32), 2.0))


def test_scores_equal_the_classifier_and_the_aligned_metric(registered, photos, lite0):
    m = pyiqa.create_metric("dnn_aligned", device="cpu")
    got = m(photos)
    assert got.shape == (len(photos), 1) and got.dtype == torch.float32
    ours = dq.create_metric("aligned").score(photos)
    expected = oracle_max_prob(lite0, photos)
    assert torch.allclose(got[:, 0].double(), expected, atol=1e-5), (got[:, 0], expected)
    assert torch.allclose(got[:, 0].double(), ours, atol=1e-5)
    assert ((got > 0) & (got <= 1)).all()
    # options reach the metric: a temperature above 1 flattens the softmax
    hot = pyiqa.create_metric("dnn_aligned", device="cpu", temperature=3.0)(photos)
    assert (hot < got).all()
    assert torch.allclose(hot[:, 0].double(), dq.create_metric("aligned", temperature=3.0).score(photos),
                          atol=1e-5)


def test_blur_lowers_the_scores(registered, photos):
    m = pyiqa.create_metric("dnn_aligned", device="cpu")
    clean = m(photos)[:, 0]
    means = [clean.mean().item()]
    for sigma in (2, 5):
        blurred = m(gaussian_blur(photos, sigma))[:, 0]
        means.append(blurred.mean().item())
    assert (blurred < clean).float().mean() >= 0.75, (clean, blurred)
    assert means[0] > means[1] > means[2] and means[2] < means[0] - 0.15, means


def test_full_reference_variant_takes_the_distorted_image_first(registered, photos):
    blurred = gaussian_blur(photos, 3)
    m = pyiqa.create_metric("dnn_aligned_fr", device="cpu", divergence="agreement")
    got = m(blurred, photos)[:, 0].double()
    ours = dq.create_metric("aligned_fr", divergence="agreement").score(blurred, photos)
    swapped = dq.create_metric("aligned_fr", divergence="agreement").score(photos, blurred)
    assert torch.allclose(got, ours, atol=1e-5)
    assert not torch.allclose(got, swapped, atol=1e-3)  # the comparison tells the orders apart
    js = pyiqa.create_metric("dnn_aligned_fr", device="cpu")
    assert torch.allclose(js(photos, photos)[:, 0], torch.ones(len(photos)), atol=1e-5)
    assert (js(blurred, photos) < 1 - 1e-3).all()


def test_task_variant_needs_a_label_set_and_no_labels(registered, photos, picks):
    classes = sorted({os.path.basename(f).split("_", 1)[1].rsplit(".", 1)[0] for f in picks})
    m = pyiqa.create_metric("dnn_aligned_task", device="cpu", classes=classes)
    ours = dq.create_metric("aligned_task", classes=classes).score(photos)
    assert torch.allclose(m(photos)[:, 0].double(), ours, atol=1e-5)
    full = dq.create_metric("aligned").score(photos)
    assert (ours >= full - 1e-6).all()  # fewer classes to confuse: never less confident
    with pytest.raises(ValueError, match="classes"):
        pyiqa.create_metric("dnn_aligned_task")
    with pytest.raises(ValueError, match="label-free"):
        pyiqa.create_metric("dnn_aligned_task", classes=classes, label_mode="sample")


def test_nothing_is_downloaded(registered, monkeypatch):
    import pyiqa.utils.download_util as pyiqa_dl

    calls = []

    def no_download(*args, **kwargs):
        calls.append(args)
        raise AssertionError("download attempted")

    for module in (torch.hub, pyiqa_dl):
        monkeypatch.setattr(module, "download_url_to_file", no_download)
    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", no_download)
    for name, opts in (("dnn_aligned", {}), ("dnn_aligned_fr", {}), ("dnn_aligned_task", {"classes": ["tench"]})):
        pyiqa.create_metric(name, device="cpu", **opts)
    assert calls == []


def test_as_loss_is_refused_clearly(registered):
    m = pyiqa.create_metric("dnn_aligned", device="cpu", as_loss=True)
    with pytest.raises(NotImplementedError, match="as_loss"):
        m(torch.rand(1, 3, 64, 64, requires_grad=True))


def test_registration_is_idempotent_undoable_and_refuses_a_clash(monkeypatch):
    from pyiqa.default_model_configs import DEFAULT_CONFIGS

    before = dict(DEFAULT_CONFIGS)
    pyiqa_plugin.register_metrics()
    pyiqa_plugin.register_metrics()
    assert set(DEFAULT_CONFIGS) - set(before) == set(NAMES)
    pyiqa_plugin.unregister_metrics()
    assert dict(DEFAULT_CONFIGS) == before
    monkeypatch.setitem(DEFAULT_CONFIGS, "dnn_aligned", {"metric_opts": {"type": "Other"}, "metric_mode": "NR"})
    with pytest.raises(ValueError, match="already has a metric named 'dnn_aligned'"):
        pyiqa_plugin.register_metrics()
    assert DEFAULT_CONFIGS["dnn_aligned"]["metric_opts"]["type"] == "Other"
    assert "dnn_aligned_fr" not in DEFAULT_CONFIGS  # nothing half-registered


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_pyiqas_default_device_is_followed(registered, photos):
    m = pyiqa.create_metric("dnn_aligned")  # pyiqa picks CUDA when there is one
    got = m(photos.cuda())
    assert got.device.type == "cuda"
    cpu = pyiqa.create_metric("dnn_aligned", device="cpu")(photos)
    assert torch.allclose(got.cpu(), cpu, atol=1e-3)
