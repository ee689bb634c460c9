"""The cluster (per-video) bootstrap: whole clusters resampled, so intervals of frames of
one video are as wide as the evidence of that many videos.

Oracles: a plain loop that draws whole clusters with the library's generator convention
(``rng.integers(0, C, (n_boot, C))``, clusters numbered by first appearance in the order the
statistic reads the pairs) and computes scipy/sklearn on the concatenated members; a
coverage simulation on clustered data (true correlation 0) where resampling frames
undercovers; with one sample per cluster, the ordinary bootstrap number for number.
"""

import numpy as np
import pytest
from scipy import stats
from sklearn.metrics import roc_auc_score

import fiftyone as fo

from fiftyone_dnniqa.analysis import resampling as R
from fiftyone_dnniqa.analysis.correlation import auroc, correlate
from fiftyone_dnniqa.analysis.video_targets import frame_statistics

SCIPY = {"spearman": stats.spearmanr, "kendall": stats.kendalltau, "pearson": stats.pearsonr}


def _clustered(n_clusters, sizes, seed, spread=1.0):
    """Frames of ``n_clusters`` videos: x and y share nothing but their video's offsets
    (independent across videos), so the true correlation is 0 and frames of one video
    are correlated. Labels are shuffled strings."""
    rng = np.random.default_rng(seed)
    size = rng.integers(sizes[0], sizes[1] + 1, size=n_clusters)
    video = np.repeat(np.arange(n_clusters), size)
    x = rng.normal(size=n_clusters)[video] * spread + rng.normal(size=len(video))
    y = rng.normal(size=n_clusters)[video] * spread + rng.normal(size=len(video))
    names = np.array([f"video-{k}" for k in rng.permutation(n_clusters)], dtype=object)
    shuffle = rng.permutation(len(video))
    return np.round(x[shuffle], 1), np.round(y[shuffle], 1), names[video[shuffle]]


def _oracle_replicates(stat, x, y, labels, order, n_boot, seed):
    """Whole clusters drawn by a plain loop: the clusters numbered by first appearance
    along ``order``; each draw concatenates the members of the clusters drawn."""
    first_seen = list(dict.fromkeys(labels[order].tolist()))
    members = {c: np.flatnonzero(labels == c) for c in first_seen}
    draws = np.random.default_rng(seed).integers(0, len(first_seen), size=(n_boot, len(first_seen)),
                                                 dtype=np.int32)
    out = []
    for draw in draws:
        idx = np.concatenate([members[first_seen[c]] for c in draw])
        out.append(stat(x[idx], y[idx]))
    return np.array(out)


def _auroc_or_nan(correct, q):
    return roc_auc_score(correct, q) if 0 < correct.sum() < len(correct) else np.nan


def _percentile(boot, confidence=0.95):
    ok = boot[np.isfinite(boot)]
    return tuple(np.quantile(ok, [(1 - confidence) / 2, (1 + confidence) / 2]))


@pytest.mark.parametrize("method", ["spearman", "kendall", "pearson"])
def test_cluster_replicates_equal_a_loop_over_whole_clusters(method):
    x, y, labels = _clustered(12, (1, 9), seed=1)
    codes = R.factorize(labels, len(labels))[0]
    got = R.bootstrap_correlation(method, x, y, 300, np.random.default_rng(7), clusters=codes)
    order = np.arange(len(x)) if method == "pearson" else np.argsort(x, kind="stable")
    want = _oracle_replicates(lambda a, b: SCIPY[method](a, b)[0], x, y, labels, order, 300, 7)
    np.testing.assert_allclose(got, want, atol=1e-9, equal_nan=True)
    # through correlate, with missing pairs dropped first (their labels with them)
    xm = x.copy()
    xm[[0, 5]] = np.nan
    res = correlate(xm, y, method=method, n_boot=300, seed=3, clusters=list(labels))
    keep = np.isfinite(xm)
    xk, yk, lk = x[keep], y[keep], labels[keep]
    order = np.arange(len(xk)) if method == "pearson" else np.argsort(xk, kind="stable")
    want = _oracle_replicates(lambda a, b: SCIPY[method](a, b)[0], xk, yk, lk, order, 300, 3)
    assert (res.n, res.n_missing) == (len(xk), 2)
    assert (res.ci_low, res.ci_high) == pytest.approx(_percentile(want), abs=1e-9)


def test_cluster_auroc_equals_a_loop_over_whole_clusters():
    q, noise, labels = _clustered(10, (2, 8), seed=2)
    correct = (q + noise > 0).astype(float)
    res = auroc(q, correct, n_boot=300, seed=4, clusters=labels)
    assert res.estimate == pytest.approx(roc_auc_score(correct, q))
    want = _oracle_replicates(_auroc_or_nan, correct, q, labels, np.argsort(q, kind="stable"), 300, 4)
    assert (res.ci_low, res.ci_high) == pytest.approx(_percentile(want), abs=1e-12)


