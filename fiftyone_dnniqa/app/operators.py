"""FiftyOne operators: thin forms over the library."""

from __future__ import annotations

import json
import logging
import os
import time

import fiftyone as fo
import fiftyone.operators as foo
import fiftyone.operators.types as types
from fiftyone.operators.message import GeneratedMessage, MessageType

from ..analysis.report import safe_join, write_report
from ..corruptions import SUITES, build_sweep, list_corruptions, resolve_corruptions
from ..metrics.options import metric_options_with_proxy
from ..metrics.training import fit_tg_iqa
from ..scoring import (
    ShardedRun,
    ShardSpec,
    delete_quality_run,
    execute_plan,
    get_quality_run_info,
    list_quality_run_statuses,
    load_quality_run,
    plan_quality,
)
from ..scoring.patches import DEFAULT_MARGIN, DEFAULT_MIN_SIDE
from ..scoring.plan import parse_metric_options
from .forms import DELEGATE_ABOVE, DEFAULT_METRIC, IMAGES, STREAM_PARAM, compute_quality_form, metric_names
from .progress import stream_progress
from .sharding import queue_shards
from .view_operators import AddQualityScenario, EvaluatePredictions, FindHardSamples, FindHardSegments

logger = logging.getLogger(__name__)


class ComputeQuality(foo.Operator):
    @property
    def config(self):
        return foo.OperatorConfig(
            name="compute_quality",
            label="Compute image quality",
            description="Compute quality scores of the images with a DNN-aligned or a conventional (pyiqa) metric",
            dynamic=True,
            allow_immediate_execution=True,
            allow_delegated_execution=True,
            execute_as_generator=True,
        )

    def resolve_input(self, ctx):
        inputs = types.Object()
        compute_quality_form(ctx, inputs, len(ctx.target_view()))
        return types.Property(inputs, view=types.View(label="Compute image quality"))

    def resolve_execution_options(self, ctx):
        return _execution_options(ctx, DELEGATE_ABOVE)

    def execute(self, ctx):
        if _hands_off(ctx):
            return self._hand_off(ctx)
        if _streams_progress(ctx):
            return self._stream(ctx)  # the App: progress drawn from the messages yielded
        outcome = _score(ctx, lambda fraction, label: ctx.set_progress(progress=fraction, label=label))
        if not ctx.delegated:
            ctx.trigger("reload_dataset")
        return outcome

    def _hand_off(self, ctx):
        """The App's Execute: the form's dialog closes at once and the run goes on as an
        operation of its own, with the same params, that streams its progress. FiftyOne
        animates an "Executing..." bar under the progress for as long as the operation that
        the form started runs: hidden, but drawn, and on a 2-core machine a software-drawing
        browser spent about a third of a core on it that the scoring lacked."""
        yield ctx.trigger(self.uri, params={**ctx.params, STREAM_PARAM: True})

    def _stream(self, ctx):
        try:
            outcome = yield from stream_progress(
                lambda feed: _score(ctx, feed),
                lambda fraction, label: ctx.ops.set_progress(label=label, progress=fraction))
        except Exception as e:  # an exception inside a streamed response never reaches the App
            logger.exception("compute_quality failed")
            yield ctx.ops.reload_dataset()  # a run record marked failed, if one was written
            yield ctx.ops.show_output(_failure_output(failure_text(e)).to_json(), {})
            yield FailureMessage(failure_text(e))
            return
        yield ctx.ops.reload_dataset()
        yield ctx.ops.show_output(_scoring_output(outcome).to_json(), outcome)

    def __call__(self, sample_collection, metric=DEFAULT_METRIC, field=None, reference_field=None,
                 device="auto", batch_size=None, overwrite=False, label_field=None,
                 metric_options=None, decode="auto", delegate=False, proxy=None, weights=None,
                 frame_step=None):
        """Runs the operator from Python::

            op = foo.get_operator("@dnniqa/fiftyone-dnniqa/compute_quality")
            op(dataset.take(100), metric="piqe", delegate=True)
            op(dataset, metric=["aligned", "cause"])  # several metrics, one decode
            op(video_dataset, frame_step=10)  # every 10th frame of each video

        With ``delegate=True`` the run is queued for a ``fiftyone delegated
        launch`` worker; otherwise it runs now.
        """
        several = isinstance(metric, (list, tuple))
        params = dict(metric=metric[0] if several else metric, metrics=list(metric) if several else None,
                      field=None if several else field, fields=list(field) if several and field else None,
                      reference_field=reference_field, device=device,
                      batch_size=batch_size, overwrite=overwrite, label_field=label_field,
                      metric_options=json.dumps(metric_options) if isinstance(metric_options, dict)
                      else metric_options, decode=decode, proxy=proxy, weights=weights,
                      frame_step=frame_step)
        return foo.execute_operator(
            self.uri, ctx=dict(view=sample_collection.view(), params=params),
            request_delegation=delegate,
        )

    def resolve_output(self, ctx):
        results = getattr(ctx, "results", None)
        if not results:  # a streamed run shows its own output; a failed one shows its error only
            return None
        return _scoring_output(results)


