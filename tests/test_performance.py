"""Performance targets from real FiftyOne evaluations, and the performance prior."""

import json
import math

import numpy as np
import pytest
from sklearn.isotonic import IsotonicRegression

from fiftyone_dnniqa import analysis as A
from fiftyone_dnniqa.analysis import fields as Fd
from fiftyone_dnniqa.analysis import prior as PR
from fiftyone_dnniqa.analysis import targets as P


def _paths(n):
    return [f"/nonexistent/dnniqa-perf/img_{i:03d}.jpg" for i in range(n)]


def _cls(label, confidence=None):
    import fiftyone as fo

    if label is None:
        return None
    return fo.Classification(label=label, confidence=confidence)


@pytest.fixture
def cls_dataset(make_dataset):
    gt = ["cat", "dog", "cat", "bird", "dog", "cat"]
    pred = ["cat", "cat", "cat", "bird", None, "dog"]
    conf = [0.9, 0.6, 0.8, 0.7, None, 0.4]
    ds = make_dataset(_paths(6), ground_truth=[_cls(g) for g in gt],
                      predictions=[_cls(p, c) for p, c in zip(pred, conf)],
                      iqa_test=[0.9, 0.2, 0.8, 0.7, 0.1, 0.3])
    return ds


def test_no_evaluation_error_tells_what_to_run(cls_dataset):
    with pytest.raises(P.NoEvaluationError) as e:
        P.get_target(cls_dataset)
    msg = str(e.value)
    assert "evaluate_classifications" in msg and "evaluate_detections" in msg
    assert isinstance(e.value, ValueError)
    assert P.list_targets(cls_dataset) == []
    with pytest.raises(P.NoEvaluationError, match="no evaluation 'nope'"):
        P.get_target(cls_dataset, eval_key="nope")


def test_simple_and_binary_classification_targets(cls_dataset):
    ds = cls_dataset
    ds.evaluate_classifications("predictions", gt_field="ground_truth", eval_key="eval")
    ids, correct = P.get_target(ds)
    assert list(ids) == ds.values("id")
    np.testing.assert_array_equal(correct, [1, 0, 1, 1, 0, 0])
    _, conf = P.get_target(ds, "eval", kind="confidence")
    np.testing.assert_allclose(conf, [0.9, 0.6, 0.8, 0.7, np.nan, 0.4])
    with pytest.raises(ValueError, match="f1"):
        P.get_target(ds, "eval", kind="f1")

    # binary: positive class "cat"; correct = TP or TN
    ds.evaluate_classifications("predictions", gt_field="ground_truth", eval_key="evb",
                                method="binary", classes=["other", "cat"])
    assert ds.values("evb") == ["TP", "FP", "TP", "TN", "TN", "FN"]
    _, binary = P.get_target(ds, "evb")
    np.testing.assert_array_equal(binary, [1, 0, 1, 1, 1, 0])

    targets = P.list_targets(ds)
    assert [t.eval_key for t in targets] == ["evb", "eval"]  # newest first
    assert targets[0].method == "binary" and targets[1].method == "simple"
    assert targets[1].pred_field == "predictions" and targets[1].gt_field == "ground_truth"
    assert targets[1].default_kind == "correct"
    json.dumps([t.to_dict() for t in targets])
    # eval_key=None picks the most recent evaluation
    np.testing.assert_array_equal(P.get_target(ds)[1], binary)

    # the vector feeds straight into the analysis
    quality = np.asarray(ds.values("iqa_test"))
    a = A.auroc(quality, correct, n_boot=100)
    assert a.n == 6 and a.estimate == pytest.approx(1.0)


def test_evaluation_on_a_view_gives_nan_elsewhere(cls_dataset):
    ds = cls_dataset
    view = ds.limit(4)
    view.evaluate_classifications("predictions", gt_field="ground_truth", eval_key="eval_v")
    ids, correct = P.get_target(ds, "eval_v")
    np.testing.assert_array_equal(correct[:4], [1, 0, 1, 1])
    assert np.isnan(correct[4:]).all()
    c = A.correlate(ds.values("iqa_test"), correct, n_boot=0)
    assert (c.n, c.n_missing) == (4, 2)
    # a view follows the view's order
    rev = ds.sort_by("iqa_test")
    ids_r, correct_r = P.get_target(rev, "eval_v")
    assert list(ids_r) == rev.values("id")


