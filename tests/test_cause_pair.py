"""The paired cause head (issue 29): regional statistics, compressed copies, a decider and a namer."""

import json

import numpy as np
import pytest
import torch
from safetensors import safe_open

from fiftyone_dnniqa.metrics import create_metric
from fiftyone_dnniqa.metrics.cause import (
    FAMILIES, FAMILY_OF, MULTISCALE_STATISTICS, NONE, REGIONAL_STATISTICS, STATISTICS, CauseHead, PairedCauseHead,
    cause_features, cause_labels, load_cause_head, multiscale_statistics, regional_statistics, save_cause_head,
)
from fiftyone_dnniqa.metrics.blockage import EDGE_STATISTICS, edge_statistics
from fiftyone_dnniqa.metrics.cause_training import draw_recipes, targets

K = len(FAMILIES)


@pytest.fixture(scope="module")
def photos(packaged_224):
    return packaged_224


def regional_by_hand(img: np.ndarray) -> list:
    """Oracle in numpy: the 224 px image cut into 4 x 4 blocks of 56 px by reshaping."""
    lum = 0.299 * img[0] + 0.587 * img[1] + 0.114 * img[2]
    sat = (img.max(0) - img.min(0)) / np.maximum(img.max(0), 1e-3)
    blocks = lum.reshape(4, 56, 4, 56).transpose(0, 2, 1, 3).reshape(16, -1)
    mean = blocks.mean(1)
    contrast = np.log(blocks.std(1) + 1e-3)
    s = sat.reshape(4, 56, 4, 56).transpose(0, 2, 1, 3).reshape(16, -1).mean(1)
    return [mean.min(), mean.max(), mean.std(ddof=1), contrast.min(), contrast.max(), contrast.std(ddof=1),
            contrast.min() - np.sort(contrast)[7], s.min(), s.std(ddof=1)]


def test_regional_statistics_against_numpy_blocks(photos):
    got = regional_statistics(photos)
    assert got.shape == (len(photos), len(REGIONAL_STATISTICS))
    for x, row in zip(photos, got):
        assert np.allclose(row.numpy(), regional_by_hand(x.double().numpy()), atol=2e-3)


