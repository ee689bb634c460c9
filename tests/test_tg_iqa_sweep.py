"""TG-IQA fitting and reloading, corruption sweeps, difficulty views: real photos, real datasets."""

import csv
import json
import os

import fiftyone as fo
import fiftyone.operators as foo
import numpy as np
import pytest
import torch

import fiftyone_dnniqa as dq
from fiftyone_dnniqa.metrics.tg_iqa import CONFIG_FILE, WEIGHTS_FILE

from conftest import IMAGENET


def _labelled(imagenet_files, make_dataset, k, start=0, step=7):
    with open(os.path.join(IMAGENET, "labels.csv")) as f:
        names = {r["filename"]: r["class_name"] for r in csv.DictReader(f)}
    files = imagenet_files[start::step][:k]
    return make_dataset(files, ground_truth=[fo.Classification(label=names[os.path.basename(p)]) for p in files])


@pytest.fixture(scope="module")
def tg_head(tmp_path_factory, imagenet_files):
    import fiftyone as fo

    with open(os.path.join(IMAGENET, "labels.csv")) as f:
        names = {r["filename"]: r["class_name"] for r in csv.DictReader(f)}
    files = imagenet_files[::10][:40]
    ds = fo.Dataset()
    ds.add_samples([fo.Sample(filepath=p, ground_truth=fo.Classification(label=names[os.path.basename(p)]))
                    for p in files], progress=False)
    path = str(tmp_path_factory.mktemp("tg") / "head")
    calls = []
    metric = dq.fit_tg_iqa(ds, "ground_truth", path, corruptions=["gaussian_noise", "defocus_blur",
                                                                   "motion_blur", "pixelate"],
                           copies=4, epochs=200, progress=lambda f, label: calls.append(f))
    ds.delete()
    return metric, path, calls


def test_tg_iqa_fits_saves_without_pickle_and_reloads(tg_head):
    metric, path, calls = tg_head
    assert sorted(os.listdir(path)) == sorted([CONFIG_FILE, WEIGHTS_FILE])
    with open(os.path.join(path, WEIGHTS_FILE), "rb") as f:
        assert not f.read(2).startswith(b"PK")  # safetensors, not a torch pickle zip
    cfg = json.load(open(os.path.join(path, CONFIG_FILE)))
    assert cfg["num_examples"] == 160 and 0 < cfg["mean_correct"] < 1
    assert calls and calls[-1] == pytest.approx(1.0)
    again = dq.create_metric("tg_iqa", path=path)
    x = torch.rand(3, 3, 224, 224)
    assert torch.equal(metric.score(x), again.score(x))
    assert dq.metric_traits("tg_iqa")["higher_is_better"]
    with pytest.raises(FileExistsError):
        dq.fit_tg_iqa(fo.Dataset(), "ground_truth", path)


def test_tg_iqa_ranks_clean_above_corrupted_on_unseen_images(tg_head, imagenet_files):
    from fiftyone_dnniqa.corruptions import apply_corruption
    from fiftyone_dnniqa.core.images import prepare, read_image, to_float

    metric, _, _ = tg_head
    files = imagenet_files[5::10][:16]  # not used for fitting
    x = to_float(torch.stack([prepare(read_image(f), metric.input_spec) for f in files]))
    clean = metric.score(x)
    gen = torch.Generator().manual_seed(1)
    for name in ("gaussian_noise", "zoom_blur"):  # one seen, one unseen corruption
        bad = metric.score(torch.stack([apply_corruption(im, name, 4, generator=gen) for im in x]))
        assert (clean > bad).float().mean() >= 0.75, name


def test_tg_iqa_errors():
    with pytest.raises(ValueError, match="path"):
        dq.create_metric("tg_iqa")
    with pytest.raises(FileNotFoundError, match="fit_tg_iqa"):
        dq.create_metric("tg_iqa", path="/nonexistent/head")


