"""The user's path with a real detector (issue 27, item 5): D2Go's real predictions on real
photos and on blurred copies of them, ``compute_quality(..., patches_field="predictions")``,
FiftyOne's ``evaluate_detections``, ``object_statistics`` and the panel's object mode, each
number checked against a hand count, sklearn or scipy.

The ground truth is D2Go's own detections on the clean photos at score >= 0.7 (pseudo
ground truth: no human boxes exist for these photos); the predictions are D2Go's
detections at score >= 0.5 on each sample, clean or blurred. D2Go runs once per module.
"""

import os
import sys

import fiftyone as fo
import numpy as np
import pytest
import scipy.stats
import torch
from conftest import ROOT, _missing_data
from PIL import Image
from sklearn.metrics import roc_auc_score

import fiftyone_dnniqa as dq
from fiftyone_dnniqa.app.object_panel import object_data
from fiftyone_dnniqa.core.images import prepare, read_image, to_float
from fiftyone_dnniqa.corruptions.table import apply_corruption

sys.path.insert(0, os.path.join(ROOT, "benchmarks"))
import detectors

REF_SCORE, PRED_SCORE = 0.7, 0.5
#: photos with a reference kept; each also blurred at two severities
PHOTOS, SEVERITIES = 4, (3, 5)


@pytest.fixture(scope="module")
def d2go_dataset(imagenet_files, tmp_path_factory):
    """Real photos with D2Go references, and D2Go's real predictions on them and on their
    blurred copies; a detection evaluation and an ``aligned`` run on the predictions."""
    absent = detectors.missing(["d2go"])
    if absent:
        _missing_data(f"D2Go is not on disk: {absent} (set DNNIQA_MODELS)")
    d2go = detectors.load("d2go")
    folder = tmp_path_factory.mktemp("d2go")
    samples = []
    for path in imagenet_files[:40]:
        clean = read_image(path)
        refs = [d for d in d2go(clean) if d[4] >= REF_SCORE]
        if not refs:
            continue
        h, w = clean.shape[1:]
        gt = detectors.to_detections(refs, w, h)
        for d in gt.detections:
            d.confidence = None
        for sev in (0,) + SEVERITIES:
            img, fp = clean, path
            if sev:
                x = apply_corruption(clean.float() / 255, "gaussian_blur", sev, generator=torch.Generator().manual_seed(sev))
                img = (x * 255).round().to(torch.uint8)
                fp = str(folder / f"{len(samples)}_{sev}.png")
                Image.fromarray(img.permute(1, 2, 0).numpy()).save(fp)
            samples.append(fo.Sample(filepath=fp, ground_truth=gt.copy(),
                                     predictions=detectors.to_detections(d2go(img), w, h, PRED_SCORE)))
        if len(samples) == PHOTOS * (1 + len(SEVERITIES)):
            break
    if len(samples) < PHOTOS * (1 + len(SEVERITIES)):
        _missing_data("fewer than 4 sample photos in which D2Go detects something")
    ds = fo.Dataset()
    ds.add_samples(samples, progress=False)
    ds.compute_metadata(progress=False)
    dq.compute_quality(ds, "aligned", patches_field="predictions", num_workers=0, progress=False)
    ds.evaluate_detections("predictions", gt_field="ground_truth", eval_key="eval", iou=0.5, progress=False)
    yield ds
    ds.delete()


def _iou(a, b):
    """IoU of two relative ``[x, y, w, h]`` boxes."""
    w = min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0])
    h = min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1])
    inter = max(w, 0) * max(h, 0)
    return inter / (a[2] * a[3] + b[2] * b[3] - inter)


def _hand_match(gts, preds, thresh=0.5):
    """Per prediction True (matched) / False: by confidence, each takes the unmatched
    ground-truth box of its label with the highest IoU >= ``thresh`` (COCO's greedy rule)."""
    taken, matched = set(), {}
    for p in sorted(preds, key=lambda d: -d.confidence):
        cands = [(_iou(p.bounding_box, g.bounding_box), g.id) for g in gts if g.label == p.label and g.id not in taken]
        best = max(cands, default=(0.0, None))
        matched[p.id] = best[0] >= thresh
        if matched[p.id]:
            taken.add(best[1])
    return matched, len(gts) - len(taken)


def _arrays(ds):
    """Per prediction: aligned, matched (1/0) by the hand count, box area in pixels."""
    q, ok, area, missed = [], [], [], 0
    for s in ds.select_fields(["ground_truth", "predictions", "metadata"]):
        matched, fn = _hand_match(s.ground_truth.detections, s.predictions.detections)
        missed += fn
        for p in s.predictions.detections:
            q.append(p["iqa_aligned"])
            ok.append(float(matched[p.id]))
            area.append(p.bounding_box[2] * s.metadata.width * p.bounding_box[3] * s.metadata.height)
    return np.array(q), np.array(ok), np.array(area), missed


