"""Evaluate: run a program over a devset, score each prediction with a metric, and report.

    evaluate = pl.Evaluate(devset=dev, metric=pl.evaluate.exact_match, num_threads=4, display_table=5)
    result = evaluate(program)
    result.score          # mean metric x 100, e.g. 62.0
    result.rows[0]        # EvaluationRow(index, example, prediction, score, error)
    result.usage          # a Usage total of the LM calls made during the run
    result.to_json("results.json"); result.to_csv("results.csv")

Each example runs as ``program(**example.inputs())``; the metric is called as
``metric(example, prediction)`` and may return a bool or a number. An example
whose program or metric raises (a ``ParseError``, an ``LMError``, anything)
scores ``failure_score`` and keeps its error message (and, when the metric
raised, the program's prediction); the run goes on. ``EvaluationError`` is
raised, its ``.result`` holding the partial result with the examples that
never ran marked ``skipped``, when:

- more examples failed than ``max_errors`` allows (``None``, the default, never stops);
- every example failed: a score of 0 with nothing scored is not a result;
- an error that would hit every example stops the run at once: the LM refused
  the credentials (401/403), does not know the model (404), has no quota left,
  cannot be reached even after its retries (before any example succeeded, or
  three times in a row), a ``ConfigurationError`` from the program (no LM
  configured, ...), or the same metric error on the first three examples.

``display_progress=True`` shows a live bar with the running score when stderr
is a terminal and a one-line summary otherwise (so piped output stays clean);
``"always"`` forces the bar. Failures add a line with the count per kind of
error and the first one. ``display_predictions=True`` (or N) shows the last 10
(or N) predictions under the bar as they come (input, gold, predicted, right or
wrong); without a terminal it prints one line per example instead.
``display_table=N`` prints the first N rows.

``executor=`` says where the examples run: ``pl.ThreadExecutor(n)`` (what ``num_threads=n`` means, the
default), ``pl.AsyncExecutor(n)`` or ``pl.RayExecutor(...)`` (docs/scale.md); the rows come back in the
devset's order whatever the executor, and the progress, usage and metric stay in this process.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

from ..callbacks import with_callbacks
from ..data import Example
from ..errors import (
    ConfigurationError,
    EvaluationError,
    LMAuthenticationError,
    LMConnectionError,
    LMNotFoundError,
    LMRateLimitError,
)
from ..executors import call_async
from ..executors import resolve as resolve_executor
from ..executors.runner import Outcome, RunReport
from ..lm.usage import track_usage
from ..types import Usage
from .display import ProgressDisplay, display_table
from .result import EvaluationResult, MetricError, error_line, failure_kind, row_from_outcome
from .scoring import metric_name, to_score

_OVERRIDABLE = (
    "num_threads",
    "display_progress",
    "display_predictions",
    "display_table",
    "max_errors",
    "provide_traceback",
    "failure_score",
    "save_as_json",
    "save_as_csv",
    "executor",
)


def _sort_out(devset: Any, metric: Any) -> tuple[Any, Any]:
    """``(devset, metric)`` from the two positions after the program, in either order: promptless's
    ``(program, devset, metric)`` or DSPy's ``(program, metric, devset)``. A metric is callable; a devset (a
    list of examples) is not."""
    if callable(devset) and not isinstance(devset, (list, tuple)) and not callable(metric):
        return metric, devset
    return devset, metric


class Evaluate:
    """Score a program on a devset with a metric; call the instance on a program (``evaluate(program)``)."""

    def __init__(
        self,
        *,
        devset: Iterable[Example],
        metric: Callable[..., Any] | None = None,
        num_threads: int | None = 1,
        display_progress: bool | str = True,
        display_predictions: bool | int = False,
        display_table: bool | int = 0,
        max_errors: int | None = None,
        provide_traceback: bool = False,
        failure_score: float = 0.0,
        save_as_json: str | Path | None = None,
        save_as_csv: str | Path | None = None,
        executor: Any = None,
    ) -> None:
        self.devset = list(devset)
        self.metric = metric
        self.num_threads = num_threads or 1
        self.display_progress = display_progress
        self.display_predictions = display_predictions
        self.display_table = display_table
        self.max_errors = max_errors
        self.provide_traceback = provide_traceback
        self.failure_score = failure_score
        self.save_as_json = save_as_json
        self.save_as_csv = save_as_csv
        self.executor = executor

    # -- set-up shared by the sync and async paths ---------------------------------------
    def _options(self, devset: Iterable[Example] | None, metric: Callable[..., Any] | None,
                 overrides: dict[str, Any]) -> tuple[list[Example], Callable[..., Any], dict[str, Any]]:
        unknown = sorted(set(overrides) - set(_OVERRIDABLE))
        if unknown:
            raise ConfigurationError(
                f"Evaluate: unknown option(s) {', '.join(unknown)}; per-call options are: {', '.join(_OVERRIDABLE)}"
            )
        opts = {name: getattr(self, name) for name in _OVERRIDABLE}
        opts.update(overrides)
        opts["num_threads"] = opts["num_threads"] or 1
        examples = self.devset if devset is None else list(devset)
        metric = metric or self.metric
        if metric is None:
            raise ConfigurationError(
                "Evaluate needs a metric: Evaluate(devset=..., metric=pl.evaluate.exact_match) or any function "
                "metric(example, prediction, trace=None) -> float | bool"
            )
        for i, ex in enumerate(examples):
            if not isinstance(ex, Example):
                raise ConfigurationError(
                    f"Evaluate: devset item {i} is a {type(ex).__name__}, not an Example; "
                    "build items with pl.Example(...).with_inputs(...)"
                )
            if ex.input_keys is None:
                raise ConfigurationError(
                    f"Evaluate: devset item {i} has no inputs marked ({ex!r}); "
                    "call .with_inputs('field', ...) on every example"
                )
        return examples, metric, opts

    def _score(self, metric: Callable[..., Any], example: Example, prediction: Any) -> float:
        """The metric's value as a float; any failure comes back as ``MetricError`` holding the prediction.

        The metric is called with two arguments, as DSPy's Evaluate does; None is an error here, not a 0."""
        try:
            return to_score(metric(example, prediction), metric, none_is_zero=False)
        except Exception as exc:
            raise MetricError(exc, prediction) from exc

    def _result(self, examples: list[Example], report: RunReport[Any], metric: Callable[..., Any],
                usage: Usage, opts: dict[str, Any]) -> EvaluationResult:
        failure = float(opts["failure_score"])
        rows = [row_from_outcome(ex, outcome, failure, bool(opts["provide_traceback"]))
                for ex, outcome in zip(examples, report.outcomes, strict=True)]
        score = 100.0 * sum(r.score for r in rows) / len(rows) if rows else 0.0
        reason = None
        if report.halted is not None:
            reason = "halted"
        elif report.stopped:
            reason = "max_errors"
        elif rows and report.n_errors and all(r.error is not None for r in rows if not r.skipped):
            reason = "all_failed"
        return EvaluationResult(score=score, rows=rows, usage=usage, seconds=report.seconds,
                                n_errors=report.n_errors, stopped=report.stopped, metric=metric_name(metric),
                                stop_reason=reason)

    def _finish(self, result: EvaluationResult, opts: dict[str, Any], display: ProgressDisplay,
                watch: _Watch) -> EvaluationResult:
        if opts["save_as_json"]:
            result.to_json(opts["save_as_json"])
        if opts["save_as_csv"]:
            result.to_csv(opts["save_as_csv"])
        table = opts["display_table"]
        if table:
            display_table(result, None if table is True else int(table))
        if result.n_errors:
            import logging

            logger = logging.getLogger("promptless.evaluate")
            for row in result.rows:
                if row.error:
                    logger.debug("example %d failed: %s", row.index, row.error)
        first = result.first_error
        if result.stop_reason is None or first is None:
            if result.n_errors:
                display.report_errors(result)
            return result
        kinds = ", ".join(f"{n} {kind}" for kind, n in result.error_counts().items())
        n_skipped = sum(r.skipped for r in result.rows)
        n = len(result.rows)
        not_run = f"; {n_skipped} of {n} were not run" if n_skipped else ""
        line = error_line(first)
        if result.stop_reason == "halted":
            why = watch.why or "this error would hit every example"
            text = (f"evaluation stopped at example {first.index}: {line}. {why[0].upper()}{why[1:]}, so the other "
                    f"examples would fail the same way ({result.n_errors} failed{not_run}). Fix the cause and run "
                    "again; the partial result is in .result")
        elif result.stop_reason == "max_errors":
            text = (f"evaluation stopped: {result.n_errors} examples failed ({kinds}), more than "
                    f"max_errors={opts['max_errors']}{not_run}. First error (example {first.index}): {line}. "
                    "Fix the cause, or raise max_errors (None never stops); the partial result is in .result")
        else:
            text = (f"every one of the {n - n_skipped} examples failed ({kinds}), so nothing was scored. "
                    f"First error (example {first.index}): {line}. Fix the cause and run again; every row's error "
                    "is in .result")
        raise EvaluationError(text, result=result)

    # -- running ----------------------------------------------------------------------------
    @with_callbacks("evaluate")
    def __call__(self, program: Callable[..., Any], devset: Iterable[Example] | None = None,
                 metric: Callable[..., Any] | None = None, **overrides: Any) -> EvaluationResult:
        """Run ``program`` on every example and score it; see the module docstring. DSPy's order,
        ``evaluate(program, metric, devset)``, works too: a metric is callable and a devset is not."""
        devset, metric = _sort_out(devset, metric)
        examples, metric, opts = self._options(devset, metric, overrides)

        executor = resolve_executor(opts["executor"], opts["num_threads"])
        one, aone = self._workers(executor.bind(program), metric)
        display = ProgressDisplay(opts, examples, metric_name(metric))
        watch = _Watch()
        with display, track_usage() as tracker:
            report = executor.map(one, examples, afn=aone, max_errors=opts["max_errors"], progress=display.update,
                                  keep_traceback=False, halt=watch)
            result = self._result(examples, report, metric, tracker.total.copy(), opts)
            display.done(result)
        return self._finish(result, opts, display, watch)

    @with_callbacks("evaluate")
    async def acall(self, program: Any, devset: Iterable[Example] | None = None,
                    metric: Callable[..., Any] | None = None, **overrides: Any) -> EvaluationResult:
        """The asyncio form: awaits ``program.acall(**inputs)``, at most ``num_threads`` at a time."""
        devset, metric = _sort_out(devset, metric)
        examples, metric, opts = self._options(devset, metric, overrides)
        executor = resolve_executor(opts["executor"], opts["num_threads"])
        one, aone = self._workers(executor.bind(program), metric)
        display = ProgressDisplay(opts, examples, metric_name(metric))
        watch = _Watch()
        with display, track_usage() as tracker:
            report = await executor.amap(aone, examples, fn=one, max_errors=opts["max_errors"],
                                         progress=display.update, keep_traceback=False, halt=watch)
            result = self._result(examples, report, metric, tracker.total.copy(), opts)
            display.done(result)
        return self._finish(result, opts, display, watch)

    def _workers(self, program: Any, metric: Callable[..., Any]) -> tuple[Callable[[Example], tuple[Any, float]],
                                                                          Callable[[Example], Any]]:
        """One example run and scored, as a function and as a coroutine function (executors take either)."""

        def one(example: Example) -> tuple[Any, float]:
            prediction = program(**example.inputs().to_dict())
            return prediction, self._score(metric, example, prediction)

        async def aone(example: Example) -> tuple[Any, float]:
            prediction = await call_async(program, **example.inputs().to_dict())
            return prediction, self._score(metric, example, prediction)

        return one, aone

    def __repr__(self) -> str:
        return (f"Evaluate(devset=<{len(self.devset)} examples>, metric={metric_name(self.metric)}, "
                f"num_threads={self.num_threads})")


