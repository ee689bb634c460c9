"""Video analysis: hard segments as clips, videos ranked, frame quality against frame outcomes.

One small video dataset (tiny real MP4s) whose frame scores are written here with planted
low-quality episodes at known frames, sampled every STEP frames as
``compute_quality(..., frame_step=STEP)`` does; the oracles are those planted episodes, a
plain hand scan of the sampled frames, and scipy/sklearn on the same frames. The frame
outcomes come from a real ``evaluate_detections`` / ``evaluate_classifications`` on frame
labels built with known errors.
"""

import json
import os

import numpy as np
import pytest
from scipy import stats
from sklearn.metrics import roc_auc_score

import fiftyone as fo

from fiftyone_dnniqa.analysis.video import (find_segments, hard_segments, low_runs, mark_segments,
                                            worst_videos)
from fiftyone_dnniqa.analysis.video_targets import (frame_statistics, frame_table, quality_timeline,
                                                    segment_performance, summary_statistics)
from fiftyone_dnniqa.core.video import write_video

STEP = 2  # frames 1, 3, 5, ... are scored
LEVEL_UP, LEVEL_DOWN = 0.5, 1.0  # q_up: higher is better; q_down = 2 (1 - q_up): lower is better
#: per video: (frame count, true episodes [first, last], sampled frames that failed)
VIDEOS = [
    (60, [(10, 19), (40, 47)], []),
    (61, [(1, 8), (55, 61)], []),
    (50, [(21, 21), (30, 33)], []),  # a one-sampled-frame dip; an episode of exactly 2 sampled frames
    (50, [(10, 25)], [17]),  # a failed sampled frame inside the episode
    (40, [], []),  # clean
]


def _sampled(n):
    return list(range(1, n + 1, STEP))


def _low(frame, episodes):
    return any(a <= frame <= b for a, b in episodes)


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    """The dataset, and per video the planted scores ``{frame: q_up}`` and episodes."""
    folder = tmp_path_factory.mktemp("videos")
    rng = np.random.default_rng(0)
    ds = fo.Dataset()
    planted = []
    for k, (n, episodes, failed) in enumerate(VIDEOS):
        path = str(folder / f"v{k}.mp4")
        write_video(path, (np.full((16, 16, 3), 8 * (i % 30), np.uint8) for i in range(n)), fps=10,
                    codec="mpeg4")
        sample = fo.Sample(filepath=path)
        scores = {}
        for fn in range(1, n + 1):
            frame = fo.Frame()
            if fn in failed:
                frame["q_up_error"] = "frame failed to decode"
            elif fn in _sampled(n):
                q = (0.2 if _low(fn, episodes) else 0.7) + 0.1 * rng.random()
                scores[fn] = q
                frame["q_up"], frame["q_down"] = q, 2 * (1 - q)
            _labels(frame, fn, _low(fn, episodes), rng)
            sample.frames[fn] = frame
        ds.add_sample(sample)
        planted.append((sample.id, scores, episodes))
    ds.evaluate_detections("frames.pred", gt_field="frames.gt", eval_key="det")
    ds.evaluate_classifications("frames.cls_pred", gt_field="frames.cls_gt", eval_key="cls")
    ds.evaluate_classifications("frames.bin_pred", gt_field="frames.bin_gt", eval_key="bin", method="binary",
                                classes=["no", "yes"])
    yield ds, planted
    ds.delete()


def _labels(frame, fn, low, rng):
    """One true box per frame; the detector misses it more often in low frames, and adds a
    false box now and then (``planted``: "hit", "miss" or "extra", a hit and a false box);
    the frame classifier errs more often in low frames."""
    box = [0.2, 0.2, 0.4, 0.4]
    frame["gt"] = fo.Detections(detections=[fo.Detection(label="car", bounding_box=box)])
    u = rng.random()
    outcome = "miss" if u < (0.7 if low else 0.1) else "extra" if u > 0.9 else "hit"
    dets = [] if outcome == "miss" else [fo.Detection(label="car", bounding_box=box, confidence=0.9)]
    if outcome == "extra":
        dets.append(fo.Detection(label="car", bounding_box=[0.7, 0.7, 0.2, 0.2], confidence=0.5))
    frame["pred"] = fo.Detections(detections=dets)
    frame["cls_gt"] = fo.Classification(label="road")
    wrong = rng.random() < (0.6 if low else 0.1)
    frame["cls_pred"] = fo.Classification(label="sky" if wrong else "road", confidence=float(rng.random()))
    frame["planted"] = outcome
    truth = "yes" if fn % 3 else "no"
    frame["bin_gt"] = fo.Classification(label=truth)
    flip = rng.random() < (0.5 if low else 0.1)
    frame["bin_pred"] = fo.Classification(label={"yes": "no", "no": "yes"}[truth] if flip else truth,
                                          confidence=0.8)


