"""Issue 17, item 2: a field that cannot hold scores is refused before scoring, and a run
that ends in an exception says ``failed``, with its reason, instead of ``running`` forever.

Every refusal is checked on a real dataset against a snapshot of it (the samples as
dicts, the schema, the run keys): a refused call writes nothing. Every failure is checked
on the run record as ``load_quality_run`` reads it back from the database.
"""

import logging
import re

import pytest
from mongoengine.errors import ValidationError

import fiftyone as fo
import fiftyone.operators as foo

import fiftyone_dnniqa as dq
from fiftyone_dnniqa.app.plugin import PLUGIN_NAME
from fiftyone_dnniqa.cli import main
from fiftyone_dnniqa.core.images import InputSpec
from fiftyone_dnniqa.metrics.base import QualityMetric
from fiftyone_dnniqa.scoring import (QualityRunResults, build_run_config, execute, execute_plan,
                                     field_problem, list_quality_run_statuses, plan_quality)

from test_engine import _gray_files
from test_scoring_units import Rows

NOT_OURS = ("field '{}' already exists and was not written by compute_quality; "
            "pass overwrite=True to replace its values or choose another field")


class Mean(QualityMetric):
    """Mean pixel value in 0..255; ``hook(metric)`` runs before each batch is scored."""

    name = "mean_probe"
    input_spec = InputSpec(resize=8, crop=8)

    def __init__(self, hook=None):
        super().__init__()
        self.hook = hook
        self.batches = []

    def score(self, images, references=None, labels=None):
        self.batches.append(len(images))
        if self.hook is not None:
            self.hook(self)
        return images.mean(dim=(1, 2, 3)).double() * 255


class Abort(BaseException):
    """What no scorer isolates: it ends the run (as a device loss or a signal handler might)."""


def _dataset(make_dataset, tmp_path, n=4, **fields):
    return make_dataset(_gray_files(tmp_path, [10 * (i + 1) for i in range(n)], size=(12, 10)), **fields)


def _score(samples, metric=None, field="q", **kw):
    kw.setdefault("num_workers", 0)
    kw.setdefault("decode", "workers")
    return dq.compute_quality(samples, metric or Mean(), field=field, device="cpu", **kw)


def _snapshot(ds):
    """Everything a refused call could have changed: samples, schema, runs."""
    ds.reload()
    samples = sorted((s.to_dict() for s in ds.iter_samples()), key=lambda d: d["filepath"])
    schema = {k: (str(v), v.read_only) for k, v in ds.get_field_schema().items()}
    return samples, schema, sorted(ds.list_runs())


def _labels(ds):
    ds.add_sample_field("ground_truth", fo.EmbeddedDocumentField, embedded_doc_type=fo.Classification)
    ds.set_values("ground_truth", [fo.Classification(label=f"c{i % 2}") for i in range(len(ds))])


def _fail_second_batch(monkeypatch, exc):
    real, calls = execute.score_batch, []

    def score_batch(*args):
        calls.append(1)
        if len(calls) == 2:
            raise exc
        return real(*args)

    monkeypatch.setattr(execute, "score_batch", score_batch)


# ---------------------------------------------------------------------------
# the issue: scoring into a Classification field with overwrite
# ---------------------------------------------------------------------------


def test_the_issue_a_classification_field_is_refused_before_scoring(tmp_path, make_dataset):
    ds = _dataset(make_dataset, tmp_path)
    _labels(ds)
    before = _snapshot(ds)
    m = Mean()
    with pytest.raises(ValueError) as e:
        _score(ds, m, field="ground_truth", overwrite=True)
    assert str(e.value) == ("field 'ground_truth' is a Classification label field, which cannot hold "
                            "quality scores (floats); choose another field (overwrite never replaces labels)")
    assert m.batches == []  # nothing was scored
    assert _snapshot(ds) == before  # no record, no field, labels intact
    assert dq.list_quality_runs(ds) == [] and list_quality_run_statuses(ds) == {}
    assert ds.values("ground_truth.label") == ["c0", "c1", "c0", "c1"]


def test_the_issue_is_refused_by_the_cli_and_the_operator_too(tmp_path, make_dataset, installed_plugin,
                                                              capsys):
    ds = _dataset(make_dataset, tmp_path)
    _labels(ds)
    before = _snapshot(ds)
    with pytest.raises(SystemExit) as e:
        main(["score", "--dataset", ds.name, "--metric", "entropy", "--field", "ground_truth",
              "--overwrite", "--num-workers", "0", "--device", "cpu", "--quiet"])
    assert "field 'ground_truth' is a Classification label field" in str(e.value.code)
    with pytest.raises(Exception, match="field 'ground_truth' is a Classification label field"):
        foo.execute_operator(f"{PLUGIN_NAME}/compute_quality", ctx={
            "dataset": ds, "view": ds.view(),
            "params": {"metric": "entropy", "field": "ground_truth", "overwrite": True, "device": "cpu",
                       "num_workers": 0}})
    assert _snapshot(ds) == before


