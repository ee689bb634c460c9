"""The accuracy to expect on a view (``analysis/expectation.py``): the prior is fitted
outside the view (or on one half of it), checked against scikit-learn's isotonic
regression, numpy means and a Wilson interval written out by hand."""

import math

import numpy as np
import pytest
import scipy.stats
from sklearn.isotonic import IsotonicRegression

import fiftyone as fo

from fiftyone_dnniqa.analysis import expectation as E

N, N_BATCH, N_NEW = 60, 20, 10  # evaluated samples, of which in the batch; unlabelled new ones


def three(v):
    """The one number format, written out: three decimals."""
    return f"{v:.3f}"


def _wilson(k, n, confidence):
    z = scipy.stats.norm.ppf(0.5 + confidence / 2)
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return centre - half, centre + half


@pytest.fixture(scope="module")
def world():
    """60 evaluated samples whose correctness follows ``q`` (and ``neg = -q``, a
    lower-is-better copy); 20 of them and 10 unlabelled new samples tagged "batch"."""
    rng = np.random.default_rng(5)
    q = rng.uniform(0, 1, N + N_NEW)
    correct = rng.random(N) < 0.1 + 0.8 * q[:N]
    samples = []
    for i in range(N + N_NEW):
        s = fo.Sample(filepath=f"/nonexistent/e{i}.jpg", q=float(q[i]), neg=float(-q[i]),
                      tags=["batch"] if i >= N - N_BATCH else [])
        if i < N:
            s["ground_truth"] = fo.Classification(label="a")
            s["predictions"] = fo.Classification(label="a" if correct[i] else "b", confidence=0.5)
        samples.append(s)
    ds = fo.Dataset()
    ds.add_samples(samples[:N], progress=False)
    ds.evaluate_classifications("predictions", gt_field="ground_truth", eval_key="eval", progress=False)
    ds.add_samples(samples[N:], progress=False)  # new, after the evaluation: no target
    yield ds, q, correct.astype(float)
    ds.delete()


@pytest.mark.parametrize("field,hib", [("q", True), ("neg", False)])
def test_a_batch_is_predicted_by_a_prior_fitted_outside_it(world, field, hib):
    ds, q, correct = world
    batch = ds.match_tags("batch")
    e = E.expected_view_accuracy(batch, field, "eval", higher_is_better=hib, confidence=0.9)
    fit = slice(0, N - N_BATCH)  # the evaluated samples outside the batch
    iso = IsotonicRegression(out_of_bounds="clip").fit(q[fit], correct[fit])
    assert e.source == E.OUTSIDE and e.n_fit == N - N_BATCH and e.n == N_BATCH + N_NEW
    assert e.estimate == pytest.approx(iso.predict(q[N - N_BATCH:]).mean(), abs=1e-9)
    assert 0 <= e.low <= e.estimate <= e.high <= 1 and e.high - e.low > 0.05
    labelled = correct[N - N_BATCH:]
    assert e.n_measured == N_BATCH and e.measured == pytest.approx(labelled.mean())
    assert (e.measured_low, e.measured_high) == pytest.approx(_wilson(labelled.sum(), N_BATCH, 0.9))
    text = E.expectation_sentence(e)
    assert text.startswith(f"Accuracy to expect from {field} alone: {three(e.estimate)} "
                           f"[{three(e.low)}, {three(e.high)}] (90% interval) for the 30 scored "
                           "samples of this view, from a prior fitted on the 40 evaluated samples outside it")
    assert text.endswith(f"measured {three(labelled.mean())} [{three(e.measured_low)}, "
                         f"{three(e.measured_high)}] on the 20 with a label")


def test_the_direction_matters_and_is_never_guessed(world):
    """On the batch's best images, the lower-is-better ``neg`` read the right way predicts
    a high accuracy; read the wrong way its prior is (nearly) flat. A field without a
    quality run and no direction given is refused."""
    ds, q, correct = world
    best = ds.match_tags("batch").match(fo.ViewField("q") > 0.6)
    inside = (q > 0.6) & (np.arange(N + N_NEW) >= N - N_BATCH)
    fit = ~inside[:N]  # every evaluated sample outside the view, in the batch or not
    for hib in (True, False):
        e = E.expected_view_accuracy(best, "neg", "eval", higher_is_better=hib)
        iso = IsotonicRegression(increasing=hib, out_of_bounds="clip").fit(-q[:N][fit], correct[fit])
        assert e.estimate == pytest.approx(iso.predict(-q[inside]).mean(), abs=1e-9), hib
    right = E.expected_view_accuracy(best, "neg", "eval", higher_is_better=False).estimate
    assert right - E.expected_view_accuracy(best, "neg", "eval", higher_is_better=True).estimate > 0.1
    with pytest.raises(ValueError, match="cannot tell whether high or low 'neg' is better"):
        E.expected_view_accuracy(best, "neg", "eval")


def test_an_unlabelled_view_gets_an_estimate_and_says_it_cannot_be_checked(world):
    ds, q, correct = world
    new = ds.match(~fo.ViewField("ground_truth").exists())
    e = E.expected_view_accuracy(new, "q", "eval", True)
    iso = IsotonicRegression(out_of_bounds="clip").fit(q[:N], correct)
    assert e.source == E.OUTSIDE and e.n_fit == N and e.n == N_NEW and e.n_measured == 0
    assert e.estimate == pytest.approx(iso.predict(q[N:]).mean(), abs=1e-9)
    assert E.expectation_sentence(e).endswith("; none of them has a label to check it")


def test_the_whole_dataset_is_fitted_on_one_half_and_checked_on_the_other(world):
    ds, q, correct = world
    e = E.expected_view_accuracy(ds, "q", "eval", True, confidence=0.8)
    assert e.source == E.HALVES and e.n + e.n_fit == N and abs(e.n - N / 2) <= 1
    k = round(e.measured * e.n)
    assert k == pytest.approx(e.measured * e.n)  # a share of the held-out half's samples
    assert (e.measured_low, e.measured_high) == pytest.approx(_wilson(k, e.n, 0.8))
    assert 0 <= e.low <= e.estimate <= e.high <= 1
    assert "for a held-out half of this view (30 samples), from a prior fitted on the other half (30)" \
        in E.expectation_sentence(e)


def test_too_little_to_fit_gives_none(world, make_dataset):
    ds, q, correct = world
    # at the boundaries: 30 evaluated samples outside, or 40 labelled inside
    assert E.expected_view_accuracy(ds.skip(30), "q", "eval", True).source == E.OUTSIDE
    assert E.expected_view_accuracy(ds.skip(29), "q", "eval", True) is None  # 29 outside, 31 inside
    assert E.expected_view_accuracy(ds.limit(40), "q", "eval", True).source == E.HALVES  # 20 outside
    assert E.expected_view_accuracy(ds.limit(39), "q", "eval", True) is None  # 21 outside, 39 inside
    assert E.expectation_sentence(None) is None
    same = make_dataset([f"/nonexistent/s{i}.jpg" for i in range(50)], q=list(np.linspace(0, 1, 50)),
                        ground_truth=[fo.Classification(label="a")] * 50,
                        predictions=[fo.Classification(label="a")] * 50)
    same.evaluate_classifications("predictions", gt_field="ground_truth", eval_key="eval", progress=False)
    assert E.expected_view_accuracy(same, "q", "eval", True) is None  # all right: no prior to fit
