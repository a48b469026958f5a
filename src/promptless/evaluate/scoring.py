"""Calling a metric and reading what it returns, in one place for evaluation and the optimizers.

A metric is ``metric(example, prediction, trace=None) -> bool | number``; a metric written with two
parameters is called without the trace. ``call_metric`` calls it the right way and turns the value into a
float (``to_score``: True is 1.0, False and None are 0.0, anything else must convert with ``float``).
``metric_name`` is what logs, reports and run identities call a metric, and ``short`` makes a value
JSON-safe and cuts it for storing beside a score.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

from ..adapters.parsing import to_jsonable
from ..errors import ConfigurationError

Metric = Callable[..., Any]


def takes_trace(metric: Metric) -> bool:
    """Whether ``metric`` accepts a third (trace) argument; True when its signature cannot be read."""
    try:
        sig = inspect.signature(metric)
    except (TypeError, ValueError):
        return True
    params = list(sig.parameters.values())
    if any(p.kind is inspect.Parameter.VAR_POSITIONAL for p in params):
        return True
    positional = [p for p in params if p.kind in (inspect.Parameter.POSITIONAL_ONLY,
                                                  inspect.Parameter.POSITIONAL_OR_KEYWORD)]
    return len(positional) >= 3


def to_score(value: Any, metric: Any = None) -> float:
    """A metric's return value as a float; ConfigurationError (naming the metric) when it is not a number."""
    if isinstance(value, bool):
        return 1.0 if value else 0.0
    if value is None:
        return 0.0
    try:
        return float(value)
    except (TypeError, ValueError):
        raise ConfigurationError(
            f"the metric {metric_name(metric)} returned {value!r}; a metric must return a bool or a number"
        ) from None


def call_metric(metric: Metric, example: Any, prediction: Any, trace: Any = None) -> float:
    """``metric(example, prediction, trace)`` (or without trace for two-argument metrics), as a float."""
    value = metric(example, prediction, trace) if takes_trace(metric) else metric(example, prediction)
    return to_score(value, metric)


def metric_name(metric: Any) -> str:
    """The metric's ``__name__``, else its class name; ``"None"`` for no metric."""
    if metric is None:
        return "None"
    return str(getattr(metric, "__name__", None) or type(metric).__name__)


def short(value: Any, limit: int = 400) -> Any:
    """``value`` made JSON-safe; a string longer than ``limit`` is cut and ends with ``...``."""
    value = to_jsonable(value)
    if isinstance(value, str) and len(value) > limit:
        return value[:limit] + "..."
    return value


__all__ = ["Metric", "call_metric", "metric_name", "short", "takes_trace", "to_score"]
