"""Without pyiqa (an optional extra: its license is non-commercial), this package's own
metrics, the engine, the analysis and the App faces still import and run, and pyiqa's
metrics are reported unavailable, with the reason and the extra to install.

Each check runs in a fresh process whose ``sys.meta_path`` hides pyiqa, so that
``import pyiqa`` fails there as it does where pyiqa is not installed.
"""

import json
import os
import subprocess
import sys
import textwrap
import types

import pytest
import torch
import torch.hub
import torch.nn.functional as F

from fiftyone_dnniqa.core.images import InputSpec, prepare, read_image, to_float
from fiftyone_dnniqa.metrics.backbones import load_backbone
from fiftyone_dnniqa.metrics.weights import MissingWeightsError, offline_weights

EXTRA = "pip install 'fiftyone-dnniqa[pyiqa]'"

#: put first in every script: from here on, pyiqa cannot be imported
HIDE_PYIQA = textwrap.dedent("""
    import sys

    class HidePyiqa:
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] == "pyiqa":
                raise ModuleNotFoundError(f"No module named {name!r}", name=name)
            return None

    sys.meta_path.insert(0, HidePyiqa())
    try:
        import pyiqa  # noqa: F401
        raise SystemExit("pyiqa is still importable")
    except ModuleNotFoundError:
        pass
""")

LIBRARY = HIDE_PYIQA + textwrap.dedent("""
    import contextlib, io, json
    import torch
    import fiftyone_dnniqa as dq
    from fiftyone_dnniqa.core.images import prepare, read_image, to_float
    from fiftyone_dnniqa.metrics.registry import unavailable_sources

    files, classes = json.loads(sys.argv[1]), json.loads(sys.argv[2])
    out = {"names": dq.list_metrics(), "pyiqa_names": dq.list_metrics(source="pyiqa"),
           "unavailable": unavailable_sources()}
    m = dq.create_metric("aligned")
    x = to_float(torch.stack([prepare(read_image(f), m.input_spec) for f in files]))
    out["aligned"] = m.score(x).tolist()
    out["aligned_flip"] = dq.create_metric("aligned", tta="flip").score(x).tolist()
    out["aligned_fr"] = dq.create_metric("aligned_fr").score(x, x).tolist()
    out["aligned_task"] = dq.create_metric("aligned_task", classes=classes).score(x).tolist()
    out["traits"] = dq.metric_traits("aligned")
    out["errors"] = {}
    for name, call in (("piqe", dq.create_metric), ("musiq", dq.create_metric), ("ssim", dq.metric_traits)):
        try:
            call(name)
            out["errors"][name] = None
        except Exception as e:
            out["errors"][name] = [type(e).__name__, isinstance(e, ImportError), isinstance(e, ValueError), str(e)]
    from fiftyone_dnniqa.cli import main
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        main(["list-metrics"])
    out["cli"] = buf.getvalue()
    import fiftyone_dnniqa.app.operators, fiftyone_dnniqa.app.panels, fiftyone_dnniqa.app.plugin  # noqa
    import torch.hub
    from fiftyone_dnniqa.metrics.weights import offline_weights
    real = torch.hub.download_url_to_file
    with offline_weights("timm:x"):  # what timm: and torchvision: backbones are built in
        out["offline_weights"] = [torch.hub.download_url_to_file is not real]
    out["offline_weights"].append(torch.hub.download_url_to_file is real)
    out["plugin_register"] = callable(dq.register)
    out["pyiqa_modules"] = sorted(k for k in sys.modules if k.split(".")[0] == "pyiqa")
    print(json.dumps(out))
""")

