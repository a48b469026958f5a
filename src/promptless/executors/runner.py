"""Run one function over many items, in threads or asyncio tasks: the engine of the thread and asyncio executors.

    runner = ParallelRunner(num_threads=4, max_errors=10)
    report = runner.run(lambda ex: program(**ex.inputs()), examples)
    report.outcomes[i].value       # in input order, whatever the completion order

What it guarantees:

- Each item runs inside a copy of the *caller's* context (``contextvars``), so
  ``with pl.context(lm=...)`` and ``with pl.track_usage()`` around the call
  apply inside the workers too.
- Outcomes come back in input order.
- An exception from one item is caught and kept on that item's outcome; the
  other items go on. Once the number of errors *exceeds* ``max_errors`` the
  runner stops starting new items (the ones in flight finish) and the report
  says ``stopped=True``; items never started have ``started=False``.
  ``max_errors=None`` never stops.
- ``halt(outcome)``, if given, sees each finished item (in the calling thread,
  like ``progress``); when it returns an exception the runner stops starting
  new items as if ``max_errors`` were passed, and the report keeps that
  exception as ``halted``. Evaluate uses it for errors that would hit every
  item (a refused API key, an unreachable server).
- ``progress(done, total, outcome)`` is called after each finished item, always
  from the calling thread (or the event loop's thread for ``arun``), so it may
  drive a display without locks.

``KeyboardInterrupt`` is not caught: no new items start and it propagates.
"""

from __future__ import annotations

import contextvars
import time
import traceback
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic, TypeVar

if TYPE_CHECKING:
    from concurrent.futures import Future

from ..errors import ConfigurationError

T = TypeVar("T")
R = TypeVar("R")

ProgressFn = Callable[[int, int, "Outcome[Any]"], None]
HaltFn = Callable[["Outcome[Any]"], "BaseException | None"]


@dataclass
class Outcome(Generic[R]):
    """What happened to one item: its value, or the exception it raised."""

    index: int
    value: R | None = None
    error: BaseException | None = None
    traceback: str | None = None
    seconds: float = 0.0
    started: bool = True

    @property
    def ok(self) -> bool:
        return self.started and self.error is None


@dataclass
class RunReport(Generic[R]):
    """Every item's outcome in input order, the error count, and whether the run stopped early.

    ``stopped`` is true once ``n_errors > max_errors``, or once ``halt`` returned an exception (kept as
    ``halted``); the items not started by then have ``started=False`` (with several threads, the items
    already in flight still finish, so ``n_errors`` may go past the limit).
    """

    outcomes: list[Outcome[R]]
    n_errors: int = 0
    stopped: bool = False
    seconds: float = 0.0
    max_errors: int | None = None
    halted: BaseException | None = None

    @property
    def n_started(self) -> int:
        return sum(1 for o in self.outcomes if o.started)

    def values(self, default: Any = None) -> list[Any]:
        """The values in input order (``default`` where an item failed or never ran)."""
        return [o.value if o.ok else default for o in self.outcomes]

    def errors(self) -> list[tuple[int, BaseException]]:
        return [(o.index, o.error) for o in self.outcomes if o.error is not None]


def _check_options(num_threads: int, max_errors: int | None) -> None:
    if not isinstance(num_threads, int) or num_threads < 1:
        raise ConfigurationError(f"num_threads must be a whole number >= 1, got {num_threads!r}")
    if max_errors is not None and (not isinstance(max_errors, int) or max_errors < 0):
        raise ConfigurationError(f"max_errors must be None (never stop) or a whole number >= 0, got {max_errors!r}")


