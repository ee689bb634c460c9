"""Can a field hold a quality run's scores? Asked before any image is scored.

A run writes floats into its score field and failure reasons (strings) into the field's
``<field>_error`` companion (:func:`~.names.error_field_for`). Either field must be absent,
or of that type, writable, not one every sample has by default (``filepath``, ``tags``...),
and either written by a quality run of that field or replaced on purpose
(``overwrite=True``). :func:`field_problem` says, in one sentence, what is wrong, or
``None``; the plan refuses a call with it (:func:`check_field_can_hold_scores`), and a
form can show it beside the field.
"""

from __future__ import annotations

from typing import Optional

import fiftyone as fo
import fiftyone.core.sample as fos

from .names import error_field_for
from .runs import METHOD


def field_problem(samples, field: str, overwrite: bool = False) -> Optional[str]:
    """Why a quality run cannot write its scores into ``field`` of ``samples``' dataset
    (a dataset or a view), as a short message, or ``None`` when it can.

    The score field and its ``<field>_error`` companion are both checked. With
    ``overwrite=False``, a field that exists and was not written by a quality run is a
    problem (its values would be replaced); with ``overwrite=True`` it is not, when its
    type is right. A field of the wrong type, a read-only field, a default field of every
    sample and the key of another kind of run are problems either way.
    """
    if not isinstance(field, str) or not field.isidentifier() or field.startswith("_"):
        return f"field name '{field}' must be a valid identifier not starting with '_'"
    dataset = samples._root_dataset
    runs = dataset.list_runs()
    quality_runs = dataset.list_runs(method=METHOD)
    ours = field in quality_runs
    problem = _problem(dataset, field, fo.FloatField, "scores (floats)", ours, runs, quality_runs, overwrite)
    if problem:
        return problem
    error_field = error_field_for(field)
    why = f"where the run on '{field}' records why samples could not be scored"
    problem = _problem(dataset, error_field, fo.StringField, "failure reasons (strings)", ours, runs,
                       quality_runs, overwrite)
    return f"{problem} ({why})" if problem else None


def check_field_can_hold_scores(samples, field: str, overwrite: bool = False) -> None:
    """Raises :class:`ValueError` with :func:`field_problem`'s message, if there is one."""
    problem = field_problem(samples, field, overwrite)
    if problem:
        raise ValueError(problem)


def describe_field(field) -> str:
    """A field's type in words: ``a Classification label field``, ``a StringField``..."""
    if isinstance(field, fo.EmbeddedDocumentField):
        kind = field.document_type.__name__
        if issubclass(field.document_type, fo.Label):
            return f"a {kind} label field"
        return f"an embedded {kind} field"
    if isinstance(field, fo.ListField) and field.field is not None:
        return f"a ListField of {type(field.field).__name__}"
    name = type(field).__name__
    return f"{'an' if name[0] in 'AEIOU' else 'a'} {name}"


def _problem(dataset, name, kind, holds, ours, runs, quality_runs, overwrite) -> Optional[str]:
    """The problem of writing ``holds`` (values of field type ``kind``) into ``name``.
    ``ours``: a quality run of the score field wrote it."""
    present = dataset.has_sample_field(name)
    if name in runs and name not in quality_runs:
        return f"'{name}' is the key of another kind of run on this dataset; choose another field"
    if name in quality_runs and kind is not fo.FloatField:
        return f"'{name}' is the key of another quality run on this dataset; choose another field"
    if not present:
        return None
    field = dataset.get_field(name)
    if name in _default_fields(dataset):
        return (f"field '{name}' is a default field of every sample ({describe_field(field)}); "
                "choose another field")
    if not isinstance(field, kind):
        return (f"field '{name}' is {describe_field(field)}, which cannot hold quality {holds}; "
                "choose another field" + (" (overwrite never replaces labels)" if isinstance(
                    field, fo.EmbeddedDocumentField) else ""))
    if field.read_only:
        return f"field '{name}' is read-only ({describe_field(field)}); choose another field"
    if not ours and not overwrite:
        return (f"field '{name}' already exists and was not written by compute_quality; "
                "pass overwrite=True to replace its values or choose another field")
    return None


def _default_fields(dataset) -> set:
    names = set(fos.get_default_sample_fields())
    if dataset.group_field:
        names.add(dataset.group_field)
    return names
