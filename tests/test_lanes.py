"""CPU lanes (scoring/lanes.py): several batches scored at once, each lane with its own copy
of the metrics; results recorded as if scored one batch after another."""

import threading

import numpy as np
import pytest
import torch

import fiftyone_dnniqa as dq
from fiftyone_dnniqa.core.images import InputSpec, prepare, read_image, to_float
from fiftyone_dnniqa.metrics import QualityMetric
from fiftyone_dnniqa.scoring import lanes as lanes_module
from fiftyone_dnniqa.scoring.lanes import Lanes, lane_split, open_lanes, scored_batches, weight_bytes
from fiftyone_dnniqa.scoring.scorers import Job, score_batch


class Copyable(QualityMetric):
    """Mean pixel value; watches how its copies are used (shared state, class-level)."""

    name = "copyable_test"
    input_spec = InputSpec(resize=8, crop=8)
    supports_lanes = True
    lock = threading.Lock()
    active: dict = {}
    overlap = {"max_per_copy": 0, "max_total": 0}
    barrier = None
    fail_value = None
    calls = 0
    modules: set = set()

    def __init__(self):
        super().__init__()
        self.inner = torch.nn.Identity()  # a lane's copy must hold its own modules

    def score(self, images, references=None):
        me = id(self)
        with Copyable.lock:
            Copyable.modules.add(id(self.inner))
            first_two = Copyable.calls < 2
            Copyable.calls += 1
            Copyable.active[me] = Copyable.active.get(me, 0) + 1
            o = Copyable.overlap
            o["max_per_copy"] = max(o["max_per_copy"], Copyable.active[me])
            o["max_total"] = max(o["max_total"], sum(Copyable.active.values()))
        try:
            if Copyable.barrier is not None and first_two:  # two lanes must be inside score at once
                Copyable.barrier.wait(timeout=60)
            out = images.mean(dim=(1, 2, 3)).double()
            for v in out.tolist():
                if Copyable.fail_value is not None and abs(v - Copyable.fail_value) < 1e-6:
                    raise ValueError("cannot score this one")
            return out
        finally:
            with Copyable.lock:
                Copyable.active[me] -= 1


@pytest.fixture
def copyable():
    Copyable.active, Copyable.overlap = {}, {"max_per_copy": 0, "max_total": 0}
    Copyable.barrier, Copyable.fail_value, Copyable.calls = threading.Barrier(2), None, 0
    Copyable.modules = set()
    yield Copyable
    Copyable.barrier, Copyable.fail_value = None, None


def _items(n, seed=0):
    g = torch.Generator().manual_seed(seed)
    images = [torch.randint(0, 256, (3, 8, 8), generator=g, dtype=torch.uint8) for _ in range(n)]
    return [{"index": i, "images": [im]} for i, im in enumerate(images)], images


def _run(jobs, batches, lanes, ids, todo):
    state = {"max_batch": 64}

    def score(batch, lane_jobs):
        for j, job in enumerate(lane_jobs):
            score_batch(job, j, batch, ids, todo, torch.device("cpu"), False, state)

    return list(scored_batches(lanes, batches, score, jobs))


@pytest.mark.parametrize("threads, expected", [(0, (1, 1)), (1, (1, 1)), (2, (2, 1)), (3, (3, 1)),
                                               (4, (4, 1)), (8, (4, 2)), (16, (4, 4)), (18, (4, 4))])
def test_lane_split_gives_one_thread_per_lane_up_to_four_lanes(threads, expected):
    assert lane_split(threads) == expected


