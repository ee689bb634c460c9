"""The built-in demo: real photographs, known corruptions, offline metrics.

The photographs ship inside installed packages (scikit-image, scikit-learn,
matplotlib), so the demo runs with no network.
"""

from __future__ import annotations

import os
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch

import fiftyone as fo

from .analysis import format_table, rank_fields
from .api import compute_quality
from .core.images import InputSpec, prepare, read_image, to_float
from .corruptions import corrupt, save_png
from .metrics import create_metric
from .metrics.backbones import load_backbone
from .metrics.iqa import PyiqaUnavailableError
from .metrics.imagenet import imagenet_synsets
from .metrics.weights import MissingWeightsError
from .scoring import list_quality_runs

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


def build_demo_dataset(name: str = DEMO_DATASET, folder: Optional[str] = None,
                       corruptions: Dict[str, Sequence] = DEMO_CORRUPTIONS,
                       overwrite: bool = True, persistent: bool = True, seed: int = 0):
    """Builds a dataset of clean photographs plus corrupted copies.

    Each sample has ``corruption`` (``"clean"`` for originals), ``severity``
    (0 for clean, 1.. for increasing strength), ``level`` (the corruption's
    parameter), ``clean_id`` and ``reference_filepath`` (the clean image).
    """
    photos = packaged_photos()
    if not photos:
        raise RuntimeError("no sample photographs found: install scikit-image, scikit-learn or matplotlib")
    if fo.dataset_exists(name):
        if not overwrite:
            return fo.load_dataset(name)
        fo.delete_dataset(name)
    folder = folder or os.path.join(fo.config.default_dataset_dir, name)
    os.makedirs(folder, exist_ok=True)
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
