"""Accuracy of an unlabelled batch (analysis.accuracy): each estimator against an
independent oracle (its definition by brute force, numpy, scikit-learn), conformal
quantiles by hand, intervals that reach their coverage on simulated shifts with known
truth, the prior that carries the estimator, and the benchmark's leave-families-out
protocol (no held-out family leaks into a fit)."""

import math
import os
import sys

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


def test_leave_families_out_never_fits_on_the_family_it_estimates(monkeypatch):
    bench = _benchmark()
    dev, test = _arrays(bench, seed=1), _arrays(bench, seed=2)
    seen = []
    real = ACC.fit_accuracy_model

    def spy(q, c, groups=None, families=None, **kw):
        seen.append(set(families.tolist()))
        return real(q, c, groups=groups, families=families, **kw)

    monkeypatch.setattr(bench.ACC, "fit_accuracy_model", spy)
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
