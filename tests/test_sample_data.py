"""``benchmarks/sample_data.py build``: the labelled photo folder the tests read, built
from a clone of the public EliSchwartz/imagenet-sample-images repository.

Oracles: ImageNet-1k class indices known by heart (tench 0, goldfish 1, great white shark
2, ear 998, toilet tissue 999: the sorted wnid order of the ILSVRC-2012 devkit; yellow
lady's slipper 986 read off the shared labels.csv), and the shared folder's own
``labels.csv``, whose lines the build must reproduce byte for byte.
"""

import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from conftest import IMAGENET, ROOT

sys.path.insert(0, os.path.join(ROOT, "benchmarks"))

import sample_data  # noqa: E402

#: (file name as in the public repository, ImageNet-1k class index)
FAKE = [("n01440764_tench.JPEG", 0), ("n01443537_goldfish.JPEG", 1), ("n01484850_great_white_shark.JPEG", 2),
        ("n12057211_yellow_lady's_slipper.JPEG", None), ("n13133613_ear.JPEG", 998),
        ("n15075141_toilet_tissue.JPEG", 999)]
#: the shared labels.csv's header line, as written there (csv's CRLF)
HEADER = b"filename,class_index,wnid,class_name\r\n"


def _fake_clone(folder):
    """A clone in miniature: tiny real JPEGs under the repository's names, its two
    Markdown files, and a stray file that is no photo."""
    os.makedirs(folder)
    rng = np.random.default_rng(0)
    for name, _ in FAKE:
        Image.fromarray(rng.integers(0, 256, (12, 16, 3), dtype=np.uint8)).save(os.path.join(folder, name), "JPEG")
    for extra in ("README.md", "gallery.md", "n01440764_tench.JPEG.txt"):
        with open(os.path.join(folder, extra), "w") as f:
            f.write("not a photo\n")
    return folder


def test_build_keeps_the_even_classes_with_their_imagenet_index(tmp_path):
    clone, out = _fake_clone(str(tmp_path / "clone")), str(tmp_path / "sample")
    rows = sample_data.build_sample(clone, out)
    # yellow lady's slipper (n12057211) is 986, as the shared labels.csv says; the odd 1 and 999 are left out
    expected = [("n01440764_tench.JPEG", 0, "tench"), ("n01484850_great_white_shark.JPEG", 2, "great_white_shark"),
                ("n12057211_yellow_lady's_slipper.JPEG", 986, "yellow_lady's_slipper"), ("n13133613_ear.JPEG", 998, "ear")]
    assert [(r["filename"], r["class_index"], r["class_name"]) for r in rows] == expected
    assert sorted(os.listdir(out)) == ["README.md", "images", "labels.csv"]
    assert sorted(os.listdir(os.path.join(out, "images"))) == sorted(e[0] for e in expected)
    for name, _, _ in expected:  # copied byte for byte
        with open(os.path.join(clone, name), "rb") as a, open(os.path.join(out, "images", name), "rb") as b:
            assert a.read() == b.read()
    with open(os.path.join(out, "labels.csv"), "rb") as f:
        text = f.read()
    lines = [HEADER] + [f"{n},{k},{n[:9]},{c}\r\n".encode() for n, k, c in expected]
    assert text == b"".join(lines)


def test_the_build_reproduces_the_shared_labels_line_for_line(tmp_path):
    """The shared folder's first 40 photos as a clone (linked, with two odd-class
    photos beside them): the labels.csv built is the shared one's first 40 lines."""
    shared = os.path.join(IMAGENET, "labels.csv")
    if not os.path.isfile(shared):
        pytest.skip(f"no shared labels.csv at {shared}")
    with open(shared, "rb") as f:
        lines = f.read().splitlines(keepends=True)
    assert lines[0] == HEADER
    clone = tmp_path / "clone"
    clone.mkdir()
    for line in lines[1:41]:
        name = line.decode().split(",")[0]
        os.symlink(os.path.join(IMAGENET, "images", name), clone / name)
    _fake_clone(str(tmp_path / "odd"))
    for name in ("n01443537_goldfish.JPEG", "n15075141_toilet_tissue.JPEG"):
        os.rename(tmp_path / "odd" / name, clone / name)
    sample_data.build_sample(str(clone), str(tmp_path / "sample"))
    with open(tmp_path / "sample" / "labels.csv", "rb") as f:
        assert f.read() == b"".join(lines[:41])


def test_the_command_line_and_its_errors(tmp_path):
    clone, out = _fake_clone(str(tmp_path / "clone")), str(tmp_path / "sample")
    script = os.path.join(ROOT, "benchmarks", "sample_data.py")
    run = subprocess.run([sys.executable, script, "build", "--from", clone, "--to", out],
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    assert f"export DNNIQA_IMAGENET_SAMPLE={out}" in run.stdout and "496 even classes have no photo" in run.stdout
    assert len(os.listdir(os.path.join(out, "images"))) == 4
    missing = subprocess.run([sys.executable, script, "build", "--from", str(tmp_path / "nope"), "--to", out],
                             capture_output=True, text=True, timeout=300)
    assert missing.returncode == 2 and "clone https://github.com/EliSchwartz/imagenet-sample-images" in missing.stderr
    Image.new("RGB", (4, 4)).save(os.path.join(clone, "n99999999_unicorn.JPEG"), "JPEG")
    with pytest.raises(ValueError, match="n99999999 is not an ImageNet-1k class"):
        sample_data.build_sample(clone, out)
    os.remove(os.path.join(clone, "n99999999_unicorn.JPEG"))
    Image.new("RGB", (4, 4)).save(os.path.join(clone, "n01440764_tinca_tinca.JPEG"), "JPEG")
    with pytest.raises(ValueError, match="two photos of class 0"):
        sample_data.build_sample(clone, out)
