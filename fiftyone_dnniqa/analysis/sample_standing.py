"""One image against its view: where each quality value stands (in the field's own
direction), its predicted cause and the evaluation's outcome for it. The panel's "This
image" section, beside an image open in the App's sample viewer.
"""

from __future__ import annotations

import os
from typing import Optional, Sequence

import numpy as np
import fiftyone as fo
from fiftyone import ViewField as F

from .breakdowns import cause_field, labels_text
from .panel_stats import direction
from .samples import one_sample
from .targets import binary_correct, pick_target, to_floats

__all__ = ["image_standing", "standing_words", "outcome_words"]


def _count(condition):
    return fo.Sum(condition.if_else(1, 0))


def _standings(view, values: dict) -> list:
    """Each field's ``value`` (the image's, one of ``view``'s; ``{field: value}``) against
    the view's other images with a finite value: ``worse_than`` / ``better_than`` (shares
    of them strictly better / strictly worse in the field's direction; where the direction
    is unknown, higher counts as better). Counted in the database in one pass (None and
    NaN fail both bounds); the image is neither above nor below its own value, so only the
    count of the others leaves it out."""
    aggs, out = [], []
    for field, value in values.items():
        v = None if value is None or isinstance(value, bool) or not np.isfinite(float(value)) else float(value)
        finite = (F(field) > -np.inf) & (F(field) < np.inf)
        aggs += [_count(finite & (F(field) > (v or 0.0))), _count(finite & (F(field) < (v or 0.0))), _count(finite)]
        hib, known = direction(view, field)
        out.append({"field": field, "value": v, "higher_is_better": hib, "known": known})
    counts = view.aggregate(aggs) if aggs else []
    for k, entry in enumerate(out):
        higher, lower, n = counts[3 * k: 3 * k + 3]
        entry["n"] = n = int(n) - (entry["value"] is not None)
        shares = (higher / n, lower / n) if entry["value"] is not None and n else (None, None)
        entry["worse_than"], entry["better_than"] = shares if entry["higher_is_better"] else shares[::-1]
    return out


def standing_words(entry: dict) -> str:
    """A field's standing in words: "worse than 83% of the other 39 scored images of the
    view" (or better, whichever share is larger); "higher"/"lower" where nothing records
    which way is better."""
    if entry["value"] is None:
        return "not scored"
    if not entry["n"]:
        return "the only scored image of the view"
    worse, better = entry["worse_than"], entry["better_than"]
    if not worse and not better:
        return "equal to every other scored image of the view"
    up, down = ("better", "worse") if entry["known"] else ("higher", "lower")
    word, share = (down, worse) if worse >= better else (up, better)
    others = "the other scored image" if entry["n"] == 1 else f"the other {entry['n']:,} scored images"
    return f"{word} than {100 * share:.0f}% of {others} of the view"


def _get(sample, field: Optional[str]):
    return sample[field] if field and sample.has_field(field) else None


def _outcome(sample, eval_key: Optional[str], view) -> Optional[dict]:
    """The evaluation's outcome for ``sample``: correctness (with the labels) for a
    classification, TP/FP/FN counts for a detection, accuracy for a segmentation."""
    if not eval_key or eval_key not in view.list_evaluations():
        return None
    ti = pick_target(view, eval_key, None)
    out = {"eval_key": eval_key, "type": ti.type}
    if ti.type == "classification":
        raw = _get(sample, eval_key)
        ok = (binary_correct([raw]) if ti.method == "binary" else to_floats([raw]))[0]
        out.update(correct=None if np.isnan(ok) else bool(ok), outcome=raw if isinstance(raw, str) else None,
                   predicted=getattr(_get(sample, ti.pred_field), "label", None),
                   truth=getattr(_get(sample, ti.gt_field), "label", None))
    elif ti.type == "detection":
        out.update({k: _get(sample, f"{eval_key}_{k}") for k in ("tp", "fp", "fn")})
    else:
        out["accuracy"] = _get(sample, f"{eval_key}_accuracy")
    return out


def outcome_words(outcome: Optional[dict]) -> Optional[str]:
    """:func:`_outcome` in words: "wrong: predicted 'other', truth 'tench'", "2 TP, 1 FP,
    0 FN"; None without an evaluation."""
    if not outcome:
        return None
    if outcome["type"] == "classification":
        if outcome["correct"] is None:
            return "not evaluated"
        binary = f" ({outcome['outcome']})" if outcome.get("outcome") else ""
        pred, truth = outcome.get("predicted"), outcome.get("truth")
        if outcome["correct"]:
            return f"correct{binary}" + (f": predicted '{pred}'" if pred else "")
        return f"wrong{binary}" + (f": predicted '{pred}', truth '{truth}'" if pred or truth else "")
    if outcome["type"] == "detection":
        if any(outcome[k] is None for k in ("tp", "fp", "fn")):
            return "not evaluated"
        return f"{outcome['tp']} TP, {outcome['fp']} FP, {outcome['fn']} FN"
    acc = outcome.get("accuracy")
    return "not evaluated" if acc is None else f"pixel accuracy {float(acc):.3f}"


def image_standing(view, sample_id: Optional[str], fields: Sequence[str],
                   eval_key: Optional[str] = None) -> Optional[dict]:
    """Where the image ``sample_id`` stands in ``view``: ``fields`` (each field's value and
    standing, see :func:`standing_words`), ``cause`` (its predicted causes in words, where
    a ``cause`` run exists: ``cause_field``; None where the run did not score it) and ``outcome`` (of evaluation ``eval_key``); None when
    ``sample_id`` is none of ``view``'s samples."""
    one = one_sample(view, sample_id)
    if one is None or not len(one):
        return None
    sample = one.first()
    sid = str(sample_id)
    entries = _standings(view, {f: _get(sample, f) for f in fields})
    cf = cause_field(view)
    return {"sample_id": sid, "name": os.path.basename(sample.filepath), "fields": entries, "cause_field": cf,
            "cause": labels_text(_get(sample, cf)),
            "outcome": _outcome(sample, eval_key, view)}
