"""BootstrapFewShot: demos from the program's own successful runs, for every predictor.

A teacher (by default a copy of the student) runs on training examples with trace capture on
(``settings.context(trace=[...])``: every Predict call appends ``(predictor, inputs, prediction)``). When the
metric accepts the final prediction, each traced step becomes a demo of the predictor that made it (the
teacher's and the student's ``named_predictors()`` line up by name), so a multi-step program gets demos for
its intermediate steps too, which no labelled example could give. Rounds after the first sample the teacher at
temperature 1.0 with a fresh ``rollout_id`` to get new traces for the examples that failed.

Each trace is stored in the run store under (teacher fingerprint, round, example), so candidate demo sets that
revisit an example (random search, MIPROv2) and resumed runs reuse it without an LM call.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any

from .. import settings
from ..adapters.parsing import to_jsonable
from ..data import Example
from ..errors import BudgetExceededError, ConfigurationError, PromptlessError
from ..evaluate.scoring import Metric, call_metric, metric_name
from ..modules.module import Module
from .base import Optimizer, score_candidate
from .fewshot import labeled_demos
from .fingerprint import example_key, program_fingerprint
from .run import Run


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


def _trace_one(run: Run, bound: Module, names: dict[int, str], example: Example, metric: Metric | None,
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

    from ..evaluate.evaluate import error_kind

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
                for i, ex in enumerate(trainset):
                    if len(passed) >= max_bootstrapped_demos:
                        break
                    if i in passed:
                        continue
                    key = f"{teacher_fp}/{metric_name(metric) if metric else '-'}/{metric_threshold}/{round_idx}/" \
                          f"{example_key(ex)}"
                    def trace(ex: Example = ex, bound: Module = bound, names: dict[int, str] = names) -> Any:
                        return _trace_one(run, bound, names, ex, metric, metric_threshold)

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
    more examples than this (None: never). With ``valset``, the program is scored before and after.
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
        **common: Any,
    ) -> None:
        super().__init__(metric=metric, **common)
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
        }

    def _compile(self, run: Run, student: Module, trainset: list[Example], valset: list[Example],
                 teacher: Module | None, **kwargs: Any) -> Module:
        if kwargs:
            raise TypeError(f"BootstrapFewShot.compile() got unexpected option(s): {', '.join(sorted(kwargs))}")
        run.progress.update(stage="bootstrapping")
        demos = bootstrap(
            run, student, trainset, teacher=teacher or self.teacher, metric=self.metric,
            metric_threshold=self.metric_threshold, max_bootstrapped_demos=self.max_bootstrapped_demos,
            max_labeled_demos=self.max_labeled_demos, max_rounds=self.max_rounds, max_errors=self.max_errors,
        )
        program = demos.apply(student.deepcopy())
        run.notes.candidates = {"demo_sets": [demos.describe()]}
        if valset and self.metric is not None and run.stopped != "budget":
            run.progress.update(stage="scoring")
            self._score_baseline(run, student, valset)
            if run.stopped != "budget":
                score_candidate(run, program, valset, demos.describe())
        return program


__all__ = ["BootstrapFewShot", "DemoSet", "bootstrap", "demo_candidates"]
