"""Quality in FiftyOne's Model Evaluation panel, as plain functions (no App, no storage).

* :func:`quality_scenario` turns a quality field into a *scenario* of the built-in Model
  Evaluation panel: its subsets are quality bins (quantiles of the evaluated samples by
  default, or explicit thresholds), ordered from the worst quality to the best following
  the field's direction, or one subset per value of a categorical field (``bins="values"``).
  The panel then shows its own metrics, confusion matrices and curves per subset.
  :mod:`fiftyone_dnniqa.app.model_evaluation` stores the record where the panel reads it.
* :func:`quality_alignment` relates a quality field to an evaluation: Spearman's rho and
  the AUROC of low quality flagging errors (both with bootstrap intervals, from
  :mod:`.correlation`) and the accuracy of the hardest decile. The custom evaluation
  metrics of the plugin report these numbers beside accuracy and mAP.

Numeric scenarios are of the panel's ``custom_code`` type: a small, readable Python
snippet defining ``subsets`` (the panel executes it, and shows it when the scenario is
edited). Bin ``j`` holds the samples with ``edge[j-1] <= value < edge[j]``; the first bin
is open below and the last open above, and samples without a finite value (None, NaN)
are in none. Categorical scenarios are of its ``sample_field`` type.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import asdict, dataclass, field as dc_field
from typing import Dict, List, Optional, Union

import numpy as np
import fiftyone as fo
from fiftyone import ViewField as F
from scipy import stats

from .correlation import auroc, correlate
from .fields import field_direction
from .grouping import wilson_interval
from .resampling import clean_pairs, is_binary, orient
from .results import AUROC, Correlation, fmt, jsonable
from .targets import get_target, pick_target, to_floats

__all__ = ["QualityScenario", "QualityAlignment", "quality_scenario", "quantile_edges",
           "evaluated_values", "quality_alignment", "hardest_accuracy", "MAX_VALUES"]

#: most subsets of a categorical scenario
MAX_VALUES = 50
#: ``bins`` value asking for one subset per value of the field
VALUES = "values"


@dataclass
class QualityScenario:
    """A scenario of the Model Evaluation panel and what it was built from.

    ``record()`` is what the panel stores (``id`` is set once stored). ``subset_names``
    run from the worst quality to the best (numeric) or by decreasing count (values);
    ``subset_defs`` maps each name to the ``subset_def`` that ``results.use_subset``
    takes, the same definitions the panel derives from the record.
    """

    name: str
    type: str  # "custom_code" (quality bins) or "sample_field" (one subset per value)
    subsets: Union[str, list]  # the code, or the values
    field: str
    eval_key: str
    higher_is_better: Optional[bool]
    edges: List[float]  # inner thresholds, ascending (numeric scenarios)
    subset_names: List[str]
    subset_defs: Dict[str, dict] = dc_field(repr=False)
    counts: Dict[str, int] = dc_field(default_factory=dict)  # evaluated samples per subset
    id: Optional[str] = None

    def record(self) -> dict:
        """The scenario as the Model Evaluation panel stores it."""
        rec = {"name": self.name, "type": self.type, "subsets": self.subsets}
        if self.type == "sample_field":
            rec["field"] = self.field
        if self.id is not None:
            rec = {"id": self.id, **rec}
        return rec


def _fmt(x: float) -> str:
    """A bin threshold in the package's one number format (three decimals)."""
    return fmt(x)


def quantile_edges(values, bins: int) -> np.ndarray:
    """Inner thresholds of ``bins`` quantile bins of the finite ``values``, ascending.

    Tied quantiles merge and a threshold at the minimum is dropped (its lower bin would
    be empty), so there may be fewer bins than asked.
    """
    v = np.asarray(values, float)
    v = v[np.isfinite(v)]
    inner = np.quantile(v, np.linspace(0, 1, int(bins) + 1)[1:-1]) if v.size else np.zeros(0)
    inner = np.unique(inner)
    return inner[inner > v.min()] if v.size else inner


