"""The "Compute image quality" form: metrics grouped and described, inputs checked as the
user types (``invalid=True`` with a message in the App's words, so Execute stays
disabled), choices that cannot work hidden."""

from __future__ import annotations

import fiftyone as fo
import fiftyone.operators.types as types
import torch

from ..metrics import metric_traits
from ..metrics.catalog import metric_catalog, metric_info
from ..metrics.registry import metric_factory
from ..metrics.options import (PROXY_OPTIONS, accepted_options, metric_options_with_proxy, options_per_metric,
                               options_problem, takes_option)
from ..metrics.weights import is_offline
from ..scoring import default_field, field_problem, list_quality_run_statuses
from ..scoring.patch_plan import check_patch_fields, object_run_key, patch_capable_fields, resolve_patches
from ..scoring.patches import DEFAULT_MARGIN, DEFAULT_MIN_SIDE
from ..scoring.plan import parse_metric_options
from ..scoring.video_plan import check_video_fields

__all__ = ["DELEGATE_ABOVE", "DEFAULT_METRIC", "STREAM_PARAM", "compute_quality_form", "default_frame_step",
           "delegation_available", "devices", "in_app_words", "label_fields", "metric_names"]

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
#: frames per second of video the form's default step scores: a one-second episode (a
#: tunnel, a blur in a turn) then spans 3 scored frames, more than a hard segment's
#: minimum run of 2, at a tenth of the cost of every frame at 30 fps
SCORED_PER_SECOND = 3
#: the default step where the videos' frame rates are unknown (no metadata): 30 fps / 3
FALLBACK_FRAME_STEP = 10


def default_frame_step(samples) -> int:
    """The form's "Score every Nth frame": the videos' mean frame rate / SCORED_PER_SECOND
    (at least 1), or FALLBACK_FRAME_STEP without frame rates."""
    fps = samples.mean("metadata.frame_rate")
    if not fps or fps <= 0:
        return FALLBACK_FRAME_STEP
    return max(1, round(fps / SCORED_PER_SECOND))


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


def metric_names(params) -> list:
    """The metrics the params name: the form's list ``metrics`` (empty when the user cleared
    it), else ``metric`` (one name, from Python), else the default."""
    value = params.get("metrics")
    if not value:
        value = params.get("metric") or ([] if "metrics" in params else DEFAULT_METRIC)
    if isinstance(value, str):
        value = [value]
    return [str(v).strip() for v in value if v is not None and str(v).strip()]


def _metrics_input(inputs, params, problem=None):
    catalog = metric_catalog()
    choices = types.AutocompleteView()
    for m in catalog:
        choices.add_choice(m.name, label=m.name, description=f"{m.group}: {m.description}",
                           caption=f"{m.better}; {m.status}" + ("; recommended" if m.recommended else ""))
    names = [m.name for m in catalog]
    default = [DEFAULT_METRIC] if DEFAULT_METRIC in names else names[:1]
    inputs.list("metrics", types.String(), default=default, label="Metrics",
                required=not params.get("metric"),  # Python calls name one metric
                description="One or several (each image is decoded once for all): DNN-aligned metrics "
                            "first (they predict networks' errors), then conventional no-reference "
                            "and full-reference ones", view=choices,
                invalid=bool(problem), error_message=problem or "")


def _metric_problem(info, options, video=False):
    """Why ``info``'s metric cannot run with ``options`` here, or None."""
    if video and metric_traits(info.name)["needs_reference"]:
        return f"'{info.name}' compares each image with a reference image; frames of videos have none"
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


def _per_metric_options(names, params):
    """Each metric's options (the form's, the proxy and its weights added) and the first
    message saying why they cannot build a metric, or None."""
    options, error = _options(params)
    if error:
        return [{} for _ in names], error
    try:
        merged = metric_options_with_proxy(names, options, params.get("proxy"), params.get("weights"))
        per = options_per_metric(names, merged)
    except ValueError as e:
        return [{} for _ in names], str(e)
    return per, options_problem(names, merged, per)


