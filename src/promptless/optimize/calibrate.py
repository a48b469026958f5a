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
- ``method="fit"`` (default): the training set is scored once (one LM call per example) and the offsets
  (and the scale) that maximise the mean log-likelihood of the gold labels are fitted (Newton's method), with
  an L2 penalty ``lambda * (||b||^2 + (a - 1)^2)`` that keeps them near no calibration. ``lambda`` is chosen
  by k-fold cross-validation of the held-out log-likelihood over a fixed grid (``LAMBDAS``).
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

**The check.** A calibration replaces none only when it wins by more than the noise on examples it was not
fitted on, by the same paired test as the other optimizers (``selection.paired_test``: exact McNemar on 0/1
scores, one-sided at ``alpha``, 0.1 by default): on the ``valset`` when one is given (scored once, one call
per example), else on the cross-validated predictions of the training set. Otherwise the classifier is
returned uncalibrated; ``result.selection`` holds the evidence (lift, interval, p-value, n).
``holdout=None`` skips the check. ``method="content_free"`` without a valset is not checked (nothing
labelled is scored). ``holdout="cv"``: the valset is scored and joins the training set, and the check is the
cross-validation over all of them (each example predicted by a calibration fitted on the other folds, every
fold fitted on four fifths of the labelled examples instead of the training set alone), the calibration then
fitted on all of them: with a probe, whose regression needs more examples than offsets do, a check fitted on
the training set alone can refuse what the fit on everything would give.

**A program written with ``pl.Predict``.** Given a program whose label steps generate their labels (a
``Literal``, ``Enum`` or ``bool`` output in ``pl.Predict`` or ``ChainOfThought``), Calibrate works on
``pl.with_label_scoring(program)`` (those steps as ``pl.Classify``) and then checks that label-scoring
program, calibrated or not as its own check decided, against the program as given, on the same examples, by
the same paired test: scoring a label is not generating it, and a calibration checked against uncalibrated
scores says nothing of that. The examples are the valset and the training set, each with a score not fitted
on it (uncalibrated, the label scores as they are; calibrated, the valset's from the fit on the training set
and the training set's cross-validated). The
program as given is run once on each of those examples (counted against ``max_lm_calls``); when the label
scores do not beat it, it is returned as given (``result.refused`` holds the label-scoring program), and when
they do, the result loads into ``pl.with_label_scoring(program)``. Only a program with one label step that
makes its output is checked this way (``selection["against_given"]`` says why not otherwise).

**The refit.** When the check on a valset accepts the fit, the fit is made again on the training set and the
valset together (``refit=True``, lambda cross-validated again), and that calibration is returned: the check
passed the procedure, and a label the training set has few examples of is then learned from more of them.
``calibration["refit"]["checked"]`` holds what was checked. No LM call: the valset was scored for the check.

**The votes** (``knn=embedder``: a ``pl.Embedder``, its name such as ``"local/all-MiniLM-L6-v2"``, or a
function texts -> vectors). The ``knn_k`` training examples nearest to an input (by the embedder's
cosine similarity) vote for their labels (``modules/neighbours.py``); the fit learns one weight for the votes
beside the offsets and the scale, ``scale * logp + offset + weight * votes``, penalised towards 0 like the
rest. A training example never votes for itself; in the check the training examples vote, after the refit
the training and validation examples. The voters (text and label) and the embedder's name are saved with the
calibration. Measured (docs/optimizers.md): qwen2.5-coder-0.5b 45.3 -> 60.3 on the test split against the
calibration without votes, qwen2.5-coder-1.5b 64.5 -> 65.9.

**The probe** (``probe=embedder``, typically the task model's own hidden states:
``pl.Embedder("local/qwen2.5-coder-1.5b")``). A logistic regression learns the labels from the embedded
inputs of the training set (``modules/probe.py``); its label log-probabilities are one more feature with its
own fitted weight, ``... + probe_weight * probe``. Each training example's feature comes from a regression
fitted on the other folds; the regression's penalty is chosen by cross-validation. Saved with the
calibration: the embedder's name, the standardisation and the regression's weights.

Refitting costs no LM call: the label scores are stored (with ``run_dir`` in the run store, so a killed run
resumes without scoring anything twice). Everything is counted against ``max_lm_calls``.
Calibrate the program last: offsets learned for one prompt do not carry over to another instruction or
other demos.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from typing import Any

from ..data import Example, Prediction
from ..errors import BudgetExceededError, ConfigurationError, ScoringNotSupportedError
from ..evaluate.scoring import Metric, call_metric
from ..modules import probe as _probe
from ..modules.module import Module
from ..modules.neighbours import (
    VOTE_FLOOR,
    VOTE_K,
    VOTE_TEMPERATURE,
    as_embedder,
    embedder_spec,
    knn_text,
    similarities,
    unit,
    votes_from_similarities,
)
from ..modules.scored import Classify, ScoredPrediction, softmax, with_label_scoring
from ..values import render_value, to_jsonable
from .base import Optimizer
from .fingerprint import example_key, program_fingerprint
from .result import Trial
from .run import Run
from .selection import DEFAULT_ALPHA, paired_test

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


def _logits(r: Sequence[float], b: Sequence[float], a: float, cs: Sequence[float],
            fs: Sequence[Sequence[float]]) -> list[float]:
    """``a*r + b + sum(c_j * f_j)``: the label scores scaled and offset, plus each extra feature (the
    neighbours' votes, the probe) times its weight."""
    z = [a * x + y for x, y in zip(r, b, strict=True)]
    for c, f in zip(cs, fs, strict=True):
        z = [x + c * w for x, w in zip(z, f, strict=True)]
    return z


def _objective(rows: Sequence[Sequence[float]], gold: Sequence[int], b: Sequence[float], a: float,
               cs: Sequence[float], features: Sequence[Sequence[Sequence[float]]], prior: Sequence[float],
               lam: float, fit_scale: bool) -> float:
    total = 0.0
    for i, (r, g) in enumerate(zip(rows, gold, strict=True)):
        z = _logits(r, b, a, cs, [f[i] for f in features])
        m = max(z)
        total += m + math.log(sum(math.exp(v - m) for v in z)) - z[g]
    reg = sum((x - y) ** 2 for x, y in zip(b, prior, strict=True))
    if fit_scale:
        reg += (a - 1.0) ** 2
    reg += sum(c * c for c in cs)
    return total / len(rows) + lam * reg


def fit_offsets(rows: Sequence[Sequence[float]], gold: Sequence[int], *, lam: float,
                prior: Sequence[float] | None = None, fit_scale: bool = False,
                max_iter: int = 100) -> tuple[list[float], float]:
    """Offsets ``b`` (and a scale ``a``) minimising ``mean(-log softmax(a*r + b)[gold]) + lam*(||b - prior||^2
    + (a - 1)^2)``: a convex problem, solved by Newton's method with a backtracking line search."""
    b, a, _ = fit_calibration(rows, gold, lam=lam, prior=prior, fit_scale=fit_scale, max_iter=max_iter)
    return b, a


def fit_calibration(rows: Sequence[Sequence[float]], gold: Sequence[int], *, lam: float,
                    prior: Sequence[float] | None = None, fit_scale: bool = False,
                    votes: Sequence[Sequence[float]] | None = None,
                    features: Sequence[Sequence[Sequence[float]]] = (),
                    max_iter: int = 100) -> tuple[list[float], float, list[float]]:
    """``fit_offsets`` with a weight for each extra feature (one vector per row and feature: the nearest
    neighbours' label votes, ``votes``, then each of ``features``, such as a probe's label log-probabilities):
    ``softmax(a*r + b + sum(c_j * f_j))``, with ``lam * c_j^2`` added to the penalty (a feature that does not
    help is given no weight). Returns ``(b, a, [c_j])``."""
    feats: list[Sequence[Sequence[float]]] = ([votes] if votes is not None else []) + list(features)
    n_labels = len(rows[0])
    prior = list(prior) if prior is not None else [0.0] * n_labels
    b = prior[:]
    a = 1.0
    cs = [0.0] * len(feats)
    n = len(rows)
    extra = (["a"] if fit_scale else []) + [f"c{j}" for j in range(len(feats))]
    k = n_labels + len(extra)
    f = _objective(rows, gold, b, a, cs, feats, prior, lam, fit_scale)
    for _ in range(max_iter):
        grad = [0.0] * k
        hess = [[0.0] * k for _ in range(k)]
        for idx, (r, g) in enumerate(zip(rows, gold, strict=True)):
            fv = [feat[idx] for feat in feats]
            p = softmax(_logits(r, b, a, cs, fv))
            for i in range(n_labels):
                grad[i] += p[i] - (1.0 if i == g else 0.0)
                hi = hess[i]
                for j in range(n_labels):
                    hi[j] += (p[i] if i == j else 0.0) - p[i] * p[j]
            cols: list[Sequence[float]] = [r if name == "a" else fv[int(name[1:])] for name in extra]
            means = [sum(pi * fi for pi, fi in zip(p, col, strict=True)) for col in cols]
            for m, (col, s) in enumerate(zip(cols, means, strict=True)):
                at = n_labels + m
                grad[at] += s - col[g]
                for i in range(n_labels):
                    cross = p[i] * (col[i] - s)
                    hess[i][at] += cross
                    hess[at][i] += cross
                for m2, (col2, s2) in enumerate(zip(cols, means, strict=True)):
                    hess[at][n_labels + m2] += sum(pi * x * y for pi, x, y in zip(p, col, col2, strict=True)) - s * s2
        for i in range(k):
            grad[i] /= n
            for j in range(k):
                hess[i][j] /= n
        for i in range(n_labels):
            grad[i] += 2 * lam * (b[i] - prior[i])
            hess[i][i] += 2 * lam
        for m, name in enumerate(extra):
            at = n_labels + m
            grad[at] += 2 * lam * ((a - 1.0) if name == "a" else cs[int(name[1:])])
            hess[at][at] += 2 * lam
        if max(abs(g) for g in grad) < 1e-9:
            break
        try:
            step = _solve(hess, grad)
        except ValueError:
            step = grad[:]
        steps = dict(zip(extra, step[n_labels:], strict=True))
        t = 1.0
        while t > 1e-8:
            nb = [x - t * s for x, s in zip(b, step[:n_labels], strict=True)]
            na = a - t * steps["a"] if "a" in steps else a
            ncs = [c - t * steps[f"c{j}"] for j, c in enumerate(cs)]
            nf = _objective(rows, gold, nb, na, ncs, feats, prior, lam, fit_scale)
            if nf <= f:
                break
            t /= 2
        else:
            break
        converged = f - nf < 1e-12
        b, a, cs, f = nb, na, ncs, nf
        if converged:
            break
    return b, a, cs


def content_free_offsets(scores: Sequence[Sequence[float]]) -> list[float]:
    """``-log`` of the mean label probabilities over content-free inputs, centred to mean zero."""
    probs = [softmax(list(s)) for s in scores]
    mean = [sum(col) / len(probs) for col in zip(*probs, strict=True)]
    b = [-math.log(max(p, 1e-300)) for p in mean]
    c = sum(b) / len(b)
    return [x - c for x in b]


# -- the optimizer -----------------------------------------------------------------------------------------


class Calibrate(Optimizer):
    """Learn per-label offsets for every ``pl.Classify`` in a program (see the module docstring).

    ``metric``: judges held-out predictions in the cross-validation (default: the label equals the gold one).
    ``method``: ``"content_free"``, ``"fit"`` or ``"both"``. ``content_free_inputs``: the texts put in every
    input field for the content-free estimate. ``regularization``: a fixed ``lambda`` instead of the
    cross-validated choice from ``LAMBDAS``. ``folds``: for the cross-validation. ``fit_scale``: also fit one
    factor on the log-probabilities (default). ``refit``: once the check on a valset accepts, fit again on the
    training set and the valset together (default). ``holdout``, ``alpha``, ``selection_test``: the check (see the
    module docstring). Budget, ``run_dir``, ``num_threads`` and ``progress`` as for every optimizer.
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
        refit: bool = True,
        knn: Any = None,
        knn_k: int = VOTE_K,
        probe: Any = None,
        seed: int = 0,
        holdout: Any = "auto",
        alpha: float = DEFAULT_ALPHA,
        selection_test: str = "auto",
        max_lm_calls: int | None = None,
        max_cost: float | None = None,
        run_dir: str | None = None,
        num_threads: int = 1,
        progress: bool | None = None,
        executor: Any = None,
    ) -> None:
        super().__init__(metric=metric, max_lm_calls=max_lm_calls, max_cost=max_cost, run_dir=run_dir,
                         num_threads=num_threads, progress=progress, executor=executor)
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
        knn = as_embedder(knn, "Calibrate")
        if isinstance(knn_k, bool) or not isinstance(knn_k, int) or knn_k < 1:
            raise ConfigurationError(f"Calibrate: knn_k must be a whole number >= 1, got {knn_k!r}")
        if knn is not None and method != "fit":
            raise ConfigurationError(f"Calibrate: knn= works with method='fit' (the votes' weight is fitted), "
                                     f"not method={method!r}")
        probe = as_embedder(probe, "Calibrate", option="probe")
        if probe is not None and method != "fit":
            raise ConfigurationError(f"Calibrate: probe= works with method='fit' (the probe's weight is fitted), "
                                     f"not method={method!r}")
        self.probe = probe
        self.method = method
        self.content_free_inputs = tuple(inputs)
        self.regularization = regularization
        self.folds = folds
        self.fit_scale = bool(fit_scale)
        self.refit = bool(refit)
        self.knn = knn
        self.knn_k = knn_k
        self.seed = seed
        if holdout not in ("auto", "cv", None):
            raise ConfigurationError(
                f"Calibrate takes holdout='auto' (check the calibration on the valset, or by cross-validation over "
                f"the training set without one), 'cv' (the valset joins the training set; check by "
                f"cross-validation over all of them) or None (no check), got {holdout!r}"
            )
        #: holdout="cv": the valset's examples are training examples too, checked by cross-validation.
        self.cross_check = holdout == "cv"
        self._init_selection("auto" if self.cross_check else holdout, alpha, selection_test)

    def settings_identity(self) -> dict[str, Any]:
        return {**super().settings_identity(), "method": self.method, "content_free_inputs": self.content_free_inputs,
                "regularization": self.regularization, "folds": self.folds, "fit_scale": self.fit_scale,
                "refit": self.refit, "seed": self.seed, **self._selection_identity(),
                **({"knn": embedder_spec(self.knn), "knn_k": self.knn_k} if self.knn is not None else {}),
                **({"probe": embedder_spec(self.probe)} if self.probe is not None else {}),
                **({"check": "cv"} if self.cross_check else {})}

    # -- compile -------------------------------------------------------------------------------------------
    def _compile(self, run: Run, student: Module, trainset: list[Example], valset: list[Example],
                 teacher: Module | None, **kwargs: Any) -> Module:
        if kwargs:
            raise ConfigurationError(f"Calibrate.compile: unknown option(s) {', '.join(sorted(kwargs))}")
        classifiers = [(n, p) for n, p in student.named_predictors() if isinstance(p, Classify)]
        given: Module | None = None  # the program as given, when its label steps are made pl.Classify here
        if not classifiers:
            scored = with_label_scoring(student)
            classifiers = [(n, p) for n, p in scored.named_predictors() if isinstance(p, Classify)]
            if classifiers:
                given, student = student, scored
        if not classifiers:
            raise ConfigurationError(
                f"Calibrate: the program {type(student).__name__} has no label step to calibrate (a predictor with "
                "a Literal, Enum or bool output, or a pl.Classify); give the label output such a type, or use "
                "another optimizer (MIPROv2, BootstrapFewShot)"
            )
        for option, embedder in (("knn", self.knn), ("probe", self.probe)):
            if embedder is None:  # an embedder that fails should fail before any LM call is paid for
                continue
            try:
                embedder(["a test text"])
            except Exception as exc:
                raise ConfigurationError(
                    f"Calibrate({option}=...): the embedder {embedder_spec(embedder)!r} failed on a test text "
                    f"before anything was scored: {type(exc).__name__}: {exc}"
                ) from exc
        bound = student.deepcopy()
        for p in bound.predictors():
            p.lm = run.guard(run.task_lm(p), "task")
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
            # One example first: an LM that cannot score labels (the Classify made its label by generation) is
            # told now, not after a whole training set of calls (the probe's result is reused, not paid twice).
            first = self._score_examples(run, bound, names, trainset[:1], "calibrate_scores")
            steps = first[0]["steps"] if first else {}
            if steps and all(step.get("logprobs") is None for step in steps.values()):
                lm = next(iter(bound_named.values())).lm
                raise ScoringNotSupportedError(
                    f"Calibrate: {getattr(lm, 'model', lm)!s} gave no label scores (pl.Classify made the label by "
                    "generation), so there is nothing to calibrate. Use a backend that scores labels (an embedded "
                    "local/ model, or an OpenAI-compatible server that returns logprobs), or another optimizer "
                    "(MIPROv2, BootstrapFewShot)"
                )
            rows = self._score_examples(run, bound, names, trainset, "calibrate_scores")
        val_rows: list[dict[str, Any]] = []
        if valset and self.holdout is not None and run.stopped != "budget":
            val_rows = self._score_examples(run, bound, names, valset, "calibrate_val_scores")
        if self.cross_check:  # the valset joins the training set: the check is the cross-validation over all
            rows, val_rows = rows + val_rows, []

        result = student.deepcopy()
        run.notes.baseline_fingerprint = program_fingerprint(student)
        self._rows: dict[str, list[dict[str, Any]]] = {}
        self._probe_fit: tuple[dict[str, Any], float] | None = None
        # per classifier, the examples whose held-out scores can judge it against the program as given:
        # (data, uncalibrated scores, calibrated scores or None where they were fitted on the example)
        self._parts: dict[str, list[tuple[str, list[dict[str, Any]], dict[str, Any], dict[str, Any] | None]]] = {}
        decisions: dict[str, Any] = {}
        for name, pred in classifiers:
            decision = self._decide(run, name, pred, content_free.get(name), rows, val_rows)
            decisions[name] = decision
            target = dict(result.named_predictors())[name]
            target.calibration = decision["calibration"]  # type: ignore[attr-defined]
            self._attach(target)
        refused = [(n, d["candidate"]) for n, d in decisions.items()
                   if d.get("calibration") is None and d.get("candidate") is not None]
        if refused:  # the calibration the check did not keep, ready for a user who wants it anyway
            run.notes.refused = result.deepcopy()
            named = dict(run.notes.refused.named_predictors())
            for n, cal in refused:
                named[n].calibration = cal  # type: ignore[attr-defined]
                self._attach(named[n])
        run.notes.candidates = {"calibration": to_jsonable(decisions)}
        run.notes.best_params = {name: d["chosen"] for name, d in decisions.items()}
        self._record(run, student, result, decisions)
        if given is not None:
            return self._against_given(run, given, result, one_step=len(classifiers) == 1)
        return result

    def _attach(self, target: Any) -> None:
        """Give a calibrated classifier the embedders its calibration uses (not saved: built again by name)."""
        if self.knn is not None:
            target.knn_embedder = self.knn
        if self.probe is not None:
            target.probe_embedder = self.probe

    def _against_given(self, run: Run, given: Module, result: Module, *, one_step: bool) -> Module:
        """The label-scoring program replaces the program as given (whose label steps generated their labels)
        only when it beats it on the examples of the check, by the same paired test: scoring a label is not the
        same as generating it, and a calibration checked against the uncalibrated scores says nothing of that.
        The program as given is scored on those examples (one call each, memoised); otherwise it is returned."""
        sel = run.notes.selection
        keep = sel.get("pick") == "candidate"
        rows: list[tuple[Example, bool, float]] = []  # (example, its label is the output, held-out score)
        kinds = []
        for kind, data, base, cand in next(iter(self._parts.values()), []) if one_step else []:
            use = cand if keep else base
            if use is not None:  # None: calibrated scores fitted on these examples, which cannot judge
                kinds.append(kind)
                rows += [(d["row"]["example"], bool(d.get("direct")), float(use["scores"][i]))
                         for i, d in enumerate(data)]
        if self.holdout is None or self.metric is None or not rows or not all(direct for _, direct, _ in rows):
            why = ("holdout=None" if self.holdout is None else "no metric" if self.metric is None
                   else "the program has more than one label step" if not one_step
                   else "no example to compare on" if not rows else "the label step's label is not the output")
            sel["against_given"] = {"decision": "not checked", "reason": why}
            return result
        examples = [ex for ex, _, _ in rows]
        scored = [score for _, _, score in rows]
        fp_given = program_fingerprint(given)
        try:
            given_scores = run.score(given, examples, fingerprint=fp_given)
        except BudgetExceededError:
            run.stopped = "budget"
            sel.update(decision="rejected", pick="starting program",
                       against_given={"decision": "not checked", "reason": "the budget ran out"},
                       reason="the budget ran out before the program as given was scored on the examples of the "
                              "check, so it is kept as given")
            run.notes.refused = result
            return given.deepcopy()
        test = paired_test(given_scores, scored, alpha=self.alpha, method=self.selection_test)
        ev = test.to_dict()
        what = "the calibrated label scores" if keep else "the label scores (uncalibrated)"
        run.notes.baseline_fingerprint = fp_given
        shown = run.seen_scores(fp_given, run.notes.valset or examples)  # the result's baseline: where it shows rows
        if shown and all(x is not None for x in shown):
            run.notes.add_full_score(fp_given, 100.0 * sum(x for x in shown if x is not None) / len(shown))
        sel["against_given"] = {"decision": "accepted" if test.significant else "rejected", "evidence": ev}
        sel["rule"] = (f"{sel.get('rule', '')}; against the program as given: the {ev['n']} {' and '.join(kinds)} "
                       "examples, each with a score not fitted on it").lstrip("; ")
        sel["scores"] = {"starting program": {"seen": None, "unseen": ev["baseline"]},
                         "candidate": {"seen": None, "unseen": ev["candidate"]}}
        against = (f"{what} against the program as given (its labels generated), on the same {ev['n']} examples: "
                   f"lift {ev['lift']:+.1f} points, p = {ev['p_value']:.3g} ({ev['method']})")
        if test.significant:
            sel.update(decision="accepted", pick="candidate",
                       reason=f"{sel.get('reason', '')}; then {against}: the label steps now score their labels "
                              "(load the saved state into pl.with_label_scoring(program))")
            return result
        sel.update(decision="rejected", pick="starting program",
                   reason=f"{sel.get('reason', '')}; but {against}, not more than the noise at alpha "
                          f"{self.alpha:g}, so the program is kept as given")
        run.notes.refused = result
        return given.deepcopy()

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

    def _score_examples(self, run: Run, bound: Module, names: dict[int, str], examples: list[Example],
                        kind: str) -> list[dict[str, Any]]:
        """Each example run once through the program, with each classifier's raw label scores kept (in the run
        store under ``kind``, so a resumed run asks nothing twice)."""
        from .. import settings

        program = run.executor.bind(bound)

        def one(ex: Example) -> dict[str, Any]:
            def compute() -> dict[str, Any]:
                if run.budget.exhausted:
                    run.budget.check()
                trace: list[Any] = []
                with run.task_context(), settings.context(trace=trace):
                    final = program(**ex.inputs().to_dict())
                steps = {}
                for predictor, _inputs, pred in trace:
                    name = names.get(id(predictor))
                    if name is None or name in steps:
                        continue
                    steps[name] = {"logprobs": _raw(pred, predictor), "direct": pred is final,
                                   "text": knn_text(list(predictor.signature.input_fields), _inputs)}
                out = final.to_dict() if isinstance(final, Prediction) else {}
                return {"steps": steps, "final": to_jsonable(out)}

            return dict(run.cached(kind, example_key(ex), compute))

        def tick(done: int, total: int, outcome: Any) -> None:
            if run.progress is not None:
                run.progress.update(calls=run.budget.calls)

        report = run.executor.map(one, examples, keep_traceback=False, progress=tick)
        rows: list[dict[str, Any]] = []
        for ex, outcome in zip(examples, report.outcomes, strict=True):
            if outcome.ok and outcome.value is not None:
                rows.append({"example": ex, **outcome.value})
            elif isinstance(outcome.error, BudgetExceededError) or not outcome.started:
                run.stopped = "budget"
            elif isinstance(outcome.error, ConfigurationError):
                raise outcome.error
            # an example that failed otherwise is left out of the fit
        return rows

    # -- deciding per classifier --------------------------------------------------------------------------
    def _data(self, name: str, plan: Any, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """The scored examples of one classifier that can judge a calibration: a gold label, or the metric on
        the program's output when the classifier's prediction is that output."""
        data: list[dict[str, Any]] = []
        for row in rows:
            step = row["steps"].get(name)
            if not step or step.get("logprobs") is None:
                continue
            gold = _gold_index(row["example"], plan.field, plan.texts)
            direct = bool(step.get("direct")) and self.metric is not None
            if gold is None and not direct:
                continue
            data.append({"r": [float(x) for x in step["logprobs"]], "gold": gold, "row": row, "direct": direct,
                         "text": step.get("text")})
        return data

    def _predict(self, data: list[dict[str, Any]], plan: Any, b: list[float], a: float,
                 cs: dict[str, float] | None = None) -> dict[str, Any]:
        """Labels, metric scores and mean log-likelihood of the gold labels with offsets ``b``, scale ``a`` and
        each extra feature (``d["k"]``, the neighbours' votes; ``d["p"]``, the probe) weighted by ``cs[key]``."""
        cs = cs or {}
        choices, scores, loglik, n_gold = [], [], 0.0, 0
        for d in data:
            probs = softmax(_logits(d["r"], b, a, list(cs.values()), [d[key] for key in cs]))
            choice = max(range(len(probs)), key=lambda j: (probs[j], -j))
            choices.append(choice)
            scores.append(self._score(d, plan, choice, probs[choice]))
            if d["gold"] is not None:
                loglik += math.log(max(probs[d["gold"]], 1e-300))
                n_gold += 1
        return {"choices": choices, "scores": scores, "loglik": loglik / max(n_gold, 1),
                "score": 100.0 * sum(scores) / max(len(scores), 1)}

    def _decide(self, run: Run, name: str, pred: Classify, cf: list[float] | None, rows: list[dict[str, Any]],
                val_rows: list[dict[str, Any]]) -> dict[str, Any]:
        plan = pred.plan()
        texts = plan.texts
        zero = [0.0] * len(texts)
        out: dict[str, Any] = {"label_field": plan.field, "labels": list(texts)}
        fit_data = [d for d in self._data(name, plan, rows) if d["gold"] is not None]
        val_data = self._data(name, plan, val_rows)
        if self.knn is not None and self.method == "fit":
            self._vote(fit_data, val_data, len(texts))
        if self.probe is not None and self.method == "fit":
            self._probe_features(fit_data, val_data, len(texts))

        def calibration(b: list[float], a: float, how: str, **info: Any) -> dict[str, Any]:
            cal: dict[str, Any] = {"method": how, "offsets": {t: round(x, 6) for t, x in zip(texts, b, strict=True)}}
            if how != "content_free" and self.fit_scale:
                cal["scale"] = round(a, 6)
            cal.update(info)
            return cal

        prior = cf if (self.method == "both" and cf is not None) else zero  # what a fit is pulled towards
        cv_scores: tuple[list[float], list[float]] | None = None  # (uncalibrated, candidate) held out by the CV
        if self.method == "content_free" or len(fit_data) < 2:
            if cf is None:
                out.update(chosen="none", calibration=None, selection={
                    "mode": "none", "rule": "nothing to calibrate from", "decision": "nothing to test",
                    "pick": "starting program",
                    "reason": "no content-free scores and fewer than 2 scored training examples with a gold label"})
                return out
            no_features: dict[str, float] = {}
            chosen_name, params, lam = "content_free", (cf, 1.0, no_features), None
            cal = calibration(cf, 1.0, "content_free")
        else:
            lambdas = (self.regularization,) if self.regularization is not None else LAMBDAS
            folds = self._folds(len(fit_data))
            cross = len(fit_data) >= MIN_FIT_EXAMPLES

            def heldout(lam: float | None, fixed: list[float] | None) -> dict[str, Any]:
                """Each example predicted by offsets not fitted on it (k-fold), or by the fixed offsets."""
                n = len(fit_data)
                merged: dict[str, Any] = {"choices": [0] * n, "scores": [0.0] * n, "loglik": 0.0}
                groups = folds if fixed is None and cross else [list(range(n))]
                for group in groups:
                    cs: dict[str, float] = {}
                    if fixed is not None:
                        b, a = fixed, 1.0
                    else:
                        held = set(group) if cross else set()
                        train = [fit_data[i] for i in range(n) if i not in held]
                        b, a, cs = self._fit(train, lam or 0.1, prior)
                    res = self._predict([fit_data[i] for i in group], plan, b, a, cs)
                    for j, i in enumerate(group):
                        merged["choices"][i] = res["choices"][j]
                        merged["scores"][i] = res["scores"][j]
                    merged["loglik"] += res["loglik"] * len(group) / n
                merged["score"] = 100.0 * sum(merged["scores"]) / n
                return merged

            candidates: list[dict[str, Any]] = [{"name": "none", "lambda": None, **heldout(None, zero)}]
            if cf is not None:
                candidates.append({"name": "content_free", "lambda": None, **heldout(None, cf)})
            fits = [{"name": "fit", "lambda": lam, **heldout(lam, None)} for lam in lambdas]
            best_fit = max(fits, key=lambda c: (c["loglik"], c["lambda"]))  # lambda by held-out likelihood
            simplicity = {"none": 0, "content_free": 1, "fit": 2}
            chosen = max([*candidates, best_fit],
                         key=lambda c: (round(c["score"], 9), round(c["loglik"], 9), -simplicity[c["name"]]))
            for number, c in enumerate([*candidates, *fits], start=len(run.trials)):
                run.add_trial(Trial(number=number, kind="candidate",
                                    params={"predictor": name, "offsets": c["name"], "lambda": c["lambda"],
                                            "heldout_loglik": round(c["loglik"], 4)},
                                    score=c["score"], n_examples=len(fit_data), calls=0))
            out["cross_validation"] = {
                "folds": len(folds) if cross else 0, "examples": len(fit_data),
                "candidates": [{"name": c["name"], "lambda": c["lambda"], "score": round(c["score"], 2),
                                "loglik": round(c["loglik"], 4)} for c in [*candidates, *fits]]}
            chosen_name, lam = chosen["name"], chosen["lambda"]
            if chosen_name == "none":
                out.update(chosen="none", calibration=None, selection={
                    "mode": "cross-validation", "rule": self._cv_rule(len(fit_data), cross),
                    "decision": "nothing to test", "pick": "starting program",
                    "reason": "no calibration did better than none on held-out training examples"})
                self._evidence_rows(run, name, plan, fit_data, candidates[0], candidates[0])
                self._parts[name] = [("training", fit_data, candidates[0], None)]
                if val_data:
                    self._parts[name].append(("validation", val_data, self._predict(val_data, plan, zero, 1.0), None))
                return out
            self._parts[name] = [("training", fit_data, candidates[0], chosen if cross else None)]
            if chosen_name == "fit":
                params = self._fit(fit_data, lam, prior)
                cal = calibration(params[0], params[1], "fit" if self.method == "fit" else "both", **{"lambda": lam})
                cal.update(self._knn_state(params[2].get("k", 0.0), fit_data, texts))
                cal.update(self._probe_state(params[2].get("p", 0.0), texts))
            else:
                params = (cf or zero, 1.0, {})
                cal = calibration(cf or zero, 1.0, "content_free")
            if cross:
                cv_scores = (candidates[0]["scores"], chosen["scores"])
                self._evidence_rows(run, name, plan, fit_data, candidates[0], chosen)

        # Keep the calibration only when it beats none by more than the noise on examples it was not fitted on.
        sel: dict[str, Any] = {"alpha": self.alpha, "test": self.selection_test}
        if self.holdout is None:
            sel.update(mode="off", rule="off (holdout=None): the calibration is kept without a check",
                       decision="accepted without a test", pick="candidate",
                       reason=f"holdout=None: the {chosen_name} calibration is kept unchecked")
        elif val_data:
            base = self._predict(val_data, plan, zero, 1.0)
            cand = self._predict(val_data, plan, *params)
            self._evidence_rows(run, name, plan, val_data, base, cand)
            self._parts.setdefault(name, []).append(("validation", val_data, base, cand))
            sel.update(mode="validation set", rule=f"the {len(val_data)} examples of the valset",
                       n_holdout=len(val_data))
            sel["evidence"] = paired_test(base["scores"], cand["scores"], alpha=self.alpha,
                                          method=self.selection_test).to_dict()
        elif cv_scores is not None:
            sel.update(mode="cross-validation", rule=self._cv_rule(len(fit_data), True), n_holdout=len(fit_data))
            sel["evidence"] = paired_test(cv_scores[0], cv_scores[1], alpha=self.alpha,
                                          method=self.selection_test).to_dict()
        else:
            sel.update(mode="none", rule="none: no valset and no scored training examples to check on",
                       decision="accepted without a test", pick="candidate",
                       reason=f"nothing labelled was scored, so the {chosen_name} calibration is kept unchecked; "
                              "give a valset to check it")
        ev = sel.get("evidence")
        if ev is not None:
            sel["scores"] = {"starting program": {"seen": None, "unseen": ev["baseline"]},
                             "candidate": {"seen": None, "unseen": ev["candidate"]}}
            if ev["significant"]:
                sel.update(decision="accepted", pick="candidate", reason=(
                    f"the calibration ({chosen_name}) beats none on examples it was not fitted on: "
                    f"lift {ev['lift']:+.1f} points, p = {ev['p_value']:.3g} ({ev['method']}, n = {ev['n']})"))
            else:
                sel.update(decision="rejected", pick="starting program", reason=(
                    f"the calibration ({chosen_name}) does not beat none by more than the noise at alpha "
                    f"{self.alpha:g}: lift {ev['lift']:+.1f} points, p = {ev['p_value']:.3g} ({ev['method']}, "
                    f"n = {ev['n']}); the classifier is left uncalibrated"))
        keep = sel.get("pick") == "candidate"
        shown = ("lift", "p_value", "n", "baseline", "candidate", "method")
        evidence = None if ev is None else {k: ev[k] for k in shown}
        if evidence is not None:
            cal["evidence"] = evidence
        if keep and ev is not None and self.refit and chosen_name == "fit" and sel.get("mode") == "validation set":
            # The check accepted the fitting procedure; fit it again on every labelled example it has scored (the
            # training set and the valset), with lambda chosen again by cross-validation: offsets for rare labels
            # are learned from more than the few examples the training set alone has of them. No LM call.
            both = fit_data + [d for d in val_data if d["gold"] is not None]
            if "knn" in cal:  # the votes again, every example voted on by all the others
                self._vote(both, [], len(texts))
            if "probe" in cal:  # the probe again, fitted on all of them (each one's feature held out)
                self._probe_features(both, [], len(texts))
            lam_all = self.regularization if self.regularization is not None else self._cv_lambda(both, plan, prior)
            b_all, a_all, c_all = self._fit(both, lam_all, prior)
            checked: dict[str, Any] = {k: cal[k] for k in ("offsets", "scale", "lambda") if k in cal}
            if "knn" in cal:
                checked["knn_weight"] = cal["knn"]["weight"]
            if "probe" in cal:
                checked["probe_weight"] = cal["probe"]["weight"]
            cal = calibration(b_all, a_all, cal["method"], **{"lambda": lam_all}, evidence=evidence)
            cal.update(self._knn_state(c_all.get("k", 0.0), both, texts))
            cal.update(self._probe_state(c_all.get("p", 0.0), texts))
            cal["refit"] = {"examples": len(both), "checked": checked}
            sel["reason"] += (f"; then fitted again on the {len(both)} training and validation examples together "
                              "(refit=True; what was checked is in calibration['refit'])")
        out.update(chosen=chosen_name if keep else "none", lambda_=lam, candidate=cal,
                   calibration=cal if keep else None, selection=sel)
        out["lambda"] = out.pop("lambda_")
        return out

    def _folds(self, n: int) -> list[list[int]]:
        """``self.folds`` folds of ``range(n)`` (fewer when ``n`` is smaller), from a shuffle seeded by ``seed``."""
        order = list(range(n))
        random.Random(self.seed).shuffle(order)
        k = min(self.folds, n)
        return [order[i::k] for i in range(k)]

    def _cv_lambda(self, data: list[dict[str, Any]], plan: Any, prior: list[float]) -> float:
        """The lambda of ``LAMBDAS`` with the best k-fold held-out log-likelihood of the gold labels in ``data``."""
        best: tuple[float, float] | None = None
        for lam in LAMBDAS:
            loglik = 0.0
            for group in self._folds(len(data)):
                held = set(group)
                train = [data[i] for i in range(len(data)) if i not in held]
                b, a, cs = self._fit(train, lam, prior)
                loglik += self._predict([data[i] for i in group], plan, b, a, cs)["loglik"] * len(group)
            if best is None or (loglik, lam) > best:
                best = (loglik, lam)
        assert best is not None
        return best[1]

    def _fit(self, data: list[dict[str, Any]], lam: float,
             prior: list[float]) -> tuple[list[float], float, dict[str, float]]:
        """Offsets, scale and the weight of each extra feature the examples carry (``"k"``, the votes; ``"p"``,
        the probe), fitted on ``data``."""
        present = [key for key in ("k", "p") if data and all(key in d for d in data)]
        keys = list(present)
        while True:
            b, a, cs = fit_calibration([d["r"] for d in data], [d["gold"] for d in data], lam=lam, prior=prior,
                                       fit_scale=self.fit_scale, features=[[d[key] for d in data] for key in keys])
            weights = dict(zip(keys, cs, strict=True))
            negative = [key for key, c in weights.items() if c < 0]
            if not negative:
                break
            # Votes or a probe that point away from the gold labels tell nothing a user wants (held-out features
            # of a feature that knows nothing lean against the example's own label): no weight, fit again.
            keys = [key for key in keys if key not in negative]
        return b, a, {key: weights.get(key, 0.0) for key in present}

    def _vote(self, pool: list[dict[str, Any]], others: list[dict[str, Any]], n_labels: int) -> None:
        """Set ``d["k"]``, the nearest neighbours' label votes, on every example: those of ``pool`` voted on by the
        rest of the pool (never by themselves), ``others`` by the whole pool. Embeds the texts once (no LM call)."""
        every = pool + others
        missing = [d for d in every if not isinstance(d.get("text"), str)]
        if missing:
            raise ConfigurationError("Calibrate(knn=...): scored examples without their input text (a run directory "
                                     "written before knn= was given?); use a new run_dir")
        todo = [d for d in every if "vec" not in d]
        if todo:
            vectors = self.knn([d["text"] for d in todo])
            for d, v in zip(todo, vectors, strict=True):
                d["vec"] = unit(v)
        vecs = [d["vec"] for d in pool]
        labels = [d["gold"] for d in pool]
        sims = similarities([d["vec"] for d in every], vecs)
        for i, (d, row) in enumerate(zip(every, sims, strict=True)):
            d["k"] = votes_from_similarities(row, labels, n_labels, k=self.knn_k,
                                             exclude=i if i < len(pool) else None)

    def _probe_features(self, pool: list[dict[str, Any]], others: list[dict[str, Any]], n_labels: int) -> None:
        """Set ``d["p"]``, the probe's label log-probabilities, on every example: those of ``pool`` from
        regressions fitted on the other folds of the pool, ``others`` from one fitted on the whole pool (kept in
        ``self._probe_fit`` for the calibration). Embeds the texts once (no LM call)."""
        every = pool + others
        if len(pool) < 2:  # too few labelled examples to fit a regression on: no probe feature
            self._probe_fit = None
            for d in every:
                d.pop("p", None)
            return
        if any(not isinstance(d.get("text"), str) for d in every):
            raise ConfigurationError("Calibrate(probe=...): scored examples without their input text (a run "
                                     "directory written before probe= was given?); use a new run_dir")
        todo = [d for d in every if "pvec" not in d]
        if todo:
            for d, v in zip(todo, self.probe([d["text"] for d in todo]), strict=True):
                d["pvec"] = [float(x) for x in v]
        vectors = [d["pvec"] for d in pool]
        labels = [d["gold"] for d in pool]
        c, held = _probe.choose_c(vectors, labels, n_labels, seed=self.seed)
        state = _probe.fit_probe(vectors, labels, n_labels, c=c)
        for d, row in zip(pool, held, strict=True):
            d["p"] = row
        if others:
            for d, row in zip(others, _probe.probe_logprobs(state, [d["pvec"] for d in others]), strict=True):
                d["p"] = row
        self._probe_fit = (state, c)

    def _probe_state(self, weight: float, texts: Sequence[str]) -> dict[str, Any]:
        """The ``"probe"`` part of a calibration: its weight, the embedder's name and the fitted regression."""
        fitted = getattr(self, "_probe_fit", None)
        if self.probe is None or fitted is None:
            return {}
        state, c = fitted
        return {"probe": _probe.probe_state(state, weight=weight, c=c, embedder=embedder_spec(self.probe),
                                            labels=texts)}

    def _knn_state(self, weight: float, pool: list[dict[str, Any]], texts: Sequence[str]) -> dict[str, Any]:
        """The ``"knn"`` part of a calibration: the votes' weight and settings, the embedder's name and the
        examples that vote (their input text and label), saved with the program."""
        if self.knn is None or not pool or "k" not in pool[0]:
            return {}
        return {"knn": {"weight": round(weight, 6), "k": self.knn_k, "temperature": VOTE_TEMPERATURE,
                        "floor": VOTE_FLOOR, "embedder": embedder_spec(self.knn),
                        "examples": [{"text": d["text"], "label": texts[d["gold"]]} for d in pool]}}

    def _cv_rule(self, n: int, cross: bool) -> str:
        what = "labelled examples (training set and valset, holdout='cv')" if self.cross_check else "training examples"
        if not cross:
            return f"none: {n} {what} are too few to cross-validate (fewer than {MIN_FIT_EXAMPLES})"
        return f"cross-validation over the {n} {what}: each predicted by a calibration fitted on the other folds"

    def _score(self, d: dict[str, Any], plan: Any, choice: int, prob: float) -> float:
        """The metric of a prediction with the label ``choice``; gold-label match when the metric cannot see
        this step's output (a step inside a larger program) or there is no metric."""
        if d["direct"] and self.metric is not None:
            final = dict(d["row"]["final"])
            final[plan.field] = plan.typed[choice]
            if plan.confidence is not None:
                final[plan.confidence] = prob
            return call_metric(self.metric, d["row"]["example"], Prediction(final))
        return 1.0 if choice == d["gold"] else 0.0

    def _evidence_rows(self, run: Run, name: str, plan: Any, data: list[dict[str, Any]], base: dict[str, Any],
                       cand: dict[str, Any]) -> None:
        """Per-example rows (uncalibrated and calibrated, on examples neither was fitted on) for the result."""
        rows = []
        for i, d in enumerate(data):
            rows.append({"example": d["row"]["example"], "direct": d.get("direct"),
                         "base": {"score": base["scores"][i], "output": {plan.field: plan.texts[base["choices"][i]]},
                                  "error": None},
                         "final": {"score": cand["scores"][i], "output": {plan.field: plan.texts[cand["choices"][i]]},
                                   "error": None}})
        self._rows[name] = rows

    def _record(self, run: Run, student: Module, result: Module, decisions: dict[str, Any]) -> None:
        """The selection, baseline and final scores and per-example rows, where the base optimizer's result reads
        them (for the first classifier; every classifier's decision is in ``result.candidates``)."""
        first = next(iter(decisions))
        sel = decisions[first].get("selection") or {}
        run.notes.selection = dict(sel)
        fp_base = program_fingerprint(student)
        fp_final = program_fingerprint(result)
        rows = self._rows.get(first) or []
        if not rows or self.metric is None:
            run.notes.valset = []
            return
        keep = sel.get("pick") == "candidate"
        base_total = 100.0 * sum(r["base"]["score"] for r in rows) / len(rows)
        final_total = 100.0 * sum((r["final"] if keep else r["base"])["score"] for r in rows) / len(rows)
        run.notes.add_full_score(fp_base, base_total)
        run.notes.add_full_score(fp_final, final_total)
        for r in rows:
            key = example_key(r["example"])
            run.store.put("score", f"{fp_base}/{key}", r["base"])
            if fp_final != fp_base:
                run.store.put("score", f"{fp_final}/{key}", r["final"])
        run.notes.valset = [r["example"] for r in rows]


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
