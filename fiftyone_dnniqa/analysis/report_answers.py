"""The top of the HTML report: the answers first, then the hardest images as pictures.

* :func:`answers_section`: which quality field predicts the model's errors (with its
  interval), the accuracy to expect from that score alone (:mod:`.expectation`),
  and the hardest slice (class or tag);
* :func:`thumbnails_section`: the lowest-quality images as small embedded JPEGs with
  their score and labels, so the file stays self-contained and of bounded size.

Every string from the dataset is HTML-escaped.
"""

from __future__ import annotations

import base64
import html
import io
from typing import Callable, List, Optional, Sequence

import numpy as np
from PIL import Image

from ..scoring.runs import is_classifications_field
from .breakdowns import NO_CAUSE, available_slices, cause_sentence, cause_summary, slice_table
from .correlation import rank_fields
from .expectation import LEAD, expectation_sentence, expected_view_accuracy
from .fields import score_runs
from .results import fmt_ci, fmt_short, fmt_size
from .targets import NoEvaluationError, get_target, pick_target, to_floats

__all__ = ["THUMB_PX", "MAX_THUMBS", "answers_section", "thumbnail_base64", "thumbnails_section"]

#: longest side of a thumbnail, in pixels
THUMB_PX = 160
#: most thumbnails per report section (the file stays small: each is a few kB)
MAX_THUMBS = 12


def _esc(value) -> str:
    return html.escape(str(value), quote=True)


def thumbnail_base64(path: str, size: int = THUMB_PX, quality: int = 70) -> Optional[str]:
    """A JPEG thumbnail of the image at ``path`` (longest side ``size``) as base64 text,
    or None when the file cannot be read."""
    try:
        with Image.open(path) as im:
            im = im.convert("RGB")
            im.thumbnail((size, size))
            buf = io.BytesIO()
            im.save(buf, format="JPEG", quality=quality)
    except (OSError, ValueError):
        return None
    return base64.b64encode(buf.getvalue()).decode()


def _aligned(samples, fields, ids):
    """Each field's values in the order of ``ids``, as floats."""
    cols = samples.values(["id"] + list(fields))
    pos = {i: k for k, i in enumerate(cols[0])}
    order = np.array([pos[i] for i in ids], dtype=int)
    return {f: to_floats(cols[j + 1])[order] if len(order) else np.array([])
            for j, f in enumerate(fields)}


def answers_section(samples, fields: Sequence[str], eval_key: Optional[str] = None,
                    n_boot: int = 500) -> List[str]:
    """HTML of the report's answers: the best predictor of the evaluation's errors, the
    accuracy to expect from it, the hardest slice; or what to run to get them."""
    dataset = samples._root_dataset
    fields = score_runs(samples, fields)  # not predicted causes (labels), not a field never written
    parts = ["<h2>Answers</h2>"]
    if not fields:
        return parts + ["<p>No quality scores yet: run <code>compute_quality</code> first.</p>"]
    try:
        ti = pick_target(samples, eval_key, None)
        ids, t = get_target(samples, ti.eval_key)
    except NoEvaluationError as e:
        return parts + [f"<p>No model evaluation to relate quality to ({_esc(e)}). The hardest images "
                        "by each score are below.</p>"]
    kind = ti.default_kind
    hib = {f: bool(dataset.get_run_info(f).config.higher_is_better) for f in fields}
    values = _aligned(samples, fields, ids)
    ranks = rank_fields({f: (values[f], hib[f]) for f in fields}, t, n_boot=n_boot)
    best = ranks[0]  # a field without a score in the view ranks last
    if not best.n:
        return parts + ["<p>No quality scores in this view: nothing to relate to the evaluation.</p>"]
    items = [f"<li><strong>Best predictor of {_esc(kind)}</strong> (evaluation <code>{_esc(ti.eval_key)}</code>): "
             f"<code>{_esc(best.name)}</code>, Spearman {fmt_ci(best.spearman.estimate, best.spearman.ci_low, best.spearman.ci_high)}"
             + (f", AUROC for errors {fmt_ci(best.auroc.estimate, best.auroc.ci_low, best.auroc.ci_high)}"
                if best.auroc is not None else "")
             + (f"; of {len(ranks)} fields" if len(ranks) > 1 else "") + ".</li>"]
    if kind == "correct":
        expected = expectation_sentence(expected_view_accuracy(samples, best.name, ti.eval_key, hib[best.name]))
        if expected:
            items.append(f"<li><strong>{LEAD}</strong>{_esc(expected[len(LEAD):])}.</li>")
    items += _hardest_slice(samples, best.name, ti, kind, hib[best.name])
    why = cause_sentence(cause_summary(samples, ti.eval_key))
    if why:
        items.append(f"<li><strong>Why</strong>: {_esc(why)}.</li>")
    return parts + ["<ul>" + "".join(items) + "</ul>"]


