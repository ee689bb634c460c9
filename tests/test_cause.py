"""The cause head: which imaging condition a real photograph suffers from, stored as labels."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from scipy import ndimage
from safetensors.torch import save_file

from conftest import _missing_data
from fiftyone_dnniqa.core.images import InputSpec, prepare, read_image, to_float
from fiftyone_dnniqa.corruptions import apply_corruption
from fiftyone_dnniqa.demo import packaged_photos
from fiftyone_dnniqa.metrics import create_metric
from fiftyone_dnniqa.metrics.blockage import edge_statistics
from fiftyone_dnniqa.metrics.cause import (
    FAMILIES, FAMILY_OF, NONE, SHIPPED_HEAD, STATISTICS, cause_features, cause_labels, image_statistics,
    load_cause_head, multiscale_statistics, regional_statistics, save_cause_head,
)
from fiftyone_dnniqa.metrics.cause_training import draw_recipes, fit_cause_head, targets

SPEC = InputSpec(resize=256, crop=224)


@pytest.fixture(scope="module")
def photos():
    """Real packaged photographs (scikit-image, scikit-learn, matplotlib), 224 px."""
    found = packaged_photos()
    if len(found) < 4:
        _missing_data("fewer than 4 packaged photographs (install scikit-image)")
    return torch.stack([to_float(prepare(read_image(p), SPEC).unsqueeze(0))[0] for _, p in found])


@pytest.fixture(scope="module")
def cause():
    return create_metric("cause")


def first_labels(metric, x):
    """Each image's stored most likely cause; NONE for an image that stores no label."""
    return [(metric.labels(row)[0] or [(NONE, None)])[0][0] for row in metric.score(x).tolist()]


def corrupted(x, name, severity):
    return apply_corruption(x, name, severity, generator=torch.Generator().manual_seed(0))


def test_blur_noise_and_clean_photographs_are_named(cause, photos):
    clean = first_labels(cause, photos)
    blurred = first_labels(cause, corrupted(photos, "defocus_blur", 4))
    noisy = first_labels(cause, corrupted(photos, "gaussian_noise", 4))
    n = len(photos)
    assert clean.count(NONE) >= n - 1, clean
    assert blurred.count("blur") >= n - 1, blurred
    assert noisy.count("noise") >= n - 1, noisy
    k = len(FAMILIES)  # the overall severity follows the family probabilities
    sev = cause.score(photos)[:, k]
    assert (cause.score(corrupted(photos, "defocus_blur", 4))[:, k] > sev).float().mean() >= 0.8


def label_sets(metric, x):
    return [{lab for lab, _ in metric.labels(row)[0]} for row in metric.score(x).tolist()]


def test_noise_in_low_light_gets_both_labels(cause, photos):
    dark = label_sets(cause, corrupted(photos, "low_light", 4))
    dark_noisy = label_sets(cause, corrupted(corrupted(photos, "low_light", 4), "gaussian_noise", 2))
    assert sum("exposure" in s for s in dark) >= len(photos) - 2, dark
    assert all("noise" in s for s in dark_noisy), dark_noisy
    # measured: both labels on all 9 packaged photos (4 of 9 with the head of format 1,
    # which read the pooled features)
    assert sum(s >= {"noise", "exposure"} for s in dark_noisy) >= len(photos) - 1, dark_noisy


def test_rows_become_labels_most_likely_first_or_none():
    row = [0.1, 0.7, 0.9, 0.2, 0.0, 0.0, 0.3, 2.5]
    assert cause_labels(row) == ([("compression", 0.9), ("noise", 0.7)], 2.5)
    labels, sev = cause_labels([0.1, 0.2, 0.05, 0, 0, 0, 0, 0.4])
    assert labels == [(NONE, pytest.approx(0.8))] and sev == 0.4
    assert cause_labels(row, threshold=0.8)[0] == [("compression", 0.9)]


