"""Configuration: process-wide defaults plus scoped overrides.

``configure(lm=..., adapter=...)`` sets the defaults every thread sees; ``executor=`` is where
``Evaluate``, ``Module.batch``, ``Parallel`` and the optimizers run their examples when they are not
given one (``pl.ThreadExecutor``, ``pl.AsyncExecutor``, ``pl.RayExecutor``; threads when unset).
``with context(lm=...):`` overrides them inside the block only; the override
lives in a ``contextvars.ContextVar`` so it is private to the current thread
or asyncio task (and copied into tasks started from inside the block).
Nothing here holds run state; it is configuration only.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

from .errors import ConfigurationError

_KEYS = ("lm", "adapter", "trace", "executor")

_defaults: dict[str, Any] = {"lm": None, "adapter": None, "trace": None, "executor": None}
_overrides: ContextVar[dict[str, Any] | None] = ContextVar("promptless_overrides", default=None)

# Settings DSPy has that promptless does not support yet, and what to use meanwhile. Refused rather than taken
# and ignored: a setting that is accepted and does nothing is worse than an error.
_NOT_YET = {
    "callbacks": "callbacks are not supported yet: promptless calls no callback hooks. To watch LM calls use "
                 "pl.track_usage(), lm.history or pl.inspect_history(); to see each step of a program, "
                 "pl.context(trace=[])",
}


def _check(kwargs: dict[str, Any]) -> None:
    for key in kwargs:
        if key in _NOT_YET:
            raise ConfigurationError(_NOT_YET[key])
    unknown = sorted(set(kwargs) - set(_KEYS))
    if unknown:
        raise ConfigurationError(
            f"unknown setting(s) {', '.join(unknown)}; the settings are: {', '.join(_KEYS)}"
        )


def configure(**kwargs: Any) -> None:
    """Set process-wide defaults, e.g. ``configure(lm=pl.LM("local/qwen2.5-coder-1.5b"))``."""
    _check(kwargs)
    _defaults.update(kwargs)


@contextmanager
def context(**kwargs: Any) -> Iterator[None]:
    """Override settings inside a ``with`` block, for this thread or task only."""
    _check(kwargs)
    current = _overrides.get()
    merged = dict(current) if current else {}
    merged.update(kwargs)
    token = _overrides.set(merged)
    try:
        yield
    finally:
        _overrides.reset(token)


def get(key: str) -> Any:
    over = _overrides.get()
    if over is not None and key in over:
        return over[key]
    return _defaults.get(key)


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
