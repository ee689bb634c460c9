"""Run records: every scoring call leaves one per field, keyed by the field.

Users list them with :func:`list_quality_runs`, reload them with
:func:`load_quality_run` and delete them with :func:`delete_quality_run`
(or FiftyOne's own ``list_runs`` / ``load_run_results`` / ``delete_run``);
deleting a run removes the fields it created.

A run on objects (``patches_field``) is keyed by the sample field of its per-sample mean
(``<patches_field>_<attribute>``); it also wrote ``<key>_min`` and the attribute (and its
``_error`` companion) on each object, and deleting it removes them all.

A run of a structured metric (``outputs="classifications"``, such as ``cause``) holds a
``Classifications`` field and float ``<field>_<name>`` fields beside it (``extra_fields``,
e.g. ``iqa_cause_severity``); deleting or renaming the run does the same to them.

A run on video (``config.frame_step``) holds frame fields and per-video summaries
(:mod:`.video_fields`); deleting or renaming it does the same to all of them.
"""

from __future__ import annotations

from typing import Dict, List

import fiftyone as fo
import fiftyone.core.runs as fors

from .names import error_field_for
from .shards import ShardStore, merge_shards
from .video_fields import (FLOAT_SUMMARIES, INT_SUMMARIES, frame_error_path, frame_path, segments_field,
                           summary_field)

METHOD = "dnniqa.compute_quality"


def extra_field(field: str, name: str) -> str:
    """The float field beside a structured metric's label field: ``<field>_<name>``."""
    return f"{field}_{name}"


def is_classifications_field(field) -> bool:
    """Whether ``field`` (a schema field, or None) is a ``Classifications`` label field."""
    return isinstance(field, fo.EmbeddedDocumentField) and field.document_type is fo.Classifications


class QualityRunConfig(fors.RunConfig):
    """Configuration of a quality scoring run.

    Args:
        metric: the registry name of the metric
        field: the sample field holding the scores (also the run key)
        metric_options (None): options the metric was created with
        higher_is_better (True): the metric's direction
        reference_field (None): the reference filepath field of a
            full-reference metric
        label_field (None): the label field a task-guided metric read
        patches_field (None): for a run on objects, their Detections/Polylines field
        patches_path (None): the objects' list (``<patches_field>.detections``)
        attribute (None): the object attribute holding each object's score
        outputs ("float"): what the metric gives per image: ``"float"`` (a score) or
            ``"classifications"`` (labels in ``field``, floats in ``extra_fields``)
        extra_fields (None): a structured metric's float values, stored in
            ``<field>_<name>`` per name (``["severity"]``)
        **kwargs: further settings recorded with the run (device, ...)
    """

    def __init__(self, metric=None, field=None, metric_options=None,
                 higher_is_better=True, reference_field=None, label_field=None,
                 patches_field=None, patches_path=None, attribute=None, outputs="float",
                 extra_fields=None, **kwargs):
        kwargs.pop("method", None)
        super().__init__(method=METHOD, **kwargs)
        self.metric = metric
        self.field = field
        self.metric_options = metric_options or {}
        self.higher_is_better = higher_is_better
        self.reference_field = reference_field
        self.label_field = label_field
        self.patches_field = patches_field
        self.patches_path = patches_path
        self.attribute = attribute
        self.outputs = outputs or "float"  # records written before it: floats
        self.extra_fields = list(extra_fields or [])

    @property
    def error_field(self) -> str:
        return error_field_for(self.field)

    @property
    def extra_field_names(self) -> List[str]:
        """The sample fields of the ``extra_fields`` (``iqa_cause_severity``)."""
        return [extra_field(self.field, n) for n in self.extra_fields]


def build_run_config(metric, field, reference_field=None, label_field=None, overwrite=False,
                     patches=None, **settings) -> QualityRunConfig:
    """The record of scoring ``field`` with ``metric`` (a built metric); ``settings``
    (device, batch size, shards...) are recorded beside it; ``patches`` is
    ``(patches_field, patches_path, attribute)`` for a run on objects. ``overwrite`` lets the run
    replace the scores of another metric in ``field`` (checked by
    :meth:`QualityRun._validate_run`; not stored)."""
    config = QualityRunConfig(
        metric=metric.name, field=field, metric_options=metric.describe(),
        higher_is_better=metric.higher_is_better,
        reference_field=reference_field if metric.needs_reference else None,
        label_field=label_field if metric.needs_labels else None,
        outputs=getattr(metric, "outputs", "float"),
        extra_fields=list(getattr(metric, "extra_fields", ())),
        **dict(zip(("patches_field", "patches_path", "attribute"), patches or ())),
        **settings,
    )
    config._allow_other_metric = bool(overwrite)
    return config


