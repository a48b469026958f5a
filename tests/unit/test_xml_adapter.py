"""XMLAdapter: fields written between tags named after them, replies read back from those tags with the
same value coercion as the chat adapter."""

from __future__ import annotations

from typing import Literal

import pytest
from pydantic import BaseModel

import promptless as pl
from promptless.adapters.xml import XMLAdapter
from promptless.errors import ParseError


class Person(BaseModel):
    name: str
    age: int


class Extract(pl.Signature):
    """Read the text."""

    text: str = pl.InputField()
    label: Literal["yes", "no"] = pl.OutputField()
    count: int = pl.OutputField()
    tags: list[str] = pl.OutputField()
    person: Person = pl.OutputField()


class Answer(pl.Signature):
    """Answer the question."""

    question: str = pl.InputField()
    answer: str = pl.OutputField()
    source: str | None = pl.OutputField()


def test_format_wraps_inputs_and_outputs_in_tags():
    adapter = XMLAdapter()
    demo = {"question": "2+2?", "answer": "4 < 5 & so on", "source": "maths"}
    msgs = adapter.format(Answer, [demo], {"question": "capital of France?"})
    assert [m.role for m in msgs] == ["system", "user", "assistant", "user"]
    assert "<answer>\n{answer}\n</answer>" in msgs[0].content
    assert msgs[0].content.rstrip().endswith("Answer the question.")
    assert msgs[1].content == "<question>\n2+2?\n</question>"
    # free text in a demo reply is escaped so it cannot close its own tag early
    assert msgs[2].content == "<answer>\n4 &lt; 5 &amp; so on\n</answer>\n\n<source>\nmaths\n</source>"
    assert msgs[3].content.startswith("<question>\ncapital of France?\n</question>")
    assert "<answer>, then <source>" in msgs[3].content


def test_format_lists_label_choices_in_the_request():
    msgs = XMLAdapter().format(Extract, [], {"text": "t"})
    assert "<label> (exactly one of: yes; no)" in msgs[-1].content


def test_parse_reads_typed_values():
    reply = ("Sure.\n<label>Yes</label>\n<count>\n 3\n</count>\n<tags>[\"a\", \"b\"]</tags>\n"
             '<person>{"name": "Ada", "age": 36}</person>')
    out = XMLAdapter().parse(Extract, reply)
    assert out == {"label": "yes", "count": 3, "tags": ["a", "b"], "person": Person(name="Ada", age=36)}


def test_parse_reads_nested_tags_for_lists_and_models():
    reply = ("<label>no</label><count>7</count><tags><item>x</item><item>y</item></tags>"
             "<person><name>Bo</name><age>4</age></person>")
    out = XMLAdapter().parse(Extract, reply)
    assert out["tags"] == ["x", "y"]
    assert out["person"] == Person(name="Bo", age=4)


def test_parse_unescapes_entities_and_ignores_tag_case():
    out = XMLAdapter().parse(Answer, "<ANSWER>a &lt; b</ANSWER><source>x</source>")
    assert out == {"answer": "a < b", "source": "x"}


def test_missing_required_field_raises_parse_error():
    with pytest.raises(ParseError) as info:
        XMLAdapter().parse(Extract, "<label>yes</label><count>1</count><tags>[]</tags>")
    assert info.value.missing == ["person"]


def test_bad_value_is_invalid():
    with pytest.raises(ParseError) as info:
        XMLAdapter().parse(Extract, '<label>yes</label><count>lots</count><tags>[]</tags>'
                                    '<person>{"name": "a", "age": 1}</person>')
    assert "count" in info.value.invalid


def test_optional_output_left_out_is_none():
    assert XMLAdapter().parse(Answer, "<answer>Paris</answer>") == {"answer": "Paris", "source": None}
    with pytest.raises(ParseError):
        XMLAdapter().parse(Answer, "<source>x</source>")


def test_predict_with_xml_adapter_and_json_fallback():
    lm = pl.ScriptedLM(["<answer>Paris</answer>\n<source>atlas</source>"])
    with pl.context(lm=lm, adapter=pl.XMLAdapter()):
        out = pl.Predict(Answer)(question="capital of France?")
    assert (out.answer, out.source) == ("Paris", "atlas")
    # a reply with no tags is asked again through the JSON adapter
    lm = pl.ScriptedLM(["Paris, I think", '{"answer": "Paris", "source": null}'], cycle=False)
    with pl.context(lm=lm, adapter=pl.XMLAdapter()):
        out = pl.Predict(Answer)(question="capital of France?")
    assert (out.answer, out.source) == ("Paris", None)
    with pl.context(lm=pl.ScriptedLM(["Paris, I think"]), adapter=pl.XMLAdapter(fallback=False)), \
            pytest.raises(ParseError):
        pl.Predict(Answer)(question="capital of France?")


@pytest.mark.parametrize("adapter", [pl.ChatAdapter(fallback=False), pl.JSONAdapter()], ids=["chat", "json"])
def test_optional_outputs_left_out_become_none(adapter):
    class Scored(pl.Signature):
        """Score it."""

        text: str = pl.InputField()
        score: int = pl.OutputField()
        reason: str | None = pl.OutputField()
        extra: list[int] | None = pl.OutputField()

    reply = "[[ ## score ## ]]\n4\n\n[[ ## completed ## ]]" if adapter.name == "chat" else '{"score": 4}'
    assert adapter.parse(Scored, reply) == {"score": 4, "reason": None, "extra": None}
    # a required field stays required
    reply = "[[ ## reason ## ]]\nok\n\n[[ ## completed ## ]]" if adapter.name == "chat" else '{"reason": "ok"}'
    with pytest.raises(ParseError) as info:
        adapter.parse(Scored, reply)
    assert info.value.missing == ["score"]
