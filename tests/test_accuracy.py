"""Accuracy of an unlabelled batch (analysis.accuracy): each estimator against an
independent oracle (its definition by brute force, numpy, scikit-learn), conformal
quantiles by hand, intervals that reach their coverage on simulated shifts with known
truth, the prior that carries the estimator, and the benchmark's leave-families-out
protocol (no held-out family leaks into a fit)."""

import json
import math
import os
import re
import sys
import warnings

import numpy as np
import pytest
from scipy.special import expit
from scipy.stats import norm
from sklearn.isotonic import IsotonicRegression
from sklearn.linear_model import Ridge
from sklearn.preprocessing import StandardScaler

from fiftyone_dnniqa.analysis import accuracy as ACC
from fiftyone_dnniqa.analysis import prior as PR

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _source(n=3000, seed=0):
    rng = np.random.default_rng(seed)
    q = rng.random(n)
    return q, (rng.random(n) < 0.15 + 0.8 * q).astype(float)


# ---------------------------------------------------------------------------
# Estimators against their definitions
# ---------------------------------------------------------------------------


def _atc_brute_force(q_source, correct, q_target):
    """ATC from its definition: among candidate thresholds (every source score, and +inf),
    the one whose share of source scores strictly below it is closest to the source
    error; the estimate is the share of target scores at or above it."""
    err = 1 - correct.mean()
    cands = np.append(np.sort(q_source), np.inf)
    below = np.array([(q_source < t).mean() for t in cands])
    t = cands[np.argmin(np.abs(below - err))]
    return t, (q_target >= t).mean()


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_atc_matches_its_definition_by_brute_force(seed):
    q, c = _source(n=601, seed=seed)  # odd n: the source error never falls half-way between counts
    target = np.random.default_rng(seed + 10).random(400) ** 2
    t_ref, est_ref = _atc_brute_force(q, c, target)
    t = ACC.atc_threshold(q, c)
    assert t == t_ref
    assert ACC.atc_estimate(t, target) == pytest.approx(est_ref, abs=0)
    # on its own source the estimate is the source accuracy (up to one sample)
    assert abs(ACC.atc_estimate(t, q) - c.mean()) <= 1 / (2 * len(q)) + 1e-12
    # everything wrong: no score reaches the threshold; everything right: the threshold is
    # the lowest source score
    assert ACC.atc_estimate(ACC.atc_threshold(q, np.zeros_like(c)), target) == 0.0
    assert ACC.atc_estimate(ACC.atc_threshold(q, np.ones_like(c)), target) == (target >= q.min()).mean()
    model = ACC.fit_accuracy_model(q, c, estimator="atc")
    assert model.predict(target) == pytest.approx(est_ref, abs=0)


def test_atc_reads_lower_is_better_scores_through_their_sign():
    q, c = _source(n=501, seed=4)
    target = np.random.default_rng(5).random(300)
    up = ACC.fit_accuracy_model(q, c, estimator="atc")
    down = ACC.fit_accuracy_model(-q, c, estimator="atc", higher_is_better=False)
    assert down.predict(-target) == up.predict(target)


@pytest.mark.parametrize("hib", [True, False])
def test_isotonic_estimator_is_the_mean_of_scikit_learns_map(hib):
    q, c = _source(n=2000, seed=6)
    q = q if hib else -q
    target = np.random.default_rng(7).normal(0.3, 0.4, 500) * (1 if hib else -1)
    ref = IsotonicRegression(increasing=hib, out_of_bounds="clip").fit(q, c).predict(target).mean()
    model = ACC.fit_accuracy_model(q, c, estimator="isotonic", higher_is_better=hib)
    assert model.predict(target) == pytest.approx(ref, abs=1e-12)
    assert model.predict(np.append(target, np.nan)) == pytest.approx(ref, abs=1e-12)  # NaN ignored


def _shifted_groups(n_groups=40, n=150, seed=0):
    """Groups whose quality distribution and accuracy both shift."""
    rng = np.random.default_rng(seed)
    q, c, g = [], [], []
    for k in range(n_groups):
        qq = np.clip(rng.normal(rng.uniform(0.2, 0.9), 0.15, n), 0, 1)
        q.append(qq)
        c.append(rng.random(n) < np.clip(0.1 + 0.9 * qq + rng.normal(0, 0.05), 0, 1))
        g.append(np.full(n, k))
    return np.concatenate(q), np.concatenate(c).astype(float), np.concatenate(g)


