"""Quality in FiftyOne's built-in Model Evaluation panel: scenarios and custom metrics.

**Scenarios.** The panel keeps the scenarios of a dataset in the execution store
``model_evaluation_panel_builtin`` of that dataset, under the key ``"scenarios"``: a dict
``{id: {"id", "name", "type", "subsets"[, "field"]}}`` (FiftyOne 1.22:
``plugins/utils/model_evaluation/__init__.py``, ``get_scenarios`` / ``set_scenarios``; the
record as ``plugins/operators/model_evaluation/__init__.py``, ``ConfigureScenario.execute``,
writes it). :func:`add_quality_scenario` builds the record with
:func:`~fiftyone_dnniqa.analysis.scenarios.quality_scenario` and writes it there through
:class:`~fiftyone.operators.store.ExecutionStore`'s public API, atomically
(``compare_and_set``), so the panel's per-subset metrics, confusion matrices and curves
show performance by quality. Scenarios belong to the dataset: the panel offers them for
every evaluation of it.

**Custom metrics.** :data:`METRICS` are :class:`~fiftyone.operators.EvaluationMetric`
operators of the plugin (listed in ``fiftyone.yml``). FiftyOne computes them when an
evaluation names them in ``custom_metrics`` (``evaluate_classifications(...,
custom_metrics=quality_metrics("iqa_aligned"))``) or on
``results.add_custom_metrics(...)`` (:func:`add_quality_metrics`), and stores
``results.custom_metrics[uri] = {key, value, label, lower_is_better}``, which the panel
lists beside accuracy and mAP. The interval of each value is in its label. FiftyOne 1.22
reloads multiclass classification results without their custom metrics
(``BaseClassificationResults._from_dict``), so an App server lists them for detection (and
binary classification) evaluations only; :func:`add_quality_metrics` warns when they do
not survive a reload.
"""

from __future__ import annotations

import logging
import math
from typing import Optional, Sequence

import fiftyone.operators as foo
import fiftyone.operators.types as types
from bson import ObjectId
from fiftyone.operators.store import ExecutionStore

from ..analysis.fields import quality_fields
from ..analysis.panel_stats import TARGET_LABELS
from ..analysis.results import fmt
from ..analysis.scenarios import QualityScenario, quality_alignment, quality_scenario
from .sharding import PLUGIN_NAME

__all__ = ["STORE_NAME", "SCENARIOS_KEY", "METRICS", "add_quality_scenario", "list_scenarios",
           "add_quality_metrics", "quality_metrics", "metric_uri"]

logger = logging.getLogger(__name__)

#: the built-in panel's execution store (per dataset) and the key of its scenarios
STORE_NAME = "model_evaluation_panel_builtin"
SCENARIOS_KEY = "scenarios"


def panel_store(samples) -> ExecutionStore:
    """The built-in Model Evaluation panel's execution store of ``samples``' dataset."""
    return ExecutionStore.create(STORE_NAME, samples._root_dataset._doc.id)


def list_scenarios(samples) -> dict:
    """``{id: record}`` of the dataset's Model Evaluation scenarios, as the panel reads them."""
    return dict(panel_store(samples).get(SCENARIOS_KEY) or {})


def add_quality_scenario(dataset, eval_key: str, field: str = "iqa_aligned", bins=5,
                         name: Optional[str] = None, higher_is_better: Optional[bool] = None,
                         overwrite: bool = True) -> QualityScenario:
    """Adds a scenario of quality bins to FiftyOne's Model Evaluation panel.

    Args:
        dataset: the dataset (or a view of it) holding evaluation ``eval_key``.
        eval_key: the evaluation whose samples the quantiles are taken over.
        field: a numeric quality field, or with ``bins="values"`` a categorical field
            (e.g. a ``Classification`` field or its ``<field>.label``).
        bins: a number of quantile bins (default 5), a list of thresholds, or
            ``"values"`` for one subset per value.
        name: the scenario's name (default: from the field and the bins).
        higher_is_better: the field's direction when its quality run records none.
        overwrite: replace a scenario of the same name (keeping its id); False raises.

    Returns:
        the :class:`~fiftyone_dnniqa.analysis.scenarios.QualityScenario`, with its ``id``.
        Subsets run from the worst quality to the best.

    Raises:
        ValueError: for an unknown evaluation or field, a non-numeric field without
            ``bins="values"``, bins that cannot be formed, or a name already taken
            (``overwrite=False``); nothing is written then.
    """
    scenario = quality_scenario(dataset, eval_key, field, bins=bins, name=name,
                                higher_is_better=higher_is_better)
    store = panel_store(dataset)
    for _ in range(20):
        current = store.get(SCENARIOS_KEY)
        scenarios = dict(current or {})
        same = [sid for sid, rec in scenarios.items() if rec.get("name") == scenario.name]
        if same and not overwrite:
            raise ValueError(f"the dataset already has a scenario named {scenario.name!r}; "
                             "pass overwrite=True or another name")
        scenario.id = same[0] if same else str(ObjectId())
        scenarios[scenario.id] = scenario.record()
        if current is None:
            done = store.set_if_absent(SCENARIOS_KEY, scenarios)
        else:
            done = store.compare_and_set(SCENARIOS_KEY, current, scenarios)
        if done:
            return scenario
    raise RuntimeError("the panel's scenarios kept changing while adding one; try again")


# ---------------------------------------------------------------------------
# Custom evaluation metrics
# ---------------------------------------------------------------------------


