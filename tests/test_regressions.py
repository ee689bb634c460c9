"""Bugs users would hit, each pinned by a test that fails when the bug is planted again
(issue 16): every expectation comes from an independent oracle (scipy, numpy, a hand
computation), never from the code under test."""

import csv
import json
import math
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import scipy.special
import scipy.stats
import torch

import fiftyone as fo
import fiftyone.operators as foo
from fiftyone.operators.delegated import DelegatedOperationService

import fiftyone_dnniqa as dq
from fiftyone_dnniqa import analysis as A
from fiftyone_dnniqa.analysis.difficulty import hard_samples
from fiftyone_dnniqa.analysis.panel_stats import panel_statistics
from fiftyone_dnniqa.analysis.report import render_report
from fiftyone_dnniqa.app.plugin import PLUGIN_NAME
from fiftyone_dnniqa.cli import main
from fiftyone_dnniqa.core.images import InputSpec, prepare, read_image, to_float
from fiftyone_dnniqa.metrics.aligned import STATISTICS
from fiftyone_dnniqa.metrics.backbones import load_backbone
from fiftyone_dnniqa.scoring import loading

from conftest import IMAGENET
from test_aligned_units import oracle_statistic
from test_engine import _gray_files

URI = f"{PLUGIN_NAME}/compute_quality"
SCRIPT = "<script>alert(1)</script>"


def _labels():
    with open(os.path.join(IMAGENET, "labels.csv")) as f:
        return {r["filename"]: r["class_name"] for r in csv.DictReader(f)}


# ---------------------------------------------------------------- scoring state


def test_rescoring_a_sample_clears_its_stale_error(imagenet_files, make_dataset, tmp_path):
    late = tmp_path / "late.jpg"
    ds = make_dataset([imagenet_files[0], str(late)])
    dq.compute_quality(ds, "entropy", num_workers=0)
    assert ds.values("iqa_entropy_error") == [None, "missing file"]
    shutil.copy(imagenet_files[1], late)  # the file arrives; the re-run scores it
    again = dq.compute_quality(ds, "entropy", num_workers=0)
    assert again.num_scored == 1
    assert ds.values("iqa_entropy_error") == [None, None]
    assert ds.count("iqa_entropy") == 2
    shutil.copy(imagenet_files[2], late)  # and with overwrite, every sample is rescored
    dq.compute_quality(ds, "entropy", num_workers=0, overwrite=True)
    assert ds.values("iqa_entropy_error") == [None, None]


@pytest.mark.parametrize("make_view", [
    lambda ds: ds.sort_by("filepath", reverse=True),
    lambda ds: ds.sort_by("filepath", reverse=True).skip(1),
    lambda ds: ds.select(ds.values("id")[1:5], ordered=True).sort_by("filepath", reverse=True),
])
def test_resume_reads_what_the_view_misses(tmp_path, make_dataset, monkeypatch, make_view):
    files = _gray_files(tmp_path, [10, 40, 70, 100, 130, 160])
    ds = make_dataset(files)
    dq.compute_quality(ds.limit(3), "entropy", num_workers=0)
    first = dict(zip(ds.values("filepath"), ds.values("iqa_entropy")))
    view = make_view(ds)
    expect = {p for p in view.values("filepath") if first[p] is None}  # numpy-free oracle: the view's unscored
    reads = []
    real = loading.read_image
    monkeypatch.setattr(loading, "read_image", lambda p, *a, **k: reads.append(p) or real(p, *a, **k))
    res = dq.compute_quality(view, "entropy", num_workers=0, decode="workers")
    assert sorted(reads) == sorted(expect)
    assert res.num_todo == len(expect) and res.num_scored == len(expect)
    after = dict(zip(ds.values("filepath"), ds.values("iqa_entropy")))
    for p in view.values("filepath"):
        assert after[p] is not None
    for p, v in first.items():
        if v is not None:
            assert after[p] == v


def test_the_operator_scores_exactly_its_target_view(imagenet_files, make_dataset, installed_plugin):
    ds = make_dataset(imagenet_files[:6])
    view = ds.sort_by("filepath", reverse=True).limit(2)
    result = foo.execute_operator(URI, ctx={"dataset": ds, "view": view,
                                            "params": {"metric": "entropy", "device": "cpu"}})
    assert result.error is None, result.error
    scored = {p for p, v in zip(ds.values("filepath"), ds.values("iqa_entropy")) if v is not None}
    assert scored == set(view.values("filepath"))


def test_shards_of_a_filtered_view_score_only_the_view(tmp_path, make_dataset, installed_plugin):
    files = _gray_files(tmp_path, list(range(10, 250, 20)))
    ds = make_dataset(files, keep=[i % 3 != 0 for i in range(len(files))])
    ds.persistent = True
    view = ds.match({"keep": True}).sort_by("filepath", reverse=True)
    run = dq.compute_quality(view, "entropy", shards=3, num_workers=0)
    assert len(run.operation_ids) == 3
    DelegatedOperationService().execute_queued_operations(operator=URI, dataset_name=ds.name)
    ds.reload()
    scored = {p for p, v in zip(ds.values("filepath"), ds.values("iqa_entropy")) if v is not None}
    assert scored == set(view.values("filepath"))
    assert dq.load_quality_run(ds, "iqa_entropy").status == "completed"


