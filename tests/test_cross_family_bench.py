"""The cross-family benchmark code: task models from weight files, proxy ensembles that never
contain the task model, the paired AUROC differences and the per-family rows
(benchmarks/task_models.py, alignment_families.py, the ensemble rows of accuracy.py)."""

import os
import sys

import numpy as np
import pytest
import torch
from sklearn.metrics import roc_auc_score

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "benchmarks"))
import accuracy as ACCB  # noqa: E402
import alignment_families as AF  # noqa: E402
import alignment as AL  # noqa: E402
import task_models as TM  # noqa: E402

from conftest import _missing_data  # noqa: E402
from fiftyone_dnniqa.core.images import prepare, read_image, to_float  # noqa: E402
from fiftyone_dnniqa.metrics.base import InputSpec  # noqa: E402

MNV2 = os.path.join(TM.MODELS, "mobilenet_v2_imagenet_float.pth")


def _arrays(n_img=12, seed=0):
    """Synthetic arrays in the format of ``accuracy.py --extract``: 3 networks' confidences
    and correctness over clean + one corruption per family at two severities."""
    rng = np.random.default_rng(seed)
    rows = [("clean", 0)] + [(cs[0], s) for cs in ACCB.FAMILIES.values() for s in (1, 3)]
    d = {"corruption": [], "severity": [], "image": []}
    for c, s in rows:
        d["corruption"] += [c] * n_img
        d["severity"] += [s] * n_img
        d["image"] += list(range(n_img))
    n = len(d["image"])
    d = {k: np.asarray(v) for k, v in d.items()}
    for net in ("efficientnet_lite0", "efficientnet_lite1", "mobilenet_v2", "efficientnet_lite2"):
        conf = rng.uniform(0.05, 1, n) * (1 - 0.15 * d["severity"])
        d["confidence:" + net] = conf
        d["correct:" + net] = rng.random(n) < conf
    d["quality:aligned"] = d["confidence:efficientnet_lite0"]
    return d


def test_task_model_names_and_weight_paths():
    parsed = TM.parse_task_models("efficientnet_lite2, torchvision:mobilenet_v2=w.pth,timm:resnet18=/abs/r.pth")
    assert parsed == [("efficientnet_lite2", "efficientnet_lite2", None),
                      ("mobilenet_v2", "torchvision:mobilenet_v2", os.path.join(TM.MODELS, "w.pth")),
                      ("resnet18", "timm:resnet18", "/abs/r.pth")]
    assert TM.missing_weights(parsed) == [os.path.join(TM.MODELS, "w.pth"), "/abs/r.pth"]


def test_no_ensemble_contains_its_task_model_and_each_has_another_family():
    for task, members in TM.CROSS_PROXIES.items():
        assert task not in members and TM.PROXY in members and len(members) == 2
        assert {m.split("_lite")[0] for m in members} != {task.split("_lite")[0]}


def test_ensemble_quality_is_the_mean_of_the_members_max_probabilities():
    d = _arrays()
    np.testing.assert_allclose(TM.ensemble_quality(d, "mobilenet_v2"),
                               (d["confidence:efficientnet_lite0"] + d["confidence:efficientnet_lite1"]) / 2)
    np.testing.assert_allclose(TM.ensemble_quality(d, "efficientnet_lite2"),
                               (d["confidence:efficientnet_lite0"] + d["confidence:mobilenet_v2"]) / 2)
    del d["confidence:mobilenet_v2"]
    assert TM.ensemble_quality(d, "efficientnet_lite2") is None
    assert TM.ensemble_quality(d, "resnet18") is None


