"""ZSCLIP-IQA: zero-shot CLIP quality from class-name prompts.

No CLIP weights can be downloaded here, so the metric runs on tiny randomly
initialised open_clip models built from a config; where a random model cannot
say anything about quality, the scoring math is checked on controlled
embeddings instead.
"""

import json
import os
import socket
import time
import urllib.request

import pytest
import torch
import torch.nn.functional as F

open_clip = pytest.importorskip("open_clip")

from fiftyone_dnniqa.metrics.zsclip import (  # noqa: E402
    DEFAULT_GOOD_BAD_TEMPLATES, DEFAULT_TEMPLATES, MAX_LISTED_CLASSES, ZSCLIPMetric, classes_digest,
)
from fiftyone_dnniqa.metrics.imagenet import imagenet_class_names as imagenet_classes  # noqa: E402
from fiftyone_dnniqa.metrics.weights import MissingWeightsError  # noqa: E402

TINY = {
    "embed_dim": 32,
    "vision_cfg": {"image_size": 32, "patch_size": 8, "width": 32, "layers": 1, "head_width": 16},
    "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1},
}
CLASSES = ["tench", "golden_retriever", "fire truck", "espresso", "daisy", "volcano"]


def tiny(**kw):
    kw.setdefault("classes", CLASSES)
    return ZSCLIPMetric(model_cfg=TINY, **kw)


@pytest.fixture(scope="module")
def metric():
    return tiny()


@pytest.fixture(scope="module")
def images():
    return torch.rand(5, 3, 40, 48, generator=torch.Generator().manual_seed(0))


@pytest.fixture
def no_network(monkeypatch):
    """Records (and refuses) every attempt to resolve or reach a host."""
    calls = []

    def refuse(name):
        def f(*args, **kwargs):
            calls.append((name, args[:2]))
            raise OSError(f"network access attempted: {name}")
        return f

    monkeypatch.setattr(socket, "getaddrinfo", refuse("getaddrinfo"))
    monkeypatch.setattr(socket, "create_connection", refuse("create_connection"))
    monkeypatch.setattr(socket.socket, "connect", refuse("connect"))
    monkeypatch.setattr(urllib.request, "urlopen", refuse("urlopen"))
    return calls


@pytest.fixture
def empty_hub(monkeypatch, tmp_path):
    """An empty Hugging Face cache (real weights may be cached elsewhere)."""
    import huggingface_hub.constants

    hub = tmp_path / "hub"
    hub.mkdir()
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(hub))
    return hub


# ------------------------------------------------------------------- traits

def test_traits(metric):
    assert ZSCLIPMetric.name == "zsclip"
    assert ZSCLIPMetric.higher_is_better and ZSCLIPMetric.needs_labels and ZSCLIPMetric.supports_amp
    assert not ZSCLIPMetric.needs_reference and not ZSCLIPMetric.cpu_per_image
    m = metric
    assert m.input_spec.resize == 32 and m.input_spec.crop == 32  # the model's own image size
    assert m.mean == pytest.approx((0.48145466, 0.4578275, 0.40821073))  # OpenAI CLIP's


# ------------------------------------------------------------------- scores

@pytest.mark.parametrize("variant,statistic", [
    ("class_confidence", "max_prob"), ("class_confidence", "margin"),
    ("class_confidence", "neg_entropy"), ("good_bad", "max_prob"),
])
def test_scores_shape_dtype_range(images, variant, statistic):
    m = tiny(variant=variant, statistic=statistic)
    s = m.score(images)
    assert s.shape == (5,) and s.dtype == torch.float64 and s.device.type == "cpu"
    assert torch.isfinite(s).all() and (s >= 0).all() and (s <= 1).all()
    # any image size is brought to the model's; the prepared size scores the same way
    assert m.score(F.interpolate(images, size=(32, 32))).shape == (5,)


def test_scores_are_deterministic(metric, images):
    m = metric
    assert torch.equal(m.score(images), m.score(images))
    assert torch.equal(m.score(images), tiny().score(images))  # same seed, same model
    assert not torch.equal(m.score(images), tiny(seed=1).score(images))
    assert torch.allclose(m.score(images[:2]), m.score(images)[:2], atol=1e-6)  # batch-independent


