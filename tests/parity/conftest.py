"""The parity suite: DSPy programs as their authors write them, run through ``import promptless as dspy``."""

from __future__ import annotations

import pytest


def reply(**fields: object) -> str:
    """A reply in the chat marker format with these output fields."""
    parts = [f"[[ ## {name} ## ]]\n{value}" for name, value in fields.items()]
    return "\n\n".join([*parts, "[[ ## completed ## ]]"])


@pytest.fixture(autouse=True)
def _clean_settings():
    """Every test starts with no LM configured and the default adapter."""
    from promptless import settings

    saved = dict(settings._defaults)
    yield
    settings._defaults.clear()
    settings._defaults.update(saved)
