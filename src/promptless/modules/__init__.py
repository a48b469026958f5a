from .chain_of_thought import ChainOfThought
from .module import Module
from .multi_chain import MultiChainComparison
from .parallel import Parallel
from .predict import Predict
from .program_of_thought import ProgramOfThought
from .react import ReAct
from .refine import BestOfN, Refine

__all__ = [
    "BestOfN",
    "ChainOfThought",
    "Module",
    "MultiChainComparison",
    "Parallel",
    "Predict",
    "ProgramOfThought",
    "ReAct",
    "Refine",
]

from .scored import Classify, ScoredPrediction, with_label_scoring

__all__ += ["Classify", "ScoredPrediction", "with_label_scoring"]
