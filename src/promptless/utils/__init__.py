"""DSPy's import paths for helpers: ``pl.utils.callback.BaseCallback``, ``pl.utils.DummyLM``."""

from __future__ import annotations

from typing import Any

from . import callback as callback


def __getattr__(name: str) -> Any:
    if name in ("DummyLM", "DummyVectorizer", "dummies"):
        import importlib

        dummies = importlib.import_module(f"{__name__}.dummies")
        return dummies if name == "dummies" else getattr(dummies, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["DummyLM", "DummyVectorizer", "callback"]
