"""The cause benchmark's oracle for families held out whole: the nearest families by their
mean effect on the features, against a hand computation."""

import os
import sys

import numpy as np
import pytest
import torch
from scipy.ndimage import laplace

from fiftyone_dnniqa.demo import packaged_photos
from fiftyone_dnniqa.metrics.cause_training import Recipe

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "benchmarks"))

import cause as bench  # noqa: E402
import cause_report  # noqa: E402

#: clean features whose every column has mean 0 and standard deviation 1: standardising
#: leaves them as they are, so the shifts below are the standardised ones
CLEAN = [[1, 1, 1], [-1, -1, -1], [1, -1, 1], [-1, 1, -1]]
#: each family's shift from the clean features, the same on every image
SHIFT = {"gaussian_noise": [1, 0, 0], "defocus_blur": [0.9, 0.3, 0], "jpeg_compression": [0, 0.5, 2],
         "brightness": [3, 0, 0]}


def _examples():
    names, rows, recipes = [], [], []
    for i, x in enumerate(CLEAN):
        names.append("clean")
        rows.append(x)
        recipes.append(Recipe(image=i, steps=()))
        for c, s in SHIFT.items():
            names.append(c)
            rows.append([a + b for a, b in zip(x, s)])
            recipes.append(Recipe(image=i, steps=((c, 3),)))
    return {"names": names, "X": torch.tensor(rows, dtype=torch.float32), "recipes": recipes}


def test_nearest_families_by_the_mean_shift_of_the_features():
    near = bench.nearest_families(_examples())
    assert set(near) == {"noise", "blur", "compression", "exposure"}
    # by hand: noise-blur 0.32, noise-exposure 2, noise-compression 2.29 (Euclidean);
    # cosine distance 0 to exposure (the same direction), 0.05 to blur, 1 to compression
    assert near["noise"] == {"euclidean": ["blur", "exposure", "compression"],
                             "cosine": ["exposure", "blur", "compression"]}
    # compression: 2.20 to blur, 2.29 to noise, 3.64 to exposure; cosine 0.92 to blur, 1 to both others
    assert near["compression"]["euclidean"] == ["blur", "noise", "exposure"]
    assert near["compression"]["cosine"][0] == "blur"
    assert near["blur"]["euclidean"] == ["noise", "exposure", "compression"]


def test_the_report_counts_the_families_whose_nearest_one_is_named():
    ho = {"corruptions": {"snow": {"accuracy": {"argmax": 0.9, "stored": 0.8}, "argmax_confusion": {}}},
          "families": {"noise": {"argmax": {"blur": 0.6, "exposure": 0.4}, "stored": {"blur": 0.5},
                                 "nearest": {"euclidean": ["blur", "exposure", "compression"],
                                             "cosine": ["exposure", "blur", "compression"]}},
                       "blur": {"argmax": {"compression": 0.7, "noise": 0.3}, "stored": {"none": 1.0},
                                "nearest": {"euclidean": ["compression", "noise"],
                                            "cosine": ["compression", "noise"]}}}}
    lines = cause_report._held_out_lines(ho)
    row = next(line for line in lines if line.startswith("| noise |"))
    assert row.endswith("| blur (named), exposure, compression | exposure, blur (named), compression |")
    assert ("The family named most often (arg-max) is the nearest one for 2 of 2 families held out whole by "
            "Euclidean distance, 1 of 2 by cosine distance.") in lines
    for v in ho["families"].values():  # a report written before the oracle existed
        del v["nearest"]
    lines = cause_report._held_out_lines(ho)
    assert not any(line.startswith("The family named most often") for line in lines)
    assert next(line for line in lines if line.startswith("| blur |")).endswith("| - | - |")


def test_cached_features_are_keyed_by_the_code_that_renders_them(tmp_path, monkeypatch):
    """A change to any corruption's source (the low light, say) changes the cache key,
    so the benchmark never reads features rendered by older corruptions."""
    import types

    import train_cause_head

    folder = tmp_path / "corruptions"
    folder.mkdir()
    for name in ("__init__.py", "camera.py"):
        (folder / name).write_text(f"# {name}\n")
    monkeypatch.setattr(train_cause_head, "corruptions_pkg", types.SimpleNamespace(__file__=str(folder / "__init__.py")))
    before = train_cause_head.rendering_fingerprint()
    assert train_cause_head.rendering_fingerprint() == before
    (folder / "camera.py").write_text("# camera.py, two stops darker\n")
    assert train_cause_head.rendering_fingerprint() != before


