"""The HTML report relates quality fields to an evaluation already in the dataset."""

import csv
import os

import fiftyone as fo
import numpy as np

import fiftyone_dnniqa as dq

from conftest import IMAGENET


def _evaluated(imagenet_files, make_dataset, n=60):
    with open(os.path.join(IMAGENET, "labels.csv")) as f:
        names = {r["filename"]: r["class_name"] for r in csv.DictReader(f)}
    files = imagenet_files[::5][:n]
    gts = [names[os.path.basename(p)] for p in files]
    rng = np.random.default_rng(0)
    # a "model" that is wrong on a third of the images
    preds = [g if rng.random() > 0.33 else "tench" for g in gts]
    ds = make_dataset(files, ground_truth=[fo.Classification(label=g) for g in gts],
                      predictions=[fo.Classification(label=p, confidence=0.5) for p in preds])
    ds.evaluate_classifications("predictions", gt_field="ground_truth", eval_key="eval")
    ds.take(10, seed=1).tag_samples("night")
    return ds


def test_report_has_the_performance_section(imagenet_files, make_dataset, tmp_path):
    ds = _evaluated(imagenet_files, make_dataset)
    dq.compute_quality(ds, ["entropy", "piqe"])
    path = dq.write_report(ds, str(tmp_path / "r.html"))
    html = open(path, encoding="utf-8").read()
    assert "Quality versus performance: evaluation <code>eval</code>" in html
    assert "Which quality field predicts performance" in html
    assert html.count("iqa_entropy") >= 3 and "iqa_piqe" in html
    assert "Performance prior" in html and "held-out half" in html
    assert "Hardest classes" in html and "Per tag set" in html and "night" in html
    assert html.count("data:image/png;base64,") == 3  # two histograms and the curve


def test_report_without_evaluation_says_so(imagenet_files, make_dataset, tmp_path):
    ds = make_dataset(imagenet_files[:6])
    dq.compute_quality(ds, "entropy")
    html = open(dq.write_report(ds, str(tmp_path / "r.html")), encoding="utf-8").read()
    assert "evaluate_classifications" in html


def test_report_cli_eval_key(imagenet_files, make_dataset, tmp_path):
    from fiftyone_dnniqa.cli import main

    ds = _evaluated(imagenet_files, make_dataset, n=45)
    ds.persistent = True
    dq.compute_quality(ds, "entropy")
    out = str(tmp_path / "cli.html")
    main(["report", "--dataset", ds.name, "--output", out, "--eval-key", "eval"])
    assert "Quality versus performance" in open(out, encoding="utf-8").read()


def test_prior_predicts_accuracy_of_an_unevaluated_dataset(imagenet_files, make_dataset, tmp_path):
    ds = _evaluated(imagenet_files, make_dataset)
    dq.compute_quality(ds, "entropy")
    prior = dq.PerformancePrior.from_samples(ds, "iqa_entropy", eval_key="eval")
    path = prior.save(str(tmp_path / "prior.json"))
    new = make_dataset(imagenet_files[1::5][:30])  # other photos, no labels, no evaluation
    dq.compute_quality(new, "entropy")
    est = dq.apply_prior(new, dq.PerformancePrior.load(path), n_boot=300)
    vals = np.array(new.values("expected_accuracy"), float)
    assert len(vals) == 30 and np.all((vals >= 0) & (vals <= 1))
    assert est.ci_low <= est.mean <= est.ci_high and abs(est.mean - vals.mean()) < 1e-9
    assert new.info["dnniqa_priors"]["expected_accuracy"]["quality_field"] == "iqa_entropy"
    # difficulty views know expected accuracy is higher-is-better
    hardest = dq.hard_samples(new, "expected_accuracy", k=5)
    assert hardest.values("expected_accuracy") == sorted(vals.tolist())[:5]
