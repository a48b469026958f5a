"""Metrics: ``metric(example, prediction, trace=None) -> float | bool``.

Any function of that shape is a metric. The ones here compare a prediction's
fields with an example's labels:

- ``exact_match`` / ``ExactMatch(...)``: equal after normalisation (case,
  punctuation, articles, whitespace; each configurable). A bool.
- ``f1_score`` / ``F1(...)``: token-overlap F1 (SQuAD style). A float in [0, 1].
- ``contains`` / ``Contains(...)``: the gold text appears inside the prediction.
- ``answer_exact_match`` and ``answer_passage_match``: the helpers DSPy users
  know, over the ``answer`` field and a prediction's ``context`` passages.

With ``field=None`` a metric compares every label field of the example (its
fields that are not inputs) that the prediction also has, and requires all of
them to match (exact, contains) or averages them (F1). A gold value may be a
list of acceptable answers: the best match counts.

``get_metric("exact", field="answer")`` looks a metric up by the names the
command line uses (``METRICS``).
"""

from __future__ import annotations

import re
import string
import unicodedata
from collections import Counter
from collections.abc import Callable, Mapping
from typing import Any

from ..errors import ConfigurationError

Metric = Callable[..., Any]

_ARTICLES = re.compile(r"\b(a|an|the)\b", re.IGNORECASE)
_PUNCT = str.maketrans("", "", string.punctuation + "\u2018\u2019\u201c\u201d\u2013\u2014")
_SPACE = re.compile(r"\s+")


def normalize_text(
    text: Any,
    *,
    lowercase: bool = True,
    strip_punctuation: bool = True,
    strip_articles: bool = True,
    unicode: bool = True,
) -> str:
    """Normalise a value for comparison: NFKD + accents dropped, lower case, no punctuation, no articles,
    single spaces. Each step can be turned off; whitespace is always collapsed and trimmed."""
    out = text if isinstance(text, str) else str(text)
    if unicode:
        out = unicodedata.normalize("NFKD", out)
        out = "".join(ch for ch in out if not unicodedata.combining(ch))
    if lowercase:
        out = out.casefold()
    if strip_punctuation:
        out = out.translate(_PUNCT)
    if strip_articles:
        out = _ARTICLES.sub(" ", out)
    return _SPACE.sub(" ", out).strip()


def _label_fields(example: Any, prediction: Any, field: str | None, metric: str) -> list[str]:
    if field is not None:
        if not _has(example, field):
            raise ConfigurationError(f"{metric}: the example has no field {field!r}; fields: {_names(example)}")
        if not _has(prediction, field):
            raise ConfigurationError(
                f"{metric}: the prediction has no field {field!r}; it has: {_names(prediction)}"
            )
        return [field]
    labels = example.labels() if hasattr(example, "labels") and callable(example.labels) else example
    shared = [k for k in _keys(labels) if _has(prediction, k)]
    if not shared:
        raise ConfigurationError(
            f"{metric}: the example's labels ({_names(labels)}) and the prediction's fields ({_names(prediction)}) "
            f"have no field in common; pass field='...' to say which to compare"
        )
    return shared


def _keys(obj: Any) -> list[str]:
    if isinstance(obj, Mapping) or hasattr(obj, "keys"):
        return list(obj.keys())
    return []


def _names(obj: Any) -> str:
    return ", ".join(_keys(obj)) or "(none)"


def _has(obj: Any, key: str) -> bool:
    try:
        return key in obj
    except TypeError:
        return hasattr(obj, key)


def _get(obj: Any, key: str) -> Any:
    try:
        return obj[key]
    except (TypeError, KeyError):
        return getattr(obj, key)


def _golds(value: Any) -> list[Any]:
    if isinstance(value, (list, tuple, set, frozenset)):
        return list(value)
    return [value]


class _FieldMetric:
    """Shared shape: compare the chosen fields, each against one or more gold values."""

    name = "metric"

    def __init__(self, field: str | None = None, *, normalize: bool = True, lowercase: bool = True,
                 strip_punctuation: bool = True, strip_articles: bool = True) -> None:
        self.field = field
        self.normalize = normalize
        self.options = {"lowercase": lowercase, "strip_punctuation": strip_punctuation,
                        "strip_articles": strip_articles}
        self.__name__ = self.name if field is None else f"{self.name}({field})"

    def norm(self, value: Any) -> str:
        if not self.normalize:
            return value.strip() if isinstance(value, str) else str(value)
        return normalize_text(value, **self.options)

    def compare(self, gold: Any, pred: Any) -> float:
        raise NotImplementedError

    def combine(self, scores: list[float]) -> float | bool:
        return all(s >= 1.0 for s in scores)

    def __call__(self, example: Any, prediction: Any, trace: Any = None) -> float | bool:
        fields = _label_fields(example, prediction, self.field, self.__name__)
        scores = []
        for name in fields:
            pred = _get(prediction, name)
            scores.append(max(self.compare(g, pred) for g in _golds(_get(example, name))))
        return self.combine(scores)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(field={self.field!r}, normalize={self.normalize})"


