"""Test environment: offline, project-local weights cache, throw-away database.

Set before FiftyOne or torch are imported anywhere.
"""

import os
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_TMP = tempfile.mkdtemp(prefix="dnniqa-tests-")

os.environ["FIFTYONE_DATABASE_DIR"] = os.path.join(_TMP, "db")
os.environ["FIFTYONE_DATABASE_VALIDATION"] = "false"
os.environ["FIFTYONE_DO_NOT_TRACK"] = "true"
os.environ["FIFTYONE_SHOW_PROGRESS_BARS"] = "false"
os.environ["FIFTYONE_PLUGINS_DIR"] = os.path.join(_TMP, "plugins")
os.environ["FIFTYONE_DEFAULT_DATASET_DIR"] = os.path.join(_TMP, "datasets")
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TORCH_HOME"] = os.path.join(ROOT, ".torch-home")
os.environ.pop("DNNIQA_WEIGHTS_DIR", None)

import pytest  # noqa: E402

#: real labelled ImageNet photos (``images/`` and ``labels.csv``): $DNNIQA_IMAGENET_SAMPLE, else
#: the workspace's shared data folder beside the repository
IMAGENET = os.environ.get("DNNIQA_IMAGENET_SAMPLE") or os.path.normpath(
    os.path.join(ROOT, "..", "shared", "data", "imagenet-sample"))


@pytest.fixture(scope="session")
def imagenet_files():
    """Paths of the real ImageNet sample photos; skips when absent."""
    folder = os.path.join(IMAGENET, "images")
    files = sorted(os.path.join(folder, f) for f in os.listdir(folder)) if os.path.isdir(folder) else []
    if not files:
        _missing_data(f"no real images in {folder} (set DNNIQA_IMAGENET_SAMPLE)")
    return files


def _missing_data(reason):
    """Skips, or fails where the run promised the data (DNNIQA_REQUIRE_DATA=1, as CI does)."""
    if os.environ.get("DNNIQA_REQUIRE_DATA", "").lower() in ("1", "true", "yes"):
        pytest.fail(f"{reason}; DNNIQA_REQUIRE_DATA is set, so the tests need it")
    pytest.skip(reason)


@pytest.fixture
def make_dataset():
    """Factory of real temporary FiftyOne datasets, deleted afterwards."""
    import fiftyone as fo

    made = []

    def make(filepaths=(), **fields):
        ds = fo.Dataset()
        samples = []
        for i, f in enumerate(filepaths):
            extra = {k: v[i] for k, v in fields.items()}
            samples.append(fo.Sample(filepath=f, **extra))
        if samples:
            ds.add_samples(samples, progress=False)
        made.append(ds)
        return ds

    yield make
    for ds in made:
        if not ds.deleted:
            ds.delete()


@pytest.fixture(scope="session")
def installed_plugin():
    """The plugin installed into the tests' FIFTYONE_PLUGINS_DIR (operators become executable)."""
    from fiftyone_dnniqa.app.plugin import install_plugin

    return install_plugin(overwrite=True)


@pytest.fixture
def with_causes(make_dataset, imagenet_files, tmp_path):
    """6 real photos and strongly blurred copies of them, a real ``cause`` run, and a
    classification evaluation that errs on every blurred copy and on one clean photo."""
    import numpy as np
    from PIL import Image, ImageFilter

    import fiftyone as fo
    import fiftyone_dnniqa as dq

    blurred = []
    for i, f in enumerate(imagenet_files[:6]):
        path = tmp_path / f"blurred_{i}.png"
        Image.open(f).convert("RGB").filter(ImageFilter.GaussianBlur(8)).save(path)
        blurred.append(str(path))
    files = list(imagenet_files[:6]) + blurred
    ds = make_dataset(files)
    dq.compute_quality(ds, "cause", num_workers=0)
    wrong = [i >= 6 or i == 0 for i in range(12)]
    ds.set_values("ground_truth", [fo.Classification(label="x") for _ in files])
    ds.set_values("predictions", [fo.Classification(label="y" if w else "x") for w in wrong])
    ds.evaluate_classifications("predictions", gt_field="ground_truth", eval_key="eval")
    return ds, np.array(wrong)


@pytest.fixture
def worker_exit_codes(monkeypatch):
    """The exit codes of the DataLoader workers of every loader shut down during the test."""
    from torch.utils.data.dataloader import _MultiProcessingDataLoaderIter

    codes = []
    real = _MultiProcessingDataLoaderIter._shutdown_workers

    def shutdown_and_record(self):
        first = not self._shutdown
        real(self)
        for w in self._workers if first else ():
            w.join(timeout=10)
            codes.append(w.exitcode)

    monkeypatch.setattr(_MultiProcessingDataLoaderIter, "_shutdown_workers", shutdown_and_record)
    return codes
