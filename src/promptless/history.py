"""History: earlier turns of a conversation, as an input field.

    class Chat(pl.Signature):
        question: str = pl.InputField()
        history: pl.History = pl.InputField()
        answer: str = pl.OutputField()

    chat = pl.Predict(Chat)
    history = pl.History(messages=[{"question": "Who wrote Hamlet?", "answer": "Shakespeare."}])
    chat(question="When was he born?", history=history)

Each message is a dict keyed by the signature's field names. The adapters
render it as earlier turns: the input fields present in the message become a
user message and the output fields present an assistant message, placed after
the demos and before the final user message. The history field itself is not
listed among the input fields. A message of the form ``{"role": ...,
"content": ...}`` is passed through as it is. A signature without a History
field is rendered exactly as before.

(In a string signature, name the type with ``custom_types``:
``pl.Signature("question, history: History -> answer", custom_types={"History": pl.History})``.)
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .errors import ConfigurationError
from .types import Message

if TYPE_CHECKING:
    from .signature import Signature


@dataclass(frozen=True)
class History:
    """Earlier turns: ``History(messages=[{"question": ..., "answer": ...}, ...])``."""

    messages: list[dict[str, Any]] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not isinstance(self.messages, (list, tuple)) or not all(isinstance(m, Mapping) for m in self.messages):
            raise TypeError("History(messages=...) takes a list of dicts, e.g. [{'question': ..., 'answer': ...}]")
        object.__setattr__(self, "messages", [dict(m) for m in self.messages])

    def add(self, turn: Mapping[str, Any] | None = None, **fields: Any) -> History:
        """A new History with one more turn (this one is unchanged)."""
        return History(messages=[*self.messages, {**dict(turn or {}), **fields}])

    def __len__(self) -> int:
        return len(self.messages)


_cache: dict[tuple[Any, ...], Any] = {}


def _cached(key: tuple[Any, ...], make: Callable[[], Any]) -> Any:
    try:
        return _cache[key]
    except KeyError:
        if len(_cache) > 4096:
            _cache.clear()
        value = _cache[key] = make()
        return value


def history_field(signature: type[Signature]) -> str | None:
    """The name of the signature's History input field, or None."""

    def find() -> str | None:
        return next((n for n, f in signature.input_fields.items() if f.annotation is History), None)

    return _cached(("field", signature, signature.instructions), find)  # type: ignore[no-any-return]


def _restricted(signature: type[Signature], inputs: frozenset[str], outputs: frozenset[str]) -> type[Signature]:
    """The signature with only the given fields (order kept); a placeholder output keeps it valid."""
    from .signature import Field, _build

    def make() -> type[Signature]:
        fields = [f for f in signature.fields.values() if f.name in (inputs if f.is_input else outputs)]
        if not any(not f.is_input for f in fields):
            fields.append(Field(name="unused_output", kind="output"))
        return _build(signature.__name__, fields, signature.instructions)

    return _cached(("restricted", signature, inputs, outputs), make)  # type: ignore[no-any-return]


def _without(signature: type[Signature], name: str) -> type[Signature]:
    return _cached(("without", signature, name), lambda: signature.delete(name))  # type: ignore[no-any-return]


def _as_history(value: Any, name: str) -> History:
    if value is None:
        return History()
    if isinstance(value, History):
        return value
    if isinstance(value, Sequence) and not isinstance(value, (str, bytes)):
        return History(messages=[dict(m) for m in value])
    if isinstance(value, Mapping) and "messages" in value:
        return History(messages=[dict(m) for m in value["messages"]])
    raise ConfigurationError(f"input {name!r} must be a pl.History (or a list of dicts), got {type(value).__name__}")


def split_history(
    adapter: Any, signature: type[Signature], inputs: Mapping[str, Any]
) -> tuple[type[Signature], Mapping[str, Any], list[Message]]:
    """For an adapter's ``format``: the signature and inputs without the History field, and the turns it holds.

    With no History field, returns ``(signature, inputs, [])`` unchanged.
    """
    name = history_field(signature)
    if name is None:
        return signature, inputs, []
    history = _as_history(inputs.get(name), name)
    rest = _without(signature, name)
    turns: list[Message] = []
    for m in history.messages:
        if set(m) == {"role", "content"}:
            turns.append(Message(str(m["role"]), str(m["content"])))
            continue
        ins = frozenset(n for n in rest.input_fields if n in m)
        outs = frozenset(n for n in rest.output_fields if n in m)
        if ins:
            turns.append(Message("user", adapter.format_inputs(_restricted(rest, ins, outs), m)))
        if outs:
            turns.append(Message("assistant", adapter.format_outputs(_restricted(rest, ins, outs), m)))
    return rest, {k: v for k, v in inputs.items() if k != name}, turns


__all__ = ["History", "history_field", "split_history"]
