"""Metrics that return a score with feedback text: how every consumer reads them."""

from __future__ import annotations

import pytest

import promptless as pl
from promptless.errors import ConfigurationError
from promptless.evaluate.scoring import (
    call_metric,
    call_metric_feedback,
    call_metric_for_predictor,
    split_feedback,
    takes_pred_name,
    to_score,
)


@pytest.mark.parametrize(("value", "score", "feedback"), [
    (True, 1.0, None),
    (False, 0.0, None),
    (None, 0.0, None),
    (0.25, 0.25, None),
    (3, 3.0, None),
    ("0.5", 0.5, None),
    (pl.Prediction(score=0.5, feedback="half right"), 0.5, "half right"),
    (pl.Prediction(score=True), 1.0, None),
    (pl.Example(score=0.0, feedback="wrong label"), 0.0, "wrong label"),
    ((0.75, "close"), 0.75, "close"),
    ((False, None), 0.0, None),
    ({"score": 1, "feedback": "ok"}, 1.0, "ok"),
    ({"score": 0.5, "feedback": ["a", "b"]}, 0.5, "['a', 'b']"),
])
def test_scores_with_and_without_feedback(value, score, feedback):
    assert to_score(value) == score
    assert split_feedback(value)[1] == feedback


@pytest.mark.parametrize("value", [(1, 2), (0.5, "x", "y"), {"feedback": "no score"}, pl.Prediction(answer="x"),
                                   [0.5, "x"], pl.Prediction(score="high", feedback="x")])
def test_what_is_not_a_score_is_refused_naming_both_forms(value):
    def my_metric(example, pred):
        return value

    with pytest.raises(ConfigurationError, match=r"my_metric returned .*pl\.Prediction\(score=\.\.\., feedback"):
        call_metric(my_metric, pl.Example(), pl.Prediction())


def test_an_object_with_a_score_method_is_not_a_score():
    class Model:
        def score(self):
            return 1.0

    with pytest.raises(ConfigurationError):
        to_score(Model())


def test_call_metric_feedback_gives_both_and_call_metric_the_score():
    def metric(example, pred, trace=None):
        return pl.Prediction(score=float(example.answer == pred.answer), feedback=f"expected {example.answer}")

    ex, pred = pl.Example(answer="4"), pl.Prediction(answer="5")
    assert call_metric_feedback(metric, ex, pred) == (0.0, "expected 4")
    assert call_metric(metric, ex, pred) == 0.0
    assert call_metric_feedback(lambda e, p: True, ex, pred) == (1.0, None)


def test_which_metrics_take_a_predictor_name():
    def dspy_style(gold, pred, trace=None, pred_name=None, pred_trace=None):
        return pl.Prediction(score=1.0, feedback=f"{pred_name}:{len(pred_trace or [])}")

    def positional(a, b, c, d, e):
        return (0.5, f"{d}:{e}")

    def kwargs_only(gold, pred, trace=None, **kw):
        return (0.0, kw.get("pred_name"))

    def plain(gold, pred, trace=None):
        return 1.0

    assert takes_pred_name(dspy_style) and takes_pred_name(positional) and takes_pred_name(kwargs_only)
    assert not takes_pred_name(plain) and not takes_pred_name(lambda e, p: 1)
    ex, pred = pl.Example(), pl.Prediction()
    assert call_metric_for_predictor(dspy_style, ex, pred, [], "step", [1, 2]) == (1.0, "step:2")
    assert call_metric_for_predictor(positional, ex, pred, [], "step", "t") == (0.5, "step:t")
    assert call_metric_for_predictor(kwargs_only, ex, pred, [], "step", None) == (0.0, "step")


def test_evaluate_and_the_optimizers_score_a_feedback_metric():
    class QA(pl.Signature):
        """Answer."""

        question: str = pl.InputField()
        answer: str = pl.OutputField()

    lm = pl.ScriptedLM("[[ ## answer ## ]]\n4\n\n[[ ## completed ## ]]")
    dev = [pl.Example(question=f"q{i}", answer="4" if i % 2 else "5").with_inputs("question") for i in range(6)]

    def metric(example, pred, trace=None):
        ok = example.answer == pred.answer
        return pl.Prediction(score=float(ok), feedback="ok" if ok else f"expected {example.answer}")

    program = pl.Predict(QA, lm=lm)
    assert pl.Evaluate(devset=dev, metric=metric)(program).score == 50.0
    tupled = pl.Evaluate(devset=dev, metric=lambda e, p: (e.answer == p.answer, "note"))(program)
    assert tupled.score == 50.0
    out = pl.BootstrapFewShotWithRandomSearch(metric, num_candidate_programs=1, max_bootstrapped_demos=1,
                                              max_labeled_demos=1, progress=False).compile(
        program, trainset=dev[:3], valset=dev[3:])
    assert out.optimization.baseline_score == pytest.approx(200 / 3)
    rows = [row["baseline"] for row in out.optimization.per_example]
    assert [row.get("feedback") for row in rows] == ["ok", "expected 5", "ok"]
