"""The adapter seam: a signature + demos + inputs become messages; a reply becomes values.

An adapter has two pure halves, ``format`` and ``parse``, that golden tests
pin, and ``__call__``, which makes the LM call (with any grammar or schema the
LM can use) and parses every completion. A completion that cannot be parsed
raises ``ParseError``; the chat adapter then asks once more: in its own format under a
grammar when the LM takes one (``retry_params``), else through its fallback adapter.

Typed values (``pl.Image`` and the rest of ``promptless.media``) are written by ``parts.render_input``: media
become content parts of the message. A ``pl.ToolCalls`` output beside an input holding ``pl.Tool``s is asked
of the server's native function calling when the LM has it (``parts.tool_plan``), and read from the reply
text otherwise; ``use_native_function_calling`` (None: when the LM has it) says which, and ``parallel_tool_calls=True``/``False`` asks the server to allow several calls in one reply or not.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol

from ..callbacks import with_callbacks
from ..errors import LMError, ParseError
from ..types import LMResponse, Message
from .parsing import is_optional
from .parts import ToolPlan, collecting, split_message, tool_plan

if TYPE_CHECKING:
    from collections.abc import Callable

    from ..signature import Field, Signature

NOT_SUPPLIED = "Not supplied for this example."


class LanguageModel(Protocol):
    """What an adapter needs of an LM: ``request`` and ``arequest`` (``lm/base.py``'s ``BaseLM`` has both).

    Adapters sit below the LMs and never import them. An LM may also say ``supports_grammar`` (it takes a
    GBNF ``grammar``), ``supports_structured_output`` (it takes a JSON-schema ``response_format``) or
    ``supports_function_calling`` (it takes ``tools`` and returns ``tool_calls``); adapters read those with
    ``getattr`` and treat them as False when absent."""

    def request(self, messages: Any = None, *, prompt: str | None = None, cache: bool = True,
                **params: Any) -> LMResponse: ...

    async def arequest(self, messages: Any = None, *, prompt: str | None = None, cache: bool = True,
                       **params: Any) -> LMResponse: ...


def demo_shows_missing(annotation: Any) -> bool:
    """Whether a demo's missing output field is shown with the ``NOT_SUPPLIED`` placeholder (free-text
    fields) or left out (typed fields: a number, a label, a list...). A placeholder under a typed field is a
    reply that does not parse, and small models copy it: labelled demos without a ``confidence: float`` value
    cost qwen2.5-coder-1.5b 12.5 points on 40 dev events when they showed the placeholder."""
    return is_optional(annotation)[1] is str


class RuleError(ValueError):
    """A reply's value was read, but breaks a value rule of its field (``OutputField(le=5)``)."""


def checked(field: Field, read: Callable[[str], Any]) -> Callable[[str], Any]:
    """``read`` (reply text -> value) followed by the field's value rules, when it has any."""
    if not field.constraints:
        return read

    def read_and_check(text: str) -> Any:
        value = read(text)
        problem = field.rule_problem(value)
        if problem:
            raise RuleError(problem)
        return value

    return read_and_check


def read_field(name: str, read: Callable[[], Any], values: dict[str, Any], invalid: dict[str, str],
               rules: dict[str, str]) -> None:
    """``values[name] = read()``, or why it could not be read in ``invalid[name]`` (and in ``rules[name]`` too
    when the value broke a rule of its field): what every adapter's parse does for each output field."""
    try:
        values[name] = read()
    except RuleError as exc:
        invalid[name] = rules[name] = str(exc)
    except ValueError as exc:
        invalid[name] = str(exc)
    except RecursionError:
        invalid[name] = "the value is nested too deeply to read"


def rule_error(exc: ParseError, rules: dict[str, str]) -> ParseError:
    """``exc``, marked with the fields whose values broke a rule (``exc.rules``), for the retry that says so."""
    exc.rules = dict(rules)  # type: ignore[attr-defined]
    return exc


def rules_retry(messages: list[Message], exc: ParseError) -> list[Message] | None:
    """When every problem of a reply is a broken value rule: the conversation with that reply and a message
    saying which rules it broke, to ask once more in the same format. None when there is anything else wrong."""
    rules = getattr(exc, "rules", None)
    if not rules or exc.missing or set(exc.invalid) != set(rules):
        return None
    told = "\n".join(f"- {name}: {why}" for name, why in rules.items())
    return [*messages, Message("assistant", exc.raw),
            Message("user", f"Your reply broke these rules:\n{told}\nReply again in the same format, "
                            "with every field, keeping the rules.")]


