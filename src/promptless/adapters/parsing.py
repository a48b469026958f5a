"""Rendering values into prompts and coercing reply text back to declared types.

Coercion is forgiving where the reading is unambiguous and strict otherwise.

Literal (and Enum) matching rule, in order:

1. exact match;
2. match after normalising both sides: case folded, quotes, surrounding
   punctuation and markdown emphasis removed, runs of whitespace, ``_`` and ``-``
   collapsed to one space (``"wars  and conflicts."`` -> ``Wars and Conflicts``);
3. the reply starts with exactly one allowed value followed by a word boundary
   (``"Wars and Conflicts - a battle"``); the longest such value wins;
4. closest match by similarity ratio of the normalised forms (difflib), accepted
   only when the best ratio is at least ``LITERAL_THRESHOLD`` (0.85) *and* beats
   the second best by at least ``LITERAL_MARGIN`` (0.08): ``"War and Conflicts"``
   -> ``Wars and Conflicts``. Two close candidates are ambiguous and refused.

Anything else raises ``ValueError`` naming the allowed values.
"""

from __future__ import annotations

import difflib
import enum
import functools
import json
import math
import re
import sys
import types
import typing
from typing import Any, Literal, Union

LITERAL_THRESHOLD = 0.85
LITERAL_MARGIN = 0.08

# How deeply JSON in a reply, a value given as an input and a value in a saved file may nest. Deeper data is
# refused with a clear error rather than meeting Python's recursion limit somewhere later.
MAX_DEPTH = 100

_NUMBER = re.compile(r"[-+]?(?:\d[\d,_]*\.?\d*|\.\d+)(?:[eE][-+]?\d+)?")


# -- type inspection ------------------------------------------------------------------


def _is_union(origin: Any) -> bool:
    return origin is Union or origin is getattr(types, "UnionType", None)


def is_optional(annotation: Any) -> tuple[bool, Any]:
    origin = typing.get_origin(annotation)
    if _is_union(origin):
        args = typing.get_args(annotation)
        if type(None) in args:
            rest = [a for a in args if a is not type(None)]
            return True, (rest[0] if len(rest) == 1 else Union[tuple(rest)])  # noqa: UP007
    return False, annotation


def is_structured(annotation: Any) -> bool:
    """True for types whose values are written as JSON (lists, dicts, models, ...)."""
    _, inner = is_optional(annotation)
    if inner in (str, int, float, bool) or inner is Any:
        return False
    origin = typing.get_origin(inner)
    if origin is Literal:
        return False
    return not (isinstance(inner, type) and issubclass(inner, enum.Enum))


def literal_choices(annotation: Any) -> list[Any] | None:
    _, inner = is_optional(annotation)
    if typing.get_origin(inner) is Literal:
        return list(typing.get_args(inner))
    if isinstance(inner, type) and issubclass(inner, enum.Enum):
        return [m.value for m in inner]
    return None


def _per_annotation(maxsize: int) -> Any:
    """Cache a function of a type annotation.

    Typing's equality ignores order (``Union[int, str] == Union[str, int]``, the same for ``Literal``), but
    order matters here: a union's members are tried in order, and a schema lists them in order. So the cache
    is keyed on the annotation together with its repr, behind a fast lookup by identity.
    """

    def wrap(fn: Any) -> Any:
        by_value = functools.lru_cache(maxsize=maxsize)(lambda annotation, _order: fn(annotation))
        by_id: dict[int, tuple[Any, Any]] = {}

        @functools.wraps(fn)
        def cached(annotation: Any) -> Any:
            hit = by_id.get(id(annotation))
            if hit is not None and hit[0] is annotation:
                return hit[1]
            value = by_value(annotation, repr(annotation))
            if len(by_id) >= maxsize:
                by_id.clear()
            by_id[id(annotation)] = (annotation, value)
            return value

        return cached

    return wrap


@_per_annotation(maxsize=256)
def _adapter(annotation: Any) -> Any:
    from pydantic import TypeAdapter

    return TypeAdapter(annotation)


def json_schema(annotation: Any) -> dict[str, Any]:
    return _adapter(annotation).json_schema()  # type: ignore[no-any-return]


