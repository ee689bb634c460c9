"""The engine, ``scoring/execute.py``, end to end on tiny gray images with a transparent metric.

Every expectation is computed by hand: a gray PNG of value ``v`` scores exactly ``v``
with :class:`Probe`. Decisions the engine makes (workers, raw JPEG decoding, batch sizes,
write-back chunks) are observed through monkeypatched module attributes of ``execute``:
the DataLoader it builds, the decoder and scorer it calls, its clock and its ``os``.
"""

import concurrent.futures
import datetime
import logging
import os
import time
import types

import pytest
import torch
from PIL import Image

import fiftyone as fo
import fiftyone_dnniqa as dq
from fiftyone_dnniqa.core.images import InputSpec
from fiftyone_dnniqa.metrics.base import QualityMetric
from fiftyone_dnniqa.scoring import execute, execute_plan, plan_quality, writer
from fiftyone_dnniqa.scoring.loading import collate_items
from fiftyone_dnniqa.scoring.locks import FieldBusyError, FieldLock
from fiftyone_dnniqa.scoring.runs import QualityRunResults, build_run_config
from fiftyone_dnniqa.scoring.shards import ShardStore, shard_specs

from test_engine import _gray_files

CPU = torch.device("cpu")
VIDEO_REASON = "video sample: quality metrics score images"


class Probe(QualityMetric):
    """Mean pixel value in 0..255 (minus the reference's); records what it was given."""

    name = "probe"
    input_spec = InputSpec(resize=8, crop=8)

    def __init__(self, spec=None, per_image=False, hook=None, needs_reference=False):
        super().__init__()
        if spec is not None:
            self.input_spec = spec
        self.cpu_per_image = per_image
        self.needs_reference = needs_reference
        self.hook = hook
        self.batches, self.shapes = [], []

    def score(self, images, references=None, labels=None):
        self.batches.append(len(images))
        self.shapes.append(tuple(images.shape[-2:]))
        if self.hook is not None:
            self.hook(self)
        out = images.mean(dim=(1, 2, 3)).double() * 255
        if references is not None:
            out = out - references.mean(dim=(1, 2, 3)).double() * 255
        return out


class OtherProbe(Probe):
    name = "other_probe"


class PidProbe(Probe):
    """Scores every image with the id of the process that scored it."""

    name = "pid_probe"

    def score(self, images, references=None, labels=None):
        return torch.full((len(images),), float(os.getpid()), dtype=torch.float64)


class LabelProbe(Probe):
    """Rates each image against its own label: 1000 x the label's class index + the mean."""

    name = "label_probe"
    needs_labels = True
    uses_sample_labels = True

    def set_classes(self, classes):
        self.classes = list(classes)

    def score(self, images, references=None, labels=None):
        base = super().score(images, references)
        return base + 1000 * torch.tensor([self.classes.index(x) for x in labels], dtype=torch.float64)


class ClassesProbe(LabelProbe):
    """Task-guided (reads the classes) but never a sample's own label."""

    name = "classes_probe"
    uses_sample_labels = False

    def score(self, images, references=None, labels=None):
        assert labels is None
        return Probe.score(self, images, references)


def _gray(tmp_path, values, prefix="g"):
    """Small uniform gray PNGs (12 x 10), one per value."""
    return _gray_files(tmp_path, values, prefix=prefix, size=(12, 10))


def _plan(samples, metric, field="q", **kw):
    kw.setdefault("num_workers", 0)
    kw.setdefault("decode", "workers")
    return plan_quality(samples, metric, field=field, device="cpu", **kw)


def _run(samples, metric, field="q", shard=None, **kw):
    return execute_plan(_plan(samples, metric, field=field, **kw), shard=shard)


def _utc(text):
    t = datetime.datetime.fromisoformat(text)
    assert t.utcoffset() == datetime.timedelta(0)
    return t


@pytest.fixture
def loader_spy(monkeypatch):
    """Records the DataLoader arguments; loads in this process, unpinned (same items)."""
    calls = []
    real = torch.utils.data.DataLoader

    def spy(data, **kw):
        calls.append(dict(kw, dataset=data))
        kw.update(num_workers=0, prefetch_factor=None, persistent_workers=False, pin_memory=False)
        return real(data, **kw)

    monkeypatch.setattr(torch.utils.data, "DataLoader", spy)
    return calls


@pytest.fixture
def decode_spy(monkeypatch):
    calls = []
    real = execute.decode_jpegs

    def spy(items, specs, device, max_pixels):
        calls.append((len(items), list(specs), device, max_pixels))
        return real(items, specs, CPU, max_pixels)

    monkeypatch.setattr(execute, "decode_jpegs", spy)
    return calls


