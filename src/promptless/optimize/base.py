"""The shared core of every optimizer: budget, memoised scoring, run store, progress and result.

An optimizer subclasses ``Optimizer`` and writes ``_compile(run, student, trainset, valset, teacher, **kw)``.
``compile`` wraps it with what every optimizer needs:

- **A budget.** ``max_lm_calls`` and ``max_cost`` cover every LM the run uses (task and prompt models).
  Each LM is wrapped in a ``GuardedLM`` that reserves a call *before* it is made and refuses with
  ``BudgetExceededError`` once the budget is used up, so ``max_lm_calls=N`` never makes call N+1, even with
  several threads. Cache hits cost nothing and give their reservation back. When the budget runs out the
  optimizer stops and returns the best program found so far.
- **A memo.** ``run.score(program, examples)`` scores a candidate example by example and stores each score
  under (program fingerprint, example fingerprint) in the run store, so an identical candidate is never
  scored twice on the same example, and a resumed run re-scores nothing it already scored.
- **Checkpoints.** With ``run_dir=...`` the store is an SQLite file (``checkpoint.RunStore``); optimizers are
  written as deterministic replays over it, so the same ``compile`` call after a crash continues where the
  first one stopped.
- **Progress.** A live line (trial, best score, calls spent) on a terminal, and one INFO log line per trial on
  the ``promptless.optimize`` logger.
- **A result.** ``program.optimization`` (and ``optimizer.result``) is an ``OptimizationResult`` with the trials,
  baseline and final scores, the best instructions and demos, and ``report("run.html")``.

Scores are percentages (the mean metric times 100), as ``Evaluate`` reports them.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import logging
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, nullcontext
from typing import Any

from .. import settings
from ..adapters.parsing import to_jsonable
from ..data import Example
from ..errors import BudgetExceededError, ConfigurationError
from ..lm.usage import track_usage
from ..modules.module import Module
from ..persist import dump_predictor
from .result import OptimizationResult, Trial

logger = logging.getLogger("promptless.optimize")

Metric = Callable[..., Any]


# -- budget ------------------------------------------------------------------------------------------


class Budget:
    """LM calls and cost spent by a run, against optional limits. Thread-safe."""

    def __init__(self, max_lm_calls: int | None = None, max_cost: float | None = None) -> None:
        if max_lm_calls is not None and (not isinstance(max_lm_calls, int) or max_lm_calls < 0):
            raise ConfigurationError(f"max_lm_calls must be None or a whole number >= 0, got {max_lm_calls!r}")
        if max_cost is not None and (not isinstance(max_cost, (int, float)) or max_cost < 0):
            raise ConfigurationError(f"max_cost must be None or a number >= 0, got {max_cost!r}")
        self.max_lm_calls = max_lm_calls
        self.max_cost = max_cost
        self.calls = 0
        self.cost = 0.0
        self.by_role: dict[str, int] = {}
        self.replayed_calls = 0
        self.replayed_cost = 0.0
        self._reserved = 0
        self._lock = threading.Lock()
        self.hit = False

    @property
    def exhausted(self) -> bool:
        with self._lock:
            return self._exhausted_locked(0)

    def _exhausted_locked(self, reserved: int) -> bool:
        if self.max_lm_calls is not None and self.calls + reserved >= self.max_lm_calls:
            return True
        return self.max_cost is not None and self.cost >= self.max_cost

    def _error(self) -> BudgetExceededError:
        if self.max_lm_calls is not None and self.calls + self._reserved >= self.max_lm_calls:
            what = f"max_lm_calls={self.max_lm_calls} reached ({self.calls} calls made)"
        else:
            what = f"max_cost={self.max_cost} reached (cost {self.cost:.4f})"
        return BudgetExceededError(
            f"the optimizer's budget is used up: {what}. Raise the limit, or resume with the same run_dir "
            "and a larger budget to continue"
        )

    def reserve(self) -> None:
        """Claim one call before making it; raises BudgetExceededError when none is left."""
        with self._lock:
            if self._exhausted_locked(self._reserved):
                self.hit = True
                raise self._error()
            self._reserved += 1

    def settle(self, role: str, calls: int, cost: float) -> None:
        """Give the reservation back and count what the call really cost (0 calls for a cache hit)."""
        with self._lock:
            self._reserved -= 1
            self.calls += calls
            self.cost += cost
            self.by_role[role] = self.by_role.get(role, 0) + calls

    def charge(self, calls: int, cost: float = 0.0) -> None:
        """Count calls made by an earlier process of the same run (a resumed run)."""
        if not calls and not cost:
            return
        with self._lock:
            self.calls += calls
            self.cost += cost
            self.replayed_calls += calls
            self.replayed_cost += cost

    def check(self) -> None:
        """Raise BudgetExceededError if nothing is left (used between steps)."""
        with self._lock:
            if self._exhausted_locked(self._reserved):
                self.hit = True
                raise self._error()


class GuardedLM:
    """An LM seen through a budget: every request reserves a call first. Everything else is the LM's own."""

    def __init__(self, lm: Any, budget: Budget, role: str) -> None:
        self._lm = lm
        self._budget = budget
        self._role = role

    @property
    def inner(self) -> Any:
        return self._lm

    def request(self, messages: Any = None, *, prompt: str | None = None, cache: bool = True, **params: Any) -> Any:
        self._budget.reserve()
        try:
            resp = self._lm.request(messages, prompt=prompt, cache=cache, **params)
        except BaseException:
            self._budget.settle(self._role, 1, 0.0)  # the request may have reached the backend: count it
            raise
        self._budget.settle(self._role, resp.usage.calls, resp.usage.cost or 0.0)
        return resp

    async def arequest(
        self, messages: Any = None, *, prompt: str | None = None, cache: bool = True, **params: Any
    ) -> Any:
        self._budget.reserve()
        try:
            resp = await self._lm.arequest(messages, prompt=prompt, cache=cache, **params)
        except BaseException:
            self._budget.settle(self._role, 1, 0.0)
            raise
        self._budget.settle(self._role, resp.usage.calls, resp.usage.cost or 0.0)
        return resp

    def __call__(self, prompt: str | None = None, messages: Any = None, **params: Any) -> list[str]:
        return list(self.request(messages, prompt=prompt, **params).texts)

    async def acall(self, prompt: str | None = None, messages: Any = None, **params: Any) -> list[str]:
        return list((await self.arequest(messages, prompt=prompt, **params)).texts)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._lm, name)

    def __deepcopy__(self, memo: dict[int, Any]) -> GuardedLM:
        return self

    def __repr__(self) -> str:
        return f"GuardedLM({self._lm!r}, role={self._role!r})"


