"""The engine's pieces one by one: recording scores, scoring batches (bisection, out of
memory, labels, references, worker scores), writing them back, and progress."""


import numpy as np
import pytest
import torch

import fiftyone as fo
from fiftyone_dnniqa.metrics.base import InputSpec, QualityMetric
from fiftyone_dnniqa.scoring import scorers, writer
from fiftyone_dnniqa.scoring.scorers import Job


class Mean(QualityMetric):
    """Mean pixel value (of the image, or image minus reference), with planted failures."""

    name = "mean_test"
    input_spec = InputSpec(resize=8, crop=8)

    def __init__(self, fail_on=(), oom_above=None, needs_reference=False, uses_labels=False,
                 wrong_count=False):
        super().__init__()
        self.fail_on, self.oom_above, self.wrong_count = set(fail_on), oom_above, wrong_count
        self.needs_reference = needs_reference
        self.batches, self.labels_seen = [], []
        self._uses_labels = uses_labels

    @property
    def uses_sample_labels(self):
        return self._uses_labels

    def score(self, images, references=None, labels=None):
        if self.oom_above is not None and len(images) > self.oom_above:
            raise RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB")
        self.batches.append(len(images))
        self.labels_seen.append(labels)
        values = images.mean(dim=(1, 2, 3)).double() * 255
        if references is not None:
            values = values - references.mean(dim=(1, 2, 3)).double() * 255
        for v in values.tolist():
            if round(v) in self.fail_on:
                raise ValueError(f"cannot score {round(v)}\nsecond line")
        return values[:-1] if self.wrong_count and len(values) > 1 else values


class Rows(QualityMetric):
    """A structured metric: per image two family probabilities and a severity; the
    labels are the families at 0.5 or above, most likely first, else "none"."""

    name = "rows_test"
    outputs = "classifications"
    extra_fields = ("severity", "spread")
    input_spec = InputSpec(resize=8, crop=8)

    def __init__(self, rows_of=None):
        super().__init__()
        self.rows_of = rows_of  # planted wrong shapes: batch size -> shape

    def score(self, images, references=None):
        m = images.mean(dim=(1, 2, 3)).double()
        rows = torch.stack([m, 1 - m, 5 * m], dim=1)
        if self.rows_of is not None:
            return torch.zeros(self.rows_of(len(images)), dtype=torch.float64)
        return rows

    def labels(self, row):
        probs = dict(zip(("blur", "noise"), row[:2]))
        found = sorted(((k, p) for k, p in probs.items() if p >= 0.5), key=lambda t: -t[1])
        return found or [("none", 1 - max(row[:2]))], {"severity": row[2], "spread": abs(row[0] - row[1])}


def _item(index, value, ref=None, label=None):
    item = {"index": index, "images": [torch.full((3, 8, 8), value, dtype=torch.uint8)]}
    if ref is not None:
        item["references"] = [torch.full((3, 8, 8), ref, dtype=torch.uint8)]
    if label is not None:
        item["label"] = label
    return item


def _job(metric, n, **kw):
    return Job(metric=metric, field="q", spec_index=0, in_worker=kw.pop("in_worker", False),
               todo=np.ones(n, bool), **kw)


def _score(job, batch, max_batch=64, todo=None):
    ids = [f"s{i}" for i in range(len(batch))]
    todo = np.ones((len(batch), 1), bool) if todo is None else todo
    state = {"max_batch": max_batch}
    scorers.score_batch(job, 0, batch, ids, todo, torch.device("cpu"), True, state)
    return state


# ---------------------------------------------------------------------------
# Job.record
# ---------------------------------------------------------------------------


def test_record_scores_failures_and_non_finite_values():
    job = _job(Mean(), 4)
    job.record("a", 2, None)
    job.record("b", float("nan"), None)
    job.record("c", float("-inf"), None)
    job.record("d", 1.0, "unreadable")
    assert job.scores == {"a": 2.0, "b": None, "c": None, "d": None} and type(job.scores["a"]) is float
    assert job.errors == {"b": "metric returned nan", "c": "metric returned -inf", "d": "unreadable"}
    assert job.failures == job.errors and job.num_scored == 1
    assert job.error_field == "q_error"


def test_record_clears_an_earlier_failure_only_when_the_error_field_exists():
    job = _job(Mean(), 1)
    job.record("a", 1.0, None)
    assert job.errors == {}
    job.has_error_field = True
    job.record("a", 1.0, None)
    assert job.errors == {"a": None} and job.failures == {}


