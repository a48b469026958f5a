"""Predict: one LM call for one signature. Its learnable state is its
signature's instructions and field descriptions, its demos and its config."""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .. import settings
from ..adapters.base import Adapter
from ..adapters.parsing import is_optional
from ..data import Example, Prediction
from ..errors import ConfigurationError
from ..lm.calllog import calls_by
from ..lm.usage import track_usage
from ..signature import Signature, make_signature
from ..values import value_problem
from .module import Predictor

_SAMPLING_KEYS = ("temperature", "max_tokens", "n", "stop", "seed", "rollout_id")
_default_adapter: Adapter | None = None


@dataclass
class PreparedCall:
    """What one call of a predictor runs with, once its arguments are read and checked (``Predict._prepare``):
    the LM and adapter in effect, the signature and demos (the predictor's own unless the call overrides them),
    the merged sampling config, and the input values."""

    lm: Any
    adapter: Adapter
    signature: type[Signature]
    demos: list[Any]
    config: dict[str, Any]
    inputs: dict[str, Any]


def default_adapter() -> Adapter:
    global _default_adapter
    if _default_adapter is None:
        from ..adapters.chat import ChatAdapter

        _default_adapter = ChatAdapter()
    return _default_adapter


def _warn_on_type_mismatch(predictor: Any, signature: type[Signature], inputs: dict[str, Any]) -> None:
    """A ``TypeMismatchWarning`` per input whose value does not have its field's type, unless the setting
    ``warn_on_type_mismatch`` is False (it is True when unset)."""
    if all(type(v) is str for v in inputs.values()) and all(
            signature.input_fields[n].annotation is str for n in inputs):
        return  # text for text fields: nothing to check
    enabled = settings.get("warn_on_type_mismatch")
    if enabled is False:
        return
    import warnings

    from ..errors import TypeMismatchWarning
    from ..signature import type_mismatches

    level = _outside_package_level()
    for line in type_mismatches(signature, inputs):
        warnings.warn(f"{type(predictor).__name__}: {line}", TypeMismatchWarning, stacklevel=level)


def _outside_package_level() -> int:
    """The ``stacklevel`` that points a warning raised by this module's caller at the first frame outside
    promptless (the user's line), however many of promptless's wrappers lie between."""
    import os
    import sys
    import types

    package = os.path.dirname(os.path.dirname(os.path.abspath(__file__))) + os.sep
    frame: types.FrameType | None = sys._getframe(2)  # the caller of the function that warns
    level = 2
    while frame is not None and os.path.abspath(frame.f_code.co_filename).startswith(package):
        frame = frame.f_back
        level += 1
    return level