@pytest.fixture
def cores(monkeypatch):
    """Sets what ``os.cpu_count()`` says inside the engine."""
    def set_count(n):
        monkeypatch.setattr(execute, "os", types.SimpleNamespace(cpu_count=lambda: n))
    return set_count


def _fake_cuda(monkeypatch, plan):
    """Runs ``plan`` as if on CUDA: the engine decides for CUDA, the work runs on the CPU."""
    plan.device = torch.device("cuda")
    seen = []
    real = execute.score_batch

    def score_batch(job, j, batch, ids, todo, dev, amp, state):
        seen.append((dev, amp))
        return real(job, j, batch, ids, todo, CPU, amp, state)

    monkeypatch.setattr(execute, "score_batch", score_batch)
    return seen


# ---------------------------------------------------------------------------
# scores, failures and the run record
# ---------------------------------------------------------------------------


def test_scores_land_and_the_run_record_completes(tmp_path, make_dataset, monkeypatch):
    (tmp_path / "text.png").write_text("hello")
    files = _gray(tmp_path, [10, 20, 30, 40, 50]) + [str(tmp_path / "gone.png"), str(tmp_path / "text.png")]
    ds = make_dataset(files)
    ids = ds.values("id")
    during = []
    m = Probe(hook=lambda m: during.append(dq.load_quality_run(ds, "q")))
    registered = []
    real = fo.core.collections.SampleCollection.register_run

    def register_run(self, key, config, **kw):
        registered.append((self, key, kw))
        return real(self, key, config, **kw)

    monkeypatch.setattr(fo.core.collections.SampleCollection, "register_run", register_run)
    res = _run(ds, m, batch_size=2)
    assert isinstance(res, QualityRunResults) and res.samples is ds
    assert registered == [(ds, "q", dict(overwrite=True, cleanup=False))]
    r = during[0]  # the record while scoring
    assert (r.status, r.num_samples, r.num_todo, r.num_scored, r.device) == ("running", 7, 7, 0, "cpu")
    assert r.finished_at is None and _utc(r.started_at) == _utc(res.started_at)
    assert ds.values("q") == pytest.approx([10, 20, 30, 40, 50, None, None])
    reasons = ["missing file", "not an image (unrecognised format)"]
    assert ds.values("q_error") == [None] * 5 + reasons
    assert isinstance(ds.get_field("q"), fo.FloatField)
    assert m.batches == [2, 2, 1]
    for r in (res, dq.load_quality_run(ds, "q")):
        assert r.key == "q" and r.status == "completed" and r.error is None
        assert (r.num_samples, r.num_todo, r.num_scored, r.num_failed, r.num_with_scores) == (7, 7, 5, 2, 5)
        assert r.failures == dict(zip(ids[5:], reasons))
        assert r.device == "cpu"
        assert r.config.device == "cpu" and r.config.batch_size == 2 and r.config.num_workers == 0
        assert r.config.metric == "probe" and r.config.field == "q"
        assert r.config.reference_field is None and r.config.label_field is None
        assert 0 <= r.elapsed_s < 300
        assert r.images_per_s == pytest.approx(7 / max(r.elapsed_s, 1e-3), rel=0.05, abs=0.02)
        assert _utc(r.started_at) <= _utc(r.finished_at) <= datetime.datetime.now(datetime.timezone.utc)


def test_many_metrics_return_a_dict_by_field_and_get_their_own_input_size(tmp_path, make_dataset):
    ds = make_dataset(_gray(tmp_path, [10, 20, 30]))
    a, b, c = Probe(), OtherProbe(spec=InputSpec(resize=4, crop=4)), Probe()
    res = _run(ds, [a, b, c], field=["a", "b", "c"])
    assert list(res) == ["a", "b", "c"]
    assert all(res[f].key == f and res[f].num_scored == 3 and res[f].status == "completed" for f in res)
    assert a.shapes == [(8, 8)] and b.shapes == [(4, 4)] and c.shapes == [(8, 8)]
    for f in "abc":
        assert ds.values(f) == pytest.approx([10, 20, 30])
    one = _run(ds, [Probe()], field=["d"])
    assert isinstance(one, dict) and list(one) == ["d"] and one["d"].num_scored == 3


def test_an_empty_view_is_refused_and_leaves_nothing(tmp_path, make_dataset):
    """Issue 28, item 8: no field and no run record for a view without samples."""
    ds = make_dataset(_gray(tmp_path, [10]))
    with pytest.raises(ValueError, match="nothing to score"):
        _run(ds.match({"filepath": "nowhere"}), Probe(), num_workers=2)
    assert ds.get_field("q") is None and ds.list_runs() == []


