"""Coercing reply text back to declared types, and what the adapters need to know of a type.

(How a value is written into a prompt, ``render_value``, and as JSON, ``to_jsonable``, is ``values.py``.)

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

from ..values import load_json, nested_too_deep

LITERAL_THRESHOLD = 0.85
LITERAL_MARGIN = 0.08


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


def _typed(annotation: Any) -> bool:
    """Whether ``annotation`` is one of ``promptless.media``'s types (``Type`` subclasses): each says how it is
    written and read. Without that module loaded no annotation can be one."""
    media = sys.modules.get("promptless.media")
    return media is not None and media.is_typed(annotation)


def is_structured(annotation: Any) -> bool:
    """True for types whose values are written as JSON (lists, dicts, models, ...)."""
    _, inner = is_optional(annotation)
    if inner in (str, int, float, bool) or inner is Any:
        return False
    if _typed(inner) and inner.__promptless_text__:  # Code, Reasoning: text
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
    if _typed(inner):
        note = inner.type_note()
        if note is not None:
            return note + suffix if note else ""
    schema = json.dumps(json_schema(inner), separators=(",", ":"))
    return "JSON matching this schema: " + schema + suffix


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


def match_enum(text: str, enum_type: type[enum.Enum]) -> Any:
    """The member of ``enum_type`` a reply names: by its value (the rule above), else by its name
    (``HIGH`` for ``Priority.HIGH = 3``)."""
    members = list(enum_type)
    try:
        return enum_type(match_literal(text, [m.value for m in members]))
    except ValueError as by_value:
        raw = text.strip().splitlines()[0] if text.strip() else ""
        names = {m.name: m for m in members}
        if raw.split(".")[-1] in names:  # HIGH, or Priority.HIGH
            return names[raw.split(".")[-1]]
        try:
            return names[match_literal(raw.split(".")[-1], list(names))]
        except ValueError:
            allowed = "; ".join(f"{m.value} ({m.name})" if str(m.value) != m.name else str(m.value)
                                for m in members)
            raise ValueError(f"{raw!r} is not one of the allowed values: {allowed}") from by_value


@_per_annotation(maxsize=256)
def _text_schema(annotation: Any) -> bool:
    """Whether values of this type are written as one JSON string (a date, a time, a UUID, a path...)."""
    try:
        return json_schema(annotation).get("type") == "string"
    except Exception:  # no schema: not a text type
        return False


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


def parse_json_text(text: str) -> Any:
    """Read JSON from a reply: code fences removed, common damage repaired. Raises ValueError."""
    t = text.strip()
    if t[:1] in ("{", "["):  # JSON as it is (a fence inside one of its strings is text, say code)
        try:
            return load_json(t)
        except json.JSONDecodeError:
            pass
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
        raise nested_too_deep() from None
    except Exception as exc:  # the repairer is a heuristic: anything it cannot handle is "not JSON"
        raise ValueError(f"{text.strip()[:200]!r} is not JSON ({type(exc).__name__})") from None
    if repaired == "" and t not in ('""', "''"):
        raise ValueError(f"{text.strip()[:200]!r} is not JSON")
    return repaired


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
    if _typed(inner):  # Code, ToolCalls, ...: each reads its own replies
        return inner.from_reply(text)
    if isinstance(inner, type) and issubclass(inner, enum.Enum):
        return match_enum(stripped, inner)
    choices = literal_choices(inner)
    if choices is not None:
        return match_literal(stripped, choices)
    if _is_union(typing.get_origin(inner)):
        errors = []
        for arg in typing.get_args(inner):
            try:
                return coerce(stripped, arg)
            except ValueError as exc:
                errors.append(str(exc))
        raise ValueError("; ".join(errors))
    from pydantic import ValidationError

    try:
        data = parse_json_text(stripped)
    except ValueError:
        if not _text_schema(inner):
            raise
        data = stripped  # a bare date, time or id the reply wrote without JSON quotes
    try:
        return _adapter(inner).validate_python(data)
    except ValidationError as exc:
        if data != stripped and _text_schema(inner):
            try:  # "2024-05-01T10:00:00" can read as JSON damage; as the text itself it is a datetime
                return _adapter(inner).validate_python(stripped)
            except ValidationError:
                pass
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first.get("loc", ())) or "value"
        raise ValueError(f"does not match {getattr(inner, '__name__', inner)}: {where}: {first.get('msg')}") from None
