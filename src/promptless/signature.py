"""Signatures: what a step takes and what it gives back.

Two forms, one result (a ``Signature`` subclass):

    pl.Signature("context: list[str], question -> answer, confidence: float", "Answer briefly.")

    class ClassifyEvent(pl.Signature):
        \"\"\"Classify historic events.\"\"\"
        event: str = pl.InputField()
        category: Literal["War", "Peace"] = pl.OutputField(desc="the best label")

A signature is immutable: every edit (``with_instructions``, ``append``,
``delete``, ``with_updated_fields`` ...) returns a new subclass. The class
body is read once by ``__init_subclass__``; there is no metaclass.
"""

from __future__ import annotations

import ast
import collections.abc
import enum
import inspect
import keyword
import types
import typing
from dataclasses import dataclass, replace
from typing import Any, Literal, Optional, Union

from .errors import SignatureError

RESERVED_NAMES = frozenset({"completed", "instructions", "fields", "input_fields", "output_fields", "demos"})

# Keywords a predictor call takes for itself (``Predict(...)(lm=..., config=..., signature=...)``, and ``self``):
# an input field of the same name could never be passed, so such a signature is refused.
CALL_KEYWORDS = frozenset({"signature", "config", "lm", "self"})


class _NoDefault:
    """The ``default`` of a field declared without one."""

    def __repr__(self) -> str:
        return "NO_DEFAULT"

    def __reduce__(self) -> str:
        return "NO_DEFAULT"


NO_DEFAULT: Any = _NoDefault()

# The value rules a field may declare (pydantic's names, as DSPy users write them), in the words the model reads.
_RULE_WORDS = {
    "gt": "greater than {}",
    "ge": "at least {}",
    "lt": "less than {}",
    "le": "at most {}",
    "multiple_of": "a multiple of {}",
    "min_length": "at least {} long",
    "max_length": "at most {} long",
    "pattern": "matching the regular expression {}",
}
# Keywords DSPy takes and documents as having no effect; taken here too, and likewise ignored.
_NO_EFFECT = frozenset({"format", "parser"})


@dataclass(frozen=True)
class Field:
    """One field of a signature.

    ``constraints`` are value rules (``(("ge", 1), ("le", 5))``): the model is told them and a reply that breaks
    one is not accepted. ``default`` is used when an input is not passed, or an output is missing from a reply."""

    name: str
    kind: str  # "input" or "output"
    annotation: Any = str
    desc: str = ""
    prefix: str | None = None
    constraints: tuple[tuple[str, Any], ...] = ()
    default: Any = NO_DEFAULT

    @property
    def is_input(self) -> bool:
        return self.kind == "input"

    @property
    def type_name(self) -> str:
        return type_name(self.annotation)

    @property
    def has_default(self) -> bool:
        return self.default is not NO_DEFAULT

    def rules_text(self) -> str:
        """The value rules in words (``"at least 1, at most 5"``), or ``""`` when there are none."""
        return ", ".join(_RULE_WORDS[k].format(repr(v) if k == "pattern" else v) for k, v in self.constraints)

    def described(self) -> str:
        """The description as the model reads it: ``desc`` and then the value rules, if any."""
        rules = self.rules_text()
        if not rules:
            return self.desc
        return f"{self.desc} (must be {rules})" if self.desc else f"must be {rules}"

    def rule_problem(self, value: Any) -> str | None:
        """Which value rule ``value`` breaks, in words, or None when it keeps them all (or there are none)."""
        for key, limit in self.constraints:
            problem = _rule_problem(key, limit, value)
            if problem is not None:
                rule = _RULE_WORDS[key].format(repr(limit) if key == "pattern" else limit)
                return f"{_short(value)} breaks a rule of this field: it must be {rule}{problem}"
        return None


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _is_multiple(value: float, step: float) -> bool:
    import math

    rest = math.fmod(value, step)
    return math.isclose(rest, 0.0, abs_tol=1e-9) or math.isclose(abs(rest), abs(step), rel_tol=1e-9)


def _rule_problem(key: str, limit: Any, value: Any) -> str | None:
    if value is None:
        return None  # an Optional field left empty keeps its rules
    if key in ("gt", "ge", "lt", "le", "multiple_of"):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return None
        ok = {"gt": lambda: value > limit, "ge": lambda: value >= limit, "lt": lambda: value < limit,
              "le": lambda: value <= limit,
              "multiple_of": lambda: _is_multiple(value, limit)}[key]()
        return None if ok else ""
    if key in ("min_length", "max_length"):
        try:
            n = len(value)
        except TypeError:
            return None
        ok = n >= limit if key == "min_length" else n <= limit
        return None if ok else f" (its length is {n})"
    if key == "pattern":
        import re

        return None if isinstance(value, str) and re.search(limit, value) else ""
    return None


