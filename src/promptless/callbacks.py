"""Callbacks: your code, called when a module, an LM, an adapter, a tool or an evaluation starts and ends.

    class Printer(pl.utils.callback.BaseCallback):
        def on_lm_start(self, call_id, instance, inputs):
            print("asking", instance.model)

        def on_lm_end(self, call_id, outputs, exception):
            print("got", outputs)

    pl.configure(callbacks=[Printer()])          # for every call in the process
    pl.Predict("q -> a", callbacks=[Printer()])  # or for one module (an LM takes callbacks= too)

The handler names and arguments are DSPy's (``BaseCallback`` below). ``call_id`` ties an end to its start;
``ACTIVE_CALL_ID`` holds the id of the call in progress (so a start handler can find its parent through the
value it had when the call began). A handler that raises is logged and skipped: a broken callback never
breaks the program. The global callbacks run first, then the instance's own.

``with_callbacks(kind)`` wraps a method so that it reports to the callbacks; the modules, LMs, adapters,
tools and ``Evaluate`` use it. A call on an instance already reporting a call of the same kind (``acall``
running ``__call__``, an LM's ``__call__`` running ``request``) is not reported twice. With no callbacks in
effect a call costs one look at the settings and nothing else; with some, the calls in progress are kept
(``active_calls()``: streaming reads it to tell which predictor an LM reply belongs to).
"""

from __future__ import annotations

import functools
import inspect
import itertools
import logging
import os
from collections.abc import Callable
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, TypeVar

from . import settings

logger = logging.getLogger("promptless.callbacks")

F = TypeVar("F", bound=Callable[..., Any])

#: The kinds of call reported, each with an ``on_<kind>_start`` and an ``on_<kind>_end`` handler.
KINDS = ("module", "lm", "adapter_format", "adapter_parse", "tool", "evaluate")


class BaseCallback:
    """Subclass it and define the handlers you need; the others do nothing.

    Every ``on_*_start(call_id, instance, inputs)`` gets the object called and its arguments as a dict;
    every ``on_*_end(call_id, outputs, exception)`` gets what the call returned (None when it raised) and the
    exception it raised (None when it returned). Copies of a program share its callbacks."""

    def __deepcopy__(self, memo: dict[int, Any]) -> BaseCallback:
        return self

    def on_module_start(self, call_id: str, instance: Any, inputs: dict[str, Any]) -> None:
        """A module (``Predict``, ``ChainOfThought``, your own ``Module``) was called."""

    def on_module_end(self, call_id: str, outputs: Any | None, exception: BaseException | None = None) -> None:
        """A module returned (``outputs``: its ``Prediction``) or raised."""

    def on_lm_start(self, call_id: str, instance: Any, inputs: dict[str, Any]) -> None:
        """An LM was asked: ``inputs`` holds ``prompt``, ``messages`` (role/content dicts) and ``kwargs``."""

    def on_lm_end(self, call_id: str, outputs: Any | None, exception: BaseException | None = None) -> None:
        """An LM answered: ``outputs`` is the list of completion texts (with ``.usage``, ``.model`` and
        ``.cached`` attributes)."""

    def on_adapter_format_start(self, call_id: str, instance: Any, inputs: dict[str, Any]) -> None:
        """An adapter began to turn a signature, demos and inputs into messages."""

    def on_adapter_format_end(self, call_id: str, outputs: Any | None,
                              exception: BaseException | None = None) -> None:
        """An adapter made the messages (``outputs``: role/content dicts)."""

    def on_adapter_parse_start(self, call_id: str, instance: Any, inputs: dict[str, Any]) -> None:
        """An adapter began to read a completion (``inputs``: ``signature`` and ``completion``)."""

    def on_adapter_parse_end(self, call_id: str, outputs: Any | None,
                             exception: BaseException | None = None) -> None:
        """An adapter read a completion into field values (``outputs``), or failed to."""

    def on_tool_start(self, call_id: str, instance: Any, inputs: dict[str, Any]) -> None:
        """A tool was called (``inputs``: ``{"kwargs": {...}}``)."""

    def on_tool_end(self, call_id: str, outputs: Any | None, exception: BaseException | None = None) -> None:
        """A tool returned or raised."""

    def on_evaluate_start(self, call_id: str, instance: Any, inputs: dict[str, Any]) -> None:
        """An ``Evaluate`` run began."""

    def on_evaluate_end(self, call_id: str, outputs: Any | None, exception: BaseException | None = None) -> None:
        """An ``Evaluate`` run ended (``outputs``: the ``EvaluationResult``)."""


@dataclass(frozen=True)
class ActiveCall:
    """A call in progress: its id, its kind (one of ``KINDS``) and the object called."""

    call_id: str
    kind: str
    instance: Any


#: The id of the call in progress here (None outside any), as DSPy's ``ACTIVE_CALL_ID``.
ACTIVE_CALL_ID: ContextVar[str | None] = ContextVar("promptless_active_call_id", default=None)
_STACK: ContextVar[tuple[ActiveCall, ...]] = ContextVar("promptless_active_calls", default=())


def active_calls() -> tuple[ActiveCall, ...]:
    """The calls in progress in this thread or task, outermost first."""
    return _STACK.get()


