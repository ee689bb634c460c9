"""Hostile inputs, crashes mid-run, concurrent writers, device faults."""

import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

import fiftyone as fo
import fiftyone_dnniqa as dq
from fiftyone_dnniqa.core.images import ImageLoadError, read_image
from fiftyone_dnniqa.scoring.locks import FieldBusyError, FieldLock

from corpus import build_corpus

METRICS = ["piqe", "aligned"]


@pytest.fixture(scope="module")
def plugin_installed():
    from fiftyone_dnniqa.app.plugin import PLUGIN_NAME, install_plugin

    install_plugin(overwrite=True)
    return f"{PLUGIN_NAME}/compute_quality"


def test_bad_input_corpus_loses_nothing(imagenet_files, make_dataset, tmp_path):
    cases, expect_score = build_corpus(tmp_path)
    good = imagenet_files[:8]
    names = list(cases)
    ds = make_dataset(good + [cases[n] for n in names])
    res = dq.compute_quality(ds, METRICS, batch_size=4)
    for r in res.values():
        assert r.status == "completed"
        assert r.num_scored + r.num_failed == len(ds)  # every sample accounted for
    for field in ("iqa_piqe", "iqa_aligned"):
        by_path = dict(zip(ds.values("filepath"), zip(ds.values(field), ds.values(field + "_error"))))
        for name in names:
            score, reason = by_path[cases[name]]
            assert (score is None) != (reason is None), (field, name, score, reason)
            if name in expect_score:
                assert score is not None and np.isfinite(score), (field, name, reason)
        assert "too large" in by_path[cases["bomb_20000x20000"]][1]

    # the readable samples score exactly as they do without the bad ones
    clean = make_dataset(good)
    dq.compute_quality(clean, METRICS, batch_size=4)
    for field in ("iqa_piqe", "iqa_aligned"):
        alone = dict(zip(clean.values("filepath"), clean.values(field)))
        mixed = dict(zip(ds.values("filepath"), ds.values(field)))
        assert np.allclose([mixed[f] for f in good], [alone[f] for f in good], rtol=1e-5, atol=1e-6)


def test_video_samples_in_a_mixed_view_are_recorded(imagenet_files, make_dataset):
    ds = make_dataset()
    ds.add_group_field("group", default="image")
    samples = []
    for f in imagenet_files[:2]:
        g = fo.Group()
        samples += [fo.Sample(filepath=f, group=g.element("image")),
                    fo.Sample(filepath=f + ".mp4", group=g.element("video"))]
    ds.add_samples(samples, progress=False)
    with pytest.raises(ValueError, match="select_group_slices"):
        dq.compute_quality(ds, "entropy")
    view = ds.select_group_slices(_allow_mixed=True)
    res = dq.compute_quality(view, "entropy", num_workers=0)
    assert res.num_scored == 2 and res.num_failed == 2
    assert all("video sample" in r for r in res.failures.values())