def test_a_field_that_changed_type_after_planning_is_refused_before_any_record(tmp_path, make_dataset):
    ds = _dataset(make_dataset, tmp_path)
    plan = plan_quality(ds, Mean(), field="q", device="cpu", num_workers=0, overwrite=True)
    _labels(ds)  # e.g. a queued run, executed later
    ds.rename_sample_field("ground_truth", "q")
    before = _snapshot(ds)
    with pytest.raises(ValueError, match="field 'q' is a Classification label field"):
        execute_plan(plan)
    assert plan.metrics[0].batches == []
    assert _snapshot(ds) == before


def test_a_field_a_user_filled_after_planning_is_kept_unless_the_plan_overwrites(tmp_path, make_dataset):
    """A queued run checks its field again when it starts: values a user wrote into it
    since are kept (and nothing scored) without overwrite, replaced with it."""
    ds = _dataset(make_dataset, tmp_path)
    plan = plan_quality(ds, Mean(), field="q", device="cpu", num_workers=0)
    ds.set_values("q", [-1.0, -2.0, -3.0, -4.0])  # the user's own floats, after planning
    before = _snapshot(ds)
    with pytest.raises(ValueError, match="^" + re.escape(NOT_OURS.format("q"))):
        execute_plan(plan)
    assert plan.metrics[0].batches == [] and _snapshot(ds) == before
    plan = plan_quality(ds, Mean(), field="q", device="cpu", num_workers=0, overwrite=True)
    execute_plan(plan)
    assert ds.values("q") == pytest.approx([10, 20, 30, 40], abs=1e-3)


def test_a_float_field_filled_after_planning_refuses_a_queued_label_run(tmp_path, make_dataset):
    """A structured metric writes labels: floats that appeared in its field after planning
    refuse it even with overwrite=True (which never turns scores into labels)."""
    ds = _dataset(make_dataset, tmp_path)
    plan = plan_quality(ds, Rows(), field="why", device="cpu", num_workers=0, overwrite=True)
    ds.set_values("why", [0.5] * len(ds))
    before = _snapshot(ds)
    with pytest.raises(ValueError, match="^field 'why' holds float scores; rows_test writes labels"):
        execute_plan(plan)
    assert _snapshot(ds) == before


# ---------------------------------------------------------------------------
# every kind of field that cannot hold scores
# ---------------------------------------------------------------------------


def _add(ds, name, ftype, read_only=False, **kw):
    ds.add_sample_field(name, ftype, read_only=read_only, **kw)


TYPE = "field '{}' is {}, which cannot hold quality scores (floats); choose another field"
LABEL = TYPE + " (overwrite never replaces labels)"
DEFAULT = "field '{}' is a default field of every sample ({}); choose another field"
ERROR_TYPE = "field 'q_error' is {}, which cannot hold quality failure reasons (strings); choose another field"
FOR_ERRORS = " (where the run on 'q' records why samples could not be scored)"

