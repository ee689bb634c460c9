"""The statistics of the "Quality vs Performance" panel (``analysis/panel_stats.py``),
checked field by field against independent oracles: scipy, sklearn, numpy and
expectations written by hand from how the small datasets below were built.

Fast on purpose (small datasets, few bootstrap resamples): mutation testing of
``panel_stats.py`` runs this file for every mutant.
"""

import json
import math

import numpy as np
import pytest
import scipy.stats
from PIL import Image
from sklearn.metrics import roc_auc_score

import fiftyone as fo

import fiftyone_dnniqa as dq
from fiftyone_dnniqa.analysis import panel_stats as P
from fiftyone_dnniqa.analysis import targets as T
from fiftyone_dnniqa.analysis.targets import NoEvaluationError
from fiftyone_dnniqa.metrics.base import InputSpec, QualityMetric


# ---------------------------------------------------------------------------
# Datasets
# ---------------------------------------------------------------------------


class _Brightness(QualityMetric):
    """Mean pixel value; lower is better (so the run records that direction)."""

    name = "pstats_low"
    higher_is_better = False
    input_spec = InputSpec(resize=8, crop=8)

    def score(self, images, references=None):
        return images.mean(dim=(1, 2, 3)).double()


class _MidGray(QualityMetric):
    """Squared distance of the mean pixel value from mid-gray; higher is better."""

    name = "pstats_high"
    higher_is_better = True
    input_spec = InputSpec(resize=8, crop=8)

    def score(self, images, references=None):
        return (images.mean(dim=(1, 2, 3)).double() - 0.5) ** 2


N_EVAL = 24  # evaluated samples
N_EXTRA = 4  # added after the evaluation: no correctness
N_ALL = N_EVAL + N_EXTRA
NO_CONF = 5  # the evaluated sample whose prediction has no confidence
LOW, HIGH = "iqa_pstats_low", "iqa_pstats_high"
SEED, N_BOOT, CONF, BINS, HIST = 7, 30, 0.8, 4, 6


def _build_cls(tmp):
    rng = np.random.default_rng(3)
    rank = np.arange(N_EVAL) / (N_EVAL - 1)
    correct = (rng.random(N_EVAL) < 0.15 + 0.7 * rank).astype(float)
    correct[:2], correct[-2:] = 0.0, 1.0  # both classes, whatever the draw
    conf = rng.uniform(0.3, 1.0, N_ALL)
    conf[NO_CONF] = np.nan
    conf[N_EVAL] = np.nan  # first extra sample: no prediction at all
    q_good = 0.6 * np.r_[correct, [1, 0, 1, 0]] + rng.random(N_ALL)
    q_noise = rng.normal(size=N_ALL)
    q_noise[[2, 7, 13]] = np.nan
    q_int = (np.arange(N_ALL) * 5 % 7).astype(float)  # 0..6: values on the histogram's edges
    gray = rng.permutation(N_EVAL) * 10  # the images' gray levels (what the metrics read)
    gt = ["a" if i % 2 else "b" for i in range(N_ALL)]
    samples = []
    for i in range(N_EVAL):
        path = str(tmp / f"img{i:02d}.png")
        Image.new("RGB", (8, 8), (int(gray[i]),) * 3).save(path)
        pred = gt[i] if correct[i] else "other"
        samples.append(fo.Sample(
            filepath=path, ground_truth=fo.Classification(label=gt[i]),
            predictions=fo.Classification(label=pred, confidence=None if i == NO_CONF else float(conf[i])),
            q_good=float(q_good[i]), q_noise=None if np.isnan(q_noise[i]) else float(q_noise[i]),
            q_int=float(q_int[i])))
    ds = fo.Dataset()
    ds.add_samples(samples, progress=False)
    dq.compute_quality(ds, [_Brightness(), _MidGray()], num_workers=0, progress=False)
    ds.evaluate_classifications("predictions", gt_field="ground_truth", eval_key="eval", progress=False)
    extra = []
    for i in range(N_EVAL, N_ALL):
        pred = None if i == N_EVAL else fo.Classification(label=gt[i], confidence=float(conf[i]))
        extra.append(fo.Sample(filepath=f"/nonexistent/extra{i}.png",
                               ground_truth=fo.Classification(label=gt[i]), predictions=pred,
                               q_good=float(q_good[i]), q_noise=float(q_noise[i]), q_int=float(q_int[i])))
    ds.add_samples(extra, progress=False)
    ds.add_sample_field("q_empty", fo.FloatField)  # a field with no values at all
    ids = np.asarray(ds.values("id"))
    low = np.r_[np.asarray(ds.values(LOW)[:N_EVAL], float), np.full(N_EXTRA, np.nan)]
    high = np.r_[np.asarray(ds.values(HIGH)[:N_EVAL], float), np.full(N_EXTRA, np.nan)]
    np.testing.assert_allclose(low[:N_EVAL], gray / 255, rtol=1e-6)  # what the metric computes
    truth = {
        "ids": ids,
        "correct": np.r_[correct, np.full(N_EXTRA, np.nan)],
        "conf": conf,
        "q": {"q_good": q_good, "q_noise": q_noise, LOW: low, HIGH: high,
              "q_empty": np.full(N_ALL, np.nan), "q_int": q_int},
        "gray": gray,
    }
    return ds, truth


