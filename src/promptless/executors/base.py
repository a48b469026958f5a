"""The executor interface and the in-process executors (threads, asyncio); see the package docstring."""


from __future__ import annotations

import asyncio
import contextvars
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

from ..errors import ConfigurationError
from .runner import HaltFn, ParallelRunner, ProgressFn, RunReport

T = TypeVar("T")
R = TypeVar("R")


class Executor:
    """The interface: ``map`` / ``amap`` over items, ``bind`` for the program the items run through."""

    #: how many items it works on at once
    concurrency: int = 1

    def bind(self, program: Any) -> Any:
        """What to call in place of ``program`` inside ``fn`` (the program itself for in-process executors)."""
        return program

    def map(self, fn: Callable[[T], R], items: Sequence[T], *, afn: Callable[[T], Awaitable[R]] | None = None,
            max_errors: int | None = None, progress: ProgressFn | None = None, halt: HaltFn | None = None,
            keep_traceback: bool = True) -> RunReport[R]:
        raise NotImplementedError

    async def amap(self, afn: Callable[[T], Awaitable[R]], items: Sequence[T], *, fn: Callable[[T], R] | None = None,
                   max_errors: int | None = None, progress: ProgressFn | None = None, halt: HaltFn | None = None,
                   keep_traceback: bool = True) -> RunReport[R]:
        runner = ParallelRunner(self.concurrency, max_errors=max_errors, progress=progress,
                                keep_traceback=keep_traceback, halt=halt)
        return await runner.arun(afn, items)

    def close(self) -> None:
        """Free what the executor holds (a Ray executor's workers); in-process executors hold nothing."""

    def __enter__(self) -> Executor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _check_count(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigurationError(f"{name} must be a whole number >= 1, got {value!r}")
    return value


class ThreadExecutor(Executor):
    """Items in a pool of ``num_threads`` threads of this process (the default; ``num_threads=1`` runs them in
    the calling thread, one after another)."""

    def __init__(self, num_threads: int = 1) -> None:
        self.concurrency = self.num_threads = _check_count("num_threads", num_threads)

    def map(self, fn: Callable[[T], R], items: Sequence[T], *, afn: Callable[[T], Awaitable[R]] | None = None,
            max_errors: int | None = None, progress: ProgressFn | None = None, halt: HaltFn | None = None,
            keep_traceback: bool = True) -> RunReport[R]:
        runner = ParallelRunner(self.num_threads, max_errors=max_errors, progress=progress,
                                keep_traceback=keep_traceback, halt=halt)
        return runner.run(fn, items)

    def __repr__(self) -> str:
        return f"ThreadExecutor(num_threads={self.num_threads})"


class AsyncExecutor(Executor):
    """Items as asyncio tasks, at most ``concurrency`` at a time; programs run through ``acall`` (native async
    LM clients, no thread per call). Called from synchronous code, ``map`` runs its own event loop (in a helper
    thread when the caller already has one running)."""

    def __init__(self, concurrency: int = 8) -> None:
        self.concurrency = _check_count("concurrency", concurrency)

    def map(self, fn: Callable[[T], R], items: Sequence[T], *, afn: Callable[[T], Awaitable[R]] | None = None,
            max_errors: int | None = None, progress: ProgressFn | None = None, halt: HaltFn | None = None,
            keep_traceback: bool = True) -> RunReport[R]:
        if afn is None:
            def afn(item: T) -> Awaitable[R]:
                return asyncio.to_thread(contextvars.copy_context().run, fn, item)
        coro_fn = afn

        def go() -> RunReport[R]:
            return asyncio.run(self.amap(coro_fn, items, max_errors=max_errors, progress=progress, halt=halt,
                                         keep_traceback=keep_traceback))

        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return go()
        from concurrent.futures import ThreadPoolExecutor

        ctx = contextvars.copy_context()
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="promptless-async") as pool:
            return pool.submit(ctx.run, go).result()

    def __repr__(self) -> str:
        return f"AsyncExecutor(concurrency={self.concurrency})"


def resolve(executor: Any = None, num_threads: int | None = None) -> Executor:
    """The executor to use: ``executor`` if given, else the ``pl.context(executor=...)`` / ``pl.configure``
    setting, else threads (``num_threads``, default 1)."""
    if executor is None:
        from .. import settings

        executor = settings.get("executor")
    if executor is None:
        return ThreadExecutor(num_threads or 1)
    if not isinstance(executor, Executor):
        raise ConfigurationError(
            f"executor must be a pl.ThreadExecutor, pl.AsyncExecutor or pl.RayExecutor, got {type(executor).__name__}"
        )
    return executor


async def call_async(program: Any, *args: Any, **kwargs: Any) -> Any:
    """``await program.acall(...)`` when the program has one, else the call in a thread (with this context)."""
    acall = getattr(program, "acall", None)
    if acall is not None:
        return await acall(*args, **kwargs)
    ctx = contextvars.copy_context()
    return await asyncio.to_thread(ctx.run, lambda: program(*args, **kwargs))


