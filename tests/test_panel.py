"""The "Quality vs Performance" panel: its statistics against the analysis functions,
and its callbacks executed through FiftyOne's operator machinery as the App calls them."""

import copy
import json
import os
import re
import uuid

import numpy as np
import pydash
import pytest
import scipy.stats

import fiftyone as fo
import fiftyone.operators as foo
from fiftyone.operators.executor import ExecutionContext, Executor

import fiftyone_dnniqa as dq
from fiftyone_dnniqa import analysis as A
from fiftyone_dnniqa.app import panels as P
from fiftyone_dnniqa.analysis import panel_stats as PS
from fiftyone_dnniqa.analysis.results import fmt_short
from fiftyone_dnniqa.analysis.targets import NoEvaluationError, get_target
from fiftyone_dnniqa.app.plugin import PLUGIN_NAME, install_plugin

URI = f"{PLUGIN_NAME}/quality_vs_performance"


@pytest.fixture(scope="module")
def plugin():
    return install_plugin(overwrite=True)


def _label(path):
    # "n01440764_tench.JPEG" -> "tench"
    return os.path.basename(path).split("_", 1)[1].rsplit(".", 1)[0]


@pytest.fixture(scope="module")
def cls_ds(imagenet_files):
    """40 real photos, a real quality run (pyiqa entropy), predictions whose correctness
    follows quality (with noise) and a real classification evaluation."""
    files = imagenet_files[:40]
    ds = fo.Dataset()
    ds.add_samples([fo.Sample(filepath=f, ground_truth=fo.Classification(label=_label(f)))
                    for f in files], progress=False)
    dq.compute_quality(ds, "entropy", num_workers=0)
    q = np.asarray(ds.values("iqa_entropy"), float)
    rng = np.random.default_rng(0)
    rank = q.argsort().argsort() / (len(q) - 1)
    correct = rng.random(len(q)) < 0.2 + 0.7 * rank
    gt = ds.values("ground_truth.label")
    conf = np.clip(0.3 + 0.5 * rank + 0.2 * rng.random(len(q)), 0, 1)
    ds.set_values("predictions", [fo.Classification(label=g if c else "other", confidence=float(p))
                                  for g, c, p in zip(gt, correct, conf)])
    ds.set_values("noise", rng.normal(size=len(q)).tolist())  # a float field, no run
    ds.evaluate_classifications("predictions", gt_field="ground_truth", eval_key="eval")
    yield ds
    ds.delete()


class FakeApp:
    """What the App does around a panel: keeps its state and data, sends the current
    view and the panel state with every event, applies the operations triggered."""

    def __init__(self, dataset, view=None, state=None):
        self.dataset = dataset
        self.view = view if view is not None else dataset.view()
        self.panel_id = f"qvp-test-{uuid.uuid4().hex[:8]}"
        self.app_state = copy.deepcopy(state or {})
        self.data = {}
        self.output = None
        self.set_views = []
        self.requests = []

    def call(self, method, **event):
        self._before = self.rendered(), set(self.properties()) if self.output else set()
        params = {"__method__": method, "panel_id": self.panel_id,
                  "panel_state": copy.deepcopy(self.app_state), **event}
        result = foo.execute_operator(URI, ctx={"dataset": self.dataset, "view": self.view,
                                               "params": params})
        assert result.error is None, result.error
        self.requests = [(r.operator_uri, r.params) for r in result.executor._requests]
        for name, p in self.requests:
            if name == "patch_panel_state":
                for k, v in p["state"].items():
                    pydash.set_(self.app_state, k, v)
            elif name == "patch_panel_data":
                for k, v in p["data"].items():
                    pydash.set_(self.data, k, v)
            elif name == "show_panel_output":
                self.output = p["output"]
            elif name == "set_view":
                stages = p["view"]
                self.set_views.append(fo.DatasetView._build(self.dataset, stages))
        return self.requests

    def names(self):
        return [n for n, _ in self.requests]

    @property
    def state(self):
        """The state as the panel reads it: the App's panel state, with what the App's own
        events (opening, view changes) computed over it (``P.SHOWN``)."""
        return {**self.app_state, **(P.SHOWN.get(self.panel_id) or {})}

    def properties(self):
        return self.output["type"]["properties"]

    def form_writes(self):
        """What the App's form writes into the panel state by itself (FiftyOne 1.22's
        SchemaIO initializer, for each property that is not display-only, plots included):
        the ``default`` where it differs from what the property shows, and what it shows
        where that changed since the previous render. Like a ``patch_panel_state``, such a
        write changes the App's workspace, which reloads its page and drops the user's
        sidebar filters."""
        shown, (before, mounted) = self.rendered(), self._before
        writes = {}
        for name, p in self.properties().items():
            if p["view"]["name"] in DISPLAY_VIEWS:
                continue
            if p.get("default") is not None and shown.get(name) != p["default"]:
                writes[name] = p["default"]
            elif name in mounted and shown.get(name) and shown.get(name) != before.get(name):
                writes[name] = shown[name]
        return writes

    @property
    def plots(self):
        """Each plot's traces as the panel sends them, in the plot's view ([] without the plot)."""
        props = self.properties()
        return {k: (props[k]["view"].get("data") if k in props else []) for k in P.PLOTS}

    def shown_plot(self, name):
        """What a plot shows: its value in the rendered state, else its view's traces."""
        return self.rendered().get(name) or self.plots[name]

    def rendered(self):
        """What the panel shows: the App renders lodash ``merge({}, state, data)``, which
        merges arrays index by index."""
        return lodash_merge(lodash_merge({}, self.app_state), self.data)

    def user_changes(self, path, value, method):
        """The user edits an input: the App writes the whole form (what is rendered, the
        edit applied) into the panel state (``mergeWith``, arrays replaced), then calls
        the input's callback with the path and value."""
        form = self.rendered()
        pydash.set_(form, path, value)
        self.app_state = merge_replacing_arrays(self.app_state, form)
        return self.call(method, path=path, value=value)