def test_a_clean_image_stores_no_label_and_severity_zero(cause):
    """Issue 28, item 11: no "none" chip on every clean image in the App's grid. What
    ``cause_labels`` calls "none" is stored as no label (an empty ``Classifications``),
    with severity 0; a flagged image keeps its labels and the head's severity."""
    gate = cause.gate if cause.gate is not None else 0.0  # the shipped head has a gate
    below = [min(t, gate) - 0.01 for t in cause.thresholds]
    assert cause_labels(below + [1.7], cause.thresholds, cause.gate)[0][0][0] == NONE
    assert cause.labels(below + [1.7]) == ([], {"severity": 0.0})
    flagged, k = list(below), FAMILIES.index("noise")
    flagged[k] = max(cause.thresholds[k], gate)
    assert cause.labels(flagged + [1.7]) == ([("noise", pytest.approx(flagged[k]))], {"severity": 1.7})


def test_a_gate_decides_clean_once_then_names_the_most_likely_and_each_family_over_its_threshold():
    """By hand, with a gate of 0.8 and thresholds of 0.3: under the gate nothing is named
    however many families pass their thresholds; over it, the most likely family (even
    under its own threshold) and every other one at or above its threshold."""
    th = [0.3] * len(FAMILIES)
    row = [0.5, 0.7, 0.2, 0.0, 0.0, 0.1, 0.0, 2.0]  # two families over 0.3, none over the gate
    assert cause_labels(row, th, gate=0.8) == ([(NONE, pytest.approx(0.3))], 2.0)
    assert cause_labels(row, th) == ([("noise", 0.7), ("blur", 0.5)], 2.0)  # no gate: thresholds alone
    row = [0.5, 0.85, 0.2, 0.0, 0.31, 0.1, 0.0, 3.0]
    assert cause_labels(row, th, gate=0.8) == ([("noise", 0.85), ("blur", 0.5), ("contrast_haze", 0.31)], 3.0)
    high = [0.9] * len(FAMILIES)  # the most likely family is named even under its own threshold
    assert cause_labels([0.1, 0.82, 0, 0, 0, 0, 0, 1.0], high, gate=0.8)[0] == [("noise", 0.82)]


def test_the_training_targets_follow_the_families():
    recipes = draw_recipes(3, copies=20, clean_views=2, compound=0.5, seed=0)
    assert len(recipes) == 3 * 22 and draw_recipes(3, 20, 2, 0.5, seed=0) == recipes
    clean = [r for r in recipes if not r.steps]
    assert len(clean) == 6 and all(targets(r) == ([0.0] * len(FAMILIES), 0.0, [0.0] * len(FAMILIES)) for r in clean)
    multi = [r for r in recipes if len(r.steps) == 2]
    assert multi and all(sum(targets(r)[0]) == 2 for r in multi)
    r = next(r for r in recipes if len(r.steps) == 1)
    y, s, per_family = targets(r)
    k = FAMILIES.index(FAMILY_OF[r.steps[0][0]])
    assert y[k] == 1 and s == r.steps[0][1] == per_family[k] and sum(per_family) == s


def test_image_statistics_see_darkness_and_blur(photos):
    stats = image_statistics(photos)
    dark = image_statistics(corrupted(photos, "low_light", 4))
    blurred = image_statistics(corrupted(photos, "defocus_blur", 4))
    assert stats.shape == (len(photos), 13) and torch.isfinite(stats).all()
    assert (dark[:, 0] < stats[:, 0]).all()  # mean luminance
    assert (blurred[:, 4] < stats[:, 4]).all()  # log Laplacian variance