@pytest.fixture(scope="module")
def cls(tmp_path_factory):
    ds, truth = _build_cls(tmp_path_factory.mktemp("pstats"))
    yield ds, truth
    ds.delete()


def _boxes(*xs):
    return fo.Detections(detections=[fo.Detection(label="obj", bounding_box=[x, 0.1, 0.2, 0.2],
                                                  confidence=0.9) for x in xs])


#: (predicted boxes, tp, fp, fn) per pattern; the ground truth is always one box at 0.1
DET_PATTERNS = [((0.1,), 1, 0, 0), ((0.7,), 0, 1, 1), ((), 0, 0, 1), ((0.1, 0.7), 1, 1, 0)]
N_DET = 12


@pytest.fixture(scope="module")
def det():
    """A detection evaluation ('det', the newest), two older classification ones
    ('cls_eval2', and the older 'cls_eval') and a regression one ('reg', which gives no
    target)."""
    rng = np.random.default_rng(5)
    q = rng.random(N_DET)
    ds = fo.Dataset()
    ds.add_samples([fo.Sample(
        filepath=f"/nonexistent/det{i}.jpg", ground_truth=_boxes(0.1),
        predictions=_boxes(*DET_PATTERNS[i % 4][0]), q=float(q[i]),
        gt_cls=fo.Classification(label="a"),
        pred_cls=fo.Classification(label="a" if i % 3 else "b", confidence=0.5),
        pred_cls2=fo.Classification(label="a" if i % 2 else "b", confidence=0.1 + 0.05 * i),
        gt_reg=fo.Regression(value=float(i)), pred_reg=fo.Regression(value=float(i) + 0.5 * (i % 2)),
    ) for i in range(N_DET)], progress=False)
    ds.evaluate_regressions("pred_reg", gt_field="gt_reg", eval_key="reg")
    ds.evaluate_classifications("pred_cls", gt_field="gt_cls", eval_key="cls_eval")
    ds.evaluate_classifications("pred_cls2", gt_field="gt_cls", eval_key="cls_eval2")
    ds.evaluate_detections("predictions", gt_field="ground_truth", eval_key="det")
    for name in ("det_extra", "detx", "cls_eval_score", "xdet_y"):  # excluded ones first
        ds.set_values(name, rng.random(N_DET).tolist())
    pat = [DET_PATTERNS[i % 4] for i in range(N_DET)]
    truth = {"q": q, "tp": np.array([p[1] for p in pat], float),
             "fp": np.array([p[2] for p in pat], float), "fn": np.array([p[3] for p in pat], float)}
    yield ds, truth
    ds.delete()


def _stats(ds, fields=None, **kw):
    args = {"n_boot": N_BOOT, "confidence": CONF, "seed": SEED, "bins": BINS, "hist_bins": HIST, **kw}
    return P.panel_statistics(ds, fields, **args)


def _oriented(q, hib):
    return np.asarray(q, float) if hib else -np.asarray(q, float)


def _pairs(q, t):
    m = np.isfinite(q) & np.isfinite(t)
    return q[m], t[m]


# ---------------------------------------------------------------------------
# Small helpers
# ---------------------------------------------------------------------------


def test_finite_list_turns_non_finite_into_none():
    assert P._finite_list([1, np.nan, np.inf, -np.inf, 2.5]) == [1.0, None, None, None, 2.5]
    assert P._finite_list([1, None, 2]) == [1.0, None, 2.0]  # None is missing too
    assert all(type(v) is float for v in P._finite_list(np.array([1, 2], dtype=np.int64)))


def test_align_reorders_and_fills_missing_with_nan():
    vals = np.array([1.0, 2.0, 3.0])
    got = P.align_values(["a", "b", "c"], ["c", "x", "a"], vals)
    np.testing.assert_array_equal(got, [3.0, np.nan, 1.0])
    assert got.dtype == float
    np.testing.assert_array_equal(P.align_values(["a", "b"], ["b", "a"], np.array([1.0, 2.0])), [2.0, 1.0])
    np.testing.assert_array_equal(P.align_values(["a", "b", "c"], ["a", "b"], vals), [1.0, 2.0])
    np.testing.assert_array_equal(P.align_values(["a", "b"], ["a", "b", "z"], np.array([1.0, 2.0])),
                                  [1.0, 2.0, np.nan])
    assert P.align_values(["a", "b", "c"], ["a", "b", "c"], vals) is vals  # same order: no copy
    assert P.align_values([], [], np.zeros(0)).shape == (0,)


def test_target_labels():
    assert P.TARGET_LABELS == {
        "correct": "accuracy", "confidence": "confidence", "f1": "F1", "precision": "precision",
        "recall": "recall", "tp": "true positives", "fp": "false positives", "fn": "missed objects",
        "accuracy": "pixel accuracy"}
    for kinds in T._KINDS.values():  # every target an evaluation gives has its label
        assert set(kinds) <= set(P.TARGET_LABELS)


