"""Performance and quality per slice of a view: per tag, per ground-truth class.

One table row per slice: its size, the target (accuracy...) with its interval, the mean
quality and, within the slice, the correlation of quality with the target. The panel
and the report show these rows.
"""

from __future__ import annotations

from collections import Counter
from typing import List, Optional

import numpy as np
from fiftyone import ViewField as F

from ..scoring.runs import list_quality_runs
from .fields import field_direction
from .grouping import group_table
from .panel_stats import align_values
from .prior import PerformancePrior
from .results import fmt_ci, fmt_short, fmt_size
from .targets import get_target, pick_target, to_floats

__all__ = ["CAUSE_WORDS", "NO_CAUSE", "NO_TAGS", "OLD_NO_CAUSE", "SLICES", "available_slices", "cause_field",
           "cause_sentence", "cause_summary", "cause_text", "cause_view", "first_cause", "labels_text",
           "predicted_causes", "slice_labels", "slice_table"]

#: what a view can be broken down by, and how the panel names it
SLICES = {"tags": "sample tags", "class": "ground-truth class", "cause": "predicted cause"}
#: the slice of samples without tags
NO_TAGS = "(no tags)"
#: the cause slice of a scored image in which no family was found: stored as an empty
#: ``Classifications`` (no chip in the App's grid), or, by runs before that, as one label
#: :data:`OLD_NO_CAUSE`
NO_CAUSE = "(no cause found)"
#: the label older ``cause`` runs stored for "no family found" (``metrics.cause.NONE``,
#: spelled here so that the analysis does not import torch)
OLD_NO_CAUSE = "none"
#: each degradation family as an image is described ("dark and noisy"); exposure says
#: "dark" or "bright" where the run stored which way it went (its ``direction``)
CAUSE_WORDS = {"blur": "blurred", "noise": "noisy", "compression": "compressed", "exposure": "badly exposed",
               "contrast_haze": "washed out", "weather_occlusion": "obscured by weather or lens dirt",
               "low_resolution": "pixelated"}


def _join(words: List[str]) -> str:
    return words[0] if len(words) == 1 else ", ".join(words[:-1]) + " and " + words[-1]


def cause_text(families, severities=None, directions=None) -> str:
    """Several causes of one image in words, most likely first: ``["exposure", "noise"]``
    -> "badly exposed and noisy"; with ``severities`` (``{family: 0..5}``) and
    ``directions`` (``{"exposure": "dark"}``): "dark (severity 4.0) and noisy (severity
    3.0)". No family (or only the old runs' ``"none"``) is :data:`NO_CAUSE`."""
    severities, directions = severities or {}, directions or {}
    words = []
    for fam in families:
        if fam in (None, OLD_NO_CAUSE):
            continue
        word = directions.get(fam) or CAUSE_WORDS.get(fam, fam)
        sev = severities.get(fam)
        words.append(word if sev is None else f"{word} (severity {float(sev):.1f})")
    return _join(words) if words else NO_CAUSE


def labels_text(classifications) -> Optional[str]:
    """:func:`cause_text` of one image's stored ``Classifications`` (each label's
    ``severity`` and ``direction`` attributes where the run stored them); None when the
    image was not scored."""
    if classifications is None:
        return None
    labels = classifications.classifications
    sev = {c.label: c["severity"] for c in labels if c.has_field("severity") and c["severity"] is not None}
    way = {c.label: c["direction"] for c in labels if c.has_field("direction") and c["direction"]}
    return cause_text([c.label for c in labels], sev, way)


def cause_field(samples) -> Optional[str]:
    """The newest field holding predicted causes (a run of a structured metric such as
    ``cause``), or None."""
    ds = samples._root_dataset
    for key in reversed(list_quality_runs(ds)):
        if getattr(ds.get_run_info(key).config, "outputs", "float") == "classifications":
            return key
    return None


def available_slices(view, eval_key: Optional[str] = None) -> List[str]:
    """The slices that make sense for ``view`` and its evaluation: tags always; the
    ground-truth class for classification evaluations (a detection image has many); the
    predicted cause where a ``cause`` run exists."""
    out = ["tags"] + (["cause"] if cause_field(view) else [])
    try:
        ti = pick_target(view, eval_key, None)
    except ValueError:
        return out
    if ti.type == "classification" and ti.gt_field:
        out.append("class")
    return out


