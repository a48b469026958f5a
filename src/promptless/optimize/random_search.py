"""BootstrapFewShotWithRandomSearch: several candidate demo sets, each scored on the validation set, best kept.

The candidates are: zero-shot, labelled demos only, the unshuffled bootstrap, then bootstraps of a shuffled
training set with a random number of bootstrapped demos (``bootstrap.demo_candidates``). Traces and scores
are memoised, so candidates that share traces cost fewer calls and an identical candidate costs none.
"""

from __future__ import annotations

from typing import Any

from ..data import Example
from ..errors import BudgetExceededError, ConfigurationError
from ..evaluate.scoring import Metric
from ..modules.module import Module
from .base import Optimizer
from .bootstrap import DemoSet, demo_candidates
from .fingerprint import program_fingerprint
from .run import Run


class BootstrapFewShotWithRandomSearch(Optimizer):
    """Try ``num_candidate_programs`` bootstrapped candidates (plus zero-shot, labelled-only and the unshuffled
    bootstrap) and keep the best on ``valset`` (the training set when no valset is given).

    The result is never worse on valset than the program it started from: the starting program is scored
    first and kept on ties.
    """

    def __init__(
        self,
        metric: Metric,
        num_candidate_programs: int = 8,
        max_bootstrapped_demos: int = 4,
        max_labeled_demos: int = 16,
        *,
        metric_threshold: float | None = None,
        teacher: Module | None = None,
        max_rounds: int = 1,
        max_errors: int | None = None,
        seed: int = 0,
        num_threads: int = 1,
        **common: Any,
    ) -> None:
        if metric is None:
            raise ConfigurationError("BootstrapFewShotWithRandomSearch needs a metric to compare candidates")
        super().__init__(metric=metric, num_threads=num_threads, **common)
        if not isinstance(num_candidate_programs, int) or num_candidate_programs < 0:
            raise ConfigurationError(
                f"num_candidate_programs must be a whole number >= 0, got {num_candidate_programs!r}"
            )
        self.num_candidate_programs = num_candidate_programs
        self.max_bootstrapped_demos = max_bootstrapped_demos
        self.max_labeled_demos = max_labeled_demos
        self.metric_threshold = metric_threshold
        self.teacher = teacher
        self.max_rounds = max_rounds
        self.max_errors = max_errors
        self.seed = seed

    def settings_identity(self) -> dict[str, Any]:
        return {
            **super().settings_identity(),
            "num_candidate_programs": self.num_candidate_programs,
            "max_bootstrapped_demos": self.max_bootstrapped_demos,
            "max_labeled_demos": self.max_labeled_demos,
            "metric_threshold": self.metric_threshold,
            "max_rounds": self.max_rounds,
            "seed": self.seed,
        }

    def _planned_trials(self) -> int | None:
        return self.num_candidate_programs + 4

    def _compile(self, run: Run, student: Module, trainset: list[Example], valset: list[Example],
                 teacher: Module | None, **kwargs: Any) -> Module:
        if kwargs:
            raise TypeError(
                f"BootstrapFewShotWithRandomSearch.compile() got unexpected option(s): {', '.join(sorted(kwargs))}"
            )
        val = valset or trainset
        run.notes.valset = val
        run.progress.update(stage="baseline")
        best_score = self._score_baseline(run, student, val)
        best_program: Module = student.deepcopy()
        if best_score is None:
            return best_program
        described = []
        n = self.num_candidate_programs + 3
        candidate_sets: list[DemoSet] = []
        for i in range(n):
            # Build one candidate at a time so that a budget stop keeps the ones already scored.
            run.progress.update(stage=f"candidate {i + 1}/{n}")
            sets = demo_candidates(
                run, student, trainset, i + 1, teacher=teacher or self.teacher, metric=self.metric,
                metric_threshold=self.metric_threshold, max_bootstrapped_demos=self.max_bootstrapped_demos,
                max_labeled_demos=self.max_labeled_demos, max_rounds=self.max_rounds, max_errors=self.max_errors,
                seed=self.seed,
            )
            if len(sets) <= len(candidate_sets):
                break  # no new distinct candidate (or the budget ran out while bootstrapping)
            ds = sets[-1]
            candidate_sets.append(ds)
            program = ds.apply(student.deepcopy())
            fp = program_fingerprint(program)
            params = {"candidate": len(candidate_sets) - 1, **ds.describe()}
            described.append(params)
            try:
                t = run.trial("candidate", params, fp, val, program)
            except BudgetExceededError:
                run.stopped = "budget"
                break
            run.notes.add_full_score(fp, t.score)
            if t.score is not None and t.score > best_score:
                best_score, best_program = t.score, program
                run.notes.best_params = params
        run.notes.candidates = {"demo_sets": described}
        return best_program


__all__ = ["BootstrapFewShotWithRandomSearch"]