def _box(x, y, w=0.2, h=0.2, label="car", **attrs):
    import fiftyone as fo

    return fo.Detection(label=label, bounding_box=[x, y, w, h], **attrs)


@pytest.fixture
def det_dataset(make_dataset):
    import fiftyone as fo

    D = fo.Detections
    gt = [
        D(detections=[_box(0.1, 0.1, patch_q=0.9)]),                    # found: TP
        D(detections=[_box(0.1, 0.1, patch_q=0.2)]),                    # missed: FN
        D(detections=[]),                                               # hallucination: FP
        D(detections=[]),                                               # empty, nothing said
        D(detections=[_box(0.1, 0.1, patch_q=0.8), _box(0.6, 0.6)]),    # TP + FN (+ FP)
    ]
    pred = [
        D(detections=[_box(0.1, 0.1, confidence=0.9)]),
        D(detections=[]),
        D(detections=[_box(0.5, 0.5, confidence=0.3)]),
        None,  # no label at all counts as no predictions
        D(detections=[_box(0.1, 0.1, confidence=0.8), _box(0.3, 0.7, confidence=0.5)]),
    ]
    return make_dataset(_paths(5), ground_truth=gt, predictions=pred)


def test_detection_targets_and_zero_conventions(det_dataset):
    ds = det_dataset
    ds.evaluate_detections("predictions", gt_field="ground_truth", eval_key="eval_det")
    assert ds.values("eval_det_tp") == [1, 0, 0, 0, 1]
    ids, f1 = P.get_target(ds)
    assert list(ids) == ds.values("id")
    np.testing.assert_allclose(f1, [1.0, 0.0, 0.0, 1.0, 0.5])
    _, precision = P.get_target(ds, kind="precision")
    np.testing.assert_allclose(precision, [1.0, np.nan, 0.0, np.nan, 0.5])
    _, recall = P.get_target(ds, kind="recall")
    np.testing.assert_allclose(recall, [1.0, 0.0, np.nan, np.nan, 0.5])
    _, fn = P.get_target(ds, kind="fn")
    np.testing.assert_array_equal(fn, [0, 1, 0, 0, 1])
    info = P.list_targets(ds)[0]
    assert (info.type, info.method, info.default_kind) == ("detection", "coco", "f1")
    with pytest.raises(ValueError, match="correct"):
        P.get_target(ds, "eval_det", kind="correct")

    # object level: ground truth found or missed, with a per-object quality attribute
    gt = P.object_outcomes(ds, side="gt", quality="patch_q")
    assert list(gt.outcome) == ["tp", "fn", "tp", "fn"]
    np.testing.assert_array_equal(gt.correct, [1, 0, 1, 0])
    np.testing.assert_allclose(gt.quality, [0.9, 0.2, 0.8, np.nan])
    sid = ds.values("id")
    assert list(gt.sample_ids) == [sid[0], sid[1], sid[4], sid[4]]
    assert gt.counts == {"fn": 2, "tp": 2}
    pr = P.object_outcomes(ds, "eval_det", side="pred")
    assert list(pr.outcome) == ["tp", "fp", "tp", "fp"]
    np.testing.assert_allclose(pr.confidence, [0.9, 0.3, 0.8, 0.5])
    assert list(pr.sample_ids) == [sid[0], sid[2], sid[4], sid[4]]
    assert len(pr) == 4 and pr.quality is None


def test_detection_rates_vectorised():
    r = P.detection_rates([2, 0, 0, 3, np.nan], [1, 0, 2, 0, 0], [1, 0, 0, 1, 0])
    np.testing.assert_allclose(r["precision"], [2 / 3, np.nan, 0.0, 1.0, np.nan])
    np.testing.assert_allclose(r["recall"], [2 / 3, np.nan, np.nan, 0.75, np.nan])
    np.testing.assert_allclose(r["f1"], [2 / 3, 1.0, 0.0, 6 / 7, np.nan])


def _synthetic(n=4000, seed=0, groups=5):
    rng = np.random.default_rng(seed)
    g = rng.integers(0, groups, n)
    q = rng.normal(size=n) - 0.4 * g  # groups differ in quality mix
    p = 1 / (1 + np.exp(-2 * q))
    return q, (rng.random(n) < p).astype(float), g, p


