"""Every bootstrap interval against a plain reference bootstrap.

The reference draws the same resamples from the same seed (``rng.integers`` in blocks for
the plain bootstrap, ``rng.random`` slots within each class for the stratified one), then
computes each resample's statistic with scipy or sklearn one resample at a time and takes
``np.quantile`` percentiles: the vectorised bootstrap must agree to rounding.

Spearman and Kendall apply a draw's multiplicities to the samples sorted by quality (the
j-th count to the j-th smallest); multinomial counts are exchangeable, so that is a
bootstrap resample all the same, and the reference applies them the same way.
"""

import math
import warnings

import numpy as np
import pytest
import torch
from scipy import stats
from sklearn.metrics import roc_auc_score

from fiftyone_dnniqa import analysis as A
from fiftyone_dnniqa.analysis import resampling as R

SCIPY = {"spearman": stats.spearmanr, "kendall": stats.kendalltau, "pearson": stats.pearsonr}


def _blocks(rng, n, n_boot):
    """The resample indices of ``count_blocks``: blocks of at most 2**22 / n rows."""
    b = int(max(1, min(n_boot, (1 << 22) // max(n, 1))))
    done = 0
    while done < n_boot:
        k = min(b, n_boot - done)
        yield from rng.integers(0, n, size=(k, n), dtype=np.int32)
        done += k


def _resample(method, q, idx):
    if method == "pearson":
        return idx
    counts = np.bincount(idx, minlength=len(q))
    return np.repeat(np.argsort(q, kind="stable"), counts)


def _reference_ci(method, q, t, n_boot, confidence, rng):
    resamples = (_resample(method, q, i) for i in _blocks(rng, len(q), n_boot))
    boot = np.array([SCIPY[method](q[i], t[i])[0] for i in resamples])
    a = (1 - confidence) / 2
    ok = boot[np.isfinite(boot)]
    return tuple(np.quantile(ok, [a, 1 - a]))


def _data(n, seed=0, ties=True):
    rng = np.random.default_rng(seed)
    q = rng.normal(size=n)
    t = q + rng.normal(size=n)
    if ties:
        q, t = np.round(q, 1), np.round(t, 1)
    return q, t


@pytest.mark.parametrize("method", ["spearman", "kendall", "pearson"])
@pytest.mark.parametrize("higher_is_better", [True, False])
def test_correlation_interval_equals_the_reference_bootstrap(method, higher_is_better):
    q, t = _data(40)
    c = A.correlate(q, t, method=method, higher_is_better=higher_is_better, n_boot=120,
                    confidence=0.9, seed=3)
    oriented = q if higher_is_better else -q
    ref = _reference_ci(method, oriented, t, 120, 0.9, np.random.default_rng(3))
    assert c.ci == pytest.approx(ref, abs=1e-9)
    est, p = SCIPY[method](oriented, t)
    assert (c.estimate, c.p_value) == pytest.approx((est, p))


def test_several_blocks_of_resamples():
    q, t = _data(30_000, seed=1)  # 2**22 // 30000 = 139 resamples a block: 3 blocks
    c = A.correlate(q, t, method="pearson", n_boot=300, confidence=0.8, seed=5)
    assert c.ci == pytest.approx(_reference_ci("pearson", q, t, 300, 0.8, np.random.default_rng(5)), abs=1e-9)


def test_a_generator_seed_is_used_as_it_is():
    q, t = _data(25)
    rng = np.random.default_rng(11)
    first = A.correlate(q, t, n_boot=50, seed=rng)
    second = A.correlate(q, t, n_boot=50, seed=rng)  # the generator moved on
    ref = np.random.default_rng(11)
    assert first.ci == pytest.approx(_reference_ci("spearman", q, t, 50, 0.95, ref), abs=1e-9)
    assert second.ci == pytest.approx(_reference_ci("spearman", q, t, 50, 0.95, ref), abs=1e-9)


def test_kendall_on_a_subsample_rescaled_to_n():
    q, t = _data(60, seed=2)
    c = A.correlate(q, t, method="kendall", n_boot=100, confidence=0.9, seed=4, kendall_boot_cap=20)
    rng = np.random.default_rng(4)
    sub = rng.choice(60, size=20, replace=False)
    tau_sub = stats.kendalltau(q[sub], t[sub])[0]
    lo, hi = _reference_ci("kendall", q[sub], t[sub], 100, 0.9, rng)
    tau = stats.kendalltau(q, t)[0]
    scale = math.sqrt(20 / 60)
    assert c.ci == pytest.approx((tau + (lo - tau_sub) * scale, tau + (hi - tau_sub) * scale), abs=1e-9)
    # a cap below 10 means 10; a cap of n or more bootstraps all pairs
    small_cap = A.correlate(q[:15], t[:15], method="kendall", n_boot=60, seed=4, kendall_boot_cap=3)
    rng = np.random.default_rng(4)
    sub = rng.choice(15, size=10, replace=False)
    tau_sub = stats.kendalltau(q[:15][sub], t[:15][sub])[0]
    lo, hi = _reference_ci("kendall", q[:15][sub], t[:15][sub], 60, 0.95, rng)
    tau = stats.kendalltau(q[:15], t[:15])[0]
    s = math.sqrt(10 / 15)
    assert small_cap.ci == pytest.approx((np.clip(tau + (lo - tau_sub) * s, -1, 1),
                                          np.clip(tau + (hi - tau_sub) * s, -1, 1)), abs=1e-9)
    full = A.correlate(q, t, method="kendall", n_boot=60, seed=4, kendall_boot_cap=60)
    assert full.ci == pytest.approx(_reference_ci("kendall", q, t, 60, 0.95, np.random.default_rng(4)), abs=1e-9)


def test_kendall_subsample_with_a_constant_subsample_has_no_interval():
    q = np.r_[np.zeros(30), np.arange(1.0, 3.0)]
    t = np.arange(32.0)
    seed = next(s for s in range(200)  # a seed whose subsample of 10 misses both non-zero q
                if np.all(q[np.random.default_rng(s).choice(32, size=10, replace=False)] == 0))
    c = A.correlate(q, t, method="kendall", n_boot=30, seed=seed, kendall_boot_cap=10)
    assert math.isfinite(c.estimate) and math.isnan(c.ci_low) and math.isnan(c.ci_high)


def _reference_auroc_ci(q, correct, n_boot, confidence, rng):
    """Stratified bootstrap: each slot of a class draws a member of that class."""
    o = np.argsort(q, kind="stable")
    qs, pos = q[o], correct[o].astype(np.int64)
    perm = np.argsort(pos, kind="stable")
    members = [perm[pos[perm] == c] for c in (0, 1)]
    boot = []
    u = rng.random((n_boot, len(q)))
    for row in u:
        idx = np.empty(len(q), dtype=np.int64)
        for j, slot in enumerate(perm):
            m = members[pos[slot]]
            idx[j] = m[int(row[j] * len(m))]
        boot.append(roc_auc_score(pos[idx], qs[idx]))
    a = (1 - confidence) / 2
    return tuple(np.quantile(boot, [a, 1 - a]))


@pytest.mark.parametrize("higher_is_better", [True, False])
def test_auroc_interval_equals_the_reference_stratified_bootstrap(higher_is_better):
    rng = np.random.default_rng(7)
    q = np.round(rng.normal(size=45), 1)
    correct = rng.random(45) < 1 / (1 + np.exp(-2 * q))
    a = A.auroc(q, correct, higher_is_better=higher_is_better, n_boot=80, confidence=0.9, seed=9)
    oriented = q if higher_is_better else -q
    assert a.estimate == pytest.approx(roc_auc_score(correct, oriented))
    assert a.ci == pytest.approx(_reference_auroc_ci(oriented, correct, 80, 0.9, np.random.default_rng(9)),
                                 abs=1e-9)
    assert (a.n, a.n_pos, a.n_neg, a.n_boot, a.confidence) == (45, int(correct.sum()),
                                                               45 - int(correct.sum()), 80, 0.9)


def test_auroc_inputs_and_notes():
    with pytest.raises(ValueError, match=r"^correct must be binary \(True/False or 1/0\), found values like \[0.5, 2.0\]$"):
        A.auroc([1, 2, 3, 4], [0, 0.5, 2.0, 1])
    none = A.auroc([np.nan], [1])
    assert none.note == "no samples" and math.isnan(none.estimate) and none.n_missing == 1
    one = A.auroc([1.0, 2.0, 3.0], [1, 1, 1], n_boot=10)
    assert one.note == "only one class present (3 correct, 0 errors): AUROC undefined"
    assert math.isnan(one.ci_low) and one.n_boot == 10 and one.higher_is_better is True
    assert A.auroc([0.1, 0.9], [False, True], n_boot=0).ci == pytest.approx((np.nan, np.nan), nan_ok=True)
    assert A.auroc([0.1, 0.9, 0.5], [0, 1, 1], n_boot=0).estimate == 1.0


def test_correlate_fields_and_notes():
    c = A.correlate([1.0, 2.0, None, 4.0, 5.0], [2.0, 1.0, 3.0, np.inf, 6.0], method="Pearson",
                    n_boot=0)
    assert (c.method, c.n, c.n_missing, c.n_boot, c.confidence, c.note) == ("pearson", 3, 2, 0, 0.95, "")
    assert c.estimate == pytest.approx(stats.pearsonr([1, 2, 5], [2, 1, 6])[0]) and math.isnan(c.ci_low)
    few = A.correlate([1.0, 2.0], [1.0, 2.0])
    assert few.note == "need at least 3 complete pairs, got 2" and math.isnan(few.estimate)
    assert A.correlate([1.0] * 4, [1.0, 2.0, 3.0, 4.0]).note == "quality is constant: correlation undefined"
    assert A.correlate([1.0, 2.0, 3.0, 4.0], [0.0] * 4).note == "target is constant: correlation undefined"
    with pytest.raises(ValueError, match="unknown correlation method 'cosine'; use one of spearman, kendall, pearson"):
        A.correlate([1, 2, 3], [1, 2, 3], method="cosine")
    for bad in (0, 1, 1.5, -0.1):
        with pytest.raises(ValueError, match=f"confidence must be in \\(0, 1\\), got {bad}"):
            A.correlate([1, 2, 3], [1, 2, 3], confidence=bad)
        with pytest.raises(ValueError, match="confidence must be in"):
            A.auroc([1, 2, 3], [0, 1, 1], confidence=bad)


def test_correlations_pass_every_option_on():
    q, t = _data(30, seed=4)
    out = A.correlations(q, t, higher_is_better=False, n_boot=40, confidence=0.8, seed=2,
                         kendall_boot_cap=12)
    assert list(out) == ["spearman", "kendall", "pearson"]
    for m, c in out.items():
        one = A.correlate(q, t, method=m, higher_is_better=False, n_boot=40, confidence=0.8, seed=2,
                          kendall_boot_cap=12)
        assert (c.estimate, c.ci, c.higher_is_better, c.n_boot, c.confidence) == \
            (one.estimate, one.ci, False, 40, 0.8)


def test_rank_fields_orders_directions_and_auroc():
    q, t = _data(50, seed=6)
    correct = (t > 0).astype(float)
    rows = A.rank_fields({"good": q, "reversed": (-q, False), "noise": np.r_[q[:25], -q[25:]],
                          "constant": np.ones(50), 7: (q, np.bool_(True))}, correct, n_boot=30,
                         confidence=0.9, seed=1, kendall_boot_cap=15)
    names = [r.name for r in rows]
    assert names[-1] == "constant" and set(names[:2]) == {"good", "reversed"} and "7" in names
    rho = {r.name: r.spearman.estimate for r in rows}
    assert rho["good"] == pytest.approx(stats.spearmanr(q, correct)[0]) == pytest.approx(rho["reversed"])
    assert [r.spearman.estimate for r in rows[:-1]] == sorted([r.spearman.estimate for r in rows[:-1]], reverse=True)
    r = rows[names.index("reversed")]
    assert r.higher_is_better is False and r.auroc.estimate == pytest.approx(roc_auc_score(correct, q))
    assert r.spearman.confidence == 0.9 and r.auroc.n_boot == 30 and r.auroc.confidence == 0.9
    ref = A.auroc(-q, correct, higher_is_better=False, n_boot=30, confidence=0.9, seed=1)
    assert r.auroc.ci == ref.ci
    assert r.kendall.ci == A.correlate(-q, correct, method="kendall", higher_is_better=False, n_boot=30,
                                       confidence=0.9, seed=1, kendall_boot_cap=15).ci
    assert all(x.auroc is None for x in A.rank_fields({"a": q}, correct, n_boot=0, auroc_if_binary=False))
    assert all(x.auroc is None for x in A.rank_fields({"a": q}, t, n_boot=0))
    assert A.rank_fields({"a": q}, np.r_[correct[:-1], np.nan], n_boot=0)[0].auroc is not None


def test_percentile_ci_needs_half_of_the_replicates():
    assert R.percentile_ci([], 0.9) == pytest.approx((np.nan, np.nan), nan_ok=True)
    assert R.percentile_ci([0.5], 0.9) == pytest.approx((np.nan, np.nan), nan_ok=True)
    assert R.percentile_ci([0.1, np.nan, np.nan, 0.3, np.nan], 0.9) == pytest.approx((np.nan, np.nan), nan_ok=True)
    vals = [0.1, np.nan, 0.3, 0.2]
    assert R.percentile_ci(vals, 0.5) == pytest.approx(tuple(np.quantile([0.1, 0.3, 0.2], [0.25, 0.75])))
    assert R.percentile_ci([0.1, None, 0.3, 0.2], 0.5) == R.percentile_ci(vals, 0.5)  # None is missing
    assert R.percentile_ci([0.1, 0.3], 0.5) == pytest.approx((0.15, 0.25))  # two finite replicates suffice
    assert R.percentile_ci([0.4, 0.2, np.nan, np.nan], 0.5) == pytest.approx((0.25, 0.35))  # exactly half


def test_fisher_se_ci_against_the_formula():
    boot = np.array([0.2, 0.35, 0.5, 0.3, np.nan])
    se = np.std(np.arctanh(boot[:4]), ddof=1)
    z = stats.norm.ppf(0.95)
    assert R.fisher_se_ci(boot, 0.4, 0.9) == pytest.approx((np.tanh(np.arctanh(0.4) - z * se),
                                                            np.tanh(np.arctanh(0.4) + z * se)))
    hi = R.fisher_se_ci([1.0, 0.9, 0.99], 1.0, 0.95)  # +-1 clipped, not infinite
    assert all(math.isfinite(v) for v in hi) and hi[0] < 0.99 and hi[1] <= 1.0
    lo = R.fisher_se_ci([-1.0, -0.9, -0.99], -1.0, 0.95)
    assert all(math.isfinite(v) for v in lo) and lo[0] >= -1.0 and lo[1] > -0.99
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # too few replicates: NaN, computed from nothing
        assert math.isnan(R.fisher_se_ci([0.1, np.nan, np.nan], 0.2, 0.9)[0])
        assert math.isnan(R.fisher_se_ci([0.1, 0.2], np.nan, 0.9)[1])
        assert math.isnan(R.fisher_se_ci([0.1, 0.2, 0.3, 0.4] + [np.nan] * 6, 0.2, 0.9)[0])
    # enough: two finite of four (half), two of three (at least two)
    for boot in ([0.2, 0.4, np.nan, np.nan], [0.2, 0.4, np.nan]):
        se = np.std(np.arctanh([0.2, 0.4]), ddof=1)
        assert R.fisher_se_ci(boot, 0.3, 0.9)[1] == pytest.approx(np.tanh(np.arctanh(0.3) + z * se))


@pytest.mark.parametrize("method", ["spearman", "kendall", "pearson"])
def test_rowwise_corr_equals_scipy_row_by_row(method):
    rng = np.random.default_rng(3)
    A_, B_ = np.round(rng.normal(size=(7, 9)), 1), np.round(rng.normal(size=(7, 9)), 1)
    got = R.rowwise_corr(A_, B_, method)
    assert got == pytest.approx([SCIPY[method](a, b)[0] for a, b in zip(A_, B_)])


def test_rowwise_kendall_in_chunks():
    rng = np.random.default_rng(4)
    A_, B_ = rng.normal(size=(450, 100)), rng.normal(size=(450, 100))  # 419 rows a chunk
    got = R.rowwise_corr(A_, B_, "kendall")
    assert got[[0, 418, 419, 449]] == pytest.approx([stats.kendalltau(A_[i], B_[i])[0] for i in (0, 418, 419, 449)])


def test_inputs_are_cleaned_with_clear_errors():
    assert R.as_float(torch.tensor([1.0, 2.0])).tolist() == [1.0, 2.0]
    assert R.as_float([[1.0], [2.0]]).tolist() == [1.0, 2.0]
    assert R.as_float([[1.0, 2.0]]).tolist() == [1.0, 2.0]
    with pytest.raises(ValueError, match=r"^q must be 1-D, got shape \(2, 2\)$"):
        R.as_float([[1, 2], [3, 4]], "q")
    with pytest.raises(TypeError, match="^values must be numeric"):
        R.as_float(["x"])
    (a, b), n_missing, mask = R.clean_pairs([1, None, 3, 4], [np.nan, 2, 3, 4])
    assert (a.tolist(), b.tolist(), n_missing, mask.tolist()) == ([3.0, 4.0], [3.0, 4.0], 2, [False, False, True, True])
    with pytest.raises(ValueError, match="^length mismatch: quality has 2 values, target has 3$"):
        R.clean_pairs([1, 2], [1, 2, 3], names=["quality", "target"])
    with pytest.raises(ValueError, match="^length mismatch: array 0 has 1 values, array 1 has 2$"):
        R.clean_pairs([1], [1, 2])
    assert R.is_binary(np.array([0.0, 1.0, 1.0])) and not R.is_binary(np.array([])) \
        and not R.is_binary(np.array([0.0, 0.5]))


def test_factorize_labels_missing_and_composite_keys():
    codes, labels = R.factorize(["b", None, "a", "b", np.nan], 5)
    assert codes.tolist() == [1, -1, 0, 1, -1] and labels == ["a", "b"]
    codes, labels = R.factorize(["b", 1, "b"], 3)  # mixed types: numbers before strings
    assert codes.tolist() == [1, 0, 1] and labels == [1, "b"]
    codes, labels = R.factorize([("x", 2), ("x", 1), ("y", None), ("x", 2)], 4)
    assert codes.tolist() == [1, 0, -1, 1] and labels == [("x", 1), ("x", 2)]
    codes, labels = R.factorize(np.array([["a", 1], ["b", 2], ["a", 1]], dtype=object), 3)
    assert codes.tolist() == [0, 1, 0] and labels == [("a", 1), ("b", 2)]
    codes, labels = R.factorize([("a", 1), (None, 2)], 2)
    assert codes.tolist() == [0, -1] and labels == [("a", 1)]
    codes, labels = R.factorize([(None, 1)], 1)
    assert codes.tolist() == [-1] and labels == []
    codes, labels = R.factorize([(1, "b"), ("a", "b")], 2)  # mixed column
    assert codes.tolist() == [0, 1] and labels == [(1, "b"), ("a", "b")]
    with pytest.raises(ValueError, match="^groups has 2 values for 3 samples$"):
        R.factorize(["a", "b"], 3)
    with pytest.raises(ValueError, match="^groups has 1 values for 2 samples$"):
        R.factorize([("a", 1)], 2)


def test_stratified_resamples_keep_each_class_within_itself():
    codes = np.array([1, 0, 1, 1, 0, 2, 1])
    sample = R.stratified_sampler(codes)
    idx = sample(np.random.default_rng(0), 200)
    assert idx.shape == (200, 7)
    perm = np.argsort(codes, kind="stable")
    np.testing.assert_array_equal(codes[idx], np.broadcast_to(codes[perm], (200, 7)))
    assert set(np.unique(idx[:, codes[perm] == 1])) == {0, 2, 3, 6}  # every member drawn


def test_count_blocks_are_bootstrap_multiplicities():
    blocks = list(R.count_blocks(np.random.default_rng(1), 5, 7))
    assert [b.shape for b in blocks] == [(7, 5)]
    W = np.concatenate(blocks)
    ref = np.stack([np.bincount(i, minlength=5) for i in _blocks(np.random.default_rng(1), 5, 7)])
    np.testing.assert_array_equal(W, ref)
    assert (W.sum(axis=1) == 5).all() and list(R.count_blocks(np.random.default_rng(1), 5, 0)) == []


def test_defaults_of_the_public_functions():
    q, t = _data(30, seed=8)
    correct = (t > 0).astype(float)
    c = A.correlate(q, t)
    assert (c.method, c.n_boot, c.confidence, c.higher_is_better) == ("spearman", 1000, 0.95, True)
    assert c.ci == A.correlate(q, t, method="spearman", n_boot=1000, seed=0).ci
    cs = A.correlations(q, t)
    assert all(x.n_boot == 1000 and x.higher_is_better is True for x in cs.values())
    assert cs["pearson"].ci == A.correlate(q, t, method="pearson", seed=0).ci
    a = A.auroc(q, correct)
    assert (a.n_boot, a.confidence, a.higher_is_better) == (1000, 0.95, True)
    assert a.ci == A.auroc(q, correct, seed=0).ci
    row = A.rank_fields({"q": q}, correct)[0]
    assert row.spearman.n_boot == 1000 and row.auroc.n_boot == 1000
    assert row.kendall.ci == A.correlate(q, correct, method="kendall", seed=0).ci
    assert row.auroc.ci == a.ci


def test_non_numeric_inputs_are_named_in_the_error():
    for call, name in ((lambda: A.correlate(["x", "y", "z"], [1, 2, 3]), "quality"),
                       (lambda: A.correlate([1, 2, 3], ["x", "y", "z"]), "target"),
                       (lambda: A.auroc(["x", "y"], [0, 1]), "quality"),
                       (lambda: A.auroc([1, 2], ["x", "y"]), "correct"),
                       (lambda: A.rank_fields({"a": [1, 2]}, ["x", "y"]), "target")):
        with pytest.raises(TypeError, match=f"^{name} must be numeric"):
            call()


def test_a_result_without_an_estimate_is_nan_throughout():
    few = A.correlate([1.0, 2.0], [1.0, 2.0], higher_is_better=False)
    assert all(math.isnan(v) for v in (few.estimate, few.ci_low, few.ci_high, few.p_value))
    assert few.higher_is_better is False
    a = A.auroc([1.0, 2.0], [1, 1], higher_is_better=False)
    assert all(math.isnan(v) for v in (a.estimate, a.ci_low, a.ci_high)) and a.higher_is_better is False
    assert A.auroc([0.3, 0.1, 0.2], [1, 0, 0], n_boot=0).estimate == 1.0  # one correct sample is enough
    with pytest.raises(ValueError, match=r"found values like \[2.0, 3.0, 4.0\]$"):
        A.auroc([1, 2, 3, 4, 5], [2, 3, 4, 5, 1])


@pytest.mark.parametrize("sign", [1, -1])
def test_kendall_subsample_interval_is_clipped_to_minus_one_one(sign):
    # a strong correlation: the rescaled bound of the subsample's bootstrap passes +-1
    for seed in range(50):
        rng = np.random.default_rng(seed)
        t = np.arange(80.0)
        q = sign * (t + rng.normal(scale=3.0, size=80))
        c = A.correlate(q, t, method="kendall", n_boot=50, seed=seed, kendall_boot_cap=10)
        r = np.random.default_rng(seed)
        sub = r.choice(80, size=10, replace=False)
        tau_sub = stats.kendalltau(q[sub], t[sub])[0]
        lo, hi = _reference_ci("kendall", q[sub], t[sub], 50, 0.95, r)
        s = math.sqrt(10 / 80)
        raw = (c.estimate + (lo - tau_sub) * s, c.estimate + (hi - tau_sub) * s)
        assert c.ci == pytest.approx(tuple(np.clip(raw, -1, 1)), abs=1e-9)
        if max(abs(raw[0]), abs(raw[1])) > 1:
            break
    else:
        pytest.fail("no seed gave a bound past +-1")


def test_auroc_with_heavy_ties_follows_the_stable_order():
    rng = np.random.default_rng(12)
    q = np.round(rng.normal(size=300))  # five or so distinct values
    correct = rng.random(300) < 1 / (1 + np.exp(-q))
    a = A.auroc(q, correct, n_boot=40, seed=2)
    assert a.ci == pytest.approx(_reference_auroc_ci(q, correct, 40, 0.95, np.random.default_rng(2)), abs=1e-9)


def test_rank_fields_reads_specs_and_directions():
    q, t = _data(40, seed=9)
    correct = (t > 0).astype(float)
    good = A.rank_fields({"good": (q, True)}, correct, n_boot=0)[0]
    assert good.higher_is_better is True and good.auroc.estimate == pytest.approx(roc_auc_score(correct, q))
    assert good.auroc.higher_is_better is True
    pair = A.rank_fields({"pair": (0.1, 0.9)}, [0.0, 1.0], n_boot=0)[0]  # two values, not (values, direction)
    assert pair.n == 2 and pair.spearman.note == "need at least 3 complete pairs, got 2"
    three = A.rank_fields({"three": (0.1, 0.5, 0.9)}, [0.0, 1.0, 1.0], n_boot=0)[0]
    assert three.n == 3 and three.higher_is_better is True


@pytest.mark.parametrize("method", ["spearman", "pearson", "kendall"])
def test_rowwise_corr_of_a_constant_row_is_nan_without_warnings(method):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        got = R.rowwise_corr(np.array([[1.0, 1.0, 1.0], [1.0, 2.0, 3.0]]),
                             np.array([[1.0, 2.0, 3.0], [3.0, 1.0, 2.0]]), method)
    assert math.isnan(got[0]) and got[1] == pytest.approx(SCIPY[method]([1, 2, 3], [3, 1, 2])[0])


def test_spearman_interval_without_ties_equals_the_reference_bootstrap():
    q, t = _data(35, seed=13, ties=False)
    c = A.correlate(q, t, n_boot=80, confidence=0.9, seed=6)
    assert c.ci == pytest.approx(_reference_ci("spearman", q, t, 80, 0.9, np.random.default_rng(6)), abs=1e-9)


def _scipy_replicates(method, x, y, n_boot, seed):
    """One scipy correlation per resample of the reference draws (NaN for a constant one)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # scipy warns on constant resamples
        return np.array([SCIPY[method](x[i], y[i])[0] for i in
                         (_resample(method, x, j) for j in _blocks(np.random.default_rng(seed), len(x), n_boot))])


@pytest.mark.parametrize("method", ["spearman", "kendall", "pearson"])
@pytest.mark.parametrize("n", [3, 4])
def test_resamples_of_one_value_have_no_correlation_and_no_warnings(method, n):
    # tiny samples draw the same value many times over: scipy says NaN, and so must we
    x = np.round(np.random.default_rng(n).normal(size=n), 1)
    y = x + np.round(np.random.default_rng(n + 1).normal(size=n), 1)
    xs, ys = (x, y) if method == "pearson" else (np.sort(x), y[np.argsort(x, kind="stable")])
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a 0/0 of a constant resample must stay silent
        got = R.bootstrap_correlation(method, xs, ys, 300, np.random.default_rng(5))
    want = _scipy_replicates(method, x, y, 300, 5)
    assert np.isnan(want).any()
    np.testing.assert_allclose(got, want, atol=1e-9, equal_nan=True)


@pytest.mark.parametrize("sign", [1, -1])
def test_pearson_replicates_of_an_exact_line_stay_within_one(sign):
    # the moment formula rounds past +-1 on some resamples (by ~1e-11 for these seeds)
    for seed in range(700):
        rng = np.random.default_rng(seed)
        x = rng.normal(size=int(rng.integers(4, 8)))
        for y in (sign * x, sign * (3 * x) + 2):
            r = R.bootstrap_correlation("pearson", x, y, 200, rng)
            ok = r[np.isfinite(r)]
            assert ok.size and np.all(np.abs(ok) <= 1.0)
            np.testing.assert_allclose(ok, sign, atol=1e-9)


@pytest.mark.parametrize("swap", [False, True])
def test_pearson_replicates_of_offset_and_huge_values_equal_scipy(swap):
    # standardising once keeps the moment formula exact to rounding: an offset of 1e9
    # (cancellation) and a scale of 1e100 (squares of the unscaled values overflow)
    z = np.random.default_rng(3).normal(size=(2, 40))
    x, y = 1e9 + z[0], 1e100 * (z[0] + z[1])
    if swap:
        x, y = y, x
    got = R.bootstrap_correlation("pearson", x, y, 100, np.random.default_rng(4))
    np.testing.assert_allclose(got, _scipy_replicates("pearson", x, y, 100, 4), atol=1e-7)


def test_no_resamples_give_no_replicates():
    x = np.arange(5.0)
    for method in ("spearman", "kendall", "pearson"):
        assert R.bootstrap_correlation(method, x, x, 0, np.random.default_rng(0)).shape == (0,)
    assert R.bootstrap_auroc(x, x > 2, 0, np.random.default_rng(0)).shape == (0,)


def test_tensors_that_require_grad_are_read_as_their_values():
    q, t = _data(30, seed=14)
    tq = torch.tensor(q, requires_grad=True)  # a model's output, straight from the model
    assert A.correlate(tq, t, n_boot=50).ci == A.correlate(q, t, n_boot=50).ci
    np.testing.assert_array_equal(R.as_float(tq), q)


def test_a_resample_of_two_close_values_is_not_one_value():
    # the variance of {0, 0, 1e-6} is tiny next to the data's, so the row is checked exactly
    x = np.array([0.0, 1e-6, 10.0, 20.0])
    y = np.array([1.0, 2.0, 0.0, 5.0])
    r = R._PearsonBoot(x, y)(np.array([[2, 1, 0, 0], [3, 0, 0, 0], [0, 0, 2, 2]]))
    assert np.isfinite(r[0]) and np.isnan(r[1]) and r[2] == pytest.approx(1.0)
