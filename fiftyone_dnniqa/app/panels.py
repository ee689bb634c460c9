"""The "Quality vs Performance" panel: a thin App face over
:mod:`fiftyone_dnniqa.analysis.panel_stats` and :mod:`.plots`.

The user's inputs live in panel state, what the panel shows (plots, tables, the inputs'
resolved values) in panel data; an in-process cache keyed by
view, fields and target saves recomputation on re-renders and view round trips; the
callbacks set the App's view. The panel's numbers describe the App's view with its sidebar
filters; the events the App fires by itself write no App panel state and the inputs carry
no default (:class:`~.panel_cache.PanelState`): either would reload the App's page, which
drops those filters (issue 28 item 2).
"""

from __future__ import annotations

import fiftyone.operators as foo
import fiftyone.operators.types as types

from ..analysis.breakdowns import SLICES, available_slices, cause_sentence, cause_summary, slice_table
from ..analysis.expectation import expectation_sentence, expected_view_accuracy
from ..analysis.panel_stats import (
    N_BOOT,
    TARGET_LABELS,
    NoQualityFieldsError,
    OUTCOMES,
    bin_id,
    bin_view,
    no_quality_message,
    numeric_fields,
    outcome_view,
    panel_statistics,
    parse_bin_id,
    rankable_fields,
)
from ..analysis.results import fmt
from ..analysis.targets import NoEvaluationError, get_target, list_targets
from .drill_down import back, context_view, drill_down, event_args, origin_view
from .object_panel import object_choices, object_data, render_objects, show_bin
from .panel_cache import CACHE, SHOWN, PanelState, cache_key
from .panel_tables import run_rows, unwrapped
from .plots import plot_traces
from .sample_panel import keep_standing, render_standing
from .video_panel import VideoMode, render_video, video_choices, video_update
from .view_operators import evaluable_fields
from .sharding import PLUGIN_NAME

__all__ = ["QualityPerformancePanel", "PANELS", "PLOTS", "CACHE", "SHOWN", "cache_key", "unwrapped"]

#: the operator behind the panel's "Quality bins in Model Evaluation" button
ADD_SCENARIO_URI = f"{PLUGIN_NAME}/add_quality_scenario"


_EMPTY_DATA = {"ranking": [], "slices": [], "runs": [], "object_table": [], "object_strata": [], "worst_videos": []}
#: the plots: their traces go in the plot's view, never in panel data or state (below)
PLOTS = ("curve", "histogram", "scatter", "object_bars", "timeline")
#: the operator behind the panel's "Evaluate predictions" button (no evaluation yet)
EVALUATE_URI = f"{PLUGIN_NAME}/evaluate_predictions"
#: the operator behind the panel's "Compute image quality" button
COMPUTE_URI = f"{PLUGIN_NAME}/compute_quality"


def _show(ctx, state_update, data, figures=None):
    """Replaces what the panel shows: ``data`` and the inputs' values go to panel data,
    the plots' traces (``figures``, by plot name) into the plots' views at render.

    The App renders lodash ``merge(state, data)``, which merges arrays index by index, and
    its form copies what it renders into the state when the user changes an input: so an
    event from the user clears the state's copies of the old tables (else a shorter table
    keeps the old table's last rows). The App's own events write no App state
    (:class:`~.panel_cache.PanelState`). Plot traces stay out of panel data: the App's form
    writes its whole state each time a plot's data changes (FiftyOne 1.22), which, like a
    state write, reloads the page and drops the sidebar filters; a plot given its traces in
    its view has no data, and ``None`` there hides any copy the state still holds."""
    state = PanelState(ctx)
    state.set(state_update)
    state.keep("figures", figures or {})
    if not state.quiet:
        ctx.panel.state.set({k: None for k in (*_EMPTY_DATA, *PLOTS)})
    ctx.panel.data.set({**_EMPTY_DATA, **data, **dict.fromkeys(PLOTS), **state.shown_inputs(),
                        "runs": run_rows(ctx.dataset)})


def _target_value(eval_key, kind):
    return f"{eval_key}:{kind}"


def _parse_target(value):
    if not value or ":" not in str(value):
        return None, None
    key, kind = str(value).rsplit(":", 1)
    return key, kind


def _slice_choice(value, options) -> str:
    """The breakdown to show: the user's choice where the view allows it, else the class
    for classifications, else none."""
    if value in options or value == "none":
        return value
    return "class" if "class" in options else "none"


