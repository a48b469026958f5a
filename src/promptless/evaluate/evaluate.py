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
scores ``failure_score`` and keeps its error message; the run goes on. When
the number of such errors exceeds ``max_errors`` no new example is started and
``EvaluationError`` is raised: its ``.result`` holds the partial result, the
examples that never ran marked ``skipped``. ``max_errors=None`` (the default)
never stops.

``display_progress=True`` shows a live bar with the running score when stderr
is a terminal and a one-line summary otherwise (so piped output stays clean);
``"always"`` forces the bar. ``display_table=N`` prints the first N rows.
"""

from __future__ import annotations

import csv
import json
import sys
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..data import Example
from ..errors import ConfigurationError, EvaluationError
from ..lm.usage import track_usage
from ..types import Usage
from .runner import Outcome, ParallelRunner, RunReport

_OVERRIDABLE = (
    "num_threads",
    "display_progress",
    "display_table",
    "max_errors",
    "provide_traceback",
    "failure_score",
    "save_as_json",
    "save_as_csv",
)


@dataclass
class EvaluationRow:
    """One example's outcome. ``prediction`` is None when the program failed; ``error`` holds why."""

    index: int
    example: Example
    prediction: Any
    score: float
    error: str | None = None
    skipped: bool = False
    seconds: float = 0.0

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

    def to_dict(self) -> dict[str, Any]:
        return {
            "score": self.score,
            "n": len(self.rows),
            "n_errors": self.n_errors,
            "stopped": self.stopped,
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
            ))
        u = data.get("usage") or {}
        usage = Usage(calls=u.get("calls", 0), prompt_tokens=u.get("prompt_tokens", 0),
                      completion_tokens=u.get("completion_tokens", 0), cache_hits=u.get("cache_hits", 0),
                      seconds=u.get("seconds", 0.0), cost=u.get("cost"))
        return cls(score=float(data["score"]), rows=rows, usage=usage, seconds=float(data.get("seconds", 0.0)),
                   n_errors=int(data.get("n_errors", 0)), stopped=bool(data.get("stopped")),
                   metric=data.get("metric", ""))

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
        value = metric(example, prediction)
        try:
            return float(value)
        except (TypeError, ValueError):
            raise ConfigurationError(
                f"the metric returned {value!r} ({type(value).__name__}); a metric must return a bool or a number"
            ) from None

    def _result(self, examples: list[Example], report: RunReport[Any], metric: Callable[..., Any],
                usage: Usage, opts: dict[str, Any]) -> EvaluationResult:
        rows: list[EvaluationRow] = []
        failure = float(opts["failure_score"])
        for ex, outcome in zip(examples, report.outcomes, strict=True):
            if not outcome.started:
                rows.append(EvaluationRow(outcome.index, ex, None, failure, None, skipped=True))
            elif outcome.error is not None:
                rows.append(EvaluationRow(outcome.index, ex, None, failure,
                                          _describe_error(outcome, opts["provide_traceback"]),
                                          seconds=outcome.seconds))
            else:
                assert outcome.value is not None
                prediction, score = outcome.value
                rows.append(EvaluationRow(outcome.index, ex, prediction, score, seconds=outcome.seconds))
        score = 100.0 * sum(r.score for r in rows) / len(rows) if rows else 0.0
        return EvaluationResult(score=score, rows=rows, usage=usage, seconds=report.seconds,
                                n_errors=report.n_errors, stopped=report.stopped, metric=_metric_name(metric))

    def _finish(self, result: EvaluationResult, opts: dict[str, Any]) -> EvaluationResult:
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
        if result.stopped:
            first = next((r for r in result.rows if r.error), None)
            where, why = (first.index, _first_line(first.error or "")) if first else ("?", "")
            raise EvaluationError(
                f"evaluation stopped: {result.n_errors} examples failed, more than max_errors={opts['max_errors']}; "
                f"{sum(r.skipped for r in result.rows)} of {len(result.rows)} were not run. "
                f"First error (example {where}): {why}. "
                "Fix the cause, or raise max_errors (None never stops); the partial result is in .result",
                result=result,
            )
        return result

    # -- running ----------------------------------------------------------------------------
    def __call__(self, program: Callable[..., Any], devset: Iterable[Example] | None = None,
                 metric: Callable[..., Any] | None = None, **overrides: Any) -> EvaluationResult:
        """Run ``program`` on every example and score it; see the module docstring."""
        examples, metric, opts = self._options(devset, metric, overrides)

        def one(example: Example) -> tuple[Any, float]:
            prediction = program(**example.inputs().to_dict())
            return prediction, self._score(metric, example, prediction)

        display = _Display(opts["display_progress"], len(examples), _metric_name(metric))
        with display, track_usage() as tracker:
            runner = ParallelRunner(opts["num_threads"], max_errors=opts["max_errors"],
                                    progress=display.update, keep_traceback=bool(opts["provide_traceback"]))
            report = runner.run(one, examples)
            result = self._result(examples, report, metric, tracker.total.copy(), opts)
            display.done(result)
        return self._finish(result, opts)

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

        display = _Display(opts["display_progress"], len(examples), _metric_name(metric))
        with display, track_usage() as tracker:
            runner = ParallelRunner(opts["num_threads"], max_errors=opts["max_errors"],
                                    progress=display.update, keep_traceback=bool(opts["provide_traceback"]))
            report = await runner.arun(one, examples)
            result = self._result(examples, report, metric, tracker.total.copy(), opts)
            display.done(result)
        return self._finish(result, opts)

    def __repr__(self) -> str:
        return (f"Evaluate(devset=<{len(self.devset)} examples>, metric={_metric_name(self.metric)}, "
                f"num_threads={self.num_threads})")


