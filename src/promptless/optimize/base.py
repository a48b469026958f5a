"""The base of every optimizer: ``Optimizer.compile`` and the steps the optimizers share.

An optimizer subclasses ``Optimizer`` and writes ``_compile(run, student, trainset, valset, teacher, **kw)``.
``compile`` checks the program and the data, opens a ``Run`` (``run.py``: the budget, the run store, the
memoised scoring and the trials) and wraps ``_compile`` with what every optimizer needs:

- **A budget.** ``max_lm_calls`` and ``max_cost`` cover every LM the run uses (``budget.py``). When the budget
  runs out the optimizer stops and returns the best program found so far (``result.stopped == "budget"``).
- **Resuming.** With ``run_dir=...`` the same ``compile`` call after a crash continues where the first one
  stopped; a run directory made with other settings, another program or other data is refused.
- **Progress.** A live line (trial, best score, calls spent) on a terminal.
- **A result.** ``program.optimization`` (and ``optimizer.result``) is an ``OptimizationResult`` with the trials,
  baseline and final scores, the best instructions and demos; ``write_report(result, "run.html")``
  (``report.py``) writes it as one HTML page.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from ..data import Example
from ..errors import BudgetExceededError, ConfigurationError
from ..evaluate.scoring import Metric, metric_name, short
from ..lm.usage import track_usage
from ..modules.module import Module
from ..values import to_jsonable
from .budget import Budget
from .fingerprint import examples_fingerprint, older_prompt_fingerprints, program_fingerprint, prompt_fingerprint
from .result import OptimizationResult
from .run import Run
from .selection import DEFAULT_ALPHA, check_holdout, check_test_options, selection_identity


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


class Optimizer:
    """Base of the optimizers (DSPy calls it a teleprompter): ``compile(student, trainset=...) -> Module``.

    Common options:

    - ``metric``: ``metric(example, prediction, trace=None) -> bool | float``.
    - ``max_lm_calls`` / ``max_cost``: the budget over every LM the run uses; once reached the run stops and the
      best program so far is returned (``result.stopped == "budget"``).
    - ``run_dir``: a directory for the run store; the same call again resumes a crashed or killed run.
    - ``num_threads``: examples scored in parallel.
    - ``executor``: where the examples are scored (``pl.ThreadExecutor`` with ``num_threads`` by default,
      ``pl.AsyncExecutor``, ``pl.RayExecutor``; docs/scale.md); the budget, the run store and the memo stay here.
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
        executor: Any = None,
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
        self.executor = executor
        self.result: OptimizationResult | None = None

    # what identifies a run for resuming (subclasses add their options)
    def settings_identity(self) -> dict[str, Any]:
        return {"metric": metric_name(self.metric) if self.metric is not None else None}

    # -- the selection options (optimizers that pick among candidates) -----------------------------------
    holdout: Any = None
    alpha: float = DEFAULT_ALPHA
    selection_test: str = "auto"

    def _init_selection(self, holdout: Any, alpha: float, selection_test: str) -> None:
        """Check and keep the options of the selection step (``selection.Selection``)."""
        check_holdout(holdout)
        check_test_options(alpha, selection_test)
        self.holdout = holdout
        self.alpha = float(alpha)
        self.selection_test = selection_test

    def _selection_identity(self) -> dict[str, Any]:
        return selection_identity(self.holdout, self.alpha, self.selection_test)

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
        run = Run(type(self).__name__, metric=self.metric, identity=identity, run_dir=self.run_dir,
                  max_lm_calls=self.max_lm_calls, max_cost=self.max_cost, num_threads=self.num_threads,
                  executor=self.executor,
                  identity_also={"prompt": older_prompt_fingerprints(student, train[0] if train else None)},
                  **self._models())
        run.student = student
        from .progress import Progress

        run.progress = Progress(type(self).__name__, enabled=self.progress, max_calls=self.max_lm_calls,
                                total=self._planned_trials())
        try:
            with track_usage() as tracker, run.progress:
                program = self._compile(run, student, train, val, teacher, **kwargs)
            result = self._build_result(run, student, program, val, tracker)
        finally:
            run.store.close()
        result.refused = run.notes.refused
        program.optimization = result
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
        run.notes.baseline_fingerprint = fp
        try:
            t = run.trial("baseline", {}, fp, valset, student)
        except BudgetExceededError:
            run.stopped = "budget"
            return None
        run.notes.add_full_score(fp, t.score)
        self._check_not_all_failed(run, fp, valset)
        return t.score

    def _check_not_all_failed(self, run: Run, fp: str, examples: list[Example]) -> None:
        errors = []
        for row in run.score_rows(fp, examples):
            if row is None or not row.get("error"):
                return
            errors.append(row["error"])
        if errors:
            raise ConfigurationError(
                f"the program failed on every one of the {len(errors)} validation examples, so there is nothing to "
                f"optimize. First error: {errors[0]}"
            )

    def _build_result(
        self, run: Run, student: Module, program: Module, valset: list[Example], tracker: Any
    ) -> OptimizationResult:
        notes = run.notes
        valset = notes.valset if notes.valset is not None else valset
        holdout = list(notes.holdout or [])
        baseline_fp = notes.baseline_fingerprint or program_fingerprint(student)
        final_fp = program_fingerprint(program)
        full = notes.full_scores
        per_example = []
        parts = [("search", ex) for ex in valset] + [("holdout", ex) for ex in holdout]
        if parts and run.metric is not None:
            examples = [ex for _, ex in parts]
            base_scores = run.score_rows(baseline_fp, examples)
            final_scores = run.score_rows(final_fp, examples)
            for (part, ex), b, f in zip(parts, base_scores, final_scores, strict=True):
                row: dict[str, Any] = {
                    "inputs": {k: short(v, 300) for k, v in ex.inputs().items()},
                    "labels": {k: short(v, 300) for k, v in ex.labels().items()},
                    "baseline": b,
                    "optimized": f,
                }
                if holdout:
                    row["part"] = part
                per_example.append(row)
        predictors: dict[str, dict[str, Any]] = {}
        base_named = dict(student.named_predictors())
        for name, p in program.named_predictors():
            base = base_named.get(name)
            predictors[name] = {
                "instructions": p.signature.instructions,
                "baseline_instructions": base.signature.instructions if base is not None else "",
                "signature": p.signature.signature_string(),
                "demos": [to_jsonable(d.to_dict() if isinstance(d, Example) else dict(d)) for d in p.demos],
            }
            brief = calibration_brief(getattr(p, "calibration", None))
            if brief:
                predictors[name]["calibration"] = brief
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
            candidates=notes.candidates,
            best_params=notes.best_params,
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
            valset_size=len(valset) + len(holdout),
            selection=dict(notes.selection),
        )