REFUSED = [
    # (field to score, how to make it, overwrite, the message)
    ("dets", lambda ds: _add(ds, "dets", fo.EmbeddedDocumentField, embedded_doc_type=fo.Detections), True,
     LABEL.format("dets", "a Detections label field")),
    ("note", lambda ds: ds.set_values("note", ["a", "b", "c", "d"]), True, TYPE.format("note", "a StringField")),
    ("flag", lambda ds: _add(ds, "flag", fo.BooleanField), True, TYPE.format("flag", "a BooleanField")),
    ("count", lambda ds: ds.set_values("count", [1, 2, 3, 4]), True, TYPE.format("count", "an IntField")),
    ("vals", lambda ds: _add(ds, "vals", fo.ListField, subfield=fo.FloatField), True,
     TYPE.format("vals", "a ListField of FloatField")),
    ("info", lambda ds: _add(ds, "info", fo.DictField), True, TYPE.format("info", "a DictField")),
    ("frozen", lambda ds: _add(ds, "frozen", fo.FloatField, read_only=True), True,
     "field 'frozen' is read-only (a FloatField); choose another field"),
    ("filepath", None, True, DEFAULT.format("filepath", "a StringField")),
    ("id", None, True, DEFAULT.format("id", "an ObjectIdField")),
    ("tags", None, True, DEFAULT.format("tags", "a ListField of StringField")),
    ("metadata", None, True, DEFAULT.format("metadata", "an embedded ImageMetadata field")),
    ("created_at", None, True, DEFAULT.format("created_at", "a DateTimeField")),
    ("mine", lambda ds: ds.set_values("mine", [1.0, 2.0, 3.0, 4.0]), False, NOT_OURS.format("mine")),
    # the <field>_error companion, where failure reasons go
    ("q", lambda ds: _add(ds, "q_error", fo.EmbeddedDocumentField, embedded_doc_type=fo.Classification), True,
     ERROR_TYPE.format("a Classification label field") + " (overwrite never replaces labels)" + FOR_ERRORS),
    ("q", lambda ds: ds.set_values("q_error", [1.5, 2.5, 3.5, 4.5]), True,
     ERROR_TYPE.format("a FloatField") + FOR_ERRORS),
    ("q", lambda ds: _add(ds, "q_error", fo.StringField, read_only=True), True,
     "field 'q_error' is read-only (a StringField); choose another field" + FOR_ERRORS),
    ("q", lambda ds: ds.set_values("q_error", ["mine", None, None, None]), False,
     NOT_OURS.format("q_error") + FOR_ERRORS),
]


@pytest.mark.parametrize("field, make, overwrite, message", REFUSED,
                         ids=[f"{r[0]}-{i}" for i, r in enumerate(REFUSED)])
def test_a_field_that_cannot_hold_scores_is_refused_and_nothing_is_written(
        tmp_path, make_dataset, field, make, overwrite, message):
    ds = _dataset(make_dataset, tmp_path)
    if make is not None:
        make(ds)
    before = _snapshot(ds)
    m = Mean()
    with pytest.raises(ValueError) as e:
        _score(ds, m, field=field, overwrite=overwrite)
    assert str(e.value) == message
    assert field_problem(ds, field, overwrite) == message
    assert m.batches == []
    assert _snapshot(ds) == before


def test_the_group_field_is_a_default_field(tmp_path, make_dataset):
    ds = make_dataset()
    ds.add_group_field("group", default="left")
    f = _gray_files(tmp_path, [10], size=(12, 10))[0]
    g = fo.Group()
    ds.add_samples([fo.Sample(filepath=f, group=g.element("left"))], progress=False)
    assert field_problem(ds, "group", True) == (
        "field 'group' is a default field of every sample (an embedded Group field); choose another field")


# ---------------------------------------------------------------------------
# field_problem, for forms
# ---------------------------------------------------------------------------


def test_field_problem_says_none_where_a_run_can_write(tmp_path, make_dataset):
    ds = _dataset(make_dataset, tmp_path)
    assert field_problem(ds, "q", False) is None  # absent
    assert field_problem(ds.limit(2), "q", True) is None  # a view asks about its dataset
    _score(ds, field="q")
    _score(ds, field="r")  # a run whose images all score: no error field
    assert ds.has_sample_field("q") and not ds.has_sample_field("q_error")
    ds.add_sample_field("q_error", fo.StringField)  # as a run with failures leaves it
    for overwrite in (False, True):
        assert field_problem(ds, "q", overwrite) is None  # our own run: resumed or rescored
    ds.set_values("user_float", [1.0, 2.0, 3.0, 4.0])
    assert field_problem(ds, "user_float", True) is None  # replaced on purpose
    assert field_problem(ds, "user_float", False) == NOT_OURS.format("user_float")


def test_field_problem_checks_the_name_too(tmp_path, make_dataset):
    ds = _dataset(make_dataset, tmp_path, n=1)
    for bad in ("2q", "_q", "a.b", "", "a b"):
        assert field_problem(ds, bad, True) == f"field name '{bad}' must be a valid identifier not starting with '_'"


def test_field_problem_reports_the_key_of_another_run(tmp_path, make_dataset):
    ds = _dataset(make_dataset, tmp_path, n=1)
    _score(ds, field="q_error")  # a quality run whose field is where 'q' would record failures
    message = ("'q_error' is the key of another quality run on this dataset; choose another field (where the "
               "run on 'q' records why samples could not be scored)")
    assert field_problem(ds, "q", True) == message
    ds.delete_sample_field("q_error")  # the record stays
    assert field_problem(ds, "q", True) == message
    before = _snapshot(ds)
    with pytest.raises(ValueError, match="'q_error' is the key of another quality run"):
        _score(ds, field="q", overwrite=True)
    assert _snapshot(ds) == before