#: the slices the answers name their hardest of, in this order, and what one is called
HARDEST = {"class": "class", "tags": "tag set", "cause": "predicted cause"}


def _hardest_slice(samples, field, ti, kind, higher_is_better) -> List[str]:
    """Per way of slicing the view (class, tag set, predicted cause; those that apply), the
    slice with the lowest mean target among those of at least 5 samples, named for what
    it is; none where fewer than two slices are that large."""
    items = []
    available = available_slices(samples, ti.eval_key)
    for by in (b for b in HARDEST if b in available):
        rows = slice_table(samples, field, by, ti.eval_key, kind, higher_is_better=higher_is_better,
                           n_boot=0, min_n=5)
        if len(rows) < 2:
            continue
        worst = rows[0]
        items.append(f"<li><strong>Hardest {HARDEST[by]}</strong>: "
                     f"<code>{_esc(worst['slice'])}</code>, {_esc(kind)} {_esc(worst['target'])} "
                     f"over {fmt_size(worst['n'])} samples"
                     + (f"; its image quality alone predicts {_esc(worst['expected'])} (90% interval): "
                        "below it, the slice is hard for reasons other than quality" if worst.get("expected")
                        else "") + ".</li>")
    return items


def _caption_paths(samples, label_fields: Sequence[str]) -> List[str]:
    """The label of each field of ``label_fields``: ``.label``, or every label of a
    ``Classifications`` field (predicted causes)."""
    return [f"{lf}.classifications.label" if is_classifications_field(samples.get_field(lf)) else f"{lf}.label"
            for lf in label_fields]


def _caption_value(value) -> str:
    if isinstance(value, list):
        return ", ".join(str(v) for v in value) or NO_CAUSE
    return str(value)


def thumbnails_section(samples, field: str, higher_is_better: bool, k: int = MAX_THUMBS,
                       label_fields: Sequence[str] = (), keep: Optional[Callable[[float], bool]] = None) -> str:
    """The ``k`` lowest-quality images of ``field`` as embedded thumbnails, with their
    score and the labels of ``label_fields``; worst first, missing scores (and those
    ``keep`` refuses) left out."""
    paths = ["id", "filepath", field] + _caption_paths(samples, label_fields)
    cols = samples.values(paths)
    q = to_floats(cols[2])
    order = [i for i in np.argsort(q if higher_is_better else -q, kind="stable")
             if np.isfinite(q[i]) and (keep is None or keep(q[i]))][:min(k, MAX_THUMBS)]
    cells = []
    for i in order:
        b64 = thumbnail_base64(cols[1][i])
        img = (f"<img alt='{_esc(cols[1][i])}' src='data:image/jpeg;base64,{b64}'>" if b64
               else "<div class='missing'>unreadable</div>")
        labels = "".join(f"<br>{_esc(lf)}: {_esc(_caption_value(col[i]))}" for lf, col in zip(label_fields, cols[3:]))
        cells.append(f"<figure>{img}<figcaption>{_esc(field)} {fmt_short(q[i])}{labels}"
                     f"<br><small>{_esc(cols[1][i])}</small></figcaption></figure>")
    return f"<div class='thumbs'>{''.join(cells)}</div>" if cells else "<p>none</p>"
