"""The objects benchmark with real detectors (issue 27, item 4), in a smoke run: D2Go's
references on real photos, both real detectors on degraded copies, FiftyOne's evaluation,
``aligned`` on every object's patch; its statistics against sklearn and a hand count, and
its verdict against hand-made intervals."""

import os
import sys

import numpy as np
import pytest
from conftest import ROOT, _missing_data
from sklearn.metrics import roc_auc_score

sys.path.insert(0, os.path.join(ROOT, "benchmarks"))
import detectors
import objects_real as bench


@pytest.fixture(scope="module")
def smoke(imagenet_files, tmp_path_factory):
    """The benchmark's protocol on 2 photos with references, blurred at severity 5."""
    absent = detectors.missing()
    if absent:
        _missing_data(f"the detectors are not on disk: {absent} (set DNNIQA_MODELS)")
    args = bench.parse_args(["--photos", "20", "--images", "2", "--corruptions", "gaussian_blur",
                             "--severities", "5", "--metrics", "aligned", "--n-boot", "50",
                             "--data", os.path.dirname(imagenet_files[0])])
    args.folder = str(tmp_path_factory.mktemp("objects_real"))
    ds, stats, facts = bench.run(args)
    yield ds, stats, facts
    ds.delete()


def test_every_reference_is_found_by_d2go_on_its_clean_photo(smoke):
    """The references are D2Go's own detections at >= 0.7, and D2Go's predictions are kept
    at 0.7 too: on the clean photo each reference is found (the pseudo ground truth)."""
    ds, _, facts = smoke
    out, sev = ds.values("ground_truth.detections.eval_d2go"), ds.values("severity")
    assert all(o == "tp" for s, objs in zip(sev, out) if s == 0 for o in objs)
    assert facts["counts"]["copies"] == len(ds) == 2 * 2 and facts["counts"]["photos"] == 2
    assert ds.count("ground_truth.detections") == 2 * facts["counts"]["references"]


@pytest.mark.parametrize("detector", bench.DETECTORS)
def test_misses_statistics_equal_sklearn_and_a_hand_stratification(smoke, detector):
    ds, stats, _ = smoke
    st = stats[detector]["gt"]["aligned"]
    q = np.array(ds.values("ground_truth.detections.iqa_aligned", unwind=True), float)
    found = np.array([o == "tp" for o in ds.values(f"ground_truth.detections.eval_{detector}", unwind=True)], float)
    assert st["n_objects"] == len(q) == ds.count("ground_truth.detections")
    if found.min() == found.max():
        pytest.skip(f"{detector} found every reference or none in this smoke run")
    assert st["quality"]["auroc"]["estimate"] == pytest.approx(roc_auc_score(found, q), abs=1e-9)
    # the detector's score on its predictions: matched vs false, against sklearn (D2Go's
    # predictions above its references' threshold may all match in this smoke run)
    conf = np.array(ds.values(f"{detector}.detections.confidence", unwind=True), float)
    matched = np.array([o == "tp" for o in ds.values(f"{detector}.detections.eval_{detector}", unwind=True)], float)
    assert detector == "d2go" or 0 < matched.sum() < len(matched), "FastestDet both matches and errs"
    if 0 < matched.sum() < len(matched):
        got = stats[detector]["pred"]["detector score"]["quality"]["auroc"]["estimate"]
        assert got == pytest.approx(roc_auc_score(matched, conf), abs=1e-9)


def _ci(est, lo, hi):
    return {"estimate": est, "ci_low": lo, "ci_high": hi}


@pytest.mark.parametrize("aligned, area, piqe, met", [
    (_ci(0.85, 0.81, 0.89), _ci(0.6, 0.55, 0.65), _ci(0.7, 0.65, 0.80), True),
    (_ci(0.85, 0.79, 0.89), _ci(0.6, 0.55, 0.65), _ci(0.7, 0.65, 0.80), False),  # overlaps PIQE
    (_ci(0.79, 0.75, 0.83), _ci(0.6, 0.55, 0.65), _ci(0.6, 0.55, 0.65), False),  # below 0.80
    (_ci(0.9, 0.85, 0.95), _ci(0.6, 0.55, 0.65), _ci(None, None, None), False),  # PIQE not measured
])
def test_the_verdict_needs_the_goal_and_intervals_apart(aligned, area, piqe, met):
    stats = {"d": {"gt": {"aligned": {"given_size": aligned, "size": {"auroc": area}},
                          "piqe": {"given_size": piqe, "size": {"auroc": area}}}}}
    v = bench.verdict(stats)["d"]
    assert v["met"] is met
    assert v["reaches"] is (aligned["estimate"] >= 0.8)
    assert v["ahead"]["box area"] is (aligned["ci_low"] > area["ci_high"])