# ---------------------------------------------------------------------------
# score_batch
# ---------------------------------------------------------------------------


def test_score_batch_scores_what_is_to_do():
    metric = Mean()
    job = _job(metric, 3)
    todo = np.array([[True], [False], [True]])
    _score(job, [_item(0, 10), _item(1, 20), _item(2, 30)], todo=todo)
    assert job.scores == {"s0": pytest.approx(10.0), "s2": pytest.approx(30.0)} and metric.batches == [2]


def test_score_batch_records_load_and_reference_errors():
    metric = Mean(needs_reference=True)
    job = _job(metric, 4)
    batch = [_item(0, 10, ref=4), dict(_item(1, 10), error="cannot read image: broken"),
             dict(_item(2, 10), ref_error="reference missing: r.png"), _item(3, 10)]
    _score(job, batch)
    assert job.scores["s0"] == pytest.approx(6.0)
    assert job.errors == {"s1": "cannot read image: broken", "s2": "reference missing: r.png",
                          "s3": "no reference image"}


def test_score_batch_groups_images_by_size():
    metric = Mean()
    job = _job(metric, 3)
    big = {"index": 1, "images": [torch.full((3, 16, 16), 50, dtype=torch.uint8)]}
    _score(job, [_item(0, 10), big, _item(2, 30)])
    assert sorted(metric.batches) == [1, 2]
    assert job.scores == {"s0": pytest.approx(10.0), "s1": pytest.approx(50.0), "s2": pytest.approx(30.0)}


def test_score_batch_passes_labels_only_to_metrics_that_use_them():
    plain, labelled = Mean(), Mean(uses_labels=True)
    batch = [_item(0, 10, label="dog"), _item(1, 20)]
    _score(_job(plain, 2), batch)
    _score(_job(labelled, 2), batch)
    assert plain.labels_seen == [None] and labelled.labels_seen == [["dog", None]]


def test_a_failing_image_is_isolated_by_bisection():
    metric = Mean(fail_on={30})
    job = _job(metric, 5)
    _score(job, [_item(i, v) for i, v in enumerate([10, 20, 30, 40, 50])])
    assert job.scores == {"s0": pytest.approx(10.0), "s1": pytest.approx(20.0), "s2": None,
                          "s3": pytest.approx(40.0), "s4": pytest.approx(50.0)}
    assert job.errors == {"s2": "metric error: ValueError: cannot score 30"}
    # calls: all 5 fail -> [10 20] ok, [30 40 50] fails -> [30] fails alone, [40 50] ok
    assert metric.batches == [5, 2, 3, 1, 2]


def test_out_of_memory_halves_the_batch_and_keeps_it_halved():
    metric = Mean(oom_above=3)
    job = _job(metric, 7)
    state = _score(job, [_item(i, 10 * i) for i in range(7)], max_batch=8)
    assert state["max_batch"] == 3 and metric.batches == [3, 3, 1]  # 7 -> 3, and 3 from then on
    assert [job.scores[f"s{i}"] for i in range(7)] == pytest.approx([10.0 * i for i in range(7)])
    single = Mean(oom_above=0)  # out of memory on a single image: recorded, not retried
    job = _job(single, 1)
    _score(job, [_item(0, 10)])
    assert job.errors == {"s0": "metric error: RuntimeError: CUDA out of memory. Tried to allocate 2.00 GiB"}


def test_a_metric_returning_the_wrong_number_of_scores_fails_its_images():
    job = _job(Mean(wrong_count=True), 2)
    _score(job, [_item(0, 10), _item(1, 20)])
    # the pair fails with a count mismatch; alone, each image gets its one score
    assert job.scores == {"s0": pytest.approx(10.0), "s1": pytest.approx(20.0)}


def test_a_structured_metric_gets_one_row_of_floats_per_image():
    job = _job(Rows(), 4)  # four images of three values each: rows, not columns, are images
    _score(job, [_item(0, 51), _item(1, 102), _item(2, 255), _item(3, 0)])
    assert job.errors == {}
    for sid, v in (("s0", 0.2), ("s1", 0.4), ("s2", 1.0), ("s3", 0.0)):
        assert job.scores[sid] == pytest.approx([v, 1 - v, 5 * v])
        assert all(type(x) is float for x in job.scores[sid])
    job.record("s5", (0.5, float("nan"), 1), None)  # a row with a non-finite value fails its image
    assert job.scores["s5"] is None and job.errors["s5"] == "metric returned (0.5, nan, 1)"
    job.record("s4", torch.tensor([0.25, 0.5, 2.0]).tolist(), None)
    assert job.scores["s4"] == [0.25, 0.5, 2.0]


