"""dspy.XMLAdapter as a DSPy program configures it: tagged prompts out, tagged replies in, typed values back."""

from __future__ import annotations

from typing import Literal

import promptless as dspy


class Triage(dspy.Signature):
    """Sort the support ticket."""

    ticket: str = dspy.InputField()
    priority: Literal["low", "high"] = dspy.OutputField()
    steps: list[str] = dspy.OutputField()
    owner: str | None = dspy.OutputField()


def test_configured_xml_adapter_round_trip():
    lm = dspy.ScriptedLM(["<priority>high</priority>\n<steps>\n<item>restart</item>\n<item>page on-call</item>\n"
                          "</steps>"])
    dspy.configure(lm=lm, adapter=dspy.XMLAdapter())
    out = dspy.Predict(Triage)(ticket="the site is down")
    assert out.priority == "high"
    assert out.steps == ["restart", "page on-call"]
    assert out.owner is None  # an optional output the reply left out
    sent = lm.requests[-1].messages
    assert "<ticket>\nthe site is down\n</ticket>" in sent[-1].content
    assert "<priority>" in sent[0].content and "<steps>" in sent[0].content


def test_xml_adapter_with_chain_of_thought():
    lm = dspy.ScriptedLM(["<reasoning>two and two</reasoning>\n<answer>4</answer>"])
    dspy.configure(lm=lm, adapter=dspy.XMLAdapter())
    out = dspy.ChainOfThought("question -> answer: int")(question="2+2?")
    assert (out.reasoning, out.answer) == ("two and two", 4)


def test_dummy_lm_answers_in_tags_for_the_xml_adapter():
    from promptless.utils import DummyLM

    dspy.configure(lm=DummyLM([{"answer": "Paris"}]), adapter=dspy.XMLAdapter())
    assert dspy.Predict("question -> answer")(question="capital of France?").answer == "Paris"