def test_the_compound_measures_against_a_hand_count():
    """Three images: dark and noisy (named exposure + noise, most likely noise), blurred
    and compressed (named blur only, most likely blur), noisy and blurred (named noise +
    exposure, most likely exposure)."""
    import cause_compound

    from fiftyone_dnniqa.metrics.cause import FAMILIES

    recipes = [Recipe(0, (("low_light", 4), ("gaussian_noise", 3))), Recipe(1, (("defocus_blur", 5), ("dk_jpeg", 3))),
               Recipe(2, (("shot_noise", 3), ("motion_blur", 4)))]
    probs = torch.zeros(3, len(FAMILIES))
    for k, fam in enumerate(("noise", "blur", "exposure")):
        probs[k, FAMILIES.index(fam)] = 0.9
    stored = [[("noise", 0.9), ("exposure", 0.8)], [("blur", 0.9)], [("exposure", 0.9), ("noise", 0.7)]]
    fam_sev = torch.zeros(3, len(FAMILIES))
    fam_sev[:, FAMILIES.index("blur")] = torch.tensor([0.5, 4.2, 3.1])
    m = cause_compound._measures([0, 1, 2], recipes, probs, fam_sev, stored)
    assert m["n"] == 3
    assert m["top1_in_true_set"] == 2 / 3  # the third's most likely (exposure) is not one of its families
    assert m["all_named"] == 1 / 3  # only the first has every family named
    assert m["recall"] == {"blur": 0.5, "noise": 1.0, "compression": 0.0, "exposure": 1.0}
    assert m["false_alarm"]["exposure"] == 0.5 and m["false_alarm"]["noise"] == 0.0
    assert m["false_alarm"]["blur"] == 0.0 and "contrast_haze" in m["false_alarm"]
    assert m["severity_spearman"]["blur"] == pytest.approx(1.0)  # 4.2 at severity 5 above 3.1 at 4
    assert m["severity_spearman"]["noise"] is None  # both at severity 3: no ranking
    names = [name for _, name in cause_compound.compound_recipes(30)]
    assert "low_light + gaussian_noise" in names and "shot_noise > defocus_blur" in names


def test_extra_families_on_single_degradations_against_a_hand_count():
    """Five images: a clean one and a compound (not counted), a blurred one stored blur
    and compression (one extra), a noisy one stored "none" (no extra), a dark one stored
    exposure and noise (one extra): 2 of 3 single degradations carry an extra family."""
    import cause_compound

    from fiftyone_dnniqa.metrics.cause import FAMILIES, NONE

    names = ["clean", "low_light + gaussian_noise", "defocus_blur", "gaussian_noise", "low_light"]
    recipes = [Recipe(0, ()), Recipe(1, (("low_light", 4), ("gaussian_noise", 3))), Recipe(2, (("defocus_blur", 3),)),
               Recipe(3, (("gaussian_noise", 4),)), Recipe(4, (("low_light", 5),))]
    stored = [[("blur", 0.9)], [("exposure", 0.9), ("blur", 0.6)], [("blur", 0.9), ("compression", 0.5)],
              [(NONE, 0.8)], [("exposure", 0.9), ("noise", 0.7)]]
    out = cause_compound.extra_families(names, recipes, stored)
    assert out["n"] == 3 and out["share"] == pytest.approx(2 / 3)
    assert out["by_family"]["compression"] == pytest.approx(1 / 3) and out["by_family"]["noise"] == pytest.approx(1 / 3)
    assert out["by_family"]["blur"] == 0 and set(out["by_family"]) == set(FAMILIES)
    lines = cause_compound.compound_lines({"groups": {}, "held_out_combinations": _empty_measures(),
                                           "held_out_orders": _empty_measures(), "singles_extra": out})
    assert lines[-1] == ("On the 3 single degradations above (one corruption, severity 3-5), a family the image does "
                         "not hold is stored too on 66.7% of them (by family: noise 33.3%, compression 33.3%).")


def _empty_measures():
    return {"n": 0, "top1_in_true_set": None, "all_named": None, "recall": {}, "false_alarm": {},
            "severity_spearman": {}}


def _budget_case():
    """Hand-made probabilities (deciding, naming) over the 7 families: 20 combinations of
    blur + noise whose namer gives blur 0.96, 0.91, ... 0.51 on ten of them (noise decides);
    10 of compression + exposure (compression decides, exposure named at 0.97), one of
    which the namer also calls blur at 0.74 (a false alarm from 0.70); 40 single
    degradations (20 noise, 20 compression), two noise ones called blur at 0.62 and 0.57."""
    K = 7
    def rows(n, top):
        deciding = torch.full((n, K), 0.05)
        deciding[:, top] = 0.9
        return deciding, torch.zeros(n, K)
    d1, n1 = rows(20, 1)
    n1[:10, 0] = torch.tensor([0.96 - 0.05 * i for i in range(10)])
    d2, n2 = rows(10, 2)
    n2[:, 3] = 0.97
    n2[0, 0] = 0.74
    combos = (torch.cat([d1, d2]), torch.cat([n1, n2]))
    truths = [{0, 1}] * 20 + [{2, 3}] * 10
    s1, m1 = rows(20, 1)
    m1[0, 0], m1[1, 0] = 0.62, 0.57
    s2, m2 = rows(20, 2)
    singles = (torch.cat([s1, s2]), torch.cat([m1, m2]))
    own = torch.tensor([1] * 20 + [2] * 20)
    return singles, own, combos, truths


