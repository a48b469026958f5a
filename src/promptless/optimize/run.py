"""One ``compile`` call in progress: its budget, run store, LMs, memoised scoring, trials and notes.

- **A memo.** ``run.score(program, examples)`` scores a candidate example by example and stores each score
  under (program fingerprint, example key) in the run store, so an identical candidate is never scored twice
  on the same example, and a resumed run re-scores nothing it already scored.
- **Checkpoints.** With ``run_dir=...`` the store is an SQLite file (``checkpoint.RunStore``); optimizers are
  written as deterministic replays over it, so the same ``compile`` call after a crash continues where the
  first one stopped.
- **Trials.** ``run.trial(...)`` scores a candidate and records it; each trial is one INFO line on the
  ``promptless.optimize`` logger and one update of the live progress line.
- **Notes.** ``run.notes`` (a ``RunNotes``) holds what the optimizer's steps leave for the result: the
  validation set scored, the baseline's fingerprint, the full scores, the candidates and the best parameters.

Scores are percentages (the mean metric times 100), as ``Evaluate`` reports them.
"""

from __future__ import annotations

import logging
import time
import traceback
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from typing import Any

from .. import settings
from ..data import Example
from ..errors import BudgetExceededError, ConfigurationError
from ..evaluate.scoring import Metric, call_metric, short
from ..lm.usage import track_usage
from ..modules.module import Module
from .budget import Budget, GuardedLM, unwrap_lm
from .fingerprint import example_key, program_fingerprint
from .result import Trial

logger = logging.getLogger("promptless.optimize")


@dataclass
class RunNotes:
    """What an optimizer's steps leave for the result and for each other."""

    valset: list[Example] | None = None  # the examples actually scored (capped, or split from the trainset)
    baseline_fingerprint: str | None = None  # the unoptimized program's
    full_scores: dict[str, float] = field(default_factory=dict)  # program fingerprint -> score on all of valset
    combos: dict[str, dict[str, int]] = field(default_factory=dict)  # fingerprint -> search params, in first-seen order
    best_params: dict[str, Any] = field(default_factory=dict)  # the winning candidate's params
    candidates: dict[str, Any] = field(default_factory=dict)  # what was searched over, for the result and report

    def add_full_score(self, fingerprint: str, score: float | None) -> None:
        """Note a program's score on the whole validation set (a trial without a score notes nothing)."""
        if score is not None:
            self.full_scores[fingerprint] = score