def _hand_scan(n, scores, bad, min_length=2, max_gap=1):
    """Runs of bad sampled frames, by a plain loop (the oracle of low_runs)."""
    runs, cur = [], []
    for fn in _sampled(n):
        if fn not in scores:
            continue
        if bad(scores[fn]):
            if cur and fn - cur[-1] > STEP * (1 + max_gap):
                runs.append(cur)
                cur = []
            cur.append(fn)
        else:
            runs.append(cur)
            cur = []
    runs.append(cur)
    return [(r[0], r[-1]) for r in runs if len(r) >= min_length]


@pytest.mark.parametrize("field, level, up", [("q_up", LEVEL_UP, True), ("frames.q_down", LEVEL_DOWN, False)])
def test_segments_match_planted_episodes_both_directions(videos, field, level, up):
    ds, planted = videos
    found = find_segments(ds, field, level=level, higher_is_better=up)
    got = found.by_video()
    assert found.higher_is_better is up and found.level == level
    for (n, episodes, _), (sid, scores, _) in zip(VIDEOS, planted):
        segs = got.get(sid, [])
        q = scores if up else {f: 2 * (1 - v) for f, v in scores.items()}
        assert segs == _hand_scan(n, q, (lambda v: v < level) if up else (lambda v: v > level))
        # every planted episode of at least 2 sampled frames is found within one sampling step
        long_enough = [(a, b) for a, b in episodes if sum(a <= f <= b for f in _sampled(n)) >= 2]
        assert len(segs) == len(long_enough)
        for (a, b), (first, last) in zip(long_enough, segs):
            assert a <= first < a + STEP and b - STEP < last <= b
    assert all(s == STEP for s in found.steps.values())


def test_min_length_and_gaps(videos):
    ds, planted = videos
    sid_dip, sid_gap = planted[2][0], planted[3][0]
    two = find_segments(ds, "q_up", level=LEVEL_UP, higher_is_better=True, min_length=2).by_video()
    one = find_segments(ds, "q_up", level=LEVEL_UP, higher_is_better=True, min_length=1).by_video()
    three = find_segments(ds, "q_up", level=LEVEL_UP, higher_is_better=True, min_length=3).by_video()
    assert two[sid_dip] == [(31, 33)]
    assert one[sid_dip] == [(21, 21), (31, 33)]
    assert sid_dip not in three
    # the failed frame 17 inside the episode [10, 25] does not split it unless max_gap=0
    assert two[sid_gap] == [(11, 25)]
    split = find_segments(ds, "q_up", level=LEVEL_UP, higher_is_better=True, max_gap=0).by_video()
    assert split[sid_gap] == [(11, 15), (19, 25)]
    assert split[sid_gap] == _hand_scan(50, planted[3][1], lambda v: v < LEVEL_UP, max_gap=0)


def test_low_runs_by_hand():
    # unsorted input, a None score, step inferred as 3
    runs, step = low_runs([10, 1, 4, 7, 13, 16], [0.1, 0.9, 0.2, None, 0.8, 0.3], 0.5, min_length=1)
    assert step == 3
    assert [r[:3] for r in runs] == [(4, 10, 2), (16, 16, 1)]
    assert runs[0][3] == pytest.approx(0.15) and runs[0][4] == pytest.approx(0.1)
    # lower is better: worst is the largest
    runs, _ = low_runs([1, 2, 3], [5.0, 7.0, 6.0], 5.5, higher_is_better=False, min_length=2)
    assert runs == [(2, 3, 2, 6.5, 7.0)]
    with pytest.raises(ValueError, match="min_length"):
        low_runs([1], [1.0], 0.5, min_length=0)