class _AlignmentMetric(foo.EvaluationMetric):
    """A number of :func:`~fiftyone_dnniqa.analysis.scenarios.quality_alignment` as a
    custom metric; parameters: ``field`` and ``quality_alignment``'s options."""

    NAME = LABEL = DESCRIPTION = ""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._label = None  # set by compute(): FiftyOne reads the label after computing

    @property
    def config(self):
        cfg = foo.EvaluationMetricConfig(
            name=self.NAME, label=self._label or self.LABEL, description=self.DESCRIPTION,
            eval_types=["classification", "detection", "segmentation"], lower_is_better=False,
            unlisted=True)
        # utils/eval/base.py stores config.kwargs.get("lower_is_better", True)
        cfg.kwargs["lower_is_better"] = cfg.lower_is_better
        return cfg

    def resolve_input(self, ctx):
        inputs = types.Object()
        fields = quality_fields(ctx.dataset)
        inputs.enum("field", fields, default=fields[0] if fields else None, required=True,
                    label="Quality field", view=types.DropdownView())
        return types.Property(inputs)

    def compute(self, samples, results, field="iqa_aligned", **options):
        a = quality_alignment(samples, results.key, field, **options)
        est, lo, hi, text = self.pick(a)
        self._label = f"{text} [{fmt(lo)}, {fmt(hi)}]"
        return float(est) if math.isfinite(est) else None

    def pick(self, a):  # pragma: no cover - every metric overrides it
        raise NotImplementedError


class QualitySpearman(_AlignmentMetric):
    NAME, LABEL = "quality_spearman", "Quality Spearman rho"
    DESCRIPTION = ("Spearman's rho of a quality field with per-sample performance (positive: "
                   "better quality, better performance), with its bootstrap interval")

    def pick(self, a):
        s = a.spearman
        return s.estimate, s.ci_low, s.ci_high, \
            f"Spearman rho, {a.field} vs {TARGET_LABELS.get(a.kind, a.kind)}"


class QualityErrorAUROC(_AlignmentMetric):
    NAME, LABEL = "quality_error_auroc", "Quality error AUROC"
    DESCRIPTION = "AUROC of low quality flagging errors, with its bootstrap interval"

    def pick(self, a):
        s = a.error_auroc
        return s.estimate, s.ci_low, s.ci_high, f"Error AUROC of {a.field}"


class HardestDecileAccuracy(_AlignmentMetric):
    NAME, LABEL = "hardest_decile_accuracy", "Hardest-decile accuracy"
    DESCRIPTION = "Accuracy (mean per-sample target) of the tenth of samples of worst quality"

    def pick(self, a):
        h = a.hardest
        what = TARGET_LABELS.get(a.kind, a.kind).capitalize()
        return h["estimate"], h["ci_low"], h["ci_high"], \
            f"{what} of the worst {h['fraction']:.0%} by {a.field} (n={h['n']})"


METRICS = (QualitySpearman, QualityErrorAUROC, HardestDecileAccuracy)
_NAMES = tuple(cls.NAME for cls in METRICS)


def metric_uri(name: str) -> str:
    """The operator URI of metric ``name`` (one of :data:`METRICS`' names)."""
    if name not in _NAMES:
        raise ValueError(f"unknown quality metric {name!r}; use one of {', '.join(_NAMES)}")
    return f"{PLUGIN_NAME}/{name}"


def quality_metrics(field: str = "iqa_aligned", metrics: Optional[Sequence[str]] = None,
                    **options) -> dict:
    """The ``custom_metrics`` argument of ``evaluate_*`` for ``field``: ``{uri: kwargs}``.

    ``options`` go to :func:`~fiftyone_dnniqa.analysis.scenarios.quality_alignment`
    (``higher_is_better``, ``kind``, ``n_boot``, ``confidence``, ``seed``, ``fraction``).
    """
    return {metric_uri(m): {"field": field, **options} for m in (metrics or _NAMES)}


def add_quality_metrics(dataset, eval_key: str, field: str = "iqa_aligned",
                        metrics: Optional[Sequence[str]] = None, **options) -> dict:
    """Computes the quality metrics of ``field`` on an existing evaluation and stores them
    where the Model Evaluation panel lists them.

    Checks everything first (evaluation, field, direction, the plugin's operators), so a
    bad input changes nothing. Clears the panel's cached evaluation data of the dataset
    (in the execution store; an App server already running keeps an in-memory copy until
    it restarts). Returns ``{uri: {key, value, label, lower_is_better}}``.
    """
    quality_alignment(dataset, eval_key, field, **{**options, "n_boot": 0})  # raises on bad input
    spec = quality_metrics(field, metrics, **options)
    missing = [uri for uri in spec if not foo.operator_exists(uri)]
    if missing:
        raise RuntimeError(f"FiftyOne does not find {', '.join(missing)}: install the plugin "
                           "first (fiftyone-dnniqa install-plugin)")
    ds = dataset._root_dataset
    results = ds.load_evaluation_results(eval_key)
    results.add_custom_metrics(spec, overwrite=True)
    panel_store(dataset).clear_cache()
    reloaded = ds.load_evaluation_results(eval_key, cache=False).custom_metrics or {}
    if any(uri not in reloaded for uri in spec):
        logger.warning(
            "FiftyOne does not keep the custom metrics of evaluation %r when it reloads its results "
            "(FiftyOne 1.22 drops them for multiclass classification results): the Model Evaluation "
            "panel of an App server will not list them; detection evaluations keep them", eval_key)
    return {uri: (results.custom_metrics or {}).get(uri) for uri in spec}