# -- failures --------------------------------------------------------------------------------


_SAME_METRIC_ERRORS = 3  # the same metric error on this many first examples stops the run
_CONNECTION_STREAK = 3  # connection failures in a row (after the LM's retries) that stop a run that had successes


def _setup_problem(exc: BaseException) -> str | None:
    """Why ``exc`` (or an exception it was raised from) will hit every example, or None."""
    seen: set[int] = set()
    e: BaseException | None = exc
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        if isinstance(e, LMAuthenticationError):
            return "the LM refused the credentials (401/403)"
        if isinstance(e, LMNotFoundError):
            return "the LM does not know this model or address (404)"
        if isinstance(e, LMRateLimitError) and not e.retryable:
            return "the LM account has no quota left"
        if isinstance(e, ConfigurationError):
            return "a setting is missing or wrong"
        e = e.__cause__ or e.__context__
    return None


def _is_connection_error(exc: BaseException) -> bool:
    seen: set[int] = set()
    e: BaseException | None = exc
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        if isinstance(e, LMConnectionError):
            return True
        e = e.__cause__ or e.__context__
    return False


class _Watch:
    """The runner's ``halt`` hook: stops the run on errors that every other example would hit too.

    Called from the runner's calling thread, once per finished example, in completion order.
    """

    def __init__(self) -> None:
        self.succeeded = 0
        self.connection_streak = 0
        self.first: list[str | None] = []  # the metric error (kind: message) of the first examples, None if none
        self.why = ""

    def __call__(self, outcome: Outcome[Any]) -> BaseException | None:
        exc = outcome.error
        if len(self.first) < _SAME_METRIC_ERRORS:
            self.first.append(f"{failure_kind(exc)}: {exc}" if isinstance(exc, MetricError) else None)
            if (len(self.first) == _SAME_METRIC_ERRORS and self.first[0] is not None
                    and len(set(self.first)) == 1):
                self.why = (f"the metric raised the same error on the first {_SAME_METRIC_ERRORS} examples "
                            "(a bug in the metric, or a field name the data does not have?)")
                return exc
        if exc is None or isinstance(exc, MetricError):
            self.connection_streak = 0
            if exc is None:
                self.succeeded += 1
            return None
        problem = _setup_problem(exc)
        if problem is not None:
            self.why = problem
            return exc
        if _is_connection_error(exc):
            self.connection_streak += 1
            if self.succeeded == 0 or self.connection_streak >= _CONNECTION_STREAK:
                self.why = "the LM cannot be reached, even after retrying"
                return exc
        else:
            self.connection_streak = 0
        return None


def evaluate_program(program: Callable[..., Any], devset: Sequence[Example], metric: Callable[..., Any],
                     **options: Any) -> EvaluationResult:
    """One-shot form: ``Evaluate(devset=devset, metric=metric, **options)(program)``."""
    return Evaluate(devset=devset, metric=metric, **options)(program)


__all__ = ["Evaluate", "evaluate_program"]
