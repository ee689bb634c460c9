"""Decoding: every odd image converts correctly, every bad file gives a reason."""

import io
import os

import numpy as np
import pytest
import torch
from PIL import Image

from fiftyone_dnniqa.core.images import ImageLoadError, InputSpec, prepare, read_image


def _save(img, path, **kw):
    img.save(path, **kw)
    return str(path)


def test_rgb_roundtrip(tmp_path):
    arr = np.random.default_rng(0).integers(0, 256, (7, 5, 3), dtype=np.uint8)
    x = read_image(_save(Image.fromarray(arr), tmp_path / "a.png"))
    assert x.dtype == torch.uint8 and x.shape == (3, 7, 5)
    assert torch.equal(x.permute(1, 2, 0), torch.from_numpy(arr))


def test_grayscale_is_replicated(tmp_path):
    x = read_image(_save(Image.new("L", (4, 3), 77), tmp_path / "g.png"))
    assert x.shape == (3, 3, 4) and (x == 77).all()


def test_sixteen_bit_is_rescaled_not_clipped(tmp_path):
    arr = np.array([[0, 32768, 65535]], dtype=np.uint16)
    path = _save(Image.fromarray(arr), tmp_path / "d.png")
    assert Image.open(path).mode.startswith("I")
    x = read_image(path)
    assert x[0, 0].tolist() == [0, 128, 255]


def test_rgba_palette_cmyk(tmp_path):
    rgba = Image.new("RGBA", (3, 2), (10, 20, 30, 0))
    assert read_image(_save(rgba, tmp_path / "a.png"))[:, 0, 0].tolist() == [10, 20, 30]
    pal = Image.new("RGB", (3, 2), (200, 0, 0)).convert("P", palette=Image.Palette.ADAPTIVE)
    assert read_image(_save(pal, tmp_path / "p.png"))[:, 0, 0].tolist() == [200, 0, 0]
    cmyk = Image.new("CMYK", (3, 2), (0, 255, 255, 0))  # pure red
    x = read_image(_save(cmyk, tmp_path / "c.jpg", quality=100))
    assert x[0, 0, 0] > 200 and x[1, 0, 0] < 60 and x[2, 0, 0] < 60


def test_exif_rotation_is_applied(tmp_path):
    img = Image.new("RGB", (40, 20), (0, 0, 0))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    path = _save(img, tmp_path / "r.jpg", exif=exif)
    assert read_image(path).shape == (3, 40, 20)


def test_animated_gif_gives_first_frame(tmp_path):
    frames = [Image.new("RGB", (4, 4), c) for c in [(255, 0, 0), (0, 0, 255)]]
    path = str(tmp_path / "anim.gif")
    frames[0].save(path, save_all=True, append_images=frames[1:])
    x = read_image(path)
    assert x[0].float().mean() > 200 and x[2].float().mean() < 50


def bad_files(tmp_path):
    """name -> (path, expected reason fragment)."""
    good = io.BytesIO()
    Image.new("RGB", (64, 64), (1, 2, 3)).save(good, format="JPEG")
    png = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(png, format="PNG")
    out = {}

    def w(name, data):
        p = tmp_path / name
        p.write_bytes(data)
        return str(p)

    out["zero"] = (w("zero.jpg", b""), "empty file")
    out["truncated_jpeg"] = (w("trunc.jpg", good.getvalue()[: len(good.getvalue()) // 2]), "truncated")
    out["truncated_png"] = (w("trunc.png", png.getvalue()[: len(png.getvalue()) // 2]), "truncated")
    out["random_bytes"] = (w("noise.png", os.urandom(2048)), "not an image")
    out["text"] = (w("notes.jpg", b"this is not an image\n"), "not an image")
    d = tmp_path / "folder.jpg"
    d.mkdir()
    out["directory"] = (str(d), "not a regular file")
    out["missing"] = (str(tmp_path / "missing.jpg"), "missing file")
    link = tmp_path / "broken.jpg"
    link.symlink_to(tmp_path / "nowhere.jpg")
    out["broken_symlink"] = (str(link), "broken symlink")
    return out


def test_bad_files_raise_with_reason(tmp_path):
    for name, (path, fragment) in bad_files(tmp_path).items():
        with pytest.raises(ImageLoadError) as e:
            read_image(path)
        assert fragment in str(e.value), (name, str(e.value))
        assert str(e.value), name


def test_oversized_image_is_refused_before_decoding(tmp_path):
    path = _save(Image.new("L", (300, 300)), tmp_path / "big.png")
    with pytest.raises(ImageLoadError, match="too large"):
        read_image(path, max_pixels=10_000)
    assert read_image(path, max_pixels=None).shape == (3, 300, 300)


def test_prepare_resize_crop_and_max_side():
    x = torch.randint(0, 256, (3, 300, 400), dtype=torch.uint8)
    assert prepare(x, InputSpec(resize=256, crop=224)).shape == (3, 224, 224)
    assert prepare(x, InputSpec(max_side=200)).shape == (3, 150, 200)
    assert prepare(x, InputSpec()).data_ptr() == x.data_ptr()
    tiny = torch.randint(0, 256, (3, 1, 1), dtype=torch.uint8)
    assert prepare(tiny, InputSpec(resize=256, crop=224)).shape == (3, 224, 224)
