"""GEPA: reflective prompt evolution (Agrawal et al., 2025, "GEPA: Reflective Prompt Evolution Can Outperform
Reinforcement Learning").

A pool of candidates, each the student with its own instruction per predictor, grows one reflection at a time:

1. **Seed.** The program as given is candidate 0, scored on the validation examples the search uses (trial 0)
   and on the held-out ones (see 6).
2. **Parent.** ``candidate_selection_strategy="pareto"`` draws the parent among the candidates that are the
   best on at least one validation example (the Pareto front per example, less the candidates another front
   member covers everywhere), weighted by how many examples each is best on; a candidate that wins a single
   example stays in the draw. ``"current_best"`` takes the best mean score.
3. **Reflection.** The parent runs on a minibatch of ``reflection_minibatch_size`` training examples (a seeded
   shuffle, epoch after epoch), keeping each predictor's inputs and outputs and the metric's feedback. Unless
   every score there is perfect (``skip_perfect_score``), one predictor (``component_selector="round_robin"``,
   per candidate; ``"all"`` for all at once) gets a new instruction: the reflection model reads the current
   instruction and the minibatch (inputs, outputs, and the metric's feedback, or "correct" / "incorrect, the
   expected output: ..." when the metric gives none) and writes a better one, cleaned like MIPROv2's proposals
   (``proposer.clean_instruction``). A metric that takes ``pred_name`` and ``pred_trace`` is asked for feedback
   on that predictor's step.
4. **Acceptance.** The child runs on the same minibatch; only when its sum beats the parent's is it scored on
   the whole validation set and added to the pool.
5. **Merge** (``use_merge``, programs of several predictors). After a reflection that added a candidate, two
   front members that descend from a common ancestor by changing different predictors are combined (each
   predictor from whichever side changed it), tried on up to five validation examples where the parents differ,
   and scored in full when it does at least as well there as the better parent; ``max_merge_invocations``
   merges at most.
6. **Pick.** The best mean score on the validation examples the search used (the earliest candidate on ties).
   Part of the validation set is held out from the whole search (``holdout``, by default a third, at least 20
   examples; ``selection.py``), and the pick replaces the program as given only when it beats it there by a
   paired test at level ``alpha``; without a ``valset`` the held-out part comes out of the training set and
   is never reflected on either.

**Budget.** ``max_metric_calls`` counts examples run through a candidate and scored; scores are memoised per
(candidate, example) in the run store, so a score reused costs none. An iteration starts only when what is left
covers it to the end (parent and child on the minibatch, then a full validation run), so the limit is never
passed; the held-out check's two runs (the program as given, the pick) are counted and kept back from the
search. ``max_full_evals=k`` is ``k * (len(trainset) + len(valset))`` metric calls; ``auto`` plans
``T = max(ceil(4 * P * log2 N), ceil(1.5 * N))`` reflections (P predictors, N = 6 / 12 / 18 for light /
medium / heavy) with about one in three accepted: ``V * (1 + ceil(T / 3)) + 2 * b * T + 2 * H`` metric calls
for V validation examples searched, H held out and minibatches of b. ``max_lm_calls`` / ``max_cost`` bound every LM call besides
(task and reflection), exactly, as for every optimizer. Each stop returns the best candidate so far.

**Resume.** The run is a deterministic replay over the run store (``run_dir=`` or ``log_dir=``): random draws
are seeded per iteration, scores and reflections are stored records, so the same call after a crash or
``kill -9`` walks the same steps from the store without calling an LM again, and a larger budget continues a
run stopped by its budget.

**Why not the gepa package.** gepa 0.1.4's ``GEPAAdapter`` (evaluate, make_reflective_dataset,
propose_new_texts) would fit promptless's programs, but its engine checks its stop conditions between
iterations only, so a full validation run started near the limit passes ``max_metric_calls``; it catches and
logs exceptions raised while proposing (a budget stop there becomes a lost proposal and the loop goes on); it
keeps its own state in a pickle in ``run_dir``, a second store beside the run store that cannot be replayed
against it; and it would be a new dependency. The algorithm itself is small, so it is written here over the run
store, with the same budget, resume, memo, progress and report as every other optimizer.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field
from typing import Any

from ..data import Example, Prediction
from ..errors import BudgetExceededError, ConfigurationError, PromptlessError
from ..evaluate.scoring import Metric, call_metric_for_predictor, takes_pred_name
from ..modules.module import Module
from ..signature import InputField, OutputField, Signature
from ..values import render_value
from .base import Optimizer
from .fingerprint import example_key, program_fingerprint
from .proposer import accept_instruction, clean_instruction, describe_step, shorten
from .run import Run, logger
from .selection import DEFAULT_ALPHA, Selection

AUTO_CANDIDATES = {"light": 6, "medium": 12, "heavy": 18}
_REFUSED = {  # DSPy options promptless does not have, and why
    "use_wandb": "promptless logs to the promptless.optimize logger and the run store, not to Weights & Biases",
    "use_mlflow": "promptless logs to the promptless.optimize logger and the run store, not to MLflow",
    "enable_tool_optimization": "GEPA here evolves predictor instructions only, not tool descriptions",
}


class ReflectOnInstruction(Signature):
    """You improve the instruction of one step in a language-model program. You are given the step's inputs and
    outputs, its current instruction, and examples of the step at work: what it was given, what it answered,
    and feedback on each answer. Work out from the examples what the task really asks and why the step goes
    wrong where it does. Then write a new instruction for the step that keeps what works, fixes those failures,
    and states the facts about the task that the feedback reveals, since the step will not see these examples.
    Reply with the text of the new instruction only: no preamble, no quotes, no explanation after it."""

    step: str = InputField(desc="the step: its inputs and outputs")
    current_instruction: str = InputField(desc="the step's instruction now")
    examples_with_feedback: str = InputField(desc="the step's inputs, its outputs and feedback on each")
    new_instruction: str = OutputField(desc="the new instruction, and nothing else")


class _OutOfMetricCallsError(Exception):
    """The next step would pass max_metric_calls."""


@dataclass
class _Candidate:
    index: int
    instructions: dict[str, str]
    parents: list[int]
    fingerprint: str
    scores: list[float]  # per validation example, 0..1
    origin: str  # "seed", "reflection" or "merge"
    iteration: int

    @property
    def mean(self) -> float:
        return 100.0 * sum(self.scores) / len(self.scores) if self.scores else 0.0


@dataclass
class _State:
    pool: list[_Candidate] = field(default_factory=list)
    used: int = 0  # metric calls so far
    next_predictor: dict[int, int] = field(default_factory=dict)  # candidate -> round-robin position
    merges_due: int = 0
    merges_done: int = 0
    merges_tried: set[tuple[int, int, int]] = field(default_factory=set)
    found_new: bool = False  # the last iteration added a candidate by reflection
    reflections: int = 0  # minibatches drawn
    rejected: list[dict[str, Any]] = field(default_factory=list)
    log: list[dict[str, Any]] = field(default_factory=list)  # one entry per iteration


class GEPA(Optimizer):
    """Reflective prompt evolution with a Pareto front over validation examples (see the module docstring).

    ``GEPA(metric, reflection_lm=big, max_metric_calls=300).compile(program, trainset=train, valset=dev)``.

    DSPy's options, with DSPy's meaning: ``auto`` / ``max_full_evals`` / ``max_metric_calls`` (at most one; none
    only when ``max_lm_calls`` or ``max_cost`` bounds the run), ``reflection_minibatch_size``,
    ``candidate_selection_strategy`` (``"pareto"``, ``"current_best"``), ``reflection_lm`` (default: the task
    model), ``skip_perfect_score``, ``add_format_failure_as_feedback`` (show the examples the program failed on,
    with their error, to the reflection model; without it they are shown only when nothing else is left),
    ``component_selector`` (``"round_robin"``, ``"all"``), ``use_merge``, ``max_merge_invocations``,
    ``num_threads``, ``failure_score`` (the score of an example the program fails on), ``perfect_score``,
    ``log_dir`` (the run directory), ``track_stats`` and ``track_best_outputs`` (the run is always recorded in
    ``program.optimization``; with ``track_best_outputs`` its candidates also hold the best output per validation
    example), ``warn_on_score_mismatch``, ``seed``. ``instruction_proposer``, ``gepa_kwargs``, W&B, MLflow and
    tool optimization are refused with a reason. promptless adds ``task_model``, ``max_lm_calls``, ``max_cost``,
    ``run_dir``, ``progress``, ``max_iterations``, ``reflection_temperature``, ``reflection_max_tokens`` and
    the selection options of every optimizer: ``holdout`` ("auto", a fraction, a count, or None for DSPy's pick
    by validation score alone), ``alpha`` and ``selection_test``.

    The metric may return a score with feedback: ``pl.Prediction(score=..., feedback="...")`` or a
    ``(score, "feedback")`` tuple, and may take ``(example, pred, trace=None, pred_name=None, pred_trace=None)``.
    """

    def __init__(
        self,
        metric: Metric,
        *,
        auto: str | None = None,
        max_full_evals: int | None = None,
        max_metric_calls: int | None = None,
        reflection_minibatch_size: int = 3,
        candidate_selection_strategy: str = "pareto",
        reflection_lm: Any = None,
        skip_perfect_score: bool = True,
        add_format_failure_as_feedback: bool = False,
        instruction_proposer: Any = None,
        component_selector: str = "round_robin",
        use_merge: bool = True,
        max_merge_invocations: int | None = 5,
        num_threads: int | None = None,
        failure_score: float = 0.0,
        perfect_score: float = 1.0,
        log_dir: str | None = None,
        track_stats: bool = False,
        use_wandb: bool = False,
        wandb_api_key: str | None = None,
        wandb_init_kwargs: dict[str, Any] | None = None,
        track_best_outputs: bool = False,
        warn_on_score_mismatch: bool = True,
        enable_tool_optimization: bool = False,
        use_mlflow: bool = False,
        seed: int = 0,
        gepa_kwargs: dict[str, Any] | None = None,
        task_model: Any = None,
        max_lm_calls: int | None = None,
        max_cost: float | None = None,
        run_dir: str | None = None,
        progress: bool | None = None,
        max_iterations: int | None = None,
        reflection_temperature: float | None = 0.7,
        reflection_max_tokens: int = 600,
        holdout: Any = "auto",
        alpha: float = DEFAULT_ALPHA,
        selection_test: str = "auto",
        executor: Any = None,
    ) -> None:
        if metric is None:
            raise ConfigurationError("GEPA needs a metric: metric(example, prediction, trace=None) -> float, or a "
                                     "score with feedback: pl.Prediction(score=..., feedback='...')")
        super().__init__(metric=metric, max_lm_calls=max_lm_calls, max_cost=max_cost, run_dir=run_dir or log_dir,
                         num_threads=1 if num_threads is None else num_threads, progress=progress,
                         executor=executor)
        for option, wanted in (("use_wandb", use_wandb), ("use_mlflow", use_mlflow),
                               ("enable_tool_optimization", enable_tool_optimization)):
            if wanted:
                raise ConfigurationError(f"{option}=True: {_REFUSED[option]}; drop {option}")
        if wandb_api_key is not None or wandb_init_kwargs:
            raise ConfigurationError(f"wandb_api_key / wandb_init_kwargs: {_REFUSED['use_wandb']}; drop them")
        if instruction_proposer is not None:
            raise ConfigurationError(
                "instruction_proposer: GEPA here writes every instruction with reflection_lm, through the run's "
                "budget and run store (a custom proposer's LM calls could not be counted or replayed); pass "
                "reflection_lm=... instead"
            )
        if gepa_kwargs:
            raise ConfigurationError(f"gepa_kwargs {sorted(gepa_kwargs)}: GEPA here does not run on the gepa "
                                     "package (see the module docstring); use GEPA's own options instead")
        budgets = [n for n, v in (("auto", auto), ("max_full_evals", max_full_evals),
                                  ("max_metric_calls", max_metric_calls)) if v is not None]
        if len(budgets) > 1:
            raise ConfigurationError(f"give one of auto, max_full_evals and max_metric_calls, not {' and '.join(budgets)}")
        if not budgets and max_lm_calls is None and max_cost is None:
            raise ConfigurationError("GEPA needs a budget: auto='light' (or 'medium', 'heavy'), max_full_evals=..., "
                                     "max_metric_calls=..., or max_lm_calls=...")
        if auto is not None and auto not in AUTO_CANDIDATES:
            raise ConfigurationError(f"auto must be one of {', '.join(AUTO_CANDIDATES)} or None, got {auto!r}")
        for name, value, low in (("max_full_evals", max_full_evals, 1), ("max_metric_calls", max_metric_calls, 1),
                                 ("reflection_minibatch_size", reflection_minibatch_size, 1),
                                 ("max_merge_invocations", max_merge_invocations, 0),
                                 ("max_iterations", max_iterations, 0), ("reflection_max_tokens",
                                                                        reflection_max_tokens, 1)):
            if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < low):
                raise ConfigurationError(f"{name} must be a whole number >= {low}, got {value!r}")
        if candidate_selection_strategy not in ("pareto", "current_best"):
            raise ConfigurationError("candidate_selection_strategy must be 'pareto' or 'current_best', got "
                                     f"{candidate_selection_strategy!r}")
        if component_selector not in ("round_robin", "all"):
            raise ConfigurationError(f"component_selector must be 'round_robin' or 'all', got {component_selector!r}"
                                     " (a custom selector is not supported)")
        if not failure_score < perfect_score:
            raise ConfigurationError(f"failure_score ({failure_score}) must be below perfect_score ({perfect_score})")
        self.auto = auto
        self.max_full_evals = max_full_evals
        self.max_metric_calls = max_metric_calls
        self.reflection_minibatch_size = reflection_minibatch_size
        self.candidate_selection_strategy = candidate_selection_strategy
        self.reflection_lm = reflection_lm
        self.prompt_model = reflection_lm  # what Run.prompt_lm() calls
        self.task_model = task_model
        self.skip_perfect_score = bool(skip_perfect_score)
        self.add_format_failure_as_feedback = bool(add_format_failure_as_feedback)
        self.component_selector = component_selector
        self.use_merge = bool(use_merge)
        self.max_merge_invocations = max_merge_invocations
        self.failure_score = float(failure_score)
        self.perfect_score = float(perfect_score)
        self.track_stats = track_stats
        self.track_best_outputs = bool(track_best_outputs)
        self.warn_on_score_mismatch = bool(warn_on_score_mismatch)
        self.seed = seed
        self.max_iterations = max_iterations
        self.reflection_temperature = reflection_temperature
        self.reflection_max_tokens = reflection_max_tokens
        self.metric_calls_limit: int | None = None  # resolved by compile
        self._reserve = 0  # metric calls kept back from the search for the pick's held-out run
        self._init_selection(holdout, alpha, selection_test)

    def settings_identity(self) -> dict[str, Any]:
        # budgets (max_metric_calls, max_full_evals, max_iterations) are left out: a larger one continues a run
        def name(lm: Any) -> str | None:
            return None if lm is None else str(getattr(lm, "model", None) or type(lm).__name__)

        return {
            **super().settings_identity(),
            "auto": self.auto,
            "reflection_minibatch_size": self.reflection_minibatch_size,
            "candidate_selection_strategy": self.candidate_selection_strategy,
            "skip_perfect_score": self.skip_perfect_score,
            "add_format_failure_as_feedback": self.add_format_failure_as_feedback,
            "component_selector": self.component_selector,
            "use_merge": self.use_merge,
            "max_merge_invocations": self.max_merge_invocations,
            "failure_score": self.failure_score,
            "perfect_score": self.perfect_score,
            "seed": self.seed,
            "reflection_lm": name(self.reflection_lm),
            "task_model": name(self.task_model),
            "reflection_temperature": self.reflection_temperature,
            "reflection_max_tokens": self.reflection_max_tokens,
            **self._selection_identity(),
        }

    def _metric_budget(self, n_predictors: int, n_train: int, n_val: int, n_holdout: int,
                       n_given: int) -> int | None:
        if self.max_metric_calls is not None:
            return self.max_metric_calls
        if self.max_full_evals is not None:
            return self.max_full_evals * n_given
        if self.auto is None:
            return None
        n = AUTO_CANDIDATES[self.auto]
        t = max(math.ceil(4 * n_predictors * math.log2(n)), math.ceil(1.5 * n))
        return n_val * (1 + math.ceil(t / 3)) + 2 * min(self.reflection_minibatch_size, n_train) * t + 2 * n_holdout

    # -- the run -------------------------------------------------------------------------------------------
    def _compile(self, run: Run, student: Module, trainset: list[Example], valset: list[Example],
                 teacher: Module | None, **kwargs: Any) -> Module:
        if kwargs:
            raise TypeError(f"GEPA.compile() got unexpected option(s): {', '.join(sorted(kwargs))}")
        if teacher is not None:
            raise ConfigurationError("GEPA does not use a teacher program (it evolves the student's instructions "
                                     "from its own runs); drop teacher=...")
        run.keep_steps = True  # the reflection reads each predictor's inputs and outputs
        run.failure_score = self.failure_score
        # the selection holds part of the validation set (else of the training set) out of the whole search
        sel = Selection(run, valset or trainset, holdout=self.holdout, alpha=self.alpha, test=self.selection_test,
                        seed=self.seed)
        self._selection = sel
        if not valset:
            held = {example_key(ex) for ex in sel.holdout}
            trainset = [ex for ex in trainset if example_key(ex) not in held]
        val = sel.search
        hold = list(sel.holdout) if sel.checks else []
        names = [n for n, _ in student.named_predictors()]
        self.metric_calls_limit = self._metric_budget(len(names), len(trainset), len(val), len(hold),
                                                      len(trainset) + len(valset or trainset))
        self._reserve = len(hold)
        state = _State()
        run.progress.update(stage="seed")
        seed_fp = program_fingerprint(student)
        try:
            need = self._spend(run, state, seed_fp, val + hold, extra=0)
        except _OutOfMetricCallsError:
            run.stopped = "budget"
            return self._finish(run, student, state, names)
        baseline = self._score_baseline(run, student, val)
        ok = baseline is not None and sel.score_baseline(student)
        state.used += need - sum(1 for row in run.score_rows(seed_fp, val + hold) if row is None)
        if not ok:
            return self._finish(run, student, state, names)
        instructions = {n: p.signature.instructions for n, p in student.named_predictors()}
        state.pool.append(_Candidate(0, instructions, [], seed_fp, self._scores(run, seed_fp, val), "seed", 0))

        stall = 0
        stall_limit = math.ceil(len(trainset) / min(self.reflection_minibatch_size, len(trainset))) + 2
        iteration = 0
        while self.max_iterations is None or iteration < self.max_iterations:
            iteration += 1
            before = (state.used, len(state.pool))
            limit = "" if self.metric_calls_limit is None else f"/{self.metric_calls_limit}"
            run.progress.update(stage=f"iteration {iteration}, {len(state.pool)} candidates, "
                                      f"{state.used}{limit} metric calls")
            try:
                merged = False
                if self.use_merge and state.merges_due > 0 and state.found_new:
                    state.found_new = False
                    merged = self._merge(run, student, state, val, iteration)
                if not merged:
                    self._reflect(run, student, state, trainset, val, names, iteration)
            except (BudgetExceededError, _OutOfMetricCallsError):
                run.stopped = "budget"
                break
            stall = stall + 1 if (state.used, len(state.pool)) == before else 0
            if stall >= stall_limit:  # nothing new scored for a while: every minibatch perfect, or proposals repeat
                logger.info("GEPA: stopping after %d iterations that scored nothing new", stall)
                break
        return self._finish(run, student, state, names)

    # -- metric calls ---------------------------------------------------------------------------------------------
    def _spend(self, run: Run, state: _State, fp: str, examples: list[Example], *, extra: int) -> int:
        """Count the metric calls scoring ``examples`` with candidate ``fp`` takes (those not in the memo); raise
        _OutOfMetricCallsError when they, plus ``extra`` still to come in this step, would pass the limit."""
        need = sum(1 for row in run.score_rows(fp, examples) if row is None)
        limit = self.metric_calls_limit
        if limit is not None and state.used + need + extra > limit - self._reserve:
            raise _OutOfMetricCallsError
        return need

    def _run(self, run: Run, state: _State, kind: str, params: dict[str, Any], program: Module,
             examples: list[Example]) -> list[float]:
        fp = program_fingerprint(program)
        need = sum(1 for row in run.score_rows(fp, examples) if row is None)
        if need == 0 and kind == "minibatch":  # every score already seen: nothing to record
            return self._scores(run, fp, examples)
        try:
            run.trial(kind, params, fp, examples, program)
        finally:
            state.used += need - sum(1 for row in run.score_rows(fp, examples) if row is None)
        if kind == "full":
            run.notes.add_full_score(fp, run.trials[-1].score)
        return self._scores(run, fp, examples)

    @staticmethod
    def _scores(run: Run, fp: str, examples: list[Example]) -> list[float]:
        return [0.0 if s is None else s for s in run.seen_scores(fp, examples)]

    # -- candidates ----------------------------------------------------------------------------------------------
    @staticmethod
    def _build(student: Module, instructions: dict[str, str]) -> Module:
        program = student.deepcopy()
        for name, p in program.named_predictors():
            if p.signature.instructions != instructions[name]:
                p.signature = p.signature.with_instructions(instructions[name])
        return program

    def _add(self, run: Run, state: _State, student: Module, val: list[Example], instructions: dict[str, str],
             parents: list[int], origin: str, iteration: int) -> _Candidate:
        program = self._build(student, instructions)
        index = len(state.pool)
        self._run(run, state, "full", {"candidate": index, "parents": parents, "origin": origin,
                                       "iteration": iteration}, program, val)
        fp = program_fingerprint(program)
        cand = _Candidate(index, dict(instructions), parents, fp, self._scores(run, fp, val), origin, iteration)
        state.pool.append(cand)
        return cand

    @staticmethod
    def _fronts(pool: list[_Candidate]) -> list[set[int]]:
        """Per validation example, the candidates with the best score on it."""
        fronts = []
        for j in range(len(pool[0].scores)):
            best = max(c.scores[j] for c in pool)
            fronts.append({c.index for c in pool if c.scores[j] == best})
        return fronts

    def _front(self, pool: list[_Candidate]) -> dict[int, int]:
        """The Pareto front's members that no other member covers on every example they are best on, each with
        the number of examples it is best on."""
        fronts = self._fronts(pool)
        alive = set().union(*fronts) if fronts else {0}
        changed = True
        while changed:
            changed = False
            for i in sorted(alive, key=lambda i: (pool[i].mean, -i)):  # weakest first, newer before older
                others = alive - {i}
                if others and all(front & others for front in fronts if i in front):
                    alive.discard(i)
                    changed = True
                    break
        return {i: sum(1 for front in fronts if i in front) for i in sorted(alive)}

    def _select(self, state: _State, iteration: int) -> _Candidate:
        pool = state.pool
        if self.candidate_selection_strategy == "current_best":
            return max(pool, key=lambda c: (c.mean, -c.index))
        front = self._front(pool)
        rng = random.Random(f"{self.seed}/select/{iteration}")
        ids = list(front)
        return pool[rng.choices(ids, weights=[front[i] for i in ids])[0]]

    def _minibatch(self, state: _State, trainset: list[Example]) -> list[Example]:
        n = len(trainset)
        size = min(self.reflection_minibatch_size, n)
        start = state.reflections * size
        state.reflections += 1
        out = []
        for q in range(start, start + size):
            order = list(range(n))
            random.Random(f"{self.seed}/epoch/{q // n}").shuffle(order)
            out.append(trainset[order[q % n]])
        return out

    # -- reflection -----------------------------------------------------------------------------------------------
    def _reflect(self, run: Run, student: Module, state: _State, trainset: list[Example], val: list[Example],
                 names: list[str], iteration: int) -> None:
        parent = self._select(state, iteration)
        batch = self._minibatch(state, trainset)
        parent_program = self._build(student, parent.instructions)
        self._spend(run, state, parent.fingerprint, batch, extra=len(batch) + len(val))  # the whole iteration fits
        base = {"iteration": iteration, "parent": parent.index}
        parent_scores = self._run(run, state, "minibatch", {**base, "role": "parent"}, parent_program, batch)
        note: dict[str, Any] = {"iteration": iteration, "parent": parent.index, "parent score": sum(parent_scores)}
        if self.skip_perfect_score and all(s >= self.perfect_score for s in parent_scores):
            return self._note(state, note, "perfect on its minibatch: nothing to reflect on")
        if self.component_selector == "all":
            targets = list(names)
        else:
            pos = state.next_predictor.get(parent.index, 0)
            state.next_predictor[parent.index] = pos + 1
            targets = [names[pos % len(names)]]
        note["predictors"] = targets
        rows = run.score_rows(parent.fingerprint, batch)
        child = dict(parent.instructions)
        for name in targets:
            text = self._propose(run, state, parent_program, parent, name, batch, rows, iteration)
            if text is not None:
                child[name] = text
        if child == parent.instructions:
            return self._note(state, note, "no usable proposal")
        child_program = self._build(student, child)
        child_fp = program_fingerprint(child_program)
        if any(c.fingerprint == child_fp for c in state.pool):
            return self._note(state, note, "the proposal repeats a candidate in the pool")
        self._spend(run, state, child_fp, batch, extra=len(val))
        child_scores = self._run(run, state, "minibatch", {**base, "role": "child", "predictors": targets},
                                 child_program, batch)
        note["child score"] = sum(child_scores)
        if sum(child_scores) <= sum(parent_scores):
            return self._note(state, note, "rejected: the child does no better on the minibatch")
        self._spend(run, state, child_fp, val, extra=0)
        cand = self._add(run, state, student, val, child, [parent.index], "reflection", iteration)
        self._note(state, note, f"accepted as candidate {cand.index} ({cand.mean:.1f} on the validation set)")
        state.found_new = True
        if self.use_merge and (self.max_merge_invocations is None
                               or state.merges_done + state.merges_due < self.max_merge_invocations):
            state.merges_due += 1

    def _propose(self, run: Run, state: _State, program: Module, parent: _Candidate, name: str,
                 batch: list[Example],
                 rows: list[dict[str, Any] | None], iteration: int) -> str | None:
        """A new instruction for predictor ``name`` from the reflection model (None when the reply is unusable)."""
        predictor = dict(program.named_predictors())[name]

        def ask() -> dict[str, Any]:
            from ..modules.predict import Predict

            shown = self._examples_text(program, name, batch, rows)
            params: dict[str, Any] = {"rollout_id": f"gepa/{self.seed}/{iteration}/{name}",
                                      "max_tokens": self.reflection_max_tokens}
            if self.reflection_temperature is not None:
                params["temperature"] = self.reflection_temperature
            try:
                pred = Predict(ReflectOnInstruction, lm=run.prompt_lm(), **params)(
                    step=describe_step(name, predictor), current_instruction=parent.instructions[name],
                    examples_with_feedback=shown)
                return {"raw": str(pred.new_instruction), "error": None}
            except BudgetExceededError:
                raise
            except PromptlessError as exc:  # an unreadable reply is one lost proposal, not a failed run
                return {"raw": "", "error": f"{type(exc).__name__}: {exc}"[:400]}

        rec = run.cached("proposal", f"gepa/{self.seed}/{iteration}/{parent.fingerprint}/{name}", ask)
        text = shorten(clean_instruction(rec.get("raw", "")), 2500)
        why = accept_instruction(text, [parent.instructions[name]])
        if why is not None:
            state.rejected.append({"iteration": iteration, "predictor": name, "raw": str(rec.get("raw", ""))[:500],
                                   "reason": rec.get("error") or why})
            return None
        return text

    def _examples_text(self, program: Module, name: str, batch: list[Example],
                       rows: list[dict[str, Any] | None]) -> str:
        """The minibatch as the reflection model reads it: per example, the step's inputs and outputs and the
        feedback on them."""
        predictors = dict(program.named_predictors())
        per_predictor = takes_pred_name(self.metric) if self.metric is not None else False
        blocks: list[tuple[bool, str]] = []  # (failed, text)
        for ex, row in zip(batch, rows, strict=True):
            if row is None:
                continue
            steps = [s for s in row.get("steps") or [] if s[0] == name]
            failed = bool(row.get("error"))
            if steps:
                inputs, outputs = steps[0][1], steps[0][2]
            elif failed or not row.get("steps"):
                inputs, outputs = ex.inputs().to_dict(), row.get("output") or {}
            else:
                continue  # the step did not run on this example
            score = float(row.get("score") or 0.0)
            if failed:
                feedback = f"The program failed on this example: {row['error']}"
            elif per_predictor and steps:
                feedback = self._predictor_feedback(ex, row, name, predictors)
            else:
                feedback = row.get("feedback") or self._default_feedback(ex, score, row.get("output") or {})
            lines = ["Inputs:"] + [f"- {k}: {_value(v)}" for k, v in inputs.items()]
            lines += ["Outputs:"] + ([f"- {k}: {_value(v)}" for k, v in outputs.items()] or ["(none)"])
            lines.append(f"Feedback (score {score:g}): {feedback}")
            blocks.append((failed, "\n".join(lines)))
        shown = [b for b in blocks if self.add_format_failure_as_feedback or not b[0]] or [b for b in blocks]
        return "\n\n".join(f"Example {i}\n{text}" for i, (_, text) in enumerate(shown, 1)) or "(no examples)"

    def _default_feedback(self, ex: Example, score: float, output: dict[str, Any]) -> str:
        if score >= self.perfect_score:
            return "correct."
        labels = {k: v for k, v in ex.labels().items() if k in output} or ex.labels().to_dict()
        expected = "; ".join(f"{k}: {_value(v)}" for k, v in labels.items())
        head = "incorrect." if score <= self.failure_score else f"partly correct (the best score is {self.perfect_score:g})."
        return f"{head} The expected output: {expected}." if expected else head

    def _predictor_feedback(self, ex: Example, row: dict[str, Any], name: str, predictors: dict[str, Any]) -> str:
        """The metric's feedback on one predictor's step (DSPy's ``pred_name`` / ``pred_trace`` call)."""
        trace = [(predictors.get(s[0]), s[1], Prediction(s[2])) for s in row.get("steps") or []]
        pred_trace = [t for t, s in zip(trace, row.get("steps") or [], strict=True) if s[0] == name]
        assert self.metric is not None
        score, feedback = call_metric_for_predictor(self.metric, ex, Prediction(row.get("output") or {}), trace,
                                                    name, pred_trace)
        if self.warn_on_score_mismatch and abs(score - float(row.get("score") or 0.0)) > 1e-9 \
                and not getattr(self, "_warned_mismatch", False):
            self._warned_mismatch = True
            logger.warning("GEPA: the metric scores predictor %r's step %g but the whole program %g on the same "
                           "example; GEPA uses the program's score (warn_on_score_mismatch=False hides this)",
                           name, score, float(row.get("score") or 0.0))
        return feedback or (row.get("feedback") or self._default_feedback(ex, float(row.get("score") or 0.0),
                                                                          row.get("output") or {}))

    # -- merge ----------------------------------------------------------------------------------------------------
    def _ancestors(self, pool: list[_Candidate], i: int) -> set[int]:
        seen: set[int] = set()
        todo = list(pool[i].parents)
        while todo:
            j = todo.pop()
            if j not in seen:
                seen.add(j)
                todo.extend(pool[j].parents)
        return seen

    def _merge(self, run: Run, student: Module, state: _State, val: list[Example], iteration: int) -> bool:
        """Try one merge of two front members with a common ancestor; True when one was scored."""
        pool = state.pool
        rng = random.Random(f"{self.seed}/merge/{iteration}")
        members = list(self._front(pool))
        pairs = [(i, j) for i in members for j in members if i < j]
        rng.shuffle(pairs)
        known = {c.fingerprint for c in pool}
        for i, j in pairs:
            anc_i, anc_j = self._ancestors(pool, i), self._ancestors(pool, j)
            if i in anc_j or j in anc_i:
                continue
            for a in sorted(anc_i & anc_j, key=lambda a: (-pool[a].mean, a)):
                if (i, j, a) in state.merges_tried or pool[a].mean > min(pool[i].mean, pool[j].mean):
                    continue
                merged = self._combine(pool[a].instructions, pool[i], pool[j])
                if merged is None:
                    continue
                program = self._build(student, merged)
                fp = program_fingerprint(program)
                if fp in known:
                    continue
                state.merges_tried.add((i, j, a))
                return self._try_merge(run, student, state, val, iteration, merged, program, i, j, a, rng)
        return False

    @staticmethod
    def _combine(ancestor: dict[str, str], ci: _Candidate, cj: _Candidate) -> dict[str, str] | None:
        """Each predictor from whichever side changed it from the ancestor (the better side when both did); None
        unless each side brings a change of its own."""
        out = {}
        from_i = from_j = False
        for name, base in ancestor.items():
            a, b = ci.instructions[name], cj.instructions[name]
            if a == b:
                out[name] = a
            elif a == base:
                out[name], from_j = b, True
            elif b == base:
                out[name], from_i = a, True
            else:
                out[name] = a if ci.mean >= cj.mean else b
                from_i, from_j = from_i or ci.mean >= cj.mean, from_j or ci.mean < cj.mean
        return out if from_i and from_j else None

    def _try_merge(self, run: Run, student: Module, state: _State, val: list[Example], iteration: int,
                   merged: dict[str, str], program: Module, i: int, j: int, a: int, rng: random.Random) -> bool:
        si, sj = state.pool[i].scores, state.pool[j].scores
        groups = [[k for k in range(len(val)) if si[k] > sj[k]], [k for k in range(len(val)) if sj[k] > si[k]],
                  [k for k in range(len(val)) if si[k] == sj[k]]]
        picked: list[int] = []
        for g in groups:
            picked += rng.sample(g, min(len(g), 2, 5 - len(picked)))
        rest = [k for k in range(len(val)) if k not in picked]
        picked += rng.sample(rest, min(len(rest), 5 - len(picked)))
        picked.sort()
        sub = [val[k] for k in picked]
        self._spend(run, state, program_fingerprint(program), sub, extra=len(val))
        state.merges_due -= 1
        state.merges_done += 1
        scores = self._run(run, state, "minibatch", {"iteration": iteration, "merge": [i, j], "ancestor": a},
                           program, sub)
        best_parent = max(sum(si[k] for k in picked), sum(sj[k] for k in picked))
        note = {"iteration": iteration, "merge": [i, j], "ancestor": a, "parent score": best_parent,
                "child score": sum(scores)}
        if sum(scores) < best_parent:
            self._note(state, note, "merge rejected: it does worse than the better parent on the examples tried")
            return True
        self._spend(run, state, program_fingerprint(program), val, extra=0)
        cand = self._add(run, state, student, val, merged, [i, j], "merge", iteration)
        self._note(state, note, f"merge accepted as candidate {cand.index} ({cand.mean:.1f} on the validation set)")
        return True

    @staticmethod
    def _note(state: _State, note: dict[str, Any], outcome: str) -> None:
        """Record what an iteration did (the result's ``candidates["iterations"]``) and log it."""
        note["outcome"] = outcome
        state.log.append(note)
        logger.info("GEPA iteration %d: %s", note["iteration"], ", ".join(f"{k} {v}" for k, v in note.items()
                                                                         if k != "iteration"))

    # -- result ---------------------------------------------------------------------------------------------------
    def _finish(self, run: Run, student: Module, state: _State, names: list[str]) -> Module:
        pool = state.pool
        if not pool:  # the budget ran out before the program as given was scored
            run.notes.candidates = {"metric_calls": state.used, "max_metric_calls": self.metric_calls_limit,
                                    "pool": [], "iterations": []}
            return student.deepcopy()
        best = max(pool, key=lambda c: (c.mean, -c.index))
        front = self._front(pool)
        fronts = self._fronts(pool)
        distinct: dict[str, list[str]] = {n: [] for n in names}
        for c in pool:
            for n in names:
                if c.instructions[n] not in distinct[n]:
                    distinct[n].append(c.instructions[n])
        run.notes.candidates = {
            "instructions": distinct,
            "rejected_proposals": state.rejected,
            "pool": [{"#": c.index, "origin": c.origin, "parents": c.parents, "iteration": c.iteration,
                      "score": round(c.mean, 2), "best on": sum(1 for f in fronts if c.index in f),
                      "on the front": c.index in front,
                      "instructions": {n: c.instructions[n] for n in names
                                       if c.index == 0 or c.instructions[n] != pool[0].instructions[n]}}
                     for c in pool],
            "pareto_front": sorted(front),
            "metric_calls": state.used,
            "max_metric_calls": self.metric_calls_limit,
            "merges": state.merges_done,
            "iterations": state.log,
        }
        if self.track_best_outputs and run.notes.valset:
            best_outputs = []
            for k, _ in enumerate(run.notes.valset):
                top = max(pool, key=lambda c: (c.scores[k], -c.index))
                row = run.score_rows(top.fingerprint, [run.notes.valset[k]])[0] or {}
                best_outputs.append({"candidate": top.index, "score": top.scores[k], "output": row.get("output")})
            run.notes.candidates["best_outputs"] = best_outputs
        # the pick replaces the program as given only when it also wins on the held-out examples (selection.py)
        sel = self._selection
        params = {"candidate": best.index, "origin": best.origin, "parents": best.parents}
        pick = self._build(student, best.instructions) if best.index != 0 else None
        hold = list(sel.holdout) if sel.checks and pick is not None else []
        need = sum(1 for row in run.score_rows(best.fingerprint, hold) if row is None)
        program = sel.decide(student, pick, params,
                             why_none="no candidate beat the program as given on the validation examples searched")
        state.used += need - sum(1 for row in run.score_rows(best.fingerprint, hold) if row is None)
        run.notes.candidates["metric_calls"] = state.used
        return program


def _value(value: Any, limit: int = 600) -> str:
    text = render_value(value)
    return text if len(text) <= limit else text[:limit] + "..."


__all__ = ["GEPA", "ReflectOnInstruction"]