def _format_outputs(messages: Any) -> Any:
    return [m.to_dict() if isinstance(m, Message) else m for m in messages]


def _parse_inputs(adapter: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> dict[str, Any]:
    values = dict(zip(("signature", "completion"), args, strict=False))
    values.update(kwargs)
    if "text" in values:
        values["completion"] = values.pop("text")
    return values


_report_format = with_callbacks("adapter_format", outputs=_format_outputs)
_report_parse = with_callbacks("adapter_parse", inputs=_parse_inputs)


class Adapter:
    """Base of the adapters. ``format`` and ``parse`` (a subclass's own too) report to the callbacks as
    ``adapter_format`` and ``adapter_parse`` calls."""

    name = "adapter"

    def __init__(self, fallback: Adapter | None = None, use_native_function_calling: bool | None = None,
                 callbacks: list[Any] | None = None, parallel_tool_calls: bool | None = None) -> None:
        self.fallback = fallback
        self.use_native_function_calling = use_native_function_calling
        self.parallel_tool_calls = parallel_tool_calls
        self.callbacks: list[Any] = list(callbacks or [])

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "format" in cls.__dict__:
            cls.format = _report_format(cls.__dict__["format"])  # type: ignore[method-assign]
        if "parse" in cls.__dict__:
            cls.parse = _report_parse(cls.__dict__["parse"])  # type: ignore[method-assign]

    # -- pure halves ------------------------------------------------------
    @_report_format
    def format(
        self, signature: type[Signature], demos: Sequence[Mapping[str, Any]], inputs: Mapping[str, Any]
    ) -> list[Message]:
        """System message, a user/assistant pair per demo, earlier History turns, then the final user turn."""
        from ..history import split_history

        with collecting() as media:  # media values leave marks in the text, and their parts here
            signature, inputs, history = split_history(self, signature, inputs)
            messages = [Message("system", self.system_message(signature))]
            for demo in demos:
                if not any(n in demo for n in signature.input_fields):
                    continue
                messages.append(Message("user", self.format_inputs(signature, demo)))
                messages.append(Message("assistant", self.format_outputs(signature, demo)))
            messages.extend(history)
            messages.append(Message("user", self.final_user(signature, inputs)))
        return [split_message(m, media) for m in messages] if media else messages

    def system_message(self, signature: type[Signature]) -> str:
        raise NotImplementedError

    def format_inputs(self, signature: type[Signature], values: Mapping[str, Any]) -> str:
        raise NotImplementedError

    def format_outputs(self, signature: type[Signature], values: Mapping[str, Any]) -> str:
        raise NotImplementedError

    def final_user(self, signature: type[Signature], inputs: Mapping[str, Any]) -> str:
        raise NotImplementedError

    def parse(self, signature: type[Signature], text: str) -> dict[str, Any]:
        raise NotImplementedError

    def request_params(self, signature: type[Signature], lm: LanguageModel) -> dict[str, Any]:
        """Extra request fields for this LM (a grammar, a JSON schema); none by default."""
        return {}

    def retry_params(self, signature: type[Signature], lm: LanguageModel) -> dict[str, Any]:
        """Request fields for asking again, in this same format, after a reply that did not parse (a grammar
        that makes the reply parse). Empty: no such retry; the fallback adapter, if any, is asked instead."""
        return {}

    # -- the call -----------------------------------------------------------
    def _parse_native(self, plan: ToolPlan, signature: type[Signature], resp: LMResponse) -> list[dict[str, Any]]:
        """Each completion's values: the tool calls from the reply's ``tool_calls``, the other outputs from its
        text (None where a completion that called tools wrote none)."""
        parsed: list[dict[str, Any]] = []
        first_error: ParseError | None = None
        for i, text in enumerate(resp.texts):
            calls = resp.calls(i)
            try:
                if calls:
                    try:
                        values = self.parse(plan.signature, text) if text.strip() and plan.signature.output_fields \
                            else {}
                    except ParseError:
                        values = {}
                else:
                    values = self.parse(plan.signature, text)
                try:
                    values[plan.output] = plan.tool_calls.coerce({"tool_calls": calls})
                except ValueError as exc:
                    raise ParseError("could not read the tool calls", raw=text, invalid={plan.output: str(exc)},
                                     adapter=self.name) from None
            except ParseError as exc:
                first_error = first_error or exc
                continue
            parsed.append({n: values.get(n) for n in signature.output_fields})
        if not parsed:
            raise first_error or ParseError("the LM returned no completions", adapter=self.name)
        return parsed

    def _tool_params(self) -> dict[str, Any]:
        """What a native tool call sends besides the tools: ``parallel_tool_calls`` when it was set."""
        value = getattr(self, "parallel_tool_calls", None)
        return {} if value is None else {"parallel_tool_calls": value}

    def _plan(self, lm: LanguageModel, signature: type[Signature], inputs: Mapping[str, Any]) -> ToolPlan | None:
        return tool_plan(lm, signature, inputs, getattr(self, "use_native_function_calling", None))

    def _parse_all(self, signature: type[Signature], resp: LMResponse) -> list[dict[str, Any]]:
        parsed: list[dict[str, Any]] = []
        first_error: ParseError | None = None
        for text in resp.texts:
            try:
                parsed.append(self.parse(signature, text))
            except ParseError as exc:
                first_error = first_error or exc
        if not parsed:
            if first_error is None:
                raise ParseError("the LM returned no completions", adapter=self.name)
            raise first_error
        return parsed

    def __call__(
        self,
        lm: LanguageModel,
        signature: type[Signature],
        demos: Sequence[Mapping[str, Any]],
        inputs: Mapping[str, Any],
        **params: Any,
    ) -> list[dict[str, Any]]:
        plan = self._plan(lm, signature, inputs)
        if plan is not None:
            try:
                resp = lm.request(self.format(plan.signature, demos, plan.inputs), tools=plan.tools,
                                  **self._tool_params(), **params)
            except LMError as exc:
                if exc.refused != "tools":
                    raise
                # the server takes no tools (the LM remembers it): the text protocol below
            else:
                try:
                    return self._parse_native(plan, signature, resp)
                except ParseError:
                    if self.fallback is None:
                        raise
                    return self.fallback(lm, signature, demos, inputs, **params)
        messages = self.format(signature, demos, inputs)
        extra = self.request_params(signature, lm)
        resp = lm.request(messages, **{**extra, **params})
        try:
            return self._parse_all(signature, resp)
        except ParseError as exc:
            again = rules_retry(messages, exc)
            if again is not None:  # the reply was read but broke a value rule: say which, ask once more
                return self._parse_all(signature, lm.request(again, **{**extra, **params}))
            retry = self.retry_params(signature, lm)
            if retry:  # one constrained retry in the same format
                return self._parse_all(signature, lm.request(messages, **{**retry, **params}))
            if self.fallback is None:
                raise
            return self.fallback(lm, signature, demos, inputs, **params)

    async def acall(
        self,
        lm: LanguageModel,
        signature: type[Signature],
        demos: Sequence[Mapping[str, Any]],
        inputs: Mapping[str, Any],
        **params: Any,
    ) -> list[dict[str, Any]]:
        plan = self._plan(lm, signature, inputs)
        if plan is not None:
            try:
                resp = await lm.arequest(self.format(plan.signature, demos, plan.inputs), tools=plan.tools,
                                         **self._tool_params(), **params)
            except LMError as exc:
                if exc.refused != "tools":
                    raise
            else:
                try:
                    return self._parse_native(plan, signature, resp)
                except ParseError:
                    if self.fallback is None:
                        raise
                    return await self.fallback.acall(lm, signature, demos, inputs, **params)
        messages = self.format(signature, demos, inputs)
        extra = self.request_params(signature, lm)
        resp = await lm.arequest(messages, **{**extra, **params})
        try:
            return self._parse_all(signature, resp)
        except ParseError as exc:
            again = rules_retry(messages, exc)
            if again is not None:  # the reply was read but broke a value rule: say which, ask once more
                return self._parse_all(signature, await lm.arequest(again, **{**extra, **params}))
            retry = self.retry_params(signature, lm)
            if retry:  # one constrained retry in the same format
                return self._parse_all(signature, await lm.arequest(messages, **{**retry, **params}))
            if self.fallback is None:
                raise
            return await self.fallback.acall(lm, signature, demos, inputs, **params)