def test_bin_id_round_trip():
    s = P.bin_id("iqa_x", 0.25, 1.5, 1)
    assert s == '["iqa_x", 0.25, 1.5, true]'
    assert json.loads(s) == ["iqa_x", 0.25, 1.5, True]
    assert P.parse_bin_id(s) == ("iqa_x", 0.25, 1.5, True, None)
    assert P.parse_bin_id(P.bin_id("f", -2.0, -1.0, 0)) == ("f", -2.0, -1.0, False, None)
    got = P.parse_bin_id('["f", 0, 3, 0]')  # ints read as floats, last as a bool
    assert got == ("f", 0.0, 3.0, False, None)
    assert [type(v) for v in got[:4]] == [str, float, float, bool]
    assert P.parse_bin_id('["f", "1.5", 2, 5]') == ("f", 1.5, 2.0, True, None)
    assert P.parse_bin_id('["f", 2, 2, false]') == ("f", 2.0, 2.0, False, None)  # a constant bin
    # a histogram bar: its outcome too
    w = P.bin_id("f", 0.5, 1.0, False, outcome="wrong")
    assert w == '["f", 0.5, 1.0, false, "wrong"]' and P.parse_bin_id(w) == ("f", 0.5, 1.0, False, "wrong")
    assert P.parse_bin_id('["f", 0, 1, true, "correct"]') == ("f", 0.0, 1.0, True, "correct")


@pytest.mark.parametrize("value", [
    None, 12, "garbage", "", "[1, 2", '["f", 0, 1]', '["f", 0, 1, true, 5]', '{"a": 1}',
    '[3, 0, 1, true]', '[null, 0, 1, true]', '["f", "x", 1, true]', '["f", 0, null, true]',
    '["f", [0], 1, true]', '["f", NaN, 1, true]', '["f", 0, NaN, true]', '["f", 0, Infinity, true]',
    '["f", -Infinity, 1, true]', '["f", 2, 1, true]', '["f", 1.0000001, 1, true]',
    '["f", 0, 1, true, "right"]', '["f", 0, 1, true, "wrong", 1]', '["f", 0, 1, true, null]',
])
def test_parse_bin_id_rejects(value):
    assert P.parse_bin_id(value) is None


def test_bin_view_half_open_and_last_bin_closed(make_dataset):
    q = [0.0, 0.5, 1.0, 1.0, 1.5, 2.0, 2.0, None]
    ds = make_dataset([f"/nonexistent/b{i}.jpg" for i in range(len(q))], q=q)
    a = np.array([np.nan if v is None else v for v in q])
    ids = np.asarray(ds.values("id"))
    for lo, hi in [(0.0, 1.0), (0.5, 2.0), (1.0, 1.0), (1.0, 1.5), (-1.0, 0.0)]:
        for last in (False, True):
            keep = (a >= lo) & ((a <= hi) if last else (a < hi))
            got = P.bin_view(ds, "q", lo, hi, last)
            assert sorted(got.values("id")) == sorted(ids[keep]), (lo, hi, last)
    assert len(P.bin_view(ds, "q", 1.0, 2.0)) == 3  # last defaults to False: [1, 2)
    assert len(P.bin_view(ds, "q", 1.0, 2.0, True)) == 5
    assert len(P.bin_view(ds.match(fo.ViewField("q") > 0.7), "q", 0.0, 2.0, True)) == 5


# ---------------------------------------------------------------------------
# Fields and directions
# ---------------------------------------------------------------------------


def test_outcome_view_reads_the_evaluation_and_kind_it_is_given(det):
    """Of two classification evaluations, the named one (not the newest), by hand from
    how ``det`` was built; a detection evaluation has no "correct" kind and is refused."""
    ds, _ = det
    ids = np.asarray(ds.values("id"))
    i = np.arange(len(ids))
    assert sorted(P.outcome_view(ds, "cls_eval", "correct", "wrong").values("id")) == sorted(ids[i % 3 == 0])
    assert sorted(P.outcome_view(ds, "cls_eval2", "correct", "wrong").values("id")) == sorted(ids[i % 2 == 0])
    with pytest.raises(ValueError):
        P.outcome_view(ds, "det", "correct", "wrong")


def test_outcome_view_selects_correct_or_wrong_predictions(cls):
    ds, truth = cls
    ids, correct = truth["ids"], truth["correct"]  # NaN: the samples added after the evaluation
    for outcome, value in (("correct", 1.0), ("wrong", 0.0)):
        got = P.outcome_view(ds, "eval", "correct", outcome)
        assert sorted(got.values("id")) == sorted(ids[correct == value]), outcome
    assert len(P.outcome_view(ds, "eval", "correct", "wrong")) == int((correct == 0).sum()) > 0
    # within a view: only that view's samples, whatever the dataset holds
    part = ds.select(list(ids[:10]))
    assert sorted(P.outcome_view(part, "eval", "correct", "correct").values("id")) == \
        sorted(ids[:10][correct[:10] == 1.0])
    for bad in ("Wrong", "", None, "missed"):
        with pytest.raises(ValueError, match="outcome must be one of"):
            P.outcome_view(ds, "eval", "correct", bad)


