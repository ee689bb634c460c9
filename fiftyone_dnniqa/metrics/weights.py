"""Where pretrained weights come from: offline first, one clear error.

Libraries such as pyiqa and torchvision fetch weights with
``torch.hub.download_url_to_file`` into ``$TORCH_HOME/hub/...``. While a
metric is being built, :func:`offline_weights` intercepts that call: a file
already on disk in one of the standard folders is reused, and a missing file
raises :class:`MissingWeightsError` naming the file and the folder to put it
in. A download is attempted once at most, and never when offline
(``HF_HUB_OFFLINE=1`` or ``DNNIQA_OFFLINE=1``).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sys
from typing import Iterator, List, Optional

import torch.hub

_TRUE = ("1", "true", "yes", "on")


class MissingWeightsError(RuntimeError):
    """A metric's weight file is not on disk and cannot be downloaded."""

    def __init__(self, metric: str, filename: str, folder: str, url: str = "", cause=None):
        self.metric = metric
        self.filename = filename
        self.folder = folder
        self.url = url
        how = "offline mode is on" if is_offline() else f"download failed: {cause}"
        msg = (
            f"Metric '{metric}' needs the weight file '{filename}', which is not on disk "
            f"({how}). Put it in {folder}"
        )
        if url:
            msg += f" (it is published at {url})"
        super().__init__(msg + ".")


def is_offline() -> bool:
    """Whether downloads are forbidden (``HF_HUB_OFFLINE`` or ``DNNIQA_OFFLINE``)."""
    return any(os.environ.get(k, "").lower() in _TRUE for k in ("HF_HUB_OFFLINE", "DNNIQA_OFFLINE"))


def weight_dirs() -> List[str]:
    """Folders searched for a weight file, in order."""
    hub = torch.hub.get_dir()
    dirs = [os.path.join(hub, "pyiqa"), os.path.join(hub, "checkpoints")]
    extra = os.environ.get("DNNIQA_WEIGHTS_DIR")
    if extra:
        dirs.insert(0, extra)
    return dirs


def find_weight_file(filename: str) -> Optional[str]:
    """Returns the path of ``filename`` in one of :func:`weight_dirs`, if any."""
    for folder in weight_dirs():
        path = os.path.join(folder, filename)
        if os.path.isfile(path) and os.path.getsize(path) > 0:
            return path
    return None


@contextlib.contextmanager
def offline_weights(metric: str) -> Iterator[None]:
    """Routes weight downloads made while building ``metric`` through the
    offline-first lookup: torch.hub's, and pyiqa's own copy of it when pyiqa
    has been imported (pyiqa is optional, and never imported here)."""
    originals = {torch.hub: torch.hub.download_url_to_file}
    pyiqa_dl = sys.modules.get("pyiqa.utils.download_util")
    if pyiqa_dl is not None:
        originals[pyiqa_dl] = pyiqa_dl.download_url_to_file
    real_download = originals[torch.hub]

    def fetch(url, dst, *args, **kwargs):
        filename = os.path.basename(dst)
        found = find_weight_file(filename)
        if found and os.path.abspath(found) != os.path.abspath(dst):
            shutil.copyfile(found, dst)
            return None
        folder = os.path.dirname(os.path.abspath(dst))
        if is_offline():
            raise MissingWeightsError(metric, filename, folder, url)
        try:
            return real_download(url, dst, *args, **kwargs)
        except Exception as e:  # network errors of every kind
            raise MissingWeightsError(metric, filename, folder, url, cause=e) from None

    for module in originals:
        module.download_url_to_file = fetch
    try:
        yield
    finally:
        for module, original in originals.items():
            module.download_url_to_file = original
        late = sys.modules.get("pyiqa.utils.download_util")  # imported meanwhile, it copied `fetch`
        if late is not None and late.download_url_to_file is fetch:
            late.download_url_to_file = real_download
