"""Selection that generalizes: pick on examples the search did not fit, and keep a win only when it is real.

A search that scores many candidates on the same validation examples and keeps the best one picks, in part, the
candidate that was lucky on those examples: its validation score rises, and the next inputs do not see the
lift. Two guards against that, shared by every optimizer:

- **A held-out slice.** ``split_holdout(valset, "auto", seed=...)`` sets part of the validation set aside
  before the search starts (by default a third, at least 20 examples or half of a small set, stratified by
  label when the outputs are labels, deterministic under the seed). The search sees only the rest; the
  starting program and the search's pick are then scored on the held-out slice, which no choice was made on.
  Without a validation set, ``split_folds`` gives k-fold cross-validation over the training data instead.
- **A paired test.** ``paired_test(baseline_scores, candidate_scores, alpha=0.1)`` compares the two programs
  example by example on the held-out slice and says whether the candidate's lift is larger than the noise:
  an exact McNemar (sign) test when every score is 0 or 1, a paired bootstrap otherwise, one-sided at level
  ``alpha``. The candidate replaces the starting program only when the test says so; the result carries the
  evidence (``PairedTest``: lift, interval, p-value, n, wins and losses).

``Selection`` ties both to a run (``run.py``): it scores on the held-out slice through the run's memo (nothing is
paid twice, a resumed run replays it), keeps back from the search the calls the candidate's held-out run will
need (``Budget.keep_back``), and records what it did in ``run.notes.selection``, which the result and the report
show. An optimizer uses it in four steps::

    sel = Selection(run, valset, holdout="auto", alpha=0.1, test="auto", seed=seed)
    baseline = self._score_baseline(run, student, sel.search)   # the search sees sel.search only
    sel.score_baseline(student)                                 # the starting program on the held-out slice
    ...search on sel.search, pick `best` with params...
    return sel.decide(student, best, params)                    # best, or student when the win is noise
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from fractions import Fraction
from typing import TYPE_CHECKING, Any

from ..data import Example
from ..errors import BudgetExceededError, ConfigurationError
from .fingerprint import program_fingerprint

if TYPE_CHECKING:
    from ..modules.module import Module
    from .run import Run

DEFAULT_ALPHA = 0.1
TESTS = ("auto", "mcnemar", "sign", "bootstrap")
HOLDOUT_FRACTION = 1 / 3
MIN_HOLDOUT = 20  # the auto split holds out at least this many (or half of a smaller set)
MIN_SPLIT = 6  # with fewer validation examples nothing is held out
CV_FOLDS = 5
MIN_CV = 10  # cross-validation needs at least this many training examples
CV_MAX_EXAMPLES = 100  # cross-validation scores at most this many training examples (a seeded sample)
BOOTSTRAP_RESAMPLES = 10_000


# -- the paired test ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PairedTest:
    """The evidence that a candidate beats a baseline on the same examples.

    Scores are percentages (the mean metric times 100); ``lift`` is candidate minus baseline in points.
    ``low``/``high`` bound the lift with ``confidence`` = 1 - 2·alpha (80 % at alpha 0.1): its lower end is the
    one-sided bound the test uses, so a lift is significant exactly when the interval lies above 0 (up to the
    resampling of the bootstrap). ``p_value`` is one-sided: how likely a lift this large is when the candidate
    is no better. ``wins``/``losses``/``ties``: examples where the candidate scored higher / lower / the same.
    """

    method: str
    alpha: float
    n: int
    baseline: float
    candidate: float
    lift: float
    low: float
    high: float
    p_value: float
    wins: int
    losses: int
    ties: int

    @property
    def confidence(self) -> float:
        return 1.0 - 2.0 * self.alpha

    @property
    def significant(self) -> bool:
        """The candidate wins by more than the noise: a positive lift with ``p_value <= alpha``."""
        return self.n > 0 and self.lift > 0 and self.p_value <= self.alpha

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["confidence"] = round(self.confidence, 4)
        out["significant"] = self.significant
        return out

    def describe(self) -> str:
        """One line: lift, interval, p-value, test and n."""
        return (f"lift {self.lift:+.1f} points ({self.candidate:.1f} against {self.baseline:.1f}), "
                f"{100 * self.confidence:.0f}% interval [{self.low:+.1f}, {self.high:+.1f}], p = {self.p_value:.3g} "
                f"({self.method}, n = {self.n}: {self.wins} better, {self.losses} worse, {self.ties} same)")


def check_test_options(alpha: Any, test: Any) -> None:
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not 0 < alpha < 0.5:
        raise ConfigurationError(
            f"alpha must be a number between 0 and 0.5 (the paired test's level, e.g. 0.1 or 0.05), got {alpha!r}"
        )
    if test not in TESTS:
        raise ConfigurationError(f"the paired test must be one of {', '.join(map(repr, TESTS))}, got {test!r}")


def paired_test(
    baseline_scores: Sequence[float],
    candidate_scores: Sequence[float],
    *,
    alpha: float = DEFAULT_ALPHA,
    method: str = "auto",
    seed: int = 0,
    resamples: int = BOOTSTRAP_RESAMPLES,
) -> PairedTest:
    """Whether ``candidate_scores`` beat ``baseline_scores`` (the same examples, in the same order, 0..1 each) by
    more than the noise, one-sided at level ``alpha``.

    ``method``: ``"mcnemar"`` (exact McNemar test: the examples one program gets right and the other wrong,
    against a fair coin; for 0/1 scores), ``"sign"`` (the same on the signs of the differences, for any
    scores), ``"bootstrap"`` (paired bootstrap of the mean difference, ``resamples`` resamples seeded with
    ``seed``), or ``"auto"`` (McNemar when every score is 0 or 1, else the bootstrap). Deterministic.
    """
    check_test_options(alpha, method)
    b = [float(x) for x in baseline_scores]
    c = [float(x) for x in candidate_scores]
    if len(b) != len(c):
        raise ValueError(f"paired_test needs the same examples on both sides: {len(b)} baseline scores, {len(c)} "
                         "candidate scores")
    n = len(b)
    diffs = [y - x for x, y in zip(b, c, strict=True)]
    wins = sum(1 for d in diffs if d > 0)
    losses = sum(1 for d in diffs if d < 0)
    binary = all(x in (0.0, 1.0) for x in (*b, *c))
    if method == "auto":
        method = "mcnemar" if binary else "bootstrap"
    if method == "mcnemar" and not binary:
        method = "sign"  # McNemar is the sign test of 0/1 scores; on other scores it is the sign test
    base_mean = 100.0 * sum(b) / n if n else 0.0
    cand_mean = 100.0 * sum(c) / n if n else 0.0
    lift = 100.0 * sum(diffs) / n if n else 0.0
    if n == 0:
        return PairedTest(method, alpha, 0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0, 0, 0, 0)
    if method in ("mcnemar", "sign"):
        p = _sign_p(wins, wins + losses)
        if binary:  # the exact interval of (wins - losses) / n, given the examples that differ
            low, high = _sign_interval(wins, wins + losses, n, alpha)
        else:
            low, high = _bootstrap(diffs, alpha, seed, resamples)[:2]
    else:
        low, high, p = _bootstrap(diffs, alpha, seed, resamples)
    return PairedTest(method, float(alpha), n, round(base_mean, 4), round(cand_mean, 4), round(lift, 4),
                      round(low, 4), round(high, 4), float(p), wins, losses, n - wins - losses)


def _sign_p(wins: int, m: int) -> float:
    """P(X >= wins) for X ~ Binomial(m, 1/2): one-sided exact sign test (1 when no example differs)."""
    if m == 0:
        return 1.0
    return float(Fraction(sum(math.comb(m, j) for j in range(wins, m + 1)), 2**m))


def _binom_tail_ge(k: int, m: int, p: float) -> float:
    """P(X >= k) for X ~ Binomial(m, p)."""
    if k <= 0:
        return 1.0
    if k > m:
        return 0.0
    if p <= 0.0:
        return 0.0
    if p >= 1.0:
        return 1.0
    lp, lq = math.log(p), math.log1p(-p)
    total = 0.0
    for j in range(k, m + 1):
        total += math.exp(math.lgamma(m + 1) - math.lgamma(j + 1) - math.lgamma(m - j + 1) + j * lp + (m - j) * lq)
    return min(1.0, total)


def _solve_increasing(f: Any, target: float) -> float:
    """The p in [0, 1] where the increasing function f(p) crosses target (bisection)."""
    lo, hi = 0.0, 1.0
    for _ in range(60):
        mid = (lo + hi) / 2
        if f(mid) < target:
            lo = mid
        else:
            hi = mid
    return (lo + hi) / 2


def _sign_interval(wins: int, m: int, n: int, alpha: float) -> tuple[float, float]:
    """Clopper-Pearson bounds (each one-sided at alpha) on the share of wins among the m examples that differ,
    as bounds on the lift in points: (2·share - 1)·m/n·100."""
    if m == 0:
        return 0.0, 0.0
    lower = 0.0 if wins == 0 else _solve_increasing(lambda p: _binom_tail_ge(wins, m, p), alpha)
    # upper: the p where P(X <= wins) = alpha, i.e. P(X >= wins + 1) = 1 - alpha
    upper = 1.0 if wins == m else _solve_increasing(lambda p: _binom_tail_ge(wins + 1, m, p), 1.0 - alpha)
    scale = 100.0 * m / n
    return (2 * lower - 1) * scale, (2 * upper - 1) * scale


def _bootstrap(diffs: list[float], alpha: float, seed: int, resamples: int) -> tuple[float, float, float]:
    """The paired bootstrap of the mean difference: (alpha quantile, 1 - alpha quantile) in points, and the
    one-sided p-value (the share of resampled means at or below 0, counting the observed sample once)."""
    n = len(diffs)
    rng = random.Random(f"promptless-paired-bootstrap/{seed}")
    means = sorted(sum(rng.choices(diffs, k=n)) / n for _ in range(resamples))
    at_or_below = sum(1 for m in means if m <= 0)
    p = (at_or_below + 1) / (resamples + 1)

    def quantile(q: float) -> float:
        i = min(resamples - 1, max(0, math.floor(q * resamples)))
        return 100.0 * means[i]

    return quantile(alpha), quantile(1.0 - alpha), p


# -- splits --------------------------------------------------------------------------------------------------


def _strata(examples: Sequence[Example], keys: Sequence[str] | None = None) -> dict[str, list[int]] | None:
    """Indices grouped by label, or None when there is nothing label-like to group by.

    The label is the values of ``keys`` (the program's output fields) where the examples have them, else of
    every label field whose values look like labels: at most a third as many distinct values as examples (an
    id or a free-text answer does not)."""
    n = len(examples)
    label_keys = list(dict.fromkeys(k for ex in examples for k in ex.labels()))
    if keys:
        chosen = [k for k in keys if k in label_keys]
    else:
        chosen = []
        for k in label_keys:
            values = {_value_key(ex.get(k)) for ex in examples}
            if 2 <= len(values) <= max(2, n // 3):
                chosen.append(k)
    if not chosen:
        return None
    groups: dict[str, list[int]] = {}
    for i, ex in enumerate(examples):
        groups.setdefault(repr([_value_key(ex.get(k)) for k in chosen]), []).append(i)
    if len(groups) < 2 or len(groups) > max(2, n // 3):
        return None
    return groups


def _value_key(value: Any) -> str:
    try:
        return repr(value)
    except Exception:  # a value that does not print: one group for all of them
        return ""


@dataclass
class HoldoutSplit:
    """The validation set in two parts: ``search`` (the search scores candidates on it) and ``holdout`` (kept
    for the selection). ``rule`` says in words how the size was chosen."""

    search: list[Example]
    holdout: list[Example]
    rule: str
    seed: int = 0
    stratified: bool = False
    holdout_indices: list[int] = field(default_factory=list)

    def describe(self) -> dict[str, Any]:
        return {"n_search": len(self.search), "n_holdout": len(self.holdout), "rule": self.rule, "seed": self.seed,
                "stratified": self.stratified}


def check_holdout(holdout: Any) -> None:
    """Refuse a ``holdout=`` option that is none of: "auto", None / 0 (off), a fraction, a count."""
    if holdout in ("auto", None) or (holdout == 0 and not isinstance(holdout, str)):
        return
    if isinstance(holdout, bool):
        raise ConfigurationError(f"holdout must be 'auto', None, a fraction or a count, got {holdout!r}")
    if isinstance(holdout, float) and 0 < holdout < 1:
        return
    if isinstance(holdout, int) and holdout >= 1:
        return
    raise ConfigurationError(
        f"holdout must be 'auto' (a third of the validation set, at least {MIN_HOLDOUT} examples), a fraction "
        f"between 0 and 1 (e.g. 0.3), a count of examples (e.g. 30), or None to pick on the whole validation set "
        f"without a held-out check; got {holdout!r}"
    )


def holdout_size(n: int, holdout: Any) -> tuple[int, str]:
    """How many of ``n`` validation examples to hold out, and why (in words)."""
    check_holdout(holdout)
    if holdout is None or holdout == 0:
        return 0, "off (holdout=None): the pick is made on the whole validation set, without a held-out check"
    if holdout == "auto":
        if n < MIN_SPLIT:
            return 0, (f"none: {n} validation examples are too few to hold some out (fewer than {MIN_SPLIT}); "
                       "the pick is made on all of them, without a held-out check")
        floor = min(MIN_HOLDOUT, n // 2)
        k = max(round(n * HOLDOUT_FRACTION), floor)
        return k, f"auto: a third of the {n} validation examples, at least {floor}"
    if isinstance(holdout, float):
        k = min(n - 1, max(1, round(n * holdout)))
        if n < 2:
            return 0, f"none: {n} validation example(s) cannot be split"
        return k, f"holdout={holdout}: {holdout:.0%} of the {n} validation examples"
    if holdout >= n:
        raise ConfigurationError(
            f"holdout={holdout} leaves nothing to search: the validation set has {n} examples; hold out fewer, "
            "or pass a fraction such as 1/3"
        )
    return int(holdout), f"holdout={holdout} of the {n} validation examples"


def split_holdout(examples: Sequence[Example], holdout: Any = "auto", *, seed: int = 0,
                  keys: Sequence[str] | None = None) -> HoldoutSplit:
    """Split ``examples`` into a search part and a held-out part (see ``holdout_size``), deterministic under
    ``seed``. When the labels are label-like (a few distinct values of ``keys``, the program's outputs, or of
    the label fields that look like labels) each label is held out in proportion; both parts keep the
    examples' order."""
    items = list(examples)
    n = len(items)
    k, rule = holdout_size(n, holdout)
    if k <= 0:
        return HoldoutSplit(search=items, holdout=[], rule=rule, seed=seed)
    rng = random.Random(f"promptless-holdout/{seed}")
    groups = _strata(items, keys)
    chosen: list[int] = []
    if groups is None:
        order = list(range(n))
        rng.shuffle(order)
        chosen = order[:k]
    else:
        # proportional allocation, largest remainder first (ties in a seeded order)
        names = sorted(groups)
        rng.shuffle(names)
        exact = {g: len(groups[g]) * k / n for g in names}
        alloc = {g: math.floor(exact[g]) for g in names}
        left = k - sum(alloc.values())
        for g in sorted(names, key=lambda g: -(exact[g] - alloc[g]))[:left]:
            alloc[g] += 1
        for g in names:
            members = list(groups[g])
            rng.shuffle(members)
            chosen.extend(members[: alloc[g]])
    held = sorted(chosen)
    held_set = set(held)
    return HoldoutSplit(
        search=[ex for i, ex in enumerate(items) if i not in held_set],
        holdout=[items[i] for i in held],
        rule=rule + (", stratified by label" if groups is not None else ""),
        seed=seed,
        stratified=groups is not None,
        holdout_indices=held,
    )


def split_folds(examples: Sequence[Example], k: int = CV_FOLDS, *, seed: int = 0,
                keys: Sequence[str] | None = None) -> list[list[int]]:
    """``k`` folds of ``examples`` (lists of indices, each in order), stratified by label when the labels are
    label-like (see ``split_holdout``), deterministic under ``seed``."""
    n = len(examples)
    if not isinstance(k, int) or isinstance(k, bool) or k < 2:
        raise ConfigurationError(f"cross-validation needs at least 2 folds, got {k!r}")
    k = min(k, n)
    rng = random.Random(f"promptless-folds/{seed}")
    groups = _strata(examples, keys) or {"": list(range(n))}
    order: list[int] = []
    for g in sorted(groups):
        members = list(groups[g])
        rng.shuffle(members)
        order.extend(members)
    folds: list[list[int]] = [[] for _ in range(k)]
    for pos, i in enumerate(order):
        folds[pos % k].append(i)
    return [sorted(f) for f in folds if f]


# -- the selection step of a run ---------------------------------------------------------------------------


class Selection:
    """The selection step of one optimization run (see the module docstring for how an optimizer uses it).

    ``examples``: the validation examples the optimizer would have searched on; ``holdout``, ``alpha``,
    ``test`` and ``seed`` as the optimizer's options. With ``unseen=True`` the search fitted none of the
    examples (BootstrapFewShot: the demos come from the training set), so all of them are the selection set and
    nothing is split off.
    """

    def __init__(self, run: Run, examples: Sequence[Example], *, holdout: Any = "auto",
                 alpha: float = DEFAULT_ALPHA, test: str = "auto", seed: int = 0, unseen: bool = False) -> None:
        check_test_options(alpha, test)
        self.run = run
        self.alpha = float(alpha)
        self.test = test
        self.seed = seed
        self.unseen = unseen
        self.enabled = holdout is not None and not (holdout == 0 and not isinstance(holdout, str))
        if unseen:
            items = list(examples)
            self.split = HoldoutSplit(search=items, holdout=[], seed=seed, rule=(
                f"the whole validation set ({len(items)} examples): the search fitted none of it"
                if self.enabled else "off (holdout=None): no check"))
        else:
            self.split = split_holdout(examples, holdout if self.enabled else None, seed=seed,
                                       keys=output_names(run.student))
        self._baseline_holdout: float | None = None
        run.notes.valset = self.split.search
        run.notes.holdout = self.split.holdout
        mode = "off" if not self.enabled else "validation set" if unseen else "holdout" if self.split.holdout \
            else "none"
        run.notes.selection = {
            "mode": mode, **self.split.describe(), "alpha": self.alpha, "test": test,
            "decision": "not reached", "reason": "", "pick": "starting program",
        }

    @property
    def search(self) -> list[Example]:
        """The examples the search may score candidates on."""
        return self.split.search

    @property
    def holdout(self) -> list[Example]:
        return self.split.holdout

    @property
    def checks(self) -> bool:
        """Whether a candidate has to pass the paired test (a held-out slice, or an unseen validation set)."""
        return self.enabled and (bool(self.split.holdout) or (self.unseen and bool(self.split.search)))

    def score_baseline(self, student: Module) -> bool:
        """Score the starting program on the held-out slice (a ``holdout`` trial) and keep back from the search
        as many calls as that took, for the candidate's held-out run. False when the budget ran out."""
        if not self.split.holdout or not self.enabled:
            return True
        run = self.run
        try:
            t = run.trial("holdout", {"program": "starting program"}, program_fingerprint(student),
                          self.split.holdout, student)
        except BudgetExceededError:
            run.stopped = "budget"
            return False
        self._baseline_holdout = t.score
        run.budget.keep_back(calls=max(t.calls, len(self.split.holdout)), cost=t.cost)
        return True

    def decide(self, student: Module, candidate: Module | None, params: dict[str, Any] | None = None, *,
               why_none: str = "no candidate beat the starting program on the search examples") -> Module:
        """The program the optimizer returns: ``candidate`` when it beats ``student`` on the held-out slice by more
        than the noise, else ``student`` (a copy). Records the evidence in ``run.notes.selection``; a candidate
        not kept (rejected, or not tested for want of budget) is left in ``run.notes.refused``."""
        run = self.run
        run.budget.keep_back(calls=0, cost=0.0)  # the held-out run may now spend what the search left
        notes = run.notes
        rec = notes.selection
        base_fp = program_fingerprint(student)
        full = notes.full_scores
        seen = None if self.unseen else full.get(base_fp)
        unseen = full.get(base_fp) if self.unseen else self._baseline_holdout
        rec["scores"] = {"starting program": {"seen": seen, "unseen": unseen}}
        if candidate is None or program_fingerprint(candidate) == base_fp:
            rec.update(decision="nothing to test", reason=why_none, pick="starting program", candidate=None)
            notes.best_params = {}
            return student.deepcopy()
        cand_fp = program_fingerprint(candidate)
        rec["candidate"] = dict(params or {})
        rec["scores"]["candidate"] = {"seen": None if self.unseen else full.get(cand_fp),
                                      "unseen": full.get(cand_fp) if self.unseen else None}
        if not self.checks:
            rec.update(decision="accepted without a test", pick="candidate", reason=(
                "no held-out check (" + self.split.rule + "): the candidate with the best score on the search "
                "examples is returned"))
            notes.best_params = dict(params or {})
            return candidate
        examples = self.split.search if self.unseen else self.split.holdout
        if self.unseen:  # scored by the optimizer already (its baseline and candidate trials), from the memo
            base_scores = run.seen_scores(base_fp, examples)
            cand_scores = run.seen_scores(cand_fp, examples)
            if any(x is None for x in (*base_scores, *cand_scores)):
                rec.update(decision="not tested", pick="starting program", reason=(
                    "the budget ran out before both programs were scored on the validation set, so there is no "
                    "evidence that the candidate is better; the starting program is kept"))
                notes.best_params = {}
                notes.refused = candidate
                return student.deepcopy()
        else:
            try:
                t = run.trial("holdout", {"program": "candidate", **(params or {})}, cand_fp, examples, candidate)
                rec["scores"]["candidate"]["unseen"] = t.score
            except BudgetExceededError:
                run.stopped = "budget"
                rec.update(decision="not tested", pick="starting program", reason=(
                    "the budget ran out before the candidate's held-out run finished, so there is no evidence "
                    "that it is better; the starting program is kept"))
                notes.best_params = {}
                notes.refused = candidate
                return student.deepcopy()
            base_scores = run.seen_scores(base_fp, examples)
            cand_scores = run.seen_scores(cand_fp, examples)
        pairs = [(b, c) for b, c in zip(base_scores, cand_scores, strict=True) if b is not None and c is not None]
        result = paired_test([b for b, _ in pairs], [c for _, c in pairs], alpha=self.alpha, method=self.test,
                             seed=self.seed)
        rec["evidence"] = result.to_dict()
        where = "on the validation set" if self.unseen else "on the held-out examples"
        if result.significant:
            rec.update(decision="accepted", pick="candidate",
                       reason=f"the candidate beats the starting program {where}: {result.describe()}")
            notes.best_params = dict(params or {})
            return candidate
        rec.update(decision="rejected", pick="starting program", reason=(
            f"the candidate does not beat the starting program {where} by more than the noise at alpha "
            f"{self.alpha:g}: {result.describe()}; the starting program is kept"))
        notes.best_params = {}
        notes.refused = candidate
        return student.deepcopy()


def output_names(program: Module | None) -> list[str]:
    """The output fields of a program's predictors, in order (what a split is stratified by)."""
    if program is None:
        return []
    return list(dict.fromkeys(n for _, p in program.named_predictors() for n in p.signature.output_fields))


def selection_identity(holdout: Any, alpha: float, test: str) -> dict[str, Any]:
    """The selection options as they enter a run's identity (a run directory made with others is refused)."""
    return {"holdout": holdout, "alpha": alpha, "selection_test": test}


__all__ = [
    "DEFAULT_ALPHA",
    "HoldoutSplit",
    "PairedTest",
    "Selection",
    "check_holdout",
    "check_test_options",
    "holdout_size",
    "output_names",
    "paired_test",
    "selection_identity",
    "split_folds",
    "split_holdout",
]
