"""Typed values in prompts: media as content parts, the rest as text, and native tool calls.

The adapters write every input through ``render_input``. A value of a field typed with one of
``promptless.media``'s types is first read as that type (so a URL string given for an ``Image`` field, or an
image that a saved demo holds as ``{"url": ...}``, becomes an ``Image``). Media (an image, audio, a file) cannot
be written as text: inside ``Adapter.format`` (``collecting()``), ``render_input`` leaves a mark where the value
goes and keeps its content parts; ``split_message`` then turns a message with marks into one whose ``parts`` are
the OpenAI content parts, text and media in order, and whose ``content`` reads the media's placeholders.
Outside ``format`` the placeholder text is written instead.

``tool_plan`` decides when a ``ToolCalls`` output is asked of the server's native function calling: the
signature has a ``ToolCalls`` output and an input holding the tools (``list[pl.Tool]``), and the LM says
``supports_function_calling``. The prompt is then written without those two fields, and the tools go in the
request's ``tools``.

``promptless.media`` loads pydantic, so this module never imports it at the top: until something made a typed
value, ``sys.modules`` has no such module and no value or annotation can be one of its types.
"""

from __future__ import annotations

import re
import sys
import typing
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..errors import ConfigurationError
from ..types import Message
from ..values import render_value
from .parsing import is_optional

if TYPE_CHECKING:
    from ..signature import Signature

_collected: ContextVar[list[tuple[str, list[dict[str, Any]]]] | None] = ContextVar("promptless_parts", default=None)
_MARK = re.compile("\ue000(\\d+)\ue001")


def media_module() -> Any:
    """``promptless.media`` if it is loaded (else no value can be one of its types), or None."""
    return sys.modules.get("promptless.media")


@contextmanager
def collecting() -> Iterator[list[tuple[str, list[dict[str, Any]]]]]:
    """Inside the block, ``render_input`` marks media and keeps their parts in the list it yields."""
    found: list[tuple[str, list[dict[str, Any]]]] = []
    token = _collected.set(found)
    try:
        yield found
    finally:
        _collected.reset(token)


def typed_class(annotation: Any) -> tuple[Any, bool]:
    """The typed class a field holds (``Image`` for ``Image``, ``Optional[Image]`` and ``list[Image]``) and
    whether it holds a list of them; ``(None, False)`` for any other annotation."""
    media = media_module()
    if media is None:
        return None, False
    _, inner = is_optional(annotation)
    if media.is_typed(inner):
        return inner, False
    if typing.get_origin(inner) in (list, tuple, Sequence):
        args = [a for a in typing.get_args(inner) if a is not Ellipsis]
        if len(args) == 1 and media.is_typed(args[0]):
            return args[0], True
    return None, False


def as_typed(value: Any, annotation: Any, name: str = "") -> Any:
    """``value`` read as the typed class its field declares (each item, for a list of them); other values as
    they are. A value that cannot be read as its type is a ``ConfigurationError`` saying why."""
    cls, many = typed_class(annotation)
    if cls is None or value is None:
        return value
    try:
        if many and isinstance(value, (list, tuple)):
            return [cls.coerce(v) for v in value]
        return cls.coerce(value)
    except ValueError as exc:
        where = f"input {name!r}" if name else "a value"
        raise ConfigurationError(f"{where} is typed {cls.__name__}, but it is {exc}") from None


def _is_tool(value: Any) -> bool:
    return callable(getattr(value, "format_as_litellm_function_call", None))


def render_input(value: Any, annotation: Any = None, name: str = "") -> str:
    """How a field's value is written into a prompt (see the module's docstring)."""
    if type(value) is str and (annotation is None or annotation is str):
        return value
    media = media_module()
    if media is not None:
        value = as_typed(value, annotation, name)
        if media.has_parts(value):
            return _mark(value)
        if isinstance(value, (list, tuple)) and value and all(media.has_parts(v) for v in value):
            return "\n".join(_mark(v) for v in value)
        if isinstance(value, media.Type):
            return value.prompt_text()
        if isinstance(value, (list, tuple)) and value and all(isinstance(v, media.Type) for v in value):
            return "\n\n".join(v.prompt_text() for v in value)
    if _is_tool(value):
        return str(value.prompt_text())
    if isinstance(value, (list, tuple)) and value and all(_is_tool(v) for v in value):
        return "\n".join(f"({i}) {v.prompt_text()}" for i, v in enumerate(value, 1))
    return render_value(value)


def _mark(value: Any) -> str:
    found = _collected.get()
    text = value.prompt_text()
    if found is None:
        return str(text)
    found.append((text, value.content_parts()))
    return f"\ue000{len(found) - 1}\ue001"


