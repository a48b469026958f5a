"""Proposals are cleaned to the instruction itself; bad ones are rejected."""

from __future__ import annotations

import pytest

import promptless as pl
from promptless.optimize.proposer import (
    accept_instruction,
    clean_instruction,
    describe_program,
    describe_step,
    mistakes_text,
    shorten,
    stats_summary,
)

CASES = [
    # what small models reply -> the instruction
    ("Here's a new instruction that will be used to prompt a Language Model:\n\n"
     "Classify the historic event into one of the categories.",
     "Classify the historic event into one of the categories."),
    ('Sure! Here is the improved instruction:\n"Classify the event."', "Classify the event."),
    ("[[ ## proposed_instruction ## ]]\nGiven an event, name its category.\n\n[[ ## completed ## ]]",
     "Given an event, name its category."),
    ("[[ ## reasoning ## ]]\nLet me think.\n[[ ## proposed_instruction ## ]]\nClassify events.\n[[ ## completed ## ]]",
     "Classify events."),
    ("**Proposed Instruction:** Read the event and choose the category.", "Read the event and choose the category."),
    ("### New Instruction\n\nRead the event.\nThen pick the category.\n\n### Explanation\nThis helps the model.",
     "Read the event.\nThen pick the category."),
    ("Instruction: Classify the event by its main theme.\n\n"
     "This instruction ensures that the model focuses on the theme.",
     "Classify the event by its main theme."),
    ("```\nClassify the event.\n```", "Classify the event."),
    ("Okay, here's a revised version of the instruction:\n\nYou are a historian. Classify each event.",
     "You are a historian. Classify each event."),
    ("“Classify the historic event into the category that fits it best.”",
     "Classify the historic event into the category that fits it best."),
    ("You are an expert historian. Classify the event.\n\nI hope this helps! Let me know if you need anything else.",
     "You are an expert historian. Classify the event."),
    ("Sure, I can help with that.\n\nNew instruction: Classify the event into exactly one category.",
     "Classify the event into exactly one category."),
    ("Here is an instruction for the task: Decide which category the event belongs to.",
     "Decide which category the event belongs to."),
    ("*Classify the event carefully.*", "Classify the event carefully."),
    ("Certainly! Here's the new prompt:\n\n'Pick the single best category for the event.'\n\n"
     "Explanation: the prompt is short.",
     "Pick the single best category for the event."),
    ("The new instruction is: Label the event with its category.", "Label the event with its category."),
    # already clean: unchanged
    ("Classify the event into one category. Use the war category for battles.",
     "Classify the event into one category. Use the war category for battles."),
    ("This is a classification task: read the event and pick the category.",
     "This is a classification task: read the event and pick the category."),
    ("1. Read the event.\n2. Note the key actors.\n3. Choose the category.",
     "1. Read the event.\n2. Note the key actors.\n3. Choose the category."),
    ("Classify the event. Note: answer with one category only.",
     "Classify the event. Note: answer with one category only."),
    # nothing left
    ("Sure!", ""),
    ("", ""),
    ("[[ ## completed ## ]]", ""),
]


@pytest.mark.parametrize(("raw", "clean"), CASES)
def test_clean_instruction(raw, clean):
    assert clean_instruction(raw) == clean


def test_accept_instruction_rejects_empty_short_long_and_duplicates():
    existing = ["Classify the event."]
    assert accept_instruction("", existing) == "empty"
    assert accept_instruction("Do it.", existing) == "too short"
    assert accept_instruction("x" * 3000, existing) == "too long"
    assert accept_instruction("classify  the EVENT", existing) == "duplicate"
    assert accept_instruction("Use [[ ## category ## ]] here.", existing) == "contains reply markers"
    assert accept_instruction("Classify the event by theme.", existing) is None


class Classify(pl.Signature):
    """Classify the event."""

    event: str = pl.InputField(desc="a dated event")
    category: str = pl.OutputField()


def test_grounding_is_computed_without_an_lm():
    from typing import Literal

    sig = pl.make_signature({"event": (str, pl.InputField()), "label": (Literal["War", "Peace"], pl.OutputField())})
    p = pl.Predict(sig)
    step = describe_step("self", p)
    assert "one of: War; Peace" in step and "event" in step
    assert "event -> label" in describe_program(p)
    train = [pl.Example(event="a b c", label="War").with_inputs("event"),
             pl.Example(event="d e", label="Peace").with_inputs("event"),
             pl.Example(event="f", label="War").with_inputs("event")]
    summary = stats_summary(train, p)
    assert "3 training examples" in summary and "War (2)" in summary and "Peace (1)" in summary


def test_an_overlong_proposal_is_cut_after_a_full_sentence():
    text = "Read the event. " * 10 + "Then decide"
    cut = shorten(text, 100)
    assert cut.endswith("event.") and len(cut) <= 100
    assert shorten("short.", 100) == "short."
    assert shorten("x" * 300, 100) == "x" * 300  # no sentence to cut at: left for the length check to reject


def test_mistakes_text_shows_the_answer_spread_and_some_mistakes():
    examples = [pl.Example(event=f"e{i}", category="War" if i % 2 else "Peace").with_inputs("event")
                for i in range(6)]
    rows = [{"score": 1.0 if ex.category == "Peace" else 0.0, "output": {"category": "Peace", "confidence": 0.5},
             "error": None} for ex in examples]
    rows[1] = {"score": 0.0, "output": None, "error": "ParseError: no markers"}
    text = mistakes_text(examples, rows)
    assert "gets 3 of 6 examples right" in text
    assert "Its answers for 'category': Peace (5)" in text and "The correct answers: Peace (3), War (3)" in text
    assert "- event: e3 -> answered category Peace; correct: category War" in text
    assert "- event: e1 -> failed (ParseError: no markers)" in text
    assert mistakes_text(examples, [None] * 6) == "(not known)"
