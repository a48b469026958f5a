"""promptless: programming, not prompting, language models.

``import promptless`` loads the core: signatures, modules, LMs, adapters and settings. The optimizers,
evaluation, executors, tools, retrieval and embeddings load the first time one of their names is used (``pl.MIPROv2``,
``pl.Evaluate``, ``pl.evaluate.exact_match``), through the module ``__getattr__`` below, so the import stays
light as the package grows (tests/unit/test_import.py holds it to that).
"""

from __future__ import annotations

import importlib
import importlib.util
from typing import TYPE_CHECKING, Any

from . import settings as settings
from ._version import __version__ as __version__
from .adapters import Adapter, ChatAdapter, JSONAdapter, XMLAdapter
from .data import Completions, Example, Prediction
from .errors import (
    BudgetExceededError,
    ConfigurationError,
    EvaluationError,
    LMError,
    ParseError,
    PersistError,
    PromptlessError,
    ScoringNotSupportedError,
    SignatureError,
    ToolError,
    TypeMismatchWarning,
)
from .history import History
from .lm import LM, BaseLM, ScriptedLM
from .lm.calllog import inspect_history
from .lm.usage import track_usage
from .modules import (
    BestOfN,
    ChainOfThought,
    Classify,
    Module,
    MultiChainComparison,
    Parallel,
    Predict,
    ProgramOfThought,
    ReAct,
    Refine,
    with_label_scoring,
)
from .settings import configure, context
from .signature import InputField, OutputField, Signature, make_signature

# Public names loaded on first use: name -> the module that defines it.
_LAZY = {
    "BootstrapFewShot": "promptless.optimize",
    "BootstrapFewShotWithRandomSearch": "promptless.optimize",
    "LabeledFewShot": "promptless.optimize",
    "MIPROv2": "promptless.optimize",
    "OptimizationResult": "promptless.optimize",
    "GEPA": "promptless.optimize.gepa",
    "Calibrate": "promptless.optimize.calibrate",
    "KNNFewShot": "promptless.optimize",
    "BootstrapRS": "promptless.optimize",
    "label": "promptless.optimize.label",
    "LabelResult": "promptless.optimize.label",
    "Evaluate": "promptless.evaluate",
    "EvaluationResult": "promptless.evaluate",
    "Tool": "promptless.tools",
    "Retriever": "promptless.retrieve",
    "Embedder": "promptless.embeddings",
    "ThreadExecutor": "promptless.executors",
    "AsyncExecutor": "promptless.executors",
    "RayExecutor": "promptless.executors.ray_executor",
    "streamify": "promptless.streaming",
    "Image": "promptless.media",
    "Audio": "promptless.media",
    "File": "promptless.media",
    "Code": "promptless.media",
    "ToolCalls": "promptless.media",
    "Reasoning": "promptless.media",
    "Citations": "promptless.media",
    "Document": "promptless.media",
    "Type": "promptless.media",
    "configure_cache": "promptless.lm.cache",
    "asyncify": "promptless.modules.convert",
    "syncify": "promptless.modules.convert",
}

if TYPE_CHECKING:  # what the lazy names are, for type checkers and editors
    from .embeddings import Embedder
    from .evaluate import Evaluate, EvaluationResult
    from .executors import AsyncExecutor, ThreadExecutor
    from .executors.ray_executor import RayExecutor
    from .lm.cache import configure_cache
    from .media import Audio, Citations, Code, Document, File, Image, Reasoning, ToolCalls, Type
    from .modules.convert import asyncify, syncify
    from .optimize import (
        BootstrapFewShot,
        BootstrapFewShotWithRandomSearch,
        BootstrapRS,
        KNNFewShot,
        LabeledFewShot,
        MIPROv2,
        OptimizationResult,
    )
    from .optimize.calibrate import Calibrate
    from .optimize.gepa import GEPA
    from .optimize.label import LabelResult, label
    from .retrieve import Retriever
    from .streaming import streamify
    from .tools import Tool


def __getattr__(name: str) -> Any:
    """A lazy public name (imported now, then kept), or a sub-package used as an attribute (``pl.evaluate``)."""
    where = _LAZY.get(name)
    if where is not None:
        value = getattr(importlib.import_module(where), name)
        globals()[name] = value
        return value
    if not name.startswith("_") and importlib.util.find_spec(f"{__name__}.{name}") is not None:
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


__all__ = [
    "GEPA",
    "LM",
    "Adapter",
    "AsyncExecutor",
    "Audio",
    "BaseLM",
    "BestOfN",
    "BootstrapFewShot",
    "BootstrapFewShotWithRandomSearch",
    "BootstrapRS",
    "BudgetExceededError",
    "Calibrate",
    "ChainOfThought",
    "ChatAdapter",
    "Citations",
    "Classify",
    "Code",
    "Completions",
    "ConfigurationError",
    "Document",
    "Embedder",
    "Evaluate",
    "EvaluationError",
    "EvaluationResult",
    "Example",
    "File",
    "History",
    "Image",
    "InputField",
    "JSONAdapter",
    "KNNFewShot",
    "LMError",
    "LabelResult",
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
    "RayExecutor",
    "ReAct",
    "Reasoning",
    "Refine",
    "Retriever",
    "ScoringNotSupportedError",
    "ScriptedLM",
    "Signature",
    "SignatureError",
    "ThreadExecutor",
    "Tool",
    "ToolCalls",
    "ToolError",
    "Type",
    "TypeMismatchWarning",
    "XMLAdapter",
    "asyncify",
    "configure",
    "configure_cache",
    "context",
    "inspect_history",
    "label",
    "make_signature",
    "settings",
    "streamify",
    "syncify",
    "track_usage",
    "with_label_scoring",
]
