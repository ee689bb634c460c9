"""Operators that act on views: the hardest samples (or objects), the low-quality segments
of videos as clips, quality bins as a scenario of FiftyOne's Model Evaluation panel."""

from __future__ import annotations

import time

import fiftyone as fo
import fiftyone.operators as foo
import fiftyone.operators.types as types

from ..analysis.breakdowns import cause_view, predicted_causes
from ..analysis.difficulty import best_quality_field, hard_samples, mark_hard
from ..analysis.fields import quality_fields
from ..analysis.objects import object_quality_runs
from ..analysis.targets import list_targets
from ..analysis.video import DEFAULT_MIN_LENGTH, hard_segments, mark_segments
from ..analysis.video_targets import video_quality_fields
from .model_evaluation import add_quality_scenario

__all__ = ["AddQualityScenario", "EvaluatePredictions", "FindHardSamples", "FindHardSegments", "evaluable_fields",
           "hard_samples_output", "hard_segments_output"]

#: label types an evaluation compares, and FiftyOne's method for each
EVALUATIONS = {fo.Classification: "evaluate_classifications", fo.Detections: "evaluate_detections"}


def evaluable_fields(dataset) -> dict:
    """Label fields by type name (Classification, Detections): what could be evaluated."""
    out = {}
    for kind in EVALUATIONS:
        fields = sorted(dataset.get_field_schema(embedded_doc_type=kind))
        if fields:
            out[kind.__name__] = fields
    return out


class FindHardSamples(foo.Operator):
    @property
    def config(self):
        return foo.OperatorConfig(
            name="find_hard_samples", label="Find hard samples", dynamic=True, execute_as_generator=True,
            description="Find the samples a quality field predicts to be hardest: show, tag or save them",
        )

    def resolve_input(self, ctx):
        inputs = types.Object()
        ctx.target_view()  # offers the App's target choice (dataset, view, selection)
        fields = quality_fields(ctx.dataset)
        if not fields:
            inputs.view("none", types.Warning(label="No quality fields yet: run 'Compute image quality' first"))
            return types.Property(inputs)
        object_runs = {r["key"]: r for r in object_quality_runs(ctx.dataset)}
        unit = _unit_input(inputs, ctx.params, object_runs)
        if unit == "objects":
            inputs.enum("field", list(object_runs), default=next(iter(object_runs)), required=True,
                        label="Object quality run", view=types.DropdownView(),
                        description="The k hardest objects open as patches")
        else:
            inputs.enum("field", fields, default=best_quality_field(ctx.dataset, fields), required=True,
                        label="Quality field", description="Default: the field that best predicts the "
                        "dataset's evaluation, when it has one", view=types.DropdownView())
            causes = predicted_causes(ctx.dataset)
            if causes:
                inputs.enum("cause", causes, required=False, label="Only images predicted (optional)",
                            description="Keep the images whose predicted causes include this family "
                            "(the newest cause run)", view=types.DropdownView())
        modes = types.RadioGroup(orientation="horizontal")
        modes.add_choice("percent", label="Hardest %")
        modes.add_choice("count", label="Hardest k")
        modes.add_choice("threshold", label="Threshold")
        inputs.enum("mode", modes.values(), default="percent", view=modes, label="Select by")
        mode = ctx.params.get("mode") or "percent"
        default = {"percent": 10.0, "count": 100.0}.get(mode)
        inputs.float("value", default=default, required=True, label={
            "percent": "Percent of scored samples", "count": "Number of samples",
            "threshold": "Quality threshold (samples at or beyond it)"}[mode])
        inputs.str("tag", required=False, label="Tag them (optional)")
        inputs.str("view_name", required=False, label="Save as view (optional)")
        return types.Property(inputs, view=types.View(label="Find hard samples"))

    def execute(self, ctx):
        p = ctx.params
        mode, value = p.get("mode") or "percent", float(p["value"])
        kw = {"percent": {"fraction": value / 100}, "count": {"k": int(value)},
              "threshold": {"threshold": value}}[mode]
        if p.get("unit") == "objects":  # the hardest objects, as patches
            run = {r["key"]: r for r in object_quality_runs(ctx.dataset)}[p["field"]]
            view = hard_samples(ctx.target_view(), run["attribute"], patches_field=run["patches_field"], **kw)
        else:
            target = cause_view(ctx.target_view(), p["cause"]) if p.get("cause") else ctx.target_view()
            view = hard_samples(target, p["field"], **kw)
        out = mark_hard(view, p.get("tag") or None, p.get("view_name") or None)
        return _switch_view(ctx, view, out, hard_samples_output(out))

    def resolve_output(self, ctx):
        return hard_samples_output(getattr(ctx, "results", None) or {})


#: seconds to wait after asking the App to reload before naming a new saved view, twice
SAVED_VIEW_WAITS_S = (1.0, 2.0)