def test_numeric_fields_leave_out_what_evaluations_wrote(det):
    ds, _ = det
    # "reg" (the regression evaluation's per-sample error) and "det_extra" / "cls_eval_score"
    # carry an evaluation key; "detx" and "xdet_y" do not
    assert P.numeric_fields(ds) == ["q", "detx", "xdet_y"]
    assert P.numeric_fields(ds.limit(3)) == ["q", "detx", "xdet_y"]


def test_numeric_fields_without_evaluations(make_dataset):
    ds = make_dataset(["/nonexistent/n.jpg"], a=[1.5], b=[2], c=[0.5], s=["x"])
    assert P.numeric_fields(ds) == ["a", "c"]


def test_direction_from_the_quality_run(cls):
    ds, _ = cls
    assert P.direction(ds, LOW) == (False, True)
    assert P.direction(ds, HIGH) == (True, True)
    assert P.direction(ds, "q_good") == (True, False)  # no run: assumed
    assert P.direction(ds.limit(2), LOW) == (False, True)
    assert set(P.quality_fields(ds)) == {LOW, HIGH}


# ---------------------------------------------------------------------------
# Targets
# ---------------------------------------------------------------------------


def test_resolve_target_defaults_and_kind_filtering(det):
    ds, _ = det
    ti, kind = P._resolve_target(ds, None, None)
    assert (ti.eval_key, ti.type, kind) == ("det", "detection", "f1")  # the newest
    ti, kind = P._resolve_target(ds, None, "correct")
    assert (ti.eval_key, kind) == ("cls_eval2", "correct")  # the newest that gives it
    ti, kind = P._resolve_target(ds, None, "recall")
    assert (ti.eval_key, kind) == ("det", "recall")
    ti, kind = P._resolve_target(ds, "cls_eval", None)
    assert (ti.eval_key, ti.type, ti.pred_field, kind) == ("cls_eval", "classification", "pred_cls", "correct")
    ti, kind = P._resolve_target(ds, "cls_eval", "confidence")
    assert (ti.eval_key, kind) == ("cls_eval", "confidence")
    ti, kind = P._resolve_target(ds, "det", "fn")
    assert (ti.eval_key, kind) == ("det", "fn")


def test_resolve_target_errors(det, make_dataset):
    ds, _ = det
    with pytest.raises(NoEvaluationError) as e:
        P._resolve_target(ds, None, "accuracy")
    assert str(e.value) == ("no evaluation on this dataset gives the target 'accuracy' "
                            "(found: det (detection), cls_eval2 (classification), cls_eval (classification))")
    with pytest.raises(ValueError) as e:
        P._resolve_target(ds, "cls_eval", "f1")
    assert not isinstance(e.value, NoEvaluationError)
    assert str(e.value) == "evaluation 'cls_eval' (classification) gives targets correct, confidence, not 'f1'"
    with pytest.raises(ValueError) as e:
        P._resolve_target(ds, "det", "correct")
    assert str(e.value) == ("evaluation 'det' (detection) gives targets f1, precision, recall, tp, fp, fn, "
                            "not 'correct'")
    with pytest.raises(NoEvaluationError) as e:
        P._resolve_target(ds, "nope", None)
    assert str(e.value) == "no evaluation 'nope' on this dataset; available: cls_eval, cls_eval2, det, reg"
    with pytest.raises(NoEvaluationError) as e:
        P._resolve_target(ds, "reg", None)
    assert str(e.value).startswith("evaluation 'reg' is of type 'regression', which gives no per-sample")
    bare = make_dataset(["/nonexistent/x.jpg"], q=[0.5])
    for key, kind in [(None, None), (None, "correct"), ("eval", None)]:
        with pytest.raises(NoEvaluationError, match="evaluate_classifications"):
            P._resolve_target(bare, key, kind)


def test_an_evaluation_whose_field_was_deleted_still_gives_confidence(make_dataset):
    ds = make_dataset([f"/nonexistent/c{i}.jpg" for i in range(4)], q=[0.1, 0.4, 0.2, 0.3],
                      ground_truth=[fo.Classification(label=x) for x in "abab"],
                      predictions=[fo.Classification(label=x, confidence=c)
                                   for x, c in zip("abba", [0.9, 0.2, 0.6, 0.4])])
    ds.evaluate_classifications("predictions", gt_field="ground_truth", eval_key="eval")
    ds.delete_sample_field("eval")
    ti, kind = P._resolve_target(ds, None, "confidence")
    assert (ti.eval_key, kind) == ("eval", "confidence")
    with pytest.raises(NoEvaluationError, match="has no field"):
        P.panel_statistics(ds, ["q"], n_boot=0)


