"""The XML adapter: every field is written between tags named after it, ``<answer>...</answer>``.

Format: the system message lists the fields and shows the reply as one tagged block per output field, then
the task; each demo is a user turn of tagged inputs and an assistant turn of tagged outputs; the final user
turn holds the inputs and asks for the output tags in order.

Parse: the text of each output field's first ``<name>...</name>`` block (tag names compared without case),
with the XML entities ``&lt; &gt; &amp; &quot; &apos;`` read back, coerced to the field's type as the chat
adapter does (numbers, labels, lists, models...). A list or model may also come as nested tags
(``<items><item>a</item><item>b</item></items>``). A field with a default, or typed ``X | None``, that the
reply leaves out takes its default or None; any other missing field raises ``ParseError``. A reply that
does not parse is asked again through the fallback adapter (JSON by default).
"""

from __future__ import annotations

import copy
import functools
import json
import re
from collections.abc import Mapping
from functools import partial
from typing import TYPE_CHECKING, Any

from ..errors import ParseError
from .base import NOT_SUPPLIED, Adapter, checked, demo_shows_missing, read_field, rule_error
from .json import NO_TEXT_OUTPUTS, JSONAdapter
from .parsing import coercer, is_optional, is_structured, literal_choices, short_type, type_note
from .parts import render_input

if TYPE_CHECKING:
    import xml.etree.ElementTree as ET

    from ..signature import Field, Signature

_ENTITY = re.compile(r"&(lt|gt|quot|apos|amp);")
_ENTITIES = {"lt": "<", "gt": ">", "quot": '"', "apos": "'", "amp": "&"}


def _unescape(text: str) -> str:
    return _ENTITY.sub(lambda m: _ENTITIES[m.group(1)], text)


def _block(name: str, text: str) -> str:
    return f"<{name}>\n{text}\n</{name}>"


@functools.lru_cache(maxsize=1024)
def _patterns(signature: type[Signature]) -> dict[str, tuple[re.Pattern[str], Any]]:
    """Each output field's tag pattern and coercer."""
    return {
        n: (re.compile(rf"<\s*{re.escape(n)}\s*>(.*?)<\s*/\s*{re.escape(n)}\s*>", re.DOTALL | re.IGNORECASE),
            checked(f, coercer(f.annotation)))
        for n, f in signature.output_fields.items()
    }


def _element_value(element: ET.Element) -> Any:
    """Nested tags as plain data: children named ``item`` make a list, other children a dict, text a string."""
    children = list(element)
    if not children:
        return (element.text or "").strip()
    if all(c.tag == "item" for c in children):
        return [_element_value(c) for c in children]
    data: dict[str, Any] = {}
    for c in children:
        value = _element_value(c)
        if c.tag in data:  # a repeated tag is a list of its values
            data[c.tag] = data[c.tag] if isinstance(data[c.tag], list) else [data[c.tag]]
            data[c.tag].append(value)
        else:
            data[c.tag] = value
    return data


def _from_nested(raw: str) -> str | None:
    """A value written as nested tags, as JSON text for the coercer; None when ``raw`` holds no tags."""
    if "<" not in raw:
        return None
    import xml.etree.ElementTree as ET  # only a reply with nested tags needs it

    try:
        root = ET.fromstring(f"<value>{raw.strip()}</value>")
    except ET.ParseError:
        return None
    if not list(root):
        return None
    return json.dumps(_element_value(root))


def _read_tag(f: Field, read: Any, raw: str) -> Any:
    """A field's value from the text inside its tag: unescaped, or, for a structured type, from nested tags."""
    try:
        return read(_unescape(raw))
    except ValueError:
        nested = _from_nested(raw) if is_structured(is_optional(f.annotation)[1]) else None
        if nested is None:
            raise
        return read(nested)


