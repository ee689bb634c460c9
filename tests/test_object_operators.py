"""Objects through the App's operators (issue 14, items 3 and 4): the "Compute image
quality" form offers a detection field's objects, the operator scores them, and "Find
hard samples" opens the hardest objects as patches; through FiftyOne's operator machinery,
against numpy on the stored attributes. Find hard samples on samples too (issue 28, items 7
and 11): its result dialog says what it tagged and saved, and from the App it names the
saved view only after asking the App to reload its list of saved views."""

import numpy as np
import pytest

import fiftyone as fo
import fiftyone.operators as foo
from fiftyone.operators.executor import ExecutionContext, ValidationContext

import fiftyone_dnniqa as dq
from fiftyone_dnniqa.app import view_operators
from fiftyone_dnniqa.app.forms import IMAGES
from fiftyone_dnniqa.app.operators import _scoring_output
from fiftyone_dnniqa.app.plugin import PLUGIN_NAME

COMPUTE = f"{PLUGIN_NAME}/compute_quality"
HARD = f"{PLUGIN_NAME}/find_hard_samples"
BOXES = [[0.05, 0.05, 0.4, 0.4], [0.5, 0.5, 0.45, 0.45], [0.3, 0.1, 0.2, 0.6], [0.0, 0.0, 0.0, 0.0]]


@pytest.fixture
def detections(installed_plugin, make_dataset, imagenet_files):
    ds = make_dataset(imagenet_files[:3])
    ds.set_values("ground_truth", [fo.Detections(detections=[
        fo.Detection(label="thing", bounding_box=b) for b in BOXES]) for _ in range(3)])
    ds.persistent = True
    return ds


def _resolve(ds, uri, params):
    op = foo.get_operator(uri)
    ctx = ExecutionContext(request_params={"dataset_name": ds.name, "params": params})
    inputs = op.resolve_input(ctx)
    return inputs.type.properties, ValidationContext(ctx, inputs, op)


def test_the_form_offers_the_objects_of_a_detection_field(detections):
    props, _ = _resolve(detections, COMPUTE, {"metric": "entropy"})
    assert props["patches_field"].type.values == [IMAGES, "ground_truth"]
    assert "patch_margin" not in props  # whole images: no object settings
    props, valid = _resolve(detections, COMPUTE, {"metric": "entropy", "patches_field": "ground_truth",
                                                   "field": "iqa_entropy"})
    assert props["patch_margin"].default == 0.2 and props["min_patch_side"].default == 8
    assert "'ground_truth_iqa_entropy' (the run key)" in props["field"].view.description
    assert not valid.invalid
    props, valid = _resolve(detections, COMPUTE, {"metric": "entropy", "patches_field": "ground_truth",
                                                   "field": "bad name"})
    assert props["field"].invalid and "valid identifier" in props["field"].error_message and valid.invalid


def test_the_operator_scores_every_valid_object_and_finds_the_hardest(detections):
    res = foo.execute_operator(COMPUTE, ctx={"view": detections.view(), "params": {
        "metric": "entropy", "field": "q", "patches_field": "ground_truth", "num_workers": 0}})
    assert res.error is None and res.result["scored"] == 9 and res.result["failed"] == 3  # 3 empty boxes
    failed = _scoring_output(res.result).type.properties["failed"].view.label
    assert failed == "Objects that could not be scored (reasons in q_error of each object of ground_truth)"
    detections.reload()
    q = detections.values("ground_truth.detections.q")
    reasons = detections.values("ground_truth.detections.q_error")
    for per_sample, why in zip(q, reasons):
        assert all(v is not None for v in per_sample[:3]) and per_sample[3] is None  # the empty box
        assert why[3] and "zero-area" in why[3]
    means = detections.values("ground_truth_q")
    assert means == pytest.approx([float(np.mean(v[:3])) for v in q])
    # the 2 hardest objects (entropy: higher is better), as patches, hardest first
    props, _ = _resolve(detections, HARD, {"unit": "objects"})
    assert props["unit"].type.values == ["samples", "objects"] and props["field"].type.values == ["ground_truth_q"]
    res = foo.execute_operator(HARD, ctx={"view": detections.view(), "params": {
        "unit": "objects", "field": "ground_truth_q", "mode": "count", "value": 2, "tag": "tiny"}})
    assert res.error is None and res.result["count"] == 2
    assert detections.count_label_tags() == {"tiny": 2}
    assert _result_rows(foo.get_operator(HARD), detections, res.result) == {
        "Hard objects (shown as patches)": 2, "Objects given the label tag 'tiny'": 2}
    (shown,) = [r.params for r in res.executor._requests if r.operator_uri == "set_view"]
    view = fo.DatasetView._build(detections, shown["view"])
    assert view._is_patches
    flat = sorted(v for per_sample in q for v in per_sample if v is not None)
    assert view.values("ground_truth.q") == pytest.approx(flat[:2])


