"""Several degradations at once (issue 29): the cause head names each family of a real
photo degraded in the capture's order, with each family's own severity; the training
recipes and targets; the words the App and the report use; ``cause_view`` with compounds."""

import json
import re

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors import safe_open

from fiftyone_dnniqa.analysis.breakdowns import (
    NO_CAUSE, cause_sentence, cause_summary, cause_text, cause_view, labels_text,
)
from fiftyone_dnniqa.core.images import InputSpec, prepare, read_image, to_float
from fiftyone_dnniqa.corruptions.compound import compose, family_severities
from fiftyone_dnniqa.metrics import create_metric
from fiftyone_dnniqa.metrics.cause import (
    FAMILIES, NONE, CauseHead, PairedCauseHead, cause_features, cause_labels, load_cause_head, save_cause_head,
)
from fiftyone_dnniqa.metrics.cause_training import (
    CAMERA_PIPELINE, calibrate_gate, draw_recipes, fit_cause_head, targets, train_cause_ensemble, train_cause_head,
)

SPEC = InputSpec(resize=256, crop=224)
K = len(FAMILIES)


@pytest.fixture(scope="module")
def photos(imagenet_files):
    """Six real ImageNet photos of the benchmark's test split (odd positions: the shipped
    head never saw them), 224 px."""
    return torch.stack([to_float(prepare(read_image(f), SPEC).unsqueeze(0))[0] for f in imagenet_files[1::2][:6]])


@pytest.fixture(scope="module")
def cause():
    return create_metric("cause")


def degraded(x, *steps, seed=0):
    return compose(x, steps, torch.Generator().manual_seed(seed))


def photos_256(imagenet_files, n):
    """``n`` test-split photos at 256 px: the engine's resize to 256 then centre crop of 224
    leaves the pixels as degraded."""
    return [to_float(prepare(read_image(f), InputSpec(resize=256, crop=256)).unsqueeze(0))[0]
            for f in imagenet_files[1::2][:n]]


def saved(images, folder):
    """``images`` written as PNG files in ``folder``; their paths."""
    paths = []
    for k, x in enumerate(images):
        paths.append(str(folder / f"{k}.png"))
        Image.fromarray((x * 255).round().byte().permute(1, 2, 0).numpy()).save(paths[-1])
    return paths


def named(metric, x):
    """Each image's stored labels and their attributes (each family's own severity)."""
    rows = metric.score(x).tolist()
    return [{lab for lab, _ in metric.labels(r)[0]} for r in rows], [metric.label_attributes(r) for r in rows]


@pytest.mark.parametrize("steps, families", [
    ((("low_light", 4), ("gaussian_noise", 4)), {"exposure", "noise"}),  # a night shot (held out of training)
    ((("defocus_blur", 4), ("jpeg_compression", 4)), {"blur", "compression"}),  # held out of training
    ((("motion_blur", 3), ("shot_noise", 4), ("dk_jpeg", 4)), {"blur", "noise", "compression"}),
])
def test_every_family_of_a_compound_is_named(cause, photos, steps, families):
    labels, attrs = named(cause, degraded(photos, *steps))
    assert sum(families <= s for s in labels) >= len(photos) - 1, labels
    for s, a in zip(labels, attrs):
        assert set(a) == s and all(0 <= v["severity"] <= 5 for v in a.values())


def test_each_family_has_its_own_severity(cause, photos):
    """Oracle: the severities the photos were degraded at. Blur 2 -> 5 under the same
    noise raises blur's severity; noise 2 -> 5 under the same blur raises noise's."""
    def family_severity(x, family):
        rows = cause.score(x)
        return rows[:, K + 1 + FAMILIES.index(family)]

    x = photos[:4]
    soft, softer = (degraded(x, ("defocus_blur", s), ("gaussian_noise", 3)) for s in (2, 5))
    assert (family_severity(softer, "blur") > family_severity(soft, "blur")).float().mean() >= 3 / 4
    grainy, grainier = (degraded(x, ("defocus_blur", 3), ("gaussian_noise", s)) for s in (2, 5))
    assert (family_severity(grainier, "noise") > family_severity(grainy, "noise")).float().mean() >= 3 / 4


def test_exposure_says_which_way(cause, photos):
    dark = [a.get("exposure") for a in named(cause, degraded(photos[:4], ("low_light", 5)))[1]]
    bright = [a.get("exposure") for a in named(cause, degraded(photos[:4], ("brightness", 5)))[1]]
    assert sum(a is not None and a["direction"] == "dark" for a in dark) >= 3, dark
    assert sum(a is not None and a["direction"] == "bright" for a in bright) >= 3, bright


