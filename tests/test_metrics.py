"""The registry, the pyiqa adapter, offline weights, and scores on real images."""

import os

import pytest
import torch
import torch.hub

import fiftyone_dnniqa as dq
from fiftyone_dnniqa.corruptions import contrast, corrupt, gaussian_blur, gaussian_noise, jpeg
from fiftyone_dnniqa.core.images import read_image, to_float
from fiftyone_dnniqa.metrics import OFFLINE_PYIQA_METRICS
from fiftyone_dnniqa.metrics.weights import MissingWeightsError, find_weight_file, offline_weights


def test_every_pyiqa_metric_is_listed():
    import pyiqa

    names = dq.list_metrics()
    dataset_level = {"fid", "fid_dinov2", "inception_score", "sfid"}  # one number per set of images
    assert set(pyiqa.list_models()) - dataset_level <= set(names) and not dataset_level & set(names)
    assert "psnr" in dq.list_metrics(mode="FR") and "psnr" not in dq.list_metrics(mode="NR")


def test_unknown_metric_suggests_close_names():
    with pytest.raises(ValueError) as e:
        dq.create_metric("piqee")
    msg = str(e.value)
    assert "Did you mean 'piqe'" in msg and "list-metrics" in msg


@pytest.mark.parametrize("name", OFFLINE_PYIQA_METRICS)
def test_offline_metrics_build_and_score_any_size(name):
    m = dq.create_metric(name)
    assert isinstance(m.higher_is_better, bool)
    x = torch.rand(2, 3, 193, 211, generator=torch.Generator().manual_seed(0))  # odd, non-square
    if m.needs_reference:
        out = m.score(x, (x * 0.8 + 0.1).clamp(0, 1))
    else:
        out = m.score(x)
    assert out.shape == (2,) and torch.isfinite(out).all(), (name, out)


def test_direction_and_reference_flags():
    piqe, psnr = dq.create_metric("piqe"), dq.create_metric("psnr")
    assert piqe.higher_is_better is False and piqe.needs_reference is False
    assert psnr.higher_is_better is True and psnr.needs_reference is True
    with pytest.raises(ValueError, match="full-reference"):
        psnr.score(torch.rand(1, 3, 32, 32))
    with pytest.raises(ValueError, match="shape"):
        piqe.score(torch.rand(3, 32, 32))


def test_missing_weights_fail_at_creation_with_file_and_folder(monkeypatch):
    calls = []
    monkeypatch.setattr(torch.hub, "urlopen", lambda *a, **k: calls.append(a))
    real = torch.hub.download_url_to_file
    with pytest.raises(MissingWeightsError) as e:
        dq.create_metric("niqe")
    err = e.value
    assert err.filename.endswith(".mat") and err.filename in str(err)
    assert err.folder.startswith(os.environ["TORCH_HOME"]) and err.folder in str(err)
    assert "offline" in str(err)
    assert torch.hub.download_url_to_file is real  # the guard is undone
    assert not calls  # no download was even attempted


def test_weights_found_in_a_standard_folder_are_reused(tmp_path, monkeypatch):
    cache = tmp_path / "weights"
    cache.mkdir()
    (cache / "model-123.pth").write_bytes(b"weights")
    monkeypatch.setenv("DNNIQA_WEIGHTS_DIR", str(cache))
    assert find_weight_file("model-123.pth") == str(cache / "model-123.pth")
    dst = tmp_path / "hub" / "model-123.pth"
    dst.parent.mkdir()
    with offline_weights("x"):
        torch.hub.download_url_to_file("https://example.invalid/model-123.pth", str(dst))
    assert dst.read_bytes() == b"weights"
    with pytest.raises(MissingWeightsError, match="other.pth"):
        with offline_weights("x"):
            torch.hub.download_url_to_file("https://example.invalid/other.pth", str(tmp_path / "other.pth"))


@pytest.fixture(scope="module")
def photos(imagenet_files):
    """12 real photos, center-cropped to 224 so they batch."""
    from fiftyone_dnniqa.core.images import InputSpec, prepare

    spec = InputSpec(resize=256, crop=224)
    picks = imagenet_files[::42][:12]
    return to_float(torch.stack([prepare(read_image(f), spec) for f in picks]))


@pytest.mark.parametrize("corruption,level", [
    ("gaussian_noise", 40), ("gaussian_blur", 3), ("jpeg", 5),
])
@pytest.mark.parametrize("name", ["piqe", "ssim", "psnr"])
def test_clean_ranks_above_corrupted(photos, name, corruption, level):
    m = dq.create_metric(name)
    bad = corrupt(photos, corruption, level, generator=torch.Generator().manual_seed(1))
    if m.needs_reference:
        clean = m.score(photos, photos.clone() * 0.98 + 0.01)  # near-identical reference
        worse = m.score(bad, photos)
    else:
        clean, worse = m.score(photos), m.score(bad)
    sign = 1 if m.higher_is_better else -1
    better = (sign * (clean - worse) > 0).float().mean().item()
    assert better >= 0.75, f"{name} ranks clean above {corruption} for only {better:.0%} of photos"


def test_scores_get_worse_with_severity(photos):
    m = dq.create_metric("ssim")
    means = [m.score(gaussian_blur(photos, s), photos).mean().item() for s in (1, 3, 6)]
    assert means[0] > means[1] > means[2]


def test_corruptions_keep_range_and_shape(photos):
    x = photos[:2]
    for y in (gaussian_blur(x, 2), gaussian_noise(x, 50), jpeg(x, 10), contrast(x, 0.5)):
        assert y.shape == x.shape and y.min() >= 0 and y.max() <= 1
    assert torch.allclose(contrast(x, 1.0), torch.full_like(x, 0.5))
    assert (contrast(x, 0.5).std() < x.std())
    g = torch.Generator().manual_seed(0)
    assert torch.equal(gaussian_noise(x, 10, generator=torch.Generator().manual_seed(0)),
                       gaussian_noise(x, 10, generator=g))
