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
"""

from __future__ import annotations

import csv
import json
import re
import sys
import traceback
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..data import Example
from ..errors import (
    ConfigurationError,
    EvaluationError,
    LMAuthenticationError,
    LMConnectionError,
    LMNotFoundError,
    LMRateLimitError,
)
from ..lm.usage import track_usage
from ..types import Usage
from .runner import Outcome, ParallelRunner, RunReport
from .scoring import split_feedback

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
)


@dataclass
class EvaluationRow:
    """One example's outcome. ``prediction`` is None when the program failed; ``error`` holds why.

    ``error_kind`` names the exception (``"ParseError"``), or ``"KeyError in the metric"`` when the metric
    raised; the prediction is kept then.
    """

    index: int
    example: Example
    prediction: Any
    score: float
    error: str | None = None
    skipped: bool = False
    seconds: float = 0.0
    error_kind: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None and not self.skipped

    def to_dict(self) -> dict[str, Any]:
        inputs, labels = _split_example(self.example)
        return {
            "index": self.index,
            "inputs": inputs,
            "labels": labels,
            "prediction": _prediction_dict(self.prediction),
            "score": self.score,
            "error": self.error,
            "error_kind": self.error_kind,
            "skipped": self.skipped,
            "seconds": round(self.seconds, 4),
        }


@dataclass
class EvaluationResult:
    """The outcome of one evaluation: ``score`` (mean metric x 100), a row per example, usage and time."""

    score: float
    rows: list[EvaluationRow]
    usage: Usage = field(default_factory=Usage)
    seconds: float = 0.0
    n_errors: int = 0
    stopped: bool = False
    metric: str = ""
    stop_reason: str | None = None

    def __float__(self) -> float:
        return float(self.score)

    def __len__(self) -> int:
        return len(self.rows)

    @property
    def n(self) -> int:
        return len(self.rows)

    @property
    def results(self) -> list[tuple[Example, Any, float]]:
        """``(example, prediction, score)`` per row, the tuples DSPy's result carries."""
        return [(r.example, r.prediction, r.score) for r in self.rows]

    @property
    def scores(self) -> list[float]:
        return [r.score for r in self.rows]

    @property
    def first_error(self) -> EvaluationRow | None:
        """The failed row with the lowest index (None when nothing failed)."""
        return next((r for r in self.rows if r.error is not None), None)

    def error_counts(self) -> dict[str, int]:
        """How many rows failed with each kind of error, most frequent first: ``{"ParseError": 3, ...}``."""
        counts = Counter(r.error_kind or error_kind(r.error) for r in self.rows if r.error is not None)
        return dict(counts.most_common())

    def errors_summary(self) -> str:
        """One line: how many failed, the count per kind and the first error; ``""`` when none failed."""
        first = self.first_error
        if first is None:
            return ""
        ran = sum(1 for r in self.rows if not r.skipped)
        kinds = ", ".join(f"{n} {kind}" for kind, n in self.error_counts().items())
        return (f"{self.n_errors} of {ran} examples failed ({kinds}); first error (example {first.index}): "
                f"{_error_line(first)}")

    def to_dict(self) -> dict[str, Any]:
        return {
            "score": self.score,
            "n": len(self.rows),
            "n_errors": self.n_errors,
            "stopped": self.stopped,
            "stop_reason": self.stop_reason,
            "metric": self.metric,
            "seconds": round(self.seconds, 4),
            "usage": self.usage.to_dict(),
            "rows": [r.to_dict() for r in self.rows],
        }

    def to_json(self, path: str | Path) -> Path:
        """Write the result (summary and every row) as JSON; returns the path."""
        p = Path(path)
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(json.dumps(self.to_dict(), indent=2, ensure_ascii=False, default=_jsonable) + "\n",
                     encoding="utf-8")
        return p

    def to_csv(self, path: str | Path) -> Path:
        """Write one CSV line per row: index, the input fields, ``gold_<label>``, ``pred_<field>``, score, error.

        Values that are not strings or numbers are written as JSON.
        """
        p = Path(path)
        p.parent.mkdir(parents=True, exist_ok=True)
        table = [self._csv_row(r) for r in self.rows]
        columns: list[str] = []
        for row in table:
            for key in row:
                if key not in columns:
                    columns.append(key)
        tail = ["score", "error"]
        columns = [c for c in columns if c not in tail] + tail
        with p.open("w", encoding="utf-8", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=columns)
            writer.writeheader()
            for row in table:
                writer.writerow({c: row.get(c, "") for c in columns})
        return p

    @staticmethod
    def _csv_row(row: EvaluationRow) -> dict[str, Any]:
        inputs, labels = _split_example(row.example)
        out: dict[str, Any] = {"index": row.index}
        out.update({k: _cell(v) for k, v in inputs.items()})
        out.update({f"gold_{k}": _cell(v) for k, v in labels.items()})
        pred = _prediction_dict(row.prediction)
        if isinstance(pred, dict):
            out.update({f"pred_{k}": _cell(v) for k, v in pred.items()})
        elif pred is not None:
            out["pred"] = _cell(pred)
        out["score"] = row.score
        out["error"] = "skipped" if row.skipped else (row.error or "")
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> EvaluationResult:
        """Rebuild a result written by ``to_dict``/``to_json`` (predictions come back as plain dicts)."""
        from ..data import Prediction

        rows = []
        for r in data["rows"]:
            inputs, labels = r.get("inputs") or {}, r.get("labels") or {}
            example = Example({**inputs, **labels})
            if inputs:
                example = example.with_inputs(*inputs)
            pred = r.get("prediction")
            rows.append(EvaluationRow(
                index=r["index"], example=example,
                prediction=Prediction(pred) if isinstance(pred, dict) else pred,
                score=float(r["score"]), error=r.get("error"), skipped=bool(r.get("skipped")),
                seconds=float(r.get("seconds", 0.0)),
                error_kind=r.get("error_kind") or (error_kind(r["error"]) if r.get("error") else None),
            ))
        u = data.get("usage") or {}
        usage = Usage(calls=u.get("calls", 0), prompt_tokens=u.get("prompt_tokens", 0),
                      completion_tokens=u.get("completion_tokens", 0), cache_hits=u.get("cache_hits", 0),
                      seconds=u.get("seconds", 0.0), cost=u.get("cost"))
        return cls(score=float(data["score"]), rows=rows, usage=usage, seconds=float(data.get("seconds", 0.0)),
                   n_errors=int(data.get("n_errors", 0)), stopped=bool(data.get("stopped")),
                   metric=data.get("metric", ""), stop_reason=data.get("stop_reason"))

    @classmethod
    def load_json(cls, path: str | Path) -> EvaluationResult:
        return cls.from_dict(json.loads(Path(path).read_text(encoding="utf-8")))

    def summary(self) -> str:
        text = f"{self.score:.2f}% on {len(self.rows)} examples"
        if self.n_errors:
            text += f" ({self.n_errors} failed)"
        u = self.usage
        text += f", {u.calls} LM calls"
        if u.cache_hits:
            text += f" + {u.cache_hits} cached"
        text += f", {u.total_tokens:,} tokens, {self.seconds:.1f} s"
        return text

    def __repr__(self) -> str:
        extra = ", stopped=True" if self.stopped else ""
        return f"EvaluationResult(score={self.score:.2f}, n={len(self.rows)}, n_errors={self.n_errors}{extra})"


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
        """The metric's value as a float; any failure comes back as ``_MetricError`` holding the prediction."""
        try:
            value = metric(example, prediction)
            try:
                return float(split_feedback(value)[0])  # a score with feedback text counts as its score
            except (TypeError, ValueError):
                raise ConfigurationError(
                    f"the metric returned {value!r} ({type(value).__name__}); a metric must return a bool or a number"
                ) from None
        except Exception as exc:
            raise _MetricError(exc, prediction) from exc

    def _result(self, examples: list[Example], report: RunReport[Any], metric: Callable[..., Any],
                usage: Usage, opts: dict[str, Any]) -> EvaluationResult:
        failure = float(opts["failure_score"])
        rows = [_make_row(ex, outcome, failure, bool(opts["provide_traceback"]))
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
                                n_errors=report.n_errors, stopped=report.stopped, metric=_metric_name(metric),
                                stop_reason=reason)

    def _finish(self, result: EvaluationResult, opts: dict[str, Any], display: _Display,
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
        line = _error_line(first)
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
    def __call__(self, program: Callable[..., Any], devset: Iterable[Example] | None = None,
                 metric: Callable[..., Any] | None = None, **overrides: Any) -> EvaluationResult:
        """Run ``program`` on every example and score it; see the module docstring."""
        examples, metric, opts = self._options(devset, metric, overrides)

        def one(example: Example) -> tuple[Any, float]:
            prediction = program(**example.inputs().to_dict())
            return prediction, self._score(metric, example, prediction)

        display = _Display(opts, examples, _metric_name(metric))
        watch = _Watch()
        with display, track_usage() as tracker:
            runner = ParallelRunner(opts["num_threads"], max_errors=opts["max_errors"], progress=display.update,
                                    keep_traceback=False, halt=watch)
            report = runner.run(one, examples)
            result = self._result(examples, report, metric, tracker.total.copy(), opts)
            display.done(result)
        return self._finish(result, opts, display, watch)

    async def acall(self, program: Any, devset: Iterable[Example] | None = None,
                    metric: Callable[..., Any] | None = None, **overrides: Any) -> EvaluationResult:
        """The asyncio form: awaits ``program.acall(**inputs)``, at most ``num_threads`` at a time."""
        examples, metric, opts = self._options(devset, metric, overrides)
        acall = getattr(program, "acall", None)

        async def one(example: Example) -> tuple[Any, float]:
            inputs = example.inputs().to_dict()
            if acall is not None:
                prediction = await acall(**inputs)
            else:
                import asyncio
                import contextvars

                ctx = contextvars.copy_context()
                prediction = await asyncio.to_thread(ctx.run, lambda: program(**inputs))
            return prediction, self._score(metric, example, prediction)

        display = _Display(opts, examples, _metric_name(metric))
        watch = _Watch()
        with display, track_usage() as tracker:
            runner = ParallelRunner(opts["num_threads"], max_errors=opts["max_errors"], progress=display.update,
                                    keep_traceback=False, halt=watch)
            report = await runner.arun(one, examples)
            result = self._result(examples, report, metric, tracker.total.copy(), opts)
            display.done(result)
        return self._finish(result, opts, display, watch)

    def __repr__(self) -> str:
        return (f"Evaluate(devset=<{len(self.devset)} examples>, metric={_metric_name(self.metric)}, "
                f"num_threads={self.num_threads})")


# -- failures --------------------------------------------------------------------------------


class _MetricError(Exception):
    """The metric raised (or returned a non-number) for a prediction the program did make."""

    def __init__(self, error: Exception, prediction: Any) -> None:
        super().__init__(str(error))
        self.error = error
        self.prediction = prediction


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
            self.first.append(f"{_kind(exc)}: {exc}" if isinstance(exc, _MetricError) else None)
            if (len(self.first) == _SAME_METRIC_ERRORS and self.first[0] is not None
                    and len(set(self.first)) == 1):
                self.why = (f"the metric raised the same error on the first {_SAME_METRIC_ERRORS} examples "
                            "(a bug in the metric, or a field name the data does not have?)")
                return exc
        if exc is None or isinstance(exc, _MetricError):
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


def _kind(exc: BaseException | None) -> str:
    if isinstance(exc, _MetricError):
        return f"{type(exc.error).__name__} in the metric"
    return type(exc).__name__


_IN_METRIC = " in the metric"
_METRIC_TRACEBACK = "in the metric: "


def _split_error(text: str | None) -> tuple[str, str]:
    """The kind and the first line of the message of an ``error`` text (``Kind: message`` or a traceback)."""
    t = (text or "").strip()
    metric = t.startswith(_METRIC_TRACEBACK)
    if metric:
        t = t[len(_METRIC_TRACEBACK):].lstrip()
    lines = t.splitlines() or [""]
    line = lines[-1] if lines[0].startswith("Traceback") else lines[0]
    m = re.match(r"([A-Za-z_][\w.]*)( in the metric)?(?::\s?(.*))?$", line)
    if not m:
        return "error", line
    kind = m.group(1).rsplit(".", 1)[-1] + (_IN_METRIC if metric or m.group(2) else "")
    return kind, m.group(3) or ""


def error_kind(text: str | None) -> str:
    """The exception name an ``error`` text starts with (``"ParseError: ..."`` gives ``"ParseError"``).

    A traceback gives the name on its last line; ``"KeyError in the metric"`` when the metric raised;
    ``"error"`` for text in neither form.
    """
    return _split_error(text)[0]


def _make_row(ex: Example, outcome: Outcome[Any], failure: float, with_traceback: bool) -> EvaluationRow:
    if not outcome.started:
        return EvaluationRow(outcome.index, ex, None, failure, None, skipped=True)
    exc = outcome.error
    if exc is None:
        assert outcome.value is not None
        prediction, score = outcome.value
        return EvaluationRow(outcome.index, ex, prediction, score, seconds=outcome.seconds)
    prediction = exc.prediction if isinstance(exc, _MetricError) else None
    return EvaluationRow(outcome.index, ex, prediction, failure, _describe_error(exc, with_traceback),
                         seconds=outcome.seconds, error_kind=_kind(exc))


def _describe_error(exc: BaseException, with_traceback: bool) -> str:
    metric = isinstance(exc, _MetricError)
    inner = exc.error if isinstance(exc, _MetricError) else exc
    if with_traceback:
        text = "".join(traceback.format_exception(type(inner), inner, inner.__traceback__)).rstrip()
        return _METRIC_TRACEBACK + text if metric else text
    return f"{type(inner).__name__}{_IN_METRIC if metric else ''}: {inner}"


def _error_line(row: EvaluationRow) -> str:
    """``Kind: first line of the message`` for a failed row, at most 500 characters."""
    kind, message = _split_error(row.error)
    line = f"{row.error_kind or kind}: {message}" if message else (row.error_kind or kind)
    return line if len(line) <= 500 else line[:499] + "…"


# -- display ---------------------------------------------------------------------------------


_RECENT = 10  # predictions shown under the bar with display_predictions=True


class _Display:
    """The live progress bar (rich, imported only when shown) or a one-line summary when not a terminal.

    With ``display_predictions`` the last predictions show under the bar (or one line each without a terminal).
    """

    def __init__(self, opts: dict[str, Any], examples: list[Example], metric: str) -> None:
        mode = opts["display_progress"]
        self.examples = examples
        self.total = len(examples)
        self.metric = metric
        self.failure = float(opts["failure_score"])
        self.sum = 0.0
        self.done_n = 0
        self.errors = 0
        self.progress: Any = None
        self.live_view: Any = None
        self.console: Any = None
        self.task: Any = None
        mode = mode.lower() if isinstance(mode, str) else mode
        if mode not in (True, False, "always", "auto", None):
            raise ConfigurationError(f"display_progress must be True, False or 'always', got {mode!r}")
        shown = opts.get("display_predictions", False)
        if shown is True:
            shown = _RECENT
        if shown is False or shown is None:
            shown = 0
        if not isinstance(shown, int) or shown < 0:
            raise ConfigurationError(f"display_predictions must be True, False or a number >= 0, got {shown!r}")
        self.enabled = bool(mode)
        self.live = mode == "always" or (self.enabled and _stderr_is_terminal())
        self.shown = shown if self.enabled else 0
        self.recent: list[EvaluationRow] = []

    def __enter__(self) -> _Display:
        if self.live and self.total:
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

            self.console = Console(stderr=True, force_terminal=True if not _stderr_is_terminal() else None)
            self.progress = Progress(
                TextColumn("[bold]Evaluating"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[status]}"),
                TimeElapsedColumn(),
                console=self.console,
                transient=False,
            )
            self.task = self.progress.add_task("eval", total=self.total, status=self._status())
            if self.shown:
                from rich.live import Live

                self.live_view = Live(console=self.console, get_renderable=self._render, refresh_per_second=8,
                                      transient=False)
                self.live_view.start()
            else:
                self.progress.start()
        return self

    def _status(self) -> str:
        if not self.done_n:
            return ""
        text = f"{self.metric} {100.0 * self.sum / self.done_n:.1f}%"
        if self.errors:
            text += f", {self.errors} failed"
        return text

    def _render(self) -> Any:
        from rich.console import Group
        from rich.table import Table

        if not self.recent:
            return self.progress
        table = Table(box=None, show_header=True, header_style="dim", pad_edge=False)
        table.add_column("#", justify="right", style="dim")
        table.add_column("input", overflow="ellipsis", no_wrap=True, max_width=60)
        table.add_column("gold", overflow="ellipsis", no_wrap=True, max_width=36)
        table.add_column("predicted", overflow="ellipsis", no_wrap=True, max_width=36)
        table.add_column("")
        for row in self.recent:
            index, text, gold, predicted, verdict = _prediction_cells(row)
            style = "green" if verdict == "right" else "red" if verdict in ("wrong", "error") else "yellow"
            table.add_row(index, _short(text, 60), _short(gold, 36), _short(predicted, 36),
                          f"[{style}]{verdict}[/{style}]")
        return Group(self.progress, table)

    def update(self, done: int, total: int, outcome: Outcome[Any]) -> None:
        self.done_n = done
        if outcome.error is not None:
            self.errors += 1
        elif outcome.value is not None:
            self.sum += outcome.value[1]
        if self.progress is not None:
            self.progress.update(self.task, completed=done, status=self._status())
        if self.shown:
            row = _make_row(self.examples[outcome.index], outcome, self.failure, False)
            if self.live:
                self.recent = [*self.recent, row][-self.shown:]
                if self.live_view is not None:
                    self.live_view.refresh()
            else:
                index, text, gold, predicted, verdict = _prediction_cells(row)
                print(f"[{done}/{total}] {verdict:5}  example {index}: {_plain(text, 60)} | gold: {_plain(gold, 40)}"
                      f" | predicted: {_plain(predicted, 60)}", file=sys.stderr, flush=True)

    def _stop(self) -> None:
        if self.live_view is not None:
            self.live_view.stop()
            self.live_view = None
        elif self.progress is not None:
            self.progress.stop()
        self.progress = None

    def done(self, result: EvaluationResult) -> None:
        if self.progress is not None:
            self.progress.update(self.task, completed=self.done_n, status=self._status())
            self._stop()
        if self.enabled and not self.live:
            print(f"Evaluated: {result.summary()}", file=sys.stderr)

    def report_errors(self, result: EvaluationResult) -> None:
        """The count per kind of error and the first one, for a run that goes on to return its result."""
        if self.enabled:
            print(result.errors_summary(), file=sys.stderr)

    def __exit__(self, *exc: Any) -> None:
        if self.progress is not None:
            self._stop()


def _prediction_cells(row: EvaluationRow) -> tuple[str, str, str, str, str]:
    """Index, first input, gold, predicted and the verdict (right, wrong, the score, error) of one row."""
    inputs, labels = _split_example(row.example)
    text = str(next(iter(inputs.values()), ""))
    pred = _prediction_dict(row.prediction)
    fields = [k for k in labels if isinstance(pred, dict) and k in pred] or list(labels)
    gold = ", ".join(_plain(labels[k], 40) for k in fields if k in labels)
    if isinstance(pred, dict):
        shown = [k for k in fields if k in pred] or list(pred)
        predicted = ", ".join(_plain(pred[k], 40) for k in shown)
    else:
        predicted = "" if pred is None else _plain(pred, 40)
    if row.error is not None:
        kind = row.error_kind or error_kind(row.error)
        predicted = f"{predicted} ({kind})" if predicted else kind
        verdict = "error"
    elif row.score >= 1:
        verdict = "right"
    elif row.score <= 0:
        verdict = "wrong"
    else:
        verdict = f"{row.score:g}"
    return str(row.index), text, gold, predicted, verdict


def _plain(value: Any, width: int) -> str:
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=_jsonable)
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"