@dataclass(frozen=True)
class _FieldMarker:
    kind: str
    desc: str = ""
    prefix: str | None = None
    constraints: tuple[tuple[str, Any], ...] = ()
    default: Any = NO_DEFAULT


def _marker(kind: str, desc: str | None, prefix: str | None, options: dict[str, Any]) -> _FieldMarker:
    what = "InputField" if kind == "input" else "OutputField"
    description = options.pop("description", None)
    if desc is None:
        desc = description if description is not None else ""
    default = options.pop("default", NO_DEFAULT)
    factory = options.pop("default_factory", None)
    if factory is not None:
        if default is not NO_DEFAULT or not callable(factory):
            raise SignatureError(f"{what}(default_factory=...) takes a function of no arguments (list, dict ...), "
                                 "and not together with default=")
        default = factory()  # made once here; every use takes a deep copy of it
    for key in _NO_EFFECT & set(options):
        options.pop(key)
    unknown = sorted(set(options) - set(_RULE_WORDS))
    if unknown:
        raise SignatureError(
            f"{what}() does not take {', '.join(unknown)}; it takes desc=, prefix=, default=, default_factory= and the value rules "
            f"{', '.join(_RULE_WORDS)} (for other checks, validate the value in your module's forward)"
        )
    constraints: list[tuple[str, Any]] = []
    for key in _RULE_WORDS:
        if key not in options:
            continue
        value = options[key]
        if key == "pattern":
            import re

            try:
                re.compile(value)
            except (re.error, TypeError) as exc:
                raise SignatureError(f"{what}(pattern={value!r}): not a regular expression ({exc})") from None
        elif key in ("min_length", "max_length"):
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise SignatureError(f"{what}({key}={value!r}): a whole number >= 0 is expected")
        elif isinstance(value, bool) or not isinstance(value, (int, float)) or (key == "multiple_of" and not value):
            raise SignatureError(f"{what}({key}={value!r}): a number is expected" +
                                 (" other than 0" if key == "multiple_of" else ""))
        constraints.append((key, value))
    return _FieldMarker(kind, desc, prefix, tuple(constraints), default)


def InputField(*, desc: str | None = None, prefix: str | None = None, **options: Any) -> Any:  # noqa: N802
    """Declare an input field in a class-based signature. ``default=`` (or ``default_factory=list``, a fresh
    copy each time) fills the input when a call leaves it out; the value rules (``ge=``, ``max_length=`` ...) are shown to the model."""
    return _marker("input", desc, prefix, options)


def OutputField(*, desc: str | None = None, prefix: str | None = None, **options: Any) -> Any:  # noqa: N802
    """Declare an output field in a class-based signature. Value rules (``gt=``, ``ge=``, ``lt=``, ``le=``,
    ``multiple_of=``, ``min_length=``, ``max_length=``, ``pattern=``) are shown to the model and a reply that
    breaks one is asked again once, then refused; ``default=`` (or ``default_factory=``, a fresh copy each time)
    is used when the reply leaves the field out."""
    return _marker("output", desc, prefix, options)


def _from_marker(name: str, annotation: Any, marker: _FieldMarker) -> Field:
    return Field(name=name, kind=marker.kind, annotation=annotation, desc=marker.desc, prefix=marker.prefix,
                 constraints=marker.constraints, default=marker.default)


def field_dict(fields: collections.abc.Iterable[Field]) -> dict[str, tuple[Any, Any]]:
    """Fields in ``make_signature``'s dict form, ``{name: (type, InputField(...) or OutputField(...))}``: for
    building a new signature from some of another's fields (ReAct's and ProgramOfThought's inner steps)."""
    return {f.name: (f.annotation, _FieldMarker(f.kind, f.desc, f.prefix, f.constraints, f.default))
            for f in fields}


def type_name(annotation: Any) -> str:
    """A short readable name of a type annotation: ``list[str]``, ``Literal['a', 'b']``."""
    if annotation is str:
        return "str"
    if isinstance(annotation, type) and not typing.get_args(annotation):
        return annotation.__name__
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin is Literal:
        return "Literal[" + ", ".join(repr(a) for a in args) + "]"
    if origin is Union or origin is types.UnionType:
        if len(args) == 2 and type(None) in args:
            other = args[0] if args[1] is type(None) else args[1]
            return f"Optional[{type_name(other)}]"
        return " | ".join(type_name(a) for a in args)
    if origin is not None:
        base = getattr(origin, "__name__", str(origin))
        return f"{base}[" + ", ".join(type_name(a) for a in args) + "]"
    if annotation is Any:
        return "Any"
    return getattr(annotation, "__name__", str(annotation))


# -- the string form ------------------------------------------------------------

_SAFE_NAMES: dict[str, Any] = {
    "str": str,
    "int": int,
    "float": float,
    "bool": bool,
    "list": list,
    "dict": dict,
    "tuple": tuple,
    "set": set,
    "List": list,
    "Dict": dict,
    "Tuple": tuple,
    "Optional": Optional,
    "Union": Union,
    "Literal": Literal,
    "Any": Any,
    "None": type(None),
}


