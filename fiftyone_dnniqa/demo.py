"""The built-in demos: real photographs, known corruptions, offline metrics.

The photographs ship inside installed packages (scikit-image, scikit-learn,
matplotlib), so the demos run with no network. :func:`run_demo` scores corrupted copies
of them; :func:`run_video_demo` makes a short video of each (a slow pan or zoom) with
degradation episodes at known frames, scores every ``frame_step``-th frame and prints the
low-quality segments found next to the true episodes.
"""

from __future__ import annotations

import os
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch

import fiftyone as fo

from .analysis import format_table, rank_fields
from .analysis.video import find_segments, segments_clips, segments_field_for
from .api import compute_quality
from .core.images import InputSpec, prepare, read_image, to_float
from .core.video import video_info, write_video
from .corruptions import corrupt, save_png
from .corruptions.episodes import episode_frames
from .metrics import create_metric
from .metrics.backbones import load_backbone
from .metrics.iqa import PyiqaUnavailableError
from .metrics.imagenet import imagenet_synsets
from .metrics.weights import MissingWeightsError
from .scoring import list_quality_runs
from .scoring.video_writer import video_metadata

DEMO_DATASET = "dnniqa-demo"

#: corruption -> severities (Dodge & Karam units: sigma, std /255, quality, blend)
DEMO_CORRUPTIONS: Dict[str, Tuple] = {
    "gaussian_noise": (10, 40, 80),
    "gaussian_blur": (1, 3, 6),
    "jpeg": (20, 8, 2),
    "contrast": (0.3, 0.6, 0.9),
}

#: the DNN-aligned metric next to the offline baselines
DEMO_METRICS = ("aligned", "piqe", "entropy", "psnr", "ssim")


def packaged_photos() -> List[Tuple[str, str]]:
    """``(name, path)`` of real photographs shipped inside installed packages."""
    found = []
    try:
        import skimage  # optional: only a source of sample photographs

        d = os.path.join(os.path.dirname(skimage.__file__), "data")
        for n in ("astronaut.png", "chelsea.png", "coffee.png", "rocket.jpg",
                  "motorcycle_left.png", "camera.png"):
            found.append((os.path.splitext(n)[0], os.path.join(d, n)))
    except ImportError:
        pass
    try:
        import sklearn  # optional: only a source of sample photographs

        d = os.path.join(os.path.dirname(sklearn.__file__), "datasets", "images")
        found += [("china", os.path.join(d, "china.jpg")), ("flower", os.path.join(d, "flower.jpg"))]
    except ImportError:
        pass
    try:
        import matplotlib  # optional: only a source of sample photographs

        found.append(("grace_hopper", os.path.join(matplotlib.get_data_path(), "sample_data", "grace_hopper.jpg")))
    except ImportError:
        pass
    return [(n, p) for n, p in found if os.path.isfile(p)]


def _start_demo(name: str, photos, overwrite: bool, folder: Optional[str]):
    """``(the existing dataset to keep, None)`` or ``(None, the folder to write into)``;
    refuses without photographs, deletes the dataset ``name`` when overwriting."""
    if not photos:
        raise RuntimeError("no sample photographs found: install scikit-image, scikit-learn or matplotlib")
    if fo.dataset_exists(name):
        if not overwrite:
            return fo.load_dataset(name), None
        fo.delete_dataset(name)
    folder = folder or os.path.join(fo.config.default_dataset_dir, name)
    os.makedirs(folder, exist_ok=True)
    return None, folder


def build_demo_dataset(name: str = DEMO_DATASET, folder: Optional[str] = None,
                       corruptions: Dict[str, Sequence] = DEMO_CORRUPTIONS,
                       overwrite: bool = True, persistent: bool = True, seed: int = 0):
    """Builds a dataset of clean photographs plus corrupted copies.

    Each sample has ``corruption`` (``"clean"`` for originals), ``severity``
    (0 for clean, 1.. for increasing strength), ``level`` (the corruption's
    parameter), ``clean_id`` and ``reference_filepath`` (the clean image).
    """
    photos = packaged_photos()
    existing, folder = _start_demo(name, photos, overwrite, folder)
    if existing is not None:
        return existing
    gen = torch.Generator().manual_seed(seed)

    dataset = fo.Dataset(name, persistent=persistent)
    samples = []
    for photo, src in photos:
        x = read_image(src).float().div(255)
        clean_path = os.path.join(folder, f"{photo}.png")
        save_png(x, clean_path)
        clean = fo.Sample(filepath=clean_path, photo=photo, corruption="clean", severity=0,
                          level=0.0, reference_filepath=clean_path)
        dataset.add_sample(clean)
        for cname, levels in corruptions.items():
            for sev, level in enumerate(levels, start=1):
                path = os.path.join(folder, f"{photo}-{cname}-{sev}.png")
                save_png(corrupt(x, cname, level, generator=gen), path)
                samples.append(fo.Sample(
                    filepath=path, photo=photo, corruption=cname, severity=sev,
                    level=float(level), clean_id=clean.id, reference_filepath=clean_path,
                ))
    dataset.add_samples(samples, progress=False)
    dataset.compute_metadata(progress=False)
    return dataset