def test_default_level_is_the_quantile_of_the_view_frames(videos):
    ds, planted = videos
    all_up = np.array([v for _, scores, _ in planted for v in scores.values()])
    # no run recorded a level: the 20th percentile of the view's frames, as a run's default
    assert find_segments(ds, "q_up", higher_is_better=True).level == pytest.approx(np.quantile(all_up, 0.2))
    assert find_segments(ds, "q_down", higher_is_better=False).level == \
        pytest.approx(np.quantile(2 * (1 - all_up), 0.8))
    down = find_segments(ds, "q_down", higher_is_better=False, quantile=0.3)
    assert down.level == pytest.approx(np.quantile(2 * (1 - all_up), 0.7))


def test_clips_view_supports_tag_save_export(videos, tmp_path):
    ds, planted = videos
    clips = hard_segments(ds, "q_up", level=LEVEL_UP, higher_is_better=True)
    found = find_segments(ds, "q_up", level=LEVEL_UP, higher_is_better=True)
    expected = [(s.sample_id, [s.first, s.last]) for s in found.segments]
    assert len(expected) == 6  # 2 + 2 + 1 (the dip is too short) + 1 + 0
    assert list(zip(clips.values("sample_id"), clips.values("support"))) == expected
    assert clips.values("q_up_segments.n_low") == [s.n_low for s in found.segments]
    # a video without segments has none stored
    assert ds.select(planted[4][0]).first()["q_up_segments"] is None

    done = mark_segments(clips, tag="hard_segment", view_name="hard-segments")
    assert done == {"count": 6, "unit": "segments", "view_name": "hard-segments",
                    "tag": "hard_segment", "tagged": 6}
    assert ds.count_label_tags("q_up_segments") == {"hard_segment": 6}
    assert ds.load_saved_view("hard-segments").values("support") == [e[1] for e in expected]

    clips.export(str(tmp_path / "export"), dataset_type=fo.types.FiftyOneDataset, export_media=False)
    with open(os.path.join(tmp_path, "export", "samples.json")) as f:
        exported = json.load(f)["samples"]
    assert [s["support"] for s in exported] == [e[1] for e in expected]

    # a subset view stores and clips only its own videos
    one = hard_segments(ds.select(planted[0][0]), "q_up", level=LEVEL_UP, higher_is_better=True,
                        segments_field="seg_one")
    assert one.values("support") == [[11, 19], [41, 47]]
    with pytest.raises(ValueError, match="not a clips view"):
        hard_segments(one, "q_up", level=LEVEL_UP, higher_is_better=True)
    with pytest.raises(ValueError, match="another type"):
        hard_segments(ds, "q_up", level=LEVEL_UP, higher_is_better=True, segments_field="filepath")


def test_worst_videos_by_summaries(videos):
    ds, planted = videos
    # the per-video summaries scoring writes, computed here from the planted scores
    share = {sid: np.mean([v < LEVEL_UP for v in s.values()]) for sid, s, _ in planted}
    mean = {sid: np.mean(list(s.values())) for sid, s, _ in planted}
    ds.set_values("q_up_low_share", share, key_field="id")
    ds.set_values("q_up_mean", mean, key_field="id")
    ds.set_values("q_down_mean", {k: 2 * (1 - v) for k, v in mean.items()}, key_field="id")
    assert worst_videos(ds, "q_up", higher_is_better=True).values("id") == sorted(share, key=lambda k: -share[k])
    assert worst_videos(ds, "q_up", by="mean", k=2, higher_is_better=True).values("id") == \
        sorted(mean, key=mean.get)[:2]
    # lower is better: the highest mean is the worst
    assert worst_videos(ds, "q_down", by="mean", higher_is_better=False).values("id") == sorted(mean, key=mean.get)
    ds.set_values("q_down_min", {k: 0.0 for k in mean}, key_field="id")
    with pytest.raises(ValueError, match="best frame"):
        worst_videos(ds, "q_down", by="min", higher_is_better=False)
    with pytest.raises(ValueError, match="no summary field"):
        worst_videos(ds, "nothing", by="min", higher_is_better=True)


