"""A bad-input corpus, generated (never committed): every kind of file a
curation tool meets in the wild."""

import io
import os
import struct
import zlib

import numpy as np
from PIL import Image


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def write_bomb_png(path, side=20000):
    """A valid grayscale PNG of side x side pixels, a few hundred KB on disk."""
    comp = zlib.compressobj(9)
    row = b"\x00" * (side + 1)
    parts = [comp.compress(row) for _ in range(side)]
    parts.append(comp.flush())
    with open(path, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n")
        f.write(_png_chunk(b"IHDR", struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0)))
        f.write(_png_chunk(b"IDAT", b"".join(parts)))
        f.write(_png_chunk(b"IEND", b""))
    return str(path)


def build_corpus(folder):
    """Returns ``(cases, expect_score)``: name -> path, and the names that
    must get a score (the others must get a recorded reason)."""
    folder = str(folder)
    rng = np.random.default_rng(0)
    photo = Image.fromarray(rng.integers(0, 256, (48, 64, 3), dtype=np.uint8))
    cases = {}

    def path(name):
        return os.path.join(folder, name)

    def write(name, data):
        with open(path(name), "wb") as f:
            f.write(data)
        cases[os.path.splitext(name)[0].replace(" ", "_")] = path(name)

    def save(key, name, img, **kw):
        img.save(path(name), **kw)
        cases[key] = path(name)

    jpg, png = io.BytesIO(), io.BytesIO()
    photo.save(jpg, format="JPEG")
    photo.save(png, format="PNG")
    write("zero.jpg", b"")
    write("truncated_jpeg.jpg", jpg.getvalue()[: len(jpg.getvalue()) // 2])
    write("truncated_png.png", png.getvalue()[: len(png.getvalue()) // 2])
    write("random_bytes.png", rng.integers(0, 256, 4096, dtype=np.uint8).tobytes())
    write("text_file.jpg", b"hello, I am not an image\n")
    os.mkdir(path("directory.jpg"))
    cases["directory"] = path("directory.jpg")
    cases["missing"] = path("missing.jpg")
    os.symlink(path("nowhere.jpg"), path("broken_symlink.jpg"))
    cases["broken_symlink"] = path("broken_symlink.jpg")
    cases["bomb_20000x20000"] = write_bomb_png(path("bomb.png"))

    save("tiny_1x1", "tiny_1x1.png", Image.new("RGB", (1, 1), (9, 9, 9)))
    save("tiny_3x2", "tiny_3x2.png", Image.new("RGB", (3, 2), (90, 9, 9)))
    save("png_16bit", "png_16bit.png",
         Image.fromarray(rng.integers(0, 65536, (48, 64), dtype=np.uint16)))
    save("cmyk_jpeg", "cmyk.jpg", photo.convert("CMYK"))
    save("palette", "palette.png", photo.convert("P", palette=Image.Palette.ADAPTIVE))
    save("rgba", "rgba.png", photo.convert("RGBA"))
    exif = Image.Exif()
    exif[0x0112] = 6
    save("exif_rotated", "exif_rotated.jpg", photo, exif=exif)
    frames = [photo, photo.transpose(Image.Transpose.FLIP_LEFT_RIGHT)]
    frames[0].save(path("animated.gif"), save_all=True, append_images=frames[1:])
    cases["animated_gif"] = path("animated.gif")
    save("webp", "photo.webp", photo)
    save("tiff", "photo.tiff", photo)
    save("spaces_non_ascii", "a photo with spaces ünïcødé 写真.png", photo)
    save("grayscale", "gray.png", photo.convert("L"))

    expect_score = {"png_16bit", "cmyk_jpeg", "palette", "rgba", "exif_rotated", "animated_gif",
                    "webp", "tiff", "spaces_non_ascii", "grayscale"}
    return cases, expect_score