#: the demo's classifier, and the bigger model whose reading of each clean
#: photograph serves as its ground truth; neither is the aligned metric's proxy
DEMO_CLASSIFIER, DEMO_REFERENCE = "efficientnet_lite1", "efficientnet_lite2"


def _imagenet_name(index: int) -> str:
    return imagenet_synsets()[index][1][0]


def add_demo_evaluation(dataset, classifier: str = DEMO_CLASSIFIER, reference: str = DEMO_REFERENCE,
                        eval_key: str = "eval", batch_size: int = 16):
    """Adds a real model evaluation to the demo dataset, offline.

    ``predictions`` are ``classifier``'s ImageNet predictions on every image;
    ``ground_truth`` is ``reference``'s prediction on the clean photograph the
    sample was made from (the photographs carry no ImageNet labels, so a
    larger model's reading of the clean image stands in for one). Then
    ``evaluate_classifications(eval_key=eval_key)`` marks each sample right or
    wrong, as users' own evaluations do.
    """
    def predict(backbone, paths):
        spec = InputSpec(resize=backbone.resize, crop=backbone.crop)
        out = []
        with torch.inference_mode():
            for i in range(0, len(paths), batch_size):
                x = to_float(torch.stack([prepare(read_image(p), spec) for p in paths[i:i + batch_size]]))
                out.append(torch.softmax(backbone.model(backbone.normalize(x)), 1))
        p = torch.cat(out)
        return p.argmax(1).tolist(), p.max(1).values.tolist()

    ids, paths, corr, refs = dataset.values(["id", "filepath", "corruption", "reference_filepath"])
    clean_paths = sorted({r for r in refs if r})
    truth, _ = predict(load_backbone(reference), clean_paths)
    truth = dict(zip(clean_paths, truth))
    pred, conf = predict(load_backbone(classifier), paths)
    dataset.set_values("ground_truth", {i: fo.Classification(label=_imagenet_name(truth[r]))
                                        for i, r in zip(ids, refs)}, key_field="id")
    dataset.set_values("predictions", {i: fo.Classification(label=_imagenet_name(k), confidence=c)
                                       for i, k, c in zip(ids, pred, conf)}, key_field="id")
    dataset.evaluate_classifications("predictions", gt_field="ground_truth", eval_key=eval_key)
    return dataset


def summary_table(dataset, fields: Sequence[str]) -> str:
    """Mean score per (corruption, severity), one column per field."""
    runs = set(list_quality_runs(dataset))
    heads = []
    for f in fields:
        arrow = ""
        if f in runs:
            arrow = " ↑" if dataset.get_run_info(f).config.higher_is_better else " ↓"
        heads.append(f + arrow)
    values = {f: np.array(dataset.values(f), dtype=float) for f in fields}
    corr = np.array(dataset.values("corruption"))
    sev = np.array(dataset.values("severity"))
    rows = []
    for c in ["clean"] + [c for c in dict.fromkeys(corr.tolist()) if c != "clean"]:
        for s in sorted(set(sev[corr == c].tolist())):
            mask = (corr == c) & (sev == s)
            cells = []
            for f in fields:
                v = values[f][mask]
                v = v[np.isfinite(v)]
                cells.append(f"{v.mean():.3f}" if len(v) else "n/a")
            rows.append([c, str(s), str(int(mask.sum()))] + cells)
    header = ["corruption", "severity", "n"] + heads
    widths = [max(len(str(r[i])) for r in rows + [header]) for i in range(len(header))]
    fmt = lambda r: "  ".join(str(v).ljust(w) if i < 2 else str(v).rjust(w) for i, (v, w) in enumerate(zip(r, widths)))
    lines = [fmt(header), fmt(["-" * w for w in widths])] + [fmt(r) for r in rows]
    return "\n".join(lines)