def test_another_metric_in_our_field_still_needs_overwrite(tmp_path, make_dataset):
    ds = _dataset(make_dataset, tmp_path, n=2)
    _score(ds, field="q")

    class Other(Mean):
        name = "other_probe"

    before = _snapshot(ds)
    with pytest.raises(ValueError, match="holds scores of metric 'mean_probe'"):
        _score(ds, Other(), field="q")
    assert _snapshot(ds) == before
    assert _score(ds, Other(), field="q", overwrite=True).status == "completed"


# ---------------------------------------------------------------------------
# a run that ends in an exception is recorded as failed, and the exception propagates
# ---------------------------------------------------------------------------


def test_a_metric_that_raises_mid_run_fails_the_run_with_its_reason(tmp_path, make_dataset):
    ds = _dataset(make_dataset, tmp_path)

    def hook(m):
        if len(m.batches) == 2:
            raise Abort("device lost")

    with pytest.raises(Abort, match="device lost"):
        _score(ds, Mean(hook=hook), batch_size=2)
    r = dq.load_quality_run(ds, "q")
    assert (r.status, r.error) == ("failed", "Abort: device lost")
    assert r.finished_at is not None and r.num_scored == 2
    assert ds.values("q") == pytest.approx([10, 20, None, None])  # the first batch was kept
    assert list_quality_run_statuses(ds) == {"q": {"status": "failed", "error": "Abort: device lost",
                                                   "metric": "mean_probe"}}


def test_a_sample_failure_with_skip_failures_false_fails_the_run(tmp_path, make_dataset):
    ds = make_dataset(_gray_files(tmp_path, [10, 20], size=(12, 10)) + [str(tmp_path / "gone.png")])
    bad = ds.values("id")[2]
    with pytest.raises(RuntimeError) as e:
        _score(ds, skip_failures=False)
    r = dq.load_quality_run(ds, "q")
    assert r.status == "failed" and r.error == f"RuntimeError: {e.value}"
    assert str(e.value) == f"could not score sample {bad} (q): missing file"


def test_a_failure_on_write_back_fails_the_run_and_keeps_the_labels(tmp_path, make_dataset, monkeypatch, caplog):
    ds = _dataset(make_dataset, tmp_path)
    _labels(ds)
    real = fo.Dataset.set_values

    def set_values(self, field, *args, **kw):
        if field == "q":
            raise ValidationError("Expected Classification; found float")
        return real(self, field, *args, **kw)

    monkeypatch.setattr(fo.Dataset, "set_values", set_values)
    with caplog.at_level(logging.ERROR, logger=execute.__name__), pytest.raises(
            ValidationError, match="Expected Classification; found float"):
        _score(ds, batch_size=2, write_every=2)
    monkeypatch.undo()
    r = dq.load_quality_run(ds, "q")
    assert (r.status, r.error) == ("failed", "ValidationError: Expected Classification; found float")
    assert r.finished_at is not None
    assert ds.values("q") == [None] * 4 and ds.values("ground_truth.label") == ["c0", "c1", "c0", "c1"]
    # the scores it could not write were tried once more, and that is logged, not raised
    assert [x.getMessage() for x in caplog.records if x.name == execute.__name__] == [
        "could not save the last scores of 'q'"]


def test_a_failure_before_the_first_batch_fails_every_registered_run(tmp_path, make_dataset, monkeypatch):
    ds = _dataset(make_dataset, tmp_path)

    def broken_loader(*args):
        raise OSError("no shared memory")

    monkeypatch.setattr(execute, "_loader", broken_loader)
    with pytest.raises(OSError, match="no shared memory"):
        _score(ds, [Mean(), Mean()], field=["a", "b"])
    for f in ("a", "b"):
        r = dq.load_quality_run(ds, f)
        assert (r.status, r.error, r.num_scored) == ("failed", "OSError: no shared memory", 0)


def test_a_failure_while_registering_fails_the_runs_already_registered(tmp_path, make_dataset, monkeypatch):
    ds = _dataset(make_dataset, tmp_path)
    real = fo.Dataset.add_sample_field

    def add_sample_field(self, path, *args, **kw):
        if path == "b":
            raise RuntimeError("schema locked")
        return real(self, path, *args, **kw)

    monkeypatch.setattr(fo.Dataset, "add_sample_field", add_sample_field)
    with pytest.raises(RuntimeError, match="schema locked"):
        _score(ds, [Mean(), Mean()], field=["a", "b"])
    monkeypatch.undo()
    assert list_quality_run_statuses(ds) == {
        f: {"status": "failed", "error": "RuntimeError: schema locked", "metric": "mean_probe"} for f in "ab"}


