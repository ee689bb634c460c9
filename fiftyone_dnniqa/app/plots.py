"""Plotly figures of the "Quality vs Performance" panel, from its statistics."""

from __future__ import annotations

import json
from typing import Dict, Optional

import numpy as np

from ..analysis.panel_stats import bin_id
from ..analysis.results import fmt, fmt_ci, fmt_size
from ..analysis.targets import to_floats
from ..analysis.video_targets import frame_seconds


#: selected and other marks while a drill-down is highlighted
SELECTED_OPACITY, OTHER_OPACITY = 1.0, 0.3


def plot_traces(stats: dict, field: Optional[str] = None,
                highlight: Optional[dict] = None) -> Dict[str, Optional[dict]]:
    """Plotly figures (``{"data": traces, "layout": layout, "bins": [...]}``) for the
    ``curve``, ``histogram`` and ``scatter`` of :func:`panel_statistics`' output, for
    ``field`` (default: the one it chose), None where there is nothing to draw.
    ``bins`` lists each clickable point's ``(field, lo, hi, last)`` by point index.
    ``highlight`` marks a drill-down's selection: ``{"bin": id}`` (a clicked point or bar)
    or ``{"ids": [...]}`` (lassoed samples); the rest is drawn faint."""
    field = field or stats["field"]
    plots = stats["per_field"][field]
    hib = stats["higher_is_better"].get(field, True)
    x_title = f"{field} ({'higher' if hib else 'lower'} is better)"
    margin = {"t": 72, "l": 56, "b": 48, "r": 16}
    figs = {"curve": _curve_figure(field, plots, stats, x_title, margin),
            "histogram": _histogram_figure(field, plots, stats, x_title, margin),
            "scatter": _scatter_figure(field, plots, stats, x_title, margin)}
    for fig in figs.values():
        if fig:  # titles on the left: the plot toolbar sits on the right
            fig["layout"]["title"].update({"x": 0, "xanchor": "left", "xref": "paper"})
            if highlight:
                _highlight(fig, highlight)
    return figs


def _highlight(fig, highlight):
    """Draws every mark but the selected ones faint (plotly ``selectedpoints`` for
    lassoed samples, per-point opacity for a clicked bin)."""
    chosen_bin, chosen_ids = highlight.get("bin"), set(highlight.get("ids") or ())
    for trace in fig["data"]:
        ids = trace.get("ids")
        if not ids:
            continue
        if chosen_ids:
            trace["selectedpoints"] = [i for i, x in enumerate(ids) if x in chosen_ids]
        else:
            marker = trace.setdefault("marker", {})
            marker["opacity"] = [SELECTED_OPACITY if x == chosen_bin else OTHER_OPACITY for x in ids]


def _curve_figure(field, plots, stats, x_title, margin):
    tl = stats["target_label"]
    rows = [r for r in plots["curve"] if r["n"]]
    if rows:
        k = len(plots["curve"])
        bins = [(field, r["lo"], r["hi"], i == k - 1) for i, r in enumerate(plots["curve"]) if r["n"]]
        x = [r["mean_quality"] for r in rows]
        interval = "Wilson" if rows[0]["interval"] == "wilson" else "t"
        level = int(round(100 * stats["confidence"]))
        band = {"type": "scatter", "x": x, "mode": "lines", "line": {"width": 0},
                "hoverinfo": "skip", "showlegend": False}
        return {
            "data": [
                {**band, "name": "upper", "y": [r["ci_high"] for r in rows]},
                {**band, "name": f"{level}% interval", "y": [r["ci_low"] for r in rows],
                 "fill": "tonexty", "fillcolor": "rgba(255, 109, 4, 0.2)"},
                {"type": "scatter", "mode": "lines+markers", "name": tl, "x": x,
                 "y": [r["mean_target"] for r in rows], "ids": [bin_id(*b) for b in bins],
                 "marker": {"size": 9, "color": "#FF6D04"}, "line": {"color": "#FF6D04"},
                 "text": [f"[{fmt(r['lo'])}, {fmt(r['hi'])}{']' if b[3] else ')'}: n={fmt_size(r['n'])}, "
                          f"{tl} {fmt_ci(r['mean_target'], r['ci_low'], r['ci_high'])}"
                          for r, b in zip(rows, bins)],
                 "hovertemplate": "%{text}<extra></extra>"},
            ],
            "layout": {
                "title": {"text": f"{tl.capitalize()} by quantile bin of {field}<br><sub>"
                                  f"{level}% {interval} interval; click a point for its samples</sub>"},
                "xaxis": {"title": {"text": x_title + ", bin mean"}},
                "yaxis": {"title": {"text": tl}}, "margin": margin, "showlegend": False,
            },
            "bins": bins,
        }
    return None