def statistics_by_hand(img: np.ndarray) -> list:
    """Oracle for ``image_statistics`` in numpy and scipy.ndimage, one (3, H, W) image."""
    lum = 0.299 * img[0] + 0.587 * img[1] + 0.114 * img[2]
    valid = (slice(1, -1), slice(1, -1))  # the kernels' valid part
    lap = ndimage.correlate(lum, np.array([[0, 1, 0], [1, -4, 1], [0, 1, 0]], float))[valid]
    immerkaer = ndimage.correlate(lum, np.array([[1, -2, 1], [-2, 4, -2], [1, -2, 1]], float))[valid]
    noise = np.abs(immerkaer).mean() * np.sqrt(np.pi / 2) / 6
    dx, dy = np.diff(lum, axis=1), np.diff(lum, axis=0)
    grad = np.abs(dx).mean() + np.abs(dy).mean()
    p = np.bincount(np.floor(lum * 63.999).astype(int).ravel(), minlength=64) / lum.size
    entropy = -(p[p > 0] * np.log2(p[p > 0])).sum() / 6
    mx, mn = img.max(0), img.min(0)
    boundary = np.arange(dx.shape[1]) % 8 == 7
    return [lum.mean(), lum.std(ddof=1), (lum < 0.1).mean(), (lum > 0.9).mean(), np.log(lap.var(ddof=1) + 1e-6),
            np.log(noise + 1e-5), np.log(grad + 1e-5), entropy, ((mx - mn) / np.maximum(mx, 1e-3)).mean(),
            ndimage.minimum_filter(mn, size=7, mode="nearest").mean(),
            np.log((np.abs(dx[:, boundary]).mean() + 1e-4) / (np.abs(dx[:, ~boundary]).mean() + 1e-4)),
            (np.abs(dx) < 1 / 512).mean(), np.log((np.abs(lap).mean() + 1e-4) / (grad + 1e-4))]


def test_image_statistics_against_scipy(photos):
    """Every statistic, on real photos, hazy and JPEG-compressed ones (the dark channel and
    the 8-pixel blockiness move), and a non-square size, against numpy and scipy.ndimage."""
    x = torch.cat([photos[:3], corrupted(photos[3:5], "fog", 4), corrupted(photos[5:7], "dk_jpeg", 4)])
    for img in (x, torch.nn.functional.interpolate(photos[:2], size=(160, 200), mode="bilinear")):
        got = image_statistics(img)
        assert got.shape == (len(img), len(STATISTICS))
        for row, one in zip(got, img):
            expected = statistics_by_hand(one.clamp(0, 1).float().numpy().astype(np.float64))
            assert np.allclose(row.numpy(), expected, rtol=1e-4, atol=1e-4), \
                list(zip(STATISTICS, row.tolist(), expected))


def test_the_head_reads_the_statistics_of_the_proxys_first_feature_levels(cause, photos):
    """Oracle: EfficientNet-Lite0 run block by block by hand; its feature levels at strides
    2, 4, 8 and 16 are the outputs of blocks 0, 1, 2 and 4 (timm's ``feature_info``)."""
    from fiftyone_dnniqa.metrics.shared_forward import clear_memo

    x = photos[:2]
    clear_memo()
    with torch.inference_mode():
        feats = cause_features(cause.backbone, x)
        m = cause.backbone.model
        h = m.bn1(m.conv_stem((x * 255 - 127) / 128))
        maps = []
        for i, block in enumerate(m.blocks):
            h = block(h)
            if i in (0, 1, 2, 4):
                maps.append(h)
    by_hand = [image_statistics(x)] + [torch.cat([o.mean((2, 3)), o.std((2, 3))], 1) for o in maps]
    by_hand += [regional_statistics(x), multiscale_statistics(x),  # checked against numpy in test_cause_pair.py
                edge_statistics(x)]  # and in test_blockage.py
    expected = torch.cat(by_hand, 1)
    assert feats.shape == (2, 13 + 2 * (16 + 24 + 40 + 112) + 9 + 27 + 6) == expected.shape
    assert torch.allclose(feats, expected, rtol=1e-4, atol=1e-4)
    assert cause.head.in_features == feats.shape[1]


