from __future__ import annotations

import json

import pytest

import promptless as pl
from promptless.adapters.chat import ChatAdapter
from promptless.adapters.json import JSONAdapter
from promptless.history import History


class Chat(pl.Signature):
    """Answer the question."""

    question: str = pl.InputField()
    history: pl.History = pl.InputField()
    answer: str = pl.OutputField()


TURNS = History(messages=[
    {"question": "Who wrote Hamlet?", "answer": "Shakespeare."},
    {"question": "And Faust?", "answer": "Goethe."},
])


def test_chat_adapter_renders_earlier_turns_as_user_assistant_pairs():
    msgs = ChatAdapter().format(Chat, [], {"question": "When was he born?", "history": TURNS})
    assert [m.role for m in msgs] == ["system", "user", "assistant", "user", "assistant", "user"]
    assert msgs[1].content == "[[ ## question ## ]]\nWho wrote Hamlet?"
    assert msgs[2].content == "[[ ## answer ## ]]\nShakespeare.\n\n[[ ## completed ## ]]"
    assert msgs[-1].content.startswith("[[ ## question ## ]]\nWhen was he born?")
    assert "history" not in msgs[0].content and "history" not in msgs[-1].content


def test_history_goes_after_demos_and_before_the_final_turn():
    demo = pl.Example(question="2+2?", answer="4").with_inputs("question")
    msgs = ChatAdapter().format(Chat, [demo], {"question": "q", "history": TURNS})
    assert msgs[1].content == "[[ ## question ## ]]\n2+2?"
    assert msgs[3].content == "[[ ## question ## ]]\nWho wrote Hamlet?"


def test_without_history_the_prompt_is_exactly_as_before():
    plain = pl.Signature("question -> answer", "Answer the question.")
    with_empty = ChatAdapter().format(Chat, [], {"question": "q", "history": History()})
    without = ChatAdapter().format(plain, [], {"question": "q"})
    assert [m.to_dict() for m in with_empty] == [m.to_dict() for m in without]


def test_json_adapter_renders_history():
    msgs = JSONAdapter().format(Chat, [], {"question": "q", "history": TURNS})
    assert [m.role for m in msgs] == ["system", "user", "assistant", "user", "assistant", "user"]
    assert msgs[1].content == "question: Who wrote Hamlet?"
    assert json.loads(msgs[2].content) == {"answer": "Shakespeare."}


def test_partial_turns_raw_messages_and_lists():
    hist = [{"question": "only a question"}, {"answer": "only an answer"}, {"role": "user", "content": "raw"}]
    msgs = ChatAdapter().format(Chat, [], {"question": "q", "history": hist})
    assert [m.role for m in msgs] == ["system", "user", "assistant", "user", "user"]
    assert msgs[1].content == "[[ ## question ## ]]\nonly a question"
    assert msgs[2].content.startswith("[[ ## answer ## ]]\nonly an answer")
    assert msgs[3].content == "raw"


def test_predict_with_history_end_to_end():
    lm = pl.ScriptedLM(["[[ ## answer ## ]]\n1564\n\n[[ ## completed ## ]]"])
    chat = pl.Predict(Chat, lm=lm)
    pred = chat(question="When was he born?", history=TURNS)
    assert pred.answer == "1564"
    assert len(lm.requests[0].messages) == 6
    history = TURNS.add(question="When was he born?", answer=pred.answer)
    assert len(history) == 3 and len(TURNS) == 2


def test_string_signature_with_custom_type_and_bad_values():
    sig = pl.Signature("question, history: History -> answer", custom_types={"History": History})
    msgs = ChatAdapter().format(sig, [], {"question": "q", "history": TURNS})
    assert len(msgs) == 6
    with pytest.raises(pl.ConfigurationError, match=r"must be a pl\.History"):
        ChatAdapter().format(sig, [], {"question": "q", "history": "not a history"})
    with pytest.raises(TypeError, match="list of dicts"):
        History(messages=["hello"])
