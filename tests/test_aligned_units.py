"""The aligned metrics (``aligned``, ``aligned_task``, ``aligned_fr``) unit by unit, on a
tiny deterministic classifier in place of the ImageNet backbones: milliseconds per test,
and every expectation is a hand computation (numpy, scipy, torch functionals) on that
classifier's logits, never the metric's own code. One test keeps the real
EfficientNet-Lite0 weights for realism."""

import hashlib
import math
import re

import numpy as np
import pytest
import scipy.special
import scipy.spatial.distance
import timm.data  # noqa: F401  imported here once: class-name matching reads timm's synsets
import torch
import torch.nn.functional as F

import fiftyone_dnniqa as dq
from fiftyone_dnniqa.core.images import InputSpec
from fiftyone_dnniqa.metrics import aligned as A
from fiftyone_dnniqa.metrics.aligned import (AlignedFRMetric, AlignedMetric, AlignedTaskMetric, confidence,
                                             grouped_logits, js_similarity, mean_probability_logits,
                                             reduced_size, resized_square)
from fiftyone_dnniqa.metrics.backbones import Backbone

TOL = dict(rtol=1e-5, atol=1e-6)


# ---------------------------------------------------------------- a tiny proxy classifier


class Tiny(torch.nn.Module):
    """conv 3x3 -> tanh -> 3x3 average pooling -> linear to ``num_classes`` logits, with
    seeded fixed weights; accepts any input size and logs every input it sees."""

    def __init__(self, seed, num_classes=1000):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.conv = torch.nn.Conv2d(3, 4, 3, padding=1, bias=False)
        self.fc = torch.nn.Linear(36, num_classes)
        with torch.no_grad():
            self.conv.weight.copy_(torch.randn(4, 3, 3, 3, generator=g) * 0.6)
            self.fc.weight.copy_(torch.randn(num_classes, 36, generator=g) * 1.5)
            self.fc.bias.copy_(torch.randn(num_classes, generator=g) * 0.5)
        self.eval()
        self.calls = []

    def forward(self, x):
        self.calls.append({"shape": tuple(x.shape), "x": x.detach().clone(),
                           "channels_last": x.is_contiguous(memory_format=torch.channels_last),
                           "inference": torch.is_inference_mode_enabled()})
        return self.logits(x)

    def logits(self, x):
        """The forward pass written with functionals (the oracle's logits)."""
        h = torch.tanh(F.conv2d(x.contiguous(), self.conv.weight, padding=1))
        return F.linear(F.adaptive_avg_pool2d(h, 3).flatten(1), self.fc.weight, self.fc.bias)


#: name -> (seed, crop, resize, mean, std)
SPECS = {
    "efficientnet_lite0": (0, 224, 256, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5)),
    "tiny_a": (1, 64, 73, (0.40, 0.50, 0.60), (0.20, 0.25, 0.30)),
    "tiny_b": (2, 48, 55, (0.30, 0.45, 0.55), (0.35, 0.20, 0.25)),
    "tiny_c": (3, 64, 73, (0.45, 0.45, 0.45), (0.25, 0.25, 0.25)),  # tiny_a's recipe, other weights
}


class FixedSize(torch.nn.Module):
    """Like a ViT with a fixed patch grid: refuses any other input size."""

    def forward(self, x):
        if x.shape[-1] != 64:
            raise RuntimeError(f"Input width ({x.shape[-1]}) doesn't match model (64)")
        return torch.zeros(x.shape[0], 1000)