def unwrap_lm(lm: Any) -> Any:
    return lm.inner if isinstance(lm, GuardedLM) else lm


# -- fingerprints and metrics --------------------------------------------------------------------------


def _digest(obj: Any, n: int = 20) -> str:
    text = json.dumps(obj, sort_keys=True, ensure_ascii=False, default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:n]


def program_fingerprint(program: Module) -> str:
    """A stable hash of a program's learnable state (instructions, fields, demos, config per predictor)."""
    state = {name: dump_predictor(p) for name, p in program.named_predictors()}
    return _digest({"type": type(program).__qualname__, "predictors": state})


def prompt_fingerprint(program: Module, example: Example | None) -> str:
    """A hash of how each predictor's prompt is rendered now (adapter, its settings, the formatted messages
    for one example), so a run directory made under another prompt format is not resumed as if it were this."""
    from ..modules.predict import default_adapter

    out: dict[str, Any] = {}
    for name, p in program.named_predictors():
        adapter = p.adapter or settings.get("adapter") or default_adapter()
        cfg = {k: v for k, v in sorted(vars(adapter).items())
               if not k.startswith("_") and isinstance(v, (str, int, float, bool, type(None)))}
        try:
            inputs = {k: (example.get(k) if example is not None else None) for k in p.signature.input_fields}
            demos: list[Any] = list(p.demos)
            messages: Any = [m.to_dict() for m in adapter.format(p.signature, demos, inputs)]
        except Exception as exc:  # an input this predictor's format cannot render from the example
            messages = type(exc).__name__
        out[name] = {"adapter": type(adapter).__qualname__, "config": cfg, "messages": messages}
    return _digest(to_jsonable(out))


