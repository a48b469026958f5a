"""``asyncify`` and ``syncify``: a program written one way, called the other way.

    ask = pl.asyncify(program)          # await ask(question="...")
    program = pl.syncify(async_program) # async_program(question="...") without an event loop
"""

from __future__ import annotations

import asyncio
import contextvars
import threading
from collections.abc import Awaitable, Callable, Coroutine
from types import MethodType
from typing import Any

from ..errors import ConfigurationError
from .module import Module


def asyncify(program: Callable[..., Any]) -> Callable[..., Awaitable[Any]]:
    """An async function that runs ``program``: through its ``acall`` when it is a module (its ``aforward``
    when it has one, else ``forward`` in a worker thread), else the callable in a worker thread. Settings
    made with ``pl.context`` around the await apply inside."""
    if not callable(program):
        raise ConfigurationError(f"asyncify takes a program (a pl.Module or a function), got {type(program).__name__}")

    async def run(*args: Any, **kwargs: Any) -> Any:
        if isinstance(program, Module):
            return await program.acall(*args, **kwargs)
        ctx = contextvars.copy_context()
        return await asyncio.to_thread(ctx.run, program, *args, **kwargs)

    return run


def run_async(coro: Coroutine[Any, Any, Any]) -> Any:
    """Run a coroutine to its end from synchronous code: on a new event loop, or, when this thread already
    runs one, on a new loop in another thread (the caller waits)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    box: dict[str, Any] = {}
    ctx = contextvars.copy_context()

    def worker() -> None:
        try:
            box["value"] = ctx.run(asyncio.run, coro)
        except BaseException as exc:
            box["error"] = exc

    thread = threading.Thread(target=worker, name="promptless-syncify")
    thread.start()
    thread.join()
    if "error" in box:
        raise box["error"]
    return box.get("value")


class _SyncWrapper(Module):
    """A sync module around an async one (``syncify(program, in_place=False)``)."""

    def __init__(self, program: Module) -> None:
        self.program = program

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        return run_async(self.program.aforward(*args, **kwargs))  # type: ignore[attr-defined]

    async def aforward(self, *args: Any, **kwargs: Any) -> Any:
        return await self.program.aforward(*args, **kwargs)  # type: ignore[attr-defined]


def syncify(program: Module, in_place: bool = True) -> Module:
    """A module whose ``forward`` runs its ``aforward`` to the end, so it is called like any other.
    ``in_place=True`` sets ``forward`` on ``program`` itself and returns it; ``in_place=False`` returns a new
    module holding it (``wrapper.program``), for a program whose own ``forward`` does something else."""
    if not callable(getattr(program, "aforward", None)):
        raise ConfigurationError(
            f"syncify takes a module with an async aforward(...); {type(program).__name__} has none"
        )
    if not in_place:
        return _SyncWrapper(program)

    def forward(self: Module, *args: Any, **kwargs: Any) -> Any:
        return run_async(self.aforward(*args, **kwargs))  # type: ignore[attr-defined]

    program.forward = MethodType(forward, program)  # type: ignore[method-assign]
    return program


__all__ = ["asyncify", "run_async", "syncify"]