def test_prior_fit_predict_monotone_and_matches_sklearn():
    q, c, _, _ = _synthetic()
    prior = PR.PerformancePrior.fit(q, c, n_refits=30)
    grid = np.linspace(-5, 4, 500)
    pred = prior.predict(grid)
    assert np.all(np.diff(pred) >= -1e-12)
    assert 0 <= pred.min() and pred.max() <= 1
    ref = IsotonicRegression(out_of_bounds="clip").fit(q, c)
    np.testing.assert_allclose(pred, ref.predict(grid), atol=1e-12)
    assert np.isnan(prior.predict([np.nan, 0.0])[0])
    # lower-is-better scores give a non-increasing map, equivalent to flipping the sign
    low = PR.PerformancePrior.fit(-q, c, higher_is_better=False, n_refits=0)
    assert np.all(np.diff(low.predict(grid)) <= 1e-12)
    np.testing.assert_allclose(low.predict(-grid), pred, atol=1e-12)

    est = prior.predict_accuracy(q[:800], n_boot=300)
    assert est.ci_low < est.mean < est.ci_high
    assert est.mean == pytest.approx(prior.predict(q[:800]).mean())
    assert abs(est.mean - c[:800].mean()) < 0.05
    assert prior.predict_accuracy(q[:800], n_boot=300) == est  # seeded
    no_map = prior.predict_accuracy(q[:800], n_boot=300, mapping_uncertainty=False)
    assert no_map.mean == est.mean


def test_prior_save_load_round_trip(tmp_path):
    q, c, _, _ = _synthetic(n=1500)
    prior = PR.PerformancePrior.fit(q, c, field="iqa_test", n_refits=20)
    path = prior.save(tmp_path / "prior.json")
    with open(path) as f:
        doc = json.load(f)  # plain JSON, no pickle
    assert doc["field"] == "iqa_test" and doc["higher_is_better"] is True
    assert len(doc["knots"]["x"]) == len(doc["knots"]["y"]) and len(doc["refits"]["curves"]) == 20
    back = PR.PerformancePrior.load(path)
    x = np.linspace(-4, 3, 101)
    np.testing.assert_array_equal(back.predict(x), prior.predict(x))
    assert back.predict_accuracy(q, n_boot=100) == prior.predict_accuracy(q, n_boot=100)
    assert (back.field, back.higher_is_better, back.n_train) == ("iqa_test", True, 1500)
    with open(tmp_path / "bad.json", "w") as f:
        json.dump({"format": "something else"}, f)
    with pytest.raises(ValueError, match="not a performance prior"):
        PR.PerformancePrior.load(tmp_path / "bad.json")


def test_prior_from_an_evaluated_dataset(cls_dataset, tmp_path):
    ds = cls_dataset
    with pytest.raises(P.NoEvaluationError):
        PR.PerformancePrior.from_samples(ds, "iqa_test")
    ds.evaluate_classifications("predictions", gt_field="ground_truth", eval_key="eval")
    prior = PR.PerformancePrior.from_samples(ds, "iqa_test", n_refits=10)
    assert (prior.field, prior.eval_key, prior.n_train) == ("iqa_test", "eval", 6)
    assert prior.higher_is_better is True  # no quality run record: default
    assert Fd.field_higher_is_better(ds, "iqa_test") is None
    # correct samples have quality >= 0.7, errors <= 0.3
    np.testing.assert_allclose(prior.predict([0.05, 0.5, 0.95]), [0.0, 0.5, 1.0])
    back = PR.PerformancePrior.load(prior.save(tmp_path / "p.json"))
    assert back.eval_key == "eval"


def test_heldout_error_is_small_on_synthetic_data():
    q, c, g, _ = _synthetic(n=8000, seed=3)
    res = PR.heldout_error(q, c, groups=g, test_fraction=0.5, seed=0, n_boot=300)
    assert res.n_train + res.n_test == 8000 and res.n_missing == 0
    assert res.overall["abs_error"] < 0.03
    assert len(res.groups) == 5
    assert all(r["abs_error"] < 0.06 for r in res.groups)
    assert sum(r["covered"] for r in res.groups) >= 4
    assert res.mean_group_abs_error == pytest.approx(np.mean([r["abs_error"] for r in res.groups]))
    # the split is stratified: half of every group is held out
    assert [r["n"] for r in res.groups] == [int(np.floor(x / 2 + 0.5)) for x in np.bincount(g)]
    json.dumps(res.to_dict())
    plain = PR.heldout_error(q, c, seed=1, n_boot=100)
    assert plain.groups == [] and plain.mean_group_abs_error is None
    assert math.isfinite(plain.overall["predicted"])
