"""Per-slice breakdowns (issue 17, item 7): accuracy per tag and per ground-truth class,
checked against hand counts, a Wilson interval written out and scipy's Spearman."""

import math
import warnings

import numpy as np
import pytest
import scipy.stats
from sklearn.isotonic import IsotonicRegression

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


def test_the_expected_accuracy_of_each_slice_is_the_isotonic_fit_of_the_whole_view(tagged):
    ds, gts, q, correct, tags = tagged
    fitted = IsotonicRegression(increasing=True, out_of_bounds="clip").fit(q, correct).predict(q)
    rows = slice_table(ds, "q", "class", higher_is_better=True)
    for r in rows:
        sel = np.array([g == r["slice"] for g in gts])
        est, lo, hi = (float(v) for v in r["expected"].replace("[", "").replace("]", "").replace(",", "").split())
        assert est == pytest.approx(fitted[sel].mean(), abs=5e-4)
        assert 0 < lo < est < hi < 1  # a 90% interval of 12 samples: neither bound clipped
    # a lower-is-better field: the same fit of the negated scores
    down = slice_table(ds, "q", "class", higher_is_better=False)
    fitted_down = IsotonicRegression(increasing=False, out_of_bounds="clip").fit(q, correct).predict(q)
    for r in down:
        sel = np.array([g == r["slice"] for g in gts])
        assert float(r["expected"].split()[0]) == pytest.approx(fitted_down[sel].mean(), abs=5e-4)


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


def test_errors_by_predicted_cause_match_a_hand_count(with_causes):
    from fiftyone_dnniqa.analysis.breakdowns import cause_sentence, cause_summary, cause_view

    from fiftyone_dnniqa.analysis.breakdowns import NO_CAUSE

    ds, wrong = with_causes
    # by hand: no Classifications (unscored) -> None; no label (nothing found) -> NO_CAUSE
    first = np.array([None if c is None else (c[0] if c else NO_CAUSE)
                      for c in ds.values("iqa_cause.classifications.label")], dtype=object)
    assert NO_CAUSE in first  # the clean photos store no label
    assert "cause" in available_slices(ds)
    assert list(slice_labels(ds, "cause", ds.values("id"))) == list(first)
    counts = {c: int(np.sum(wrong & (first == c))) for c in set(first) if c != NO_CAUSE}
    top = max(sorted(counts), key=counts.get)
    assert top == "blur"  # the blurred copies are what the head sees
    s = cause_summary(ds)
    inside = first == top
    assert s["cause"] == top and s["share_of_errors"] == pytest.approx(counts[top] / wrong.sum())
    assert s["accuracy"] == pytest.approx(1 - wrong[inside].mean())
    assert s["accuracy_elsewhere"] == pytest.approx(1 - wrong[~inside].mean())
    assert cause_sentence(s).startswith(f"{100 * counts[top] / wrong.sum():.0f}% of the errors are on images "
                                        f"predicted blur ({inside.sum()} images)")
    labels = ds.values("iqa_cause.classifications.label")
    assert len(cause_view(ds, "blur")) == sum("blur" in (ls or []) for ls in labels)
    rows = slice_table(ds, "iqa_cause_severity", "cause", higher_is_better=False, min_n=1)
    assert {r["slice"] for r in rows} == set(first)


def test_predicted_causes_are_every_family_found_most_frequent_first(with_causes):
    from collections import Counter

    from fiftyone_dnniqa.analysis.breakdowns import NO_CAUSE, predicted_causes
    from fiftyone_dnniqa.metrics.cause import NONE

    ds, _ = with_causes
    unscored = ds.first()
    unscored["iqa_cause"] = None  # counted by FiftyOne under None: never a cause
    unscored.save()
    counts = Counter(lab for ls in ds.values("iqa_cause.classifications.label") for lab in (ls or []))
    by_hand = sorted((c for c in counts if c != "none"), key=lambda c: (-counts[c], c))
    assert predicted_causes(ds) == by_hand and by_hand[0] == "blur"
    assert NONE not in counts and NO_CAUSE not in counts  # clean images store no label
    assert predicted_causes(ds.limit(0)) == []
    # frequency, not the alphabet, orders them: "noise" on 7 images, "blur" on 4
    ds.set_values("iqa_cause", [fo.Classifications(classifications=[fo.Classification(label=lab)])
                                for lab in ["noise"] * 7 + ["blur"] * 4 + ["contrast_haze"]])
    assert predicted_causes(ds) == ["noise", "blur", "contrast_haze"]