def test_lanes_score_at_once_on_their_own_copies_and_record_in_loader_order(copyable):
    items, images = _items(24)
    batches = [items[i:i + 2] for i in range(0, 24, 2)]
    ids = [f"s{i:02d}" for i in range(24)]
    todo = np.ones((24, 1), dtype=bool)
    metric = Copyable()
    job = Job(metric=metric, field="q", spec_index=0, in_worker=False, todo=todo[:, 0])
    threads_before = torch.get_num_threads()
    with Lanes([job], 3, 1) as lanes:
        assert torch.get_num_threads() == 1
        done = _run([job], batches, lanes, ids, todo)
    assert torch.get_num_threads() == threads_before
    assert [b[0]["index"] for b in done] == list(range(0, 24, 2))
    assert list(job.scores) == ids  # replayed in the loader's order
    oracle = [float(np.asarray(im, dtype=np.float64).mean()) / 255 for im in images]
    np.testing.assert_allclose([job.scores[s] for s in ids], oracle, atol=1e-6)
    assert job.num_scored == 24 and not job.failures
    assert copyable.overlap["max_total"] >= 2  # two lanes met at the barrier
    assert copyable.overlap["max_per_copy"] == 1  # never one copy in two lanes at once
    assert len(copyable.active) == 3 and id(metric) in copyable.active  # lane 0 keeps the original
    assert len(copyable.modules) == 3  # deep copies: no module shared between lanes


def test_a_failing_sample_in_a_lane_is_isolated_like_in_one_lane(copyable):
    items, images = _items(12, seed=1)
    bad = 7
    copyable.fail_value = float(images[bad].double().mean()) / 255
    copyable.barrier = None
    ids = [f"s{i:02d}" for i in range(12)]
    todo = np.ones((12, 1), dtype=bool)
    batches = [items[i:i + 4] for i in range(0, 12, 4)]
    job = Job(metric=Copyable(), field="q", spec_index=0, in_worker=False, todo=todo[:, 0])
    with Lanes([job], 2, 1) as lanes:
        _run([job], batches, lanes, ids, todo)
    assert list(job.failures) == [ids[bad]] and "ValueError: cannot score this one" in job.failures[ids[bad]]
    assert job.scores[ids[bad]] is None and job.num_scored == 11
    oracle = [float(np.asarray(im, dtype=np.float64).mean()) / 255 for im in images]
    np.testing.assert_allclose([job.scores[s] for s in ids if s != ids[bad]],
                               [v for i, v in enumerate(oracle) if i != bad], atol=1e-6)


def test_an_error_outside_the_metric_reaches_the_caller_and_threads_are_restored(copyable):
    copyable.barrier = None
    items, _ = _items(8)
    job = Job(metric=Copyable(), field="q", spec_index=0, in_worker=False, todo=np.ones(8, dtype=bool))
    before = torch.get_num_threads()

    def score(batch, lane_jobs):
        if batch[0]["index"] == 4:
            raise OSError("disk gone")

    with pytest.raises(OSError, match="disk gone"):
        with Lanes([job], 2, 1) as lanes:
            list(scored_batches(lanes, [items[i:i + 2] for i in range(0, 8, 2)], score, [job]))
    assert torch.get_num_threads() == before


def test_lanes_open_only_on_cpu_with_threads_and_copyable_metrics():
    cpu = torch.device("cpu")

    def job(metric, in_worker=False):
        return Job(metric=metric, field="q", spec_index=0, in_worker=in_worker, todo=np.ones(1, dtype=bool))

    with open_lanes([job(Copyable())], cpu, threads=2) as lanes:
        assert isinstance(lanes, Lanes) and lanes.n == 2 and lanes.threads_per_lane == 1
    with open_lanes([job(Copyable())], cpu, threads=1) as lanes:
        assert lanes is None
    with open_lanes([job(Copyable())], torch.device("cuda"), threads=8) as lanes:
        assert lanes is None

    class Stateful(Copyable):  # keeps state between calls: never copied
        supports_lanes = False

    with open_lanes([job(Copyable()), job(Stateful())], cpu, threads=4) as lanes:
        assert lanes is None
    with open_lanes([job(Stateful(), in_worker=True)], cpu, threads=4) as lanes:
        assert lanes is None  # nothing scores in the main process
    worker, main = Copyable(), Copyable()  # a metric of the loader workers is never copied into lanes
    lanes = Lanes([job(worker, in_worker=True), job(main)], 3, 1)
    metrics = [[lane_job.metric for lane_job in lanes._free.get_nowait()] for _ in range(3)]
    assert [m[0] is worker for m in metrics] == [True] * 3
    assert [m[1] is main for m in metrics] == [True, False, False]


@pytest.fixture
def two_threads():
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(before)


