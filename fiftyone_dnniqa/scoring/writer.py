"""Scoring, the way out: scores to the database in chunks, and progress to the caller."""

from __future__ import annotations

import time

import fiftyone as fo
import fiftyone.core.utils as fou


def flush(dataset, jobs) -> None:
    """Writes the jobs' pending scores and failure reasons with ``set_values``."""
    for job in jobs:
        if job.scores:
            dataset.set_values(job.field, job.scores, key_field="id")
            job.scores = {}
        if any(v is not None for v in job.errors.values()) or (job.errors and job.has_error_field):
            if not job.has_error_field:
                dataset.add_sample_field(job.error_field, fo.StringField)
                job.has_error_field = True
            dataset.set_values(job.error_field, job.errors, key_field="id")
        job.errors = {}


class Progress:
    """A progress bar, or a callback ``f(fraction, label)`` called at most once a second."""

    def __init__(self, progress, total):
        self.total = max(total, 1)
        self.done = 0
        self.callback = progress if callable(progress) else None
        self.last = 0.0
        self.bar = None
        if self.callback is None:
            show = fo.config.show_progress_bars if progress is None else bool(progress)
            if show and total:
                self.bar = fou.ProgressBar(total=total)
                self.bar.start()

    def update(self, k):
        self.done += k
        if self.bar is not None:
            self.bar.update(k)
        now = time.monotonic()
        # a callback may write to the database (delegated progress): at most once a second
        if self.callback is not None and (now - self.last >= 1.0 or self.done >= self.total):
            self.last = now
            self.callback(self.done / self.total, f"scored {self.done} of {self.total} images")

    def close(self):
        if self.bar is not None:
            self.bar.close()
