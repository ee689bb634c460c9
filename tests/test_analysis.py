"""Statistics of fiftyone_dnniqa.analysis against scipy/sklearn, and their intervals."""

import json
import math
import warnings

import numpy as np
import pytest
from scipy import stats
from sklearn.metrics import roc_auc_score

from fiftyone_dnniqa import analysis as A
from fiftyone_dnniqa.analysis import resampling as R


def _data(n=400, rho=0.5, seed=0, ties=True):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=n)
    y = rho * x + math.sqrt(1 - rho ** 2) * rng.normal(size=n)
    if ties:
        x[::5] = np.round(x[::5])
        y = np.round(y, 1)
    return x, y


def _resamples(n, k, seed):
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, n, size=(k, n))
    W = np.stack([np.bincount(i, minlength=n) for i in idx])
    return idx, W


# -- point estimates ----------------------------------------------------------------------


def test_point_estimates_match_scipy_with_missing_values():
    x, y = _data()
    xq = x.astype(object)
    xq[3] = None
    xq[10] = np.nan
    yq = y.copy()
    yq[20] = np.inf
    keep = np.ones(len(x), bool)
    keep[[3, 10, 20]] = False
    ref = {"spearman": stats.spearmanr(x[keep], y[keep]),
           "kendall": stats.kendalltau(x[keep], y[keep]),
           "pearson": stats.pearsonr(x[keep], y[keep])}
    got = A.correlations(list(xq), yq, n_boot=50)
    for m, r in ref.items():
        assert got[m].method == m
        assert got[m].estimate == pytest.approx(r.statistic, abs=1e-9)
        assert got[m].p_value == pytest.approx(r.pvalue, rel=1e-9, abs=1e-300)
        assert got[m].n == keep.sum() and got[m].n_missing == 3


def test_auroc_matches_sklearn_with_ties_and_direction():
    x, y = _data(n=500)
    correct = y > 0.2
    q = np.round(x, 1)  # many ties
    a = A.auroc(q, correct, n_boot=100)
    assert a.estimate == pytest.approx(roc_auc_score(correct, q), abs=1e-9)
    assert (a.n, a.n_pos, a.n_neg) == (500, correct.sum(), (~correct).sum())
    b = A.auroc(-q, correct, higher_is_better=False, n_boot=100)
    assert b.estimate == pytest.approx(a.estimate, abs=1e-12)
    assert A.auroc(q, correct, higher_is_better=False, n_boot=0).estimate == pytest.approx(
        roc_auc_score(correct, -q), abs=1e-9)


def test_bootstrap_replicates_are_exact_statistics_of_resamples():
    x, y = _data(n=150, seed=3)
    idx, W = _resamples(len(x), 6, seed=4)
    sp = R._spearman_from_counts(x, y, W)
    kt = R._kendall_from_counts(x, y, W)
    pe = R._PearsonBoot(x, y)(W)
    for r, i in enumerate(idx):
        assert sp[r] == pytest.approx(stats.spearmanr(x[i], y[i]).statistic, abs=1e-9)
        assert kt[r] == pytest.approx(stats.kendalltau(x[i], y[i]).statistic, abs=1e-9)
        assert pe[r] == pytest.approx(stats.pearsonr(x[i], y[i]).statistic, abs=1e-9)
    # ranks inside a resample equal rankdata of the resampled values
    o = np.argsort(x, kind="stable")
    Ws = W[:, o]
    ranks = R._resample_ranks(Ws, R._tie_groups(x[o]))
    for r in range(len(W)):
        expanded = np.repeat(x[o], Ws[r])
        want = stats.rankdata(expanded)[np.cumsum(Ws[r])[Ws[r] > 0] - 1]
        np.testing.assert_allclose(ranks[r][Ws[r] > 0], want, atol=1e-9)


# -- intervals ------------------------------------------------------------------------------


@pytest.mark.parametrize("method", A.METHODS)
def test_interval_contains_estimate_and_is_reproducible(method):
    x, y = _data(n=300)
    a = A.correlate(x, y, method=method, n_boot=400, seed=7)
    b = A.correlate(x, y, method=method, n_boot=400, seed=7)
    c = A.correlate(x, y, method=method, n_boot=400, seed=8)
    assert a.ci_low < a.estimate < a.ci_high
    assert (a.ci_low, a.ci_high) == (b.ci_low, b.ci_high)
    assert (a.ci_low, a.ci_high) != (c.ci_low, c.ci_high)
    assert a.n == 300 and a.n_boot == 400 and a.confidence == 0.95
    narrow = A.correlate(x, y, method=method, n_boot=400, seed=7, confidence=0.5)
    assert a.ci_low < narrow.ci_low < narrow.ci_high < a.ci_high


