"""Batched JPEG decoding on the scoring device (``decode="device"``; nvJPEG on CUDA).

On these CPU machines the same code path runs with ``device="cpu"``: the loader
workers ship raw JPEG bytes and the main process decodes them in batches with
``torchvision.io.decode_jpeg``. What must hold on any device: the same images (so
the same scores) as PIL in the workers, and every file the fast path cannot take
falls back to the workers' decoder with the same recorded reason.
"""

import io

import numpy as np
import pytest
import torch
from PIL import Image

import fiftyone_dnniqa as dq
from fiftyone_dnniqa.scoring import loading
from fiftyone_dnniqa.metrics.base import InputSpec

from test_loading import bad_files


def _odd_files(tmp_path):
    """JPEGs the batched decoder must not take, and a PNG."""
    rng = np.random.default_rng(0)
    arr = rng.integers(0, 256, (48, 64, 3), dtype=np.uint8)
    out = {}
    p = tmp_path / "cmyk.jpg"
    Image.fromarray(arr).convert("CMYK").save(p, format="JPEG", quality=95)
    out["cmyk"] = str(p)
    p = tmp_path / "rotated.jpg"
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise on display
    Image.fromarray(arr).save(p, format="JPEG", quality=95, exif=exif.tobytes())
    out["rotated"] = str(p)
    p = tmp_path / "photo.png"
    Image.fromarray(arr).save(p)
    out["png"] = str(p)
    p = tmp_path / "gray.jpg"
    Image.fromarray(arr[..., 0]).save(p, format="JPEG", quality=95)
    out["gray"] = str(p)
    return out


