"""Objects through the App's operators (issue 14, items 3 and 4): the "Compute image
quality" form offers a detection field's objects, the operator scores them, and "Find
hard samples" opens the hardest objects as patches; through FiftyOne's operator machinery,
against numpy on the stored attributes."""

import numpy as np
import pytest

import fiftyone as fo
import fiftyone.operators as foo
from fiftyone.operators.executor import ExecutionContext, ValidationContext

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
        "unit": "objects", "field": "ground_truth_q", "mode": "count", "value": 2}})
    assert res.error is None and res.result["count"] == 2
    (shown,) = [r.params for r in res.executor._requests if r.operator_uri == "set_view"]
    view = fo.DatasetView._build(detections, shown["view"])
    assert view._is_patches
    flat = sorted(v for per_sample in q for v in per_sample if v is not None)
    assert view.values("ground_truth.q") == pytest.approx(flat[:2])