def example_key(example: Example) -> str:
    """A stable hash of an example's content and which of its fields are inputs."""
    keys = sorted(example.input_keys or ())
    return _digest({"data": to_jsonable(example.to_dict()), "inputs": keys}, 16)


def examples_fingerprint(examples: Sequence[Example]) -> str:
    return _digest([example_key(e) for e in examples])


def _takes_trace(metric: Metric) -> bool:
    try:
        sig = inspect.signature(metric)
    except (TypeError, ValueError):
        return True
    params = list(sig.parameters.values())
    if any(p.kind is inspect.Parameter.VAR_POSITIONAL for p in params):
        return True
    positional = [p for p in params if p.kind in (inspect.Parameter.POSITIONAL_ONLY,
                                                  inspect.Parameter.POSITIONAL_OR_KEYWORD)]
    return len(positional) >= 3


def call_metric(metric: Metric, example: Example, prediction: Any, trace: Any = None) -> float:
    """``metric(example, prediction, trace)`` (or without trace for two-argument metrics), as a float."""
    value = metric(example, prediction, trace) if _takes_trace(metric) else metric(example, prediction)
    return to_score(value, metric)


def to_score(value: Any, metric: Any = None) -> float:
    if isinstance(value, bool):
        return 1.0 if value else 0.0
    if value is None:
        return 0.0
    try:
        return float(value)
    except (TypeError, ValueError):
        name = getattr(metric, "__name__", repr(metric))
        raise ConfigurationError(
            f"the metric {name} returned {value!r}; a metric must return a bool or a number"
        ) from None


def metric_name(metric: Any) -> str:
    return str(getattr(metric, "__name__", None) or type(metric).__name__)


def check_examples(examples: Any, what: str, *, allow_empty: bool = False) -> list[Example]:
    if examples is None:
        if allow_empty:
            return []
        raise ConfigurationError(f"{what} is required: pass a list of pl.Example with inputs marked")
    items = list(examples)
    if not items and not allow_empty:
        raise ConfigurationError(f"{what} is empty; give at least one example")
    for i, ex in enumerate(items):
        if not isinstance(ex, Example):
            raise ConfigurationError(f"{what}[{i}] is a {type(ex).__name__}, not a pl.Example")
        if not ex.input_keys:
            raise ConfigurationError(
                f"{what}[{i}] has no inputs marked; build examples with Example(...).with_inputs('field', ...)"
            )
    return items


def _short(value: Any, limit: int = 400) -> Any:
    value = to_jsonable(value)
    if isinstance(value, str) and len(value) > limit:
        return value[:limit] + "..."
    return value


def _is_budget_error(exc: BaseException | None) -> bool:
    return isinstance(exc, BudgetExceededError)


# -- the run -----------------------------------------------------------------------------------------------


class Run:
    """The state of one ``compile`` call: budget, store, LMs, trials and progress."""

    def __init__(
        self,
        optimizer: Optimizer,
        *,
        metric: Metric | None,
        identity: dict[str, Any],
        task_model: Any = None,
        prompt_model: Any = None,
    ) -> None:
        self.optimizer = optimizer
        self.metric = metric
        self.num_threads = optimizer.num_threads
        self.budget = Budget(optimizer.max_lm_calls, optimizer.max_cost)
        from .checkpoint import RunStore  # sqlite3 only when an optimizer runs

        self.store = RunStore(optimizer.run_dir)
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
        self.notes: dict[str, Any] = {}
        self.student: Module | None = None
        if self.resumed:
            logger.info("resuming the run in %s", optimizer.run_dir)
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
                f"{type(self.optimizer).__name__} needs a metric to score programs; pass metric=..."
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
            with track_usage() as usage:
                try:
                    pred = bound(**ex.inputs().to_dict())
                except (BudgetExceededError, ConfigurationError):
                    raise
                except Exception as exc:  # a failed example scores 0; the error is kept for the report
                    error = f"{type(exc).__name__}: {exc}"
            score = call_metric(metric, ex, pred) if pred is not None else 0.0
            output = {k: _short(v) for k, v in pred.items()} if pred is not None else None
            self.store.put(
                "score",
                f"{fp}/{keys[i]}",
                {"score": score, "output": output, "error": _short(error, 600) if error else None},
                calls=usage.total.calls,
                cost=usage.total.cost or 0.0,
            )
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
            elif _is_budget_error(outcome.error) or not outcome.started:
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
        name = type(self.optimizer).__name__
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