def test_frame_outcomes_are_the_planted_ones(videos):
    ds, planted = videos
    t = frame_table(ds, ["q_up"], eval_key="det", kind="fn")
    outcomes = ds.values("frames.planted", unwind=True)
    assert len(t) == len(outcomes) == sum(v[0] for v in VIDEOS)
    assert t.target.tolist() == [1.0 if o == "miss" else 0.0 for o in outcomes]
    fp = frame_table(ds, [], eval_key="det", kind="fp").target
    assert fp.tolist() == [1.0 if o == "extra" else 0.0 for o in outcomes]
    # binary classification: "TP"/"TN" per frame are right, "FP"/"FN" wrong
    right = [p == g for p, g in zip(ds.values("frames.bin_pred.label", unwind=True),
                                    ds.values("frames.bin_gt.label", unwind=True))]
    assert frame_table(ds, [], eval_key="bin").target.tolist() == [float(r) for r in right]
    assert 0 < sum(right) < len(right)
    # the frame numbers and scores line up with the planted ones
    flat = {(sid, fn): q for sid, scores, _ in planted for fn, q in scores.items()}
    for sid, fn, q in zip(t.sample_ids, t.frame_numbers, t.quality["q_up"]):
        assert (np.isnan(q) and (sid, fn) not in flat) or q == flat[(sid, fn)]


def _oracle_arrays(ds, planted):
    """Per scored frame, in dataset order: video, q_up, F1 and correctness, by hand from
    the planted outcomes and labels."""
    rows = []
    for sid, scores, _ in planted:
        frames = ds[sid].frames
        for fn, q in sorted(scores.items()):
            tp, fp, fn_ = {"hit": (1, 0, 0), "miss": (0, 0, 1), "extra": (1, 1, 0)}[frames[fn]["planted"]]
            right = frames[fn]["cls_pred"].label == frames[fn]["cls_gt"].label
            rows.append((sid, q, 2 * tp / (2 * tp + fp + fn_), float(right)))
    return rows


def test_frame_statistics_equal_scipy_and_sklearn(videos):
    ds, planted = videos
    rows = _oracle_arrays(ds, planted)
    sids = [r[0] for r in rows]
    q, f1, correct = (np.array([r[k] for r in rows]) for k in (1, 2, 3))

    det = frame_statistics(ds, ["q_up", "q_down"], eval_key="det", higher_is_better={"q_up": True, "q_down": False},
                           n_boot=200)
    assert det["kind"] == "f1" and not det["binary"] and det["n_videos"] == 5
    by_name = {r["name"]: r for r in det["ranking"]}
    rho = stats.spearmanr(q, f1).statistic
    for name in ("q_up", "q_down"):  # q_down is q_up reversed: the same oriented rho
        sp = by_name[name]["spearman"]
        assert sp["estimate"] == pytest.approx(rho) and sp["n"] == len(q)
        assert sp["ci_low"] < sp["estimate"] < sp["ci_high"]
    assert by_name["q_up"]["pearson"]["estimate"] == pytest.approx(stats.pearsonr(q, f1).statistic)
    # video level: the per-video means, one point per video
    vids = list(dict.fromkeys(sids))
    mq = [q[np.array(sids) == v].mean() for v in vids]
    mf = [f1[np.array(sids) == v].mean() for v in vids]
    assert det["videos"]["q_up"]["spearman"]["estimate"] == pytest.approx(stats.spearmanr(mq, mf).statistic)
    assert det["videos"]["q_up"]["spearman"]["n"] == 5

    cls = frame_statistics(ds, ["q_up"], eval_key="cls", higher_is_better=True, n_boot=200)
    assert cls["binary"] and cls["kind"] == "correct"
    au = cls["ranking"][0]["auroc"]
    assert au["estimate"] == pytest.approx(roc_auc_score(correct, q)) and au["estimate"] > 0.55
    assert au["ci_low"] < au["estimate"] < au["ci_high"]
    curve = cls["curves"]["q_up"]
    assert sum(b["n"] for b in curve) == len(q)
    lowest = (q >= curve[0]["lo"]) & (q < curve[0]["hi"])
    assert lowest.sum() == curve[0]["n"] and curve[0]["hi"] == pytest.approx(np.quantile(q, 0.1))
    assert curve[0]["mean_target"] == pytest.approx(correct[lowest].mean())


