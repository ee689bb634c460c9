"""Bins, groups and group-level correlations against scipy and hand-written oracles."""

import math
import warnings

import numpy as np
import pytest
from scipy import stats

from fiftyone_dnniqa import analysis as A

NAN = float("nan")


@pytest.mark.parametrize("confidence", [0.95, 0.9, 0.5])
def test_wilson_interval_matches_scipy(confidence):
    ks, ns = [0, 1, 7, 20, 3], [5, 1, 10, 20, 40]
    lo, hi = A.wilson_interval(ks, ns, confidence)
    for k, n, a, b in zip(ks, ns, lo, hi):
        ci = stats.binomtest(k, n).proportion_ci(confidence_level=confidence, method="wilson")
        assert (a, b) == pytest.approx((ci.low, ci.high), abs=1e-12)


def test_wilson_interval_of_an_empty_group_is_nan_without_warnings():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        lo, hi = A.wilson_interval([0, 2], [0, 4])
    assert math.isnan(lo[0]) and math.isnan(hi[0]) and lo[1] < 0.5 < hi[1]


def _t_interval(values, confidence):
    v = np.asarray(values, float)
    return stats.t.interval(confidence, len(v) - 1, loc=v.mean(), scale=stats.sem(v))


def test_binned_performance_bins_by_hand_and_intervals_from_scipy():
    q = [0.0, 1.0, 1.5, 2.0, 2.0, 3.0]  # uniform edges 0, 1, 2, 3: an edge value goes up
    t = [0.2, 0.9, 0.4, 0.6, 0.8, 1.7]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        rows = A.binned_performance(q, t, bins=3, strategy="uniform", confidence=0.9)
    assert [(r.lo, r.hi, r.n) for r in rows] == [(0.0, 1.0, 1), (1.0, 2.0, 2), (2.0, 3.0, 3)]
    assert [r.interval for r in rows] == ["t"] * 3
    assert rows[0].mean_target == 0.2 and math.isnan(rows[0].ci_low) and math.isnan(rows[0].ci_high)
    for r, members in zip(rows[1:], ([0.9, 0.4], [0.6, 0.8, 1.7])):
        assert r.mean_target == pytest.approx(np.mean(members))
        assert (r.ci_low, r.ci_high) == pytest.approx(_t_interval(members, 0.9))
    assert rows[2].mean_quality == pytest.approx(7 / 3)


@pytest.mark.parametrize("target", [[1.0, 0.0, 1.0, 1.0], [0.2, 0.4, 0.9, 0.7]])
def test_an_empty_bin_is_kept_with_nan_means_and_no_warning(target):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        rows = A.binned_performance([0.0, 0.1, 2.9, 3.0], target, bins=3, strategy="uniform")
    assert [r.n for r in rows] == [2, 0, 2]
    empty = rows[1]
    assert all(math.isnan(v) for v in (empty.mean_quality, empty.mean_target, empty.ci_low, empty.ci_high))


def test_binned_performance_binary_target_wilson_at_the_asked_level():
    q = np.arange(12.0)
    t = np.array([0, 0, 1, 0, 1, 1, 1, 0, 1, 1, 1, 1])
    rows = A.binned_performance(q, t, bins=2, confidence=0.8)
    for r, part in zip(rows, (t[:6], t[6:])):
        ci = stats.binomtest(int(part.sum()), 6).proportion_ci(confidence_level=0.8, method="wilson")
        assert r.interval == "wilson" and (r.ci_low, r.ci_high) == pytest.approx((ci.low, ci.high))


