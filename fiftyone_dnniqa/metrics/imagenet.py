"""ImageNet-1k, the label space of the proxies: class names and input normalisation."""

from __future__ import annotations

from typing import List, Sequence, Tuple

import torch


def imagenet_synsets() -> List[Tuple[str, List[str]]]:
    """The 1000 classes in model output order, as ``(wnid, [synonyms...])`` pairs
    (timm's bundled synset list, offline): what class-name matching reads."""
    from timm.data import ImageNetInfo  # deferred: imports torch._dynamo (about 2 s)

    info = ImageNetInfo()
    return [(info.index_to_label_name(i), [s.strip() for s in info.index_to_description(i).split(",") if s.strip()])
            for i in range(info.num_classes())]


def imagenet_class_names() -> List[str]:
    """The 1000 class names in output order, one short display name each (shipped
    with torchvision, offline): what prompts and run records read."""
    import torchvision  # deferred: imports torch._dynamo (about 2 s)

    return list(torchvision.models.ResNet50_Weights.IMAGENET1K_V1.meta["categories"])


def normalize(images: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """``(images - mean) / std`` per channel, for images ``(B, 3, H, W)`` in ``[0, 1]``."""
    m = torch.tensor(mean, device=images.device, dtype=images.dtype).view(1, 3, 1, 1)
    s = torch.tensor(std, device=images.device, dtype=images.dtype).view(1, 3, 1, 1)
    return (images - m) / s