def _hands_off(ctx) -> bool:
    """Whether this is the App's Execute of the form (the App's requests carry
    ``current_sample``, which Python's ``execute_operator`` does not send), which
    :meth:`ComputeQuality._hand_off` passes on as a run that streams."""
    return not ctx.delegated and not ctx.params.get(STREAM_PARAM) and "current_sample" in (ctx.request_params or {})


def _streams_progress(ctx) -> bool:
    """Whether to yield progress messages: the run the App's Execute triggered, or anyone
    passing ``STREAM_PARAM``. A Python call gets its result returned."""
    return not ctx.delegated and bool(ctx.params.get(STREAM_PARAM))


def _score(ctx, progress) -> dict:
    """Plans and runs the scoring the params ask for (or queues its shards)."""
    p = ctx.params
    started = time.perf_counter()
    shard = ShardSpec.from_params(p["shard"]) if p.get("shard") else None
    view = ctx.target_view()
    video = view.media_type == "video"  # the form offers its frames, never objects
    objects = not video and bool(p.get("patches_field")) and p.get("patches_field") != IMAGES
    names = metric_names(p)
    several = len(names) > 1
    fields = p.get("attributes") if objects else p.get("fields")
    plan = plan_quality(
        view, names if several else names[0],
        field=fields or (None if several else p.get("field")) or None,
        device=p.get("device", "auto"),
        batch_size=p.get("batch_size") or None, num_workers=p.get("num_workers"),
        overwrite=bool(p.get("overwrite", False)), reference_field=p.get("reference_field"),
        label_field=p.get("label_field") or None,
        metric_options=metric_options_with_proxy(names, _metric_options(p), p.get("proxy"), p.get("weights")),
        decode=p.get("decode") or "auto", queued=shard is None and (p.get("shards") or 1) > 1,
        progress=progress, **({"write_every": int(p["write_every"])} if p.get("write_every") else {}),
        **({"patches_field": p["patches_field"], "patch_margin": float(p.get("patch_margin", DEFAULT_MARGIN)),
            "min_patch_side": int(p.get("min_patch_side", DEFAULT_MIN_SIDE))} if objects else {}),
        # on video, None: every frame, the default level (a shard gets the queuing call's)
        **({"frame_step": p.get("frame_step"), "low_level": p.get("low_level")} if video else {}),
    )
    startup_s = time.perf_counter() - started  # building the metrics (the run's rate excludes it)
    if plan.device is None:
        outcome = _scoring_outcome(queue_shards(plan, int(p["shards"])))
    else:
        outcome = _scoring_outcome(execute_plan(plan, shard=shard))
        outcome["startup_s"] = round(startup_s, 2)
    if objects:  # scores and failure reasons are attributes of the objects
        outcome.update(unit="objects", patches_field=p["patches_field"], attributes=", ".join(plan.attributes))
    elif video:  # counts and rates are of sampled frames
        outcome["unit"] = "frames"
    return outcome


class FailureMessage(GeneratedMessage):
    """A streamed line the App reads as the operation's failure: its generator client takes a
    line's top-level ``error`` as the run's error, ends the run and shows the message."""

    def __init__(self, message: str):
        super().__init__(type=MessageType.ERROR)
        self.message = message

    def to_json(self):
        return {"type": str(self.type), "cls": None, "body": None, "error": self.message}


def failure_text(error: BaseException) -> str:
    """What the App shows for a failed run: the error's message, its type when it has none."""
    return str(error).strip() or type(error).__name__


