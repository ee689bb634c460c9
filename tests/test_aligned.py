"""The DNN-aligned metric on real photos with real pretrained weights."""

import csv
import os

import pytest
import torch

import fiftyone_dnniqa as dq
from fiftyone_dnniqa.metrics.backbones import load_backbone
from fiftyone_dnniqa.corruptions import corrupt
from fiftyone_dnniqa.core.images import prepare, read_image, to_float
from fiftyone_dnniqa.metrics.aligned import STATISTICS, confidence
from fiftyone_dnniqa.metrics.weights import MissingWeightsError

from conftest import IMAGENET


@pytest.fixture(scope="module")
def metric():
    return dq.create_metric("aligned")


@pytest.fixture(scope="module")
def photos(imagenet_files, metric):
    picks = imagenet_files[::25][:20]
    return to_float(torch.stack([prepare(read_image(f), metric.input_spec) for f in picks]))


def test_registry_exposes_aligned(metric):
    assert "aligned" in dq.list_metrics(source="dnniqa")
    assert metric.higher_is_better and not metric.needs_reference and not metric.needs_labels
    assert metric.input_spec.crop == 224 and metric.input_spec.resize == 256


def test_offline_weights_are_real_imagenet_weights(imagenet_files, metric):
    """The packaged EfficientNet-Lite0 classifies real ImageNet photos correctly."""
    labels = {}
    with open(os.path.join(IMAGENET, "labels.csv")) as f:
        for row in csv.DictReader(f):
            labels[row["filename"]] = int(row["class_index"])
    bb = load_backbone("efficientnet_lite0")
    files = imagenet_files[::10][:50]
    x = to_float(torch.stack([prepare(read_image(f), metric.input_spec) for f in files]))
    with torch.inference_mode():
        pred = bb.model(bb.normalize(x)).argmax(1).tolist()
    acc = sum(p == labels[os.path.basename(f)] for p, f in zip(pred, files)) / len(files)
    assert acc >= 0.7, acc  # about 0.89 on this sample; random would be 0.001


@pytest.mark.parametrize("corruption,level", [
    ("gaussian_blur", 3), ("gaussian_noise", 40), ("jpeg", 5),
])
def test_clean_ranks_above_corrupted(metric, photos, corruption, level):
    clean = metric.score(photos)
    bad = metric.score(corrupt(photos, corruption, level, generator=torch.Generator().manual_seed(0)))
    assert (clean > bad).float().mean() >= 0.75
    assert clean.mean() > bad.mean() + 0.15


def test_severity_is_monotone_on_average(metric, photos):
    means = [metric.score(corrupt(photos, "gaussian_blur", s)).mean().item() for s in (0.5, 2, 5)]
    assert means[0] > means[1] > means[2]


def test_scores_are_deterministic(metric, photos):
    assert torch.equal(metric.score(photos[:4]), metric.score(photos[:4]))
    assert torch.allclose(metric.score(photos[:4]), dq.create_metric("aligned").score(photos[:4]))


def test_statistics():
    logits = torch.tensor([[4.0, 0.0, 0.0], [1.0, 1.0, 1.0]])
    for s in STATISTICS:
        c = confidence(logits, s)
        assert c[0] > c[1], s  # a peaked prediction is more confident than a flat one
    assert torch.allclose(confidence(logits, "neg_entropy")[1], torch.tensor(0.0), atol=1e-6)
    assert torch.allclose(confidence(logits, "margin")[1], torch.tensor(0.0))
    with pytest.raises(ValueError):
        dq.create_metric("aligned", statistic="nope")


def test_aligned_through_the_engine(imagenet_files, make_dataset):
    ds = make_dataset(imagenet_files[:10])
    res = dq.compute_quality(ds, "aligned", batch_size=4, metric_options={"statistic": "margin"})
    assert res.num_scored == 10 and ds.count("iqa_aligned") == 10
    assert all(0 <= v <= 1 for v in ds.values("iqa_aligned"))
    assert dq.get_quality_run_info(ds, "iqa_aligned").config.metric_options["statistic"] == "margin"


def test_missing_backbone_weights_fail_clearly():
    with pytest.raises(MissingWeightsError) as e:
        load_backbone("torchvision:resnet18")
    assert "resnet18" in str(e.value) and "checkpoints" in str(e.value)
    with pytest.raises(ValueError, match="Unknown backbone"):
        load_backbone("nope")