def _show_in_app(ctx, view, out, output):
    """The App's view switched to ``view``, then the result dialog ``output``. The App
    checks a saved view's name against its own list of saved views, which it only
    refetches on a reload: reload first, then name the saved view once the reload had
    time to land (a name it does not know yet only logs an error, so ask twice)."""
    if not out.get("view_name"):
        yield ctx.ops.set_view(view)
    else:
        yield ctx.ops.reload_dataset()
        for wait_s in SAVED_VIEW_WAITS_S:
            time.sleep(wait_s)
            yield ctx.ops.set_view(name=out["view_name"])
    if out.get("tag"):
        yield ctx.ops.reload_samples()  # the tags show on the grid
    yield ctx.ops.show_output(output.to_json(), out)


def _switch_view(ctx, view, out, output):
    """Where the run came from decides how the view is shown: from the App, switched and
    the dialog shown (a generator); from Python, the App's requests and the result."""
    if ctx.delegated:
        return out
    if _from_app(ctx):
        return _show_in_app(ctx, view, out, output)
    if out.get("view_name"):
        ctx.ops.set_view(name=out["view_name"])
    else:
        ctx.ops.set_view(view)
    return out


def _from_app(ctx) -> bool:
    """Whether the App's Execute sent this run (its requests carry ``current_sample``,
    which Python's ``execute_operator`` does not send)."""
    return "current_sample" in (ctx.request_params or {})


def hard_samples_output(result: dict):
    """The result dialog of Find hard samples: only what was done, with its numbers."""
    outputs = types.Object()
    objects = result.get("unit") == "objects"
    outputs.int("count", label="Hard objects (shown as patches)" if objects else "Hard samples")
    if result.get("tag"):
        what = "Objects given the label tag" if objects else "Samples tagged"
        outputs.int("tagged", label=f"{what} '{result['tag']}'")
    if result.get("view_name"):
        outputs.str("view_name", label="Saved as the view (now shown)")
    return types.Property(outputs, view=types.View(label="Hard samples"))


class FindHardSegments(foo.Operator):
    """The low-quality segments of videos (:func:`~fiftyone_dnniqa.analysis.video.hard_segments`)
    as clips: shown, tagged, saved."""

    @property
    def config(self):
        return foo.OperatorConfig(
            name="find_hard_segments", label="Find hard segments", dynamic=True, execute_as_generator=True,
            description="Find the low-quality episodes of videos (runs of sampled frames worse than a "
                        "level) and show them as clips: tag or save them")

    def resolve_input(self, ctx):
        inputs = types.Object()
        ctx.target_view()
        fields = video_quality_fields(ctx.dataset) if ctx.dataset.media_type == "video" else []
        if not fields:
            inputs.view("none", types.Warning(
                label="No frame quality yet: run 'Compute image quality' on the videos with a frame step"))
            return types.Property(inputs)
        inputs.enum("field", fields, default=fields[0], required=True, label="Frame quality run",
                    view=types.DropdownView())
        inputs.float("level", required=False, label="Level (optional)",
                     description="Frames worse than this are low; blank: the run's level (the one its "
                                 "low share counts against)")
        inputs.int("min_length", default=DEFAULT_MIN_LENGTH, required=True, label="Shortest segment",
                   description="Low sampled frames a segment needs", min=1,
                   invalid=int(ctx.params.get("min_length") or DEFAULT_MIN_LENGTH) < 1,
                   error_message="at least 1")
        inputs.str("tag", required=False, label="Tag the segments (optional)")
        inputs.str("view_name", required=False, label="Save as view (optional)")
        return types.Property(inputs, view=types.View(label="Find hard segments"))

    def execute(self, ctx):
        p = ctx.params
        level = p.get("level")
        clips = hard_segments(ctx.target_view(), p["field"], level=None if level is None else float(level),
                              min_length=int(p.get("min_length") or DEFAULT_MIN_LENGTH))
        out = mark_segments(clips, p.get("tag") or None, p.get("view_name") or None)
        return _switch_view(ctx, clips, out, hard_segments_output(out))

    def resolve_output(self, ctx):
        return hard_segments_output(getattr(ctx, "results", None) or {})


def hard_segments_output(result: dict):
    """The result dialog of Find hard segments: what was done, with its numbers."""
    outputs = types.Object()
    outputs.int("count", label="Hard segments (shown as clips)")
    if result.get("tag"):
        outputs.int("tagged", label=f"Segments given the label tag '{result['tag']}'")
    if result.get("view_name"):
        outputs.str("view_name", label="Saved as the view (now shown)")
    return types.Property(outputs, view=types.View(label="Hard segments"))


