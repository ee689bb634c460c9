"""fiftyone-dnniqa plugin entry point."""

import os
import sys

try:
    import fiftyone_dnniqa  # noqa: F401  (pip-installed)
except ImportError:  # downloaded with `fiftyone plugins download`
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from fiftyone_dnniqa import register  # noqa: E402,F401