# -- the base optimizer -----------------------------------------------------------------------------------


class Optimizer:
    """Base of the optimizers (DSPy calls it a teleprompter): ``compile(student, trainset=...) -> Module``.

    Common options:

    - ``metric``: ``metric(example, prediction, trace=None) -> bool | float``.
    - ``max_lm_calls`` / ``max_cost``: the budget over every LM the run uses; once reached the run stops and the
      best program so far is returned (``result.stopped == "budget"``).
    - ``run_dir``: a directory for the run store; the same call again resumes a crashed or killed run.
    - ``num_threads``: examples scored in parallel.
    - ``progress``: True / False for the live display; None (default) shows it when stderr is a terminal.
    """

    def __init__(
        self,
        *,
        metric: Metric | None = None,
        max_lm_calls: int | None = None,
        max_cost: float | None = None,
        run_dir: str | None = None,
        num_threads: int = 1,
        progress: bool | None = None,
    ) -> None:
        if not isinstance(num_threads, int) or num_threads < 1:
            raise ConfigurationError(f"num_threads must be a whole number >= 1, got {num_threads!r}")
        Budget(max_lm_calls, max_cost)  # validates
        self.metric = metric
        self.max_lm_calls = max_lm_calls
        self.max_cost = max_cost
        self.run_dir = run_dir
        self.num_threads = num_threads
        self.progress = progress
        self.result: OptimizationResult | None = None

    # what identifies a run for resuming (subclasses add their options)
    def settings_identity(self) -> dict[str, Any]:
        return {"metric": metric_name(self.metric) if self.metric is not None else None}

    def compile(
        self,
        student: Module,
        trainset: Sequence[Example] | None = None,
        *,
        valset: Sequence[Example] | None = None,
        teacher: Module | None = None,
        **kwargs: Any,
    ) -> Module:
        if not isinstance(student, Module):
            raise ConfigurationError(
                f"compile() takes a pl.Module (a program) as the student, got {type(student).__name__}"
            )
        if not student.predictors():
            raise ConfigurationError(f"the program {type(student).__name__} has no predictors to optimize")
        train = check_examples(trainset, "trainset")
        val = check_examples(valset, "valset", allow_empty=True)
        identity = {
            "optimizer": type(self).__name__,
            "settings": self.settings_identity(),
            "student": program_fingerprint(student),
            "prompt": prompt_fingerprint(student, train[0] if train else None),
            "trainset": examples_fingerprint(train),
            "valset": examples_fingerprint(val),
        }
        run = Run(self, metric=self.metric, identity=identity, **self._models())
        run.student = student
        from .progress import Progress

        run.progress = Progress(type(self).__name__, enabled=self.progress, max_calls=self.max_lm_calls,
                                total=self._planned_trials())
        try:
            with track_usage() as tracker, run.progress:
                program = self._compile(run, student, train, val, teacher, **kwargs)
            result = self._build_result(run, student, program, val, tracker)
        finally:
            try:
                run.record_lost()
            finally:
                run.store.close()
        program.optimization = result  # type: ignore[attr-defined]
        self.result = result
        return program

    def _models(self) -> dict[str, Any]:
        return {"task_model": getattr(self, "task_model", None), "prompt_model": getattr(self, "prompt_model", None)}

    def _planned_trials(self) -> int | None:
        return None

    def _compile(
        self,
        run: Run,
        student: Module,
        trainset: list[Example],
        valset: list[Example],
        teacher: Module | None,
        **kwargs: Any,
    ) -> Module:  # pragma: no cover - abstract
        raise NotImplementedError

    # -- shared steps -------------------------------------------------------------------------
    def _score_baseline(self, run: Run, student: Module, valset: list[Example]) -> float | None:
        """Score the unoptimized program on valset as trial 0 (None when the budget ran out first)."""
        fp = program_fingerprint(student)
        run.notes["baseline_fingerprint"] = fp
        try:
            t = run.trial("baseline", {}, fp, valset, student)
        except BudgetExceededError:
            run.stopped = "budget"
            return None
        run.notes.setdefault("full_scores", {})[fp] = t.score
        self._check_not_all_failed(run, fp, valset)
        return t.score

    def _check_not_all_failed(self, run: Run, fp: str, examples: list[Example]) -> None:
        errors = []
        for ex in examples:
            rec = run.store.get("score", f"{fp}/{example_key(ex)}")
            if rec is None or not rec.value.get("error"):
                return
            errors.append(rec.value["error"])
        if errors:
            raise ConfigurationError(
                f"the program failed on every one of the {len(errors)} validation examples, so there is nothing to "
                f"optimize. First error: {errors[0]}"
            )

    def _build_result(
        self, run: Run, student: Module, program: Module, valset: list[Example], tracker: Any
    ) -> OptimizationResult:
        valset = run.notes.get("valset", valset)
        baseline_fp = run.notes.get("baseline_fingerprint") or program_fingerprint(student)
        final_fp = program_fingerprint(program)
        full = run.notes.get("full_scores", {})
        per_example = []
        if valset and run.metric is not None:
            base_scores = _rows(run, baseline_fp, valset)
            final_scores = _rows(run, final_fp, valset)
            for ex, b, f in zip(valset, base_scores, final_scores, strict=True):
                per_example.append({
                    "inputs": {k: _short(v, 300) for k, v in ex.inputs().items()},
                    "labels": {k: _short(v, 300) for k, v in ex.labels().items()},
                    "baseline": b,
                    "optimized": f,
                })
        predictors = {}
        base_named = dict(student.named_predictors())
        for name, p in program.named_predictors():
            base = base_named.get(name)
            predictors[name] = {
                "instructions": p.signature.instructions,
                "baseline_instructions": base.signature.instructions if base is not None else "",
                "signature": p.signature.signature_string(),
                "demos": [to_jsonable(d.to_dict() if isinstance(d, Example) else dict(d)) for d in p.demos],
            }
        usage = tracker.to_dict()
        usage["calls_by_role"] = dict(run.budget.by_role)
        usage["budget_calls"] = run.budget.calls
        usage["replayed_calls"] = run.budget.replayed_calls
        return OptimizationResult(
            optimizer=type(self).__name__,
            settings=self.settings_identity(),
            trials=list(run.trials),
            baseline_score=full.get(baseline_fp),
            final_score=full.get(final_fp),
            predictors=predictors,
            candidates=run.notes.get("candidates", {}),
            best_params=run.notes.get("best_params", {}),
            per_example=per_example,
            usage=usage,
            calls=run.budget.calls,
            cost=run.budget.cost,
            max_lm_calls=self.max_lm_calls,
            seconds=time.perf_counter() - run.started,
            stopped=run.stopped,
            resumed=run.resumed,
            run_dir=str(self.run_dir) if self.run_dir is not None else None,
            metric=metric_name(run.metric) if run.metric is not None else None,
            valset_size=len(valset),
        )


def _rows(run: Run, fp: str, examples: list[Example]) -> list[dict[str, Any] | None]:
    out: list[dict[str, Any] | None] = []
    for ex in examples:
        rec = run.store.get("score", f"{fp}/{example_key(ex)}")
        out.append(None if rec is None else dict(rec.value))
    return out


__all__ = [
    "Budget",
    "GuardedLM",
    "Optimizer",
    "Run",
    "call_metric",
    "check_examples",
    "example_key",
    "logger",
    "program_fingerprint",
]


def score_candidate(run: Run, program: Module, valset: list[Example], params: dict[str, Any],
                    kind: str = "candidate") -> float | None:
    """Score a finished candidate on the whole validation set as a trial; None if the budget ran out first."""
    fp = program_fingerprint(program)
    try:
        t = run.trial(kind, params, fp, valset, program)
    except BudgetExceededError:
        run.stopped = "budget"
        return None
    run.notes.setdefault("full_scores", {})[fp] = t.score
    return t.score