def _stderr_is_terminal() -> bool:
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):
        return False


def display_table(result: EvaluationResult, limit: int | None = 5, *, console: Any = None) -> None:
    """Print the first ``limit`` rows (all with None) as a table: inputs, prediction, gold, score."""
    from rich.console import Console
    from rich.table import Table

    rows = result.rows if limit is None else result.rows[:limit]
    if not rows:
        return
    input_names: list[str] = []
    label_names: list[str] = []
    for r in rows:
        inputs, labels = _split_example(r.example)
        input_names += [k for k in inputs if k not in input_names]
        label_names += [k for k in labels if k not in label_names]
    pred_names = [k for k in label_names if any(_pred_has(r.prediction, k) for r in rows)]
    if not pred_names:
        pred_names = []
        for r in rows:
            pred = _prediction_dict(r.prediction)
            if isinstance(pred, dict):
                pred_names += [k for k in pred if k not in pred_names]
    shown_labels = pred_names if pred_names and all(k in label_names for k in pred_names) else label_names
    title = f"first {len(rows)} of {len(result.rows)}" if len(rows) < len(result.rows) else f"{len(rows)} examples"
    table = Table(title=title, show_lines=False)
    for name in input_names:
        table.add_column(name, overflow="fold", max_width=60)
    for name in pred_names:
        table.add_column(f"predicted {name}" if name in label_names else name, overflow="fold", max_width=40)
    for name in shown_labels:
        table.add_column(f"gold {name}", overflow="fold", max_width=40)
    table.add_column("score", justify="right")
    with_errors = any(r.error is not None or r.skipped for r in rows)
    if with_errors:  # shown even when no row has a prediction: then it is the one column that says why
        table.add_column("error", overflow="fold", max_width=60)
    for r in rows:
        inputs, labels = _split_example(r.example)
        pred = _prediction_dict(r.prediction)
        cells = [_short(inputs.get(k, "")) for k in input_names]
        if isinstance(pred, dict):
            cells += [_short(pred.get(k, "")) for k in pred_names]
        else:
            cells += [""] * len(pred_names)
        cells += [_short(labels.get(k, "")) for k in shown_labels]
        score = f"{r.score:g}"
        cells.append(f"[green]{score}[/green]" if r.score >= 1 else f"[red]{score}[/red]" if r.score <= 0 else score)
        if with_errors:
            cells.append("(skipped)" if r.skipped else
                         f"[red]{_short(_error_line(r), 120)}[/red]" if r.error is not None else "")
        table.add_row(*cells)
    (console or Console()).print(table)


