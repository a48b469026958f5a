"""Calibrate: remove a classifier's label prior, learned as one offset per label.

    classify = pl.Classify(ClassifyEvent)
    better = pl.Calibrate(metric=category_match).compile(classify, trainset=train)   # method="fit"
    better.save("classify.json")          # the offsets are saved with the program

A small model that scores every label (``pl.Classify``) often leans to a few labels whatever the input (a
*label prior*). Calibration adds a learned offset ``b[label]`` to each label's log-probability before they
are normalised; a fit also learns one factor ``a`` that scales all of them, ``a * logp + b`` (a temperature:
``fit_scale=False`` keeps ``a = 1``):

- ``method="content_free"``: contextual calibration. Each ``Classify`` is run on inputs with no content
  (every input field set to ``"N/A"``, then ``""``, then ``"[MASK]"``); the mean label probabilities over those
  are the model's prior, and ``b = -log prior`` divides it out. One LM call per content-free input; the
  training set is not scored.
- ``method="fit"`` (default): the training set is scored once (one LM call per example) and the offsets that maximise
  the mean log-likelihood of the gold labels are fitted (Newton's method), with an L2 penalty
  ``lambda * ||b||^2`` that keeps them small. ``lambda`` is chosen by k-fold cross-validation of the
  held-out log-likelihood over a fixed grid, and the fitted offsets are kept only when their held-out metric
  is at least that of the classifier without them; otherwise the classifier is returned unchanged.
- ``method="both"``: both steps; the fit is pulled towards the content-free offsets instead of towards
  zero, and the held-out check compares it with no calibration and with the content-free offsets alone,
  keeping the best (ties go to the simpler one).

Why ``fit`` is the default: on the historic-events task (qwen2.5-coder-1.5b, 60 training examples,
docs/optimizers.md) the content-free estimate over-corrected (dev 65.0 scored, 60.0 with it), and
pulling the fit towards it kept most of that error (65.0), while the fit alone helped (69.0). Content-free
inputs say what a model does with no content, which is not always its leaning on real inputs; the
labelled examples say that directly, and the cross-validation keeps a fit that does not help out. The
scale is fitted by default because it helped on dev for both models measured (qwen2.5-coder-1.5b 69.0 ->
70.0, qwen2.5-coder-0.5b 45.0 -> 50.0): a small model's label scores are often too sure of themselves for
offsets alone to move them.

Refitting costs no LM call: the training set's label scores are stored (with ``run_dir`` in the run store,
so a killed run resumes without scoring anything twice). Everything is counted against ``max_lm_calls``.
Calibrate the program last: offsets learned for one prompt do not carry over to another instruction or
other demos.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from typing import Any

from ..data import Example, Prediction
from ..errors import BudgetExceededError, ConfigurationError
from ..evaluate.scoring import Metric, call_metric
from ..modules.module import Module
from ..modules.scored import Classify, ScoredPrediction, softmax
from ..values import render_value, to_jsonable
from .base import Optimizer
from .budget import unwrap_lm
from .fingerprint import example_key, program_fingerprint
from .result import Trial
from .run import Run

CONTENT_FREE = ("N/A", "", "[MASK]")
LAMBDAS = (0.001, 0.003, 0.01, 0.03, 0.1, 0.3, 1.0)
METHODS = ("content_free", "fit", "both")
MIN_FIT_EXAMPLES = 10


# -- the fit -----------------------------------------------------------------------------------------------


def _solve(a: list[list[float]], b: list[float]) -> list[float]:
    """Solve ``a x = b`` (Gaussian elimination with partial pivoting; ``a`` is small and positive definite)."""
    n = len(b)
    m = [[*row, b[i]] for i, row in enumerate(a)]
    for col in range(n):
        piv = max(range(col, n), key=lambda r: abs(m[r][col]))
        m[col], m[piv] = m[piv], m[col]
        d = m[col][col]
        if abs(d) < 1e-300:
            raise ValueError("singular system")
        for r in range(col + 1, n):
            f = m[r][col] / d
            if f:
                for c in range(col, n + 1):
                    m[r][c] -= f * m[col][c]
    x = [0.0] * n
    for r in range(n - 1, -1, -1):
        x[r] = (m[r][n] - sum(m[r][c] * x[c] for c in range(r + 1, n))) / m[r][r]
    return x


def _objective(rows: Sequence[Sequence[float]], gold: Sequence[int], b: Sequence[float], a: float,
               prior: Sequence[float], lam: float, fit_scale: bool) -> float:
    total = 0.0
    for r, g in zip(rows, gold, strict=True):
        z = [a * x + y for x, y in zip(r, b, strict=True)]
        m = max(z)
        total += m + math.log(sum(math.exp(v - m) for v in z)) - z[g]
    reg = sum((x - y) ** 2 for x, y in zip(b, prior, strict=True))
    if fit_scale:
        reg += (a - 1.0) ** 2
    return total / len(rows) + lam * reg


def fit_offsets(rows: Sequence[Sequence[float]], gold: Sequence[int], *, lam: float,
                prior: Sequence[float] | None = None, fit_scale: bool = False,
                max_iter: int = 100) -> tuple[list[float], float]:
    """Offsets ``b`` (and a scale ``a``) minimising ``mean(-log softmax(a*r + b)[gold]) + lam*(||b - prior||^2
    + (a - 1)^2)``: a convex problem, solved by Newton's method with a backtracking line search."""
    n_labels = len(rows[0])
    prior = list(prior) if prior is not None else [0.0] * n_labels
    b = prior[:]
    a = 1.0
    n = len(rows)
    k = n_labels + (1 if fit_scale else 0)
    f = _objective(rows, gold, b, a, prior, lam, fit_scale)
    for _ in range(max_iter):
        grad = [0.0] * k
        hess = [[0.0] * k for _ in range(k)]
        for r, g in zip(rows, gold, strict=True):
            p = softmax([a * x + y for x, y in zip(r, b, strict=True)])
            for i in range(n_labels):
                grad[i] += p[i] - (1.0 if i == g else 0.0)
                hi = hess[i]
                for j in range(n_labels):
                    hi[j] += (p[i] if i == j else 0.0) - p[i] * p[j]
            if fit_scale:
                s = sum(pi * ri for pi, ri in zip(p, r, strict=True))
                grad[-1] += s - r[g]
                for i in range(n_labels):
                    cross = p[i] * (r[i] - s)
                    hess[i][-1] += cross
                    hess[-1][i] += cross
                hess[-1][-1] += sum(pi * ri * ri for pi, ri in zip(p, r, strict=True)) - s * s
        for i in range(k):
            grad[i] /= n
            for j in range(k):
                hess[i][j] /= n
        for i in range(n_labels):
            grad[i] += 2 * lam * (b[i] - prior[i])
            hess[i][i] += 2 * lam
        if fit_scale:
            grad[-1] += 2 * lam * (a - 1.0)
            hess[-1][-1] += 2 * lam
        if max(abs(g) for g in grad) < 1e-9:
            break
        try:
            step = _solve(hess, grad)
        except ValueError:
            step = grad[:]
        t = 1.0
        while t > 1e-8:
            nb = [x - t * s for x, s in zip(b, step[:n_labels], strict=True)]
            na = a - t * step[-1] if fit_scale else a
            nf = _objective(rows, gold, nb, na, prior, lam, fit_scale)
            if nf <= f:
                break
            t /= 2
        else:
            break
        converged = f - nf < 1e-12
        b, a, f = nb, na, nf
        if converged:
            break
    return b, a