@pytest.mark.parametrize("shape", [lambda n: (n,), lambda n: (n, 3, 1), lambda n: (n + 1, 3)])
def test_a_structured_metric_returning_the_wrong_shape_fails_with_the_shape(shape):
    chunk = [_item(0, 1), _item(1, 2)]
    bad = shape(2)
    with pytest.raises(RuntimeError, match=rf"^rows_test returned values of shape \({', '.join(map(str, bad))},?\) "
                                           r"for 2 images \(expected one row per image\)$"):
        scorers._run_metric(Rows(rows_of=shape), chunk, 0, torch.device("cpu"), False)
    job = _job(Rows(rows_of=shape), 2)
    _score(job, chunk)  # bisected down to single images, which fail the same way
    assert job.scores == {"s0": None, "s1": None}
    assert job.errors["s0"].startswith("metric error: RuntimeError: rows_test returned values of shape ")


def test_worker_scorer_returns_a_structured_metric_row():
    job = _job(Rows(), 1, in_worker=True)
    out = scorers.WorkerScorer([job], np.ones((1, 1), bool), main_specs=set())(_item(0, 51))
    assert out["scores"][0] == pytest.approx([0.2, 0.8, 1.0]) and isinstance(out["scores"][0], list)


def test_run_metric_reports_a_count_mismatch():
    with pytest.raises(RuntimeError, match="^mean_test returned 1 scores for 2 images$"):
        scorers._run_metric(Mean(wrong_count=True), [_item(0, 1), _item(1, 2)], 0,
                            torch.device("cpu"), False)


def test_worker_scores_are_recorded_as_the_worker_left_them():
    job = _job(Mean(), 3, in_worker=True)
    batch = [dict(_item(0, 1), scores={0: 0.5}, metric_errors={}),
             dict(_item(1, 1), scores={}, metric_errors={0: "metric error: ValueError: bad"}),
             dict(_item(2, 1), error="cannot read image")]
    _score(job, batch)
    assert job.scores == {"s0": 0.5, "s1": None, "s2": None}
    assert job.errors == {"s1": "metric error: ValueError: bad", "s2": "cannot read image"}


# ---------------------------------------------------------------------------
# WorkerScorer
# ---------------------------------------------------------------------------


def test_worker_scorer_scores_its_metrics_and_drops_unneeded_pixels():
    jobs = [_job(Mean(), 2, in_worker=True), _job(Mean(fail_on={20}), 2, in_worker=True),
            _job(Mean(), 2)]
    jobs[2].spec_index = 1
    todo = np.array([[True, True, True], [False, True, True]])
    ws = scorers.WorkerScorer(jobs, todo, main_specs={1})
    item = {"index": 0, "images": [torch.full((3, 8, 8), 10, dtype=torch.uint8),
                                   torch.full((3, 8, 8), 99, dtype=torch.uint8)]}
    out = ws(item)
    assert out["scores"] == {0: pytest.approx(10.0), 1: pytest.approx(10.0)} and out["metric_errors"] == {}
    assert out["images"][0] is None and out["images"][1] is not None
    item = {"index": 1, "images": [torch.full((3, 8, 8), 20, dtype=torch.uint8), None]}
    out = ws(item)
    assert out["scores"] == {} and out["metric_errors"] == {1: "metric error: ValueError: cannot score 20"}


def test_worker_scorer_with_references():
    job = _job(Mean(needs_reference=True), 1, in_worker=True)
    ws = scorers.WorkerScorer([job], np.ones((2, 1), bool), main_specs=set())
    out = ws(_item(0, 30, ref=10))
    assert out["scores"] == {0: pytest.approx(20.0)} and out["references"] == [None]
    out = ws(_item(1, 30))  # no reference: left to the main process, which records why
    assert out["scores"] == {} and out["metric_errors"] == {}


def test_metric_error_and_is_oom():
    assert scorers.metric_error(ValueError("  first\nsecond")) == "metric error: ValueError: first"
    assert scorers.metric_error(KeyError()) == "metric error: KeyError"
    assert scorers.metric_error(ValueError("x" * 300)) == "metric error: ValueError: " + "x" * 200
    assert scorers.is_oom(RuntimeError("CUDA Out Of Memory")) and not scorers.is_oom(ValueError("nope"))
    assert scorers.is_oom(torch.cuda.OutOfMemoryError("allocation failed"))


