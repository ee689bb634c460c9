"""The blockage detector (issue 29): edge statistics that heavy JPEG keeps, and the paired
head's weather naming from them."""

import json

import numpy as np
import pytest
import torch
from safetensors import safe_open

from fiftyone_dnniqa.corruptions import apply_corruption
from fiftyone_dnniqa.metrics.blockage import EDGE_DEPTHS, EDGE_FLOOR, EDGE_STATISTICS, BlockageDetector, edge_statistics
from fiftyone_dnniqa.metrics.cause import (
    FAMILIES, CauseHead, PairedCauseHead, cause_labels, load_cause_head, save_cause_head,
)

K = len(FAMILIES)
WEATHER = FAMILIES.index("weather_occlusion")
I = EDGE_STATISTICS.index


@pytest.fixture(scope="module")
def photos(packaged_224):
    return packaged_224


def edges_by_hand(img: np.ndarray) -> list:
    """Oracle in numpy: the strips by slicing, each strip's quarters by np.array_split."""
    lum = 0.299 * img[0] + 0.587 * img[1] + 0.114 * img[2]
    h, w = lum.shape
    out = []
    for share in EDGE_DEPTHS:
        d = max(1, round(min(h, w) * share))
        strips = {"top": lum[:d], "bottom": lum[-d:], "left": lum[:, :d].T, "right": lum[:, -d:].T}
        opposite = {"top": "bottom", "bottom": "top", "left": "right", "right": "left"}
        darkest = min(strips, key=lambda k: strips[k].mean())
        quarters = np.array_split(strips[darkest], [-(-strips[darkest].shape[1] // 4) * i for i in (1, 2, 3)], axis=1)
        inner = lum[d:h - d, d:w - d].mean()

        def ratio(a, b):
            return np.log((a + EDGE_FLOOR) / (b + EDGE_FLOOR))
        out += [ratio(inner, strips[darkest].mean()), ratio(strips[opposite[darkest]].mean(), strips[darkest].mean()),
                ratio(inner, max(q.mean() for q in quarters))]
    return out


def test_edge_statistics_against_numpy(photos):
    rng = np.random.default_rng(0)
    odd = torch.from_numpy(rng.random((1, 3, 150, 203)).astype(np.float32))
    odd[:, :, :, -30:] *= 0.1  # a dark band on the right, on a non-square image
    for batch in (photos, odd):
        got = edge_statistics(batch)
        assert got.shape == (len(batch), len(EDGE_STATISTICS))
        for x, row in zip(batch, got):
            assert np.allclose(row.numpy(), edges_by_hand(x.double().numpy()), atol=1e-4)


def test_a_band_darkens_one_edge_a_vignette_all_four_and_a_dark_object_only_part_of_one(photos):
    def blocked(x):  # a blockage from the top: 40 px, nearly black
        y = x.clone()
        y[..., :40, :] *= 0.08
        return y

    def corner(x):  # a dark object in one corner of the top edge
        y = x.clone()
        y[..., :40, :50] *= 0.08
        return y

    ramp = torch.clamp(1.3 - torch.linspace(-1, 1, 224).abs(), max=1.0)  # 0.3 at the edges, 1 in the middle
    x = photos[1:2]
    base = edge_statistics(x)[0]
    assert float(base.abs().max()) < 0.15  # this photo's edges are about as bright as its middle
    b, v, c = (edge_statistics(y)[0] for y in (blocked(x), x * ramp.view(1, 1, 224, 1) * ramp.view(1, 1, 1, 224),
                                                corner(x)))
    for depth in range(len(EDGE_DEPTHS)):
        inner, opposite, quarter = (I(f"{n}_depth{depth}") for n in (
            "interior_over_darkest_edge", "opposite_over_darkest_edge", "interior_over_darkest_edge_brightest_quarter"))
        assert b[inner] > base[inner] + 1.5 and b[opposite] > base[opposite] + 1.5 and b[quarter] > base[quarter] + 1.5
        assert v[inner] > base[inner] + 0.5 and abs(v[opposite] - base[opposite]) < 0.1  # all four edges alike
        assert c[inner] > base[inner] + 0.15 and c[quarter] < base[quarter] + 0.1  # the rest of the edge stays bright
    # on every photo, a band darkens the darkest strip's brightest quarter too; a corner object does not
    q = I("interior_over_darkest_edge_brightest_quarter_depth0")
    assert bool((edge_statistics(blocked(photos))[:, q] > edge_statistics(corner(photos))[:, q] + 0.9).all())


def test_lens_dirt_raises_the_edge_darkness_and_a_jpeg_at_quality_2_keeps_it(photos):
    """The real corruption: ``lens_dirt`` at severity 4 holds a blockage band, and Dodge &
    Karam's JPEG at quality 2 (severity 5) keeps it."""
    g = torch.Generator().manual_seed(3)
    dirty = apply_corruption(photos, "lens_dirt", 4, generator=g)
    squashed = apply_corruption(dirty, "dk_jpeg", 5, generator=g)
    clean_only = apply_corruption(photos, "dk_jpeg", 5, generator=g)
    i = I("interior_over_darkest_edge_depth0")
    clean, dirt, dirt_jpeg, jpeg = (edge_statistics(y)[:, i] for y in (photos, dirty, squashed, clean_only))
    assert bool((dirt > clean + 0.5).all()) and bool((dirt_jpeg > jpeg + 0.5).all())
    assert bool((dirt_jpeg > dirt - 0.3).all())  # the JPEG does not take the band away
    assert torch.allclose(jpeg, clean, atol=0.3)  # nor makes one where there is none


def test_the_detector_is_a_logistic_regression_on_its_columns():
    det = BlockageDetector(3)
    with torch.no_grad():
        det.mean.copy_(torch.arange(6.0))
        det.std.copy_(torch.full((6,), 2.0))
        det.linear.weight.copy_(torch.tensor([[1.0, -1.0, 0.5, 0.0, 2.0, -0.5]]))
        det.linear.bias.fill_(-0.25)
    x = torch.randn(4, 12)
    z = (x[:, 3:9].numpy() - np.arange(6.0)) / 2.0
    by_hand = 1 / (1 + np.exp(-(z @ np.array([1.0, -1.0, 0.5, 0.0, 2.0, -0.5]) - 0.25)))
    assert det.in_features == 9
    with torch.no_grad():
        assert np.allclose(det(x).numpy(), by_hand, atol=1e-6)


def detector_pair(in_features=20, first_column=14):
    torch.manual_seed(1)
    det = BlockageDetector(first_column)
    torch.nn.init.normal_(det.linear.weight, std=2.0)
    return PairedCauseHead(CauseHead(first_column, 8, per_family=False), CauseHead(first_column, 12), det).eval()


def test_the_detector_only_raises_the_naming_weather_probability_and_round_trips(tmp_path):
    head = detector_pair()
    x = torch.randn(64, 20)
    with torch.no_grad():
        deciding, naming, sev, fam = head.outputs(x)
        plain = PairedCauseHead(head.decider, head.namer).outputs(x)
        blocked = head.blockage(x)
    assert torch.equal(deciding, plain[0]) and torch.equal(sev, plain[2]) and torch.equal(fam, plain[3])
    others = [k for k in range(K) if k != WEATHER]
    assert torch.equal(naming[:, others], plain[1][:, others])
    assert torch.equal(naming[:, WEATHER], torch.maximum(plain[1][:, WEATHER], blocked))
    assert bool((blocked > plain[1][:, WEATHER]).any()) and bool((blocked < plain[1][:, WEATHER]).any())
    assert head.in_features == 20
    path = str(tmp_path / "blockage.safetensors")
    save_cause_head(path, head, {"backbone": "efficientnet_lite0", "thresholds": [0.5] * K, "gate": 0.6})
    with safe_open(path, framework="pt") as f:
        config = json.loads(f.metadata()["config"])
    assert config["format_version"] == 5 and config["blockage"]["first_column"] == 14
    assert config["blockage"]["statistics"] == list(EDGE_STATISTICS)
    again, _ = load_cause_head(path)
    assert again.blockage is not None and again.blockage.first_column == 14
    with torch.no_grad():
        for a, b in zip(again.outputs(x), (deciding, naming, sev, fam)):
            assert torch.equal(a, b)


def test_a_firing_detector_names_weather_beside_the_deciding_family():
    """Through the row a ``CauseMetric`` stores: weather named second where the detector
    fires above the weather threshold, not where the namer alone is under it."""
    head = detector_pair()
    x = torch.randn(256, 20)
    with torch.no_grad():
        deciding, naming, sev, fam = head.outputs(x)
        namer_weather = PairedCauseHead(head.decider, head.namer).outputs(x)[1][:, WEATHER]
        blocked = head.blockage(x)
    th = [0.95] * K
    rows = torch.cat([deciding, sev.unsqueeze(1), fam, torch.zeros(len(x), 1), naming], 1).tolist()
    weather_named = [any(lab == "weather_occlusion" for lab, _ in cause_labels(r, th, gate=0.0)[0]) for r in rows]
    top_is_weather = (deciding.argmax(1) == WEATHER).tolist()
    expected = [(b >= 0.95 or n >= 0.95 or t) for b, n, t in zip(blocked.tolist(), namer_weather.tolist(), top_is_weather)]
    assert weather_named == expected
    assert any(b >= 0.95 and n < 0.95 and not t for b, n, t in zip(blocked.tolist(), namer_weather.tolist(),
                                                                     top_is_weather))


def test_the_detectors_threshold_reads_as_the_heads_and_a_users_threshold_reads_its_own_probability(tmp_path):
    """Called, the detector reports its probability so that its own threshold reads as the
    head's weather threshold (the logit shifted by theirs, by hand); the file keeps both; a
    ``cause`` metric given one threshold compares the detector's own probability with it."""
    det = BlockageDetector(0, threshold=0.5, reads=0.95)
    torch.nn.init.normal_(det.linear.weight, std=2.0)
    x = torch.randn(500, 6)
    with torch.no_grad():
        z = det.linear(x)[:, 0].numpy()
        p, shown = det.probability(x).numpy(), det(x).numpy()
    assert np.allclose(p, 1 / (1 + np.exp(-z)), atol=1e-6)
    assert np.allclose(shown, 1 / (1 + np.exp(-(z + np.log(0.95 / 0.05)))), atol=1e-6)
    assert ((shown >= 0.95) == (p >= 0.5)).all() and 0.1 < (p >= 0.5).mean() < 0.9
    with pytest.raises(ValueError):
        BlockageDetector(0, reads=1.0)
    head = PairedCauseHead(CauseHead(14, 8, per_family=False), CauseHead(14, 12), BlockageDetector(14, 0.5, 0.95))
    path = str(tmp_path / "scale.safetensors")
    save_cause_head(path, head, {"backbone": "efficientnet_lite0", "thresholds": [0.95] * K, "gate": 0.6})
    again, _ = load_cause_head(path)
    assert (again.blockage.threshold, again.blockage.reads) == (0.5, 0.95)
    from fiftyone_dnniqa.metrics import create_metric
    mine, theirs = create_metric("cause", path=path), create_metric("cause", path=path, threshold=0.6)
    assert mine.head.blockage.reads == 0.95 and theirs.head.blockage.reads == theirs.head.blockage.threshold == 0.5


def test_a_head_whose_detector_reads_other_statistics_is_refused(tmp_path):
    head = detector_pair()
    path = str(tmp_path / "other.safetensors")
    save_cause_head(path, head, {"backbone": "efficientnet_lite0", "thresholds": [0.5] * K, "gate": 0.6})
    with safe_open(path, framework="pt") as f:
        tensors, meta = {k: f.get_tensor(k) for k in f.keys()}, f.metadata()
    config = json.loads(meta["config"])
    config["blockage"]["statistics"] = config["blockage"]["statistics"][::-1]
    from safetensors.torch import save_file
    save_file(tensors, path, metadata=dict(meta, config=json.dumps(config)))
    with pytest.raises(ValueError, match="blockage detector reads"):
        load_cause_head(path)
