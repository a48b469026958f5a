"""Programs optimized and saved in DSPy, loaded into the same program written with promptless (item 6)."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path
from typing import Literal

import pytest

import promptless as dspy

from .conftest import reply

FIXTURE = Path(__file__).parent / "fixtures" / "dspy_support_triage.json"


class ClassifyTicket(dspy.Signature):
    """Route the ticket."""

    ticket: str = dspy.InputField()
    category: Literal["billing", "bug", "account"] = dspy.OutputField()
    urgency: int = dspy.OutputField()


class SupportTriage(dspy.Module):
    def __init__(self):
        self.classify = dspy.Predict(ClassifyTicket)
        self.reply = dspy.ChainOfThought("ticket, category -> draft")
        self.checks = [dspy.Predict("draft -> ok: bool")]

    def forward(self, ticket):
        routed = self.classify(ticket=ticket)
        draft = self.reply(ticket=ticket, category=routed.category).draft
        return dspy.Prediction(category=routed.category, draft=draft, ok=self.checks[0](draft=draft).ok)


def test_a_dspy_save_loads_into_the_same_program(caplog):
    program = SupportTriage()
    with caplog.at_level(logging.WARNING, logger="promptless"):
        assert program.load(FIXTURE) is program

    classify = program.classify
    assert classify.signature.instructions.startswith("Sort each customer ticket")
    assert classify.signature.fields["category"].desc == "the owning team"
    assert classify.signature.fields["ticket"].desc == ""  # DSPy's "${ticket}" placeholder means no description
    assert classify.signature.fields["urgency"].prefix == "Urgency Level:"  # not DSPy's default, so kept
    assert classify.signature.fields["ticket"].prefix is None  # DSPy's default prefix
    assert [d.urgency for d in classify.demos] == [2, 3]
    assert "augmented" not in classify.demos[0]
    assert classify.demos[0].inputs().to_dict() == {"ticket": "My invoice shows two charges for March."}

    cot = program.reply
    assert cot.signature.instructions.startswith("Write a short, friendly first reply")
    assert cot.signature.fields["draft"].desc == "two or three sentences, no greeting line"
    assert cot.demos[0].reasoning.startswith("The customer cancelled")
    assert cot.config == {"temperature": 0.3, "max_tokens": 600}
    assert "openai/gpt-4o-mini" in caplog.text  # the model is named: it does not carry over

    assert program.checks[0].signature.instructions == "Given the fields `draft`, produce the fields `ok`."


def test_the_loaded_demos_and_instructions_reach_the_prompt():
    program = SupportTriage().load(FIXTURE)
    lm = dspy.ScriptedLM([reply(category="account", urgency=1),
                          reply(reasoning="They need a reset link.", draft="Here is how to reset it."),
                          reply(ok="True")])
    with dspy.context(lm=lm):
        out = program(ticket="I cannot log in.")
    assert out.category == "account" and out.ok is True
    first = lm.requests[0].messages
    assert "Sort each customer ticket" in first[0].content
    assert any("two charges for March" in m.content for m in first if m.role == "user")
    assert lm.requests[1].sampling()["temperature"] == 0.3


def test_load_state_takes_dspys_dump_state_dict():
    state = json.loads(FIXTURE.read_text())
    del state["metadata"]
    program = SupportTriage().load_state(state)
    assert len(program.reply.demos) == 1


def test_a_single_predict_saved_by_dspy(tmp_path):
    saved = json.loads(FIXTURE.read_text())["classify"]
    path = tmp_path / "classify.json"
    path.write_text(json.dumps({**saved, "metadata": {"dependency_versions": {"dspy": "3.0.3"}}}))
    classify = dspy.Predict(ClassifyTicket).load(path)
    assert len(classify.demos) == 2
    assert dspy.Predict(ClassifyTicket).load_state(saved).signature.fields["category"].desc == "the owning team"


def test_a_top_level_chain_of_thought_saved_by_dspy():
    state = {"predict": json.loads(FIXTURE.read_text())["reply.predict"], "metadata": {}}
    cot = dspy.ChainOfThought("ticket, category -> draft").load_state(state)
    assert cot.signature.instructions.startswith("Write a short")


def test_a_pickle_is_refused_with_what_to_do(tmp_path):
    pkl = tmp_path / "program.pkl"
    pkl.write_bytes(b"\x80\x04not really a pickle")
    with pytest.raises(dspy.PersistError, match=r"never unpickles.*program\.save\(\\?\"program\.json\\?\"\)"):
        SupportTriage().load(pkl)
    whole = tmp_path / "saved_program"
    whole.mkdir()
    (whole / "program.pkl").write_bytes(b"")
    with pytest.raises(dspy.PersistError, match="never unpickles"):
        SupportTriage().load(whole)


class OnlyClassify(dspy.Module):
    def __init__(self):
        self.classify = dspy.Predict(ClassifyTicket)
        self.summarize = dspy.Predict("ticket -> summary")


def test_another_program_shape_is_named_and_nothing_changes():
    program = OnlyClassify()
    before = program.dump_state()
    with pytest.raises(dspy.PersistError) as err:
        program.load(FIXTURE)
    text = str(err.value)
    assert "'reply.predict'" in text and "'checks[0]'" in text and "'summarize'" in text
    assert program.dump_state() == before


def test_a_signature_with_other_fields_is_refused(tmp_path):
    state = json.loads(FIXTURE.read_text())
    state["classify"]["signature"]["fields"].pop()
    path = tmp_path / "short.json"
    path.write_text(json.dumps(state))
    with pytest.raises(dspy.PersistError, match=r"saved with 2 fields.*has 3"):
        SupportTriage().load(path)


@pytest.mark.parametrize(("key", "value", "message"), [
    ("traces", [{"ticket": "x"}], "'traces' records"),
    ("fields", {"category": {"threshold": 0.5}}, "decision settings"),
    ("extended_signature", {}, "DSPy 2.5 or older"),
])
def test_state_promptless_has_no_place_for_is_named(tmp_path, key, value, message):
    state = json.loads(FIXTURE.read_text())
    state["classify"][key] = value
    path = tmp_path / "odd.json"
    path.write_text(json.dumps(state))
    program = SupportTriage()
    with pytest.raises(dspy.PersistError, match=message):
        program.load(path)
    assert program.classify.demos == []


def test_a_promptless_save_still_loads(tmp_path):
    program = SupportTriage().load(FIXTURE)
    path = program.save(tmp_path / "ours.json")
    again = SupportTriage().load(path)
    assert again.dump_state() == program.dump_state()
    shutil.rmtree(tmp_path)