def test_recipes_hold_compounds_in_the_captures_families_and_leave_out_the_held_out_ones():
    held = [("low_light", "gaussian_noise"), ("defocus_blur", "jpeg_compression")]
    recipes = draw_recipes(30, copies=12, clean_views=2, compound=0.5, seed=3, exclude=held)
    assert recipes == draw_recipes(30, copies=12, clean_views=2, compound=0.5, seed=3, exclude=held)
    assert len(recipes) == 30 * 14
    names = [{n for n, _ in r.steps} for r in recipes]
    assert not any(set(h) <= n for h in held for n in names)
    sizes = [len(r.steps) for r in recipes if r.steps]
    assert set(sizes) == {1, 2, 3, 4} and 0.35 < np.mean([s > 1 for s in sizes]) < 0.65
    camera = [r for r in recipes if len(r.steps) == 4]  # only the camera pipeline has four
    assert camera and all(sorted(family_severities(r.steps)) == sorted(CAMERA_PIPELINE) for r in camera)
    for r in recipes:
        y, overall, per_family = targets(r)
        by_hand = {}
        for n, s in r.steps:
            by_hand[FAMILIES.index(family_of(n))] = s
        assert len(by_hand) == len(r.steps)  # one corruption per family
        assert per_family == [float(by_hand.get(k, 0)) for k in range(K)]
        assert y == [1.0 if k in by_hand else 0.0 for k in range(K)]
        assert overall == float(max(by_hand.values(), default=0))


def family_of(name):
    from fiftyone_dnniqa.corruptions.compound import FAMILY_OF

    return FAMILY_OF[name]


def test_the_head_learns_each_present_familys_severity_and_ignores_absent_ones():
    """Synthetic oracle: family 0's severity is 1 + 4 * u0, family 1's 1 + 4 * u1 (u the
    features); where a family is absent its severity target is 0 and must not pull."""
    g = torch.Generator().manual_seed(0)
    n = 600
    X = torch.rand(n, 6, generator=g)
    present = (torch.rand(n, 2, generator=g) < 0.6).float()
    fam = torch.zeros(n, K)
    fam[:, 0] = present[:, 0] * (1 + (4 * X[:, 0]).round())
    fam[:, 1] = present[:, 1] * (1 + (4 * X[:, 1]).round())
    Y = (fam > 0).float()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny full-batch steps: threads only wait for each other on a busy machine
    try:
        head = train_cause_head(X, Y, fam.max(1).values, fam, epochs=400, seed=0)
    finally:
        torch.set_num_threads(threads)
    with torch.no_grad():
        _, _, pred = head(X)
    for k in (0, 1):
        held = present[:, k] == 1
        err = (pred[held, k] - fam[held, k]).abs().mean()
        assert err < 0.6, (k, float(err))
        assert np.corrcoef(pred[held, k].numpy(), fam[held, k].numpy())[0, 1] > 0.9


def test_a_head_of_format_2_still_reads_with_one_severity_for_every_family(tmp_path, cause):
    """A format-2 head (one severity for the image) loads; every family's severity is the
    image's (the last output by hand)."""
    torch.manual_seed(0)
    old = CauseHead(cause.head.in_features, 16, per_family=False)
    path = str(tmp_path / "v2.safetensors")
    save_cause_head(path, old, {"backbone": "efficientnet_lite0", "thresholds": [0.5] * K})
    with safe_open(path, framework="pt") as f:
        assert json.loads(f.metadata()["config"])["format_version"] == 2
    head, config = load_cause_head(path)
    assert not head.per_family and config["format_version"] == 2
    x = torch.randn(3, cause.head.in_features)
    logits, sev, fam = head(x)
    with torch.no_grad():
        out = old.net(x)
    assert torch.allclose(logits, out[:, :K]) and torch.allclose(sev, 5 * out[:, K])
    assert torch.allclose(fam, (5 * out[:, K]).unsqueeze(1).expand(-1, K))