def test_auroc_interval():
    x, y = _data(n=300)
    a = A.auroc(x, y > 0, n_boot=500, seed=1)
    assert a.ci_low < a.estimate < a.ci_high
    assert A.auroc(x, y > 0, n_boot=500, seed=1).ci == a.ci


def test_bootstrap_coverage_simulation():
    """200 data sets of n=200 from a bivariate normal with known rho: the 95 % intervals
    cover the population Spearman/Kendall/Pearson values at about the nominal rate."""
    rho = 0.5
    truth = {"spearman": 6 / math.pi * math.asin(rho / 2),
             "kendall": 2 / math.pi * math.asin(rho),
             "pearson": rho}
    hits = {m: 0 for m in truth}
    reps = 200
    rng = np.random.default_rng(2024)
    for r in range(reps):
        x = rng.normal(size=200)
        y = rho * x + math.sqrt(1 - rho ** 2) * rng.normal(size=200)
        for m in truth:
            c = A.correlate(x, y, method=m, n_boot=300, seed=r)
            hits[m] += c.ci_low <= truth[m] <= c.ci_high
    cover = {m: h / reps for m, h in hits.items()}
    for m, cv in cover.items():
        assert 0.88 <= cv <= 0.99, (m, cv)


def test_kendall_subsampled_interval_for_large_n():
    """Above the cap the Kendall bootstrap runs on a subsample and is rescaled; it still
    covers the true tau at roughly the nominal rate."""
    rho = 0.4
    truth = 2 / math.pi * math.asin(rho)
    rng = np.random.default_rng(5)
    hits, reps, widths = 0, 40, []
    for r in range(reps):
        x = rng.normal(size=4000)
        y = rho * x + math.sqrt(1 - rho ** 2) * rng.normal(size=4000)
        c = A.correlate(x, y, method="kendall", n_boot=200, seed=r, kendall_boot_cap=500)
        assert c.estimate == pytest.approx(stats.kendalltau(x, y).statistic, abs=1e-12)
        hits += c.ci_low <= truth <= c.ci_high
        widths.append(c.ci_high - c.ci_low)
    assert 0.8 <= hits / reps <= 1.0
    # width scales like 1/sqrt(n): compare with an exact bootstrap at n = 500
    small = A.correlate(x[:500], y[:500], method="kendall", n_boot=300, seed=0)
    assert np.mean(widths) == pytest.approx((small.ci_high - small.ci_low) * math.sqrt(500 / 4000),
                                            rel=0.3)


# -- missing values, direction, degenerate inputs -------------------------------------------


def test_missing_values_are_dropped_pairwise_and_counted():
    q = [1.0, None, 3.0, np.nan, 5.0, 6.0, np.inf, 8.0]
    t = [1, 2, None, 4, 5, 7, 7, 9]
    c = A.correlate(q, t, n_boot=100)
    assert (c.n, c.n_missing) == (4, 4)
    assert c.estimate == pytest.approx(1.0)
    a = A.auroc(q, [1, 0, 1, 0, 0, 1, 1, None], n_boot=0)
    assert (a.n, a.n_missing, a.n_pos, a.n_neg) == (4, 4, 3, 1)
    d = A.distribution(q)
    assert (d.n, d.n_missing) == (5, 3)


def test_higher_is_better_flips_sign():
    x, y = _data(n=200)
    for m in A.METHODS:
        up = A.correlate(x, y, method=m, n_boot=200, seed=1)
        down = A.correlate(x, y, method=m, n_boot=200, seed=1, higher_is_better=False)
        assert down.estimate == pytest.approx(-up.estimate, abs=1e-12)
        assert down.higher_is_better is False
        # a lower-is-better score (e.g. a distortion measure) stored as given
        flipped = A.correlate(-x, y, method=m, n_boot=200, seed=1, higher_is_better=False)
        assert flipped.estimate == pytest.approx(up.estimate, abs=1e-12)
        assert flipped.ci_low == pytest.approx(up.ci_low, abs=1e-9)
        assert flipped.ci_high == pytest.approx(up.ci_high, abs=1e-9)


