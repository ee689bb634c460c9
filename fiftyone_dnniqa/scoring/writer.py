"""Scoring, the way out: scores to the database in chunks, and progress to the caller.

A float metric's scores go to its field. A structured metric (``outputs =
"classifications"``, such as ``cause``) writes a ``Classifications`` field, from its
``labels(row) -> ([(label, confidence)], {name: float})``, and one float field
``<field>_<name>`` per extra value (:func:`extra_field`, e.g. ``iqa_cause_severity``).
"""

from __future__ import annotations

import time
from typing import Callable

import fiftyone as fo
import fiftyone.core.utils as fou

from .runs import extra_field
from .scorers import structured


def declare_fields(dataset, job) -> None:
    """Adds the fields ``job`` writes: a ``FloatField``, or for a structured metric a
    ``Classifications`` field and its extra float fields. A float field the engine
    declared before knowing (still empty) is replaced by the label field."""
    if not structured(job.metric):
        if not dataset.has_sample_field(job.field):
            dataset.add_sample_field(job.field, fo.FloatField)
        return
    if dataset.has_sample_field(job.field) and isinstance(dataset.get_field(job.field), fo.FloatField):
        if dataset.count(job.field):
            raise ValueError(f"field '{job.field}' holds float scores; {job.metric.name} writes labels "
                             "(Classifications): choose another field")
        dataset.delete_sample_field(job.field)
    if not dataset.has_sample_field(job.field):
        dataset.add_sample_field(job.field, fo.EmbeddedDocumentField, embedded_doc_type=fo.Classifications)
    for name in getattr(job.metric, "extra_fields", ()):
        if not dataset.has_sample_field(extra_field(job.field, name)):
            dataset.add_sample_field(extra_field(job.field, name), fo.FloatField)
    job.fields_ready = True


def structured_labels(metric, row):
    """A structured metric's row as ``Classifications``, each label with the attributes the
    metric gives it (a cause's own ``severity``), and its extra floats."""
    found, more = metric.labels(row)
    attributes = metric.label_attributes(row) if hasattr(metric, "label_attributes") else {}
    return fo.Classifications(classifications=[
        fo.Classification(label=label, confidence=float(conf), **attributes.get(label, {}))
        for label, conf in found]), more


def _write_structured(dataset, job) -> None:
    """A structured metric's rows as ``Classifications`` and extra float fields."""
    if not job.fields_ready:
        declare_fields(dataset, job)
    labels, extras = {}, {name: {} for name in getattr(job.metric, "extra_fields", ())}
    for sid, row in job.scores.items():
        if row is None:
            labels[sid] = None
            for values in extras.values():
                values[sid] = None
            continue
        labels[sid], more = structured_labels(job.metric, row)
        for name, values in extras.items():
            values[sid] = float(more[name])
    dataset.set_values(job.field, labels, key_field="id")
    for name, values in extras.items():
        dataset.set_values(extra_field(job.field, name), values, key_field="id")


def flush(dataset, jobs) -> None:
    """Writes the jobs' pending scores and failure reasons with ``set_values``."""
    for job in jobs:
        if job.scores:
            if structured(job.metric):
                _write_structured(dataset, job)
            else:
                dataset.set_values(job.field, job.scores, key_field="id")
            job.scores = {}
        if any(v is not None for v in job.errors.values()) or (job.errors and job.has_error_field):
            if not job.has_error_field:
                dataset.add_sample_field(job.error_field, fo.StringField)
                job.has_error_field = True
            dataset.set_values(job.error_field, job.errors, key_field="id")
        job.errors = {}


class WriteCadence:
    """When a scoring loop writes its scores back: once ``write_every`` items are pending,
    or ``seconds`` after the last write, whichever comes first."""

    def __init__(self, write_every: int, seconds: float = 10.0):
        self.write_every, self.seconds = write_every, seconds
        self.pending, self.last_write = 0, time.perf_counter()

    def add(self, items: int, write: Callable[[], None]) -> None:
        """Counts ``items`` more pending, and calls ``write()`` when it is time."""
        self.pending += items
        if self.pending >= self.write_every or time.perf_counter() - self.last_write > self.seconds:
            write()
            self.pending, self.last_write = 0, time.perf_counter()


class Progress:
    """A progress bar, or a callback ``f(fraction, label)`` called at most once a second;
    ``unit`` names what is counted (``"images"``, ``"videos"``)."""

    def __init__(self, progress, total, unit: str = "images"):
        self.total = max(total, 1)
        self.unit = unit
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
            self.callback(self.done / self.total, f"scored {self.done} of {self.total} {self.unit}")

    def close(self):
        if self.bar is not None:
            self.bar.close()
