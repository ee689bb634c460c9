"""The plugin as FiftyOne installs it: the manifest and requirements.txt, and the README's
two install paths run for real against a git repository of this working tree served on
loopback: ``fiftyone plugins download`` (an archive laid out as GitHub serves one) then
``fiftyone plugins requirements``, and ``pip install git+http://...`` then
``fiftyone-dnniqa install-plugin``. The installed copies are imported in processes that
cannot see the development install, so they are the code that runs."""

import functools
import http.server
import importlib.metadata
import json
import os
import shutil
import subprocess
import sys
import textwrap
import threading

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.version import Version

import fiftyone as fo

from fiftyone_dnniqa.app.plugin import PLUGIN_NAME, manifest, requirements, requirements_text

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.dirname(sys.executable)

#: first lines of every script run from an installed copy: the development install
#: (setuptools' editable finder) is removed, so only the copy can be imported
WITHOUT_DEV_INSTALL = textwrap.dedent("""
    import sys
    sys.meta_path[:] = [f for f in sys.meta_path if "__editable__" not in getattr(f, "__module__", "")]
    sys.path_hooks[:] = [h for h in sys.path_hooks if "__editable__" not in getattr(h, "__module__", "")]
    sys.path_importer_cache.clear()
""")


def _git(*args, cwd):
    subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, timeout=120,
                   env=dict(os.environ, GIT_AUTHOR_NAME="t", GIT_AUTHOR_EMAIL="t@t",
                            GIT_COMMITTER_NAME="t", GIT_COMMITTER_EMAIL="t@t"))


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """This working tree (tracked and unignored files) committed to a git repository,
    served by HTTP on 127.0.0.1 as a bare repository (git's dumb protocol) and as a zip."""
    if shutil.which("git") is None:
        pytest.skip("git is not installed")
    tmp = tmp_path_factory.mktemp("repo")
    src, srv = tmp / "src", tmp / "srv"
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=ROOT,
                           check=True, capture_output=True).stdout.decode().split("\0")
    for rel in filter(None, files):
        if os.path.isfile(os.path.join(ROOT, rel)):
            os.makedirs(os.path.dirname(src / rel), exist_ok=True)
            shutil.copy2(os.path.join(ROOT, rel), src / rel)
    _git("init", "-q", "-b", "main", cwd=src)
    _git("add", "-A", cwd=src)
    _git("commit", "-q", "-m", "snapshot", cwd=src)
    srv.mkdir()
    _git("clone", "-q", "--bare", str(src), str(srv / "fiftyone-dnniqa.git"), cwd=tmp)
    _git("update-server-info", cwd=srv / "fiftyone-dnniqa.git")
    _git("archive", "--format=zip", "--prefix=fiftyone-dnniqa-main/", "-o",
         str(srv / "fiftyone-dnniqa-main.zip"), "HEAD", cwd=src)
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(srv))
    handler.log_message = lambda *a: None  # noqa: E731
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def _run(cmd, tmp_path, **env):
    """A command in a fresh working directory with its own plugins folder."""
    out = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=600,
                         env=dict(os.environ, FIFTYONE_PLUGINS_DIR=str(tmp_path / "plugins"), **env))
    assert out.returncode == 0, f"{cmd}\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}"
    return out.stdout


def _load_plugin_script(plugins_dir):
    """Loads the plugin as the App does, prints where the package came from and what registered."""
    return WITHOUT_DEV_INSTALL + textwrap.dedent(f"""
        import json, os
        os.environ["FIFTYONE_PLUGINS_DIR"] = {str(plugins_dir)!r}
        import fiftyone.operators as foo
        ops = sorted(o.uri for o in foo.list_operators() if o.plugin_name == {PLUGIN_NAME!r})
        print(json.dumps({{"file": sys.modules["fiftyone_dnniqa"].__file__, "operators": ops}}))
    """)


def _uris():
    """Every operator and panel (panels are operators too) the manifest declares."""
    return {f"{PLUGIN_NAME}/{name}" for name in manifest()["operators"] + manifest()["panels"]}