def run_demo(name: str = DEMO_DATASET, metrics: Sequence[str] = DEMO_METRICS, device: str = "auto",
             print_fn=print):
    """Builds the demo dataset, scores it, evaluates a classifier on it, prints
    the tables, returns the dataset."""
    print_fn(f"Building '{name}' from {len(packaged_photos())} packaged photographs "
             f"x {sum(len(v) for v in DEMO_CORRUPTIONS.values())} corruptions ...")
    dataset = build_demo_dataset(name)
    objs = []
    for m in metrics:
        try:
            objs.append(create_metric(m))
        except (MissingWeightsError, PyiqaUnavailableError) as e:  # without [weights] or [pyiqa]
            print_fn(f"skipping {m}: {str(e).splitlines()[0]}")
    results = compute_quality(dataset, objs, device=device, progress=False,
                              reference_field="reference_filepath")
    fields = list(results)
    evaluated = False
    try:
        add_demo_evaluation(dataset)
        evaluated = True
    except MissingWeightsError as e:
        print_fn(f"no model evaluation: {str(e).splitlines()[0]}")
    print_fn(f"\n{len(dataset)} images scored with {', '.join(m.name for m in objs)} "
             "(↑ higher is better, ↓ lower is better; full-reference metrics "
             "compare with the clean image)" + (f"; 'eval' = share of {DEMO_CLASSIFIER}'s predictions "
                                                 "that are right" if evaluated else "") + "\n")
    print_fn(summary_table(dataset, fields + (["eval"] if evaluated else [])))
    if evaluated:
        correct = np.array(dataset.values("eval"), dtype=float)
        ranks = rank_fields({f: (dataset.values(f), results[f].config.higher_is_better) for f in fields},
                            correct, n_boot=200)
        print_fn(f"\nWhich score predicts {DEMO_CLASSIFIER}'s errors? (Spearman with correctness, "
                 "bootstrap 95% intervals, best first)\n")
        print_fn(format_table([r.to_row() for r in ranks]))
    print_fn(
        f"\nOpen it in the FiftyOne App:\n"
        f"    python -c \"import fiftyone as fo; fo.launch_app(fo.load_dataset('{name}')).wait()\"\n"
        f"then sort by a field such as '{fields[0]}', open the 'Quality vs Performance' panel, or run "
        "the 'Compute image quality' operator (press ` in the App) after `fiftyone-dnniqa install-plugin`."
    )
    return dataset


DEMO_VIDEO_DATASET = "dnniqa-video-demo"
#: the video demo's metric and sampling step (every 2nd frame is scored)
DEMO_VIDEO_METRIC, DEMO_FRAME_STEP = "aligned", 2
#: the demo's segments: frames in the worst 30% (its episodes hold 40% of the frames; the
#: run's own level, the 20th percentile, flags only the worst of them)
DEMO_SEGMENT_QUANTILE = 0.3
#: frames per video, their (width, height), frame rate, and the number of videos
DEMO_VIDEO_FRAMES, DEMO_VIDEO_SIZE, DEMO_VIDEO_FPS, DEMO_VIDEOS = 60, (160, 120), 12, 4


def build_video_demo_dataset(name: str = DEMO_VIDEO_DATASET, folder: Optional[str] = None,
                             n_frames: int = DEMO_VIDEO_FRAMES, size: Tuple[int, int] = DEMO_VIDEO_SIZE,
                             videos: int = DEMO_VIDEOS, overwrite: bool = True, persistent: bool = True,
                             seed: int = 0):
    """One video per packaged photograph (the first ``videos``): a slow pan or zoom over it
    (alternating), ``n_frames`` frames of ``size`` (width, height), with the degradation
    episodes of :func:`~fiftyone_dnniqa.corruptions.episodes.default_episodes` (blur,
    noise, darkness, JPEG blocking) at known frames, encoded with libx264.

    Each sample has ``photo``, ``motion``, its metadata and ``true_episodes``
    (``TemporalDetections``: the corruption as label, its ``severity``).
    """
    photos = packaged_photos()[:videos]
    existing, folder = _start_demo(name, photos, overwrite, folder)
    if existing is not None:
        return existing
    samples = []
    for k, (photo, src) in enumerate(photos):
        motion = ("pan", "zoom")[k % 2]
        frames, episodes = episode_frames(read_image(src), n_frames=n_frames, size=size, motion=motion,
                                          seed=seed + k)
        path = os.path.join(folder, f"{photo}-{motion}.mp4")
        write_video(path, frames, fps=DEMO_VIDEO_FPS)
        truth = fo.TemporalDetections(detections=[
            fo.TemporalDetection(label=e.corruption, support=[e.start, e.end], severity=e.severity)
            for e in episodes])
        samples.append(fo.Sample(filepath=path, photo=photo, motion=motion, true_episodes=truth,
                                 metadata=video_metadata(video_info(path), path)))
    dataset = fo.Dataset(name, persistent=persistent)
    dataset.add_samples(samples, progress=False)
    return dataset


