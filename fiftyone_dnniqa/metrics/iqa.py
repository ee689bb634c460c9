"""pyiqa metrics behind the common :class:`QualityMetric` face.

Every pyiqa metric is reachable by its pyiqa name. pyiqa is optional (the
extra ``fiftyone-dnniqa[pyiqa]``: its license, PolyForm Noncommercial 1.0.0,
does not allow commercial use) and imported lazily (it takes seconds); its
code is used, never copied. Without it, its metrics are unavailable and
:func:`pyiqa_unavailable_reason` says why; this package's own metrics work.
"""

from __future__ import annotations

import functools
from typing import List, Optional, Tuple

import torch

from .weights import MissingWeightsError, is_offline, offline_weights
from .base import InputSpec, QualityMetric

#: how to install pyiqa's metrics
PYIQA_EXTRA = "pip install 'fiftyone-dnniqa[pyiqa]'"
#: pyiqa's license (the License-Expression of pyiqa 0.1.16; some of its parts add S-Lab License 1.0)
PYIQA_LICENSE = "PolyForm Noncommercial 1.0.0"


class PyiqaUnavailableError(ImportError, ValueError):
    """A pyiqa metric was asked for, but pyiqa cannot be imported.

    An :class:`ImportError` (a missing optional dependency) and a
    :class:`ValueError` (the metric name cannot be used), so callers that
    report unknown metric names report this one too."""


@functools.lru_cache(maxsize=1)
def _pyiqa_table() -> Tuple[Optional[dict], Optional[str]]:
    """``(pyiqa's metric table, None)``, or ``(None, why pyiqa cannot be imported)``."""
    try:
        from pyiqa.default_model_configs import DEFAULT_CONFIGS  # deferred: pyiqa is heavy and optional
    except Exception as e:  # not installed, or installed and broken: our own metrics still work
        if isinstance(e, ModuleNotFoundError) and (e.name or "").split(".")[0] == "pyiqa":
            return None, "pyiqa is not installed"
        return None, f"pyiqa is installed but cannot be imported ({type(e).__name__}: {e})"
    return DEFAULT_CONFIGS, None


def pyiqa_unavailable_reason() -> Optional[str]:
    """``None`` when pyiqa's metrics can be used; otherwise why not, and how to install them."""
    table, why = _pyiqa_table()
    if table is not None:
        return None
    return f"{why}; install it with {PYIQA_EXTRA} (pyiqa's license, {PYIQA_LICENSE}, forbids commercial use)"


def pyiqa_configs() -> dict:
    """pyiqa's metric table: name -> default config (empty when pyiqa is unavailable)."""
    table, _ = _pyiqa_table()
    return table if table is not None else {}


#: pyiqa metrics that score a set of images (one number per set), not each image
DATASET_LEVEL_METRICS = ("fid", "fid_dinov2", "inception_score", "sfid")


def pyiqa_metric_names() -> List[str]:
    """pyiqa's per-image metrics (its dataset-level ones left out)."""
    return sorted(n for n in pyiqa_configs() if n not in DATASET_LEVEL_METRICS)


class PyiqaMetric(QualityMetric):
    """Adapter for one pyiqa metric.

    Args:
        name: the pyiqa metric name (``pyiqa.list_models()``)
        max_side (None): downscale images whose longer side exceeds this
        **options: passed to ``pyiqa.create_metric``
    """

    cpu_per_image = True

    def __init__(self, name: str, max_side: Optional[int] = None, **options):
        super().__init__()
        configs = pyiqa_configs()
        if name not in configs:
            reason = pyiqa_unavailable_reason()
            if reason:
                raise PyiqaUnavailableError(f"pyiqa metric '{name}' is unavailable: {reason}")
            raise ValueError(f"'{name}' is not a pyiqa metric")
        cfg = configs[name]
        self.name = name
        self.options = dict(options)
        self.higher_is_better = not cfg.get("lower_better", False)
        self.needs_reference = cfg.get("metric_mode") == "FR"
        self.input_spec = InputSpec(max_side=max_side)
        self._max_side = max_side
        self._net = self._build(torch.device("cpu"))

    def _build(self, device):
        import pyiqa  # deferred: heavy to import

        try:
            with offline_weights(self.name):
                return pyiqa.create_metric(self.name, device=device, **self.options)
        except MissingWeightsError:
            raise
        except OSError as e:
            # weights pyiqa fetches outside torch.hub (Hugging Face hub, CLIP)
            if "offline" in str(e).lower() or is_offline() or "connect" in str(e).lower():
                raise MissingWeightsError(
                    self.name, getattr(e, "filename", None) or "(see cause)",
                    "$HF_HOME or $TORCH_HOME/hub", cause=e,
                ) from None
            raise

    def to(self, device):
        # pyiqa pins its device at creation (InferenceModel.dummy_param is not
        # a registered buffer), so moving means rebuilding.
        device = torch.device(device)
        if device != self.device:
            self._net = self._build(device)
            self.device = device
        return self

    @torch.inference_mode()
    def score(self, images, references=None):
        self._check_batch(images, references)
        images = images.to(self.device)
        if self.needs_reference:
            out = self._net(images, references.to(self.device))
        else:
            out = self._net(images)
        return out.detach().reshape(-1).double().cpu()

    def describe(self):
        d = dict(self.options)
        if self._max_side:
            d["max_side"] = self._max_side
        return d
