"""Label unlabelled inputs with a teacher program, so that a smaller student can be optimized to agree with it.

    labelled = pl.label(teacher, inputs, fields=["category"], max_lm_calls=200, run_dir="runs/label")
    student = pl.Calibrate(metric=category_match).compile(small, trainset=labelled.examples)
    labelled.agreement(student, category_match).score          # how often the student says what the teacher said
    labelled.teacher_accuracy(gold, category_match).score      # how often the teacher was right, where gold exists

``inputs`` are Examples (only their inputs are used: gold labels and other fields are ignored) or dicts (every
key an input). The teacher runs once on each distinct input; the labelled Example holds the inputs and the
teacher's output fields (``fields`` picks some of them), with the same input keys marked.

It is one optimizer-style run (``run.py``): the budget (``max_lm_calls`` / ``max_cost``) holds exactly, across a
kill and a resume too; with ``run_dir`` each input's label is stored as it comes, so the same call again
continues where a crash or a budget stop left off and pays for nothing twice; a run directory made with
another teacher, other inputs or other fields is refused. The teacher failing on an input is not fatal: the
input is listed in ``result.failed`` with the reason (a reply that could not be read is stored, so a resume
does not ask again; an LM error that may pass, such as a timeout, is not, so a resume tries that input again).
An error that every input would hit (no LM, refused credentials, an LM that cannot be reached) stops the run.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .. import settings
from ..data import Example, Prediction
from ..errors import BudgetExceededError, ConfigurationError, LMError
from ..evaluate.evaluate import _is_connection_error, _setup_problem
from ..evaluate.scoring import Metric, short
from ..modules.module import Module
from ..modules.predict import Predict
from ..values import to_jsonable
from .budget import unwrap_lm
from .fingerprint import (
    example_key,
    examples_fingerprint,
    older_prompt_fingerprints,
    program_fingerprint,
    prompt_fingerprint,
)
from .run import Run

KIND = "label"  # the run store's kind for one input's label
_CONNECTION_STREAK = 3  # connection failures in a row that stop a run (at once when nothing has succeeded yet)


@dataclass
class LabelFailure:
    """An input the teacher gave no label for: its position in ``inputs``, the inputs, and why."""

    index: int
    inputs: dict[str, Any]
    error: str
    stored: bool = True  # False: an LM error that may pass (a resume tries the input again)

    def to_dict(self) -> dict[str, Any]:
        return {"index": self.index, "inputs": to_jsonable(self.inputs), "error": self.error, "stored": self.stored}


@dataclass
class LabelResult:
    """What ``label`` made: the labelled examples, the failures, and what it cost.

    ``stopped`` is ``"completed"`` (every input was tried) or ``"budget"`` (the budget ran out: ``pending``
    inputs were not tried; ``message`` says how to go on). ``calls`` / ``cost`` are what the run has been
    charged, the calls of earlier processes of a resumed run included (``replayed_calls`` of them).
    """

    examples: list[Example]
    failed: list[LabelFailure]
    calls: int
    cost: float
    stopped: str
    seconds: float
    fields: list[str] | None = None  # the fields asked for (None: the teacher's output fields)
    pending: int = 0  # inputs not tried because the budget ran out
    replayed_calls: int = 0
    resumed: bool = False
    run_dir: str | None = None
    max_lm_calls: int | None = None
    message: str = ""
    n_inputs: int = 0
    _outputs: dict[str, dict[str, Any]] = field(default_factory=dict, repr=False)  # input key -> teacher outputs
    _errors: dict[str, str] = field(default_factory=dict, repr=False)  # input key -> why the teacher failed

    def __len__(self) -> int:
        return len(self.examples)

    def __iter__(self) -> Iterator[Example]:
        return iter(self.examples)

    def __getitem__(self, i: int) -> Example:
        return self.examples[i]

    @property
    def fresh_calls(self) -> int:
        """The calls this process made (``calls`` less the replayed ones)."""
        return self.calls - self.replayed_calls

    def summary(self) -> str:
        parts = [f"labelled {len(self.examples)} of {self.n_inputs} inputs"]
        if self.failed:
            parts.append(f"{len(self.failed)} failed")
        if self.pending:
            parts.append(f"{self.pending} not tried")
        calls = f"LM calls {self.calls}"
        if self.replayed_calls:
            calls += f" ({self.replayed_calls} of them by an earlier run, {self.fresh_calls} new)"
        parts.append(calls)
        if self.cost:
            parts.append(f"cost {self.cost:.4f}")
        parts.append(f"stopped: {self.stopped}")
        text = ", ".join(parts)
        return f"{text}. {self.message}" if self.message else text

    def __repr__(self) -> str:
        return f"LabelResult({self.summary()})"

    def to_jsonl(self, path: str | Path) -> Path:
        """Write the labelled examples, one JSON object per line (``read_examples`` / ``pl.Example`` read them)."""
        p = Path(path)
        if p.parent != Path(""):
            p.parent.mkdir(parents=True, exist_ok=True)
        with p.open("w", encoding="utf-8") as f:
            for ex in self.examples:
                f.write(json.dumps(to_jsonable(ex.to_dict()), ensure_ascii=False) + "\n")
        return p

    def to_dict(self) -> dict[str, Any]:
        return {
            "n_inputs": self.n_inputs, "labelled": len(self.examples), "failed": [f.to_dict() for f in self.failed],
            "pending": self.pending, "calls": self.calls, "replayed_calls": self.replayed_calls, "cost": self.cost,
            "stopped": self.stopped, "message": self.message, "seconds": self.seconds, "fields": self.fields,
            "resumed": self.resumed, "run_dir": self.run_dir, "max_lm_calls": self.max_lm_calls,
        }

    def agreement(self, program: Any, metric: Metric, *, num_threads: int = 1) -> Any:
        """How often ``program`` agrees with the teacher: an ``Evaluate`` of it on the labelled examples, with
        the teacher's labels as the gold ones. Returns the ``EvaluationResult`` (``.score`` is a percentage)."""
        from ..evaluate.evaluate import Evaluate

        if not self.examples:
            raise ConfigurationError("agreement: nothing was labelled, so there is nothing to agree with")
        return Evaluate(devset=self.examples, metric=metric, num_threads=num_threads,
                        display_progress=False)(program)

    def teacher_accuracy(self, gold_examples: Iterable[Example], metric: Metric) -> Any:
        """The teacher's labels scored against gold ones: for each gold example whose inputs were labelled here
        (matched by their inputs), ``metric(gold, teacher's prediction)``; an input the teacher failed on
        scores 0, gold examples whose inputs were not labelled (not given, or not reached before a budget
        stop) are left out. Returns an ``EvaluationResult`` (``.score`` is a percentage); no LM call is made."""
        from ..evaluate.evaluate import Evaluate

        gold = list(gold_examples)
        matched = []
        for i, ex in enumerate(gold):
            if not isinstance(ex, Example) or not ex.input_keys:
                raise ConfigurationError(
                    f"teacher_accuracy: gold_examples[{i}] is not a pl.Example with inputs marked; build them with "
                    "pl.Example(...).with_inputs('field', ...)"
                )
            key = example_key(_inputs_only(ex))
            if key in self._outputs or key in self._errors:
                matched.append(ex)
        if not matched:
            raise ConfigurationError(
                f"teacher_accuracy: none of the {len(gold)} gold examples has inputs that were labelled here; "
                "pass examples with the same inputs (and input keys) as the ones given to label()"
            )
        outputs, errors = self._outputs, self._errors

        def teacher(**inputs: Any) -> Prediction:
            key = example_key(Example(inputs).with_inputs(*inputs))
            if key in errors:
                raise _TeacherFailedError(errors[key])
            return Prediction(dict(outputs[key]))

        return Evaluate(devset=matched, metric=metric, display_progress=False)(teacher)


