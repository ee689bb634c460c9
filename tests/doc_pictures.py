"""Pictures for the README, written by the browser tests.

``doc_picture(page, name)`` does nothing unless ``$DNNIQA_DOC_PICTURES`` names a folder;
``python tools/refresh_pictures.py`` sets it to ``docs/images`` and runs the browser tests.
Each picture is shrunk to at most ``MAX_WIDTH`` pixels wide and reduced to a small
palette, so that all of them stay under the README's budget (``BUDGET_BYTES``).
"""

import io
import os

from PIL import Image

MAX_WIDTH = 760
COLOURS = 64
BUDGET_BYTES = 300_000


def shrink_png(png: bytes, max_width: int = MAX_WIDTH, colours: int = COLOURS) -> bytes:
    """A screenshot as a small PNG: at most ``max_width`` wide, ``colours`` palette entries."""
    image = Image.open(io.BytesIO(png)).convert("RGB")
    if image.width > max_width:
        height = max(1, round(image.height * max_width / image.width))
        image = image.resize((max_width, height), Image.LANCZOS)
    small = image.quantize(colors=colours, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)
    out = io.BytesIO()
    small.save(out, format="PNG", optimize=True)
    return out.getvalue()


def doc_picture(page, name: str, locator=None, folder=None):
    """Writes ``<folder>/<name>.png`` from the page (or one ``locator`` of it) when
    ``folder`` or ``$DNNIQA_DOC_PICTURES`` is set; returns its path, or None."""
    folder = folder or os.environ.get("DNNIQA_DOC_PICTURES")
    if not folder:
        return None
    png = (locator or page).screenshot()
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, f"{name}.png")
    with open(path, "wb") as f:
        f.write(shrink_png(png))
    return path