# ---------------------------------------------------------------------------
# panel_statistics: a classification
# ---------------------------------------------------------------------------


def _num(v):
    return math.nan if v is None else v


def _approx(v):
    return pytest.approx(v, nan_ok=True)


def _check_curve(curve, q, t, bins, confidence, binary):
    """Quantile bins by hand: edges, counts, means and the interval."""
    q, t = _pairs(q, t)
    edges = np.unique(np.quantile(q, np.linspace(0, 1, bins + 1)))
    assert [r["lo"] for r in curve] == pytest.approx(edges[:-1].tolist())
    assert [r["hi"] for r in curve] == pytest.approx(edges[1:].tolist())
    counts, _ = np.histogram(q, bins=edges)  # half-open bins, the last one closed
    assert [r["n"] for r in curve] == counts.tolist()
    assert sum(counts) == len(q)
    for i, r in enumerate(curve):
        last = i == len(curve) - 1
        m = (q >= edges[i]) & ((q <= edges[i + 1]) if last else (q < edges[i + 1]))
        assert r["n"] == m.sum()
        assert _num(r["mean_quality"]) == _approx(q[m].mean() if m.any() else math.nan)
        assert _num(r["mean_target"]) == _approx(t[m].mean() if m.any() else math.nan)
        if binary:
            ci = scipy.stats.binomtest(int(t[m].sum()), int(m.sum())).proportion_ci(confidence, "wilson")
            assert r["interval"] == "wilson"
        else:
            n = m.sum()
            half = (scipy.stats.t.ppf((1 + confidence) / 2, n - 1) * t[m].std(ddof=1) / math.sqrt(n)
                    if n > 1 else math.nan)
            ci = (t[m].mean() - half, t[m].mean() + half)
            assert r["interval"] == "t"
        assert [_num(r["ci_low"]), _num(r["ci_high"])] == _approx(list(ci))


def _check_histogram(h, q, t, hist_bins):
    q, t = _pairs(q, t)
    counts, edges = np.histogram(q, bins=hist_bins)
    assert h["edges"] == pytest.approx(edges.tolist())
    assert len(h["edges"]) == hist_bins + 1
    assert h["correct"] == np.histogram(q[t == 1], bins=edges)[0].tolist()
    assert h["wrong"] == np.histogram(q[t == 0], bins=edges)[0].tolist()
    assert np.add(h["correct"], h["wrong"]).tolist() == counts.tolist()
    assert sum(h["correct"]) == (t == 1).sum() and sum(h["wrong"]) == (t == 0).sum()


def _check_ranking(stats, truth, t, binary):
    hib = stats["higher_is_better"]
    rows = {r["name"]: r for r in stats["ranking"]}
    assert set(rows) == set(stats["fields"])
    rhos = {}
    for f in stats["fields"]:
        q, tt = _pairs(_oriented(truth["q"][f], hib[f]), t)
        r = rows[f]
        assert r["higher_is_better"] is hib[f]
        assert r["n"] == len(q) and r["n_missing"] == N_ALL - len(q)
        if len(q) < 3:
            rhos[f] = -math.inf
            assert r["spearman"]["estimate"] is None
            continue
        rhos[f] = scipy.stats.spearmanr(q, tt).statistic
        assert r["spearman"]["estimate"] == pytest.approx(rhos[f], abs=1e-12)
        assert r["kendall"]["estimate"] == pytest.approx(scipy.stats.kendalltau(q, tt).statistic, abs=1e-12)
        assert r["pearson"]["estimate"] == pytest.approx(scipy.stats.pearsonr(q, tt).statistic, abs=1e-12)
        for m in ("spearman", "kendall", "pearson"):
            c = r[m]
            assert c["n_boot"] == N_BOOT and c["confidence"] == CONF
            assert c["ci_low"] <= c["estimate"] <= c["ci_high"]
        if binary:
            assert r["auroc"]["estimate"] == pytest.approx(roc_auc_score(tt, q), abs=1e-12)
            assert r["auroc"]["ci_low"] <= r["auroc"]["estimate"] <= r["auroc"]["ci_high"]
        else:
            assert r["auroc"] is None
    order = sorted(stats["fields"], key=lambda f: -rhos[f])
    assert [r["name"] for r in stats["ranking"]] == order
    return order


