"""The "Compute image quality" form: metrics grouped and described, inputs checked as the
user types (``invalid=True`` with a message in the App's words, so Execute stays
disabled), choices that cannot work hidden."""

from __future__ import annotations

import fiftyone as fo
import fiftyone.operators.types as types
import torch

from ..metrics import metric_traits
from ..metrics.catalog import metric_catalog, metric_info
from ..metrics.weights import is_offline
from ..scoring import default_field, field_problem, list_quality_run_statuses
from ..scoring.patch_plan import check_patch_fields, object_run_key, patch_capable_fields, resolve_patches
from ..scoring.patches import DEFAULT_MARGIN, DEFAULT_MIN_SIDE
from ..scoring.plan import parse_metric_options

__all__ = ["DELEGATE_ABOVE", "DEFAULT_METRIC", "STREAM_PARAM", "compute_quality_form", "delegation_available",
           "devices", "in_app_words"]

#: views larger than this are delegated by default (immediate operations are
#: stopped after 600 s)
DELEGATE_ABOVE = 1000
#: the metric the form opens on: the DNN-aligned score
DEFAULT_METRIC = "aligned"
#: the "Score" choice of whole images (else: a field whose objects are scored)
IMAGES = "(whole images)"
#: a parameter asking the operator to yield its progress (count, time left), as for the App
STREAM_PARAM = "progress_in_app"
#: task-guided metrics that fall back on a label set of their own without a label field
DEFAULT_LABEL_SETS = {"zsclip": "ImageNet's 1000 classes"}


def delegation_available() -> bool:
    """Whether this App can schedule (delegate) operations to local workers."""
    return bool(fo.config.allow_legacy_orchestrators)


