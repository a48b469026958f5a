"""Streaming: a program's output fields as the LM writes them, with status messages on the way.

    stream = pl.streamify(program, stream_listeners=[pl.streaming.StreamListener(signature_field_name="answer")])
    for item in stream(question="Why is the sky blue?"):
        if isinstance(item, pl.streaming.StreamResponse):
            print(item.chunk, end="")             # a piece of the answer field's text
        elif isinstance(item, pl.streaming.StatusMessage):
            print(item.message)                   # "Calling tool search...", your own provider's messages
        elif isinstance(item, pl.Prediction):
            final = item                          # last: the program's return value

What ``stream(...)`` returns can be read with ``for`` or, in async code, ``async for`` (``async_streaming=False``
gives a plain generator). The program runs in a worker thread while the caller reads; an exception it raises
comes out of the iteration. Each LM call the program makes inside it hands its reply to the stream as it is
generated (the OpenAI-compatible client over server-sent events, the embedded llama.cpp model token by token;
other LMs and cached replies in one piece), and each listener cuts its field's text out of the replies of its
predictor: what follows ``[[ ## field ## ]]`` up to the next marker header, with the whitespace around it
trimmed, in chunks; the last chunk of a field has ``is_last_chunk=True``. A reply not in the marker format (the
JSON adapter) gives no chunks; the final prediction holds the values either way.

A listener finds its predictor by the field name when the program has one predictor with that output field;
otherwise pass ``predict=`` (and ``predict_name=``). By default it streams its field once per run;
``allow_reuse=True`` streams it from every call of the predictor (a ReAct loop, a retry).
"""

from __future__ import annotations

import asyncio
import contextvars
import queue
import re
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from typing import Any

from . import settings
from .adapters.protocol import HEADER, label_key
from .callbacks import BaseCallback, active_calls
from .errors import ConfigurationError
from .lm.base import STREAM_SINK
from .modules.module import Predictor


@dataclass
class StreamResponse:
    """A piece of one output field's text: which predictor and field, the text, and whether it is the last."""

    predict_name: str
    signature_field_name: str
    chunk: str
    is_last_chunk: bool = False


@dataclass
class StatusMessage:
    """A status message from the program (what ``StatusMessageProvider`` said about a call)."""

    message: str


class StatusMessageProvider:
    """The status messages a stream shows: override the methods for the calls you want reported (each
    returns a string, or None for no message). By default only tool calls are reported."""

    def tool_start_status_message(self, instance: Any, inputs: dict[str, Any]) -> str | None:
        return f"Calling tool {getattr(instance, 'name', instance)}..."

    def tool_end_status_message(self, outputs: Any) -> str | None:
        return "Tool call finished; the LM reads its result next."

    def module_start_status_message(self, instance: Any, inputs: dict[str, Any]) -> str | None:
        return None

    def module_end_status_message(self, outputs: Any) -> str | None:
        return None

    def lm_start_status_message(self, instance: Any, inputs: dict[str, Any]) -> str | None:
        return None

    def lm_end_status_message(self, outputs: Any) -> str | None:
        return None


# The queue of the stream being fed here (set in the program's thread).
_QUEUE: contextvars.ContextVar[queue.Queue[Any] | None] = contextvars.ContextVar("promptless_stream_queue",
                                                                                 default=None)


class StatusStreamingCallback(BaseCallback):
    """Puts the provider's status messages on the stream in progress (does nothing outside one)."""

    def __init__(self, status_message_provider: StatusMessageProvider | None = None) -> None:
        self.status_message_provider = status_message_provider or StatusMessageProvider()

    def _send(self, message: str | None) -> None:
        q = _QUEUE.get()
        if q is not None and message:
            q.put(("status", StatusMessage(message)))

    def on_tool_start(self, call_id: str, instance: Any, inputs: dict[str, Any]) -> None:
        if getattr(instance, "name", None) != "finish":
            self._send(self.status_message_provider.tool_start_status_message(instance, inputs))

    def on_tool_end(self, call_id: str, outputs: Any, exception: BaseException | None = None) -> None:
        self._send(self.status_message_provider.tool_end_status_message(outputs))

    def on_module_start(self, call_id: str, instance: Any, inputs: dict[str, Any]) -> None:
        self._send(self.status_message_provider.module_start_status_message(instance, inputs))

    def on_module_end(self, call_id: str, outputs: Any, exception: BaseException | None = None) -> None:
        self._send(self.status_message_provider.module_end_status_message(outputs))

    def on_lm_start(self, call_id: str, instance: Any, inputs: dict[str, Any]) -> None:
        self._send(self.status_message_provider.lm_start_status_message(instance, inputs))

    def on_lm_end(self, call_id: str, outputs: Any, exception: BaseException | None = None) -> None:
        self._send(self.status_message_provider.lm_end_status_message(outputs))


