"""The result types' rows and JSON, and the number formatting, against hand-written values."""

import json
import math

import numpy as np
import pytest

from fiftyone_dnniqa.analysis import results as R

NAN = float("nan")


def _corr(method="spearman", est=0.5, lo=0.25, hi=0.75, note=""):
    return R.Correlation(method=method, estimate=est, ci_low=lo, ci_high=hi, n=10, n_missing=2,
                         p_value=0.01, note=note)


@pytest.mark.parametrize("value, expected", [
    (None, ""), (NAN, "n/a"), (float("inf"), "n/a"), (np.float32("-inf"), "n/a"),
    (0.0, "0.000"), (12.34567, "12.346"), (-0.5, "-0.500"), (1.0, "1.000"),
    (123456.0, "123456.000"), (99999.0, "99999.000"), (-2e5, "-200000.000"),
    (0.0004, "0.000"), (-0.0004, "0.000"), (0.0006, "0.001"), (np.float64(0.25), "0.250"),
    (7, "7"), (np.int64(3), "3"), ("a", "a"), (True, "True"), (np.bool_(False), "False"),
])
def test_fmt(value, expected):
    """Three decimals, no scientific notation, no bare nan, no signed zero."""
    assert R.fmt(value) == expected


def test_fmt_digits_reason_and_short():
    assert R.fmt(1.23456, digits=1) == "1.2"
    assert R.fmt(0.04, digits=1) == "0.0"
    assert R.fmt(NAN, reason="one class") == "n/a (one class)"
    assert R.fmt(None, reason="not scored") == "n/a (not scored)"
    assert [R.fmt_short(v) for v in (None, NAN, np.float32("inf"), 0.123456, 123456.0, 3, 1.0)] == \
        ["n/a", "n/a", "n/a", "0.123", "123456.000", "3", "1.000"]
    assert R.fmt_short(None, reason="no labels") == "n/a (no labels)"
    assert [R.fmt_na(), R.fmt_na(""), R.fmt_na(" x "), R.fmt_na("constant quality")] == \
        ["n/a", "n/a", "n/a (x)", "n/a (constant quality)"]


@pytest.mark.parametrize("est, lo, hi, expected", [
    (None, 0.1, 0.2, "n/a"), (NAN, 0.1, 0.2, "n/a"), (float("inf"), 0.1, 0.2, "n/a"),
    (0.5, None, 0.7, "0.500"), (0.5, 0.3, None, "0.500"), (0.5, NAN, 0.7, "0.500"),
    (0.5, 0.3, float("inf"), "0.500"), (0.5, 0.3, 0.7, "0.500 [0.300, 0.700]"),
    (np.float32(0.5), np.float64(0.25), 1, "0.500 [0.250, 1.000]"),
    (1, 0.425, 1, "1.000 [0.425, 1.000]"), (0.738, 0.62324, 0.88719, "0.738 [0.623, 0.887]"),
])
def test_fmt_ci(est, lo, hi, expected):
    assert R.fmt_ci(est, lo, hi) == expected


def test_fmt_ci_digits_and_reason():
    assert R.fmt_ci(0.5, 0.25, 0.75, digits=1) == "0.5 [0.2, 0.8]"
    assert R.fmt_ci(0.5, None, 0.75, digits=1) == "0.5"
    assert R.fmt_ci(NAN, NAN, NAN, reason="one class") == "n/a (one class)"
    assert R.fmt_ci(0.5, NAN, NAN, reason="one class") == "0.500"


@pytest.mark.parametrize("value, expected", [
    (12345.6, "12,346"), (123456789.0, "123,456,789"), (10.0, "10"), (10.4, "10"),
    (np.int64(2048), "2,048"), (3, "3"), (3.0, "3"), (0, "0"), (9.99, "9.99"), (2.5, "2.5"),
    (0.0123456, "0.0123"), (2e-5, "0.00002"), (-1500.0, "-1,500"),
    (None, "n/a"), (NAN, "n/a"), (np.float32("inf"), "n/a"),
])
def test_fmt_size(value, expected):
    """Sizes and counts are plain numbers: never scientific notation, never nan."""
    assert R.fmt_size(value) == expected
    assert "e" not in R.fmt_size(value).replace("n/a", "")


def test_fmt_size_reason():
    assert R.fmt_size(NAN, reason="no boxes") == "n/a (no boxes)"


def test_num_and_jsonable():
    values = [None, True, np.bool_(False), 3, np.int16(4), 2.5, np.float32(1.5), NAN, np.inf, "s"]
    assert [R.num(v) for v in values] == [None, True, False, 3, 4, 2.5, 1.5, None, None, "s"]
    assert [type(R.num(v)) for v in values[1:7]] == [bool, bool, int, int, float, float]
    nested = {1: (np.int64(2), [np.float64("nan")]), "a": np.array([1.5, np.inf])}
    assert R.jsonable(nested) == {"1": [2, [None]], "a": [1.5, None]}
    assert json.dumps(R.jsonable(nested), allow_nan=False)


def test_correlation_row_dict_and_interval():
    c = _corr()
    assert c.ci == (0.25, 0.75)
    assert c.to_row() == {"method": "spearman", "estimate": "0.500 [0.250, 0.750]", "p": "0.010",
                          "n": 10, "missing": 2}
    row = _corr(est=NAN, note="constant quality").to_row()
    assert (row["note"], row["estimate"]) == ("constant quality", "n/a (constant quality)")
    d = _corr(est=NAN, lo=NAN, hi=NAN).to_dict()
    assert (d["estimate"], d["ci_low"], d["method"], d["n_missing"], d["confidence"], d["level"]) == \
        (None, None, "spearman", 2, 0.95, "sample")
    assert json.dumps(d, allow_nan=False)


