"""Can a field hold a quality run's scores? Asked before any image is scored.

A run writes floats into its score field and failure reasons (strings) into the field's
``<field>_error`` companion (:func:`~.names.error_field_for`). Either field must be absent,
or of that type, writable, not one every sample has by default (``filepath``, ``tags``...),
and either written by a quality run of that field or replaced on purpose
(``overwrite=True``). A structured metric (``cause``) writes labels instead: into a
``Classifications`` field of its own runs only, beside float ``<field>_<name>`` fields.
:func:`field_problem` says, in one sentence, what is wrong, or ``None``; the plan refuses
a call with it (:func:`check_field_can_hold_scores`), and a form can show it beside the
field.
"""

from __future__ import annotations

from typing import Optional

import fiftyone as fo
import fiftyone.core.sample as fos

from ..metrics import _REGISTRY
from .names import error_field_for
from .runs import METHOD, extra_field, is_classifications_field


def field_problem(samples, field: str, overwrite: bool = False, metric=None) -> Optional[str]:
    """Why a quality run cannot write its scores into ``field`` of ``samples``' dataset
    (a dataset or a view), as a short message, or ``None`` when it can.

    The score field and its ``<field>_error`` companion are both checked. With
    ``overwrite=False``, a field that exists and was not written by a quality run is a
    problem (its values would be replaced); with ``overwrite=True`` it is not, when its
    type is right. A field of the wrong type, a read-only field, a default field of every
    sample and the key of another kind of run are problems either way.

    ``metric`` (a built metric or a registry name; None: one giving floats) matters for a
    structured metric (``outputs="classifications"``, such as ``cause``): ``field`` then
    holds labels, which it writes only into a ``Classifications`` field of its own runs
    (never a user's labels), and its ``<field>_<name>`` float fields are checked too.
    """
    if not isinstance(field, str) or not field.isidentifier() or field.startswith("_"):
        return f"field name '{field}' must be a valid identifier not starting with '_'"
    dataset = samples._root_dataset
    runs = dataset.list_runs()
    quality_runs = dataset.list_runs(method=METHOD)
    ours = field in quality_runs
    outputs, who = _outputs(metric)
    if outputs == "float":
        problem = _problem(dataset, field, _of(fo.FloatField), "scores (floats)", ours, runs, quality_runs,
                           overwrite, key=True)
    else:
        problem = _labels_problem(dataset, field, who, runs, quality_runs, overwrite)
    if problem:
        return problem
    ours_labels = ours and _run_outputs(dataset, field) == outputs
    for name in _extra_names(metric):
        problem = _problem(dataset, extra_field(field, name), _of(fo.FloatField), f"{who}'s {name} (floats)",
                           ours_labels, runs, quality_runs, overwrite)
        if problem:
            return f"{problem} (where the run on '{field}' stores the {name} of its labels)"
    error_field = error_field_for(field)
    why = f"where the run on '{field}' records why samples could not be scored"
    problem = _problem(dataset, error_field, _of(fo.StringField), "failure reasons (strings)", ours, runs,
                       quality_runs, overwrite)
    return f"{problem} ({why})" if problem else None


def check_field_can_hold_scores(samples, field: str, overwrite: bool = False, metric=None) -> None:
    """Raises :class:`ValueError` with :func:`field_problem`'s message, if there is one."""
    problem = field_problem(samples, field, overwrite, metric)
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


def _problem(dataset, name, fits, holds, ours, runs, quality_runs, overwrite, key=False) -> Optional[str]:
    """The problem of writing ``holds`` (values of a field that ``fits``) into ``name``.
    ``ours``: a quality run of the score field wrote it; ``key``: ``name`` is the run key."""
    present = dataset.has_sample_field(name)
    if name in runs and name not in quality_runs:
        return f"'{name}' is the key of another kind of run on this dataset; choose another field"
    if name in quality_runs and not key:
        return f"'{name}' is the key of another quality run on this dataset; choose another field"
    if not present:
        return None
    field = dataset.get_field(name)
    if name in _default_fields(dataset):
        return (f"field '{name}' is a default field of every sample ({describe_field(field)}); "
                "choose another field")
    if not fits(field):
        return (f"field '{name}' is {describe_field(field)}, which cannot hold quality {holds}; "
                "choose another field" + (" (overwrite never replaces labels)" if isinstance(
                    field, fo.EmbeddedDocumentField) else ""))
    if field.read_only:
        return f"field '{name}' is read-only ({describe_field(field)}); choose another field"
    if not ours and not overwrite:
        return (f"field '{name}' already exists and was not written by compute_quality; "
                "pass overwrite=True to replace its values or choose another field")
    return None


def _labels_problem(dataset, name, who, runs, quality_runs, overwrite) -> Optional[str]:
    """The problem of writing a structured metric's labels into ``name``: absent, an
    empty float field, or the ``Classifications`` field of a quality run of such a metric."""
    present = dataset.has_sample_field(name)
    field = dataset.get_field(name) if present else None
    if is_classifications_field(field) and name not in _default_fields(dataset) and not (
            name in quality_runs and _run_outputs(dataset, name) == "classifications"):
        return (f"field '{name}' is {describe_field(field)} not written by compute_quality; {who} never "
                "replaces labels (not even with overwrite=True): choose another field")
    if isinstance(field, fo.FloatField) and name not in _default_fields(dataset) and dataset.count(name):
        return (f"field '{name}' holds float scores; {who} writes labels (Classifications): "
                "choose another field")
    return _problem(dataset, name, lambda f: is_classifications_field(f) or isinstance(f, fo.FloatField),
                    f"labels of {who} (Classifications)", name in quality_runs, runs, quality_runs, overwrite,
                    key=True)


def _outputs(metric):
    """``(outputs, name)`` of ``metric``: a built metric, a registry name (its class says,
    without building it) or None."""
    if isinstance(metric, str):
        return getattr(_REGISTRY.get(metric), "outputs", "float"), metric
    return getattr(metric, "outputs", "float"), getattr(metric, "name", "this metric")


def _extra_names(metric):
    if isinstance(metric, str):
        metric = _REGISTRY.get(metric)
    if getattr(metric, "outputs", "float") == "float":
        return ()
    return tuple(getattr(metric, "extra_fields", ()))


def _run_outputs(dataset, key) -> str:
    """What quality run ``key`` recorded it writes (records before ``outputs``: floats)."""
    return getattr(dataset.get_run_info(key).config, "outputs", "float") or "float"


def _of(kind):
    return lambda field: isinstance(field, kind)


def _default_fields(dataset) -> set:
    names = set(fos.get_default_sample_fields())
    if dataset.group_field:
        names.add(dataset.group_field)
    return names