def test_a_head_of_the_old_format_or_a_backbone_without_levels_is_refused(tmp_path, cause):
    from fiftyone_dnniqa.metrics.backbones import Backbone
    from fiftyone_dnniqa.metrics.shared_forward import level_modules, proxy_outputs

    old = str(tmp_path / "old.safetensors")
    save_cause_head(old, cause.head, dict(cause.config))
    state = {k: v.contiguous() for k, v in cause.head.state_dict().items()}
    config = dict(load_cause_head(old)[1], format_version=1)
    save_file(state, old, metadata={"config": json.dumps(config)})
    with pytest.raises(ValueError, match="unsupported format_version 1 .*refit the head with fit_cause_head"):
        load_cause_head(old)

    class Plain(torch.nn.Module):  # a classifier with timm's head API but no feature levels
        def __init__(self):
            super().__init__()
            self.conv, self.fc = torch.nn.Conv2d(3, 4, 3), torch.nn.Linear(4, 3)

        def forward_features(self, x):
            return self.conv(x)

        def forward_head(self, x, pre_logits=False):
            return x.mean((2, 3))

        def get_classifier(self):
            return self.fc

    plain = Backbone("plain", Plain().eval(), crop=32, resize=36, mean=(0.5,) * 3, std=(0.5,) * 3, num_classes=3)
    assert level_modules(plain.model) == [] and level_modules(cause.backbone.model) == [
        ("blocks.0", 16), ("blocks.1", 24), ("blocks.2", 40), ("blocks.4", 112)]
    x = torch.rand(2, 3, 32, 32)
    out = proxy_outputs(plain, x)
    assert out.levels is None and out.logits.shape == (2, 3)
    with pytest.raises(ValueError, match="needs a timm backbone with feature levels"):
        cause_features(plain, x)
    # a ViT names levels, but they are tokens, not maps: aligned still runs on it, cause refuses
    import timm

    torch.manual_seed(0)
    vit = timm.create_model("vit_tiny_patch16_224", pretrained=False, num_classes=5, depth=4).eval()
    tokens = Backbone("timm:vit", vit, crop=224, resize=256, mean=(0.5,) * 3, std=(0.5,) * 3, num_classes=5)
    x = torch.rand(2, 3, 224, 224)
    with torch.inference_mode():
        out = proxy_outputs(tokens, x)
        assert out.levels is None and torch.allclose(out.logits, vit((x - 0.5) / 0.5), atol=1e-5)
        with pytest.raises(ValueError, match="needs a timm backbone with feature levels"):
            cause_features(tokens, x)


def test_safetensors_round_trip(tmp_path, cause, photos):
    path = str(tmp_path / "head.safetensors")
    save_cause_head(path, cause.head, dict(cause.config))
    head, config = load_cause_head(path)
    for k, v in cause.head.state_dict().items():
        assert torch.equal(head.state_dict()[k], v), k
    assert config["backbone"] == "efficientnet_lite0" and config["families"] == list(FAMILIES)
    again = create_metric("cause", path=path)
    assert torch.equal(again.score(photos[:2]), cause.score(photos[:2]))
    assert again.describe()["path"] == path and cause.describe()["path"] == "shipped"
    assert os.path.getsize(SHIPPED_HEAD) < 3_000_000


def test_refit_on_a_few_clean_photographs_is_seeded(tmp_path, photos):
    few = list(photos[:4])
    kw = dict(copies=2, clean_views=1, epochs=30, corruptions=["defocus_blur", "gaussian_noise", "contrast"])
    a = fit_cause_head(few, str(tmp_path / "a.safetensors"), seed=0, **kw)
    b = fit_cause_head(few, str(tmp_path / "b.safetensors"), seed=0, **kw)
    c = fit_cause_head(few, str(tmp_path / "c.safetensors"), seed=1, **kw)
    shipped, _ = load_cause_head(SHIPPED_HEAD)
    w = {k: v for k, v in a.head.state_dict().items()}
    assert all(torch.equal(w[k], v) for k, v in b.head.state_dict().items())
    assert not torch.equal(w["net.0.weight"], c.head.state_dict()["net.0.weight"])
    assert not torch.equal(w["net.0.weight"], shipped.namer.state_dict()["net.0.weight"])
    # per image: 2 copies, 1 clean view, 4 uniform pairs; no compressed copies without a compression
    assert a.config["num_images"] == 4 and a.config["num_examples"] == 4 * (2 + 1 + 4)
    assert a.config["corruptions"] and set(a.config["corruptions"]) <= set(kw["corruptions"])