def _split_top(text: str) -> list[str]:
    """Split on commas that are not inside brackets or quotes."""
    parts, depth, buf, quote = [], 0, [], ""
    for ch in text:
        if quote:
            buf.append(ch)
            if ch == quote:
                quote = ""
            continue
        if ch in "'\"":
            quote = ch
        elif ch in "[(":
            depth += 1
        elif ch in "])":
            depth -= 1
        if ch == "," and depth == 0:
            parts.append("".join(buf))
            buf = []
        else:
            buf.append(ch)
    parts.append("".join(buf))
    return parts


# The typed values of promptless.media, known by name in a signature string without custom_types (as
# "Image", or "pl.Image" / "dspy.Image"); the module is imported only when a signature names one.
_TYPED_NAMES = frozenset({"Image", "Audio", "File", "Code", "ToolCalls", "Reasoning", "Citations", "Document"})
_TYPED_PREFIXES = frozenset({"pl", "promptless", "dspy"})


def _typed_name(dotted: str) -> Any:
    prefix, _, last = dotted.rpartition(".")
    if last in _TYPED_NAMES and (not prefix or prefix in _TYPED_PREFIXES):
        from . import media

        return getattr(media, last)
    return None


def _eval_type(node: ast.AST, names: dict[str, Any], where: str, inside_tuple: bool = False) -> Any:
    if isinstance(node, ast.Name):
        if node.id in names:
            return names[node.id]
        typed = _typed_name(node.id)
        if typed is not None:
            return typed
        known = ", ".join(sorted(k for k in names if k[0].islower() or k in ("Optional", "Literal", "Union")))
        raise SignatureError(
            f"{where}: unknown type name {node.id!r}. Known types: {known}; "
            "pass others with custom_types={'Name': Name}"
        )
    if isinstance(node, ast.Constant):
        if node.value is None:
            return type(None)
        if node.value is Ellipsis and inside_tuple:
            return Ellipsis
        if isinstance(node.value, str):
            raise SignatureError(f"{where}: {node.value!r} in quotes is text, not a type; write the type's name unquoted")
        raise SignatureError(f"{where}: {ast.unparse(node)!r} is a value, not a type (values belong in Literal[...])")
    if isinstance(node, ast.Attribute):
        # e.g. typing.List: look up the dotted name as a whole
        dotted = ast.unparse(node)
        if dotted in names:
            return names[dotted]
        typed = _typed_name(dotted)
        if typed is not None:
            return typed
        raise SignatureError(f"{where}: unknown type name {dotted!r}")
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.BitOr):
        left, right = _eval_type(node.left, names, where), _eval_type(node.right, names, where)
        try:
            return Union[left, right]  # noqa: UP007
        except TypeError as exc:
            raise SignatureError(f"{where}: {ast.unparse(node)!r} is not a valid type ({exc})") from None
    if isinstance(node, ast.Subscript):
        base = _eval_type(node.value, names, where)
        sl = node.slice
        items = sl.elts if isinstance(sl, ast.Tuple) else [sl]
        if not items:
            raise SignatureError(f"{where}: {ast.unparse(node)!r} has empty brackets; name the type(s) inside them")
        if base is Literal:
            return Literal.__getitem__(tuple(_literal_value(it, where) for it in items))
        if getattr(base, "__module__", "") == "promptless.media" and getattr(base, "__name__", "") == "Code":
            if len(items) != 1 or not isinstance(items[0], ast.Constant) or not isinstance(items[0].value, str):
                raise SignatureError(f"{where}: Code[...] takes a language name in quotes, e.g. Code['python']")
            return base[items[0].value]
        args = tuple(_eval_type(it, names, where, inside_tuple=base is tuple) for it in items)
        try:
            return base[args if len(args) > 1 else args[0]]
        except (TypeError, ValueError, AttributeError) as exc:
            raise SignatureError(f"{where}: {ast.unparse(node)!r} is not a valid type ({exc})") from None
    raise SignatureError(f"{where}: cannot read {ast.unparse(node)!r} as a type")


def _literal_value(node: ast.AST, where: str) -> Any:
    """One value of ``Literal[...]`` in a signature string: text, a number (signed), True, False or None."""
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
        number = node.operand.value if isinstance(node.operand, ast.Constant) else None
        if isinstance(number, (int, float)) and not isinstance(number, bool):
            return -number if isinstance(node.op, ast.USub) else number
    if isinstance(node, ast.Constant) and (node.value is None or type(node.value) in (str, int, float, bool)):
        return node.value
    raise SignatureError(
        f"{where}: Literal[...] takes text, numbers, True, False or None, got {ast.unparse(node)!r}"
    )


