from __future__ import annotations

import pytest

import promptless as pl
from promptless import settings
from promptless.modules.refine import read_reward


def answers(*values: str) -> pl.ScriptedLM:
    return pl.ScriptedLM([f"[[ ## answer ## ]]\n{v}\n\n[[ ## completed ## ]]" for v in values], cycle=False)


def is_paris(args, pred):
    return 1.0 if pred.answer == "Paris" else 0.0


def test_best_of_n_stops_at_the_threshold_with_distinct_rollouts():
    lm = answers("Lyon", "Paris", "Nice")
    best = pl.BestOfN(pl.Predict("question -> answer", lm=lm), N=3, reward_fn=is_paris, threshold=1.0)
    pred = best(question="Capital of France?")
    assert pred.answer == "Paris"
    assert len(lm.requests) == 2  # stopped early
    assert [r.rollout_id for r in lm.requests] == [0, 1]
    assert all(r.temperature == 1.0 for r in lm.requests)


def test_best_of_n_keeps_the_best_when_nothing_reaches_the_threshold():
    lm = answers("a", "abcd", "ab")
    best = pl.BestOfN(pl.Predict("question -> answer", lm=lm), N=3, reward_fn=lambda a, p: len(p.answer),
                      threshold=10)
    assert best(question="q").answer == "abcd"
    assert len(lm.requests) == 3


def test_refine_passes_hints_from_failed_attempts():
    lm = answers("Lyon", "Marseille", "Paris")

    def reward(args, pred):
        return (1.0, "") if pred.answer == "Paris" else (0.0, f"{pred.answer} is not the capital")

    module = pl.Predict("question -> answer", lm=lm)
    refine = pl.Refine(module, N=3, reward_fn=reward, threshold=1.0)
    pred = refine(question="Capital of France?")
    assert pred.answer == "Paris"
    systems = [r.messages[0].content for r in lm.requests]
    assert "Hints from earlier attempts" not in systems[0]
    assert "Attempt 1 gave answer='Lyon' and scored 0 (needed 1). Feedback: Lyon is not the capital" in systems[1]
    assert "Attempt 2 gave answer='Marseille'" in systems[2] and "Attempt 1 gave" in systems[2]
    assert "Hints" not in module.signature.instructions  # the module itself is never changed


def test_refine_never_reaching_the_threshold_returns_the_best_attempt():
    lm = pl.ScriptedLM([f"[[ ## reasoning ## ]]\nr\n[[ ## answer ## ]]\n{a}" for a in ("x", "xyz", "xy")])
    refine = pl.Refine(pl.ChainOfThought("question -> answer", lm=lm), N=3,
                       reward_fn=lambda a, p: len(p.answer) / 10, threshold=1.0)
    assert refine(question="q").answer == "xyz"
    assert len(lm.requests) == 3


def test_failing_attempts_count_towards_fail_count():
    lm = pl.ScriptedLM(["no markers at all, two fields expected", "[[ ## a ## ]]\n1\n[[ ## b ## ]]\n2"])
    module = pl.Predict("q -> a, b", lm=lm)
    module.adapter = pl.ChatAdapter(fallback=False)
    refine = pl.Refine(module, N=3, reward_fn=lambda a, p: 1.0, threshold=1.0)
    pred = refine(q="x")
    assert (pred.a, pred.b) == ("1", "2")
    assert "failed with an error: ParseError" in lm.requests[1].messages[0].content

    always_bad = pl.Predict("q -> a, b", lm=pl.ScriptedLM(["nothing"]), adapter=pl.ChatAdapter(fallback=False))
    with pytest.raises(pl.ParseError):
        pl.Refine(always_bad, N=5, reward_fn=lambda a, p: 1.0, threshold=1.0, fail_count=2)(q="x")
    assert len(always_bad.lm.requests) == 3  # two failures tolerated, the third raised


def test_all_attempts_failing_raises_the_last_error():
    bad = pl.Predict("q -> a, b", lm=pl.ScriptedLM(["nothing"]), adapter=pl.ChatAdapter(fallback=False))
    with pytest.raises(pl.ParseError):
        pl.BestOfN(bad, N=2, reward_fn=lambda a, p: 1.0, threshold=1.0)(q="x")


def test_reward_function_results():
    class Score:
        score = 0.5
        feedback = "half right"

    assert read_reward(True) == (1.0, "")
    assert read_reward((0.2, "too short")) == (0.2, "too short")
    assert read_reward(Score()) == (0.5, "half right")
    with pytest.raises(TypeError, match="reward_fn must return a number"):
        read_reward("good")


def test_only_the_chosen_attempt_lands_in_the_trace_against_the_original_predictor():
    lm = answers("Lyon", "Paris")
    module = pl.Predict("question -> answer", lm=lm)
    refine = pl.Refine(module, N=3, reward_fn=is_paris, threshold=1.0)
    trace: list = []
    with settings.context(trace=trace):
        refine(question="Capital?")
    assert len(trace) == 1
    predictor, inputs, pred = trace[0]
    assert predictor is module and inputs == {"question": "Capital?"} and pred.answer == "Paris"
    assert [n for n, _ in refine.named_predictors()] == ["module"]


def test_n_must_be_positive():
    with pytest.raises(ValueError, match="N must be at least 1"):
        pl.BestOfN(pl.Predict("q -> a"), N=0, reward_fn=is_paris, threshold=1)