# The unfinished start of a marker header at the end of a text: "[", "[[ #", "[[ ## answ", "[[ ## answer ## ]".
_PARTIAL_HEADER = re.compile(r"\[(?:\[\s*(?:#{1,3}\s*(?:[^\W\d][\w \-]*?\s*(?:#{1,3}\s*\]?)?)?)?)?\Z")


def _hold_from(text: str, start: int) -> int:
    """Where the part of ``text[start:]`` that may be an unfinished header begins (``len(text)``: none)."""
    lo = max(start, len(text) - 80)
    for i in range(lo, len(text)):
        if text[i] == "[" and _PARTIAL_HEADER.match(text, i):
            return i
    return len(text)


@dataclass
class _Cut:
    """One listener's reading of one LM reply."""

    text: str = ""
    pos: int | None = None  # where the next chunk starts; None until the field's header is seen
    begun: bool = False
    done: bool = False


class StreamListener:
    """Streams the text of one output field (``signature_field_name``) of one predictor."""

    def __init__(self, signature_field_name: str, predict: Any = None, predict_name: str | None = None,
                 allow_reuse: bool = False) -> None:
        if not isinstance(signature_field_name, str) or not signature_field_name:
            raise ConfigurationError("StreamListener needs signature_field_name='<an output field>'")
        self.signature_field_name = signature_field_name
        self.predict = predict
        self.predict_name = predict_name
        self.allow_reuse = allow_reuse
        self.stream_start = False
        self.stream_end = False
        self._key = label_key(signature_field_name)
        self._cuts: dict[int, _Cut] = {}

    def _reset(self) -> None:
        self.stream_start = self.stream_end = False
        self._cuts = {}

    def _chunk(self, text: str, last: bool) -> StreamResponse:
        self.stream_start = True
        return StreamResponse(self.predict_name or "", self.signature_field_name, text, last)

    def _receive(self, reply: int, text: str) -> list[StreamResponse]:
        if self.stream_end and not self.allow_reuse:
            return []
        cut = self._cuts.setdefault(reply, _Cut())
        if cut.done:
            return []
        cut.text += text
        buf = cut.text
        if cut.pos is None:
            for m in HEADER.finditer(buf):
                if label_key(m.group(1)) == self._key:
                    cut.pos = m.end()
                    break
            if cut.pos is None:
                return []
        if not cut.begun:
            while cut.pos < len(buf) and buf[cut.pos].isspace():
                cut.pos += 1
        following = HEADER.search(buf, cut.pos)
        if following is not None:
            cut.done = True
            self.stream_end = True
            return [self._chunk(buf[cut.pos:following.start()].rstrip(), True)]
        safe = _hold_from(buf, cut.pos)
        while safe > cut.pos and buf[safe - 1].isspace():
            safe -= 1
        if safe <= cut.pos:
            return []
        piece, cut.pos, cut.begun = buf[cut.pos:safe], safe, True
        return [self._chunk(piece, False)]

    def _end(self, reply: int) -> list[StreamResponse]:
        cut = self._cuts.pop(reply, None)
        if cut is None or cut.done or cut.pos is None or (self.stream_end and not self.allow_reuse):
            return []
        rest = cut.text[cut.pos:]
        hold = _hold_from(rest, 0)
        self.stream_end = True
        return [self._chunk(rest[:hold].rstrip(), True)]


def find_predictors(program: Any, listeners: list[StreamListener]) -> dict[int, list[StreamListener]]:
    """Each listener's predictor (by ``id``), found by field name when the listener names none."""
    named = list(program.named_predictors()) if hasattr(program, "named_predictors") else []
    out: dict[int, list[StreamListener]] = {}
    for listener in listeners:
        if not isinstance(listener, StreamListener):
            raise ConfigurationError(
                f"stream_listeners takes pl.streaming.StreamListener objects, got {type(listener).__name__}"
            )
        name = listener.signature_field_name
        if listener.predict is None:
            found = [(n, p) for n, p in named if name in p.signature.output_fields]
            if not found:
                fields = sorted({f for _, p in named for f in p.signature.output_fields})
                raise ConfigurationError(
                    f"no predictor of the program has an output field {name!r} to stream; its output fields are: "
                    f"{', '.join(fields) or '(none)'}"
                )
            if len(found) > 1:
                raise ConfigurationError(
                    f"several predictors have an output field {name!r} ({', '.join(n for n, _ in found)}): say which "
                    "one with StreamListener(..., predict=program.<name>, predict_name='<name>')"
                )
            listener.predict_name, listener.predict = found[0]
        else:
            if name not in listener.predict.signature.output_fields:
                raise ConfigurationError(
                    f"the predictor given to StreamListener has no output field {name!r}; it has "
                    f"{', '.join(listener.predict.signature.output_fields)}"
                )
            if listener.predict_name is None:
                listener.predict_name = next((n for n, p in named if p is listener.predict), "")
        out.setdefault(id(listener.predict), []).append(listener)
    return out