def content_free_offsets(scores: Sequence[Sequence[float]]) -> list[float]:
    """``-log`` of the mean label probabilities over content-free inputs, centred to mean zero."""
    probs = [softmax(list(s)) for s in scores]
    mean = [sum(col) / len(probs) for col in zip(*probs, strict=True)]
    b = [-math.log(max(p, 1e-300)) for p in mean]
    c = sum(b) / len(b)
    return [x - c for x in b]


# -- the optimizer -----------------------------------------------------------------------------------------


class _ScoringBudget:
    """A predictor's budgeted task LM that also counts ``score_continuations`` calls against the run's budget."""

    def __init__(self, guarded: Any, run: Run) -> None:
        self._lm = guarded
        self._run = run

    def score_continuations(self, *args: Any, **kwargs: Any) -> Any:
        budget = self._run.budget
        budget.reserve()
        try:
            result = unwrap_lm(self._lm).score_continuations(*args, **kwargs)
        except BaseException:
            budget.settle("task", 1, 0.0)  # it may have reached the backend: count it
            raise
        budget.settle("task", result.usage.calls, result.usage.cost or 0.0)
        return result

    def __getattr__(self, name: str) -> Any:
        return getattr(self._lm, name)

    def __deepcopy__(self, memo: dict[int, Any]) -> _ScoringBudget:
        return self