def test_sweep_dataset(imagenet_files, make_dataset, tmp_path):
    src = _labelled(imagenet_files, make_dataset, 3)
    src.add_sample(fo.Sample(filepath=str(tmp_path / "missing.jpg")))
    out = tmp_path / "sweep"
    ds = dq.build_sweep(src, str(out), name="sweep-test", corruptions=["gaussian_noise", "dodge_karam", "camera"],
                        severities=[1, 5])
    try:
        assert len(ds) == 3 * (1 + 8 * 2)
        assert set(ds.distinct("corruption")) == {"clean", "gaussian_noise", "dk_gaussian_blur", "dk_gaussian_noise",
                                                  "dk_jpeg", "dk_jpeg2000", "dk_contrast", "low_light", "lens_dirt"}
        assert ds.distinct("severity") == [0, 1, 5]
        assert len(ds.info["skipped"]) == 1
        clean = ds.match(fo.ViewField("corruption") == "clean")
        assert set(clean.values("clean_id")) == set(src.values("id")[:3])
        assert all(os.path.isfile(p) for p in ds.values("filepath"))
        assert all(p.startswith(str(out)) for p in ds.values("filepath"))
        assert ds.values("ground_truth.label")[:17] == [src.first().ground_truth.label] * 17
        from fiftyone_dnniqa.core.images import read_image

        # the camera suite's low light at severity 5: five stops darker in linear light
        dark = ds.match((fo.ViewField("corruption") == "low_light") & (fo.ViewField("severity") == 5))
        for path, ref in zip(dark.values("filepath"), dark.values("reference_filepath")):
            assert read_image(path).float().mean() < 0.4 * read_image(ref).float().mean()

        im = read_image(ds.values("filepath")[1])
        assert tuple(im.shape) == (3, 224, 224)
        # heavier severity moves a full-reference score the right way
        dq.compute_quality(ds, "psnr", reference_field="reference_filepath")
        noise = ds.match(fo.ViewField("corruption") == "gaussian_noise")
        s1 = np.mean(noise.match(fo.ViewField("severity") == 1).values("iqa_psnr"))
        s5 = np.mean(noise.match(fo.ViewField("severity") == 5).values("iqa_psnr"))
        assert s1 > s5 + 3
        # reproducible: a rebuild reuses the files and gives the same pixels
        before = open(ds.values("filepath")[1], "rb").read()
        ds2 = dq.build_sweep(src, str(out), name="sweep-test", corruptions=["gaussian_noise"], severities=[1],
                             overwrite=True)
        assert open(ds2.values("filepath")[1], "rb").read() == before
    finally:
        for n in ("sweep-test",):
            if fo.dataset_exists(n):
                fo.delete_dataset(n)
    with pytest.raises(ValueError, match="unknown corruption or suite"):
        dq.build_sweep(src, str(out), name="x", corruptions=["nope"])


def test_sweep_operator(imagenet_files, make_dataset, tmp_path, installed_plugin):
    from fiftyone_dnniqa.app.plugin import PLUGIN_NAME

    src = _labelled(imagenet_files, make_dataset, 2, start=3)
    res = foo.execute_operator(f"{PLUGIN_NAME}/build_corruption_sweep", ctx={
        "view": src.view(), "params": {"corruptions": ["defocus_blur"], "severities": [2], "name": "op-sweep",
                                       "output_dir": str(tmp_path / "o"), "crop": 224}})
    try:
        assert res.result["samples"] == 4 and fo.load_dataset("op-sweep").count("reference_filepath") == 4
    finally:
        if fo.dataset_exists("op-sweep"):
            fo.delete_dataset("op-sweep")


def test_hard_samples_views_tags_and_saves(make_dataset, tmp_path):
    files = [str(tmp_path / f"{i}.jpg") for i in range(20)]
    ds = make_dataset(files)
    ds.add_sample_field("q", fo.FloatField)
    ds.set_values("q", [float(i) for i in range(19)] + [None])
    with pytest.raises(ValueError, match="higher_is_better"):
        dq.hard_samples(ds, "q", k=3)
    v = dq.hard_samples(ds, "q", k=3, higher_is_better=True)
    assert v.values("q") == [0.0, 1.0, 2.0]
    assert dq.hard_samples(ds, "q", k=3, higher_is_better=False).values("q") == [18.0, 17.0, 16.0]
    assert dq.hard_samples(ds, "q", fraction=0.1, higher_is_better=True).values("q") == [0.0, 1.0]
    assert dq.hard_samples(ds, "q", threshold=4, higher_is_better=True, create_index=True).count() == 5
    assert "q" in ds.list_indexes()
    with pytest.raises(ValueError, match="exactly one"):
        dq.hard_samples(ds, "q", k=1, fraction=0.5, higher_is_better=True)
    assert dq.tag_hard_samples(v, "hard") == 3 and ds.count_sample_tags() == {"hard": 3}
    dq.save_hard_view(v, "hardest")
    assert ds.load_saved_view("hardest").values("q") == [0.0, 1.0, 2.0]
    with pytest.raises(ValueError, match="already has"):
        dq.save_hard_view(v, "hardest")


def test_find_hard_samples_operator(imagenet_files, make_dataset, installed_plugin):
    from fiftyone_dnniqa.app.plugin import PLUGIN_NAME

    ds = make_dataset(imagenet_files[:12])
    dq.compute_quality(ds, "entropy")
    res = foo.execute_operator(f"{PLUGIN_NAME}/find_hard_samples", ctx={
        "view": ds.view(), "params": {"field": "iqa_entropy", "mode": "count", "value": 4, "tag": "hard",
                                      "view_name": "hard4"}})
    assert res.result["count"] == 4 and ds.count_sample_tags()["hard"] == 4
    lowest = sorted(ds.values("iqa_entropy"))[:4]
    assert sorted(ds.load_saved_view("hard4").values("iqa_entropy")) == lowest


def test_tg_iqa_feature_sets(tg_head, make_dataset):
    from fiftyone_dnniqa.metrics.tg_iqa import FEATURE_SETS

    metric, _, _ = tg_head
    assert metric.config["features"] == "confidence" and metric.config["in_features"] == 11
    assert FEATURE_SETS == ("confidence", "pooled")
    with pytest.raises(ValueError, match="features"):
        dq.fit_tg_iqa(make_dataset(), "ground_truth", "/tmp/never-written", features="nope")
