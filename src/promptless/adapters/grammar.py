"""GBNF grammars that hold a llama.cpp model to an adapter's reply format.

A field is described by a ``FieldSpec``: ``(name, kind, choices)`` where kind
is one of ``"str"``, ``"int"``, ``"float"``, ``"bool"``, ``"literal"`` (then
``choices`` lists the allowed values, as text) or ``"json"`` (any JSON value).
A kind ending in ``?`` (``"int?"``, ``"literal?"``, ...) also allows no value:
``None`` in the marker format, ``null`` in JSON (an ``Optional[...]`` field).

``marker_grammar(fields)`` describes the chat marker protocol::

    [[ ## category ## ]]
    Wars and Conflicts

    [[ ## confidence ## ]]
    0.9

    [[ ## completed ## ]]

``json_grammar(fields)`` describes a JSON object with exactly those keys, in
order. Both return GBNF text for ``LlamaGrammar.from_string`` (or the
``grammar`` field of an ``LMRequest``). This module does not import llama.cpp.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

from ..errors import ConfigurationError
from .protocol import COMPLETED, FieldSpec, header

KINDS = ("str", "int", "float", "bool", "literal", "json")

# Numbers are bounded so that a small model cannot loop on digits forever.
_NUMBER_RULES = r"""
int-value ::= "-"? [0-9]{1,18}
float-value ::= "-"? [0-9]{1,15} ("." [0-9]{1,15})? ([eE] [-+]? [0-9]{1,3})?
""".strip()

# A JSON value with no whitespace around it (the marker format adds its own).
_JSON_RULES = r"""
json-value ::= json-object | json-array | json-string | json-number | "true" | "false" | "null"
json-object ::= "{" ws ( json-string ws ":" ws json-value ws ( "," ws json-string ws ":" ws json-value ws )* )? "}"
json-array ::= "[" ws ( json-value ws ( "," ws json-value ws )* )? "]"
json-string ::= "\"" json-char* "\""
json-char ::= [^"\\\x7F\x00-\x1F] | "\\" ( ["\\/bfnrt] | "u" [0-9a-fA-F]{4} )
json-number ::= "-"? ( "0" | [1-9] [0-9]{0,15} ) ( "." [0-9]{1,15} )? ( [eE] [-+]? [0-9]{1,3} )?
json-int ::= "-"? ( "0" | [1-9] [0-9]{0,17} )
ws ::= ( " " | "\n" [ \t]{0,20} )?
""".strip()

_MARKER_TEXT_RULES = r"""
text-value ::= text-first text-char*
text-first ::= [^\[ \t\r\n] | "[" [^\[ \t\r\n]
text-char ::= [^\[] | "[" [^\[]
""".strip()

_BOOL_MARKER = '"True" | "False" | "true" | "false"'


def gbnf_literal(text: str) -> str:
    """``text`` as a GBNF string literal (quoted and escaped)."""
    out = ['"']
    for ch in text:
        if ch == "\\":
            out.append("\\\\")
        elif ch == '"':
            out.append('\\"')
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\r":
            out.append("\\r")
        elif ch == "\t":
            out.append("\\t")
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\x{ord(ch):02X}")
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


def _check(fields: Sequence[FieldSpec]) -> list[tuple[str, str, list[str] | None]]:
    if not fields:
        raise ConfigurationError("a grammar needs at least one output field")
    checked = []
    seen: set[str] = set()
    for spec in fields:
        try:
            name, kind, choices = spec
        except (TypeError, ValueError):
            raise ConfigurationError(f"a field spec is (name, kind, choices), got {spec!r}") from None
        if kind.removesuffix("?") not in KINDS:
            raise ConfigurationError(f"field {name!r} has kind {kind!r}; grammar kinds are: {', '.join(KINDS)}")
        if kind.removesuffix("?") == "literal":
            if not choices:
                raise ConfigurationError(f"literal field {name!r} needs a non-empty list of choices")
            choices = [str(c) for c in choices]
        if name in seen:
            raise ConfigurationError(f"field {name!r} appears twice")
        seen.add(name)
        checked.append((name, kind, choices))
    return checked


def _alternatives(values: list[str]) -> str:
    # Longest first, so that no choice is a dead end for one that extends it.
    ordered = sorted(dict.fromkeys(values), key=len, reverse=True)
    return " | ".join(gbnf_literal(v) for v in ordered)


def _marker_value(kind: str, choices: list[str] | None, max_chars: int | None) -> str:
    if kind == "str?":  # free text already covers "None"
        kind = "str"
    if kind.endswith("?"):
        return f'( {_marker_value(kind[:-1], choices, max_chars)} | "None" )'
    if kind == "str":
        if max_chars is None:
            return "text-value"
        return f"text-first text-char{{0,{max(0, max_chars - 1)}}}"
    if kind == "int":
        return "int-value"
    if kind == "float":
        return "float-value"
    if kind == "bool":
        return f"( {_BOOL_MARKER} )"
    if kind == "literal":
        assert choices is not None
        return f"( {_alternatives(choices)} )"
    return "json-value"


def marker_grammar(fields: Sequence[FieldSpec], *, max_chars: int | None = None) -> str:
    """GBNF for the chat marker protocol: each field's block in order, then the completed marker.

    ``max_chars`` bounds free-text values (``None``: bounded only by ``max_tokens``); a ``[``
    counts together with the character after it, so a value can reach twice that in the worst case.
    """
    checked = _check(fields)
    fields_rule = " ".join(f"field-{i}" for i in range(len(checked)))
    lines = [f"root ::= {fields_rule} {gbnf_literal(header(COMPLETED))}"]
    kinds = set()
    for i, (name, kind, choices) in enumerate(checked):
        kinds.add(kind.removesuffix("?"))
        start = gbnf_literal(header(name) + "\n")
        lines.append(f'field-{i} ::= {start} {_marker_value(kind, choices, max_chars)} "\\n\\n"')
    if "str" in kinds:
        lines.append(_MARKER_TEXT_RULES)
    if kinds & {"int", "float"}:
        lines.append(_NUMBER_RULES)
    if "json" in kinds:
        lines.append(_JSON_RULES)
    return "\n".join(lines) + "\n"


def _json_value(kind: str, choices: list[str] | None) -> str:
    if kind.endswith("?"):
        return f'( {_json_value(kind[:-1], choices)} | "null" )'
    if kind == "str":
        return "json-string"
    if kind == "int":
        return "json-int"
    if kind == "float":
        return "json-number"
    if kind == "bool":
        return '( "true" | "false" )'
    if kind == "literal":
        assert choices is not None
        return f"( {_alternatives([json.dumps(c, ensure_ascii=False) for c in choices])} )"
    return "json-value"


def json_grammar(fields: Sequence[FieldSpec]) -> str:
    """GBNF for one JSON object holding exactly these fields, in this order."""
    checked = _check(fields)
    members = []
    for i, (name, kind, choices) in enumerate(checked):
        key = gbnf_literal(json.dumps(name, ensure_ascii=False))
        sep = "" if i == 0 else '"," ws '
        members.append(f'{sep}{key} ws ":" ws {_json_value(kind, choices)} ws')
    root = 'root ::= "{" ws ' + " ".join(members) + ' "}"'
    return root + "\n" + _JSON_RULES + "\n"


__all__ = ["KINDS", "FieldSpec", "gbnf_literal", "json_grammar", "marker_grammar"]