def test_auroc_row():
    a = R.AUROC(estimate=0.8, ci_low=0.7, ci_high=0.9, n=20, n_missing=1, n_pos=15, n_neg=5)
    assert a.to_row() == {"auroc": "0.800 [0.700, 0.900]", "n": 20, "correct": 15, "errors": 5,
                          "missing": 1}
    assert "note" not in a.to_row()
    a.note = "one class"
    assert a.to_row()["note"] == "one class"
    a.estimate = NAN
    assert a.to_row()["auroc"] == "n/a (one class)"
    assert a.ci == (0.7, 0.9) and a.to_dict()["n_pos"] == 15


def test_bin_row():
    b = R.BinRow(lo=0.0, hi=0.5, n=4, mean_quality=0.25, mean_target=0.75, ci_low=0.3,
                 ci_high=0.95, interval="wilson")
    assert b.to_row() == {"quality bin": "[0.000, 0.500]", "n": 4, "mean quality": "0.250",
                          "mean target": "0.750 [0.300, 0.950]"}
    assert b.to_dict() == {"lo": 0.0, "hi": 0.5, "n": 4, "mean_quality": 0.25, "mean_target": 0.75,
                           "ci_low": 0.3, "ci_high": 0.95, "interval": "wilson"}


@pytest.mark.parametrize("group, in_dict, in_row", [
    (("dog", 3), ["dog", 3], "dog, 3"), (np.int64(7), 7, np.int64(7)), (2.5, 2.5, 2.5),
    ("cat", "cat", "cat"), (None, "None", None),
])
def test_group_row(group, in_dict, in_row):
    g = R.GroupRow(group=group, n=3, mean_quality=0.5, mean_target=NAN, ci_low=NAN, ci_high=NAN,
                   interval="t")
    d = g.to_dict()
    assert d == {"group": in_dict, "n": 3, "mean_quality": 0.5, "mean_target": None, "ci_low": None,
                 "ci_high": None, "interval": "t", "correlation": None}
    assert type(d["group"]) is type(in_dict)
    assert g.to_row() == {"group": in_row, "n": 3, "mean quality": "0.500", "mean target": "n/a"}


def test_group_row_with_correlation():
    g = R.GroupRow(group="a", n=3, mean_quality=0.5, mean_target=0.6, ci_low=0.4, ci_high=0.8,
                   interval="t", correlation=_corr(method="kendall"))
    assert g.to_row()["kendall"] == "0.500 [0.250, 0.750]"
    assert g.to_row()["mean target"] == "0.600 [0.400, 0.800]"
    assert g.to_dict()["correlation"] == _corr(method="kendall").to_dict()


def test_field_rank():
    rank = R.FieldRank(name="iqa_x", higher_is_better=np.bool_(False), spearman=_corr("spearman", 0.1),
                       kendall=_corr("kendall", 0.2), pearson=_corr("pearson", 0.3))
    assert (rank.n, rank.n_missing) == (10, 2)
    assert rank.to_row() == {"field": "iqa_x", "spearman": "0.100 [0.250, 0.750]",
                             "kendall": "0.200 [0.250, 0.750]", "pearson": "0.300 [0.250, 0.750]",
                             "n": 10, "missing": 2}
    d = rank.to_dict()
    assert d["higher_is_better"] is False and d["auroc"] is None and d["pearson"]["estimate"] == 0.3
    assert (d["name"], d["n"], d["n_missing"], d["kendall"]["method"]) == ("iqa_x", 10, 2, "kendall")
    rank.auroc = R.AUROC(estimate=0.9, ci_low=0.8, ci_high=1.0, n=10, n_missing=2, n_pos=6, n_neg=4)
    assert list(rank.to_row()) == ["field", "spearman", "kendall", "pearson", "auroc", "n", "missing"]
    assert rank.to_row()["auroc"] == "0.900 [0.800, 1.000]"
    rank.kendall = _corr("kendall", NAN, note="too few pairs")
    rank.auroc.estimate, rank.auroc.note = NAN, "one class"
    assert (rank.to_row()["kendall"], rank.to_row()["auroc"]) == ("n/a (too few pairs)", "n/a (one class)")
    assert rank.to_dict()["auroc"]["n_neg"] == 4
    assert json.dumps(rank.to_dict(), allow_nan=False)
    rank.higher_is_better = True
    assert rank.to_dict()["higher_is_better"] is True and rank.to_dict()["spearman"] == _corr("spearman", 0.1).to_dict()


def test_distribution_row_and_quantiles():
    d = R.Distribution(n=5, n_missing=1, mean=2.0, std=NAN, min=0.0, p5=0.5, p25=1.0, median=2.0,
                       p75=3.0, p95=3.5, max=4.0, counts=[1, 4], edges=[0.0, 2.0, 4.0])
    assert d.quantiles == {"min": 0.0, "p5": 0.5, "p25": 1.0, "median": 2.0, "p75": 3.0,
                           "p95": 3.5, "max": 4.0}
    assert d.to_row() == {"n": 5, "n_missing": 1, "mean": "2.000", "std": "n/a", "min": "0.000",
                          "p5": "0.500", "p25": "1.000", "median": "2.000", "p75": "3.000",
                          "p95": "3.500", "max": "4.000"}
    assert d.to_dict()["std"] is None and d.to_dict()["counts"] == [1, 4]
    assert math.isnan(R.Distribution(0, 0, *[NAN] * 9).quantiles["p95"])
