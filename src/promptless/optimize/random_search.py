"""BootstrapFewShotWithRandomSearch: several candidate demo sets, each scored on the validation set, best kept.

The candidates are: zero-shot, labelled demos only, the unshuffled bootstrap, then bootstraps of a shuffled
training set with a random number of bootstrapped demos (``bootstrap.demo_candidates``), and with ``knn=`` an
embedder, per-input nearest-neighbour demos (``knn.KNNProgram``). Traces and scores are memoised, so candidates
that share traces cost fewer calls and an identical candidate costs none.

The selection (``selection.py``): part of the validation set is held out from the search; the candidate with
the best score on the rest replaces the starting program only when it also beats it on the held-out part by
more than the noise (a paired test at level ``alpha``).
"""

from __future__ import annotations

from typing import Any

from ..data import Example
from ..errors import BudgetExceededError, ConfigurationError
from ..evaluate.scoring import Metric
from ..modules.module import Module
from ..modules.neighbours import as_embedder
from .base import Optimizer
from .bootstrap import DemoSet, demo_candidates
from .fingerprint import example_key, program_fingerprint
from .knn import knn_candidate, vectorizer_name
from .run import Run
from .selection import DEFAULT_ALPHA, Selection


class BootstrapFewShotWithRandomSearch(Optimizer):
    """Try ``num_candidate_programs`` bootstrapped candidates (plus zero-shot, labelled-only and the unshuffled
    bootstrap) and keep the best on ``valset`` (the training set when no valset is given).

    The starting program is scored first and kept on ties. Selection: ``holdout`` ("auto": a third of the
    validation set, at least 20 examples; a fraction; a count; None: pick on the whole validation set without a
    check) is kept from the search, and the search's best replaces the starting program only when it beats it
    there by a paired test at level ``alpha`` (``selection_test``: "auto", "mcnemar", "sign", "bootstrap").
    Without a valset the held-out part comes out of the training set, and no demo is taken from it.
    ``knn``: an embedder (``pl.Embedder(...)`` or a function texts -> vectors) adds one candidate whose demos
    are, for each input, its ``knn_k`` nearest training examples (``KNNFewShot``'s); None leaves it out.
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
        holdout: Any = "auto",
        alpha: float = DEFAULT_ALPHA,
        selection_test: str = "auto",
        knn: Any = None,
        knn_k: int | None = None,
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
        self._init_selection(holdout, alpha, selection_test)
        knn = as_embedder(knn, "BootstrapFewShotWithRandomSearch")
        if knn_k is not None and (not isinstance(knn_k, int) or knn_k < 1):
            raise ConfigurationError(f"knn_k must be a whole number >= 1, got {knn_k!r}")
        self.knn = knn
        self.knn_k = knn_k

    def settings_identity(self) -> dict[str, Any]:
        return {
            **super().settings_identity(),
            "num_candidate_programs": self.num_candidate_programs,
            "max_bootstrapped_demos": self.max_bootstrapped_demos,
            "max_labeled_demos": self.max_labeled_demos,
            "metric_threshold": self.metric_threshold,
            "max_rounds": self.max_rounds,
            "seed": self.seed,
            **self._selection_identity(),
            **({"knn": vectorizer_name(self.knn), "knn_k": self._knn_k()} if self.knn is not None else {}),
        }

    def _knn_k(self) -> int:
        return self.knn_k or max(1, self.max_bootstrapped_demos, self.max_labeled_demos)

    def _planned_trials(self) -> int | None:
        return self.num_candidate_programs + 4

    def _compile(self, run: Run, student: Module, trainset: list[Example], valset: list[Example],
                 teacher: Module | None, restrict: Any = None, **kwargs: Any) -> Module:
        wanted = self._check_restrict(restrict)
        if kwargs:
            raise TypeError(
                f"BootstrapFewShotWithRandomSearch.compile() got unexpected option(s): {', '.join(sorted(kwargs))}"
            )
        if valset:
            sel = Selection(run, valset, holdout=self.holdout, alpha=self.alpha, test=self.selection_test,
                            seed=self.seed)
            demo_source = trainset
        else:  # the held-out part comes out of the training set, and gives no demo
            sel = Selection(run, trainset, holdout=self.holdout, alpha=self.alpha, test=self.selection_test,
                            seed=self.seed)
            held = {example_key(ex) for ex in sel.holdout}
            demo_source = [ex for ex in trainset if example_key(ex) not in held]
        val = sel.search
        run.progress.update(stage="baseline")
        best_score = self._score_baseline(run, student, val)
        if best_score is None or not sel.score_baseline(student):
            return student.deepcopy()
        best_program: Module | None = None
        best_params: dict[str, Any] = {}
        described: list[dict[str, Any]] = []
        # The nearest-neighbour candidate first: it is one program, built without an LM call, and a budget that
        # stops the search among the bootstrapped demo sets still has it scored.
        knn_note = None
        if self.knn is not None:
            if not valset:
                knn_note = ("left out: without a valset the search examples are the training examples the "
                            "neighbours come from")
            else:
                built, knn_note = knn_candidate(student.deepcopy(), demo_source, self.knn, self._knn_k())
                if built is not None:
                    params: dict[str, Any] = {"candidate": "knn", "label": f"knn (k={self._knn_k()})"}
                    described.append(params)
                    score = self._score(run, built, val, params)
                    if score is not None and score > best_score:
                        best_score, best_program, best_params = score, built, params
        n = self.num_candidate_programs + 3
        candidate_sets: list[DemoSet] = []
        for i in range(n if run.stopped != "budget" else 0):
            # Build one candidate at a time so that a budget stop keeps the ones already scored.
            run.progress.update(stage=f"candidate {i + 1}/{n}")
            sets = demo_candidates(
                run, student, demo_source, i + 1, teacher=teacher or self.teacher, metric=self.metric,
                metric_threshold=self.metric_threshold, max_bootstrapped_demos=self.max_bootstrapped_demos,
                max_labeled_demos=self.max_labeled_demos, max_rounds=self.max_rounds, max_errors=self.max_errors,
                seed=self.seed,
            )
            if len(sets) <= len(candidate_sets):
                break  # no new distinct candidate (or the budget ran out while bootstrapping)
            ds = sets[-1]
            candidate_sets.append(ds)
            if wanted is not None and len(candidate_sets) - 1 - 3 not in wanted:
                continue  # a candidate compile(restrict=...) left out
            program = ds.apply(student.deepcopy())
            params = {"candidate": len(candidate_sets) - 1, **ds.describe()}
            described.append(params)
            score = self._score(run, program, val, params)
            if score is None:
                break
            if score > best_score:
                best_score, best_program, best_params = score, program, params
        run.notes.candidates = {"demo_sets": described, **({"knn": knn_note} if knn_note else {})}
        return sel.decide(student, best_program, best_params)

    def _check_restrict(self, restrict: Any) -> set[int] | None:
        """``compile(restrict=...)``: DSPy's candidate seeds to score, -3 (zero-shot), -2 (labelled demos only),
        -1 (the unshuffled bootstrap), then 0, 1, ... (the shuffled bootstraps); None scores them all."""
        if restrict is None:
            return None
        try:
            wanted = set(restrict)
        except TypeError:
            raise ConfigurationError(f"restrict must be a list of candidate seeds, got {restrict!r}") from None
        seeds = range(-3, self.num_candidate_programs)
        if not wanted & set(seeds):
            raise ConfigurationError(
                f"restrict={sorted(wanted, key=str)!r} names no candidate: the seeds are -3 (zero-shot), "
                f"-2 (labelled demos), -1 (unshuffled bootstrap) and 0 to {self.num_candidate_programs - 1}"
            )
        return wanted

    def _score(self, run: Run, program: Module, val: list[Example], params: dict[str, Any]) -> float | None:
        """A candidate's score on the search examples (a trial), or None when the budget ran out."""
        fp = program_fingerprint(program)
        try:
            t = run.trial("candidate", params, fp, val, program)
        except BudgetExceededError:
            run.stopped = "budget"
            return None
        run.notes.add_full_score(fp, t.score)
        return t.score


__all__ = ["BootstrapFewShotWithRandomSearch"]
