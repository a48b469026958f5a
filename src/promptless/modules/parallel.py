"""Parallel: run modules over many inputs at once, results in input order, errors collected.

    parallel = pl.Parallel(num_threads=4, max_errors=3)
    results = parallel([(qa, {"question": q}) for q in questions])

Each pair is ``(module, inputs)``; inputs are an ``Example`` (its marked inputs,
or all its fields), a dict of keyword arguments, or a tuple of positional
arguments. ``parallel(pairs)`` uses a thread pool; ``await parallel.acall(pairs)``
uses asyncio tasks (``module.acall``). Each item runs in a copy of the caller's
``contextvars`` context, so ``pl.context(lm=...)`` and ``pl.track_usage()``
around the call apply inside the workers.

A failed item's result is ``None`` and its exception is kept. Once more than
``max_errors`` items have failed (``None``: never stop) no new item starts
and ``PromptlessError`` is raised, chained to the first error. With
``return_failed_examples=True`` the call returns ``(results, failed_inputs,
exceptions)`` instead of raising for the failed items.

``executor=`` runs the items elsewhere: ``pl.ThreadExecutor``, ``pl.AsyncExecutor``, or ``pl.RayExecutor`` for
modules that are programs (a plain function still runs here); without one, the ``pl.context(executor=...)``
setting, else Parallel's own threads (``num_threads``, with the straggler restart below). Results are in input
order whatever runs them.
"""

from __future__ import annotations

import contextvars
import threading
from collections.abc import Mapping, Sequence
from typing import Any

from ..data import Example
from ..errors import ConfigurationError, PromptlessError

Pair = tuple[Any, Any]
_SKIPPED = object()  # an item not started because the run had stopped


def _call_args(module: Any, inputs: Any, access_examples: bool = True) -> tuple[tuple[Any, ...], dict[str, Any]]:
    if isinstance(inputs, Example):
        if not access_examples:
            return (inputs,), {}
        data = inputs.inputs() if inputs.input_keys is not None else inputs
        return (), dict(data.items())
    if isinstance(inputs, list) and isinstance(module, Parallel):
        return (inputs,), {}  # a nested Parallel takes its own list of pairs
    if isinstance(inputs, Mapping):
        return (), dict(inputs)
    if isinstance(inputs, (tuple, list)):
        return tuple(inputs), {}
    raise ConfigurationError(
        f"Parallel: the inputs of a pair must be an Example, a dict or a tuple, got {type(inputs).__name__}"
    )