ENGINE = HIDE_PYIQA + textwrap.dedent("""
    import json, os
    import fiftyone as fo
    import fiftyone_dnniqa as dq
    from fiftyone_dnniqa.analysis.panel_stats import panel_statistics

    files, labels, folder = json.loads(sys.argv[1]), json.loads(sys.argv[2]), sys.argv[3]
    ds = fo.Dataset()
    try:
        wrong = labels[1:] + labels[:1]
        ds.add_samples([fo.Sample(filepath=f, ground_truth=fo.Classification(label=lb),
                                  predictions=fo.Classification(label=lb if i % 2 else wrong[i], confidence=0.9))
                        for i, (f, lb) in enumerate(zip(files, labels))], progress=False)
        dq.compute_quality(ds, "aligned", num_workers=0, progress=False)
        dq.compute_quality(ds, "aligned_task", label_field="ground_truth", num_workers=0, progress=False)
        head = os.path.join(folder, "head")
        dq.fit_tg_iqa(ds, "ground_truth", head, corruptions=["gaussian_noise", "defocus_blur"], copies=2,
                      epochs=50)
        dq.compute_quality(ds, "tg_iqa", metric_options={"path": head}, num_workers=0, progress=False)
        ds.evaluate_classifications("predictions", gt_field="ground_truth", eval_key="eval")
        stats = panel_statistics(ds, n_boot=50)
        html = dq.render_report(ds)
        out = {"aligned": ds.values("iqa_aligned"), "task": ds.values("iqa_aligned_task"),
               "tg_iqa": ds.values("iqa_tg_iqa"), "runs": sorted(dq.list_quality_runs(ds)),
               "stats": sorted(stats), "report": "iqa_tg_iqa" in html and "iqa_aligned" in html,
               "pyiqa_modules": sorted(k for k in sys.modules if k.split(".")[0] == "pyiqa")}
    finally:
        ds.delete()
    print(json.dumps(out))
""")