# ---------------------------------------------------------------- the aligned metric


def _oracle_logits(images):
    """EfficientNet-Lite0's logits, with the weights' own preprocessing written out by
    hand: (255 x - 127) / 128 (never the metric's normalisation)."""
    model = load_backbone("efficientnet_lite0").model.eval()
    with torch.inference_mode():
        return model((images * 255 - 127) / 128).double().numpy()


@pytest.fixture(scope="module")
def crops(imagenet_files):
    spec = InputSpec(resize=256, crop=224)
    return to_float(torch.stack([prepare(read_image(f), spec) for f in imagenet_files[::50][:8]]))


@pytest.mark.parametrize("statistic", STATISTICS)
def test_aligned_computes_the_statistic_it_was_asked_for(crops, statistic):
    got = dq.create_metric("aligned", statistic=statistic).score(crops).numpy()
    want = oracle_statistic(_oracle_logits(crops), statistic)
    np.testing.assert_allclose(got, want, rtol=2e-4, atol=2e-4)


def test_aligned_flip_averages_the_mirror_images_logits(crops):
    got = dq.create_metric("aligned", tta="flip").score(crops).numpy()
    z = (_oracle_logits(crops) + _oracle_logits(crops.flip(-1))) / 2
    np.testing.assert_allclose(got, oracle_statistic(z, "max_prob"), rtol=2e-4, atol=2e-4)


def test_bf16_autocast_agrees_with_fp32(crops):
    """The CUDA path scores under bf16 autocast; the same numerics on CPU."""
    m = dq.create_metric("aligned")
    x = torch.cat([crops, crops.flip(-1) * 0.6, (crops + 0.15 * torch.randn_like(crops)).clamp(0, 1)])
    fp32 = m.score(x).numpy()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        bf16 = m.score(x).numpy()
    assert scipy.stats.spearmanr(fp32, bf16).statistic >= 0.97
    assert np.abs(fp32 - bf16).max() < 0.08


# ---------------------------------------------------------------- directions


@pytest.fixture
def piqe_evaluated(imagenet_files, make_dataset):
    """Real photos scored with PIQE (lower is better) and a classifier whose correctness
    follows PIQE with noise; a real classification evaluation."""
    names = _labels()
    files = imagenet_files[1::12][:30]
    ds = make_dataset(files, ground_truth=[fo.Classification(label=names[os.path.basename(f)]) for f in files])
    dq.compute_quality(ds, "piqe", num_workers=0)
    q = np.asarray(ds.values("iqa_piqe"), float)
    rng = np.random.default_rng(3)
    rank = (-q).argsort().argsort() / (len(q) - 1)  # low PIQE = good = right more often
    correct = rng.random(len(q)) < 0.15 + 0.75 * rank
    gt = ds.values("ground_truth.label")
    ds.set_values("predictions", [fo.Classification(label=g if c else "other", confidence=0.5)
                                  for g, c in zip(gt, correct)])
    ds.evaluate_classifications("predictions", gt_field="ground_truth", eval_key="eval")
    ds.take(8, seed=2).tag_samples(SCRIPT)
    return ds, q, np.asarray(ds.values("eval"), float)


def test_the_panel_orients_lower_is_better_fields(piqe_evaluated):
    ds, q, correct = piqe_evaluated
    stats = panel_statistics(ds, ["iqa_piqe"], n_boot=50)
    row = stats["ranking"][0]
    want = scipy.stats.spearmanr(-q, correct).statistic
    assert want > 0.2  # the data were made so that low PIQE predicts success
    assert row["spearman"]["estimate"] == pytest.approx(want, abs=1e-9)
    assert stats["higher_is_better"]["iqa_piqe"] is False
    assert stats["table"][0]["direction"] == "lower"


def test_the_report_orients_lower_is_better_fields_and_escapes_its_tables(piqe_evaluated):
    ds, q, correct = piqe_evaluated
    page = render_report(ds)
    want = scipy.stats.spearmanr(-q, correct).statistic
    assert f"{want:.3f} [" in page and f"{-want:.3f} [" not in page
    assert "Per tag set" in page
    assert "<script" not in page.lower() and "&lt;script&gt;alert(1)&lt;/script&gt;" in page


def test_hard_samples_of_a_lower_is_better_field_are_the_highest(piqe_evaluated):
    ds, q, _ = piqe_evaluated
    hard = hard_samples(ds, "iqa_piqe", k=5)
    np.testing.assert_array_equal(hard.values("iqa_piqe"), np.sort(q)[::-1][:5])


# ---------------------------------------------------------------- statistics


