"""Per-slice breakdowns (issue 17, item 7): accuracy per tag and per ground-truth class,
checked against hand counts, a Wilson interval written out and scipy's Spearman."""

import math

import numpy as np
import pytest
import scipy.stats

import fiftyone as fo

from fiftyone_dnniqa.analysis.breakdowns import NO_TAGS, available_slices, slice_labels, slice_table


@pytest.fixture
def tagged(make_dataset, imagenet_files):
    """36 samples in 3 classes, tags a / b / both / none, a quality field and a real
    classification evaluation whose errors are planted."""
    rng = np.random.default_rng(3)
    n = 36
    ds = make_dataset(imagenet_files[:1] * n)
    gts = [["cat", "dog", "fox"][i % 3] for i in range(n)]
    q = rng.normal(size=n)
    correct = rng.random(n) < 1 / (1 + np.exp(-2 * q))
    tags = [[["a"], ["b"], ["a", "b"], []][i % 4] for i in range(n)]
    ds.set_values("ground_truth", [fo.Classification(label=g) for g in gts])
    ds.set_values("predictions", [fo.Classification(label=g if c else "other") for g, c in zip(gts, correct)])
    ds.set_values("q", q.tolist())
    ds.set_values("tags", tags)
    ds.evaluate_classifications("predictions", gt_field="ground_truth", eval_key="eval")
    return ds, gts, q, correct.astype(float), tags


def _wilson(k, n, z=scipy.stats.norm.ppf(0.975)):
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return centre - half, centre + half


@pytest.mark.parametrize("by", ["class", "tags"])
def test_each_slice_matches_a_hand_count(tagged, by):
    ds, gts, q, correct, tags = tagged
    keys = gts if by == "class" else [", ".join(sorted(t)) if t else NO_TAGS for t in tags]
    rows = slice_table(ds, "q", by, higher_is_better=True, min_n=2)
    expected = {}
    for key in set(keys):
        sel = np.array([k == key for k in keys])
        k, n = int(correct[sel].sum()), int(sel.sum())
        lo, hi = _wilson(k, n)
        rho = scipy.stats.spearmanr(q[sel], correct[sel])[0]
        expected[key] = (n, k / n, lo, hi, q[sel].mean(), rho)
    assert sorted(r["slice"] for r in rows) == sorted(expected)
    accs = [expected[r["slice"]][1] for r in rows]
    assert accs == sorted(accs)  # worst slice first
    for r in rows:
        n, acc, lo, hi, mq, rho = expected[r["slice"]]
        assert r["n"] == n
        assert r["target"] == f"{acc:.3f} [{lo:.3f}, {hi:.3f}]"
        assert float(r["mean_quality"]) == pytest.approx(mq, abs=5e-4)
        assert float(r["within"].split()[0]) == pytest.approx(rho, abs=5e-4)


def test_a_lower_is_better_field_flips_only_the_correlation(tagged):
    ds, gts, q, correct, tags = tagged
    up = {r["slice"]: r for r in slice_table(ds, "q", "class", higher_is_better=True)}
    down = {r["slice"]: r for r in slice_table(ds, "q", "class", higher_is_better=False)}
    for key in up:
        assert up[key]["target"] == down[key]["target"] and up[key]["mean_quality"] == down[key]["mean_quality"]
        assert float(down[key]["within"].split()[0]) == pytest.approx(-float(up[key]["within"].split()[0]))


def test_slices_follow_the_view_and_the_evaluation(tagged, make_dataset, imagenet_files):
    ds, gts, q, correct, tags = tagged
    view = ds.match_tags("a")
    rows = slice_table(view, "q", "class", higher_is_better=True)
    assert sum(r["n"] for r in rows) == len(view)
    ids = view.values("id")
    assert list(slice_labels(view, "class", ids)) == view.values("ground_truth.label")
    assert available_slices(ds) == ["tags", "class"]
    det = make_dataset(imagenet_files[:2])
    box = fo.Detections(detections=[fo.Detection(label="cat", bounding_box=[0.1, 0.1, 0.5, 0.5])])
    det.set_values("gt", [box, box])
    det.set_values("pred", [box, fo.Detections()])
    det.evaluate_detections("pred", gt_field="gt", eval_key="det")
    assert available_slices(det) == ["tags"]  # an image holds objects of many classes
    with pytest.raises(ValueError, match="not a classification"):
        slice_labels(det, "class", det.values("id"))
    with pytest.raises(ValueError, match="unknown slice 'colour'"):
        slice_labels(ds, "colour", ids)
