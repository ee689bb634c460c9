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
from ..scoring import default_field, field_problem
from ..scoring.plan import parse_metric_options

__all__ = ["DELEGATE_ABOVE", "DEFAULT_METRIC", "compute_quality_form", "devices", "in_app_words"]

#: views larger than this are delegated by default (immediate operations are
#: stopped after 600 s)
DELEGATE_ABOVE = 1000
#: the metric the form opens on: the DNN-aligned score
DEFAULT_METRIC = "aligned"


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
    _reference_and_labels(ctx, inputs, metric, info)
    overwrite = bool(ctx.params.get("overwrite", False))
    field = ctx.params.get("field") or default_field(metric)
    field_error = field_problem(ctx.dataset, field, overwrite)
    inputs.str("field", default=default_field(metric), label="Field",
               description="Sample field for the scores (also the run key)",
               invalid=bool(field_error), error_message=in_app_words(field_error or ""))
    inputs.bool("overwrite", default=False, label="Overwrite",
                description="Rescore samples that already have a score")
    inputs.str("metric_options", required=bool(problem and info.name == "tg_iqa"), label="Metric options",
               description='Options of the metric as a JSON object, e.g. {"tta": "flip"} (blank: defaults)',
               invalid=bool(options_error or (problem and info.name == "tg_iqa")),
               error_message=options_error or (problem if info.name == "tg_iqa" else "") or "")
    _run_inputs(inputs, n_samples)
    return True


def _reference_and_labels(ctx, inputs, metric, info):
    traits = metric_traits(metric)
    if traits["needs_reference"]:
        str_fields = [f for f in ctx.dataset.get_field_schema(ftype=fo.StringField)
                      if f != "filepath" and not f.endswith("_error")]
        inputs.enum("reference_field", str_fields, required=True, label="Reference field",
                    description=f"'{metric}' is full-reference: the field holding each clean image's filepath",
                    view=types.DropdownView(), invalid=not str_fields,
                    error_message="" if str_fields else
                    "this dataset has no string field of reference filepaths; add one, or pick a no-reference metric")
    if traits["needs_labels"] or metric == "aligned_task":
        label_fields = list(ctx.dataset.get_field_schema(
            ftype=fo.EmbeddedDocumentField, embedded_doc_type=fo.Classification))
        label_fields += [f for f in ctx.dataset.get_field_schema(ftype=fo.StringField)
                         if f not in ("filepath",) and not f.endswith("_error")]
        inputs.enum("label_field", label_fields, required=False, label="Label field",
                    description=f"'{metric}' is task-guided: the field whose classes are the "
                                "task's label set", view=types.DropdownView())


def _run_inputs(inputs, n_samples):
    inputs.enum("device", devices(), default="auto", label="Device",
                view=types.RadioGroup(orientation="horizontal"))
    inputs.int("batch_size", default=None, label="Batch size", required=False,
               description="Images per batch (blank: automatic; halved on GPU out-of-memory)")
    inputs.enum("decode", ["auto", "workers", "device"], default="auto", label="Decode JPEGs on",
                description="workers: loader processes (PIL); device: batched on the scoring "
                            "device, nvJPEG on CUDA; auto: the device on CUDA",
                view=types.RadioGroup(orientation="horizontal"))
    inputs.int("shards", default=1, label="Shards", required=False,
               description="Split into this many delegated operations over disjoint parts of the "
                           "view. Needs delegated execution: choose Schedule, and start workers with "
                           "`fiftyone delegated launch` (one GPU each with CUDA_VISIBLE_DEVICES); "
                           "leave 1 to run here")
    if n_samples > DELEGATE_ABOVE:
        inputs.view("delegate_note", types.Notice(
            label=f"{n_samples} images: running this as a delegated operation is recommended "
                  "(`fiftyone delegated launch` starts a worker)"))