def devices() -> list:
    """The device choices: ``cuda`` only where there is a GPU."""
    return ["auto", "cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def in_app_words(message: str) -> str:
    """A library message as the form says it (an option is ticked, not passed)."""
    return (message.replace("pass overwrite=True to replace its values", "tick Overwrite to replace its values")
            .replace("pass overwrite=True", "tick Overwrite"))


def _metric_input(inputs, problem=None):
    catalog = metric_catalog()
    choices = types.AutocompleteView()
    for m in catalog:
        choices.add_choice(m.name, label=m.name, description=f"{m.group}: {m.description}",
                           caption=f"{m.better}; {m.status}" + ("; recommended" if m.recommended else ""))
    names = [m.name for m in catalog]
    default = DEFAULT_METRIC if DEFAULT_METRIC in names else (names[0] if names else None)
    inputs.enum("metric", names, default=default, required=True, label="Metric",
                description="DNN-aligned metrics first (they predict networks' errors), then "
                            "conventional no-reference and full-reference ones", view=choices,
                invalid=bool(problem), error_message=problem or "")


def _metric_problem(info, options):
    """Why ``info``'s metric cannot run with ``options`` here, or None."""
    if info.name == "tg_iqa" and not (options or {}).get("path"):
        return 'tg_iqa needs a fitted head: put {"path": "<the folder fit_tg_iqa wrote>"} in Metric options'
    if not info.ready and info.name != "tg_iqa" and (is_offline() or info.name.startswith("aligned")):
        return f"'{info.name}' is not ready on this machine: it needs {info.needs}"
    return None


def _options(params):
    """The metric options typed in the form, and the message when they do not parse."""
    value = params.get("metric_options")
    if not value:
        return None, None
    try:
        return parse_metric_options(value) if isinstance(value, str) else value, None
    except ValueError as e:
        return None, str(e)


def compute_quality_form(ctx, inputs, n_samples):
    """Fills ``inputs`` with the form for the current params; returns False when the metric
    is unknown (only its error is shown)."""
    metric = ctx.params.get("metric") or DEFAULT_METRIC
    try:
        info = metric_info(metric)
    except ValueError as e:
        _metric_input(inputs)
        inputs.view("metric_error", types.Error(label="Unknown metric", description=str(e)))
        return False
    options, options_error = _options(ctx.params)
    problem = _metric_problem(info, options)
    _metric_input(inputs, problem if info.name != "tg_iqa" else None)
    _reference_and_labels(ctx, inputs, metric, options)
    overwrite = bool(ctx.params.get("overwrite", False))
    field = ctx.params.get("field") or default_field(metric)
    patches_field = _patches_input(ctx, inputs)
    if patches_field:
        field_error = _object_field_problem(ctx, patches_field, field, overwrite)
        description = (f"Attribute of each object of '{patches_field}' for its score; the per-sample mean "
                       f"goes to '{object_run_key(patches_field, field)}' (the run key), the minimum to "
                       f"'{object_run_key(patches_field, field)}_min'")
    else:
        field_error = (field_problem(ctx.dataset, field, overwrite, metric=metric)
                       or _other_metric_problem(ctx, field, metric, overwrite))
        description = "Sample field for the scores (also the run key)"
    inputs.str("field", default=default_field(metric), label="Field", description=description,
               invalid=bool(field_error), error_message=in_app_words(field_error or ""))
    inputs.bool("overwrite", default=False, label="Overwrite",
                description="Rescore samples that already have a score")
    inputs.str("metric_options", required=bool(problem and info.name == "tg_iqa"), label="Metric options",
               description='Options of the metric as a JSON object, e.g. {"tta": "flip"} (blank: defaults)',
               invalid=bool(options_error or (problem and info.name == "tg_iqa")),
               error_message=options_error or (problem if info.name == "tg_iqa" else "") or "")
    _run_inputs(inputs, n_samples)
    return True


def _patches_input(ctx, inputs):
    """Whole images, or the objects of a Detections/Polylines field (with the context
    margin and the smallest side scored); the field chosen, or None."""
    fields = patch_capable_fields(ctx.dataset)
    if not fields:
        return None
    choices = types.DropdownView()
    choices.add_choice(IMAGES, label="whole images")
    for f in fields:
        choices.add_choice(f, label=f"objects of {f}", description="each object's box, cropped after one decode")
    inputs.enum("patches_field", choices.values(), default=IMAGES, view=choices, label="Score",
                description="Whole images, or every object of a detection field")
    chosen = ctx.params.get("patches_field")
    if not chosen or chosen == IMAGES:
        return None
    inputs.float("patch_margin", default=DEFAULT_MARGIN, label="Context margin",
                 description="Share of the box added on each side before cropping (0: the box only)")
    inputs.int("min_patch_side", default=DEFAULT_MIN_SIDE, label="Smallest side (pixels)",
               description="Smaller boxes are recorded with a reason instead of a score")
    return chosen


def _object_field_problem(ctx, patches_field, attribute, overwrite):
    """Why an object run cannot write ``attribute`` on ``patches_field``'s objects, or None."""
    if not isinstance(attribute, str) or not attribute.isidentifier() or attribute.startswith("_"):
        return f"field name '{attribute}' must be a valid identifier not starting with '_'"
    try:
        target = resolve_patches(ctx.dataset, patches_field)
        check_patch_fields(ctx.dataset, target, attribute, object_run_key(patches_field, attribute), overwrite)
    except ValueError as e:
        return str(e)
    return None


def _other_metric_problem(ctx, field, metric, overwrite):
    """A message when ``field`` holds another metric's scores and Overwrite is not ticked."""
    run = list_quality_run_statuses(ctx.dataset).get(field)
    if overwrite or not run or not run["metric"] or run["metric"] == metric:
        return None
    return (f"'{field}' holds scores of metric '{run['metric']}': choose another field name, "
            f"or tick Overwrite to replace them with '{metric}' scores")


def _reference_and_labels(ctx, inputs, metric, options):
    traits = metric_traits(metric)
    if traits["needs_reference"]:
        str_fields = [f for f in ctx.dataset.get_field_schema(ftype=fo.StringField)
                      if f != "filepath" and not f.endswith("_error")]
        inputs.enum("reference_field", str_fields, required=True, label="Reference field",
                    description=f"'{metric}' is full-reference: the field holding each clean image's filepath",
                    view=types.DropdownView(), invalid=not str_fields,
                    error_message="" if str_fields else
                    "this dataset has no string field of reference filepaths; add one, or pick a no-reference metric")
    if traits["needs_labels"]:
        _label_input(ctx, inputs, metric, options)


def _label_input(ctx, inputs, metric, options):
    """The label field of a task-guided metric: required unless the metric has a label set
    of its own or the options give its classes."""
    label_fields = list(ctx.dataset.get_field_schema(
        ftype=fo.EmbeddedDocumentField, embedded_doc_type=fo.Classification))
    label_fields += [f for f in ctx.dataset.get_field_schema(ftype=fo.StringField)
                     if f not in ("filepath",) and not f.endswith("_error")]
    fallback = DEFAULT_LABEL_SETS.get(metric) or ("the classes in Metric options" if (options or {}).get("classes")
                                                  else None)
    problem = None
    if not label_fields and not fallback:
        problem = (f"'{metric}' needs the task's classes and this dataset has no Classification or string "
                   'field: put {"classes": ["cat", "dog", ...]} in Metric options, or pick another metric')
    inputs.enum("label_field", label_fields, required=fallback is None, label="Label field",
                description=f"'{metric}' is task-guided: the field whose classes are the task's label set"
                            + (f" (blank: {fallback})" if fallback else ""),
                view=types.DropdownView(), invalid=bool(problem), error_message=problem or "")


def _run_inputs(inputs, n_samples):
    inputs.enum("device", devices(), default="auto", label="Device",
                view=types.RadioGroup(orientation="horizontal"))
    inputs.int("batch_size", default=None, label="Batch size", required=False,
               description="Images per batch (blank: automatic; halved on GPU out-of-memory)")
    inputs.enum("decode", ["auto", "workers", "device"], default="auto", label="Decode JPEGs on",
                description="workers: loader processes (PIL); device: batched on the scoring "
                            "device, nvJPEG on CUDA; auto: the device on CUDA",
                view=types.RadioGroup(orientation="horizontal"))
    if delegation_available():
        inputs.int("shards", default=1, label="Shards", required=False,
                   description="Split into this many delegated operations over disjoint parts of the "
                               "view. Choose Schedule, and start workers with `fiftyone delegated launch` "
                               "(one GPU each with CUDA_VISIBLE_DEVICES); leave 1 to run here")
    else:
        inputs.view("schedule_note", types.Notice(
            label="Schedule (delegated execution) is off in this App: set "
                  "FIFTYONE_ALLOW_LEGACY_ORCHESTRATORS=true before starting it and run "
                  "`fiftyone delegated launch` to schedule runs or split them into shards"))
    if n_samples > DELEGATE_ABOVE:
        inputs.view("delegate_note", types.Notice(
            label=f"{n_samples} images: running this as a delegated operation is recommended "
                  "(`fiftyone delegated launch` starts a worker)"))
