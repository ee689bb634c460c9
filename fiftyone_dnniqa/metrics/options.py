"""Metric options, checked before anything is built: each key against the metric's own
signature (its class's ``__init__`` parameters), each value against the metric's value
sets (``tta``, ``statistic``, ...) and the type of its default. One home for the check:
:func:`~fiftyone_dnniqa.scoring.plan.plan_quality` calls it (so the Python API and the
CLI refuse a bad option before reading an image), and the App's form calls it as the
user types.

A metric declares the value sets of its options with a class attribute
``option_choices = {"option": (value, ...)}`` (merged along its classes); this module
knows those of the package's own metrics.
"""

from __future__ import annotations

import difflib
import functools
import inspect
import json
import numbers
from typing import Dict, List, Optional, Sequence, Tuple

from . import aligned, zsclip
from .iqa import PyiqaMetric, pyiqa_configs
from .registry import metric_factory

__all__ = ["PROXY_OPTIONS", "accepted_options", "check_metric_options", "checked_options_per_metric",
           "metric_options_with_proxy", "option_choices", "option_problem", "options_per_metric", "options_problem",
           "takes_option"]

#: the options naming a metric's proxy network(s): ``proxy`` (``backbone`` is its older name)
PROXY_OPTIONS = ("proxy", "backbone")

#: value sets of the package's own metrics (a metric may also declare ``option_choices``)
_CHOICES = {
    aligned.AlignedMetric: {"tta": aligned.TTA_MODES, "statistic": aligned.STATISTICS},
    aligned.AlignedTaskMetric: {"label_mode": aligned.AlignedTaskMetric.LABEL_MODES},
    aligned.AlignedFRMetric: {"divergence": aligned.DIVERGENCES},
    zsclip.ZSCLIPMetric: {"variant": zsclip.VARIANTS, "statistic": zsclip.STATISTICS},
}
#: what ``pyiqa.create_metric`` itself takes beside its architecture's options
_PYIQA_OWN = ("as_loss", "loss_weight", "loss_reduction", "seed", "check_input_range")


