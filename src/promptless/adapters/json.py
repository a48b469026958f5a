"""The JSON adapter: the reply is one JSON object keyed by the output fields.

With an LM that supports structured output the request carries a JSON
schema of that object; with a llama.cpp LM, a grammar of it. The chat
adapter falls back to this adapter once when its own parse fails.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping
from functools import partial
from typing import TYPE_CHECKING, Any

from ..errors import ParseError
from ..values import to_jsonable
from .base import NOT_SUPPLIED, Adapter, LanguageModel, RuleError, demo_shows_missing, read_field, rule_error
from .grammar import json_grammar
from .parsing import coerce, is_optional, json_schema, parse_json_text, short_type, type_note
from .parts import render_input
from .protocol import field_spec

if TYPE_CHECKING:
    from ..signature import Field, Signature


#: What the prompt says when no output is to be written as text (a call whose tool calls come back natively).
NO_TEXT_OUTPUTS = "There are no fields to write in the reply: answer by calling the functions you are given."


def _read_value(f: Field, raw: Any) -> Any:
    """A field's value from the reply's JSON value, checked against the field's rules."""
    value = coerce(raw if isinstance(raw, str) else json.dumps(raw), f.annotation)
    problem = f.rule_problem(value)
    if problem:
        raise RuleError(problem)
    return value


class JSONAdapter(Adapter):
    name = "json"

    def __init__(self, use_schema: bool = True, use_native_function_calling: bool | None = None,
                 callbacks: list[Any] | None = None, parallel_tool_calls: bool | None = None) -> None:
        super().__init__(None, use_native_function_calling, callbacks=callbacks,
                         parallel_tool_calls=parallel_tool_calls)
        self.use_schema = use_schema

    def system_message(self, signature: type[Signature]) -> str:
        lines = ["Input fields:"]
        for f in signature.input_fields.values():
            lines.append(f"- {f.name} ({short_type(f.annotation)})" + (f": {f.described()}" if f.described() else ""))
        lines += ["", "Output fields:"]
        for f in signature.output_fields.values():
            note = type_note(f.annotation)
            text = f"- {f.name} ({short_type(f.annotation)})" + (f": {f.described()}" if f.described() else "")
            if note:
                text += f" [{note}]"
            lines.append(text)
        keys = ", ".join(f'"{n}"' for n in signature.output_fields)
        lines += [
            "",
            f"Reply with a single JSON object with the keys {keys}, in that order, and nothing else."
            if signature.output_fields else NO_TEXT_OUTPUTS,
            "",
            "Task:",
            signature.instructions.strip(),
        ]
        return "\n".join(lines)

    def format_inputs(self, signature: type[Signature], values: Mapping[str, Any]) -> str:
        return "\n".join(
            f"{name}: {render_input(values[name], f.annotation, name) if name in values else NOT_SUPPLIED}"
            for name, f in signature.input_fields.items()
        )

    def format_outputs(self, signature: type[Signature], values: Mapping[str, Any]) -> str:
        obj = {n: to_jsonable(values[n]) if n in values else NOT_SUPPLIED
               for n, f in signature.output_fields.items() if n in values or demo_shows_missing(f.annotation)}
        return json.dumps(obj, ensure_ascii=False)

    def final_user(self, signature: type[Signature], inputs: Mapping[str, Any]) -> str:
        ask = "Reply with the JSON object." if signature.output_fields else NO_TEXT_OUTPUTS
        return self.format_inputs(signature, inputs) + "\n\n" + ask

    def parse(self, signature: type[Signature], text: str) -> dict[str, Any]:
        outputs = signature.output_fields
        start, end = text.find("{"), text.rfind("}")
        body = text[start : end + 1] if start != -1 and end > start else text
        try:
            data = parse_json_text(body)
        except ValueError:
            data = None
        if not isinstance(data, dict):
            raise ParseError("the reply is not a JSON object", raw=text, missing=list(outputs), adapter=self.name)
        lowered = {str(k).strip().casefold(): v for k, v in data.items()}
        values: dict[str, Any] = {}
        missing: list[str] = []
        invalid: dict[str, str] = {}
        rules: dict[str, str] = {}
        for name, f in outputs.items():
            if name in data:
                raw = data[name]
            elif name.casefold() in lowered:
                raw = lowered[name.casefold()]
            elif f.has_default:
                values[name] = copy.deepcopy(f.default)
                continue
            elif is_optional(f.annotation)[0]:  # typed X | None and left out: None
                values[name] = None
                continue
            else:
                missing.append(name)
                continue
            read_field(name, partial(_read_value, f, raw), values, invalid, rules)
        if missing or invalid:
            raise rule_error(ParseError("could not read the JSON reply", raw=text, missing=missing, invalid=invalid,
                                        adapter=self.name), rules)
        return values

    def output_schema(self, signature: type[Signature]) -> dict[str, Any]:
        props = {}
        for name, f in signature.output_fields.items():
            try:
                props[name] = json_schema(f.annotation)
            except Exception:
                props[name] = {}
        return {"type": "object", "properties": props, "required": list(signature.output_fields),
                "additionalProperties": False}

    def request_params(self, signature: type[Signature], lm: LanguageModel) -> dict[str, Any]:
        if not self.use_schema or not signature.output_fields:
            return {}
        if getattr(lm, "supports_grammar", False):
            return {"grammar": json_grammar([field_spec(f) for f in signature.output_fields.values()])}
        if getattr(lm, "supports_structured_output", False):
            return {"response_format": self.output_schema(signature)}
        return {}