def test_summaries_against_each_video_performance(videos):
    ds, planted = videos
    mean = {sid: np.mean(list(s.values())) for sid, s, _ in planted}
    share = {sid: np.mean([v < LEVEL_UP for v in s.values()]) for sid, s, _ in planted}
    lowest = {sid: min(s.values()) for sid, s, _ in planted}
    for name, values in (("mean", mean), ("low_share", share), ("min", lowest)):
        ds.set_values(f"q_up_{name}", values, key_field="id")
    # each video's F1 from its summed counts (every frame, as evaluate_detections sums them)
    counts = {sid: np.zeros(3) for sid, _, _ in planted}
    for sid, planted_outcome in zip(ds.values("id"), ds.values("frames.planted")):
        for o in planted_outcome:
            counts[sid] += {"hit": (1, 0, 0), "miss": (0, 0, 1), "extra": (1, 1, 0)}[o]
    f1 = {sid: 2 * c[0] / (2 * c[0] + c[1] + c[2]) for sid, c in counts.items()}
    got = {r["name"]: r for r in summary_statistics(ds, "q_up", eval_key="det", higher_is_better=True, n_boot=100)}
    vids = [sid for sid, _, _ in planted]
    t = [f1[v] for v in vids]
    assert got["q_up_mean"]["spearman"]["estimate"] == pytest.approx(stats.spearmanr([mean[v] for v in vids], t).statistic)
    assert got["q_up_min"]["spearman"]["n"] == 5
    # a higher share of low frames is worse: the sign is flipped
    assert got["q_up_low_share"]["spearman"]["estimate"] == pytest.approx(
        -stats.spearmanr([share[v] for v in vids], t).statistic)
    assert not got["q_up_low_share"]["higher_is_better"]


def test_performance_inside_the_segments(videos):
    ds, planted = videos
    found = find_segments(ds, "q_up", level=LEVEL_UP, higher_is_better=True)
    spans = found.by_video()
    inside, outside, missed = [], [], []
    for sample in ds:
        for fn, f in sample.frames.items():  # every frame, sampled or not
            right = float(f["cls_pred"].label == f["cls_gt"].label)
            hit = any(a <= fn <= b for a, b in spans.get(sample.id, []))
            (inside if hit else outside).append(right)
            if hit:
                missed.append(float(f["planted"] == "miss"))
    rows = segment_performance(ds, found, eval_key="cls")
    assert [(r["frames"], r["n"]) for r in rows] == [("in segments", len(inside)), ("elsewhere", len(outside))]
    assert rows[0]["mean_target"] == pytest.approx(np.mean(inside)) and np.mean(inside) < np.mean(outside)
    assert rows[1]["mean_target"] == pytest.approx(np.mean(outside))
    n, k = len(inside), sum(inside)  # Wilson by hand
    z = stats.norm.ppf(0.975)
    centre = (k / n + z * z / (2 * n)) / (1 + z * z / n)
    half = z * np.sqrt(k / n * (1 - k / n) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    assert (rows[0]["ci_low"], rows[0]["ci_high"]) == pytest.approx((centre - half, centre + half))
    f1 = segment_performance(ds, found, eval_key="det", kind="fn")  # a count: a t interval
    half = stats.t.ppf(0.975, len(missed) - 1) * np.std(missed, ddof=1) / np.sqrt(len(missed))
    assert (f1[0]["ci_low"], f1[0]["ci_high"]) == pytest.approx((np.mean(missed) - half, np.mean(missed) + half))


def test_timeline_and_refusals(videos):
    ds, planted = videos
    sid, scores, _ = planted[0]
    tl = quality_timeline(ds, "q_up", sid, eval_key="det", kind="fn")
    assert tl["frames"] == sorted(scores) and tl["quality"] == [scores[f] for f in sorted(scores)]
    s = ds[sid]
    assert tl["target"] == [float(s.frames[f]["det_fn"]) for f in sorted(scores)]
    with pytest.raises(ValueError, match="not a frame field"):
        find_segments(ds, "nothing", level=0.5, higher_is_better=True)
    images = fo.Dataset()
    images.add_sample(fo.Sample(filepath="/x.png", q_up=1.0))
    with pytest.raises(ValueError, match="segments need videos"):
        find_segments(images, "q_up", level=0.5, higher_is_better=True)
    images.delete()