def score_candidate(run: Run, program: Module, valset: list[Example], params: dict[str, Any],
                    kind: str = "candidate") -> float | None:
    """Score a finished candidate on the whole validation set as a trial; None if the budget ran out first."""
    fp = program_fingerprint(program)
    try:
        t = run.trial(kind, params, fp, valset, program)
    except BudgetExceededError:
        run.stopped = "budget"
        return None
    run.notes.add_full_score(fp, t.score)
    return t.score


def calibration_brief(cal: Any) -> dict[str, Any] | None:
    """A ``pl.Classify`` calibration in a few numbers (for the result and its summary): the scale, how many
    offsets, the nearest-neighbour votes' weight, k and voters when there are votes, and the probe's weight and
    embedder when there is one."""
    if not isinstance(cal, dict):
        return None
    brief: dict[str, Any] = {"method": cal.get("method"), "scale": cal.get("scale", 1.0),
                             "offsets": len(cal.get("offsets") or {})}
    knn = cal.get("knn")
    if isinstance(knn, dict):
        brief.update(knn_weight=knn.get("weight"), knn_k=knn.get("k"), knn_examples=len(knn.get("examples") or []))
    probe = cal.get("probe")
    if isinstance(probe, dict):
        brief.update(probe_weight=probe.get("weight"), probe_embedder=probe.get("embedder"),
                     probe_dimensions=len(probe.get("mean") or []))
    return brief


__all__ = ["Optimizer", "calibration_brief", "check_examples", "score_candidate"]
