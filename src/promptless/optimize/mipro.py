"""MIPROv2: a Bayesian search over instructions and demo sets, one choice of each per predictor.

1. **Baseline.** Part of the validation set is held out from the search (``holdout``; by default a third, at
   least 20 examples, stratified by label; see ``selection.py``). The program as given is scored on the rest,
   the search examples (trial 0), and on the held-out part. It stays a candidate for the final pick.
2. **Demo candidates** per predictor: the current demos, zero-shot, labelled only, the bootstrapped set and
   shuffled bootstraps of random size (see ``bootstrap.demo_candidates``). Skipped entirely, with no
   task-model call, when ``max_bootstrapped_demos=0`` and ``max_labeled_demos=0`` (an instruction-only search).
   With ``knn=`` an embedder, per-input nearest-neighbour demos (``knn.KNNProgram``) are one more choice, for
   the whole program.
3. **Instruction candidates** per predictor: the current instruction (candidate 0) and proposals by the
   prompt model, each grounded in a data summary, the program's description, the step's signature, worked
   examples, the current instruction, the baseline's mistakes on the search examples (for label outputs: which
   labels it over- and under-predicts, and what each label covers, from training inputs) and a writing tip,
   and each cleaned to the instruction itself
   (``proposer.clean_instruction``). Proposals use temperatures from 0.7 to 1.0 and distinct ``rollout_id``
   values, so they differ even with the LM cache on and are the same on a rerun with the same seed.
4. **Search.** optuna's TPE sampler (seeded, multivariate) picks one instruction and one demo set per
   predictor. Each trial scores its candidate on a seeded minibatch of the validation set. Scores are memoised
   per (candidate, example): a candidate TPE suggests again is answered from the memo at no cost, and a full
   evaluation reuses every example already scored. Every ``minibatch_full_eval_steps`` trials (and at the end)
   the most promising candidate not yet fully scored is scored on the whole validation set, unless it is
   already behind the best fully-scored program on the very examples both were scored on. A minibatch
   score is reported to TPE as a paired estimate (the baseline's full score plus the candidate's lift over the
   baseline on the same examples), which is far less noisy than the raw minibatch mean.
5. **Pick.** The best full-evaluation score on the search examples is the search's pick (the baseline on
   ties). It replaces the program as given only when it also beats it on the held-out examples by more than
   the noise (a paired test at level ``alpha``); the result carries the evidence.

``auto`` presets, and the most LM calls each spent on 60 train / 100 dev examples, instruction-only (measured
with a scripted LM over three seeds; a two-step program runs two task calls per example):

========  ==========  ======  =========  ======  ==================  ==================  ===================
preset    candidates  trials  minibatch  V cap   1 predictor         2 predictors        1 predictor, 300 dev
========  ==========  ======  =========  ======  ==================  ==================  ===================
light     6           10      20         100     285 (280 + 5)       930 (920 + 10)      285 (capped at 100)
medium    12          24      25         300     536 (525 + 11)      2,022 (2,000 + 22)  861 (850 + 11)
heavy     18          48      30         1,000   767 (750 + 17)      4,094 (4,060 + 34)  1,367 (1,350 + 17)
========  ==========  ======  =========  ======  ==================  ==================  ===================

(task + prompt calls). For one predictor the bound is ``V + (N-1) + min(T, N-1)·B + F·(V-B)`` with V validation
examples, N candidates, T trials, B the minibatch size and F full evaluations (one per
``minibatch_full_eval_steps`` scored trials, plus one at the end; each skipped for a candidate already behind).
DSPy 3.4.1's light preset spends about 580 calls on the same 60/100 instruction-only task; light here at most
285. With demos (``max_bootstrapped_demos > 0``) add the bootstrapping (about ``max_bootstrapped_demos`` divided
by the teacher's success rate per distinct demo set; traces are shared between sets) and up to ``T·B`` for the
larger search space.
"""

from __future__ import annotations

import logging
import math
import random
import warnings
from typing import Any