def test_rejects_bad_batches_and_options(metric, images):
    with pytest.raises(ValueError):
        metric.score(images[:, :1])
    for bad in ({"variant": "nope"}, {"statistic": "energy"}, {"templates": ["no slot"]},
                {"variant": "good_bad", "templates": ["a photo of a {}."]}, {"logit_scale": 0},
                {"classes": []}, {"classes": ["only one"]}, {"classes": "coco"}):
        with pytest.raises(ValueError):
            tiny(**bad)
    with pytest.raises(ValueError, match="unknown open_clip model"):
        ZSCLIPMetric(model="ViT-B-33")
    with pytest.raises(ValueError, match="neither a pretrained tag"):
        ZSCLIPMetric(model="ViT-B-32", pretrained="no-such-tag")


# ------------------------------------------------------------------ classes

def test_default_classes_are_imagenet(images):
    m = ZSCLIPMetric(model_cfg=TINY)  # classes=None
    assert m.num_classes == 1000 and m.classes == imagenet_classes() and m.classes[0] == "tench"
    assert m.text_features.shape == (1000, 32)
    assert m.describe()["classes"] == "imagenet" and m.describe()["num_classes"] == 1000
    assert m.score(images).shape == (5,)


def test_prompts_from_class_names(metric):
    m = metric
    assert m.prompts()[1] == [t.replace("{}", "golden retriever") for t in DEFAULT_TEMPLATES]
    g = tiny(variant="good_bad")
    rows = g.prompts()
    assert len(rows) == 2 * len(CLASSES)
    assert rows[0][0] == "a good photo of a tench." and rows[len(CLASSES)][0] == "a bad photo of a tench."
    assert len(rows[0]) == len(DEFAULT_GOOD_BAD_TEMPLATES)
    c = tiny(templates=["a blurry photo of a {}."])
    assert c.prompts(["sea_lion"]) == [["a blurry photo of a sea lion."]]


def test_set_classes_recomputes_text_embeddings(images):
    for variant, rows in (("class_confidence", 1), ("good_bad", 2)):
        m = tiny(variant=variant)
        before, score_before = m.text_features.clone(), m.score(images)
        assert before.shape == (rows * len(CLASSES), 32)
        assert torch.allclose(before.norm(dim=1), torch.ones(len(before)), atol=1e-5)
        m.set_classes(["cat", "dog", "car"])
        assert m.num_classes == 3 and len(m.prompts()) == rows * 3
        assert m.text_features.shape == (rows * 3, 32)
        assert not torch.equal(m.score(images), score_before)
        m.set_classes(CLASSES)  # back again: cached, identical
        assert torch.equal(m.text_features, before)
        assert torch.equal(m.score(images), score_before)
    # underscores read as spaces: the same prompts, the same embeddings
    a, b = tiny(classes=["fire_truck", "sea_lion"]), tiny(classes=["fire truck", "sea lion"])
    assert torch.equal(a.text_features, b.text_features)
    # the embedding of one class does not depend on the others
    assert torch.allclose(tiny(classes=CLASSES[:3]).text_features, tiny().text_features[:3], atol=1e-6)


# ---------------------------------------------------- the math on controlled embeddings

def _fix_image_features(monkeypatch, m, feats):
    monkeypatch.setattr(m.model, "encode_image", lambda x, normalize=False: feats[: len(x)])