def _parse_side(text: str, kind: str, custom: dict[str, Any], spec: str) -> list[Field]:
    side = "inputs" if kind == "input" else "outputs"
    if not text.strip():
        raise SignatureError(
            f"signature {spec!r}: the {side} side of '->' is empty; write e.g. 'question -> answer'"
        )
    names = {**_SAFE_NAMES, **custom}
    out: list[Field] = []
    for raw in _split_top(text):
        item = raw.strip()
        if not item:
            raise SignatureError(f"signature {spec!r}: empty field name in the {side} (a stray comma?)")
        if ":" in item:
            name, _, tstr = item.partition(":")
            name, tstr = name.strip(), tstr.strip()
            where = f"signature {spec!r}, field {name!r}"
            if not tstr:
                raise SignatureError(f"{where}: a type is expected after ':', e.g. '{name}: str'")
            try:
                node = ast.parse(tstr, mode="eval").body
            except (SyntaxError, ValueError, RecursionError, MemoryError):
                raise SignatureError(f"{where}: cannot read {tstr!r} as a type") from None
            try:
                annotation = _eval_type(node, names, where)
            except RecursionError:
                raise SignatureError(f"{where}: the type is nested too deeply") from None
            _check_name(name, f"signature {spec!r}", kind)
            check_type(annotation, kind, where)
        else:
            name, annotation = item, str
            _check_name(name, f"signature {spec!r}", kind)
        out.append(Field(name=name, kind=kind, annotation=annotation))
    return out


def _check_name(name: Any, where: str, kind: str = "output") -> None:
    if not isinstance(name, str) or not name.isidentifier() or keyword.iskeyword(name):
        raise SignatureError(f"{where}: {name!r} is not a valid field name (use letters, digits and _)")
    if name.startswith("_"):
        raise SignatureError(f"{where}: field names may not start with '_' ({name!r})")
    if name in RESERVED_NAMES:
        raise SignatureError(f"{where}: {name!r} is reserved; choose another field name")
    if kind == "input" and name in CALL_KEYWORDS:
        raise SignatureError(
            f"{where}: an input field cannot be named {name!r}: it is a keyword of the predictor call itself "
            f"({', '.join(sorted(CALL_KEYWORDS))}), so no value could reach the field; rename it, e.g. '{name}_text'"
        )


# -- what a field may be typed ------------------------------------------------------------

_MAX_TYPE_DEPTH = 32
_LITERAL_VALUE_TYPES = (str, int, float, bool, type(None), enum.Enum)
_KEY_TYPES = (str, int, float, bool)
_checked_types: dict[tuple[Any, str], str | None] = {}


def check_type(annotation: Any, kind: str, where: str) -> None:
    """Raise SignatureError unless a field of this kind can have this type.

    Inputs are only rendered into the prompt, so any type is fine there except what is not a type at all
    (``3``, ``'x'``, a bare ``Literal``), a malformed generic (``dict[str]``), a class or a function. An
    output's type must also be one a reply can be read back into: its JSON schema must exist.
    """
    try:
        key = (annotation, kind)
        if key in _checked_types:
            problem = _checked_types[key]
        else:
            problem = _type_problem(annotation, kind == "output", True, 0)
            if len(_checked_types) < 4096:
                _checked_types[key] = problem
    except TypeError:  # unhashable (a Literal of unhashable values, say): check without the cache
        problem = _type_problem(annotation, kind == "output", True, 0)
    if problem:
        raise SignatureError(f"{where}: {problem}")


def _type_problem(ann: Any, output: bool, top: bool, depth: int) -> str | None:
    """What is wrong with a field type (None when nothing is)."""
    if depth > _MAX_TYPE_DEPTH:
        return f"the type is nested more than {_MAX_TYPE_DEPTH} levels deep"
    if ann is str or ann is int or ann is float or ann is bool or ann is Any:
        return None
    if ann is type(None):
        return "a field cannot be typed None; use Optional[X] for a value that may be missing" if top else None
    if isinstance(ann, str):
        return f"{ann!r} is text, not a type; write the type itself, not its name in quotes"
    origin = typing.get_origin(ann)
    args = typing.get_args(ann)
    if ann is type or origin is type:
        return ("a field cannot hold a class (type): a reply is text, never a Python class; "
                "use str for a name, or a Literal of the allowed names")
    if ann is collections.abc.Callable or origin is collections.abc.Callable:
        return ("a field cannot hold a function (Callable): a reply is text, never code to call; "
                "give the module a tool instead, or use str")
    if ann is Literal:
        return "Literal needs its allowed values, e.g. Literal['yes', 'no']"
    if ann is Optional:
        return "Optional needs a type, e.g. Optional[int]"
    if ann is Union:
        return "Union needs its types, e.g. Union[int, str] or int | str"
    if origin is Literal:
        if not args:
            return "Literal[] needs at least one allowed value"
        for value in args:
            if not isinstance(value, _LITERAL_VALUE_TYPES):
                return (f"Literal values are text, numbers, True, False, None or enum members; "
                        f"{value!r} is a {type(value).__name__}")
        return None
    if origin is typing.Annotated:
        return _type_problem(args[0], output, top, depth + 1)
    if origin is Union or origin is types.UnionType:
        for arg in args:
            problem = _type_problem(arg, output, False, depth + 1)
            if problem:
                return problem
        return None
    container = origin if origin is not None else ann
    if container in (list, set, frozenset, tuple, dict):
        return _container_problem(container, args, output, depth)
    if isinstance(ann, type):
        if issubclass(ann, enum.Enum):
            return None if len(ann) else f"the enum {ann.__name__} has no members, so no reply can match it"
        return _schema_problem(ann) if output else None
    if origin is not None:  # another generic: Sequence[int], Mapping[str, int], a generic model...
        for arg in args:
            if arg is not Ellipsis and not isinstance(arg, (list, tuple)):
                problem = _type_problem(arg, output, False, depth + 1)
                if problem:
                    return problem
        return _schema_problem(ann) if output else None
    return f"{ann!r} is not a type"