def test_auroc_one_class_is_nan_with_reason():
    a = A.auroc([0.1, 0.5, 0.9], [True, True, True])
    assert math.isnan(a.estimate) and math.isnan(a.ci_low)
    assert "one class" in a.note and a.n_neg == 0 and a.n_pos == 3
    e = A.auroc([None, np.nan], [1, 0])
    assert math.isnan(e.estimate) and e.n == 0 and e.n_missing == 2
    with pytest.raises(ValueError, match="binary"):
        A.auroc([1, 2, 3], [0, 1, 2])
    json.dumps(a.to_dict())  # NaN becomes null


def test_degenerate_correlations_do_not_crash():
    c = A.correlate([1, 2], [3, 4])
    assert math.isnan(c.estimate) and "at least 3" in c.note
    c = A.correlate([1, 1, 1, 1], [1, 2, 3, 4])
    assert math.isnan(c.estimate) and "constant" in c.note
    with pytest.raises(ValueError, match="method"):
        A.correlate([1, 2, 3], [1, 2, 3], method="tau")
    with pytest.raises(ValueError, match="length"):
        A.correlate([1, 2, 3], [1, 2])


# -- bins, groups, ranking ------------------------------------------------------------------


def test_wilson_interval_known_values():
    lo, hi = A.wilson_interval(8, 10)
    assert lo == pytest.approx(0.4901625, abs=1e-6)
    assert hi == pytest.approx(0.9433178, abs=1e-6)
    lo, hi = A.wilson_interval(0, 20)
    assert lo == pytest.approx(0.0, abs=1e-12) and hi == pytest.approx(0.1611251, abs=1e-6)


def test_binned_accuracy_with_wilson_interval():
    q = np.arange(40, dtype=float)
    correct = np.zeros(40)
    correct[10:20][:3] = 1  # bin 2: 3 / 10
    correct[20:30][:8] = 1  # bin 3: 8 / 10
    correct[30:40] = 1  # bin 4: 10 / 10
    rows = A.binned_performance(q, correct, bins=4)
    assert [r.n for r in rows] == [10, 10, 10, 10]
    assert [r.mean_target for r in rows] == pytest.approx([0.0, 0.3, 0.8, 1.0])
    assert [r.mean_quality for r in rows] == pytest.approx([4.5, 14.5, 24.5, 34.5])
    assert rows[2].interval == "wilson"
    assert (rows[2].ci_low, rows[2].ci_high) == pytest.approx(A.wilson_interval(8, 10))
    assert rows[0].lo == 0 and rows[-1].hi == 39
    uni = A.binned_performance(q, correct, bins=2, strategy="uniform")
    assert [r.n for r in uni] == [20, 20]


def test_binned_continuous_target_uses_t_interval():
    rng = np.random.default_rng(0)
    q = rng.random(300)
    f1 = q + rng.normal(scale=0.1, size=300)
    rows = A.binned_performance(q, f1, bins=3)
    assert sum(r.n for r in rows) == 300 and rows[0].interval == "t"
    sel = (q >= rows[1].lo) & (q < rows[1].hi)
    lo, hi = stats.t.interval(0.95, sel.sum() - 1, loc=f1[sel].mean(), scale=stats.sem(f1[sel]))
    assert (rows[1].ci_low, rows[1].ci_high) == pytest.approx((lo, hi), abs=1e-9)


def _grouped(seed=0, n_groups=12, per=80):
    """Groups whose accuracy falls with their mean quality (like corruption severities)."""
    rng = np.random.default_rng(seed)
    g = np.repeat(np.arange(n_groups), per)
    level = rng.permutation(n_groups).astype(float)[g]
    q = -level + rng.normal(size=g.size)
    correct = rng.random(g.size) < (0.9 - 0.06 * level)
    return q, correct.astype(float), g


