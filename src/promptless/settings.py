"""Configuration: process-wide defaults plus scoped overrides.

``configure(lm=..., adapter=...)`` sets the defaults every thread sees.
``with context(lm=...):`` overrides them inside the block only; the override
lives in a ``contextvars.ContextVar`` so it is private to the current thread
or asyncio task (and copied into tasks started from inside the block).
Nothing here holds run state; it is configuration only.

The module itself reads like DSPy's settings object: ``pl.settings.lm``,
``pl.settings.callbacks``, ``pl.settings["adapter"]``, ``"lm" in pl.settings``,
``pl.settings.get("trace", default)`` and ``pl.settings.config`` (a dict) give
the values in effect here; ``pl.settings.lm = lm`` is ``configure(lm=lm)``.

The settings:

- ``lm``, ``adapter``: the LM and adapter a module uses when it names none;
- ``trace``: a list each ``Predict`` call appends ``(predictor, inputs, prediction)`` to (None: no trace);
- ``max_trace_size``: the most entries a trace keeps (the oldest go first; 0 keeps none);
- ``callbacks``: ``BaseCallback`` objects every module, LM, adapter, tool and evaluation reports to;
- ``track_usage``: when True, each top-level module call's prediction carries the LM usage of the call,
  by model, in ``prediction.get_lm_usage()``;
- ``disable_history``: when True, LM calls are not kept (``lm.history``, ``pl.inspect_history()``);
- ``warn_on_type_mismatch``: whether an input whose type differs from its field's is logged;
- ``executor``: where ``Evaluate``, ``Module.batch``, ``Parallel`` and the optimizers run their examples when
  they are given none (``pl.ThreadExecutor``, ``pl.AsyncExecutor``, ``pl.RayExecutor``; threads when None).
"""

from __future__ import annotations

import sys
import types
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

from .errors import ConfigurationError

_INITIAL: dict[str, Any] = {
    "lm": None,
    "adapter": None,
    "trace": None,
    "callbacks": [],
    "track_usage": False,
    "disable_history": False,
    "max_trace_size": 10_000,
    "warn_on_type_mismatch": True,
    "executor": None,
}
_KEYS = tuple(_INITIAL)

_defaults: dict[str, Any] = {k: (list(v) if isinstance(v, list) else v) for k, v in _INITIAL.items()}
_overrides: ContextVar[dict[str, Any] | None] = ContextVar("promptless_overrides", default=None)

# Settings DSPy has that mean nothing here, and what to write instead.
_DSPY_ONLY = {
    "rm": "promptless has no global retriever: pass a pl.Retriever to the module that uses it",
    "num_threads": "pass num_threads= to pl.Evaluate or pl.Parallel",
    "max_errors": "pass max_errors= to pl.Evaluate or pl.Parallel",
    "max_history_size": "pass history_size= to the LM (pl.LM(..., history_size=N)); "
                        "disable_history=True keeps none",
}


def _check(kwargs: dict[str, Any]) -> dict[str, Any]:
    for key in kwargs:
        if key in _DSPY_ONLY:
            raise ConfigurationError(f"setting {key!r} is not taken here: {_DSPY_ONLY[key]}")
    unknown = sorted(set(kwargs) - set(_KEYS))
    if unknown:
        raise ConfigurationError(
            f"unknown setting(s) {', '.join(unknown)}; the settings are: {', '.join(_KEYS)}"
        )
    out = dict(kwargs)
    if "callbacks" in out:
        cbs = out["callbacks"]
        if cbs is None:
            cbs = []
        if isinstance(cbs, (str, bytes)) or not isinstance(cbs, (list, tuple)):
            raise ConfigurationError(
                f"callbacks must be a list of callback objects (pl.utils.callback.BaseCallback), got "
                f"{type(cbs).__name__}: write callbacks=[MyCallback()]"
            )
        out["callbacks"] = list(cbs)
    for key in ("track_usage", "disable_history", "warn_on_type_mismatch"):
        if key in out and not isinstance(out[key], bool):
            raise ConfigurationError(f"{key} must be True or False, got {out[key]!r}")
    if "max_trace_size" in out:
        size = out["max_trace_size"]
        if isinstance(size, bool) or not isinstance(size, int) or size < 0:
            raise ConfigurationError(f"max_trace_size must be a whole number >= 0, got {size!r}")
    return out


def configure(**kwargs: Any) -> None:
    """Set process-wide defaults, e.g. ``configure(lm=pl.LM("local/qwen2.5-coder-1.5b"))``."""
    _defaults.update(_check(kwargs))


@contextmanager
def context(**kwargs: Any) -> Iterator[None]:
    """Override settings inside a ``with`` block, for this thread or task only."""
    checked = _check(kwargs)
    current = _overrides.get()
    merged = dict(current) if current else {}
    merged.update(checked)
    token = _overrides.set(merged)
    try:
        yield
    finally:
        _overrides.reset(token)


def get(key: str, default: Any = None) -> Any:
    """The value of setting ``key`` in effect here (``default`` for a name that is not a setting)."""
    over = _overrides.get()
    if over is not None and key in over:
        return over[key]
    return _defaults.get(key, default)


def current_lm() -> Any:
    """The LM in effect here, or a clear error saying how to set one."""
    lm = get("lm")
    if lm is None:
        raise ConfigurationError(
            "no LM is configured. Call pl.configure(lm=pl.LM('local/qwen2.5-coder-1.5b')) once, "
            "use `with pl.context(lm=...)`, or pass lm=... to the module."
        )
    return lm


def snapshot() -> dict[str, Any]:
    """The settings in effect here, as a plain dict."""
    out = dict(_defaults)
    over = _overrides.get()
    if over:
        out.update(over)
    return out


def copy() -> dict[str, Any]:
    """The settings in effect here, as a plain dict (DSPy's ``settings.copy()``)."""
    return snapshot()


def reset() -> None:
    """Every setting back to its initial value (for tests)."""
    _defaults.clear()
    _defaults.update({k: (list(v) if isinstance(v, list) else v) for k, v in _INITIAL.items()})


def record_trace(entry: Any) -> None:
    """Append ``entry`` to the trace in effect, if any, keeping at most ``max_trace_size`` entries."""
    trace = get("trace")
    if trace is None:
        return
    limit = get("max_trace_size")
    if limit == 0:
        return
    trace.append(entry)
    if limit is not None and len(trace) > limit:
        del trace[: len(trace) - limit]


class _SettingsModule(types.ModuleType):
    """This module, readable as DSPy's settings object (see the module docstring)."""

    def __getattr__(self, name: str) -> Any:
        if name in _KEYS:
            return get(name)
        raise AttributeError(f"promptless.settings has no setting {name!r}; the settings are: {', '.join(_KEYS)}")

    def __setattr__(self, name: str, value: Any) -> None:
        if name in _KEYS:
            configure(**{name: value})
        else:
            super().__setattr__(name, value)

    def __getitem__(self, key: str) -> Any:
        if key not in _KEYS:
            raise KeyError(key)
        return get(key)

    def __setitem__(self, key: str, value: Any) -> None:
        configure(**{key: value})

    def __contains__(self, key: object) -> bool:
        return key in _KEYS

    @property
    def config(self) -> dict[str, Any]:
        return snapshot()


sys.modules[__name__].__class__ = _SettingsModule