def test_doc_by_hand_and_doc_fit_against_numpy_least_squares():
    q, c, g = _shifted_groups()
    target = np.random.default_rng(1).random(300) * 0.5
    doc = ACC.fit_accuracy_model(q, c, groups=g, estimator="doc")
    assert doc.predict(target) == pytest.approx(c.mean() + target.mean() - q.mean(), abs=1e-12)
    fit = ACC.fit_accuracy_model(q, c, groups=g, estimator="doc_fit")
    m = np.array([q[g == k].mean() for k in range(40)])
    a = np.array([c[g == k].mean() for k in range(40)])
    (slope, intercept), *_ = np.linalg.lstsq(np.stack([m, np.ones_like(m)], 1), a, rcond=None)
    assert fit.predict(target) == pytest.approx(intercept + slope * target.mean(), abs=1e-10)
    # clipped to [0, 1]
    assert doc.predict(np.full(10, 5.0)) == 1.0 and fit.predict(np.full(10, -5.0)) == 0.0


def test_quantile_regression_matches_scikit_learns_ridge():
    q, c, g = _shifted_groups(seed=3)
    X = np.stack([np.append(np.quantile(q[g == k], ACC.QUANTILE_LEVELS), q[g == k].mean()) for k in range(40)])
    a = np.array([c[g == k].mean() for k in range(40)])
    scaler = StandardScaler().fit(X)
    ridge = Ridge(alpha=ACC._RIDGE * len(a)).fit(scaler.transform(X), a)
    target = np.clip(np.random.default_rng(9).normal(0.5, 0.2, 250), 0, 1)
    feats = np.append(np.quantile(target, [0.1, 0.25, 0.5, 0.75, 0.9]), target.mean())  # the levels, by hand
    ref = float(np.clip(ridge.predict(scaler.transform(feats[None]))[0], 0, 1))
    model = ACC.fit_accuracy_model(q, c, groups=g, estimator="quantile")
    assert model.predict(target) == pytest.approx(ref, abs=1e-9)
    with pytest.raises(ValueError, match="source groups"):
        ACC.fit_accuracy_model(q, c, estimator="quantile", groups=g % 3)
    with pytest.raises(ValueError, match="unknown estimator"):
        ACC.fit_accuracy_model(q, c, estimator="nope")


# ---------------------------------------------------------------------------
# Conformal intervals
# ---------------------------------------------------------------------------


def test_conformal_quantile_by_hand():
    s = np.arange(10, 0, -1.0)  # 10..1, unsorted on purpose
    assert ACC.conformal_quantile(s, 0.9) == 10.0  # ceil(11 * 0.9) = 10th smallest
    assert ACC.conformal_quantile(s, 0.8) == 9.0  # ceil(8.8) = 9th
    assert ACC.conformal_quantile(s, 0.5) == 6.0  # ceil(5.5) = 6th
    assert ACC.conformal_quantile(s, 0.95) == math.inf  # ceil(10.45) = 11 > 10
    assert ACC.conformal_quantile([], 0.9) == math.inf


def test_conformal_quantile_covers_exchangeable_scores():
    """Split-conformal validity: a fresh score falls at or below the quantile of m earlier
    ones with probability in [conf, conf + 1/(m + 1)]."""
    rng = np.random.default_rng(0)
    m, conf, reps = 19, 0.9, 20000
    cal = rng.standard_exponential((reps, m))
    new = rng.standard_exponential(reps)
    hits = np.mean([new[r] <= ACC.conformal_quantile(cal[r], conf) for r in range(reps)])
    # P = ceil(20 * 0.9) / 20 = 0.9 exactly here; 3 standard errors of slack
    assert abs(hits - 0.9) < 3 * math.sqrt(0.09 / reps)


def _families(n_fam, groups_per_fam, n, rng, sigma_shift):
    """Families of groups; each group has its own accuracy offset (a shift no quality
    score sees), so the truth is known: P(correct | q, group) = expit(4 q - 2 + b_g)."""
    q, c, g, f = [], [], [], []
    for fam in range(n_fam):
        for k in range(groups_per_fam):
            qq = rng.normal(rng.uniform(-0.2, 1.0), 0.3, n)
            p = expit(4 * qq - 2 + rng.normal(0, sigma_shift))
            q.append(qq)
            c.append(rng.random(n) < p)
            g.append(np.full(n, fam * groups_per_fam + k))
            f.append(np.full(n, fam))
    return np.concatenate(q), np.concatenate(c).astype(float), np.concatenate(g), np.concatenate(f)


@pytest.mark.parametrize("estimator", ["isotonic", "doc_fit"])
def test_intervals_reach_nominal_coverage_on_a_simulated_shift(estimator):
    rng = np.random.default_rng(11)
    q, c, g, f = _families(6, 10, 60, rng, sigma_shift=0.5)
    model = ACC.fit_accuracy_model(q, c, groups=g, families=f, estimator=estimator)
    assert model.tau2 > 0.002  # the shifts show beyond binomial noise
    tq, tc, tg, _ = _families(20, 20, 60, rng, sigma_shift=0.5)  # new shifts, same kind
    covered, covered_binomial = [], []
    binomial_only = ACC.AccuracyModel(model.estimator, model.params, True, {}, model.n_train)
    for k in np.unique(tg):
        sel = tg == k
        measured = tc[sel].mean()
        _, lo, hi = model.interval(tq[sel], 0.9)
        covered.append(lo <= measured <= hi)
        _, lo, hi = binomial_only.interval(tq[sel], 0.9)
        covered_binomial.append(lo <= measured <= hi)
    # 400 groups: the coverage's standard error is 0.015
    assert np.mean(covered) >= 0.87
    assert np.mean(covered) <= 0.98  # not trivially wide
    assert np.mean(covered_binomial) < 0.8  # binomial noise alone misses the shift