def _metric_options(params):
    """Metric options from the form (a JSON object as text) or from Python (a dict)."""
    value = params.get("metric_options")
    if not value:
        return None
    return parse_metric_options(value) if isinstance(value, str) else value


def _scoring_outcome(results) -> dict:
    """The operator's output for a scoring call's results."""
    if isinstance(results, ShardedRun):
        return {"field": ", ".join(results.fields), "status": "queued",
                "queued": len(results.operation_ids), "operation_ids": results.operation_ids}
    results = list(results.values()) if isinstance(results, dict) else [results]
    return {
        "field": ", ".join(r.key for r in results), "status": results[0].status,
        "scored": sum(r.num_scored for r in results), "failed": sum(r.num_failed for r in results),
        "images_per_s": results[0].images_per_s,
    }


def _scoring_output(result: dict):
    """The result dialog: only the rows this run has, the error field by its name."""
    outputs = types.Object()
    outputs.str("field", label="Field")
    if result.get("queued"):
        outputs.int("queued", label="Delegated operations queued (sharded runs)")
        return types.Property(outputs, view=types.View(label="Quality scoring queued"))
    unit = result.get("unit") or "images"  # what was scored: images, objects, frames of videos
    several = "," in str(result.get("field", ""))
    outputs.int("scored", label=f"{unit.capitalize()} scored" + (" (added over the metrics)" if several else ""))
    if result.get("failed"):
        frames = "frames." if unit == "frames" else ""
        errors = ", ".join(f"{frames}{f.strip()}_error" for f in str(result.get("field", "")).split(","))
        attributes = ", ".join(f"{a.strip()}_error" for a in str(result.get("attributes", "")).split(","))
        where = f"{attributes} of each object of {result.get('patches_field')}" if unit == "objects" else errors
        outputs.int("failed", label=f"{unit.capitalize()} that could not be scored (reasons in {where})")
    if result.get("startup_s") is not None:
        outputs.float("startup_s", label="Start-up: building the metric (seconds)")
    outputs.float("images_per_s", label=f"{unit.capitalize()} per second (after building the metric)")
    return types.Property(outputs, view=types.View(label="Quality scores stored"))


def _failure_output(message: str):
    """The dialog of a run that failed: its error, in place of the progress."""
    outputs = types.Object()
    outputs.view("failure", types.Error(label="Quality scoring failed", description=message))
    return types.Property(outputs, view=types.View(label="Quality scoring failed"))


def _run_choice(ctx, inputs, description):
    runs = list_quality_run_statuses(ctx.dataset)
    if not runs:
        inputs.view("none", types.Warning(label="This dataset has no quality runs yet"))
        return None
    choices = types.DropdownView()
    for key, run in runs.items():
        status = run["status"]
        choices.add_choice(key, label=key if status == "completed" else f"{key} ({status})",
                           description=run["error"] if status == "failed" else None)
    keys = list(runs)
    inputs.enum("run_key", keys, default=keys[0], required=True, label="Quality run",
                description=description, view=choices)
    return keys


class GetQualityRun(foo.Operator):
    @property
    def config(self):
        return foo.OperatorConfig(
            name="get_quality_run", label="Show a quality run", dynamic=True,
            description="Show the configuration, counts, timing and failures of a quality run",
            view_target=False,
        )

    def resolve_input(self, ctx):
        inputs = types.Object()
        _run_choice(ctx, inputs, "Run to show")
        return types.Property(inputs, view=types.View(label="Show a quality run"))

    def execute(self, ctx):
        key = ctx.params["run_key"]
        info = get_quality_run_info(ctx.dataset, key)
        results = load_quality_run(ctx.dataset, key)
        failures = list(results.failures.items())[:50]
        return {
            "config": info.config.serialize(),
            "status": results.status, "scored": results.num_scored, "failed": results.num_failed,
            "with_scores": results.num_with_scores, "elapsed_s": results.elapsed_s,
            "failures": [{"id": i, "reason": r} for i, r in failures],
        }

    def resolve_output(self, ctx):
        outputs = types.Object()
        outputs.str("status", label="Status")
        outputs.int("scored", label="Scored in the last call")
        outputs.int("failed", label="Failed in the last call")
        outputs.int("with_scores", label="Samples holding a score")
        outputs.float("elapsed_s", label="Seconds")
        outputs.obj("config", label="Configuration", view=types.JSONView())
        table = types.TableView()
        table.add_column("id", label="Sample")
        table.add_column("reason", label="Reason")
        outputs.list("failures", types.Object(), label="Failures (first 50)", view=table)
        return types.Property(outputs, view=types.View(label="Quality run"))


