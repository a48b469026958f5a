"""What an evaluation shows while it runs and after: the live progress bar and the results table.

``ProgressDisplay`` is the bar (rich, imported only when shown) with the running score, or a one-line summary
when stderr is not a terminal; with ``display_predictions`` the last predictions show under it.
``display_table`` prints a result's first rows as a table. Nothing here changes a result.
"""

from __future__ import annotations

import json
import sys
from typing import Any

from ..data import Example
from ..errors import ConfigurationError
from .result import (
    EvaluationResult,
    EvaluationRow,
    error_kind,
    error_line,
    json_default,
    prediction_dict,
    row_from_outcome,
    split_example,
)
from .runner import Outcome

_RECENT = 10  # predictions shown under the bar with display_predictions=True


class ProgressDisplay:
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

    def __enter__(self) -> ProgressDisplay:
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
            table.add_row(index, _clip(text, 60), _clip(gold, 36), _clip(predicted, 36),
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
            row = row_from_outcome(self.examples[outcome.index], outcome, self.failure, False)
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
    inputs, labels = split_example(row.example)
    text = str(next(iter(inputs.values()), ""))
    pred = prediction_dict(row.prediction)
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
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=json_default)
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
        inputs, labels = split_example(r.example)
        input_names += [k for k in inputs if k not in input_names]
        label_names += [k for k in labels if k not in label_names]
    pred_names = [k for k in label_names if any(_pred_has(r.prediction, k) for r in rows)]
    if not pred_names:
        pred_names = []
        for r in rows:
            pred = prediction_dict(r.prediction)
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
        inputs, labels = split_example(r.example)
        pred = prediction_dict(r.prediction)
        cells = [_clip(inputs.get(k, "")) for k in input_names]
        if isinstance(pred, dict):
            cells += [_clip(pred.get(k, "")) for k in pred_names]
        else:
            cells += [""] * len(pred_names)
        cells += [_clip(labels.get(k, "")) for k in shown_labels]
        score = f"{r.score:g}"
        cells.append(f"[green]{score}[/green]" if r.score >= 1 else f"[red]{score}[/red]" if r.score <= 0 else score)
        if with_errors:
            cells.append("(skipped)" if r.skipped else
                         f"[red]{_clip(error_line(r), 120)}[/red]" if r.error is not None else "")
        table.add_row(*cells)
    (console or Console()).print(table)


def _pred_has(pred: Any, key: str) -> bool:
    d = prediction_dict(pred)
    return isinstance(d, dict) and key in d


def _clip(value: Any, width: int = 200) -> str:
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=json_default)
    text = text.replace("[", "\\[")
    return text if len(text) <= width else text[: width - 1] + "…"


__all__ = ["ProgressDisplay", "display_table"]
