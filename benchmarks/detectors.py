"""Real pretrained COCO detectors for the benchmarks and tests (never for the product).

Both read their files from $DNNIQA_MODELS, else ``../shared/models`` beside the repository
(see its README): D2Go's int8 TorchScript Faster R-CNN and FastestDet (float PyTorch,
BSD-3 third-party code imported from that folder, never copied here). :func:`missing`
says what is absent, so callers can skip cleanly.

A detector is a callable ``detect(image) -> [(x0, y0, x1, y1, score, label)]`` on a
``(3, H, W)`` uint8 RGB tensor, with boxes in absolute pixels of that image and COCO label
names as D2Go writes them (FastestDet's darknet names mapped onto them).
"""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Callable

import torch


from sample_data import MODELS  # noqa: E402 (one home for the models folder)

D2GO = "d2go_faster_rcnn_int8.pt"
D2GO_CLASSES = "d2go_classes.txt"
FASTESTDET = "fastestdet"
FASTESTDET_WEIGHTS = os.path.join("weights", "fastestdet_coco_ap05_0.253.pth")
FASTESTDET_SIZE = 352
#: FastestDet's darknet class names where COCO's (D2Go's) differ
DARKNET_TO_COCO = {"motorbike": "motorcycle", "aeroplane": "airplane", "sofa": "couch",
                   "pottedplant": "potted plant", "diningtable": "dining table", "tvmonitor": "tv"}

Detection = tuple[float, float, float, float, float, str]
Detector = Callable[[torch.Tensor], list[Detection]]


def missing(names=("d2go", "fastestdet"), folder: str = MODELS) -> list[str]:
    """The files of ``names`` that are not on disk (empty: all there)."""
    need = {"d2go": [D2GO, D2GO_CLASSES],
            "fastestdet": [os.path.join(FASTESTDET, FASTESTDET_WEIGHTS),
                           os.path.join(FASTESTDET, "module", "detector.py"),
                           os.path.join(FASTESTDET, "utils", "tool.py"),
                           os.path.join(FASTESTDET, "configs", "coco.names")]}
    return [os.path.join(folder, f) for n in names for f in need[n] if not os.path.exists(os.path.join(folder, f))]


def load_d2go(folder: str = MODELS, threshold: float = 0.05) -> Detector:
    """D2Go's Faster R-CNN (int8, CPU): its detections at ``score >= threshold``."""
    import torchvision  # noqa: F401  (registers torchvision::nms, which the TorchScript calls)

    engines = torch.backends.quantized.supported_engines
    torch.backends.quantized.engine = "x86" if "x86" in engines else "qnnpack"
    model = torch.jit.load(os.path.join(folder, D2GO), map_location="cpu").eval()
    with open(os.path.join(folder, D2GO_CLASSES)) as f:
        names = [line.strip() for line in f]

    def detect(image: torch.Tensor) -> list[Detection]:
        with torch.inference_mode():
            _, out = model([image.float() / 255])
        o = out[0]
        keep = o["scores"] >= threshold
        return [(*box, float(s), names[int(k) - 1]) for box, s, k in
                zip(o["boxes"][keep].tolist(), o["scores"][keep].tolist(), o["labels"][keep].tolist())]

    return detect


def _fastestdet_code(root: str):
    """FastestDet's ``Detector`` and ``handle_preds``, imported from its own folder (its
    packages are named ``module`` and ``utils``: imported from there once, then the path
    is removed again)."""
    clash = [n for n in ("module", "utils") if n in sys.modules
             and not (getattr(sys.modules[n], "__path__", None) or [""])[0].startswith(root)]
    if clash:
        raise ImportError(f"FastestDet's packages {clash} clash with modules already imported")
    sys.path.insert(0, root)
    try:
        detector = importlib.import_module("module.detector")
        tool = importlib.import_module("utils.tool")
    finally:
        sys.path.remove(root)
    return detector.Detector, tool.handle_preds


def load_fastestdet(folder: str = MODELS, threshold: float = 0.05) -> Detector:
    """FastestDet (float): the photo resized to 352 x 352, BGR, /255; boxes decoded by its
    own ``handle_preds`` (NMS 0.45) at ``score > threshold``, scaled back to the photo."""
    root = os.path.join(folder, FASTESTDET)
    Net, handle_preds = _fastestdet_code(root)
    model = Net(80, True)  # upstream's flag is inverted: True skips its ImageNet backbone file
    model.load_state_dict(torch.load(os.path.join(root, FASTESTDET_WEIGHTS), map_location="cpu"), strict=True)
    model.eval()
    with open(os.path.join(root, "configs", "coco.names")) as f:
        names = [DARKNET_TO_COCO.get(n, n) for n in (line.strip() for line in f) if n]

    def detect(image: torch.Tensor) -> list[Detection]:
        h, w = image.shape[-2:]
        x = torch.nn.functional.interpolate(image.float()[None], size=(FASTESTDET_SIZE, FASTESTDET_SIZE),
                                            mode="bilinear", align_corners=False)
        x = x.clamp(0, 255).round()[:, [2, 1, 0]] / 255  # as upstream: cv2 resize of a BGR uint8 photo
        with torch.inference_mode():
            rows = handle_preds(model(x), "cpu", threshold)[0].tolist()
        return [(max(0.0, x0) * w, max(0.0, y0) * h, min(1.0, x1) * w, min(1.0, y1) * h, s, names[int(k)])
                for x0, y0, x1, y1, s, k in rows]

    return detect


LOADERS = {"d2go": load_d2go, "fastestdet": load_fastestdet}


def load(name: str, folder: str = MODELS, threshold: float = 0.05) -> Detector:
    """``"d2go"`` or ``"fastestdet"``."""
    return LOADERS[name](folder, threshold)


def to_detections(dets: list[Detection], width: int, height: int, min_score: float = 0.0):
    """FiftyOne ``Detections`` (relative boxes) of the detections at ``score >= min_score``."""
    import fiftyone as fo  # deferred: the detectors themselves need no FiftyOne

    return fo.Detections(detections=[
        fo.Detection(label=label, confidence=float(s),
                     bounding_box=[x0 / width, y0 / height, (x1 - x0) / width, (y1 - y0) / height])
        for x0, y0, x1, y1, s, label in dets if s >= min_score and x1 > x0 and y1 > y0])
