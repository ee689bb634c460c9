"""One image against its view (the panel's "This image" section): each quality value's
standing against scipy's percentiles of the view's other stored values, in both directions;
its predicted causes in words; the evaluation's outcome (classification and detection)
against the labels as stored. The section in the panel, as the App's sample viewer drives
it, writes no App panel state."""

import numpy as np
import pytest
import scipy.stats

import fiftyone as fo

from fiftyone_dnniqa.analysis.sample_standing import image_standing, outcome_words, standing_words
from fiftyone_dnniqa.analysis.samples import one_sample
from fiftyone_dnniqa.app import panels as P
from fiftyone_dnniqa.scoring.runs import QualityRunConfig

from test_panel import plugin  # noqa: F401  (the fixture)
from test_video_panel import ModalApp

N = 30


def _labels(*pairs):
    return fo.Classifications(classifications=[
        fo.Classification(label=lab, severity=sev, **({"direction": way} if way else {})) for lab, sev, way in pairs])


def _box(x):
    return fo.Detection(label="cat", bounding_box=[x, 0.1, 0.2, 0.2])


@pytest.fixture(scope="module")
def ds():
    """30 images (no pixels read): ``sharp`` (higher is better) with ties and one unscored
    image, ``blurry`` (lower is better, the same values), ``noise`` (no run: no direction),
    a cause run, a classification and a detection evaluation."""
    rng = np.random.default_rng(3)
    sharp = np.round(rng.uniform(0, 1, N), 1).tolist()  # one decimal: ties
    sharp[5], sharp[8] = None, float("nan")  # not scored
    gts = [["cat", "dog"][i % 2] for i in range(N)]
    preds = [g if rng.random() < 0.6 else "bird" for g in gts]
    causes = [_labels(("blur", 3.54, None), ("exposure", 2.0, "dark"))] + [_labels()] * (N - 2) + [None]
    gt_boxes = [fo.Detections(detections=[_box(0.1), _box(0.6)])] * N
    pred_boxes = [fo.Detections(detections=[_box(0.1), _box(0.35)])] * (N // 2) + [fo.Detections()] * (N - N // 2)
    d = fo.Dataset()
    d.add_samples([fo.Sample(filepath=f"/nowhere/img{i:02d}.jpg", sharp=sharp[i], blurry=sharp[i],
                             noise=float(rng.normal()), iqa_cause=causes[i],
                             gt=fo.Classification(label=gts[i]), pred=fo.Classification(label=preds[i]),
                             gt_boxes=gt_boxes[i], pred_boxes=pred_boxes[i]) for i in range(N)], progress=False)
    for field, hib, outputs in (("sharp", True, "float"), ("blurry", False, "float"),
                                ("iqa_cause", True, "classifications")):
        d.register_run(field, QualityRunConfig(metric="hand", field=field, higher_is_better=hib, outputs=outputs))
    d.evaluate_classifications("pred", gt_field="gt", eval_key="eval")
    d.evaluate_detections("pred_boxes", gt_field="gt_boxes", eval_key="det")
    yield d
    d.delete()


def _oracle(values, k, higher_is_better):
    """(worse_than, better_than) of image ``k``: scipy's shares of the other finite values."""
    v = values[k]
    others = np.delete(values, k)
    others = others[np.isfinite(others)]
    strictly_lower = scipy.stats.percentileofscore(others, v, kind="strict") / 100
    strictly_higher = 1 - scipy.stats.percentileofscore(others, v, kind="weak") / 100
    return (strictly_higher, strictly_lower) if higher_is_better else (strictly_lower, strictly_higher)


def test_each_value_stands_against_the_other_images_in_its_fields_direction(ds):
    ids = ds.values("id")
    values = np.array([np.nan if v is None else v for v in ds.values("sharp")])
    noise = np.array(ds.values("noise"))
    for k in range(N):
        s = image_standing(ds.view(), ids[k], ["sharp", "blurry", "noise"])
        up, down, raw = s["fields"]
        assert (up["higher_is_better"], down["higher_is_better"], raw["known"]) == (True, False, False)
        if k in (5, 8):  # not scored
            assert up["value"] is None and standing_words(up) == "not scored" and up["n"] == N - 2
            continue
        assert up["n"] == down["n"] == N - 3 and raw["n"] == N - 1  # the others with a value
        assert (up["worse_than"], up["better_than"]) == pytest.approx(_oracle(values, k, True))
        assert (down["worse_than"], down["better_than"]) == pytest.approx(_oracle(values, k, False))
        assert (raw["worse_than"], raw["better_than"]) == pytest.approx(_oracle(noise, k, True))  # assumed higher
    # the worst sharp image, by hand: lowest sharp is worst, and the same value is best as "blurry"
    k = int(np.nanargmin(values))
    s = image_standing(ds.view(), ids[k], ["sharp", "blurry"])
    share = np.mean(np.delete(values, [k, 5, 8]) > values[k])
    assert standing_words(s["fields"][0]) == f"worse than {100 * share:.0f}% of the other 27 scored images of the view"
    assert standing_words(s["fields"][1]) == f"better than {100 * share:.0f}% of the other 27 scored images of the view"
    k = int(np.argmax(noise))
    assert standing_words(image_standing(ds.view(), ids[k], ["noise"])["fields"][0]) == (
        "higher than 100% of the other 29 scored images of the view")


def test_the_view_is_what_the_image_stands_in(ds):
    ids = ds.values("id")
    view = ds.limit(3)  # images 0, 1, 2
    values = ds.values("sharp")[:3]
    s = image_standing(view, ids[0], ["sharp"])["fields"][0]
    assert s["n"] == 2 and s["worse_than"] == pytest.approx(np.mean(np.array(values[1:]) > values[0]))
    assert image_standing(view, ids[10], ["sharp"]) is None  # not in the view
    assert image_standing(view, "not-an-id", ["sharp"]) is None and image_standing(view, None, ["sharp"]) is None
    one = image_standing(ds.limit(1), ids[0], ["sharp"])["fields"][0]
    assert standing_words(one) == "the only scored image of the view"


def test_the_cause_and_the_outcome_of_the_image(ds):
    ids = ds.values("id")
    gts, preds = ds.values("gt.label"), ds.values("pred.label")
    first = image_standing(ds.view(), ids[0], ["sharp"], eval_key="eval")
    assert first["cause_field"] == "iqa_cause" and first["cause"] == "blurred (severity 3.5) and dark (severity 2.0)"
    assert image_standing(ds.view(), ids[1], [])["cause"] == "(no cause found)"
    assert image_standing(ds.view(), ids[N - 1], [])["cause"] is None  # not scored by the cause run
    for k in range(6):
        words = outcome_words(image_standing(ds.view(), ids[k], [], eval_key="eval")["outcome"])
        if gts[k] == preds[k]:
            assert words == f"correct: predicted '{preds[k]}'"
        else:
            assert words == f"wrong: predicted '{preds[k]}', truth '{gts[k]}'"
    # detection, by hand: the box at x=0.1 matches, x=0.35 overlaps nothing, x=0.6 is missed
    assert outcome_words(image_standing(ds.view(), ids[0], [], eval_key="det")["outcome"]) == "1 TP, 1 FP, 1 FN"
    assert outcome_words(image_standing(ds.view(), ids[N - 1], [], eval_key="det")["outcome"]) == "0 TP, 0 FP, 2 FN"
    assert image_standing(ds.view(), ids[0], [])["outcome"] is None


def test_the_panel_shows_the_image_open_in_the_viewer_and_follows_it(plugin, ds):  # noqa: F811
    P.CACHE.clear()
    ids, values = ds.values("id"), ds.values("sharp")
    app = ModalApp(ds)
    app.call("on_load")
    assert "this_image" not in app.properties() and app.data["ranking"]
    ranking = app.data["ranking"]
    for k in (0, 7):  # open an image, then the next one
        app.current_sample = ids[k]
        app.call("on_change_current_sample", value=ids[k])
        assert "patch_panel_state" not in app.names() and app.form_writes() == {}  # the App's own event
        props = app.properties()
        text = props["this_image"]["default"]
        assert list(props).index("this_image") < list(props).index("header")  # first
        assert text.startswith(f"**This image** (img{k:02d}.jpg), open in the sample viewer:")
        others = np.array([v for i, v in enumerate(values) if i not in (k, 5, 8)])
        worse, better = np.mean(others > values[k]), np.mean(others < values[k])  # sharp: higher is better
        sharp, blurry = (("worse", worse), ("better", worse)) if worse >= better else (("better", better),
                                                                                      ("worse", better))
        assert f"- `sharp` {values[k]:.3f}: {sharp[0]} than {100 * sharp[1]:.0f}% of the other 27 scored" in text
        assert f"- `blurry` {values[k]:.3f}: {blurry[0]} than {100 * blurry[1]:.0f}% of the other 27 scored" in text
        assert "- evaluation `" in text and "- predicted cause (`iqa_cause`): " in text
        assert app.data["ranking"] == ranking  # the view's statistics stay
    assert "blurred (severity 3.5) and dark (severity 2.0)" not in text
    app.current_sample = None  # the viewer closed: the section goes
    app.call("on_change_current_sample", value=None)
    assert "this_image" not in app.properties() and "patch_panel_state" not in app.names()
    app.current_sample = ids[0]
    app.call("on_change_current_sample", value=ids[0])
    assert "blurred (severity 3.5) and dark (severity 2.0)" in app.properties()["this_image"]["default"]
    app.user_changes("fields", ["blurry"], "on_change_fields")  # the user's choice of fields
    text = app.properties()["this_image"]["default"]
    assert "`blurry`" in text and "`sharp`" not in text


def test_one_sample_by_the_ids_the_app_sends(ds):
    """The sample viewer's id selects that sample alone; an id of no sample of the view
    selects nothing; no id, or a string that is not an ObjectId, is None (not a query)."""
    ids = ds.values("id")
    assert one_sample(ds, ids[3]).values("id") == [ids[3]]
    assert len(one_sample(ds.select(ids[:2]), ids[3])) == 0
    assert one_sample(ds, "0" * 24).values("id") == []  # a valid id of no sample
    for bad in (None, "", "not-an-id", "12345"):
        assert one_sample(ds, bad) is None