# ---------------------------------------------------------------------------
# writer
# ---------------------------------------------------------------------------


@pytest.fixture
def three_samples():
    ds = fo.Dataset()
    ds.add_samples([fo.Sample(filepath=f"/nowhere/{i}.png") for i in range(3)], progress=False)
    yield ds, ds.values("id")
    ds.delete()


def test_flush_writes_scores_and_reasons_and_empties_the_job(three_samples):
    ds, ids = three_samples
    job = _job(Mean(), 3)
    job.record(ids[0], 1.5, None)
    job.record(ids[1], None, "cannot read image")
    writer.flush(ds, [job])
    assert ds.values("q") == [1.5, None, None] and ds.values("q_error") == [None, "cannot read image", None]
    assert job.scores == {} and job.errors == {} and job.has_error_field
    assert ds.get_field("q_error").__class__ is fo.StringField
    job.record(ids[1], 2.5, None)  # rescored: the old reason goes
    writer.flush(ds, [job])
    assert ds.values("q") == [1.5, 2.5, None] and ds.values("q_error") == [None, None, None]


def test_flush_without_failures_adds_no_error_field(three_samples):
    ds, ids = three_samples
    jobs = [_job(Mean(), 3), _job(Mean(), 3)]
    jobs[1].field = "r"
    jobs[0].record(ids[2], 3.0, None)
    writer.flush(ds, jobs)
    assert ds.values("q") == [None, None, 3.0] and not ds.has_field("q_error")
    assert not ds.has_field("r") and not jobs[0].has_error_field
    writer.flush(ds, jobs)  # nothing pending: nothing written
    assert ds.values("q") == [None, None, 3.0]


class LabelsOnly(QualityMetric):
    """A structured metric with labels and no extra values."""

    name = "labels_only_test"
    outputs = "classifications"
    input_spec = InputSpec(resize=8, crop=8)

    def score(self, images, references=None):
        raise AssertionError("not scored here")

    def labels(self, row):
        return [("blur", row[0])], {}


def _labels(ds, field):
    return [None if c is None else [(x.label, round(x.confidence, 6)) for x in c.classifications]
            for c in ds.values(field)]


def test_flush_writes_a_structured_metric_as_labels_and_extra_fields(three_samples):
    ds, ids = three_samples
    job = _job(Rows(), 3)
    job.record(ids[0], [0.9, 0.6, 4.0], None)
    job.record(ids[1], [0.1, 0.2, 0.5], None)
    job.record(ids[2], None, "cannot read image")
    writer.flush(ds, [job])
    assert _labels(ds, "q") == [[("blur", 0.9), ("noise", 0.6)], [("none", 0.8)], None]
    assert ds.values("q_severity") == [4.0, 0.5, None]
    spread = ds.values("q_spread")
    assert spread[:2] == pytest.approx([0.3, 0.1]) and spread[2] is None
    assert ds.values("q_error") == [None, None, "cannot read image"]
    assert isinstance(ds.get_field("q"), fo.EmbeddedDocumentField)
    assert ds.get_field("q").document_type is fo.Classifications
    assert all(isinstance(ds.get_field(f), fo.FloatField) for f in ("q_severity", "q_spread"))
    assert job.fields_ready and job.scores == {}
    job.record(ids[1], [0.3, 0.7, 2.0], None)  # rescored: only that sample changes
    writer.flush(ds, [job])
    assert _labels(ds, "q") == [[("blur", 0.9), ("noise", 0.6)], [("noise", 0.7)], None]
    assert ds.values("q_severity") == [4.0, 2.0, None]


def test_declare_fields_replaces_an_empty_float_field_and_refuses_float_scores(three_samples):
    ds, ids = three_samples
    ds.add_sample_field("q", fo.FloatField)  # declared before the metric was known, still empty
    job = _job(Rows(), 3)
    writer.declare_fields(ds, job)
    assert ds.get_field("q").document_type is fo.Classifications and job.fields_ready
    assert ds.has_field("q_severity") and ds.has_field("q_spread")
    other = _job(Rows(), 3)
    other.field = "r"
    ds.set_values("r", [1.0, None, 2.0])  # a field holding float scores
    with pytest.raises(ValueError, match=r"^field 'r' holds float scores; rows_test writes labels "
                                         r"\(Classifications\): choose another field$"):
        writer.declare_fields(ds, other)
    assert ds.values("r") == [1.0, None, 2.0] and not other.fields_ready  # nothing lost
    plain = _job(Mean(), 3)
    plain.field = "m"
    writer.declare_fields(ds, plain)
    assert isinstance(ds.get_field("m"), fo.FloatField) and not ds.has_field("m_severity")
    writer.declare_fields(ds, plain)  # already there: unchanged
    assert isinstance(ds.get_field("m"), fo.FloatField)


