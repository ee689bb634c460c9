"""The panel in object mode (issue 14, item 4): switch from images to objects, read the
object statistics of a real detection evaluation, click a quality bin for its objects as
patches; checked against sklearn, scipy and numpy on the stored attributes."""

import json

import numpy as np
import pytest
import scipy.stats
from sklearn.metrics import roc_auc_score

import fiftyone as fo

import fiftyone_dnniqa as dq
from fiftyone_dnniqa.app import panels as P

from test_panel import FakeApp, plugin  # noqa: F401  (the fixture)


@pytest.fixture
def detected(plugin, make_dataset, imagenet_files):  # noqa: F811
    """6 real photos with 4 ground-truth boxes each, predictions that find some of them,
    a real detection evaluation and a real object quality run (entropy on each patch)."""
    rng = np.random.default_rng(2)
    boxes = [[0.05, 0.05, 0.4, 0.4], [0.5, 0.5, 0.45, 0.45], [0.3, 0.1, 0.25, 0.6], [0.6, 0.05, 0.3, 0.3]]
    ds = make_dataset(imagenet_files[:6])
    ds.set_values("ground_truth", [fo.Detections(detections=[fo.Detection(label="thing", bounding_box=b)
                                                             for b in boxes]) for _ in range(6)])
    ds.persistent = True
    dq.compute_quality(ds, "entropy", field="q", patches_field="ground_truth", num_workers=0)
    false = fo.Detection(label="thing", bounding_box=[0.82, 0.82, 0.15, 0.15], confidence=0.5)
    ds.set_values("predictions", [fo.Detections(detections=[
        fo.Detection(label="thing", bounding_box=b, confidence=0.9) for b in boxes if rng.random() < 0.5]
        + ([false.copy()] if i % 2 else [])) for i in range(6)])
    ds.evaluate_detections("predictions", gt_field="ground_truth", eval_key="det")
    return ds


def test_object_mode_relates_each_objects_quality_to_found_or_missed(detected):
    P.CACHE.clear()
    app = FakeApp(detected)
    app.call("on_load")
    assert app.properties()["mode"]["type"]["values"] == ["images", "objects"]
    app.user_changes("mode", "objects", "on_change_mode")
    st = app.state
    assert st["mode"] == "objects" and st["object_run"] == "ground_truth_q"
    assert st["object_summary"]["rate"] == "recall"  # a run on the ground truth: found vs missed
    q = np.array(detected.values("ground_truth.detections.q", unwind=True), dtype=float)
    found = np.array([o == "tp" for o in detected.values("ground_truth.detections.det", unwind=True)], float)
    quality_row, area_row = app.data["object_table"]
    assert float(quality_row["auroc"].split()[0]) == pytest.approx(roc_auc_score(found, q), abs=5e-4)
    assert float(quality_row["spearman"].split()[0]) == pytest.approx(scipy.stats.spearmanr(q, found)[0], abs=5e-4)
    assert quality_row["n"] == len(q) == 24 and area_row["score"] == "box area"
    assert sum(r["n"] for r in app.data["object_strata"]) == 24
    props = app.properties()
    assert {"object_run", "object_table", "object_strata", "object_bars"} <= set(props)
    assert "ranking" not in props  # the images' table is not shown in object mode
    # a click on a bar: those objects as patches
    bar = app.plots["object_bars"][0]
    app.call("on_click_object_bars", id=bar["ids"][0], idx=0)
    lo, hi, last = json.loads(bar["ids"][0])
    patches = app.set_views[-1]
    assert patches._is_patches
    expected = np.sum((q >= lo) & ((q <= hi) if last else (q < hi)))
    assert len(patches) == expected == int(bar["text"][0].split("=")[1])
    # a run on the predictions: matched vs false, precision by quality
    dq.compute_quality(detected, "entropy", field="q", patches_field="predictions", num_workers=0)
    app.user_changes("object_run", "predictions_q", "on_change_object_run")
    assert app.state["object_summary"]["rate"] == "precision"
    pq = np.array(detected.values("predictions.detections.q", unwind=True), dtype=float)
    matched = np.array([o == "tp" for o in detected.values("predictions.detections.det", unwind=True)], float)
    assert 0 < matched.sum() < len(matched)
    assert float(app.data["object_table"][0]["auroc"].split()[0]) == pytest.approx(
        roc_auc_score(matched, pq), abs=5e-4)
    # back to images
    app.user_changes("mode", "images", "on_change_mode")
    assert app.state["mode"] == "images" and "ranking" in app.properties()


def test_image_mode_offers_the_object_runs_per_image_means(detected):
    """Issue 28, item 10: with object runs only, image mode ranks the per-image mean and
    minimum an object run writes (no "Nothing to show yet"), in the run's direction."""
    P.CACHE.clear()
    app = FakeApp(detected)
    app.call("on_load")
    assert app.state.get("message") is None, app.state.get("message")
    assert app.state["fields"] == ["ground_truth_q", "ground_truth_q_min"]
    app.user_changes("target", "det:recall", "on_change_target")
    rows = {r["field"]: r for r in app.data["ranking"]}
    assert set(rows) == {"ground_truth_q", "ground_truth_q_min"}
    # oracle: each image's recall from the evaluation's counts, its objects' scores by numpy
    tp, fn = (np.array(detected.values(f"det_{k}"), float) for k in ("tp", "fn"))
    per_image = [np.array(v, float) for v in detected.values("ground_truth.detections.q")]
    hib = detected.get_run_info("ground_truth_q").config.higher_is_better
    for field, agg in (("ground_truth_q", np.mean), ("ground_truth_q_min", np.min)):
        q = np.array([agg(v) for v in per_image])
        rho = scipy.stats.spearmanr(q if hib else -q, tp / (tp + fn))[0]
        assert float(rows[field]["spearman"].split()[0]) == pytest.approx(rho, abs=5e-4), field
        assert rows[field]["direction"] == ("higher" if hib else "lower")  # known, not "(assumed)"