def test_class_evidence_ranks_above_its_loss(monkeypatch):
    """An image whose embedding is a class prompt's scores above the same image
    with part of that class evidence replaced by a direction no prompt shares
    (what blur or noise does to CLIP features); ranks follow the amount lost."""
    k = len(CLASSES)
    x = torch.rand(k, 3, 32, 32)
    for variant, statistic in (("class_confidence", "max_prob"), ("class_confidence", "margin"),
                               ("class_confidence", "neg_entropy"), ("good_bad", "max_prob")):
        m = tiny(variant=variant, statistic=statistic, logit_scale=20.0)  # below float saturation
        text = m.text_features
        clean = text[:k]  # class c's (good) prompt embedding, c = 0..k-1
        # unit directions orthogonal to every prompt embedding
        q, _ = torch.linalg.qr(torch.cat([text.T, torch.randn(32, k, generator=torch.Generator().manual_seed(1))], 1))
        off = q[:, -k:].T
        assert (off @ text.T).abs().max() < 1e-5
        scores = []
        for keep in (1.0, 0.6, 0.3, 0.0):  # share of the class evidence left
            _fix_image_features(monkeypatch, m, F.normalize(keep * clean + (1 - keep) * off, dim=1))
            scores.append(m.score(x))
        for better, worse in zip(scores, scores[1:]):
            assert (better > worse).all(), (variant, statistic, scores)
        if variant == "good_bad":
            assert (scores[0] > 0.5).all() and torch.allclose(scores[-1], torch.full((k,), 0.5, dtype=torch.float64))
            _fix_image_features(monkeypatch, m, text[k:])  # a "bad photo of a {c}." embedding
            assert (m.score(x) < 0.5).all()
        else:
            assert torch.allclose(scores[-1], torch.full((k,), 1 / k if statistic == "max_prob" else 0.0,
                                                         dtype=torch.float64), atol=1e-6)


def test_exact_probabilities_on_orthonormal_prompts(monkeypatch):
    s = 100.0
    x = torch.rand(2, 3, 32, 32)
    basis = torch.eye(32)
    feats = torch.stack([basis[0], F.normalize(basis[0] + basis[1], dim=0)])

    m = tiny(classes=["a", "b", "c", "d"], logit_scale=s)
    m.text_features = basis[:4]
    _fix_image_features(monkeypatch, m, feats)
    e = torch.exp(torch.tensor(s, dtype=torch.float64))
    got = m.score(x)
    assert got[0].item() == pytest.approx((e / (e + 3)).item(), rel=1e-6)
    assert got[1].item() == pytest.approx(0.5, abs=1e-6)  # halfway between two classes

    g = tiny(variant="good_bad", classes=["a", "b"], logit_scale=s)
    g.text_features = basis[:4]  # good_a, good_b, bad_a, bad_b
    feats = torch.stack([basis[0], F.normalize(basis[0] + basis[2], dim=0)])
    _fix_image_features(monkeypatch, g, feats)
    got = g.score(x)
    assert got[0].item() == pytest.approx((e / (e + 3)).item(), rel=1e-6)  # all mass on "good a"
    assert got[1].item() == pytest.approx(0.5, abs=1e-6)  # as good as bad


def test_model_logit_scale_is_the_default(metric):
    m = metric
    assert m.logit_scale is None and m.scale == pytest.approx(1 / 0.07, rel=1e-5)  # open_clip's init
    assert tiny(logit_scale=50).scale == 50


# ------------------------------------------------------------------ describe

def test_describe_round_trip(images):
    for kw in ({"variant": "good_bad"},
               {"statistic": "margin", "logit_scale": 30.0, "templates": ["a photo of my {}."], "seed": 3}):
        m = tiny(**kw)
        d = m.describe()
        assert json.loads(json.dumps(d)) == d  # storable as is in a run record
        assert d["num_classes"] == len(CLASSES) and d["classes"] == CLASSES and d["variant"] == m.variant
        again = ZSCLIPMetric(**d)
        assert again.describe() == d
        assert torch.equal(again.score(images), m.score(images))


def test_describe_hashes_long_class_lists():
    names = [f"class_{i}" for i in range(MAX_LISTED_CLASSES + 1)]
    m = tiny(classes=names)
    d = m.describe()
    assert "classes" not in d and d["classes_sha1"] == classes_digest(names) and d["num_classes"] == len(names)
    assert ZSCLIPMetric(**d, classes=names).describe() == d
    with pytest.raises(ValueError, match="pass the same list"):
        ZSCLIPMetric(**d)
    with pytest.raises(ValueError, match="do not match"):
        ZSCLIPMetric(**d, classes=names[::-1])
    with pytest.raises(ValueError, match="num_classes"):
        ZSCLIPMetric(**dict(d, classes_sha1=None), classes=names[:-1])


def test_registered_as_zsclip(metric, images):
    import fiftyone_dnniqa as dq

    if "zsclip" not in dq.list_metrics(source="dnniqa"):
        pytest.skip("zsclip is not registered")
    m = dq.create_metric("zsclip", model_cfg=TINY, classes=CLASSES)
    assert isinstance(m, ZSCLIPMetric) and torch.equal(m.score(images), metric.score(images))