def test_binned_performance_defaults_edges_and_errors():
    q = np.linspace(0, 1, 100)
    rows = A.binned_performance(q, q > 0.5)
    assert len(rows) == 10 and [r.n for r in rows] == [10] * 10  # ten quantile bins by default
    assert len(A.binned_performance(q, q, bins=1)) == 1
    one = A.binned_performance([0.3], [1.0])
    assert [(r.lo, r.hi, r.n, r.mean_target) for r in one] == [(0.3, 0.3, 1, 1.0)]
    const = A.binned_performance([2.0] * 5, [1, 0, 1, 1, 1], bins=4)
    assert [(r.lo, r.hi, r.n, r.mean_target) for r in const] == [(2.0, 2.0, 5, 0.8)]
    assert A.binned_performance([NAN], [1.0]) == []
    with pytest.raises(ValueError, match=r"^bins must be >= 1$"):
        A.binned_performance(q, q, bins=0)
    with pytest.raises(ValueError, match="unknown strategy 'log'"):
        A.binned_performance(q, q, strategy="log")
    with pytest.raises(TypeError, match="^quality must be numeric"):
        A.binned_performance(["a"], [1.0])
    with pytest.raises(TypeError, match="^target must be numeric"):
        A.binned_performance([1.0], ["a"])


# ---------------------------------------------------------------------------
# group_table
# ---------------------------------------------------------------------------


def _grouped_data(seed=0):
    rng = np.random.default_rng(seed)
    groups = np.repeat(["a", "b", "c", "d"], [30, 2, 25, 1])
    q = rng.normal(size=len(groups))
    t = q + rng.normal(size=len(groups))
    return q, t, groups


def test_group_table_against_scipy_per_group():
    q, t, g = _grouped_data()
    order = np.random.default_rng(1).permutation(len(g))  # samples of a group are not contiguous
    q, t, g = q[order], t[order], g[order]
    rows = A.group_table(q, t, g, n_boot=50, confidence=0.9)
    assert [r.group for r in rows] == ["a", "b", "c", "d"] and [r.n for r in rows] == [30, 2, 25, 1]
    for r in rows:
        m = g == r.group
        assert r.mean_quality == pytest.approx(q[m].mean()) and r.mean_target == pytest.approx(t[m].mean())
        assert r.interval == "t" and r.correlation.method == "spearman"
        assert r.correlation.n_boot == 50 and r.correlation.confidence == 0.9
        if m.sum() >= 3:
            assert r.correlation.estimate == pytest.approx(stats.spearmanr(q[m], t[m])[0])
            assert (r.ci_low, r.ci_high) == pytest.approx(_t_interval(t[m], 0.9))
    assert math.isnan(rows[3].ci_low)  # one sample: no t interval
    assert (rows[1].ci_low, rows[1].ci_high) == pytest.approx(_t_interval(t[g == "b"], 0.9))


def test_group_table_options():
    q, t, g = _grouped_data()
    default = A.group_table(q, t, g)
    assert default[0].correlation.n_boot == 1000 and default[0].correlation.confidence == 0.95
    assert [r.n for r in default] == [30, 2, 25, 1]  # min_n=1 keeps the single sample
    again = A.group_table(q, t, g, seed=0)
    np.testing.assert_array_equal([r.correlation.ci for r in default], [r.correlation.ci for r in again])
    assert [r.n for r in A.group_table(q, t, g, min_n=2, method=None)] == [30, 2, 25]
    assert [r.n for r in A.group_table(q, t, g, min_n=25, method=None)] == [30, 25]
    assert all(r.correlation is None for r in A.group_table(q, t, g, method=None))
    kendall = A.group_table(q, t, g, method="kendall", n_boot=20)
    m = g == "a"
    assert kendall[0].correlation.estimate == pytest.approx(stats.kendalltau(q[m], t[m])[0])
    flipped = A.group_table(q, t, g, higher_is_better=False, n_boot=20)
    assert flipped[0].correlation.estimate == pytest.approx(-stats.spearmanr(q[m], t[m])[0])
    assert flipped[0].mean_quality == pytest.approx(q[m].mean())  # means stay as given
    single = A.group_table(q[m], t[m], g[m], n_boot=20)
    assert [r.group for r in single] == ["a"]


