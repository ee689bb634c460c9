"""The camera suite's ``low_light``: an under-exposed capture with the sensor noise of the
gain that partly makes up for it.

Oracles, all computed here with numpy: the sRGB curves of IEC 61966-2-1 written out
again; the designed darkening ``2 ** -stops`` of the mean in linear light; the
Poisson-Gaussian model of a raw sensor (variance = gain * mean / full well + (gain * read
noise / full well) ** 2), its slope and intercept fitted with ``numpy.polyfit`` on flat
grey images; Poisson counts (integers whose variance equals their mean) without read noise;
independent noise per colour channel.
"""

import numpy as np
import pytest
import torch

from fiftyone_dnniqa.corruptions import CAMERA_LEVELS, SUITES, apply_corruption, corruption_level, list_corruptions
from fiftyone_dnniqa.corruptions.camera import FULL_WELL, READ_NOISE, linear_to_srgb, sensor_capture, srgb_to_linear
from fiftyone_dnniqa.metrics.cause import FAMILY_OF
from fiftyone_dnniqa.metrics.cause_training import Recipe, corruptions_by_family, render


def np_decode(v):
    """sRGB -> linear light (IEC 61966-2-1), numpy."""
    v = np.asarray(v, np.float64)
    return np.where(v <= 0.04045, v / 12.92, ((v + 0.055) / 1.055) ** 2.4)


def np_encode(v):
    v = np.asarray(v, np.float64)
    return np.where(v <= 0.0031308, 12.92 * v, 1.055 * np.maximum(v, 0.0031308) ** (1 / 2.4) - 0.055)


def flat(grey, size=192):
    return torch.full((1, 3, size, size), float(grey), dtype=torch.float64)


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


def model_variance(mean, gain):
    """The Poisson-Gaussian variance of a linear output of ``mean`` read out at ``gain``."""
    return gain * mean / FULL_WELL + (gain * READ_NOISE / FULL_WELL) ** 2


def test_in_the_camera_suite_the_sweeps_and_the_exposure_family():
    assert "low_light" in SUITES["camera"] and "low_light" in list_corruptions()
    assert "low_light" not in SUITES["imagenet_c"] + SUITES["imagenet_c_extra"] + SUITES["dodge_karam"]
    assert [corruption_level("low_light", s) for s in range(1, 6)] == list(CAMERA_LEVELS["low_light"])
    stops = [corruption_level("low_light", s)[0] for s in range(1, 6)]
    gains = [corruption_level("low_light", s)[1] for s in range(1, 6)]
    assert stops == sorted(stops) and gains == sorted(gains)  # darker and noisier with severity
    from fiftyone_dnniqa.corruptions.sweep import resolve_corruptions  # deferred: the sweep imports FiftyOne

    assert "low_light" in resolve_corruptions(["camera"]) and "low_light" in resolve_corruptions()
    assert FAMILY_OF["low_light"] == "exposure" and "low_light" in corruptions_by_family()["exposure"]
    # the cause head's training renders the suite's corruption, with the same draws
    x = torch.rand(3, 32, 32)
    assert torch.equal(render(x, Recipe(0, (("low_light", 4),)), gen(5)), apply_corruption(x, "low_light", 4, gen(5)))


def test_the_srgb_curves_are_the_standards():
    v = torch.linspace(0, 1, 1001, dtype=torch.float64)
    assert np.allclose(srgb_to_linear(v).numpy(), np_decode(v.numpy()), atol=1e-12)
    assert np.allclose(linear_to_srgb(v).numpy(), np_encode(v.numpy()), atol=1e-12)
    assert np.allclose(np_encode(np_decode(v.numpy())), v.numpy(), atol=1e-12)


@pytest.mark.parametrize("severity", [1, 2, 3, 4, 5])
def test_flat_grey_darkens_by_the_designed_stops_with_the_sensors_noise(severity):
    """Mid-light grey (0.8, linear 0.60): no clipping at any severity, so the output
    decoded to linear light has mean ``0.60 * 2**-stops`` and the model's variance."""
    stops, gain_stops = corruption_level("low_light", severity)
    y = apply_corruption(flat(0.8), "low_light", severity, gen(severity)).numpy()
    lin = np_decode(y)
    assert y.min() > 0 and y.max() < 1  # nothing clipped: the moments are the model's
    expected = np_decode(0.8) * 2.0 ** -stops
    assert lin.mean() == pytest.approx(expected, rel=0.002)
    assert lin.var() == pytest.approx(model_variance(expected, 2.0 ** gain_stops), rel=0.03)
    # each channel from its own photosites: colour noise, not a grey grain
    r, g = lin[0, 0].ravel() - lin[0, 0].mean(), lin[0, 1].ravel() - lin[0, 1].mean()
    assert abs(np.corrcoef(r, g)[0, 1]) < 0.02