def fake_load_backbone(name):
    if name == "fixed":
        return Backbone("fixed", FixedSize(), 64, 73, (0.5,) * 3, (0.5,) * 3, 1000)
    if name not in SPECS:
        raise ValueError(f"Unknown backbone '{name}'")
    seed, crop, resize, mean, std = SPECS[name]
    return Backbone(name, Tiny(seed), crop, resize, mean, std, 1000)


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """One intra-op thread: a child forked after torch's thread pool has run (mutmut's
    fork isolation) hangs in its first parallel op otherwise; tiny tensors lose nothing."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(autouse=True)
def tiny_backbones(monkeypatch, request):
    if not request.node.name.startswith("test_real_"):
        monkeypatch.setattr(A, "load_backbone", fake_load_backbone)


def images(n=3, size=64, seed=0, width=None):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 3, size, width or size, generator=g)


def oracle_logits(name, x, resize=True):
    """The tiny backbone's logits for ``x`` at its input size (``resize=False``: at its own
    size): resized by hand, normalised by hand, the forward pass in functionals; float64 numpy."""
    seed, crop, _, mean, std = SPECS[name]
    if resize and x.shape[-2:] != (crop, crop):
        x = F.interpolate(x, size=(crop, crop), mode="bilinear", antialias=True, align_corners=False)
    x = (x - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)
    with torch.no_grad():
        return Tiny(seed).logits(x).double().numpy()


def oracle_statistic(z, statistic, temperature=1.0):
    z = np.asarray(z, float)
    if statistic == "energy":
        return temperature * scipy.special.logsumexp(z / temperature, axis=1)
    p = scipy.special.softmax(z / temperature, axis=1)
    if statistic == "max_prob":
        return p.max(1)
    if statistic == "margin":
        top = np.sort(p, axis=1)
        return top[:, -1] - top[:, -2]
    if statistic == "neg_entropy":
        return 1 + scipy.special.xlogy(p, p).sum(1) / math.log(p.shape[1])
    raise AssertionError(statistic)


def own_view(name, x):
    """What an ensemble of several recipes shows proxy ``name`` of the native images ``x``
    (in 1/255 steps), by hand: the shorter side resized to the proxy's resize side
    (bilinear, antialiased), rounded to 8 bits, then its central crop."""
    _, crop, resize, _, _ = SPECS[name]
    h, w = x.shape[-2:]
    size = (round(h * resize / min(h, w)), round(w * resize / min(h, w)))
    v = F.interpolate(x * 255, size=size, mode="bilinear", antialias=True, align_corners=False)
    v = v.round().clamp(0, 255) / 255
    top, left = (size[0] - crop) // 2, (size[1] - crop) // 2
    return v[:, :, top:top + crop, left:left + crop]


def bytes_images(n=3, size=64, seed=0, width=None):
    """``images`` in 1/255 steps, as decoded photos arrive."""
    return (images(n, size, seed, width) * 255).round() / 255


def multiscale_probs(name, x):
    """Mean softmax of the image, its mirror and the image reduced to 4/5 of the side."""
    crop = SPECS[name][1]
    small = {64: 48, 48: 40, 224: 176}[crop]
    views = [oracle_logits(name, x), oracle_logits(name, x.flip(-1)),
             oracle_logits(name, F.interpolate(x, size=(small, small), mode="bilinear", antialias=True,
                                               align_corners=False), resize=False)]
    return np.mean([scipy.special.softmax(v, axis=1) for v in views], axis=0)


def raises(exc, message):
    return pytest.raises(exc, match="^" + re.escape(message) + "$")


# ---------------------------------------------------------------- helpers


def test_reduced_size():
    assert [reduced_size(c) for c in (224, 240, 260, 64, 48)] == [176, 192, 208, 48, 40]
    assert reduced_size(10) == 32 and reduced_size(32) == 32  # never below 32
    assert reduced_size(235) == 192  # 188 rounds to the nearest multiple of 8
    assert reduced_size(100, 0.5) == 48 and reduced_size(100, fraction=0.9) == 88


def test_resized_square():
    x = images(2, 40, width=56)
    got = resized_square(x, 32)
    want = F.interpolate(x, size=(32, 32), mode="bilinear", antialias=True, align_corners=False)
    assert got.shape == (2, 3, 32, 32)
    torch.testing.assert_close(got, want, rtol=0, atol=0)
    # one side already right is not enough
    tall = images(1, 32, width=48)
    torch.testing.assert_close(resized_square(tall, 32),
                               F.interpolate(tall, size=(32, 32), mode="bilinear", antialias=True))
    wide = images(1, 48, width=32)
    assert resized_square(wide, 32).shape == (1, 3, 32, 32)
    up = resized_square(images(1, 20), 32)
    torch.testing.assert_close(up, F.interpolate(images(1, 20), size=(32, 32), mode="bilinear",
                                                 antialias=True, align_corners=False))
    same = images(1, 32)
    assert resized_square(same, 32) is same
    # the sides are the last two dimensions, whatever the number of channels
    for h, w in ((3, 5), (5, 3)):
        x = images(1, h, width=w)
        torch.testing.assert_close(resized_square(x, 3), F.interpolate(x, size=(3, 3), mode="bilinear",
                                                                       antialias=True, align_corners=False))


@pytest.mark.filterwarnings("error")  # an implicit softmax dimension warns
def test_mean_probability_logits():
    g = torch.Generator().manual_seed(3)
    views = [torch.randn(4, 7, generator=g) * 2 for _ in range(3)]
    got = mean_probability_logits(views)
    want = np.log(np.mean([scipy.special.softmax(v.double().numpy(), axis=1) for v in views], axis=0))
    assert got.dtype == torch.float32 and got.shape == (4, 7)
    np.testing.assert_allclose(got.numpy(), want, **TOL)
    one = mean_probability_logits([views[0].to(torch.bfloat16)])
    assert one.dtype == torch.float32
    np.testing.assert_allclose(one.exp().sum(1).numpy(), 1, rtol=1e-5)


@pytest.mark.filterwarnings("error")  # an implicit softmax dimension warns
@pytest.mark.parametrize("statistic", A.STATISTICS)
@pytest.mark.parametrize("temperature", [1.0, 2.5, 0.5])
def test_confidence_matches_scipy(statistic, temperature):
    g = torch.Generator().manual_seed(4)
    z = torch.randn(5, 11, generator=g) * 3
    got = confidence(z, statistic, temperature)
    np.testing.assert_allclose(got.numpy(), oracle_statistic(z.numpy(), statistic, temperature), **TOL)


def test_confidence_defaults_and_edge_cases():
    z = torch.tensor([[3.0, 1.0, 0.0, -2.0], [0.5, 0.5, 0.5, 0.5], [1.0, 2.0, 3.0, 4.0]])
    np.testing.assert_allclose(confidence(z).numpy(), oracle_statistic(z.numpy(), "max_prob"), **TOL)
    np.testing.assert_allclose(confidence(z, "energy").numpy(), oracle_statistic(z.numpy(), "energy"), **TOL)
    # two classes: the margin is the gap between the only two probabilities
    two = torch.tensor([[2.0, 0.0], [0.0, 1.0]])
    np.testing.assert_allclose(confidence(two, "margin").numpy(), oracle_statistic(two.numpy(), "margin"), **TOL)
    # a flat prediction has no confidence, a certain one full confidence; probabilities
    # that underflow to 0 contribute nothing to the entropy
    ne = confidence(torch.tensor([[0.0, 0.0, 0.0], [200.0, 0.0, -200.0]]), "neg_entropy")
    np.testing.assert_allclose(ne.numpy(), [0.0, 1.0], atol=1e-6)
    # integer logits work too
    np.testing.assert_allclose(confidence(torch.tensor([[2, 0, 0]]), "max_prob").numpy(),
                               oracle_statistic([[2, 0, 0]], "max_prob"), **TOL)
    with raises(ValueError, "unknown statistic 'nope'; choose from max_prob, margin, neg_entropy, energy"):
        confidence(z, "nope")


def test_grouped_logits():
    g = torch.Generator().manual_seed(5)
    z = torch.randn(3, 6, generator=g)
    groups = torch.tensor([[True, False, True, False, False, False],
                           [False, True, False, False, False, False],
                           [False, False, False, True, True, True]])
    got = grouped_logits(z, groups)
    zn = z.double().numpy()
    want = np.stack([scipy.special.logsumexp(zn[:, [0, 2]], axis=1), zn[:, 1],
                     scipy.special.logsumexp(zn[:, 3:], axis=1)], axis=1)
    np.testing.assert_allclose(got.numpy(), want, **TOL)
    # the mask follows the logits' dtype and device
    assert grouped_logits(z.to(torch.bfloat16), groups).dtype == torch.bfloat16
    assert grouped_logits(z.double(), groups).dtype == torch.float64
    meta = grouped_logits(torch.empty(3, 6, device="meta"), groups)
    assert meta.device.type == "meta" and meta.shape == (3, 3)


def test_js_similarity_matches_scipy():
    g = torch.Generator().manual_seed(6)
    lp = F.log_softmax(torch.randn(6, 9, generator=g) * 2, 1)
    lq = F.log_softmax(torch.randn(6, 9, generator=g) * 2, 1)
    got = js_similarity(lp, lq)
    js = scipy.spatial.distance.jensenshannon(lp.exp().double().numpy(), lq.exp().double().numpy(), axis=1) ** 2
    np.testing.assert_allclose(got.numpy(), 1 - js / math.log(2), **TOL)
    np.testing.assert_allclose(js_similarity(lq, lp).numpy(), got.numpy(), **TOL)  # symmetric
    same = js_similarity(lp, lp)
    assert bool((same <= 1).all()) and bool((same > 1 - 1e-6).all())
    # nearly disjoint predictions: the similarity bottoms out at 0, never below
    far = torch.tensor([[0.0, -200.0], [-200.0, 0.0]])
    assert bool((js_similarity(far, far.flip(0)) >= 0).all())
    np.testing.assert_allclose(js_similarity(far, far.flip(0)).numpy(), 0, atol=1e-6)
    # rounding never takes it out of [0, 1]: nearly identical rows (whose divergence can
    # round below 0) and nearly disjoint rows (whose divergence can round above ln 2)
    g = torch.Generator().manual_seed(0)
    z = torch.randn(2000, 9, generator=g, dtype=torch.float64) * 3
    lp = F.log_softmax(z, 1).float()
    lq = F.log_softmax(z + 1e-4 * torch.randn(2000, 9, generator=g, dtype=torch.float64), 1).float()
    assert bool((js_similarity(lp, lq) <= 1).all())
    far = F.log_softmax(torch.randn(2000, 9, generator=g) * 60, 1)
    far2 = F.log_softmax(torch.randn(2000, 9, generator=g) * 60, 1)
    assert bool((js_similarity(far, far2) >= 0).all())


# ---------------------------------------------------------------- aligned: options


def test_defaults_and_description():
    m = AlignedMetric()
    assert m.backbone_names == ["efficientnet_lite0"] and m.statistic == "max_prob"
    assert m.temperature == 1.0 and m.tta is None
    assert m.describe() == {"backbone": "efficientnet_lite0", "statistic": "max_prob", "temperature": 1.0}
    assert m.input_spec == InputSpec(resize=256, crop=224)
    m = AlignedMetric("tiny_a", statistic="margin", temperature=2, tta="flip")
    assert m.temperature == 2.0 and isinstance(m.temperature, float)
    assert m.describe() == {"backbone": "tiny_a", "statistic": "margin", "temperature": 2.0, "tta": "flip"}
    assert AlignedMetric("tiny_a", tta="multiscale").describe()["tta"] == "multiscale"
    ens = AlignedMetric(["tiny_b", "tiny_a"])
    assert ens.describe()["backbone"] == ["tiny_b", "tiny_a"]
    assert AlignedMetric(("tiny_a",)).describe()["backbone"] == "tiny_a"


def test_traits_and_registry():
    assert AlignedMetric.name == "aligned" and AlignedMetric.higher_is_better and AlignedMetric.supports_amp
    assert not AlignedMetric.needs_reference and not AlignedMetric.needs_labels
    assert AlignedTaskMetric.needs_labels and AlignedTaskMetric.name == "aligned_task"
    assert AlignedFRMetric.needs_reference and AlignedFRMetric.name == "aligned_fr"
    assert dq.metric_traits("aligned") == {"source": "dnniqa", "needs_reference": False,
                                           "needs_labels": False, "higher_is_better": True}
    assert dq.metric_traits("aligned_task")["needs_labels"]
    assert dq.metric_traits("aligned_fr")["needs_reference"]
    m = dq.create_metric("aligned", backbone="tiny_a", statistic="energy")
    assert isinstance(m, AlignedMetric) and m.describe()["statistic"] == "energy"
    assert repr(m) == "<AlignedMetric 'aligned' (higher is better)>"


def test_option_validation_messages():
    with raises(ValueError, "tta must be one of (None, 'flip', 'multiscale'), not 'rotate'"):
        AlignedMetric("tiny_a", tta="rotate")
    with raises(ValueError, "unknown statistic 'nope'; choose from max_prob, margin, neg_entropy, energy"):
        AlignedMetric("tiny_a", statistic="nope")
    for t in (0, -1.0):
        with raises(ValueError, "temperature must be positive"):
            AlignedMetric("tiny_a", temperature=t)
    assert AlignedMetric("tiny_a", temperature=0.5).temperature == 0.5
    with raises(ValueError, "tta='multiscale' averages probabilities, which have no energy: "
                            "choose another statistic"):
        AlignedMetric("tiny_a", tta="multiscale", statistic="energy")
    AlignedMetric("tiny_a", tta="flip", statistic="energy")
    AlignedMetric("tiny_a", tta="multiscale", statistic="neg_entropy")
    with raises(ValueError, "give at least one proxy"):
        AlignedMetric([])
    with pytest.raises(ValueError, match="Unknown backbone 'nope'"):
        AlignedMetric("nope")


def test_input_spec_is_the_proxys_recipe_or_the_largest_square():
    for names in (["tiny_a", "tiny_b"], ["tiny_b", "tiny_a"]):  # two recipes: native, capped at 4 x 73
        assert AlignedMetric(names).input_spec == InputSpec(max_side=292)
    assert AlignedMetric("tiny_b").input_spec == InputSpec(resize=55, crop=48)
    assert AlignedMetric(["tiny_a", "tiny_c"]).input_spec == InputSpec(resize=73, crop=64)


def test_models_run_channels_last():
    m = AlignedMetric(["tiny_a", "tiny_b"])
    for b in m.backbones:
        assert b.model.conv.weight.is_contiguous(memory_format=torch.channels_last)
    m.score(images(2))
    calls = [c for b in m.backbones for c in b.model.calls]
    assert len(calls) == 2 and all(c["channels_last"] for c in calls)


def test_multiscale_checks_the_reduced_input_once_with_a_normalised_blank():
    m = AlignedMetric("tiny_a", tta="multiscale")
    (call,) = m.backbones[0].model.calls
    assert call["shape"] == (1, 3, 48, 48) and call["inference"]
    mean, std = SPECS["tiny_a"][3], SPECS["tiny_a"][4]
    want = ((0 - torch.tensor(mean)) / torch.tensor(std)).view(1, 3, 1, 1).expand(1, 3, 48, 48)
    torch.testing.assert_close(call["x"], want)
    for tta in (None, "flip"):
        assert AlignedMetric("tiny_a", tta=tta).backbones[0].model.calls == []


def test_multiscale_rejects_fixed_size_backbones():
    for tta in (None, "flip"):
        AlignedMetric("fixed", tta=tta)  # only multiscale needs smaller inputs
    with raises(ValueError, "tta='multiscale' needs a backbone that accepts 48x48 inputs; fixed does not "
                            "(RuntimeError: Input width (48) doesn't match model (64))"):
        AlignedMetric("fixed", tta="multiscale")
    with pytest.raises(ValueError, match="accepts 48x48 inputs; fixed does not") as e:
        AlignedMetric(["tiny_a", "fixed"], tta="multiscale")
    assert isinstance(e.value.__cause__, RuntimeError)
    AlignedMetric._check_reduced_input(fake_load_backbone("tiny_b"))


def test_to_moves_the_metric_and_its_models():
    m = AlignedMetric(["tiny_a", "tiny_b"])
    assert m.to("cpu") is m and m.device == torch.device("cpu")
    assert m.to(torch.device("meta")) is m
    assert m.device == torch.device("meta")
    assert all(p.device.type == "meta" for b in m.backbones for p in b.model.parameters())


# ---------------------------------------------------------------- aligned: scores


@pytest.mark.parametrize("statistic", A.STATISTICS)
def test_score_is_the_statistic_of_the_hand_computed_logits(statistic):
    x = images(3, 80)  # resized to the backbone's 64 px
    got = AlignedMetric("tiny_a", statistic=statistic, temperature=1.5).score(x)
    assert got.dtype == torch.float64 and got.device.type == "cpu" and got.shape == (3,)
    np.testing.assert_allclose(got.numpy(), oracle_statistic(oracle_logits("tiny_a", x), statistic, 1.5),
                               rtol=1e-5, atol=1e-5)


def test_score_of_images_already_at_the_input_size():
    x = images(2, 64)
    np.testing.assert_allclose(AlignedMetric("tiny_a").score(x).numpy(),
                               oracle_statistic(oracle_logits("tiny_a", x), "max_prob"), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("names", [["tiny_a", "tiny_b"], ["tiny_a", "tiny_c"]])
def test_models_see_normalised_views_of_their_own_recipe(names):
    """Two recipes: each proxy prepares the native image by its own recipe; one recipe
    (tiny_a and tiny_c): the image arrives prepared, each resizes it to its input side."""
    m = AlignedMetric(names, tta="flip")
    x = bytes_images(2, 70, width=90)
    m.score(x)
    for b in m.backbones:
        seed, crop, _, mean, std = SPECS[b.name]
        if names[1] == "tiny_b":
            view = own_view(b.name, x)
        else:
            view = F.interpolate(x, size=(crop, crop), mode="bilinear", antialias=True, align_corners=False)
        view = (view - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)
        assert [c["shape"] for c in b.model.calls] == [(2, 3, crop, crop)] * 2
        torch.testing.assert_close(b.model.calls[0]["x"], view, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(b.model.calls[1]["x"], view.flip(-1), rtol=1e-5, atol=1e-5)


def test_flip_averages_the_mirror_images_logits():
    x = images(3, 64)
    got = AlignedMetric("tiny_a", tta="flip", statistic="energy").score(x)
    z = (oracle_logits("tiny_a", x) + oracle_logits("tiny_a", x.flip(-1))) / 2
    np.testing.assert_allclose(got.numpy(), oracle_statistic(z, "energy"), rtol=1e-5, atol=1e-5)
    got = AlignedMetric("tiny_a", tta="flip", statistic="margin").score(x)
    np.testing.assert_allclose(got.numpy(), oracle_statistic(z, "margin"), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("statistic", ["max_prob", "margin", "neg_entropy"])
def test_multiscale_averages_probabilities_of_three_views(statistic):
    x = images(3, 80)  # the reduced view is taken from the original image, not the resized one
    m = AlignedMetric("tiny_a", tta="multiscale", statistic=statistic)
    got = m.score(x)
    p = multiscale_probs("tiny_a", x)
    np.testing.assert_allclose(got.numpy(), oracle_statistic(np.log(p), statistic), rtol=1e-5, atol=1e-6)
    assert [c["shape"][-1] for c in m.backbones[0].model.calls] == [48, 64, 64, 48]


def test_ensemble_averages_the_backbones_statistics():
    x = bytes_images(3, 80, width=100)
    got = AlignedMetric(["tiny_a", "tiny_b"], statistic="neg_entropy").score(x)
    want = (oracle_statistic(oracle_logits("tiny_a", own_view("tiny_a", x), resize=False), "neg_entropy")
            + oracle_statistic(oracle_logits("tiny_b", own_view("tiny_b", x), resize=False), "neg_entropy")) / 2
    np.testing.assert_allclose(got.numpy(), want, rtol=1e-5, atol=1e-6)


def test_a_proxy_in_an_ensemble_sees_what_it_sees_alone():
    """Through the engine's own preparation: the ensemble of two recipes scores the mean
    of what each proxy scores alone, each alone prepared by its own input spec."""
    from fiftyone_dnniqa.core.images import prepare, to_float

    g = torch.Generator().manual_seed(5)
    photos = [torch.randint(0, 256, (3, 90, 96), generator=g, dtype=torch.uint8) for _ in range(3)]
    ens = AlignedMetric(["tiny_a", "tiny_b"], statistic="margin")
    alone = [AlignedMetric(n, statistic="margin") for n in ("tiny_a", "tiny_b")]
    got = ens.score(to_float(torch.stack([prepare(p, ens.input_spec) for p in photos])))
    want = [m.score(to_float(torch.stack([prepare(p, m.input_spec) for p in photos]))).numpy() for m in alone]
    np.testing.assert_allclose(got.numpy(), np.mean(want, 0), rtol=1e-5, atol=1e-6)


def test_ensemble_multiscale_reduces_what_each_proxy_sees():
    x = bytes_images(2, 90, width=70)
    m = AlignedMetric(["tiny_a", "tiny_b"], tta="multiscale")
    want = [multiscale_probs(name, own_view(name, x)).max(1) for name in ("tiny_a", "tiny_b")]
    np.testing.assert_allclose(m.score(x).numpy(), np.mean(want, 0), rtol=1e-5, atol=1e-6)


def test_batch_invariance_and_determinism():
    x = images(4, 64, seed=9)
    for m in (AlignedMetric("tiny_a", tta="multiscale"), AlignedMetric("tiny_a", tta="flip", statistic="energy")):
        batch = m.score(x)
        alone = torch.cat([m.score(x[i:i + 1]) for i in range(4)])
        torch.testing.assert_close(batch, alone, rtol=1e-5, atol=1e-6)
        assert torch.equal(batch, m.score(x))


def test_score_checks_the_batch_shape():
    m = AlignedMetric("tiny_a")
    with pytest.raises(ValueError, match=r"expected images of shape \(B, 3, H, W\), got \(3, 64, 64\)"):
        m.score(torch.rand(3, 64, 64))
    with pytest.raises(ValueError, match="expected images"):
        m.score(torch.rand(1, 1, 64, 64))


def test_a_confident_image_scores_above_a_flat_one():
    m = AlignedMetric("tiny_a")
    x = images(8, 64)
    z = oracle_logits("tiny_a", x)
    s = m.score(x).numpy()
    assert np.argmax(s) == np.argmax(scipy.special.softmax(z, 1).max(1))
    assert 0 < s.min() and s.max() < 1


# ---------------------------------------------------------------- aligned_task


TASK = ["tench", "Goldfish", "great_white_shark", "n01491361", "crane"]
#: ImageNet indices of TASK: tiger shark is n01491361, crane the bird and the machine
TASK_IDX = [[0], [1], [2], [3], [134, 517]]


def task_logits(name, x, idx=TASK_IDX):
    z = oracle_logits(name, x)
    return np.stack([scipy.special.logsumexp(z[:, i], axis=1) for i in idx], axis=1)


def test_task_defaults_validation_and_description():
    m = AlignedTaskMetric()
    assert m.classes is None and m.label_mode == "set" and not m.uses_sample_labels
    assert m.backbone_names == ["efficientnet_lite0"] and m.class_map == {}
    assert m.describe() == {"backbone": "efficientnet_lite0", "statistic": "max_prob", "temperature": 1.0,
                            "label_mode": "set"}
    with raises(ValueError, "aligned_task needs the task's classes: pass classes=[...] or label_field="):
        m.score(images(1, 224))
    with raises(ValueError, "label_mode must be one of set, sample, not 'image'"):
        AlignedTaskMetric(label_mode="image")
    t = AlignedTaskMetric(["tench"], class_map={7: ["151", 152.0]}, label_mode="sample", backbone="tiny_b",
                          statistic="margin", temperature=3, tta="flip")
    assert t.uses_sample_labels and t.classes == ["tench"]
    assert t.describe() == {"backbone": "tiny_b", "statistic": "margin", "temperature": 3.0, "tta": "flip",
                            "label_mode": "sample", "classes": ["tench"], "class_map": {"7": [151, 152]}}
    assert AlignedTaskMetric(tta="multiscale", backbone="tiny_a").tta == "multiscale"
    with pytest.raises(ValueError, match="needs a backbone that accepts"):
        AlignedTaskMetric(backbone="fixed", tta="multiscale")
    with pytest.raises(ValueError, match="temperature"):
        AlignedTaskMetric(temperature=0)
    with pytest.raises(ValueError, match="unknown statistic"):
        AlignedTaskMetric(statistic="nope")


def test_set_classes_validation():
    m = AlignedTaskMetric(backbone="tiny_a")
    with raises(ValueError, "the task's label set is empty"):
        m.set_classes([])
    with raises(ValueError, "class names must be distinct"):
        m.set_classes(["tench", "tench"])
    with pytest.raises(ValueError, match=r"1 class name\(s\) match no ImageNet class: 'zebraa' \(close: zebra"):
        m.set_classes(["tench", "zebraa"])
    assert m.classes is None  # a failed call leaves the metric as it was
    assert m.set_classes(TASK) is m and m.classes == TASK
    assert m.set_classes(i for i in ["tench", "goldfish"]).classes == ["tench", "goldfish"]


@pytest.mark.parametrize("statistic", A.STATISTICS)
def test_task_set_mode_is_the_statistic_over_pooled_classes(statistic):
    x = images(3, 64)
    m = AlignedTaskMetric(TASK, backbone="tiny_a", statistic=statistic, temperature=0.7)
    np.testing.assert_allclose(m.score(x).numpy(), oracle_statistic(task_logits("tiny_a", x), statistic, 0.7),
                               rtol=1e-5, atol=1e-5)


def test_task_class_map_and_non_string_names():
    x = images(2, 64)
    m = AlignedTaskMetric([7, "tench"], class_map={"7": [151, 152, 153]}, backbone="tiny_a")
    assert m.classes == ["7", "tench"]
    want = oracle_statistic(task_logits("tiny_a", x, [[151, 152, 153], [0]]), "max_prob")
    np.testing.assert_allclose(m.score(x).numpy(), want, rtol=1e-5, atol=1e-6)
    later = AlignedTaskMetric(backbone="tiny_a", class_map={"dog": range(151, 154)}).set_classes(["dog", "tench"])
    np.testing.assert_allclose(later.score(x).numpy(), want, rtol=1e-5, atol=1e-6)


def test_task_sample_mode_is_the_probability_of_each_label():
    x = images(4, 64)
    m = AlignedTaskMetric(TASK, label_mode="sample", backbone="tiny_a", temperature=2.0)
    with raises(ValueError, "aligned_task with label_mode='sample' needs each image's label "
                            "(compute_quality(label_field=...))"):
        m.score(x)
    got = m.score(x, labels=["crane", "tench", "zebra", None]).numpy()
    p = scipy.special.softmax(task_logits("tiny_a", x) / 2.0, axis=1)
    np.testing.assert_allclose(got[:2], [p[0, 4], p[1, 0]], rtol=1e-5, atol=1e-6)
    assert np.isnan(got[2:]).all()  # a label outside the task's set, or none
    # the label must be the task's own spelling, and the flip and multiscale views apply
    flip = AlignedTaskMetric(TASK, label_mode="sample", backbone="tiny_a", tta="flip")
    zf = (oracle_logits("tiny_a", x) + oracle_logits("tiny_a", x.flip(-1))) / 2
    pf = scipy.special.softmax(np.stack([scipy.special.logsumexp(zf[:, i], 1) for i in TASK_IDX], 1), 1)
    np.testing.assert_allclose(flip.score(x, labels=["Goldfish"] * 4).numpy(), pf[:, 1], rtol=1e-5, atol=1e-6)
    assert np.isnan(flip.score(x[:1], labels=["goldfish"]).numpy()).all()


def test_task_multiscale_and_batch_invariance():
    x = images(3, 80)
    m = AlignedTaskMetric(TASK, backbone="tiny_a", tta="multiscale")
    p = multiscale_probs("tiny_a", x)
    pt = np.stack([p[:, i].sum(1) for i in TASK_IDX], axis=1)
    np.testing.assert_allclose(m.score(x).numpy(), pt.max(1) / pt.sum(1), rtol=1e-5, atol=1e-6)
    alone = torch.cat([m.score(x[i:i + 1]) for i in range(3)])
    torch.testing.assert_close(m.score(x), alone, rtol=1e-5, atol=1e-6)


def test_task_with_every_imagenet_class_equals_aligned():
    from fiftyone_dnniqa.metrics.imagenet import imagenet_synsets

    x = images(2, 64)
    full = AlignedTaskMetric([w for w, _ in imagenet_synsets()], backbone="tiny_a")
    torch.testing.assert_close(full.score(x), AlignedMetric("tiny_a").score(x), rtol=1e-5, atol=1e-6)


def test_task_description_of_many_classes():
    names = [f"c{i}" for i in range(51)]
    cmap = {n: [i] for i, n in enumerate(names)}
    fifty = AlignedTaskMetric(names[:50], class_map=cmap, backbone="tiny_a").describe()
    assert fifty["classes"] == names[:50]
    many = AlignedTaskMetric(names, class_map=cmap, backbone="tiny_a").describe()
    assert many["classes"] == "51 classes, sha1 " + hashlib.sha1("\n".join(names).encode()).hexdigest()[:12]
    assert many["class_map"] == cmap and len(many["classes"]) == len("51 classes, sha1 ") + 12


# ---------------------------------------------------------------- aligned_fr


def fr_oracle(name, x, ref, divergence, temperature=1.0):
    p = scipy.special.softmax(oracle_logits(name, x) / temperature, axis=1)
    q = scipy.special.softmax(oracle_logits(name, ref) / temperature, axis=1)
    if divergence == "agreement":
        return p[np.arange(len(p)), q.argmax(1)]
    if divergence == "kl":
        return np.exp(-scipy.special.rel_entr(q, p).sum(1))
    return 1 - scipy.spatial.distance.jensenshannon(p, q, axis=1) ** 2 / math.log(2)


def test_fr_defaults_validation_and_description():
    m = AlignedFRMetric()
    assert m.divergence == "js" and m.backbone_names == ["efficientnet_lite0"] and m.statistic == "max_prob"
    assert m.describe() == {"backbone": "efficientnet_lite0", "temperature": 1.0, "divergence": "js"}
    m = AlignedFRMetric("kl", backbone="tiny_a", temperature=2, tta="flip")
    assert m.describe() == {"backbone": "tiny_a", "temperature": 2.0, "tta": "flip", "divergence": "kl"}
    assert AlignedFRMetric(backbone=["tiny_a", "tiny_b"], tta="multiscale").tta == "multiscale"
    with raises(ValueError, "divergence must be one of js, kl, agreement, not 'l2'"):
        AlignedFRMetric("l2")
    with pytest.raises(ValueError, match="temperature"):
        AlignedFRMetric(temperature=-1)
    with pytest.raises(ValueError, match="needs a backbone that accepts"):
        AlignedFRMetric(backbone="fixed", tta="multiscale")
    with pytest.raises(ValueError, match="aligned_fr is full-reference: pass references"):
        AlignedFRMetric(backbone="tiny_a").score(images(1))


@pytest.mark.parametrize("divergence", A.DIVERGENCES)
def test_fr_scores_match_the_hand_computed_divergences(divergence):
    x, ref = images(3, 64, seed=1), images(3, 64, seed=2)
    m = AlignedFRMetric(divergence, backbone="tiny_a", temperature=1.5)
    np.testing.assert_allclose(m.score(x, ref).numpy(), fr_oracle("tiny_a", x, ref, divergence, 1.5),
                               rtol=1e-5, atol=1e-6)
    same = m.score(ref, ref).numpy()
    if divergence == "agreement":
        np.testing.assert_allclose(same, fr_oracle("tiny_a", ref, ref, "agreement", 1.5), rtol=1e-5)
    else:
        np.testing.assert_allclose(same, 1, atol=1e-5)
    alone = torch.cat([m.score(x[i:i + 1], ref[i:i + 1]) for i in range(3)])
    torch.testing.assert_close(m.score(x, ref), alone, rtol=1e-5, atol=1e-6)


def test_fr_ensemble_with_flip():
    x, ref = bytes_images(2, 75, seed=3, width=81), bytes_images(2, 75, seed=4, width=81)
    m = AlignedFRMetric(backbone=["tiny_a", "tiny_b"], tta="flip")
    want = []
    for name in ("tiny_a", "tiny_b"):
        vx, vr = own_view(name, x), own_view(name, ref)
        zx = (oracle_logits(name, vx, resize=False) + oracle_logits(name, vx.flip(-1), resize=False)) / 2
        zr = (oracle_logits(name, vr, resize=False) + oracle_logits(name, vr.flip(-1), resize=False)) / 2
        p, q = scipy.special.softmax(zx, 1), scipy.special.softmax(zr, 1)
        want.append(1 - scipy.spatial.distance.jensenshannon(p, q, axis=1) ** 2 / math.log(2))
    np.testing.assert_allclose(m.score(x, ref).numpy(), np.mean(want, 0), rtol=1e-5, atol=1e-6)


# ---------------------------------------------------------------- the real proxy


def test_real_lite0_weights_score_as_the_hand_computation(imagenet_files):
    """The packaged EfficientNet-Lite0 through the registry: the metric equals the
    weights' own preprocessing ((255 x - 127) / 128) and statistic written out by hand."""
    from fiftyone_dnniqa.core.images import prepare, read_image, to_float

    m = dq.create_metric("aligned", tta="flip")
    assert m.input_spec == InputSpec(resize=256, crop=224)
    x = to_float(torch.stack([prepare(read_image(f), m.input_spec) for f in imagenet_files[:2]]))
    model = m.backbones[0].model
    with torch.inference_mode():
        z = (model((x * 255 - 127) / 128) + model((x.flip(-1) * 255 - 127) / 128)).double().numpy() / 2
    np.testing.assert_allclose(m.score(x).numpy(), oracle_statistic(z, "max_prob"), rtol=1e-4, atol=1e-4)
    assert bool((m.score(x) > 0.2).all())  # real photos of ImageNet classes are recognised