class QualityRun(fors.Run):
    """The run class FiftyOne builds from :class:`QualityRunConfig`."""

    def _validate_run(self, samples, key, existing_info):
        """A field keeps the scores of one metric (with one set of options), unless the
        caller allows replacing them (``config._allow_other_metric``, set by
        :func:`build_run_config` from ``overwrite`` and never stored)."""
        old, new = existing_info.config, self.config
        if getattr(new, "_allow_other_metric", False):
            return
        if (old.metric, old.metric_options) != (new.metric, new.metric_options):
            raise ValueError(
                f"field '{key}' holds scores of metric '{old.metric}' {old.metric_options or ''}, not "
                f"'{new.metric}' {new.metric_options or ''}; pass overwrite=True or choose another field"
            )

    def get_fields(self, samples, key):
        """The score and error fields (a structured metric's labels and extra floats), where
        they hold what a run writes: a record left on a field of another type (a label
        field, by a run that failed on it before fields were checked) never claims it, so
        deleting the run keeps it."""
        dataset = samples._root_dataset
        cfg = self.config
        labels = getattr(cfg, "outputs", "float") == "classifications"
        fields = [(cfg.field, is_classifications_field if labels else _of(fo.FloatField)),
                  (cfg.error_field, _of(fo.StringField))]
        fields += [(f, _of(fo.FloatField)) for f in getattr(cfg, "extra_field_names", [])]
        if getattr(cfg, "frame_step", None) is not None:
            fields = _video_fields(cfg.field, labels, getattr(cfg, "extra_fields", []))
        if getattr(cfg, "patches_path", None):
            fields += [(cfg.field + "_min", _of(fo.FloatField)),
                       (f"{cfg.patches_path}.{cfg.attribute}", _of(fo.FloatField)),
                       (f"{cfg.patches_path}.{error_field_for(cfg.attribute)}", _of(fo.StringField))]
        return [f for f, fits in fields if fits(dataset.get_field(f))]

    def rename(self, samples, key, new_key):
        """A run's key is its field: renaming the run renames its score and error fields
        (and a structured metric's extra fields)."""
        dataset = samples._root_dataset
        pairs = [(key, new_key), (error_field_for(key), error_field_for(new_key))]
        pairs += [(extra_field(key, n), extra_field(new_key, n))
                  for n in getattr(self.config, "extra_fields", [])]
        if getattr(self.config, "patches_path", None):
            pairs.append((key + "_min", new_key + "_min"))
        if getattr(self.config, "frame_step", None) is not None:
            old_paths, new_paths = (
                [p for p, _ in _video_fields(k, False, getattr(self.config, "extra_fields", []))]
                for k in (key, new_key))
            pairs = list(zip(old_paths, new_paths))
        for old, new in pairs:
            if old.startswith("frames.") and dataset.get_field(old) is not None:
                dataset.rename_frame_field(old[len("frames."):], new[len("frames."):])
            elif dataset.has_sample_field(old):
                dataset.rename_sample_field(old, new)
        if getattr(self.config, "shards", None):
            ShardStore().rename(dataset, key, new_key)
        self.config.field = new_key
        dataset.update_run_config(key, self.config)

    def cleanup(self, samples, key):
        dataset = samples._root_dataset
        for f in self.get_fields(samples, key):
            if f.startswith("frames."):
                dataset.delete_frame_field(f[len("frames."):])
            else:
                dataset.delete_sample_field(f)
        if getattr(self.config, "shards", None):
            ShardStore().delete(dataset, self.config.field)


def _of(kind):
    return lambda field: isinstance(field, kind)


def _video_fields(field: str, labels: bool, extras) -> list:
    """``(path, fits)`` of the fields of a run on video of ``field``: frame scores (labels
    and their extra floats), frame reasons, per-video summaries and reason, and the
    segments analysis found in them."""
    out = [(frame_path(field), is_classifications_field if labels else _of(fo.FloatField)),
           (frame_error_path(field), _of(fo.StringField))]
    out += [(extra_field(frame_path(field), n), _of(fo.FloatField)) for n in extras]
    out += [(summary_field(field, n), _of(fo.FloatField)) for n in FLOAT_SUMMARIES]
    out += [(summary_field(field, n), _of(fo.IntField)) for n in INT_SUMMARIES]
    out.append((error_field_for(field), _of(fo.StringField)))
    out.append((segments_field(field), _is_embedded(fo.TemporalDetections)))
    return out


def _is_embedded(document_type):
    return lambda field: (isinstance(field, fo.EmbeddedDocumentField)
                          and issubclass(field.document_type, document_type))