def _container_problem(container: type, args: tuple[Any, ...], output: bool, depth: int) -> str | None:
    name = container.__name__
    if container is dict:
        if not args:
            return None
        if len(args) != 2:
            return f"dict[...] takes two types, for the keys and the values (e.g. dict[str, int]), got {len(args)}"
        key, value = args
        if not (key in _KEY_TYPES or key is Any or typing.get_origin(key) is Literal
                or (isinstance(key, type) and issubclass(key, enum.Enum))):
            return (f"a dict's keys must be text, numbers or labels (JSON object keys are text), "
                    f"not {type_name(key)}")
        return _type_problem(key, output, False, depth + 1) or _type_problem(value, output, False, depth + 1)
    if container is tuple:
        items = list(args)
        if len(items) == 2 and items[1] is Ellipsis:
            items = items[:1]
        for item in items:
            if item is Ellipsis:
                return "'...' in a tuple type only goes second, as in tuple[int, ...]"
            problem = _type_problem(item, output, False, depth + 1)
            if problem:
                return problem
        return None
    if len(args) > 1:
        return f"{name}[...] takes one type, got {len(args)}"
    item = args[0] if args else Any
    problem = _type_problem(item, output, False, depth + 1)
    if problem:
        return problem
    if container is not list and not _hashable(item):
        return f"the items of a {name} must be hashable (text, numbers, labels, tuples), not {type_name(item)}"
    return None


def _hashable(ann: Any) -> bool:
    origin = typing.get_origin(ann)
    if origin is Union or origin is types.UnionType or origin is tuple:
        return all(a is Ellipsis or _hashable(a) for a in typing.get_args(ann))
    if origin is Literal or ann is Any:
        return True
    if origin in (list, dict, set):
        return False
    if origin is frozenset:
        return True
    return isinstance(ann, type) and getattr(ann, "__hash__", None) is not None


def _schema_problem(ann: Any) -> str | None:
    """An output type outside the ones above (a model, a dataclass...) must have a JSON schema to show the LM."""
    try:
        from pydantic import TypeAdapter

        TypeAdapter(ann).json_schema()
    except Exception as exc:  # pydantic raises several kinds; each means "cannot be read from a reply"
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return (f"{type_name(ann)} cannot be read from a reply: it has no JSON schema ({reason}); "
                "use a pydantic model, a dataclass or a built-in type")
    return None


def parse_signature(spec: str, custom_types: dict[str, Any] | None = None) -> list[Field]:
    """Parse ``"a, b: int -> c: list[str]"`` into fields, or raise SignatureError saying what is wrong."""
    if not isinstance(spec, str):
        raise SignatureError(f"a signature string is expected, got {type(spec).__name__}")
    arrows = spec.count("->")
    if arrows == 0:
        raise SignatureError(f"signature {spec!r} has no '->'; write inputs -> outputs, e.g. 'question -> answer'")
    if arrows > 1:
        raise SignatureError(f"signature {spec!r} has {arrows} '->'; exactly one separates inputs from outputs")
    left, right = spec.split("->")
    fields = _parse_side(left, "input", custom_types or {}, spec) + _parse_side(right, "output", custom_types or {}, spec)
    _check_unique(fields, f"signature {spec!r}")
    return fields


def _check_field(f: Field, where: str) -> None:
    if f.kind not in ("input", "output"):
        raise SignatureError(f"{where}: field {f.name!r} must be an input or an output, not {f.kind!r}")
    _check_name(f.name, where, f.kind)
    if not isinstance(f.desc, str):
        raise SignatureError(f"{where}, field {f.name!r}: desc must be a string, got {type(f.desc).__name__}")
    if f.prefix is not None and not isinstance(f.prefix, str):
        raise SignatureError(f"{where}, field {f.name!r}: prefix must be a string or None, got {type(f.prefix).__name__}")
    check_type(f.annotation, f.kind, f"{where}, field {f.name!r}")


