"""Evaluation: ``Evaluate``, its result, the metrics, and the parallel runner the optimizers share.

``pl.Evaluate(devset=..., metric=...)(program)`` returns an ``EvaluationResult``;
the metrics (``exact_match``, ``f1_score``, ``contains``, ``ExactMatch(...)``,
``F1(...)``, ``answer_exact_match``, ``answer_passage_match``) live here too, so
``pl.evaluate.exact_match`` reads as DSPy users expect. Nothing heavy is
imported here: rich is imported only when a progress bar or table is shown.
"""

from ..errors import EvaluationError
from .evaluate import Evaluate, EvaluationResult, EvaluationRow, display_table, evaluate_program
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