@pytest.mark.parametrize("confidence", [0.9, 0.95])
@pytest.mark.parametrize("method", ["pearson", "spearman"])
def test_bootstrap_intervals_have_the_asked_level(method, confidence):
    """On n=4000 bivariate-normal pairs the percentile bootstrap interval matches the
    analytic Fisher-z interval (Bonett-Wright's variance for Spearman) to a few percent;
    a 90% interval is 16% narrower than a 95% one, so a wrong level cannot pass."""
    rng = np.random.default_rng(7)
    n, rho = 4000, 0.5
    x = rng.normal(size=n)
    y = rho * x + math.sqrt(1 - rho ** 2) * rng.normal(size=n)
    c = A.correlate(x, y, method=method, n_boot=3000, confidence=confidence, seed=1)
    r = c.estimate
    se = math.sqrt((1 + r * r / 2) / (n - 3)) if method == "spearman" else 1 / math.sqrt(n - 3)
    zq = scipy.stats.norm.ppf((1 + confidence) / 2)
    lo, hi = math.tanh(math.atanh(r) - zq * se), math.tanh(math.atanh(r) + zq * se)
    assert (c.ci_high - c.ci_low) == pytest.approx(hi - lo, rel=0.06)
    assert c.ci_low == pytest.approx(lo, abs=0.15 * (hi - lo))


# ---------------------------------------------------------------- faces


def test_the_tg_iqa_operator_fits_and_saves_a_head(imagenet_files, make_dataset, installed_plugin, tmp_path):
    names = _labels()
    files = imagenet_files[2::20][:22]
    ds = make_dataset(files, ground_truth=[fo.Classification(label=names[os.path.basename(f)]) for f in files])
    result = foo.execute_operator(f"{PLUGIN_NAME}/fit_tg_iqa", ctx={"dataset": ds, "view": ds.view(), "params": {
        "label_field": "ground_truth", "path": str(tmp_path / "head"), "copies": 2}})
    assert result.error is None, result.error
    assert result.result["examples"] == 44 and 0 < result.result["mean_correct"] < 1
    metric = dq.create_metric("tg_iqa", path=result.result["path"])
    s = metric.score(to_float(torch.stack([prepare(read_image(f), metric.input_spec) for f in files[:3]])))
    assert s.shape == (3,) and bool(((s > 0) & (s < 1)).all())


def test_cli_show_install_overwrite_reference_and_shards(imagenet_files, make_dataset, installed_plugin,
                                                         tmp_path, capsys):
    ds = make_dataset(imagenet_files[:3], ref=imagenet_files[:3])
    ds.persistent = True
    main(["score", "--dataset", ds.name, "--metric", "psnr", "--reference-field", "ref", "--quiet"])
    assert ds.values("iqa_psnr") == [pytest.approx(80.0)] * 3  # identical images: pyiqa's cap
    capsys.readouterr()
    main(["runs", "--dataset", ds.name, "--show", "iqa_psnr"])
    shown = json.loads(capsys.readouterr().out)
    assert (shown["status"], shown["num_scored"], shown["num_failed"]) == ("completed", 3, 0)
    ds.set_values("mine", [1.0, 2.0, 3.0])
    with pytest.raises(SystemExit, match="overwrite"):
        main(["score", "--dataset", ds.name, "--metric", "entropy", "--field", "mine", "--quiet"])
    main(["score", "--dataset", ds.name, "--metric", "entropy", "--field", "mine", "--overwrite", "--quiet"])
    ds.reload()
    assert ds.values("mine") != [1.0, 2.0, 3.0] and ds.count("mine") == 3
    main(["score", "--dataset", ds.name, "--metric", "piqe", "--shards", "2", "--quiet"])
    assert "queued 2 delegated operations" in capsys.readouterr().out
    plugins = tmp_path / "plugins"
    main(["install-plugin", "--plugins-dir", str(plugins)])
    assert "installed the plugin" in capsys.readouterr().out
    assert (plugins / "dnniqa" / "fiftyone.yml").is_file() and (plugins / "dnniqa" / "__init__.py").is_file()


def test_ci_fails_instead_of_skipping_when_its_photos_are_missing(tmp_path):
    test = tmp_path / "test_needs_photos.py"
    test.write_text("def test_photos(imagenet_files):\n    assert imagenet_files\n")
    shutil.copy(os.path.join(os.path.dirname(__file__), "conftest.py"), tmp_path / "conftest.py")
    base = dict(os.environ, DNNIQA_IMAGENET_SAMPLE=str(tmp_path / "nowhere"))
    base.pop("DNNIQA_REQUIRE_DATA", None)
    run = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(test)]
    skipped = subprocess.run(run, cwd=tmp_path, env=base, capture_output=True, text=True, timeout=300)
    assert skipped.returncode == 0 and "1 skipped" in skipped.stdout, skipped.stdout
    failed = subprocess.run(run, cwd=tmp_path, env=dict(base, DNNIQA_REQUIRE_DATA="1"),
                            capture_output=True, text=True, timeout=300)
    assert failed.returncode != 0 and "DNNIQA_REQUIRE_DATA" in failed.stdout, failed.stdout