def _check_unique(fields: list[Field], where: str, need_output: bool = True) -> None:
    seen: dict[str, str] = {}
    for f in fields:
        if f.name in seen:
            if seen[f.name] != f.kind:
                raise SignatureError(f"{where}: field {f.name!r} is on both sides; a field is an input or an output")
            raise SignatureError(f"{where}: field {f.name!r} is declared twice")
        seen[f.name] = f.kind
    if need_output and not any(f.kind == "output" for f in fields):
        raise SignatureError(f"{where}: a signature needs at least one output field")


def default_instructions(fields: list[Field]) -> str:
    ins = ", ".join(f"`{f.name}`" for f in fields if f.is_input)
    outs = ", ".join(f"`{f.name}`" for f in fields if not f.is_input)
    return f"Given the fields {ins}, produce the fields {outs}." if ins else f"Produce the fields {outs}."


# -- the class --------------------------------------------------------------------


class Signature:
    """Base class of signatures. Subclass it, or call ``Signature("a -> b", "instructions")``."""

    fields: typing.ClassVar[dict[str, Field]] = {}
    input_fields: typing.ClassVar[dict[str, Field]] = {}
    output_fields: typing.ClassVar[dict[str, Field]] = {}
    instructions: typing.ClassVar[str] = ""

    def __new__(cls, spec: str | dict[str, Any], instructions: str | None = None, **kwargs: Any) -> Any:  # type: ignore[misc]
        # Signature("q -> a") returns a new Signature subclass, as users of this family of tools expect.
        return make_signature(spec, instructions, **kwargs)

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "_promptless_fields" in cls.__dict__:  # built by make_signature
            fields = list(cls.__dict__["_promptless_fields"])
        else:
            fields = _fields_from_class(cls)
        where = f"signature class {cls.__name__}"
        for f in fields:
            _check_field(f, where)
        _check_unique(fields, where, need_output=not cls.__dict__.get("_promptless_render_only", False))
        cls.fields = {f.name: f for f in fields}
        cls.input_fields = {f.name: f for f in fields if f.is_input}
        cls.output_fields = {f.name: f for f in fields if not f.is_input}
        doc = cls.__dict__.get("__doc__")
        if "_promptless_instructions" in cls.__dict__:
            cls.instructions = cls.__dict__["_promptless_instructions"]
            if not isinstance(cls.instructions, str):
                raise SignatureError(f"{where}: instructions must be a string, got {type(cls.instructions).__name__}")
        elif doc and doc.strip():
            cls.instructions = _dedent(doc)
        else:
            cls.instructions = default_instructions(fields)

    # -- reading ---------------------------------------------------------
    @classmethod
    def signature_string(cls) -> str:
        ins = ", ".join(_field_str(f) for f in cls.input_fields.values())
        outs = ", ".join(_field_str(f) for f in cls.output_fields.values())
        return f"{ins} -> {outs}"

    @classmethod
    def describe(cls) -> str:
        return f"{cls.__name__}({cls.signature_string()})\n    instructions: {cls.instructions!r}"

    # -- edits (each returns a new signature) ------------------------------
    @classmethod
    def _rebuild(cls, fields: list[Field], instructions: str | None = None) -> type[Signature]:
        return _build(cls.__name__, fields, cls.instructions if instructions is None else instructions)

    @classmethod
    def with_instructions(cls, instructions: str) -> type[Signature]:
        if not isinstance(instructions, str):
            raise SignatureError(f"instructions must be a string, got {type(instructions).__name__}")
        return cls._rebuild(list(cls.fields.values()), instructions)

    @classmethod
    def append_instructions(cls, instructions: str) -> type[Signature]:
        """A new signature with ``instructions`` added after the current ones (a blank line between)."""
        if not isinstance(instructions, str):
            raise SignatureError(f"instructions must be a string, got {type(instructions).__name__}")
        return cls.with_instructions(f"{cls.instructions}\n\n{instructions}" if cls.instructions else instructions)

    @classmethod
    def prepend_instructions(cls, instructions: str) -> type[Signature]:
        """A new signature with ``instructions`` put before the current ones (a blank line between)."""
        if not isinstance(instructions, str):
            raise SignatureError(f"instructions must be a string, got {type(instructions).__name__}")
        return cls.with_instructions(f"{instructions}\n\n{cls.instructions}" if cls.instructions else instructions)

    @classmethod
    def insert(
        cls, index: int, name: str, field: Any = None, type_: Any = str, *, kind: str | None = None
    ) -> type[Signature]:
        marker = field if isinstance(field, _FieldMarker) else None
        k = kind or (marker.kind if marker else None)
        if k not in ("input", "output"):
            raise SignatureError(f"insert {name!r}: say whether it is an input or an output (pl.InputField() / pl.OutputField())")
        new = _from_marker(name, type_, replace(marker, kind=k) if marker else _FieldMarker(k))
        same = [f for f in cls.fields.values() if f.kind == k]
        other = [f for f in cls.fields.values() if f.kind != k]
        if index < 0:
            index = len(same) + index + 1
        same.insert(max(0, min(index, len(same))), new)
        ordered = same + other if k == "input" else other + same
        return cls._rebuild(ordered)

    @classmethod
    def append(cls, name: str, field: Any = None, type_: Any = str) -> type[Signature]:
        return cls.insert(-1, name, field, type_)

    @classmethod
    def prepend(cls, name: str, field: Any = None, type_: Any = str) -> type[Signature]:
        return cls.insert(0, name, field, type_)

    @classmethod
    def delete(cls, name: str) -> type[Signature]:
        if name not in cls.fields:
            raise SignatureError(f"{cls.__name__} has no field {name!r}; fields: {', '.join(cls.fields)}")
        return cls._rebuild([f for f in cls.fields.values() if f.name != name])

    @classmethod
    def with_updated_fields(cls, name: str, type_: Any = None, **changes: Any) -> type[Signature]:
        if name not in cls.fields:
            raise SignatureError(f"{cls.__name__} has no field {name!r}; fields: {', '.join(cls.fields)}")
        bad = set(changes) - {"desc", "prefix"}
        if bad:
            raise SignatureError(f"with_updated_fields: unknown change(s) {', '.join(sorted(bad))}; use desc, prefix or type_")
        fields = []
        for f in cls.fields.values():
            if f.name == name:
                f = replace(f, **changes)
                if type_ is not None:
                    f = replace(f, annotation=type_)
            fields.append(f)
        return cls._rebuild(fields)

    with_updated_field = with_updated_fields

    @classmethod
    def equals(cls, other: type[Signature]) -> bool:
        return cls.instructions == other.instructions and list(cls.fields.values()) == list(other.fields.values())


