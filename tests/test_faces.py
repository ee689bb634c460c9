"""Every face offers the same scoring: the Python API, the CLI and the operator, given the
same view and options, write identical fields and run records."""

import csv
import os

import numpy as np
import pytest

import fiftyone as fo
import fiftyone.operators as foo

import fiftyone_dnniqa as dq
from fiftyone_dnniqa.app.plugin import PLUGIN_NAME
from fiftyone_dnniqa.cli import main

from conftest import IMAGENET

OPTIONS = {"label_mode": "sample", "tta": "flip", "statistic": "margin"}


@pytest.fixture
def labelled(imagenet_files, make_dataset):
    with open(os.path.join(IMAGENET, "labels.csv")) as f:
        names = {r["filename"]: r["class_name"] for r in csv.DictReader(f)}
    files = imagenet_files[3:60:8][:7]
    ds = make_dataset(files, ground_truth=[fo.Classification(label=names[os.path.basename(p)]) for p in files])
    ds.persistent = True  # the CLI loads it by name
    return ds


def _scores_and_config(ds, field):
    cfg = dq.get_quality_run_info(ds, field).config
    return (np.array(ds.values(field), dtype=float),
            {k: getattr(cfg, k) for k in ("metric", "metric_options", "label_field", "batch_size")})


def test_api_cli_and_operator_write_identical_fields(labelled, installed_plugin):
    ds = labelled
    common = dict(label_field="ground_truth", metric_options=OPTIONS, decode="workers", device="cpu",
                  batch_size=3)
    dq.compute_quality(ds, "aligned_task", field="q_api", progress=False, **common)
    main(["score", "--dataset", ds.name, "--metric", "aligned_task", "--field", "q_cli",
          "--label-field", "ground_truth", "--option", "label_mode=sample", "--option", "tta=flip",
          "--option", "statistic=margin", "--decode", "workers", "--device", "cpu", "--batch-size", "3",
          "--quiet"])
    op = foo.get_operator(f"{PLUGIN_NAME}/compute_quality")
    result = op(ds.view(), metric="aligned_task", field="q_op", **common)
    assert result.error is None, result.error
    ds.reload()
    api, cli, opr = (_scores_and_config(ds, f) for f in ("q_api", "q_cli", "q_op"))
    assert len(api[0]) == 7 and np.isfinite(api[0]).all()
    np.testing.assert_array_equal(api[0], cli[0])
    np.testing.assert_array_equal(api[0], opr[0])
    assert api[1] == cli[1] == opr[1]
    assert api[1]["metric_options"]["label_mode"] == "sample"
    assert api[1]["metric_options"]["statistic"] == "margin" and api[1]["metric_options"]["tta"] == "flip"


def test_the_operator_form_takes_metric_options_as_json(labelled, installed_plugin):
    ds = labelled
    result = foo.execute_operator(f"{PLUGIN_NAME}/compute_quality", ctx={
        "dataset": ds, "view": ds.view(),
        "params": {"metric": "aligned", "field": "q_form", "device": "cpu",
                   "metric_options": '{"statistic": "neg_entropy"}'},
    })
    assert result.error is None, result.error
    assert dq.get_quality_run_info(ds, "q_form").config.metric_options["statistic"] == "neg_entropy"
    with pytest.raises(Exception, match="metric options must be a JSON object"):
        foo.execute_operator(f"{PLUGIN_NAME}/compute_quality", ctx={
            "dataset": ds, "view": ds.view(),
            "params": {"metric": "aligned", "field": "q_bad", "device": "cpu", "metric_options": "{tta: flip"},
        })
    assert not ds.has_sample_field("q_bad")


def test_cli_option_pairs_parse_json_values():
    from fiftyone_dnniqa.cli import _metric_options

    assert _metric_options(None, ["tta=flip", "temperature=2", "backbone=[\"a\", \"b\"]"]) == {
        "tta": "flip", "temperature": 2, "backbone": ["a", "b"]}
    assert _metric_options('{"tta": "flip"}', ["tta=multiscale"]) == {"tta": "multiscale"}
    assert _metric_options(None, None) is None
    with pytest.raises(ValueError, match="key=value"):
        _metric_options(None, ["tta"])
