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
from ..evaluate.scoring import Metric, call_metric_feedback, short
from ..modules.module import Module
from .budget import Budget, GuardedLM, unwrap_lm
from .fingerprint import example_key, program_fingerprint
from .result import Trial

logger = logging.getLogger("promptless.optimize")


@dataclass
class RunNotes:
    """What an optimizer's steps leave for the result and for each other."""

    valset: list[Example] | None = None  # the examples the search scored (capped, split from the trainset)
    baseline_fingerprint: str | None = None  # the unoptimized program's
    full_scores: dict[str, float] = field(default_factory=dict)  # program fingerprint -> score on all of valset
    combos: dict[str, dict[str, int]] = field(default_factory=dict)  # fingerprint -> search params, in first-seen order
    best_params: dict[str, Any] = field(default_factory=dict)  # the winning candidate's params
    candidates: dict[str, Any] = field(default_factory=dict)  # what was searched over, for the result and report
    holdout: list[Example] | None = None  # the validation examples kept from the search for the selection
    selection: dict[str, Any] = field(default_factory=dict)  # how the pick was made, and its evidence
    refused: Any = None  # the candidate program the held-out check did not keep, if any

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
        executor: Any = None,
        identity_also: dict[str, set[str]] | None = None,
    ) -> None:
        self.name = name  # the optimizer's, for logs and errors
        self.metric = metric
        self.num_threads = num_threads
        from ..executors import resolve

        self.executor = resolve(executor, num_threads)  # where examples are scored; the rest stays here
        Budget(max_lm_calls, max_cost)  # validates before anything is opened
        from .checkpoint import RunStore  # sqlite3 only when an optimizer runs (keeps `import promptless` light)

        self.store = RunStore(run_dir)
        try:
            self.resumed = self.store.check_identity(identity, identity_also)
        except ConfigurationError:
            self.store.close()
            raise
        store = self.store
        self.budget = Budget(max_lm_calls, max_cost, journal=store, before_calls=store.previous_calls,
                             before_cost=store.previous_cost)
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
        self.keep_steps = False  # keep each example's predictor steps (name, inputs, outputs) in its score row
        self.failure_score = 0.0  # the score of an example the program failed on
        self.student: Module | None = None
        self._diverged = False
        if self.resumed:
            # calls earlier processes paid for whose result no record holds (in flight at a kill, cut off by the
            # budget mid-example, a step that failed): counted now, even if this process makes them again
            self.budget.charge(store.unclaimed_calls, store.unclaimed_cost)
            logger.info("resuming the run in %s: %d calls made before, %d of them (%d in flight) with no stored "
                        "result", run_dir, store.previous_calls, store.unclaimed_calls, store.in_flight)

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
    def score_rows(self, fingerprint: str, examples: Sequence[Example]) -> list[dict[str, Any] | None]:
        """The stored rows (score, output, error) of a program on examples, None where this run has not scored
        it yet. A resumed run sees only what it has replayed so far, never rows an earlier process stored
        later in the run, so every decision made from them is the one the uninterrupted run made."""
        out: list[dict[str, Any] | None] = []
        for ex in examples:
            rec = self.store.get_seen("score", f"{fingerprint}/{example_key(ex)}")
            out.append(None if rec is None else dict(rec.value))
        return out

    def seen_scores(self, fingerprint: str, examples: Sequence[Example]) -> list[float | None]:
        """The scores of ``score_rows`` (0..1 each, None where not scored yet)."""
        return [None if row is None else float(row["score"]) for row in self.score_rows(fingerprint, examples)]

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
            self.budget.check(fresh=True)
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
        bound = self.bind(program)
        runner = self.executor.bind(bound)  # the program itself, or a stand-in that runs it on a worker
        metric = self.metric
        assert metric is not None
        names = {id(p): n for n, p in bound.named_predictors()}

        def start(i: int) -> tuple[Example, dict[str, Any], list[Any] | None]:
            if self.budget.exhausted:
                self.budget.check(fresh=True)
            return examples[i], {}, [] if self.keep_steps else None

        def failed(exc: Exception, row: dict[str, Any]) -> str:
            if isinstance(exc, (BudgetExceededError, ConfigurationError)):
                raise exc
            if self.provide_traceback:  # a failed example scores 0; the error is kept for the report
                row["traceback"] = short("".join(traceback.format_exception(exc)).rstrip(), 4000)
            return f"{type(exc).__name__}: {exc}"

        def finish(i: int, ex: Example, pred: Any, error: str | None, row: dict[str, Any], trace: list[Any] | None,
                   meter: Any) -> float:
            score, feedback = (call_metric_feedback(metric, ex, pred) if pred is not None
                               else (self.failure_score, None))
            output = {k: short(v) for k, v in pred.items()} if pred is not None else None
            row.update({"score": score, "output": output, "error": short(error, 600) if error else None})
            if feedback is not None:
                row["feedback"] = short(feedback, 2000)
            if trace is not None:
                row["steps"] = [[names.get(id(p), "?"), {k: short(v) for k, v in dict(inputs).items()},
                                 {k: short(v) for k, v in out.items()}] for p, inputs, out in trace]
            self.store.put("score", f"{fp}/{keys[i]}", row, calls=meter.calls, cost=meter.cost, claim=meter.tickets)
            return score

        def one(i: int) -> float:
            ex, row, trace = start(i)
            pred, error = None, None
            with self.budget.metering() as meter:
                try:
                    with settings.context(trace=trace) if trace is not None else nullcontext():
                        pred = runner(**ex.inputs().to_dict())
                except Exception as exc:
                    error = failed(exc, row)
            return finish(i, ex, pred, error, row, trace, meter)

        async def aone(i: int) -> float:
            from ..executors import call_async

            ex, row, trace = start(i)
            pred, error = None, None
            with self.budget.metering() as meter:
                try:
                    with settings.context(trace=trace) if trace is not None else nullcontext():
                        pred = await call_async(runner, **ex.inputs().to_dict())
                except Exception as exc:
                    error = failed(exc, row)
            return finish(i, ex, pred, error, row, trace, meter)

        with self.task_context():
            progress = self.progress

            def tick(done: int, total: int, outcome: Any) -> None:
                if progress is not None:
                    progress.update(calls=self.budget.calls)

            report = self.executor.map(one, missing, afn=aone, keep_traceback=False, progress=tick)
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
        key = f"{trial.number:05d}"
        self._check_replay(trial, self.store.get("trial", key))
        self.store.put("trial", key, trial.to_dict(), calls=0)
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

    def _check_replay(self, trial: Trial, stored: Any) -> None:
        """Warn once when a resumed run's trial differs from the one an earlier process stored under its number:
        the run is then not a replay (an LM or metric that is not deterministic, or changed code)."""
        if stored is None or not stored.previous or self._diverged:
            return
        old = stored.value
        mine = trial.to_dict()
        fields = ("kind", "params", "fingerprint", "score", "estimate", "n_examples")
        diff = [f for f in fields if old.get(f) != mine.get(f)]
        if diff:
            self._diverged = True
            logger.warning(
                "%s: the resumed run differs from the stored one at trial %d (%s: stored %s, now %s); the LM or "
                "the metric is not deterministic, or the code changed, so the result may differ from an "
                "uninterrupted run", self.name, trial.number, diff[0], old.get(diff[0]), mine.get(diff[0]))

    @contextmanager
    def measure(self) -> Iterator[dict[str, Any]]:
        """Calls, cost and seconds spent inside the block (including the replayed calls of a resumed run), and
        the journal tickets of the calls reserved there."""
        t0 = time.perf_counter()
        box: dict[str, Any] = {}
        with self.budget.metering() as meter:
            try:
                yield box
            finally:
                box["calls"] = meter.calls
                box["cost"] = meter.cost
                box["tickets"] = meter.tickets
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
        estimate: Callable[[], float] | None = None,
    ) -> Trial:
        """Score a candidate on examples and record it as a trial (BudgetExceededError propagates).
        ``estimate`` computes the trial's estimated full score once its scores are in."""
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
            estimate=estimate() if estimate is not None else None,
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
        self.store.put(kind, key, value, calls=m["calls"], cost=m["cost"], claim=m["tickets"])
        return self.store.get(kind, key).value  # type: ignore[union-attr]


__all__ = ["Run", "RunNotes", "logger"]
