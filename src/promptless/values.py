"""Plain values as promptless writes them: into a prompt, as JSON, into a saved file.

``render_value`` is how a value reads inside a prompt (text as is, everything else as JSON); ``to_jsonable``
turns one into what ``json.dumps`` takes (pydantic models dumped, enums by value, dict keys as JSON writes
them). ``value_problem`` says why a value cannot be written at all (it contains itself, nests more than
``MAX_DEPTH`` levels, holds an integer too long to print); ``load_json`` reads JSON refusing the same depth.

The adapters render prompts with these, persistence saves with them, and modules, evaluation and the
optimizers show and store values with them; this module sits below all of them and imports nothing of the
package.
"""

from __future__ import annotations

import enum
import json
import re
import sys
from typing import Any

# How deeply JSON in a reply, a value given as an input and a value in a saved file may nest. Deeper data is
# refused with a clear error rather than meeting Python's recursion limit somewhere later.
MAX_DEPTH = 100


def render_value(value: Any) -> str:
    """How a value is written inside a prompt: text as is, everything else as JSON."""
    if isinstance(value, str):
        return value
    if isinstance(value, enum.Enum):
        return str(value.value)
    if isinstance(value, bool):
        return "True" if value else "False"
    if isinstance(value, (int, float)):
        return repr(value)
    if value is None:
        return "None"
    prompt_text = getattr(value, "prompt_text", None)  # a typed value (pl.Image, pl.Code...) or a pl.Tool
    if callable(prompt_text) and not isinstance(value, type):
        return str(prompt_text())
    try:
        from pydantic import BaseModel

        if isinstance(value, BaseModel):
            return value.model_dump_json()
    except ImportError:  # pragma: no cover
        pass
    try:
        return json.dumps(to_jsonable(value), ensure_ascii=False)
    except (TypeError, ValueError):
        return str(value)


def to_jsonable(value: Any) -> Any:
    """``value`` as plain JSON data: pydantic models dumped, enums by value, containers walked, keys as text."""
    from pydantic import BaseModel

    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    if isinstance(value, dict):
        return {_json_key(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set)):
        return [to_jsonable(v) for v in value]
    if isinstance(value, enum.Enum):
        return value.value
    return value



def _json_key(key: Any) -> str:
    """A dict key as JSON writes it (``True`` -> ``"true"``), an enum member by its value."""
    if isinstance(key, enum.Enum):
        key = key.value
    if isinstance(key, str):
        return key
    if key is None or isinstance(key, (bool, int, float)):
        return json.dumps(key)
    return str(key)


_JSON_STRING = re.compile(r'"(?:[^"\\]|\\.)*"', re.S)
_BRACKET = re.compile(r"[\[\]{}]")


def json_nesting(text: str) -> int:
    """How deeply the brackets of JSON text nest (brackets inside double-quoted strings do not count).

    Cheap for ordinary text: only text with more than ``MAX_DEPTH`` opening brackets is scanned.
    """
    if text.count("[") + text.count("{") <= MAX_DEPTH:
        return 0  # too few brackets to matter
    depth = deepest = 0
    for m in _BRACKET.finditer(_JSON_STRING.sub('""', text)):
        if m.group(0) in "[{":
            depth += 1
            deepest = max(deepest, depth)
        else:
            depth = max(0, depth - 1)
    return deepest


def nested_too_deep(limit: int = MAX_DEPTH) -> ValueError:
    return ValueError(f"the JSON is nested more than {limit} levels deep")


def load_json(text: str, max_depth: int = MAX_DEPTH) -> Any:
    """``json.loads`` that refuses JSON nested more than ``max_depth`` levels with a ValueError."""
    if json_nesting(text) > max_depth:
        raise nested_too_deep(max_depth)
    try:
        return json.loads(text)
    except RecursionError:
        raise nested_too_deep(max_depth) from None


def value_problem(value: Any) -> str | None:
    """Why a value cannot be rendered into a prompt or saved (it contains itself, nests more than
    ``MAX_DEPTH`` levels, or holds an integer too long to write out), or None when it can."""
    limit = sys.get_int_max_str_digits() if hasattr(sys, "get_int_max_str_digits") else 0
    max_bits = int(limit * 3.32) if limit else 0
    # iterative walk: (value, depth, ids of the containers above it)
    stack: list[tuple[Any, int, frozenset[int]]] = [(value, 0, frozenset())]
    while stack:
        v, depth, above = stack.pop()
        t = type(v)
        if t is str or t is float or t is bool or v is None:
            continue
        if isinstance(v, int):
            if max_bits and v.bit_length() > max_bits:
                return f"it holds an integer of more than {limit} digits; pass it as a string"
            continue
        if isinstance(v, (dict, list, tuple, set, frozenset)):
            if id(v) in above:
                return "it contains itself (a list or dict that holds a reference to itself)"
            if depth >= MAX_DEPTH:
                return f"it is nested more than {MAX_DEPTH} levels deep"
            inner = above | {id(v)}
            items = v.values() if isinstance(v, dict) else v
            stack.extend((item, depth + 1, inner) for item in items)
    return None


__all__ = ["MAX_DEPTH", "json_nesting", "load_json", "nested_too_deep", "render_value", "to_jsonable", "value_problem"]