class Calibrate(Optimizer):
    """Learn per-label offsets for every ``pl.Classify`` in a program (see the module docstring).

    ``metric``: judges held-out predictions in the cross-validation (default: the label equals the gold one).
    ``method``: ``"content_free"``, ``"fit"`` or ``"both"``. ``content_free_inputs``: the texts put in every
    input field for the content-free estimate. ``regularization``: a fixed ``lambda`` instead of the
    cross-validated choice from ``LAMBDAS``. ``folds``: for the cross-validation. ``fit_scale``: also fit one
    factor on the log-probabilities (default). Budget, ``run_dir``, ``num_threads`` and ``progress`` as for every
    optimizer.
    """

    def __init__(
        self,
        metric: Metric | None = None,
        *,
        method: str = "fit",
        content_free_inputs: Sequence[str] = CONTENT_FREE,
        regularization: float | None = None,
        folds: int = 5,
        fit_scale: bool = True,
        seed: int = 0,
        max_lm_calls: int | None = None,
        max_cost: float | None = None,
        run_dir: str | None = None,
        num_threads: int = 1,
        progress: bool | None = None,
    ) -> None:
        super().__init__(metric=metric, max_lm_calls=max_lm_calls, max_cost=max_cost, run_dir=run_dir,
                         num_threads=num_threads, progress=progress)
        if method not in METHODS:
            raise ConfigurationError(f"Calibrate: method must be one of {', '.join(METHODS)}, got {method!r}")
        inputs = [str(x) for x in content_free_inputs]
        if method != "fit" and not inputs:
            raise ConfigurationError("Calibrate: content_free_inputs is empty; give at least one, e.g. ('N/A',)")
        if regularization is not None and (
            isinstance(regularization, bool) or not isinstance(regularization, (int, float))
            or not math.isfinite(regularization) or regularization <= 0
        ):
            raise ConfigurationError(f"Calibrate: regularization must be a number > 0, got {regularization!r}")
        if not isinstance(folds, int) or folds < 2:
            raise ConfigurationError(f"Calibrate: folds must be a whole number >= 2, got {folds!r}")
        self.method = method
        self.content_free_inputs = tuple(inputs)
        self.regularization = regularization
        self.folds = folds
        self.fit_scale = bool(fit_scale)
        self.seed = seed

    def settings_identity(self) -> dict[str, Any]:
        return {**super().settings_identity(), "method": self.method, "content_free_inputs": self.content_free_inputs,
                "regularization": self.regularization, "folds": self.folds, "fit_scale": self.fit_scale,
                "seed": self.seed}

    # -- compile -------------------------------------------------------------------------------------------
    def _compile(self, run: Run, student: Module, trainset: list[Example], valset: list[Example],
                 teacher: Module | None, **kwargs: Any) -> Module:
        if kwargs:
            raise ConfigurationError(f"Calibrate.compile: unknown option(s) {', '.join(sorted(kwargs))}")
        classifiers = [(n, p) for n, p in student.named_predictors() if isinstance(p, Classify)]
        if not classifiers:
            raise ConfigurationError(
                f"Calibrate: the program {type(student).__name__} has no pl.Classify to calibrate; build the "
                "label step with pl.Classify(signature) instead of pl.Predict"
            )
        bound = student.deepcopy()
        for p in bound.predictors():
            p.lm = _ScoringBudget(run.guard(run.task_lm(p), "task"), run)
        bound_named = dict(bound.named_predictors())
        names = {id(bound_named[n]): n for n, _ in classifiers}

        content_free: dict[str, list[float]] = {}
        if self.method in ("content_free", "both"):
            for name, _ in classifiers:
                try:
                    scores = self._content_free(run, name, bound_named[name])  # type: ignore[arg-type]
                except BudgetExceededError:
                    run.stopped = "budget"
                    break
                if scores:
                    content_free[name] = content_free_offsets(scores)
        rows: list[dict[str, Any]] = []
        if self.method in ("fit", "both") and run.stopped != "budget":
            rows = self._score_trainset(run, bound, names, trainset)

        result = student.deepcopy()
        fp_base = program_fingerprint(student)
        run.notes.baseline_fingerprint = fp_base
        run.notes.valset = list(trainset) if rows else []
        decisions: dict[str, Any] = {}
        for name, pred in classifiers:
            decision = self._decide(run, name, pred, content_free.get(name), rows, trainset)
            decisions[name] = decision
            target = dict(result.named_predictors())[name]
            target.calibration = decision["calibration"]  # type: ignore[attr-defined]
        run.notes.candidates = {"calibration": to_jsonable(decisions)}
        run.notes.best_params = {name: d["chosen"] for name, d in decisions.items()}
        self._record(run, student, result, decisions, trainset, rows)
        return result

    def _content_free(self, run: Run, name: str, predictor: Classify) -> list[list[float]]:
        out = []
        for i, text in enumerate(self.content_free_inputs):
            inputs = {f: text for f in predictor.signature.input_fields}

            def compute(inputs: dict[str, str] = inputs) -> dict[str, Any]:
                pred = predictor(**inputs)
                return {"logprobs": _raw(pred, predictor)}

            value = run.cached("calibrate_content_free", f"{name}/{i}/{text}", compute)
            if value.get("logprobs") is not None:
                out.append([float(x) for x in value["logprobs"]])
        return out

    def _score_trainset(self, run: Run, bound: Module, names: dict[int, str],
                        trainset: list[Example]) -> list[dict[str, Any]]:
        from .. import settings
        from ..evaluate.runner import ParallelRunner

        def one(ex: Example) -> dict[str, Any]:
            def compute() -> dict[str, Any]:
                if run.budget.exhausted:
                    run.budget.check()
                trace: list[Any] = []
                with run.task_context(), settings.context(trace=trace):
                    final = bound(**ex.inputs().to_dict())
                steps = {}
                for predictor, _inputs, pred in trace:
                    name = names.get(id(predictor))
                    if name is None or name in steps:
                        continue
                    steps[name] = {"logprobs": _raw(pred, predictor), "direct": pred is final}
                out = final.to_dict() if isinstance(final, Prediction) else {}
                return {"steps": steps, "final": to_jsonable(out)}

            return dict(run.cached("calibrate_scores", example_key(ex), compute))

        def tick(done: int, total: int, outcome: Any) -> None:
            if run.progress is not None:
                run.progress.update(calls=run.budget.calls)

        report = ParallelRunner(self.num_threads, keep_traceback=False, progress=tick).run(one, trainset)
        rows: list[dict[str, Any]] = []
        for ex, outcome in zip(trainset, report.outcomes, strict=True):
            if outcome.ok and outcome.value is not None:
                rows.append({"example": ex, **outcome.value})
            elif isinstance(outcome.error, BudgetExceededError) or not outcome.started:
                run.stopped = "budget"
            elif isinstance(outcome.error, ConfigurationError):
                raise outcome.error
            # an example that failed otherwise is left out of the fit
        return rows

    # -- deciding per classifier --------------------------------------------------------------------------
    def _decide(self, run: Run, name: str, pred: Classify, cf: list[float] | None, rows: list[dict[str, Any]],
                trainset: list[Example]) -> dict[str, Any]:
        plan = pred.plan()
        texts = plan.texts
        base: dict[str, Any] = {"label_field": plan.field, "labels": list(texts)}
        zero = [0.0] * len(texts)
        data: list[dict[str, Any]] = []
        for row in rows:
            step = row["steps"].get(name)
            if not step or step.get("logprobs") is None:
                continue
            gold = _gold_index(row["example"], plan.field, texts)
            if gold is None and not (step.get("direct") and self.metric is not None):
                continue
            data.append({"r": [float(x) for x in step["logprobs"]], "gold": gold, "row": row,
                         "direct": bool(step.get("direct"))})
        fit_data = [d for d in data if d["gold"] is not None]

        def calibration(b: list[float], a: float, how: str, **info: Any) -> dict[str, Any] | None:
            if how == "none":
                return None
            cal: dict[str, Any] = {"method": how, "offsets": {t: round(x, 6) for t, x in zip(texts, b, strict=True)}}
            if self.fit_scale and how != "content_free":
                cal["scale"] = round(a, 6)
            cal.update(info)
            return cal

        if self.method == "content_free" or len(fit_data) < 2:
            if cf is None:
                return {**base, "chosen": "none", "calibration": None,
                        "reason": "nothing to calibrate from (no content-free scores and too few scored examples)"}
            return {**base, "chosen": "content_free", "calibration": calibration(cf, 1.0, "content_free")}

        prior = cf if (self.method == "both" and cf is not None) else zero
        lambdas = (self.regularization,) if self.regularization is not None else LAMBDAS
        rng = random.Random(self.seed)
        order = list(range(len(fit_data)))
        rng.shuffle(order)
        k = min(self.folds, len(fit_data))
        folds = [order[i::k] for i in range(k)]
        cross = len(fit_data) >= MIN_FIT_EXAMPLES

        def heldout(lam: float | None, fixed: list[float] | None) -> dict[str, Any]:
            """Held-out predictions of the fit with ``lam`` (or of the fixed offsets) over the folds."""
            preds: dict[int, tuple[list[float], float]] = {}
            if fixed is not None or not cross:
                if fixed is not None:
                    params = (fixed, 1.0)
                else:
                    params = fit_offsets([d["r"] for d in fit_data], [d["gold"] for d in fit_data], lam=lam or 0.1,
                                         prior=prior, fit_scale=self.fit_scale)
                for i in range(len(fit_data)):
                    preds[i] = params
            else:
                for fold in folds:
                    held = set(fold)
                    train = [fit_data[i] for i in range(len(fit_data)) if i not in held]
                    params = fit_offsets([d["r"] for d in train], [d["gold"] for d in train], lam=lam or 0.1,
                                         prior=prior, fit_scale=self.fit_scale)
                    for i in fold:
                        preds[i] = params
            loglik, scores, choices = 0.0, [], []
            for i, d in enumerate(fit_data):
                b, a = preds[i]
                probs = softmax([a * x + y for x, y in zip(d["r"], b, strict=True)])
                loglik += math.log(max(probs[d["gold"]], 1e-300))
                choice = max(range(len(probs)), key=lambda j: (probs[j], -j))
                choices.append(choice)
                scores.append(self._score(d, plan, choice, probs[choice]))
            n = len(fit_data)
            return {"loglik": loglik / n, "score": 100.0 * sum(scores) / n, "choices": choices, "scores": scores}

        candidates: list[dict[str, Any]] = [{"name": "none", "lambda": None, **heldout(None, zero)}]
        if cf is not None:
            candidates.append({"name": "content_free", "lambda": None, **heldout(None, cf)})
        fits = [{"name": "fit", "lambda": lam, **heldout(lam, None)} for lam in lambdas]
        best_fit = max(fits, key=lambda c: (c["loglik"], c["lambda"]))
        # The fit is kept only when it does at least as well on held-out examples as what it would replace.
        finalists = [*candidates, best_fit]
        simplicity = {"none": 0, "content_free": 1, "fit": 2}
        chosen = max(finalists, key=lambda c: (round(c["score"], 9), round(c["loglik"], 9), -simplicity[c["name"]]))
        for number, c in enumerate([*candidates, *fits], start=len(run.trials)):
            run.add_trial(Trial(number=number, kind="candidate",
                                params={"predictor": name, "offsets": c["name"], "lambda": c["lambda"],
                                        "heldout_loglik": round(c["loglik"], 4)},
                                score=c["score"], n_examples=len(fit_data), calls=0))
        info = {"heldout_score": round(chosen["score"], 2), "heldout_loglik": round(chosen["loglik"], 4),
                "uncalibrated_heldout_score": round(candidates[0]["score"], 2), "examples": len(fit_data),
                "cross_validated": cross}
        if chosen["name"] == "fit":
            b, a = fit_offsets([d["r"] for d in fit_data], [d["gold"] for d in fit_data], lam=chosen["lambda"],
                               prior=prior, fit_scale=self.fit_scale)
            cal = calibration(b, a, "fit" if self.method == "fit" else "both", **{"lambda": chosen["lambda"], **info})
        elif chosen["name"] == "content_free":
            cal = calibration(cf or zero, 1.0, "content_free", **info)
        else:
            cal = None
        # Per-example rows for the result: uncalibrated against the choice, both held out.
        self._store_rows(run, name, plan, fit_data, candidates[0], chosen, bool(cal))
        return {**base, "chosen": chosen["name"], "lambda": chosen["lambda"], "calibration": cal, **info,
                "candidates": [{k: v for k, v in c.items() if k not in ("choices", "scores")}
                               for c in [*candidates, *fits]]}

    def _score(self, d: dict[str, Any], plan: Any, choice: int, prob: float) -> float:
        """The metric of a held-out prediction with the label ``choice``; gold-label match when the metric
        cannot see this step's output (a step inside a larger program) or there is no metric."""
        if self.metric is not None and d["direct"]:
            final = dict(d["row"]["final"])
            final[plan.field] = plan.typed[choice]
            if plan.confidence is not None:
                final[plan.confidence] = prob
            return call_metric(self.metric, d["row"]["example"], Prediction(final))
        return 1.0 if choice == d["gold"] else 0.0

    def _store_rows(self, run: Run, name: str, plan: Any, fit_data: list[dict[str, Any]], base: dict[str, Any],
                    chosen: dict[str, Any], changed: bool) -> None:
        if not self.metric:
            return
        for i, d in enumerate(fit_data):
            key = example_key(d["row"]["example"])
            for tag, c in (("base", base), ("final", chosen if changed else base)):
                run.store.put("calibrate_heldout", f"{tag}/{name}/{key}", {
                    "score": c["scores"][i], "output": {plan.field: plan.texts[c["choices"][i]]}, "error": None})

    def _record(self, run: Run, student: Module, result: Module, decisions: dict[str, Any],
                trainset: list[Example], rows: list[dict[str, Any]]) -> None:
        """Baseline and final held-out scores and per-example rows, where the base optimizer's result reads them."""
        fp_base = program_fingerprint(student)
        fp_final = program_fingerprint(result)
        scored = [d for d in decisions.values() if "uncalibrated_heldout_score" in d]
        if not scored or not self.metric:
            run.notes.valset = []
            return
        first = next(n for n, d in decisions.items() if "uncalibrated_heldout_score" in d)
        d = decisions[first]
        run.notes.add_full_score(fp_base, d["uncalibrated_heldout_score"])
        run.notes.add_full_score(fp_final, d["heldout_score"])
        examples = []
        for row in rows:
            key = example_key(row["example"])
            b = run.store.get("calibrate_heldout", f"base/{first}/{key}")
            f = run.store.get("calibrate_heldout", f"final/{first}/{key}")
            if b is None or f is None:
                continue
            run.store.put("score", f"{fp_base}/{key}", b.value)
            if fp_final != fp_base:
                run.store.put("score", f"{fp_final}/{key}", f.value)
            examples.append(row["example"])
        run.notes.valset = examples


def _raw(pred: Any, predictor: Classify) -> list[float] | None:
    """The raw label log-probabilities of a Classify prediction, in the order of its labels."""
    if not isinstance(pred, ScoredPrediction) or pred.label_logprobs is None:
        return None
    return [float(pred.label_logprobs[t]) for t in predictor.plan().texts]


def _gold_index(example: Example, field: str, texts: list[str]) -> int | None:
    if field not in example:
        return None
    gold = render_value(example[field])
    if gold in texts:
        return texts.index(gold)
    folded = [t.strip().casefold() for t in texts]
    g = gold.strip().casefold()
    return folded.index(g) if g in folded else None


__all__ = ["CONTENT_FREE", "LAMBDAS", "METHODS", "Calibrate", "content_free_offsets", "fit_offsets"]