class _TeacherFailedError(Exception):
    """The teacher gave no label for this input (``teacher_accuracy`` scores it 0)."""


def _inputs_only(ex: Example) -> Example:
    keys = sorted(ex.input_keys or ())
    return Example({k: ex[k] for k in keys}).with_inputs(*keys)


def _check_inputs(inputs: Any) -> list[Example]:
    if inputs is None or isinstance(inputs, (str, bytes, dict, Example)):
        raise ConfigurationError(
            "label: inputs must be a list of pl.Example (inputs marked) or of dicts (every key an input), "
            f"got {type(inputs).__name__}"
        )
    items: list[Example] = []
    for i, item in enumerate(inputs):
        if isinstance(item, Example):
            if not item.input_keys:
                raise ConfigurationError(
                    f"label: inputs[{i}] has no inputs marked; build it with pl.Example(...).with_inputs('field', ...)"
                    " or pass a dict of its inputs"
                )
            items.append(_inputs_only(item))
        elif isinstance(item, dict):
            if not item:
                raise ConfigurationError(f"label: inputs[{i}] is an empty dict; give each input's fields")
            bad = [k for k in item if not isinstance(k, str)]
            if bad:
                raise ConfigurationError(f"label: inputs[{i}] has a key that is not a string: {bad[0]!r}")
            items.append(Example(dict(item)).with_inputs(*item))
        else:
            raise ConfigurationError(
                f"label: inputs[{i}] is a {type(item).__name__}; give a pl.Example with inputs marked or a dict"
            )
    if not items:
        raise ConfigurationError("label: inputs is empty; give at least one input to label")
    return items