def test_nothing_left_to_score_completes_without_a_worker(tmp_path, make_dataset, loader_spy):
    ds = make_dataset(_gray(tmp_path, [10]))
    _run(ds, Probe())
    m = Probe()
    res = _run(ds, m, num_workers=2)
    assert res.status == "completed" and (res.num_samples, res.num_todo) == (1, 0)
    assert res.images_per_s == 0.0 and res.config.num_workers == 2
    assert m.batches == [] and loader_spy[-1]["num_workers"] == 0  # no worker for no batch


def test_all_failed_still_gives_a_float_field(tmp_path, make_dataset):
    ds = make_dataset([str(tmp_path / "a.png"), str(tmp_path / "b.png")])
    res = _run(ds, Probe())
    assert isinstance(ds.get_field("q"), fo.FloatField)
    assert res.num_failed == 2 and res.num_with_scores == 0 and res.num_scored == 0
    assert ds.values("q_error") == ["missing file", "missing file"]


def test_progress_reaches_the_caller(tmp_path, make_dataset):
    ds = make_dataset(_gray(tmp_path, [10, 20, 30]))
    _run(ds.limit(1), Probe())
    seen = []
    _run(ds, Probe(), progress=lambda f, label: seen.append((f, label)))
    assert seen[-1] == (1.0, "scored 2 of 2 images")  # only the rows still to score


def test_max_pixels_reaches_the_loader(tmp_path, make_dataset):
    ds = make_dataset(_gray(tmp_path, [10]))
    res = _run(ds, Probe(), max_pixels=100)
    assert res.num_failed == 1
    assert ds.values("q_error") == ["image too large (12x10 > 100 pixels); raise max_pixels to score it"]


# ---------------------------------------------------------------------------
# resume and overwrite
# ---------------------------------------------------------------------------


def test_resume_scores_what_the_view_misses_and_overwrite_rescores_it(tmp_path, make_dataset):
    values = [10, 20, 30, 40, 50, 60]
    ds = make_dataset(_gray(tmp_path, values))
    _run(ds.limit(2), Probe())
    view = ds.sort_by("filepath", reverse=True).skip(1)  # samples 4, 3, 2, 1, 0; 5 stays out
    m = Probe()
    res = _run(view, m, batch_size=8)
    assert m.batches == [3] and res.num_samples == 5 and res.num_todo == 3 and res.num_scored == 3
    assert ds.values("q") == pytest.approx(values[:5] + [None])
    again = Probe()
    res = _run(view, again)
    assert again.batches == [] and res.num_todo == 0 and res.status == "completed"
    assert res.num_with_scores == 5
    m = Probe()
    res = _run(view, m, overwrite=True, batch_size=8)
    assert m.batches == [5] and res.num_todo == 5 and res.num_scored == 5
    assert ds.values("q") == pytest.approx(values[:5] + [None])
    assert res.failures == {}


def test_overwrite_lets_another_metric_take_the_field(tmp_path, make_dataset):
    ds = make_dataset(_gray(tmp_path, [10, 20]))
    _run(ds, Probe())
    res = _run(ds, OtherProbe(spec=InputSpec(resize=4, crop=4)), overwrite=True)
    assert res.config.metric == "other_probe" and res.num_scored == 2
    assert dq.load_quality_run(ds, "q").config.metric == "other_probe"


def test_a_rescored_sample_loses_its_stale_error(tmp_path, make_dataset):
    late = tmp_path / "late.png"
    ds = make_dataset(_gray(tmp_path, [10]) + [str(late)])
    _run(ds, Probe())
    assert ds.values("q_error") == [None, "missing file"]
    Image.new("RGB", (12, 10), (70, 70, 70)).save(late)
    res = _run(ds, Probe())
    assert res.num_todo == 1 and res.num_scored == 1
    assert ds.values("q") == pytest.approx([10, 70]) and ds.values("q_error") == [None, None]


def test_mixed_views_record_their_non_image_samples(tmp_path, make_dataset):
    ds = make_dataset()
    ds.add_group_field("group", default="image")
    samples = []
    for f in _gray(tmp_path, [10, 20]):
        g = fo.Group()
        samples += [fo.Sample(filepath=f, group=g.element("image")),
                    fo.Sample(filepath=f + ".mp4", group=g.element("video"))]
    ds.add_samples(samples, progress=False)
    view = ds.select_group_slices(_allow_mixed=True)
    kinds = {sid: "video" if f.endswith(".mp4") else "image" for sid, f in zip(*view.values(["id", "filepath"]))}
    m = Probe()
    res = _run(view, m)
    assert m.batches == [2]
    assert res.num_scored == 2 and res.num_failed == 2
    assert res.failures == {sid: VIDEO_REASON for sid, k in kinds.items() if k == "video"}
    got = dict(zip(view.values("id"), view.values("q")))
    assert sorted(v for v in got.values() if v is not None) == pytest.approx([10, 20])
    assert all((got[sid] is None) == (k == "video") for sid, k in kinds.items())


