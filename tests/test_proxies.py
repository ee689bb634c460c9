"""Proxies users choose: ``proxy=`` and ``weights=`` of the aligned metrics.

The real MobileNetV2 ImageNet weights (``$DNNIQA_MODELS``, else ``../shared/models``) serve
as the proxy and are checked against torchvision's model built and loaded here, the
standard preprocessing written out by hand and the softmax computed in numpy; a tiny
random timm model saved to a temporary file checks ``timm:``; wrong files fail at once
with one message naming the file and the architecture; run records keep the files'
hashes, so a field is never silently given scores of other weights.
"""

import hashlib
import os

import numpy as np
import pytest
import scipy.special
import timm
import torch
import torch.nn.functional as F
import torchvision

import fiftyone_dnniqa as dq
from fiftyone_dnniqa.core.images import prepare, read_image, to_float
from fiftyone_dnniqa.metrics import shared_forward
from fiftyone_dnniqa.metrics.aligned import AlignedFRMetric, AlignedMetric, AlignedTaskMetric
from fiftyone_dnniqa.metrics.backbones import load_backbone
from fiftyone_dnniqa.metrics.weights import ProxyWeightsError

from conftest import IMAGENET, _missing_data

HERE = os.path.dirname(os.path.abspath(__file__))
MODELS = os.environ.get("DNNIQA_MODELS") or os.path.normpath(os.path.join(HERE, "..", "..", "shared", "models"))
MNV2 = os.path.join(MODELS, "mobilenet_v2_imagenet_float.pth")
TV = "torchvision:mobilenet_v2"
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


@pytest.fixture(scope="module")
def mnv2_file():
    if not os.path.isfile(MNV2):
        _missing_data(f"no MobileNetV2 weights at {MNV2} (set DNNIQA_MODELS)")
    return MNV2


@pytest.fixture(scope="module")
def mnv2_oracle(mnv2_file):
    """torchvision's MobileNetV2 built and loaded here, as its model card says."""
    model = torchvision.models.mobilenet_v2(weights=None)
    model.load_state_dict(torch.load(mnv2_file, map_location="cpu", weights_only=True), strict=True)
    return model.eval()


@pytest.fixture(scope="module")
def photos(imagenet_files):
    """16 real photos as decoded (uint8, native size) and their ImageNet labels."""
    picks = imagenet_files[::31][:16]
    labels = {}
    with open(os.path.join(IMAGENET, "labels.csv")) as f:
        next(f)
        for line in f:
            name, index = line.strip().split(",")[:2]
            labels[name] = int(index)
    return [read_image(p) for p in picks], [labels[os.path.basename(p)] for p in picks]


@pytest.fixture(scope="module")
def mnv2_metric(mnv2_file):
    return dq.create_metric("aligned", proxy=TV, weights=mnv2_file)


def standard_view(image, resize, crop):
    """ImageNet's evaluation preprocessing written out: the shorter side to ``resize``
    (bilinear, antialiased), 8-bit like a resized PIL image, the central ``crop``, in
    [0, 1]. Sizes round and offsets floor as the package's ``prepare`` does; torchvision's
    ``Resize`` truncates the longer side and ``CenterCrop`` rounds its offsets, a 1-pixel
    shift that moved MobileNetV2's max-prob by up to 0.11 (0.012 on average) on 20 photos
    of this sample: the oracle takes the engine's geometry so that the comparison can be
    tight, and the recipe's numbers (256, 224, mean, std) are written here, not read."""
    h, w = image.shape[-2:]
    size = (round(h * resize / min(h, w)), round(w * resize / min(h, w)))
    # in float32, as torchvision resizes tensors: in float64 a few pixels round to the next
    # 8-bit level, which moves max-prob by up to 3e-4
    x = F.interpolate(image[None].float(), size=size, mode="bilinear", antialias=True, align_corners=False)
    x = x.round().clamp(0, 255)[0] / 255
    top, left = (size[0] - crop) // 2, (size[1] - crop) // 2
    return x[:, top:top + crop, left:left + crop]


