"""DSPy's import paths for helpers: ``pl.utils.callback.BaseCallback``."""

from . import callback as callback

__all__ = ["callback"]