class ParallelRunner:
    """Run a function over items with ``num_threads`` workers (or tasks, with ``arun``)."""

    def __init__(
        self,
        num_threads: int = 1,
        *,
        max_errors: int | None = None,
        progress: ProgressFn | None = None,
        keep_traceback: bool = True,
        halt: HaltFn | None = None,
    ) -> None:
        _check_options(num_threads, max_errors)
        self.num_threads = num_threads
        self.max_errors = max_errors
        self.progress = progress
        self.keep_traceback = keep_traceback
        self.halt = halt

    def _too_many(self, n_errors: int) -> bool:
        return self.max_errors is not None and n_errors > self.max_errors

    def _record(self, outcome: Outcome[Any], exc: Exception) -> None:
        outcome.error = exc
        if self.keep_traceback:
            outcome.traceback = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))

    # -- threads -------------------------------------------------------------------
    def run(self, fn: Callable[[T], R], items: Sequence[T]) -> RunReport[R]:
        """Call ``fn(item)`` for every item; see the module docstring for the guarantees."""
        items = list(items)
        total = len(items)
        outcomes: list[Outcome[R]] = [Outcome(index=i, started=False) for i in range(total)]
        parent = contextvars.copy_context()
        started_at = time.perf_counter()
        n_errors = 0
        done = 0
        halted: BaseException | None = None

        def one(i: int) -> Outcome[R]:
            outcome = outcomes[i]
            outcome.started = True
            t0 = time.perf_counter()
            try:
                outcome.value = parent.copy().run(fn, items[i])
            except Exception as exc:
                self._record(outcome, exc)
            outcome.seconds = time.perf_counter() - t0
            return outcome

        def finished(outcome: Outcome[R]) -> None:
            nonlocal n_errors, done, halted
            done += 1
            if outcome.error is not None:
                n_errors += 1
            if self.halt is not None and halted is None:
                halted = self.halt(outcome)
            if self.progress is not None:
                self.progress(done, total, outcome)

        def may_start() -> bool:
            return halted is None and not self._too_many(n_errors)

        if self.num_threads == 1 or total <= 1:
            for i in range(total):
                if not may_start():
                    break
                finished(one(i))
        else:
            from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait

            next_index = 0
            pool = ThreadPoolExecutor(max_workers=min(self.num_threads, total), thread_name_prefix="promptless")
            in_flight: set[Future[Outcome[R]]] = set()
            try:
                while True:
                    while (
                        next_index < total and len(in_flight) < self.num_threads and may_start()
                    ):
                        in_flight.add(pool.submit(one, next_index))
                        next_index += 1
                    if not in_flight:
                        break
                    completed, in_flight = wait(in_flight, return_when=FIRST_COMPLETED)
                    for fut in sorted(completed, key=lambda f: f.result().index):
                        finished(fut.result())
            finally:
                pool.shutdown(wait=not in_flight, cancel_futures=True)
        return RunReport(
            outcomes=outcomes,
            n_errors=n_errors,
            stopped=self._too_many(n_errors) or halted is not None,
            seconds=time.perf_counter() - started_at,
            max_errors=self.max_errors,
            halted=halted,
        )

    # -- asyncio -------------------------------------------------------------------
    async def arun(self, fn: Callable[[T], Awaitable[R]], items: Sequence[T]) -> RunReport[R]:
        """Await ``fn(item)`` for every item, at most ``num_threads`` at a time (an asyncio semaphore).

        Each task starts with a copy of the current context, as asyncio tasks do.
        """
        import asyncio  # not at module level: `import promptless` does not pay for asyncio

        items = list(items)
        total = len(items)
        outcomes: list[Outcome[R]] = [Outcome(index=i, started=False) for i in range(total)]
        sem = asyncio.Semaphore(self.num_threads)
        started_at = time.perf_counter()
        state = {"errors": 0, "done": 0}
        halted: list[BaseException] = []

        async def one(i: int) -> None:
            async with sem:
                if halted or self._too_many(state["errors"]):
                    return
                outcome = outcomes[i]
                outcome.started = True
                t0 = time.perf_counter()
                try:
                    outcome.value = await fn(items[i])
                except Exception as exc:
                    self._record(outcome, exc)
                outcome.seconds = time.perf_counter() - t0
                state["done"] += 1
                if outcome.error is not None:
                    state["errors"] += 1
                if self.halt is not None and not halted:
                    stop = self.halt(outcome)
                    if stop is not None:
                        halted.append(stop)
                if self.progress is not None:
                    self.progress(state["done"], total, outcome)

        tasks = [asyncio.ensure_future(one(i)) for i in range(total)]
        try:
            await asyncio.gather(*tasks)
        finally:
            for task in tasks:
                task.cancel()
        return RunReport(
            outcomes=outcomes,
            n_errors=state["errors"],
            stopped=self._too_many(state["errors"]) or bool(halted),
            seconds=time.perf_counter() - started_at,
            max_errors=self.max_errors,
            halted=halted[0] if halted else None,
        )


def run_parallel(
    fn: Callable[[T], R],
    items: Sequence[T],
    *,
    num_threads: int = 1,
    max_errors: int | None = None,
    progress: ProgressFn | None = None,
    halt: HaltFn | None = None,
) -> RunReport[R]:
    """Shorthand for ``ParallelRunner(num_threads, ...).run(fn, items)``."""
    return ParallelRunner(num_threads, max_errors=max_errors, progress=progress, halt=halt).run(fn, items)


__all__ = ["Outcome", "ParallelRunner", "RunReport", "run_parallel"]