def _field_str(f: Field) -> str:
    return f.name if f.annotation is str else f"{f.name}: {f.type_name}"


def _dedent(doc: str) -> str:
    import inspect

    return inspect.cleandoc(doc)


def _fields_from_class(cls: type) -> list[Field]:
    own = inspect.get_annotations(cls)
    markers = {k: v for k, v in cls.__dict__.items() if isinstance(v, _FieldMarker)}
    try:
        hints = typing.get_type_hints(cls, include_extras=False) if own else {}
    except Exception as exc:  # names in string annotations that cannot be resolved
        raise SignatureError(
            f"signature class {cls.__name__}: cannot resolve its type annotations ({exc}). "
            "Define the types it uses at module level, or avoid `from __future__ import annotations` for it."
        ) from None
    inherited: list[Field] = []
    for base in cls.__mro__[1:]:
        if isinstance(base, type) and issubclass(base, Signature) and base is not Signature:
            inherited = list(base.fields.values())
            break
    fields: dict[str, Field] = {f.name: f for f in inherited}
    for name in own:
        if name not in markers and not name.startswith("_"):
            raise SignatureError(
                f"signature class {cls.__name__}: field {name!r} needs a value of pl.InputField() or pl.OutputField()"
            )
    # In the order of declaration, annotated or not: the class namespace keeps it for every field with a value.
    for name, marker in markers.items():
        fields[name] = _from_marker(name, hints.get(name, str), marker)
        try:
            delattr(cls, name)
        except AttributeError:
            pass
    return list(fields.values())


def _build(name: str, fields: list[Field], instructions: str) -> type[Signature]:
    ns = {"_promptless_fields": tuple(fields), "_promptless_instructions": instructions, "__doc__": instructions}
    return type(name, (Signature,), ns)


_render_only: dict[tuple[Any, ...], type[Signature]] = {}


def render_signature(signature: type[Signature], drop: frozenset[str]) -> type[Signature]:
    """``signature`` without the fields in ``drop``, for writing a prompt only: it may be left with no output
    (a call whose one output, its tool calls, the server returns natively)."""
    key = (signature, signature.instructions, drop)
    made = _render_only.get(key)
    if made is None:
        fields = [f for f in signature.fields.values() if f.name not in drop]
        ns = {"_promptless_fields": tuple(fields), "_promptless_instructions": signature.instructions,
              "__doc__": signature.instructions, "_promptless_render_only": True}
        made = type(signature.__name__, (Signature,), ns)
        if len(_render_only) > 1024:
            _render_only.clear()
        _render_only[key] = made
    return made