# ------------------------------------------------------------------ weights

def test_missing_weights_fail_once_clearly_and_offline(no_network, empty_hub):
    t = time.monotonic()
    with pytest.raises(MissingWeightsError) as e:
        ZSCLIPMetric(model="ViT-B-32", pretrained="openai")
    msg = str(e.value)
    assert "zsclip ViT-B-32 pretrained=openai" in msg
    assert "timm/vit_base_patch32_clip_224.openai/open_clip_pytorch_model.bin" in msg
    assert "offline mode is on" in msg and str(empty_hub) in msg
    assert "pretrained=" in msg and "quick_gelu=True" in msg
    assert msg.count("Metric ") == 1  # one error, not a chain of retries
    assert no_network == []
    assert time.monotonic() - t < 5


def test_missing_weights_online_tries_the_network_once(monkeypatch, no_network, empty_hub):
    """Downloads allowed but the network down: one attempt, one clear error,
    none of huggingface_hub's retry-with-backoff loop."""
    import huggingface_hub.constants

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("DNNIQA_OFFLINE", raising=False)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    t = time.monotonic()
    with pytest.raises(MissingWeightsError) as e:
        ZSCLIPMetric(model="ViT-B-32", pretrained="laion2b_s34b_b79k")
    assert "download failed" in str(e.value) and "laion/CLIP-ViT-B-32-laion2B-s34B-b79K" in str(e.value)
    assert 1 <= len(no_network) <= 2  # one request (httpx may resolve twice)
    assert time.monotonic() - t < 5


def test_pretrained_weights_from_the_local_cache(monkeypatch, no_network, empty_hub, tmp_path, images):
    """A pretrained tag whose file is in the Hugging Face cache loads offline
    with the tag's preprocessing; the same file also loads by path."""
    from open_clip import factory, pretrained as oc_pretrained

    monkeypatch.setitem(factory._MODEL_CONFIGS, "Tiny-Test", json.loads(json.dumps(TINY)))
    monkeypatch.setitem(oc_pretrained._PRETRAINED, "Tiny-Test", {
        "tiny": {"hf_hub": "dnniqa/tiny-clip/", "mean": (0.5, 0.5, 0.5), "std": (0.25, 0.25, 0.25),
                 "interpolation": "bicubic", "resize_mode": "shortest"},
    })
    source = tiny(seed=7)
    snapshot = empty_hub / "models--dnniqa--tiny-clip" / "snapshots" / "0123abcd"
    snapshot.mkdir(parents=True)
    torch.save(source.model.state_dict(), snapshot / "open_clip_pytorch_model.bin")
    (empty_hub / "models--dnniqa--tiny-clip" / "refs").mkdir()
    (empty_hub / "models--dnniqa--tiny-clip" / "refs" / "main").write_text("0123abcd")

    m = ZSCLIPMetric(model="Tiny-Test", pretrained="tiny", classes=CLASSES)
    assert no_network == []
    assert m.mean == (0.5, 0.5, 0.5) and m.std == (0.25, 0.25, 0.25)
    assert torch.equal(m.text_features, source.text_features)  # the cached weights, not a fresh init
    assert m.describe()["model"] == "Tiny-Test" and m.describe()["pretrained"] == "tiny"

    by_path = ZSCLIPMetric(model="Tiny-Test", pretrained=str(snapshot / "open_clip_pytorch_model.bin"),
                           classes=CLASSES)
    assert torch.equal(by_path.score(images), source.score(images))  # OpenAI normalisation, like source
    assert os.path.isfile(by_path.describe()["pretrained"])


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_and_autocast_agree_with_cpu(images):
    m = tiny(variant="good_bad")
    cpu = m.score(images)
    m.to("cuda")
    assert m.text_features.device.type == "cuda"
    assert torch.allclose(m.score(images.cuda()), cpu, atol=1e-4)
    with torch.autocast("cuda", dtype=torch.float16):
        amp = m.score(images.cuda())
    assert amp.dtype == torch.float64 and torch.allclose(amp, cpu, atol=2e-2)
    m.set_classes(["cat", "dog"])  # text embeddings computed on the metric's device
    assert m.text_features.device.type == "cuda"
