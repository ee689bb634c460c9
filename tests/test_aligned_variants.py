"""aligned_task and aligned_fr on real photos; labels through the engine."""

import csv
import os

import fiftyone as fo
import pytest
import torch

import fiftyone_dnniqa as dq
from fiftyone_dnniqa.metrics.backbones import match_classes
from fiftyone_dnniqa.corruptions import corrupt
from fiftyone_dnniqa.core.images import prepare, read_image, to_float
from fiftyone_dnniqa.metrics.aligned import grouped_logits

from conftest import IMAGENET


def _labels():
    with open(os.path.join(IMAGENET, "labels.csv")) as f:
        return {r["filename"]: r for r in csv.DictReader(f)}


@pytest.fixture(scope="module")
def picks(imagenet_files):
    files = imagenet_files[::25][:20]
    rows = _labels()
    return files, [rows[os.path.basename(f)]["class_name"] for f in files]


@pytest.fixture(scope="module")
def photos(picks):
    from fiftyone_dnniqa.metrics.base import InputSpec

    return to_float(torch.stack([prepare(read_image(f), InputSpec(256, 224)) for f in picks[0]]))


def test_match_classes_by_synonym_wnid_and_map():
    m = match_classes(["great_white_shark", "Tench", "n01440764", "man-eater", "crane"])
    assert m["great_white_shark"] == [2] and m["Tench"] == [0] and m["n01440764"] == [0]
    assert m["man-eater"] == [2]
    assert len(m["crane"]) == 2  # the bird and the machine
    assert match_classes(["dog"], class_map={"dog": range(151, 269)})["dog"][0] == 151
    with pytest.raises(ValueError, match="match no ImageNet class.*zebraa.*close: zebra"):
        match_classes(["zebraa"])


def test_grouped_logits_pool_probabilities():
    z = torch.tensor([[2.0, 1.0, 0.0, -1.0]])
    groups = torch.tensor([[True, True, False, False], [False, False, True, False]])
    g = grouped_logits(z, groups)
    p = torch.softmax(z[:, :3], 1)[0]
    assert torch.allclose(torch.softmax(g, 1)[0], torch.stack([p[0] + p[1], p[2]]))


def test_aligned_task_registered_and_needs_labels():
    assert {"aligned_task", "aligned_fr", "tg_iqa"} <= set(dq.list_metrics(source="dnniqa"))
    assert dq.metric_traits("aligned_task")["needs_labels"]
    assert dq.metric_traits("aligned_fr")["needs_reference"]
    m = dq.create_metric("aligned_task")
    with pytest.raises(ValueError, match="needs the task's classes"):
        m.score(torch.rand(1, 3, 224, 224))


@pytest.mark.parametrize("mode", ["set", "sample"])
def test_aligned_task_ranks_clean_above_corrupted(picks, photos, mode):
    files, names = picks
    m = dq.create_metric("aligned_task", classes=sorted(set(names)), label_mode=mode)
    kw = {"labels": names} if mode == "sample" else {}
    clean = m.score(photos, **kw)
    for c, level in (("gaussian_blur", 3), ("gaussian_noise", 60)):
        bad = m.score(corrupt(photos, c, level, generator=torch.Generator().manual_seed(0)), **kw)
        assert (clean > bad).float().mean() >= 0.75, (mode, c)
    assert torch.equal(clean, m.score(photos, **kw))  # deterministic


def test_aligned_task_all_imagenet_classes_equals_aligned(photos):
    from fiftyone_dnniqa.metrics.imagenet import imagenet_synsets

    full = dq.create_metric("aligned_task", classes=[w for w, _ in imagenet_synsets()])
    assert torch.allclose(full.score(photos[:4]), dq.create_metric("aligned").score(photos[:4]), atol=1e-6)


def test_aligned_task_sample_mode_unknown_label_is_nan(photos):
    m = dq.create_metric("aligned_task", classes=["tench", "goldfish"], label_mode="sample")
    s = m.score(photos[:2], labels=["tench", "not-a-class"])
    assert 0 <= s[0] <= 1 and torch.isnan(s[1])


def test_aligned_fr(photos):
    m = dq.create_metric("aligned_fr")
    same = m.score(photos[:6], photos[:6])
    assert torch.allclose(same, torch.ones(6, dtype=same.dtype), atol=1e-4)
    blurred = corrupt(photos[:6], "gaussian_blur", 4)
    s = m.score(blurred, photos[:6])
    assert (s < same - 0.05).all()
    for d in ("kl", "agreement"):
        assert (dq.create_metric("aligned_fr", divergence=d).score(blurred, photos[:6]) < 0.99).all()
    with pytest.raises(ValueError, match="reference"):
        m.score(photos[:2])