from ..data import Example
from ..errors import BudgetExceededError, ConfigurationError
from ..evaluate.scoring import Metric
from ..modules.module import Module
from ..modules.neighbours import as_embedder
from .base import Optimizer
from .bootstrap import demo_candidates
from .fingerprint import program_fingerprint
from .knn import KNNProgram, knn_candidate, vectorizer_name
from .proposer import TIPS, InstructionProposer, confusion_text, label_guide, mistakes_text
from .result import Trial
from .run import Run
from .selection import DEFAULT_ALPHA, Selection

AUTO_PRESETS: dict[str, dict[str, int]] = {
    "light": {"num_candidates": 6, "num_trials": 10, "minibatch_size": 20, "minibatch_full_eval_steps": 10,
              "valset_cap": 100},
    "medium": {"num_candidates": 12, "num_trials": 24, "minibatch_size": 25, "minibatch_full_eval_steps": 8,
               "valset_cap": 300},
    "heavy": {"num_candidates": 18, "num_trials": 48, "minibatch_size": 30, "minibatch_full_eval_steps": 8,
              "valset_cap": 1000},
}


def _import_optuna() -> Any:
    try:
        import optuna
    except ImportError:
        raise ConfigurationError(
            "MIPROv2 needs optuna for its search: pip install 'promptless[optimize]' (or pip install optuna)"
        ) from None
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    logging.getLogger("optuna").setLevel(logging.WARNING)
    return optuna


def _model_name(lm: Any) -> str | None:
    if lm is None:
        return None
    return str(getattr(lm, "model", None) or type(lm).__name__)


