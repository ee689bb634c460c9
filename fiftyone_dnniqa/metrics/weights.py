"""Where pretrained weights come from: offline first, one clear error.

Libraries such as pyiqa and torchvision fetch weights with
``torch.hub.download_url_to_file`` into ``$TORCH_HOME/hub/...``. While a
metric is being built, :func:`offline_weights` intercepts that call: a file
already on disk in one of the standard folders is reused, and a missing file
raises :class:`MissingWeightsError` naming the file and the folder to put it
in. A download is attempted once at most, and never when offline
(``HF_HUB_OFFLINE=1`` or ``DNNIQA_OFFLINE=1``).

A user's own classifier weights (``proxy=..., weights=<file>``) are read by
:func:`read_state_dict`, safely (no pickled code runs), and identified in run records
by :func:`file_sha256`; a file that cannot serve raises :class:`ProxyWeightsError`.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import sys
import zipfile
from typing import Dict, Iterator, List, Optional

import torch
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


class ProxyWeightsError(ValueError):
    """A user's weights file cannot serve as the proxy it was given for."""

    def __init__(self, path: str, architecture: str, problem: str):
        self.path = path
        self.architecture = architecture
        super().__init__(f"weights file '{path}' for proxy '{architecture}': {problem}")


def file_sha256(path: str) -> str:
    """The SHA-256 of the file at ``path`` (hex): what run records keep of a weights file."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _is_torchscript(path: str) -> bool:
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as z:
        return any(n.endswith("/constants.pkl") or "/code/" in n for n in z.namelist())


def _tensor_dict(obj) -> Optional[Dict[str, torch.Tensor]]:
    """``obj`` as a state dict: itself, or the one a training checkpoint keeps under
    ``state_dict``, ``model_state_dict``, ``model`` or ``state``; ``module.`` prefixes
    (DataParallel) dropped. ``None`` when it holds no tensors by name."""
    if isinstance(obj, dict):
        for key in _CHECKPOINT_KEYS:
            if isinstance(obj.get(key), dict):
                obj = obj[key]
                break
    if not isinstance(obj, dict) or not obj or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        return None
    if all(str(k).startswith("module.") for k in obj):
        obj = {k[len("module."):]: v for k, v in obj.items()}
    return {str(k): v for k, v in obj.items()}


_CHECKPOINT_KEYS = ("state_dict", "model_state_dict", "model", "state")


def read_state_dict(path: str, architecture: str) -> Dict[str, torch.Tensor]:
    """The tensors of a user's weights file, by name, on the CPU.

    ``path`` is a state dict saved with ``torch.save`` (read with ``weights_only=True``:
    no code runs), a training checkpoint holding one, or a TorchScript file (its
    parameters and buffers are read; its code is not used). A whole pickled module is
    refused: loading it would run arbitrary code.

    Raises:
        ProxyWeightsError: missing, empty or unreadable file, or one holding no state dict
    """
    if not os.path.exists(path):
        raise ProxyWeightsError(path, architecture, "no such file")
    if not os.path.isfile(path) or os.path.getsize(path) == 0:
        raise ProxyWeightsError(path, architecture, "not a file, or empty")
    if _is_torchscript(path):
        try:
            module = torch.jit.load(path, map_location="cpu")
        except Exception as e:  # any failure of TorchScript's reader
            raise ProxyWeightsError(path, architecture, f"unreadable TorchScript ({type(e).__name__}: {e})") from e
        state = {k: v.detach() for k, v in module.state_dict().items()}
        if not state:
            raise ProxyWeightsError(path, architecture, "a TorchScript module without float parameters "
                                    "(a quantized model?); give a float state dict")
        return state
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # the safe reader refusing a class, or not a torch file at all
        if "unsupported global" in str(e).lower():
            raise ProxyWeightsError(path, architecture, "holds pickled Python objects, not a state dict "
                                    "(loading it would run arbitrary code); save model.state_dict() with "
                                    "torch.save, or a TorchScript file, and give that") from e
        raise ProxyWeightsError(path, architecture, f"not a PyTorch weights file ({type(e).__name__}: {e})") from e
    state = _tensor_dict(obj)
    if state is None:
        raise ProxyWeightsError(path, architecture, f"holds a {type(obj).__name__}, not a state dict of tensors")
    return state