class Run:
    """The state of one ``compile`` call: budget, store, LMs, trials and progress."""

    def __init__(
        self,
        name: str,
        *,
        metric: Metric | None,
        identity: dict[str, Any],
        run_dir: str | None = None,
        max_lm_calls: int | None = None,
        max_cost: float | None = None,
        num_threads: int = 1,
        task_model: Any = None,
        prompt_model: Any = None,
    ) -> None:
        self.name = name  # the optimizer's, for logs and errors
        self.metric = metric
        self.num_threads = num_threads
        self.budget = Budget(max_lm_calls, max_cost)
        from .checkpoint import RunStore  # sqlite3 only when an optimizer runs (keeps `import promptless` light)

        self.store = RunStore(run_dir)
        try:
            self.resumed = self.store.check_identity(identity)
        except ConfigurationError:
            self.store.close()
            raise
        self.identity = identity
        self._default_lm = settings.get("lm")
        self.task_model = task_model
        self.prompt_model = prompt_model
        self._guards: dict[tuple[int, str], GuardedLM] = {}
        self.trials: list[Trial] = []
        self.best_score: float | None = None
        self.started = time.perf_counter()
        self.stopped = "completed"
        self.progress: Any = None
        self.notes = RunNotes()
        self.provide_traceback = False  # keep each failed example's traceback in its score row
        self.student: Module | None = None
        if self.resumed:
            logger.info("resuming the run in %s", run_dir)
            # calls an earlier process paid for but never stored a result of (cut off by the budget mid-example)
            for key, _ in self.store.items("lost"):
                self.budget.charge(*self.store.take_previous_cost("lost", key))

    def record_lost(self) -> None:
        """Store the calls this process paid for that no record holds (an example cut off by the budget, a
        step that failed), so a resumed run counts them and stops where an uninterrupted one would."""
        calls = self.budget.calls - self.budget.replayed_calls - self.store.fresh_calls
        cost = self.budget.cost - self.budget.replayed_cost - self.store.fresh_cost
        if calls > 0 or cost > 1e-12:
            self.store.put("lost", f"{self.store.count('lost'):05d}", {"calls": max(calls, 0)},
                           calls=max(calls, 0), cost=max(cost, 0.0))

    # -- LMs ---------------------------------------------------------------------
    def guard(self, lm: Any, role: str) -> GuardedLM:
        lm = unwrap_lm(lm)
        key = (id(lm), role)
        g = self._guards.get(key)
        if g is None:
            g = self._guards[key] = GuardedLM(lm, self.budget, role)
        return g

    def task_lm(self, predictor: Any = None) -> Any:
        lm = getattr(predictor, "lm", None) or self.task_model or self._default_lm
        if lm is None:
            raise ConfigurationError(
                "no task LM: configure one with pl.configure(lm=...), pass task_model=... to the optimizer, "
                "or give the program's predictors an lm"
            )
        return lm

    def prompt_lm(self) -> GuardedLM:
        """The prompt model, else the task model, else the student's (first predictor's) LM."""
        first = self.student.predictors()[0] if self.student is not None else None
        return self.guard(self.prompt_model or self.task_model or self.task_lm(first), "prompt")

    def bind(self, program: Module) -> Module:
        """A copy of the program whose predictors call the budgeted task LM."""
        bound = program.deepcopy()
        for p in bound.predictors():
            p.lm = self.guard(self.task_lm(p), "task")
        return bound

    @contextmanager
    def task_context(self) -> Iterator[None]:
        default = self.task_model or self._default_lm
        ctx = settings.context(lm=self.guard(default, "task")) if default is not None else nullcontext()
        with ctx:
            yield

    # -- memoised scoring ---------------------------------------------------------------
    def cached_scores(self, fingerprint: str, examples: Sequence[Example]) -> list[float | None]:
        out: list[float | None] = []
        for ex in examples:
            rec = self.store.get("score", f"{fingerprint}/{example_key(ex)}")
            out.append(None if rec is None else float(rec.value["score"]))
        return out

    def score(
        self, program: Module, examples: Sequence[Example], *, fingerprint: str | None = None
    ) -> list[float]:
        """Score ``program`` on every example (0..1 each), reusing stored scores; raises BudgetExceededError
        (after storing what was scored) when the budget runs out first."""
        if self.metric is None:
            raise ConfigurationError(
                f"{self.name} needs a metric to score programs; pass metric=..."
            )
        fp = fingerprint or program_fingerprint(program)
        keys = [example_key(ex) for ex in examples]
        results: list[float | None] = [None] * len(examples)
        missing: list[int] = []
        for i, k in enumerate(keys):
            rec = self.store.get("score", f"{fp}/{k}")
            if rec is None:
                missing.append(i)
                continue
            self.budget.charge(*self.store.take_previous_cost("score", f"{fp}/{k}"))
            results[i] = float(rec.value["score"])
        if missing:
            self.budget.check()
            self._score_missing(program, fp, examples, keys, missing, results)
        return [r for r in results if r is not None]

    def _score_missing(
        self,
        program: Module,
        fp: str,
        examples: Sequence[Example],
        keys: list[str],
        missing: list[int],
        results: list[float | None],
    ) -> None:
        from ..evaluate.runner import ParallelRunner

        bound = self.bind(program)
        metric = self.metric
        assert metric is not None

        def one(i: int) -> float:
            if self.budget.exhausted:
                self.budget.check()
            ex = examples[i]
            error = None
            pred = None
            row: dict[str, Any] = {}
            with track_usage() as usage:
                try:
                    pred = bound(**ex.inputs().to_dict())
                except (BudgetExceededError, ConfigurationError):
                    raise
                except Exception as exc:  # a failed example scores 0; the error is kept for the report
                    error = f"{type(exc).__name__}: {exc}"
                    if self.provide_traceback:
                        row["traceback"] = short(traceback.format_exc().rstrip(), 4000)
            score = call_metric(metric, ex, pred) if pred is not None else 0.0
            output = {k: short(v) for k, v in pred.items()} if pred is not None else None
            row.update({"score": score, "output": output, "error": short(error, 600) if error else None})
            self.store.put("score", f"{fp}/{keys[i]}", row, calls=usage.total.calls, cost=usage.total.cost or 0.0)
            return score

        with self.task_context():
            progress = self.progress

            def tick(done: int, total: int, outcome: Any) -> None:
                if progress is not None:
                    progress.update(calls=self.budget.calls)

            report = ParallelRunner(self.num_threads, keep_traceback=False, progress=tick).run(one, missing)
        budget_hit = False
        for outcome, i in zip(report.outcomes, missing, strict=True):
            if outcome.ok:
                results[i] = outcome.value
            elif isinstance(outcome.error, BudgetExceededError) or not outcome.started:
                budget_hit = True
            elif outcome.error is not None:
                raise outcome.error
        if budget_hit or any(results[i] is None for i in missing):
            self.budget.hit = True
            raise self.budget._error()

    def mean(self, scores: Sequence[float]) -> float:
        return 100.0 * sum(scores) / len(scores) if scores else 0.0

    # -- trials ---------------------------------------------------------------------------
    def add_trial(self, trial: Trial) -> Trial:
        self.trials.append(trial)
        counts = trial.score is not None and trial.kind in ("baseline", "full", "candidate")
        if counts and (self.best_score is None or trial.score > self.best_score):  # type: ignore[operator]
            self.best_score = trial.score
        trial.best_so_far = self.best_score
        self.store.put("trial", f"{trial.number:05d}", trial.to_dict(), calls=0)
        score = "-" if trial.score is None else f"{trial.score:.1f}"
        best = "-" if self.best_score is None else f"{self.best_score:.1f}"
        name = self.name
        if trial.kind == "repeat":
            logger.info("%s trial %d (repeat): already scored, estimate %s from the memo, no calls; best %s",
                        name, trial.number, score, best)
        else:
            logger.info(
                "%s trial %d (%s): score %s on %d examples, best %s, calls %d (run total %d)%s",
                name, trial.number, trial.kind, score, trial.n_examples, best, trial.calls, self.budget.calls,
                " [memo]" if trial.calls == 0 and trial.n_examples else "",
            )
        if self.progress is not None:
            self.progress.update(trial=trial.number, best=self.best_score, calls=self.budget.calls)
        return trial

    @contextmanager
    def measure(self) -> Iterator[dict[str, Any]]:
        """Calls, cost and seconds spent inside the block (including replayed calls of a resumed run)."""
        c0, cost0, t0 = self.budget.calls, self.budget.cost, time.perf_counter()
        box: dict[str, Any] = {}
        try:
            yield box
        finally:
            box["calls"] = self.budget.calls - c0
            box["cost"] = self.budget.cost - cost0
            box["seconds"] = time.perf_counter() - t0

    def trial(
        self,
        kind: str,
        params: dict[str, Any],
        fingerprint: str,
        examples: Sequence[Example],
        program: Module,
        *,
        number: int | None = None,
    ) -> Trial:
        """Score a candidate on examples and record it as a trial (BudgetExceededError propagates)."""
        with self.measure() as m:
            scores = self.score(program, examples, fingerprint=fingerprint)
        t = Trial(
            number=len(self.trials) if number is None else number,
            kind=kind,
            params=params,
            score=self.mean(scores),
            n_examples=len(scores),
            calls=m["calls"],
            cost=m["cost"],
            seconds=m["seconds"],
            fingerprint=fingerprint,
        )
        return self.add_trial(t)

    # -- cached steps (proposals, traces) ----------------------------------------------------
    def cached(self, kind: str, key: str, compute: Callable[[], Any]) -> Any:
        """The stored value of a paid-for step, or compute it (its calls are recorded with it)."""
        rec = self.store.get(kind, key)
        if rec is not None:
            self.budget.charge(*self.store.take_previous_cost(kind, key))
            return rec.value
        with self.measure() as m:
            value = compute()
        self.store.put(kind, key, value, calls=m["calls"], cost=m["cost"])
        return self.store.get(kind, key).value  # type: ignore[union-attr]


__all__ = ["Run", "RunNotes", "logger"]