@pytest.mark.parametrize("method", ["spearman", "pearson"])
def test_group_table_bootstrap_is_seeded_through_one_generator(method):
    q, t, g = _grouped_data()
    order = np.random.default_rng(3).permutation(len(g))  # members of a group interleaved
    q, t, g = q[order], t[order], g[order]
    rows = A.group_table(q, t, g, method=method, n_boot=200, seed=7)
    rng = np.random.default_rng(7)  # the groups draw from one generator, in label order
    for r in rows:
        m = g == r.group  # a group's samples in their order in the view
        ref = A.correlate(q[m], t[m], method=method, n_boot=200, seed=rng)
        assert r.correlation.ci == pytest.approx(ref.ci, nan_ok=True)
    assert rows[0].correlation.ci != A.group_table(q, t, g, n_boot=200, seed=8)[0].correlation.ci


def test_group_table_binary_target_and_dropped_groups():
    q = np.array([0.1, 0.2, 0.3, NAN, 0.5, 0.6, 0.7])
    t = np.array([1, 0, 1, 1, 1, 1, 0])
    g = ["x", "x", "x", "gone", "y", "y", "z"]
    rows = A.group_table(q, t, g, method=None)
    assert [(r.group, r.n, r.interval) for r in rows] == [("x", 3, "wilson"), ("y", 2, "wilson"),
                                                          ("z", 1, "wilson")]
    ci = stats.binomtest(2, 3).proportion_ci(method="wilson")
    assert (rows[0].ci_low, rows[0].ci_high) == pytest.approx((ci.low, ci.high))
    assert A.group_table([NAN, NAN], [1, 0], ["a", "b"]) == []
    with pytest.raises(ValueError, match="^length mismatch: quality has 2 values, target has 1$"):
        A.group_table([1.0, 2.0], [1.0], ["a", "b"])
    with pytest.raises(TypeError, match="^quality must be numeric"):
        A.group_table(["bad"], [1.0], ["a"])
    with pytest.raises(TypeError, match="^target must be numeric"):
        A.group_table([1.0], ["bad"], ["a"])


# ---------------------------------------------------------------------------
# group-level correlations
# ---------------------------------------------------------------------------


def _corrupted_groups(seed=0, sizes=(5, 9, 14, 20, 27, 33, 40, 8), spread=1.0, noise=0.8):
    rng = np.random.default_rng(seed)
    codes = np.repeat(np.arange(len(sizes)), sizes)
    level = rng.normal(scale=spread, size=len(sizes))
    q = level[codes] + rng.normal(scale=noise, size=len(codes))
    t = (rng.random(len(codes)) < 1 / (1 + np.exp(-level[codes]))).astype(float)
    return q, t, codes


def _means(q, t, codes):
    G = codes.max() + 1
    return (np.array([q[codes == g].mean() for g in range(G)]),
            np.array([t[codes == g].mean() for g in range(G)]))


def test_group_level_estimates_and_fields():
    q, t, codes = _corrupted_groups()
    gq, gt = _means(q, t, codes)
    out = A.group_level_correlations(q, t, codes, n_boot=40, confidence=0.8)
    oracle = {"spearman": stats.spearmanr(gq, gt), "kendall": stats.kendalltau(gq, gt),
              "pearson": stats.pearsonr(gq, gt)}
    assert list(out) == ["spearman", "kendall", "pearson"]
    for m, c in out.items():
        assert c.method == m and c.level == "group" and c.note == ""
        assert c.estimate == pytest.approx(oracle[m][0]) and c.p_value == pytest.approx(oracle[m][1])
        assert (c.n, c.n_samples, c.n_missing, c.n_boot, c.confidence) == (8, len(q), 0, 40, 0.8)
        assert c.higher_is_better is True and c.ci_low <= c.estimate <= c.ci_high
    flipped = A.group_level_correlation(q, t, codes, method="pearson", higher_is_better=False, n_boot=40)
    assert flipped.higher_is_better is False and flipped.estimate == pytest.approx(-oracle["pearson"][0])
    default = A.group_level_correlation(q, t, codes)
    assert (default.method, default.n_boot, default.confidence) == ("spearman", 1000, 0.95)
    assert default.ci == A.group_level_correlations(q, t, codes, seed=0, methods=["spearman"])["spearman"].ci
    assert default.ci == A.group_level_correlation(q, t, codes, method="Spearman", seed=0).ci
    seeded = A.group_level_correlation(q, t, codes, seed=3, n_boot=50, confidence=0.5)
    assert seeded.ci == A.group_level_correlations(q, t, codes, seed=3, n_boot=50, confidence=0.5,
                                                   methods=["spearman"])["spearman"].ci
    assert seeded.confidence == 0.5 and seeded.ci != default.ci