def _parameters(factory) -> Tuple[Dict[str, inspect.Parameter], bool]:
    """The named keyword parameters of ``factory`` and whether it takes ``**kwargs``."""
    params = inspect.signature(factory).parameters
    named = {k: p for k, p in params.items()
             if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
    return named, any(p.kind == p.VAR_KEYWORD for p in params.values())


@functools.lru_cache(maxsize=None)
def _pyiqa_parameters(name: str) -> Tuple[Dict[str, inspect.Parameter], bool]:
    """The options of pyiqa metric ``name``: ``max_side``, pyiqa's own and its network's
    (any option when its network cannot be looked up)."""
    named, _ = _parameters(PyiqaMetric)
    named.pop("name")
    named.update({k: inspect.Parameter(k, inspect.Parameter.KEYWORD_ONLY) for k in _PYIQA_OWN})
    try:  # deferred: importing pyiqa's networks takes seconds, and only options of its metrics need it
        import pyiqa

        archs = pyiqa.archs
        network = pyiqa_configs()[name]["metric_opts"]["type"]
        if network not in archs.ARCH_REGISTRY:
            archs._lazy_import_arch(network)
        arch_named, arch_any = _parameters(archs.ARCH_REGISTRY.get(network))
    except Exception:  # pyiqa's internals moved: let pyiqa itself judge the options
        return named, True
    named.update(arch_named)
    return named, arch_any


def _signature(name: str) -> Tuple[Dict[str, inspect.Parameter], bool]:
    factory = metric_factory(name)
    if factory is PyiqaMetric:
        return _pyiqa_parameters(name)
    return _parameters(factory)


def accepted_options(name: str) -> Optional[List[str]]:
    """The option names metric ``name`` takes (its signature), or None when it takes any."""
    named, anything = _signature(name)
    return None if anything else sorted(named)


def takes_option(name: str, option: str) -> bool:
    """Whether metric ``name`` takes ``option`` (by its signature)."""
    named, anything = _signature(name)
    return anything or option in named


def option_choices(name: str) -> Dict[str, tuple]:
    """The value sets of metric ``name``'s options: ``{"tta": (None, "flip", "multiscale"), ...}``."""
    factory = metric_factory(name)
    choices: Dict[str, tuple] = {}
    for cls in reversed(getattr(factory, "__mro__", (factory,))):
        choices.update(_CHOICES.get(cls, {}))
        choices.update(cls.__dict__.get("option_choices") or {})
    named, anything = _signature(name)
    return {k: tuple(v) for k, v in choices.items() if anything or k in named}


def _words(value) -> str:
    """A value as the user types it (JSON), ``null`` for None."""
    try:
        return json.dumps(value)
    except (TypeError, ValueError):
        return repr(value)


def _is_number(value) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _value_problem(name: str, key: str, value, param: Optional[inspect.Parameter], choices) -> Optional[str]:
    if key in choices:
        try:
            ok = value in choices[key]
        except TypeError:  # an unhashable value compared with the choices
            ok = False
        if not ok:
            return (f"'{name}' option '{key}' must be one of {', '.join(_words(c) for c in choices[key])}, "
                    f"not {_words(value)}")
        return None
    default = param.default if param is not None else inspect.Parameter.empty
    if isinstance(default, bool) and not isinstance(value, bool):
        return f"'{name}' option '{key}' must be true or false, not {_words(value)}"
    if _is_number(default) and not _is_number(value):
        return f"'{name}' option '{key}' must be a number, not {_words(value)}"
    return None


def check_metric_options(name: str, options: Optional[dict]) -> dict:
    """``options`` of metric ``name``, checked against its signature and value sets.

    Raises:
        ValueError: naming the closest option for a misspelt key, or the valid choices
            for a value outside a value set (also for an unknown metric name)
    """
    options = dict(options or {})
    if not options:
        metric_factory(name)  # an unknown name raises here too
        return options
    named, anything = _signature(name)
    choices = option_choices(name)
    for key, value in options.items():
        if not anything and key not in named:
            close = difflib.get_close_matches(str(key), list(named), n=1, cutoff=0.6)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            valid = ", ".join(sorted(named)) or "none"
            raise ValueError(f"'{name}' has no option '{key}'{hint}; its options: {valid}")
        problem = _value_problem(name, key, value, named.get(key), choices)
        if problem:
            raise ValueError(problem)
    return options


def option_problem(name: str, options: Optional[dict]) -> Optional[str]:
    """Why ``options`` cannot build metric ``name``, or None (what a form shows inline)."""
    try:
        check_metric_options(name, options)
    except ValueError as e:
        return str(e)
    return None


def options_per_metric(names: Sequence, options: Optional[dict]) -> List[dict]:
    """The options of each metric of ``names``, unchecked. ``options`` is one dict for every
    metric given by name, or, for several metrics, a dict keyed by metric name
    (``{"aligned": {"tta": "flip"}, "cause": {}}``)."""
    names = list(names)
    if not options:
        return [{} for _ in names]
    if not isinstance(options, dict):
        raise ValueError(f"metric options must be a dict, not {type(options).__name__}")
    if _keyed_by_metric(names, options):
        return [dict(options.get(n) or {}) if isinstance(n, str) else {} for n in names]
    if not all(isinstance(n, str) for n in names):
        raise ValueError("metric options apply to metrics given by name, not to built metrics")
    return [dict(options) for _ in names]


def _keyed_by_metric(names: Sequence, options: dict) -> bool:
    """Whether ``options`` (a dict) gives several metrics each its own options, keyed by name."""
    named = [n for n in names if isinstance(n, str)]
    return len(names) > 1 and all(k in named and isinstance(v, dict) for k, v in options.items())


def options_problem(names: Sequence, options: Optional[dict], per: List[dict]) -> Optional[str]:
    """Why ``per`` (:func:`options_per_metric` of ``names`` and ``options``) cannot build the
    metrics given by name, or None: the first refusal of :func:`check_metric_options`. Where
    one object of options went to several metrics, the message says how to give each its own."""
    names = list(names)
    shared = bool(options) and len(names) > 1 and not _keyed_by_metric(names, options)
    for name, opts in zip(names, per):
        problem = option_problem(name, opts) if isinstance(name, str) else None
        if problem and shared:
            example = ", ".join(f'"{n}": {{...}}' for n in names if isinstance(n, str))
            return f"{problem}; these options went to every metric: give each its own, as {{{example}}}"
        if problem:
            return problem
    return None


def checked_options_per_metric(names: Sequence, options: Optional[dict]) -> List[dict]:
    """:func:`options_per_metric`, refused with :func:`options_problem`'s message when a metric
    given by name cannot take its options."""
    per = options_per_metric(names, options)
    problem = options_problem(names, options, per)
    if problem:
        raise ValueError(problem)
    return per


def _as_list(value):
    """A proxy or weights setting: None, one item, or a list (comma-separated text too)."""
    if value is None or value == "" or value == []:
        return None
    items = value.split(",") if isinstance(value, str) else list(value)
    items = [str(v).strip() for v in items if str(v).strip()]
    if not items:
        return None
    return items[0] if len(items) == 1 else items


#: a weights entry that names no file: that proxy's standard weights (``--weights none,mine.pth``)
STANDARD_WEIGHTS = ("none", "default", "-")


def _weights_entries(weights):
    """Weights as given, with :data:`STANDARD_WEIGHTS` entries as None."""
    if weights is None:
        return None
    items = [None if str(w).strip().lower() in STANDARD_WEIGHTS else w
             for w in (weights if isinstance(weights, list) else [weights])]
    return items if isinstance(weights, list) else items[0]


def metric_options_with_proxy(names: Sequence[str], options: Optional[dict], proxy=None,
                              weights=None) -> Optional[dict]:
    """``options`` with the proxy network(s) and their weights added for every metric of
    ``names`` that takes a proxy (its ``proxy`` option, else its older ``backbone``). A
    list (or comma-separated text) of proxies is an ensemble; ``weights`` are paths, one
    per proxy (``"none"`` for a proxy's standard weights). Returns one dict for one metric, a dict keyed by metric name for several."""
    proxy, weights = _as_list(proxy), _weights_entries(_as_list(weights))
    names = list(names)
    if proxy is None and weights is None:
        return options
    per = options_per_metric(names, options)
    takers = []
    for name, opts in zip(names, per):
        key = next((k for k in PROXY_OPTIONS if k in (accepted_options(name) or ())), None)
        if key is None:
            continue
        takers.append(name)
        if proxy is not None:
            opts[key] = proxy
        if weights is not None:
            if not takes_option(name, "weights"):
                raise ValueError(f"'{name}' takes no proxy weights file")
            opts["weights"] = weights
    if not takers:
        raise ValueError(f"{', '.join(names)} take(s) no proxy network: choose a DNN-aligned metric "
                         "(aligned, aligned_task, aligned_fr) to choose its proxy")
    if len(names) == 1:
        return per[0]
    return {n: o for n, o in zip(names, per)}