def test_fuzzed_image_bytes_never_crash_the_loader(tmp_path):
    """Property: any bytes give an RGB uint8 tensor or an ImageLoadError."""
    pytest.importorskip("hypothesis")
    from hypothesis import HealthCheck, given, settings, strategies as st
    import io
    from PIL import Image

    seeds = []
    for fmt in ("PNG", "JPEG", "GIF", "WEBP", "TIFF", "BMP"):
        b = io.BytesIO()
        Image.new("RGB", (9, 7), (10, 200, 30)).save(b, format=fmt)
        seeds.append(b.getvalue())
    path = tmp_path / "fuzz.img"

    @st.composite
    def mutated(draw):
        data = bytearray(draw(st.sampled_from(seeds)))
        for _ in range(draw(st.integers(0, 8))):
            i = draw(st.integers(0, len(data) - 1))
            data[i] = draw(st.integers(0, 255))
        cut = draw(st.integers(0, len(data)))
        return bytes(data[:cut]) if draw(st.booleans()) else bytes(data)

    @settings(max_examples=400, deadline=None, derandomize=True,
              suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(st.one_of(mutated(), st.binary(max_size=512)))
    def check(data):
        path.write_bytes(data)
        try:
            x = read_image(str(path), max_pixels=4_000_000)
        except ImageLoadError as e:
            assert str(e)
        else:
            assert x.dtype.is_floating_point is False and x.ndim == 3 and x.shape[0] == 3

    check()


KILL_SCRIPT = textwrap.dedent("""
    import sys, time
    import fiftyone as fo, fiftyone_dnniqa as dq
    from fiftyone_dnniqa.metrics.base import InputSpec, QualityMetric

    class Slow(QualityMetric):
        name = "slow"
        input_spec = InputSpec(resize=16, crop=16)
        def score(self, images, references=None):
            time.sleep(0.15)
            return images.mean(dim=(1, 2, 3)).double()

    ds = fo.load_dataset(sys.argv[1])
    dq.compute_quality(ds, Slow(), batch_size=2, num_workers=0, write_every=2)
""")


def _gray_dataset(make_dataset, tmp_path, n):
    from PIL import Image

    paths = []
    for i in range(n):
        p = tmp_path / f"k{i:03d}.png"
        Image.new("RGB", (20, 20), (i, i, i)).save(p)
        paths.append(str(p))
    ds = make_dataset(paths)
    ds.persistent = True
    return ds


def _wait_for(cond, timeout=60):
    t = time.time()
    while time.time() - t < timeout:
        if cond():
            return True
        time.sleep(0.1)
    return False


def _sigkill_after_scores(script, ds, field, at_least):
    """Runs ``script ds.name`` in a child, SIGKILLs it once ``field`` holds
    ``at_least`` scores, and returns how many it had written."""
    proc = subprocess.Popen([sys.executable, "-c", script, ds.name])
    try:
        def scored():
            ds.reload()
            return ds.has_sample_field(field) and ds.count(field) >= at_least
        assert _wait_for(scored), "the child never wrote scores"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    ds.reload()
    return ds.count(field)


def test_sigkill_mid_run_keeps_written_scores_and_resumes(make_dataset, tmp_path):
    ds = _gray_dataset(make_dataset, tmp_path, 40)
    written = _sigkill_after_scores(KILL_SCRIPT, ds, "iqa_slow", 8)
    assert 8 <= written < 40
    # what was written is intact: each score is that image's mean
    for fp, v in zip(ds.values("filepath"), ds.values("iqa_slow")):
        if v is not None:
            i = int(os.path.basename(fp)[1:4])
            assert abs(v - i / 255) < 1e-6
    assert dq.load_quality_run(ds, "iqa_slow").status == "running"  # it never finished
    # the dead writer's lock does not block the re-run, which does only the rest
    rerun = subprocess.run([sys.executable, "-c", KILL_SCRIPT.replace("time.sleep(0.15)", "pass"), ds.name],
                           capture_output=True, text=True, timeout=120)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    r = dq.load_quality_run(ds, "iqa_slow")
    assert r.status == "completed" and r.num_todo == 40 - written and r.num_scored == 40 - written
    ds.reload()
    assert ds.count("iqa_slow") == 40


def test_two_writers_on_one_field_are_refused(tmp_path, make_dataset):
    from test_engine import MeanBrightness

    ds = _gray_dataset(make_dataset, tmp_path, 4)
    with FieldLock(ds, "iqa_mean_brightness"):
        with pytest.raises(FieldBusyError, match="being written by another run"):
            dq.compute_quality(ds, MeanBrightness(), num_workers=0)
        # another field is free
        dq.compute_quality(ds, MeanBrightness(), field="other", num_workers=0)
    assert not ds.has_sample_field("iqa_mean_brightness")
    dq.compute_quality(ds, MeanBrightness(), num_workers=0)  # released
    assert ds.count("iqa_mean_brightness") == 4


def test_a_dead_holders_lock_is_taken_over(tmp_path, make_dataset):
    from test_engine import MeanBrightness

    ds = _gray_dataset(make_dataset, tmp_path, 2)
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True).stdout.strip()
    lock = FieldLock(ds, "iqa_mean_brightness")
    doc = lock._doc()
    doc.update(pid=int(dead), token="dead-process")
    lock.coll.insert_one(doc)
    res = dq.compute_quality(ds, MeanBrightness(), num_workers=0)
    assert res.num_scored == 2
    assert lock.coll.find_one({"_id": lock.key}) is None