def _unit_input(inputs, params, object_runs) -> str:
    """Samples or objects, where the dataset has object quality runs; the choice made."""
    if not object_runs:
        return "samples"
    units = types.RadioGroup(orientation="horizontal")
    units.add_choice("samples", label="Samples")
    units.add_choice("objects", label="Objects")
    inputs.enum("unit", units.values(), default="samples", view=units, label="Find the hardest")
    return params.get("unit") or "samples"


class AddQualityScenario(foo.Operator):
    @property
    def config(self):
        return foo.OperatorConfig(
            name="add_quality_scenario", label="Add a quality scenario to Model Evaluation",
            description="Quality bins as a scenario of FiftyOne's Model Evaluation panel: its metrics, "
                        "confusion matrices and curves per bin, worst quality first",
            dynamic=True, view_target=False)

    def resolve_input(self, ctx):
        inputs = types.Object()
        evals, fields = [t.eval_key for t in list_targets(ctx.dataset)], quality_fields(ctx.dataset)
        if not evals or not fields:
            inputs.view("none", types.Warning(label="Needs an evaluation and a quality field"))
            return types.Property(inputs)
        inputs.enum("eval_key", evals, default=evals[0], required=True, label="Evaluation",
                    view=types.DropdownView())
        inputs.enum("field", fields, default=best_quality_field(ctx.dataset, fields), required=True,
                    label="Quality field", description="Default: the field that best predicts the "
                    "dataset's evaluation, when it has one", view=types.DropdownView())
        inputs.int("bins", default=5, label="Quantile bins", description="Equal-count bins")
        inputs.str("thresholds", required=False, label="Or thresholds",
                   description="Comma-separated values of the field (instead of quantile bins)")
        inputs.str("name", required=False, label="Scenario name (blank: automatic)")
        return types.Property(inputs, view=types.View(label="Add a quality scenario"))

    def execute(self, ctx):
        p = ctx.params
        cuts = [float(v) for v in str(p.get("thresholds") or "").split(",") if v.strip()]
        s = add_quality_scenario(ctx.dataset, p["eval_key"], p["field"], bins=cuts or int(p.get("bins") or 5),
                                 name=p.get("name") or None)
        ctx.ops.notify(f"Scenario '{s.name}' added: open it in the Model Evaluation panel", variant="success")
        return {"name": s.name, "id": s.id, "subsets": s.subset_names}

    def resolve_output(self, ctx):
        outputs = types.Object()
        outputs.str("name", label="Scenario")
        outputs.list("subsets", types.String(), label="Subsets, worst quality first")
        return types.Property(outputs, view=types.View(label="Quality scenario"))


class EvaluatePredictions(foo.Operator):
    """FiftyOne's own ``evaluate_classifications`` / ``evaluate_detections`` from a form: the
    panel's action when a dataset has predictions but no evaluation yet."""

    @property
    def config(self):
        return foo.OperatorConfig(
            name="evaluate_predictions", label="Evaluate predictions", dynamic=True,
            description="Evaluate a prediction field against the ground truth (FiftyOne's evaluation), "
                        "so quality can be related to performance")

    def resolve_input(self, ctx):
        inputs = types.Object()
        fields = evaluable_fields(ctx.dataset)
        pairs = [(kind, f) for kind, fs in fields.items() for f in fs]
        if not pairs:
            inputs.view("none", types.Warning(label="No Classification or Detections field to evaluate"))
            return types.Property(inputs)
        names = [f for _, f in pairs]
        inputs.enum("pred_field", names, required=True, label="Predictions", view=types.DropdownView(),
                    default=next((f for f in names if "pred" in f), names[0]))
        kind = dict((f, k) for k, f in pairs).get(ctx.params.get("pred_field") or "")
        same = [f for k, f in pairs if k == kind and f != ctx.params.get("pred_field")]
        inputs.enum("gt_field", same, required=True, label="Ground truth", view=types.DropdownView(),
                    default=next((f for f in same if "ground" in f or "gt" in f), same[0] if same else None),
                    invalid=kind is not None and not same,
                    error_message=f"no other {kind} field to compare with" if kind and not same else "")
        inputs.str("eval_key", default="eval", required=True, label="Evaluation key",
                   invalid=not str(ctx.params.get("eval_key") or "eval").isidentifier(),
                   error_message="a valid identifier, e.g. eval")
        return types.Property(inputs, view=types.View(label="Evaluate predictions"))

    def execute(self, ctx):
        p = ctx.params
        field = ctx.dataset.get_field(p["pred_field"])
        method = next(m for k, m in EVALUATIONS.items() if field.document_type is k)
        getattr(ctx.target_view(), method)(p["pred_field"], gt_field=p["gt_field"], eval_key=p["eval_key"])
        if not ctx.delegated:
            ctx.ops.reload_dataset()
        return {"eval_key": p["eval_key"]}
