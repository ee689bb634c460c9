"""Two blind spots, checked across the analysis (issue 27, item 6).

Direction: every statistic that takes ``higher_is_better`` must give, for a lower-is-better
field, exactly what it gives for the same field negated and declared higher-is-better
(a metamorphic oracle), and the object statistics must equal scikit-learn on the oriented
values. Splits: whatever is reported as held out (``heldout_error``, the conformal
calibration of the accuracy estimators, the panel's expectation from samples outside the
view) must be fitted without the samples it is checked on: spies record what each fit saw.
"""

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

import fiftyone as fo
import fiftyone_dnniqa as dq
from fiftyone_dnniqa.analysis import accuracy as ACC
from fiftyone_dnniqa.analysis import expectation as EXP
from fiftyone_dnniqa.analysis import prior as PRIOR
from fiftyone_dnniqa.analysis.correlation import auroc, correlate
from fiftyone_dnniqa.analysis.grouping import group_level_correlations, group_table
from fiftyone_dnniqa.analysis.objects import object_statistics_arrays, size_strata, within_strata_auroc

from test_objects import W, H, _evaluated, _within_strata_auroc


def _data(n=400, seed=3):
    """Quality with a real (noisy) link to correctness, distinct values, groups and sizes."""
    rng = np.random.default_rng(seed)
    q = rng.permutation(np.linspace(0.01, 0.99, n)) + rng.normal(0, 1e-6, n)
    groups = rng.integers(0, 8, n)
    p = np.clip(0.2 + 0.7 * q - 0.05 * groups, 0.02, 0.98)
    correct = (rng.random(n) < p).astype(float)
    area = rng.uniform(50, 5000, n) * (0.5 + q)
    return q, correct, groups, area


# ---------------------------------------------------------------------------
# Direction
# ---------------------------------------------------------------------------


def test_object_statistics_of_a_lower_is_better_field_equal_sklearn_on_the_flipped_values():
    q, c, _, area = _data()
    bad = 1.0 - q  # lower is better
    st = object_statistics_arrays(bad, c, area, higher_is_better=False, n_boot=0).to_dict()
    codes = size_strata(area, 3)
    assert st["quality"]["auroc"]["estimate"] == pytest.approx(roc_auc_score(c, -bad))
    assert st["given_size"]["estimate"] == pytest.approx(_within_strata_auroc(-bad, c, codes))
    for s, row in enumerate(st["strata"]):
        m = codes == s
        assert row["auroc"]["estimate"] == pytest.approx(roc_auc_score(c[m], -bad[m]))
    # and the pooled AUROC is not the unflipped one (the test can see a lost flip)
    assert abs(st["given_size"]["estimate"] - _within_strata_auroc(bad, c, codes)) > 0.2


def test_object_statistics_on_a_dataset_read_the_direction_they_are_given(make_dataset, tmp_path):
    """The same objects' ``q`` stored negated as ``bad`` (lower is better): AUROC given
    size, per stratum and overall equal scikit-learn on ``q`` itself."""
    ds = _evaluated(make_dataset, tmp_path)
    for sample in ds.iter_samples(autosave=True):
        for det in sample["gt"].detections:
            det["bad"] = -det["q"]
    status = np.array(ds.values("gt.detections.eval", unwind=True))
    q = np.array(ds.values("gt.detections.q", unwind=True), dtype=float)
    area = np.array([b[2] * b[3] * W * H for v in ds.values("gt.detections.bounding_box") for b in v])
    c = (status == "tp").astype(float)
    st = dq.object_statistics(ds, "bad", eval_key="eval", side="gt", higher_is_better=False,
                              n_boot=100).to_dict()
    codes = np.searchsorted(np.quantile(area, [1 / 3, 2 / 3]), area, side="right")
    assert st["quality"]["auroc"]["estimate"] == pytest.approx(roc_auc_score(c, q))
    assert st["given_size"]["estimate"] == pytest.approx(_within_strata_auroc(q, c, codes))
    assert st["given_size"]["ci_low"] < st["given_size"]["estimate"] < st["given_size"]["ci_high"]


