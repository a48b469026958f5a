"""BootstrapFewShot: demos from the program's own successful runs, for every predictor.

A teacher (by default a copy of the student) runs on training examples with trace capture on
(``settings.context(trace=[...])``: every Predict call appends ``(predictor, inputs, prediction)``). When the
metric accepts the final prediction, each traced step becomes a demo of the predictor that made it (the
teacher's and the student's ``named_predictors()`` line up by name), so a multi-step program gets demos for
its intermediate steps too, which no labelled example could give. Rounds after the first sample the teacher at
temperature 1.0 with a fresh ``rollout_id`` to get new traces for the examples that failed.

Each trace is stored in the run store under (teacher fingerprint, round, example), so candidate demo sets that
revisit an example (random search, MIPROv2) and resumed runs reuse it without an LM call.

BootstrapFewShot keeps the demos only when they help by more than the noise (``selection.py``): with a valset,
the program with and without them is scored on it (the demos were made from the training set, so the whole
valset is unseen) and compared by a paired test; without one, by k-fold cross-validation over the training
set (each fold's demos bootstrapped from the other folds). ``holdout=None`` skips the check.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any

from .. import settings
from ..data import Example
from ..errors import BudgetExceededError, ConfigurationError, PromptlessError
from ..evaluate.scoring import Metric, call_metric, metric_name
from ..modules.module import Module
from ..values import to_jsonable
from .base import Optimizer, score_candidate
from .fewshot import labeled_demos
from .fingerprint import example_key, program_fingerprint
from .run import Run
from .selection import (
    CV_FOLDS,
    CV_MAX_EXAMPLES,
    DEFAULT_ALPHA,
    MIN_CV,
    Selection,
    output_names,
    paired_test,
    split_folds,
)


@dataclass
class DemoSet:
    """Demos per predictor name, and how they were made."""

    label: str
    demos: dict[str, list[Example]] = field(default_factory=dict)

    def apply(self, program: Module) -> Module:
        for name, p in program.named_predictors():
            p.demos = list(self.demos.get(name, []))
        return program

    def describe(self) -> dict[str, Any]:
        return {"label": self.label, "sizes": {n: len(d) for n, d in self.demos.items()}}


def _demo_example(values: dict[str, Any], predictor: Any) -> Example:
    names = [n for n in predictor.signature.input_fields if n in values]
    ex = Example(values)
    return ex.with_inputs(*names) if names else ex


def _trace_one(run: Run, bound: Any, names: dict[int, str], example: Example, metric: Metric | None,
               threshold: float | None) -> dict[str, Any]:
    trace: list[Any] = []
    try:
        with run.task_context(), settings.context(trace=trace):
            pred = bound(**example.inputs().to_dict())
    except (BudgetExceededError, ConfigurationError):
        raise
    except Exception as exc:  # a failing example gives no demo; the error is counted
        return {"ok": False, "error": f"{type(exc).__name__}: {exc}"[:600], "steps": []}
    if metric is None:
        ok = True
    else:
        score = call_metric(metric, example, pred, trace)
        ok = score >= threshold if threshold is not None else bool(score)
    steps = []
    if ok:
        for predictor, inputs, prediction in trace:
            name = names.get(id(predictor))
            if name is None:
                continue
            values = {**dict(inputs), **{k: v for k, v in prediction.items()}}
            steps.append([name, to_jsonable(values)])
    return {"ok": ok, "error": None, "steps": steps}


def _all_teacher_calls_failed(errors: list[str]) -> None:
    """Raise: the teacher failed on every training example it ran, so there is nothing to learn from."""
    from collections import Counter

    from ..evaluate.result import error_kind

    kinds = ", ".join(f"{n} {kind}" for kind, n in Counter(error_kind(e) for e in errors).most_common())
    first = errors[0].strip().splitlines()[0] if errors[0].strip() else ""
    raise ConfigurationError(
        f"bootstrapping found nothing to learn from: the teacher program failed on every one of the {len(errors)} "
        f"training examples it ran ({kinds}). First error: {first}. Fix the cause (run the program on one "
        "training example to see it), then optimize again"
    )


def bootstrap(
    run: Run,
    student: Module,
    trainset: list[Example],
    *,
    teacher: Module | None = None,
    metric: Metric | None = None,
    metric_threshold: float | None = None,
    max_bootstrapped_demos: int = 4,
    max_labeled_demos: int = 16,
    max_rounds: int = 1,
    max_errors: int | None = None,
    labeled_seed: int = 0,
    label: str = "bootstrap",
) -> DemoSet:
    """Bootstrapped (then labelled) demos per predictor of ``student``.

    Stops early, keeping what it has, when the run's budget runs out (``run.stopped`` says so).
    """
    teacher = teacher if teacher is not None else student.deepcopy()
    student_names = [n for n, _ in student.named_predictors()]
    teacher_names = [n for n, _ in teacher.named_predictors()]
    if student_names != teacher_names:
        raise ConfigurationError(
            f"the teacher's predictors {teacher_names} do not line up with the student's {student_names}; "
            "the teacher must be the same program (e.g. student.deepcopy() with other demos or LM)"
        )
    teacher_fp = program_fingerprint(teacher)
    by_name: dict[str, list[Example]] = {n: [] for n in student_names}
    preds = dict(student.named_predictors())
    passed: set[int] = set()
    errors: list[str] = []
    n_traced = 0
    if max_bootstrapped_demos > 0:
        try:
            for round_idx in range(max_rounds):
                bound = run.bind(teacher)
                if round_idx > 0:
                    for p in bound.predictors():
                        p.config = {**p.config, "temperature": 1.0, "rollout_id": f"bootstrap-round-{round_idx}"}
                names = {id(p): n for n, p in bound.named_predictors()}
                runner = run.executor.bind(bound)  # the traces run where the run's examples run
                for i, ex in enumerate(trainset):
                    if len(passed) >= max_bootstrapped_demos:
                        break
                    if i in passed:
                        continue
                    key = f"{teacher_fp}/{metric_name(metric) if metric else '-'}/{metric_threshold}/{round_idx}/" \
                          f"{example_key(ex)}"
                    def trace(ex: Example = ex, runner: Any = runner, names: dict[int, str] = names) -> Any:
                        return _trace_one(run, runner, names, ex, metric, metric_threshold)

                    res = run.cached("trace", key, trace)
                    n_traced += 1
                    if res.get("error"):
                        errors.append(res["error"])
                        if max_errors is not None and len(errors) > max_errors:
                            raise PromptlessError(
                                f"bootstrapping stopped: the teacher failed on {len(errors)} examples "
                                f"(max_errors={max_errors}). First error: {errors[0]}"
                            )
                    if res.get("ok"):
                        passed.add(i)
                        for name, values in res["steps"]:
                            if name in by_name:
                                by_name[name].append(_demo_example(values, preds[name]))
                if len(passed) >= max_bootstrapped_demos:
                    break
        except BudgetExceededError:
            run.stopped = "budget"
        if n_traced and len(errors) == n_traced and run.stopped != "budget":
            _all_teacher_calls_failed(errors)
    out: dict[str, list[Example]] = {}
    rest = [ex for i, ex in enumerate(trainset) if i not in passed]
    for name in student_names:
        augmented = by_name[name][:max_bootstrapped_demos]
        n_raw = max(0, max_labeled_demos - len(augmented))
        out[name] = augmented + labeled_demos(rest, n_raw, sample=True, seed=labeled_seed)
    return DemoSet(label, out)


def demo_candidates(
    run: Run,
    student: Module,
    trainset: list[Example],
    n: int,
    *,
    teacher: Module | None = None,
    metric: Metric | None = None,
    metric_threshold: float | None = None,
    max_bootstrapped_demos: int = 4,
    max_labeled_demos: int = 16,
    max_rounds: int = 1,
    max_errors: int | None = None,
    seed: int = 0,
    include_zero_shot: bool = True,
) -> list[DemoSet]:
    """Up to ``n`` distinct candidate demo sets: zero-shot, labelled only, the unshuffled bootstrap, then
    bootstraps of a shuffled training set with a random number (1..max) of bootstrapped demos."""
    sets: list[DemoSet] = []
    seen: set[str] = set()

    def add(ds: DemoSet) -> None:
        key = repr(sorted((k, [sorted(to_jsonable(d.to_dict()).items()) for d in v]) for k, v in ds.demos.items()))
        if key not in seen:
            seen.add(key)
            sets.append(ds)

    names = [n for n, _ in student.named_predictors()]
    if include_zero_shot:
        add(DemoSet("zero-shot", {name: [] for name in names}))
    if max_labeled_demos > 0 and len(sets) < n:
        demos = labeled_demos(trainset, max_labeled_demos, sample=True, seed=seed)
        add(DemoSet("labelled", {name: list(demos) for name in names}))
    attempts = 0
    while len(sets) < n and attempts < 3 * n + 3 and run.stopped != "budget":
        idx = attempts
        attempts += 1
        if max_bootstrapped_demos <= 0:
            if max_labeled_demos <= 0:
                break
            demos = labeled_demos(trainset, max_labeled_demos, sample=True, seed=seed + 1 + idx)
            add(DemoSet(f"labelled (seed {seed + 1 + idx})", {name: list(demos) for name in names}))
            continue
        if idx == 0:
            train, size, tag = trainset, max_bootstrapped_demos, "bootstrap"
        else:
            rng = random.Random(seed + idx)
            train = list(trainset)
            rng.shuffle(train)
            size = rng.randint(1, max_bootstrapped_demos)
            tag = f"bootstrap (shuffle {seed + idx}, {size} demos)"
        add(bootstrap(
            run, student, train, teacher=teacher, metric=metric, metric_threshold=metric_threshold,
            max_bootstrapped_demos=size, max_labeled_demos=max_labeled_demos, max_rounds=max_rounds,
            max_errors=max_errors, labeled_seed=seed + idx, label=tag,
        ))
    return sets[:n]


class BootstrapFewShot(Optimizer):
    """Demos from the teacher's traces that pass the metric, plus labelled examples to fill up.

    ``BootstrapFewShot(metric=m, max_bootstrapped_demos=4, max_labeled_demos=16).compile(program, trainset=t)``.
    ``metric_threshold``: a trace passes when ``metric >= threshold`` (otherwise when the metric is truthy).
    ``teacher``: the program that makes the traces (default: a copy of the student). ``max_rounds > 1`` tries
    the failed examples again at temperature 1.0. ``max_errors``: stop with an error when the teacher fails on
    more examples than this (None: never).

    The demos replace the program's own only when they win by more than the noise (a paired test at level
    ``alpha``, ``selection_test`` "auto", "mcnemar", "sign" or "bootstrap"): with ``valset`` on it, else by
    ``cv_folds``-fold cross-validation over the training set (at most 100 of its examples are scored; fewer
    than 10 training examples are not checked). This costs two runs of the program per example scored;
    ``holdout=None`` skips the check (and the calls), as DSPy does. Without a metric nothing is checked.
    """

    def __init__(
        self,
        metric: Metric | None = None,
        metric_threshold: float | None = None,
        teacher: Module | None = None,
        max_bootstrapped_demos: int = 4,
        max_labeled_demos: int = 16,
        max_rounds: int = 1,
        max_errors: int | None = None,
        *,
        holdout: Any = "auto",
        alpha: float = DEFAULT_ALPHA,
        selection_test: str = "auto",
        cv_folds: int = CV_FOLDS,
        **common: Any,
    ) -> None:
        super().__init__(metric=metric, **common)
        if holdout not in ("auto", None):
            raise ConfigurationError(
                f"BootstrapFewShot takes holdout='auto' (check the demos on the valset, or by cross-validation "
                f"over the training set without one) or None (no check), got {holdout!r}: it searches nothing on "
                "the validation set, so there is no part of it to hold out"
            )
        if isinstance(cv_folds, bool) or not isinstance(cv_folds, int) or cv_folds < 2:
            raise ConfigurationError(f"cv_folds must be a whole number >= 2, got {cv_folds!r}")
        self._init_selection(holdout, alpha, selection_test)
        self.cv_folds = cv_folds
        for name, value in (("max_bootstrapped_demos", max_bootstrapped_demos),
                            ("max_labeled_demos", max_labeled_demos), ("max_rounds", max_rounds)):
            if not isinstance(value, int) or value < 0:
                raise ConfigurationError(f"{name} must be a whole number >= 0, got {value!r}")
        self.metric_threshold = metric_threshold
        self.teacher = teacher
        self.max_bootstrapped_demos = max_bootstrapped_demos
        self.max_labeled_demos = max_labeled_demos
        self.max_rounds = max(1, max_rounds)
        self.max_errors = max_errors

    def settings_identity(self) -> dict[str, Any]:
        return {
            **super().settings_identity(),
            "metric_threshold": self.metric_threshold,
            "max_bootstrapped_demos": self.max_bootstrapped_demos,
            "max_labeled_demos": self.max_labeled_demos,
            "max_rounds": self.max_rounds,
            **self._selection_identity(),
            "cv_folds": self.cv_folds,
        }

    def _bootstrap(self, run: Run, student: Module, trainset: list[Example], teacher: Module | None,
                   label: str = "bootstrap") -> DemoSet:
        return bootstrap(
            run, student, trainset, teacher=teacher or self.teacher, metric=self.metric,
            metric_threshold=self.metric_threshold, max_bootstrapped_demos=self.max_bootstrapped_demos,
            max_labeled_demos=self.max_labeled_demos, max_rounds=self.max_rounds, max_errors=self.max_errors,
            label=label,
        )

    def _compile(self, run: Run, student: Module, trainset: list[Example], valset: list[Example],
                 teacher: Module | None, **kwargs: Any) -> Module:
        if kwargs:
            raise TypeError(f"BootstrapFewShot.compile() got unexpected option(s): {', '.join(sorted(kwargs))}")
        run.progress.update(stage="bootstrapping")
        demos = self._bootstrap(run, student, trainset, teacher)
        program = demos.apply(student.deepcopy())
        run.notes.candidates = {"demo_sets": [demos.describe()]}
        params = demos.describe()
        if self.metric is None or self.holdout is None:
            if valset and self.metric is not None and run.stopped != "budget":
                run.progress.update(stage="scoring")
                self._score_baseline(run, student, valset)
                if run.stopped != "budget":
                    score_candidate(run, program, valset, params)
            run.notes.selection = {"mode": "off", "rule": "off (holdout=None): the demos are kept without a check"
                                   if self.metric is not None else "none: without a metric nothing is checked",
                                   "decision": "accepted without a test", "pick": "candidate"}
            return program
        if valset:
            sel = Selection(run, valset, holdout="auto", alpha=self.alpha, test=self.selection_test, unseen=True)
            if run.stopped != "budget":
                run.progress.update(stage="scoring")
                self._score_baseline(run, student, valset)
                if run.stopped != "budget":
                    score_candidate(run, program, valset, params)
            return sel.decide(student, program, params)
        return self._cross_validate(run, student, trainset, teacher, program, params)

    def _cross_validate(self, run: Run, student: Module, trainset: list[Example], teacher: Module | None,
                        program: Module, params: dict[str, Any]) -> Module:
        """Keep ``program`` (the demos bootstrapped from the whole training set) only when bootstrapping helps
        in k-fold cross-validation: each fold's examples are scored with the starting program and with demos
        bootstrapped from the other folds, and the paired test compares the two over all folds."""
        n = len(trainset)
        rec: dict[str, Any] = {"mode": "cross-validation", "alpha": self.alpha, "test": self.selection_test,
                               "pick": "starting program", "decision": "not reached", "reason": ""}
        run.notes.selection = rec
        base_fp = program_fingerprint(student)
        if program_fingerprint(program) == base_fp:
            rec.update(rule="no check: bootstrapping changed nothing", decision="nothing to test",
                       reason="no demo was found")
            return student.deepcopy()
        if n < MIN_CV:
            rec.update(mode="none", rule=f"none: {n} training examples are too few to cross-validate (fewer than "
                       f"{MIN_CV}) and there is no valset", decision="accepted without a test", pick="candidate",
                       reason="no check possible; the bootstrapped demos are kept")
            run.notes.best_params = dict(params)
            return program
        if run.stopped == "budget":
            rec.update(rule="not run: the budget ran out while bootstrapping", decision="not tested",
                       reason="no evidence that the demos help; the starting program is kept")
            return student.deepcopy()
        sample = list(trainset)
        if n > CV_MAX_EXAMPLES:
            keep = sorted(random.Random("promptless-cv-sample").sample(range(n), CV_MAX_EXAMPLES))
            sample = [trainset[i] for i in keep]
        folds = split_folds(sample, self.cv_folds, seed=0, keys=output_names(student))
        rec.update(rule=f"{len(folds)}-fold cross-validation over {len(sample)} of the {n} training examples "
                   "(no valset): each fold scored with demos bootstrapped from the other folds",
                   folds=len(folds), n_cv=len(sample))
        base_scores: list[float | None] = []
        cand_scores: list[float | None] = []
        try:
            for i, fold in enumerate(folds):
                run.progress.update(stage=f"cross-validation {i + 1}/{len(folds)}")
                held = [sample[j] for j in fold]
                keys = {example_key(ex) for ex in held}
                rest = [ex for ex in trainset if example_key(ex) not in keys]
                ds = self._bootstrap(run, student, rest, teacher, label=f"fold {i + 1}")
                if run.stopped == "budget":
                    raise BudgetExceededError("the budget ran out while bootstrapping a fold")
                fold_program = ds.apply(student.deepcopy())
                fold_fp = program_fingerprint(fold_program)
                run.trial("holdout", {"fold": i + 1, "program": "starting program"}, base_fp, held, student)
                run.trial("holdout", {"fold": i + 1, "program": "candidate", **ds.describe()}, fold_fp, held,
                          fold_program)
                base_scores += run.seen_scores(base_fp, held)
                cand_scores += run.seen_scores(fold_fp, held)
        except BudgetExceededError:
            run.stopped = "budget"
            rec.update(decision="not tested", reason="the budget ran out during cross-validation, so there is no "
                       "evidence that the demos help; the starting program is kept")
            return student.deepcopy()
        pairs = [(b, c) for b, c in zip(base_scores, cand_scores, strict=True) if b is not None and c is not None]
        result = paired_test([b for b, _ in pairs], [c for _, c in pairs], alpha=self.alpha,
                             method=self.selection_test)
        rec["evidence"] = result.to_dict()
        rec["scores"] = {"starting program": {"seen": None, "unseen": result.baseline},
                         "candidate": {"seen": None, "unseen": result.candidate}}
        rec["candidate"] = dict(params)
        if result.significant:
            rec.update(decision="accepted", pick="candidate", reason=(
                f"bootstrapped demos beat the starting program in cross-validation: {result.describe()}"))
            run.notes.best_params = dict(params)
            return program
        rec.update(decision="rejected", reason=(
            f"bootstrapped demos do not beat the starting program in cross-validation by more than the noise at "
            f"alpha {self.alpha:g}: {result.describe()}; the starting program is kept"))
        return student.deepcopy()


__all__ = ["BootstrapFewShot", "DemoSet", "bootstrap", "demo_candidates"]