@pytest.mark.parametrize("method", ["spearman", "kendall", "pearson"])
def test_one_frame_per_cluster_is_the_ordinary_bootstrap(method):
    x, y, _ = _clustered(60, (1, 1), seed=3)
    names = [f"frame-{k}" for k in np.random.default_rng(0).permutation(60)]
    for cap in (1000, 20):  # exact, and Kendall's subsample above its cap
        plain = correlate(x, y, method=method, n_boot=200, seed=5, kendall_boot_cap=cap)
        clustered = correlate(x, y, method=method, n_boot=200, seed=5, kendall_boot_cap=cap, clusters=names)
        assert (clustered.ci_low, clustered.ci_high) == (plain.ci_low, plain.ci_high)
    # AUROC: not stratified by class any more, so the oracle is the plain unstratified loop
    correct = (y > 0).astype(float)
    res = auroc(x, correct, n_boot=200, seed=6, clusters=names)
    want = _oracle_replicates(_auroc_or_nan, correct, x, np.array(names), np.argsort(x, kind="stable"), 200, 6)
    assert (res.ci_low, res.ci_high) == pytest.approx(_percentile(want), abs=1e-12)


def test_cluster_intervals_cover_where_frame_intervals_do_not():
    # 300 data sets of 40 videos x 5-10 frames, true correlation 0, 200 resamples each
    covered = {"frames": 0, "videos": 0}
    n_sets = 300
    for s in range(n_sets):
        x, y, labels = _clustered(40, (5, 10), seed=100 + s, spread=1.5)
        for name, clusters in (("frames", None), ("videos", labels)):
            r = correlate(x, y, method="pearson", n_boot=200, seed=s, clusters=clusters)
            covered[name] += r.ci_low <= 0 <= r.ci_high
    # measured: 275 of 300 (0.92; percentile intervals of r run a little short with
    # 40 clusters) against 193 (0.64) resampling frames; binomial SE near 0.93: 0.015
    assert 0.89 <= covered["videos"] / n_sets <= 0.98, covered
    assert covered["frames"] / n_sets < 0.8, covered


def test_kendall_subsample_of_whole_clusters_keeps_the_width():
    # above the cap Kendall bootstraps whole clusters of about cap frames, its spread
    # rescaled by sqrt(m / n): on average as wide as the exact cluster bootstrap (one
    # subsample of ~20 videos is noisy: 0.21-0.35 against 0.28 over seeds)
    x, y, labels = _clustered(40, (10, 20), seed=9, spread=1.5)
    exact = correlate(x, y, method="kendall", n_boot=200, seed=1, kendall_boot_cap=10**6, clusters=labels)
    capped = [correlate(x, y, method="kendall", n_boot=200, seed=s, kendall_boot_cap=300, clusters=labels)
              for s in range(6)]
    frames = correlate(x, y, method="kendall", n_boot=200, seed=1, kendall_boot_cap=10**6)
    width = exact.ci_high - exact.ci_low
    assert all(r.estimate == exact.estimate for r in capped)
    assert 0.8 < np.mean([r.ci_high - r.ci_low for r in capped]) / width < 1.25
    assert frames.ci_high - frames.ci_low < 0.6 * width


def test_few_clusters_give_no_interval_and_missing_labels_are_refused():
    x, y, labels = _clustered(2, (5, 5), seed=0)
    res = correlate(x, y, n_boot=100, clusters=labels)
    assert np.isfinite(res.estimate) and np.isnan(res.ci_low) and "2 cluster" in res.note
    assert np.isnan(auroc(x, (y > 0).astype(float), n_boot=100, clusters=labels).ci_high)
    with pytest.raises(ValueError, match="missing labels"):
        correlate(x, y, n_boot=10, clusters=[None] + list(labels[1:]))


@pytest.fixture(scope="module")
def frame_dataset():
    """8 videos (no media read) of 12 frames: frame scores ``q`` and a frame classifier
    that errs more on low-quality frames, evaluated by FiftyOne on the frames."""
    rng = np.random.default_rng(0)
    ds = fo.Dataset()
    for v in range(8):
        sample = fo.Sample(filepath=f"/nonexistent/cluster-bootstrap/v{v}.mp4")
        offset = rng.normal()
        for fn in range(1, 13):
            q = float(offset + rng.normal())
            wrong = rng.random() < (0.6 if q < 0 else 0.2)
            sample.frames[fn] = fo.Frame(q=q, gt=fo.Classification(label="road"),
                                         pred=fo.Classification(label="sky" if wrong else "road"))
        ds.add_sample(sample)
    ds.evaluate_classifications("frames.pred", gt_field="frames.gt", eval_key="cls")
    yield ds
    ds.delete()


def test_frame_statistics_resample_whole_videos(frame_dataset):
    ds = frame_dataset
    got = frame_statistics(ds, ["q"], eval_key="cls", higher_is_better=True, n_boot=300, seed=2)
    sids = np.array(ds.values("id"), dtype=object).repeat(12)
    q = np.array(ds.values("frames.q", unwind=True))
    correct = np.array([p == "road" for p in ds.values("frames.pred.label", unwind=True)], float)
    row = got["ranking"][0]
    for method in ("spearman", "pearson"):
        order = np.arange(len(q)) if method == "pearson" else np.argsort(q, kind="stable")
        want = _oracle_replicates(lambda a, b: SCIPY[method](a, b)[0], q, correct, sids, order, 300, 2)
        assert (row[method]["ci_low"], row[method]["ci_high"]) == pytest.approx(_percentile(want), abs=1e-9)
    want = _oracle_replicates(_auroc_or_nan, correct, q, sids, np.argsort(q, kind="stable"), 300, 2)
    assert (row["auroc"]["ci_low"], row["auroc"]["ci_high"]) == pytest.approx(_percentile(want), abs=1e-12)
