"""Which fields hold quality, and which way is better: one answer for every face.

A quality field is the float field of a quality run (its run key) or a field written by
:func:`~fiftyone_dnniqa.analysis.prior.apply_prior` (recorded under
:data:`PRIORS_KEY` in the dataset's ``info``). Its direction comes from the run's
record; expected accuracy is higher-is-better.
"""

from __future__ import annotations

from typing import List, Optional, Sequence

from ..scoring.runs import list_quality_runs

#: ``dataset.info`` key listing the fields written by performance priors
PRIORS_KEY = "dnniqa_priors"


def prior_fields(dataset) -> dict:
    """``{field: {quality_field, eval_key, target}}`` of the priors applied to ``dataset``."""
    return dict(dataset.info.get(PRIORS_KEY, {}))


def run_outputs(samples, key: str) -> str:
    """What quality run ``key`` stores per sample: ``"float"`` (a score; also the per-image
    mean of a run on objects) or ``"classifications"`` (labels, such as ``cause``'s)."""
    return getattr(samples._root_dataset.get_run_info(key).config, "outputs", "float") or "float"


def score_runs(samples, fields: Optional[Sequence[str]] = None) -> List[str]:
    """The quality runs among ``fields`` (default: all), in their order, that hold a float
    per sample in a field that exists: what can be ranked, binned and correlated. Not
    predicted causes, not a field that a failed run never created, not a name that is no
    quality run."""
    ds = samples._root_dataset
    runs = list_quality_runs(ds)
    fields = runs if fields is None else [f for f in fields if f in set(runs)]
    return [f for f in fields if run_outputs(ds, f) == "float" and ds.has_sample_field(f)]


def quality_fields(samples) -> List[str]:
    """Fields written by quality runs (then by performance priors) that still exist. Only
    runs that score with floats: labels (``cause``'s ``Classifications``) and the floats
    stored beside them (``<field>_severity``) rank nothing here."""
    ds = samples._root_dataset
    fields = score_runs(ds)
    fields += [f for f in prior_fields(ds) if f not in fields]
    return [f for f in fields if ds.has_sample_field(f)]


def field_higher_is_better(samples, field: str) -> Optional[bool]:
    """Whether higher values of ``field`` mean better quality; None when nothing says."""
    ds = samples._root_dataset
    if field in list_quality_runs(ds):
        hib = ds.get_run_info(field).config.higher_is_better
        return None if hib is None else bool(hib)
    if field in prior_fields(ds):
        return True  # expected accuracy
    return None


def field_direction(samples, field: str, higher_is_better: Optional[bool] = None) -> bool:
    """``higher_is_better`` when given, else the recorded direction of ``field``.

    Raises:
        ValueError: when nothing records the direction of ``field``
    """
    if higher_is_better is not None:
        return bool(higher_is_better)
    hib = field_higher_is_better(samples, field)
    if hib is None:
        raise ValueError(f"cannot tell whether high or low '{field}' is better: it is not a quality run "
                         "of this dataset; pass higher_is_better")
    return hib