def test_noise_variance_against_signal_follows_the_poisson_gaussian_model():
    """Flat linear greys through the sensor at severity 5's light and gain: the fitted
    line var = a * mean + b has the designed slope (gain / full well) and intercept."""
    light, gain = 2.0 ** -8, 2.0 ** 3
    levels = [0.0, 0.02, 0.05, 0.1, 0.2, 0.4, 0.8]
    means, variances = [], []
    for k, v in enumerate(levels):
        out = sensor_capture(flat(v, 256), light, gain, gen(k)).numpy()
        means.append(out.mean())
        variances.append(out.var())
    expected = np.array(levels) * light * gain
    standard_errors = np.sqrt(model_variance(expected, gain) / (3 * 256 * 256))
    assert (np.abs(np.array(means) - expected) < 4 * standard_errors).all()
    a, b = np.polyfit(means, variances, 1)
    assert a == pytest.approx(gain / FULL_WELL, rel=0.03)
    assert b == pytest.approx((gain * READ_NOISE / FULL_WELL) ** 2, rel=0.1)
    assert variances[0] == pytest.approx((gain * READ_NOISE / FULL_WELL) ** 2, rel=0.03)  # read noise alone


def test_without_read_noise_the_counts_are_poisson():
    out = sensor_capture(flat(0.3, 256), 0.001, 1.0, gen(3), read_noise=0.0).numpy() * FULL_WELL
    assert np.allclose(out, np.round(out), atol=1e-6)  # whole photo-electrons
    assert out.mean() == pytest.approx(3.0, rel=0.01) and out.var() == pytest.approx(out.mean(), rel=0.03)


def test_real_photos_darken_monotonically_by_the_designed_factor(imagenet_files):
    from PIL import Image

    photos = torch.stack([torch.from_numpy(np.asarray(Image.open(f).convert("RGB").resize((160, 160))).copy())
                          .permute(2, 0, 1) for f in imagenet_files[::100][:5]]).double() / 255
    lin0 = np_decode(photos.numpy()).mean()
    srgb_means, ratios = [], []
    for s in range(1, 6):
        y = apply_corruption(photos, "low_light", s, gen(s))
        assert y.shape == photos.shape and y.dtype == photos.dtype and 0 <= y.min() and y.max() <= 1
        srgb_means.append(float(y.mean()))
        ratios.append(np_decode(y.numpy()).mean() / lin0 * 2.0 ** corruption_level("low_light", s)[0])
    assert all(a > b for a, b in zip([float(photos.mean())] + srgb_means, srgb_means))
    # 1 = exactly the designed darkening; clipping the noise at black adds a little light
    assert np.allclose(ratios, 1, atol=0.03), ratios


def test_seeded_and_device_agnostic():
    x = torch.rand(2, 3, 24, 24)
    a, b = apply_corruption(x, "low_light", 3, gen(1)), apply_corruption(x, "low_light", 3, gen(1))
    assert torch.equal(a, b) and not torch.equal(a, apply_corruption(x, "low_light", 3, gen(2)))
    # batch of one == the image alone, float16 in float16 out
    assert torch.equal(apply_corruption(x[0], "low_light", 3, gen(1)), apply_corruption(x[:1], "low_light", 3, gen(1))[0])
    assert apply_corruption(x.half(), "low_light", 3, gen(1)).dtype == torch.float16
    if torch.cuda.is_available():  # a CPU generator gives the same draws on any device
        gpu = apply_corruption(x.cuda(), "low_light", 3, gen(1))
        assert gpu.device.type == "cuda" and (gpu.cpu() - a).abs().max() < 1e-4
        cuda_gen = torch.Generator(device="cuda").manual_seed(1)
        assert apply_corruption(x.cuda(), "low_light", 3, cuda_gen).device.type == "cuda"
