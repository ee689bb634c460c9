"""Where the benchmarks find real labelled ImageNet photos (``images/`` and ``labels.csv``):
the folder named by $DNNIQA_IMAGENET_SAMPLE, else the workspace's shared data folder
beside the repository. And the command that builds such a folder from the public photos:

    git clone https://github.com/EliSchwartz/imagenet-sample-images CLONE
    python benchmarks/sample_data.py build --from CLONE --to FOLDER
    export DNNIQA_IMAGENET_SAMPLE=FOLDER

The clone holds one photograph per ImageNet-1k class, named ``<wnid>_<class name>.JPEG``
(``n01440764_tench.JPEG``). The folder built keeps the classes with an even index
(0, 2, ... 998: 500 photos, the tests' and benchmarks' set), copied byte for byte into
``images/`` under their own names, and ``labels.csv`` (``filename,class_index,wnid,
class_name``, one row per photo by class index; the index from the wnid through the
package's ImageNet class list, the name from the file name).
"""

from __future__ import annotations

import argparse
import csv
import os
import re
import shutil
import sys
from typing import Dict, List, Optional

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
IMAGENET_SAMPLE = os.environ.get("DNNIQA_IMAGENET_SAMPLE") or os.path.normpath(
    os.path.join(HERE, "..", "..", "shared", "data", "imagenet-sample"))
IMAGES = os.path.join(IMAGENET_SAMPLE, "images")
#: real model weights other than EfficientNet-Lite (MobileNetV2, D2Go, FastestDet): the folder
#: named by $DNNIQA_MODELS, else the workspace's shared models folder beside the repository
MODELS = os.environ.get("DNNIQA_MODELS") or os.path.normpath(os.path.join(HERE, "..", "..", "shared", "models"))

#: a photo of the public sample: ``<wnid>_<class name>.JPEG``
PHOTO = re.compile(r"^(n\d{8})_(.+)\.JPEG$")
COLUMNS = ("filename", "class_index", "wnid", "class_name")
README = """# ImageNet sample ({n} images, one per class)

Built by `python benchmarks/sample_data.py build` from a clone of the public repository
EliSchwartz/imagenet-sample-images (one image per ImageNet class): the classes with an
even class index (0, 2, 4, ... 998).

- `labels.csv`: filename, class_index (ImageNet-1k index, 0..999), wnid, class_name.
- Images are ImageNet photographs: use them for research and testing only, never ship
  them inside the package.
"""


def wnid_indices() -> Dict[str, int]:
    """ImageNet-1k wnid -> class index, from the package's class list (timm's, offline)."""
    # deferred: the benchmarks that only read IMAGES need not import the metrics
    from fiftyone_dnniqa.metrics.imagenet import imagenet_synsets

    return {wnid: i for i, (wnid, _) in enumerate(imagenet_synsets())}


def sample_rows(clone: str, parity: Optional[int] = 0) -> List[dict]:
    """``labels.csv`` rows of the photos in ``clone`` whose class index has ``parity``
    (0: even, 1: odd, None: all), by class index. Other files are ignored; a photo with
    an unknown wnid, or two photos of one class, are errors."""
    index, rows = wnid_indices(), {}
    for name in sorted(os.listdir(clone)):
        m = PHOTO.match(name)
        if not m or not os.path.isfile(os.path.join(clone, name)):
            continue
        wnid, class_name = m.groups()
        if wnid not in index:
            raise ValueError(f"{name}: {wnid} is not an ImageNet-1k class")
        k = index[wnid]
        if k in rows:
            raise ValueError(f"two photos of class {k} ({wnid}): {rows[k]['filename']} and {name}")
        rows[k] = {"filename": name, "class_index": k, "wnid": wnid, "class_name": class_name}
    return [rows[k] for k in sorted(rows) if parity is None or k % 2 == parity]


def build_sample(clone: str, folder: str, parity: Optional[int] = 0) -> List[dict]:
    """Copies the photos of ``sample_rows(clone, parity)`` into ``folder/images`` and
    writes ``folder/labels.csv`` and a README; returns the rows."""
    if not os.path.isdir(clone):
        raise ValueError(f"no folder {clone!r}: clone https://github.com/EliSchwartz/imagenet-sample-images there")
    rows = sample_rows(clone, parity)
    if not rows:
        raise ValueError(f"no photos named <wnid>_<class name>.JPEG in {clone!r}")
    images = os.path.join(folder, "images")
    os.makedirs(images, exist_ok=True)
    for r in rows:
        shutil.copyfile(os.path.join(clone, r["filename"]), os.path.join(images, r["filename"]))
    with open(os.path.join(folder, "labels.csv"), "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=COLUMNS)  # csv's own line ending, as the shared file
        writer.writeheader()
        writer.writerows(rows)
    with open(os.path.join(folder, "README.md"), "w") as f:
        f.write(README.format(n=len(rows)))
    return rows


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description="The labelled ImageNet photos the tests and benchmarks read.")
    sub = ap.add_subparsers(dest="command", required=True)
    build = sub.add_parser("build", help="build the folder from a clone of EliSchwartz/imagenet-sample-images")
    build.add_argument("--from", dest="clone", required=True, help="the clone (photos at its top level)")
    build.add_argument("--to", dest="folder", required=True, help="the folder to write (images/, labels.csv)")
    args = ap.parse_args(argv)
    try:
        rows = build_sample(args.clone, args.folder)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    missing = 500 - len(rows)
    print(f"wrote {len(rows)} photos (even class indices) and labels.csv to {args.folder}"
          + (f"; {missing} even classes have no photo in the clone" if missing > 0 else ""))
    print(f"export DNNIQA_IMAGENET_SAMPLE={os.path.abspath(args.folder)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