class ExactMatch(_FieldMetric):
    """``ExactMatch(field="answer", normalize=True)``: True when the values are equal after normalisation.

    Non-string values on both sides (numbers, bools, lists) are compared with ``==``.
    """

    name = "exact_match"

    def compare(self, gold: Any, pred: Any) -> float:
        if not isinstance(gold, str) and not isinstance(pred, str):
            try:
                if gold == pred:
                    return 1.0
            except Exception:  # values that refuse comparison
                pass
        return 1.0 if self.norm(gold) == self.norm(pred) else 0.0


class Contains(_FieldMetric):
    """``Contains(field="answer")``: True when the (normalised) gold text appears in the prediction."""

    name = "contains"

    def compare(self, gold: Any, pred: Any) -> float:
        g, p = self.norm(gold), self.norm(pred)
        if not g:
            return 1.0 if not p else 0.0
        return 1.0 if re.search(r"(?<!\w)" + re.escape(g) + r"(?!\w)", p) else 0.0


class F1(_FieldMetric):
    """``F1(field="answer")``: token-overlap F1 between gold and prediction, in [0, 1] (the mean over fields)."""

    name = "f1"

    def compare(self, gold: Any, pred: Any) -> float:
        return token_f1(self.norm(gold), self.norm(pred))

    def combine(self, scores: list[float]) -> float:
        return sum(scores) / len(scores)


def token_f1(gold: str, pred: str) -> float:
    """F1 over whitespace tokens (already-normalised strings)."""
    g, p = gold.split(), pred.split()
    if not g or not p:
        return float(g == p)
    common = Counter(g) & Counter(p)
    same = sum(common.values())
    if same == 0:
        return 0.0
    precision, recall = same / len(p), same / len(g)
    return 2 * precision * recall / (precision + recall)


exact_match_metric = ExactMatch()
f1_metric = F1()
contains_metric = Contains()


def exact_match(example: Any, pred: Any, trace: Any = None, *, field: str | None = None) -> bool:
    """True when every compared field matches after normalisation (see the module docstring)."""
    metric = exact_match_metric if field is None else ExactMatch(field)
    return bool(metric(example, pred, trace))


def f1_score(example: Any, pred: Any, trace: Any = None, *, field: str | None = None) -> float:
    """Token-overlap F1 of the compared fields, in [0, 1]."""
    metric = f1_metric if field is None else F1(field)
    return float(metric(example, pred, trace))


def contains(example: Any, pred: Any, trace: Any = None, *, field: str | None = None) -> bool:
    """True when each gold value appears (normalised, on word boundaries) in the predicted value."""
    metric = contains_metric if field is None else Contains(field)
    return bool(metric(example, pred, trace))


def answer_exact_match(example: Any, pred: Any, trace: Any = None, frac: float = 1.0) -> bool:
    """``example.answer`` (a string or a list of them) against ``pred.answer``; with ``frac < 1``,
    a token F1 of at least ``frac`` counts as a match."""
    golds = _golds(_get(example, "answer"))
    answer = _get(pred, "answer")
    if frac >= 1.0:
        return any(normalize_text(g) == normalize_text(answer) for g in golds)
    return max(token_f1(normalize_text(g), normalize_text(answer)) for g in golds) >= frac


def answer_passage_match(example: Any, pred: Any, trace: Any = None) -> bool:
    """True when some gold ``answer`` appears in one of the prediction's ``context`` passages."""
    golds = [normalize_text(g) for g in _golds(_get(example, "answer"))]
    passages = _golds(_get(pred, "context"))
    for passage in passages:
        text = normalize_text(passage)
        if any(g and re.search(r"(?<!\w)" + re.escape(g) + r"(?!\w)", text) for g in golds):
            return True
    return False


METRICS: dict[str, Callable[..., Metric]] = {
    "exact": ExactMatch,
    "exact_match": ExactMatch,
    "em": ExactMatch,
    "f1": F1,
    "contains": Contains,
}


def get_metric(name: str, field: str | None = None, **options: Any) -> Metric:
    """A named metric (``exact``, ``f1``, ``contains``), for the given field (None: every shared label field)."""
    factory = METRICS.get(name.strip().lower())
    if factory is None:
        raise ConfigurationError(
            f"unknown metric {name!r}; named metrics are: exact, f1, contains "
            "(or give your own as module:function)"
        )
    return factory(field, **options)


__all__ = [
    "F1",
    "METRICS",
    "Contains",
    "ExactMatch",
    "answer_exact_match",
    "answer_passage_match",
    "contains",
    "exact_match",
    "f1_score",
    "get_metric",
    "normalize_text",
    "token_f1",
]