def test_binomial_only_interval_by_hand():
    model = ACC.AccuracyModel("doc", {"source_accuracy": 0.7, "source_mean": 0.5})
    q = np.full(50, 0.6)
    est, lo, hi = model.interval(q, 0.9)
    p = 0.8
    pt = (p * 50 + 0.5) / 51
    half = norm.ppf(0.95) * math.sqrt(pt * (1 - pt) / 50)
    assert (est, lo, hi) == pytest.approx((p, p - half, p + half), abs=1e-12)


def test_calibrated_interval_by_hand():
    calib = {"measured": [0.5, 0.7, 0.9, 0.4], "predicted": [0.6, 0.6, 0.8, 0.45], "n": [20, 20, 20, 20]}
    model = ACC.AccuracyModel("doc", {"source_accuracy": 0.6, "source_mean": 0.0}, True, calib)
    a, p, n = (np.array(calib[k], float) for k in ("measured", "predicted", "n"))
    pt = (p * n + 0.5) / (n + 1)
    tau2 = max(0.0, np.mean((a - p) ** 2 - pt * (1 - pt) / n))
    assert model.tau2 == pytest.approx(tau2, abs=1e-15)
    scores = np.sort(np.abs(a - p) / np.sqrt(pt * (1 - pt) / n + tau2))
    qhat = scores[math.ceil(5 * 0.75) - 1]  # the 4th of 4
    est, lo, hi = model.interval(np.zeros(30), 0.75)
    ptn = (0.6 * 30 + 0.5) / 31
    half = qhat * math.sqrt(ptn * (1 - ptn) / 30 + tau2)
    assert (est, lo, hi) == pytest.approx((0.6, 0.6 - half, 0.6 + half), abs=1e-12)


# ---------------------------------------------------------------------------
# Slices, persistence, the prior
# ---------------------------------------------------------------------------


def test_estimate_slices_rows_and_list_labels():
    q, c, g = _shifted_groups(n_groups=10, n=40, seed=5)
    model = ACC.fit_accuracy_model(q, c, groups=g)
    tq = np.array([0.9, 0.8, np.nan, 0.2, 0.1, 0.5])
    tags = [["a"], ["a", "b"], ["b"], [], ["b"], None]
    rows = ACC.estimate_slices(model, tq, tags, confidence=0.8)
    assert [r["slice"] for r in rows] == ["all", "a", "b"]
    assert [(r["n"], r["n_missing"]) for r in rows] == [(5, 1), (2, 0), (2, 1)]
    for r, idx in zip(rows, ([0, 1, 2, 3, 4, 5], [0, 1], [1, 2, 4])):
        assert (r["estimate"], r["low"], r["high"]) == model.interval(tq[idx], 0.8)
    with pytest.raises(ValueError, match="entries"):
        ACC.estimate_slices(model, tq, ["x"])


def test_group_estimators_need_groups_and_auto_falls_back(monkeypatch):
    q, c = _source(n=300)
    for est in ACC.GROUP_ESTIMATORS:
        with pytest.raises(ValueError, match="pass groups"):
            ACC.fit_accuracy_model(q, c, estimator=est)
    monkeypatch.setattr(ACC, "DEFAULT_ESTIMATOR", "quantile")
    assert ACC.resolve_estimator("auto", True) == "quantile"
    assert ACC.resolve_estimator("auto", False) == "isotonic"
    assert ACC.fit_accuracy_model(q, c).estimator == "isotonic"
    assert PR.PerformancePrior.fit(q, c, n_refits=0).accuracy.estimator == "isotonic"
    assert ACC.resolve_estimator(None, True) is None


