"""Ready-made tasks: the historic-events classifier that ``promptless demo`` runs.

    from promptless.tasks import make_classifier, category_match, load_events
    classify = make_classifier()
    pred = classify(event="Battle of Hastings won by William the Conqueror and the Normans, 1066")
    pred.category, pred.confidence        # 'Wars and Conflicts', 0.95

The data set is loaded lazily (``load_events``), never on import.
"""

from __future__ import annotations

from typing import Any

from .data import Example
from .datasets import Category
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


def category_match(example: Any, pred: Any, trace: Any = None) -> bool:
    """True when the predicted category is the gold one (case and surrounding space ignored)."""
    gold = example["category"] if isinstance(example, dict) else example.category
    got = pred.get("category") if isinstance(pred, dict) else getattr(pred, "category", None)
    if got is None:
        return False
    return str(got).strip().casefold() == str(gold).strip().casefold()


def load_events(split: str = "dev", limit: int | None = None) -> list[Example]:
    """The historic-events examples of one split (``train``, ``dev`` or ``test``), the first ``limit`` of them."""
    from .datasets import historic_events

    examples = historic_events(split)
    assert isinstance(examples, list)
    return examples if limit is None else examples[:limit]


__all__ = ["Category", "ClassifyEvent", "category_match", "load_events", "make_classifier"]