class QualityRunResults(fors.RunResults):
    """Outcome of a scoring run: status, counts, timing and failures.

    Attributes:
        status: ``"running"``, ``"completed"``, ``"interrupted"`` or ``"failed"``
        num_samples: samples in the view
        num_todo: samples that needed scoring in this call
        num_scored: samples scored in this call
        num_failed: samples that could not be scored in this call
        num_with_scores: samples of the whole dataset holding a score
        failures: ``{sample_id: reason}`` of this call's failures
        elapsed_s, images_per_s, device, started_at, finished_at
    """

    def __init__(self, samples, config, key, backend=None, **kwargs):
        defaults = dict(status="running", num_samples=0, num_todo=0, num_scored=0,
                        num_failed=0, num_with_scores=0, failures={}, elapsed_s=0.0,
                        images_per_s=0.0, device=None, started_at=None, finished_at=None,
                        error=None)
        defaults.update(kwargs)
        super().__init__(samples, config, key, backend=backend, **defaults)

    def summary(self) -> str:
        reason = f" ({self.error})" if self.error and self.status != "completed" else ""
        if getattr(self.config, "frame_step", None) is not None:  # a run on video
            return (f"{self.key}: {self.status}{reason}, {self.num_scored} frames scored, {self.num_failed} failed "
                    f"(every {self.config.frame_step}), {getattr(self, 'num_videos_failed', 0) or 0} videos "
                    f"unreadable, {self.num_todo} of {self.num_samples} videos to do, "
                    f"{self.images_per_s:.1f} frames/s on {self.device}")
        return (f"{self.key}: {self.status}{reason}, {self.num_scored} scored, {self.num_failed} failed "
                f"of {self.num_todo} to do ({self.num_samples} in view), "
                f"{self.images_per_s:.1f} img/s on {self.device}")

    def __repr__(self):
        return f"<QualityRunResults {self.summary()}>"


def list_quality_runs(samples, kind: str = "all") -> List[str]:
    """Keys (= sample field names) of the quality runs on ``samples``' dataset: ``kind``
    ``"all"``, ``"images"`` (runs on whole images), ``"objects"`` (runs on objects, keyed
    by their per-sample mean field) or ``"videos"`` (runs on the frames of videos, keyed by
    their frame field)."""
    if kind not in ("all", "images", "objects", "videos"):
        raise ValueError(f"kind must be 'all', 'images', 'objects' or 'videos', not {kind!r}")
    dataset = samples._root_dataset
    keys = dataset.list_runs(method=METHOD)
    if kind == "all":
        return keys
    configs = {k: dataset.get_run_info(k).config for k in keys}
    kinds = {k: "objects" if getattr(c, "patches_field", None) else
             "videos" if getattr(c, "frame_step", None) is not None else "images" for k, c in configs.items()}
    return [k for k in keys if kinds[k] == kind]


def list_quality_run_statuses(samples) -> Dict[str, dict]:
    """Every quality run of ``samples``' dataset with how it stands, for lists and
    choices (a failed run is listed, and can be shown and deleted, like any other):
    ``{key: {"status": ..., "error": ..., "metric": ...}}``, in :func:`list_quality_runs`'
    order. ``status`` is ``"running"`` (also: a process killed mid-run), ``"completed"``,
    ``"interrupted"``, ``"failed"`` (``error`` says why) or ``"queued"`` (sharded runs);
    ``"unreadable"`` for a record that cannot be loaded."""
    out = {}
    for key in list_quality_runs(samples):
        try:
            r = load_quality_run(samples, key)
            out[key] = {"status": r.status, "error": getattr(r, "error", None), "metric": r.config.metric}
        except Exception as e:  # one broken record must not hide the others
            out[key] = {"status": "unreadable", "error": failure_reason(e), "metric": None}
    return out


def failure_reason(exc: BaseException) -> str:
    """What a failed run records as its ``error``: the exception's type and text."""
    return f"{type(exc).__name__}: {exc}"


def get_quality_run_info(samples, key):
    """The :class:`fiftyone.core.runs.RunInfo` of quality run ``key``."""
    _check_quality_run(samples, key)
    return samples._root_dataset.get_run_info(key)


def load_quality_run(samples, key) -> QualityRunResults:
    """Reloads the results of quality run ``key``.

    The dataset is reloaded first: the record may have been rewritten by
    another process (a delegated worker, a resumed run) since it was loaded.
    """
    dataset = samples._root_dataset
    dataset.reload()
    _check_quality_run(dataset, key)
    results = dataset.load_run_results(key, cache=False)
    if getattr(results.config, "shards", None):
        merge_shards(dataset, key, results)
    return results


def delete_quality_run(samples, key) -> None:
    """Deletes quality run ``key`` and the fields it created."""
    _check_quality_run(samples, key)
    samples._root_dataset.delete_run(key)


def _check_quality_run(samples, key):
    runs = list_quality_runs(samples)
    if key not in runs:
        raise ValueError(
            f"No quality run '{key}' on dataset '{samples._root_dataset.name}'. "
            f"Quality runs: {', '.join(runs) or 'none'}"
        )