def test_read_only_fields_are_respected(tmp_path, make_dataset):
    from test_engine import MeanBrightness

    ds = _gray_dataset(make_dataset, tmp_path, 2)
    ds.add_sample_field("frozen", fo.FloatField, read_only=True)
    with pytest.raises(ValueError, match="read-only"):
        dq.compute_quality(ds, MeanBrightness(), field="frozen", overwrite=True, num_workers=0)


def test_infinite_scores_are_missing_with_a_reason(tmp_path, make_dataset):
    from fiftyone_dnniqa.metrics.base import InputSpec, QualityMetric
    import torch

    class Inf(QualityMetric):
        name = "inf"
        input_spec = InputSpec(resize=8, crop=8)

        def score(self, images, references=None):
            return torch.full((len(images),), float("inf"), dtype=torch.float64)

    ds = _gray_dataset(make_dataset, tmp_path, 2)
    dq.compute_quality(ds, Inf(), num_workers=0)
    assert ds.values("iqa_inf") == [None, None]
    assert ds.values("iqa_inf_error") == ["metric returned inf"] * 2


SLOW_METRIC = textwrap.dedent("""
    import time
    from fiftyone_dnniqa.metrics import register_metric, metric_traits
    from fiftyone_dnniqa.metrics.base import InputSpec, QualityMetric

    class SlowTestMetric(QualityMetric):
        name = "slow_test"
        input_spec = InputSpec(resize=16, crop=16)
        delay = 0.15
        def score(self, images, references=None):
            time.sleep(self.delay)
            return images.mean(dim=(1, 2, 3)).double()

    try:
        register_metric("slow_test")(SlowTestMetric)
    except ValueError:
        pass
""")

WORKER = SLOW_METRIC + textwrap.dedent("""
    import sys
    from fiftyone.operators.delegated import DelegatedOperationService
    DelegatedOperationService().execute_queued_operations(dataset_name=sys.argv[1])
""")


def test_delegated_worker_killed_mid_run_resumes_on_rerun(plugin_installed, make_dataset, tmp_path):
    import fiftyone.operators as foo
    from fiftyone.operators.delegated import DelegatedOperationService
    from fiftyone.operators.executor import ExecutionRunState

    from fiftyone_dnniqa.metrics import _REGISTRY

    uri = plugin_installed
    exec(SLOW_METRIC, {})  # the metric, by name, in this process too
    ds = _gray_dataset(make_dataset, tmp_path, 40)
    queued = foo.execute_operator(uri, ctx={
        "dataset": ds, "params": {"metric": "slow_test", "batch_size": 2, "num_workers": 0, "write_every": 2},
        "request_delegation": True})
    assert queued.delegated
    written = _sigkill_after_scores(WORKER, ds, "iqa_slow_test", 4)
    assert 4 <= written < 40
    assert dq.load_quality_run(ds, "iqa_slow_test").status == "running"
    svc = DelegatedOperationService()
    op = svc.list_operations(dataset_name=ds.name)[0]
    assert op.run_state == ExecutionRunState.RUNNING  # the dead worker never reported back

    _REGISTRY["slow_test"].delay = 0.0
    svc.rerun_operation(op.id)
    svc.execute_queued_operations(dataset_name=ds.name)
    ds.reload()
    assert ds.count("iqa_slow_test") == 40
    r = dq.load_quality_run(ds, "iqa_slow_test")
    assert r.status == "completed" and r.num_todo == 40 - written == r.num_scored
