"""The outcome of an evaluation: a row per example, the result that holds them, and their export.

``EvaluationResult`` (``score``, ``rows``, ``usage``, ...) is what ``Evaluate`` returns; ``to_json`` /
``to_csv`` write it and ``from_dict`` / ``load_json`` read it back. A failed row's ``error`` is
``Kind: message`` (``"KeyError in the metric: ..."`` when the metric raised) or a traceback;
``error_kind`` reads the kind back out of such a text. ``row_from_outcome`` turns what the parallel runner
reports for one example into its row (used by ``Evaluate`` and the live display).
"""

from __future__ import annotations

import csv
import json
import re
import traceback
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..data import Example
from ..types import Usage
from .runner import Outcome


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
        inputs, labels = split_example(self.example)
        return {
            "index": self.index,
            "inputs": inputs,
            "labels": labels,
            "prediction": prediction_dict(self.prediction),
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
                f"{error_line(first)}")

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
        p.write_text(json.dumps(self.to_dict(), indent=2, ensure_ascii=False, default=json_default) + "\n",
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
        inputs, labels = split_example(row.example)
        out: dict[str, Any] = {"index": row.index}
        out.update({k: _cell(v) for k, v in inputs.items()})
        out.update({f"gold_{k}": _cell(v) for k, v in labels.items()})
        pred = prediction_dict(row.prediction)
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


# -- failed rows ----------------------------------------------------------------------------------


class MetricError(Exception):
    """The metric raised (or returned a non-number) for a prediction the program did make."""

    def __init__(self, error: Exception, prediction: Any) -> None:
        super().__init__(str(error))
        self.error = error
        self.prediction = prediction


def failure_kind(exc: BaseException | None) -> str:
    """The row's ``error_kind`` for an exception: its class name, or ``"KeyError in the metric"``."""
    if isinstance(exc, MetricError):
        return f"{type(exc.error).__name__} in the metric"
    return type(exc).__name__


IN_METRIC = " in the metric"
METRIC_TRACEBACK = "in the metric: "


def split_error(text: str | None) -> tuple[str, str]:
    """The kind and the first line of the message of an ``error`` text (``Kind: message`` or a traceback)."""
    t = (text or "").strip()
    metric = t.startswith(METRIC_TRACEBACK)
    if metric:
        t = t[len(METRIC_TRACEBACK):].lstrip()
    lines = t.splitlines() or [""]
    line = lines[-1] if lines[0].startswith("Traceback") else lines[0]
    m = re.match(r"([A-Za-z_][\w.]*)( in the metric)?(?::\s?(.*))?$", line)
    if not m:
        return "error", line
    kind = m.group(1).rsplit(".", 1)[-1] + (IN_METRIC if metric or m.group(2) else "")
    return kind, m.group(3) or ""


def error_kind(text: str | None) -> str:
    """The exception name an ``error`` text starts with (``"ParseError: ..."`` gives ``"ParseError"``).

    A traceback gives the name on its last line; ``"KeyError in the metric"`` when the metric raised;
    ``"error"`` for text in neither form.
    """
    return split_error(text)[0]


def row_from_outcome(ex: Example, outcome: Outcome[Any], failure: float, with_traceback: bool) -> EvaluationRow:
    """The row for what the runner reports of one example: skipped, scored, or failed (scoring ``failure``)."""
    if not outcome.started:
        return EvaluationRow(outcome.index, ex, None, failure, None, skipped=True)
    exc = outcome.error
    if exc is None:
        assert outcome.value is not None
        prediction, score = outcome.value
        return EvaluationRow(outcome.index, ex, prediction, score, seconds=outcome.seconds)
    prediction = exc.prediction if isinstance(exc, MetricError) else None
    return EvaluationRow(outcome.index, ex, prediction, failure, describe_error(exc, with_traceback),
                         seconds=outcome.seconds, error_kind=failure_kind(exc))


def describe_error(exc: BaseException, with_traceback: bool) -> str:
    """A failed row's ``error`` text: ``Kind: message``, or the traceback."""
    metric = isinstance(exc, MetricError)
    inner = exc.error if isinstance(exc, MetricError) else exc
    if with_traceback:
        text = "".join(traceback.format_exception(type(inner), inner, inner.__traceback__)).rstrip()
        return METRIC_TRACEBACK + text if metric else text
    return f"{type(inner).__name__}{IN_METRIC if metric else ''}: {inner}"


def error_line(row: EvaluationRow) -> str:
    """``Kind: first line of the message`` for a failed row, at most 500 characters."""
    kind, message = split_error(row.error)
    line = f"{row.error_kind or kind}: {message}" if message else (row.error_kind or kind)
    return line if len(line) <= 500 else line[:499] + "…"


# -- helpers --------------------------------------------------------------------------------


def split_example(ex: Example) -> tuple[dict[str, Any], dict[str, Any]]:
    """An example's inputs and its labels (every other field)."""
    keys = ex.input_keys or frozenset()
    data = ex.to_dict()
    return {k: v for k, v in data.items() if k in keys}, {k: v for k, v in data.items() if k not in keys}


def prediction_dict(pred: Any) -> Any:
    """A prediction as a plain dict (a program may also return anything else, kept as it is)."""
    if pred is None:
        return None
    if isinstance(pred, Example):
        return pred.to_dict()
    if isinstance(pred, dict):
        return dict(pred)
    return pred


def json_default(value: Any) -> Any:
    """``json.dumps``'s ``default`` for the values rows may hold (sets, pydantic models, records)."""
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
    return json.dumps(value, ensure_ascii=False, default=json_default)


__all__ = [
    "IN_METRIC",
    "METRIC_TRACEBACK",
    "EvaluationResult",
    "EvaluationRow",
    "MetricError",
    "describe_error",
    "error_kind",
    "error_line",
    "failure_kind",
    "json_default",
    "prediction_dict",
    "row_from_outcome",
    "split_error",
    "split_example",
]