@pytest.mark.parametrize("budget, rate, blur", [
    (0.03, 0.08, 0.75),  # blur at 0.70 would call the compression + exposure image blurred: 10% false alarms
    (0.03, 0.2, 0.6),    # at 0.55 a second noise image gets blur too: 2 of 40 singles, over 3%
    (0.06, 0.2, 0.5),    # both within 6%; under 0.50 no combination gains, so the search stops there
])
def test_budgeted_thresholds_spend_the_budget_where_combinations_gain(budget, rate, blur):
    import train_cause_head
    singles, own, combos, truths = _budget_case()
    got = train_cause_head.budgeted_thresholds(singles, own, combos, truths, 0.5, budget, rate)
    assert got == [blur, 1.0, 1.0, 0.95, 1.0, 1.0, 1.0]


class _SharpnessMetric:
    """A stand-in for the cause metric: "blur" wherever the image's mean absolute Laplacian
    (scipy's, on its luminance) is under 0.01, no cause elsewhere."""

    def __init__(self):
        import types
        self.backbone = types.SimpleNamespace(resize=256, crop=224)
        self.shapes = []

    def score(self, x):
        self.shapes.append(tuple(x.shape))
        lum = (0.299 * x[:, 0] + 0.587 * x[:, 1] + 0.114 * x[:, 2]).numpy()
        return torch.tensor([[float(np.abs(laplace(im.astype(np.float64))).mean())] for im in lum])

    def labels(self, row):
        return ([("blur", 1.0)] if row[0] < 0.01 else []), {}


def test_real_photo_checks_blur_the_thumbnails_and_count_what_is_stored(monkeypatch):
    """With a stand-in that names blur from the pixels' sharpness alone, every blurred
    thumbnail is stored blur and every clean one nothing: the check blurs the blurred
    copies only, scores both at the head's 224 px, and counts each list on its own."""
    photos = packaged_photos()
    if len(photos) < 4:
        pytest.skip("fewer than 4 packaged photographs")
    fake = _SharpnessMetric()
    monkeypatch.setattr(cause_report, "create_metric", lambda name, path=None: fake)
    out = cause_report.real_photo_checks("any.safetensors", photos)
    assert out["photos"] == [n for n, _ in photos]
    assert out["stored"] == {"clean": [[]] * len(photos), "blurred": [["blur"]] * len(photos)}
    assert out["blurred_named_blur"] == 1.0 and out["clean_no_cause"] == 1.0
    assert fake.shapes == [(len(photos), 3, 224, 224)] * 2
    lines = cause_report._real_photo_lines(out)
    assert "blur stored on 100.0% of the blurred ones, no cause on 100.0% of the clean ones." in lines[2]
    assert lines[-2] == f"| {photos[-1][0]} | (no cause) | blur |"


def test_the_blockage_detector_is_sklearns_logistic_regression_read_on_the_heads_scale():
    """``train_cause_head.fit_blockage_detector``: its probability is that of a logistic
    regression fitted here, by sklearn, on the standardised edge columns; its threshold
    reads as the head's weather threshold; no detector where weather is never named second
    or where the examples hold one class."""
    import train_cause_head
    from sklearn.linear_model import LogisticRegression

    from fiftyone_dnniqa.metrics.blockage import EDGE_STATISTICS

    rng = np.random.default_rng(0)
    n, first = 200, 4
    recipes = [Recipe(i, (("lens_dirt", 3),) if i % 4 == 0 else (("snow", 3),) if i % 4 == 1 else ()) for i in range(n)]
    blocked = np.array([i % 4 == 0 for i in range(n)])
    X = rng.normal(size=(n, first + len(EDGE_STATISTICS) + 3))
    X[blocked, first] += 2.0  # the interior over the darkest strip: higher with a blockage
    X = torch.from_numpy(X).float()
    detector = train_cause_head.fit_blockage_detector(X, recipes, first, 0.95)
    edges = X[:, first:first + len(EDGE_STATISTICS)].double().numpy()
    z = (edges - edges.mean(0)) / edges.std(0)
    oracle = LogisticRegression(max_iter=2000).fit(z, blocked).predict_proba(z)[:, 1]
    with torch.no_grad():
        p = detector.probability(X).double().numpy()
        shown = detector(X).double().numpy()
    assert np.allclose(p, oracle, atol=1e-5)
    assert detector.threshold == 0.5 and detector.reads == 0.95
    assert ((shown >= 0.95) == (oracle >= 0.5)).all() and (oracle >= 0.5).any() and (oracle < 0.5).any()
    assert train_cause_head.fit_blockage_detector(X, recipes, first, 1.0) is None
    assert train_cause_head.fit_blockage_detector(X[1:4], recipes[1:4], first, 0.95) is None  # nothing blocked