def _check_fields(fields: Any) -> list[str] | None:
    if fields is None:
        return None
    names = [fields] if isinstance(fields, str) else list(fields)
    if not names or not all(isinstance(n, str) and n for n in names):
        raise ConfigurationError(f"label: fields must be None or output field names, got {fields!r}")
    if len(set(names)) != len(names):
        raise ConfigurationError(f"label: fields names a field twice: {names}")
    return names


def _teacher_outputs(teacher: Module) -> list[str]:
    """The output fields of the teacher's last predictor (its answer, for a Predict or ChainOfThought)."""
    predictors = teacher.predictors()
    return list(predictors[-1].signature.output_fields) if predictors else []


def _lm_identity(teacher: Module) -> list[Any]:
    """What each predictor's LM is (provider, model, where it goes): labels made by another LM are another run."""
    default = settings.get("lm")
    out: list[Any] = []
    for name, p in teacher.named_predictors():
        lm = unwrap_lm(p.lm or default)
        if lm is None:
            raise ConfigurationError(
                f"label: the teacher's predictor {name!r} has no LM; give it one (pl.Predict(..., lm=...)) or "
                "configure one with pl.configure(lm=...)"
            )
        ident = getattr(lm, "cache_identity", None)
        out.append([name, ident() if callable(ident) else type(lm).__qualname__])
    return out


def _check_teacher(teacher: Any, items: list[Example], fields: list[str] | None) -> None:
    if not isinstance(teacher, Module):
        raise ConfigurationError(
            f"label: the teacher must be a pl.Module (a program), got {type(teacher).__name__}"
        )
    if not teacher.predictors():
        raise ConfigurationError(f"label: the teacher {type(teacher).__name__} has no predictors, so no LM to ask")
    if isinstance(teacher, Predict):  # its inputs and outputs are its signature's: check them before paying
        sig = teacher.signature
        for i, ex in enumerate(items):
            missing = [k for k in sig.input_fields if k not in ex]
            if missing:
                raise ConfigurationError(
                    f"label: inputs[{i}] has no field(s) {', '.join(missing)} that the teacher takes "
                    f"(its inputs: {', '.join(sig.input_fields)}; this input has: {', '.join(ex.keys())})"
                )
        unknown = [f for f in fields or () if f not in sig.output_fields]
        if unknown:
            raise ConfigurationError(
                f"label: the teacher gives no field(s) {', '.join(unknown)}; its output fields are "
                f"{', '.join(sig.output_fields)}"
            )


def _pick(outputs: dict[str, Any], fields: list[str] | None, default_fields: list[str]) -> dict[str, Any]:
    """The labels kept from one prediction (KeyError naming a missing field)."""
    if fields is not None:
        missing = [f for f in fields if f not in outputs]
        if missing:
            raise KeyError(f"the teacher's prediction has no field(s) {', '.join(missing)} "
                           f"(it has: {', '.join(outputs) or 'none'})")
        return {f: outputs[f] for f in fields}
    present = [f for f in default_fields if f in outputs]
    return {f: outputs[f] for f in present} if present else dict(outputs)


