from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Literal

import pytest
from pydantic import BaseModel

import promptless as pl
from promptless.adapters.chat import ChatAdapter
from promptless.adapters.json import JSONAdapter
from promptless.errors import ParseError

GOLDEN = Path(__file__).parent / "golden"
EVENT = "Battle of Nineveh: A Byzantine army under Emperor Heraclius defeats Persian forces."
DEMOS = [
    pl.Example(event="Battle of Hastings won by William the Conqueror and the Normans, 1066",
               category="Wars and Conflicts", confidence=0.95).with_inputs("event"),
    pl.Example(event="First transatlantic telephone call, 1927", category="Science and Innovation",
               confidence=0.9).with_inputs("event"),
]


def _golden(name: str, messages) -> None:
    data = [m.to_dict() for m in messages]
    path = GOLDEN / f"{name}.json"
    if os.environ.get("PROMPTLESS_UPDATE_GOLDEN") == "1":
        path.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n")
    expected = json.loads(path.read_text())
    assert data == expected, f"rendered prompt changed; review and rerun with PROMPTLESS_UPDATE_GOLDEN=1 ({path})"


def test_golden_chat_zero_shot(classify_signature):
    _golden("chat_classify_zero_shot", ChatAdapter().format(classify_signature, [], {"event": EVENT}))


def test_golden_chat_two_demos(classify_signature):
    _golden("chat_classify_two_demos", ChatAdapter().format(classify_signature, DEMOS, {"event": EVENT}))


def test_golden_json_two_demos(classify_signature):
    _golden("json_classify_two_demos", JSONAdapter().format(classify_signature, DEMOS, {"event": EVENT}))


def test_demo_turns_alternate(classify_signature):
    msgs = ChatAdapter().format(classify_signature, DEMOS, {"event": EVENT})
    assert [m.role for m in msgs] == ["system", "user", "assistant", "user", "assistant", "user"]
    assert msgs[2].content.endswith("[[ ## completed ## ]]")
    assert "Classify historic events." in msgs[0].content
    assert msgs[0].content.index("[[ ## category ## ]]") < msgs[0].content.index("[[ ## confidence ## ]]")


# -- parsing: the three replies from the issue plus more ---------------------------------------------

GOOD_REPLIES = [
    "[[ ## category ## ]] Wars and Conflicts\n\n[[ ## confidence ## ]] 0.9\n\n[[ ## completed ## ]]",
    "[[ ## category ## ]]\nWar and Conflicts\n[[ ## confidence ## ]]\n0.8",
    "Sure! Here is the answer.\n[[ ## Category ## ]]\nwars and conflicts\n[[ ## confidence ## ]]\n90%",
    "[[## category ##]]\nWars and Conflicts\n[[## confidence ##]]\n0.7\n[[## completed ##]]",
    "[[ ## CATEGORY ## ]]\n**Wars and Conflicts**\n\n[[ ## CONFIDENCE ## ]]\n0.85",
    "[[ ## category ## ]]\n\"Wars and Conflicts\"\n\n[[ ## confidence ## ]]\n0.9 (high)\n\n[[ ## completed ## ]]",
    "[[ ## category ## ]]\nWars and Conflicts.\n\n[[ ## confidence ## ]]\n1\n\n[[ ## completed ## ]]\nextra trailing text",
    "[[ ## confidence ## ]]\n0.6\n\n[[ ## category ## ]]\nWars and Conflicts\n\n[[ ## completed ## ]]",
    "[[ ## category ## ]]\nWars and conflicts\n\n[[ ## confidence ## ]]\n.9\n",
    "[[ ## event ## ]]\nBattle\n\n[[ ## category ## ]]\nWars and Conflicts\n\n[[ ## confidence ## ]]\n0.9",
    "[[ ## category ## ]]\nWars & Conflicts\n\n[[ ## confidence ## ]]\n0.9",
    "[[ ## category ## ]]\nWars and Conflicts - a battle between empires\n\n[[ ## confidence ## ]]\n0.9",
    "[[ ## category ## ]]\nwars_and_conflicts\n\n[[ ## confidence ## ]]\n0.9",
    "[[ ##  category  ## ]]\n  Wars and Conflicts  \n\n[[ ## confidence ## ]]\n  0.9  \n[[ ## completed ## ]]",
]


@pytest.mark.parametrize("reply", GOOD_REPLIES)
def test_tolerant_parse(classify_signature, reply):
    out = ChatAdapter().parse(classify_signature, reply)
    assert out["category"] == "Wars and Conflicts"
    assert 0.0 <= out["confidence"] <= 1.0


