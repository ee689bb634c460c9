"""The accuracy to expect on a view from one quality field alone, with its interval,
beside the accuracy measured there: the panel's header and the report's answer.

The prior is fitted where the view is not: on the dataset's evaluated samples outside
the view when there are enough of them (then the view's own labels are a fair check,
and a view with no labels still gets an estimate). When the view is (nearly) the whole
evaluated dataset, it is fitted on one half of the view's labelled samples and checked
on the other (:func:`.prior.heldout_error`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np

from .fields import field_direction
from .grouping import wilson_interval
from .panel_stats import align_values
from .prior import PerformancePrior, heldout_error
from .results import fmt_ci, fmt_size
from .targets import get_target, pick_target, to_floats

#: the fewest evaluated samples outside the view a prior is fitted on
MIN_REFERENCE = 30
#: the fewest labelled samples of the view for the held-out halves
MIN_HALVES = 40
OUTSIDE, HALVES = "outside", "halves"
#: how :func:`expectation_sentence` begins (the report sets it in bold)
LEAD = "Accuracy to expect"


@dataclass
class ViewExpectation:
    """The expected accuracy of ``n`` samples (``estimate``, ``low``, ``high`` at
    ``confidence``) and the accuracy measured on the ``n_measured`` of them with a label.
    ``source``: ``"outside"`` (the prior was fitted on ``n_fit`` evaluated samples outside
    the view) or ``"halves"`` (fitted on ``n_fit`` of the view's samples, the estimate and
    the measurement on the other half)."""

    field: str
    eval_key: str
    source: str
    n_fit: int
    n: int
    estimate: float
    low: float
    high: float
    confidence: float
    n_measured: int
    measured: float
    measured_low: float
    measured_high: float


def _values(samples, field, eval_key):
    """``(ids, quality, correct)`` of every sample of ``samples`` (NaN where missing)."""
    ids, correct = get_target(samples, eval_key, "correct")
    sids, q = samples.values(["id", field])
    return np.asarray(ids), align_values(sids, ids, to_floats(q)), correct


def _measured(correct, confidence):
    c = correct[np.isfinite(correct)]
    if not len(c):
        return 0, float("nan"), float("nan"), float("nan")
    lo, hi = wilson_interval(c.sum(), len(c), confidence)
    return len(c), float(c.mean()), float(lo), float(hi)


def expected_view_accuracy(view, field: str, eval_key: Optional[str] = None,
                           higher_is_better: Optional[bool] = None,
                           confidence: float = 0.9, seed: int = 0) -> Optional[ViewExpectation]:
    """The accuracy ``field`` alone predicts on ``view`` (see the module's docstring), or
    None when neither the samples outside the view nor the view's own labelled samples
    can fit a prior (too few, or all right or all wrong)."""
    ti = pick_target(view, eval_key, "correct")
    hib = field_direction(view, field, higher_is_better)
    d_ids, d_q, d_c = _values(view._root_dataset, field, ti.eval_key)  # one read of the dataset
    inside = np.isin(d_ids, np.asarray(view.values("id")))
    v_q, v_c = d_q[inside], d_c[inside]
    outside = ~inside & np.isfinite(d_q) & np.isfinite(d_c)
    scored = np.isfinite(v_q)
    if outside.sum() >= MIN_REFERENCE and len(np.unique(d_c[outside])) == 2 and scored.any():
        prior = PerformancePrior.fit(d_q[outside], d_c[outside], higher_is_better=hib, n_refits=0)
        row = prior.expected_accuracy(v_q[scored], confidence=confidence)[0]
        n_m, m, m_lo, m_hi = _measured(v_c[scored], confidence)
        return ViewExpectation(field, ti.eval_key, OUTSIDE, int(outside.sum()), row["n"], row["estimate"],
                               row["low"], row["high"], confidence, n_m, m, m_lo, m_hi)
    pairs = scored & np.isfinite(v_c)
    if pairs.sum() < MIN_HALVES or len(np.unique(v_c[pairs])) < 2:
        return None
    res = heldout_error(v_q[pairs], v_c[pairs], higher_is_better=hib, seed=seed, n_refits=50,
                        n_boot=300, confidence=confidence).overall
    n_test = res["n"]
    m_lo, m_hi = (float(v) for v in wilson_interval(round(res["actual"] * n_test), n_test, confidence))
    return ViewExpectation(field, ti.eval_key, HALVES, int(pairs.sum()) - n_test, n_test, res["predicted"],
                           res["ci_low"], res["ci_high"], confidence, n_test, res["actual"], m_lo, m_hi)


def expectation_sentence(e: Optional[ViewExpectation]) -> Optional[str]:
    """One line for the panel and the report (plain text, no markup)."""
    if e is None:
        return None
    pct = f"{e.confidence:.0%}"
    head = f"{LEAD} from {e.field} alone: {fmt_ci(e.estimate, e.low, e.high)} ({pct} interval)"
    if e.source == OUTSIDE:
        text = (f"{head} for the {fmt_size(e.n)} scored samples of this view, from a prior fitted on the "
                f"{fmt_size(e.n_fit)} evaluated samples outside it")
    else:
        text = (f"{head} for a held-out half of this view ({fmt_size(e.n)} samples), from a prior fitted "
                f"on the other half ({fmt_size(e.n_fit)})")
    if e.n_measured:
        text += (f"; measured {fmt_ci(e.measured, e.measured_low, e.measured_high)} on the "
                 f"{fmt_size(e.n_measured)} with a label")
    else:
        text += "; none of them has a label to check it"
    return text