def compute_quality_form(ctx, inputs, n_samples):
    """Fills ``inputs`` with the form for the current params; returns False when nothing can
    run (no metric, an unknown one, or an empty view: only its error is shown)."""
    names = metric_names(ctx.params)
    infos, unknown = [], []
    for name in names:
        try:
            infos.append(metric_info(name))
        except ValueError as e:
            unknown.append(str(e))
    if n_samples == 0:
        _metrics_input(inputs, ctx.params)
        inputs.view("empty_view", types.Error(label="This view has no samples: nothing to score",
                                              description="Clear or change the view's filters first"),
                    invalid=True, error_message="this view has no samples: nothing to score")
        return False
    if unknown or not names:
        problem = " ".join(unknown) or "choose at least one metric"
        _metrics_input(inputs, ctx.params, problem)
        inputs.view("metric_error", types.Error(label="Unknown metric" if unknown else "No metric",
                                                description=problem))
        return False
    video = ctx.view.media_type == "video"
    per, options_error = _per_metric_options(names, ctx.params)
    problems = [_metric_problem(i, o, video) for i, o in zip(infos, per)]
    head_problem = next((p for i, p in zip(infos, problems) if p and i.name == "tg_iqa"), None)
    _metrics_input(inputs, ctx.params, next((p for i, p in zip(infos, problems) if p and i.name != "tg_iqa"), None))
    patches_field = None if video else _chosen_patches(ctx)
    _reference_and_labels(ctx, inputs, names, per, patches_field, video)
    if video:
        _frame_step_input(ctx, inputs)
    _field_inputs(ctx, inputs, names, None if video else _patches_input(ctx, inputs), video)
    inputs.str("metric_options", required=bool(head_problem), label="Metric options",
               description='Options of the metric as a JSON object, e.g. {"tta": "flip"} (blank: defaults); '
                           'for several metrics, one object each: {"aligned": {"tta": "flip"}}',
               invalid=bool(options_error or head_problem),
               error_message=options_error or head_problem or "")
    _proxy_inputs(inputs, names)
    _run_inputs(inputs, n_samples, video)
    return True


def _frame_step_input(ctx, inputs):
    """On video: the sampling step passed to compute_quality as ``frame_step``."""
    step = ctx.params.get("frame_step")
    bad = step is not None and (not isinstance(step, int) or step < 1)
    inputs.int("frame_step", default=default_frame_step(ctx.target_view()), required=True,
               label="Score every Nth frame",
               description=f"Frames 1, 1+N, 1+2N... of each video, decoded once, nothing written to disk "
                           f"(default: about {SCORED_PER_SECOND} per second of video; 1: every frame)",
               invalid=bad, error_message="a whole number of at least 1" if bad else "")


def _field_inputs(ctx, inputs, names, patches_field, video=False):
    """The score field of one metric (its object attribute in an object run; its frame field
    on video), or the fields of several, each checked; and Overwrite."""
    overwrite = bool(ctx.params.get("overwrite", False))
    if len(names) > 1:
        fields = [default_field(n) for n in names]
        problems = [_field_problem(ctx, patches_field, f, n, overwrite, video) for f, n in zip(fields, names)]
        problem = "; ".join(p for p in problems if p)
        where = f"attributes of each object of '{patches_field}'" if patches_field else "fields"
        inputs.view("fields", types.Notice(label=f"Scores go to the {where} {', '.join(fields)}"),
                    invalid=bool(problem), error_message=in_app_words(problem))
        if problem:
            inputs.view("fields_error", types.Error(label="A field cannot take the scores",
                                                    description=in_app_words(problem)))
    else:
        metric = names[0]
        field = ctx.params.get("field") or default_field(metric)
        field_error = _field_problem(ctx, patches_field, field, metric, overwrite, video)
        if video:
            description = (f"Frame field for each scored frame's score ('frames.{field}', also the run key); "
                           f"each video's mean, minimum and low share go to '{field}_mean', '_min', '_low_share'")
        elif patches_field:
            key = object_run_key(patches_field, field)
            description = (f"Attribute of each object of '{patches_field}' for its score; the per-sample mean "
                           f"goes to '{key}' (the run key), the minimum to '{key}_min'")
        else:
            description = "Sample field for the scores (also the run key)"
        inputs.str("field", default=default_field(metric), label="Field", description=description,
                   invalid=bool(field_error), error_message=in_app_words(field_error or ""))
    inputs.bool("overwrite", default=False, label="Overwrite",
                description="Rescore samples that already have a score")


def _field_problem(ctx, patches_field, field, metric, overwrite, video=False):
    if patches_field:
        return _object_field_problem(ctx, patches_field, field, overwrite)
    return field_problem(ctx.dataset, field, overwrite, metric=metric) or _other_metric_problem(
        ctx, field, metric, overwrite) or (_video_field_problem(ctx, field, metric, overwrite) if video else None)


def _video_field_problem(ctx, field, metric, overwrite):
    """Why a run on video cannot write its frame and summary fields, or None."""
    try:
        check_video_fields(ctx.dataset, field, metric_factory(metric), overwrite)
    except ValueError as e:
        return str(e)
    return None


def _proxy_inputs(inputs, names):
    """The proxy network(s) and their weights, for metrics that take a proxy."""
    takers = [n for n in names if metric_traits(n)["source"] == "dnniqa"  # pyiqa's networks are their own
              and set(PROXY_OPTIONS) & set(accepted_options(n) or ())]
    if not takers:
        return
    inputs.str("proxy", required=False, label="Proxy network(s)",
               description=f"The classifier(s) {', '.join(takers)} read(s), e.g. efficientnet_lite0, "
                           "torchvision:mobilenet_v2, timm:<name>; several, comma-separated, are an "
                           "ensemble (their statistics averaged). Blank: the default")
    if any(takes_option(n, "weights") for n in takers):
        inputs.str("weights", required=False, label="Proxy weights",
                   description="A weights file for your own classifier (one per proxy, comma-separated). "
                               "Blank: the standard weights in the cache")