def _align(ids_from, ids_to, values):
    pos = {i: k for k, i in enumerate(ids_from)}
    return np.array([values[pos[i]] if i in pos else None for i in ids_to], dtype=object)


def slice_labels(view, by: str, ids, eval_key: Optional[str] = None) -> np.ndarray:
    """Each sample's slice (aligned with ``ids``): its tags joined by ``", "`` (``NO_TAGS``
    without tags), or its ground-truth class."""
    if by == "tags":
        sids, tags = view.values(["id", "tags"])
        labels = [", ".join(sorted(t)) if t else NO_TAGS for t in tags]
    elif by == "cause":  # the most likely family (first label); NO_CAUSE when none was found
        field = cause_field(view)
        if field is None:
            raise ValueError("no predicted causes: run compute_quality(view, 'cause') first")
        sids, causes = view.values(["id", f"{field}.classifications.label"])
        labels = [first_cause(c) for c in causes]
    elif by == "class":
        ti = pick_target(view, eval_key, None)
        if ti.type != "classification" or not ti.gt_field:
            raise ValueError(f"evaluation '{ti.eval_key}' is not a classification: no class per sample")
        sids, labels = view.values(["id", f"{ti.gt_field}.label"])
    else:
        raise ValueError(f"unknown slice '{by}'; choose from {', '.join(SLICES)}")
    return _align(sids, ids, labels)


def first_cause(labels) -> Optional[str]:
    """An image's cause slice from its stored labels: None when it was not scored (no
    ``Classifications``), :data:`NO_CAUSE` for no label (or the old runs' ``"none"``)."""
    if labels is None:
        return None
    if not labels or labels[0] in (None, OLD_NO_CAUSE):
        return NO_CAUSE
    return labels[0]


def slice_table(view, field: str, by: str, eval_key: Optional[str] = None, kind: Optional[str] = None,
                higher_is_better: Optional[bool] = None, n_boot: int = 200, confidence: float = 0.95,
                min_n: int = 2) -> List[dict]:
    """One row per slice of ``view`` (``by``: a key of :data:`SLICES`) with at least
    ``min_n`` samples, worst target first: ``slice``, ``n``, ``target`` (mean with its
    Wilson or t interval, as text), ``expected`` (for correctness: the accuracy the field
    alone predicts, with its 90% interval), ``mean_quality`` and ``within`` (Spearman of
    ``field`` with the target inside the slice, with its bootstrap interval)."""
    ti = pick_target(view, eval_key, kind)
    kind = kind or ti.default_kind
    ids, target = get_target(view, ti.eval_key, kind)
    sids, q = view.values(["id", field])
    quality = align_values(sids, ids, to_floats(q))
    groups = slice_labels(view, by, ids, ti.eval_key)
    rows = group_table(quality, target, groups, higher_is_better=field_direction(view, field, higher_is_better),
                       n_boot=n_boot, confidence=confidence, min_n=min_n)
    rows.sort(key=lambda r: (r.mean_target, str(r.group)))
    expected = _expected_by_slice(quality, target, groups, kind, higher_is_better=field_direction(
        view, field, higher_is_better))
    out = []
    for r in rows:
        row = r.to_row()
        out.append({"slice": row["group"], "n": row["n"], "target": row["mean target"],
                    "expected": expected.get(row["group"], ""),
                    "mean_quality": row["mean quality"], "within": row.get("spearman", "")})
    return out


def _expected_by_slice(quality, target, groups, kind, higher_is_better) -> dict:
    """Per slice, the accuracy the quality field alone predicts (a prior fitted on the whole
    view), with its 90% interval, as text: a slice well below it is hard for reasons other
    than image quality. Empty unless the target is correctness."""
    ok = np.isfinite(quality) & np.isfinite(target)
    if kind != "correct" or ok.sum() < 10 or len(np.unique(target[ok])) < 2:
        return {}
    prior = PerformancePrior.fit(quality, target, higher_is_better=higher_is_better, n_refits=0)
    rows = prior.expected_accuracy(np.where(ok, quality, np.nan), groups, confidence=0.9)
    # the first row is the whole view's (a slice may be called "all" too)
    return {r["slice"]: fmt_ci(r["estimate"], r["low"], r["high"]) for r in rows[1:]}