def short_type(annotation: Any) -> str:
    """The type as shown in a prompt's field list; choices are listed once, in the reply structure."""
    from ..signature import type_name

    optional, inner = is_optional(annotation)
    name = "label" if literal_choices(inner) is not None else type_name(inner)
    return f"{name} or None" if optional else name


def type_note(annotation: Any) -> str:
    """What the reply must look like for this type, in words, for the prompt."""
    optional, inner = is_optional(annotation)
    suffix = " (or None)" if optional else ""
    if inner is str or inner is Any:
        return ""
    if inner is bool:
        return "True or False" + suffix
    if inner is int:
        return "a single integer" + suffix
    if inner is float:
        return "a single number, e.g. 0.75" + suffix
    choices = literal_choices(inner)
    if choices is not None:
        return "exactly one of: " + "; ".join(str(c) for c in choices) + suffix
    schema = json.dumps(json_schema(inner), separators=(",", ":"))
    return "JSON matching this schema: " + schema + suffix


# -- rendering --------------------------------------------------------------------------


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
    try:
        from pydantic import BaseModel

        if isinstance(value, BaseModel):
            return value.model_dump_json()
    except ImportError:  # pragma: no cover
        pass
    try:
        return json.dumps(_to_jsonable(value), ensure_ascii=False)
    except (TypeError, ValueError):
        return str(value)


def _to_jsonable(value: Any) -> Any:
    from pydantic import BaseModel

    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    if isinstance(value, dict):
        return {_json_key(k): _to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set)):
        return [_to_jsonable(v) for v in value]
    if isinstance(value, enum.Enum):
        return value.value
    return value


to_jsonable = _to_jsonable


def _json_key(key: Any) -> str:
    """A dict key as JSON writes it (``True`` -> ``"true"``), an enum member by its value."""
    if isinstance(key, enum.Enum):
        key = key.value
    if isinstance(key, str):
        return key
    if key is None or isinstance(key, (bool, int, float)):
        return json.dumps(key)
    return str(key)


# -- coercion ---------------------------------------------------------------------------

_EMPH = re.compile(r"^[\s*_`\"'“”‘’«»<]+|[\s*_`\"'“”‘’«»>.,;:!]+$")


def normalise_label(text: str) -> str:
    t = _EMPH.sub("", str(text)).casefold()
    t = re.sub(r"[\s_\-]+", " ", t)
    return t.strip()


def match_literal(text: str, choices: list[Any]) -> Any:
    """Map reply text to one allowed value by the rule in this module's docstring."""
    raw = text.strip()
    for c in choices:
        if raw == str(c):
            return c
    if raw == "null" and None in choices:  # JSON's spelling of None (the JSON adapter's replies)
        return None
    first_line = raw.splitlines()[0] if raw else ""
    for candidate_text in (raw, first_line):
        norm = normalise_label(candidate_text)
        table = {normalise_label(str(c)): c for c in choices}
        if norm in table:
            return table[norm]
    norm = normalise_label(first_line)
    prefixed = [
        (len(k), c) for k, c in ((normalise_label(str(c)), c) for c in choices)
        if k and norm.startswith(k) and (len(norm) == len(k) or not norm[len(k)].isalnum())
    ]
    if prefixed:
        prefixed.sort(key=lambda t: -t[0])
        if len(prefixed) == 1 or prefixed[0][0] > prefixed[1][0]:
            return prefixed[0][1]
    scored = sorted(
        ((difflib.SequenceMatcher(None, norm, normalise_label(str(c))).ratio(), i) for i, c in enumerate(choices)),
        reverse=True,
    )
    if scored:
        best, idx = scored[0]
        second = scored[1][0] if len(scored) > 1 else 0.0
        if best >= LITERAL_THRESHOLD and best - second >= LITERAL_MARGIN:
            return choices[idx]
        if best >= LITERAL_THRESHOLD:
            raise ValueError(
                f"{first_line!r} is ambiguous between {choices[idx]!r} and {choices[scored[1][1]]!r}"
            )
    allowed = "; ".join(str(c) for c in choices)
    raise ValueError(f"{first_line!r} is not one of the allowed values: {allowed}")


def parse_bool(text: str) -> bool:
    t = normalise_label(text)
    t = t.split()[0] if t else t
    if t in ("true", "yes", "y", "1", "correct", "t"):
        return True
    if t in ("false", "no", "n", "0", "incorrect", "f"):
        return False
    raise ValueError(f"{text.strip()!r} is not True or False")


