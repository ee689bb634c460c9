"""Where the benchmarks find real labelled ImageNet photos (``images/`` and ``labels.csv``):
the folder named by $DNNIQA_IMAGENET_SAMPLE, else the workspace's shared data folder
beside the repository."""

import os

HERE = os.path.dirname(os.path.abspath(__file__))
IMAGENET_SAMPLE = os.environ.get("DNNIQA_IMAGENET_SAMPLE") or os.path.normpath(
    os.path.join(HERE, "..", "..", "shared", "data", "imagenet-sample"))
IMAGES = os.path.join(IMAGENET_SAMPLE, "images")
