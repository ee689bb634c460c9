"""The panel's "This image" section on image datasets: while an image is open in the App's
sample viewer, where it stands in the view the panel describes
(:func:`~fiftyone_dnniqa.analysis.sample_standing.image_standing`), above the view's
statistics; it follows the viewer from image to image and goes when the viewer closes.

What the section shows is kept for this panel only (:meth:`~.panel_cache.PanelState.keep`):
``on_change_current_sample`` is one of the App's own events, which write no App state."""

from __future__ import annotations

from ..analysis.results import fmt
from ..analysis.sample_standing import image_standing, outcome_words, standing_words
from .drill_down import origin_view
from .panel_cache import PanelState

__all__ = ["keep_standing", "standing_markdown", "render_standing"]


def keep_standing(ctx, fields, eval_key) -> None:
    """Keeps the standing of the image open in the sample viewer among the panel's
    ``fields`` and against evaluation ``eval_key`` (None: the viewer is closed)."""
    sample = ctx.current_sample
    standing = image_standing(origin_view(ctx), sample, fields or [], eval_key) if sample else None
    PanelState(ctx).keep("standing", standing)


def standing_markdown(s: dict) -> str:
    """The section's text for one :func:`image_standing`."""
    lines = [f"**This image** ({s['name']}), open in the sample viewer:", ""]
    for e in s["fields"]:
        value = "" if e["value"] is None else f" {fmt(e['value'])}"
        lines.append(f"- `{e['field']}`{value}: {standing_words(e)}")
    if s.get("cause_field"):
        lines.append(f"- predicted cause (`{s['cause_field']}`): {s['cause'] or 'not scored'}")
    outcome = outcome_words(s.get("outcome"))
    if outcome:
        lines.append(f"- evaluation `{s['outcome']['eval_key']}`: {outcome}")
    return "\n".join(lines)


def render_standing(panel, state) -> None:
    """The section, where an image is open in the sample viewer (image mode only)."""
    standing = state.get("standing")
    if standing and state.get("mode") in (None, "images"):
        panel.md(standing_markdown(standing), name="this_image")

