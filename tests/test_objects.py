"""Objects as first-class citizens: scoring each object's patch, object outcomes, hard objects.

Images are flat gray backgrounds with flat rectangles painted on the pixel grid, so a
transparent metric (:class:`Probe`, the mean pixel value) scores a patch cut without margin
exactly the rectangle's value: every expected score is known by construction. Object-mode
statistics run on real ``evaluate_detections`` results and are checked against scikit-learn
and scipy computed here, never against the code under test.
"""

import concurrent.futures
import logging

import numpy as np
import pytest
from PIL import Image
from scipy import stats
from sklearn.metrics import roc_auc_score

import fiftyone as fo
import fiftyone_dnniqa as dq
from fiftyone_dnniqa.core.images import InputSpec
from fiftyone_dnniqa.scoring import execute, execute_plan, loading, patch_execute, patch_writer, plan_quality
from fiftyone_dnniqa.scoring.runs import QualityRunResults, build_run_config
from fiftyone_dnniqa.scoring.shards import ShardStore, shard_specs
from fiftyone_dnniqa.core.boxes import polyline_box
from fiftyone_dnniqa.scoring.patches import pixel_box

from test_execute import LabelProbe, OtherProbe, Probe

W, H = 100, 80
BG = 40


def _painted(tmp_path, name, rects, fmt="png"):
    """A W x H gray image with rectangles ``(left, top, right, bottom, value)`` painted on."""
    a = np.full((H, W, 3), BG, np.uint8)
    for left, top, right, bottom, v in rects:
        a[top:bottom, left:right] = v
    p = tmp_path / f"{name}.{fmt}"
    Image.fromarray(a).save(p, quality=100) if fmt == "jpg" else Image.fromarray(a).save(p)
    return str(p)


def _det(rect, label="thing", **kw):
    left, top, right, bottom = rect[:4]
    return fo.Detection(label=label, bounding_box=[left / W, top / H, (right - left) / W, (bottom - top) / H], **kw)


#: per image: scorable rectangles (on the pixel grid, at least 8 px a side) and their values
RECTS = [
    [(8, 8, 32, 24, 200), (48, 40, 80, 72, 120)],
    [(0, 0, 16, 16, 90), (60, 8, 96, 40, 160), (24, 48, 56, 72, 230)],
    [(40, 24, 72, 56, 60)],
]
#: degenerate boxes, as [x, y, w, h], with the reason each must get
DEGENERATE = [([0.5, 0.5, 0.0, 0.2], "zero-area box"), ([1.2, 0.5, 0.2, 0.2], "box outside the image"),
              ([0.9, 0.9, 0.05, 0.05], "box under 8 px")]


def _boxes(tmp_path, make_dataset, fmt="png"):
    paths = [_painted(tmp_path, f"img{i}", r, fmt) for i, r in enumerate(RECTS)]
    ds = make_dataset(paths)
    for i, sample in enumerate(ds.iter_samples(autosave=True)):
        dets = [_det(r) for r in RECTS[i]]
        if i == 1:
            dets += [fo.Detection(label="thing", bounding_box=b) for b, _ in DEGENERATE]
        sample["gt"] = fo.Detections(detections=dets)
    return ds


@pytest.fixture
def boxes_dataset(tmp_path, make_dataset):
    return _boxes(tmp_path, make_dataset)


def _plan(samples, metric, **kw):
    kw.setdefault("num_workers", 0)
    kw.setdefault("decode", "workers")
    kw.setdefault("patch_margin", 0.0)
    return plan_quality(samples, metric, device="cpu", **kw)


def test_patch_geometry_by_hand():
    # [0.1, 0.2, 0.3, 0.4] in 200 x 100, margin 0.2: 3% / 4% more on each side
    assert pixel_box([0.1, 0.2, 0.3, 0.4], 200, 100, 0.2, 8) == ((14, 16, 86, 64), None)
    # partly outside: clipped to the image
    assert pixel_box([-0.1, 0.5, 0.3, 0.6], 200, 100, 0.0, 8) == ((0, 50, 40, 100), None)
    assert pixel_box(None, 200, 100)[1] == "no bounding box"
    assert pixel_box([0.1, 0.1, 0.0, 0.5], 200, 100)[1] == "zero-area box"
    assert pixel_box([1.1, 0.1, 0.2, 0.5], 200, 100)[1] == "box outside the image"
    assert pixel_box([0.1, 0.1, 0.03, 0.5], 200, 100, 0.5, 8)[1].startswith("box under 8 px (6x50")
    assert polyline_box([[[0.2, 0.3], [0.6, 0.1]], [[0.4, 0.9]]]) == pytest.approx([0.2, 0.1, 0.4, 0.8])
    assert polyline_box([]) is None


