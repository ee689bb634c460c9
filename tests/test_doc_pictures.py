"""The README's pictures: how the browser tests write them, and what the README links."""

import io
import os
import re

import numpy as np
import pytest
from PIL import Image, ImageDraw

from doc_pictures import BUDGET_BYTES, MAX_WIDTH, doc_picture, shrink_png

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _screenshot_like(width=1600, height=1900):
    """A page-like PNG: white, a grey bar, coloured boxes and text, as the App looks."""
    image = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(image)
    draw.rectangle([0, 0, width, 60], fill=(40, 40, 48))
    rng = np.random.default_rng(0)
    for i in range(40):
        x, y = int(rng.integers(0, width - 200)), int(rng.integers(80, height - 120))
        draw.rectangle([x, y, x + 180, y + 100], fill=tuple(int(c) for c in rng.integers(0, 255, 3)))
        draw.text((x + 5, y + 5), f"row {i} 0.{i:03d}", fill="black")
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue(), image


class _Page:
    def __init__(self, png):
        self.png, self.calls = png, 0

    def screenshot(self):
        self.calls += 1
        return self.png


def test_a_screenshot_shrinks_to_a_small_faithful_png():
    png, original = _screenshot_like()
    small = Image.open(io.BytesIO(shrink_png(png)))
    assert small.mode == "P" and small.width == MAX_WIDTH
    assert small.height == round(original.height * MAX_WIDTH / original.width)
    assert len(small.getcolors(256)) <= 64
    # faithful: close to PIL's own downscale of the original (mean error under 4 of 255)
    reference = np.asarray(original.resize(small.size, Image.LANCZOS), dtype=float)
    assert np.abs(np.asarray(small.convert("RGB"), dtype=float) - reference).mean() < 4
    assert len(shrink_png(png)) < len(png) / 3


def test_a_narrow_screenshot_keeps_its_size():
    png, _ = _screenshot_like(width=500, height=300)
    assert Image.open(io.BytesIO(shrink_png(png))).size == (500, 300)


def test_pictures_are_written_only_when_asked(tmp_path, monkeypatch):
    png, _ = _screenshot_like(800, 600)
    page = _Page(png)
    monkeypatch.delenv("DNNIQA_DOC_PICTURES", raising=False)
    assert doc_picture(page, "panel") is None and page.calls == 0
    monkeypatch.setenv("DNNIQA_DOC_PICTURES", str(tmp_path / "pictures"))
    path = doc_picture(page, "panel")
    assert path == str(tmp_path / "pictures" / "panel.png") and page.calls == 1
    assert Image.open(path).width == MAX_WIDTH


def test_the_readme_pictures_exist_and_fit_the_budget():
    with open(os.path.join(ROOT, "README.md"), encoding="utf-8") as f:
        linked = re.findall(r"\]\((docs/images/[^)]+\.png)\)", f.read())
    assert linked, "the README shows at least one picture"
    missing = [p for p in linked if not os.path.exists(os.path.join(ROOT, p))]
    assert not missing, f"README links missing pictures: {missing}"
    folder = os.path.join(ROOT, "docs", "images")
    total = sum(os.path.getsize(os.path.join(folder, n)) for n in os.listdir(folder))
    assert total <= BUDGET_BYTES, f"docs/images holds {total} bytes, over {BUDGET_BYTES}"


@pytest.mark.parametrize("name", ["compute-form", "panel", "object-mode", "report"])
def test_each_picture_is_written_by_a_test(name):
    """tools/refresh_pictures.py can refresh every picture the README shows."""
    tests = os.path.join(ROOT, "tests")
    sources = "".join(open(os.path.join(tests, f), encoding="utf-8").read()
                      for f in os.listdir(tests) if f.startswith("test_") and f.endswith(".py")
                      and f != "test_doc_pictures.py")
    assert re.search(rf'doc_picture\(\w+, "{name}"', sources)