def multiscale_by_hand(img: np.ndarray) -> list:
    """Oracle in numpy: 2 x 2 block means by reshaping, differences by slicing."""
    lum = 0.299 * img[0] + 0.587 * img[1] + 0.114 * img[2]
    out = []
    for scale in range(3):
        if scale:
            h, w = lum.shape[0] // 2 * 2, lum.shape[1] // 2 * 2
            lum = lum[:h, :w].reshape(h // 2, 2, w // 2, 2).mean((1, 3))
        energies = []
        for d in (np.diff(lum, axis=1), np.diff(lum, axis=0), lum[1:, 1:] - lum[:-1, :-1], lum[1:, :-1] - lum[:-1, 1:]):
            energy = np.mean(d ** 2) + 1e-10
            energies.append(energy)
            out += [np.log(energy), np.log(np.mean(d ** 4) / energy ** 2 + 1e-6)]
        out.append(np.log(min(energies) / max(energies)))
    return out


def test_multiscale_statistics_against_numpy(photos):
    got = multiscale_statistics(photos)
    assert got.shape == (len(photos), len(MULTISCALE_STATISTICS))
    for x, row in zip(photos, got):
        assert np.allclose(row.numpy(), multiscale_by_hand(x.double().numpy()), atol=1e-3)


def test_noise_is_gaussian_at_the_fine_scale_and_motion_blur_takes_one_direction(photos):
    """White noise alone: differences of Gaussian pixels are Gaussian (kurtosis 3) in
    every direction. A horizontal box blur of 9 px takes far more of the horizontal
    differences' energy than of the vertical ones' at full size (the coarser scales
    decimate, so aliasing can move energy there) and leaves the directions unequal."""
    i = MULTISCALE_STATISTICS.index
    noise = (0.5 + 0.1 * torch.randn(2, 1, 224, 224, generator=torch.Generator().manual_seed(0))).expand(2, 3, 224, 224)
    kurt = multiscale_statistics(noise)[:, [i(f"kurtosis_{d}_scale0") for d in ("0", "90", "45", "135")]]
    assert torch.allclose(kurt.exp(), torch.full_like(kurt, 3.0), atol=0.1)
    kernel = torch.full((3, 1, 1, 9), 1 / 9)
    blurred = torch.nn.functional.conv2d(torch.nn.functional.pad(photos, (4, 4, 0, 0), mode="replicate"), kernel,
                                         groups=3)
    base, moved = multiscale_statistics(photos), multiscale_statistics(blurred)
    drop_h = base[:, i("log_energy_0_scale0")] - moved[:, i("log_energy_0_scale0")]
    drop_v = base[:, i("log_energy_90_scale0")] - moved[:, i("log_energy_90_scale0")]
    assert (drop_h > drop_v + 0.5).all()
    assert (moved[:, i("weakest_to_strongest_direction_scale0")]
            < base[:, i("weakest_to_strongest_direction_scale0")] - 0.3).all()


def test_a_dark_band_and_a_smudge_move_the_regional_statistics_a_uniform_change_does_not(photos):
    """A blockage darkens one edge's regions only; a blurred patch lowers one region's
    contrast only; a global darkening shifts every region alike."""
    x = photos.clone()
    band = x.clone()
    band[..., :, :56] *= 0.1  # the left quarter, nearly black
    smudge = x.clone()
    patch = smudge[..., 56:112, 56:112]
    smudge[..., 56:112, 56:112] = patch.mean((-1, -2), keepdim=True) * 0.95 + patch * 0.05  # 5% of its contrast
    i = REGIONAL_STATISTICS.index
    base, dark, soft, dim = (regional_statistics(v) for v in (x, band, smudge, x * 0.5))
    assert (dark[:, i("region_mean_min")] < base[:, i("region_mean_min")]).all()
    assert (dark[:, i("region_mean_spread")] > base[:, i("region_mean_spread")]).all()
    assert (soft[:, i("region_contrast_min")] < base[:, i("region_contrast_min")]).all()
    assert (soft[:, i("region_contrast_min_to_median")] < base[:, i("region_contrast_min_to_median")]).all()
    # halving every pixel halves the means' spread and moves no log contrast apart
    assert torch.allclose(dim[:, i("region_mean_spread")], base[:, i("region_mean_spread")] / 2, atol=1e-5)
    assert torch.allclose(dim[:, i("region_contrast_spread")], base[:, i("region_contrast_spread")], atol=0.02)


def test_the_features_end_with_the_regional_multiscale_then_edge_statistics_and_an_older_head_reads_the_columns_before(
        tmp_path, photos):
    """A head saved before the regional statistics (397 inputs) scores as it did: on the
    first 397 columns (the head called by hand on them)."""
    metric = create_metric("cause")
    with torch.inference_mode():
        feats = cause_features(metric.backbone, photos[:2])
    later = len(REGIONAL_STATISTICS) + len(MULTISCALE_STATISTICS) + len(EDGE_STATISTICS)
    assert feats.shape[1] == len(STATISTICS) + 2 * (16 + 24 + 40 + 112) + later
    regional, multiscale = -later, -later + len(REGIONAL_STATISTICS)
    assert torch.allclose(feats[:, regional:multiscale], regional_statistics(photos[:2]))
    assert torch.allclose(feats[:, multiscale:-len(EDGE_STATISTICS)], multiscale_statistics(photos[:2]))
    assert torch.allclose(feats[:, -len(EDGE_STATISTICS):], edge_statistics(photos[:2]))
    torch.manual_seed(0)
    older = CauseHead(feats.shape[1] - later, 16)
    path = str(tmp_path / "older.safetensors")
    save_cause_head(path, older, {"backbone": "efficientnet_lite0", "thresholds": [0.5] * K})
    rows = create_metric("cause", path=path).score(photos[:2])
    with torch.no_grad():
        logits, _, _ = older(feats[:, :older.in_features])
    assert torch.allclose(rows[:, :K].float(), torch.sigmoid(logits), atol=1e-5)


def paired(in_features=20):
    torch.manual_seed(1)
    return PairedCauseHead(CauseHead(in_features, 8, per_family=False), CauseHead(in_features, 12)).eval()


def test_a_paired_head_decides_on_the_mean_and_names_with_the_namer_and_round_trips(tmp_path):
    head = paired()
    x = torch.randn(5, 20)
    with torch.no_grad():
        deciding, naming, sev, fam = head.outputs(x)
        d_logits = head.decider(x)[0]
        n_logits, n_sev, n_fam = head.namer(x)
    assert torch.allclose(deciding, (torch.sigmoid(d_logits) + torch.sigmoid(n_logits)) / 2)
    assert torch.allclose(naming, torch.sigmoid(n_logits))
    assert torch.equal(sev, n_sev) and torch.equal(fam, n_fam)
    path = str(tmp_path / "pair.safetensors")
    save_cause_head(path, head, {"backbone": "efficientnet_lite0", "thresholds": [0.5] * K, "gate": 0.6})
    with safe_open(path, framework="pt") as f:
        config = json.loads(f.metadata()["config"])
    assert config["format_version"] == 4
    assert config["decider"] == {"in_features": 20, "hidden": 8, "per_family": False}
    assert config["namer"] == {"in_features": 20, "hidden": 12, "per_family": True}
    again, _ = load_cause_head(path)
    assert isinstance(again, PairedCauseHead)
    with torch.no_grad():
        for a, b in zip(again.outputs(x), (deciding, naming, sev, fam)):
            assert torch.equal(a, b)


def test_the_paired_row_names_the_first_by_the_decider_mean_and_the_others_by_the_namer():
    """Rows laid out as ``CauseMetric.score``'s: K deciding probabilities, severity, K
    family severities, brightness, K naming probabilities."""
    def row(deciding, naming, severity=3.0):
        return list(deciding) + [severity] + [0.0] * K + [0.5] + list(naming)

    blur, noise, comp = (FAMILIES.index(f) for f in ("blur", "noise", "compression"))
    deciding, naming = [0.0] * K, [0.0] * K
    deciding[blur], deciding[noise] = 0.7, 0.2
    naming[blur], naming[noise], naming[comp] = 0.5, 0.9, 0.45
    th = [0.5] * K
    # noise named by the namer (0.9) though the mean gives it 0.2; compression's 0.45 is under 0.5;
    # the decided family stays first although the namer's noise is more likely
    assert cause_labels(row(deciding, naming), th, gate=0.6) == ([("blur", 0.7), ("noise", 0.9)], 3.0)
    assert cause_labels(row(deciding, naming), th, gate=0.75)[0] == [(NONE, pytest.approx(0.3))]
    # without a gate: each family at its threshold by the deciding probabilities, then the namer's others
    assert cause_labels(row(deciding, naming), th)[0] == [("blur", 0.7), ("noise", 0.9)]
    deciding[blur] = 0.4
    assert cause_labels(row(deciding, naming), th)[0] == [(NONE, pytest.approx(0.6))]
    # a short row (no naming part, as a single head's older rows) names from the deciding probabilities
    assert cause_labels(deciding + [2.0], th, gate=0.3)[0] == [("blur", 0.4)]


def test_the_metric_stores_a_paired_heads_labels(tmp_path, photos):
    """Through ``CauseMetric``: the row holds both parts, computed from the features by hand."""
    metric = create_metric("cause")
    with torch.inference_mode():
        feats = cause_features(metric.backbone, photos[:2])
    head = paired(feats.shape[1])
    path = str(tmp_path / "pair.safetensors")
    save_cause_head(path, head, {"backbone": "efficientnet_lite0", "thresholds": [0.5] * K, "gate": 0.01})
    m = create_metric("cause", path=path)
    rows = m.score(photos[:2])
    assert rows.shape == (2, 3 * K + 2)
    with torch.no_grad():
        deciding, naming, _, _ = head.outputs(feats)
    assert torch.allclose(rows[:, :K].float(), deciding, atol=1e-5)
    assert torch.allclose(rows[:, 2 * K + 2:].float(), naming, atol=1e-5)
    for r, d in zip(rows.tolist(), deciding):
        labels, attrs = m.labels(r)
        assert labels[0][0] == FAMILIES[int(d.argmax())]
        assert set(m.label_attributes(r)) == {lab for lab, _ in labels} and attrs["severity"] >= 0


def _appended(images, per_image, held, seed, before, added):
    """The recipes that ``draw_recipes(**{added: per_image})`` appends after a draw with
    ``before``, checked to leave that draw as it was and to come ``per_image`` per image."""
    kw = dict(copies=6, clean_views=2, compound=0.5, seed=seed, exclude=held, **before)
    plain, more = draw_recipes(images, **kw), draw_recipes(images, **kw, **{added: per_image})
    assert more[:len(plain)] == plain and len(more) == len(plain) + images * per_image
    extra = more[len(plain):]
    assert [r.image for r in extra] == [i for i in range(images) for _ in range(per_image)]
    return extra


def test_compressed_copies_put_one_other_family_under_compression_after_every_other_draw():
    held = [("lens_dirt", "dk_jpeg")]
    extra = _appended(30, 4, held, 5, {"pair_copies": 2}, "compressed_copies")
    firsts = set()
    for r in extra:
        (first, s1), (second, s2) = r.steps
        assert FAMILY_OF[second] == "compression" and FAMILY_OF[first] != "compression"
        assert 1 <= s1 <= 5 and 1 <= s2 <= 5 and (first, second) != held[0]
        firsts.add(FAMILY_OF[first])
    assert firsts == set(FAMILIES) - {"compression"}  # every other family, over 120 copies


def test_strong_blur_copies_blur_twice_beyond_severity_5_after_every_other_draw():
    """``strong_blur_copies`` leave every earlier draw as it was; each copy is a blur at
    severity 5 then another blur at 3-5 (stronger than any one blur of the suites), half of
    them with one family of another kind; none holds a held-out combination; and the
    target is blur at severity 5 (the largest of the family's steps)."""
    held = [("motion_blur", "shot_noise")]
    extra = _appended(40, 3, held, 6, {"compressed_copies": 2}, "strong_blur_copies")
    with_other = 0
    for r in extra:
        (b1, s1), (b2, s2), *rest = r.steps
        assert FAMILY_OF[b1] == FAMILY_OF[b2] == "blur" and s1 == 5 and 3 <= s2 <= 5
        assert len(rest) <= 1 and all(FAMILY_OF[n] != "blur" and 1 <= s <= 5 for n, s in rest)
        assert not {"motion_blur", "shot_noise"} <= {n for n, _ in r.steps}
        assert targets(r)[2][FAMILIES.index("blur")] == 5
        with_other += bool(rest)
    assert 0.35 < with_other / len(extra) < 0.65  # about half, over 120 copies