@pytest.mark.parametrize("decode, fmt, tol", [("workers", "png", 1e-3), ("device", "jpg", 2.0)])
def test_every_valid_object_scored_from_one_decode_with_aggregates(tmp_path, make_dataset, monkeypatch,
                                                                   decode, fmt, tol):
    ds = _boxes(tmp_path, make_dataset, fmt)
    reads = []  # (path, who decoded it)
    real_read, real_decode = loading.read_image, patch_execute.decode_jpegs
    monkeypatch.setattr(loading, "read_image", lambda p, m=None: reads.append((p, "workers")) or real_read(p, m))
    monkeypatch.setattr(patch_execute, "decode_jpegs", lambda items, *a: reads.extend(
        (it["path"], "device") for it in items if "jpeg" in it) or real_decode(items, *a))
    res = execute_plan(_plan(ds, Probe(), field="q", patches_field="gt", decode=decode))
    assert res.status == "completed" and res.key == "gt_q"
    # one decode per image, never one per object, on the side the plan asked for
    assert sorted(reads) == sorted((p, decode) for p in ds.values("filepath"))
    scores, errors = ds.values("gt.detections.q"), ds.values("gt.detections.q_error")
    for i, rects in enumerate(RECTS):
        assert scores[i][:len(rects)] == pytest.approx([r[4] for r in rects], abs=tol)
        assert errors[i][:len(rects)] == [None] * len(rects)
    assert scores[1][3:] == [None] * 3
    assert [e.split(" (")[0] for e in errors[1][3:]] == [r for _, r in DEGENERATE]
    assert res.num_scored == 6 and res.num_failed == 3
    means, mins = ds.values("gt_q"), ds.values("gt_q_min")
    for i, rects in enumerate(RECTS):
        vals = [r[4] for r in rects]
        assert means[i] == pytest.approx(np.mean(scores[i][:len(rects)]), abs=1e-9)
        assert means[i] == pytest.approx(sum(vals) / len(vals), abs=tol)
        assert mins[i] == pytest.approx(min(v for v in scores[i] if v is not None), abs=1e-9)


def _raise_at_batch(n, exc):
    """A probe hook that raises ``exc`` when the probe is given its ``n``-th batch."""
    def hook(probe):
        if len(probe.batches) == n:
            raise exc
    return hook


def test_an_interrupted_object_run_keeps_what_it_scored(boxes_dataset, monkeypatch, caplog):
    """Interrupted at the second batch (one object each): the first object's score is
    saved through the object writer, the run ends ``interrupted``; when that last save
    fails too, it is logged with the run's field and the run still ends."""
    plan = _plan(boxes_dataset, Probe(spec=InputSpec(), hook=_raise_at_batch(2, KeyboardInterrupt)), field="q",
                 patches_field="gt", batch_size=1)
    with pytest.raises(KeyboardInterrupt):
        execute_plan(plan)
    scores = [v for row in boxes_dataset.values("gt.detections.q") for v in (row or []) if v is not None]
    assert scores == pytest.approx([200.0], abs=1e-4)  # the first object of the first image
    assert boxes_dataset.get_run_info("gt_q").config.patches_field == "gt"
    assert dq.load_quality_run(boxes_dataset, "gt_q").status == "interrupted"

    def broken(self, dataset, jobs):
        raise RuntimeError("database gone")

    monkeypatch.setattr(patch_writer.ObjectValues, "flush", broken)
    plan = _plan(boxes_dataset, Probe(spec=InputSpec(), hook=_raise_at_batch(2, KeyboardInterrupt)), field="q",
                 patches_field="gt", batch_size=1, overwrite=True)
    with caplog.at_level(logging.ERROR, logger=execute.__name__), pytest.raises(KeyboardInterrupt):
        execute_plan(plan)
    assert [r.getMessage() for r in caplog.records if r.name == execute.__name__] == [
        "could not save the last scores of 'gt_q'"]
    assert dq.load_quality_run(boxes_dataset, "gt_q").status == "interrupted"