class Predict(Predictor):
    """``pl.Predict("question -> answer")(question="...")`` returns a Prediction with ``answer``."""

    def __init__(self, signature: str | type[Signature], *, lm: Any = None, adapter: Adapter | None = None,
                 callbacks: list[Any] | None = None, **config: Any) -> None:
        self.callbacks: list[Any] = list(callbacks or [])
        self.signature = make_signature(signature)
        self._base_signature = self.signature
        self.demos: list[Example] = []
        self.config: dict[str, Any] = {}
        self.lm = lm
        self.adapter = adapter
        self._set_config(config)

    def _set_config(self, config: Mapping[str, Any]) -> None:
        bad = set(config) - set(_SAMPLING_KEYS)
        if bad:
            raise ConfigurationError(
                f"{type(self).__name__}: unknown option(s) {', '.join(sorted(bad))}; "
                f"per-call options are: {', '.join(_SAMPLING_KEYS)}"
            )
        self.config.update(config)

    # -- learnable state ------------------------------------------------------
    def reset(self) -> None:
        self.signature = self._base_signature
        self.demos = []

    def dump_state(self) -> dict[str, Any]:
        from ..persist import dump_predictor

        return dump_predictor(self)

    def load_state(self, state: dict[str, Any]) -> Predict:
        """Load what ``dump_state`` gave (this predictor's own state, or a program's ``{"self": ...}``), or a
        predictor's entry of a state DSPy saved. On any problem the predictor is left unchanged."""
        from ..persist import apply_state, looks_like_dspy

        if isinstance(state, dict) and looks_like_dspy(state):
            apply_state(self, {**state, "format": "dspy"})
        elif isinstance(state, dict) and "signature" in state:
            apply_state(self, {"predictors": {"self": state}})
        else:
            apply_state(self, {"predictors": state})
        return self

    def get_config(self) -> dict[str, Any]:
        """The per-call options this predictor sends with every call (``temperature``, ``n`` ...)."""
        return self.config

    def update_config(self, **kwargs: Any) -> None:
        """Set per-call options (``update_config(temperature=0.7)``); unknown ones are refused."""
        self._set_config(kwargs)

    #: Attributes a deep copy shares instead of copying (an LM is a resource, a signature is immutable).
    _SHARED_ON_COPY: tuple[str, ...] = ("lm", "adapter", "signature", "_base_signature", "callbacks")

    def __deepcopy__(self, memo: dict[int, Any]) -> Predict:
        new = object.__new__(type(self))
        memo[id(self)] = new
        shared = self._SHARED_ON_COPY
        for k, v in self.__dict__.items():
            if k in shared:
                new.__dict__[k] = v  # shared: an LM is a resource, a signature is immutable
            else:
                new.__dict__[k] = copy.deepcopy(v, memo)
        return new

    # -- calling --------------------------------------------------------------------
    def _prepare(self, kwargs: dict[str, Any]) -> PreparedCall:
        signature = kwargs.pop("signature", None) or self.signature
        demos = kwargs.pop("demos", None)
        if demos is None:
            demos = self.demos
        config = dict(self.config)
        config.update(kwargs.pop("config", None) or {})
        for key in _SAMPLING_KEYS:
            if key in kwargs and key not in signature.input_fields:
                config[key] = kwargs.pop(key)
        lm = kwargs.pop("lm", None) or self.lm or settings.current_lm()
        adapter = self.adapter or settings.get("adapter") or default_adapter()
        for name, f in signature.input_fields.items():
            if name not in kwargs and f.has_default:
                kwargs[name] = copy.deepcopy(f.default)
            elif name not in kwargs and is_optional(f.annotation)[0]:
                kwargs[name] = None  # an input typed "X | None" may be left out: it is None
        unknown = [k for k in kwargs if k not in signature.input_fields]
        missing = [k for k in signature.input_fields if k not in kwargs]
        if unknown or missing:
            parts = []
            if missing:
                parts.append(f"missing input(s) {', '.join(missing)}")
            if unknown:
                parts.append(f"unexpected input(s) {', '.join(unknown)}")
            raise ConfigurationError(
                f"{type(self).__name__}({signature.signature_string()}): {'; '.join(parts)}. "
                f"Call it with {', '.join(f'{n}=...' for n in signature.input_fields)}"
            )
        _warn_on_type_mismatch(self, signature, kwargs)
        for name, value in kwargs.items():
            if type(value) is not str:
                problem = value_problem(value)
                if problem:
                    raise ConfigurationError(
                        f"{type(self).__name__}({signature.signature_string()}): input {name!r} cannot be "
                        f"written into a prompt: {problem}"
                    )
        return PreparedCall(lm=lm, adapter=adapter, signature=signature, demos=demos, config=config, inputs=kwargs)

    def _finish(self, completions: list[dict[str, Any]], inputs: dict[str, Any], usage: Any) -> Prediction:
        pred = Prediction.from_completions(completions)
        pred.set_usage(usage)
        settings.record_trace((self, inputs, pred))
        return pred

    def forward(self, **kwargs: Any) -> Prediction:
        call = self._prepare(kwargs)
        with track_usage() as usage, calls_by(self):
            completions = call.adapter(call.lm, call.signature, call.demos, call.inputs, **call.config)
        return self._finish(completions, call.inputs, usage.total)

    def __call__(self, *args: Any, **kwargs: Any) -> Prediction:
        if args:
            raise ConfigurationError(
                f"{type(self).__name__} takes keyword arguments: "
                f"{', '.join(f'{n}=...' for n in self.signature.input_fields)}"
            )
        return self.forward(**kwargs)

    async def aforward(self, **kwargs: Any) -> Prediction:
        call = self._prepare(kwargs)
        with track_usage() as usage, calls_by(self):
            completions = await call.adapter.acall(call.lm, call.signature, call.demos, call.inputs, **call.config)
        return self._finish(completions, call.inputs, usage.total)

    async def acall(self, *args: Any, **kwargs: Any) -> Prediction:
        if args:
            raise ConfigurationError(f"{type(self).__name__} takes keyword arguments only")
        return await self.aforward(**kwargs)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.signature.signature_string()}, demos={len(self.demos)})"
