from __future__ import annotations

import enum
from typing import Any, Literal, Optional

import pytest
from pydantic import BaseModel

import promptless as pl
from promptless.errors import SignatureError


def test_string_forms():
    s = pl.Signature("question -> answer")
    assert list(s.input_fields) == ["question"]
    assert list(s.output_fields) == ["answer"]
    assert s.fields["answer"].annotation is str
    s = pl.Signature("sentence -> sentiment: bool")
    assert s.output_fields["sentiment"].annotation is bool
    s = pl.Signature("context: list[str], question -> answer, confidence: float", "Answer briefly.")
    assert s.input_fields["context"].annotation == list[str]
    assert s.output_fields["confidence"].annotation is float
    assert s.instructions == "Answer briefly."


def test_default_instructions_mention_fields():
    s = pl.Signature("a, b -> c")
    assert "`a`" in s.instructions and "`c`" in s.instructions


def test_string_types_literal_optional_dict():
    s = pl.Signature("x: Literal['yes', 'no'], y: Optional[int] -> z: dict[str, list[int]]")
    assert s.input_fields["x"].annotation == Literal["yes", "no"]
    assert s.input_fields["y"].annotation == Optional[int]  # noqa: UP045
    assert s.output_fields["z"].annotation == dict[str, list[int]]


def test_custom_types():
    class Point(BaseModel):
        x: int

    s = pl.make_signature("p: Point -> q: Point", custom_types={"Point": Point})
    assert s.input_fields["p"].annotation is Point


@pytest.mark.parametrize(
    ("spec", "fragment"),
    [
        ("question answer", "no '->'"),
        ("a -> b -> c", "2 '->'"),
        (" -> answer", "inputs side"),
        ("question -> ", "outputs side"),
        ("a b -> c", "not a valid field name"),
        ("1a -> b", "not a valid field name"),
        ("class -> b", "not a valid field name"),
        ("a, a -> b", "declared twice"),
        ("a -> a", "both sides"),
        ("a: Frobnicate -> b", "unknown type name 'Frobnicate'"),
        ("a: -> b", "a type is expected"),
        ("a, , b -> c", "empty field name"),
        ("a -> completed", "reserved"),
        ("a: list[ -> b", "cannot read"),
    ],
)
def test_bad_strings_say_what_is_wrong(spec, fragment):
    with pytest.raises(SignatureError) as info:
        pl.Signature(spec)
    assert fragment in str(info.value)


class Color(enum.Enum):
    RED = "red"
    BLUE = "blue"


class Person(BaseModel):
    name: str
    age: int


class Everything(pl.Signature):
    """Do everything."""

    text: str = pl.InputField(desc="some text")
    count: int = pl.OutputField()
    ratio: float = pl.OutputField()
    flag: bool = pl.OutputField()
    label: Literal["a", "b"] = pl.OutputField()
    color: Color = pl.OutputField()
    items: list[str] = pl.OutputField()
    table: dict[str, int] = pl.OutputField()
    maybe: Optional[int] = pl.OutputField()  # noqa: UP045
    person: Person = pl.OutputField(desc="who")
    anything: Any = pl.OutputField()


def test_class_form_reads_types_docstring_and_descriptions():
    assert Everything.instructions == "Do everything."
    assert Everything.input_fields["text"].desc == "some text"
    assert Everything.output_fields["person"].annotation is Person
    assert next(iter(Everything.output_fields)) == "count"
    assert "text" not in Everything.__dict__  # markers are consumed, not left as class attributes


def test_class_field_without_marker_is_an_error():
    with pytest.raises(SignatureError, match=r"needs a value of pl\.InputField"):

        class Bad(pl.Signature):
            question: str


def test_class_subclass_inherits_fields():
    class Base(pl.Signature):
        """Base."""

        q: str = pl.InputField()
        a: str = pl.OutputField()

    class More(Base):
        """More."""

        extra: int = pl.OutputField()

    assert list(More.fields) == ["q", "a", "extra"]
    assert More.instructions == "More."


def test_edits_return_new_signatures():
    s = pl.Signature("question -> answer", "Orig.")
    s2 = s.with_instructions("New.")
    assert s.instructions == "Orig." and s2.instructions == "New."
    s3 = s.append("context", pl.InputField(desc="ctx"), list[str])
    assert list(s3.input_fields) == ["question", "context"] and list(s.input_fields) == ["question"]
    s4 = s.prepend("reasoning", pl.OutputField(), str)
    assert list(s4.output_fields) == ["reasoning", "answer"]
    s5 = s3.insert(0, "first", pl.InputField())
    assert list(s5.input_fields) == ["first", "question", "context"]
    s6 = s3.delete("context")
    assert list(s6.input_fields) == ["question"]
    s7 = s.with_updated_fields("answer", desc="short", type_=int)
    assert s7.output_fields["answer"].desc == "short" and s7.output_fields["answer"].annotation is int
    assert s.output_fields["answer"].desc == ""
    with pytest.raises(SignatureError, match="no field 'nope'"):
        s.delete("nope")
    with pytest.raises(SignatureError, match=r"both sides|declared twice"):
        s.append("answer", pl.InputField())


def test_signature_string_round_trip():
    spec = "context: list[str], question -> answer, confidence: float"
    assert pl.Signature(spec).signature_string() == spec


def test_field_dict_rebuilds_a_signature_from_some_of_its_fields():

    from promptless.signature import field_dict

    class Src(pl.Signature):
        """Classify."""

        text: str = pl.InputField(desc="the text", prefix="Text:")
        label: Literal["a", "b"] = pl.OutputField(desc="one label")

    rebuilt = pl.make_signature(field_dict(Src.fields.values()), "Again.")
    assert [(f.name, f.kind, f.annotation, f.desc, f.prefix) for f in rebuilt.fields.values()] == [
        (f.name, f.kind, f.annotation, f.desc, f.prefix) for f in Src.fields.values()]
    only_inputs = pl.make_signature({**field_dict(Src.input_fields.values()), "n": (int, pl.OutputField())})
    assert list(only_inputs.input_fields) == ["text"] and list(only_inputs.output_fields) == ["n"]
