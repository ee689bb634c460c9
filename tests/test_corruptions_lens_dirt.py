"""The camera suite's ``lens_dirt`` (smudges, drops, a partial blockage) and the compound
generator (several corruptions in the capture's order), on real ImageNet photos."""

import numpy as np
import pytest
import torch
from skimage.metrics import structural_similarity

from fiftyone_dnniqa.core.images import InputSpec, prepare, read_image, to_float
from fiftyone_dnniqa.corruptions import SUITES, apply_corruption, corruption_level, list_corruptions
from fiftyone_dnniqa.corruptions.camera import CAMERA_LEVELS
from fiftyone_dnniqa.corruptions.compound import FAMILY_OF, PIPELINE, compose, family_severities, pipeline_order


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


@pytest.fixture(scope="module")
def photos(imagenet_files):
    """Two real ImageNet photos, 112 x 160 (not square, to catch an axis mix-up)."""
    spec = InputSpec(resize=160, crop=160)
    return torch.stack([to_float(prepare(read_image(f), spec).unsqueeze(0))[0][:, :112] for f in imagenet_files[:2]])


def test_lens_dirt_is_in_the_camera_suite_and_the_weather_occlusion_family():
    assert "lens_dirt" in SUITES["camera"] and "lens_dirt" in list_corruptions("camera")
    assert [corruption_level("lens_dirt", s) for s in range(1, 6)] == list(CAMERA_LEVELS["lens_dirt"])
    assert FAMILY_OF["lens_dirt"] == "weather_occlusion"


def test_lens_dirt_keeps_shape_dtype_and_range_and_repeats_per_seed(photos):
    for x in (photos, photos[0], photos.double()):
        y = apply_corruption(x, "lens_dirt", 3, gen(1))
        assert y.shape == x.shape and y.dtype == x.dtype and 0 <= float(y.min()) and float(y.max()) <= 1
        assert not torch.equal(y, x)
    assert torch.equal(apply_corruption(photos, "lens_dirt", 4, gen(7)), apply_corruption(photos, "lens_dirt", 4, gen(7)))
    assert not torch.equal(apply_corruption(photos, "lens_dirt", 4, gen(7)), apply_corruption(photos, "lens_dirt", 4, gen(8)))


def test_lens_dirt_blots_more_of_the_frame_at_each_severity(photos):
    """Oracles by hand: the area changed by more than 4/255, the mean absolute change and
    scikit-image's SSIM to the clean photo, per photo, at one seed."""
    x = photos.numpy()
    area, change, ssim = [], [], []
    for s in range(1, 6):
        y = apply_corruption(photos, "lens_dirt", s, gen(3)).numpy()
        diff = np.abs(y - x).max(1)
        area.append((diff > 4 / 255).mean((1, 2)))
        change.append(np.abs(y - x).mean((1, 2, 3)))
        ssim.append([structural_similarity(a, b, channel_axis=0, data_range=1.0) for a, b in zip(x, y)])
    area, change, ssim = np.array(area), np.array(change), np.array(ssim)
    assert (np.diff(area, axis=0) > 0).all(), area
    assert (np.diff(change, axis=0) > 0).all(), change
    assert (np.diff(ssim, axis=0) < 0).all(), ssim
    assert area[0].mean() < 0.25 and area[-1].mean() > 0.5  # a few smudges at 1, most of the frame at 5


def test_the_blockage_is_dark_and_comes_in_from_an_edge(photos):
    """From severity 2 a band from one edge goes dark: at 5 the darkest of the four edge
    strips (8 px) keeps less than 30% of its light; at 1 (smudges only, lifted towards a
    grey veil) every strip keeps most of it."""
    def strips(a, b):
        a, b = a.mean(0), b.mean(0)
        return [float(b[:8].mean() / a[:8].mean()), float(b[-8:].mean() / a[-8:].mean()),
                float(b[:, :8].mean() / a[:, :8].mean()), float(b[:, -8:].mean() / a[:, -8:].mean())]

    for severity, darkest in ((5, lambda v: v < 0.3), (1, lambda v: v > 0.6)):
        y = apply_corruption(photos, "lens_dirt", severity, gen(2))
        for a, b in zip(photos, y):
            assert darkest(min(strips(a, b))), (severity, strips(a, b))


def test_compose_applies_the_steps_in_the_captures_order(photos):
    """Oracle: ``apply_corruption`` called by hand in the pipeline's order (scene, lens,
    blur, exposure, noise, pixels, encoder), drawing from one generator."""
    steps = (("jpeg_compression", 3), ("gaussian_noise", 4), ("defocus_blur", 2), ("low_light", 3))
    assert pipeline_order(steps) == (("defocus_blur", 2), ("low_light", 3), ("gaussian_noise", 4),
                                     ("jpeg_compression", 3))
    g = gen(4)
    by_hand = photos
    for name, s in (("defocus_blur", 2), ("low_light", 3), ("gaussian_noise", 4), ("jpeg_compression", 3)):
        by_hand = apply_corruption(by_hand, name, s, generator=g)
    assert torch.equal(compose(photos, steps, gen(4)), by_hand)
    given = photos
    g = gen(4)
    for name, s in steps:
        given = apply_corruption(given, name, s, generator=g)
    assert torch.equal(compose(photos, steps, gen(4), order="given"), given)
    assert not torch.equal(given, by_hand)
    assert torch.equal(compose(photos, (), gen(0)), photos)
    assert set(PIPELINE) == set(FAMILY_OF.values())
    assert family_severities(steps) == {"compression": 3, "noise": 4, "blur": 2, "exposure": 3}
    with pytest.raises(ValueError, match="'elastic_transform' belongs to no family"):
        compose(photos, (("elastic_transform", 2),), gen(0))
    with pytest.raises(ValueError, match="order must be 'pipeline' or 'given'"):
        compose(photos, steps, gen(0), order="random")