def test_classification_correct(cls):
    ds, truth = cls
    fields = ["q_good", "q_noise", LOW, HIGH]
    stats = _stats(ds, fields, eval_key="eval", kind="correct")
    json.dumps(stats, allow_nan=False)
    t = truth["correct"]
    assert (stats["eval_key"], stats["eval_type"], stats["kind"]) == ("eval", "classification", "correct")
    assert stats["target_label"] == "accuracy" and stats["binary"] is True
    assert stats["n_samples"] == N_ALL and stats["n_target"] == N_EVAL
    assert stats["fields"] == fields
    assert stats["higher_is_better"] == {"q_good": True, "q_noise": True, LOW: False, HIGH: True}
    assert (stats["n_boot"], stats["confidence"], stats["bins"]) == (N_BOOT, CONF, BINS)
    assert type(stats["n_boot"]) is int and type(stats["confidence"]) is float and type(stats["bins"]) is int
    order = _check_ranking(stats, truth, t, binary=True)
    assert stats["field"] == order[0] == "q_good"
    # a lower-is-better field: its AUROC is that of the negated scores
    low = next(r for r in stats["ranking"] if r["name"] == LOW)
    q, tt = _pairs(truth["q"][LOW], t)
    assert low["auroc"]["estimate"] == pytest.approx(1 - roc_auc_score(tt, q), abs=1e-12)
    # the table: the ranking's rows plus the direction
    assert [r["field"] for r in stats["table"]] == order
    direction = {"q_good": "higher (assumed)", "q_noise": "higher (assumed)", LOW: "lower", HIGH: "higher"}
    for row in stats["table"]:
        assert row["direction"] == direction[row["field"]]
        rk = next(r for r in stats["ranking"] if r["name"] == row["field"])
        assert row["n"] == rk["n"] and row["missing"] == rk["n_missing"]
        assert set(row) == {"field", "spearman", "kendall", "pearson", "auroc", "n", "missing",
                            "direction"}
    # every field's plots
    assert list(stats["per_field"]) == fields
    for f in fields:
        plots = stats["per_field"][f]
        assert set(plots) == {"curve", "histogram", "scatter"}
        _check_curve(plots["curve"], truth["q"][f], t, BINS, CONF, binary=True)
        _check_histogram(plots["histogram"], truth["q"][f], t, HIST)
        s = plots["scatter"]
        keep = np.isfinite(truth["q"][f]) & np.isfinite(truth["conf"])
        assert s["n_total"] == s["n_shown"] == keep.sum()
        assert s["ids"] == truth["ids"][keep].tolist()
        assert s["quality"] == pytest.approx(truth["q"][f][keep].tolist())
        assert s["confidence"] == pytest.approx(truth["conf"][keep].tolist())
        exp = [None if np.isnan(v) else float(v) for v in t[keep]]
        assert s["correct"] == exp and 0.0 in exp and 1.0 in exp
        assert (None in exp) == (f in ("q_good", "q_noise"))  # samples added after the evaluation
    # the chosen field's plots at the top level
    for k in ("curve", "histogram", "scatter"):
        assert stats[k] == stats["per_field"]["q_good"][k]
    tm = stats["timings"]
    assert tm["read_s"] >= 0 and tm["stats_s"] >= 0
    assert tm["total_s"] == pytest.approx(tm["read_s"] + tm["stats_s"])


def test_scatter_counts_depend_on_the_field(cls):
    ds, _ = cls
    stats = _stats(ds, ["q_noise", LOW], eval_key="eval")
    for f, n in [("q_noise", N_ALL - 3 - 2), (LOW, N_EVAL - 1)]:
        s = stats["per_field"][f]["scatter"]
        assert s["n_total"] == s["n_shown"] == n
        assert all(v is not None for v in s["quality"] + s["confidence"])


def test_the_field_whose_plots_are_on_top(cls):
    ds, truth = cls
    stats = _stats(ds, ["q_good", "q_good", "q_noise"], field="q_noise")
    assert stats["fields"] == ["q_good", "q_noise"]  # duplicates dropped, nothing added
    assert stats["field"] == "q_noise"
    assert stats["curve"] == stats["per_field"]["q_noise"]["curve"]
    assert stats["scatter"] == stats["per_field"]["q_noise"]["scatter"]
    added = _stats(ds, ["q_noise"], field=LOW)
    assert added["fields"] == ["q_noise", LOW] and added["field"] == LOW
    assert [r["name"] for r in added["ranking"]] != [] and set(added["per_field"]) == {"q_noise", LOW}
    _check_curve(added["curve"], truth["q"][LOW], truth["correct"], BINS, CONF, binary=True)


def test_defaults(cls):
    ds, truth = cls
    stats = P.panel_statistics(ds)  # the library's defaults, on this small dataset
    assert (stats["eval_key"], stats["kind"]) == ("eval", "correct")
    assert set(stats["fields"]) == {LOW, HIGH}  # quality runs only: bare floats on request
    assert stats["n_boot"] == 200 and stats["confidence"] == 0.95 and stats["bins"] == 10
    assert len(stats["histogram"]["edges"]) == 31
    assert stats["ranking"][0]["spearman"]["n_boot"] == 200
    assert stats["ranking"][0]["spearman"]["confidence"] == 0.95
    _check_curve(stats["curve"], truth["q"][stats["field"]], truth["correct"], 10, 0.95, binary=True)
    s = stats["scatter"]
    assert s["n_total"] == s["n_shown"] == N_EVAL - 1
    # the seed of the bootstrap: 0 unless given
    seeded = P.panel_statistics(ds, seed=0)
    assert seeded["ranking"] == stats["ranking"]
    other = P.panel_statistics(ds, seed=11)
    assert other["ranking"] != stats["ranking"]


