"""compute_quality against real temporary datasets."""

import math

import numpy as np
import pytest
import torch
from PIL import Image

import fiftyone as fo
import fiftyone_dnniqa as dq
from fiftyone_dnniqa.core import images
from fiftyone_dnniqa.scoring import loading
from fiftyone_dnniqa.metrics.base import InputSpec, QualityMetric

from test_loading import bad_files


class MeanBrightness(QualityMetric):
    """A transparent test metric: mean pixel value, optionally misbehaving."""

    name = "mean_brightness"
    input_spec = InputSpec(resize=32, crop=32)

    def __init__(self, fail_on=None, nan_on=None, oom_above=None, interrupt_after=None):
        super().__init__()
        self.calls = 0
        self.batch_sizes = []
        self.fail_on, self.nan_on = fail_on, nan_on
        self.oom_above, self.interrupt_after = oom_above, interrupt_after

    def score(self, images, references=None):
        self.calls += len(images)
        if self.interrupt_after is not None and self.calls > self.interrupt_after:
            raise KeyboardInterrupt
        if self.oom_above is not None and len(images) > self.oom_above:
            raise RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB")
        self.batch_sizes.append(len(images))
        out = images.mean(dim=(1, 2, 3)).double()
        for i, img in enumerate(images):
            v = round(float(img.mean()) * 255)
            if self.fail_on is not None and v == self.fail_on:
                raise ValueError("cannot score this one")
            if self.nan_on is not None and v == self.nan_on:
                out[i] = math.nan
        return out


def _gray_files(tmp_path, values, prefix="g", size=(40, 30)):
    paths = []
    for i, v in enumerate(values):
        p = tmp_path / f"{prefix}{i:03d}.png"
        Image.new("RGB", size, (v, v, v)).save(p)
        paths.append(str(p))
    return paths


def test_scores_land_for_every_readable_sample(imagenet_files, make_dataset, tmp_path):
    files = imagenet_files[:16]
    bad = bad_files(tmp_path)
    ds = make_dataset(files + [p for p, _ in bad.values()])
    res = dq.compute_quality(ds, "piqe", num_workers=2)
    assert res.status == "completed"
    assert res.num_scored == 16 and res.num_failed == len(bad)
    assert ds.count("iqa_piqe") == 16
    by_path = dict(zip(ds.values("filepath"), ds.values("iqa_piqe")))
    assert all(by_path[f] is not None and 0 <= by_path[f] <= 100 for f in files)
    errors = dict(zip(ds.values("filepath"), ds.values("iqa_piqe_error")))
    for name, (path, fragment) in bad.items():
        assert errors[path] and fragment in errors[path], (name, errors[path])
    assert all(errors[f] is None for f in files)
    assert len(res.failures) == len(bad)


def test_scores_match_direct_metric_calls(imagenet_files, make_dataset):
    files = imagenet_files[:6]
    ds = make_dataset(files)
    dq.compute_quality(ds, "piqe", num_workers=2)
    metric = dq.create_metric("piqe")
    direct = [float(metric.score(images.to_float(images.read_image(f)[None]))[0]) for f in files]
    stored = dict(zip(ds.values("filepath"), ds.values("iqa_piqe")))
    assert np.allclose([stored[f] for f in files], direct, atol=1e-5)


def test_same_scores_with_and_without_workers(imagenet_files, make_dataset):
    ds = make_dataset(imagenet_files[:6])
    dq.compute_quality(ds, "piqe", field="a", num_workers=0)
    dq.compute_quality(ds, "piqe", field="b", num_workers=2)
    assert np.allclose(ds.values("a"), ds.values("b"))


def test_several_metrics_decode_each_image_once(tmp_path, make_dataset, monkeypatch):
    ds = make_dataset(_gray_files(tmp_path, [10, 20, 30, 40]))
    reads = []
    real = loading.read_image
    monkeypatch.setattr(loading, "read_image", lambda p, *a, **k: reads.append(p) or real(p, *a, **k))
    res = dq.compute_quality(ds, [MeanBrightness(), "entropy"], num_workers=0)
    assert set(res) == {"iqa_mean_brightness", "iqa_entropy"}
    assert len(reads) == 4
    assert ds.count("iqa_mean_brightness") == 4 and ds.count("iqa_entropy") == 4