def cause_summary(view, eval_key: Optional[str] = None) -> Optional[dict]:
    """Where the errors are, by predicted cause: for the cause holding the most errors
    (other than "none"), its share of the errors and the accuracy on its images against
    the accuracy elsewhere; where most of its images have other causes too, their
    commonest combination in words (``"with"``, e.g. "blurred and noisy") and its share
    there (``"with_share"``). None without causes, a correctness target or errors."""
    field = cause_field(view)
    if field is None:
        return None
    ti = pick_target(view, eval_key, None)
    if "correct" not in ti.kinds:
        return None
    ids, correct = get_target(view, ti.eval_key, "correct")
    causes = slice_labels(view, "cause", ids, ti.eval_key)
    ok = np.isfinite(correct) & np.array([c is not None for c in causes])
    errors = ok & (correct == 0)
    if not errors.any():
        return None
    counts = {c: int(np.sum(errors & (causes == c))) for c in set(causes[ok]) if c != NO_CAUSE}
    if not counts or max(counts.values()) == 0:
        return None
    top = max(sorted(counts), key=counts.get)
    inside = ok & (causes == top)
    out = {"cause": top, "share_of_errors": counts[top] / int(errors.sum()), "n": int(inside.sum()),
           "accuracy": float(correct[inside].mean()),
           "accuracy_elsewhere": float(correct[ok & ~inside].mean()) if (ok & ~inside).any() else float("nan")}
    sids, stored = view.values(["id", f"{field}.classifications.label"])
    combos = Counter(tuple(ls) for ls in _align(sids, ids, stored)[inside])  # most likely first: top leads
    combo, n_combo = max(sorted(combos.items()), key=lambda kv: kv[1])
    if len(combo) > 1 and 2 * n_combo > int(inside.sum()):
        out.update({"with": cause_text(combo), "with_share": n_combo / int(inside.sum())})
    return out


def cause_sentence(summary: Optional[dict]) -> Optional[str]:
    """:func:`cause_summary` in words, e.g. "41% of the errors are on images predicted blur
    (120 images); 60% of them blurred and noisy; accuracy there 0.320 against 0.810
    elsewhere"."""
    if not summary:
        return None
    elsewhere = fmt_short(summary["accuracy_elsewhere"], reason="no other images")
    mixed = f"; {100 * summary['with_share']:.0f}% of them {summary['with']}" if summary.get("with") else ""
    return (f"{100 * summary['share_of_errors']:.0f}% of the errors are on images predicted {summary['cause']} "
            f"({fmt_size(summary['n'])} images){mixed}; accuracy there {fmt_short(summary['accuracy'])} against "
            f"{elsewhere} elsewhere")


def predicted_causes(samples) -> List[str]:
    """The families the newest cause run found in ``samples`` (any of an image's labels;
    no cause found is none), most frequent first; ``[]`` without a cause run."""
    field = cause_field(samples)
    if field is None:
        return []
    counts = samples.count_values(f"{field}.classifications.label")
    return sorted((c for c in counts if c not in (None, NO_CAUSE, OLD_NO_CAUSE)), key=lambda c: (-counts[c], c))


def cause_view(samples, family: str):
    """The samples whose predicted causes include ``family`` (e.g. ``"blur"``), whichever
    other causes they have too (blurred and noisy is blurred); with :data:`NO_CAUSE`, the
    scored samples in which no family was found."""
    field = cause_field(samples)
    if field is None:
        raise ValueError("no predicted causes: run compute_quality(view, 'cause') first")
    labels = F(f"{field}.classifications.label")
    if family in (NO_CAUSE, OLD_NO_CAUSE):
        return samples.match((F(field) != None) & ((labels.length() == 0) | labels.contains(OLD_NO_CAUSE)))  # noqa: E711
    return samples.match(labels.contains(family))
