"""The FiftyOne plugin: manifest, registration, and installation from pip.

``fiftyone plugins download <repo url>`` uses the repository root
(``fiftyone.yml`` + ``__init__.py``). A pip-installed package becomes a
plugin with ``fiftyone-dnniqa install-plugin``, which writes the same two
files into FiftyOne's plugins directory.
"""

from __future__ import annotations

import os

import yaml

import fiftyone as fo

from ..version import __version__
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


def manifest() -> dict:
    """The content of ``fiftyone.yml``: every operator and panel listed."""
    return {
        "name": PLUGIN_NAME,
        "type": "plugin",
        "version": __version__,
        "license": "Apache-2.0",
        "description": "Find the images that are hard for deep networks: DNN-aligned and "
                       "conventional image quality, correlated with model performance",
        "fiftyone": {"version": ">=1.0"},
        "operators": [cls().config.name for cls in OPERATORS],
        "panels": [cls().config.name for cls in PANELS],
    }


def register(p):
    """Registers every operator and panel on plugin context ``p``."""
    for cls in OPERATORS + PANELS:
        p.register(cls)


def install_plugin(plugins_dir=None, overwrite=False) -> str:
    """Makes the pip-installed package a FiftyOne plugin.

    Writes ``fiftyone.yml`` and ``__init__.py`` into
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
    return target
