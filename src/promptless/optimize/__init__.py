"""Optimizers: programs in, better programs out.

    opt = pl.MIPROv2(metric=exact, auto="light", prompt_model=big_lm, task_model=small_lm,
                     max_bootstrapped_demos=0, max_labeled_demos=0)
    better = opt.compile(program, trainset=train, valset=dev)
    write_report(better.optimization, "run.html")

Nothing heavy is imported here: optuna is imported by MIPROv2 when it searches, rich when the live display
is shown.
"""

from __future__ import annotations

from .base import Optimizer
from .bootstrap import BootstrapFewShot
from .budget import Budget
from .fewshot import LabeledFewShot
from .knn import KNNFewShot
from .mipro import MIPROv2
from .proposer import clean_instruction
from .random_search import BootstrapFewShotWithRandomSearch
from .report import write_report
from .result import OptimizationResult, Trial

Teleprompter = Optimizer
BootstrapRS = BootstrapFewShotWithRandomSearch  # DSPy's short name

__all__ = [
    "BootstrapFewShot",
    "BootstrapFewShotWithRandomSearch",
    "BootstrapRS",
    "Budget",
    "KNNFewShot",
    "LabeledFewShot",
    "MIPROv2",
    "OptimizationResult",
    "Optimizer",
    "Teleprompter",
    "Trial",
    "clean_instruction",
    "write_report",
]

from .calibrate import Calibrate  # noqa: E402 - label calibration for pl.Classify

__all__ += ["Calibrate"]

from .gepa import GEPA  # noqa: E402 - reflective prompt evolution

__all__ += ["GEPA"]
