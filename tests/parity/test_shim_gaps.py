"""Gaps found by running DSPy's own public-API tests against promptless through an import shim
(docs/coming-from-dspy.md, "Measured against DSPy's own tests"): the field-value test LM, optional inputs,
batch options, parallel tool calls and default factories, written the way a DSPy user writes them."""

from __future__ import annotations

import json

import pytest

import promptless as dspy
from promptless.types import LMRequest, LMResponse, Message, Usage
from promptless.utils import DummyLM, DummyVectorizer


def test_dummy_lm_answers_field_values_in_turn():
    dspy.configure(lm=DummyLM([{"answer": "Paris"}, {"answer": "Rome"}]))
    qa = dspy.Predict("question -> answer")
    assert qa(question="capital of France?").answer == "Paris"
    assert qa(question="capital of Italy?").answer == "Rome"
    # once the list is used up, every answer says so
    assert qa(question="capital of Spain?").answer == "No more responses"


def test_dummy_lm_by_prompt_text_and_in_json():
    lm = DummyLM({"France": {"answer": "Paris", "confidence": 0.9}, "Italy": {"answer": "Rome", "confidence": 0.5}},
                 adapter=dspy.JSONAdapter())
    qa = dspy.Predict("question -> answer, confidence: float")
    with dspy.context(lm=lm, adapter=dspy.JSONAdapter()):
        out = qa(question="What is the capital of Italy?")
    assert (out.answer, out.confidence) == ("Rome", 0.5)
    assert json.loads(lm.history[-1]["outputs"][0]) == {"answer": "Rome", "confidence": 0.5}


def test_dummy_lm_follows_a_matching_demo():
    lm = DummyLM([{"answer": "unused"}], follow_examples=True)
    qa = dspy.Predict("question -> answer")
    qa.demos = [dspy.Example(question="What is 2+2?", answer="four")]
    with dspy.context(lm=lm):
        assert qa(question="What is 2+2?").answer == "four"
        assert qa(question="What is 3+3?").answer == "unused"  # no demo with these inputs: the list


def test_dummy_lm_refuses_a_bare_string():
    with pytest.raises(dspy.ConfigurationError, match="list of"):
        DummyLM("Paris")


def test_dummy_vectorizer_puts_similar_texts_together():
    vecs = DummyVectorizer(max_length=64)(["the capital of France", "the capital of Germany", "2 + 2 = 4"])
    assert vecs.shape == (3, 64)
    assert float(vecs[0] @ vecs[1]) > float(vecs[0] @ vecs[2])


class Asked(dspy.Signature):
    """Answer the question, using the context if there is one."""

    question: str = dspy.InputField()
    context: str | None = dspy.InputField()
    answer: str = dspy.OutputField()


def test_an_optional_input_may_be_left_out():
    lm = dspy.ScriptedLM(["[[ ## answer ## ]]\nfine\n\n[[ ## completed ## ]]"])
    with dspy.context(lm=lm):
        assert dspy.Predict(Asked)(question="how are you?").answer == "fine"
    assert "[[ ## context ## ]]\nNone" in lm.requests[0].messages[-1].content
    with dspy.context(lm=lm), pytest.raises(dspy.ConfigurationError, match="missing input"):
        dspy.Predict(Asked)(context="no question")  # a required input is still required


def test_batch_takes_parallels_options():
    class Double(dspy.Module):
        def forward(self, value):
            if value == 0:
                raise ValueError("zero")
            return value * 2

    examples = [dspy.Example(value=v).with_inputs("value") for v in (1, 0, 3)]
    results, failed, errors = Double().batch(examples, return_failed_examples=True, provide_traceback=True,
                                             timeout=30, straggler_limit=2, disable_progress_bar=True)
    assert results == [2, None, 6]
    assert [f["value"] for f in failed] == [0] and isinstance(errors[0], ValueError)
    with pytest.raises(dspy.ConfigurationError, match="timeout"):
        Double().batch(examples, timeout=-1)


SEEN: list[LMRequest] = []  # what ToolLM was asked (a module list: the LM may be copied on the way)


class ToolLM(dspy.LM):
    """An LM with native function calling that keeps each request and calls the first tool it is offered."""

    provider = "test"

    def __init__(self):
        super().__init__("tool-test", cache=False)

    @property
    def supports_function_calling(self) -> bool:
        return True

    def complete(self, request: LMRequest) -> LMResponse:
        SEEN.append(request)
        name = request.tools[0]["function"]["name"] if request.tools else ""
        return LMResponse(texts=[""], usage=Usage(calls=1), model=self.model,
                          tool_calls=[[{"id": "c1", "name": name, "args": {"query": "x"}}]])


def search(query: str) -> str:
    """Search for the query."""
    return query


class Route(dspy.Signature):
    question: str = dspy.InputField()
    tools: list[dspy.Tool] = dspy.InputField()
    calls: dspy.ToolCalls = dspy.OutputField()


@pytest.mark.parametrize("adapter", [dspy.ChatAdapter(parallel_tool_calls=False),
                                     dspy.JSONAdapter(parallel_tool_calls=False)])
def test_parallel_tool_calls_goes_with_native_tools(adapter):
    SEEN.clear()
    with dspy.context(lm=ToolLM(), adapter=adapter):
        out = dspy.Predict(Route)(question="q", tools=[dspy.Tool(search)])
    assert out.calls.tool_calls[0].name == "search"
    assert SEEN[0].parallel_tool_calls is False
    assert SEEN[0].tools


def test_parallel_tool_calls_reaches_an_openai_compatible_body():
    from promptless.lm.openai import OpenAILM

    lm = OpenAILM("openai/gpt-4o-mini", api_key="k")
    tools = [{"type": "function", "function": {"name": "search", "parameters": {"type": "object"}}}]
    body = lm.payload(lm.build_request([Message("user", "hi")], {"tools": tools, "parallel_tool_calls": True}))
    assert body["parallel_tool_calls"] is True
    without = lm.payload(lm.build_request([Message("user", "hi")], {"parallel_tool_calls": True}))
    assert "parallel_tool_calls" not in without  # only sent beside tools


class Tagged(dspy.Signature):
    text: str = dspy.InputField()
    tags: list[str] = dspy.OutputField(default_factory=list)
    summary: str = dspy.OutputField()


def test_default_factory_gives_a_fresh_value_each_time():
    lm = dspy.ScriptedLM(["[[ ## summary ## ]]\nshort\n\n[[ ## completed ## ]]"])
    with dspy.context(lm=lm):
        first = dspy.Predict(Tagged)(text="a")
        first.tags.append("changed")
        second = dspy.Predict(Tagged)(text="b")
    assert second.tags == []
    with pytest.raises(dspy.SignatureError, match="default_factory"):
        dspy.OutputField(default=[], default_factory=list)


@pytest.mark.parametrize("make", [
    lambda m: dspy.Refine(m, N=4, reward_fn=lambda a, p: 1.0, threshold=0.0, fail_count=1),
    lambda m: dspy.BestOfN(m, N=4, reward_fn=lambda a, p: 1.0, threshold=0.0, fail_count=1),
])
def test_fail_count_is_how_many_failures_are_tolerated(make):
    calls = []

    class Flaky(dspy.Module):
        def forward(self, q):
            calls.append(q)
            raise ValueError("always")

    with pytest.raises(ValueError):
        make(Flaky())(q="x")
    assert len(calls) == 2  # one failure tolerated, the second raises