def test_group_level_correlation_on_group_means():
    q, c, g = _grouped()
    gq = np.array([q[g == k].mean() for k in range(12)])
    gc = np.array([c[g == k].mean() for k in range(12)])
    res = A.group_level_correlations(q, c, g, n_boot=300, seed=0)
    assert res["spearman"].estimate == pytest.approx(stats.spearmanr(gq, gc).statistic, abs=1e-9)
    assert res["kendall"].estimate == pytest.approx(stats.kendalltau(gq, gc).statistic, abs=1e-9)
    assert res["pearson"].estimate == pytest.approx(stats.pearsonr(gq, gc).statistic, abs=1e-9)
    for r in res.values():
        assert r.level == "group" and r.n == 12 and r.n_samples == len(q)
        assert r.ci_low <= r.estimate <= r.ci_high
    assert res["spearman"].estimate > 0.5
    one = A.group_level_correlation(q, c, g, n_boot=300, seed=0)
    assert one.estimate == res["spearman"].estimate and one.ci == res["spearman"].ci
    # composite keys: (corruption, severity) tuples
    keys = [("blur" if k % 2 else "noise", int(k // 2)) for k in g]
    comp = A.group_level_correlation(q, c, keys, n_boot=100, seed=0)
    assert comp.estimate == pytest.approx(res["spearman"].estimate, abs=1e-12)
    # small groups can be left out, and are counted as missing
    g2 = g.copy()
    g2[:3] = 99
    small = A.group_level_correlation(q, c, g2, n_boot=50, min_group_size=5)
    assert small.n == 12 and small.n_missing == 3


def test_group_table_rows():
    q, c, g = _grouped(n_groups=4, per=60)
    labels = np.array(["a", "b", "c", "d"], dtype=object)[g]
    labels[0] = None
    rows = A.group_table(q, c, labels, n_boot=200)
    assert [r.group for r in rows] == ["a", "b", "c", "d"]
    assert [r.n for r in rows] == [59, 60, 60, 60]
    sel = labels == "b"
    b = rows[1]
    assert b.mean_target == pytest.approx(c[sel].mean())
    assert b.mean_quality == pytest.approx(q[sel].mean())
    assert (b.ci_low, b.ci_high) == pytest.approx(A.wilson_interval(c[sel].sum(), sel.sum()))
    assert b.correlation.estimate == pytest.approx(stats.spearmanr(q[sel], c[sel]).statistic, abs=1e-9)
    json.dumps([r.to_dict() for r in rows])
    assert "| group |" in A.format_table(rows)


def test_rank_fields_orders_by_spearman():
    rng = np.random.default_rng(1)
    n = 600
    latent = rng.normal(size=n)
    correct = (latent + rng.normal(scale=0.8, size=n) > 0).astype(float)
    fields = {
        "weak": latent + rng.normal(scale=3.0, size=n),
        "noise": rng.normal(size=n),
        "distortion": (-(latent + rng.normal(scale=0.3, size=n)), False),  # lower is better
        "medium": (latent + rng.normal(scale=1.0, size=n), True),
    }
    rows = A.rank_fields(fields, correct, n_boot=200)
    assert [r.name for r in rows] == ["distortion", "medium", "weak", "noise"]
    top = rows[0]
    assert top.higher_is_better is False and top.spearman.estimate > 0
    assert top.auroc is not None and top.auroc.estimate > 0.7
    assert top.auroc.estimate == pytest.approx(roc_auc_score(correct, -fields["distortion"][0]))
    md = A.format_table(rows)
    assert md.splitlines()[0].startswith("| field | spearman | kendall | pearson | auroc |")
    assert len(md.splitlines()) == 2 + len(rows)
    json.dumps([r.to_dict() for r in rows])
    cont = A.rank_fields({"a": latent}, latent + rng.normal(size=n), n_boot=50)
    assert cont[0].auroc is None


@pytest.mark.parametrize("bins", [5, 30, "auto"])
def test_distribution_equals_numpy_field_by_field(bins):
    rng = np.random.default_rng(5)
    v = rng.gamma(2.0, size=701)
    d = A.distribution(list(v) + [None, np.nan, np.inf], bins=bins)
    counts, edges = np.histogram(v, bins=bins)
    assert (d.n, d.n_missing) == (701, 3)
    assert d.counts == counts.tolist() and d.edges == edges.tolist()
    want = dict(zip(["min", "p5", "p25", "median", "p75", "p95", "max"],
                    np.quantile(v, [0, 0.05, 0.25, 0.5, 0.75, 0.95, 1])))
    assert d.quantiles == pytest.approx(want, rel=1e-12)
    assert d.mean == pytest.approx(v.mean(), rel=1e-12) and d.std == pytest.approx(v.std(ddof=1), rel=1e-12)
    assert all(type(c) is int for c in d.counts) and all(type(e) is float for e in d.edges)


def test_distribution_of_one_and_of_no_value():
    one = A.distribution([3.5, None])
    assert (one.n, one.n_missing, one.mean, one.min, one.max, one.median) == (1, 1, 3.5, 3.5, 3.5, 3.5)
    assert math.isnan(one.std) and one.counts == np.histogram([3.5], bins=30)[0].tolist()
    none = A.distribution([None, np.nan])
    assert (none.n, none.n_missing, none.counts, none.edges) == (0, 2, [], [])
    for k in ("mean", "std", "min", "p5", "p25", "median", "p75", "p95", "max"):
        assert math.isnan(getattr(none, k)), k


def test_format_table_inputs_and_cells():
    row = {"x": 1.0, "y": None, "z": "a\nb|c"}
    assert A.format_table([row]).splitlines() == ["| x | y | z |", "| --- | --- | --- |",
                                                  "| 1.000 |  | a b\\|c |"]
    assert A.format_table(None) == A.format_table([])
    assert A.format_table([]).splitlines() == ["|  |", "||"]
    # columns in first-seen order over all rows, chosen columns in the given order
    rows = [{"b": 1}, {"a": 2, "b": 3}]
    assert A.format_table(rows).splitlines()[0] == "| b | a |"
    assert A.format_table(rows, columns=["a"]).splitlines() == ["| a |", "| --- |", "|  |", "| 2 |"]
    # a mapping of results, one result, and objects with to_row/to_dict
    rng = np.random.default_rng(1)
    x = rng.normal(size=200)
    corr = A.correlations(x, x + rng.normal(size=200), n_boot=20)
    by_map, by_list = A.format_table(corr), A.format_table(list(corr.values()))
    assert by_map == by_list and by_map.splitlines()[0].startswith("| method |")
    one = A.correlate(x, x, n_boot=20)
    assert A.format_table(one) == A.format_table([one])
    dist = A.distribution(x)
    assert A.format_table([dist]).splitlines()[0] == "| " + " | ".join(dist.to_row()) + " |"
    with pytest.raises(TypeError, match="cannot tabulate int"):
        A.format_table([3])

    class Exported:  # neither a mapping nor a result: tabulated through its to_dict()
        def to_dict(self):
            return {"k": 2, "v": np.float32(0.5)}

    assert A.format_table([Exported()]).splitlines()[2] == "| 2 | 0.500 |"


def test_distribution_of_two_values_and_bad_input():
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # one value: no "degrees of freedom" warning, just NaN
        assert math.isnan(A.distribution([2.0]).std)
    two = A.distribution([1.0, 4.0])
    assert two.std == pytest.approx(np.std([1.0, 4.0], ddof=1))
    with pytest.raises(TypeError, match="^quality must be numeric"):
        A.distribution(["sharp", "blurred"])


def test_distribution_and_format_table():
    rng = np.random.default_rng(0)
    v = rng.normal(size=1000)
    d = A.distribution(list(v) + [None, np.nan], bins=20)
    assert (d.n, d.n_missing) == (1000, 2)
    assert sum(d.counts) == 1000 and len(d.edges) == 21
    assert d.median == pytest.approx(np.median(v)) and d.p5 == pytest.approx(np.quantile(v, 0.05))
    assert d.mean == pytest.approx(v.mean()) and d.std == pytest.approx(v.std(ddof=1))
    assert d.quantiles["max"] == v.max()
    json.dumps(d.to_dict())
    table = A.format_table([{"a": 1, "b": 0.12345}, {"a": "x|y"}])
    assert table.splitlines() == ["| a | b |", "| --- | --- |", "| 1 | 0.123 |", "| x\\|y |  |"]
    corr = A.correlations(v, v + rng.normal(size=1000), n_boot=50)
    assert A.format_table(corr).count("\n") == 4


def test_a_million_samples_match_scipy():
    """At scale the estimate is scipy's and the interval has the width of the analytic
    (Bonett-Wright) one."""
    rng = np.random.default_rng(0)
    n = 1_000_000
    q = rng.normal(size=n)
    t = 0.3 * q + rng.normal(size=n)
    c = A.correlate(q, t, n_boot=200)
    r = stats.spearmanr(q, t).statistic
    assert c.estimate == pytest.approx(r, abs=1e-12)
    width = 2 * 1.959964 * math.sqrt((1 + r * r / 2) / (n - 3)) * (1 - r * r)
    assert c.ci_low < c.estimate < c.ci_high
    assert c.ci_high - c.ci_low == pytest.approx(width, rel=0.2)