def test_prior_carries_the_estimator_through_json(tmp_path):
    q, c, g = _shifted_groups(n_groups=12, n=60, seed=8)
    assert PR.PerformancePrior.fit(q, c, groups=g, n_refits=0).accuracy.estimator == ACC.DEFAULT_ESTIMATOR
    prior = PR.PerformancePrior.fit(q, c, groups=g, n_refits=5, estimator="isotonic")
    assert prior.accuracy.estimator == "isotonic" and len(prior.accuracy.calibration["n"]) == 12
    back = PR.PerformancePrior.load(prior.save(tmp_path / "p.json"))
    tq = np.random.default_rng(0).random(200)
    assert back.expected_accuracy(tq) == prior.expected_accuracy(tq)
    # the isotonic estimate is the mean of the prior's own map
    assert prior.expected_accuracy(tq)[0]["estimate"] == pytest.approx(prior.predict(tq).mean(), abs=1e-12)
    # a prior saved before the estimator existed: the map, with binomial-only intervals
    d = prior.to_dict()
    del d["accuracy"]
    old = PR.PerformancePrior.from_dict(d)
    assert old.accuracy is None
    row = old.expected_accuracy(tq, confidence=0.9)[0]
    p = prior.predict(tq).mean()
    pt = (p * 200 + 0.5) / 201
    half = norm.ppf(0.95) * math.sqrt(pt * (1 - pt) / 200)
    assert (row["estimate"], row["low"], row["high"]) == pytest.approx((p, p - half, p + half), abs=1e-12)
    # lower-is-better: the fallback reads the map through the sign
    low = PR.PerformancePrior.fit(-q, c, higher_is_better=False, n_refits=0, estimator=None)
    assert low.accuracy is None
    assert low.expected_accuracy(-tq)[0]["estimate"] == pytest.approx(low.predict(-tq).mean(), abs=1e-12)


def test_apply_prior_and_the_slice_table_on_a_dataset(imagenet_files, make_dataset):
    import fiftyone as fo

    q, c, g = _shifted_groups(n_groups=10, n=50, seed=2)
    prior = PR.PerformancePrior.fit(q, c, groups=g, field="iqa_q", n_refits=10)
    rng = np.random.default_rng(0)
    tq = rng.random(12)
    labels = ["cat" if k % 3 else "dog" for k in range(12)]
    ds = make_dataset(imagenet_files[:12], iqa_q=[float(v) for v in tq],
                      ground_truth=[fo.Classification(label=lab) for lab in labels])
    ds.take(4, seed=1).tag_samples("night")
    est = PR.apply_prior(ds, prior)
    assert tuple(est) == prior.accuracy.interval(tq, 0.9)
    old = PR.apply_prior(ds, prior, interval="bootstrap", n_boot=200)
    assert tuple(old) == tuple(prior.predict_accuracy(tq, n_boot=200))
    rows = PR.expected_accuracy_table(ds, prior, "ground_truth.label")
    assert [r["slice"] for r in rows] == ["all", "cat", "dog"]
    cat = np.array([lab == "cat" for lab in labels])
    assert (rows[1]["estimate"], rows[1]["low"], rows[1]["high"]) == prior.accuracy.interval(tq[cat], 0.9)
    tagged = PR.expected_accuracy_table(ds.match_tags("night"), prior, "tags")
    assert [(r["slice"], r["n"]) for r in tagged] == [("all", 4), ("night", 4)]


# ---------------------------------------------------------------------------
# The benchmark's protocol
# ---------------------------------------------------------------------------


def _benchmark():
    sys.path.insert(0, os.path.join(ROOT, "benchmarks"))
    import accuracy as bench

    return bench


def _arrays(bench, n=20, seed=0):
    rng = np.random.default_rng(seed)
    corr = [cs[0] for cs in bench.FAMILIES.values()]
    d = {k: [] for k in ("corruption", "severity", "quality:aligned", "correct:m")}
    for cname, sev in [("clean", 0)] + [(c, s) for c in corr for s in range(1, 4)]:
        qq = rng.random(n) * (1 - 0.2 * sev)
        d["corruption"] += [cname] * n
        d["severity"] += [sev] * n
        d["quality:aligned"] += qq.tolist()
        d["correct:m"] += (rng.random(n) < qq).tolist()
    d = {k: np.asarray(v) for k, v in d.items()}
    d["group"] = np.array([f"{c}/{s}" for c, s in zip(d["corruption"], d["severity"])])
    d["family"] = np.array([bench.FAMILY_OF.get(c, "clean") for c in d["corruption"]])
    return d


def _record_fitted_families(monkeypatch, bench):
    """The families of every fit the benchmark makes, in order (the fits run as before)."""
    seen = []
    real = ACC.fit_accuracy_model

    def spy(q, c, groups=None, families=None, **kw):
        seen.append(set(families.tolist()))
        return real(q, c, groups=groups, families=families, **kw)

    monkeypatch.setattr(bench.ACC, "fit_accuracy_model", spy)
    return seen


def test_leave_families_out_never_fits_on_the_family_it_estimates(monkeypatch):
    bench = _benchmark()
    dev, test = _arrays(bench, seed=1), _arrays(bench, seed=2)
    seen = _record_fitted_families(monkeypatch, bench)
    rows = bench.lofo(dev, test, "m", ("x", "aligned", "isotonic", "conformal"), 0.9, 50)
    assert len(seen) == len(bench.FAMILIES)
    for fam, fitted_on in zip(bench.FAMILIES, seen):
        assert fam not in fitted_on and "clean" in fitted_on
        assert len(fitted_on) == len(bench.FAMILIES)  # clean + the 4 other families
    assert {r["family"] for r in rows} == set(bench.FAMILIES) and len(rows) == 3 * len(bench.FAMILIES)
    r = rows[0]
    sel = test["group"] == r["group"]
    assert r["measured"] == test["correct:m"][sel].mean() and r["n"] == 20
    assert r["covered"] == (r["low"] <= r["measured"] <= r["high"])
    s = bench.summarize(rows, 100)
    assert s["mae"] == pytest.approx(np.mean([abs(x["predicted"] - x["measured"]) for x in rows]))
    assert s["coverage"] == np.mean([x["covered"] for x in rows])