def _histogram_figure(field, plots, stats, x_title, margin):
    h = plots["histogram"]
    if h:
        edges = h["edges"]
        k = len(edges) - 1
        bins = [(field, edges[i], edges[i + 1], i == k - 1) for i in range(k)]
        centers = [(edges[i] + edges[i + 1]) / 2 for i in range(k)]
        widths = [edges[i + 1] - edges[i] for i in range(k)]
        common = {"type": "bar", "x": centers, "width": widths}
        return {
            "data": [  # each bar's id carries its outcome: a click shows that bin's wrong (or correct) ones
                {**common, "name": "correct", "y": h["correct"], "marker": {"color": "#2CA02C"},
                 "ids": [bin_id(*b, outcome="correct") for b in bins]},
                {**common, "name": "wrong", "y": h["wrong"], "marker": {"color": "#D62728"},
                 "ids": [bin_id(*b, outcome="wrong") for b in bins]},
            ],
            "layout": {
                "title": {"text": f"{field} for correct and wrong predictions<br>"
                                  "<sub>stacked; click a part for its correct or wrong samples</sub>"},
                "barmode": "stack", "bargap": 0.05, "xaxis": {"title": {"text": x_title}},
                "yaxis": {"title": {"text": "samples"}}, "margin": margin, "showlegend": True,
            },
            "bins": bins,
        }
    return None


def _scatter_figure(field, plots, stats, x_title, margin):
    s = plots["scatter"]
    if s and s["n_shown"]:
        shown = (f"random {s['n_shown']:,} of {s['n_total']:,} samples shown"
                 if s["n_shown"] < s["n_total"] else f"{s['n_total']:,} samples")
        groups = [("samples", None)]
        if s["correct"] is not None:
            groups = [("correct", 1.0), ("wrong", 0.0)]
        colors = {"correct": "#2CA02C", "wrong": "#D62728", "samples": "#FF6D04"}
        traces = []
        qx = np.asarray(s["quality"], dtype=object)
        cy = np.asarray(s["confidence"], dtype=object)
        sid = np.asarray(s["ids"], dtype=object)
        c = None if s["correct"] is None else to_floats(s["correct"])
        for name, val in groups:
            sel = np.ones(len(sid), bool) if val is None else (c == val)
            traces.append({"type": "scatter", "mode": "markers", "name": name,
                           "x": qx[sel].tolist(), "y": cy[sel].tolist(), "ids": sid[sel].tolist(),
                           "marker": {"size": 5, "opacity": 0.6, "color": colors[name]}})
        return {
            "data": traces,
            "layout": {
                "title": {"text": f"{field} vs prediction confidence<br><sub>{shown}; "
                                  "lasso or box to select samples</sub>"},
                "xaxis": {"title": {"text": x_title}}, "yaxis": {"title": {"text": "confidence"}},
                "dragmode": "lasso", "margin": margin, "showlegend": True,
            },
        }
    return None


#: the timeline's colours: quality, the low-quality segments, the clip shown, each outcome's mark
TIMELINE_COLOR, SEGMENT_FILL, CLIP_LINE = "#FF6D04", "rgba(214, 39, 40, 0.15)", "#1F77B4"
OUTCOME_STYLES = {"missed objects": {"symbol": "x", "color": "#D62728"},
                  "false positives": {"symbol": "triangle-up", "color": "#9467BD"},
                  "wrong": {"symbol": "x", "color": "#D62728"}}


def timeline_point_id(sample_id: str, frame: int) -> str:
    """The id a timeline point carries: its video and frame number (read back by a click)."""
    return json.dumps([sample_id, int(frame)])