def max_prob(model, views, mean, std):
    """Softmax by hand (scipy) of ``model``'s logits on normalised ``views``; max and argmax."""
    x = (torch.stack(views) - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)
    with torch.no_grad():
        z = model(x).double().numpy()
    p = np.exp(z - z.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    return p.max(1), z.argmax(1)


def engine_batch(metric, images):
    return to_float(torch.stack([prepare(im, metric.input_spec) for im in images]))


# ---------------------------------------------------------------- the real MobileNetV2


def test_real_mobilenet_v2_weights_score_as_torchvision_called_directly(mnv2_metric, mnv2_oracle, photos):
    images, labels = photos
    assert mnv2_metric.input_spec.resize == 256 and mnv2_metric.input_spec.crop == 224
    want, top1 = max_prob(mnv2_oracle, [standard_view(im, 256, 224) for im in images], IMAGENET_MEAN,
                          IMAGENET_STD)
    got = mnv2_metric.score(engine_batch(mnv2_metric, images)).numpy()
    # float32 convolutions in another memory layout (channels last): about 1e-6 apart
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-4)
    assert np.mean(top1 == np.array(labels)) >= 0.6  # real ImageNet weights: 85% top-1 on 100 such photos


def test_real_ensemble_is_the_mean_of_both_models_computed_directly(mnv2_file, mnv2_oracle, photos):
    """Lite2 (resize 297, crop 260, (255 x - 127) / 128) and MobileNetV2 (256, 224,
    ImageNet mean/std): two recipes, each proxy prepared its own way from the native photo."""
    images = photos[0][:6]
    ens = dq.create_metric("aligned", proxy=["efficientnet_lite2", TV], weights=[None, mnv2_file])
    lite2 = load_backbone("efficientnet_lite2").model
    p_lite2, _ = max_prob(lite2, [standard_view(im, 297, 260) for im in images], (127 / 255,) * 3, (128 / 255,) * 3)
    p_mnv2, _ = max_prob(mnv2_oracle, [standard_view(im, 256, 224) for im in images], IMAGENET_MEAN, IMAGENET_STD)
    assert ens.input_spec.resize is None and ens.input_spec.max_side == 4 * 297
    # photos differ in size: one at a time (the engine batches equal sizes together)
    got = np.concatenate([ens.score(engine_batch(ens, [im])).numpy() for im in images])
    np.testing.assert_allclose(got, (p_lite2 + p_mnv2) / 2, rtol=0, atol=1e-4)


def test_user_lite_weights_and_a_checkpoint_or_torchscript_load_alike(mnv2_file, mnv2_metric, photos, tmp_path):
    images, _ = photos
    x = engine_batch(mnv2_metric, images[:4])
    want = mnv2_metric.score(x)
    state = torch.load(mnv2_file, weights_only=True)
    torch.save({"epoch": 3, "state_dict": {f"module.{k}": v for k, v in state.items()}}, tmp_path / "ckpt.pth")
    model = torchvision.models.mobilenet_v2(weights=None)
    model.load_state_dict(state)
    torch.jit.save(torch.jit.script(model.eval()), tmp_path / "scripted.pt")
    for name in ("ckpt.pth", "scripted.pt"):
        m = dq.create_metric("aligned", proxy=TV, weights=str(tmp_path / name))
        torch.testing.assert_close(m.score(x), want, rtol=0, atol=1e-6)
    shipped = dq.create_metric("aligned")  # the Lite0 file the package ships, given as a user's file
    path = tmp_path / "lite0.pth"
    torch.save(shipped.backbones[0].model.state_dict(), path)
    mine = dq.create_metric("aligned", proxy="efficientnet_lite0", weights=str(path))
    torch.testing.assert_close(mine.score(x), shipped.score(x), rtol=0, atol=1e-6)


# ---------------------------------------------------------------- timm: a tiny random model


@pytest.fixture(scope="module")
def timm_files(tmp_path_factory):
    """Two tiny random timm ``test_resnet`` classifiers of 10 classes, saved as state dicts."""
    folder = tmp_path_factory.mktemp("timm")
    paths = []
    for seed in (0, 1):
        torch.manual_seed(seed)
        model = timm.create_model("test_resnet", pretrained=False, num_classes=10)
        paths.append(str(folder / f"test_resnet_{seed}.pth"))
        torch.save(model.state_dict(), paths[-1])
    return paths