def test_a_failed_run_is_listed_shown_and_deletable_and_a_rerun_completes_it(tmp_path, make_dataset,
                                                                             monkeypatch, capsys):
    ds = _dataset(make_dataset, tmp_path)
    _fail_second_batch(monkeypatch, OSError("disk on fire"))
    with pytest.raises(OSError):
        _score(ds, batch_size=2)
    monkeypatch.undo()
    assert list_quality_run_statuses(ds)["q"]["status"] == "failed"
    main(["runs", "--dataset", ds.name])
    assert capsys.readouterr().out.startswith("q: failed (OSError: disk on fire), 2 scored")
    # a rerun (with overwrite, as after a failure into the same field) completes the record
    res = _score(ds, overwrite=True)
    assert (res.status, res.error, res.num_scored) == ("completed", None, 4)
    r = dq.load_quality_run(ds, "q")
    assert (r.status, r.error) == ("completed", None)
    assert list_quality_run_statuses(ds) == {"q": {"status": "completed", "error": None, "metric": "mean_probe"}}
    # and a failed run is deleted like any other, with its field
    _fail_second_batch(monkeypatch, OSError("disk on fire"))
    with pytest.raises(OSError):
        _score(ds, field="r", batch_size=2)
    assert list_quality_run_statuses(ds)["r"]["status"] == "failed"
    dq.delete_quality_run(ds, "r")
    assert dq.list_quality_runs(ds) == ["q"] and not ds.has_sample_field("r")


def test_a_resumed_rerun_without_overwrite_completes_the_failed_run(tmp_path, make_dataset, monkeypatch):
    ds = _dataset(make_dataset, tmp_path)
    _fail_second_batch(monkeypatch, OSError("disk on fire"))
    with pytest.raises(OSError):
        _score(ds, batch_size=2)
    monkeypatch.undo()
    res = _score(ds)
    assert (res.status, res.error, res.num_todo) == ("completed", None, 2)
    assert dq.load_quality_run(ds, "q").status == "completed" and ds.count("q") == 4


def test_a_stale_record_on_a_label_field_never_deletes_the_labels(tmp_path, make_dataset):
    """A record left by a run that failed on a label field before fields were checked: it
    is listed (still 'running'), a new run there is refused, and deleting it keeps the labels."""
    ds = _dataset(make_dataset, tmp_path)
    _labels(ds)
    config = build_run_config(Mean(), "ground_truth", overwrite=True)
    ds.register_run("ground_truth", config, overwrite=True, cleanup=False)
    ds.save_run_results("ground_truth", QualityRunResults(ds, config, "ground_truth"), overwrite=True)
    assert list_quality_run_statuses(ds)["ground_truth"]["status"] == "running"
    assert field_problem(ds, "ground_truth", True).startswith(
        "field 'ground_truth' is a Classification label field")
    dq.delete_quality_run(ds, "ground_truth")
    assert dq.list_quality_runs(ds) == []
    assert ds.values("ground_truth.label") == ["c0", "c1", "c0", "c1"]


def test_a_broken_record_is_listed_as_unreadable(tmp_path, make_dataset, monkeypatch):
    ds = _dataset(make_dataset, tmp_path, n=1)
    _score(ds, field="q")
    _score(ds, field="r")
    real = fo.Dataset.load_run_results

    def load(self, key, **kw):
        if key == "q":
            raise KeyError("results")
        return real(self, key, **kw)

    monkeypatch.setattr(fo.Dataset, "load_run_results", load)
    got = list_quality_run_statuses(ds)
    assert got["q"] == {"status": "unreadable", "error": "KeyError: 'results'", "metric": None}
    assert got["r"]["status"] == "completed"


def test_queuing_shards_that_fails_marks_the_runs_failed(tmp_path, make_dataset, monkeypatch,
                                                         installed_plugin):
    from fiftyone_dnniqa.app import sharding

    ds = _dataset(make_dataset, tmp_path)
    ds.persistent = True

    def refuse(*args, **kw):
        raise RuntimeError("delegated operations are disabled")

    monkeypatch.setattr(sharding.foo, "execute_operator", refuse)
    with pytest.raises(RuntimeError, match="disabled"):
        dq.compute_quality(ds, "entropy", field="q", device="cpu", shards=2)
    r = dq.load_quality_run(ds, "q")
    assert (r.status, r.error) == ("failed", "RuntimeError: delegated operations are disabled")