def _bin_bounds(edges):
    lows = [-math.inf] + list(edges)
    highs = list(edges) + [math.inf]
    return list(zip(lows, highs))


def _bin_expr(field, lo, hi):
    """The sample expression of ``lo <= field < hi`` (as the generated code writes it)."""
    if hi == math.inf:
        return F(field) >= float(lo)
    return (F(field) >= float(lo)) & (F(field) < float(hi))


def _bin_code(field, lo, hi) -> str:
    f = f"F({field!r})"
    if hi == math.inf:
        return f"{f} >= {float(lo)!r}"
    low = "float('-inf')" if lo == -math.inf else repr(float(lo))
    return f"({f} >= {low}) & ({f} < {float(hi)!r})"


def _bin_name(rank, k, field, lo, hi) -> str:
    if lo == -math.inf:
        interval = f"{field} < {_fmt(hi)}"
    elif hi == math.inf:
        interval = f"{field} >= {_fmt(lo)}"
    else:
        interval = f"{_fmt(lo)} <= {field} < {_fmt(hi)}"
    tag = " worst quality" if rank == 1 else " best quality" if rank == k else ""
    return f"{rank}/{k}{tag}: {interval}"


def _scenario_code(dataset_name, field, eval_key, how, names, bounds) -> str:
    # the dataset's name also keeps the panel's in-memory cache, keyed by the code, apart
    lines = [f"# Quality bins of {field!r} on dataset {dataset_name!r} ({how}, evaluation "
             f"{eval_key!r}), worst quality first.",
             "# Written by fiftyone-dnniqa's add_quality_scenario; edit freely.",
             "from fiftyone import ViewField as F", "", "subsets = {"]
    for name, (lo, hi) in zip(names, bounds):
        lines.append(f"    {name!r}: dict(type='field', expr={_bin_code(field, lo, hi)}),")
    lines.append("}")
    return "\n".join(lines) + "\n"


def _check_field(samples, field):
    ds = samples._root_dataset
    f = samples.get_field(field)
    if f is None:
        raise ValueError(f"no field {field!r} on dataset {ds.name!r}")
    return f


def _numeric_edges(values, bins):
    if isinstance(bins, (int, np.integer)) and not isinstance(bins, bool):
        if bins < 2:
            raise ValueError(f"bins must be at least 2, got {bins}")
        if not np.isfinite(values).any():
            raise ValueError("the evaluated samples have no finite value of the field")
        edges = quantile_edges(values, int(bins))
        if edges.size == 0:
            raise ValueError("the field takes a single value on the evaluated samples: no bins")
        return edges, f"{edges.size + 1} quantile bins"
    try:
        edges = np.asarray([float(b) for b in bins], float)
    except (TypeError, ValueError):
        raise ValueError(f"bins must be a number of quantile bins, a list of thresholds or "
                         f"{VALUES!r}, got {bins!r}") from None
    if edges.size == 0 or not np.isfinite(edges).all():
        raise ValueError(f"thresholds must be finite numbers, got {list(bins)!r}")
    edges = np.sort(edges)
    if np.any(np.diff(edges) == 0):
        raise ValueError(f"thresholds must be distinct, got {list(bins)!r}")
    return edges, "thresholds"


def evaluated_values(samples, eval_key: str, path: str) -> list:
    """Values of ``path`` on the samples evaluation ``eval_key`` evaluated (those with a
    per-sample target: samples added after the evaluation are left out)."""
    view = samples._root_dataset.load_evaluation_view(eval_key)
    tids, target = get_target(view, eval_key)
    ids, values = view.values(["id", path])
    if list(ids) != list(tids):  # pragma: no cover - the same view read twice
        raise RuntimeError("the evaluation view changed while it was read")
    return [v for v, t in zip(values, np.isfinite(target)) if t]