def timm_oracle(path):
    """The model and its preprocessing as timm itself builds them: ``(model, resize, crop, mean, std)``."""
    model = timm.create_model("test_resnet", pretrained=False, num_classes=10)
    model.load_state_dict(torch.load(path, weights_only=True), strict=True)
    cfg = timm.data.resolve_data_config({}, model=model)
    steps = {type(t).__name__: t for t in timm.data.create_transform(**cfg).transforms}
    crop = steps["CenterCrop"].size
    return model.eval(), steps["Resize"].size, crop[0] if isinstance(crop, (tuple, list)) else crop, \
        cfg["mean"], cfg["std"]


def test_a_timm_file_serves_with_timms_preprocessing(timm_files, photos):
    images, _ = photos
    model, resize, crop, mean, std = timm_oracle(timm_files[0])
    m = dq.create_metric("aligned", proxy="timm:test_resnet", weights=timm_files[0])
    assert (m.input_spec.resize, m.input_spec.crop) == (resize, crop) == (168, 160)
    assert m.backbones[0].num_classes == 10 and tuple(m.backbones[0].mean) == tuple(mean) == (0.5,) * 3
    want, _ = max_prob(model, [standard_view(im, resize, crop) for im in images], mean, std)
    np.testing.assert_allclose(m.score(engine_batch(m, images)).numpy(), want, rtol=0, atol=1e-5)


def test_a_timm_file_beside_the_shipped_lite0(timm_files, photos):
    images, _ = photos
    model, resize, crop, mean, std = timm_oracle(timm_files[1])
    ens = dq.create_metric("aligned", proxy=["efficientnet_lite0", "timm:test_resnet"], weights=[None, timm_files[1]],
                           statistic="neg_entropy")
    lite0 = load_backbone("efficientnet_lite0").model

    def neg_entropy(net, views, mean, std):
        x = (torch.stack(views) - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)
        with torch.no_grad():
            p = scipy.special.softmax(net(x).double().numpy(), axis=1)
        return 1 + scipy.special.xlogy(p, p).sum(1) / np.log(p.shape[1])

    want = (neg_entropy(lite0, [standard_view(im, 256, 224) for im in images[:6]], (127 / 255,) * 3, (128 / 255,) * 3)
            + neg_entropy(model, [standard_view(im, resize, crop) for im in images[:6]], mean, std)) / 2
    got = np.concatenate([ens.score(engine_batch(ens, [im])).numpy() for im in images[:6]])
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-4)


def test_the_memo_keeps_each_weights_file_apart(timm_files):
    """Two files of one architecture: each keeps its memo slot, so that alternating them
    (a user's proxy beside another) reruns neither."""
    a, b = (load_backbone("timm:test_resnet", weights=f) for f in timm_files)
    runs = []
    for bb in (a, b):  # the classifier runs once per forward pass
        bb.model.get_classifier().register_forward_hook(lambda mod, inp, out, name=bb.sha256: runs.append(name))
    x = torch.rand(2, 3, 160, 160, generator=torch.Generator().manual_seed(0))
    shared_forward.clear_memo()
    with torch.inference_mode():
        outs = [shared_forward.proxy_outputs(bb, x).logits for bb in (a, b, a, b)]
        assert runs == [a.sha256, b.sha256]  # the second round comes from the memo
        for bb, z in zip((a, b), outs):
            torch.testing.assert_close(z, bb.model(bb.normalize(x)), rtol=1e-5, atol=1e-5)
    assert not torch.equal(outs[0], outs[1]) and outs[2] is outs[0] and outs[3] is outs[1]
    shared_forward.clear_memo()


# ---------------------------------------------------------------- files that cannot serve