def test_skip_failures_false_raises_for_a_non_image_sample_even_without_batches(tmp_path, make_dataset):
    ds = make_dataset()
    ds.add_group_field("group", default="image")
    g = fo.Group()
    f = _gray(tmp_path, [10])[0]
    ds.add_samples([fo.Sample(filepath=f, group=g.element("image")),
                    fo.Sample(filepath=f + ".mp4", group=g.element("video"))], progress=False)
    view = ds.select_group_slices(_allow_mixed=True)
    video = next(sid for sid, p in zip(*view.values(["id", "filepath"])) if p.endswith(".mp4"))
    _run(view, Probe())  # the image is scored: nothing left to load
    m = Probe()
    with pytest.raises(RuntimeError) as e:
        _run(view, m, skip_failures=False)
    assert str(e.value) == f"could not score sample {video} (q): {VIDEO_REASON}"
    assert m.batches == []
    r = dq.load_quality_run(ds, "q")
    assert r.status == "failed" and r.failures == {video: VIDEO_REASON} and r.num_with_scores == 1


# ---------------------------------------------------------------------------
# references and labels
# ---------------------------------------------------------------------------


def test_reference_images_reach_the_metric(tmp_path, make_dataset):
    refs = _gray(tmp_path, [90, 100], prefix="r") + [str(tmp_path / "r-gone.png")]
    ds = make_dataset(_gray(tmp_path, [100, 150, 200]), ref=refs)
    res = _run(ds, Probe(needs_reference=True), reference_field="ref")
    assert ds.values("q") == pytest.approx([10, 50, None])
    assert ds.values("q_error")[2] == f"reference {refs[2]!r}: missing file"
    assert res.config.reference_field == "ref" and res.num_failed == 1


def test_sample_labels_reach_the_metric(tmp_path, make_dataset, loader_spy):
    labels = [fo.Classification(label=x) for x in ("cat", "dog", "cat")]
    ds = make_dataset(_gray(tmp_path, [10, 20, 30]), gt=labels)
    res = _run(ds, LabelProbe(), label_field="gt")
    assert ds.values("q") == pytest.approx([10, 1020, 30])
    assert res.config.label_field == "gt"
    assert loader_spy[0]["dataset"].labels == ["cat", "dog", "cat"]
    res = _run(ds, ClassesProbe(), field="c", label_field="gt")  # reads classes, not each label
    assert loader_spy[1]["dataset"].labels is None
    assert ds.values("c") == pytest.approx([10, 20, 30]) and res.config.label_field == "gt"


# ---------------------------------------------------------------------------
# failures, interruptions and the run's outcome
# ---------------------------------------------------------------------------


def test_skip_failures_false_raises_the_first_failure_and_keeps_the_work(tmp_path, make_dataset):
    files = _gray(tmp_path, [10, 20])
    files += [str(tmp_path / "gone.png")] + _gray(tmp_path, [40, 50], prefix="h")
    ds = make_dataset(files)
    bad = ds.values("id")[2]
    msg = f"could not score sample {bad} (a): missing file"
    with pytest.raises(RuntimeError) as e:
        _run(ds, [Probe(), OtherProbe()], field=["a", "b"], batch_size=2, skip_failures=False)
    assert str(e.value) == msg
    assert ds.values("a") == pytest.approx([10, 20, None, 40, None])  # the failing batch is kept
    assert ds.values("a_error") == [None, None, "missing file", None, None]
    r = dq.load_quality_run(ds, "a")
    assert r.status == "failed" and r.error == "RuntimeError: " + msg
    assert (r.num_scored, r.num_failed, r.failures) == (3, 1, {bad: "missing file"})
    assert dq.load_quality_run(ds, "b").status == "failed"
    res = _run(ds, Probe(), field="c", batch_size=2)  # skip_failures=True goes on
    assert res.status == "completed" and res.num_scored == 4