# -- helpers ---------------------------------------------------------------------------------


def _split_example(ex: Example) -> tuple[dict[str, Any], dict[str, Any]]:
    keys = ex.input_keys or frozenset()
    data = ex.to_dict()
    return {k: v for k, v in data.items() if k in keys}, {k: v for k, v in data.items() if k not in keys}


def _prediction_dict(pred: Any) -> Any:
    if pred is None:
        return None
    if isinstance(pred, Example):
        return pred.to_dict()
    if isinstance(pred, dict):
        return dict(pred)
    return pred


def _pred_has(pred: Any, key: str) -> bool:
    d = _prediction_dict(pred)
    return isinstance(d, dict) and key in d


def _jsonable(value: Any) -> Any:
    if isinstance(value, (set, frozenset, tuple)):
        return list(value)
    if hasattr(value, "model_dump"):
        return value.model_dump()
    if hasattr(value, "to_dict"):
        return value.to_dict()
    return str(value)


def _cell(value: Any) -> Any:
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return json.dumps(value, ensure_ascii=False, default=_jsonable)


def _short(value: Any, width: int = 200) -> str:
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=_jsonable)
    text = text.replace("[", "\\[")
    return text if len(text) <= width else text[: width - 1] + "…"


def _first_line(text: str) -> str:
    return text.strip().splitlines()[0] if text and text.strip() else ""


def _metric_name(metric: Any) -> str:
    if metric is None:
        return "None"
    return getattr(metric, "__name__", None) or type(metric).__name__


def evaluate_program(program: Callable[..., Any], devset: Sequence[Example], metric: Callable[..., Any],
                     **options: Any) -> EvaluationResult:
    """One-shot form: ``Evaluate(devset=devset, metric=metric, **options)(program)``."""
    return Evaluate(devset=devset, metric=metric, **options)(program)


__all__ = [
    "Evaluate",
    "EvaluationError",
    "EvaluationResult",
    "EvaluationRow",
    "display_table",
    "error_kind",
    "evaluate_program",
]