def test_engine_reads_label_field(picks, make_dataset):
    files, names = picks
    ds = make_dataset(files[:8], ground_truth=[fo.Classification(label=n) for n in names[:8]])
    ds.add_sample(fo.Sample(filepath=files[8]))  # unlabelled: recorded, not fatal
    with pytest.raises(ValueError, match="label_field"):
        dq.compute_quality(ds, "aligned_task")
    res = dq.compute_quality(ds, "aligned_task", field="q_set", label_field="ground_truth")
    assert res.num_scored == 9
    cfg = dq.get_quality_run_info(ds, "q_set").config
    assert cfg.label_field == "ground_truth" and cfg.metric_options["classes"] == sorted(set(names[:8]))
    res = dq.compute_quality(ds, "aligned_task", field="q_sample", label_field="ground_truth",
                             metric_options={"label_mode": "sample"})
    assert res.num_scored == 8 and res.num_failed == 1
    assert ds.count("q_sample") == 8
    assert "nan" in next(iter(res.failures.values())).lower()
    with pytest.raises(ValueError, match="Classification or string"):
        ds.add_sample_field("num", fo.IntField)
        dq.compute_quality(ds, "aligned_task", field="q3", label_field="num")


def test_engine_full_reference_aligned(picks, make_dataset, tmp_path):
    from fiftyone_dnniqa.corruptions import save_png

    files, _ = picks
    photo = to_float(prepare(read_image(files[0]), dq.create_metric("aligned").input_spec))
    clean, bad = str(tmp_path / "clean.png"), str(tmp_path / "bad.png")
    save_png(photo, clean)
    save_png(corrupt(photo, "gaussian_blur", 5), bad)
    ds = make_dataset([clean, bad], ref=[clean, clean])
    dq.compute_quality(ds, "aligned_fr", reference_field="ref")
    s_clean, s_bad = ds.values("iqa_aligned_fr")
    assert s_clean > 0.999 and s_bad < s_clean - 0.05


def test_tta_flip_averages_mirror_logits(photos):
    plain = dq.create_metric("aligned")
    flip = dq.create_metric("aligned", tta="flip")
    x = photos[:4]
    model = plain.backbones[0].model
    with torch.inference_mode():  # the weights' preprocessing by hand, not the metric's
        z = model((x * 255 - 127) / 128)
        zf = model((x.flip(-1) * 255 - 127) / 128)
    expected = torch.softmax((z + zf) / 2, 1).max(1).values.double()
    assert torch.allclose(flip.score(x), expected, atol=1e-5)
    assert flip.describe()["tta"] == "flip" and "tta" not in plain.describe()
    with pytest.raises(ValueError, match="tta"):
        dq.create_metric("aligned", tta="rotate")


def test_tta_multiscale_averages_probabilities_of_three_views(photos):
    from fiftyone_dnniqa.metrics.aligned import reduced_size

    plain = dq.create_metric("aligned")
    multi = dq.create_metric("aligned", tta="multiscale")
    x = photos[:4]
    assert reduced_size(224) == 176 and reduced_size(240) == 192 and reduced_size(260) == 208
    small = torch.nn.functional.interpolate(x, size=(176, 176), mode="bilinear", antialias=True,
                                            align_corners=False)
    model = plain.backbones[0].model
    with torch.inference_mode():  # the weights' preprocessing by hand, not the metric's
        views = [model((v * 255 - 127) / 128) for v in (x, x.flip(-1), small)]
    expected = torch.stack([torch.softmax(z, 1) for z in views]).mean(0).max(1).values.double()
    assert torch.allclose(multi.score(x), expected, atol=1e-5)
    assert multi.describe()["tta"] == "multiscale"
    assert torch.equal(multi.score(x), multi.score(x))  # deterministic


def test_tta_multiscale_ranks_clean_above_corrupted(photos):
    m = dq.create_metric("aligned", tta="multiscale")
    clean = m.score(photos)
    for c, level in (("gaussian_blur", 3), ("gaussian_noise", 40)):
        bad = m.score(corrupt(photos, c, level, generator=torch.Generator().manual_seed(0)))
        assert (clean > bad).float().mean() >= 0.75, c
        assert clean.mean() > bad.mean() + 0.15, c


def test_tta_multiscale_works_through_task_and_fr_variants(picks, photos):
    files, names = picks
    task = dq.create_metric("aligned_task", classes=sorted(set(names)), tta="multiscale")
    s = task.score(photos[:4])
    assert s.shape == (4,) and bool(((s > 0) & (s <= 1)).all())
    fr = dq.create_metric("aligned_fr", tta="multiscale")
    same = fr.score(photos[:4], photos[:4])
    assert torch.allclose(same, torch.ones(4, dtype=same.dtype), atol=1e-4)


def test_tta_multiscale_rejects_energy_and_fixed_size_backbones():
    from fiftyone_dnniqa.metrics.backbones import Backbone
    from fiftyone_dnniqa.metrics.aligned import AlignedMetric

    with pytest.raises(ValueError, match="energy"):
        dq.create_metric("aligned", tta="multiscale", statistic="energy")

    class FixedSize(torch.nn.Module):  # like a ViT with a fixed patch grid
        def forward(self, x):
            if x.shape[-1] != 224:
                raise RuntimeError(f"Input width ({x.shape[-1]}) doesn't match model (224)")
            return x.mean((2, 3))

    vit = Backbone("vit-like", FixedSize(), 224, 256, (0.5,) * 3, (0.5,) * 3, 3)
    with pytest.raises(ValueError, match="needs a backbone that accepts 176x176 inputs; vit-like does not"):
        AlignedMetric._check_reduced_input(vit)
