"""One proxy forward pass for every metric that reads the same batch.

``aligned`` needs the proxy's logits, ``cause`` the statistics of its early feature
maps. When a call scores both, the engine hands each metric an equal batch in turn; the
first metric runs the proxy and the second reuses its outputs. The memo keeps one batch
per backbone (its name, and its weights file's hash for a user's weights) and is reused
only for an input exactly equal to it (same shape, dtype, device, mixed-precision state
and values), so a miss only costs a forward pass, never a wrong answer. Each thread has
its own memo: CPU lanes (``scoring/lanes.py``) score different batches at once.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Dict, List, Optional, Tuple

import torch

#: how many of the proxy's feature levels (timm's ``feature_info``, finest first) give
#: per-channel statistics: for EfficientNet-Lite, strides 2, 4, 8 and 16
NUM_LEVELS = 4

_LOCAL = threading.local()


def _memo() -> Dict[str, tuple]:
    """This thread's memo: one batch per backbone slot."""
    if not hasattr(_LOCAL, "memo"):
        _LOCAL.memo = {}
    return _LOCAL.memo


@dataclass(frozen=True)
class ProxyOutputs:
    """What one pass of the proxy gives its metrics (all (B, ...), float)."""

    logits: torch.Tensor
    #: per channel of each of the first :data:`NUM_LEVELS` feature levels, its spatial
    #: mean then its standard deviation, level after level; ``None`` where the model
    #: names no feature levels or they are not (B, C, H, W) maps (a ViT's tokens)
    levels: Optional[torch.Tensor]


def _key(model, x: torch.Tensor) -> tuple:
    amp = torch.is_autocast_enabled(x.device.type) if x.device.type in ("cuda", "cpu") else False
    weights = float(model.get_classifier().weight.detach().double().sum())
    return (tuple(x.shape), x.dtype, str(x.device), amp, torch.is_inference_mode_enabled(), weights)


def level_modules(model) -> List[Tuple[str, int]]:
    """``(module name, channels)`` of the model's first :data:`NUM_LEVELS` feature levels
    (timm's ``feature_info``), or ``[]`` when it names fewer."""
    info = getattr(model, "feature_info", None)
    try:
        levels = [(entry["module"], int(entry["num_chs"])) for entry in info][:NUM_LEVELS]
    except (TypeError, KeyError):
        return []
    return levels if len(levels) == NUM_LEVELS else []


def _channel_statistics(stats: list, channels: int):
    def hook(module, inputs, output):
        if output.ndim != 4 or output.shape[1] != channels:  # tokens (ViT) or channels last (Swin)
            stats.append(None)
            return
        o = output.float()
        stats.append(torch.cat([o.mean((2, 3)), o.std((2, 3))], dim=1))
    return hook


def _run(model, inp: torch.Tensor) -> ProxyOutputs:
    stats: list = []
    hooks = [model.get_submodule(name).register_forward_hook(_channel_statistics(stats, channels))
             for name, channels in level_modules(model)]
    try:
        pooled = model.forward_head(model.forward_features(inp), pre_logits=True)
    finally:
        for h in hooks:
            h.remove()
    levels = torch.cat(stats, dim=1) if hooks and all(t is not None for t in stats) else None
    return ProxyOutputs(model.get_classifier()(pooled), levels)


def memo_slot(backbone) -> str:
    """Where the memo keeps ``backbone``'s last batch: its name, and the SHA-256 of a
    user's weights file, so that the same architecture with other weights (a user's
    proxy beside the shipped one) keeps a slot of its own."""
    sha = getattr(backbone, "sha256", None)
    return f"{backbone.name}@{sha}" if sha else backbone.name


def proxy_outputs(backbone, x: torch.Tensor) -> ProxyOutputs:
    """:class:`ProxyOutputs` of ``backbone`` on ``x`` (B, 3, crop, crop), RGB in [0, 1],
    from one forward pass (shared through the memo). The logits equal
    ``backbone.model(normalised x)`` exactly."""
    model = backbone.model
    inp = backbone.normalize(x).contiguous(memory_format=torch.channels_last)
    if not (hasattr(model, "forward_head") and hasattr(model, "get_classifier")):
        return ProxyOutputs(model(inp), None)
    key = _key(model, x)
    slot = memo_slot(backbone)
    memo = _memo()
    hit = memo.get(slot)
    if hit is not None and hit[0] == key and torch.equal(hit[1], x):
        return hit[2]
    out = _run(model, inp)
    memo[slot] = (key, x.clone(), out)  # a copy: callers may reuse x
    return out


def clear_memo() -> None:
    """Forgets this thread's last batch of every backbone (frees its memory)."""
    _memo().clear()
