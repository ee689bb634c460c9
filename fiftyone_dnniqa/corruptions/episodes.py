"""Test videos with known bad episodes: a slow pan or zoom over a photo, degraded by the
suite's corruptions (:func:`~.table.apply_corruption`) over known frame ranges.

:func:`episode_frames` gives the frames (RGB ``uint8`` tensors ``(H, W, 3)``, what
:func:`~fiftyone_dnniqa.core.video.write_video` encodes) and the true episodes;
:func:`default_episodes` spreads blur, noise, darkness and JPEG blocking over a clip with
clean frames between them. Frame numbers are 1-based, as FiftyOne's.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F

from .table import apply_corruption

#: the degradations of :func:`default_episodes`, in order: blur, noise, darkness, blocking
DEFAULT_KINDS: Tuple[Tuple[str, int], ...] = (
    ("dk_gaussian_blur", 4), ("dk_gaussian_noise", 4), ("low_light", 5), ("dk_jpeg", 5),
)


@dataclass(frozen=True)
class Episode:
    """Frames ``start``..``end`` (1-based, inclusive) degraded by ``corruption`` at ``severity``."""

    start: int
    end: int
    corruption: str
    severity: int

    def __contains__(self, frame_number: int) -> bool:
        return self.start <= frame_number <= self.end

    @property
    def frames(self) -> range:
        return range(self.start, self.end + 1)


def default_episodes(n_frames: int, kinds: Sequence[Tuple[str, int]] = DEFAULT_KINDS) -> List[Episode]:
    """One episode per ``(corruption, severity)`` of ``kinds``, each about a tenth of the
    clip (at least 3 frames) long, centred in equal slices, so clean frames separate them
    and start and end the clip."""
    if n_frames < 4 * len(kinds):
        raise ValueError(f"{len(kinds)} episodes need at least {4 * len(kinds)} frames, got {n_frames}")
    length = max(3, n_frames // 10)
    slice_len = n_frames / len(kinds)
    episodes = []
    for k, (name, severity) in enumerate(kinds):
        start = int(round(k * slice_len + (slice_len - length) / 2)) + 1
        episodes.append(Episode(start, start + length - 1, name, severity))
    return episodes


def _window(k: int, n: int, h: int, w: int, aspect: float, motion: str) -> Tuple[int, int, int, int]:
    """The crop ``(top, left, height, width)`` of frame ``k`` of ``n`` over an ``h x w`` photo."""
    t = k / max(n - 1, 1)
    if motion == "pan":  # a window of 80% of the height slides left to right
        ch = int(0.8 * h)
        cw = min(w, int(round(ch * aspect)))
        return (h - ch) // 2, int(round(t * (w - cw))), ch, cw
    scale = 1.0 - 0.4 * t  # zoom in to 60% of the largest window
    ch = min(h, int(round(w / aspect)))
    ch = int(ch * scale)
    cw = int(round(ch * aspect))
    return (h - ch) // 2, (w - cw) // 2, ch, cw


def episode_frames(photo: torch.Tensor, n_frames: int = 48, size: Tuple[int, int] = (160, 120),
                   motion: str = "pan", episodes: Optional[Sequence[Episode]] = None,
                   seed: int = 0) -> Tuple[List[torch.Tensor], List[Episode]]:
    """Frames of a slow ``motion`` (``"pan"`` or ``"zoom"``) over ``photo`` (``(3, H, W)``,
    ``uint8`` or float in [0, 1]), ``size`` = ``(width, height)``, and the episodes applied
    (``default_episodes(n_frames)`` when None). Returns ``(frames, episodes)``, each frame
    an RGB ``uint8`` tensor ``(height, width, 3)``; each episode's frames are corrupted as one
    batch, drawing from a generator seeded by ``seed`` and the episode, so a clip is
    reproducible (overlapping episodes apply in order)."""
    if motion not in ("pan", "zoom"):
        raise ValueError(f"motion must be 'pan' or 'zoom', not {motion!r}")
    episodes = list(default_episodes(n_frames) if episodes is None else episodes)
    image = photo.float() / 255.0 if not photo.is_floating_point() else photo.float()
    width, height = size
    _, h, w = image.shape
    clean = []
    for k in range(n_frames):
        top, left, ch, cw = _window(k, n_frames, h, w, width / height, motion)
        crop = image[:, top:top + ch, left:left + cw].unsqueeze(0)
        clean.append(F.interpolate(crop, size=(height, width), mode="bilinear", antialias=True,
                                   align_corners=False)[0].clamp(0, 1))
    frames = torch.stack(clean)
    for e, episode in enumerate(episodes):  # one call per episode: its frames as one batch
        at = [n - 1 for n in episode.frames if 1 <= n <= n_frames]
        if at:
            generator = torch.Generator().manual_seed(seed * 1009 + e)
            frames[at] = apply_corruption(frames[at], episode.corruption, episode.severity, generator)
    out = (frames * 255).round().to(torch.uint8).permute(0, 2, 3, 1).contiguous()
    return list(out), episodes
