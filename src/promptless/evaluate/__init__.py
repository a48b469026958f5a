"""Evaluation: ``Evaluate``, its result, the metrics, and the parallel runner the optimizers share.

The rooms: ``evaluate.py`` (``Evaluate``: running, scoring, when to stop), ``result.py`` (rows, the result, JSON
and CSV export), ``display.py`` (the live bar and the table), ``scoring.py`` (calling a metric and reading its
value, shared with the optimizers), ``metrics.py``, ``runner.py`` (the thread pool).

``pl.Evaluate(devset=..., metric=...)(program)`` returns an ``EvaluationResult``;
the metrics (``exact_match``, ``f1_score``, ``contains``, ``ExactMatch(...)``,
``F1(...)``, ``answer_exact_match``, ``answer_passage_match``) live here too, so
``pl.evaluate.exact_match`` reads as DSPy users expect. Nothing heavy is
imported here: rich is imported only when a progress bar or table is shown.
"""

from ..errors import EvaluationError
from .display import display_table
from .evaluate import Evaluate, evaluate_program
from .metrics import (
    F1,
    METRICS,
    Contains,
    ExactMatch,
    answer_exact_match,
    answer_passage_match,
    contains,
    exact_match,
    f1_score,
    get_metric,
    normalize_text,
    token_f1,
)
from .result import EvaluationResult, EvaluationRow
from .runner import Outcome, ParallelRunner, RunReport, run_parallel

__all__ = [
    "F1",
    "METRICS",
    "Contains",
    "Evaluate",
    "EvaluationError",
    "EvaluationResult",
    "EvaluationRow",
    "ExactMatch",
    "Outcome",
    "ParallelRunner",
    "RunReport",
    "answer_exact_match",
    "answer_passage_match",
    "contains",
    "display_table",
    "evaluate_program",
    "exact_match",
    "f1_score",
    "get_metric",
    "normalize_text",
    "run_parallel",
    "token_f1",
]