def test_the_accuracy_benchmark_loads_the_ensembles_and_compares_them(tmp_path):
    d = _arrays()
    np.savez(tmp_path / "t.npz", **{f"{split}:{k}": v for k, v in d.items() for split in ("dev", "test")})
    _, test, _ = ACCB.load([str(tmp_path / "t.npz")])
    for task in ("mobilenet_v2", "efficientnet_lite2"):
        other = d["confidence:" + TM.CROSS_PROXIES[task][1]]
        np.testing.assert_allclose(test["quality:proxies:" + task], (d["quality:aligned"] + other) / 2)
    labels = [m[0] for m in ACCB.method_list("quantile") if m[1] == "proxies"]
    assert labels == [f"{ACCB.CROSS}: quantile", f"{ACCB.CROSS}: doc_fit", f"{ACCB.CROSS}: atc"]
    assert len([m for m in ACCB.method_list("doc_fit") if m[1] == "proxies"]) == 2


def test_the_accuracy_benchmark_fits_the_proxy_pair_on_its_own_scores():
    """The pair's rows are the aligned rows of arrays whose quality is the pair's score."""
    def with_groups(d):
        d["group"] = np.array([f"{c}/{s}" for c, s in zip(d["corruption"], d["severity"])])
        d["family"] = np.array([ACCB.FAMILY_OF.get(c, "clean") for c in d["corruption"]])
        d["quality:proxies:mobilenet_v2"] = TM.ensemble_quality(d, "mobilenet_v2")
        return d

    dev, test = with_groups(_arrays(n_img=20, seed=6)), with_groups(_arrays(n_img=20, seed=7))
    pair = ACCB.lofo(dev, test, "mobilenet_v2", ("x", "proxies", "isotonic", "conformal"), 0.9, 50)
    swapped = [{**d, "quality:aligned": d["quality:proxies:mobilenet_v2"]} for d in (dev, test)]
    oracle = ACCB.lofo(*swapped, "mobilenet_v2", ("x", "aligned", "isotonic", "conformal"), 0.9, 50)
    single = ACCB.lofo(dev, test, "mobilenet_v2", ("x", "aligned", "isotonic", "conformal"), 0.9, 50)
    assert len(pair) == 2 * len(ACCB.FAMILIES)
    assert [r["predicted"] for r in pair] == [r["predicted"] for r in oracle]
    assert [r["predicted"] for r in pair] != [r["predicted"] for r in single]


def test_paired_auroc_difference_against_sklearn_and_whole_clusters():
    rng = np.random.default_rng(3)
    n = 60
    correct = rng.random(n) < 0.5
    a = correct + rng.normal(0, 0.8, n)
    b = correct + rng.normal(0, 1.2, n)
    est, lo, hi = AF.paired_auroc_difference(a, b, correct, np.arange(n), n_boot=300, seed=1)
    assert est == pytest.approx(roc_auc_score(correct, a) - roc_auc_score(correct, b))
    assert lo < est < hi
    # every sample copied 4 times into one cluster: drawing clusters is drawing samples, so
    # the interval is the one of the original samples (drawing copies would narrow it)
    k = 4
    dup = AF.paired_auroc_difference(np.repeat(a, k), np.repeat(b, k), np.repeat(correct, k),
                                     np.repeat(np.arange(n), k), n_boot=300, seed=1)
    assert dup == pytest.approx((est, lo, hi))
    assert AF.paired_auroc_difference(a, a, correct, np.arange(n), n_boot=50) == (0.0, 0.0, 0.0)


def test_family_rows_by_hand():
    d = _arrays(n_img=30, seed=4)
    preds = AF.predictors(d, "mobilenet_v2")
    assert list(preds) == ["aligned (Lite0)", "own confidence (limit anchor)",
                           "proxies efficientnet_lite0 + efficientnet_lite1"]
    rows = AF.family_rows(d, "mobilenet_v2", preds)
    assert list(rows) == list(ACCB.FAMILIES)
    for fam, row in rows.items():
        m = np.isin(d["corruption"], ACCB.FAMILIES[fam])  # severities 1 and 3, never clean
        c, p = d["correct:mobilenet_v2"][m], d["correct:efficientnet_lite0"][m]
        assert row["n"] == m.sum() == 60
        assert row["accuracy"] == pytest.approx(c.mean()) and row["proxy_accuracy"] == pytest.approx(p.mean())
        assert row["agreement"] == pytest.approx(np.mean(c == p))
        assert row["auroc"]["own confidence (limit anchor)"] == pytest.approx(
            roc_auc_score(c, d["confidence:mobilenet_v2"][m]))
        assert row["auroc"]["proxies efficientnet_lite0 + efficientnet_lite1"] == pytest.approx(
            roc_auc_score(c, (d["confidence:efficientnet_lite0"][m] + d["confidence:efficientnet_lite1"][m]) / 2))


