"""Options checked before anything runs (issue 28 items 1, 5, 8): metric options against the
metric's own signature and value sets, several metrics with their own options, unknown
names with a few close matches, and an empty view refused with no run left behind."""

import inspect

import re

import pytest

import fiftyone as fo

import fiftyone_dnniqa as dq
from fiftyone_dnniqa.metrics import aligned as A
from fiftyone_dnniqa.metrics import registry as R
from fiftyone_dnniqa.metrics.base import QualityMetric
from fiftyone_dnniqa.metrics.options import (accepted_options, check_metric_options, metric_options_with_proxy,
                                             option_choices, option_problem, options_per_metric)
from fiftyone_dnniqa.scoring import plan as P


class Toy(QualityMetric):
    """A metric declared here: its options are read from its signature, not from a table."""

    name = "toy"
    option_choices = {"mode": ("soft", "hard")}

    def __init__(self, width: int = 3, mode: str = "soft", strict: bool = False, label=None):
        super().__init__()
        self.width, self.mode = width, mode


@pytest.fixture
def toy(monkeypatch):
    monkeypatch.setitem(R._REGISTRY, "toy", Toy)
    return "toy"


@pytest.mark.parametrize("options, expected", [
    ({"tta": "banana"}, "'aligned' option 'tta' must be one of null, \"flip\", \"multiscale\", not \"banana\""),
    ({"tempreature": 2}, "'aligned' has no option 'tempreature' (did you mean 'temperature'?)"),
    ({"statistic": "mean"}, "must be one of \"max_prob\", \"margin\", \"neg_entropy\", \"energy\", not \"mean\""),
    ({"temperature": "hot"}, "'aligned' option 'temperature' must be a number, not \"hot\""),
])
def test_bad_options_of_aligned_are_named_with_the_valid_choices(options, expected):
    with pytest.raises(ValueError) as e:
        check_metric_options("aligned", options)
    assert expected in str(e.value)
    assert option_problem("aligned", options) == str(e.value)


def test_every_option_the_signature_takes_is_accepted():
    # the oracle: the constructors' own parameters, read here with inspect
    for name, cls in (("aligned", A.AlignedMetric), ("aligned_task", A.AlignedTaskMetric),
                      ("aligned_fr", A.AlignedFRMetric)):
        params = [k for k in inspect.signature(cls).parameters if k != "self"]
        assert accepted_options(name) == sorted(params)
    assert check_metric_options("aligned", {"tta": None, "statistic": "margin", "temperature": 2}) == {
        "tta": None, "statistic": "margin", "temperature": 2}
    assert option_problem("aligned_task", {"label_mode": "sample", "classes": ["tench"]}) is None
    assert "'label_mode' must be one of \"set\", \"sample\"" in option_problem("aligned_task", {"label_mode": "all"})
    # aligned_fr inherits aligned's tta choices, but takes no statistic
    assert option_choices("aligned_fr") == {"tta": (None, "flip", "multiscale"), "divergence": ("js", "kl", "agreement")}
    assert "has no option 'statistic'" in option_problem("aligned_fr", {"statistic": "margin"})
    assert "its options: path, threshold" in option_problem("cause", {"treshold": 0.5})


def test_a_registered_metric_is_checked_by_its_own_signature(toy):
    assert accepted_options(toy) == ["label", "mode", "strict", "width"]
    assert option_problem(toy, {"width": 5, "mode": "hard", "strict": True, "label": [1, 2]}) is None
    assert option_problem(toy, {"widht": 5}) == ("'toy' has no option 'widht' (did you mean 'width'?); "
                                                 "its options: label, mode, strict, width")
    assert option_problem(toy, {"mode": "medium"}) == "'toy' option 'mode' must be one of \"soft\", \"hard\", not \"medium\""
    assert option_problem(toy, {"strict": "yes"}) == "'toy' option 'strict' must be true or false, not \"yes\""
    assert option_problem(toy, {"width": True}) == "'toy' option 'width' must be a number, not true"


def test_a_factory_taking_any_keyword_accepts_every_option(monkeypatch):
    monkeypatch.setitem(R._REGISTRY, "anything", lambda **kw: Toy())
    assert accepted_options("anything") is None and option_problem("anything", {"whatever": 1}) is None


def test_an_unknown_metric_suggests_a_few_close_names_not_all_of_them():
    with pytest.raises(ValueError) as e:
        check_metric_options("algned", {"tta": "flip"})
    msg = str(e.value)
    assert "Unknown metric 'algned'. Did you mean 'aligned'" in msg
    assert msg.count("'") <= 2 + 2 * R.MAX_SUGGESTIONS  # the name and at most three suggestions
    listed = [n for n in dq.list_metrics() if f"'{n}'" in msg]
    assert "aligned" in listed and len(listed) <= R.MAX_SUGGESTIONS + 1
    assert "list-metrics" in msg and len(msg) < 300
    with pytest.raises(ValueError, match=r"'aligned, cause' names 2 metrics: give them as a list"):
        dq.create_metric("aligned, cause")


def test_several_metrics_take_one_options_object_each():
    assert options_per_metric(["aligned", "entropy"], {"aligned": {"tta": "flip"}}) == [{"tta": "flip"}, {}]
    assert options_per_metric(["aligned", "aligned_fr"], {"tta": "flip"}) == [{"tta": "flip"}, {"tta": "flip"}]
    assert options_per_metric(["aligned"], None) == [{}]
    with pytest.raises(ValueError, match="metrics given by name"):
        options_per_metric([Toy(), "aligned"], {"tta": "flip"})


