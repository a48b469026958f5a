"""promptless: programming, not prompting, language models."""

__version__ = "0.1.0"

from .adapters import Adapter, ChatAdapter, JSONAdapter
from .data import Example, Prediction
from .errors import (
    BudgetExceededError,
    ConfigurationError,
    EvaluationError,
    LMError,
    ParseError,
    PersistError,
    PromptlessError,
    SignatureError,
)
from .evaluate import Evaluate, EvaluationResult
from .lm import LM, BaseLM, ScriptedLM
from .lm.history import inspect_history
from .lm.usage import track_usage
from .modules import ChainOfThought, Module, Predict
from .settings import configure, context
from .signature import InputField, OutputField, Signature, make_signature

__all__ = [
    "LM",
    "Adapter",
    "BaseLM",
    "BudgetExceededError",
    "ChainOfThought",
    "ChatAdapter",
    "ConfigurationError",
    "Evaluate",
    "EvaluationError",
    "EvaluationResult",
    "Example",
    "InputField",
    "JSONAdapter",
    "LMError",
    "Module",
    "OutputField",
    "ParseError",
    "PersistError",
    "Predict",
    "Prediction",
    "PromptlessError",
    "ScriptedLM",
    "Signature",
    "SignatureError",
    "configure",
    "context",
    "inspect_history",
    "make_signature",
    "track_usage",
]