class XMLAdapter(Adapter):
    name = "xml"

    def __init__(self, fallback: Adapter | bool | None = True, use_native_function_calling: bool | None = None,
                 callbacks: list[Any] | None = None, parallel_tool_calls: bool | None = None) -> None:
        if fallback is True:
            fallback = JSONAdapter(use_native_function_calling=use_native_function_calling,
                                   parallel_tool_calls=parallel_tool_calls)
        super().__init__(fallback or None, use_native_function_calling, callbacks=callbacks,
                         parallel_tool_calls=parallel_tool_calls)

    # -- format ------------------------------------------------------------
    def system_message(self, signature: type[Signature]) -> str:
        lines = ["Input fields:", *(_describe(f) for f in signature.input_fields.values()), "",
                 "Output fields:", *(_describe(f) for f in signature.output_fields.values()), ""]
        if signature.output_fields:
            lines += ["Reply with each output field wrapped in XML tags named after it, in this order:", ""]
            for f in signature.output_fields.values():
                note = type_note(f.annotation)
                lines += [_block(f.name, f"{{{f.name}: {note}}}" if note else f"{{{f.name}}}"), ""]
        else:
            lines += [NO_TEXT_OUTPUTS, ""]
        lines += ["Task:", signature.instructions.strip()]
        return "\n".join(lines)

    def format_inputs(self, signature: type[Signature], values: Mapping[str, Any]) -> str:
        return "\n\n".join(
            _block(name, render_input(values[name], f.annotation, name) if name in values else NOT_SUPPLIED)
            for name, f in signature.input_fields.items()
        )

    def format_outputs(self, signature: type[Signature], values: Mapping[str, Any]) -> str:
        parts = []
        for name, f in signature.output_fields.items():
            if name not in values and not demo_shows_missing(f.annotation):
                continue
            if name not in values:
                text = NOT_SUPPLIED
            else:
                text = render_input(values[name], f.annotation, name)
                if is_optional(f.annotation)[1] is str:  # free text: keep a stray tag from closing the block
                    text = text.replace("&", "&amp;").replace("<", "&lt;")
            parts.append(_block(name, text))
        return "\n\n".join(parts)

    def reply_request(self, signature: type[Signature]) -> str:
        if not signature.output_fields:
            return NO_TEXT_OUTPUTS
        names = []
        for name, f in signature.output_fields.items():
            choices = literal_choices(f.annotation)
            listed = "; ".join(str(c) for c in choices) if choices else ""
            names.append(f"<{name}> (exactly one of: {listed})" if listed and len(listed) <= 1000 else f"<{name}>")
        return "Respond with the output fields wrapped in XML tags " + ", then ".join(names) + "."

    def final_user(self, signature: type[Signature], inputs: Mapping[str, Any]) -> str:
        return self.format_inputs(signature, inputs) + "\n\n" + self.reply_request(signature)

    # -- parse --------------------------------------------------------------
    def parse(self, signature: type[Signature], text: str) -> dict[str, Any]:
        outputs = signature.output_fields
        values: dict[str, Any] = {}
        missing: list[str] = []
        invalid: dict[str, str] = {}
        rules: dict[str, str] = {}
        for name, (pattern, read) in _patterns(signature).items():  # type: ignore[arg-type]
            f = outputs[name]
            m = pattern.search(text)
            if m is None:
                if f.has_default:
                    values[name] = copy.deepcopy(f.default)
                elif is_optional(f.annotation)[0]:
                    values[name] = None
                else:
                    missing.append(name)
                continue
            read_field(name, partial(_read_tag, f, read, m.group(1)), values, invalid, rules)
        if missing or invalid:
            raise rule_error(ParseError("could not read the reply in the XML tag format", raw=text, missing=missing,
                                        invalid=invalid, adapter=self.name), rules)
        return {n: values[n] for n in outputs}


def _describe(f: Field) -> str:
    desc = f.described()
    return f"- {f.name} ({short_type(f.annotation)})" + (f": {desc}" if desc else "")
