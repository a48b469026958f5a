"""Bugs a DSPy user hit on the way in (issue 15, item 5), each as the user's code wrote it."""

from __future__ import annotations

import datetime
import enum

import pytest

import promptless as dspy

from .conftest import reply


def test_a_predictors_own_dump_state_loads_back():
    qa = dspy.Predict("question -> answer")
    qa.demos = [dspy.Example(question="2+2?", answer="4").with_inputs("question")]
    qa.signature = qa.signature.with_instructions("Answer with a number.")
    state = qa.dump_state()

    fresh = dspy.Predict("question -> answer")
    assert fresh.load_state(state) is fresh
    assert fresh.signature.instructions == "Answer with a number."
    assert [d.answer for d in fresh.demos] == ["4"]


def test_a_field_without_annotation_keeps_its_place():
    class Review(dspy.Signature):
        """Review a pull request."""

        title = dspy.InputField()
        diff: str = dspy.InputField()
        summary = dspy.OutputField()
        risk: int = dspy.OutputField()

    assert list(Review.input_fields) == ["title", "diff"]
    assert list(Review.output_fields) == ["summary", "risk"]
    assert list(Review.fields) == ["title", "diff", "summary", "risk"]


class Rating(dspy.Signature):
    """Rate the review."""

    review: str = dspy.InputField()
    stars: int = dspy.OutputField(ge=1, le=5, desc="how many stars")
    tags: list[str] = dspy.OutputField(min_length=1, max_length=3)
    note: str = dspy.OutputField(default="none")


def test_field_rules_are_shown_to_the_model():
    lm = dspy.ScriptedLM([reply(stars=4, tags='["kind"]', note="ok")])
    dspy.Predict(Rating, lm=lm)(review="Lovely soup.")
    system = lm.requests[0].messages[0].content
    assert "how many stars (must be at least 1, at most 5)" in system
    assert "must be at least 1 long, at most 3 long" in system


def test_a_reply_that_breaks_a_rule_is_asked_again_with_the_reason():
    lm = dspy.ScriptedLM([reply(stars=9, tags='["kind"]', note="ok"), reply(stars=5, tags='["kind"]', note="ok")])
    pred = dspy.Predict(Rating, lm=lm)(review="Lovely soup.")
    assert pred.stars == 5
    retry = lm.requests[1].messages
    assert retry[-2].role == "assistant" and "9" in retry[-2].content
    assert "stars" in retry[-1].content and "at most 5" in retry[-1].content


def test_a_rule_broken_twice_is_refused():
    lm = dspy.ScriptedLM([reply(stars=3, tags='["a", "b", "c", "d"]', note="ok")])
    with pytest.raises(dspy.ParseError, match="at most 3 long"):
        dspy.Predict(Rating, lm=lm, adapter=dspy.ChatAdapter(fallback=False))(review="x")


def test_an_output_default_fills_a_field_the_reply_left_out():
    lm = dspy.ScriptedLM([reply(stars=2, tags='["slow"]')])
    assert dspy.Predict(Rating, lm=lm)(review="Meh.").note == "none"


def test_an_input_default_fills_a_missing_input():
    class Greet(dspy.Signature):
        name: str = dspy.InputField()
        tone: str = dspy.InputField(default="warm")
        greeting: str = dspy.OutputField()

    lm = dspy.ScriptedLM([reply(greeting="Hello!")])
    dspy.Predict(Greet, lm=lm)(name="Ada")
    assert "warm" in lm.requests[0].messages[-1].content


def test_an_unknown_field_option_is_refused_not_dropped():
    with pytest.raises(dspy.SignatureError, match="does not take frobnicate"):
        dspy.OutputField(frobnicate=True)


class Priority(enum.Enum):
    LOW = 1
    MEDIUM = 2
    HIGH = 3


def test_an_int_enum_is_read_by_member_name():
    class Triage(dspy.Signature):
        ticket: str = dspy.InputField()
        priority: Priority = dspy.OutputField()

    lm = dspy.ScriptedLM([reply(priority="HIGH"), reply(priority="2")])
    triage = dspy.Predict(Triage, lm=lm)
    assert triage(ticket="The site is down").priority is Priority.HIGH
    assert triage(ticket="Typo in footer").priority is Priority.MEDIUM


def test_a_bare_iso_datetime_in_a_reply_is_read():
    class Schedule(dspy.Signature):
        request: str = dspy.InputField()
        when: datetime.datetime = dspy.OutputField()

    lm = dspy.ScriptedLM([reply(when="2025-03-14T09:30:00")])
    got = dspy.Predict(Schedule, lm=lm)(request="Book the dentist on Pi day at half nine")
    assert got.when == datetime.datetime(2025, 3, 14, 9, 30)


def test_a_nested_parallel_returns_the_inner_results():
    lm = dspy.ScriptedLM(lambda messages: reply(answer=messages[-1].content.split("\n")[1].upper()))
    echo = dspy.Predict("word -> answer", lm=lm)
    inner = dspy.Parallel(num_threads=2)
    outer = dspy.Parallel(num_threads=2)
    results = outer([
        (inner, [(echo, {"word": "ab"}), (echo, {"word": "cd"})]),
        (echo, {"word": "ef"}),
    ])
    assert [r.answer for r in results[0]] == ["AB", "CD"]
    assert results[1].answer == "EF"


def test_chain_of_thought_uses_a_declared_reasoning_field():
    class Solve(dspy.Signature):
        """Solve the puzzle."""

        puzzle: str = dspy.InputField()
        reasoning: str = dspy.OutputField(desc="the working")
        answer: int = dspy.OutputField()

    cot = dspy.ChainOfThought(Solve)
    assert list(cot.signature.output_fields) == ["reasoning", "answer"]
    assert cot.signature.output_fields["reasoning"].desc == "the working"
    lm = dspy.ScriptedLM([reply(reasoning="3 sevens", answer=21)])
    assert cot(puzzle="7 * 3", lm=lm).answer == 21
