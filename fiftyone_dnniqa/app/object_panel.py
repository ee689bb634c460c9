"""The "Quality vs Performance" panel in object mode: per-object quality against what a
detection evaluation found and missed (:func:`~fiftyone_dnniqa.analysis.objects.object_statistics`),
with box size beside it; a click on a quality bin shows those objects as patches."""

from __future__ import annotations

import json
from typing import Optional

import fiftyone.operators.types as types

from ..analysis.objects import SIDES, object_bin_view, object_quality_runs, object_statistics
from ..analysis.results import fmt, fmt_ci, fmt_size
from ..analysis.targets import list_targets

__all__ = ["MODES", "object_choices", "object_data", "object_bin_of_click", "render_objects"]

#: what the panel can relate to performance
MODES = {"images": "images", "objects": "objects"}
#: bootstrap resamples of the object statistics in the panel
N_BOOT = 200


def object_choices(dataset) -> dict:
    """The object runs and detection evaluations the object mode can use (empty when it
    cannot be offered)."""
    runs = object_quality_runs(dataset)
    evals = [t.eval_key for t in list_targets(dataset) if t.type == "detection"]
    return {"runs": [r["key"] for r in runs], "evals": evals} if runs and evals else {}


def _ci(d, reason=None) -> str:
    """An estimate dict (``estimate``, ``ci_low``, ``ci_high``, maybe ``note``) in the one
    number format; "n/a (why)" when there is no estimate."""
    return fmt_ci(d.get("estimate"), d.get("ci_low"), d.get("ci_high"), reason=d.get("note") or reason)


def _pair_row(name, stats):
    s, a = stats["spearman"], stats["auroc"]
    return {"score": name, "spearman": _ci(s, "too few objects"), "auroc": _ci(a, "one outcome only"),
            "n": s["n"]}


def _stratum_row(r, unit) -> dict:
    """One size stratum: its box areas as plain numbers, its rate and quality's AUROC."""
    return {"size": f"{fmt_size(r['area_lo'])} to {fmt_size(r['area_hi'])} {unit}", "n": r["n"],
            "rate": fmt_ci(r["rate"], r["ci_low"], r["ci_high"]),
            "auroc": _ci(r["auroc"], "one outcome only")}


def object_data(view, run_key: str, eval_key: Optional[str]) -> dict:
    """Tables and figure of object mode for ``view``: the run's attribute on its objects,
    against the evaluation's outcome for them (ground truth: found vs missed; predictions:
    matched vs false)."""
    run = {r["key"]: r for r in object_quality_runs(view)}[run_key]
    ti = next(t for t in list_targets(view) if t.eval_key == eval_key)
    if run["patches_field"] not in (ti.gt_field, ti.pred_field):
        raise ValueError(f"'{run_key}' scores the objects of '{run['patches_field']}', which evaluation "
                         f"'{eval_key}' does not evaluate ({ti.gt_field} against {ti.pred_field})")
    side = "gt" if run["patches_field"] == ti.gt_field else "pred"
    st = object_statistics(view, run["attribute"], eval_key=eval_key, side=side, n_boot=N_BOOT).to_dict()
    correct, error, rate = SIDES[side]
    given = st["given_size"]
    quality_row = {**_pair_row(f"{run['attribute']} (quality)", st["quality"]),
                   "given_size": _ci(given, "no stratum holds both outcomes")}
    table = [quality_row, {**_pair_row("box area", st["size"]), "given_size": ""}]
    strata = [_stratum_row(r, st["area_unit"]) for r in st["strata"] if r["n"]]
    rows = [b for b in st["bins"] if b["n"]]
    last = len(st["bins"]) - 1
    ids = [json.dumps([b["lo"], b["hi"], i == last]) for i, b in enumerate(st["bins"]) if b["n"]]
    figure = {"type": "bar", "x": [f"{fmt(b['lo'])} to {fmt(b['hi'])}" for b in rows],
              "y": [b["mean_target"] for b in rows], "ids": ids, "marker": {"color": "#FF6D04"},
              "error_y": {"type": "data", "symmetric": False,
                          "array": [b["ci_high"] - b["mean_target"] for b in rows],
                          "arrayminus": [b["mean_target"] - b["ci_low"] for b in rows]},
              "text": [f"n={b['n']}" for b in rows], "hovertemplate": "%{x}: %{y:.3f}, %{text}<extra></extra>"}
    layout = {"title": {"text": f"{rate.capitalize()} by quality bin of {run['attribute']}<br><sub>"
                                "95% Wilson interval; click a bar for its objects</sub>",
                        "x": 0, "xanchor": "left"},
              "xaxis": {"title": {"text": f"{run['attribute']} bin "
                                          f"({'higher' if run['higher_is_better'] else 'lower'} is better)"}},
              "yaxis": {"title": {"text": rate}, "range": [0, 1]}, "margin": {"t": 72, "l": 56, "b": 64, "r": 16}}
    summary = {"n_objects": st["n_objects"], "n_scored": st["n_scored"], "label_field": st["meta"]["label_field"],
               "eval_key": st["meta"]["eval_key"], "attribute": run["attribute"], "correct": correct,
               "error": error, "rate": rate, "layout": layout}
    return {"summary": summary, "table": table, "strata": strata, "bars": [figure]}


def object_bin_of_click(args) -> Optional[tuple]:
    """``(lo, hi, last)`` of a clicked bar, from the id it carries; None if unreadable."""
    try:
        lo, hi, last = json.loads(args.get("id") or "")
        return float(lo), float(hi), bool(last)
    except (TypeError, ValueError):
        return None


def show_bin(view, summary: dict, args):
    """The objects of the clicked quality bin, as a patches view (None if unreadable)."""
    spec = object_bin_of_click(args)
    if spec is None:
        return None
    return object_bin_view(view, summary["label_field"], summary["attribute"], *spec)


def render_objects(panel, state, ch: dict, on_change_run, on_click):
    """The object mode's inputs, tables and plot."""
    dd = types.DropdownView()
    for key in ch["runs"]:
        dd.add_choice(key, label=key)
    panel.enum("object_run", dd.values(), label="Object quality run", view=dd, on_change=on_change_run)
    summary = state.get("object_summary")
    if not summary:
        panel.view("object_message", types.Notice(label=state.get("object_message") or "Computing statistics..."))
        return
    panel.md(f"**{summary['n_scored']:,}** of **{summary['n_objects']:,}** evaluated objects of "
             f"`{summary['label_field']}` hold a score (evaluation {summary['eval_key']}: "
             f"{summary['correct']} or {summary['error']}).", name="object_header")
    table = types.TableView()
    for c, label in (("score", "Score"), ("spearman", f"Spearman with {summary['correct']} [CI]"),
                     ("auroc", f"AUROC for {summary['error']} [CI]"), ("given_size", "AUROC within size strata"),
                     ("n", "n")):
        table.add_column(c, label=label)
    panel.list("object_table", types.Object(), view=table,
               label=f"Does quality tell {summary['error']} objects, beyond their size?")
    strata = types.TableView()
    for c, label in (("size", "Box area"), ("n", "n"), ("rate", f"{summary['rate']} [CI]"),
                     ("auroc", "quality AUROC [CI]")):
        strata.add_column(c, label=label)
    panel.list("object_strata", types.Object(), view=strata, label="By size stratum (small to large)")
    panel.plot("object_bars", data=(state.get("figures") or {}).get("object_bars"), layout=summary["layout"],
               config={"displaylogo": False, "responsive": True},
               height=360, on_click=on_click)