def _numeric_scenario(samples, field, eval_key, bins, name, hib) -> QualityScenario:
    values = to_floats(evaluated_values(samples, eval_key, field))
    edges, how = _numeric_edges(values, bins)
    bounds = _bin_bounds(edges)  # ascending values
    if not hib:
        bounds = bounds[::-1]  # worst quality first: the highest values
    k = len(bounds)
    names = [_bin_name(r + 1, k, field, lo, hi) for r, (lo, hi) in enumerate(bounds)]
    defs = {n: dict(type="field", expr=_bin_expr(field, lo, hi)) for n, (lo, hi) in zip(names, bounds)}
    with np.errstate(invalid="ignore"):
        counts = {n: int(((values >= lo) & (values < hi)).sum()) for n, (lo, hi) in zip(names, bounds)}
    code = _scenario_code(samples._root_dataset.name, field, eval_key, how, names, bounds)
    return QualityScenario(
        name=name or f"Quality: {field} ({how})", type="custom_code", subsets=code, field=field,
        eval_key=eval_key, higher_is_better=hib, edges=[float(e) for e in edges],
        subset_names=names, subset_defs=defs, counts=counts)


def _values_scenario(samples, path, eval_key, name) -> QualityScenario:
    counts = Counter(v for v in evaluated_values(samples, eval_key, path) if v is not None)
    if not counts:
        raise ValueError(f"{path!r} has no values on the evaluated samples")
    if len(counts) > MAX_VALUES:
        raise ValueError(f"{path!r} takes {len(counts)} values on the evaluated samples; one subset "
                         f"per value allows at most {MAX_VALUES}: pass numeric bins instead")
    values = sorted(counts, key=lambda v: (-counts[v], str(v)))
    names = [str(v) for v in values]
    defs = {n: dict(type="field", field=path, value=v) for n, v in zip(names, values)}
    return QualityScenario(
        name=name or f"By {path}", type="sample_field", subsets=values, field=path,
        eval_key=eval_key, higher_is_better=None, edges=[], subset_names=names, subset_defs=defs,
        counts={n: int(counts[v]) for n, v in zip(names, values)})


def quality_scenario(samples, eval_key: str, field: str = "iqa_aligned", bins=5,
                     name: Optional[str] = None,
                     higher_is_better: Optional[bool] = None) -> QualityScenario:
    """The Model Evaluation scenario of ``field`` over the samples of evaluation ``eval_key``.

    Args:
        samples: the dataset (or a view of it) holding the evaluation.
        eval_key: a classification, detection or segmentation evaluation of the dataset.
        field: a numeric sample field (a quality score), or with ``bins="values"`` a
            categorical one (a string, int or bool field, a ``Classification`` field or its
            ``<field>.label``).
        bins: the number of quantile bins (of the evaluated samples' finite values), a
            list of thresholds, or ``"values"`` for one subset per value.
        name: the scenario's name (default: from the field and the bins).
        higher_is_better: the field's direction when its quality run does not record one.

    Raises:
        ValueError: unknown evaluation or field, a non-numeric field without
            ``bins="values"``, an unknown direction, or bins that cannot be formed.
    """
    pick_target(samples, eval_key, None)  # NoEvaluationError (a ValueError) with the keys
    f = _check_field(samples, field)
    if isinstance(bins, str):
        if bins != VALUES:
            raise ValueError(f"bins must be a number, a list of thresholds or {VALUES!r}, got {bins!r}")
        if isinstance(f, fo.EmbeddedDocumentField) and issubclass(f.document_type, fo.Classification):
            field, f = f"{field}.label", samples.get_field(f"{field}.label")
        if not isinstance(f, (fo.StringField, fo.IntField, fo.BooleanField, fo.FloatField)):
            raise ValueError(f"{field!r} is a {type(f).__name__}: one subset per value needs a "
                             "string, number or bool field (or a Classification's label)")
        return _values_scenario(samples, field, eval_key, name)
    if not isinstance(f, (fo.FloatField, fo.IntField)):
        raise ValueError(f"{field!r} is a {type(f).__name__}, not a number: quality bins need a "
                         f"numeric field; pass bins={VALUES!r} for one subset per value")
    hib = field_direction(samples, field, higher_is_better)
    return _numeric_scenario(samples, field, eval_key, bins, name, hib)


