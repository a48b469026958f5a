"""The chat marker protocol, the default adapter.

System message: the input fields, the output fields, the reply structure (one
``[[ ## name ## ]]`` block per output field with what the value must look like,
then ``[[ ## completed ## ]]``), and last the task's instructions. Each demo is a
user turn (inputs) and an assistant turn (outputs). The final user turn holds
the inputs and asks for the outputs in order.

Parsing reads the blocks back, tolerating what small models do: a value on
the header's own line, headers in another case or spacing, no completed
marker, chatter before the first header, near-miss labels (see
``parsing.match_literal``). Anything ambiguous raises ``ParseError`` with the
raw reply.
"""

from __future__ import annotations

import copy
import functools
from collections.abc import Mapping
from functools import partial
from typing import TYPE_CHECKING, Any

from ..errors import ConfigurationError, ParseError
from .base import NOT_SUPPLIED, Adapter, LanguageModel, checked, demo_shows_missing, read_field, rule_error
from .grammar import marker_grammar
from .json import NO_TEXT_OUTPUTS, JSONAdapter
from .parsing import coercer, is_optional, literal_choices, short_type, type_note
from .parts import render_input
from .protocol import COMPLETED, HEADER, field_spec, header, label_key

if TYPE_CHECKING:
    from ..signature import Field, Signature


@functools.lru_cache(maxsize=1024)
def _plan(signature: type[Signature]) -> tuple[dict[str, str], dict[str, Any]]:
    """Header label -> output field (exact names first, then case- and spacing-insensitive keys that name
    one field only), and each output field's coercer."""
    outputs = signature.output_fields
    keyed: dict[str, list[str]] = {}
    for n in outputs:
        keyed.setdefault(label_key(n), []).append(n)
    wanted = {k: names[0] for k, names in keyed.items() if len(names) == 1}
    wanted.update({n: n for n in outputs})
    return wanted, {n: checked(f, coercer(f.annotation)) for n, f in outputs.items()}