def timeline_figure(tl: dict, highlight: Optional[dict] = None, in_viewer: bool = False) -> Optional[dict]:
    """The panel's video plot from :func:`~fiftyone_dnniqa.analysis.video_targets.video_timelines`:
    one row per video, quality of the sampled frames over time, the level as a dashed line,
    the low-quality segments shaded, the frames with an outcome of the evaluation marked;
    ``highlight`` (``{"id", "support"}``) outlines the clip shown. The x axis is in seconds
    when every video's frame rate is known (``seconds``), else in frame numbers; a point's
    hover says both. ``in_viewer``: the plot sits beside the sample viewer, which a click
    closes (the hint says so). ``{"data", "layout"}``, or None without scored frames."""
    videos = [v for v in tl["videos"] if v["frames"]]
    if not videos:
        return None
    in_seconds = all(v.get("seconds") for v in videos)
    gap = 0.08 if len(videos) > 1 else 0.0
    row = (1 - gap * (len(videos) - 1)) / len(videos)
    data, shapes, layout, legend = [], [], {}, set()
    shown = [q for v in videos for q in v["quality"]] + [tl["level"]]
    pad = 0.08 * (max(shown) - min(shown)) or 0.05
    y_range = [min(shown) - pad, max(shown) + pad]  # one scale for every row: rows compare at a glance
    for i, v in enumerate(videos):
        axis = "" if i == 0 else str(i + 1)
        top = 1 - i * (row + gap)
        layout[f"yaxis{axis}"] = {"domain": [max(top - row, 0), top], "anchor": "x", "range": y_range,
                                  "title": {"text": v["name"] if len(v["name"]) <= 18 else v["name"][:16] + "..",
                                            "font": {"size": 12}}}
        x = v["seconds"] if in_seconds else v["frames"]
        when = [f"frame {f}, {t:.2f} s" if v.get("seconds") else f"frame {f}"
                for f, t in zip(v["frames"], v.get("seconds") or v["frames"])]
        ids = [timeline_point_id(v["id"], f) for f in v["frames"]]
        data.append({"type": "scatter", "mode": "lines+markers", "name": v["name"], "x": x,
                     "y": v["quality"], "ids": ids, "text": when, "yaxis": f"y{axis}", "showlegend": False,
                     "marker": {"size": 8, "color": TIMELINE_COLOR}, "line": {"color": TIMELINE_COLOR},
                     "hovertemplate": f"{v['name']}, %{{text}}: %{{y:.3f}}<extra>click for its clip</extra>"})
        for label in tl["outcomes"]:
            at = set(v["outcomes"].get(label, ()))
            k = [j for j, f in enumerate(v["frames"]) if f in at]
            style = OUTCOME_STYLES.get(label, {"symbol": "circle-open", "color": "#7F7F7F"})
            data.append({"type": "scatter", "mode": "markers", "name": f"frames with {label} ({tl['eval_key']})",
                         "legendgroup": label, "showlegend": label not in legend, "yaxis": f"y{axis}",
                         "x": [x[j] for j in k], "y": [v["quality"][j] for j in k],
                         "ids": [ids[j] for j in k], "text": [when[j] for j in k],
                         "marker": {"size": 12, "symbol": style["symbol"], "color": style["color"],
                                    "line": {"width": 2, "color": style["color"]}},
                         "hovertemplate": f"{v['name']}, %{{text}}: %{{y:.3f}}, {label}<extra></extra>"})
            legend.add(label)
        shapes += _timeline_shapes(v, tl["level"], axis, in_seconds, highlight)
    layout.update(_timeline_layout(tl, len(videos), in_seconds, in_viewer))
    layout["shapes"] = shapes
    return {"data": data, "layout": layout}


def _timeline_shapes(v, level, axis, in_seconds, highlight):
    """One video's row: its segments shaded (half a sampling step beyond their ends), the
    level dashed, the clip shown outlined; x in seconds or frame numbers as the points."""

    def x_of(frame):
        return frame_seconds([frame], v["frame_rate"])[0] if in_seconds else frame

    half = (x_of(1 + max(v["step"], 1)) - x_of(1)) / 2
    ref = f"y{axis} domain"
    shapes = [{"type": "rect", "xref": "x", "yref": ref, "x0": x_of(a) - half, "x1": x_of(b) + half,
               "y0": 0, "y1": 1, "fillcolor": SEGMENT_FILL, "line": {"width": 0}, "layer": "below"}
              for a, b in v["segments"]]
    shapes.append({"type": "line", "xref": "x", "yref": f"y{axis}", "x0": x_of(v["frames"][0]),
                   "x1": x_of(v["frames"][-1]), "y0": level, "y1": level,
                   "line": {"dash": "dash", "width": 1.5, "color": "#7F7F7F"}})
    if highlight and highlight.get("id") == v["id"]:
        a, b = highlight["support"]
        shapes.append({"type": "rect", "xref": "x", "yref": ref, "x0": x_of(a) - half, "x1": x_of(b) + half,
                       "y0": 0, "y1": 1, "line": {"width": 2, "color": CLIP_LINE}, "fillcolor": "rgba(0, 0, 0, 0)"})
    return shapes


def _timeline_layout(tl, n_videos, in_seconds, in_viewer):
    worse = "below" if tl["higher_is_better"] else "above"
    click = ("click a point: its clip in the grid (closes the viewer)" if in_viewer
             else "click a point: its segment (or the frames around it) as a clip")
    return {
        "title": {"text": f"{tl['field']} of the sampled frames over time<br><sub>dashed: the low level "
                          f"({fmt(tl['level'])}); shaded: low-quality segments ({worse} it)<br>{click}</sub>",
                  "x": 0, "xanchor": "left", "xref": "paper", "y": 1, "yref": "container", "yanchor": "top",
                  "pad": {"t": 24}},
        "xaxis": {"title": {"text": "time (s)" if in_seconds else "frame number (frame rate unknown)"},
                  "anchor": f"y{n_videos if n_videos > 1 else ''}"},
        "showlegend": bool(tl["outcomes"]), "hovermode": "closest",
        "legend": {"orientation": "h", "x": 0, "xanchor": "left", "y": 1, "yanchor": "bottom"},
        "margin": {"t": 132, "l": 64, "b": 48, "r": 16},
    }
