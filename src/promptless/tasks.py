"""Ready-made tasks: the historic-events classifier that ``promptless demo`` runs.

    from promptless.tasks import make_classifier, category_match, load_events
    classify = make_classifier()
    pred = classify(event="Battle of Hastings won by William the Conqueror and the Normans, 1066")
    pred.category, pred.confidence        # 'Wars and Conflicts', 0.95

A second task on the same texts, for checking that a method carries over to a task it was not tuned on:
``DateEvent`` (the event without its year -> the period it happened in), ``period_match``, ``load_periods``.

The data sets are loaded lazily (``load_events``, ``load_periods``), never on import.
"""

from __future__ import annotations

from typing import Any

from .data import Example
from .datasets import Category, Period
from .modules.predict import Predict
from .signature import InputField, OutputField, Signature


class ClassifyEvent(Signature):
    """Classify the historic event into the one category that fits it best."""

    event: str = InputField(desc="a dated historic event, in one line")
    category: Category = OutputField(desc="the category of the event")
    confidence: float = OutputField(desc="how sure you are of the category, from 0.0 to 1.0")


def make_classifier(lm: Any = None) -> Predict:
    """A fresh ``Predict(ClassifyEvent)``; ``lm`` pins an LM (otherwise the configured one is used)."""
    return Predict(ClassifyEvent, lm=lm)


def _field_match(field: str, example: Any, pred: Any) -> bool:
    gold = example[field] if isinstance(example, dict) else getattr(example, field)
    got = pred.get(field) if isinstance(pred, dict) else getattr(pred, field, None)
    if got is None:
        return False
    return str(got).strip().casefold() == str(gold).strip().casefold()


def category_match(example: Any, pred: Any, trace: Any = None) -> bool:
    """True when the predicted category is the gold one (case and surrounding space ignored)."""
    return _field_match("category", example, pred)


class DateEvent(Signature):
    """Tell when the historic event happened."""

    event: str = InputField(desc="a historic event, in one line")
    period: Period = OutputField(desc="the period in which the event happened")


def period_match(example: Any, pred: Any, trace: Any = None) -> bool:
    """True when the predicted period is the gold one (case and surrounding space ignored)."""
    return _field_match("period", example, pred)


def load_events(split: str = "dev", limit: int | None = None) -> list[Example]:
    """The historic-events examples of one split (``train``, ``dev`` or ``test``), the first ``limit`` of them."""
    from .datasets import historic_events

    examples = historic_events(split)
    assert isinstance(examples, list)
    return examples if limit is None else examples[:limit]


def load_periods(split: str = "dev", limit: int | None = None) -> list[Example]:
    """The historic-periods examples of one split (``train``, ``dev`` or ``test``), the first ``limit`` of them."""
    from .datasets import historic_periods

    examples = historic_periods(split)
    assert isinstance(examples, list)
    return examples if limit is None else examples[:limit]


__all__ = ["Category", "ClassifyEvent", "DateEvent", "Period", "category_match", "load_events", "load_periods",
           "make_classifier", "period_match"]