def test_old_runs_that_stored_none_read_like_new_ones(with_causes):
    """Runs before issue 28 stored a label "none" where no family was found; now such an
    image stores no label. Both are the slice NO_CAUSE, never a predicted cause, and
    cause_view(NO_CAUSE) finds both (and never an unscored image)."""
    from fiftyone_dnniqa.analysis.breakdowns import (
        NO_CAUSE, OLD_NO_CAUSE, cause_summary, cause_view, predicted_causes,
    )

    def labels(*names):
        return fo.Classifications(classifications=[fo.Classification(label=n) for n in names])

    ds, wrong = with_causes
    stored = ([labels(OLD_NO_CAUSE)] * 3 + [labels()] * 3 + [labels("blur")] * 4 + [labels("noise", "blur")]
              + [None])
    ds.set_values("iqa_cause", stored)
    ids = ds.values("id")
    assert list(slice_labels(ds, "cause", ids)) == [NO_CAUSE] * 6 + ["blur"] * 4 + ["noise", None]
    assert predicted_causes(ds) == ["blur", "noise"]
    assert cause_view(ds, NO_CAUSE).values("id") == ids[:6]
    assert cause_view(ds, OLD_NO_CAUSE).values("id") == ids[:6]
    assert cause_view(ds, "blur").values("id") == ids[6:11]
    # errors (the fixture): images 0 and 6..11; among the scored ones, blur holds 4 of 6
    assert list(wrong) == [True] + [False] * 5 + [True] * 6
    s = cause_summary(ds)
    assert (s["cause"], s["n"], s["share_of_errors"]) == ("blur", 4, pytest.approx(4 / 6))
    assert s["accuracy"] == 0 and s["accuracy_elsewhere"] == pytest.approx(5 / 7)
    rows = slice_table(ds, "iqa_cause_severity", "cause", higher_is_better=False, min_n=1)
    assert {r["slice"]: r["n"] for r in rows} == {NO_CAUSE: 6, "blur": 4, "noise": 1}


# ---------------------------------------------------------------------------
# Which evaluation, which target, which options: each reaches every column
# ---------------------------------------------------------------------------


def _second_evaluations(ds, n, rng):
    """A second classification evaluation (other classes, other errors, confidences) and
    a detection evaluation, the newest, which has neither classes nor correctness."""
    gts2 = [["u", "v"][i % 2] for i in range(n)]
    correct2 = rng.random(n) < 0.5
    conf2 = rng.random(n)
    ds.set_values("ground_truth2", [fo.Classification(label=g) for g in gts2])
    ds.set_values("predictions2", [fo.Classification(label=g if c else "w", confidence=float(p))
                                   for g, c, p in zip(gts2, correct2, conf2)])
    ds.evaluate_classifications("predictions2", gt_field="ground_truth2", eval_key="eval2")
    box = fo.Detections(detections=[fo.Detection(label="cat", bounding_box=[0.1, 0.1, 0.5, 0.5])])
    ds.set_values("gt_boxes", [box] * n)
    ds.set_values("pred_boxes", [box] * n)
    ds.evaluate_detections("pred_boxes", gt_field="gt_boxes", eval_key="det")
    return gts2, correct2.astype(float), conf2