def test_d2go_predictions_scored_evaluated_and_related_to_quality(d2go_dataset):
    ds = d2go_dataset
    q, ok, area, missed = _arrays(ds)
    # FiftyOne's evaluation agrees with the hand count, and every prediction was scored
    assert ds.sum("eval_tp") == ok.sum() and ds.sum("eval_fp") == (1 - ok).sum() and ds.sum("eval_fn") == missed
    assert np.isfinite(q).all() and len(q) == ds.count("predictions.detections")
    assert 0 < ok.sum() < len(ok), "blurred copies give both matched and false predictions"
    st = dq.object_statistics(ds, "iqa_aligned", eval_key="eval", side="pred", n_boot=200)
    assert st.n_objects == st.n_scored == len(q) and st.higher_is_better
    assert st.quality["auroc"]["estimate"] == pytest.approx(roc_auc_score(ok, q), abs=1e-9)
    assert st.quality["spearman"]["estimate"] == pytest.approx(scipy.stats.spearmanr(q, ok)[0], abs=1e-9)
    assert st.size["auroc"]["estimate"] == pytest.approx(roc_auc_score(ok, area), rel=1e-6)
    # within tertiles of box area, by hand: per stratum AUROC weighted by its pairs
    cuts = np.quantile(area, [1 / 3, 2 / 3])
    codes = np.searchsorted(cuts, area, side="right")
    num = den = 0.0
    for s in range(3):
        m = codes == s
        assert st.strata[s]["n"] == m.sum() and st.strata[s]["rate"] == pytest.approx(ok[m].mean())
        if 0 < ok[m].sum() < m.sum():
            w = ok[m].sum() * (1 - ok[m]).sum()
            num, den = num + w * roc_auc_score(ok[m], q[m]), den + w
    assert st.given_size["estimate"] == pytest.approx(num / den, abs=1e-9)


def test_the_panels_object_mode_shows_the_same_numbers(d2go_dataset):
    ds = d2go_dataset
    q, ok, _, _ = _arrays(ds)
    data = object_data(ds, "predictions_iqa_aligned", "eval")
    s = data["summary"]
    assert (s["rate"], s["correct"], s["error"], s["n_objects"]) == ("precision", "matched", "false", len(q))
    quality_row, area_row = data["table"]
    assert float(quality_row["auroc"].split()[0]) == pytest.approx(roc_auc_score(ok, q), abs=5e-4)
    assert quality_row["n"] == len(q) and area_row["score"] == "box area"
    assert sum(r["n"] for r in data["strata"]) == len(q)
    # the bars: precision by quality bin, each bin's rate a hand count of its predictions
    bars = data["bars"][0]
    assert sum(int(t.split("=")[1]) for t in bars["text"]) == len(q)
    edges = np.unique(np.quantile(q, np.linspace(0, 1, 6)))
    hand = [ok[(q >= lo) & ((q < hi) if i < len(edges) - 2 else (q <= hi))]
            for i, (lo, hi) in enumerate(zip(edges[:-1], edges[1:]))]
    hand = [b for b in hand if len(b)]
    assert [int(t.split("=")[1]) for t in bars["text"]] == [len(b) for b in hand]
    assert bars["y"] == pytest.approx([b.mean() for b in hand], abs=1e-12)


def test_each_predictions_score_is_the_metric_on_its_crop_by_hand(d2go_dataset):
    """Each prediction's ``iqa_aligned`` is ``aligned`` called directly on the box grown by
    20% (10% a side, FiftyOne's ``alpha``), clipped to the image, cut from the decoded photo."""
    metric = dq.create_metric("aligned")
    for s in d2go_dataset.select_fields(["predictions", "metadata"]):
        img = read_image(s.filepath)
        h, w = img.shape[1:]
        crops, stored = [], []
        for p in s.predictions.detections:
            x, y, bw, bh = p.bounding_box
            left, top = max(0, int(np.floor((x - bw / 10) * w + 1e-6))), max(0, int(np.floor((y - bh / 10) * h + 1e-6)))
            right = min(w, int(np.ceil((x + bw * 1.1) * w - 1e-6)))
            bottom = min(h, int(np.ceil((y + bh * 1.1) * h - 1e-6)))
            crops.append(prepare(img[:, top:bottom, left:right], metric.input_spec))
            stored.append(p["iqa_aligned"])
        if crops:
            direct = metric.score(to_float(torch.stack(crops))).tolist()
            assert stored == pytest.approx(direct, abs=1e-4)