def test_two_metrics_on_objects_each_keep_their_run_and_clear_stale_errors(boxes_dataset):
    """Two metrics in one object run: each gets its attribute, aggregates and completed
    run record; an object whose earlier score failed loses that reason when rescored,
    in the second metric's attribute too (the first metric never had errors)."""
    ds = boxes_dataset
    view = ds.exclude(ds.values("id")[1])  # the images without degenerate boxes
    failing = OtherProbe(spec=InputSpec(), hook=_raise_at_batch(1, RuntimeError("planted failure")))
    execute_plan(_plan(view, failing, field="b", patches_field="gt", batch_size=1))
    assert [e for row in view.values("gt.detections.b_error") for e in row] == [
        "metric error: RuntimeError: planted failure", None, None]
    execute_plan(_plan(view, [Probe(), OtherProbe()], field=["a", "b"], patches_field="gt", overwrite=True))
    for attr in ("a", "b"):
        run = dq.load_quality_run(ds, f"gt_{attr}")
        assert (run.status, run.num_scored, run.num_failed) == ("completed", 3, 0)
        scores = [v for row in view.values(f"gt.detections.{attr}") for v in row]
        assert scores == pytest.approx([r[4] for i in (0, 2) for r in RECTS[i]], abs=1e-3)
        assert view.values(f"gt_{attr}") == pytest.approx([160.0, 60.0], abs=1e-3)
    assert [e for row in view.values("gt.detections.b_error") for e in row] == [None] * 3


def test_skip_failures_false_stops_an_object_run_at_its_first_failed_object(boxes_dataset):
    """A degenerate box is a failure too: without ``skip_failures`` the run stops before
    scoring, says which object and why, and ends ``failed``."""
    ds = boxes_dataset
    first_bad = ds.values("gt.detections.id")[1][len(RECTS[1])]
    probe = Probe()
    with pytest.raises(RuntimeError, match=rf"^could not score object {first_bad} \(gt_q\): zero-area box"):
        execute_plan(_plan(ds, probe, field="q", patches_field="gt", skip_failures=False))
    assert probe.batches == []
    run = dq.load_quality_run(ds, "gt_q")
    assert run.status == "failed" and "zero-area box" in run.error


def test_an_object_run_records_its_patch_settings(boxes_dataset):
    """The run record keeps the margin and smallest side an object run cropped with (a
    resume or a shard must crop the same way); an image run records neither."""
    execute_plan(_plan(boxes_dataset, Probe(), field="q", patches_field="gt", patch_margin=0.1, min_patch_side=4))
    cfg = boxes_dataset.get_run_info("gt_q").config
    assert (cfg.patches_field, cfg.patch_margin, cfg.min_patch_side) == ("gt", 0.1, 4)
    execute_plan(_plan(boxes_dataset, Probe(), field="whole"))
    cfg = boxes_dataset.get_run_info("whole").config
    assert getattr(cfg, "patch_margin", None) is None and getattr(cfg, "min_patch_side", None) is None


def test_margin_adds_context_by_hand(boxes_dataset):
    ds = boxes_dataset
    execute_plan(_plan(ds, Probe(spec=InputSpec()), field="q", patches_field="gt",
                       patch_margin=0.5))
    # image 2: rect 32 x 32 at (40, 24) grows by 8 px a side to 48 x 48: 32*32 of 60, the rest BG
    expected = (32 * 32 * 60 + (48 * 48 - 32 * 32) * BG) / (48 * 48)
    assert ds.values("gt.detections.q")[2][0] == pytest.approx(expected, abs=1e-3)