# -- display ---------------------------------------------------------------------------------


class _Display:
    """The live progress bar (rich, imported only when shown) or a one-line summary when not a terminal."""

    def __init__(self, mode: bool | str, total: int, metric: str) -> None:
        self.total = total
        self.metric = metric
        self.sum = 0.0
        self.done_n = 0
        self.errors = 0
        self.progress: Any = None
        self.task: Any = None
        mode = mode.lower() if isinstance(mode, str) else mode
        if mode not in (True, False, "always", "auto", None):
            raise ConfigurationError(f"display_progress must be True, False or 'always', got {mode!r}")
        self.enabled = bool(mode)
        self.live = mode == "always" or (self.enabled and _stderr_is_terminal())

    def __enter__(self) -> _Display:
        if self.live and self.total:
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

            console = Console(stderr=True, force_terminal=True if not _stderr_is_terminal() else None)
            self.progress = Progress(
                TextColumn("[bold]Evaluating"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[status]}"),
                TimeElapsedColumn(),
                console=console,
                transient=False,
            )
            self.progress.start()
            self.task = self.progress.add_task("eval", total=self.total, status=self._status())
        return self

    def _status(self) -> str:
        if not self.done_n:
            return ""
        text = f"{self.metric} {100.0 * self.sum / self.done_n:.1f}%"
        if self.errors:
            text += f", {self.errors} failed"
        return text

    def update(self, done: int, total: int, outcome: Outcome[Any]) -> None:
        self.done_n = done
        if outcome.error is not None:
            self.errors += 1
        elif outcome.value is not None:
            self.sum += outcome.value[1]
        if self.progress is not None:
            self.progress.update(self.task, completed=done, status=self._status())

    def done(self, result: EvaluationResult) -> None:
        if self.progress is not None:
            self.progress.update(self.task, completed=self.done_n, status=self._status())
            self.progress.stop()
            self.progress = None
        if self.enabled and not self.live:
            print(f"Evaluated: {result.summary()}", file=sys.stderr)

    def __exit__(self, *exc: Any) -> None:
        if self.progress is not None:
            self.progress.stop()
            self.progress = None


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
    for r in rows:
        inputs, labels = _split_example(r.example)
        pred = _prediction_dict(r.prediction)
        cells = [_short(inputs.get(k, "")) for k in input_names]
        if r.ok and isinstance(pred, dict):
            cells += [_short(pred.get(k, "")) for k in pred_names]
        elif pred_names:
            reason = "(skipped)" if r.skipped else f"[red]error: {_short(_first_line(r.error or ''), 60)}[/red]"
            cells += [reason] + [""] * (len(pred_names) - 1)
        cells += [_short(labels.get(k, "")) for k in shown_labels]
        score = f"{r.score:g}"
        cells.append(f"[green]{score}[/green]" if r.score >= 1 else f"[red]{score}[/red]" if r.score <= 0 else score)
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


def _describe_error(outcome: Outcome[Any], with_traceback: bool) -> str:
    exc = outcome.error
    assert exc is not None
    if with_traceback and outcome.traceback:
        return outcome.traceback.rstrip()
    return f"{type(exc).__name__}: {exc}"


def _metric_name(metric: Any) -> str:
    if metric is None:
        return "None"
    return getattr(metric, "__name__", None) or type(metric).__name__


def evaluate_program(program: Callable[..., Any], devset: Sequence[Example], metric: Callable[..., Any],
                     **options: Any) -> EvaluationResult:
    """One-shot form: ``Evaluate(devset=devset, metric=metric, **options)(program)``."""
    return Evaluate(devset=devset, metric=metric, **options)(program)


__all__ = ["Evaluate", "EvaluationError", "EvaluationResult", "EvaluationRow", "display_table", "evaluate_program"]
