from __future__ import annotations

import asyncio

import pytest

import promptless as pl

FINAL = ("[[ ## rationale ## ]]\nAttempts 1 and 3 agree; 2 added wrong.\n\n[[ ## answer ## ]]\n12\n\n"
         "[[ ## completed ## ]]")

ATTEMPTS = [
    pl.Prediction(reasoning="3 boxes of 4 is 3*4 = 12.", answer="12"),
    {"rationale": "3 + 4 = 7", "answer": "7"},
    pl.Prediction(reasoning="Four, three times: 12", answer="12"),
]


def test_compares_attempts_and_answers_once():
    lm = pl.ScriptedLM([FINAL])
    mcc = pl.MultiChainComparison("question -> answer", M=3)
    pred = mcc(ATTEMPTS, question="How many apples in 3 boxes of 4?", lm=lm)
    assert pred.answer == "12" and pred.rationale.startswith("Attempts 1 and 3 agree")
    assert len(lm.requests) == 1
    prompt = lm.requests[0].messages[-1].content
    assert "[[ ## reasoning_attempt_1 ## ]]\n«I'm trying to 3 boxes of 4 is 3*4 = 12. I'm not sure but my prediction " \
           "is answer: 12»" in prompt
    assert "[[ ## reasoning_attempt_2 ## ]]\n«I'm trying to 3 + 4 = 7. I'm not sure but my prediction is answer: 7»" \
           in prompt
    sig = mcc.predict.signature
    assert list(sig.output_fields) == ["rationale", "answer"]
    assert [n for n, _ in mcc.named_predictors()] == ["predict"]
    assert lm.requests[0].temperature == 0.7


def test_takes_the_completions_of_one_prediction():
    lm = pl.ScriptedLM([f"[[ ## reasoning ## ]]\nr{i}\n[[ ## answer ## ]]\n{i}" for i in (1, 2)])
    many = pl.ChainOfThought("question -> answer", lm=lm)(question="q", n=2)
    mcc = pl.MultiChainComparison("question -> answer", M=2)
    out = mcc(many, question="q", lm=pl.ScriptedLM([FINAL]))
    assert out.answer == "12"


def test_wrong_number_of_attempts_or_bad_model_output():
    mcc = pl.MultiChainComparison("question -> answer", M=3)
    with pytest.raises(pl.ConfigurationError, match="needs exactly 3 attempts, got 2"):
        mcc(ATTEMPTS[:2], question="q", lm=pl.ScriptedLM([FINAL]))
    with pytest.raises(pl.ConfigurationError, match="Prediction or a dict"):
        mcc(["a", "b", "c"], question="q", lm=pl.ScriptedLM([FINAL]))
    with pytest.raises(pl.ParseError):
        mcc(ATTEMPTS, question="q", lm=pl.ScriptedLM(["no markers and two fields expected"]))


def test_async():
    mcc = pl.MultiChainComparison("question -> answer", M=3)
    out = asyncio.run(mcc.acall(ATTEMPTS, question="q", lm=pl.ScriptedLM([FINAL])))
    assert out.answer == "12"