def _expected(view, stats, field):
    """The header's expected-accuracy sentence for ``field``, kept with the cached
    statistics of the view (it reads the whole dataset)."""
    if stats["kind"] != "correct":
        return None
    memo = stats.setdefault("expected", {})
    if field not in memo:
        memo[field] = expectation_sentence(expected_view_accuracy(
            view, field, stats["eval_key"], stats["higher_is_better"][field]))
    return memo[field]


class QualityPerformancePanel(VideoMode, foo.Panel):
    """Ranks the quality fields by how well they track a performance target and plots
    the target against quality; clicking a bin or lassoing points shows those samples."""

    @property
    def config(self):
        return foo.PanelConfig(
            name="quality_vs_performance",
            label="Quality vs Performance",
            surfaces="grid modal",
            icon="insights",
            help_markdown=(
                "How well do image-quality scores track model performance? The table ranks "
                "the quality fields by Spearman correlation with the chosen target "
                f"(bootstrap {N_BOOT} resamples). Clicking a point of the curve or a bar of the "
                "histogram, or lassoing points of the scatter, shows those samples in the grid; "
                "the plots keep describing the view you started from, with the selection "
                "highlighted, until you press Back (or change the view yourself). On videos scored frame "
                "by frame: the quality of the sampled frames over time beside the frame evaluation's "
                "errors; clicking a point shows its clip. In the sample viewer, the panel plots the video "
                "open there and follows it from video to video; beside an image, it says first where that "
                "image stands in the view, its predicted cause and its evaluation."),
        )

    # -- events --------------------------------------------------------------

    def on_load(self, ctx):
        SHOWN.put(ctx.panel.id or "panel", {})  # a panel (re)opened: what the App holds counts
        self._refresh(ctx, force=True)

    def on_change_view(self, ctx):
        self._refresh(ctx)

    def on_change_current_sample(self, ctx):
        """A sample opened, changed or closed in the sample viewer: the image's standing
        above the view's cached statistics, or the timeline of the video open there."""
        self._refresh(ctx)

    def on_change_dataset(self, ctx):
        PanelState(ctx).set({"target": None, "fields": None, "field": None, "stats_key": None})
        self._refresh(ctx, force=True)

    def on_change_target(self, ctx):
        self._refresh(ctx, target=ctx.params.get("value"))

    def on_change_fields(self, ctx):
        value = ctx.params.get("value") or []
        if isinstance(value, str):
            value = [value]
        value = [v.get("value") if isinstance(v, dict) else v for v in value]
        self._refresh(ctx, fields=[v for v in value if isinstance(v, str)])

    def on_change_field(self, ctx):
        self._refresh(ctx, field=ctx.params.get("value"))

    def on_change_mode(self, ctx):
        PanelState(ctx).set("mode", ctx.params.get("value") or "images")
        self._refresh(ctx, force=True)

    def on_change_object_run(self, ctx):
        PanelState(ctx).set("object_run", ctx.params.get("value"))
        self._refresh(ctx, force=True)

    def on_click_back(self, ctx):
        back(ctx)

    def on_click_object_bars(self, ctx):
        view = show_bin(origin_view(ctx), PanelState(ctx).get("object_summary") or {}, event_args(ctx))
        if view is None:
            ctx.ops.notify("Could not tell which bin was clicked", variant="warning")
            return
        drill_down(ctx, view, None, f"{len(view)} objects of the clicked quality bin")

    def on_change_slice(self, ctx):
        PanelState(ctx).set("slice_by", ctx.params.get("value") or "none")
        self._refresh(ctx, force=True)

    def on_click_curve(self, ctx):
        self._show_bin(ctx, "curve")

    def on_click_histogram(self, ctx):
        self._show_bin(ctx, "histogram")

    def on_select_scatter(self, ctx):
        points = event_args(ctx).get("data") or []
        ids = list(dict.fromkeys(p.get("id") for p in points if isinstance(p, dict) and p.get("id")))
        if not ids:
            return
        origin = origin_view(ctx)
        drill_down(ctx, origin.select(ids), {"ids": ids}, f"{len(ids)} lassoed samples", origin)

    # -- helpers -------------------------------------------------------------

    def _choices(self, ctx):
        ds = ctx.dataset
        targets = list_targets(ds)
        target_choices = [(_target_value(t.eval_key, k),
                           f"{t.eval_key}: {TARGET_LABELS.get(k, k)} ({t.type}, {t.pred_field})")
                          for t in targets for k in t.kinds]
        default_target = _target_value(targets[0].eval_key, targets[0].default_kind) if targets else None
        quality = rankable_fields(ds)  # image runs, then the object runs' per-image means
        others = [f for f in numeric_fields(ds) if f not in quality]
        return {"targets": target_choices, "default_target": default_target,
                "quality": quality, "fields": quality + others}

    def _refresh(self, ctx, force=False, target=None, fields=None, field=None):
        state = PanelState(ctx)
        videos = video_choices(ctx.dataset)
        if videos:  # frames of videos: app/video_panel.py
            _show(ctx, *video_update(ctx, videos))
            return
        if state.get("mode") == "objects" and object_choices(ctx.dataset):
            self._refresh_objects(ctx, target or state.get("target"))
            return
        ch = self._choices(ctx)
        valid_targets = [v for v, _ in ch["targets"]]
        target = target or state.get("target")
        if target not in valid_targets:
            target = ch["default_target"]
        if fields is None:
            fields = state.get("fields")
            if fields is None:
                fields = ch["quality"]
        fields = [f for f in fields if f in ch["fields"]]
        field = field or state.get("field")
        if field not in fields:
            field = None
        update = {"mode": "images", "target": target, "fields": fields, "field": field}
        keep_standing(ctx, fields, _parse_target(target)[0])  # the image open in the sample viewer

        message = None
        if target is None:
            try:
                get_target(ctx.view)
                message = "This dataset has no evaluation to take performance from."
            except NoEvaluationError as e:
                message = str(e)
        elif not fields:
            message = (no_quality_message() if not ch["quality"]
                       else "Pick at least one quality field to rank.")
        if message:
            update.update({"message": message, "stats_key": None, "summary": None})
            _show(ctx, update, _EMPTY_DATA)
            return

        eval_key, kind = _parse_target(target)
        view, drill = context_view(ctx)
        view = ctx.view if view is None else view
        key = cache_key(view, fields, eval_key, kind)
        if (not force and key == state.get("stats_key") and field and field == state.get("field")
                and state.get("figures") is not None
                and (drill or {}).get("stages") == (state.get("shown_drill") or {}).get("stages")):
            return  # the App already shows these statistics
        stats = CACHE.get(key)
        if stats is None:
            try:
                stats = panel_statistics(view, fields, eval_key, kind)
            except (NoEvaluationError, NoQualityFieldsError, ValueError) as e:
                update.update({"message": str(e), "stats_key": None, "summary": None})
                _show(ctx, update, _EMPTY_DATA)
                return
            CACHE.put(key, stats)
        field = field if field in stats["per_field"] else stats["field"]
        figs = plot_traces(stats, field, highlight=(drill or {}).get("highlight"))
        slice_options = available_slices(view, stats["eval_key"])
        slice_by = _slice_choice(state.get("slice_by"), slice_options)
        slices = (slice_table(view, field, slice_by, stats["eval_key"], stats["kind"],
                              higher_is_better=stats["higher_is_better"][field]) if slice_by != "none" else [])
        update.update({
            "slice_by": slice_by, "shown_drill": drill,
            "drill_summary": {"n": len(ctx.view), "label": drill["label"]} if drill else None,
            "field": field, "stats_key": key, "message": None,
            "summary": {
                "n_samples": stats["n_samples"], "n_target": stats["n_target"],
                "eval_key": stats["eval_key"], "kind": stats["kind"],
                "target_label": stats["target_label"], "binary": stats["binary"],
                "best": stats["field"], "slice_options": slice_options, "n_slices": len(slices),
                "why": cause_sentence(cause_summary(view, stats["eval_key"])) if "cause" in slice_options else None,
                "expected": _expected(view, stats, field),
                "seconds": round(stats["timings"]["total_s"], 3),
                "any_missing": any(r["missing"] for r in stats["table"]),
                "layouts": {k: (f["layout"] if f else None) for k, f in figs.items()},
                "bins": {k: (f.get("bins") if f else None) for k, f in figs.items()},
            },
        })
        _show(ctx, update, {"ranking": unwrapped(stats["table"]), "slices": unwrapped(slices)},
              figures={k: (f["data"] if f else []) for k, f in figs.items()})

    def _refresh_objects(self, ctx, target):
        """Object mode: the chosen object run against the chosen detection evaluation."""
        state, ch = PanelState(ctx), object_choices(ctx.dataset)
        run = state.get("object_run") if state.get("object_run") in ch["runs"] else ch["runs"][0]
        eval_key = _parse_target(target)[0]
        eval_key = eval_key if eval_key in ch["evals"] else ch["evals"][0]
        view, drill = context_view(ctx)
        update = {"mode": "objects", "object_run": run, "shown_drill": drill, "summary": None,
                  "drill_summary": {"n": len(ctx.view), "label": drill["label"]} if drill else None}
        try:
            data = object_data(ctx.view if view is None else view, run, eval_key)
        except ValueError as e:
            _show(ctx, {**update, "object_summary": None, "object_message": str(e)}, _EMPTY_DATA)
            return
        _show(ctx, {**update, "object_summary": data["summary"], "object_message": None},
              {"object_table": unwrapped(data["table"]), "object_strata": unwrapped(data["strata"])},
              figures={"object_bars": data["bars"]})

    def _show_bin(self, ctx, plot):
        args = event_args(ctx)
        spec = parse_bin_id(args.get("id"))
        if spec is None:  # fall back on the point index and the bins in state
            bins = (PanelState(ctx).get("summary") or {}).get("bins", {}).get(plot) or []
            idx = args.get("idx")
            if isinstance(idx, int) and 0 <= idx < len(bins):
                outcome = args.get("trace") if plot == "histogram" and args.get("trace") in OUTCOMES else None
                spec = (*bins[idx][:4], outcome)
        if spec is None:
            ctx.ops.notify("Could not tell which bin was clicked", variant="warning")
            return
        field, lo, hi, last, outcome = spec
        if not ctx.view.has_field(field):
            ctx.ops.notify(f"No field '{field}' in the current view", variant="warning")
            return
        origin = origin_view(ctx)  # a second click drills from the same view
        view = bin_view(origin, field, float(lo), float(hi), bool(last))
        summary = PanelState(ctx).get("summary") or {}
        if outcome and summary.get("eval_key"):
            view = outcome_view(view, summary["eval_key"], summary["kind"], outcome)
        label = (f"{field} in [{fmt(float(lo))}, {fmt(float(hi))}{']' if last else ')'}"
                 + (f", {outcome} predictions" if outcome else ""))
        drill_down(ctx, view, {"bin": bin_id(field, lo, hi, last, outcome=outcome)}, label, origin)

    # -- layout --------------------------------------------------------------

    def render(self, ctx):
        panel = types.Object()
        state = PanelState(ctx)
        ch = self._choices(ctx)
        summary = state.get("summary") or {}
        layouts = summary.get("layouts") or {}

        self._render_header(panel, state, summary)
        panel.btn("compute", label="Compute image quality", icon="add", variant="outlined",
                  on_click=COMPUTE_URI, prompt=True)
        if ch["quality"]:
            runs = types.TableView()
            for c, label in (("run", "Quality run (field)"), ("metric", "Metric"), ("status", "Status")):
                runs.add_column(c, label=label)
            panel.list("runs", types.Object(), view=runs, label="Quality runs of this dataset")

        videos = video_choices(ctx.dataset)
        if videos:
            render_video(panel, state, videos, self)
            return types.Property(panel)
        objects = object_choices(ctx.dataset)
        if objects:
            modes = types.RadioGroup(orientation="horizontal")
            modes.add_choice("images", label="Images")
            modes.add_choice("objects", label="Objects")
            panel.enum("mode", modes.values(), label="Relate quality to performance of", view=modes,
                       on_change=self.on_change_mode)
            if state.get("mode") == "objects":
                render_objects(panel, state, objects, self.on_change_object_run, self.on_click_object_bars)
                return types.Property(panel)
        if ch["targets"]:
            dd = types.DropdownView()
            for value, label in ch["targets"]:
                dd.add_choice(value, label=label)
            panel.enum("target", dd.values(), label="Performance target", view=dd,
                       on_change=self.on_change_target)
        if ch["fields"]:
            ac = types.AutocompleteView(allow_user_input=False, allow_duplicates=False)
            for f in ch["fields"]:
                ac.add_choice(f, label=f)
            panel.list("fields", types.String(), label="Quality fields to rank", view=ac,
                       on_change=self.on_change_fields)

        if self._render_message(ctx, panel, state, ch):
            return types.Property(panel)

        if not summary:
            panel.view("loading", types.Notice(label="Computing statistics..."))
            return types.Property(panel)

        fields = state.get("fields") or []
        if fields:
            panel.enum("field", fields, label="Field to plot", view=types.DropdownView(),
                       on_change=self.on_change_field)

        table = types.TableView()
        cols = ["field", "direction", "spearman", "kendall", "pearson"]
        if summary.get("binary"):
            cols.append("auroc")
        cols += ["n", "missing"] if summary.get("any_missing") else ["n"]
        labels = {"spearman": "Spearman rho [CI]", "kendall": "Kendall tau [CI]",
                  "pearson": "Pearson r [CI]", "auroc": "AUROC [CI]", "n": "n",
                  "missing": "missing", "field": "Quality field", "direction": "Better"}
        for c in cols:
            table.add_column(c, label=labels[c])
        panel.list("ranking", types.Object(), view=table,
                   label="Quality fields ranked by alignment with the target (best first)")
        if state.get("field") in ch["quality"] and summary.get("eval_key"):
            panel.btn("add_scenario", label="Quality bins in Model Evaluation", icon="add_chart",
                      variant="outlined", on_click=ADD_SCENARIO_URI, prompt=True,
                      params={"eval_key": summary["eval_key"], "field": state.get("field")})

        self._render_slices(panel, state, summary)

        config = {"displaylogo": False, "responsive": True}
        figures = state.get("figures") or {}
        if layouts.get("curve"):
            panel.plot("curve", data=figures.get("curve"), layout=layouts["curve"], config=config,
                       height=380, on_click=self.on_click_curve)
        if layouts.get("histogram"):
            panel.plot("histogram", data=figures.get("histogram"), layout=layouts["histogram"],
                       config=config, height=340, on_click=self.on_click_histogram)
        if layouts.get("scatter"):
            panel.plot("scatter", data=figures.get("scatter"), layout=layouts["scatter"], config=config,
                       height=380, on_selected=self.on_select_scatter)
        return types.Property(panel)

    def _render_message(self, ctx, panel, state, ch) -> bool:
        """Why there is nothing to show, with the action that fixes it where there is one
        (evaluate the predictions); True when a message was shown."""
        message = state.get("message")
        if not message:
            return False
        panel.view("message", types.Warning(label="Nothing to show yet", description=message))
        if not ch["targets"] and any(len(v) > 1 for v in evaluable_fields(ctx.dataset).values()):
            panel.btn("evaluate", label="Evaluate predictions", icon="fact_check", variant="outlined",
                      on_click=EVALUATE_URI, prompt=True)
        return True

    def _render_header(self, panel, state, summary):
        """The image open in the sample viewer first, then what the numbers describe (the
        view, or during a drill-down the view it started from) and the Back button."""
        render_standing(panel, state)
        drill = state.get("drill_summary")
        if summary and drill:
            panel.md(f"**{drill['n']:,}** samples in the grid ({drill['label']}). The plots and tables "
                     f"describe the **{summary['n_samples']:,}** samples of the view before the "
                     f"drill-down, **{summary['n_target']:,}** with a target ({summary['eval_key']}: "
                     f"{summary['target_label']}), the selection highlighted.", name="header")
        elif summary:
            panel.md(f"**{summary['n_samples']:,}** samples in the view, **{summary['n_target']:,}** "
                     f"with a target ({summary['eval_key']}: {summary['target_label']}); "
                     f"intervals from {N_BOOT} bootstrap resamples.", name="header")
        if summary and summary.get("expected"):
            panel.md(f"**Expected**: {summary['expected']}.", name="expected")
        if state.get("base_view"):
            panel.btn("back", label="Back to the view before the drill-down", icon="undo",
                      variant="outlined", on_click=self.on_click_back)

    def _render_slices(self, panel, state, summary):
        """The breakdown chooser and its table (worst slice first)."""
        by = state.get("slice_by") or "none"
        choices = ["none"] + list(summary.get("slice_options") or [])
        if summary.get("why"):
            panel.md(f"**Why**: {summary['why']}.", name="why")
        dd = types.DropdownView()
        for c in choices:
            dd.add_choice(c, label="no breakdown" if c == "none" else f"by {SLICES[c]}")
        panel.enum("slice_by", dd.values(), label="Break down by", view=dd, on_change=self.on_change_slice)
        if by == "none":
            return
        table = types.TableView()
        tl = summary.get("target_label", "target")
        columns = [("slice", SLICES[by].capitalize()), ("n", "n"), ("target", f"{tl} [CI]")]
        if summary.get("kind") == "correct":
            columns.append(("expected", "expected from quality [90% CI]"))
        columns += [("mean_quality", f"mean {state.get('field')}"), ("within", "Spearman within [CI]")]
        for c, label in columns:
            table.add_column(c, label=label)
        if not summary.get("n_slices"):
            panel.view("no_slices", types.Notice(label=f"No {SLICES[by]} holds at least 2 samples of this view"))
            return
        panel.list("slices", types.Object(), view=table,
                   label=f"{tl.capitalize()} per {SLICES[by]}, worst first ({state.get('field')})")


PANELS = (QualityPerformancePanel,)
