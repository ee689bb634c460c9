"""The FiftyOne plugin: manifest, registration, and installation from pip.

``fiftyone plugins download <repo url>`` uses the repository root
(``fiftyone.yml`` + ``__init__.py``). A pip-installed package becomes a
plugin with ``fiftyone-dnniqa install-plugin``, which writes the same two
files into FiftyOne's plugins directory.
"""

from __future__ import annotations

import importlib.metadata
import os

import yaml
from packaging.requirements import Requirement

import fiftyone as fo

from ..version import __version__
from .model_evaluation import METRICS
from .operators import OPERATORS
from .panels import PANELS
from .sharding import PLUGIN_NAME

ENTRY_POINT = '''"""fiftyone-dnniqa plugin entry point."""

import os
import sys

try:
    import fiftyone_dnniqa  # noqa: F401  (pip-installed)
except ImportError:  # downloaded with `fiftyone plugins download`
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from fiftyone_dnniqa import register  # noqa: E402,F401
'''


DISTRIBUTION = "fiftyone-dnniqa"
URL = "https://github.com/dnniqa/fiftyone-dnniqa"
#: the extras a plugin installed with ``fiftyone plugins requirements`` gets: the offline
#: weights, not pyiqa (its licence is non-commercial; README "Licensing")
PLUGIN_EXTRAS = ("weights",)


def _requirements():
    """The package's requirements as declared in ``pyproject.toml`` (its installed metadata)."""
    return [Requirement(r) for r in importlib.metadata.requires(DISTRIBUTION) or []]


def requirements() -> list:
    """The lines of the plugin's ``requirements.txt``: the package's dependencies and the
    extras in :data:`PLUGIN_EXTRAS`, so a plugin downloaded from the repository runs."""
    out = []
    for r in _requirements():
        if r.marker is None or any(r.marker.evaluate({"extra": e}) for e in PLUGIN_EXTRAS):
            r.marker = None
            out.append(str(r))
    return out


def fiftyone_versions() -> str:
    """The FiftyOne versions the package declares (and the tests run with)."""
    spec = next(r.specifier for r in _requirements() if r.name == "fiftyone" and r.marker is None)
    return ",".join(sorted((str(s) for s in spec), reverse=True))  # ">=1.22,<2"


def manifest() -> dict:
    """The content of ``fiftyone.yml``: every operator (evaluation metrics included) and panel."""
    return {
        "name": PLUGIN_NAME,
        "type": "plugin",
        "version": __version__,
        "license": "Apache-2.0",
        "url": URL,
        "author": "fiftyone-dnniqa developers",
        "description": "Find the images that are hard for deep networks: DNN-aligned and "
                       "conventional image quality, correlated with model performance",
        "tags": ["image-quality", "model-evaluation", "data-quality", "robustness", "hard-samples"],
        "fiftyone": {"version": fiftyone_versions()},
        "operators": [cls().config.name for cls in OPERATORS + METRICS],
        "panels": [cls().config.name for cls in PANELS],
    }


def register(p):
    """Registers every operator, evaluation metric and panel on plugin context ``p``."""
    for cls in OPERATORS + METRICS + PANELS:
        p.register(cls)


def install_plugin(plugins_dir=None, overwrite=False) -> str:
    """Makes the pip-installed package a FiftyOne plugin.

    Writes ``fiftyone.yml``, ``__init__.py`` and ``requirements.txt`` into
    ``<plugins_dir>/dnniqa`` (default: ``fo.config.plugins_dir``).

    Returns:
        the plugin directory
    """
    plugins_dir = plugins_dir or fo.config.plugins_dir
    if not plugins_dir:
        raise ValueError("no plugins directory: set FIFTYONE_PLUGINS_DIR or pass plugins_dir")
    target = os.path.join(plugins_dir, "dnniqa")
    if os.path.exists(target) and not overwrite:
        if not os.path.isfile(os.path.join(target, "fiftyone.yml")):
            raise FileExistsError(f"{target} exists and is not this plugin; pass overwrite=True")
    os.makedirs(target, exist_ok=True)
    with open(os.path.join(target, "fiftyone.yml"), "w") as f:
        yaml.safe_dump(manifest(), f, sort_keys=False)
    with open(os.path.join(target, "__init__.py"), "w") as f:
        f.write(ENTRY_POINT)
    with open(os.path.join(target, "requirements.txt"), "w") as f:
        f.write(requirements_text())
    return target


def requirements_text() -> str:
    """The content of ``requirements.txt`` beside ``fiftyone.yml``."""
    return ("# fiftyone plugins requirements @dnniqa/fiftyone-dnniqa --install (from pyproject.toml;\n"
            "# pyiqa's metrics need `pip install pyiqa`, non-commercial: README, Licensing)\n"
            + "".join(r + "\n" for r in requirements()))