@pytest.mark.parametrize("fit_on, expected", [
    ("all", lambda fam, fams: set(fams) | {"clean"}),
    ("own", lambda fam, fams: {fam, "clean"}),
])
def test_the_error_sources_fit_with_and_on_the_estimated_family(monkeypatch, fit_on, expected):
    bench = _benchmark()
    dev, test = _arrays(bench, seed=1), _arrays(bench, seed=2)
    seen = _record_fitted_families(monkeypatch, bench)
    rows = bench.lofo(dev, test, "m", ("x", "aligned", "doc_fit", "conformal"), 0.9, 50, fit_on=fit_on)
    assert seen == [expected(fam, bench.FAMILIES) for fam in bench.FAMILIES]
    assert len(rows) == 3 * len(bench.FAMILIES)
    with pytest.raises(ValueError, match="^fit_on must be one of"):
        bench.fit_mask(dev["family"], "noise", "bogus")


def test_the_limit_line_names_the_fits_that_reach_the_target():
    bench = _benchmark()

    def fits(others, all_, own):
        return {"others": {"mae": others}, "all": {"mae": all_}, "own": {"mae": own}}

    (line,) = bench.limit_lines({"doc_fit (aligned)": fits(0.053, 0.046, 0.035)}, "doc_fit")
    assert line.endswith("0.04 is reached only when the shift is itself labelled.")
    assert "0.053 without the family, 0.046 with every family, 0.035 on the family alone" in line
    (line,) = bench.limit_lines({"doc_fit (aligned)": fits(0.05, 0.041, 0.0401)}, "doc_fit")
    assert line.endswith("0.04 is out of reach of one map from this proxy's confidence, however it is fitted.")
    lines = bench.limit_lines({"doc_fit (aligned)": fits(0.04, 0.03, 0.02), "atc (aligned)": fits(0.1, 0.1, 0.1)},
                              "atc")
    assert lines[0].startswith("`atc`") and lines[1].startswith("`doc_fit`")
    assert lines[1].endswith("0.04 is reached on shifts never fitted.")
    (line,) = bench.limit_lines({"doc_fit (aligned)": fits(0.05, 0.04, 0.03)}, "doc_fit")
    assert line.endswith("0.04 is reached only when the shift is among the fitted families or itself labelled.")


def test_benchmark_reads_the_arrays_alignment_saves(tmp_path):
    """``alignment.py --save-arrays`` keeps the proxy's logits, not ``aligned`` itself:
    the benchmark recomputes it as their max softmax probability."""
    bench = _benchmark()
    rng = np.random.default_rng(0)
    z = {s: rng.normal(0, 3, (4, 1000)).astype(np.float32) for s in ("dev", "test")}
    arrays = {"score:aligned": np.zeros(4), "meta:scoring_s": np.array(1.0)}
    for s in ("dev", "test"):
        arrays.update({f"{s}:corruption": np.array(["clean", "clean", "fog", "fog"]),
                       f"{s}:severity": np.array([0, 0, 2, 2]), f"{s}:image": np.array([0, 1, 0, 1]),
                       f"{s}:label": np.array([3, 4, 3, 4]), f"{s}:proxy_logits": z[s],
                       f"{s}:proxy_feats": np.zeros((4, 8)), f"{s}:correct:m": np.array([1, 0, 1, 1], bool)})
    np.savez(tmp_path / "a.npz", **arrays)
    dev, test, meta = bench.load([str(tmp_path / "a.npz")])
    p = np.exp(z["test"].astype(float))
    np.testing.assert_allclose(test["quality:aligned"], (p / p.sum(1, keepdims=True)).max(1), rtol=1e-9)
    assert list(test["group"]) == ["clean/0", "clean/0", "fog/2", "fog/2"]
    assert list(dev["family"]) == ["clean", "clean", "weather", "weather"]
    assert "proxy_feats" not in dev and meta == {"meta:scoring_s": 1.0}


# ---------------------------------------------------------------------------
# Edges: bad input, small sources, the calibration's bookkeeping, the saved format
# ---------------------------------------------------------------------------

_DOC = ACC.AccuracyModel("doc", {"source_accuracy": 0.7, "source_mean": 0.5})


