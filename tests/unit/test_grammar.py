"""GBNF builders for constrained decoding (text shape; llama.cpp's parser when installed)."""

from __future__ import annotations

import importlib.util

import pytest

from promptless.adapters.grammar import FieldSpec, gbnf_literal, json_grammar, marker_grammar
from promptless.errors import ConfigurationError

HAVE_LLAMA = importlib.util.find_spec("llama_cpp") is not None
needs_llama = pytest.mark.skipif(not HAVE_LLAMA, reason="llama-cpp-python is not installed (pip install '.[local]')")

CATEGORIES = ["Wars and Conflicts", "Politics and Governance", "Science and Technology", "Other"]

ALL_KINDS: list[FieldSpec] = [
    ("reasoning", "str", None),
    ("category", "literal", CATEGORIES),
    ("confidence", "float", None),
    ("year", "int", None),
    ("is_war", "bool", None),
    ("details", "json", None),
]


def test_marker_grammar_shape() -> None:
    g = marker_grammar([("category", "literal", CATEGORIES), ("confidence", "float", None)])
    lines = g.splitlines()
    assert lines[0] == 'root ::= field-0 field-1 "[[ ## completed ## ]]"'
    assert lines[1].startswith('field-0 ::= "[[ ## category ## ]]\\n" ( ')
    assert '"Wars and Conflicts"' in lines[1]
    assert lines[1].endswith('"\\n\\n"')
    assert lines[2] == 'field-1 ::= "[[ ## confidence ## ]]\\n" float-value "\\n\\n"'
    assert any(line.startswith("float-value ::=") for line in lines)
    # Rules only for the kinds in use.
    assert "text-value ::=" not in g
    assert "json-value ::=" not in g


def test_marker_grammar_all_kinds_defines_every_rule() -> None:
    g = marker_grammar(ALL_KINDS)
    for rule in ("text-value", "text-first", "text-char", "int-value", "float-value", "json-value", "ws"):
        assert f"\n{rule} ::=" in g
    assert '( "True" | "False" | "true" | "false" )' in g
    # Free text cannot contain the marker opener.
    assert 'text-char ::= [^\\[] | "[" [^\\[]' in g


def test_marker_grammar_bounded_text() -> None:
    g = marker_grammar([("answer", "str", None)], max_chars=200)
    assert "text-first text-char{0,199}" in g


def test_literal_choices_longest_first_and_escaped() -> None:
    g = marker_grammar([("label", "literal", ["War", "War and Peace", 'say "hi"\\'])])
    line = g.splitlines()[1]
    assert line.index('"War and Peace"') < line.index('"War"')
    assert '"say \\"hi\\"\\\\"' in line


def test_gbnf_literal_escapes() -> None:
    assert gbnf_literal("a\nb") == '"a\\nb"'
    assert gbnf_literal('q"') == '"q\\""'
    assert gbnf_literal("tab\t\x01") == '"tab\\t\\x01"'
    assert gbnf_literal("é") == '"é"'


def test_field_names_are_literal_headers() -> None:
    g = marker_grammar([("my_field", "str", None)])
    assert '"[[ ## my_field ## ]]\\n"' in g


def test_json_grammar_shape() -> None:
    g = json_grammar([("category", "literal", CATEGORIES), ("confidence", "float", None), ("n", "int", None)])
    root = g.splitlines()[0]
    assert root.startswith('root ::= "{" ws "\\"category\\"" ws ":" ws ( ')
    assert '"\\"Wars and Conflicts\\""' in root
    assert root.index('"\\"category\\""') < root.index('"\\"confidence\\""') < root.index('"\\"n\\""')
    assert '"," ws "\\"confidence\\"" ws ":" ws json-number' in root
    assert "json-int ws" in root
    assert root.endswith('"}"')


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ([], "at least one output field"),
        ([("x", "date", None)], "grammar kinds are"),
        ([("x", "literal", [])], "non-empty list of choices"),
        ([("x", "str", None), ("x", "int", None)], "appears twice"),
        ([("x", "str")], "is \\(name, kind, choices\\)"),
    ],
)
def test_bad_field_specs(fields: list[FieldSpec], message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        marker_grammar(fields)


OPTIONAL_KINDS: list[FieldSpec] = [
    ("note", "str?", None), ("category", "literal?", CATEGORIES), ("confidence", "float?", None),
    ("year", "int?", None), ("is_war", "bool?", None),
]


def test_optional_kinds_also_allow_no_value() -> None:
    marker = marker_grammar(OPTIONAL_KINDS).splitlines()
    assert marker[1] == 'field-0 ::= "[[ ## note ## ]]\\n" text-value "\\n\\n"'  # free text covers "None"
    assert marker[4] == 'field-3 ::= "[[ ## year ## ]]\\n" ( int-value | "None" ) "\\n\\n"'
    assert marker[2].endswith('"Other" ) | "None" ) "\\n\\n"')
    js = json_grammar(OPTIONAL_KINDS).splitlines()[0]
    assert '( json-int | "null" )' in js and '( json-string | "null" )' in js
    with pytest.raises(ConfigurationError, match="kind"):
        marker_grammar([("x", "date?", None)])


# -- llama.cpp accepts them --------------------------------------------------------

GRAMMARS = {
    "marker-all-kinds": marker_grammar(ALL_KINDS),
    "marker-bounded": marker_grammar(ALL_KINDS, max_chars=500),
    "marker-literal": marker_grammar([("category", "literal", CATEGORIES), ("confidence", "float", None)]),
    "json-all-kinds": json_grammar(ALL_KINDS),
    "json-escapes": json_grammar([('quote"d', "literal", ['a"b', "c\\d", "e\nf"])]),
    "marker-optional": marker_grammar(OPTIONAL_KINDS),
    "json-optional": json_grammar(OPTIONAL_KINDS),
}


def _llama_parses(text: str) -> bool:
    import llama_cpp

    sampler = llama_cpp.llama_sampler_init_grammar(None, text.encode("utf-8"), b"root")
    if not sampler:
        return False
    llama_cpp.llama_sampler_free(sampler)
    return True


@needs_llama
@pytest.mark.parametrize("name", sorted(GRAMMARS))
def test_llama_cpp_accepts(name: str) -> None:
    from llama_cpp import LlamaGrammar

    text = GRAMMARS[name]
    assert LlamaGrammar.from_string(text, verbose=False)._grammar == text
    # from_string only stores the text; llama.cpp's own parser is the real check.
    assert _llama_parses(text), text


@needs_llama
def test_llama_cpp_rejects_a_broken_grammar() -> None:
    assert not _llama_parses('root ::= "a" undefined-rule\n')