def _undirected(result):
    """A result without its record of the direction it was given."""
    if isinstance(result, dict):
        return {k: _undirected(v) for k, v in result.items() if k != "higher_is_better"}
    if isinstance(result, list):
        return [_undirected(v) for v in result]
    return result


@pytest.mark.parametrize("name", ["correlate", "auroc", "within_strata_auroc", "group_table",
                                  "group_level_correlations"])
def test_statistics_see_a_lower_is_better_field_as_its_negation(name):
    q, c, groups, area = _data()
    codes = size_strata(area, 3)
    calls = {
        "correlate": lambda x, hib: correlate(x, c, "spearman", hib, n_boot=200, seed=1).to_dict(),
        "auroc": lambda x, hib: auroc(x, c, hib, n_boot=200, seed=1).to_dict(),
        "within_strata_auroc": lambda x, hib: within_strata_auroc(x, c, codes, hib, n_boot=200, seed=1),
        "group_table": lambda x, hib: [
            {k: v for k, v in r.to_row().items() if k != "mean quality"}
            for r in group_table(x, c, groups, higher_is_better=hib, n_boot=100, seed=1)],
        "group_level_correlations": lambda x, hib: [
            {m: r.to_dict() for m, r in group_level_correlations(x, c, groups, higher_is_better=hib,
                                                                 n_boot=100, seed=1).items()}],
    }
    assert _undirected(calls[name](1.0 - q, False)) == _undirected(calls[name](q - 1.0, True))
    assert _undirected(calls[name](q, True)) != _undirected(calls[name](q, False))  # the flag is read


@pytest.mark.parametrize("estimator", ["isotonic", "atc", "doc", "doc_fit", "quantile"])
def test_accuracy_estimators_see_a_lower_is_better_field_as_its_negation(estimator):
    q, c, groups, _ = _data(n=800)
    families = groups % 4
    low = ACC.fit_accuracy_model(1 - q, c, groups=groups, families=families, estimator=estimator,
                                 higher_is_better=False)
    high = ACC.fit_accuracy_model(q - 1, c, groups=groups, families=families, estimator=estimator)
    for g in range(8):
        sel = groups == g
        assert low.interval(1 - q[sel]) == pytest.approx(high.interval(q[sel] - 1))
    if estimator in ("doc_fit", "quantile"):
        return  # linear maps of group features: a flipped sign is learnt, the flag cannot matter
    ignored = ACC.fit_accuracy_model(1 - q, c, groups=groups, families=families, estimator=estimator)
    assert any(ignored.predict(1 - q[groups == g]) != pytest.approx(low.predict(1 - q[groups == g]))
               for g in range(8))  # the flag is read


def test_the_prior_and_its_heldout_check_see_a_lower_is_better_field_as_its_negation():
    q, c, groups, _ = _data()
    low = PRIOR.PerformancePrior.fit(1 - q, c, higher_is_better=False, n_refits=20, estimator=None)
    high = PRIOR.PerformancePrior.fit(q - 1, c, higher_is_better=True, n_refits=20, estimator=None)
    np.testing.assert_allclose(low.predict(1 - q), high.predict(q - 1))
    a = PRIOR.heldout_error(1 - q, c, groups, higher_is_better=False, n_refits=10, n_boot=100).to_dict()
    b = PRIOR.heldout_error(q - 1, c, groups, higher_is_better=True, n_refits=10, n_boot=100).to_dict()
    # the interval comes from bootstrap refits drawn over the values in sorted order, which
    # the flip reverses: it differs by Monte Carlo noise only; the rest is exact
    for k in ("n", "predicted", "actual", "abs_error"):
        assert a["overall"][k] == pytest.approx(b["overall"][k])
    for ra, rb in zip(a["groups"], b["groups"]):
        assert (ra["group"], ra["n"], ra["predicted"]) == (rb["group"], rb["n"], pytest.approx(rb["predicted"]))


# ---------------------------------------------------------------------------
# Splits
# ---------------------------------------------------------------------------