# ---------------------------------------------------------------------------
# Alignment of a quality field with an evaluation
# ---------------------------------------------------------------------------


@dataclass
class QualityAlignment:
    """How a quality field relates to an evaluation's per-sample performance.

    ``spearman``: rho with its bootstrap interval (positive: better quality, better
    performance). ``error_auroc``: how well low quality flags errors (an error is a wrong
    prediction; for non-binary targets such as detection F1, a sample below 1).
    ``hardest``: the mean target (accuracy) of the ``fraction`` of samples of worst quality.
    """

    field: str
    eval_key: str
    kind: str
    higher_is_better: bool
    spearman: Correlation
    error_auroc: AUROC
    hardest: dict

    def to_dict(self) -> dict:
        return jsonable(asdict(self))


def hardest_accuracy(quality, target, fraction: float = 0.1, higher_is_better: bool = True,
                     confidence: float = 0.95) -> dict:
    """Mean target of the ``ceil(fraction * n)`` complete pairs of worst quality.

    Binary targets get a Wilson interval, continuous ones a t interval. Ties at the cut
    are broken by the samples' order.
    """
    if not 0 < fraction <= 1:
        raise ValueError(f"fraction must be in (0, 1], got {fraction}")
    (q, t), n_missing, _ = clean_pairs(quality, target, names=["quality", "target"])
    n_total = len(q)
    n = math.ceil(fraction * n_total)
    out = {"fraction": fraction, "n": n, "n_total": n_total, "n_missing": n_missing,
           "estimate": math.nan, "ci_low": math.nan, "ci_high": math.nan, "interval": None}
    if n == 0:
        return out
    hard = t[np.argsort(orient(q, higher_is_better), kind="stable")[:n]]
    out["estimate"] = float(hard.mean())
    if is_binary(t):
        lo, hi = wilson_interval(hard.sum(), n, confidence)
        out.update(ci_low=float(lo), ci_high=float(hi), interval="wilson")
    elif n > 1:
        half = stats.t.ppf(0.5 + confidence / 2, n - 1) * hard.std(ddof=1) / math.sqrt(n)
        out.update(ci_low=float(out["estimate"] - half), ci_high=float(out["estimate"] + half),
                   interval="t")
    return out


def quality_alignment(samples, eval_key: str, field: str, higher_is_better: Optional[bool] = None,
                      kind: Optional[str] = None, n_boot: int = 1000, confidence: float = 0.95,
                      seed=0, fraction: float = 0.1) -> QualityAlignment:
    """Spearman's rho, error AUROC and hardest-decile accuracy of ``field`` on ``eval_key``.

    The target is :func:`~fiftyone_dnniqa.analysis.targets.get_target`'s (``kind``
    default: correctness for classification, F1 for detection, pixel accuracy for
    segmentation); samples without a finite quality or target are left out.
    """
    ti = pick_target(samples, eval_key, kind)
    kind = kind or ti.default_kind
    _check_field(samples, field)
    hib = field_direction(samples, field, higher_is_better)
    ids, target = get_target(samples, eval_key, kind)
    qids, q = samples.values(["id", field])
    q = to_floats(q)
    if list(qids) != list(ids):  # the same collection read twice: the same order
        pos = {i: k for k, i in enumerate(qids)}
        q = np.asarray([q[pos[i]] if i in pos else np.nan for i in ids], float)
    known = np.isfinite(target)
    correct = target.copy()  # an error: a wrong prediction, or a sample short of a perfect 1
    if not is_binary(target[known]):
        correct[known] = (target[known] >= 1).astype(float)
    return QualityAlignment(
        field=field, eval_key=eval_key, kind=kind, higher_is_better=hib,
        spearman=correlate(q, target, "spearman", higher_is_better=hib, n_boot=n_boot,
                           confidence=confidence, seed=seed),
        error_auroc=auroc(q, correct, higher_is_better=hib, n_boot=n_boot, confidence=confidence,
                          seed=seed),
        hardest=hardest_accuracy(q, target, fraction, hib, confidence))
