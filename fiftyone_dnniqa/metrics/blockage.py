"""A partial blockage of the frame: a finger, a strap, a lens hood, dirt at the lens's edge.

It shows as a dark band coming in from one edge. The band covers many 8 x 8 JPEG blocks,
so the block means that even a very heavy JPEG keeps still show it, where the cause
head's other features are taken over by the blocks (``benchmarks/results/cause.search.md``,
sessions 23 and 24). :func:`edge_statistics` measures how much darker the darkest edge strip is
than the rest of the frame; :class:`BlockageDetector` turns them into the probability of a
blockage, which the shipped cause head (:class:`~.cause.PairedCauseHead`) uses to name
``weather_occlusion``.
"""

from __future__ import annotations

import math
from typing import Optional

import torch

#: strip depths, as a share of the image's short side (16 and 32 px at 224)
EDGE_DEPTHS = (1 / 14, 1 / 7)
#: added to mean luminances before their log ratios (a black strip stays finite)
EDGE_FLOOR = 0.02
EDGE_STATISTICS = tuple(f"{name}_depth{i}" for i in range(len(EDGE_DEPTHS)) for name in
                        ("interior_over_darkest_edge", "opposite_over_darkest_edge",
                         "interior_over_darkest_edge_brightest_quarter"))


def edge_statistics(x: torch.Tensor) -> torch.Tensor:
    """(B, len(EDGE_STATISTICS)) of ``x`` (B, 3, H, W) in [0, 1]. For each depth of
    :data:`EDGE_DEPTHS`, over the four edge strips of that depth: the log ratio of the
    interior's mean luminance to the darkest strip's; of the opposite strip's to the
    darkest's (a vignette darkens all four edges, a blockage one); and of the interior's to
    the darkest strip's brightest quarter (a band darkens the whole edge, a dark object
    only part of it)."""
    x = x.float().clamp(0, 1)
    lum = 0.299 * x[:, 0] + 0.587 * x[:, 1] + 0.114 * x[:, 2]
    _, h, w = lum.shape
    out = []
    for share in EDGE_DEPTHS:
        d = max(1, round(min(h, w) * share))
        strips = (lum[:, :d], lum[:, -d:], lum[:, :, :d].transpose(1, 2), lum[:, :, -d:].transpose(1, 2))
        means = torch.stack([s.mean((1, 2)) for s in strips], 1)  # top, bottom, left, right
        brightest_quarter = torch.stack([torch.stack([c.mean((1, 2)) for c in s.chunk(4, 2)], 1).max(1).values
                                         for s in strips], 1)
        inner = lum[:, d:h - d, d:w - d].mean((1, 2))
        darkest, k = means.min(1)
        opposite = means.gather(1, (k ^ 1).unsqueeze(1))[:, 0]  # top <-> bottom, left <-> right
        quarter = brightest_quarter.gather(1, k.unsqueeze(1))[:, 0]
        out += [torch.log((inner + EDGE_FLOOR) / (darkest + EDGE_FLOOR)),
                torch.log((opposite + EDGE_FLOOR) / (darkest + EDGE_FLOOR)),
                torch.log((inner + EDGE_FLOOR) / (quarter + EDGE_FLOOR))]
    return torch.stack(out, 1)


class BlockageDetector(torch.nn.Module):
    """A logistic regression on the :data:`EDGE_STATISTICS`, read from the cause features'
    columns ``first_column`` on: the probability that part of the frame is blocked
    (:meth:`probability`), which calls a blockage from its own ``threshold``.

    Called, it reports that probability on the scale of the head it names weather for: its
    ``threshold`` reads as ``reads`` (the head's weather threshold; the logit is shifted by the
    difference of theirs), so that one comparison with the head's threshold names weather
    exactly where the probability reaches its own. With ``reads`` equal to ``threshold`` (the
    default) it reports the probability itself."""

    def __init__(self, first_column: int, threshold: float = 0.5, reads: Optional[float] = None):
        super().__init__()
        for name, value in (("threshold", threshold), ("reads", reads)):
            if value is not None and not 0 < float(value) < 1:
                raise ValueError(f"{name} must be between 0 and 1, not {value!r}")
        self.first_column = int(first_column)
        self.threshold = float(threshold)
        self.reads = float(reads) if reads is not None else self.threshold
        n = len(EDGE_STATISTICS)
        self.register_buffer("mean", torch.zeros(n))
        self.register_buffer("std", torch.ones(n))
        self.linear = torch.nn.Linear(n, 1)

    @property
    def in_features(self) -> int:
        """How many of the cause features' first columns it needs."""
        return self.first_column + len(EDGE_STATISTICS)

    def logit(self, features: torch.Tensor) -> torch.Tensor:
        """(B,) logits of a blockage from the cause features (B, D >= :attr:`in_features`)."""
        edges = features[:, self.first_column:self.in_features]
        return self.linear((edges - self.mean) / self.std)[:, 0]

    def probability(self, features: torch.Tensor) -> torch.Tensor:
        """(B,) probabilities that part of the frame is blocked."""
        return torch.sigmoid(self.logit(features))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """(B,) the probabilities on the head's scale: :attr:`threshold` reads as :attr:`reads`."""
        return torch.sigmoid(self.logit(features) + _logit(self.reads) - _logit(self.threshold))


def _logit(p: float) -> float:
    return math.log(p / (1 - p))