#: views the App's form never initializes, as FiftyOne 1.22's SchemaIO lists them (and the
#: Python names of its alert and button views)
DISPLAY_VIEWS = {"Notice", "Warning", "Error", "Button", "AlertView", "ArrowNavView", "ButtonView", "ErrorView",
                 "GridView", "HeaderView", "HiddenView", "ImageView", "JSONView", "KeyValueView", "LabelValueView", "LinkView", "LoadingView",
                 "MarkdownView", "MediaPlayerView", "ProgressView", "TableView", "TagsView",
                 "TreeSelectionView", "StatusButtonView"}


def lodash_merge(dst, src):
    """lodash ``merge``: objects key by key, arrays index by index, the rest replaced."""
    if isinstance(src, dict):
        out = dict(dst) if isinstance(dst, dict) else {}
        for k, v in src.items():
            out[k] = lodash_merge(out.get(k), v) if isinstance(v, (dict, list)) else v
        return out
    if isinstance(src, list):
        out = list(dst) if isinstance(dst, list) else []
        for i, v in enumerate(src):
            val = lodash_merge(out[i] if i < len(out) else None, v) if isinstance(v, (dict, list)) else v
            out[i:i + 1] = [val]
        return out
    return src


def merge_replacing_arrays(dst, src):
    """lodash ``mergeWith`` whose customizer takes the source's array."""
    out = dict(dst)
    for k, v in src.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = merge_replacing_arrays(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


def _values(view, fields, eval_key="eval", kind="correct"):
    ids, target = get_target(view, eval_key, kind)
    q = {f: np.asarray(view.values(f), dtype=float) for f in fields}
    return ids, target, q


# ---------------------------------------------------------------------------
# Statistics
# ---------------------------------------------------------------------------


def test_statistics_match_the_analysis_functions(cls_ds):
    stats = P.panel_statistics(cls_ds, ["iqa_entropy", "noise"], "eval", "correct", n_boot=200)
    json.dumps(stats, allow_nan=False)  # JSON-able as it is
    ids, t, q = _values(cls_ds, ["iqa_entropy", "noise"])
    expected = A.rank_fields({"iqa_entropy": (q["iqa_entropy"], True), "noise": (q["noise"], True)},
                             t, n_boot=200, seed=0)
    assert [r["name"] for r in stats["ranking"]] == [r.name for r in expected]
    for got, exp in zip(stats["ranking"], expected):
        assert got == exp.to_dict()
        assert got["auroc"] is not None and got["n"] == 40
    assert stats["field"] == expected[0].name  # the best-ranked field is plotted
    assert stats["binary"] and stats["n_samples"] == 40 and stats["n_target"] == 40
    # the quality run gives the direction; the bare float field is assumed higher-is-better
    rows = {r["field"]: r for r in stats["table"]}
    assert rows["iqa_entropy"]["direction"] == "higher"
    assert rows["noise"]["direction"] == "higher (assumed)"
    for f in ("iqa_entropy", "noise"):
        plots = stats["per_field"][f]
        curve = A.binned_performance(q[f], t, bins=PS.BINS, strategy="quantile")
        assert plots["curve"] == [b.to_dict() for b in curve]
        h = plots["histogram"]
        assert sum(h["correct"]) == int(t.sum()) and sum(h["wrong"]) == int((t == 0).sum())
        counts, _ = np.histogram(q[f], bins=np.asarray(h["edges"]))
        np.testing.assert_array_equal(np.add(h["correct"], h["wrong"]), counts)
        s = plots["scatter"]
        assert s["n_total"] == s["n_shown"] == 40
        conf = dict(zip(*get_target(cls_ds, "eval", "confidence")))
        assert s["confidence"] == [conf[i] for i in s["ids"]]
        by_id = dict(zip(ids, q[f]))
        assert s["quality"] == [by_id[i] for i in s["ids"]]
    assert stats["curve"] == stats["per_field"][stats["field"]]["curve"]


def test_statistics_defaults_and_subsampling(cls_ds):
    stats = P.panel_statistics(cls_ds, max_points=10, n_boot=50)
    assert stats["eval_key"] == "eval" and stats["kind"] == "correct"
    assert stats["fields"] == ["iqa_entropy"]  # every quality run; bare floats only on request
    s = stats["scatter"]
    assert s["n_total"] == 40 and s["n_shown"] == 10 and len(set(s["ids"])) == 10
    again = P.panel_statistics(cls_ds, max_points=10, n_boot=50)
    assert again["scatter"]["ids"] == s["ids"]  # reproducible subsample
    figs = P.plot_traces(stats)
    assert "random 10 of 40 samples shown" in figs["scatter"]["layout"]["title"]["text"]
    # continuous target: no AUROC, no histogram, the scatter is quality vs the target itself
    conf = P.panel_statistics(cls_ds, ["iqa_entropy"], "eval", "confidence", n_boot=50)
    assert conf["histogram"] is None and conf["ranking"][0]["auroc"] is None
    assert conf["curve"][0]["interval"] == "t"
    # an empty view (e.g. a filter matching nothing) gives empty plots, not an error
    empty = P.panel_statistics(cls_ds.limit(0), n_boot=50)
    assert empty["n_samples"] == 0 and empty["curve"] == [] and empty["histogram"] is None
    assert P.plot_traces(empty) == {"curve": None, "histogram": None, "scatter": None}


def test_statistics_errors(cls_ds, make_dataset):
    ds = make_dataset([f"/nonexistent/{i}.jpg" for i in range(5)], q=[0.1, 0.2, 0.3, 0.4, 0.5])
    with pytest.raises(NoEvaluationError, match="evaluate_classifications"):
        P.panel_statistics(ds, ["q"])
    with pytest.raises(P.NoQualityFieldsError, match="Compute image quality"):
        P.panel_statistics(_eval_only(make_dataset))
    with pytest.raises(P.NoQualityFieldsError, match="nope"):
        P.panel_statistics(cls_ds, ["nope"])


def _eval_only(make_dataset):
    ds = make_dataset([f"/nonexistent/e{i}.jpg" for i in range(4)],
                      ground_truth=[fo.Classification(label=x) for x in "abab"],
                      predictions=[fo.Classification(label=x, confidence=0.5) for x in "abba"])
    ds.evaluate_classifications("predictions", gt_field="ground_truth", eval_key="eval")
    return ds


# ---------------------------------------------------------------------------
# The panel, through FiftyOne's operator machinery
# ---------------------------------------------------------------------------


def test_panel_is_registered(plugin):
    panel = foo.get_operator(URI)
    assert isinstance(panel, P.QualityPerformancePanel)
    cfg = panel.resolve_panel_config()
    assert cfg["name"] == "quality_vs_performance" and cfg["surfaces"] == "grid modal"
    assert cfg["on_load"].endswith("#on_load") and cfg["on_change_view"].endswith("#on_change_view")
    assert cfg["on_change_current_sample"].endswith("#on_change_current_sample")


def test_on_load_renders_table_and_plots(plugin, cls_ds):
    P.CACHE.clear()
    app = FakeApp(cls_ds)
    app.call("on_load")
    # issue 28, item 2: an event the App fires by itself writes no panel state (the App
    # would reset its view and drop the user's sidebar filters)
    assert app.names() == ["patch_panel_data", "show_panel_output"]
    st = app.state
    assert st["target"] == "eval:correct" and st["fields"] == ["iqa_entropy"]
    assert st["field"] == "iqa_entropy" and st["message"] is None
    props = app.properties()
    for name in ("target", "fields", "field", "ranking", "curve", "histogram", "scatter"):
        assert name in props, name
    assert props["curve"]["view"]["name"] == "PlotlyView"
    assert props["curve"]["view"]["on_click"] == f"{URI}#on_click_curve"
    assert props["histogram"]["view"]["on_click"] == f"{URI}#on_click_histogram"
    assert props["scatter"]["view"]["on_selected"] == f"{URI}#on_select_scatter"
    assert [c["key"] for c in props["ranking"]["view"]["columns"]][:3] == ["field", "direction", "spearman"]
    # plots are traces in panel data, under the plots' names
    assert app.data["ranking"][0]["field"] == "iqa_entropy"
    assert [t["name"] for t in app.plots["histogram"]] == ["correct", "wrong"]
    assert len(app.plots["curve"]) == 3 and len(app.plots["curve"][2]["ids"]) == PS.BINS
    assert sum(len(t["ids"]) for t in app.plots["scatter"]) == 40
    json.dumps(app.output, allow_nan=False)
    json.dumps(app.data, allow_nan=False)


def test_changing_the_dataset_resets_the_choices(plugin, cls_ds):
    """The App keeps the panel's state when the user opens another dataset: the choices
    made on the old one (its fields, its evaluation) must not survive."""
    P.CACHE.clear()
    app = FakeApp(cls_ds, state={"fields": ["q_of_the_old_dataset"], "field": "q_of_the_old_dataset",
                                 "target": "old_eval:confidence", "stats_key": "stale"})
    app.call("on_change_dataset")
    st = app.state
    assert st["target"] == "eval:correct" and st["fields"] == ["iqa_entropy"]
    assert st["field"] == "iqa_entropy" and st["stats_key"] != "stale" and st["message"] is None
    assert [r["field"] for r in app.data["ranking"]] == ["iqa_entropy"]


def test_what_the_panel_shows_follows_every_change_of_fields_and_view(plugin, cls_ds):
    """Issue 17: after removing fields the table kept its old rows (a field twice, the old
    n) and the scatter its old points, because the App merges the panel's state, where the
    form had copied the old table, with the new data index by index."""
    P.CACHE.clear()
    ds = cls_ds.clone()
    try:
        rng = np.random.default_rng(1)
        for f in ("noise2", "noise3"):
            ds.set_values(f, rng.normal(size=len(ds)).tolist())
        app = FakeApp(ds)
        app.call("on_load")

        def check(fields, view):
            shown = app.rendered()
            n = len(view)
            assert shown["ranking"] == app.data["ranking"] and app.shown_plot("scatter") == app.plots["scatter"]
            assert sorted(r["field"] for r in shown["ranking"]) == sorted(fields)
            assert all(r["n"] == n for r in shown["ranking"])
            assert sum(len(t["ids"]) for t in app.shown_plot("scatter")) == n
            assert sum(sum(t["y"]) for t in app.shown_plot("histogram")) == n
            assert shown["fields"] == fields

        every = ["iqa_entropy", "noise", "noise2", "noise3"]
        app.user_changes("fields", every, "on_change_fields")
        check(every, ds)
        app.user_changes("fields", ["noise", "iqa_entropy"], "on_change_fields")
        check(["noise", "iqa_entropy"], ds)
        app.view = ds.sort_by("noise").limit(12)
        app.call("on_change_view")
        check(["noise", "iqa_entropy"], app.view)
        app.user_changes("fields", ["noise3"], "on_change_fields")
        check(["noise3"], app.view)
        app.user_changes("field", "noise3", "on_change_field")
        check(["noise3"], app.view)
        app.view = ds.view()
        app.call("on_change_view")
        app.user_changes("fields", every[:3], "on_change_fields")
        check(every[:3], ds)
    finally:
        ds.delete()


def test_rerenders_use_the_cache(plugin, cls_ds):
    P.CACHE.clear()
    app = FakeApp(cls_ds)
    app.call("on_load")
    assert P.CACHE.misses == 1
    app.call("on_change_view", value=[])  # same view: nothing recomputed or resent
    assert app.names() == ["show_panel_output"] and P.CACHE.misses == 1
    app.call("on_change_field", value="noise", path="field")  # not a ranked field: ignored
    assert app.state["field"] == "iqa_entropy"
    app.call("on_change_fields", value=["iqa_entropy", "noise"], path="fields")
    assert P.CACHE.misses == 2 and [r["field"] for r in app.data["ranking"]] == ["iqa_entropy", "noise"]
    app.call("on_change_field", value="noise", path="field")  # switching plots: cached
    assert P.CACHE.misses == 2 and app.state["field"] == "noise"
    assert "noise" in app.state["summary"]["layouts"]["curve"]["xaxis"]["title"]["text"]
    app.view = cls_ds.limit(30)  # another view: recomputed on it
    app.call("on_change_view", value=app.view._serialize())
    assert P.CACHE.misses == 3 and app.state["summary"]["n_samples"] == 30
    app.view = cls_ds.view()  # back: from the cache
    app.call("on_change_view", value=[])
    assert P.CACHE.misses == 3 and P.CACHE.hits >= 2
    app.call("on_change_target", value="eval:confidence", path="target")
    assert app.state["summary"]["kind"] == "confidence" and app.plots["histogram"] == []
    assert "histogram" not in app.properties()


def _expected_bin_ids(view, field, lo, hi, last):
    ids, q = view.values(["id", field])
    q = np.asarray(q, dtype=float)
    keep = (q >= lo) & ((q <= hi) if last else (q < hi))
    return sorted(np.asarray(ids)[keep])


@pytest.mark.parametrize("which", ["curve", "histogram"])
def test_clicking_a_bin_sets_the_view_to_its_samples(plugin, cls_ds, which):
    base = cls_ds.match(fo.ViewField("noise") > -1.0)  # the App's current view
    app = FakeApp(cls_ds, view=base)
    app.call("on_load")
    trace = app.plots["curve"][2] if which == "curve" else app.plots["histogram"][1]
    bins = app.state["summary"]["bins"][which]
    filled = [i for i, y in enumerate(trace["y"]) if y > 0]  # bars with samples
    for idx in (filled[0], filled[-1]):  # the first, and the last (the closed one for the curve)
        bin_id = trace["ids"][idx]
        # what plotly's click sends (react-plotly event, as the App forwards it)
        app.call(f"on_click_{which}", id=bin_id, idx=idx, x=trace["x"][idx], y=trace["y"][idx],
                 trace=trace["name"], trace_idx=2, event="onClick", shift_pressed=False)
        assert "set_view" in app.names()
        field, lo, hi, last, *outcome = json.loads(bin_id)
        assert [field, lo, hi, last] == list(bins[idx])
        assert last == (idx == len(trace["ids"]) - 1)
        got = sorted(app.set_views[-1].values("id"))
        expected = _expected_bin_ids(base, field, lo, hi, last)
        if which == "histogram":  # the "wrong" bar: the wrong predictions of that bin only
            assert outcome == ["wrong"]
            wrong = set(base.match(fo.ViewField("eval") == False).values("id"))  # noqa: E712
            expected = sorted(set(expected) & wrong)
            assert len(got) == trace["y"][idx]
        assert got == expected and got
    if which == "curve":  # each quantile bin holds the samples binned_performance counted
        rows = [r for r in P.panel_statistics(base, ["iqa_entropy"], "eval", "correct",
                                              n_boot=0)["curve"] if r["n"]]
        assert len(got) == rows[-1]["n"]
    # without an id (e.g. another plotly version), the point index and state bins do
    app.call(f"on_click_{which}", idx=filled[0], x=trace["x"][filled[0]], trace=trace["name"])
    first = _expected_bin_ids(base, *bins[filled[0]])
    if which == "histogram":
        first = sorted(set(first) & set(base.match(fo.ViewField("eval") == False).values("id")))  # noqa: E712
    assert sorted(app.set_views[-1].values("id")) == first
    # Back: the view the first drill-down started from
    app.call("on_click_back")
    assert app.set_views[-1]._serialize() == base._serialize() and app.state["base_view"] is None
    n_views = len(app.set_views)
    app.call(f"on_click_{which}", id="garbage")
    assert app.names()[0] == "notify" and len(app.set_views) == n_views


def test_lasso_in_the_scatter_selects_samples(plugin, cls_ds):
    app = FakeApp(cls_ds)
    app.call("on_load")
    pts = []
    for ti, trace in enumerate(app.plots["scatter"]):
        for i in range(min(3, len(trace["ids"]))):
            pts.append({"trace": trace["name"], "trace_idx": ti, "idx": i, "id": trace["ids"][i],
                        "x": trace["x"][i], "y": trace["y"][i], "z": None})
    app.call("on_select_scatter", data=pts, event="onSelected", path="scatter")
    assert "set_view" in app.names()
    assert sorted(app.set_views[-1].values("id")) == sorted(p["id"] for p in pts)
    app.call("on_select_scatter", data=[], event="onSelected")  # deselect: view unchanged
    assert "set_view" not in app.names()


def test_callbacks_with_a_hand_made_execution_context(plugin, cls_ds):
    """The same callback with an ExecutionContext built as the server builds one."""
    app = FakeApp(cls_ds)
    app.call("on_load")
    trace = app.plots["histogram"][0]
    panel = foo.get_operator(URI)
    executor = Executor()
    ctx = ExecutionContext(request_params={
        "dataset_name": cls_ds.name, "view": cls_ds.view()._serialize(),
        "params": {"panel_id": "qvp-test", "panel_state": app.state, "id": trace["ids"][3],
                   "idx": 3, "x": trace["x"][3]},
    }, executor=executor)
    panel.on_click_histogram(ctx)
    (req,) = [r for r in executor._requests if r.operator_uri == "set_view"]
    field, lo, hi, last, outcome = json.loads(trace["ids"][3])
    assert outcome == trace["name"] == "correct"
    got = fo.DatasetView._build(cls_ds, req.params["view"]).values("id")
    correct = set(cls_ds.match(fo.ViewField("eval") == True).values("id"))  # noqa: E712
    assert sorted(got) == sorted(set(_expected_bin_ids(cls_ds, field, lo, hi, last)) & correct)


def test_no_evaluation_shows_a_message(plugin, make_dataset):
    ds = make_dataset([f"/nonexistent/{i}.jpg" for i in range(5)], q=[0.1, 0.2, 0.3, 0.4, 0.5])
    app = FakeApp(ds)
    app.call("on_load")
    with pytest.raises(NoEvaluationError) as e:
        get_target(ds)
    assert app.state["message"] == str(e.value)
    props = app.properties()
    assert props["message"]["view"]["name"] == "Warning"
    assert props["message"]["view"]["description"] == str(e.value)
    assert not {"curve", "histogram", "scatter", "ranking"} & set(props)
    assert "evaluate" not in props  # nothing to evaluate: no label fields


def test_no_evaluation_offers_to_evaluate_the_predictions(plugin, make_dataset):
    """The empty state has an action: FiftyOne's own evaluation from a form, after which the
    panel ranks the field against it."""
    gt, pred = "abab", "abba"
    ds = make_dataset([f"/nonexistent/v{i}.jpg" for i in range(4)], q=[0.4, 0.3, 0.2, 0.1],
                      ground_truth=[fo.Classification(label=x) for x in gt],
                      predictions=[fo.Classification(label=x, confidence=0.5) for x in pred])
    ds.persistent = True
    app = FakeApp(ds, state={"fields": ["q"]})
    app.call("on_load")
    button = app.properties()["evaluate"]["view"]
    assert button["operator"] == f"{PLUGIN_NAME}/evaluate_predictions" and button["prompt"]
    op = foo.get_operator(f"{PLUGIN_NAME}/evaluate_predictions")
    ctx = ExecutionContext(request_params={"dataset_name": ds.name, "params": {}})
    props = op.resolve_input(ctx).type.properties
    assert props["pred_field"].default == "predictions" and props["eval_key"].default == "eval"
    ctx = ExecutionContext(request_params={"dataset_name": ds.name, "params": {"pred_field": "predictions"}})
    assert op.resolve_input(ctx).type.properties["gt_field"].default == "ground_truth"
    res = foo.execute_operator(f"{PLUGIN_NAME}/evaluate_predictions", ctx={"view": ds.view(), "params": {
        "pred_field": "predictions", "gt_field": "ground_truth", "eval_key": "eval"}})
    assert res.error is None and ds.list_evaluations() == ["eval"]
    assert ds.values("eval") == [g == p for g, p in zip(gt, pred)]  # FiftyOne's per-sample correctness
    app.call("on_load")
    assert app.state["message"] is None and [r["field"] for r in app.data["ranking"]] == ["q"]


def test_no_quality_runs_says_what_to_run(plugin, make_dataset):
    ds = _eval_only(make_dataset)
    app = FakeApp(ds)
    app.call("on_load")
    assert "Compute image quality" in app.state["message"]
    props = app.properties()
    assert "Compute image quality" in props["message"]["view"]["description"]
    # an action, not only words: the button opens the operator's form
    assert props["compute"]["view"]["operator"] == f"{PLUGIN_NAME}/compute_quality"
    assert props["compute"]["view"]["prompt"] is True and "runs" not in props
    assert app.rendered()["runs"] == []


def test_the_panel_lists_the_quality_runs_with_their_status(plugin, cls_ds):
    P.CACHE.clear()
    app = FakeApp(cls_ds)
    app.call("on_load")
    props = app.properties()
    assert [c["key"] for c in props["runs"]["view"]["columns"]] == ["run", "metric", "status"]
    rows = app.rendered()["runs"]
    stored = {k: cls_ds.load_run_results(k) for k in cls_ds.list_runs()}
    assert [r["run"] for r in rows] == ["iqa_entropy"] == [k for k in stored if k.startswith("iqa_")]
    assert rows[0]["metric"] == "entropy" and rows[0]["status"] == stored["iqa_entropy"].status == "completed"
    assert props["compute"]["view"]["operator"] == f"{PLUGIN_NAME}/compute_quality"


def _boxes(*xs):
    return fo.Detections(detections=[fo.Detection(label="obj", bounding_box=[x, 0.1, 0.2, 0.2],
                                                  confidence=0.9) for x in xs])


def test_detection_evaluation_f1(plugin, make_dataset):
    rng = np.random.default_rng(1)
    n = 24
    gts, preds = [], []
    for i in range(n):
        gts.append(_boxes(0.1, 0.5))
        preds.append(_boxes(*([0.1, 0.5] if i % 3 == 0 else [0.1] if i % 3 == 1 else [0.7])))
    ds = make_dataset([f"/nonexistent/d{i}.jpg" for i in range(n)], ground_truth=gts,
                      predictions=preds, q=rng.random(n).tolist())
    ds.evaluate_detections("predictions", gt_field="ground_truth", eval_key="det")
    stats = P.panel_statistics(ds, ["q"], n_boot=100)
    assert stats["eval_key"] == "det" and stats["kind"] == "f1" and stats["eval_type"] == "detection"
    _, f1 = get_target(ds, "det", "f1")
    exp = A.rank_fields({"q": (np.asarray(ds.values("q"), float), True)}, f1, n_boot=100)[0]
    assert stats["ranking"][0] == exp.to_dict() and stats["ranking"][0]["auroc"] is None
    assert stats["histogram"] is None and stats["scatter"] is None
    assert sum(r["n"] for r in stats["curve"]) == n
    app = FakeApp(ds, state={"fields": ["q"]})  # a float field picked by the user
    app.call("on_load")
    assert app.state["target"] == "det:f1" and app.state["message"] is None
    props = app.properties()
    assert "curve" in props and "histogram" not in props and "scatter" not in props
    trace = app.plots["curve"][2]
    app.call("on_click_curve", id=trace["ids"][0], idx=0)
    field, lo, hi, last = json.loads(trace["ids"][0])
    assert sorted(app.set_views[-1].values("id")) == _expected_bin_ids(ds, field, lo, hi, last)


# ---------------------------------------------------------------------------
# 100k samples
# ---------------------------------------------------------------------------


def _synthetic(n=100_000, base=12_500, seed=0):
    """n samples with classification labels, a real evaluation and two float quality
    fields (one tracking correctness, one noise). Dummy filepaths: no image is read."""
    rng = np.random.default_rng(seed)
    names = np.array(["cat", "dog", "bird"])
    gt = rng.integers(0, 3, base)
    pred = np.where(rng.random(base) < 0.7, gt, rng.integers(0, 3, base))
    conf = rng.random(base)
    ds = fo.Dataset()
    ds.add_samples([fo.Sample(filepath=f"/nonexistent/synthetic/{i}.jpg",
                              ground_truth=fo.Classification(label=names[gt[i]]),
                              predictions=fo.Classification(label=names[pred[i]],
                                                            confidence=float(conf[i])))
                    for i in range(base)], progress=False)
    while len(ds) < n:  # copies inside the database, with new ids
        ds.add_collection(ds.limit(n - len(ds)), new_ids=True)
    ds.evaluate_classifications("predictions", gt_field="ground_truth", eval_key="eval",
                                progress=False)
    correct = np.asarray(ds.values("eval"), dtype=float)
    ds.set_values("q_sharp", (0.6 * correct + rng.random(n)).tolist())
    ds.set_values("q_noise", rng.random(n).tolist())
    return ds


def test_statistics_on_100k_samples_subsample_and_cache(plugin):
    """At scale: one read, a reproducible 5,000-point scatter, the ranking against scipy,
    and the panel served from its cache after the first load."""
    ds = _synthetic()
    try:
        assert len(ds) == 100_000
        stats = P.panel_statistics(ds, ["q_sharp", "q_noise"])
        assert stats["n_samples"] == 100_000 and stats["field"] == "q_sharp"
        ids, target = get_target(ds)
        q = np.asarray(ds.values("q_sharp"), float)
        assert stats["ranking"][0]["spearman"]["estimate"] == pytest.approx(
            scipy.stats.spearmanr(q, target).statistic, abs=1e-9)
        assert stats["scatter"]["n_shown"] == PS.MAX_POINTS and stats["scatter"]["n_total"] == 100_000
        title = P.plot_traces(stats)["scatter"]["layout"]["title"]["text"]
        assert "random 5,000 of 100,000 samples shown" in title
        # through the panel: first load computes, a re-render is served from the cache
        P.CACHE.clear()
        app = FakeApp(ds, state={"fields": ["q_sharp", "q_noise"]})
        app.call("on_load")
        app.call("on_change_view", value=[])
        app.call("on_change_field", value="q_noise", path="field")
        assert P.CACHE.misses == 1
    finally:
        ds.delete()


def test_a_drill_down_keeps_the_whole_view_as_context_until_back(plugin, cls_ds):
    """Issue 17, item 6: after a click the grid shows the bin's samples, while the plots and
    the ranking keep describing the view the click came from, the clicked bar highlighted;
    moving to another view ends the drill-down; Back returns and clears the highlight."""
    P.CACHE.clear()
    app = FakeApp(cls_ds)
    app.call("on_load")
    before = copy.deepcopy(app.data["ranking"])
    wrong = app.plots["histogram"][1]
    idx = int(np.argmax(wrong["y"]))
    app.call("on_click_histogram", id=wrong["ids"][idx], idx=idx, trace="wrong")
    app.view = app.set_views[-1]  # the App applies the view, then tells the panel
    app.call("on_change_view")
    shown = app.rendered()
    assert shown["ranking"] == before and all(r["n"] == 40 for r in shown["ranking"])
    assert app.state["drill_summary"]["n"] == len(app.view) == wrong["y"][idx]
    assert "wrong predictions" in app.state["drill_summary"]["label"]
    for trace in app.plots["histogram"]:
        opacity = trace["marker"]["opacity"]
        assert opacity == [1.0 if (trace["name"], i) == ("wrong", idx) else 0.3 for i in range(len(opacity))]
    assert "back" in app.properties()
    # a second click drills from the same context view, not from inside the first drill-down
    correct = app.plots["histogram"][0]
    j = int(np.argmax(correct["y"]))
    app.call("on_click_histogram", id=correct["ids"][j], idx=j, trace="correct")
    assert len(app.set_views[-1]) == correct["y"][j]
    app.view = cls_ds.limit(10)  # the user moves elsewhere: the panel describes that view
    app.call("on_change_view")
    assert app.state["base_view"] is None and app.state["drill_summary"] is None
    assert all(r["n"] == 10 for r in app.rendered()["ranking"])
    assert all("opacity" not in t.get("marker", {}) for t in app.plots["histogram"])


def test_lassoed_points_stay_selected_on_the_context_scatter(plugin, cls_ds):
    P.CACHE.clear()
    app = FakeApp(cls_ds)
    app.call("on_load")
    chosen = [t["ids"][0] for t in app.plots["scatter"]]
    app.call("on_select_scatter", data=[{"id": i} for i in chosen])
    app.view = app.set_views[-1]
    app.call("on_change_view")
    assert sum(len(t["ids"]) for t in app.plots["scatter"]) == 40  # the whole view, as context
    for t in app.plots["scatter"]:
        assert [t["ids"][k] for k in t["selectedpoints"]] == [i for i in t["ids"] if i in chosen]
    app.call("on_click_back")
    assert app.set_views[-1]._serialize() == cls_ds.view()._serialize()


def test_the_breakdown_table_follows_the_choice_and_the_view(plugin, cls_ds):
    P.CACHE.clear()
    app = FakeApp(cls_ds)
    app.call("on_load")
    assert app.state["slice_by"] == "class" and app.state["summary"]["slice_options"] == ["tags", "class"]
    labels = cls_ds.values("ground_truth.label")
    assert max(np.unique(labels, return_counts=True)[1]) == 1  # one photo per class: no class slice
    assert app.data["slices"] == [] and "slice_by" in app.properties()
    assert "no_slices" in app.properties() and "slices" not in app.properties()
    app.user_changes("slice_by", "tags", "on_change_slice")
    assert [r["slice"] for r in app.rendered()["slices"]] == ["(no tags)"] and app.data["slices"][0]["n"] == 40
    app.user_changes("slice_by", "none", "on_change_slice")
    assert app.rendered()["slices"] == [] and "slices" not in app.properties()


def test_the_header_says_what_accuracy_to_expect(plugin, cls_ds):
    """Issue 13: the accuracy the shown field alone predicts for the view, from a prior
    fitted on the evaluated samples outside it (sklearn's isotonic regression as oracle),
    beside the accuracy measured there; the whole dataset is checked on a held-out half."""
    from sklearn.isotonic import IsotonicRegression

    P.CACHE.clear()
    app = FakeApp(cls_ds, view=cls_ds.limit(10))
    app.call("on_load")
    field = app.state["field"]
    hib = bool(cls_ds.get_run_info(field).config.higher_is_better)
    q = np.asarray(cls_ds.values(field), float)
    c = np.asarray(cls_ds.values("eval"), float)
    est = IsotonicRegression(increasing=hib, out_of_bounds="clip").fit(q[10:], c[10:]).predict(q[:10]).mean()
    text = app.state["summary"]["expected"]
    assert text.startswith(f"Accuracy to expect from {field} alone: {fmt_short(est)} [")
    assert "for the 10 scored samples of this view, from a prior fitted on the 30 evaluated samples outside it" in text
    assert f"; measured {fmt_short(c[:10].mean())} [" in text and "expected" in app.properties()
    app = FakeApp(cls_ds)
    app.call("on_load")
    assert "for a held-out half of this view (20 samples)" in app.state["summary"]["expected"]


NUM = r"-?\d+\.\d{3}"
#: an interval cell as the panel's tables show it: three decimals, on one line
INTERVAL = re.compile(rf"^{NUM}\u00a0\[{NUM},\u00a0{NUM}\]$")
NOT_AVAILABLE = re.compile(r"^n/a(\u00a0\([^()]+\))?$")


def _cells(rows):
    return [v for r in rows for v in r.values() if isinstance(v, str)]


def test_one_number_format_in_the_panel(plugin, cls_ds):
    """Issue 28, item 11: every statistic the panel shows has three decimals, intervals
    included, on one line (non-breaking spaces); a missing one reads "n/a (why)", never
    "nan"; no scientific notation. The numbers are scipy's."""
    ds = cls_ds.clone()
    try:
        ds.set_values("flat", [0.5] * len(ds))  # a constant field: its correlations are n/a
        P.CACHE.clear()
        app = FakeApp(ds)
        app.call("on_load")
        app.user_changes("fields", ["iqa_entropy", "flat"], "on_change_fields")
        app.user_changes("slice_by", "tags", "on_change_slice")
        rows = {r["field"]: r for r in app.data["ranking"]}
        q, c = (np.asarray(ds.values(f), float) for f in ("iqa_entropy", "eval"))
        hib = bool(ds.get_run_info("iqa_entropy").config.higher_is_better)
        rho = scipy.stats.spearmanr(q if hib else -q, c)[0]
        assert rows["iqa_entropy"]["spearman"].split("\u00a0")[0] == f"{rho:.3f}"
        for col in ("spearman", "kendall", "pearson", "auroc"):
            assert INTERVAL.match(rows["iqa_entropy"][col]), rows["iqa_entropy"][col]
        for col in ("spearman", "kendall", "pearson"):  # (its AUROC is 0.5: every pair tied)
            assert NOT_AVAILABLE.match(rows["flat"][col]) and "(" in rows["flat"][col], rows["flat"][col]
        cells = _cells(app.data["ranking"]) + _cells(app.data["slices"])
        assert not [v for v in cells if "nan" in v.lower() or re.search(r"\de[+-]\d", v)], cells
        assert INTERVAL.match(app.data["slices"][0]["target"]), app.data["slices"][0]
        # hover texts of the curve and the drill-down's label: the same format
        texts = [t for trace in app.plots["curve"] for t in trace.get("text") or []]
        assert texts and all(re.search(rf"accuracy {NUM} \[{NUM}, {NUM}\]$", t) for t in texts), texts
        assert all(re.match(rf"^\[{NUM}, {NUM}[\])]: n=\d+, ", t) for t in texts), texts
        expected = app.state["summary"]["expected"]
        assert re.search(rf"alone: {NUM} \[{NUM}, {NUM}\]", expected) and "e+" not in expected, expected
    finally:
        ds.delete()


def test_sidebar_filters_stay_and_the_numbers_describe_them(plugin, cls_ds):
    """Issue 28, item 2: with sidebar filters (the App sends them beside the view), opening
    the panel and each view change describe the filtered samples, and write no panel state
    and no view: the App answered a panel-state write by resetting its view and dropping
    the filters (seen in Chromium; test_browser's sidebar-filter test is the whole check)."""
    hib = bool(cls_ds.get_run_info("iqa_entropy").config.higher_is_better)
    panel, panel_id = foo.get_operator(URI), f"qvp-filters-{uuid.uuid4().hex[:8]}"
    P.CACHE.clear()
    for method, n in (("on_load", 20), ("on_change_view", 12)):
        labels = sorted(cls_ds.values("ground_truth.label"))[:n]
        filters = {"ground_truth.label": {"values": labels, "exclude": False, "isMatching": True}}
        keep = np.isin(cls_ds.values("ground_truth.label"), labels)
        q, c = (np.asarray(cls_ds.values(f), float)[keep] for f in ("iqa_entropy", "eval"))
        rho = scipy.stats.spearmanr(q if hib else -q, c)[0]
        executor = Executor()
        panel.execute(ExecutionContext(request_params={
            "dataset_name": cls_ds.name, "view": [], "filters": filters,
            "params": {"__method__": method, "panel_id": panel_id, "panel_state": {}, "value": filters},
        }, executor=executor))
        requests = {r.operator_uri: r.params for r in executor._requests}
        assert set(requests) == {"patch_panel_data", "show_panel_output"}, method
        (row,) = requests["patch_panel_data"]["data"]["ranking"]
        assert row["n"] == keep.sum() == n
        assert row["spearman"].split("\u00a0")[0] == f"{rho:.3f}"
        header = requests["show_panel_output"]["output"]["type"]["properties"]["header"]["default"]
        assert header.startswith(f"**{n}** samples in the view, **{n}** with a target"), header


def test_the_apps_own_events_leave_the_app_nothing_to_write(plugin, cls_ds):
    """Issue 28, item 2 (traced in Chromium): a panel-state write, the panel's own or the
    App's form writing an input's default that differs from what it shows, reloaded the
    App's page, which dropped the sidebar filters and fired on_change_view again, whose
    answer wrote again: a loop. Opening the panel and view changes write no state, every
    input shows the panel's value (so the form writes nothing), and the user's choices
    survive the App's events."""
    P.CACHE.clear()
    app = FakeApp(cls_ds)
    app.call("on_load")
    assert "patch_panel_state" not in app.names() and app.form_writes() == {}
    shown = app.rendered()
    assert (shown["target"], shown["fields"], shown["field"]) == ("eval:correct", ["iqa_entropy"], "iqa_entropy")
    assert shown["slice_by"] == app.state["slice_by"] == "class"
    app.user_changes("fields", ["iqa_entropy", "noise"], "on_change_fields")
    app.user_changes("slice_by", "none", "on_change_slice")
    labels = sorted(set(cls_ds.values("ground_truth.label")))[:5]
    app.view = cls_ds.filter_labels("ground_truth", fo.ViewField("label").is_in(labels))
    app.call("on_change_view")
    assert "patch_panel_state" not in app.names() and app.form_writes() == {}
    shown = app.rendered()
    assert shown["fields"] == ["iqa_entropy", "noise"] and shown["slice_by"] == "none"
    assert {r["field"]: r["n"] for r in app.data["ranking"]} == {"iqa_entropy": len(app.view), "noise": len(app.view)}