def _result_rows(op, ds, result):
    """The result dialog's rows as ``{label: value}``, as the App fills them from ``result``."""
    ctx = ExecutionContext(request_params={"dataset_name": ds.name, "params": {}, "results": result})
    props = op.resolve_output(ctx).type.properties
    return {p.view.label: result.get(name, "No value provided") for name, p in props.items()}


@pytest.fixture
def scored(installed_plugin, make_dataset, imagenet_files):
    ds = make_dataset(imagenet_files[:8])
    ds.persistent = True
    dq.compute_quality(ds, "entropy", num_workers=0)
    return ds


def test_find_hard_samples_says_what_it_tagged_and_saved(scored):
    """Issue 28, item 11: the dialog showed "Tagged: No value provided"; it now gives the
    count tagged with the tag's name, and the saved view's name, only where they apply."""
    op = foo.get_operator(HARD)
    entropy = np.asarray(scored.values("iqa_entropy"))
    hardest = set(np.asarray(scored.values("id"))[np.argsort(entropy)[:3]])  # higher entropy is better
    res = foo.execute_operator(HARD, ctx={"view": scored.view(), "params": {
        "field": "iqa_entropy", "mode": "count", "value": 3, "tag": "tough", "view_name": "tough3"}})
    assert res.error is None
    assert res.result == {"count": 3, "unit": "samples", "tagged": 3, "tag": "tough", "view_name": "tough3"}
    assert set(scored.match_tags("tough").values("id")) == hardest
    assert set(scored.load_saved_view("tough3").values("id")) == hardest
    assert _result_rows(op, scored, res.result) == {
        "Hard samples": 3, "Samples tagged 'tough'": 3, "Saved as the view (now shown)": "tough3"}
    res = foo.execute_operator(HARD, ctx={"view": scored.view(), "params": {
        "field": "iqa_entropy", "mode": "percent", "value": 25}})
    assert _result_rows(op, scored, res.result) == {"Hard samples": 2}  # ceil(0.25 * 8); nothing else done


def test_find_hard_samples_from_the_app_reloads_before_naming_the_saved_view(scored, monkeypatch):
    """Issue 28, item 7: the App checks a saved view's name against the list of saved views
    it loaded with the dataset, so naming a view saved a moment ago left the grid on the
    whole dataset. From the App (its requests carry ``current_sample``) the operator asks
    for a reload first, then names the view, then shows its result."""
    monkeypatch.setattr(view_operators, "SAVED_VIEW_WAITS_S", (0.0, 0.0))
    res = foo.execute_operator(HARD, ctx={"view": scored.view(), "current_sample": None, "params": {
        "field": "iqa_entropy", "mode": "count", "value": 2, "tag": "tough", "view_name": "tough2"}})
    assert res.error is None
    uris = [r.operator_uri for r in res.executor._requests]
    assert uris[0] == "reload_dataset" and uris[1:3] == ["set_view", "set_view"], uris
    assert [r.params for r in res.executor._requests[1:3]] == [{"name": "tough2"}] * 2
    assert uris[3:] == ["reload_samples", "show_output"], uris
    shown = res.executor._requests[-1].params
    assert shown["results"] == {"count": 2, "unit": "samples", "tagged": 2, "tag": "tough", "view_name": "tough2"}
    assert scored.has_saved_view("tough2") and scored.count_sample_tags() == {"tough": 2}
