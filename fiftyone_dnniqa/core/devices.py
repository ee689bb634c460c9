"""Where tensors are computed: one rule for ``device="auto"``; how many CPU threads a run
that shares its machine with the App takes."""

from __future__ import annotations

import contextlib
import os
from typing import Iterator, Union

import torch


def resolve_device(device: Union[str, torch.device, None] = "auto") -> torch.device:
    """``"auto"`` picks CUDA when present, else the CPU."""
    if device in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("device='cuda' was asked for but no CUDA device is available")
    return device


def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


@contextlib.contextmanager
def leave_cores_free(reserved: int = 1) -> Iterator[int]:
    """Torch's intra-op threads for a run that shares its machine with an interactive
    program (the App's server and a browser): every core but ``reserved`` (at least one,
    never more than before), restored afterwards; yields the number used. With every core
    in torch's parallel regions, a core taken by the browser stalls each region on its
    slowest thread: on 2 cores the App scored at 0.46x the command line, and at 0.98x of
    the same run with one thread (``benchmarks/app_throughput.py``)."""
    before = torch.get_num_threads()
    torch.set_num_threads(max(1, min(before, _cores() - reserved)))
    try:
        yield torch.get_num_threads()
    finally:
        torch.set_num_threads(before)