def test_the_evaluation_and_target_asked_for_drive_every_column(tagged):
    ds, gts, q, correct, tags = tagged
    gts2, correct2, conf2 = _second_evaluations(ds, len(ds), np.random.default_rng(5))
    ids = ds.values("id")
    assert available_slices(ds, "eval2") == ["tags", "class"]
    assert available_slices(ds) == ["tags"]  # the newest evaluation is the detection
    assert list(slice_labels(ds, "class", ids, "eval2")) == gts2
    older = {r["slice"]: r["target"] for r in slice_table(ds, "q", "class", eval_key="eval", higher_is_better=True)}
    for key in set(gts):  # the first evaluation, though two newer ones exist
        sel = np.array([g == key for g in gts])
        assert older[key].startswith(f"{correct[sel].mean():.3f} [")
    rows = slice_table(ds, "q", "class", eval_key="eval2", higher_is_better=True)
    assert sorted(r["slice"] for r in rows) == ["u", "v"]
    for r in rows:
        sel = np.array([g == r["slice"] for g in gts2])
        assert r["n"] == sel.sum() and r["target"].startswith(f"{correct2[sel].mean():.3f} [")
    # a continuous target, found by its kind: the newest classification that gives it
    rows = slice_table(ds, "q", "tags", kind="confidence", higher_is_better=True)
    keys = np.array([", ".join(sorted(t)) if t else NO_TAGS for t in tags])
    for r in rows:
        assert r["target"].startswith(f"{conf2[keys == r['slice']].mean():.3f} [")
        assert r["expected"] == ""  # an expected accuracy only for correctness


def test_options_reach_the_table(tagged):
    ds, gts, q, correct, tags = tagged
    for r in slice_table(ds, "q", "class", higher_is_better=True, confidence=0.5, n_boot=0):
        sel = np.array([g == r["slice"] for g in gts])
        lo, hi = _wilson(int(correct[sel].sum()), int(sel.sum()), z=scipy.stats.norm.ppf(0.75))
        assert r["target"] == f"{correct[sel].mean():.3f} [{lo:.3f}, {hi:.3f}]"
        rho = scipy.stats.spearmanr(q[sel], correct[sel])[0]
        assert r["within"] == f"{rho:.3f}"  # no resamples: no interval
    ids = ds.values("id")
    ds.select([ids[3], ids[7]]).tag_samples("pair")  # two samples without other tags
    rows = {r["slice"]: r["n"] for r in slice_table(ds, "q", "tags", higher_is_better=True)}
    assert rows["pair"] == 2  # a slice of two is shown by default, a slice of one is not
    ds.select(ids[11]).tag_samples("solo")
    assert "solo" not in {r["slice"] for r in slice_table(ds, "q", "tags", higher_is_better=True)}
    assert "solo" in {r["slice"] for r in slice_table(ds, "q", "tags", higher_is_better=True, min_n=1)}


def test_the_direction_recorded_by_a_quality_run_is_used(tagged):
    ds, gts, q, correct, tags = tagged
    import fiftyone_dnniqa as dq
    from fiftyone_dnniqa.core.images import InputSpec
    from fiftyone_dnniqa.metrics.base import QualityMetric

    class Darkness(QualityMetric):
        name = "darkness_probe"
        higher_is_better = False
        input_spec = InputSpec(resize=8, crop=8)

        def score(self, images, references=None, labels=None):
            return 1 - images.mean(dim=(1, 2, 3)).double()

    dq.compute_quality(ds, Darkness(), field="dark", device="cpu", num_workers=0, progress=False)
    ds.set_values("dark", (-q).tolist())  # the run's field, with values whose sign is known
    read = slice_table(ds, "dark", "class")
    assert read == slice_table(ds, "dark", "class", higher_is_better=False)
    assert read != slice_table(ds, "dark", "class", higher_is_better=True)


def test_an_expected_accuracy_needs_ten_scored_samples_of_both_outcomes(tagged):
    from fiftyone import ViewField as F

    ds, gts, q, correct, tags = tagged
    assert 0 < correct[:10].sum() < 10
    assert all(r["expected"] for r in slice_table(ds.limit(10), "q", "class", higher_is_better=True))
    assert not any(r["expected"] for r in slice_table(ds.limit(9), "q", "class", higher_is_better=True))
    everything_right = ds.match(F("eval") == True)  # noqa: E712 (a FiftyOne expression)
    assert len(everything_right) >= 10
    assert not any(r["expected"] for r in slice_table(everything_right, "q", "class", higher_is_better=True))
    first = ds.limit(10).first()
    first["q"] = None  # 9 scored samples are left
    first.save()
    assert not any(r["expected"] for r in slice_table(ds.limit(10), "q", "class", higher_is_better=True))