class Parallel:
    """See the module docstring. ``timeout`` and ``straggler_limit``: once at most ``straggler_limit`` items are
    left and one of them has run ``timeout`` seconds, it is started once more and the first of the two to finish
    is kept (a stuck request is common near the end of a run). ``timeout=None`` (the default) never starts an
    item twice, since the second start is a second LM call; DSPy's default is 120 seconds.
    ``access_examples=False`` passes an ``Example`` whole, as one argument."""

    def __init__(
        self,
        num_threads: int | None = None,
        max_errors: int | None = None,
        access_examples: bool = True,
        return_failed_examples: bool = False,
        provide_traceback: bool = False,
        disable_progress_bar: bool = True,
        timeout: float | None = None,
        straggler_limit: int = 3,
        executor: Any = None,
    ) -> None:
        if num_threads is not None and (not isinstance(num_threads, int) or num_threads < 1):
            raise ConfigurationError(f"Parallel: num_threads must be a whole number >= 1, got {num_threads!r}")
        if max_errors is not None and (not isinstance(max_errors, int) or max_errors < 0):
            raise ConfigurationError(f"Parallel: max_errors must be None or a whole number >= 0, got {max_errors!r}")
        if timeout is not None and (isinstance(timeout, bool) or not isinstance(timeout, (int, float))
                                    or timeout < 0):
            raise ConfigurationError(f"Parallel: timeout must be None or a number of seconds >= 0, got {timeout!r}")
        if isinstance(straggler_limit, bool) or not isinstance(straggler_limit, int) or straggler_limit < 0:
            raise ConfigurationError(f"Parallel: straggler_limit must be a whole number >= 0, got {straggler_limit!r}")
        self.num_threads = num_threads or 8
        self.max_errors = max_errors
        self.access_examples = access_examples
        self.disable_progress_bar = disable_progress_bar
        self.timeout = timeout or None
        self.straggler_limit = straggler_limit
        self.return_failed_examples = return_failed_examples
        self.provide_traceback = provide_traceback
        self.executor = executor

    def _check_pairs(self, exec_pairs: Sequence[Pair]) -> list[Pair]:
        pairs = list(exec_pairs)
        for i, pair in enumerate(pairs):
            if not (isinstance(pair, (tuple, list)) and len(pair) == 2 and callable(pair[0])):
                raise ConfigurationError(f"Parallel: item {i} must be a (module, inputs) pair, got {pair!r}"[:300])
        return pairs

    def _finish(self, pairs: list[Pair], results: list[Any], errors: dict[int, BaseException], stopped: bool) -> Any:
        if stopped:
            first = errors[min(errors)]
            raise PromptlessError(
                f"Parallel stopped after {len(errors)} failed items (max_errors={self.max_errors}); the first, "
                f"item {min(errors)}, raised {type(first).__name__}: {first}. Raise max_errors to go on past errors."
            ) from first
        if self.return_failed_examples:
            order = sorted(errors)
            return results, [pairs[i][1] for i in order], [errors[i] for i in order]
        return results

    def _note(self, index: int, exc: BaseException) -> None:
        if self.provide_traceback:
            import traceback

            note = f"(Parallel item {index})\n" + "".join(traceback.format_tb(exc.__traceback__))
            if hasattr(exc, "add_note"):  # Python 3.11+
                exc.add_note(note)

    # -- through an executor ------------------------------------------------------------
    def _executor(self) -> Any:
        """The executor given (or set with ``pl.context(executor=...)``), or None for Parallel's own threads."""
        if self.executor is not None:
            from ..executors import resolve

            return resolve(self.executor)
        from .. import settings

        return settings.get("executor")

    def _items(self, pairs: list[Pair], executor: Any) -> tuple[Any, Any]:
        bound: dict[int, Any] = {}
        for module, _ in pairs:
            if id(module) not in bound:
                bound[id(module)] = executor.bind(module)

        def one(i: int) -> Any:
            module, inputs = pairs[i]
            args, kwargs = _call_args(module, inputs, self.access_examples)
            return bound[id(module)](*args, **kwargs)

        async def aone(i: int) -> Any:
            from ..executors import call_async

            module, inputs = pairs[i]
            args, kwargs = _call_args(module, inputs, self.access_examples)
            return await call_async(bound[id(module)], *args, **kwargs)

        return one, aone

    def _report(self, pairs: list[Pair], report: Any) -> Any:
        results: list[Any] = [None] * len(pairs)
        errors: dict[int, BaseException] = {}
        for outcome in report.outcomes:
            if outcome.ok:
                results[outcome.index] = outcome.value
            elif outcome.error is not None:
                self._note(outcome.index, outcome.error)
                errors[outcome.index] = outcome.error
        return self._finish(pairs, results, errors, report.stopped)

    # -- threads ------------------------------------------------------------------
    def forward(self, exec_pairs: Sequence[Pair], num_threads: int | None = None) -> Any:
        pairs = self._check_pairs(exec_pairs)
        executor = self._executor()
        if executor is not None:
            one, aone = self._items(pairs, executor)
            report = executor.map(one, range(len(pairs)), afn=aone, max_errors=self.max_errors, keep_traceback=False)
            return self._report(pairs, report)
        results: list[Any] = [None] * len(pairs)
        errors: dict[int, BaseException] = {}
        stop = threading.Event()
        parent = contextvars.copy_context()

        def run(i: int) -> Any:
            module, inputs = pairs[i]
            args, kwargs = _call_args(module, inputs, self.access_examples)
            return parent.copy().run(module, *args, **kwargs)

        def settle(i: int, outcome: Any, exc: BaseException | None) -> None:
            if exc is None:
                results[i] = outcome
                return
            self._note(i, exc)
            errors[i] = exc
            if self.max_errors is not None and len(errors) > self.max_errors:
                stop.set()

        workers = min(num_threads or self.num_threads, max(1, len(pairs)))
        if workers == 1:
            for i in range(len(pairs)):
                if stop.is_set():
                    break
                try:
                    settle(i, run(i), None)
                except Exception as exc:
                    settle(i, None, exc)
        else:
            self._threads(run, settle, len(pairs), workers, stop)
        return self._finish(pairs, results, errors, stop.is_set())

    def _threads(self, run: Any, settle: Any, count: int, workers: int, stop: threading.Event) -> None:
        """Run items 0..count-1 on ``workers`` threads; the first outcome of each item is settled (a straggler
        may run twice, see the class docstring)."""
        import time
        from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait

        started: dict[int, float] = {}  # submission -> when it started running
        lock = threading.Lock()

        def job(i: int, submission: int) -> Any:
            if stop.is_set():
                return _SKIPPED
            with lock:
                started[submission] = time.monotonic()
            return run(i)

        pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="promptless-parallel")
        futures: dict[Future[Any], tuple[int, int]] = {}
        try:
            for i in range(count):
                futures[pool.submit(job, i, len(futures))] = (i, len(futures))
            pending = set(futures)
            settled: set[int] = set()
            twice: set[int] = set()
            while pending:
                done, pending = wait(pending, timeout=None if self.timeout is None else min(1.0, self.timeout),
                                     return_when=FIRST_COMPLETED)
                for f in done:
                    i = futures[f][0]
                    if i in settled:
                        continue
                    exc = f.exception()
                    if exc is None and f.result() is _SKIPPED:
                        continue
                    settled.add(i)
                    settle(i, None if exc is not None else f.result(), exc)
                pending = {f for f in pending if futures[f][0] not in settled}
                if self.timeout is None or stop.is_set():
                    continue
                left = {futures[f][0] for f in pending}
                if len(left) <= self.straggler_limit:
                    now = time.monotonic()
                    for f in list(pending):
                        i, submission = futures[f]
                        with lock:
                            began = started.get(submission)
                        if i not in twice and began is not None and now - began >= self.timeout:
                            twice.add(i)
                            again = pool.submit(job, i, len(futures))
                            futures[again] = (i, len(futures))
                            pending.add(again)
        finally:
            pool.shutdown(wait=False, cancel_futures=True)  # a straggler's slower twin is not waited for

    __call__ = forward

    # -- asyncio ---------------------------------------------------------------------
    async def acall(self, exec_pairs: Sequence[Pair], num_threads: int | None = None) -> Any:
        """The same with asyncio tasks, at most ``num_threads`` at a time; modules run through ``acall``."""
        import asyncio

        pairs = self._check_pairs(exec_pairs)
        executor = self._executor()
        if executor is not None:
            one_item, aone = self._items(pairs, executor)
            report = await executor.amap(aone, range(len(pairs)), fn=one_item, max_errors=self.max_errors,
                                         keep_traceback=False)
            return self._report(pairs, report)
        results: list[Any] = [None] * len(pairs)
        errors: dict[int, BaseException] = {}
        sem = asyncio.Semaphore(num_threads or self.num_threads)
        stopped = False

        async def one(i: int) -> None:
            nonlocal stopped
            async with sem:
                if stopped:
                    return
                module, inputs = pairs[i]
                try:
                    args, kwargs = _call_args(module, inputs, self.access_examples)
                    acall = getattr(module, "acall", None)
                    if acall is not None:
                        results[i] = await acall(*args, **kwargs)
                    else:
                        ctx = contextvars.copy_context()
                        results[i] = await asyncio.to_thread(ctx.run, module, *args, **kwargs)
                except Exception as exc:
                    self._note(i, exc)
                    errors[i] = exc
                    if self.max_errors is not None and len(errors) > self.max_errors:
                        stopped = True

        await asyncio.gather(*(one(i) for i in range(len(pairs))))
        return self._finish(pairs, results, errors, stopped)

    def __repr__(self) -> str:
        return f"Parallel(num_threads={self.num_threads}, max_errors={self.max_errors})"


__all__ = ["Parallel"]