def callbacks_for(instance: Any) -> list[Any]:
    """The callbacks a call on ``instance`` reports to: the configured ones, then the instance's own."""
    configured = settings.get("callbacks") or ()
    own = getattr(instance, "callbacks", None) or ()
    if not configured and not own:
        return []
    return [*configured, *own]


_PREFIX = os.urandom(8).hex()
_COUNTER = itertools.count(1)


def new_call_id() -> str:
    """A call id unique in this process and unlikely to repeat across processes (32 hex digits)."""
    return f"{_PREFIX}{next(_COUNTER):016x}"


def fire_start(kind: str, callbacks: list[Any], call_id: str, instance: Any, inputs: dict[str, Any]) -> None:
    for cb in callbacks:
        handler = getattr(cb, f"on_{kind}_start", None)
        if handler is None:
            continue
        try:
            handler(call_id=call_id, instance=instance, inputs=inputs)
        except Exception as exc:  # a broken callback never breaks the program
            logger.warning("callback %r raised in on_%s_start (ignored): %s: %s", cb, kind, type(exc).__name__, exc)


def fire_end(kind: str, callbacks: list[Any], call_id: str, outputs: Any, exception: BaseException | None) -> None:
    for cb in callbacks:
        handler = getattr(cb, f"on_{kind}_end", None)
        if handler is None:
            continue
        try:
            handler(call_id=call_id, outputs=outputs, exception=exception)
        except Exception as exc:
            logger.warning("callback %r raised in on_%s_end (ignored): %s: %s", cb, kind, type(exc).__name__, exc)


def _default_inputs(fn: Callable[..., Any]) -> Callable[..., dict[str, Any]]:
    def inputs(instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> dict[str, Any]:
        try:
            bound = inspect.getcallargs(fn, instance, *args, **kwargs)
        except TypeError:  # the call itself is wrong; the function will say so
            return {"args": args, "kwargs": kwargs}
        bound.pop("self", None)
        return bound

    return inputs


class _Call:
    """One reported call: pushes itself as the active call, fires the handlers, pops itself."""

    __slots__ = ("call_id", "callbacks", "kind", "tokens")

    def __init__(self, kind: str, instance: Any, callbacks: list[Any], inputs: Callable[[], dict[str, Any]]) -> None:
        self.kind = kind
        self.callbacks = callbacks
        self.call_id = new_call_id()
        fire_start(kind, callbacks, self.call_id, instance, inputs())
        self.tokens = (_STACK.set((*_STACK.get(), ActiveCall(self.call_id, kind, instance))),
                       ACTIVE_CALL_ID.set(self.call_id))

    def close(self, outputs: Any, exception: BaseException | None) -> None:
        _STACK.reset(self.tokens[0])
        ACTIVE_CALL_ID.reset(self.tokens[1])
        fire_end(self.kind, self.callbacks, self.call_id, outputs, exception)


def _reentered(kind: str, instance: Any) -> bool:
    stack = _STACK.get()
    return bool(stack) and stack[-1].instance is instance and stack[-1].kind == kind


def with_callbacks(kind: str, *, inputs: Callable[..., dict[str, Any]] | None = None,
                   outputs: Callable[[Any], Any] | None = None) -> Callable[[F], F]:
    """Wrap a method so that its calls report to the callbacks as ``kind`` (one of ``KINDS``).

    ``inputs(instance, args, kwargs)`` makes the start handlers' ``inputs`` (default: the arguments by name);
    ``outputs(result)`` what the end handlers get (default: the result)."""
    if kind not in KINDS:
        raise ValueError(f"unknown callback kind {kind!r}; the kinds are {', '.join(KINDS)}")

    def wrap(fn: F) -> F:
        if getattr(fn, "__promptless_callbacks__", None) == kind:
            return fn
        make_inputs = inputs or _default_inputs(fn)
        shown = outputs or (lambda result: result)

        if inspect.iscoroutinefunction(fn):
            @functools.wraps(fn)
            async def async_wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
                callbacks = callbacks_for(self)
                if not callbacks or _reentered(kind, self):
                    return await fn(self, *args, **kwargs)
                call = _Call(kind, self, callbacks, lambda: make_inputs(self, args, kwargs))
                try:
                    result = await fn(self, *args, **kwargs)
                except BaseException as exc:
                    call.close(None, exc)
                    raise
                call.close(shown(result), None)
                return result

            async_wrapper.__promptless_callbacks__ = kind  # type: ignore[attr-defined]
            return async_wrapper  # type: ignore[return-value]

        @functools.wraps(fn)
        def wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
            callbacks = callbacks_for(self)
            if not callbacks or _reentered(kind, self):
                return fn(self, *args, **kwargs)
            call = _Call(kind, self, callbacks, lambda: make_inputs(self, args, kwargs))
            try:
                result = fn(self, *args, **kwargs)
            except BaseException as exc:
                call.close(None, exc)
                raise
            call.close(shown(result), None)
            return result

        wrapper.__promptless_callbacks__ = kind  # type: ignore[attr-defined]
        return wrapper  # type: ignore[return-value]

    return wrap


__all__ = ["ACTIVE_CALL_ID", "KINDS", "ActiveCall", "BaseCallback", "active_calls", "callbacks_for",
           "fire_end", "fire_start", "new_call_id", "with_callbacks"]
