"""Scale-out: a sharded run executed by two real `fiftyone delegated launch`
workers on this machine, every sample scored exactly once."""

import glob
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest
from PIL import Image

import fiftyone_dnniqa as dq
from fiftyone_dnniqa.scoring.shards import ShardedRun, ShardSpec, shard_specs

COUNT_METRIC = textwrap.dedent("""
    import os, time
    from fiftyone_dnniqa.metrics import register_metric
    from fiftyone_dnniqa.metrics.base import InputSpec, QualityMetric

    class CountTestMetric(QualityMetric):
        name = "count_test"
        input_spec = InputSpec(resize=8, crop=8)
        def score(self, images, references=None):
            time.sleep(0.2)
            values = images.mean(dim=(1, 2, 3)).double()
            log = os.environ.get("DNNIQA_COUNT_LOG")
            if log:
                with open(os.path.join(log, f"calls-{os.getpid()}.txt"), "a") as f:
                    f.writelines(f"{round(float(v) * 255)}\\n" for v in values)
            return values

    try:
        register_metric("count_test")(CountTestMetric)
    except ValueError:
        pass
""")


@pytest.fixture
def gray40(make_dataset, tmp_path):
    paths = []
    for i in range(40):
        p = tmp_path / f"s{i:03d}.png"
        Image.new("RGB", (12, 12), (i * 5, i * 5, i * 5)).save(p)
        paths.append(str(p))
    ds = make_dataset(paths)
    ds.persistent = True
    return ds


def test_shard_specs_are_disjoint_and_complete(gray40):
    specs = shard_specs(gray40, 3)
    assert [s.index for s in specs] == [0, 1, 2]
    parts = [set(s.view(gray40).values("id")) for s in specs]
    assert sum(len(p) for p in parts) == 40 and set.union(*parts) == set(gray40.values("id"))
    assert all(10 <= len(p) <= 17 for p in parts)
    assert ShardSpec.from_params(specs[1].to_params()) == specs[1]
    assert len(shard_specs(gray40.limit(2), 5)) == 2


def test_sharding_needs_names_and_a_persistent_dataset(make_dataset, tmp_path):
    from test_engine import MeanBrightness

    Image.new("RGB", (8, 8)).save(tmp_path / "a.png")
    ds = make_dataset([str(tmp_path / "a.png")])
    with pytest.raises(ValueError, match="registry names"):
        dq.compute_quality(ds, MeanBrightness(), shards=2)
    with pytest.raises(ValueError, match="persistent"):
        dq.compute_quality(ds, "entropy", shards=2)
    assert not ds.has_sample_field("iqa_entropy")


def test_two_workers_score_every_sample_exactly_once(gray40, tmp_path):
    from fiftyone_dnniqa.app.plugin import install_plugin

    install_plugin(overwrite=True)
    exec(COUNT_METRIC, {})
    run = dq.compute_quality(gray40, "count_test", shards=4, batch_size=2, num_workers=0)
    assert isinstance(run, ShardedRun) and len(run.operation_ids) == 4
    r = dq.load_quality_run(gray40, "iqa_count_test")
    assert r.status == "queued" and [s["status"] for s in r.shards] == ["queued"] * 4

    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(COUNT_METRIC)
    log = tmp_path / "log"
    log.mkdir()
    env = dict(os.environ, DNNIQA_COUNT_LOG=str(log),
               PYTHONPATH=os.pathsep.join([str(site)] + [p for p in [os.environ.get("PYTHONPATH")] if p]))
    fiftyone_cli = os.path.join(os.path.dirname(sys.executable), "fiftyone")
    workers = [subprocess.Popen([fiftyone_cli, "delegated", "launch"], env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) for _ in range(2)]
    try:
        deadline = time.time() + 180
        while time.time() < deadline:
            r = dq.load_quality_run(gray40, "iqa_count_test")
            if r.status in ("completed", "failed"):
                break
            time.sleep(0.5)
    finally:
        for w in workers:
            w.send_signal(signal.SIGINT)
        for w in workers:
            try:
                w.wait(timeout=20)
            except subprocess.TimeoutExpired:
                w.kill()
    assert r.status == "completed", r.shards
    assert r.num_scored == 40 and r.num_with_scores == 40 and r.progress == 1.0
    calls = {}
    for path in glob.glob(str(log / "calls-*.txt")):
        calls[path] = [int(v) for v in open(path).read().split()]
    scored = sorted(v for vs in calls.values() for v in vs)
    assert scored == [i * 5 for i in range(40)]  # each sample exactly once
    assert len(calls) == 2  # both workers took shards
    gray40.reload()
    assert gray40.count("iqa_count_test") == 40

    # a failed shard is re-run alone: it scores only what its range misses
    from fiftyone.operators.delegated import DelegatedOperationService

    spec = run.specs[2]
    lost = spec.view(gray40).values("id")[:3]
    gray40.set_values("iqa_count_test", {i: None for i in lost}, key_field="id")
    for p in glob.glob(str(log / "calls-*.txt")):
        os.remove(p)
    os.environ["DNNIQA_COUNT_LOG"] = str(log)
    try:
        new_id = dq.rerun_shard(gray40, "iqa_count_test", 2)
        assert dq.load_quality_run(gray40, "iqa_count_test").shards[2]["operation_id"] == new_id
        DelegatedOperationService().execute_queued_operations(dataset_name=gray40.name)
    finally:
        del os.environ["DNNIQA_COUNT_LOG"]
    again = [int(v) for p in glob.glob(str(log / "calls-*.txt")) for v in open(p).read().split()]
    assert len(again) == 3
    gray40.reload()
    assert gray40.count("iqa_count_test") == 40
    assert dq.load_quality_run(gray40, "iqa_count_test").status == "completed"
    dq.delete_quality_run(gray40, "iqa_count_test")
    assert not gray40.has_sample_field("iqa_count_test")
