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