def _truncated_jpeg(tmp_path, seed=1) -> str:
    """A JPEG cut in half: its header parses, its scan does not decode."""
    good = io.BytesIO()
    noise = np.random.default_rng(seed).integers(0, 256, (256, 256, 3), dtype=np.uint8)
    Image.fromarray(noise).save(good, format="JPEG")  # large scan: cutting it keeps the header
    trunc = tmp_path / "trunc.jpg"
    trunc.write_bytes(good.getvalue()[: len(good.getvalue()) // 2])
    return str(trunc)


def test_jpeg_bytes_only_for_plain_jpegs(tmp_path, imagenet_files):
    odd = _odd_files(tmp_path)
    data = loading.jpeg_bytes(imagenet_files[0])
    assert data is not None and data.dtype == torch.uint8
    assert data.numel() == len(open(imagenet_files[0], "rb").read())
    assert loading.jpeg_bytes(odd["gray"]) is not None  # grayscale: decode_jpeg converts to RGB
    for name in ("cmyk", "rotated", "png"):
        assert loading.jpeg_bytes(odd[name]) is None, name
    assert loading.jpeg_bytes(str(tmp_path / "missing.jpg")) is None
    assert loading.jpeg_bytes(imagenet_files[0], max_pixels=100) is None  # too large: read_image refuses it


def test_batched_decode_gives_the_same_pixels_as_pil(imagenet_files, tmp_path):
    files = imagenet_files[:6] + list(_odd_files(tmp_path).values())
    spec = InputSpec(resize=256, crop=224)
    items = [loading.SampleImages(files, [spec], raw_jpeg=True)[i] for i in range(len(files))]
    assert sum("jpeg" in it for it in items) == 7  # 6 photos + the grayscale JPEG
    loading.decode_jpegs(items, [spec], torch.device("cpu"))
    for f, it in zip(files, items):
        assert "jpeg" not in it and "path" not in it
        expected = loading.prepare(loading.read_image(f), spec)
        got = it["images"][0]
        assert got.shape == expected.shape == (3, 224, 224), f
        diff = (got.int() - expected.int()).abs()
        # both decoders are libjpeg-turbo builds: the same pixels up to rounding
        assert diff.float().mean() < 0.5 and diff.max() <= 8, (f, diff.float().mean(), diff.max())


def test_one_bad_file_does_not_fail_the_batch(imagenet_files, tmp_path):
    files = imagenet_files[:3] + [_truncated_jpeg(tmp_path)]
    spec = InputSpec(resize=64, crop=64)
    items = [loading.SampleImages(files, [spec], raw_jpeg=True)[i] for i in range(len(files))]
    assert all("jpeg" in it for it in items)  # the header of the truncated file parses
    loading.decode_jpegs(items, [spec], torch.device("cpu"))
    assert all(it["images"][0].shape == (3, 64, 64) for it in items[:3])
    assert "images" not in items[3] and "truncated" in items[3]["error"]


def test_raw_jpeg_cannot_be_postprocessed():
    with pytest.raises(ValueError, match="^raw_jpeg items are decoded later: they cannot be postprocessed"):
        loading.SampleImages([], [InputSpec()], raw_jpeg=True, postprocess=lambda it: it)


def test_jpeg_bytes_takes_an_image_of_exactly_max_pixels(imagenet_files):
    w, h = Image.open(imagenet_files[0]).size
    assert loading.jpeg_bytes(imagenet_files[0], max_pixels=w * h) is not None
    assert loading.jpeg_bytes(imagenet_files[0], max_pixels=w * h - 1) is None


@pytest.fixture
def decode_calls(monkeypatch):
    """What reached torchvision's ``decode_jpeg`` (a list: one batched call) and
    ``read_image`` (paths) while decoding."""
    import torchvision.io

    calls = {"decode_jpeg": [], "read_image": []}
    real_decode, real_read = torchvision.io.decode_jpeg, loading.read_image

    def decode(data, **kw):
        calls["decode_jpeg"].append(len(data) if isinstance(data, list) else "one")
        return real_decode(data, **kw)

    def read(path, *a, **kw):
        calls["read_image"].append(path)
        return real_read(path, *a, **kw)

    monkeypatch.setattr(torchvision.io, "decode_jpeg", decode)
    monkeypatch.setattr(loading, "read_image", read)
    return calls


def test_plain_jpegs_are_decoded_in_one_batched_call(imagenet_files, decode_calls):
    spec = InputSpec(resize=64, crop=64)
    items = [loading.SampleImages(imagenet_files[:4], [spec], raw_jpeg=True)[i] for i in range(4)]
    loading.decode_jpegs(items, [spec], torch.device("cpu"))
    assert decode_calls == {"decode_jpeg": [4], "read_image": []}
    assert all(it["images"][0].shape == (3, 64, 64) for it in items)


def test_a_bad_file_first_leaves_the_others_to_the_fast_decoder(imagenet_files, tmp_path, decode_calls):
    """Each file alone once the batched call fails; only the bad one goes to read_image,
    and a grayscale JPEG still comes out as RGB with PIL's pixels."""
    trunc, gray = _truncated_jpeg(tmp_path), _odd_files(tmp_path)["gray"]
    files = [trunc] + imagenet_files[:2] + [gray]
    spec = InputSpec(resize=48, crop=48)
    items = [loading.SampleImages(files, [spec], raw_jpeg=True)[i] for i in range(len(files))]
    loading.decode_jpegs(items, [spec], torch.device("cpu"))
    assert decode_calls == {"decode_jpeg": [4, "one", "one", "one", "one"], "read_image": [trunc]}
    assert "truncated" in items[0]["error"] and "images" not in items[0]
    for f, it in zip(files[1:], items[1:]):
        expected = loading.prepare(loading.read_image(f), spec)
        assert it["images"][0].shape == (3, 48, 48)
        assert (it["images"][0].int() - expected.int()).abs().float().mean() < 0.5, f


def test_a_file_the_fast_decoder_fails_gets_read_images_reason_under_max_pixels(tmp_path):
    trunc = _truncated_jpeg(tmp_path)
    spec = InputSpec(resize=32, crop=32)
    items = [loading.SampleImages([trunc], [spec], raw_jpeg=True, max_pixels=None)[0]]
    loading.decode_jpegs(items, [spec], torch.device("cpu"), max_pixels=1000)
    with pytest.raises(loading.ImageLoadError) as expected:
        loading.read_image(trunc, 1000)
    assert items[0]["error"] == str(expected.value) and "too large" in items[0]["error"]


def test_sample_images_decode_in_the_worker_unless_asked_and_keep_max_pixels(imagenet_files, tmp_path):
    spec = InputSpec(resize=32, crop=32)
    plain = loading.SampleImages(imagenet_files[:1], [spec])[0]
    assert "jpeg" not in plain and plain["images"][0].shape == (3, 32, 32)
    refused = loading.SampleImages(imagenet_files[:1], [spec], raw_jpeg=True, max_pixels=100)[0]
    assert "jpeg" not in refused and "images" not in refused and "too large" in refused["error"]
    small = tmp_path / "small.jpg"
    Image.fromarray(np.full((40, 40, 3), 128, np.uint8)).save(small)
    got = loading.SampleImages([str(small)], [spec], reference_paths=imagenet_files[:1], max_pixels=1600)[0]
    assert got["images"][0].shape == (3, 32, 32) and "references" not in got
    assert "too large" in got["ref_error"] and imagenet_files[0] in got["ref_error"]


def test_device_decode_scores_and_failures_match_worker_decode(imagenet_files, make_dataset, tmp_path):
    odd = _odd_files(tmp_path)
    bad = bad_files(tmp_path)
    good = imagenet_files[:8] + list(odd.values())
    ds = make_dataset(good + [p for p, _ in bad.values()])
    kw = dict(device="cpu", num_workers=2, progress=False)
    a = dq.compute_quality(ds, "aligned", field="by_workers", decode="workers", **kw)
    b = dq.compute_quality(ds, "aligned", field="by_device", decode="device", **kw)
    assert a.num_scored == b.num_scored == len(good)
    assert a.num_failed == b.num_failed == len(bad)
    w = dict(zip(ds.values("filepath"), ds.values("by_workers")))
    d = dict(zip(ds.values("filepath"), ds.values("by_device")))
    for f in good:
        assert w[f] is not None and d[f] is not None
        assert abs(w[f] - d[f]) < 0.02, (f, w[f], d[f])
    # the odd files went through PIL in both runs: identical scores
    for f in odd.values():
        if not f.endswith("gray.jpg"):
            assert w[f] == pytest.approx(d[f], abs=1e-4), f
    ew = dict(zip(ds.values("filepath"), ds.values("by_workers_error")))
    ed = dict(zip(ds.values("filepath"), ds.values("by_device_error")))
    for path, fragment in bad.values():
        assert ed[path] == ew[path] and fragment in ed[path], (path, ed[path], ew[path])


def test_device_decode_with_per_image_metrics_and_no_workers(imagenet_files, make_dataset):
    # piqe normally runs inside the CPU workers; with decode="device" it runs batched in the main process
    ds = make_dataset(imagenet_files[:4])
    dq.compute_quality(ds, "piqe", field="w", device="cpu", num_workers=2, progress=False)
    res = dq.compute_quality(ds, "piqe", field="d", device="cpu", num_workers=0, decode="device", progress=False)
    assert res.num_scored == 4
    assert np.allclose(ds.values("w"), ds.values("d"), atol=2.0)


def test_bad_decode_value_is_refused(make_dataset, imagenet_files):
    ds = make_dataset(imagenet_files[:1])
    with pytest.raises(ValueError, match="decode must be"):
        dq.compute_quality(ds, "piqe", decode="gpu")
    assert not ds.has_sample_field("iqa_piqe")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device (nvJPEG)")
def test_nvjpeg_decode_on_cuda(imagenet_files, make_dataset):
    ds = make_dataset(imagenet_files[:32])
    a = dq.compute_quality(ds, "aligned", field="w", device="cuda", decode="workers", progress=False)
    b = dq.compute_quality(ds, "aligned", field="d", device="cuda", decode="auto", progress=False)
    assert a.num_scored == b.num_scored == 32
    assert np.allclose(ds.values("w"), ds.values("d"), atol=0.05)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device (nvJPEG)")
def test_decoded_images_stay_on_the_device(imagenet_files, tmp_path):
    """Batched, file by file after a bad file, and through read_image: every image on CUDA."""
    spec, cuda = InputSpec(resize=32, crop=32), torch.device("cuda")
    for files in (imagenet_files[:3], imagenet_files[:3] + [_truncated_jpeg(tmp_path)]):
        items = [loading.SampleImages(files, [spec], raw_jpeg=True)[i] for i in range(len(files))]
        loading.decode_jpegs(items, [spec], cuda)
        assert all(it["images"][0].device.type == "cuda" for it in items[:3])
    # the truncated file: nvJPEG refuses it, read_image decodes what it can or gives a reason
    assert "error" in items[3] or items[3]["images"][0].device.type == "cuda"