@pytest.mark.parametrize("call, name", [
    (lambda bad: ACC.atc_threshold(bad, [1.0, 0.0]), "quality"),
    (lambda bad: ACC.atc_threshold([0.1, 0.2], bad), "correct"),
    (lambda bad: ACC.atc_estimate(0.5, bad), "quality"),
    (lambda bad: ACC.conformal_quantile(bad, 0.9), "scores"),
    (lambda bad: _DOC.predict(bad), "quality"),
    (lambda bad: _DOC.interval(bad), "quality"),
    (lambda bad: ACC.fit_accuracy_model(bad, [1.0, 0.0]), "quality"),
    (lambda bad: ACC.fit_accuracy_model([0.1, 0.2], bad), "correct"),
    (lambda bad: ACC.estimate_slices(_DOC, bad), "quality"),
])
def test_non_numeric_input_is_refused_with_its_name(call, name):
    with pytest.raises(TypeError, match=f"^{name} must be numeric"):
        call(["good", "bad"])


def test_wrong_sizes_and_names_are_refused_with_what_is_wrong():
    same = "^quality and correct must be non-empty and of equal length$"
    with pytest.raises(ValueError, match=same):
        ACC.atc_threshold([], [])
    with pytest.raises(ValueError, match=same):
        ACC.atc_threshold([0.1, 0.2], [1.0])
    with pytest.raises(ValueError, match="^length mismatch: quality has 3 values, correct has 2$"):
        ACC.fit_accuracy_model([0.1, 0.2, 0.3], [1.0, 0.0])
    with pytest.raises(ValueError, match="^need at least 2 samples with quality and target, got 1$"):
        ACC.fit_accuracy_model([0.1, np.nan, 0.3], [1.0, 1.0, np.nan])
    with pytest.raises(ValueError, match="^" + re.escape(f"estimator must be one of {ACC.ESTIMATORS} or 'auto'")):
        ACC.fit_accuracy_model([0.1, 0.2], [1.0, 0.0], estimator=None)
    with pytest.raises(ValueError, match="^" + re.escape(f"unknown estimator 'bogus'; choose from {ACC.ESTIMATORS}")):
        ACC.AccuracyModel("bogus", {}).predict([0.5])


def test_empty_groups_give_nan_without_a_warning():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert math.isnan(ACC.atc_estimate(0.5, []))
        assert math.isnan(_DOC.predict([])) and math.isnan(_DOC.predict([np.nan, np.nan]))
        assert all(math.isnan(v) for v in _DOC.interval([np.nan]))


def test_two_samples_are_enough_to_fit():
    model = ACC.fit_accuracy_model([0.2, 0.8], [0.0, 1.0], estimator="isotonic")
    assert model.n_train == 2
    assert model.predict([0.5]) == pytest.approx(0.5, abs=1e-12)  # halfway along the two knots


def test_conformal_quantile_at_the_smallest_rank():
    assert ACC.conformal_quantile([3.0, 1.0, 2.0], 0.2) == 1.0  # ceil(4 * 0.2) = 1st smallest


def test_the_default_confidence_is_ninety_percent():
    rng = np.random.default_rng(2)  # 19 residuals: a 90% quantile exists (the 18th)
    predicted = rng.uniform(0.3, 0.8, 19)
    calib = {"measured": (predicted + rng.normal(0, 0.08, 19)).tolist(), "predicted": predicted.tolist(),
             "n": [20] * 19}
    model = ACC.AccuracyModel("doc", {"source_accuracy": 0.6, "source_mean": 0.0}, True, calib)
    q = np.linspace(-0.2, 0.2, 30)
    assert model.interval(q) == model.interval(q, 0.9) != model.interval(q, 0.8)
    assert 0 < model.interval(q)[1] and model.interval(q)[2] < 1
    assert ACC.estimate_slices(model, q) == ACC.estimate_slices(model, q, confidence=0.9)


def test_intervals_stay_within_zero_and_one():
    half = norm.ppf(0.95) * math.sqrt(0.875 * 0.125 / 3)  # p pulled to 3.5 / 4 over 3 images
    perfect = ACC.AccuracyModel("doc", {"source_accuracy": 1.0, "source_mean": 0.0})
    assert perfect.interval(np.zeros(3), 0.9) == pytest.approx((1.0, 1.0 - half, 1.0), abs=1e-12)
    hopeless = ACC.AccuracyModel("doc", {"source_accuracy": 0.0, "source_mean": 0.0})
    assert hopeless.interval(np.zeros(3), 0.9) == pytest.approx((0.0, 0.0, half), abs=1e-12)