def test_a_slice_called_all_gets_its_expected_accuracy(tagged):
    ds, gts, q, correct, tags = tagged
    ds.select(ds.values("id")[3::4]).tag_samples("all")  # the samples without other tags
    rows = {r["slice"]: r for r in slice_table(ds, "q", "tags", higher_is_better=True)}
    assert rows["all"]["n"] == 9 and rows["all"]["expected"]


def test_errors_name_what_is_missing(tagged):
    from fiftyone_dnniqa.analysis.breakdowns import cause_view, predicted_causes

    ds = tagged[0]
    missing = r"^no predicted causes: run compute_quality\(view, 'cause'\) first$"
    with pytest.raises(ValueError, match=missing):
        slice_labels(ds, "cause", ds.values("id"))
    with pytest.raises(ValueError, match=missing):
        cause_view(ds, "blur")
    assert predicted_causes(ds) == []
    with pytest.raises(ValueError, match=r"^unknown slice 'colour'; choose from tags, class, cause$"):
        slice_labels(ds, "colour", ds.values("id"))


def _evaluate(ds, wrong, eval_key):
    ds.set_values(f"pred_{eval_key}", [fo.Classification(label="y" if w else "x") for w in wrong])
    ds.evaluate_classifications(f"pred_{eval_key}", gt_field="ground_truth", eval_key=eval_key)


def test_cause_summary_counts_the_evaluation_asked_for_without_none(with_causes):
    """Against hand counts, with a second cause planted on one photo and one photo left
    without causes (as a failed sample is): the cause with the most errors other than
    "no cause found", errors counted among samples with causes, for the evaluation asked for."""
    from fiftyone_dnniqa.analysis.breakdowns import NO_CAUSE, cause_summary

    ds, _ = with_causes
    samples = list(ds.iter_samples(autosave=True))
    samples[1]["iqa_cause"] = fo.Classifications(classifications=[fo.Classification(label="noise", confidence=0.9)])
    samples[2]["iqa_cause"] = None
    for s in samples:
        s.save()
    first = np.array([None if c is None else (c[0] if c else NO_CAUSE)
                      for c in ds.values("iqa_cause.classifications.label")], dtype=object)
    blur, none = first == "blur", first == NO_CAUSE
    assert blur.sum() >= 2 and none.sum() >= 2 and first[1] == "noise" and first[2] is None
    # a: every blurred photo wrong, and the "noise" one, the one without causes and one "none"
    a = blur.copy()
    a[[1, 2, int(np.flatnonzero(none)[0])]] = True
    _evaluate(ds, a, "a")
    _evaluate(ds, none, "b")  # b: only "none" photos wrong
    c = none.copy()
    c[int(np.flatnonzero(blur)[0])] = True  # c: every "none" photo and one blurred one
    _evaluate(ds, c, "c")
    with_cause = np.array([f is not None for f in first])
    s = cause_summary(ds, "a")
    errors = int(a[with_cause].sum())  # the error without causes is not counted
    elsewhere = with_cause & ~blur
    assert s == pytest.approx({"cause": "blur", "share_of_errors": blur.sum() / errors, "n": int(blur.sum()),
                               "accuracy": 0.0, "accuracy_elsewhere": 1 - a[elsewhere].mean()})
    assert cause_summary(ds, "b") is None  # every error is on images where nothing was found
    assert cause_summary(ds, "c")["cause"] == "blur" and cause_summary(ds)["cause"] == "blur"
    with warnings.catch_warnings():  # nothing elsewhere: NaN, without averaging an empty set
        warnings.simplefilter("error", RuntimeWarning)
        only_blur = cause_summary(ds.select([i for i, b in zip(ds.values("id"), blur) if b]), "a")
    assert (only_blur["cause"], only_blur["n"], only_blur["accuracy"]) == ("blur", blur.sum(), 0.0)
    assert math.isnan(only_blur["accuracy_elsewhere"])