def test_the_section_reports_each_task_model_and_its_verdicts():
    d = _arrays(n_img=30, seed=5)
    lines, res = AF.section(d, ["efficientnet_lite2", "mobilenet_v2", "not_scored"], n_boot=50)
    assert list(res) == ["efficientnet_lite2", "mobilenet_v2"]
    r = res["mobilenet_v2"]
    c = d["correct:mobilenet_v2"]
    assert r["predictors"]["aligned (Lite0)"]["auroc"][0] == pytest.approx(roc_auc_score(c, d["quality:aligned"]))
    assert r["accuracy"] == pytest.approx(c.mean()) and r["images"] == 30
    own = roc_auc_score(c, d["confidence:mobilenet_v2"])
    al = roc_auc_score(c, d["quality:aligned"])
    verdict = next(line for line in lines if line.startswith("- mobilenet_v2, `aligned`"))
    met = al >= 0.85 and own - al <= 0.02
    assert verdict.count(": met;") + verdict.count(": not met;") == 1 and (": met;" in verdict) == met
    assert f"{own:.3f}" in verdict and f"{al:.3f}" in verdict


def test_verdicts_name_the_families_that_fall_short():
    fam = {"noise": {"auroc": {"aligned (Lite0)": 0.80, "own confidence (limit anchor)": 0.85}, "agreement": 0.7},
           "blur": {"auroc": {"aligned (Lite0)": 0.90, "own confidence (limit anchor)": 0.91}, "agreement": 0.9}}
    r = {"predictors": {"aligned (Lite0)": {"auroc": [0.86, 0, 1]},
                        "own confidence (limit anchor)": {"auroc": [0.87, 0, 1]},
                        "proxies a + b": {"auroc": [0.875, 0, 1]}},
         "differences": {"aligned (Lite0)": (-0.01, -0.02, 0.0), "proxies a + b": (0.005, -0.001, 0.01)},
         "families": fam}
    lines = AF.verdicts("m", r)
    assert ": met;" in lines[0] and "at or above it" in lines[1] and "includes 0" in lines[1]
    assert lines[2].endswith("noise (0.800 vs 0.850, proxy and task model agree on 70% of its samples).")
    r["predictors"]["aligned (Lite0)"]["auroc"][0] = 0.849
    assert ": not met;" in AF.verdicts("m", r)[0]
    r["predictors"]["aligned (Lite0)"]["auroc"][0] = 0.8499 + 0.0002
    r["predictors"]["own confidence (limit anchor)"]["auroc"][0] = 0.8701 + 0.0002
    assert ": not met;" in AF.verdicts("m", r)[0]  # 0.0200 short by a hair more than 0.02


@pytest.fixture(scope="module")
def mobilenet():
    if not os.path.exists(MNV2):
        _missing_data(f"no MobileNetV2 weights at {MNV2} (set DNNIQA_MODELS)")
    return TM.load_task_model("mobilenet_v2", "torchvision:mobilenet_v2", MNV2)