def test_resume_overwrite_and_delete(boxes_dataset):
    ds = boxes_dataset
    first = ds.values("gt.detections.id", unwind=True)[:2]  # the objects of image 0
    probe = Probe()
    execute_plan(_plan(ds.to_patches("gt").select(first), probe, field="q"))
    assert sum(probe.batches) == 2  # a patches view: only its objects
    assert ds.values("gt.detections.q")[1] == [None] * 6
    probe = Probe()
    res = execute_plan(_plan(ds, probe, field="q", patches_field="gt"))
    assert sum(probe.batches) == 4 and res.num_todo == 7  # resumed: the 4 valid objects left + 3 degenerate
    probe = Probe()
    execute_plan(_plan(ds, probe, field="q", patches_field="gt", overwrite=True))
    assert sum(probe.batches) == 6
    assert dq.list_quality_runs(ds, kind="objects") == ["gt_q"] and dq.list_quality_runs(ds, kind="images") == []
    with pytest.raises(ValueError, match="not 'other_probe'|holds scores"):
        execute_plan(_plan(ds, type("OtherProbe", (Probe,), {"name": "other_probe"})(), field="q",
                           patches_field="gt"))
    dq.delete_quality_run(ds, "gt_q")
    schema = ds.get_field_schema(flat=True)
    assert not {"gt_q", "gt_q_min", "gt.detections.q", "gt.detections.q_error"} & set(schema)
    assert "gt.detections.label" in schema and ds.count("gt.detections") == 9


def test_an_object_run_in_shards_merges(boxes_dataset):
    ds = boxes_dataset
    plan = _plan(ds, Probe(), field="q", patches_field="gt")
    specs = shard_specs(ds, 2)
    # what queuing the shards records (app.sharding.queue_shards)
    config = build_run_config(plan.metrics[0], "gt_q", patches=plan.patch_settings(0), shards=len(specs))
    ds.register_run("gt_q", config)
    ds.save_run_results("gt_q", QualityRunResults(ds, config, "gt_q", status="queued", num_samples=len(ds)))
    ShardStore().init(ds, "gt_q", specs, ["op0", "op1"])
    for spec in specs:
        execute_plan(_plan(ds, Probe(), field="q", patches_field="gt"), shard=spec)
    r = dq.load_quality_run(ds, "gt_q")
    assert r.status == "completed" and r.num_scored == 6 and r.num_failed == 3
    assert [v for s in ds.values("gt.detections.q") for v in s if v is not None] == pytest.approx(
        [x[4] for rects in RECTS for x in rects], abs=1e-3)
    assert ds.values("gt_q_min") == pytest.approx([min(x[4] for x in rects) for rects in RECTS], abs=1e-3)


def test_polylines_full_reference_and_object_labels(tmp_path, make_dataset):
    rects = [(8, 8, 40, 40, 180), (56, 24, 88, 64, 100)]
    img = _painted(tmp_path, "img", rects)
    ref = _painted(tmp_path, "ref", [(8, 8, 40, 40, 150), (56, 24, 88, 64, 130)])
    ds = make_dataset([img], ref=[ref])
    lines = [fo.Polyline(label=lab, points=[[(r[0] / W, r[1] / H), (r[2] / W, r[3] / H)]])
             for r, lab in zip(rects, ["cat", "dog"])]
    sample = ds.first()
    sample["lines"] = fo.Polylines(polylines=lines)
    sample.save()
    execute_plan(_plan(ds, Probe(needs_reference=True), field="fr", patches_field="lines", reference_field="ref"))
    assert ds.values("lines.polylines.fr")[0] == pytest.approx([180 - 150, 100 - 130], abs=1e-3)
    execute_plan(_plan(ds, LabelProbe(), field="lab", patches_field="lines"))
    classes = sorted(["cat", "dog"])  # the objects' own labels give the classes
    assert ds.values("lines.polylines.lab")[0] == pytest.approx(
        [1000 * classes.index("cat") + 180, 1000 * classes.index("dog") + 100], abs=1e-3)
    assert dq.patch_capable_fields(ds) == ["lines"]
    with pytest.raises(ValueError, match="Detections or Polylines"):
        plan_quality(ds, Probe(), patches_field="ref", device="cpu")
    with pytest.raises(ValueError, match="one number per image"):
        plan_quality(ds, type("RowProbe", (Probe,), {"name": "row_probe", "outputs": "classifications"})(),
                     patches_field="lines", device="cpu")
    with pytest.raises(ValueError, match="patch_margin"):
        plan_quality(ds, Probe(), patches_field="lines", patch_margin=-0.1, device="cpu")


def _assert_rects_scored_by_hand(ds, attribute):
    """Each painted rectangle's object scored its grey value (the valid objects come first)."""
    scores = ds.values(f"gt.detections.{attribute}")
    assert [s[:len(r)] for s, r in zip(scores, RECTS)] == [pytest.approx([x[4] for x in r], abs=1e-3)
                                                          for r in RECTS]


