"""Fingerprints: stable hashes of programs, prompts and examples.

They key the run store (a score is stored under program fingerprint / example key) and identify a run for
resuming, so they depend only on content: the same program state or example gives the same fingerprint in
every process.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from typing import Any

from .. import settings
from ..data import Example
from ..modules.module import Module
from ..persist import dump_predictor
from ..values import to_jsonable


def _digest(obj: Any, n: int = 20) -> str:
    text = json.dumps(obj, sort_keys=True, ensure_ascii=False, default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:n]


def program_fingerprint(program: Module) -> str:
    """A stable hash of a program's learnable state (instructions, fields, demos, config per predictor)."""
    state: dict[str, Any] = {name: dump_predictor(p) for name, p in program.named_predictors()}
    extra = getattr(program, "fingerprint_state", None)  # state outside the predictors (KNNProgram's index)
    if callable(extra):
        return _digest({"type": type(program).__qualname__, "predictors": state, "extra": extra()})
    return _digest({"type": type(program).__qualname__, "predictors": state})


def prompt_fingerprint(program: Module, example: Example | None) -> str:
    """A hash of how each predictor's prompt is rendered now (adapter, its settings, the formatted messages
    for one example), so a run directory made under another prompt format is not resumed as if it were this."""
    from ..modules.predict import default_adapter

    out: dict[str, Any] = {}
    for name, p in program.named_predictors():
        adapter = p.adapter or settings.get("adapter") or default_adapter()
        cfg = {k: v for k, v in sorted(vars(adapter).items())
               if not k.startswith("_") and isinstance(v, (str, int, float, bool, type(None)))}
        try:
            inputs = {k: (example.get(k) if example is not None else None) for k in p.signature.input_fields}
            demos: list[Any] = list(p.demos)
            messages: Any = [m.to_dict() for m in adapter.format(p.signature, demos, inputs)]
        except Exception as exc:  # an input this predictor's format cannot render from the example
            messages = type(exc).__name__
        out[name] = {"adapter": type(adapter).__qualname__, "config": cfg, "messages": messages}
    return _digest(to_jsonable(out))


def example_key(example: Example) -> str:
    """A stable hash of an example's content and which of its fields are inputs."""
    keys = sorted(example.input_keys or ())
    return _digest({"data": to_jsonable(example.to_dict()), "inputs": keys}, 16)


def examples_fingerprint(examples: Sequence[Example]) -> str:
    return _digest([example_key(e) for e in examples])


__all__ = ["example_key", "examples_fingerprint", "program_fingerprint", "prompt_fingerprint"]