def test_keyboard_interrupt_marks_the_run_interrupted_and_propagates(tmp_path, make_dataset):
    ds = make_dataset(_gray(tmp_path, [10, 20, 30, 40, 50, 60]))

    def stop(m):
        if len(m.batches) == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        _run(ds, Probe(hook=stop), batch_size=2)
    assert ds.count("q") == 2
    r = dq.load_quality_run(ds, "q")
    assert r.status == "interrupted" and r.error == "KeyboardInterrupt"
    assert r.num_scored == 2 and r.num_failed == 0 and r.num_with_scores == 2
    assert r.finished_at is not None


def test_an_engine_error_fails_the_run_with_its_text(tmp_path, make_dataset, monkeypatch):
    ds = make_dataset(_gray(tmp_path, [10, 20, 30, 40]))
    real = execute.score_batch
    calls = []

    def score_batch(*args):
        calls.append(1)
        if len(calls) == 2:
            raise OSError("disk on fire")
        return real(*args)

    monkeypatch.setattr(execute, "score_batch", score_batch)
    with pytest.raises(OSError, match="disk on fire"):
        _run(ds, Probe(), batch_size=2)
    r = dq.load_quality_run(ds, "q")
    assert r.status == "failed" and r.error == "OSError: disk on fire"
    assert r.num_scored == 2 and ds.count("q") == 2


def test_a_run_record_that_cannot_be_saved_does_not_mask_the_outcome(tmp_path, make_dataset, monkeypatch,
                                                                       caplog):
    ds = make_dataset(_gray(tmp_path, [10, 20]))

    def stop(m):
        raise KeyboardInterrupt

    plan = _plan(ds, Probe(hook=stop))
    real = type(ds).save_run_results
    saves = []

    def save(self, key, results, **kw):
        saves.append(kw)
        if len(saves) > 1:
            raise RuntimeError("database gone")
        return real(self, key, results, **kw)

    monkeypatch.setattr(type(ds), "save_run_results", save)
    with caplog.at_level(logging.ERROR, logger=execute.__name__), pytest.raises(KeyboardInterrupt):
        execute_plan(plan)
    assert saves == [dict(overwrite=True, cache=False)] * 2
    rec = [r for r in caplog.records if r.name == execute.__name__]
    assert [r.getMessage() for r in rec] == ["could not save the run record of 'q'"]
    assert rec[0].levelno == logging.ERROR and rec[0].exc_info[1].args == ("database gone",)
    assert ds.load_run_results("q").status == "running"  # the record it could save (none cached)
    assert dq.load_quality_run(ds, "q").status == "running"


# ---------------------------------------------------------------------------
# _finish_run, on its own
# ---------------------------------------------------------------------------


class _Saved:
    def __init__(self, count=7):
        self.saved, self.counted, self._count = [], [], count

    def count(self, field):
        self.counted.append(field)
        return self._count

    def save_run_results(self, key, results, **kw):
        self.saved.append((key, results, kw))


def _job(n_failures=0, num_scored=3):
    failures = {f"s{i}": f"reason {i}" for i in range(n_failures)}
    return types.SimpleNamespace(field="q", results=types.SimpleNamespace(), num_scored=num_scored,
                                 failures=failures)


def test_finish_run_records_counts_rates_and_caps_failures():
    ds, job = _Saved(), _job(10001, num_scored=5)
    execute._finish_run(ds, job, "completed", None, 1.23456)
    r = job.results
    assert (r.status, r.error, r.num_scored, r.num_failed, r.num_with_scores) == ("completed", None, 5, 10001, 7)
    assert list(r.failures) == [f"s{i}" for i in range(10000)] and r.failures["s0"] == "reason 0"
    assert r.elapsed_s == 1.235 and r.images_per_s == round(10006 / 1.23456, 2) == 8104.91
    assert ds.counted == ["q"] and ds.saved == [("q", r, dict(overwrite=True, cache=False))]
    assert _utc(r.finished_at) <= datetime.datetime.now(datetime.timezone.utc)


@pytest.mark.parametrize("elapsed, rate", [(0.0, 0.0), (0.5, 8.0), (3.0, 1.33), (1.0, 4.0)])
def test_finish_run_rate(elapsed, rate):
    job = _job(1, num_scored=3)
    execute._finish_run(_Saved(), job, "failed", "E: x", elapsed)
    assert job.results.images_per_s == rate and job.results.error == "E: x"
    assert job.results.status == "failed"