class ChatAdapter(Adapter):
    name = "chat"

    def __init__(self, fallback: Adapter | bool | None = True, use_grammar: bool | str = "fallback",
                 use_native_function_calling: bool | None = None, callbacks: list[Any] | None = None,
                 parallel_tool_calls: bool | None = None) -> None:
        if use_grammar not in (True, False, "fallback"):
            raise ConfigurationError(f"use_grammar must be True, False or 'fallback', got {use_grammar!r}")
        if fallback is True:
            fallback = JSONAdapter(use_native_function_calling=use_native_function_calling,
                                   parallel_tool_calls=parallel_tool_calls)
        super().__init__(fallback or None, use_native_function_calling, callbacks=callbacks,
                         parallel_tool_calls=parallel_tool_calls)
        self.use_grammar = use_grammar
        self._system_cache: dict[tuple[Any, ...], str] = {}

    # -- format ------------------------------------------------------------
    def system_message(self, signature: type[Signature]) -> str:
        key = (signature, signature.instructions)
        cached = self._system_cache.get(key)
        if cached is not None:
            return cached
        lines = ["Input fields:"]
        lines += [_describe(f) for f in signature.input_fields.values()]
        lines.append("")
        lines.append("Output fields:")
        lines += [_describe(f) for f in signature.output_fields.values()]
        lines.append("")
        if signature.output_fields:
            lines.append(
                "Reply with each output field under its header, in this order, and end with the completed marker:"
            )
            lines.append("")
            for f in signature.output_fields.values():
                lines.append(header(f.name))
                note = type_note(f.annotation)
                lines.append(f"<{f.name}: {note}>" if note else f"<{f.name}>")
                lines.append("")
            lines.append(header(COMPLETED))
        else:  # the outputs come back another way: the server's native tool calls
            lines.append(NO_TEXT_OUTPUTS)
        lines.append("")
        lines.append("Task:")
        lines.append(signature.instructions.strip())
        text = "\n".join(lines)
        if len(self._system_cache) > 512:
            self._system_cache.clear()
        self._system_cache[key] = text
        return text

    def format_inputs(self, signature: type[Signature], values: Mapping[str, Any]) -> str:
        parts = []
        for name, f in signature.input_fields.items():
            text = render_input(values[name], f.annotation, name) if name in values else NOT_SUPPLIED
            parts.append(f"{header(name)}\n{text}")
        return "\n\n".join(parts)

    def format_outputs(self, signature: type[Signature], values: Mapping[str, Any]) -> str:
        parts = []
        for name, f in signature.output_fields.items():
            if name not in values and not demo_shows_missing(f.annotation):
                continue
            text = render_input(values[name], f.annotation, name) if name in values else NOT_SUPPLIED
            parts.append(f"{header(name)}\n{text}")
        parts.append(header(COMPLETED))
        return "\n\n".join(parts)

    def reply_request(self, signature: type[Signature]) -> str:
        """The last line of the prompt: the headers in order, each label field with its allowed values again.

        Repeating the choices next to where the model starts writing matters for small models: on the
        historic-events dev split qwen2.5-coder-1.5b scored 50.0 % on the first 40 events with the choices in
        the system message only, 67.5 % with them repeated here (docs/guide.md, "Small models").
        """
        if not signature.output_fields:
            return NO_TEXT_OUTPUTS
        names = []
        for name, f in signature.output_fields.items():
            choices = literal_choices(f.annotation)
            listed = "; ".join(str(c) for c in choices) if choices else ""
            names.append(f"{header(name)} (exactly one of: {listed})" if listed and len(listed) <= 1000
                         else header(name))
        order = names[0] if len(names) == 1 else ", then ".join(names)
        return f"Reply with {order}, and end with {header(COMPLETED)}."

    def final_user(self, signature: type[Signature], inputs: Mapping[str, Any]) -> str:
        return self.format_inputs(signature, inputs) + "\n\n" + self.reply_request(signature)

    # -- parse --------------------------------------------------------------
    def parse(self, signature: type[Signature], text: str) -> dict[str, Any]:
        outputs = signature.output_fields
        wanted, coercers = _plan(signature)  # type: ignore[arg-type]
        found: dict[str, str] = {}
        matches = list(HEADER.finditer(text))
        for i, m in enumerate(matches):
            label = m.group(1)
            key = label_key(label)
            if key == COMPLETED:
                break
            name = wanted.get(label) or wanted.get(key)
            if name is None or name in found:
                continue
            end = matches[i + 1].start() if i + 1 < len(matches) else len(text)
            found[name] = text[m.end() : end]
        if not matches and len(outputs) == 1:
            # No headers at all: a single output field may be the whole reply.
            (only,) = outputs
            found[only] = text
        values: dict[str, Any] = {n: copy.deepcopy(f.default) if f.has_default else None
                                  for n, f in outputs.items()
                                  if n not in found and (f.has_default or is_optional(f.annotation)[0])}
        missing = [n for n in outputs if n not in found and n not in values]
        invalid: dict[str, str] = {}
        rules: dict[str, str] = {}
        for name, raw in found.items():
            read_field(name, partial(coercers[name], raw), values, invalid, rules)
        if missing or invalid:
            raise rule_error(ParseError("could not read the reply in the chat marker format", raw=text,
                                        missing=missing, invalid=invalid, adapter=self.name), rules)
        return {n: values[n] for n in outputs}

    # -- grammar ---------------------------------------------------------------
    # With an LM that takes a GBNF grammar (llama.cpp), use_grammar decides when it is sent:
    # "fallback" (default): the first request is free and a reply that does not parse is asked again under
    # the grammar, which always parses. True: every request is constrained. False: never.
    # Why not always: constraining a small model's first attempt costs accuracy on label fields
    # (qwen2.5-coder-1.5b on historic-events dev: see docs/guide.md), while its free replies parse almost
    # always; the grammar is kept for the reply that needs it.
    def request_params(self, signature: type[Signature], lm: LanguageModel) -> dict[str, Any]:
        return self._grammar(signature, lm) if self.use_grammar is True else {}

    def retry_params(self, signature: type[Signature], lm: LanguageModel) -> dict[str, Any]:
        return self._grammar(signature, lm) if self.use_grammar == "fallback" else {}

    def _grammar(self, signature: type[Signature], lm: LanguageModel) -> dict[str, Any]:
        if not getattr(lm, "supports_grammar", False):
            return {}
        return {"grammar": marker_grammar([field_spec(f) for f in signature.output_fields.values()])}


def _describe(f: Field) -> str:
    text = f"- {f.name} ({short_type(f.annotation)})"
    desc = f.described()
    if desc:
        text += f": {desc}"
    return text

