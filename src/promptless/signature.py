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
import enum
import inspect
import keyword
import sys
import typing
from dataclasses import dataclass, replace
from typing import Any, Literal, Optional, Union

from .errors import SignatureError

RESERVED_NAMES = frozenset({"completed", "instructions", "fields", "input_fields", "output_fields", "demos"})


@dataclass(frozen=True)
class Field:
    """One field of a signature."""

    name: str
    kind: str  # "input" or "output"
    annotation: Any = str
    desc: str = ""
    prefix: str | None = None

    @property
    def is_input(self) -> bool:
        return self.kind == "input"

    @property
    def type_name(self) -> str:
        return type_name(self.annotation)


@dataclass(frozen=True)
class _FieldMarker:
    kind: str
    desc: str = ""
    prefix: str | None = None


def InputField(*, desc: str = "", prefix: str | None = None, **_ignored: Any) -> Any:  # noqa: N802
    """Declare an input field in a class-based signature."""
    return _FieldMarker("input", desc, prefix)


def OutputField(*, desc: str = "", prefix: str | None = None, **_ignored: Any) -> Any:  # noqa: N802
    """Declare an output field in a class-based signature."""
    return _FieldMarker("output", desc, prefix)


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
    if origin is Union or (sys.version_info >= (3, 10) and origin is getattr(__import__("types"), "UnionType", None)):
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


def _eval_type(node: ast.AST, names: dict[str, Any], where: str) -> Any:
    if isinstance(node, ast.Name):
        if node.id in names:
            return names[node.id]
        known = ", ".join(sorted(k for k in names if k[0].islower() or k in ("Optional", "Literal", "Union")))
        raise SignatureError(
            f"{where}: unknown type name {node.id!r}. Known types: {known}; "
            "pass others with custom_types={'Name': Name}"
        )
    if isinstance(node, ast.Constant):
        if node.value is None:
            return type(None)
        return node.value
    if isinstance(node, ast.Attribute):
        # e.g. typing.List: look up the dotted name as a whole
        dotted = ast.unparse(node)
        if dotted in names:
            return names[dotted]
        raise SignatureError(f"{where}: unknown type name {dotted!r}")
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.BitOr):
        left, right = _eval_type(node.left, names, where), _eval_type(node.right, names, where)
        return Union[left, right]  # noqa: UP007
    if isinstance(node, ast.Subscript):
        base = _eval_type(node.value, names, where)
        sl = node.slice
        items = sl.elts if isinstance(sl, ast.Tuple) else [sl]
        if base is Literal:
            values = []
            for it in items:
                if not isinstance(it, ast.Constant):
                    raise SignatureError(f"{where}: Literal[...] takes constant values, got {ast.unparse(it)!r}")
                values.append(it.value)
            return Literal.__getitem__(tuple(values))
        args = tuple(_eval_type(it, names, where) for it in items)
        try:
            return base[args if len(args) > 1 else args[0]]
        except TypeError as exc:
            raise SignatureError(f"{where}: {ast.unparse(node)!r} is not a valid type: {exc}") from None
    raise SignatureError(f"{where}: cannot read {ast.unparse(node)!r} as a type")


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
            except SyntaxError:
                raise SignatureError(f"{where}: cannot read {tstr!r} as a type") from None
            annotation = _eval_type(node, names, where)
        else:
            name, annotation = item, str
        _check_name(name, f"signature {spec!r}")
        out.append(Field(name=name, kind=kind, annotation=annotation))
    return out


def _check_name(name: str, where: str) -> None:
    if not name.isidentifier() or keyword.iskeyword(name):
        raise SignatureError(f"{where}: {name!r} is not a valid field name (use letters, digits and _)")
    if name.startswith("_"):
        raise SignatureError(f"{where}: field names may not start with '_' ({name!r})")
    if name in RESERVED_NAMES:
        raise SignatureError(f"{where}: {name!r} is reserved; choose another field name")


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


def _check_unique(fields: list[Field], where: str) -> None:
    seen: dict[str, str] = {}
    for f in fields:
        if f.name in seen:
            if seen[f.name] != f.kind:
                raise SignatureError(f"{where}: field {f.name!r} is on both sides; a field is an input or an output")
            raise SignatureError(f"{where}: field {f.name!r} is declared twice")
        seen[f.name] = f.kind
    if not any(f.kind == "output" for f in fields):
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
            _check_name(f.name, where)
        _check_unique(fields, where)
        cls.fields = {f.name: f for f in fields}
        cls.input_fields = {f.name: f for f in fields if f.is_input}
        cls.output_fields = {f.name: f for f in fields if not f.is_input}
        doc = cls.__dict__.get("__doc__")
        if "_promptless_instructions" in cls.__dict__:
            cls.instructions = cls.__dict__["_promptless_instructions"]
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
            raise SignatureError("instructions must be a string")
        return cls._rebuild(list(cls.fields.values()), instructions)

    @classmethod
    def insert(
        cls, index: int, name: str, field: Any = None, type_: Any = str, *, kind: str | None = None
    ) -> type[Signature]:
        marker = field if isinstance(field, _FieldMarker) else None
        k = kind or (marker.kind if marker else None)
        if k not in ("input", "output"):
            raise SignatureError(f"insert {name!r}: say whether it is an input or an output (pl.InputField() / pl.OutputField())")
        new = Field(name=name, kind=k, annotation=type_, desc=marker.desc if marker else "",
                    prefix=marker.prefix if marker else None)
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
    for name in list(own) + [m for m in markers if m not in own]:
        marker = markers.get(name)
        if marker is None:
            if name.startswith("_"):
                continue
            raise SignatureError(
                f"signature class {cls.__name__}: field {name!r} needs a value of pl.InputField() or pl.OutputField()"
            )
        fields[name] = Field(name=name, kind=marker.kind, annotation=hints.get(name, str), desc=marker.desc,
                             prefix=marker.prefix)
        try:
            delattr(cls, name)
        except AttributeError:
            pass
    return list(fields.values())


def _build(name: str, fields: list[Field], instructions: str) -> type[Signature]:
    ns = {"_promptless_fields": tuple(fields), "_promptless_instructions": instructions, "__doc__": instructions}
    return type(name, (Signature,), ns)


def make_signature(
    spec: str | dict[str, Any] | type[Signature],
    instructions: str | None = None,
    *,
    custom_types: dict[str, Any] | None = None,
    name: str = "StringSignature",
) -> type[Signature]:
    """Build a signature from a string, a dict of name -> field marker, or return a given signature class."""
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
            fields.append(Field(fname, marker.kind, ann, marker.desc, marker.prefix))
        for f in fields:
            _check_name(f.name, "signature")
        _check_unique(fields, "signature")
    else:
        raise SignatureError(
            f"a signature is a string like 'question -> answer' or a pl.Signature subclass, got {type(spec).__name__}"
        )
    return _build(name, fields, instructions if instructions is not None else default_instructions(fields))


def ensure_signature(sig: Any) -> type[Signature]:
    return make_signature(sig)


def is_enum(annotation: Any) -> bool:
    return isinstance(annotation, type) and issubclass(annotation, enum.Enum)