def test_cause_and_aligned_share_the_forward_pass_without_changing_either(cause, photos):
    from fiftyone_dnniqa.metrics.shared_forward import clear_memo

    aligned = create_metric("aligned")
    x = photos[:3]
    clear_memo()
    alone_cause = cause.score(x.clone())
    clear_memo()
    alone_aligned = aligned.score(x.clone())
    together = cause.score(x.clone())  # reuses aligned's pass on an equal batch
    assert torch.equal(together, alone_cause)
    with torch.inference_mode():
        z = aligned.backbones[0].model((x * 255 - 127) / 128)  # the weights' preprocessing by hand
    assert torch.allclose(alone_aligned, torch.softmax(z, 1).max(1).values.double(), atol=1e-5)


def test_compute_quality_writes_classifications_and_severity(tmp_path, make_dataset, photos):
    import fiftyone as fo
    from PIL import Image

    from fiftyone_dnniqa import compute_quality

    paths = []
    for name, x in (("clean", photos[0]), ("blurred", corrupted(photos[0], "defocus_blur", 5)),
                    ("noisy", corrupted(photos[1], "gaussian_noise", 5))):
        paths.append(str(tmp_path / f"{name}.png"))
        Image.fromarray((x * 255).round().byte().permute(1, 2, 0).numpy()).save(paths[-1])
    paths.append(str(tmp_path / "missing.png"))
    ds = make_dataset(paths)
    out = compute_quality(ds, ["aligned", "cause"], progress=False, num_workers=0)
    assert set(out) == {"iqa_aligned", "iqa_cause"}
    schema = ds.get_field_schema()
    assert schema["iqa_cause"].document_type is fo.Classifications
    assert isinstance(schema["iqa_cause_severity"], fo.FloatField)
    assert isinstance(schema["iqa_aligned"], fo.FloatField)
    labels = [None if c is None else [x.label for x in c.classifications] for c in ds.values("iqa_cause")]
    assert labels[0] == [] and labels[1][0] == "blur" and labels[2][0] == "noise" and labels[3] is None
    sev = ds.values("iqa_cause_severity")
    assert sev[3] is None and sev[0] == 0 and sev[1] > 0 and sev[2] > 0
    assert ds.values("iqa_cause_error")[3] is not None
    assert out["iqa_cause"].num_scored == 3 and out["iqa_cause"].num_failed == 1
    blur_view = ds.filter_labels("iqa_cause", fo.ViewField("label") == "blur")
    assert len(blur_view) == 1


def test_bad_input_gets_a_clear_error(tmp_path, cause, photos):
    with pytest.raises(ValueError, match="threshold must be between 0 and 1"):
        create_metric("cause", threshold=1.5)
    assert create_metric("cause", threshold=0.6).thresholds == [0.6] * len(FAMILIES)
    assert all(0.3 <= t <= 1 for t in cause.thresholds) and len(cause.thresholds) == len(FAMILIES)
    assert 0.3 <= cause.gate < 1
    with pytest.raises(FileNotFoundError, match="no cause head at"):
        create_metric("cause", path=str(tmp_path / "nope.safetensors"))
    other = str(tmp_path / "other.safetensors")
    save_file({"w": torch.zeros(2)}, other)
    with pytest.raises(ValueError, match="not a cause head"):
        load_cause_head(other)
    with pytest.raises(ValueError, match=r"expected images of shape \(B, 3, H, W\)"):
        cause.score(torch.zeros(2, 1, 224, 224))
    with pytest.raises(ValueError, match="at least 4 readable clean images"):
        fit_cause_head(list(photos[:2]), str(tmp_path / "x.safetensors"))
    with pytest.raises(ValueError, match="belong to no cause family"):
        draw_recipes(2, corruptions=["elastic_transform"])
    with pytest.raises(ValueError, match=r"must be \(3, H, W\)"):
        fit_cause_head([torch.zeros(1, 8, 8)] * 4, str(tmp_path / "y.safetensors"))


# The engine around a structured metric: fields, resume, overwrite, run records, analysis