def make_signature(
    spec: str | dict[str, Any] | type[Signature],
    instructions: str | None = None,
    *,
    custom_types: dict[str, Any] | None = None,
    name: str = "StringSignature",
) -> type[Signature]:
    """Build a signature from a string, a dict of name -> field marker, or return a given signature class."""
    if instructions is not None and not isinstance(instructions, str):
        raise SignatureError(f"instructions must be a string, got {type(instructions).__name__}")
    if isinstance(spec, type) and issubclass(spec, Signature):
        return spec if instructions is None else spec.with_instructions(instructions)
    if isinstance(spec, str):
        fields = parse_signature(spec, custom_types)
    elif isinstance(spec, dict):
        fields = []
        for fname, value in spec.items():
            if isinstance(value, tuple) and len(value) == 2 and isinstance(value[1], _FieldMarker):
                ann, marker = value
            elif isinstance(value, _FieldMarker):
                ann, marker = str, value
            else:
                raise SignatureError(f"field {fname!r}: expected pl.InputField()/pl.OutputField() or (type, field)")
            fields.append(_from_marker(fname, ann, marker))
        for f in fields:
            _check_field(f, "signature")
        _check_unique(fields, "signature")
    else:
        raise SignatureError(
            f"a signature is a string like 'question -> answer' or a pl.Signature subclass, got {type(spec).__name__}"
        )
    return _build(name, fields, instructions if instructions is not None else default_instructions(fields))


# -- does an input value have its field's type ---------------------------------------------------------------

_MAX_ITEMS_CHECKED = 1000


def value_fits(value: Any, annotation: Any, _depth: int = 0) -> bool:
    """Whether an input value has the type its field declares, as far as a quick look can tell (what the
    type-mismatch warnings are given by). Lenient where a value reads the same in a prompt: an int for a
    float, a list of strings for a str, an enum's value or name for the enum, a dict for a pydantic model.
    A typed field (``pl.Image``...) is not checked here: the adapter reads the value as its type (a URL for an
    image) or refuses it with a ``ConfigurationError`` saying why."""
    if value is None or annotation is Any or _depth > _MAX_TYPE_DEPTH:
        return True
    if annotation is str:
        return isinstance(value, str) or (isinstance(value, list) and all(isinstance(v, str) for v in value))
    if annotation is bool:
        return isinstance(value, bool)
    if annotation is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if annotation is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin is typing.Annotated:
        return value_fits(value, args[0], _depth + 1)
    if origin is Union or origin is types.UnionType:
        return any(value_fits(value, a, _depth + 1) for a in args)
    if origin is Literal:
        return any((value == a and isinstance(value, bool) == isinstance(a, bool))
                   or (isinstance(a, enum.Enum) and value == a.value) for a in args)
    if origin in (list, set, frozenset, collections.abc.Sequence, collections.abc.Set):
        if not isinstance(value, (list, set, frozenset, tuple) if origin is not list else (list, tuple)):
            return False
        item = args[0] if args else Any
        return all(value_fits(v, item, _depth + 1) for v in list(value)[:_MAX_ITEMS_CHECKED])
    if origin is tuple:
        if not isinstance(value, (tuple, list)):
            return False
        if not args:
            return True
        if len(args) == 2 and args[1] is Ellipsis:
            return all(value_fits(v, args[0], _depth + 1) for v in list(value)[:_MAX_ITEMS_CHECKED])
        return len(value) == len(args) and all(value_fits(v, a, _depth + 1) for v, a in zip(value, args, strict=True))
    if origin in (dict, collections.abc.Mapping):
        if not isinstance(value, collections.abc.Mapping):
            return False
        if len(args) != 2:
            return True
        items = list(value.items())[:_MAX_ITEMS_CHECKED]
        return all(value_fits(k, args[0], _depth + 1) and value_fits(v, args[1], _depth + 1) for k, v in items)
    if not isinstance(annotation, type):
        return True  # another kind of annotation (a TypeVar, a generic of a class...): not checked
    if isinstance(value, annotation):
        return True
    if issubclass(annotation, enum.Enum):
        return any(value == m.value or value == m.name for m in annotation)
    if getattr(annotation, "__module__", "") == "promptless.media":
        return True  # a typed value (pl.Image...): the adapter reads it as its type, or says why it cannot
    if annotation.__name__ == "History" and annotation.__module__ == "promptless.history":
        return isinstance(value, list) and all(isinstance(m, dict) for m in value)
    # a dict for a pydantic model reads as the same JSON
    return isinstance(value, collections.abc.Mapping) and hasattr(annotation, "model_validate")


def type_mismatches(signature: type[Signature], inputs: collections.abc.Mapping[str, Any]) -> list[str]:
    """One line per input whose value does not have its field's declared type (``value_fits``)."""
    out = []
    for name, f in signature.input_fields.items():
        if name not in inputs:
            continue
        value = inputs[name]
        if type(value) is str and f.annotation is str:  # the common case, at once
            continue
        if not value_fits(value, f.annotation):
            shown = repr(value)
            shown = shown if len(shown) <= 80 else shown[:77] + "..."
            declared = type_name(f.annotation)
            out.append(f"input {name!r} of {signature.__name__} is declared {declared} but was given "
                       f"{shown} ({type(value).__name__}); it goes into the prompt as it is. Pass a value of type "
                       f"{declared}, or change the field's type (pl.configure(warn_on_type_mismatch=False) turns "
                       "this warning off)")
    return out
