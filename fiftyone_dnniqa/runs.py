"""Compatibility only: FiftyOne stores a run's config class by its import path, and
quality runs recorded before the layered layout name ``fiftyone_dnniqa.runs``. The
classes live in :mod:`fiftyone_dnniqa.scoring.runs`."""

from .scoring.runs import QualityRun, QualityRunConfig, QualityRunResults  # noqa: F401