def test_cause_is_registered_by_importing_the_metrics_package_alone():
    code = ("import sys, fiftyone_dnniqa as dq\n"
            "from fiftyone_dnniqa.metrics import create_metric, list_metrics\n"
            "assert 'fiftyone_dnniqa.metrics.cause' in sys.modules and 'cause' in list_metrics()\n"
            "m = create_metric('cause')\n"
            "assert (m.name, m.outputs, m.extra_fields) == ('cause', 'classifications', ('severity',))\n"
            "assert 'fiftyone' not in sys.modules, 'the metrics need no FiftyOne'\n"
            "from fiftyone_dnniqa.metrics.cause_training import fit_cause_head\n"
            "assert dq.fit_cause_head is fit_cause_head\n"
            "print('ok')\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                         env=dict(os.environ, HF_HUB_OFFLINE="1"))
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr[-2000:]


@pytest.fixture
def cause_dataset(imagenet_files, make_dataset):
    """Four real ImageNet photos in a fresh dataset."""
    return make_dataset(imagenet_files[:4])


def _cause_run(samples, **kw):
    from fiftyone_dnniqa import compute_quality

    return compute_quality(samples, "cause", progress=False, num_workers=0, batch_size=2, **kw)


def test_resume_and_overwrite_of_a_cause_run(cause_dataset):
    import fiftyone as fo

    ds = cause_dataset
    with pytest.raises(ValueError, match="this view has no samples"):  # issue 28, item 8
        _cause_run(ds.limit(0))
    first = _cause_run(ds.limit(2))
    assert ds.get_field("iqa_cause").document_type is fo.Classifications
    assert isinstance(ds.get_field("iqa_cause_severity"), fo.FloatField)
    assert (first.num_todo, first.num_scored) == (2, 2)
    assert [c is not None for c in ds.values("iqa_cause")] == [True, True, False, False]
    planted = ds.first()
    planted["iqa_cause_severity"] = 99.0  # a resumed run must not touch what is scored
    planted.save()
    rest = _cause_run(ds)
    assert (rest.num_todo, rest.num_scored, rest.num_with_scores) == (2, 2, 4)
    sev = ds.values("iqa_cause_severity")
    assert sev[0] == 99.0 and all(0 <= v <= 5 for v in sev[1:])
    assert all(c is not None and NONE not in [x.label for x in c.classifications] for c in ds.values("iqa_cause"))
    again = _cause_run(ds, overwrite=True)
    assert (again.num_todo, again.num_scored) == (4, 4)
    assert 0 <= ds.values("iqa_cause_severity")[0] <= 5  # rescored
    assert ds.values("iqa_cause_severity")[1:] == pytest.approx(sev[1:], abs=1e-6)  # deterministic
    cfg = ds.get_run_info("iqa_cause").config
    assert (cfg.outputs, cfg.extra_fields) == ("classifications", ["severity"])


def test_deleting_and_renaming_a_cause_run_takes_both_fields(cause_dataset):
    import fiftyone_dnniqa as dq

    ds = cause_dataset
    _cause_run(ds)
    labels, sev = ds.values("iqa_cause.classifications.label"), ds.values("iqa_cause_severity")
    ds.rename_run("iqa_cause", "why")
    assert not ds.has_sample_field("iqa_cause") and not ds.has_sample_field("iqa_cause_severity")
    assert ds.values("why.classifications.label") == labels and ds.values("why_severity") == sev
    assert dq.list_quality_runs(ds) == ["why"]
    assert sorted(ds._root_dataset.get_run_info("why").config.extra_field_names) == ["why_severity"]
    _cause_run(ds, field="why")  # resumes under the new name: nothing left to score
    assert dq.load_quality_run(ds, "why").num_todo == 0
    dq.delete_quality_run(ds, "why")
    assert not {"why", "why_severity", "why_error"} & set(ds.get_field_schema())
    assert not ds.has_sample_field("iqa_cause_severity")


def test_field_problem_refuses_a_users_labels_and_accepts_our_own(cause_dataset):
    import fiftyone as fo

    from fiftyone_dnniqa.scoring import field_problem, plan_quality

    ds = cause_dataset
    for s in ds:
        s["user_labels"] = fo.Classifications(classifications=[fo.Classification(label="cat")])
        s.save()
    before = ds.values("user_labels.classifications.label")
    for overwrite in (False, True):
        problem = field_problem(ds, "user_labels", overwrite, metric="cause")
        assert problem == ("field 'user_labels' is a Classifications label field not written by "
                           "compute_quality; cause never replaces labels (not even with overwrite=True): "
                           "choose another field")
        with pytest.raises(ValueError, match="cause never replaces labels"):
            plan_quality(ds, "cause", field="user_labels", overwrite=overwrite, device="cpu")
    assert ds.values("user_labels.classifications.label") == before
    assert field_problem(ds, "iqa_cause", False, metric="cause") is None  # absent
    _cause_run(ds.limit(2))
    metric = create_metric("cause")
    for overwrite in (False, True):  # our own run: resumed or rescored, by name or built metric
        assert field_problem(ds, "iqa_cause", overwrite, metric="cause") is None
        assert field_problem(ds, "iqa_cause", overwrite, metric=metric) is None
    # a float metric (or no metric: floats) still cannot write into the labels
    assert "cannot hold quality scores (floats)" in field_problem(ds, "iqa_cause", True)
    assert "cannot hold quality scores (floats)" in field_problem(ds, "iqa_cause", True, metric="aligned")
    # the severity beside the labels: a user's float field needs overwrite, a string field never fits
    ds.add_sample_field("mine_severity", fo.StringField)
    assert field_problem(ds, "mine", True, metric="cause").startswith(
        "field 'mine_severity' is a StringField, which cannot hold quality cause's severity (floats)")
    assert field_problem(ds, "mine", True) is None  # a float metric writes no severity


def test_a_float_run_keeps_its_scores_from_cause(cause_dataset):
    from fiftyone_dnniqa import compute_quality
    from fiftyone_dnniqa.scoring import field_problem

    ds = cause_dataset
    compute_quality(ds, "entropy", field="q", progress=False, num_workers=0)
    scores = ds.values("q")
    problem = field_problem(ds, "q", True, metric="cause")
    assert problem == "field 'q' holds float scores; cause writes labels (Classifications): choose another field"
    with pytest.raises(ValueError, match="holds float scores"):
        _cause_run(ds, field="q", overwrite=True)
    assert ds.values("q") == scores


def test_quality_fields_rank_floats_only_and_old_records_load(cause_dataset):
    import fiftyone_dnniqa as dq
    from fiftyone_dnniqa.analysis.fields import quality_fields

    ds = cause_dataset
    dq.compute_quality(ds, ["entropy", "cause"], progress=False, num_workers=0)
    assert quality_fields(ds) == ["iqa_entropy"]
    assert set(dq.list_quality_runs(ds)) == {"iqa_entropy", "iqa_cause"}
    doc = ds._doc.runs["iqa_entropy"]  # a record written before outputs were recorded
    assert doc.config.pop("outputs") == "float" and doc.config.pop("extra_fields") == []
    doc.save()
    ds.reload()
    assert dq.load_quality_run(ds, "iqa_entropy").config.outputs == "float"
    assert quality_fields(ds) == ["iqa_entropy"]
    dq.delete_quality_run(ds, "iqa_entropy")
    assert not ds.has_sample_field("iqa_entropy") and ds.has_sample_field("iqa_cause_severity")


def test_cause_on_objects_and_clashing_fields_are_refused(imagenet_files, make_dataset):
    import fiftyone as fo

    from fiftyone_dnniqa.scoring import plan_quality

    boxes = [fo.Detections(detections=[fo.Detection(label="x", bounding_box=[0.1, 0.1, 0.5, 0.5])])] * 2
    ds = make_dataset(imagenet_files[:2], gt=boxes)
    with pytest.raises(ValueError, match=r"cause label\(s\) whole images \(score them without patches_field\)"):
        plan_quality(ds, "cause", patches_field="gt", device="cpu")
    with pytest.raises(ValueError, match=r"distinct from the fields written beside them: \['q_severity'\]"):
        plan_quality(ds, ["cause", "entropy"], field=["q", "q_severity"], device="cpu")
    assert not ds.has_sample_field("gt_cause") and not ds.list_runs()