def test_full_reference_metrics_use_the_reference_field(imagenet_files, make_dataset, tmp_path):
    from fiftyone_dnniqa.corruptions import gaussian_noise

    clean = imagenet_files[:4]
    noisy = []
    for i, f in enumerate(clean):
        x = images.to_float(images.read_image(f))
        y = gaussian_noise(x, 30, generator=torch.Generator().manual_seed(i))
        p = tmp_path / f"noisy{i}.png"
        Image.fromarray((y * 255).round().byte().permute(1, 2, 0).numpy()).save(p)
        noisy.append(str(p))
    ds = make_dataset(clean + noisy + [noisy[0]], ref=clean + clean + [str(tmp_path / "gone.png")])
    with pytest.raises(ValueError, match="reference_field"):
        dq.compute_quality(ds, "psnr")
    res = dq.compute_quality(ds, ["psnr", "piqe"], reference_field="ref")
    psnr = ds.values("iqa_psnr")
    assert all(p > 60 for p in psnr[:4])  # identical to the reference
    assert all(17 < p < 21 for p in psnr[4:8])  # std 30 noise: 20 log10(255/30) = 18.6 dB
    assert psnr[8] is None and "reference" in ds.values("iqa_psnr_error")[8]
    assert ds.values("iqa_piqe")[8] is not None  # no-reference metrics do not need it
    assert res["iqa_psnr"].config.reference_field == "ref"


def test_resume_after_interruption_scores_only_the_rest(tmp_path, make_dataset):
    ds = make_dataset(_gray_files(tmp_path, list(range(0, 200, 10))))  # 20 samples
    m = MeanBrightness(interrupt_after=12)
    with pytest.raises(KeyboardInterrupt):
        dq.compute_quality(ds, m, batch_size=4, num_workers=0, write_every=4)
    kept = ds.count("iqa_mean_brightness")
    assert kept == 12  # every completed batch was written
    assert dq.load_quality_run(ds, "iqa_mean_brightness").status == "interrupted"
    again = MeanBrightness()
    res = dq.compute_quality(ds, again, batch_size=4, num_workers=0)
    assert again.calls == 20 - kept
    assert res.num_todo == 8 and res.status == "completed"
    values = ds.values("iqa_mean_brightness")
    assert np.allclose(values, [v / 255 for v in range(0, 200, 10)], atol=1 / 255)


def test_existing_fields_are_never_overwritten_silently(tmp_path, make_dataset):
    ds = make_dataset(_gray_files(tmp_path, [50, 60]))
    ds.set_values("iqa_mean_brightness", [7.0, 8.0])
    with pytest.raises(ValueError, match="overwrite=True"):
        dq.compute_quality(ds, MeanBrightness(), num_workers=0)
    assert ds.values("iqa_mean_brightness") == [7.0, 8.0]
    dq.compute_quality(ds, MeanBrightness(), num_workers=0, overwrite=True)
    assert np.allclose(ds.values("iqa_mean_brightness"), [50 / 255, 60 / 255], atol=1e-3)


def test_another_metric_cannot_reuse_a_field(tmp_path, make_dataset):
    ds = make_dataset(_gray_files(tmp_path, [50]))
    dq.compute_quality(ds, "entropy", field="q", num_workers=0)
    with pytest.raises(ValueError, match="holds scores of metric 'entropy'"):
        dq.compute_quality(ds, "piqe", field="q", num_workers=0)


def test_run_records_list_reload_and_delete(tmp_path, make_dataset):
    ds = make_dataset(_gray_files(tmp_path, [50, 60, 70]))
    ds.add_sample_field("user_notes", fo.StringField)
    dq.compute_quality(ds, ["entropy", MeanBrightness()], num_workers=0)
    assert dq.list_quality_runs(ds) == ["iqa_entropy", "iqa_mean_brightness"]
    r = dq.load_quality_run(ds, "iqa_entropy")
    assert r.status == "completed" and r.num_scored == 3 and r.num_with_scores == 3
    info = dq.get_quality_run_info(ds, "iqa_entropy")
    assert info.config.metric == "entropy" and info.config.field == "iqa_entropy"
    # a fresh handle on the dataset sees the same record
    again = fo.load_dataset(ds.name)
    assert dq.load_quality_run(again, "iqa_entropy").num_scored == 3
    dq.delete_quality_run(ds, "iqa_entropy")
    assert not ds.has_sample_field("iqa_entropy")
    assert ds.has_sample_field("iqa_mean_brightness") and ds.has_sample_field("user_notes")
    assert dq.list_quality_runs(ds) == ["iqa_mean_brightness"]
    with pytest.raises(ValueError, match="No quality run"):
        dq.load_quality_run(ds, "iqa_entropy")