def test_per_image_metric_scores_objects_in_the_workers(boxes_dataset):
    ds = boxes_dataset
    execute_plan(_plan(ds, Probe(per_image=True), field="w", patches_field="gt", num_workers=1))
    _assert_rects_scored_by_hand(ds, "w")


def test_object_workers_forked_from_a_thread_pool_exit_cleanly(boxes_dataset, worker_exit_codes):
    ds = boxes_dataset
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        pool.submit(execute_plan, _plan(ds, Probe(), field="t", patches_field="gt", num_workers=2,
                                        batch_size=1)).result()
    _assert_rects_scored_by_hand(ds, "t")
    assert worker_exit_codes == [0, 0]


# ---------------------------------------------------------------------------
# Objects against outcomes (a real evaluate_detections)
# ---------------------------------------------------------------------------


def _evaluated(make_dataset, tmp_path, seed=0, n=60):
    """Objects of random sizes and qualities; an object is detected (a prediction on it)
    more often when large and of high quality; some predictions are false."""
    rng = np.random.default_rng(seed)
    path = _painted(tmp_path, "blank", [])
    ds = make_dataset([path] * n)
    ds.compute_metadata()
    for sample in ds.iter_samples(autosave=True):
        gts, preds = [], []
        for _ in range(4):
            w, h = rng.uniform(0.05, 0.3, 2)
            x, y = rng.uniform(0, 1 - w), rng.uniform(0, 1 - h)
            q = float(rng.uniform(0, 1))
            gts.append(fo.Detection(label="thing", bounding_box=[x, y, w, h], q=q))
            if rng.uniform() < 0.15 + 0.5 * q + 2 * w * h:
                preds.append(fo.Detection(label="thing", bounding_box=[x, y, w, h], confidence=0.9,
                                          q=q + float(rng.normal(0, 0.1))))
        w, h = rng.uniform(0.05, 0.3, 2)
        preds.append(fo.Detection(label="thing", bounding_box=[float(rng.uniform(0, 1 - w)), 0.0, w, h],
                                  confidence=0.5, q=float(rng.uniform(0, 0.6))))
        sample["gt"], sample["pred"] = fo.Detections(detections=gts), fo.Detections(detections=preds)
    ds.evaluate_detections("pred", gt_field="gt", eval_key="eval")
    return ds


def _within_strata_auroc(q, c, codes):
    num = den = 0.0
    for s in np.unique(codes):
        m = codes == s
        npos, nneg = c[m].sum(), (1 - c[m]).sum()
        if npos and nneg:
            num += roc_auc_score(c[m], q[m]) * npos * nneg
            den += npos * nneg
    return num / den


@pytest.mark.parametrize("side", ["gt", "pred"])
def test_object_statistics_equal_an_independent_computation(make_dataset, tmp_path, side):
    ds = _evaluated(make_dataset, tmp_path)
    field = "gt" if side == "gt" else "pred"
    status = np.array(ds.values(f"{field}.detections.eval", unwind=True))
    q = np.array(ds.values(f"{field}.detections.q", unwind=True), dtype=float)
    boxes = [b for v in ds.values(f"{field}.detections.bounding_box") for b in v]
    area = np.array([b[2] * b[3] * W * H for b in boxes])
    c = (status == "tp").astype(float)
    assert set(status) == ({"tp", "fn"} if side == "gt" else {"tp", "fp"})

    st = dq.object_statistics(ds, "q", eval_key="eval", side=side, higher_is_better=True, n_boot=200).to_dict()
    assert st["n_objects"] == len(c) and st["area_unit"] == "pixels"
    assert st["quality"]["auroc"]["estimate"] == pytest.approx(roc_auc_score(c, q))
    assert st["quality"]["spearman"]["estimate"] == pytest.approx(stats.spearmanr(q, c).statistic)
    assert st["size"]["auroc"]["estimate"] == pytest.approx(roc_auc_score(c, area))
    lo, hi = st["quality"]["auroc"]["ci_low"], st["quality"]["auroc"]["ci_high"]
    assert lo < st["quality"]["auroc"]["estimate"] < hi
    # the rate (recall or precision) by quality bin: quintiles, counted here
    edges = np.quantile(q, np.linspace(0, 1, 6))
    for k, b in enumerate(st["bins"]):
        m = (q >= edges[k]) & ((q <= edges[k + 1]) if k == 4 else (q < edges[k + 1]))
        assert b["n"] == m.sum() and b["mean_target"] == pytest.approx(c[m].mean())
    # size strata: tertiles of box area; quality's AUROC inside each, and pooled
    cuts = np.quantile(area, [1 / 3, 2 / 3])
    codes = np.searchsorted(cuts, area, side="right")
    for s, row in enumerate(st["strata"]):
        m = codes == s
        assert row["n"] == m.sum() and row["rate"] == pytest.approx(c[m].mean())
        assert row["auroc"]["estimate"] == pytest.approx(roc_auc_score(c[m], q[m]))
    assert st["given_size"]["estimate"] == pytest.approx(_within_strata_auroc(q, c, codes))
    assert st["labels"]["rate"] == ("recall" if side == "gt" else "precision")