def _stratified_se(q, t, codes, method, n_boot, seed=0):
    """An independent stratified bootstrap: resample within each group, correlate the means."""
    rng = np.random.default_rng(seed)
    corr = {"spearman": stats.spearmanr, "kendall": stats.kendalltau, "pearson": stats.pearsonr}[method]
    members = [np.flatnonzero(codes == g) for g in range(codes.max() + 1)]
    zs = []
    for _ in range(n_boot):
        picks = [rng.choice(m, size=len(m)) for m in members]
        r = corr([q[p].mean() for p in picks], [t[p].mean() for p in picks])[0]
        zs.append(np.arctanh(np.clip(r, -1 + 1e-9, 1 - 1e-9)))
    return np.std(zs, ddof=1)


@pytest.mark.parametrize("method", ["spearman", "kendall", "pearson"])
def test_group_level_interval_matches_an_independent_stratified_bootstrap(method):
    # moderate correlations: no resample reaches +-1, whose clipped atanh would dominate the SE
    q, t, codes = _corrupted_groups(sizes=(5, 9, 14, 20, 27, 33, 40, 8, 12, 17), spread=0.5, noise=1.0)
    c = A.group_level_correlation(q, t, codes, method=method, n_boot=600, confidence=0.9)
    z = stats.norm.ppf(0.95)
    half_width = (np.arctanh(c.ci_high) - np.arctanh(c.ci_low)) / 2
    # two bootstraps of 600 draws: their SEs differ by about 4% (one SD); Kendall's SE is
    # about 0.7 of Spearman's here, so a wrong statistic is far outside the tolerance
    assert half_width / z == pytest.approx(_stratified_se(q, t, codes, method, 600), rel=0.15)
    assert np.arctanh(c.estimate) == pytest.approx((np.arctanh(c.ci_high) + np.arctanh(c.ci_low)) / 2)


def test_group_level_interval_is_zero_when_groups_are_internally_constant():
    codes = np.repeat(np.arange(5), [3, 6, 2, 9, 4])  # resampling within a group changes nothing
    q = np.array([0.1, 0.5, 0.2, 0.9, 0.4])[codes]
    t = np.array([0.0, 1.0, 0.0, 1.0, 1.0])[codes]
    c = A.group_level_correlation(q, t, codes, method="pearson", n_boot=50)
    assert c.ci_low == pytest.approx(c.estimate) and c.ci_high == pytest.approx(c.estimate)