class DeleteQualityRun(foo.Operator):
    @property
    def config(self):
        return foo.OperatorConfig(
            name="delete_quality_run", label="Delete a quality run", dynamic=True,
            description="Remove a quality run: its record and the score fields it created",
            view_target=False,
        )

    def resolve_input(self, ctx):
        inputs = types.Object()
        keys = _run_choice(ctx, inputs, "Run to delete")
        if keys:
            key = ctx.params.get("run_key") or keys[0]
            inputs.view("warning", types.Warning(
                label=f"This deletes the fields '{key}' and '{key}_error' from every sample"))
        return types.Property(inputs, view=types.View(label="Delete a quality run"))

    def execute(self, ctx):
        delete_quality_run(ctx.dataset, ctx.params["run_key"])
        ctx.trigger("reload_dataset")
        return {"deleted": ctx.params["run_key"]}


class WriteQualityReport(foo.Operator):
    @property
    def config(self):
        return foo.OperatorConfig(
            name="write_quality_report", label="Write a quality report", dynamic=True,
            description="Write a self-contained HTML report of the dataset's quality runs",
            view_target=False,
        )

    def resolve_input(self, ctx):
        inputs = types.Object()
        inputs.str("folder", required=True, label="Folder",
                   default=os.path.join(fo.config.default_dataset_dir, "reports"),
                   description="Folder to write the report in (created if missing)")
        inputs.str("filename", required=True, label="File name",
                   default=f"{ctx.dataset.name}-quality.html", description="A plain file name")
        inputs.bool("overwrite", default=False, label="Overwrite an existing file")
        evals = ctx.dataset.list_evaluations()
        if evals:
            inputs.enum("eval_key", evals, default=None, required=False, label="Evaluation",
                        description="Relate quality to this evaluation (default: the newest)",
                        view=types.DropdownView())
        return types.Property(inputs, view=types.View(label="Write a quality report"))

    def execute(self, ctx):
        p = ctx.params
        folder = p["folder"]
        path = safe_join(folder, p["filename"]) if folder else None
        if path is None:
            raise ValueError("choose a folder")
        os.makedirs(folder, exist_ok=True)
        write_report(ctx.dataset, path, overwrite=bool(p.get("overwrite", False)),
                     eval_key=p.get("eval_key") or None)
        return {"path": path}

    def resolve_output(self, ctx):
        outputs = types.Object()
        outputs.str("path", label="Report written to")
        return types.Property(outputs, view=types.View(label="Quality report"))


def _execution_options(ctx, delegate_above: int):
    """Immediate or delegated; delegated by default for views larger than ``delegate_above``."""
    return foo.ExecutionOptions(allow_immediate_execution=True, allow_delegated_execution=True,
                                default_choice_to_delegated=len(ctx.target_view()) > delegate_above)


