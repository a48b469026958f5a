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
    for one example), so a run directory made under another prompt format is not resumed as if it were this.

    A setting left unset (``None``) is not hashed: an option an adapter gains later, unset by default, keeps the
    fingerprint of the runs made before it existed, so upgrading promptless does not refuse them."""
    return _prompt_digest(program, example, keep_unset=False)


def older_prompt_fingerprints(program: Module, example: Example | None) -> set[str]:
    """The same prompt as fingerprinted by earlier versions (which hashed unset settings too): a run directory
    stored under one of these is the same prompt, and is resumed."""
    return {_prompt_digest(program, example, keep_unset=True)} - {prompt_fingerprint(program, example)}


def _prompt_digest(program: Module, example: Example | None, *, keep_unset: bool) -> str:
    from ..modules.predict import default_adapter

    out: dict[str, Any] = {}
    for name, p in program.named_predictors():
        adapter = p.adapter or settings.get("adapter") or default_adapter()
        cfg = {k: v for k, v in sorted(vars(adapter).items())
               if not k.startswith("_") and (v is not None or keep_unset)
               and isinstance(v, (str, int, float, bool, type(None)))}
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


__all__ = ["example_key", "examples_fingerprint", "older_prompt_fingerprints", "program_fingerprint",
           "prompt_fingerprint"]
