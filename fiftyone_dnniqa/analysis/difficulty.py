"""Difficulty views: the samples (or objects) a quality field predicts to be hard.

Low quality means hard for a metric where higher is better, high values
where lower is better; the direction comes from the field's run record (or
``higher_is_better``). Samples without a score are never returned as hard.
With ``patches_field``, the hardest *objects* by their quality attribute come back
as a patches view (``to_patches``), which tags and saves like any view.
"""

from __future__ import annotations

import math
from typing import Optional

from fiftyone import ViewField as F

from .correlation import rank_fields
from ..scoring.patch_plan import object_run_key
from .fields import field_direction, quality_fields
from .targets import NoEvaluationError, get_target, to_floats

#: datasets at least this large get an index on the field before sorting
INDEX_ABOVE = 10_000


def hard_samples(samples, field: str, k: Optional[int] = None, fraction: Optional[float] = None,
                 threshold: Optional[float] = None, higher_is_better: Optional[bool] = None,
                 create_index: Optional[bool] = None, patches_field: Optional[str] = None):
    """The hardest samples of ``samples`` by ``field``, hardest first.

    Give exactly one of ``k`` (that many samples), ``fraction`` (that share
    of the scored samples, 0..1) or ``threshold`` (every sample at or below
    it where higher is better, at or above it otherwise).

    Args:
        create_index (None): index ``field`` first (default: for datasets of
            at least :data:`INDEX_ABOVE` samples)
        patches_field (None): the hardest objects of this field instead, by their
            attribute ``field`` (:func:`hard_objects`)
    """
    _check_choice(k, fraction, threshold)
    if patches_field is not None:
        return hard_objects(samples, patches_field, field, k=k, fraction=fraction, threshold=threshold,
                            higher_is_better=higher_is_better)
    dataset = samples._root_dataset
    if not dataset.has_sample_field(field):
        raise ValueError(f"'{field}' is not a field of dataset '{dataset.name}'")
    hib = field_direction(samples, field, higher_is_better)
    if create_index is None:
        create_index = len(dataset) >= INDEX_ABOVE
    if create_index:
        dataset.create_index(field)
    scored = samples.match(F(field).exists())
    if threshold is not None:
        cond = F(field) <= threshold if hib else F(field) >= threshold
        return scored.match(cond).sort_by(field, reverse=not hib)
    return scored.sort_by(field, reverse=not hib).limit(_how_many(k, fraction, scored))


def _how_many(k, fraction, scored) -> int:
    """``k``, or ``fraction`` of ``scored``'s count rounded up; both checked."""
    if fraction is not None:
        if not 0 < fraction <= 1:
            raise ValueError("fraction must be in (0, 1]")
        k = int(math.ceil(fraction * scored.count()))
    if k < 0:
        raise ValueError("k must be non-negative")
    return int(k)


def _check_choice(k, fraction, threshold):
    if sum(x is not None for x in (k, fraction, threshold)) != 1:
        raise ValueError("give exactly one of k, fraction or threshold")


def hard_objects(samples, patches_field: str, attribute: str, k: Optional[int] = None,
                 fraction: Optional[float] = None, threshold: Optional[float] = None,
                 higher_is_better: Optional[bool] = None):
    """The hardest objects of ``patches_field`` by their quality ``attribute`` (written by
    ``compute_quality(..., patches_field=...)``), hardest first, as a patches view.
    ``k``, ``fraction`` and ``threshold`` as :func:`hard_samples`; objects without a
    score are never returned."""
    _check_choice(k, fraction, threshold)
    hib = field_direction(samples, object_run_key(patches_field, attribute), higher_is_better)
    cond = F(attribute).exists()
    if threshold is not None:
        cond = cond & ((F(attribute) <= threshold) if hib else (F(attribute) >= threshold))
    patches = samples.filter_labels(patches_field, cond).to_patches(patches_field)
    ordered = patches.sort_by(f"{patches_field}.{attribute}", reverse=not hib)
    if threshold is not None:
        return ordered
    return ordered.limit(_how_many(k, fraction, patches))


def tag_hard_samples(view, tag: str = "hard") -> int:
    """Adds ``tag`` to every sample of ``view`` (to every object of a patches view, as a
    label tag on the source objects); returns how many were tagged."""
    if not tag or not isinstance(tag, str):
        raise ValueError("tag must be a non-empty string")
    n = view.count()
    if getattr(view, "_is_patches", False):
        view.tag_labels(tag)
    else:
        view.tag_samples(tag)
    return n


def save_hard_view(view, name: str, description: Optional[str] = None, overwrite: bool = False) -> str:
    """Saves ``view`` on its dataset under ``name`` and returns the name."""
    dataset = view._root_dataset
    if dataset.has_saved_view(name) and not overwrite:
        raise ValueError(f"dataset '{dataset.name}' already has a saved view '{name}'; pass overwrite=True")
    dataset.save_view(name, view, description=description, overwrite=overwrite)
    return name


def mark_hard(view, tag: Optional[str] = None, view_name: Optional[str] = None) -> dict:
    """Tags ``view``'s samples (or objects) with ``tag`` and saves it as ``view_name`` (each
    when given, the view saved first); what was done, for a face to show: ``count``,
    ``unit`` ("samples" or "objects"), and ``tag`` with ``tagged`` (how many got it),
    ``view_name`` where those were done."""
    out = {"count": view.count(), "unit": "objects" if getattr(view, "_is_patches", False) else "samples"}
    if view_name:
        out["view_name"] = save_hard_view(view, view_name, overwrite=True)
    if tag:
        out["tagged"] = tag_hard_samples(view, tag)
        out["tag"] = tag
    return out


def best_quality_field(samples, fields=None) -> Optional[str]:
    """The quality field whose ranking best predicts ``samples``' evaluation (Spearman
    with its performance, no bootstrap), or the first of ``fields`` (default: the quality
    fields) when there is no evaluation; ``None`` without fields."""
    fields = list(quality_fields(samples) if fields is None else fields)
    if len(fields) < 2:
        return fields[0] if fields else None
    try:
        ids, target = get_target(samples)
    except NoEvaluationError:
        return fields[0]
    cols = samples.values(["id"] + fields)
    pos = {i: k for k, i in enumerate(cols[0])}
    order = [pos[i] for i in ids]
    qualities = {f: (to_floats(cols[j + 1])[order], field_direction(samples, f)) for j, f in enumerate(fields)}
    return rank_fields(qualities, target, n_boot=0)[0].name