def _run(script, *args):
    out = subprocess.run([sys.executable, "-c", script, *args], capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-4000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def _class_name(path):
    return os.path.basename(path).split("_", 1)[1].rsplit(".", 1)[0]  # n01440764_tench.JPEG -> tench


def _oracle_max_prob(files):
    """EfficientNet-Lite0's top softmax probability on the 224 center crops, computed
    here from the classifier (no metric code), in a process that has pyiqa."""
    b = load_backbone("efficientnet_lite0")
    x = to_float(torch.stack([prepare(read_image(f), InputSpec(resize=256, crop=224)) for f in files]))
    with torch.no_grad():
        z = b.model((x - 127 / 255) / (128 / 255))
    return F.softmax(z.double(), dim=1).max(dim=1).values


@pytest.fixture(scope="module")
def files(imagenet_files):
    return imagenet_files[::83][:6]


def test_hiding_pyiqa_is_noticed():
    """The oracle of the other tests: the finder does hide pyiqa (a script that imports it fails)."""
    out = subprocess.run([sys.executable, "-c", HIDE_PYIQA + "import pyiqa\n"], capture_output=True,
                         text=True, timeout=120)
    assert out.returncode != 0 and "No module named 'pyiqa'" in out.stderr


def test_metrics_listing_and_app_faces_work_without_pyiqa(files):
    classes = sorted({_class_name(f) for f in files})
    got = _run(LIBRARY, json.dumps(files), json.dumps(classes))
    assert got["pyiqa_modules"] == []
    assert {"aligned", "aligned_task", "aligned_fr", "tg_iqa", "zsclip"} <= set(got["names"])
    assert "piqe" not in got["names"] and got["pyiqa_names"] == []
    reason = got["unavailable"]["pyiqa"]
    assert "pyiqa is not installed" in reason and EXTRA in reason and "Noncommercial" in reason
    assert got["traits"] == {"source": "dnniqa", "needs_reference": False, "needs_labels": False,
                             "higher_is_better": True}
    # the scores: the classifier's confidence, as computed here with pyiqa present
    expected = _oracle_max_prob(files)
    assert torch.allclose(torch.tensor(got["aligned"], dtype=torch.float64), expected, atol=1e-5)
    assert torch.allclose(torch.tensor(got["aligned_fr"], dtype=torch.float64),
                          torch.ones(len(files), dtype=torch.float64), atol=1e-5)
    assert all(t >= a - 1e-6 for t, a in zip(got["aligned_task"], got["aligned"]))
    assert got["aligned_flip"] != got["aligned"] and all(0 < s <= 1 for s in got["aligned_flip"])
    # a pyiqa metric: a clear error naming the extra
    name, is_import, is_value, msg = got["errors"]["piqe"]
    assert (name, is_import, is_value) == ("PyiqaUnavailableError", True, True)
    assert "'piqe' is a pyiqa metric" in msg and EXTRA in msg
    name, _, is_value, msg = got["errors"]["musiq"]
    assert is_value and "Unknown metric 'musiq'" in msg and EXTRA in msg
    assert got["errors"]["ssim"][0] == "PyiqaUnavailableError"
    # list-metrics: ours, then pyiqa's as unavailable with the reason
    lines = got["cli"].splitlines()
    rows = {ln.split()[0]: ln for ln in lines[1:]}
    assert "aligned" in rows and "ready offline" in rows["aligned"] and "piqe" not in rows
    assert lines[-1] == f"pyiqa metrics: unavailable: {reason}"
    assert got["plugin_register"] is True
    assert got["offline_weights"] == [True, True]


def test_engine_analysis_and_tg_iqa_run_without_pyiqa(imagenet_files, tmp_path):
    files = imagenet_files[::25][:20]  # TG-IQA fits on 20 labelled images at least
    labels = [_class_name(f) for f in files]
    got = _run(ENGINE, json.dumps(files), json.dumps(labels), str(tmp_path))
    assert got["pyiqa_modules"] == []
    assert got["runs"] == ["iqa_aligned", "iqa_aligned_task", "iqa_tg_iqa"]
    expected = _oracle_max_prob(files)
    assert torch.allclose(torch.tensor(got["aligned"], dtype=torch.float64), expected, atol=1e-4)
    # the task's label set leaves less to confuse than ImageNet's 1000
    assert all(t >= a - 1e-4 for t, a in zip(got["task"], got["aligned"]))
    assert all(0 <= s <= 1 for s in got["tg_iqa"]) and len(set(got["tg_iqa"])) > 1
    assert got["stats"] and got["report"] is True


def test_offline_weights_guards_pyiqas_downloader_only_once_it_is_imported(monkeypatch, tmp_path):
    """pyiqa keeps its own reference to torch.hub's downloader (``from torch.hub import
    download_url_to_file``); the guard patches it when pyiqa is imported, never imports it,
    and undoes what a pyiqa imported meanwhile copied."""
    real = torch.hub.download_url_to_file
    fake = types.ModuleType("pyiqa.utils.download_util")
    monkeypatch.delitem(sys.modules, "pyiqa.utils.download_util", raising=False)
    with offline_weights("x"):
        assert torch.hub.download_url_to_file is not real
        fake.download_url_to_file = torch.hub.download_url_to_file  # pyiqa imported meanwhile
        monkeypatch.setitem(sys.modules, "pyiqa.utils.download_util", fake)
    assert torch.hub.download_url_to_file is real and fake.download_url_to_file is real

    def untouched(*args, **kwargs):
        raise AssertionError("reached pyiqa's own downloader")

    fake.download_url_to_file = untouched
    with offline_weights("x"):
        with pytest.raises(MissingWeightsError, match="a.pth"):  # offline: the guard answers
            fake.download_url_to_file("https://example.invalid/a.pth", str(tmp_path / "a.pth"))
    assert fake.download_url_to_file is untouched


DEMO = HIDE_PYIQA + textwrap.dedent("""
    import json
    import fiftyone as fo
    from fiftyone_dnniqa.cli import main

    main(["demo", "--name", "dnniqa-demo-no-pyiqa", "--metric", "aligned", "--metric", "piqe"])
    ds = fo.load_dataset("dnniqa-demo-no-pyiqa")
    out = {"n": len(ds), "scored": ds.count("iqa_aligned"), "piqe": ds.has_sample_field("iqa_piqe"),
           "pyiqa_modules": sorted(m for m in sys.modules if m.split(".")[0] == "pyiqa")}
    ds.delete()
    print(json.dumps(out))
""")


def test_the_demo_runs_without_pyiqa_and_says_what_it_skipped(tmp_path):
    env = dict(os.environ, FIFTYONE_DATABASE_DIR=str(tmp_path / "db"))
    out = subprocess.run([sys.executable, "-c", DEMO], capture_output=True, text=True, timeout=600, env=env)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-4000:]
    got = json.loads(out.stdout.strip().splitlines()[-1])
    assert "skipping piqe: Metric 'piqe' is a pyiqa metric, and pyiqa is not installed" in out.stdout
    assert EXTRA in out.stdout and "iqa_aligned" in out.stdout
    assert got["n"] >= 9 * 13 and got["scored"] == got["n"] and got["piqe"] is False
    assert got["pyiqa_modules"] == []