BAD_REPLIES = [
    ("I think this is about a war.", ["category", "confidence"], {}),
    ("[[ ## category ## ]]\nWars and Conflicts\n", ["confidence"], {}),
    ("[[ ## category ## ]]\nBanana\n\n[[ ## confidence ## ]]\n0.5", [], {"category": "not one of the allowed"}),
    ("[[ ## category ## ]]\nWars and Conflicts\n\n[[ ## confidence ## ]]\nvery high", [], {"confidence": "not a number"}),
    ("[[ ## completed ## ]]\n[[ ## category ## ]]\nWars and Conflicts\n[[ ## confidence ## ]]\n0.5",
     ["category", "confidence"], {}),
    ("", ["category", "confidence"], {}),
]


@pytest.mark.parametrize(("reply", "missing", "invalid"), BAD_REPLIES)
def test_bad_replies_raise_with_raw_and_fields(classify_signature, reply, missing, invalid):
    with pytest.raises(ParseError) as info:
        ChatAdapter().parse(classify_signature, reply)
    err = info.value
    assert err.raw == reply
    assert err.missing == missing
    for field, fragment in invalid.items():
        assert fragment in err.invalid[field]
    assert "raw reply" in str(err)


def test_ambiguous_near_miss_is_refused():
    sig = pl.Signature("x -> label: Literal['Category A1', 'Category A2']")
    with pytest.raises(ParseError) as info:
        ChatAdapter().parse(sig, "[[ ## label ## ]]\nCategory A")
    assert "ambiguous" in info.value.invalid["label"]


def test_single_output_without_headers_is_read_whole():
    sig = pl.Signature("question -> answer")
    assert ChatAdapter().parse(sig, "Paris") == {"answer": "Paris"}
    sig2 = pl.Signature("question -> answer, why")
    with pytest.raises(ParseError):
        ChatAdapter().parse(sig2, "Paris")


class Person(BaseModel):
    name: str
    age: int


def test_structured_values_coerced():
    sig = pl.Signature(
        "x -> items: list[int], table: dict[str, float], who: Person, ok: bool, maybe: Optional[int]",
        custom_types={"Person": Person},
    )
    reply = (
        "[[ ## items ## ]]\n```json\n[1, 2, 3]\n```\n"
        "[[ ## table ## ]]\n{'a': 1.5, 'b': 2,}\n"
        "[[ ## who ## ]]\n{\"name\": \"Ada\", \"age\": \"36\"}\n"
        "[[ ## ok ## ]]\nyes\n"
        "[[ ## maybe ## ]]\nNone\n[[ ## completed ## ]]"
    )
    out = ChatAdapter().parse(sig, reply)
    assert out == {"items": [1, 2, 3], "table": {"a": 1.5, "b": 2.0}, "who": Person(name="Ada", age=36),
                   "ok": True, "maybe": None}


def test_json_adapter_parse_and_schema(classify_signature):
    adapter = JSONAdapter()
    out = adapter.parse(classify_signature, 'Here: {"category": "war and conflicts", "confidence": "0.8"}')
    assert out == {"category": "Wars and Conflicts", "confidence": 0.8}
    schema = adapter.output_schema(classify_signature)
    assert schema["required"] == ["category", "confidence"]
    assert "Wars and Conflicts" in schema["properties"]["category"]["enum"]
    with pytest.raises(ParseError):
        adapter.parse(classify_signature, "no json here")


def test_chat_falls_back_to_json_once_and_usage_shows_it(classify_signature):
    replies = ["I cannot format this.", '{"category": "Wars and Conflicts", "confidence": 0.7}']
    lm = pl.ScriptedLM(replies)
    with pl.track_usage() as usage:
        pred = pl.Predict(classify_signature, lm=lm)(event=EVENT)
    assert pred.category == "Wars and Conflicts"
    assert usage.total.calls == 2
    assert len(lm.requests) == 2
    assert "JSON object" in lm.requests[1].messages[0].content


def test_fallback_failure_raises_parse_error(classify_signature):
    lm = pl.ScriptedLM(["nonsense"])
    with pytest.raises(ParseError):
        pl.Predict(classify_signature, lm=lm)(event=EVENT)
    assert len(lm.requests) == 2


def test_no_fallback_when_disabled(classify_signature):
    lm = pl.ScriptedLM(["nonsense"])
    with pl.context(adapter=ChatAdapter(fallback=None)), pytest.raises(ParseError):
        pl.Predict(classify_signature, lm=lm)(event=EVENT)
    assert len(lm.requests) == 1


def test_structured_output_schema_sent_to_capable_lm(classify_signature):
    class Capable(pl.ScriptedLM):
        supports_structured_output = True

    lm = Capable(['{"category": "Wars and Conflicts", "confidence": 0.7}'])
    with pl.context(adapter=JSONAdapter()):
        pl.Predict(classify_signature, lm=lm)(event=EVENT)
    assert lm.requests[0].response_format["type"] == "object"