class BuildCorruptionSweep(foo.Operator):
    @property
    def config(self):
        return foo.OperatorConfig(
            name="build_corruption_sweep", label="Build a corruption sweep", dynamic=True,
            description="Write corrupted copies (ImageNet-C, Dodge & Karam) of the view's images "
                        "into a new dataset, one sample per image, corruption and severity",
            allow_immediate_execution=True, allow_delegated_execution=True,
        )

    def resolve_input(self, ctx):
        inputs = types.Object()
        choices = list(SUITES) + list_corruptions()
        inputs.list("corruptions", types.String(), default=["imagenet_c"], label="Corruptions",
                    description=f"Suites ({', '.join(SUITES)}) and/or corruption names",
                    view=types.AutocompleteView(choices=[types.Choice(c, label=c) for c in choices]))
        inputs.list("severities", types.Number(int=True, min=1, max=5), default=[1, 2, 3, 4, 5], label="Severities (1..5)")
        inputs.str("name", default=f"{ctx.dataset.name}-sweep", required=True, label="New dataset name")
        inputs.str("output_dir", required=True, label="Folder for the images",
                   default=os.path.join(fo.config.default_dataset_dir, f"{ctx.dataset.name}-sweep"))
        inputs.int("crop", default=224, required=False, label="Center crop",
                   description="Resize the shorter side to crop/0.875 and center-crop (ImageNet-C "
                               "protocol); blank keeps native sizes")
        n = len(ctx.target_view())
        try:
            k = len(resolve_corruptions(ctx.params.get("corruptions") or ["imagenet_c"]))
            k *= len(ctx.params.get("severities") or [1, 2, 3, 4, 5])
            inputs.view("size_note", types.Notice(label=f"{n} images x {k} variants = {n * (k + 1)} samples"))
        except ValueError as e:
            inputs.view("bad_corruptions", types.Error(label="Unknown corruption", description=str(e)))
        return types.Property(inputs, view=types.View(label="Build a corruption sweep"))

    def resolve_execution_options(self, ctx):
        return _execution_options(ctx, delegate_above=50)

    def execute(self, ctx):
        p = ctx.params
        crop = p.get("crop")
        ds = build_sweep(
            ctx.target_view(), p["output_dir"], name=p["name"], corruptions=p.get("corruptions") or None,
            severities=p.get("severities") or (1, 2, 3, 4, 5),
            resize=round(crop / 0.875) if crop else None, crop=crop or None, persistent=True,
            progress=lambda f, label: ctx.set_progress(progress=f, label=label),
        )
        return {"dataset": ds.name, "samples": len(ds), "skipped": len(ds.info.get("skipped", {}))}

    def resolve_output(self, ctx):
        outputs = types.Object()
        outputs.str("dataset", label="Sweep dataset")
        outputs.int("samples", label="Samples")
        outputs.int("skipped", label="Unreadable source images skipped")
        return types.Property(outputs, view=types.View(label="Corruption sweep"))


class FitTGIQA(foo.Operator):
    @property
    def config(self):
        return foo.OperatorConfig(
            name="fit_tg_iqa", label="Fit a TG-IQA quality head", dynamic=True,
            description="Train the task-guided quality head on corrupted copies of labelled images",
            allow_immediate_execution=True, allow_delegated_execution=True,
        )

    def resolve_input(self, ctx):
        inputs = types.Object()
        n = len(ctx.target_view())  # also offers the App's target choice (dataset, view, selection)
        label_fields = list(ctx.dataset.get_field_schema(
            ftype=fo.EmbeddedDocumentField, embedded_doc_type=fo.Classification))
        if not label_fields:
            inputs.view("no_labels", types.Error(label="This dataset has no Classification field to learn from"))
            return types.Property(inputs)
        inputs.enum("label_field", label_fields, default=label_fields[0], required=True, label="Label field",
                    view=types.DropdownView())
        inputs.str("path", required=True, label="Folder to save the head in",
                   default=os.path.join(fo.config.default_dataset_dir, "tg_iqa", ctx.dataset.name))
        inputs.int("copies", default=6, label="Corrupted copies per image",
                   description=f"{n} images in the target")
        inputs.bool("overwrite", default=False, label="Replace a head already there")
        return types.Property(inputs, view=types.View(label="Fit TG-IQA"))

    def resolve_execution_options(self, ctx):
        return _execution_options(ctx, delegate_above=200)

    def execute(self, ctx):
        p = ctx.params
        metric = fit_tg_iqa(ctx.target_view(), p["label_field"], p["path"], copies=int(p.get("copies") or 6),
                            overwrite=bool(p.get("overwrite", False)),
                            progress=lambda f, label: ctx.set_progress(progress=f, label=label))
        cfg = metric.config
        return {"path": metric.path, "examples": cfg["num_examples"], "mean_correct": cfg["mean_correct"],
                "usage": f"compute_quality(view, 'tg_iqa', metric_options={{'path': '{metric.path}'}})"}

    def resolve_output(self, ctx):
        outputs = types.Object()
        outputs.str("path", label="Saved to")
        outputs.int("examples", label="Training examples")
        outputs.float("mean_correct", label="Share of copies classified correctly")
        outputs.str("usage", label="Score with")
        return types.Property(outputs, view=types.View(label="TG-IQA head"))


OPERATORS = (ComputeQuality, GetQualityRun, DeleteQualityRun, WriteQualityReport,
             BuildCorruptionSweep, FitTGIQA, FindHardSamples, FindHardSegments, AddQualityScenario,
             EvaluatePredictions)
