"""The parity suite: DSPy programs as their authors write them, run through ``import promptless as dspy``.

Each test starts with the settings as they are on import (no LM, no callbacks, no usage tracking)."""

from __future__ import annotations

import pytest


def reply(**fields: object) -> str:
    """A reply in the chat marker format with these output fields."""
    parts = [f"[[ ## {name} ## ]]\n{value}" for name, value in fields.items()]
    return "\n\n".join([*parts, "[[ ## completed ## ]]"])


@pytest.fixture(autouse=True)
def _clean_settings():
    """Every test starts with no LM configured, the default adapter and every other setting at its default."""
    from promptless import settings

    saved = dict(settings._defaults)
    settings.reset()
    yield
    settings._defaults.clear()
    settings._defaults.update(saved)