def test_compound_causes_in_words():
    assert cause_text(["exposure", "noise"], {"exposure": 4, "noise": 3.24}, {"exposure": "dark"}) == \
        "dark (severity 4.0) and noisy (severity 3.2)"
    assert cause_text(["blur", "noise", "compression"]) == "blurred, noisy and compressed"
    assert cause_text(["blur"]) == "blurred"
    assert cause_text([]) == NO_CAUSE and cause_text(["none"]) == NO_CAUSE
    summary = {"cause": "blur", "share_of_errors": 0.41, "n": 120, "accuracy": 0.32, "accuracy_elsewhere": 0.81,
               "with": "blurred and noisy", "with_share": 0.6}
    assert cause_sentence(summary) == ("41% of the errors are on images predicted blur (120 images); 60% of them "
                                       "blurred and noisy; accuracy there 0.320 against 0.810 elsewhere")
    del summary["with"], summary["with_share"]  # most of its images have that cause alone
    assert cause_sentence(summary) == ("41% of the errors are on images predicted blur (120 images); accuracy there "
                                       "0.320 against 0.810 elsewhere")


#: the families' words, as a user reads them (oracle: written by hand)
WORDS = {"blur": "blurred", "noise": "noisy", "exposure": "dark", "compression": "compressed",
         "contrast_haze": "washed out", "weather_occlusion": "obscured by weather or lens dirt"}


def check_compound_run(ds, truth):
    """What a user reads of a cause run on real photos degraded by known corruptions
    (``truth``: each photo's families, the oracle): each photo stores exactly its families;
    ``cause_view(view, "blur")`` finds the blurred ones although noise is named too; each
    compound reads as its families in words, each with its own stored severity; the
    report's table of combinations and the panel's sentence (``cause_summary``) name the mix."""
    import fiftyone as fo
    from fiftyone_dnniqa.analysis.report_runs import _combination_table

    ids = ds.values("id")
    stored = ds.values("iqa_cause")
    assert [{c.label for c in cs.classifications} for cs in stored] == truth
    assert set(cause_view(ds, "blur").values("id")) == {i for i, t in zip(ids, truth) if "blur" in t}
    assert set(cause_view(ds, "noise").values("id")) == {i for i, t in zip(ids, truth) if "noise" in t}
    assert set(cause_view(ds, NO_CAUSE).values("id")) == {i for i, t in zip(ids, truth) if not t}
    for cs, t in zip(stored, truth):
        severity = {c.label: c["severity"] for c in cs.classifications}
        assert all(0 < v <= 5 for v in severity.values())  # each family its own
        parts = [f"{WORDS[c.label]} (severity {severity[c.label]:.1f})" for c in cs.classifications]
        assert labels_text(cs) == (" and ".join(parts) if t else NO_CAUSE)
    blur_noise = [cs for cs, t in zip(stored, truth) if t == {"blur", "noise"}]
    rows = _combination_table(stored, np.zeros(len(ids)))
    assert rows[0] == "<h3>Several causes at once</h3>"
    assert f"<td>blurred and noisy</td><td>{len(blur_noise)}</td>" in rows[1]
    # a classifier wrong on the blurred and noisy photos: the panel's sentence names their mix
    wrong = [t == {"blur", "noise"} for t in truth]
    ds.set_values("gt", [fo.Classification(label="x") for _ in wrong])
    ds.set_values("pred", [fo.Classification(label="y" if w else "x") for w in wrong])
    ds.evaluate_classifications("pred", gt_field="gt", eval_key="ev")
    firsts = [cs.classifications[0].label for cs, w in zip(stored, wrong) if w]  # by hand: the errors' first causes
    top = max(sorted(set(firsts)), key=firsts.count)
    inside = [cs for cs in stored if cs.classifications and cs.classifications[0].label == top]
    summary = cause_summary(ds, "ev")
    assert summary["cause"] == top and summary["n"] == len(inside)
    combos = [{c.label for c in cs.classifications} for cs in inside]
    if combos.count({"blur", "noise"}) * 2 > len(combos):  # the mix holds most of them
        assert summary["with"] in ("blurred and noisy", "noisy and blurred")
        assert summary["with_share"] == combos.count({"blur", "noise"}) / len(combos)
        assert WORDS["blur"] in cause_sentence(summary) and WORDS["noise"] in cause_sentence(summary)


def compound_photos(imagenet_files, tmp_path):
    """Five test-split photos written as PNG: blurred and noisy twice, noisy, dark and
    noisy, clean; and their families (the oracle)."""
    full = photos_256(imagenet_files, 5)
    images = [degraded(full[0], ("defocus_blur", 4), ("gaussian_noise", 4)),
              degraded(full[1], ("defocus_blur", 3), ("gaussian_noise", 4)),
              degraded(full[2], ("gaussian_noise", 4)),
              degraded(full[4], ("low_light", 4), ("gaussian_noise", 4)), full[3]]
    truth = [{"blur", "noise"}, {"blur", "noise"}, {"noise"}, {"exposure", "noise"}, set()]
    return saved(images, tmp_path), truth