def test_confidence_target(cls):
    ds, truth = cls
    fields = ["q_good", LOW]
    stats = _stats(ds, fields, eval_key="eval", kind="confidence")
    t = truth["conf"]
    assert stats["kind"] == "confidence" and stats["target_label"] == "confidence"
    assert stats["binary"] is False and stats["histogram"] is None
    assert stats["n_samples"] == N_ALL and stats["n_target"] == N_ALL - 2
    _check_ranking(stats, truth, t, binary=False)
    for f in fields:
        plots = stats["per_field"][f]
        assert plots["histogram"] is None
        _check_curve(plots["curve"], truth["q"][f], t, BINS, CONF, binary=False)
        s = plots["scatter"]
        keep = np.isfinite(truth["q"][f]) & np.isfinite(t)
        assert s["ids"] == truth["ids"][keep].tolist()
        assert s["confidence"] == pytest.approx(t[keep].tolist())
        # correctness is still read for the scatter's colours
        assert s["correct"] == [None if np.isnan(v) else float(v) for v in truth["correct"][keep]]


def test_scatter_subsample_is_reproducible(cls):
    ds, truth = cls
    keep = np.flatnonzero(np.isfinite(truth["q"]["q_good"]) & np.isfinite(truth["conf"]))
    for seed in (0, 3):
        stats = _stats(ds, ["q_good"], max_points=7, seed=seed)
        s = stats["scatter"]
        assert s["n_total"] == len(keep) and s["n_shown"] == 7
        idx = np.sort(np.random.default_rng(seed).choice(keep, size=7, replace=False))
        assert s["ids"] == truth["ids"][idx].tolist()
        assert s["quality"] == pytest.approx(truth["q"]["q_good"][idx].tolist())
        assert s["confidence"] == pytest.approx(truth["conf"][idx].tolist())
        assert s["correct"] == [None if np.isnan(v) else float(v) for v in truth["correct"][idx]]
        assert len(set(s["ids"])) == 7
        assert _stats(ds, ["q_good"], max_points=7, seed=seed)["scatter"] == s
    exact = _stats(ds, ["q_good"], max_points=len(keep))["scatter"]
    assert exact["n_shown"] == exact["n_total"] == len(keep)
    assert exact["ids"] == truth["ids"][keep].tolist()


def test_a_field_without_values(cls):
    ds, _ = cls
    stats = _stats(ds, ["q_empty", "q_good"])
    assert stats["field"] == "q_good"
    assert [r["name"] for r in stats["ranking"]] == ["q_good", "q_empty"]  # undefined last
    empty = stats["per_field"]["q_empty"]
    assert empty["curve"] == [] and empty["histogram"] is None
    assert empty["scatter"]["n_total"] == 0 and empty["scatter"]["ids"] == []
    assert _stats(ds, ["q_empty"])["field"] == "q_empty"


def test_views_without_targets(cls):
    ds, truth = cls
    for view in (ds.limit(0), ds.skip(N_EVAL)):  # nothing, and only unevaluated samples
        stats = _stats(view, ["q_good"], eval_key="eval")
        assert stats["binary"] is False and stats["n_target"] == 0
        assert stats["n_samples"] == len(view)
        assert stats["curve"] == [] and stats["histogram"] is None
        assert stats["ranking"][0]["auroc"] is None
    # a view whose targets are all correct or all wrong is still binary
    ones = ds.select(truth["ids"][truth["correct"] == 1].tolist())
    stats = _stats(ones, ["q_good"], eval_key="eval")
    assert stats["binary"] is True and stats["histogram"]["wrong"] == [0] * HIST
    zeros = ds.select(truth["ids"][truth["correct"] == 0].tolist())
    stats = _stats(zeros, ["q_good"], eval_key="eval")
    assert stats["binary"] is True and stats["histogram"]["correct"] == [0] * HIST


def test_a_view_keeps_its_order(cls):
    ds, truth = cls
    view = ds.sort_by("q_good", reverse=True)
    stats = _stats(view, ["q_good", LOW], eval_key="eval")
    order = np.argsort(-truth["q"]["q_good"], kind="stable")
    keep = order[np.isfinite(truth["conf"][order])]
    assert stats["scatter"]["ids"] == truth["ids"][keep].tolist()
    assert stats["scatter"]["quality"] == pytest.approx(truth["q"]["q_good"][keep].tolist())
    _check_histogram(stats["per_field"][LOW]["histogram"], truth["q"][LOW], truth["correct"], HIST)