def label(
    teacher: Module,
    inputs: Iterable[Example | dict[str, Any]],
    *,
    fields: Sequence[str] | str | None = None,
    max_lm_calls: int | None = None,
    max_cost: float | None = None,
    run_dir: str | Path | None = None,
    num_threads: int = 1,
    progress: bool | None = None,
) -> LabelResult:
    """Label each input with the teacher's answer; see the module docstring.

    - ``teacher``: a ``pl.Module`` (its predictors' LMs, else the configured one).
    - ``inputs``: Examples (their ``inputs()``) or dicts (every key an input).
    - ``fields``: the teacher's output fields to keep (default: the output fields of its last predictor, or
      every field of its prediction when that has none of them).
    - ``max_lm_calls`` / ``max_cost``: the budget; once spent the run stops and returns what it labelled
      (``stopped == "budget"``); the same call with the same ``run_dir`` and a larger budget goes on.
    - ``run_dir``: a folder for the run store (resume after a crash, a kill or a budget stop).
    - ``num_threads``: inputs labelled at once; ``progress``: the live line (None: when stderr is a terminal).
    """
    if not isinstance(num_threads, int) or num_threads < 1:
        raise ConfigurationError(f"num_threads must be a whole number >= 1, got {num_threads!r}")
    items = _check_inputs(inputs)
    names = _check_fields(fields)
    _check_teacher(teacher, items, names)
    keys = [example_key(ex) for ex in items]
    identity = {
        "kind": "label",
        "teacher": program_fingerprint(teacher),
        "prompt": prompt_fingerprint(teacher, items[0]),
        "lms": _lm_identity(teacher),
        "inputs": examples_fingerprint(items),
        "fields": names,
    }
    run = Run("label", metric=None, identity=identity, run_dir=None if run_dir is None else str(run_dir),
              max_lm_calls=max_lm_calls, max_cost=max_cost, num_threads=num_threads,
              identity_also={"prompt": older_prompt_fingerprints(teacher, items[0])})
    try:
        return _label(run, teacher, items, keys, names, progress)
    finally:
        run.store.close()