def test_finish_run_of_a_shard_updates_the_shard_store(monkeypatch):
    updates, made = [], []

    class Store:
        def __init__(self):
            made.append(self)

        def update(self, dataset, field, index, **values):
            updates.append((dataset, field, index, values))

    monkeypatch.setattr(execute, "ShardStore", Store)
    ds, job = _Saved(), _job(1001, num_scored=2)
    execute._finish_run(ds, job, "interrupted", "KeyboardInterrupt", 2.0, types.SimpleNamespace(index=3))
    r = job.results
    assert ds.saved == [] and len(updates) == 1
    dataset, field, index, values = updates[0]
    assert (dataset, field, index) == (ds, "q", 3)
    assert list(values["failures"]) == [f"s{i}" for i in range(1000)]
    assert values == dict(status="interrupted", error="KeyboardInterrupt", num_scored=2, num_failed=1001,
                          failures=values["failures"], elapsed_s=2.0, finished_at=r.finished_at)
    assert r.num_failed == 1001 and len(r.failures) == 1001 and r.num_with_scores == 7


def test_finish_run_of_a_field_never_created_counts_no_scores():
    """A run that failed before its field existed: FiftyOne's count raises ValueError,
    and the record says 0 samples hold scores (not 1, not missing), and is saved."""
    class NoField(_Saved):
        def count(self, field):
            raise ValueError(f"field '{field}' does not exist")

    ds, job = NoField(), _job()
    execute._finish_run(ds, job, "failed", "RuntimeError: boom", 1.0)
    assert job.results.num_with_scores == 0 and type(job.results.num_with_scores) is int
    assert [key for key, _, _ in ds.saved] == ["q"]


def test_finish_run_logs_a_failing_save(caplog):
    class Broken(_Saved):
        def count(self, field):
            raise RuntimeError("no database")

    job = _job()
    with caplog.at_level(logging.ERROR, logger=execute.__name__):
        execute._finish_run(Broken(), job, "completed", None, 1.0)
    assert [r.getMessage() for r in caplog.records] == ["could not save the run record of 'q'"]
    assert job.results.status == "completed" and job.results.num_scored == 3


# ---------------------------------------------------------------------------
# write-back in chunks
# ---------------------------------------------------------------------------


def _flush_spy(monkeypatch, metric):
    seen = []
    real = execute.flush

    def flush(dataset, jobs):
        seen.append((len(metric.batches), sum(len(j.scores) for j in jobs)))
        return real(dataset, jobs)

    monkeypatch.setattr(execute, "flush", flush)
    return seen


@pytest.mark.parametrize("write_every", [3, 4])
def test_scores_are_written_every_write_every_samples(tmp_path, make_dataset, monkeypatch, write_every):
    ds = make_dataset(_gray(tmp_path, [10, 20, 30, 40, 50, 60]))
    visible = []
    m = Probe(hook=lambda m: visible.append(ds.count("q")))
    seen = _flush_spy(monkeypatch, m)
    _run(ds, m, batch_size=2, write_every=write_every)
    assert seen == [(2, 4), (3, 2)]  # after 4 samples (>= write_every), then the rest at the end
    assert visible == [0, 0, 4] and ds.count("q") == 6


def test_scores_are_written_at_least_every_ten_seconds(tmp_path, make_dataset, monkeypatch):
    ds = make_dataset(_gray(tmp_path, [10, 20, 30, 40, 50, 60]))
    clock = types.SimpleNamespace(now=0.0)
    for module in (execute, writer):  # the run's clock and the write cadence's
        monkeypatch.setattr(module, "time", types.SimpleNamespace(perf_counter=lambda: clock.now,
                                                                  monotonic=time.monotonic))
    steps = iter([10.0, 0.5, 9.9996])

    def tick(m):
        clock.now += next(steps)

    m = Probe(hook=tick)
    seen = _flush_spy(monkeypatch, m)
    res = _run(ds, m, batch_size=2)
    assert seen == [(2, 4), (3, 2)]  # not at 10 s, at 10.5 s, not 9.9996 s later
    assert res.elapsed_s == 20.5 and res.images_per_s == 0.29