def _within_step(episode, segment, step) -> bool:
    (a, b), (first, last) = episode, segment
    return a <= first < a + step and b - step < last <= b


def episode_rows(truth: Dict[str, List[Tuple[str, int, int]]], found: Dict[str, List[Tuple[int, int]]],
                 names: Dict[str, str], step: int) -> List[dict]:
    """The table of the video demo: per video, each true episode ``(label, first, last)`` and
    the segments found that overlap it ("missed" without one; "within a step" when one
    segment's ends lie within ``step`` frames inside the episode's); then every segment
    that overlaps no episode (a false alarm)."""
    rows = []
    for sid, episodes in truth.items():
        segments = found.get(sid, [])
        used = set()
        for label, a, b in episodes:
            hits = [s for s in segments if s[0] <= b and s[1] >= a]
            used.update(hits)
            match = ("within a step" if len(hits) == 1 and _within_step((a, b), hits[0], step)
                     else "overlaps" if hits else "missed")
            rows.append({"video": names[sid], "true episode": f"{a}-{b}", "degradation": label,
                         "segment found": ", ".join(f"{f}-{l}" for f, l in hits) or "-", "match": match})
        for f, l in segments:
            if (f, l) not in used:
                rows.append({"video": names[sid], "true episode": "-", "degradation": "-",
                             "segment found": f"{f}-{l}", "match": "false alarm"})
    return rows


def _truth(dataset) -> Dict[str, List[Tuple[str, int, int]]]:
    ids, labels, supports = dataset.values(["id", "true_episodes.detections.label",
                                            "true_episodes.detections.support"])
    return {sid: [(lab, int(s[0]), int(s[1])) for lab, s in zip(ls or [], ss or [])]
            for sid, ls, ss in zip(ids, labels, supports)}


def _score_line(rows) -> str:
    found = sum(r["match"] == "within a step" for r in rows)
    episodes = sum(r["true episode"] != "-" for r in rows)
    alarms = sum(r["match"] == "false alarm" for r in rows)
    return f"{found} of {episodes} episodes found within one sampling step, {alarms} false alarms"


def run_video_demo(name: str = DEMO_VIDEO_DATASET, metric: str = DEMO_VIDEO_METRIC,
                   frame_step: int = DEMO_FRAME_STEP, device: str = "auto",
                   quantile: Optional[float] = DEMO_SEGMENT_QUANTILE, min_length: int = 2,
                   num_workers: Optional[int] = None, print_fn=print, **build):
    """Builds the video demo dataset (``build``: :func:`build_video_demo_dataset`'s
    arguments), scores every ``frame_step``-th frame with ``metric`` (``num_workers``
    decoding processes, default automatic), finds the low-quality segments
    (:func:`~fiftyone_dnniqa.analysis.video.find_segments`: frames in the worst
    ``quantile``, None: the run's level) and prints them next to the true episodes, then how
    the run's own level does; returns ``(dataset, clips)``, the clips view of the segments."""
    dataset = build_video_demo_dataset(name, **build)
    print_fn(f"Built '{name}': {len(dataset)} videos of {dataset.first().metadata.total_frame_count} frames "
             "(a pan or zoom over a packaged photograph, with blur, noise, darkness and JPEG episodes)")
    result = compute_quality(dataset, metric, frame_step=frame_step, device=device, progress=False,
                             num_workers=num_workers)
    print_fn(result.summary())
    found = find_segments(dataset, result.key, quantile=quantile, min_length=min_length)
    clips = segments_clips(dataset, found)
    names = dict(zip(*dataset.values(["id", "photo"])))
    truth = _truth(dataset)
    rows = episode_rows(truth, found.by_video(), names, frame_step)
    worse = "below" if found.higher_is_better else "above"
    which = f"the worst {quantile:.0%} of the frames" if quantile is not None else "the run's level"
    print_fn(f"\nLow-quality segments of '{result.key}' (one frame in {frame_step} scored; low: {worse} "
             f"{found.level:.3f}, {which}; at least {min_length} low frames) next to the true episodes:\n")
    print_fn(format_table(rows))
    print_fn(f"\n{_score_line(rows)}.")
    if quantile is not None:
        own = find_segments(dataset, result.key, min_length=min_length)
        print_fn(f"At the run's own level ({own.level:.3f}, the one its {result.key}_low_share counts "
                 f"against): {_score_line(episode_rows(truth, own.by_video(), names, frame_step))}.")
    print_fn(f"In the App, the segments are the clips view dataset.to_clips('{segments_field_for(result.key)}').")
    return dataset, clips
