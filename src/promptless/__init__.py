"""promptless: programming, not prompting, language models."""

from ._version import __version__ as __version__
from .adapters import Adapter, ChatAdapter, JSONAdapter
from .data import Example, Prediction
from .embeddings import Embedder
from .errors import (
    BudgetExceededError,
    ConfigurationError,
    EvaluationError,
    LMError,
    ParseError,
    PersistError,
    PromptlessError,
    SignatureError,
    ToolError,
)
from .evaluate import Evaluate, EvaluationResult
from .history import History
from .lm import LM, BaseLM, ScriptedLM
from .lm.calllog import inspect_history
from .lm.usage import track_usage
from .modules import (
    BestOfN,
    ChainOfThought,
    Module,
    MultiChainComparison,
    Parallel,
    Predict,
    ProgramOfThought,
    ReAct,
    Refine,
)
from .optimize import (
    BootstrapFewShot,
    BootstrapFewShotWithRandomSearch,
    LabeledFewShot,
    MIPROv2,
    OptimizationResult,
)
from .retrieve import Retriever
from .settings import configure, context
from .signature import InputField, OutputField, Signature, make_signature
from .tools import Tool

__all__ = [
    "LM",
    "Adapter",
    "BaseLM",
    "BestOfN",
    "BootstrapFewShot",
    "BootstrapFewShotWithRandomSearch",
    "BudgetExceededError",
    "ChainOfThought",
    "ChatAdapter",
    "ConfigurationError",
    "Embedder",
    "Evaluate",
    "EvaluationError",
    "EvaluationResult",
    "Example",
    "History",
    "InputField",
    "JSONAdapter",
    "LMError",
    "LabeledFewShot",
    "MIPROv2",
    "Module",
    "MultiChainComparison",
    "OptimizationResult",
    "OutputField",
    "Parallel",
    "ParseError",
    "PersistError",
    "Predict",
    "Prediction",
    "ProgramOfThought",
    "PromptlessError",
    "ReAct",
    "Refine",
    "Retriever",
    "ScriptedLM",
    "Signature",
    "SignatureError",
    "Tool",
    "ToolError",
    "configure",
    "context",
    "inspect_history",
    "make_signature",
    "track_usage",
]

# Label scoring and calibration for small models (docs/optimizers.md, "Label scoring and calibration").
from .errors import ScoringNotSupportedError
from .modules.scored import Classify
from .optimize.calibrate import Calibrate

__all__ += ["Calibrate", "Classify", "ScoringNotSupportedError"]

# Reflective prompt evolution (docs/optimizers.md, "GEPA").
from .optimize.gepa import GEPA  # noqa: E402

__all__ += ["GEPA"]