def split_message(message: Message, found: list[tuple[str, list[dict[str, Any]]]]) -> Message:
    """``message`` with its media marks made content parts (user turns; other roles read the placeholder)."""
    if "\ue000" not in message.content:
        return message
    text_parts: list[str] = []
    parts: list[dict[str, Any]] = []
    last = 0
    for m in _MARK.finditer(message.content):
        index = int(m.group(1))
        if index >= len(found):
            continue
        before = message.content[last:m.start()]
        placeholder, media = found[index]
        text_parts += [before, placeholder]
        if before:
            parts.append({"type": "text", "text": before})
        parts.extend(media)
        last = m.end()
    rest = message.content[last:]
    text_parts.append(rest)
    if rest:
        parts.append({"type": "text", "text": rest})
    content = "".join(text_parts)
    if message.role != "user":  # only a user turn takes media parts
        return Message(message.role, content)
    merged: list[dict[str, Any]] = []
    for p in parts:  # neighbouring text parts as one
        if p.get("type") == "text" and merged and merged[-1].get("type") == "text":
            merged[-1] = {"type": "text", "text": merged[-1]["text"] + p["text"]}
        else:
            merged.append(p)
    return Message(message.role, content, tuple(merged))


# -- native tool calls ---------------------------------------------------------------------------------------

@dataclass(frozen=True)
class ToolPlan:
    """A call whose ``ToolCalls`` output the server fills through native function calling."""

    signature: type[Signature]  # the signature the prompt is written for: without the tools and the calls
    inputs: dict[str, Any]
    tools: list[dict[str, Any]]  # OpenAI function schemas
    output: str  # the ToolCalls output field
    tool_calls: Any  # the ToolCalls class of that field


def tool_fields(signature: type[Signature]) -> tuple[str | None, str | None]:
    """The input field that holds tools (``pl.Tool`` or ``list[pl.Tool]``) and the ``ToolCalls`` output."""
    media = media_module()
    if media is None:
        return None, None
    output = next((n for n, f in signature.output_fields.items()
                   if _subclass(is_optional(f.annotation)[1], media.ToolCalls)), None)
    if output is None:
        return None, None
    tools = next((n for n, f in signature.input_fields.items() if _holds_tools(f.annotation)), None)
    return tools, output


def _subclass(annotation: Any, cls: type) -> bool:
    return isinstance(annotation, type) and issubclass(annotation, cls)


def _holds_tools(annotation: Any) -> bool:
    _, inner = is_optional(annotation)
    if typing.get_origin(inner) in (list, tuple, Sequence):
        args = [a for a in typing.get_args(inner) if a is not Ellipsis]
        inner = args[0] if len(args) == 1 else None
    return isinstance(inner, type) and callable(getattr(inner, "format_as_litellm_function_call", None))


def tool_schema(tool: Any, field: str) -> dict[str, Any]:
    """One tool as the OpenAI API's function schema."""
    if _is_tool(tool):
        return dict(tool.format_as_litellm_function_call())
    if isinstance(tool, Mapping) and tool.get("type") == "function" and isinstance(tool.get("function"), Mapping):
        return dict(tool)
    raise ConfigurationError(
        f"input {field!r} holds the tools for native tool calls; {tool!r:.80} is not one: wrap a function as "
        "pl.Tool(fn)"
    )


def tool_plan(lm: Any, signature: type[Signature], inputs: Mapping[str, Any], native: bool | None) -> ToolPlan | None:
    """How to ask for this call's ``ToolCalls`` output natively, or None for the text protocol.

    ``native``: None uses native calls when the LM has them; False never; True also insists that the
    signature has an input holding the tools."""
    if native is False:
        return None
    tools_field, output = tool_fields(signature)
    if output is None:
        return None
    if tools_field is None:
        if native:
            raise ConfigurationError(
                f"output {output!r} is typed ToolCalls, but no input holds the tools to call: add an input field "
                "typed list[pl.Tool] and pass the tools in it"
            )
        return None
    if not getattr(lm, "supports_function_calling", False):
        return None
    given = inputs.get(tools_field)
    items = list(given) if isinstance(given, (list, tuple)) else [given] if given is not None else []
    if not items:
        return None  # no tools to offer: nothing to call natively
    from ..signature import render_signature

    media = media_module()
    calls_class = is_optional(signature.output_fields[output].annotation)[1]
    return ToolPlan(
        signature=render_signature(signature, frozenset({tools_field, output})),
        inputs={k: v for k, v in inputs.items() if k != tools_field},
        tools=[tool_schema(t, tools_field) for t in items],
        output=output,
        tool_calls=calls_class if media is not None else None,
    )


__all__ = ["ToolPlan", "as_typed", "collecting", "media_module", "render_input", "split_message", "tool_fields",
           "tool_plan", "typed_class"]