def test_aligned_on_real_photos_through_two_lanes_equals_the_metric_called_directly(
        imagenet_files, make_dataset, two_threads, lanes_opened):
    files = imagenet_files[:10]
    ds = make_dataset(files)
    res = dq.compute_quality(ds, "aligned", batch_size=2, num_workers=0)
    assert lanes_opened == [(2, 1)] and res.num_scored == 10
    metric = dq.create_metric("aligned")
    with torch.inference_mode():
        direct = metric.score(to_float(torch.stack([prepare(read_image(f), metric.input_spec) for f in files])))
    by_path = dict(zip(ds.values("filepath"), ds.values("iqa_aligned")))
    np.testing.assert_allclose([by_path[f] for f in files], direct.double().numpy(), atol=2e-3)


def test_a_slow_batch_never_waits_on_a_lane_held_by_a_later_one():
    """Batch 0 cannot finish before batch 2 has been scored: with 2 lanes, batch 2 needs the
    lane batch 1 used while the caller still waits on batch 0 (a lane kept until the caller
    replays it deadlocks here)."""
    items, _ = _items(6)
    batches = [items[i:i + 2] for i in range(0, 6, 2)]
    job = Job(metric=Copyable(), field="q", spec_index=0, in_worker=False, todo=np.ones(6, dtype=bool))
    third_done, waited = threading.Event(), []

    def score(batch, lane_jobs):
        first = batch[0]["index"]
        if first == 0:
            waited.append(third_done.wait(timeout=30))
        for item in batch:
            lane_jobs[0].record(f"s{item['index']}", float(item["index"]), None)
        if first == 4:
            third_done.set()

    with Lanes([job], 2, 1) as lanes:
        done = list(scored_batches(lanes, batches, score, [job]))
    assert waited == [True]
    assert [b[0]["index"] for b in done] == [0, 2, 4] and list(job.scores) == [f"s{i}" for i in range(6)]


class Heavy(Copyable):
    """Holds 4 MiB of weights (a weight and a bias), in a list of objects holding modules (as
    aligned holds its backbones)."""

    def __init__(self):
        super().__init__()

        class Holder:
            pass

        self.parts = [Holder()]
        self.parts[0].model = torch.nn.Linear(1024, 1023)  # 4 MiB of float32, weight and bias
        self.parts[0].same = self.parts[0].model  # shared: counted once


def test_copies_stay_within_the_weight_budget(monkeypatch):
    job = Job(metric=Heavy(), field="q", spec_index=0, in_worker=False, todo=np.ones(1, dtype=bool))
    assert weight_bytes(job.metric) == (1024 * 1023 + 1023) * 4
    cpu = torch.device("cpu")
    size = weight_bytes(job.metric)
    monkeypatch.setattr(lanes_module, "COPY_BUDGET_BYTES", 2 * size)  # two copies fit
    with open_lanes([job], cpu, threads=4) as lanes:
        assert lanes.n == 3 and lanes.threads_per_lane == 1
    monkeypatch.setattr(lanes_module, "COPY_BUDGET_BYTES", size - 1)  # not one copy
    with open_lanes([job], cpu, threads=4) as lanes:
        assert lanes is None


def test_without_lanes_batches_are_scored_in_order_into_the_jobs_themselves():
    items, images = _items(6)
    job = Job(metric=Copyable(), field="q", spec_index=0, in_worker=False, todo=np.ones(6, dtype=bool))
    seen = []

    def score(batch, lane_jobs):
        seen.append((batch[0]["index"], lane_jobs[0] is job))
        for item in batch:
            lane_jobs[0].record(f"s{item['index']}", float(item["index"]), None)

    done = list(scored_batches(None, [items[i:i + 2] for i in range(0, 6, 2)], score, [job]))
    assert seen == [(0, True), (2, True), (4, True)] and [b[0]["index"] for b in done] == [0, 2, 4]
    assert job.scores == {f"s{i}": float(i) for i in range(6)}


def test_a_metric_that_cannot_be_copied_scores_in_one_lane():
    class Locked(Copyable):
        def __init__(self):
            super().__init__()
            self.lock_held = threading.Lock()  # deepcopy refuses locks

    job = Job(metric=Locked(), field="q", spec_index=0, in_worker=False, todo=np.ones(1, dtype=bool))
    with open_lanes([job], torch.device("cpu"), threads=2) as lanes:
        assert lanes is None