def test_polyline_objects_are_measured_through_their_boxes(make_dataset):
    """Issue 14: a Polylines evaluation's objects get the area of the box around their
    points (as they are scored), in pixels from the image's size; by hand."""
    def tri(x, y, w, h, q):
        return fo.Polyline(label="thing", points=[[[x, y], [x + w, y], [x + w, y + h]]], closed=True,
                           filled=True, q=q)

    ds = make_dataset(["/nonexistent/p0.png", "/nonexistent/p1.png"])
    shapes = [[(0.1, 0.2, 0.4, 0.4, 0.9), (0.6, 0.6, 0.2, 0.1, 0.2)], [(0.3, 0.1, 0.5, 0.3, 0.7)]]
    for sample, objs in zip(ds, shapes):
        sample["metadata"] = fo.ImageMetadata(width=200, height=100)
        sample["gt"] = fo.Polylines(polylines=[tri(*o) for o in objs])
        sample["pred"] = fo.Polylines(polylines=[tri(*o) for o in objs[:1]])  # the first is found
        sample.save()
    ds.evaluate_detections("pred", gt_field="gt", eval_key="eval")
    out = dq.object_outcomes(ds, "eval", side="gt", quality="q")
    assert out.area_unit == "pixels"
    assert out.area == pytest.approx([0.4 * 0.4 * 20000, 0.2 * 0.1 * 20000, 0.5 * 0.3 * 20000])
    assert list(out.outcome) == ["tp", "fn", "tp"] and out.quality == pytest.approx([0.9, 0.2, 0.7])
    ds.set_values("metadata", [None, None])  # sizes unknown: a fraction of the image
    out = dq.object_outcomes(ds, "eval", side="pred")
    assert out.area_unit == "fraction of the image" and out.area == pytest.approx([0.16, 0.15])


def test_hard_objects_tag_and_save(boxes_dataset):
    ds = boxes_dataset
    execute_plan(_plan(ds, Probe(), field="q", patches_field="gt"))
    scores = sorted(v for v in ds.values("gt.detections.q", unwind=True) if v is not None)
    view = dq.hard_objects(ds, "gt", "q", k=3)
    assert view.values("gt.q") == pytest.approx(scores[:3])
    assert dq.hard_samples(ds, "q", fraction=0.5, patches_field="gt").values("gt.q") == pytest.approx(scores[:3])
    assert dq.hard_objects(ds, "gt", "q", threshold=120, higher_is_better=False).values("gt.q") == \
        pytest.approx(sorted([s for s in scores if s >= 120], reverse=True))
    assert dq.tag_hard_samples(view, "hard") == 3
    assert ds.count_label_tags() == {"hard": 3}
    dq.save_hard_view(view, "hard-objects")
    assert ds.load_saved_view("hard-objects").values("gt.q") == pytest.approx(scores[:3])
    lo, hi = scores[1], scores[3]
    assert sorted(dq.object_bin_view(ds, "gt", "q", lo, hi).values("gt.q")) == pytest.approx(scores[1:3])
    runs = dq.object_quality_runs(ds)
    assert runs == [{"key": "gt_q", "patches_field": "gt", "attribute": "q", "metric": "probe",
                     "higher_is_better": True}]
