"""LabeledFewShot: demos taken straight from labelled training examples. No LM calls."""

from __future__ import annotations

import random
from typing import Any

from ..data import Example
from ..modules.module import Module
from .base import Optimizer, score_candidate
from .run import Run


def labeled_demos(trainset: list[Example], k: int, *, sample: bool = True, seed: int = 0) -> list[Example]:
    """``k`` training examples: a seeded sample, or the first ``k`` with ``sample=False``."""
    k = min(k, len(trainset))
    if k <= 0:
        return []
    if sample:
        return random.Random(seed).sample(trainset, k)
    return list(trainset[:k])


class LabeledFewShot(Optimizer):
    """Give every predictor ``k`` labelled training examples as demos.

    ``LabeledFewShot(k=16, sample=True, seed=0).compile(program, trainset=train)``. With ``valset`` and
    ``metric``, the program is scored before and after (for the result and the report); otherwise no LM call
    is made.
    """

    def __init__(self, k: int = 16, *, sample: bool = True, seed: int = 0, metric: Any = None, **common: Any) -> None:
        super().__init__(metric=metric, **common)
        if not isinstance(k, int) or k < 0:
            raise ValueError(f"k must be a whole number >= 0, got {k!r}")
        self.k = k
        self.sample = sample
        self.seed = seed

    def settings_identity(self) -> dict[str, Any]:
        return {**super().settings_identity(), "k": self.k, "sample": self.sample, "seed": self.seed}

    def _compile(self, run: Run, student: Module, trainset: list[Example], valset: list[Example],
                 teacher: Module | None, sample: bool | None = None, **kwargs: Any) -> Module:
        if kwargs:
            raise TypeError(f"LabeledFewShot.compile() got unexpected option(s): {', '.join(sorted(kwargs))}")
        use_sample = self.sample if sample is None else sample
        program = student.deepcopy()
        demos = labeled_demos(trainset, self.k, sample=use_sample, seed=self.seed)
        for p in program.predictors():
            p.demos = list(demos)
        if valset and self.metric is not None:
            self._score_baseline(run, student, valset)
            if run.stopped != "budget":
                score_candidate(run, program, valset, {"k": len(demos)})
        return program


__all__ = ["LabeledFewShot", "labeled_demos"]