def test_quality_field_errors(cls, det, make_dataset):
    ds, _ = cls
    with pytest.raises(P.NoQualityFieldsError) as e:
        _stats(ds, ["nope", "q_good", "nada"])
    assert str(e.value) == "no field(s) nope, nada on this dataset"
    with pytest.raises(P.NoQualityFieldsError) as e:
        _stats(ds, ["q_good"], field="nope")
    assert str(e.value) == "no field(s) nope on this dataset"
    dds, _ = det  # evaluations but no quality run
    for fields in (None, []):
        with pytest.raises(P.NoQualityFieldsError) as e:
            _stats(dds, fields)
        assert str(e.value) == P.no_quality_message()
    assert P.no_quality_message() == (
        "No quality scores on this dataset yet: run 'Compute image quality' (operator "
        "compute_quality) first, or pick a numeric field to rank.")
    assert issubclass(P.NoQualityFieldsError, ValueError)
    bare = make_dataset(["/nonexistent/x.jpg"], q=[0.5])
    with pytest.raises(NoEvaluationError, match="evaluate_classifications"):
        _stats(bare, ["q"])


# ---------------------------------------------------------------------------
# panel_statistics: a detection
# ---------------------------------------------------------------------------


def _rates(truth):
    tp, fp, fn = truth["tp"], truth["fp"], truth["fn"]
    with np.errstate(invalid="ignore", divide="ignore"):
        return {"tp": tp, "fp": fp, "fn": fn,
                "precision": np.where(tp + fp > 0, tp / (tp + fp), np.nan),
                "recall": tp / (tp + fn),
                "f1": 2 * tp / (2 * tp + fp + fn)}


@pytest.mark.parametrize("kind", [None, "tp", "fp", "fn", "precision", "recall", "f1"])
def test_detection_targets(det, kind):
    ds, truth = det
    stats = _stats(ds, ["q"], kind=kind)
    k = kind or "f1"
    t = _rates(truth)[k]
    assert (stats["eval_key"], stats["eval_type"], stats["kind"]) == ("det", "detection", k)
    assert stats["target_label"] == P.TARGET_LABELS[k]
    assert stats["binary"] is False  # even the 0/1 counts of "tp"
    assert stats["n_samples"] == N_DET and stats["n_target"] == np.isfinite(t).sum()
    assert stats["fields"] == ["q"] and stats["field"] == "q"
    assert stats["higher_is_better"] == {"q": True}
    assert stats["table"][0]["direction"] == "higher (assumed)" and "auroc" not in stats["table"][0]
    q, tt = _pairs(truth["q"], t)
    r = stats["ranking"][0]
    assert r["auroc"] is None and r["n"] == len(q)
    assert r["spearman"]["estimate"] == pytest.approx(scipy.stats.spearmanr(q, tt).statistic, abs=1e-12)
    assert stats["histogram"] is None and stats["scatter"] is None
    assert stats["per_field"]["q"] == {"curve": stats["curve"], "histogram": None, "scatter": None}
    binary_values = set(np.unique(tt)) <= {0.0, 1.0}
    _check_curve(stats["curve"], truth["q"], t, BINS, CONF, binary=binary_values)


def test_classification_through_an_older_evaluation(det):
    ds, _ = det
    q = np.asarray(ds.values("q"), float)
    correct = {"cls_eval": np.array([0.0 if i % 3 == 0 else 1.0 for i in range(N_DET)]),
               "cls_eval2": np.array([1.0 if i % 2 else 0.0 for i in range(N_DET)])}
    conf = {"cls_eval": [0.5] * N_DET, "cls_eval2": [0.1 + 0.05 * i for i in range(N_DET)]}
    newest = _stats(ds, ["q"], kind="correct")
    assert (newest["eval_key"], newest["eval_type"]) == ("cls_eval2", "classification")
    for key in ("cls_eval", "cls_eval2"):
        for kind in (None, "correct"):
            stats = _stats(ds, ["q"], eval_key=key, kind=kind)
            assert (stats["eval_key"], stats["kind"]) == (key, "correct")
            assert stats["binary"] is True and stats["n_target"] == N_DET
            s = stats["scatter"]
            assert s["confidence"] == pytest.approx(conf[key]) and s["correct"] == correct[key].tolist()
            _check_histogram(stats["histogram"], q, correct[key], HIST)
            rho = scipy.stats.spearmanr(q, correct[key]).statistic
            assert stats["ranking"][0]["spearman"]["estimate"] == pytest.approx(rho, abs=1e-12)
        stats = _stats(ds, ["q"], eval_key=key, kind="confidence")
        assert stats["scatter"]["confidence"] == pytest.approx(conf[key])
        assert stats["scatter"]["correct"] == correct[key].tolist()
        assert stats["n_target"] == N_DET and stats["binary"] is False


def test_values_on_the_histogram_edges(cls):
    ds, truth = cls
    stats = _stats(ds, ["q_int"], eval_key="eval")
    edges = stats["histogram"]["edges"]
    assert edges == [0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0]  # every value sits on an edge
    _check_histogram(stats["histogram"], truth["q"]["q_int"], truth["correct"], HIST)
    _check_curve(stats["curve"], truth["q"]["q_int"], truth["correct"], BINS, CONF, binary=True)
    for lo, hi, n in zip(edges[:-1], edges[1:], np.add(stats["histogram"]["correct"],
                                                       stats["histogram"]["wrong"])):
        last = hi == edges[-1]
        assert len(P.bin_view(ds.exists("eval"), "q_int", lo, hi, last)) == n