def _spy(monkeypatch, owner, name, record, arg=0):
    """Wraps ``owner.name`` so that each call's ``arg``-th argument is recorded."""
    real = getattr(owner, name)

    def spy(*args, **kwargs):
        record.append(np.asarray(args[arg], dtype=float).copy())
        return real(*args, **kwargs)
    monkeypatch.setattr(owner, name, spy)


def test_heldout_error_fits_its_prior_on_the_training_half_only(monkeypatch):
    q, c, groups, _ = _data()
    fitted, checked = [], []
    real_fit = PRIOR.PerformancePrior.fit.__func__

    def fit_spy(cls, quality, *args, **kwargs):
        fitted.append(np.asarray(quality, dtype=float).copy())
        return real_fit(cls, quality, *args, **kwargs)
    monkeypatch.setattr(PRIOR.PerformancePrior, "fit", classmethod(fit_spy))
    real_predict = PRIOR.PerformancePrior.predict_accuracy

    def predict_spy(self, quality, *args, **kwargs):
        checked.append(np.asarray(quality, dtype=float).copy())
        return real_predict(self, quality, *args, **kwargs)
    monkeypatch.setattr(PRIOR.PerformancePrior, "predict_accuracy", predict_spy)

    res = PRIOR.heldout_error(q, c, groups, n_refits=5, n_boot=50)
    assert len(fitted) == 1 and len(fitted[0]) == res.n_train
    train, test = set(fitted[0].tolist()), set(checked[0].tolist())
    assert len(checked[0]) == res.n_test and not train & test
    assert train | test == set(q.tolist())
    for rows in checked[1:]:  # every group's check is inside the held-out half
        assert set(rows.tolist()) <= test


def test_the_conformal_calibration_never_predicts_a_family_from_a_fit_that_saw_it(monkeypatch):
    q, c, groups, _ = _data(n=800)
    families = groups % 4
    fits, predicted = [], []
    _spy(monkeypatch, ACC, "_fit_params", fits, arg=1)
    _spy(monkeypatch, ACC, "_predict", predicted, arg=2)
    model = ACC.fit_accuracy_model(q, c, groups=groups, families=families, estimator="doc_fit")
    # the first fit is the model itself, on everything; each later fit precedes the
    # predictions of the family it left out
    assert set(fits[0].tolist()) == set(q.tolist())
    n_checked = 0
    fit_index = 0
    calibration_fits = fits[1:]
    for fam in np.unique(families):
        seen = set(calibration_fits[fit_index].tolist())
        left_out = set(q[families == fam].tolist())
        assert not seen & left_out and seen | left_out == set(q.tolist())
        fit_index += 1
    for rows in predicted:
        n_checked += len(rows)
    assert n_checked == len(q) and len(model.calibration["measured"]) == 8


def test_the_views_expectation_is_fitted_outside_the_view(monkeypatch, make_dataset, imagenet_files):
    """The panel's "accuracy to expect" on a view: the prior sees the samples outside it."""
    q, c, _, _ = _data(n=120)
    ds = make_dataset(list(imagenet_files[:1]) * 120)
    ds.set_values("quality", q.tolist())
    ds.set_values("ground_truth", [fo.Classification(label="cat") for _ in q])
    ds.set_values("predictions", [fo.Classification(label="cat" if k else "dog") for k in c])
    ds.evaluate_classifications("predictions", gt_field="ground_truth", eval_key="eval")
    fitted = []
    real_fit = PRIOR.PerformancePrior.fit.__func__

    def fit_spy(cls, quality, *args, **kwargs):
        fitted.append(np.asarray(quality, dtype=float).copy())
        return real_fit(cls, quality, *args, **kwargs)
    monkeypatch.setattr(EXP.PerformancePrior, "fit", classmethod(fit_spy))
    view = ds.skip(80)
    got = EXP.expected_view_accuracy(view, "quality", "eval", higher_is_better=True)
    assert len(fitted) == 1 and set(fitted[0].tolist()) == set(q[:80].tolist())
    assert got.source == "outside" and got.n_fit == 80 and got.n == 40
    assert got.measured == pytest.approx(c[80:].mean())