def _label(run: Run, teacher: Module, items: list[Example], keys: list[str], names: list[str] | None,
           progress: bool | None) -> LabelResult:
    from ..evaluate.runner import ParallelRunner
    from .progress import Progress

    bound = run.bind(teacher)
    default_fields = _teacher_outputs(teacher)
    order: list[int] = []  # the first position of each distinct input: each is labelled once
    seen: set[str] = set()
    for i, k in enumerate(keys):
        if k not in seen:
            seen.add(k)
            order.append(i)
    budget = run.budget

    def one(i: int) -> dict[str, Any]:
        key = keys[i]
        rec = run.store.get(KIND, key)
        if rec is not None:  # labelled by this run before (an earlier process): its calls are charged, not made
            budget.check()  # where the uninterrupted run's budget ran out, a resumed one stops too
            budget.charge(*run.store.take_previous_cost(KIND, key))
            return dict(rec.value)
        if budget.exhausted:
            budget.check(fresh=True)
        with run.measure() as m:
            try:
                pred = bound(**items[i].inputs().to_dict())
                value: dict[str, Any] = {"outputs": to_jsonable(dict(pred.items()))}
            except (BudgetExceededError, ConfigurationError):
                raise
            except LMError as exc:
                if exc.retryable or _setup_problem(exc) is not None:
                    raise  # not stored: a resume asks again (or the run stops, for an error every input hits)
                value = {"error": short(f"{type(exc).__name__}: {exc}", 1000)}
            except Exception as exc:  # the teacher could not answer this input: recorded, the run goes on
                value = {"error": short(f"{type(exc).__name__}: {exc}", 1000)}
        run.store.put(KIND, key, value, calls=m["calls"], cost=m["cost"], claim=m["tickets"])
        return value

    bar = Progress("label", enabled=progress, max_calls=budget.max_lm_calls, total=len(order), unit="labelled",
                   show_best=False)
    state = {"failed": 0, "ok": 0, "streak": 0}

    def tick(done: int, total: int, outcome: Any) -> None:
        failed = not outcome.ok or "error" in (outcome.value or {})
        state["failed"] += int(failed and not isinstance(outcome.error, BudgetExceededError))
        bar.update(trial=done, calls=budget.calls,
                   stage="labelling" + (f" ({state['failed']} failed)" if state["failed"] else ""))

    def halt(outcome: Any) -> BaseException | None:
        exc = outcome.error
        if exc is None:
            state["ok"] += 1
            state["streak"] = 0
            return None
        if isinstance(exc, BudgetExceededError):
            return exc
        if _setup_problem(exc) is not None:
            return exc
        if _is_connection_error(exc):
            state["streak"] += 1
            if state["ok"] == 0 or state["streak"] >= _CONNECTION_STREAK:
                return exc
        else:
            state["streak"] = 0
        return None

    with bar:
        bar.update(stage="labelling", calls=budget.calls)
        report = ParallelRunner(run.num_threads, keep_traceback=False, progress=tick, halt=halt).run(one, order)
        bar.update(stage="done")

    if report.halted is not None and not isinstance(report.halted, BudgetExceededError):
        raise report.halted  # an error every input would hit: what is stored so far stays for a resume
    outcome_of = {keys[i]: o for i, o in zip(order, report.outcomes, strict=True)}
    budget_hit = budget.hit or isinstance(report.halted, BudgetExceededError)

    outputs: dict[str, dict[str, Any]] = {}
    errors: dict[str, str] = {}
    examples: list[Example] = []
    failed: list[LabelFailure] = []
    pending = 0
    for i, (ex, key) in enumerate(zip(items, keys, strict=True)):
        o = outcome_of[key]
        inputs = ex.inputs().to_dict()
        if o.ok:
            value = o.value or {}
            if "error" in value:
                errors[key] = value["error"]
                failed.append(LabelFailure(i, inputs, value["error"]))
                continue
            try:
                picked = _pick(value["outputs"], names, default_fields)
            except KeyError as exc:
                errors[key] = str(exc.args[0])
                failed.append(LabelFailure(i, inputs, str(exc.args[0])))
                continue
            outputs[key] = picked
            examples.append(Example({**inputs, **picked}).with_inputs(*ex.input_keys or ()))
        elif o.error is not None and not isinstance(o.error, BudgetExceededError):
            text = short(f"{type(o.error).__name__}: {o.error}", 1000)
            errors[key] = text
            failed.append(LabelFailure(i, inputs, text, stored=False))
        else:
            pending += 1
    stopped = "budget" if budget_hit and pending else "completed"
    message = ""
    if stopped == "budget":
        limit = (f"max_lm_calls={budget.max_lm_calls}" if budget.max_lm_calls is not None
                 else f"max_cost={budget.max_cost}")
        where = (f"run label() again with run_dir={str(run.store.run_dir)!r} and a larger budget than {limit}: "
                 "what was labelled is not paid for again" if run.store.run_dir is not None
                 else "pass run_dir=... next time, so that a larger budget continues where this one stopped")
        message = f"The budget ran out ({limit}) with {pending} inputs not labelled yet; to go on, {where}."
    elif any(not f.stored for f in failed):
        message = ("Some inputs failed with an LM error that may pass; run label() again with the same run_dir "
                   "to try them again" + ("." if run.store.run_dir is not None
                                          else " (pass run_dir=... so that what was labelled is kept)."))
    result = LabelResult(
        examples=examples,
        failed=failed,
        calls=budget.calls,
        cost=budget.cost,
        stopped=stopped,
        seconds=time.perf_counter() - run.started,
        fields=names,
        pending=pending,
        replayed_calls=budget.replayed_calls,
        resumed=run.resumed,
        run_dir=str(run.store.run_dir) if run.store.run_dir is not None else None,
        max_lm_calls=budget.max_lm_calls,
        message=message,
        n_inputs=len(items),
        _outputs=outputs,
        _errors=errors,
    )
    return result


__all__ = ["LabelFailure", "LabelResult", "label"]