def test_doc_fit_draws_its_line_from_three_groups_of_two_and_is_doc_with_fewer():
    q = np.array([0.1, 0.3, 0.4, 0.6, 0.8, 1.0])
    c = np.array([0.0, 1.0, 1.0, 0.0, 1.0, 1.0])
    g = np.array([0, 0, 1, 1, 2, 2])  # groups of exactly two samples count
    target = np.array([0.5, 0.7])
    m, a = np.array([0.2, 0.5, 0.9]), np.array([0.5, 0.5, 1.0])  # per group, by hand
    (slope, intercept), *_ = np.linalg.lstsq(np.stack([m, np.ones(3)], 1), a, rcond=None)
    fit = ACC.fit_accuracy_model(q, c, groups=g, estimator="doc_fit")
    assert fit.predict(target) == pytest.approx(intercept + slope * 0.6, abs=1e-12)
    two = ACC.fit_accuracy_model(q[:4], c[:4], groups=g[:4], estimator="doc_fit")
    # two groups draw no line: DoC, source accuracy 0.5 plus the change in mean quality
    assert two.predict([0.3, 0.5]) == pytest.approx(0.5 + 0.4 - 0.35, abs=1e-12)


def _groups_of(k, size=10, seed=0):
    rng = np.random.default_rng(seed)
    q = rng.random(k * size)
    return q, (rng.random(k * size) < q).astype(float), np.repeat(np.arange(k), size)


def test_the_quantile_estimator_needs_seven_groups():
    need = len(ACC.QUANTILE_LEVELS) + 2
    assert need == 7
    q, c, g = _groups_of(7)
    assert ACC.fit_accuracy_model(q, c, groups=g, estimator="quantile").estimator == "quantile"
    with pytest.raises(ValueError, match="^the quantile estimator needs at least 7 source groups of 2[+] "
                                         "samples, got 6$"):
        ACC.fit_accuracy_model(q[:60], c[:60], groups=g[:60], estimator="quantile")


def test_groups_of_one_quality_distribution_get_their_mean_accuracy():
    """Every group sees the same scores (no feature varies): the regression has nothing
    to learn and must answer the groups' mean accuracy, whatever the new images."""
    q = np.tile(np.linspace(0, 1, 10), 8)
    c = np.concatenate([np.arange(10) < k for k in range(1, 9)]).astype(float)
    acc = np.arange(1, 9) / 10  # by group
    model = ACC.fit_accuracy_model(q, c, groups=np.repeat(np.arange(8), 10), estimator="quantile")
    assert model.predict(np.array([0.05, 0.2, 0.9])) == pytest.approx(acc.mean(), abs=1e-12)


def test_a_feature_equal_in_every_group_is_ignored_at_any_scale():
    """Scores in the hundreds of thousands (a Laplacian variance can reach them): the
    rounding error of a constant feature grows with the scale, and must still read as
    constant."""
    base = np.tile(np.linspace(0, 1, 10), 8)
    c = np.concatenate([np.arange(10) < k for k in range(1, 9)]).astype(float)
    g = np.repeat(np.arange(8), 10)
    for scale in (1.0, 3e5):
        model = ACC.fit_accuracy_model(1e6 + scale * base, c, groups=g, estimator="quantile")
        assert model.predict(1e6 + scale * np.array([0.05, 0.2, 0.9])) == pytest.approx(0.45, abs=1e-9)


def test_auto_with_groups_is_the_default_estimator():
    q, c, g = _groups_of(8)
    assert ACC.fit_accuracy_model(q, c, groups=g).estimator == ACC.DEFAULT_ESTIMATOR


def test_samples_without_quality_target_or_group_are_left_out():
    q, c, g = _groups_of(8)
    q, c, g = q.copy(), c.copy(), g.astype(object)
    q[3], c[17], g[42] = np.nan, np.nan, None
    keep = np.ones(len(q), bool)
    keep[[3, 17, 42]] = False
    model = ACC.fit_accuracy_model(q, c, groups=g, estimator="doc")
    clean = ACC.fit_accuracy_model(q[keep], c[keep], groups=g[keep].astype(int), estimator="doc")
    assert model.n_train == 77
    assert model.params == clean.params and model.calibration == clean.calibration


def _pseudo_group_sizes(n):
    q = np.linspace(0, 1, n)
    return sorted(ACC.fit_accuracy_model(q, (q > 0.5).astype(float), estimator="isotonic").calibration["n"])


def test_without_groups_twenty_random_pseudo_groups_calibrate():
    """At most 20 pseudo-groups of at least two samples, drawn the same way every time;
    three samples make one group, which nothing is left to calibrate against."""
    assert _pseudo_group_sizes(100) == [5] * 20
    assert _pseudo_group_sizes(11) == [2, 2, 2, 2, 3]
    assert _pseudo_group_sizes(3) == []
    q, c = _source(n=200)
    assert ACC.fit_accuracy_model(q, c).calibration == ACC.fit_accuracy_model(q, c).calibration


def _doc_by_hand(q_fit, c_fit, q_new):
    return float(np.clip(c_fit.mean() + q_new.mean() - q_fit.mean(), 0, 1))


def _assert_calibration(got, measured, predicted, n):
    assert set(got) == {"measured", "predicted", "n"} and got["n"] == n
    assert got["measured"] == pytest.approx(measured, abs=1e-12)
    assert got["predicted"] == pytest.approx(predicted, abs=1e-12)