class _Writer:
    """Where one LM reply's text goes while it is generated."""

    def __init__(self, q: queue.Queue[Any], predictor: Any) -> None:
        self._q = q
        self._predictor = predictor

    def write(self, text: str) -> None:
        if text:
            self._q.put(("chunk", id(self), self._predictor, text))

    def close(self) -> None:
        self._q.put(("end", id(self), self._predictor, ""))


class _Sink:
    """What LMs see in ``STREAM_SINK`` during a stream: ``open(lm)`` gives a writer for one reply."""

    def __init__(self, q: queue.Queue[Any]) -> None:
        self._q = q

    def open(self, lm: Any) -> _Writer:
        predictor = next((c.instance for c in reversed(active_calls())
                          if c.kind == "module" and isinstance(c.instance, Predictor)), None)
        return _Writer(self._q, predictor)


_DONE = object()


def _run(program: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any],
         listeners: list[StreamListener], by_predictor: dict[int, list[StreamListener]],
         status: StatusStreamingCallback, include_final: bool, is_async: bool) -> Iterator[Any]:
    q: queue.Queue[Any] = queue.Queue()
    callbacks = [c for c in (settings.get("callbacks") or []) if not isinstance(c, StatusStreamingCallback)]

    def target() -> None:
        _QUEUE.set(q)
        STREAM_SINK.set(_Sink(q))
        try:
            with settings.context(callbacks=[*callbacks, status]):
                acall = getattr(program, "acall", None)
                out = asyncio.run(acall(*args, **kwargs)) if is_async and acall else program(*args, **kwargs)
        except BaseException as exc:
            q.put(("error", exc))
        else:
            q.put(("done", out))

    for listener in listeners:
        listener._reset()
    ctx = contextvars.copy_context()
    threading.Thread(target=ctx.run, args=(target,), name="promptless-stream", daemon=True).start()
    while True:
        item = q.get()
        kind = item[0]
        if kind == "chunk" or kind == "end":
            _, reply, predictor, text = item
            for listener in by_predictor.get(id(predictor), ()) if predictor is not None else ():
                yield from (listener._receive(reply, text) if kind == "chunk" else listener._end(reply))
        elif kind == "status":
            yield item[1]
        elif kind == "error":
            raise item[1]
        else:
            out = item[1]
            if include_final or not listeners or not any(listener.stream_start for listener in listeners):
                yield out
            return


class _Stream:
    """One streamed run: iterate it with ``for`` or ``async for``."""

    def __init__(self, items: Iterator[Any]) -> None:
        self._items = items

    def __iter__(self) -> Iterator[Any]:
        return self._items

    def __next__(self) -> Any:
        return next(self._items)

    def __aiter__(self) -> AsyncIterator[Any]:
        return self._async()

    async def _async(self) -> AsyncIterator[Any]:
        while True:
            item = await asyncio.to_thread(next, self._items, _DONE)
            if item is _DONE:
                return
            yield item


def streamify(program: Any, status_message_provider: StatusMessageProvider | None = None,
              stream_listeners: list[StreamListener] | None = None,
              include_final_prediction_in_output_stream: bool = True, is_async_program: bool = False,
              async_streaming: bool = True) -> Callable[..., Any]:
    """``program`` as a function whose call streams: status messages, ``StreamResponse`` chunks of the fields
    the listeners name, and last the program's return value (left out with
    ``include_final_prediction_in_output_stream=False`` when a listener streamed something). See the module
    docstring. ``is_async_program=True`` runs ``program.acall``."""
    listeners = list(stream_listeners or [])
    by_predictor = find_predictors(program, listeners) if listeners else {}
    status = StatusStreamingCallback(status_message_provider)

    def streamed(*args: Any, **kwargs: Any) -> Any:
        items = _run(program, args, kwargs, listeners, by_predictor, status,
                     include_final_prediction_in_output_stream, is_async_program)
        return _Stream(items) if async_streaming else items

    return streamed


def apply_sync_streaming(stream: Any) -> Iterator[Any]:
    """The items of a stream (one ``streamify`` returned, or any async iterator) as a plain generator."""
    if isinstance(stream, _Stream):
        yield from stream
        return
    loop = asyncio.new_event_loop()
    try:
        iterator = stream.__aiter__()
        while True:
            try:
                yield loop.run_until_complete(iterator.__anext__())
            except StopAsyncIteration:
                return
    finally:
        loop.close()


__all__ = ["StatusMessage", "StatusMessageProvider", "StatusStreamingCallback", "StreamListener", "StreamResponse",
           "apply_sync_streaming", "find_predictors", "streamify"]