class MIPROv2(Optimizer):
    """Instruction and demo search with a separate prompt model (see the module docstring for the steps).

    ``MIPROv2(metric, prompt_model=big, task_model=small, auto="light", max_bootstrapped_demos=0,
    max_labeled_demos=0).compile(program, trainset=train, valset=dev)`` runs an instruction-only search.

    ``auto``: ``"light"``, ``"medium"``, ``"heavy"`` or None (then give ``num_candidates`` and ``num_trials``).
    Explicit ``num_candidates``, ``num_trials``, ``minibatch_size`` and ``minibatch_full_eval_steps`` override
    the preset. ``minibatch=False`` scores every trial on the whole validation set. ``seed`` fixes the
    proposals, minibatches and TPE. ``data_summary``: ``"stats"`` (computed, no call), ``"lm"`` (one prompt-model
    call) or False. ``proposal_max_tokens`` caps each proposal's length. ``feedback=True`` shows the prompt
    model how the baseline does on the validation set (its answer distribution and a few mistakes; already
    scored, so no extra call). ``max_lm_calls`` / ``max_cost`` /
    ``run_dir`` / ``num_threads``: see ``Optimizer``
    (DSPy's ``log_dir`` is taken as the run directory).

    DSPy's names work as there: ``teacher_settings`` (``{"lm": ..., "adapter": ...}``: what the teacher runs with
    while bootstrapping demos), ``track_stats=True`` (the run is always recorded in ``program.optimization``;
    False is refused), and the ``compile`` options ``program_aware_proposer``, ``data_aware_proposer``,
    ``tip_aware_proposer``, ``fewshot_aware_proposer`` (False leaves that grounding out of the proposals),
    ``view_data_batch_size`` (examples the prompt model reads for ``data_summary="lm"``) and
    ``provide_traceback`` (keep each failed example's traceback in the result). An option that cannot do what
    it asks for raises ``ConfigurationError`` rather than being ignored.

    Selection (``selection.py``): ``holdout`` ("auto": a third of the validation set, at least 20 examples; a
    fraction; a count; None: pick on the whole validation set, without a check) is kept from the search, and
    the search's pick replaces the program only when it beats it there by a paired test at level ``alpha``
    (``selection_test``: "auto", "mcnemar", "sign" or "bootstrap"). ``knn``: an embedder (``pl.Embedder(...)``,
    its name such as ``"local/all-MiniLM-L6-v2"``, or a function texts -> vectors) makes per-input nearest-neighbour demos (``knn_k`` of them, default the
    larger demo limit) one of the demo choices; None (default) leaves them out, as does an instruction-only
    search.
    """

    def __init__(
        self,
        metric: Metric,
        prompt_model: Any = None,
        task_model: Any = None,
        teacher_settings: dict[str, Any] | None = None,
        max_bootstrapped_demos: int = 4,
        max_labeled_demos: int = 4,
        auto: str | None = "light",
        num_candidates: int | None = None,
        num_threads: int = 1,
        max_errors: int | None = None,
        seed: int = 9,
        init_temperature: float = 0.5,
        verbose: bool | None = None,
        track_stats: bool = True,
        metric_threshold: float | None = None,
        *,
        num_trials: int | None = None,
        minibatch: bool = True,
        minibatch_size: int | None = None,
        minibatch_full_eval_steps: int | None = None,
        max_rounds: int = 1,
        tips: tuple[str, ...] = TIPS,
        data_summary: str | bool = "stats",
        proposal_max_tokens: int = 450,
        feedback: bool = True,
        max_lm_calls: int | None = None,
        max_cost: float | None = None,
        run_dir: str | None = None,
        progress: bool | None = None,
        log_dir: str | None = None,
        holdout: Any = "auto",
        alpha: float = DEFAULT_ALPHA,
        selection_test: str = "auto",
        knn: Any = None,
        knn_k: int | None = None,
        executor: Any = None,
    ) -> None:
        if metric is None:
            raise ConfigurationError("MIPROv2 needs a metric: metric(example, prediction, trace=None) -> bool | float")
        super().__init__(metric=metric, max_lm_calls=max_lm_calls, max_cost=max_cost, run_dir=run_dir or log_dir,
                         num_threads=num_threads, progress=verbose if progress is None else progress,
                         executor=executor)
        if auto is not None and auto not in AUTO_PRESETS:
            raise ConfigurationError(f"auto must be one of {', '.join(AUTO_PRESETS)} or None, got {auto!r}")
        self.prompt_model = prompt_model
        self.task_model = task_model
        self.teacher_settings = _check_teacher_settings(teacher_settings)
        self.max_bootstrapped_demos = max_bootstrapped_demos
        self.max_labeled_demos = max_labeled_demos
        self.auto = auto
        self.num_candidates = num_candidates
        self.num_trials = num_trials
        self.max_errors = max_errors
        self.seed = seed
        self.init_temperature = init_temperature
        self.metric_threshold = metric_threshold
        self.minibatch = minibatch
        self.minibatch_size = minibatch_size
        self.minibatch_full_eval_steps = minibatch_full_eval_steps
        self.max_rounds = max_rounds
        self.tips = tuple(tips)
        self.data_summary = data_summary
        self.proposal_max_tokens = proposal_max_tokens
        self.feedback = feedback
        if track_stats is not True:
            raise ConfigurationError(
                f"track_stats={track_stats!r}: promptless always records the run (trials, scores, calls) in "
                "program.optimization and optimizer.result, and cannot switch that off; drop track_stats"
            )
        self.track_stats = track_stats
        # DSPy's per-call proposer options (set by compile(), part of the run's identity)
        self.program_aware_proposer = True
        self.data_aware_proposer = True
        self.tip_aware_proposer = True
        self.fewshot_aware_proposer = True
        self.view_data_batch_size: int | None = None
        self.provide_traceback = False
        self._init_selection(holdout, alpha, selection_test)
        knn = as_embedder(knn, "MIPROv2")
        if knn_k is not None and (isinstance(knn_k, bool) or not isinstance(knn_k, int) or knn_k < 1):
            raise ConfigurationError(f"knn_k must be a whole number >= 1, got {knn_k!r}")
        self.knn = knn
        self.knn_k = knn_k
        self._check_options()

    # -- options ----------------------------------------------------------------------------------------
    def _resolved(self) -> dict[str, Any]:
        preset = AUTO_PRESETS.get(self.auto or "", {})
        if self.auto is None and (self.num_candidates is None or self.num_trials is None):
            raise ConfigurationError(
                "with auto=None, give both num_candidates and num_trials (or use auto='light', 'medium' or 'heavy')"
            )
        out = {
            "num_candidates": self.num_candidates if self.num_candidates is not None else preset["num_candidates"],
            "num_trials": self.num_trials if self.num_trials is not None else preset["num_trials"],
            "minibatch_size": self.minibatch_size if self.minibatch_size is not None
            else preset.get("minibatch_size", 25),
            "minibatch_full_eval_steps": self.minibatch_full_eval_steps if self.minibatch_full_eval_steps is not None
            else preset.get("minibatch_full_eval_steps", 10),
            "valset_cap": preset.get("valset_cap"),
        }
        return out

    def _check_options(self) -> None:
        for name in ("max_bootstrapped_demos", "max_labeled_demos", "max_rounds"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 0:
                raise ConfigurationError(f"{name} must be a whole number >= 0, got {value!r}")
        for name in ("num_candidates", "num_trials", "minibatch_size", "minibatch_full_eval_steps"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or value < 1):
                raise ConfigurationError(f"{name} must be a whole number >= 1, got {value!r}")
        for name in (*self._PROPOSER_FLAGS, "provide_traceback"):
            if not isinstance(getattr(self, name), bool):
                raise ConfigurationError(f"{name} must be True or False, got {getattr(self, name)!r}")
        v = self.view_data_batch_size
        if v is not None:
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise ConfigurationError(f"view_data_batch_size must be a whole number >= 1, got {v!r}")
            if self.data_summary != "lm" or not self.data_aware_proposer:
                raise ConfigurationError(
                    f"view_data_batch_size={v} sets how many training examples the prompt model reads to "
                    f"summarize the data, which only happens with data_summary='lm' (this run: "
                    f"data_summary={self.data_summary!r}, data_aware_proposer={self.data_aware_proposer}); "
                    "pass data_summary='lm' to MIPROv2, or drop view_data_batch_size"
                )
        if self.teacher_settings and self.max_bootstrapped_demos == 0:
            raise ConfigurationError(
                "teacher_settings set how the teacher runs while bootstrapping demos, but max_bootstrapped_demos=0 "
                "bootstraps none; drop teacher_settings or allow bootstrapped demos"
            )

    def settings_identity(self) -> dict[str, Any]:
        return {
            **super().settings_identity(),
            **self._resolved(),
            "auto": self.auto,
            "minibatch": self.minibatch,
            "max_bootstrapped_demos": self.max_bootstrapped_demos,
            "max_labeled_demos": self.max_labeled_demos,
            "max_rounds": self.max_rounds,
            "metric_threshold": self.metric_threshold,
            "seed": self.seed,
            "init_temperature": self.init_temperature,
            "tips": list(self.tips),
            "data_summary": self.data_summary,
            "proposal_max_tokens": self.proposal_max_tokens,
            "feedback": self.feedback,
            "prompt_model": _model_name(self.prompt_model),
            "task_model": _model_name(self.task_model),
            "teacher_settings": {k: _model_name(v) if k == "lm" else type(v).__name__
                                 for k, v in sorted(self.teacher_settings.items())},
            **{name: getattr(self, name) for name in self._PROPOSER_FLAGS},
            "view_data_batch_size": self.view_data_batch_size,
            **self._selection_identity(),
            **({"knn": vectorizer_name(self.knn), "knn_k": self._knn_k()} if self._uses_knn() else {}),
        }

    def _uses_knn(self) -> bool:
        return self.knn is not None and (self.max_bootstrapped_demos > 0 or self.max_labeled_demos > 0)

    def _knn_k(self) -> int:
        return self.knn_k or max(1, self.max_bootstrapped_demos, self.max_labeled_demos)

    def _planned_trials(self) -> int | None:
        return int(self._resolved()["num_trials"])

    _PROPOSER_FLAGS = ("program_aware_proposer", "data_aware_proposer", "tip_aware_proposer",
                       "fewshot_aware_proposer")
    _COMPILE_OPTIONS = ("num_trials", "minibatch", "minibatch_size", "minibatch_full_eval_steps",
                        "max_bootstrapped_demos", "max_labeled_demos", "seed", "num_candidates",
                        *_PROPOSER_FLAGS, "view_data_batch_size", "provide_traceback")

    def compile(
        self,
        student: Module,
        trainset: Any = None,
        *,
        valset: Any = None,
        teacher: Module | None = None,
        requires_permission_to_run: bool = False,
        **kwargs: Any,
    ) -> Module:
        """``compile(program, trainset=train, valset=dev)``; DSPy's per-call options (``num_trials``,
        ``minibatch``, ``minibatch_size``, ``max_bootstrapped_demos``, the proposer switches, ...) are accepted
        and override the constructor's."""
        unknown = sorted(set(kwargs) - set(self._COMPILE_OPTIONS))
        if unknown:
            raise TypeError(f"MIPROv2.compile() got unexpected option(s): {', '.join(unknown)}")
        if requires_permission_to_run is not False:
            raise ConfigurationError(
                "requires_permission_to_run=True: promptless does not stop to ask before a run; bound it instead "
                "with max_lm_calls=... or max_cost=... (a budget stop returns the best program found so far)"
            )
        if kwargs.get("data_aware_proposer") is True and not self.data_summary:
            raise ConfigurationError(
                "data_aware_proposer=True asks for a data summary in the proposals, but this MIPROv2 has "
                "data_summary=False; pass data_summary='stats' or 'lm' to MIPROv2"
            )
        if kwargs.get("tip_aware_proposer") is True and not self.tips:
            raise ConfigurationError("tip_aware_proposer=True asks for writing tips, but this MIPROv2 has tips=(); "
                                     "pass tips to MIPROv2 or drop tip_aware_proposer")
        before = {name: getattr(self, name) for name in self._COMPILE_OPTIONS}
        for name in self._COMPILE_OPTIONS:
            if kwargs.get(name) is not None:
                setattr(self, name, kwargs[name])
        try:
            self._check_options()
        except ConfigurationError:  # a refused option leaves the optimizer as it was
            for name, value in before.items():
                setattr(self, name, value)
            raise
        return super().compile(student, trainset, valset=valset, teacher=teacher)

    # -- the run -------------------------------------------------------------------------------------------
    def _teacher(self, student: Module, teacher: Module | None) -> Module | None:
        """The program that bootstraps demos: ``teacher`` (or a copy of the student) with ``teacher_settings``."""
        if not self.teacher_settings:
            return teacher
        program = (teacher if teacher is not None else student).deepcopy()
        for p in program.predictors():
            if "lm" in self.teacher_settings:
                p.lm = self.teacher_settings["lm"]
            if "adapter" in self.teacher_settings:
                p.adapter = self.teacher_settings["adapter"]
        return program

    def _split(self, trainset: list[Example], valset: list[Example], cap: int | None) -> tuple[list, list]:
        train, val = list(trainset), list(valset)
        if not val:
            if len(train) < 2:
                raise ConfigurationError("MIPROv2 needs a valset, or a trainset of at least 2 examples to split")
            size = min(1000, max(1, int(len(train) * 0.8)))
            cut = len(train) - size
            train, val = train[:cut] or train[:1], train[cut:]
        if cap is not None and len(val) > cap:
            keep = sorted(random.Random(self.seed).sample(range(len(val)), cap))
            val = [val[i] for i in keep]
        return train, val

    def _compile(self, run: Run, student: Module, trainset: list[Example], valset: list[Example],
                 teacher: Module | None, **kwargs: Any) -> Module:
        opts = self._resolved()
        run.provide_traceback = self.provide_traceback
        train, val_all = self._split(trainset, valset, opts["valset_cap"])
        # the selection keeps part of the validation set from the search (run.notes.valset: the search part)
        sel = Selection(run, val_all, holdout=self.holdout, alpha=self.alpha, test=self.selection_test,
                        seed=self.seed)
        self._selection = sel
        self._knn_note: str | None = None
        val = sel.search
        names = [n for n, _ in student.named_predictors()]

        # 1. baseline
        run.progress.update(stage="baseline")
        baseline = self._score_baseline(run, student, val)
        if baseline is None or not sel.score_baseline(student):
            return student.deepcopy()
        full = run.notes.full_scores
        n = int(opts["num_candidates"])
        self._knn_base: KNNProgram | None = None

        # 2. demo candidates (none at all for an instruction-only search)
        demo_cands: dict[str, list[list[Example]]] = {name: [list(p.demos)] for name, p in student.named_predictors()}
        demo_labels = ["as given"]
        if self.max_bootstrapped_demos > 0 or self.max_labeled_demos > 0:
            run.progress.update(stage="demo candidates")
            sets = demo_candidates(
                run, student, train, n, teacher=self._teacher(student, teacher), metric=self.metric, metric_threshold=self.metric_threshold,
                max_bootstrapped_demos=self.max_bootstrapped_demos, max_labeled_demos=self.max_labeled_demos,
                max_rounds=self.max_rounds, max_errors=self.max_errors, seed=self.seed,
            )
            for ds in sets:
                if all(_same_demos(ds.demos[name], demo_cands[name][0]) for name in names):
                    continue
                demo_labels.append(ds.label)
                for name in names:
                    demo_cands[name].append(list(ds.demos[name]))
            if run.stopped == "budget":
                return self._finish(run, student, {name: [p.signature.instructions] for name, p in
                                                   student.named_predictors()}, demo_cands, demo_labels)
        if self._uses_knn():
            self._knn_base, note = knn_candidate(student.deepcopy(), train, self.knn, self._knn_k())
            self._knn_note = note

        # 3. instruction candidates
        run.progress.update(stage="proposing instructions")
        feedback = ""
        if self.feedback:  # the baseline's results on the search examples, already scored: no extra call
            base_fp = run.notes.baseline_fingerprint
            assert base_fp is not None
            rows = run.score_rows(base_fp, val)
            feedback = mistakes_text(val, rows, seed=self.seed)
            confusion = confusion_text(student, val, rows)
            if confusion:
                feedback += "\n" + confusion
        proposer = InstructionProposer(
            run, student, train, seed=self.seed, tips=self.tips if self.tip_aware_proposer else (),
            init_temperature=self.init_temperature,
            data_summary=self.data_summary if self.data_aware_proposer else False,
            max_tokens=self.proposal_max_tokens, feedback=feedback, program_aware=self.program_aware_proposer,
            fewshot_aware=self.fewshot_aware_proposer, summary_examples=self.view_data_batch_size or 8,
            labels=label_guide(student, train, seed=self.seed) if self.data_aware_proposer else {},
        )
        instr: dict[str, list[str]] = {}
        try:
            for name, p in student.named_predictors():
                instr[name] = proposer.propose(name, p, n)
        except BudgetExceededError:
            run.stopped = "budget"
            for name, p in student.named_predictors():
                instr.setdefault(name, [p.signature.instructions])
            return self._finish(run, student, instr, demo_cands, demo_labels, proposer)

        # 4. search
        run.progress.update(stage="search")
        try:
            self._search(run, student, val, instr, demo_cands, opts, baseline, full)
        except BudgetExceededError:
            run.stopped = "budget"
        return self._finish(run, student, instr, demo_cands, demo_labels, proposer)

    def _build(self, student: Module, combo: dict[str, int], instr: dict[str, list[str]],
               demos: dict[str, list[list[Example]]]) -> Module:
        program = student.deepcopy()
        knn = bool(combo.get("knn", 0)) and getattr(self, "_knn_base", None) is not None
        for name, p in program.named_predictors():
            i = combo.get(f"{name}.instruction", 0)
            if i:
                p.signature = p.signature.with_instructions(instr[name][i])
            j = 0 if knn else combo.get(f"{name}.demos", 0)  # per-input demos replace the chosen demo set
            p.demos = list(demos[name][j])
        if knn:
            assert self._knn_base is not None
            return self._knn_base.with_program(program)
        return program

    def _search(self, run: Run, student: Module, val: list[Example], instr: dict[str, list[str]],
                demos: dict[str, list[list[Example]]], opts: dict[str, Any], baseline: float,
                full: dict[str, float]) -> None:
        dims: dict[str, int] = {}
        for name, _ in student.named_predictors():
            if len(instr[name]) > 1:
                dims[f"{name}.instruction"] = len(instr[name])
            if len(demos[name]) > 1:
                dims[f"{name}.demos"] = len(demos[name])
        if getattr(self, "_knn_base", None) is not None:
            dims["knn"] = 2  # 1: per-input nearest-neighbour demos for every predictor
        combos_total = math.prod(dims.values()) if dims else 1
        if combos_total <= 1:
            return
        num_trials = int(opts["num_trials"])
        batch_size = int(opts["minibatch_size"])
        use_minibatch = self.minibatch and len(val) > batch_size
        steps = int(opts["minibatch_full_eval_steps"])

        optuna = _import_optuna()
        from optuna.distributions import CategoricalDistribution

        dists = {k: CategoricalDistribution(list(range(v))) for k, v in dims.items()}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            sampler = optuna.samplers.TPESampler(
                seed=self.seed, multivariate=True, n_startup_trials=max(2, min(10, num_trials // 3))
            )
            study = optuna.create_study(direction="maximize", sampler=sampler)
            study.add_trial(optuna.trial.create_trial(params={k: 0 for k in dims}, distributions=dists,
                                                      value=baseline))
        base_fp = run.notes.baseline_fingerprint
        assert base_fp is not None
        seen = run.notes.combos  # fingerprint -> params, in first-seen order
        seen[base_fp] = {k: 0 for k in dims}
        seen_combos: set[tuple[int, ...]] = {tuple(0 for _ in dims)}
        scored = 0
        asks = 0
        max_asks = 3 * num_trials + 10
        while scored < num_trials and asks < max_asks and len(seen_combos) < combos_total:
            run.budget.check()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                trial = study.ask(dists)
            asks += 1
            params = {k: int(trial.params[k]) for k in dims}
            seen_combos.add(tuple(params.values()))
            program = self._build(student, params, instr, demos)
            fp = program_fingerprint(program)
            number = len(run.trials)
            if fp in seen:
                value = self._estimate(run, fp, base_fp, val, full)
                study.tell(trial, value)
                t = Trial(number=number, kind="repeat", params=params, score=value, n_examples=0, fingerprint=fp)
                run.add_trial(t)
                continue
            seen[fp] = params
            if use_minibatch:
                rng = random.Random(self.seed * 1_000_003 + trial.number)
                batch = [val[i] for i in sorted(rng.sample(range(len(val)), batch_size))]
                def estimate(fp: str = fp) -> float:  # from the scores seen once this minibatch is in
                    return self._estimate(run, fp, base_fp, val, full)

                try:
                    t = run.trial("minibatch", params, fp, batch, program, number=number, estimate=estimate)
                except BudgetExceededError:
                    study.tell(trial, state=optuna.trial.TrialState.FAIL)
                    raise
                assert t.estimate is not None
                value = t.estimate
            else:
                try:
                    t = run.trial("full", params, fp, val, program, number=number)
                except BudgetExceededError:
                    study.tell(trial, state=optuna.trial.TrialState.FAIL)
                    raise
                run.notes.add_full_score(fp, t.score)
                value = float(t.score or 0.0)
            study.tell(trial, value)
            scored += 1
            if use_minibatch and (scored % steps == 0):
                self._full_eval_step(run, student, val, instr, demos, seen, full)
        if use_minibatch:
            self._full_eval_step(run, student, val, instr, demos, seen, full)

    def _estimate(self, run: Run, fp: str, base_fp: str, val: list[Example], full: dict[str, float]) -> float:
        """A candidate's estimated full score: its full score, or the baseline's full score plus its lift over
        the baseline on the examples it was scored on."""
        if fp in full:
            return float(full[fp])
        mine = run.seen_scores(fp, val)
        base = run.seen_scores(base_fp, val)
        pairs = [(m, b) for m, b in zip(mine, base, strict=True) if m is not None and b is not None]
        if not pairs:
            return float(full.get(base_fp, 0.0))
        lift = 100.0 * sum(m - b for m, b in pairs) / len(pairs)
        return max(0.0, min(100.0, float(full.get(base_fp, 0.0)) + lift))

    def _full_eval_step(self, run: Run, student: Module, val: list[Example], instr: dict[str, list[str]],
                        demos: dict[str, list[list[Example]]], seen: dict[str, dict[str, int]],
                        full: dict[str, float]) -> None:
        base_fp = run.notes.baseline_fingerprint
        assert base_fp is not None
        order = list(seen)
        pending = [fp for fp in order if fp not in full]
        if not pending:
            return
        ranked = sorted(pending, key=lambda fp: (-self._estimate(run, fp, base_fp, val, full), order.index(fp)))
        best_fp = max(full, key=lambda fp: (full[fp], -order.index(fp) if fp in order else 0))
        for fp in ranked:
            mine = run.seen_scores(fp, val)
            best = run.seen_scores(best_fp, val)
            pairs = [(m, b) for m, b in zip(mine, best, strict=True) if m is not None and b is not None]
            if pairs and sum(m for m, _ in pairs) < sum(b for _, b in pairs):
                continue  # behind the best program on the same examples: not worth a full evaluation
            program = self._build(student, seen[fp], instr, demos)
            t = run.trial("full", seen[fp], fp, val, program)
            run.notes.add_full_score(fp, t.score)
            return

    def _finish(self, run: Run, student: Module, instr: dict[str, list[str]],
                demos: dict[str, list[list[Example]]], demo_labels: list[str],
                proposer: InstructionProposer | None = None) -> Module:
        full = run.notes.full_scores
        seen = run.notes.combos
        base_fp = run.notes.baseline_fingerprint
        best_fp, best_score = base_fp, full.get(base_fp, float("-inf")) if base_fp else float("-inf")
        for fp in seen:
            if fp in full and full[fp] > best_score:
                best_fp, best_score = fp, full[fp]
        if best_fp == base_fp and run.stopped == "budget" and base_fp is not None and self._selection.checks:
            # the budget stopped the search before a candidate was scored in full: the best minibatch estimate
            # above the baseline is the pick to test on the held-out examples (the test decides, not the estimate)
            val = self._selection.search
            for fp in seen:
                if fp != base_fp and fp not in full and any(x is not None for x in run.seen_scores(fp, val)):
                    estimate = self._estimate(run, fp, base_fp, val, full)
                    if estimate > best_score:
                        best_fp, best_score = fp, estimate
        params = dict(seen.get(best_fp or "", {}))
        run.notes.candidates = {
            "instructions": instr,
            "demo_sets": demo_labels,
            "demo_set_sizes": {name: [len(d) for d in sets] for name, sets in demos.items()},
            "rejected_proposals": proposer.rejected if proposer is not None else [],
        }
        if getattr(self, "_knn_note", None):
            run.notes.candidates["knn"] = self._knn_note
        best = self._build(student, params, instr, demos) if best_fp != base_fp else None
        return self._selection.decide(student, best, params)


_TEACHER_KEYS = ("lm", "adapter")


def _check_teacher_settings(value: Any) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ConfigurationError(f"teacher_settings must be a dict such as {{'lm': big_lm}}, got {value!r}")
    unknown = sorted(str(k) for k in value if k not in _TEACHER_KEYS)
    if unknown:
        raise ConfigurationError(
            f"teacher_settings has {', '.join(unknown)}, which the teacher cannot use; it takes "
            f"{' and '.join(_TEACHER_KEYS)} (the LM and adapter the teacher runs with while bootstrapping demos)"
        )
    return {k: v for k, v in value.items() if v is not None}


def _same_demos(a: list[Example], b: list[Example]) -> bool:
    return len(a) == len(b) and all(x.to_dict() == y.to_dict() for x, y in zip(a, b, strict=True))


__all__ = ["AUTO_PRESETS", "MIPROv2"]