def test_a_structured_run_resumes_into_its_labels_and_skips_failed_rows(three_samples):
    ds, ids = three_samples
    job = _job(LabelsOnly(), 3)
    job.record(ids[0], [0.9], None)
    writer.flush(ds, [job])
    again = _job(LabelsOnly(), 3)  # a resumed run: the label field exists and holds labels
    writer.declare_fields(ds, again)
    again.record(ids[1], None, "cannot read image")  # a failed row first: the rest still written
    again.record(ids[2], [0.7], None)
    writer.flush(ds, [again])
    assert _labels(ds, "q") == [[("blur", 0.9)], None, [("blur", 0.7)]]
    assert [f for f in ds.get_field_schema() if f.startswith("q_")] == ["q_error"]  # no extra fields


def test_progress_callback_at_most_once_a_second(monkeypatch):
    clock = iter([1.0, 1.9, 2.0, 2.4, 2.5])  # exactly one second apart counts
    monkeypatch.setattr(writer.time, "monotonic", lambda: next(clock))
    calls = []
    p = writer.Progress(lambda f, label: calls.append((f, label)), total=5)
    for _ in range(5):
        p.update(1)
    assert calls == [(0.2, "scored 1 of 5 images"), (0.6, "scored 3 of 5 images"),
                     (1.0, "scored 5 of 5 images")]
    p.close()


def test_progress_bar_follows_the_setting(monkeypatch):
    made = []

    class Bar:
        def __init__(self, total):
            made.append(self)
            self.total, self.done, self.state = total, 0, "new"

        def start(self):
            self.state = "started"

        def update(self, k):
            self.done += k

        def close(self):
            self.state = "closed"

    monkeypatch.setattr(writer.fou, "ProgressBar", Bar)
    p = writer.Progress(True, total=4)
    p.update(3)
    p.close()
    assert (made[0].total, made[0].done, made[0].state) == (4, 3, "closed")
    assert writer.Progress(False, total=4).bar is None and writer.Progress(True, total=0).bar is None
    monkeypatch.setattr(fo.config, "show_progress_bars", True)
    assert writer.Progress(None, total=2).bar is made[-1] and len(made) == 2
    monkeypatch.setattr(fo.config, "show_progress_bars", False)
    assert writer.Progress(None, total=2).bar is None
    empty = writer.Progress(lambda f, label: None, total=0)
    assert empty.total == 1 and empty.bar is None


# ---------------------------------------------------------------------------
# The CUDA-only decisions, checked on the CPU (everything but the device itself)
# ---------------------------------------------------------------------------


class Amp(Mean):
    supports_amp = True


@pytest.mark.parametrize("bf16", [True, False])
def test_autocast_on_cuda_only_when_asked_and_supported(monkeypatch, bf16):
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: bf16)
    cuda, cpu = torch.device("cuda"), torch.device("cpu")
    with pytest.warns(UserWarning, match="CUDA is not available"):  # built here, never entered
        ctx = scorers.autocast(Amp(), cuda, True)
    assert isinstance(ctx, torch.autocast) and ctx.device == "cuda"
    assert ctx.fast_dtype == (torch.bfloat16 if bf16 else torch.float16)
    for metric, dev, amp in ((Amp(), cpu, True), (Amp(), cuda, False), (Mean(), cuda, True)):
        assert not isinstance(scorers.autocast(metric, dev, amp), torch.autocast)


def test_amp_reaches_every_call_including_bisection(monkeypatch):
    seen = []
    real = scorers.autocast
    monkeypatch.setattr(scorers, "autocast", lambda m, dev, amp: seen.append((m, amp)) or real(m, dev, amp))
    metric = Mean(fail_on={20})
    job = _job(metric, 3)
    scorers.score_batch(job, 0, [_item(0, 10), _item(1, 20), _item(2, 30)], ["a", "b", "c"],
                        np.ones((3, 1), bool), torch.device("cpu"), "amp-flag", {"max_batch": 8})
    assert len(seen) >= 4 and set(seen) == {(metric, "amp-flag")}