def test_manifest_and_requirements_follow_pyproject():
    with open(os.path.join(ROOT, "fiftyone.yml")) as f:
        got = yaml.safe_load(f)
    assert got == manifest()
    assert got["url"].startswith("https://") and got["author"] and len(got["tags"]) >= 3
    # the declared FiftyOne range holds the version the tests run with
    spec = Requirement("fiftyone" + got["fiftyone"]["version"]).specifier
    assert Version(fo.__version__) in spec and str(spec) and Version("1.0") not in spec
    with open(os.path.join(ROOT, "requirements.txt")) as f:
        assert f.read() == requirements_text()
    # every dependency of pyproject.toml, the offline weights, and never pyiqa
    declared = [Requirement(r) for r in importlib.metadata.requires("fiftyone-dnniqa")]
    base = {str(r) for r in declared if r.marker is None}
    weights = {r.name for r in declared if r.marker is not None and r.marker.evaluate({"extra": "weights"})}
    names = {Requirement(r).name for r in requirements()}
    assert base <= set(requirements()) and weights <= names and len(weights) == 3
    assert "pyiqa" not in names and not any(r.marker for r in map(Requirement, requirements()))


def test_fiftyone_plugins_download_then_requirements(served, tmp_path):
    fiftyone = os.path.join(BIN, "fiftyone")
    out = _run([fiftyone, "plugins", "download", f"{served}/fiftyone-dnniqa-main.zip"], tmp_path)
    plugin_dir = tmp_path / "plugins" / "@dnniqa" / "fiftyone-dnniqa"
    assert (plugin_dir / "fiftyone.yml").is_file(), out + str(list((tmp_path / "plugins").rglob("*"))[:20])
    assert PLUGIN_NAME in _run([fiftyone, "plugins", "list"], tmp_path)
    printed = _run([fiftyone, "plugins", "requirements", PLUGIN_NAME, "--print"], tmp_path)
    parsed = [Requirement(ln.strip()) for ln in printed.splitlines() if ln.strip()]
    assert {(r.name, r.specifier) for r in parsed} == {(r.name, r.specifier) for r in map(Requirement, requirements())}
    _run([fiftyone, "plugins", "requirements", PLUGIN_NAME, "--ensure", "--error-level", "0"], tmp_path)
    # --install: everything is already satisfied here, so pip needs no index (none is given)
    _run([fiftyone, "plugins", "requirements", PLUGIN_NAME, "--install", "--error-level", "0"],
         tmp_path, PIP_NO_INDEX="1")
    # the App loads the downloaded copy (the package inside it, not the development install)
    got = json.loads(_run([sys.executable, "-c", _load_plugin_script(tmp_path / "plugins")],
                          tmp_path).strip().splitlines()[-1])
    assert got["file"].startswith(str(plugin_dir)), got
    assert _uris() == set(got["operators"])


def test_pip_install_from_git_then_install_plugin(served, tmp_path):
    target = tmp_path / "site"
    _run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation",
          "--no-index", "--target", str(target), f"git+{served}/fiftyone-dnniqa.git"], tmp_path)
    assert (target / "bin" / "fiftyone-dnniqa").is_file()
    script = WITHOUT_DEV_INSTALL + textwrap.dedent(f"""
        import importlib.metadata, json
        sys.path.insert(0, {str(target)!r})
        from fiftyone_dnniqa.cli import main
        main(["install-plugin"])
        eps = [e.value for e in importlib.metadata.entry_points(group="pyiqa.archs")]
        print(json.dumps({{"file": sys.modules["fiftyone_dnniqa"].__file__, "pyiqa_archs": eps}}))
    """)
    got = json.loads(_run([sys.executable, "-c", script], tmp_path).strip().splitlines()[-1])
    assert got["file"].startswith(str(target))
    assert "fiftyone_dnniqa.metrics.pyiqa_plugin:register_archs" in got["pyiqa_archs"]
    plugin_dir = tmp_path / "plugins" / "dnniqa"
    with open(plugin_dir / "fiftyone.yml") as f:
        assert yaml.safe_load(f) == manifest()
    assert (plugin_dir / "requirements.txt").read_text() == requirements_text()
    loaded = json.loads(_run([sys.executable, "-c", _load_plugin_script(tmp_path / "plugins")],
                             tmp_path, PYTHONPATH=str(target)).strip().splitlines()[-1])
    assert loaded["file"].startswith(str(target))
    assert _uris() == set(loaded["operators"])