def test_calibration_leaves_each_family_out_and_skips_what_it_cannot_refit():
    """Each family is left out once and its groups predicted by a fit on the rest; a
    family whose removal leaves fewer than two samples is skipped (and the ones after
    it are still calibrated)."""
    q = np.array([0.2, 0.4, 0.5, 0.7, 0.9, 0.3, 0.6])
    c = np.array([0.0, 1.0, 1.0, 0.0, 1.0, 1.0, 0.0])
    fam = np.array(["a"] * 5 + ["b"] * 2)
    # leaving "a" out keeps two samples (enough), leaving "b" out keeps five
    model = ACC.fit_accuracy_model(q, c, groups=fam, estimator="doc")
    _assert_calibration(model.calibration, [c[:5].mean(), c[5:].mean()],
                        [_doc_by_hand(q[5:], c[5:], q[:5]), _doc_by_hand(q[:5], c[:5], q[5:])], [5, 2])
    # leaving "a" out keeps one sample: skipped, "b" still calibrated
    model = ACC.fit_accuracy_model(q[:6], c[:6], groups=fam[:6], estimator="doc")
    _assert_calibration(model.calibration, [1.0], [_doc_by_hand(q[:5], c[:5], q[5:6])], [1])
    # groups inside families: a group is predicted by a fit without its whole family
    groups = np.array(["a1", "a1", "a2", "a2", "a2", "b1", "b1"])
    model = ACC.fit_accuracy_model(q, c, groups=groups, families=fam, estimator="doc")
    sel = [slice(0, 2), slice(2, 5), slice(5, 7)]
    fit_on = [slice(5, 7), slice(5, 7), slice(0, 5)]
    _assert_calibration(model.calibration, [c[s].mean() for s in sel],
                        [_doc_by_hand(q[f], c[f], q[s]) for s, f in zip(sel, fit_on)], [2, 3, 2])


def test_a_family_without_enough_groups_left_is_skipped_not_the_rest():
    """The quantile estimator needs seven groups: leaving out the family that holds four
    of ten leaves six, so that family gets no residuals; the six one-group families do."""
    q, c, g = _groups_of(10, seed=4)
    fam = np.where(g < 4, 0, g)  # family 0: groups 0-3; families 4..9: one group each
    model = ACC.fit_accuracy_model(q, c, groups=g, families=fam, estimator="quantile")
    assert model.calibration["n"] == [10] * 6
    assert model.calibration["measured"] == pytest.approx([c[g == k].mean() for k in range(4, 10)])


def test_slices_numbers_in_numeric_order_and_missing_entries_skipped():
    model = ACC.AccuracyModel("doc", {"source_accuracy": 0.5, "source_mean": 0.5})
    q = np.array([0.1, 0.2, 0.3, 0.4, 0.5, 0.6])
    slices = [np.int64(10), np.int64(9), np.nan, 2.5, [None, np.int64(9)], "b"]
    rows = ACC.estimate_slices(model, q, slices)
    assert [r["slice"] for r in rows] == ["all", 2.5, 9, 10, "b"]
    assert [type(r["slice"]) for r in rows[2:4]] == [int, int]  # numpy scalars become Python's
    assert [r["n"] for r in rows] == [6, 1, 2, 1, 1]
    assert rows[2]["estimate"] == pytest.approx(0.5 + 0.35 - 0.5, abs=1e-12)  # samples 1 and 4
    json.dumps(rows)
    # anything else sorts as text after the numbers, a flag too
    assert [r["slice"] for r in ACC.estimate_slices(model, q[:3], [True, "b", 2])] == ["all", 2, True, "b"]


def test_the_saved_format_by_hand():
    calib = {"measured": [0.6], "predicted": [0.65], "n": [20]}
    model = ACC.AccuracyModel("doc", {"source_accuracy": 0.7, "source_mean": 0.5}, False, calib, 123)
    saved = {"format": "fiftyone-dnniqa/accuracy-model", "version": 1, "estimator": "doc",
             "params": {"source_accuracy": 0.7, "source_mean": 0.5}, "higher_is_better": False,
             "calibration": calib, "n_train": 123}
    assert model.to_dict() == saved
    assert ACC.AccuracyModel.from_dict(json.loads(json.dumps(saved))) == model
    minimal = ACC.AccuracyModel.from_dict({"format": saved["format"], "estimator": "atc", "params": {"threshold": 0.3}})
    assert (minimal.higher_is_better, minimal.calibration, minimal.n_train) == (True, {}, 0)
    with pytest.raises(ValueError, match=r"^not an accuracy model \(format 'something-else'\)$"):
        ACC.AccuracyModel.from_dict(dict(saved, format="something-else"))
    with pytest.raises(ValueError, match="^unknown estimator 'future' in a saved accuracy model"):
        ACC.AccuracyModel.from_dict(dict(saved, estimator="future"))