def test_the_proxy_goes_to_the_metrics_that_take_one():
    key = "proxy" if "proxy" in inspect.signature(A.AlignedMetric).parameters else "backbone"
    got = metric_options_with_proxy(["aligned", "entropy"], {"aligned": {"tta": "flip"}},
                                    "efficientnet_lite0, efficientnet_lite1")
    assert got == {"aligned": {"tta": "flip", key: ["efficientnet_lite0", "efficientnet_lite1"]}, "entropy": {}}
    assert metric_options_with_proxy(["aligned"], None, ["efficientnet_lite0"]) == {key: "efficientnet_lite0"}
    assert metric_options_with_proxy(["aligned"], {"tta": "flip"}, None, "") == {"tta": "flip"}
    with pytest.raises(ValueError, match="take.s. no proxy network"):
        metric_options_with_proxy(["entropy"], None, "efficientnet_lite0")
    if "weights" in inspect.signature(A.AlignedMetric).parameters:
        assert metric_options_with_proxy(["aligned"], None, "torchvision:mobilenet_v2", "/w.pth") == {
            "proxy": "torchvision:mobilenet_v2", "weights": "/w.pth"}
        # "none" keeps a proxy's standard weights inside an ensemble (the CLI's --weights none,mine.pth)
        assert metric_options_with_proxy(["aligned"], None, "efficientnet_lite0,torchvision:mobilenet_v2",
                                          ["none", "/w.pth"]) == {
            "proxy": ["efficientnet_lite0", "torchvision:mobilenet_v2"], "weights": [None, "/w.pth"]}
    else:
        with pytest.raises(ValueError, match="takes no proxy weights file"):
            metric_options_with_proxy(["aligned"], None, "efficientnet_lite0", "/w.pth")


@pytest.fixture(scope="module")
def three(imagenet_files):
    ds = fo.Dataset()
    ds.add_samples([fo.Sample(filepath=f) for f in imagenet_files[:3]], progress=False)
    yield ds
    ds.delete()


@pytest.mark.parametrize("metric, options, expected", [
    ("aligned", {"tta": "banana"}, "must be one of null"),
    ("aligned", {"tempreature": 2}, "did you mean 'temperature'"),
    (["aligned", "entropy"], {"aligned": {"tta": "banana"}}, "must be one of null"),
    (["aligned", "cause"], {"tta": "flip"}, "'cause' has no option 'tta'"),
    # one object for two metrics, meant for the second: the message says to give each its own
    (["aligned", "cause"], {"treshold": 0.5}, re.escape(
        "'aligned' has no option 'treshold'; its options: backbone, proxy, statistic, temperature, tta, weights; "
        'these options went to every metric: give each its own, as {"aligned": {...}, "cause": {...}}')),
    # each its own: the message is the metric's alone
    (["aligned", "cause"], {"cause": {"treshold": 0.5}},
     re.escape("'cause' has no option 'treshold' (did you mean 'threshold'?); its options: path, threshold") + "$"),
])
def test_plan_quality_refuses_bad_options_before_building_a_metric(three, monkeypatch, metric, options, expected):
    def built(*a, **k):
        raise AssertionError("a metric was built before its options were checked")

    monkeypatch.setattr(P, "create_metric", built)
    with pytest.raises(ValueError, match=expected):
        P.plan_quality(three, metric, metric_options=options)


def test_several_metrics_each_get_their_own_options(three):
    plan = P.plan_quality(three, ["aligned", "aligned_fr", "entropy"], device="cpu",
                          reference_field="filepath",
                          metric_options={"aligned": {"statistic": "margin"}, "aligned_fr": {"divergence": "kl"}})
    aligned, fr, entropy = plan.metrics
    assert (aligned.statistic, fr.divergence, entropy.name) == ("margin", "kl", "entropy")
    assert plan.fields == ["iqa_aligned", "iqa_aligned_fr", "iqa_entropy"]


def test_an_empty_view_is_refused_and_leaves_no_run(three):
    for view in (three.limit(0), three.match(fo.ViewField("filepath") == "nowhere")):
        with pytest.raises(ValueError, match="this view has no samples: nothing to score"):
            dq.compute_quality(view, "entropy", num_workers=0, progress=False)
    three.reload()
    assert three.list_runs() == [] and not three.has_sample_field("iqa_entropy")
    with pytest.raises(ValueError, match="no samples"):
        dq.compute_quality(three.limit(0), "entropy", shards=2)
    assert three.list_runs() == []


def test_a_detection_field_as_label_field_says_to_pass_classes(imagenet_files, make_dataset):
    boxes = fo.Detections(detections=[fo.Detection(label="goldfish", bounding_box=[.1, .1, .5, .5])])
    ds = make_dataset(imagenet_files[:1], boxes=[boxes])
    with pytest.raises(ValueError, match=r"label_field 'boxes' holds objects \(Detections\), not one label per "
                                         r"image: pass the task's classes as metric_options=\{'classes'"):
        P.plan_quality(ds, "aligned_task", label_field="boxes", device="cpu")
    plan = P.plan_quality(ds, "aligned_task", device="cpu", metric_options={"classes": ["goldfish", "tench"]})
    assert plan.metrics[0].classes == ["goldfish", "tench"]


def test_a_pyiqa_metric_is_checked_by_its_network_s_signature():
    pytest.importorskip("pyiqa")
    assert option_problem("ssim", {"test_y_channel": True, "max_side": 512}) is None
    assert "'ssim' has no option 'test_y_chanel' (did you mean 'test_y_channel'?)" in option_problem(
        "ssim", {"test_y_chanel": True})