def test_wrong_files_fail_at_once_naming_file_and_architecture(mnv2_file, timm_files, tmp_path):
    def fails(match, **options):
        with pytest.raises(ProxyWeightsError, match=match) as e:
            dq.create_metric("aligned", **options)
        assert options["weights"] in str(e.value) or os.path.abspath(options["weights"]) in str(e.value)
        return str(e.value)

    missing = str(tmp_path / "nope.pth")
    assert fails("no such file", proxy=TV, weights=missing) == (
        f"weights file '{missing}' for proxy '{TV}': no such file")
    msg = fails("does not fit torchvision:resnet18", proxy="torchvision:resnet18", weights=mnv2_file)
    assert "torchvision:resnet18" in msg and "missing keys" in msg and "unexpected keys" in msg
    fails("does not fit timm:test_resnet", proxy="timm:test_resnet", weights=mnv2_file)
    fails("314 tensors, efficientnet_lite0 has 296", proxy="efficientnet_lite0", weights=mnv2_file)
    torch.save(torch.nn.Linear(2, 3), tmp_path / "module.pt")
    fails("holds pickled Python objects, not a state dict", proxy=TV, weights=str(tmp_path / "module.pt"))
    (tmp_path / "notes.txt").write_text("not weights")
    fails("not a PyTorch weights file", proxy=TV, weights=str(tmp_path / "notes.txt"))
    torch.save({"lr": 0.1}, tmp_path / "hparams.pth")
    fails("holds a dict, not a state dict of tensors", proxy=TV, weights=str(tmp_path / "hparams.pth"))
    state = torch.load(mnv2_file, weights_only=True)
    state["classifier.1.bias"] = state["classifier.1.bias"][:10]  # 1000 weights, 10 biases
    torch.save(state, tmp_path / "cut.pth")
    msg = fails("tensors of another shape", proxy=TV, weights=str(tmp_path / "cut.pth"))
    assert "classifier.1.bias (10,) vs (1000,)" in msg


def test_aligned_task_needs_imagenets_1000_classes(timm_files):
    with pytest.raises(ProxyWeightsError, match="10 classes; aligned_task pools the proxy's 1000 ImageNet-1k") as e:
        AlignedTaskMetric(["tench"], proxy="timm:test_resnet", weights=timm_files[0])
    assert timm_files[0] in str(e.value) and "timm:test_resnet" in str(e.value)
    assert AlignedMetric(proxy="timm:test_resnet", weights=timm_files[0]).backbones[0].num_classes == 10


def test_proxy_and_weights_arguments(timm_files):
    with pytest.raises(ValueError, match="^give proxy= or backbone= \\(its former name\\), not both$"):
        AlignedMetric(proxy="efficientnet_lite0", backbone="efficientnet_lite0")
    with pytest.raises(ValueError, match="weights= gives 1 file\\(s\\) for 2 proxies"):
        AlignedMetric(proxy=["efficientnet_lite0", "timm:test_resnet"], weights=timm_files[0])
    with pytest.raises(ValueError, match="weights= gives 2 file\\(s\\) for 1 proxies"):
        AlignedMetric(proxy="timm:test_resnet", weights=timm_files)
    with pytest.raises(ValueError, match="Unknown torchvision model 'mobilenet_v9'"):
        AlignedMetric(proxy="torchvision:mobilenet_v9", weights=timm_files[0])
    old = AlignedFRMetric(backbone="timm:test_resnet", weights=[timm_files[0]])  # the former name still works
    assert old.backbone_names == ["timm:test_resnet"] and old.backbones[0].weights == timm_files[0]


# ---------------------------------------------------------------- run records


def test_run_records_keep_each_files_hash(timm_files, imagenet_files, make_dataset):
    ds = make_dataset(imagenet_files[:3])
    opts = {"proxy": ["efficientnet_lite0", "timm:test_resnet"], "weights": [None, timm_files[0]]}
    dq.compute_quality(ds, "aligned", field="q", metric_options=opts, batch_size=2)
    recorded = dq.get_quality_run_info(ds, "q").config.metric_options
    with open(timm_files[0], "rb") as f:
        sha = hashlib.sha256(f.read()).hexdigest()
    assert recorded["backbone"] == opts["proxy"] and recorded["weights"] == [None, timm_files[0]]
    assert recorded["weights_sha256"] == [None, sha]
    first = ds.values("q")
    other = dict(opts, weights=[None, timm_files[1]])
    with pytest.raises(ValueError, match="field 'q' holds scores of metric 'aligned'"):
        dq.compute_quality(ds, "aligned", field="q", metric_options=other)
    assert ds.values("q") == first
    dq.compute_quality(ds, "aligned", field="q", metric_options=other, overwrite=True)
    assert dq.get_quality_run_info(ds, "q").config.metric_options["weights_sha256"][1] != sha
    assert ds.values("q") != first