def test_deleting_a_run_removes_its_error_field(tmp_path, make_dataset):
    ds = make_dataset(_gray_files(tmp_path, [50]) + [str(tmp_path / "missing.png")])
    dq.compute_quality(ds, "entropy", num_workers=0)
    assert ds.has_sample_field("iqa_entropy_error")
    ds.delete_run("iqa_entropy")  # FiftyOne's own API cleans up too
    assert not ds.has_sample_field("iqa_entropy") and not ds.has_sample_field("iqa_entropy_error")


def test_views_score_only_their_samples(tmp_path, make_dataset):
    ds = make_dataset(_gray_files(tmp_path, [10, 20, 30, 40]), split=["a", "b", "a", "b"])
    view = ds.match({"split": "a"})
    res = dq.compute_quality(view, MeanBrightness(), num_workers=0)
    assert res.num_samples == 2
    assert [v is not None for v in ds.values("iqa_mean_brightness")] == [True, False, True, False]


def test_a_failing_sample_is_isolated_by_bisection(tmp_path, make_dataset):
    values = [10, 20, 30, 40, 50, 60, 70, 80]
    ds = make_dataset(_gray_files(tmp_path, values))
    res = dq.compute_quality(ds, MeanBrightness(fail_on=50), batch_size=8, num_workers=0)
    scores = ds.values("iqa_mean_brightness")
    assert [s is None for s in scores] == [v == 50 for v in values]
    assert res.num_failed == 1 and "cannot score this one" in list(res.failures.values())[0]


def test_nan_scores_are_stored_as_missing_with_a_reason(tmp_path, make_dataset):
    ds = make_dataset(_gray_files(tmp_path, [10, 20]))
    dq.compute_quality(ds, MeanBrightness(nan_on=20), num_workers=0)
    assert ds.values("iqa_mean_brightness")[1] is None
    assert ds.values("iqa_mean_brightness_error")[1] == "metric returned nan"


def test_out_of_memory_halves_the_batch(tmp_path, make_dataset):
    ds = make_dataset(_gray_files(tmp_path, list(range(0, 160, 10))))
    m = MeanBrightness(oom_above=3)
    res = dq.compute_quality(ds, m, batch_size=16, num_workers=0)
    assert res.num_scored == 16 and res.num_failed == 0
    assert max(m.batch_sizes) <= 3


def test_skip_failures_false_raises_but_keeps_work(tmp_path, make_dataset):
    ds = make_dataset(_gray_files(tmp_path, [10, 20]) + [str(tmp_path / "nope.png")])
    with pytest.raises(RuntimeError, match="missing file"):
        dq.compute_quality(ds, MeanBrightness(), num_workers=0, skip_failures=False)
    assert ds.count("iqa_mean_brightness") == 2
    assert dq.load_quality_run(ds, "iqa_mean_brightness").status == "failed"


def test_progress_callback_reaches_one(tmp_path, make_dataset):
    ds = make_dataset(_gray_files(tmp_path, [10, 20, 30]))
    seen = []
    dq.compute_quality(ds, MeanBrightness(), num_workers=0, progress=lambda f, label: seen.append(f))
    assert seen and seen[-1] == 1.0


def test_bad_arguments_give_clear_errors(tmp_path, make_dataset):
    ds = make_dataset(_gray_files(tmp_path, [10]))
    with pytest.raises(ValueError, match="Unknown metric"):
        dq.compute_quality(ds, "no_such_metric")
    with pytest.raises(ValueError, match="identifier"):
        dq.compute_quality(ds, "entropy", field="bad field")
    with pytest.raises(ValueError, match="one field per metric"):
        dq.compute_quality(ds, ["entropy", "piqe"], field="x")
    with pytest.raises(TypeError):
        dq.compute_quality([1, 2, 3], "entropy")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA"):
            dq.compute_quality(ds, "entropy", device="cuda")
    assert not ds.has_sample_field("iqa_entropy")