def test_literal_ints_and_enum():
    import enum

    class Mood(enum.Enum):
        HAPPY = "happy"
        SAD = "sad"

    sig = pl.make_signature({"x": pl.InputField(), "n": (Literal[1, 2, 3], pl.OutputField()),
                             "mood": (Mood, pl.OutputField())})
    out = ChatAdapter().parse(sig, "[[ ## n ## ]]\n2\n[[ ## mood ## ]]\nHappy")
    assert out == {"n": 2, "mood": Mood.HAPPY}


def test_an_optional_output_may_be_none_under_the_grammar_too():
    class Year(pl.Signature):
        """When did it happen, if the text says."""

        text: str = pl.InputField()
        year: int | None = pl.OutputField()

    class GrammarLM:
        supports_grammar = True

    chat = ChatAdapter(use_grammar=True)
    grammar = chat.request_params(Year, GrammarLM())["grammar"]
    assert '( int-value | "None" )' in grammar
    assert chat.parse(Year, "[[ ## year ## ]]\nNone\n\n[[ ## completed ## ]]") == {"year": None}
    js = JSONAdapter().request_params(Year, GrammarLM())
    assert '( json-int | "null" )' in js.get("grammar", "")


class _GrammarScripted(pl.ScriptedLM):
    supports_grammar = True


GOOD = "[[ ## answer ## ]]\n5\n\n[[ ## completed ## ]]"


def test_a_grammar_lm_is_asked_freely_first_and_under_the_grammar_only_after_a_bad_reply():
    lm = _GrammarScripted(["about five, I think", GOOD], cycle=False)
    with pl.track_usage() as usage:
        out = pl.Predict("question -> answer: int", lm=lm)(question="q")
    assert out.answer == 5
    first, retry = lm.requests
    assert first.grammar is None and retry.grammar is not None and "answer" in retry.grammar
    assert retry.messages == first.messages  # the same chat-format prompt, now constrained
    assert usage.total.calls == 2
    # a reply that parses costs one free call and no grammar
    lm2 = _GrammarScripted([GOOD])
    pl.Predict("question -> answer: int", lm=lm2)(question="q")
    assert [r.grammar for r in lm2.requests] == [None]


def test_use_grammar_true_constrains_every_request_and_false_never():
    always = _GrammarScripted([GOOD])
    pl.Predict("question -> answer: int", lm=always, adapter=ChatAdapter(use_grammar=True))(question="q")
    assert always.requests[0].grammar is not None
    never = _GrammarScripted(["about five, I think", '{"answer": 5}'], cycle=False)
    out = pl.Predict("question -> answer: int", lm=never, adapter=ChatAdapter(use_grammar=False))(question="q")
    assert out.answer == 5  # the JSON fallback answered
    assert [r.grammar is None for r in never.requests] == [True, False]  # the JSON adapter's own grammar
    with pytest.raises(pl.ConfigurationError, match="use_grammar"):
        ChatAdapter(use_grammar="sometimes")


def test_without_grammar_support_a_bad_reply_goes_to_the_json_fallback():
    lm = pl.ScriptedLM(["about five, I think", '{"answer": 5}'], cycle=False)
    assert pl.Predict("question -> answer: int", lm=lm)(question="q").answer == 5
    assert all(r.grammar is None for r in lm.requests)


def test_the_last_line_repeats_label_choices_unless_they_are_very_long():
    short = pl.Signature("event -> category: Literal['War', 'Peace'], confidence: float")
    last = ChatAdapter().format(short, [], {"event": "x"})[-1].content.splitlines()[-1]
    assert last == ("Reply with [[ ## category ## ]] (exactly one of: War; Peace), then [[ ## confidence ## ]], "
                    "and end with [[ ## completed ## ]].")
    many = Literal[tuple(f"label number {i} with a long name" for i in range(60))]  # type: ignore[valid-type]
    sig = short.with_updated_fields("category", many)
    assert "exactly one of" not in ChatAdapter().format(sig, [], {"event": "x"})[-1].content


class _Answer(pl.Signature):
    """Answer with a note."""

    question: str = pl.InputField()
    note: str = pl.OutputField()
    score: float = pl.OutputField()
    label: Literal["yes", "no"] = pl.OutputField()


@pytest.mark.parametrize("adapter", [ChatAdapter(), JSONAdapter()], ids=["chat", "json"])
def test_a_demo_leaves_out_typed_outputs_it_lacks_and_marks_missing_text(adapter):
    demo = pl.Example(question="Is water wet?", label="yes").with_inputs("question")
    messages = adapter.format(_Answer, [demo], {"question": "Is fire cold?"})
    shown = messages[2].content  # the demo's reply
    assert "yes" in shown and "Not supplied for this example." in shown  # note: free text, marked
    assert "score" not in shown  # a float placeholder would be a reply that does not parse
    full = pl.Example(question="Is water wet?", note="it is", score=0.5, label="yes").with_inputs("question")
    assert "score" in adapter.format(_Answer, [full], {"question": "Is fire cold?"})[2].content