def test_group_level_small_constant_and_dropped_groups():
    q, t, codes = _corrupted_groups()
    few = A.group_level_correlations(q[codes < 2], t[codes < 2], codes[codes < 2], n_boot=10)
    for m, c in few.items():
        assert c.method == m and c.note == "need at least 3 groups, got 2"
        assert math.isnan(c.estimate) and math.isnan(c.ci_low) and math.isnan(c.p_value)
        assert (c.n, c.n_boot, c.confidence, c.level) == (2, 10, 0.95, "group")
    three = A.group_level_correlation(q[codes < 3], t[codes < 3], codes[codes < 3], n_boot=10)
    assert math.isfinite(three.estimate) and three.note == ""
    const_q = A.group_level_correlations(np.ones(len(q)), t, codes, n_boot=10)
    assert list(const_q) == ["spearman", "kendall", "pearson"]
    assert all(c.note == "group means are constant: correlation undefined" and c.method == m
               and math.isnan(c.estimate) and c.n == 8 for m, c in const_q.items())
    const_t = A.group_level_correlation(q, np.ones(len(q)), codes, n_boot=10)
    assert const_t.note == "group means are constant: correlation undefined"
    # a group below min_group_size is dropped with its samples counted as missing, and
    # the remaining groups renumbered; a group of exactly min_group_size stays
    q2, t2 = q.copy(), t.copy()
    q2[0] = NAN
    dropped = A.group_level_correlation(q2, t2, codes, method="pearson", min_group_size=8, n_boot=10)
    keep = codes != 0
    gq, gt = _means(q2[keep], t2[keep], codes[keep] - 1)
    assert (dropped.n, dropped.n_missing, dropped.n_samples) == (7, 5, len(q) - 5)
    assert dropped.estimate == pytest.approx(stats.pearsonr(gq, gt)[0])
    small = A.group_level_correlation(q, t, codes, min_group_size=9, method="pearson", n_boot=10)
    assert (small.n, small.n_missing) == (6, 13)
    assert A.group_level_correlation(q, t, codes, min_group_size=2, n_boot=10).n == 8


def test_group_level_without_bootstrap():
    q, t, codes = _corrupted_groups()
    c = A.group_level_correlation(q, t, codes, n_boot=0)
    assert math.isfinite(c.estimate) and math.isnan(c.ci_low) and math.isnan(c.ci_high)
    assert c.n_boot == 0


def test_group_level_interval_equals_the_reference_stratified_bootstrap():
    """The same draws as the library (a slot of each group takes a uniformly drawn member
    of that group), each resample's group means correlated by scipy, then
    tanh(atanh(r) +- z SE) with SE the standard deviation of atanh of the replicates."""
    q, t, codes = _corrupted_groups(seed=4)
    order = np.random.default_rng(5).permutation(len(q))
    q, t, codes = q[order], t[order], codes[order]
    c = A.group_level_correlation(q, t, codes, method="pearson", n_boot=60, confidence=0.9, seed=3)
    rng = np.random.default_rng(3)
    perm = np.argsort(codes, kind="stable")
    sizes = np.bincount(codes)
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    zs = []
    for u in rng.random((60, len(q))):
        idx = perm[starts[codes[perm]] + (u * sizes[codes[perm]]).astype(int)]
        gq = [q[idx][codes[idx] == g].mean() for g in range(len(sizes))]
        gt = [t[idx][codes[idx] == g].mean() for g in range(len(sizes))]
        zs.append(np.arctanh(stats.pearsonr(gq, gt)[0]))
    z, se = np.arctanh(c.estimate), np.std(zs, ddof=1)
    assert c.ci == pytest.approx((np.tanh(z - stats.norm.ppf(0.95) * se),
                                  np.tanh(z + stats.norm.ppf(0.95) * se)), abs=1e-9)


def test_group_level_defaults_empty_and_single_sample_groups():
    q, t, codes = _corrupted_groups()
    q = np.r_[q, 5.0, NAN, NAN]  # group 8 has one sample, group 9 only missing values
    t = np.r_[t, 1.0, 0.0, 1.0]
    codes = np.r_[codes, 8, 9, 9]
    keep = ~np.isnan(q)
    gq, gt = _means(q[keep], t[keep], codes[keep])
    c = A.group_level_correlation(q, t, codes, method="pearson")
    assert (c.n, c.n_missing, c.n_samples) == (9, 2, int(keep.sum()))
    assert c.estimate == pytest.approx(stats.pearsonr(gq, gt)[0])
    assert c.ci == A.group_level_correlation(q, t, codes, method="pearson", seed=0, min_group_size=1).ci
    both = A.group_level_correlations(q, t, codes, methods=["pearson"])["pearson"]
    assert both.ci == A.group_level_correlations(q, t, codes, seed=0, methods=["pearson"])["pearson"].ci
    assert both.n == 9
    two = A.group_level_correlation(q, t, codes, min_group_size=2, method="pearson", n_boot=10)
    assert (two.n, two.n_missing) == (8, 3)