# ---------------------------------------------------------------------------
# decisions: workers, decoding, batch sizes, the loader
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("decode, count, cuda, per_image, workers, in_workers, raw", [
    ("device", 8, False, False, 0, False, True),
    ("workers", 2, False, False, 0, False, False),
    ("auto", 2, False, False, 0, False, True),
    ("auto", 3, False, False, 0, False, False),
    ("auto", None, False, False, 0, False, True),
    ("auto", 8, True, False, 0, False, True),
    ("workers", 8, True, False, 0, False, False),
    ("auto", 2, False, True, 1, True, False),
    ("workers", 8, False, True, 2, True, False),
    ("auto", 8, False, True, 0, False, False),
    ("device", 8, False, True, 1, False, True),
    ("auto", 8, True, True, 1, False, True),
])
def test_where_images_are_decoded_and_scored(tmp_path, make_dataset, monkeypatch, loader_spy, decode_spy,
                                            cores, decode, count, cuda, per_image, workers, in_workers, raw):
    cores(count)
    ds = make_dataset(_gray(tmp_path, [10, 20, 30, 40]))
    m = Probe(per_image=per_image)
    plan = _plan(ds, m, decode=decode, num_workers=workers, batch_size=4, amp=False)
    seen = _fake_cuda(monkeypatch, plan) if cuda else []
    res = execute_plan(plan)
    data = loader_spy[0]["dataset"]
    assert (data.postprocess is not None, data.raw_jpeg) == (in_workers, raw)
    assert m.batches == ([1, 1, 1, 1] if in_workers else [4])
    if in_workers:
        assert data.postprocess.main_specs == set() and data[0]["images"] == [None]
    dev = torch.device("cuda" if cuda else "cpu")
    assert decode_spy == ([(4, [m.input_spec], dev, plan.max_pixels)] if raw else [])
    assert loader_spy[0]["pin_memory"] is cuda
    assert res.device == str(dev) and res.config.device == str(dev)
    if cuda:
        assert seen == [(dev, False)]
    assert ds.values("q") == pytest.approx([10, 20, 30, 40])


def test_one_per_image_metric_takes_the_others_into_the_workers(tmp_path, make_dataset, loader_spy):
    ds = make_dataset(_gray(tmp_path, [10, 20, 30, 40]))
    per, batched = Probe(per_image=True), OtherProbe(spec=InputSpec(resize=4, crop=4))
    _run(ds, [per, batched], field=["a", "b"], num_workers=1, batch_size=4)
    assert per.batches == [1] * 4 and batched.batches == [1] * 4
    assert ds.values("b") == pytest.approx([10, 20, 30, 40])


def test_amp_reaches_the_scorer(tmp_path, make_dataset, monkeypatch, loader_spy):
    ds = make_dataset(_gray(tmp_path, [10]))
    plan = _plan(ds, Probe())
    seen = _fake_cuda(monkeypatch, plan)
    execute_plan(plan)
    assert seen == [(torch.device("cuda"), True)]


@pytest.mark.parametrize("specs, cuda, expected", [
    ([InputSpec(resize=8, crop=8)], False, 4),
    ([InputSpec(max_side=16)], False, 8),
    ([InputSpec(resize=8, crop=8), InputSpec(max_side=16)], False, 8),
    ([InputSpec(resize=8, crop=8)], True, 64),
    ([InputSpec(max_side=16)], True, 8),
])
def test_default_batch_size(tmp_path, make_dataset, monkeypatch, loader_spy, specs, cuda, expected):
    ds = make_dataset(_gray(tmp_path, [10]))
    metrics = [Probe(spec=s) if i == 0 else OtherProbe(spec=s) for i, s in enumerate(specs)]
    plan = _plan(ds, metrics, field=[f"f{i}" for i in range(len(specs))])
    if cuda:
        _fake_cuda(monkeypatch, plan)
    res = execute_plan(plan)
    assert all(r.config.batch_size == expected for r in res.values())
    assert loader_spy[0]["batch_size"] == expected