def _chosen_patches(ctx):
    chosen = ctx.params.get("patches_field")
    return None if not chosen or chosen == IMAGES else chosen


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


def _reference_and_labels(ctx, inputs, names, per_options, patches_field, video=False):
    traits = {n: metric_traits(n) for n in names}
    refs = [] if video else [n for n in names if traits[n]["needs_reference"]]  # refused on video
    if refs:
        str_fields = [f for f in ctx.dataset.get_field_schema(ftype=fo.StringField)
                      if f != "filepath" and not f.endswith("_error")]
        inputs.enum("reference_field", str_fields, required=True, label="Reference field",
                    description=f"{', '.join(refs)}: full-reference: the field holding each clean image's filepath",
                    view=types.DropdownView(), invalid=not str_fields,
                    error_message="" if str_fields else
                    "this dataset has no string field of reference filepaths; add one, or pick a no-reference metric")
    needy = [(n, o) for n, o in zip(names, per_options) if traits[n]["needs_labels"]]
    if needy:
        _label_input(ctx, inputs, needy, patches_field)


def label_fields(dataset) -> list:
    """The fields whose labels a task-guided metric can take as the task's classes:
    Classification fields (one label per image)."""
    return list(dataset.get_field_schema(ftype=fo.EmbeddedDocumentField, embedded_doc_type=fo.Classification))


def _label_input(ctx, inputs, needy, patches_field):
    """The label field of task-guided metrics: required unless each has a label set of its
    own, the options give its classes, or the objects scored carry their own labels."""
    fields = label_fields(ctx.dataset)
    metrics = ", ".join(n for n, _ in needy)
    fallbacks = [DEFAULT_LABEL_SETS.get(n) or ("the classes in Metric options" if (o or {}).get("classes")
                                               else None) for n, o in needy]
    if patches_field:
        fallbacks = [f"each object's own label in '{patches_field}'"] * len(needy)
    fallback = "; ".join(sorted(set(fallbacks))) if all(fallbacks) else None
    problem = None
    if not fields and not fallback:
        detections = patch_capable_fields(ctx.dataset)
        if detections:
            problem = (f"{metrics} need(s) the task's classes and this dataset's labels are objects "
                       f"({', '.join(detections)}): put {{\"classes\": [\"car\", \"person\", ...]}} in Metric "
                       "options, or choose Score: objects of a detection field (each object is rated "
                       "against its own label)")
        else:
            problem = (f"{metrics} need(s) the task's classes and this dataset has no Classification field: "
                       'put {"classes": ["cat", "dog", ...]} in Metric options, or pick another metric')
    inputs.enum("label_field", fields, required=fallback is None, label="Label field",
                description=f"{metrics}: task-guided: the Classification field whose classes are the task's "
                            "label set" + (f" (blank: {fallback})" if fallback else ""),
                view=types.DropdownView(), invalid=bool(problem), error_message=problem or "")


def _run_inputs(inputs, n_samples, video=False):
    inputs.enum("device", devices(), default="auto", label="Device",
                view=types.RadioGroup(orientation="horizontal"))
    inputs.int("batch_size", default=None, label="Batch size", required=False,
               description="Images per batch (blank: automatic; halved on GPU out-of-memory)")
    if not video:  # videos are decoded by PyAV in the loader workers
        inputs.enum("decode", ["auto", "workers", "device"], default="auto", label="Decode JPEGs on",
                    description="workers: loader processes (PIL); device: batched on the scoring "
                                "device, nvJPEG on CUDA; auto: the device on CUDA",
                    view=types.RadioGroup(orientation="horizontal"))
    if delegation_available():
        parts = "sets of whole videos" if video else "parts of the view"
        inputs.int("shards", default=1, label="Shards", required=False,
                   description=f"Split into this many delegated operations over disjoint {parts}. Choose "
                               "Schedule, and start workers with `fiftyone delegated launch` "
                               "(one GPU each with CUDA_VISIBLE_DEVICES); leave 1 to run here")
    else:
        inputs.view("schedule_note", types.Notice(
            label="Schedule (delegated execution) is off in this App: set "
                  "FIFTYONE_ALLOW_LEGACY_ORCHESTRATORS=true before starting it and run "
                  "`fiftyone delegated launch` to schedule runs or split them into shards"))
    _delegate_note(inputs, n_samples, "videos" if video else "images")


def _delegate_note(inputs, n_samples, unit):
    if n_samples > DELEGATE_ABOVE:
        inputs.view("delegate_note", types.Notice(
            label=f"{n_samples} {unit}: running this as a delegated operation is recommended "
                  "(`fiftyone delegated launch` starts a worker)"))