def parse_number(text: str, kind: type) -> int | float:
    t = text.strip().strip("*`\"'")
    m = _NUMBER.search(t)
    if not m:
        raise ValueError(f"{text.strip()!r} is not a number")
    num_txt = m.group(0).replace(",", "").replace("_", "")
    rest = t[m.end():].lstrip()
    value = float(num_txt)
    if rest.startswith("%"):
        value /= 100.0
    if not math.isfinite(value):
        raise ValueError(f"{text.strip()!r} is not a finite number")
    if kind is int:
        if value != int(value):
            raise ValueError(f"{text.strip()!r} is not an integer")
        return int(value)
    return value


_FENCE = re.compile(r"```(?:json|JSON)?\s*(.*?)```", re.S)
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


def _too_deep(limit: int = MAX_DEPTH) -> ValueError:
    return ValueError(f"the JSON is nested more than {limit} levels deep")


def load_json(text: str, max_depth: int = MAX_DEPTH) -> Any:
    """``json.loads`` that refuses JSON nested more than ``max_depth`` levels with a ValueError."""
    if json_nesting(text) > max_depth:
        raise _too_deep(max_depth)
    try:
        return json.loads(text)
    except RecursionError:
        raise _too_deep(max_depth) from None


def parse_json_text(text: str) -> Any:
    """Read JSON from a reply: code fences removed, common damage repaired. Raises ValueError."""
    t = text.strip()
    m = _FENCE.search(t)
    if m:
        t = m.group(1).strip()
    try:
        return load_json(t)
    except json.JSONDecodeError:
        pass
    import json_repair

    try:
        repaired = json_repair.loads(t)
    except RecursionError:
        raise _too_deep() from None
    except Exception as exc:  # the repairer is a heuristic: anything it cannot handle is "not JSON"
        raise ValueError(f"{text.strip()[:200]!r} is not JSON ({type(exc).__name__})") from None
    if repaired == "" and t not in ('""', "''"):
        raise ValueError(f"{text.strip()[:200]!r} is not JSON")
    return repaired


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


@_per_annotation(maxsize=512)
def coercer(annotation: Any) -> Any:
    """A fast coercion function for one annotation (plain types skip the general path)."""
    if annotation is str:
        return str.strip
    if annotation is float or annotation is int:
        return lambda text: parse_number(text, annotation)
    if annotation is bool:
        return parse_bool
    optional, inner = is_optional(annotation)
    choices = literal_choices(inner)
    if choices is not None and not optional and typing.get_origin(inner) is Literal:
        exact = {str(c): c for c in choices}

        def literal(text: str) -> Any:
            t = text.strip()
            hit = exact.get(t)
            return hit if hit is not None or t in exact else match_literal(t, choices)

        return literal
    return lambda text: coerce(text, annotation)


def coerce(text: str, annotation: Any) -> Any:
    """Coerce the reply text of one field to its declared type, or raise ValueError saying why."""
    optional, inner = is_optional(annotation)
    stripped = text.strip()
    if optional and normalise_label(stripped) in ("none", "null", "n/a", ""):
        return None
    if inner is str:
        return stripped
    if inner is Any:
        try:
            return load_json(stripped)
        except json.JSONDecodeError:
            return stripped
    if inner is bool:
        return parse_bool(stripped)
    if inner is int or inner is float:
        return parse_number(stripped, inner)
    choices = literal_choices(inner)
    if choices is not None:
        value = match_literal(stripped, choices)
        if isinstance(inner, type) and issubclass(inner, enum.Enum):
            return inner(value)
        return value
    if _is_union(typing.get_origin(inner)):
        errors = []
        for arg in typing.get_args(inner):
            try:
                return coerce(stripped, arg)
            except ValueError as exc:
                errors.append(str(exc))
        raise ValueError("; ".join(errors))
    data = parse_json_text(stripped)
    from pydantic import ValidationError

    try:
        return _adapter(inner).validate_python(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first.get("loc", ())) or "value"
        raise ValueError(f"does not match {getattr(inner, '__name__', inner)}: {where}: {first.get('msg')}") from None
