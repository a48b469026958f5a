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
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from ..data import Example
from ..errors import ConfigurationError, PromptlessError

Pair = tuple[Any, Any]


def _call_args(inputs: Any) -> tuple[tuple[Any, ...], dict[str, Any]]:
    if isinstance(inputs, Example):
        data = inputs.inputs() if inputs.input_keys is not None else inputs
        return (), dict(data.items())
    if isinstance(inputs, Mapping):
        return (), dict(inputs)
    if isinstance(inputs, (tuple, list)):
        return tuple(inputs), {}
    raise ConfigurationError(
        f"Parallel: the inputs of a pair must be an Example, a dict or a tuple, got {type(inputs).__name__}"
    )


class Parallel:
    def __init__(
        self,
        num_threads: int | None = None,
        max_errors: int | None = None,
        return_failed_examples: bool = False,
        provide_traceback: bool = False,
        executor: Any = None,
    ) -> None:
        if num_threads is not None and (not isinstance(num_threads, int) or num_threads < 1):
            raise ConfigurationError(f"Parallel: num_threads must be a whole number >= 1, got {num_threads!r}")
        if max_errors is not None and (not isinstance(max_errors, int) or max_errors < 0):
            raise ConfigurationError(f"Parallel: max_errors must be None or a whole number >= 0, got {max_errors!r}")
        self.num_threads = num_threads or 8
        self.max_errors = max_errors
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

    # -- running -------------------------------------------------------------------
    def _items(self, pairs: list[Pair], executor: Any) -> tuple[Any, Any]:
        bound: dict[int, Any] = {}
        for module, _ in pairs:
            if id(module) not in bound:
                bound[id(module)] = executor.bind(module)

        def one(i: int) -> Any:
            module, inputs = pairs[i]
            args, kwargs = _call_args(inputs)
            return bound[id(module)](*args, **kwargs)

        async def aone(i: int) -> Any:
            from ..executors import call_async

            module, inputs = pairs[i]
            args, kwargs = _call_args(inputs)
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

    def _executor(self, num_threads: int | None) -> Any:
        from ..executors import resolve

        return resolve(self.executor, num_threads or self.num_threads)

    def forward(self, exec_pairs: Sequence[Pair], num_threads: int | None = None) -> Any:
        pairs = self._check_pairs(exec_pairs)
        executor = self._executor(num_threads)
        one, aone = self._items(pairs, executor)
        report = executor.map(one, range(len(pairs)), afn=aone, max_errors=self.max_errors, keep_traceback=False)
        return self._report(pairs, report)

    __call__ = forward

    async def acall(self, exec_pairs: Sequence[Pair], num_threads: int | None = None) -> Any:
        """The same with asyncio tasks, at most ``num_threads`` at a time; modules run through ``acall``."""
        pairs = self._check_pairs(exec_pairs)
        executor = self._executor(num_threads)
        one, aone = self._items(pairs, executor)
        report = await executor.amap(aone, range(len(pairs)), fn=one, max_errors=self.max_errors,
                                     keep_traceback=False)
        return self._report(pairs, report)

    def __repr__(self) -> str:
        return f"Parallel(num_threads={self.num_threads}, max_errors={self.max_errors})"


__all__ = ["Parallel"]