@pytest.fixture(scope="module")
def small_compound_head(tmp_path_factory, imagenet_files):
    """A small head trained here, label-free, on compounds of three families (8 dev-split
    photos): unlike the shipped single-degradation head it names both families of a
    blurred and noisy photo, so the words, the report and ``cause_view`` are checked
    whatever head ships."""
    path = tmp_path_factory.mktemp("head") / "compound.safetensors"
    return fit_cause_head(imagenet_files[0::2][:8], str(path), copies=6, hidden=32, epochs=200, members=1,
                          corruptions=["defocus_blur", "gaussian_noise", "low_light"], compound=0.5)


def test_a_compound_cause_reads_naturally_and_cause_view_finds_blur_under_noise(
        tmp_path, make_dataset, imagenet_files, small_compound_head):
    """Issue 29, item 4, through ``compute_quality`` on real photos, with a head trained on compounds."""
    from fiftyone_dnniqa import compute_quality

    paths, truth = compound_photos(imagenet_files, tmp_path)
    ds = make_dataset(paths)
    compute_quality(ds, small_compound_head, progress=False, num_workers=0)
    check_compound_run(ds, truth)
    # "dark and noisy": exposure's direction comes from the photo's own brightness
    assert re.fullmatch(r"(dark|noisy) \(severity \d\.\d\) and (dark|noisy) \(severity \d\.\d\)",
                        labels_text(ds.values("iqa_cause")[3]))


def test_the_shipped_head_names_both_families_of_a_compound_as_a_user_reads_them(tmp_path, make_dataset,
                                                                                 imagenet_files):
    """The same with the shipped head (real photos through ``compute_quality``)."""
    from fiftyone_dnniqa import compute_quality

    paths, truth = compound_photos(imagenet_files, tmp_path)
    ds = make_dataset(paths)
    compute_quality(ds, "cause", progress=False, num_workers=0)
    check_compound_run(ds, truth)


def test_stored_severities_and_directions_read_in_words_and_in_the_report(tmp_path, make_dataset, imagenet_files):
    """Each label's own severity and direction read where a run stored them."""
    import fiftyone as fo
    from fiftyone_dnniqa.analysis.report_runs import _combination_table

    ds = make_dataset(imagenet_files[1::2][:2])
    ds.set_values("iqa_cause", [fo.Classifications(classifications=[
        fo.Classification(label="exposure", confidence=0.9, severity=4.0, direction="dark"),
        fo.Classification(label="noise", confidence=0.8, severity=3.0)]), None])
    assert labels_text(ds.first()["iqa_cause"]) == "dark (severity 4.0) and noisy (severity 3.0)"
    rows = _combination_table(ds.values("iqa_cause"), np.array([2.0, 0.0]))
    assert rows[0] == "<h3>Several causes at once</h3>"
    assert "<td>dark and noisy</td><td>1</td>" in rows[1] and "exposure 4.000, noise 3.000" in rows[1]


def test_each_stored_label_carries_the_attributes_the_head_gives_it(tmp_path, make_dataset, imagenet_files, cause):
    """Whatever the head: ``compute_quality`` stores on each label the attributes (its own
    severity, exposure's direction) of the metric called directly on the same pixels."""
    from fiftyone_dnniqa import compute_quality

    full = photos_256(imagenet_files, 3)
    images = [degraded(full[0], ("defocus_blur", 5)), degraded(full[1], ("low_light", 5)),
              degraded(full[2], ("gaussian_noise", 5))]
    paths = saved(images, tmp_path)
    ds = make_dataset(paths)
    compute_quality(ds, "cause", progress=False, num_workers=0)
    pixels = torch.stack([to_float(prepare(read_image(p), cause.input_spec).unsqueeze(0))[0] for p in paths])
    rows = cause.score(pixels).tolist()
    checked = 0
    for stored, row in zip(ds.values("iqa_cause"), rows):
        want = cause.label_attributes(row)
        assert [c.label for c in stored.classifications] == [label for label, _ in cause.labels(row)[0]]
        for c in stored.classifications:
            for name, value in want[c.label].items():
                got = c[name]
                assert got == pytest.approx(value, abs=1e-4) if isinstance(value, float) else got == value
                checked += 1
    assert checked >= 3  # each image has at least one label with its severity