class DeviceSeen(Mean):
    """Records where its inputs were put; answers on the CPU."""

    def score(self, images, references=None, labels=None):
        self.devices = (images.device, None if references is None else references.device)
        return torch.zeros(len(images), dtype=torch.float64)


def test_images_and_references_are_moved_to_the_scoring_device():
    metric = DeviceSeen(needs_reference=True)
    out = scorers._run_metric(metric, [_item(0, 10, ref=5)], 0, torch.device("meta"), True)
    assert metric.devices == (torch.device("meta"), torch.device("meta")) and out.tolist() == [0.0]


def test_out_of_memory_on_cuda_empties_the_cache_and_says_so(monkeypatch, caplog):
    emptied = []
    monkeypatch.setattr(torch.cuda, "empty_cache", lambda: emptied.append(1))

    def run(metric, chunk, k, dev, amp):
        if len(chunk) > 1:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory")
        return torch.tensor([float(chunk[0]["index"])], dtype=torch.float64)

    monkeypatch.setattr(scorers, "_run_metric", run)
    for dev, expected in ((torch.device("cuda"), 1), (torch.device("cpu"), 0)):  # 3 -> 1 at once
        emptied.clear()
        job, state = _job(Mean(), 3), {"max_batch": 3}
        with caplog.at_level("WARNING", logger="fiftyone_dnniqa.scoring.scorers"):
            scorers._score_group(job, [_item(i, 1) for i in range(3)], ["a", "b", "c"], dev, True, state)
        assert len(emptied) == expected and state["max_batch"] == 1
        assert job.scores == {"a": 0.0, "b": 1.0, "c": 2.0}
    assert [r.getMessage() for r in caplog.records] == ["out of memory: batch size lowered to 1"] * 2


@pytest.mark.parametrize("n, oom_above", [(2, 1), (3, 1)])
def test_out_of_memory_down_to_one_image(n, oom_above):
    metric = Mean(oom_above=oom_above)
    job = _job(metric, n)
    state = _score(job, [_item(i, 10 + i) for i in range(n)], max_batch=n)
    assert state["max_batch"] == 1 and metric.batches == [1] * n and job.errors == {}


def test_failures_in_later_chunks_are_isolated_and_the_rest_scored():
    metric = Mean(fail_on={30, 70})
    job = _job(metric, 9)
    _score(job, [_item(i, 10 * (i + 1)) for i in range(9)], max_batch=2)
    assert [k for k, v in job.scores.items() if v is None] == ["s2", "s6"]
    assert sorted(job.scores) == [f"s{i}" for i in range(9)]


def test_worker_scorer_labels_colours_and_a_skipped_reference():
    labelled = Mean(uses_labels=True)
    jobs = [_job(Mean(needs_reference=True), 1, in_worker=True), _job(labelled, 1, in_worker=True)]
    ws = scorers.WorkerScorer(jobs, np.ones((1, 2), bool), main_specs=set())
    img = torch.stack([torch.full((8, 8), v, dtype=torch.uint8) for v in (10, 20, 60)])  # R, G, B
    out = ws({"index": 0, "images": [img], "label": "goldfish"})
    # the first metric waits for its missing reference; the second still scores, with its label
    assert out["scores"] == {1: pytest.approx(30.0)} and labelled.labels_seen == [["goldfish"]]
    ref_job = _job(Mean(needs_reference=True), 1, in_worker=True)
    ws = scorers.WorkerScorer([ref_job], np.ones((1, 1), bool), main_specs={0})
    ref = torch.stack([torch.full((8, 8), v, dtype=torch.uint8) for v in (0, 0, 30)])
    out = ws({"index": 0, "images": [img], "references": [ref]})
    assert out["scores"] == {0: pytest.approx(20.0)} and out["images"][0] is img


def test_scores_are_counted_and_labelled_metrics_get_their_references():
    metric = Mean(needs_reference=True, uses_labels=True)
    job = _job(metric, 2)
    _score(job, [_item(0, 30, ref=10, label="dog"), _item(1, 50, ref=20, label="cat")])
    assert job.scores == {"s0": pytest.approx(20.0), "s1": pytest.approx(30.0)}
    assert job.num_scored == 2 and metric.labels_seen == [["dog", "cat"]]
