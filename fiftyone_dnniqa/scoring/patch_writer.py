"""Scoring objects, the way out: object scores and reasons as label attributes, and the
per-sample mean and minimum over each sample's objects as ordinary sample fields."""

from __future__ import annotations

from typing import List

import numpy as np

import fiftyone as fo

from .names import error_field_for
from .patch_plan import min_field_for


class ObjectValues:
    """What the writer keeps between flushes: every object's current score per job (NaN for
    none), to recompute the aggregates of the samples whose objects were just scored."""

    def __init__(self, list_path: str, attributes: List[str], keys: List[str], ids, rows, sample_ids, values):
        self.list_path = list_path
        self.attributes = attributes
        self.keys = keys
        self.index = {oid: k for k, oid in enumerate(ids)}
        self.rows = np.asarray(rows, dtype=int)  # the sample row of each object
        self.sample_ids = list(sample_ids)
        self.values = values  # (n_objects, n_jobs) float

    def declare(self, dataset, j: int) -> bool:
        """Declares job ``j``'s attribute and aggregate fields; returns whether the object
        error attribute exists already."""
        path = f"{self.list_path}.{self.attributes[j]}"
        if dataset.get_field(path) is None:
            dataset.add_sample_field(path, fo.FloatField)
        for name in (self.keys[j], min_field_for(self.keys[j])):
            if not dataset.has_sample_field(name):
                dataset.add_sample_field(name, fo.FloatField)
        return dataset.get_field(self.error_path(j)) is not None

    def error_path(self, j: int) -> str:
        return f"{self.list_path}.{error_field_for(self.attributes[j])}"

    def flush(self, dataset, jobs) -> None:
        """Writes the jobs' pending object scores and reasons, then the aggregates of the
        samples they belong to."""
        for j, job in enumerate(jobs):
            if job.scores:
                dataset.set_label_values(f"{self.list_path}.{self.attributes[j]}", job.scores)
                touched = set()
                for oid, v in job.scores.items():
                    k = self.index[oid]
                    self.values[k, j] = np.nan if v is None else v
                    touched.add(int(self.rows[k]))
                self._aggregate(dataset, j, sorted(touched))
                job.scores = {}
            if any(v is not None for v in job.errors.values()) or (job.errors and job.has_error_field):
                if not job.has_error_field:
                    dataset.add_sample_field(self.error_path(j), fo.StringField)
                    job.has_error_field = True
                dataset.set_label_values(self.error_path(j), job.errors)
            job.errors = {}

    def _aggregate(self, dataset, j: int, rows: List[int]) -> None:
        keep = np.isin(self.rows, rows)
        vals, obj_rows = self.values[keep, j], self.rows[keep]
        means, mins = {}, {}
        for r in rows:
            v = vals[(obj_rows == r) & np.isfinite(vals)]
            sid = self.sample_ids[r]
            means[sid] = float(v.mean()) if v.size else None
            mins[sid] = float(v.min()) if v.size else None
        dataset.set_values(self.keys[j], means, key_field="id")
        dataset.set_values(min_field_for(self.keys[j]), mins, key_field="id")