def test_pair_copies_come_after_every_images_draws_and_hold_two_families():
    """Uniform pairs leave the other draws as they were (cached features stay valid), hold
    two families each, and never a held-out combination."""
    held = [("lens_dirt", "dk_jpeg"), ("fog", "gaussian_blur")]
    plain = draw_recipes(40, copies=6, clean_views=2, compound=0.5, seed=4, exclude=held)
    paired = draw_recipes(40, copies=6, clean_views=2, compound=0.5, seed=4, exclude=held, pair_copies=3)
    assert paired[:len(plain)] == plain and len(paired) == len(plain) + 40 * 3
    extra = paired[len(plain):]
    assert [r.image for r in extra] == [i for i in range(40) for _ in range(3)]
    fams = [{family_of(n) for n, _ in r.steps} for r in extra]
    assert all(len(r.steps) == 2 and len(f) == 2 for r, f in zip(extra, fams))
    assert not any(set(h) <= {n for n, _ in r.steps} for h in held for r in extra)
    assert len({tuple(sorted(f)) for f in fams}) >= 15  # of the 21 pairs of 7 families


def _toy_examples(n=120, d=12, seed=0):
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(n, d, generator=g)
    Y = (X[:, :K] + 0.5 * torch.randn(n, K, generator=g) > 0.8).float()
    Y[: n // 4] = 0  # a quarter clean
    fam = Y * torch.randint(1, 6, (n, K), generator=g).float()
    return X, Y, fam.max(1).values, fam


def test_merged_heads_output_the_mean_of_the_heads_trained_alone():
    X, Y, sev, fam = _toy_examples()
    merged = train_cause_ensemble(X, Y, sev, fam, members=3, hidden=8, epochs=15, seed=2)
    alone = [train_cause_head(X, Y, sev, fam, hidden=8, epochs=15, seed=2 + m) for m in range(3)]
    assert merged.net[0].out_features == 24
    with torch.no_grad():
        got, want = merged(X), [h(X) for h in alone]
    for j in range(3):  # family logits, overall severity, family severities
        assert torch.allclose(got[j], sum(w[j] for w in want) / 3, atol=1e-5)


def test_the_gate_and_thresholds_come_from_out_of_fold_probabilities():
    """Oracle: the five refits by hand (the mean of each fold's heads' logits), then numpy's
    quantiles: the gate at the clean views' share, a family's threshold where 20% of the
    corrupted examples without it reach (at least the floor)."""
    X, Y, sev, fam = _toy_examples(150)
    groups = torch.arange(150) % 30
    kw = dict(hidden=8, epochs=15, seed=1)
    gate, th = calibrate_gate(X, Y, sev, fam, groups, target_none=0.9, false_alarm=0.2, floor=0.1, folds=5,
                              members=2, **kw)
    probs = torch.zeros(150, K)
    for k in range(5):
        train = groups % 5 != k
        heads = [train_cause_head(X[train], Y[train], sev[train], fam[train], hidden=8, epochs=15, seed=1 + m)
                 for m in range(2)]
        with torch.no_grad():
            probs[~train] = torch.sigmoid(sum(h(X[~train])[0] for h in heads) / 2)
    p, clean = probs.numpy(), (sev == 0).numpy()
    assert gate == pytest.approx(np.quantile(p[clean].max(1), 0.9), abs=1e-5)
    for k in range(K):
        without = p[~clean & (fam[:, k] == 0).numpy(), k]
        assert th[k] == pytest.approx(max(0.1, np.quantile(without, 0.8)), abs=1e-5)


def test_the_shipped_head_names_a_blockage_under_heavy_jpeg_where_its_namer_alone_does_not(photos, cause):
    """Lens dirt (severity 4: smudges and a blockage band) under Dodge & Karam's JPEG at
    quality 2, a pair never drawn in training: the shipped head's blockage detector names
    weather where the namer's weather probability stays under its threshold. Oracle: the
    head's parts called directly on the features."""
    weather = FAMILIES.index("weather_occlusion")
    x = torch.stack([degraded(p, ("lens_dirt", 4), ("dk_jpeg", 5), seed=k) for k, p in enumerate(photos)])
    assert isinstance(cause.head, PairedCauseHead) and cause.head.blockage is not None
    with torch.inference_mode():
        rows = cause.score(x).tolist()
        feats = cause_features(cause.backbone, x).float()
        deciding, _, _, _ = cause.head.outputs(feats)
        namer_weather = torch.sigmoid(cause.head.namer(feats[:, :cause.head.namer.in_features])[0])[:, weather]
        blocked = cause.head.blockage(feats)
    named = ["weather_occlusion" in {lab for lab, _ in cause.labels(r)[0]} for r in rows]
    threshold = cause.thresholds[weather]
    degraded_ = (deciding.max(1).values >= cause.gate).tolist()
    by_hand = [d and (int(top) == weather or n >= threshold or b >= threshold)
               for d, top, n, b in zip(degraded_, deciding.argmax(1), namer_weather.tolist(), blocked.tolist())]
    assert named == by_hand
    assert sum(named) >= 3 and sum(n >= threshold for n in namer_weather.tolist()) <= 1


def test_the_shipped_blockage_detector_only_adds_weather_to_what_the_decider_and_namer_name(photos, cause):
    """The detector spends no budget of the other families (issue 29, session 24): on real
    test photos under single and compound degradations, the stored families are those the
    decider and namer alone store (the parts called directly, through ``cause_labels``),
    plus weather where the detector fires; nothing is taken away, the first family
    included."""
    weather = FAMILIES.index("weather_occlusion")
    recipes = [(("motion_blur", 4), ("shot_noise", 4)), (("low_light", 4), ("gaussian_noise", 3)),
               (("snow", 3), ("jpeg_compression", 5)), (("lens_dirt", 5), ("dk_jpeg", 5)), (("defocus_blur", 4),),
               (("lens_dirt", 3),)]
    x = torch.stack([degraded(p, *r, seed=k) for k, p in enumerate(photos) for r in recipes])
    head = cause.head
    without = PairedCauseHead(head.decider, head.namer).eval()
    with torch.inference_mode():
        feats = cause_features(cause.backbone, x).float()
        labels = [cause.labels(r)[0] for r in cause.score(x).tolist()]
        deciding, naming, sev, fam = without.outputs(feats)
        blocked = head.blockage(feats)
    rows = torch.cat([deciding, sev.unsqueeze(1), fam, torch.zeros(len(x), 1), naming], 1).tolist()
    alone = [cause_labels(r, cause.thresholds, cause.gate)[0] for r in rows]
    for got, parts, b, d in zip(labels, alone, blocked.tolist(), deciding.max(1).values.tolist()):
        fires = b >= cause.thresholds[weather] and d >= cause.gate  # its own threshold reads the head's
        assert (got or [(NONE, None)])[0][0] == parts[0][0]  # the first family (or none) as the parts say
        added = {"weather_occlusion"} if fires else set()
        assert {lab for lab, _ in got} == {lab for lab, _ in parts} - {NONE} | added
    # the batch holds both cases: weather named second by the namer and not the detector, and the reverse
    second = (deciding.argmax(1) != weather) & (deciding.max(1).values >= cause.gate)
    namer_weather = naming[:, weather] >= cause.thresholds[weather]
    assert bool((second & namer_weather & (blocked < cause.thresholds[weather])).any())
    assert bool((second & ~namer_weather & (blocked >= cause.thresholds[weather])).any())


def test_black_bars_on_two_sides_are_framing_and_a_bar_on_one_side_is_a_blockage(photos, cause):
    """Letterboxed or pillarboxed frames (video, screenshots) are not called obscured when
    degraded; a dark bar on one side only, the shape of a strap or a hood, is. The oracle:
    the bars drawn here."""
    def barred(x, sides):
        y, d = x.clone(), 27  # 12% of 224
        for side in sides:
            region = {"top": (..., slice(0, d), slice(None)), "bottom": (..., slice(-d, None), slice(None)),
                      "left": (..., slice(None), slice(0, d)), "right": (..., slice(None), slice(-d, None))}[side]
            y[region] = 0
        return y

    def weather_named(sides, step):
        x = torch.stack([degraded(barred(p, sides), step, seed=k) for k, p in enumerate(photos)])
        with torch.inference_mode():
            return ["weather_occlusion" in {lab for lab, _ in cause.labels(r)[0]} for r in cause.score(x).tolist()]

    assert not any(weather_named(("top", "bottom"), ("jpeg_compression", 4)))
    assert not any(weather_named(("left", "right"), ("gaussian_noise", 4)))
    assert all(weather_named(("top",), ("jpeg_compression", 4)))
