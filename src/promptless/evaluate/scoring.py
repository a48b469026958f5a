"""Calling a metric and reading what it returns, in one place for evaluation and the optimizers.

A metric is ``metric(example, prediction, trace=None) -> bool | number``; a metric written with two
parameters is called without the trace. ``call_metric`` calls it the right way and turns the value into a
float (``to_score``: True is 1.0, False and None are 0.0, anything else must convert with ``float``).

A metric may also return a score with feedback text, for optimizers that read it (GEPA shows it to its
reflection model): ``pl.Prediction(score=0.5, feedback="...")`` (any record with a ``score`` field or
attribute, and optionally ``feedback``; a dict with a ``"score"`` key too) or a ``(score, feedback)`` tuple.
``split_feedback`` takes such a value apart; ``to_score`` reads the score of either form, so every
optimizer and ``Evaluate`` accept a feedback metric; ``call_metric_feedback`` gives both.
``metric_name`` is what logs, reports and run identities call a metric, and ``short`` makes a value
JSON-safe and cuts it for storing beside a score.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

from ..errors import ConfigurationError
from ..values import to_jsonable

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


def split_feedback(value: Any) -> tuple[Any, str | None]:
    """A metric's return value as ``(score part, feedback text or None)``.

    ``(score, feedback)`` tuples, dicts with a ``"score"`` key and records with a ``score`` field or attribute
    (``pl.Prediction(score=..., feedback=...)``) are taken apart; anything else is all score, no feedback. The
    score part is returned as it is (``to_score`` converts it)."""
    if isinstance(value, (bool, int, float, str)) or value is None:
        return value, None
    if isinstance(value, tuple):
        if len(value) == 2 and (value[1] is None or isinstance(value[1], str)):
            return value[0], value[1]
        return value, None
    if isinstance(value, dict):
        if "score" in value:
            return value["score"], _feedback_text(value.get("feedback"))
        return value, None
    try:
        score = getattr(value, "score")  # noqa: B009 - records (Example, Prediction) raise AttributeError
    except AttributeError:
        return value, None
    if callable(score):  # a method called score, not a score
        return value, None
    return score, _feedback_text(getattr(value, "feedback", None))


def _feedback_text(feedback: Any) -> str | None:
    if feedback is None:
        return None
    return feedback if isinstance(feedback, str) else str(feedback)


def to_score(value: Any, metric: Any = None, *, none_is_zero: bool = True) -> float:
    """A metric's return value as a float; ConfigurationError (naming the metric) when it is not a number.
    A score with feedback (see ``split_feedback``) gives its score. None is 0.0 for the optimizers; ``Evaluate``
    passes ``none_is_zero=False``, so that a metric that forgot its ``return`` shows up as a failed row."""
    raw, _ = split_feedback(value)
    if isinstance(raw, bool):
        return 1.0 if raw else 0.0
    if raw is None and none_is_zero:
        return 0.0
    try:
        return float(raw)
    except (TypeError, ValueError):
        raise ConfigurationError(
            f"the metric {metric_name(metric)} returned {value!r}; a metric must return a bool or a number, or a "
            "score with feedback: pl.Prediction(score=..., feedback='...') or a (score, 'feedback') tuple"
        ) from None


def call_metric(metric: Metric, example: Any, prediction: Any, trace: Any = None) -> float:
    """``metric(example, prediction, trace)`` (or without trace for two-argument metrics), as a float."""
    return call_metric_feedback(metric, example, prediction, trace)[0]


def call_metric_feedback(metric: Metric, example: Any, prediction: Any, trace: Any = None) -> tuple[float, str | None]:
    """Like ``call_metric``, and the metric's feedback text (None when it gives only a score)."""
    value = metric(example, prediction, trace) if takes_trace(metric) else metric(example, prediction)
    return to_score(value, metric), split_feedback(value)[1]


def takes_pred_name(metric: Metric) -> bool:
    """Whether ``metric`` can be called as ``metric(example, prediction, trace, pred_name=..., pred_trace=...)``
    (DSPy's GEPA metric form, giving feedback for one predictor): it names both parameters, takes ``**kwargs``,
    or takes five positional arguments. False when its signature cannot be read."""
    try:
        params = list(inspect.signature(metric).parameters.values())
    except (TypeError, ValueError):
        return False
    names = {p.name for p in params}
    if {"pred_name", "pred_trace"} <= names or any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params):
        return True
    positional = [p for p in params if p.kind in (inspect.Parameter.POSITIONAL_ONLY,
                                                  inspect.Parameter.POSITIONAL_OR_KEYWORD)]
    return len(positional) >= 5 or any(p.kind is inspect.Parameter.VAR_POSITIONAL for p in params)


def call_metric_for_predictor(metric: Metric, example: Any, prediction: Any, trace: Any, pred_name: str,
                              pred_trace: Any) -> tuple[float, str | None]:
    """``metric(example, prediction, trace, pred_name, pred_trace)`` (by keyword where the metric names those
    parameters, else by position) as ``(score, feedback)``; only for metrics where ``takes_pred_name`` holds."""
    params = inspect.signature(metric).parameters
    if ("pred_name" in params and "pred_trace" in params) or any(
            p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        value = metric(example, prediction, trace, pred_name=pred_name, pred_trace=pred_trace)
    else:
        value = metric(example, prediction, trace, pred_name, pred_trace)
    return to_score(value, metric), split_feedback(value)[1]


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


__all__ = [
    "Metric",
    "call_metric",
    "call_metric_feedback",
    "call_metric_for_predictor",
    "metric_name",
    "short",
    "split_feedback",
    "takes_pred_name",
    "takes_trace",
    "to_score",
]