@pytest.mark.parametrize("asked, used", [(0, 1), (1, 1), (3, 3)])
def test_batch_size_is_at_least_one(tmp_path, make_dataset, loader_spy, asked, used):
    ds = make_dataset(_gray(tmp_path, [10, 20, 30]))
    m = Probe()
    res = _run(ds, m, batch_size=asked)
    assert res.config.batch_size == used and loader_spy[0]["batch_size"] == used
    assert m.batches == [used] * (3 // used)


@pytest.mark.parametrize("count, expected", [(8, 4), (3, 3), (None, 1)])
def test_default_num_workers(tmp_path, make_dataset, loader_spy, cores, count, expected):
    cores(count)
    ds = make_dataset(_gray(tmp_path, [10] * 10))
    res = _run(ds, Probe(), num_workers=None, batch_size=1)
    assert res.config.num_workers == expected and loader_spy[0]["num_workers"] == expected


def test_the_loader_has_no_more_workers_than_batches(tmp_path, make_dataset, loader_spy):
    ds = make_dataset(_gray(tmp_path, [10, 20, 30, 40, 50]))
    res = _run(ds, Probe(), num_workers=4, batch_size=2)
    kw = loader_spy[0]
    assert res.config.num_workers == 4
    assert kw["num_workers"] == 3 and kw["prefetch_factor"] == 4 and kw["batch_size"] == 2
    assert kw["shuffle"] is False and kw["persistent_workers"] is False and kw["pin_memory"] is False
    assert kw["collate_fn"] is collate_items and kw["dataset"].max_pixels == 100_000_000
    assert kw["dataset"].filepaths == ds.values("filepath") and kw["dataset"].reference_paths is None
    _run(ds, Probe(), field="r", num_workers=0, batch_size=2)
    assert loader_spy[1]["num_workers"] == 0 and loader_spy[1]["prefetch_factor"] is None


def test_per_image_metrics_score_in_worker_processes(tmp_path, make_dataset):
    ds = make_dataset(_gray(tmp_path, [10, 20, 30, 40]))
    res = _run(ds, [PidProbe(per_image=True), PidProbe()], field=["a", "b"], num_workers=2, batch_size=2)
    assert res["a"].num_scored == 4 and res["b"].num_scored == 4
    pids = set(ds.values("a")) | set(ds.values("b"))
    assert os.getpid() not in pids and len(pids) <= 2 and None not in pids


def test_workers_forked_from_a_thread_pool_exit_cleanly(tmp_path, make_dataset, worker_exit_codes):
    """FiftyOne runs operators in a thread pool; workers forked there must exit with 0, or
    torch's SIGCHLD handler fails the run in the main thread (CPython gh-88110)."""
    ds = make_dataset(_gray(tmp_path, [10, 20, 30, 40]))
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        res = pool.submit(_run, ds, Probe(), num_workers=2, batch_size=2).result()
    assert res.num_scored == 4 and ds.values("q") == pytest.approx([10, 20, 30, 40])
    assert worker_exit_codes == [0, 0]


# ---------------------------------------------------------------------------
# shards and locks
# ---------------------------------------------------------------------------


def _queue(ds, metric, field, count):
    """What ``queue_shards`` records before the shards run (without queuing operations)."""
    specs = shard_specs(ds, count)
    config = build_run_config(metric, field, shards=count)
    ds.register_run(field, config, overwrite=True, cleanup=False)
    ds.save_run_results(field, QualityRunResults(ds, config, field, status="queued", num_samples=len(ds)),
                        overwrite=True, cache=False)
    ds.add_sample_field(field, fo.FloatField)
    ShardStore().init(ds, field, specs, [f"op{s.index}" for s in specs])
    return specs


def test_a_shard_scores_its_part_and_records_its_progress(tmp_path, make_dataset):
    ds = make_dataset(_gray(tmp_path, [10, 20, 30, 40, 50]) + [str(tmp_path / "gone.png")])
    ids = ds.values("id")
    specs = _queue(ds, Probe(), "q", 2)
    during = []
    m = Probe(hook=lambda m: during.append(ShardStore().get(ds, "q")[1]))
    res = execute_plan(_plan(ds, m), shard=specs[1])
    part = [i for i, sid in enumerate(ids) if sid >= specs[1].id_min]
    assert part == [3, 4, 5]
    assert ds.values("q") == pytest.approx([None, None, None, 40, 50, None])
    assert during[0]["status"] == "running" and during[0]["num_todo"] == 3 and during[0]["device"] == "cpu"
    _utc(during[0]["started_at"])
    s0, s1 = ShardStore().get(ds, "q")
    assert s0["status"] == "queued"
    assert (s1["status"], s1["error"], s1["num_scored"], s1["num_failed"]) == ("completed", None, 2, 1)
    assert s1["failures"] == {ids[5]: "missing file"} and s1["finished_at"] == res.finished_at
    assert s1["elapsed_s"] == res.elapsed_s and s1["num_todo"] == 3
    assert res.status == "completed" and res.num_samples == 3 and res.num_todo == 3 and res.key == "q"
    assert res.samples.values("id") == ids[3:]
    assert res.config.shards == 2 and res.device == "cpu" and res.num_with_scores == 2
    assert ds.load_run_results("q", cache=False).status == "queued"  # the run's own record is the caller's
    assert dq.load_quality_run(ds, "q").status == "running"  # merged: one shard still queued


def test_a_field_being_written_refuses_a_second_writer(tmp_path, make_dataset):
    ds = make_dataset(_gray(tmp_path, [10, 20, 30, 40]))
    specs = _queue(ds, Probe(), "q", 2)
    with FieldLock(ds, "q@1"):
        with pytest.raises(FieldBusyError):
            execute_plan(_plan(ds, Probe()), shard=specs[1])
        execute_plan(_plan(ds, Probe()), shard=specs[0])  # another shard of the field goes on
    assert ds.count("q") == 2
    with FieldLock(ds, "r"):
        with pytest.raises(FieldBusyError):
            _run(ds, Probe(), field="r")
    with FieldLock(ds, "r@0"):  # a whole run takes the field's own lock
        assert _run(ds, Probe(), field="r").num_scored == 4