def test_mobilenet_from_its_file_against_torchvision_called_directly(mobilenet, imagenet_files):
    import torchvision  # deferred: imports torch._dynamo (about 2 s)
    from PIL import Image

    ref = torchvision.models.mobilenet_v2(weights=None)
    ref.load_state_dict(torch.load(MNV2, map_location="cpu", weights_only=True))
    ref.eval()
    tf = torchvision.transforms.Compose([
        torchvision.transforms.Resize(256), torchvision.transforms.CenterCrop(224), torchvision.transforms.ToTensor(),
        torchvision.transforms.Normalize((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))])
    paths = imagenet_files[:3]
    with torch.no_grad():
        z_ref = ref(torch.stack([tf(Image.open(p).convert("RGB")) for p in paths]))
    x = to_float(torch.stack([prepare(read_image(p), InputSpec(resize=256, crop=224)) for p in paths]))
    z = AL.task_logits(mobilenet, x)
    p, p_ref = torch.softmax(z, 1), torch.softmax(z_ref, 1)
    assert mobilenet.name == "mobilenet_v2" and mobilenet.crop == 224
    assert torch.equal(p.argmax(1), p_ref.argmax(1))
    # the package decodes and resizes on its own (antialiased tensors, not PIL): close, not equal
    assert (p.amax(1) - p_ref.amax(1)).abs().max() < 0.1


def test_a_full_alignment_run_adds_the_section_from_its_proxy_logits():
    rng = np.random.default_rng(8)
    d = _arrays(n_img=20, seed=8)
    n = len(d["image"])
    z = rng.normal(0, 2, (n, 1000)).astype(np.float32)
    test = {**{k: d[k] for k in ("corruption", "severity", "image")}, "proxy_logits": torch.from_numpy(z),
            "label": rng.integers(0, 1000, n)}
    test.update({k: v for k, v in d.items() if k.startswith(("correct:", "confidence:")) and "lite0" not in k})
    args = type("Args", (), {"n_boot": 50, "seed": 0})()
    lines = AL.families_section(test, ["efficientnet_lite1", "efficientnet_lite2", "mobilenet_v2"], args)
    p = np.exp(z - z.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    c = d["correct:mobilenet_v2"]
    expected = roc_auc_score(c, p.max(1))
    row = next(line for line in lines if line.startswith("| mobilenet_v2 | aligned (Lite0) |"))
    assert row.split(" | ")[3].startswith(f"{expected:.3f} [")
    assert sum(line.startswith("| efficientnet_lite1 | proxies") for line in lines) == 1
    del test["confidence:mobilenet_v2"]
    assert AL.families_section(test, ["efficientnet_lite2"], args) == []  # its pair needs mobilenet_v2


def test_an_interrupted_extraction_goes_on_from_its_file(tmp_path):
    path = str(tmp_path / "a.npz")
    assert ACCB._resume(path, "test", ["fog"], {"m": None}) == ({}, 0.0)
    saved = {"test:corruption": np.array(["clean", "fog"]), "test:image": np.array([0, 0]),
             "test:correct:m": np.array([True, False]), "meta:test_extract_s": np.array(12.5)}
    np.savez(path, **saved)
    rec, spent = ACCB._resume(path, "test", ["fog"], {"m": None})
    assert rec == {"corruption": ["clean", "fog"], "image": [0, 0], "correct:m": [True, False]} and spent == 12.5
    assert ACCB._resume(path, "dev", ["fog"], {"m": None}) == ({}, 0.0)
    for corruptions, nets in ((["snow"], {"m": None}), (["fog"], {"m": None, "other": None})):
        with pytest.raises(SystemExit, match="other corruptions or networks"):
            ACCB._resume(path, "test", corruptions, nets)


def test_the_limit_lines_say_nothing_where_noise_alone_exceeds_the_target():
    rows = [{"measured": 0.5, "n": 32}, {"measured": 0.9, "n": 250}]
    floor = ACCB.noise_floor(rows)
    assert floor == pytest.approx((np.sqrt(2 / np.pi * 0.25 / 32) + np.sqrt(2 / np.pi * 0.09 / 250)) / 2)
    fits = {"doc_fit (aligned)": {"others": {"mae": 0.05}, "all": {"mae": 0.045}, "own": {"mae": 0.03}}}
    (line,) = ACCB.limit_lines(fits, "doc_fit", floor=0.062)
    assert line.startswith("Groups this small are off by about 0.062")
    (line,) = ACCB.limit_lines(fits, "doc_fit", floor=0.022)
    assert line.endswith("0.04 is reached only when the shift is itself labelled.")
