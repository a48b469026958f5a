"""The parity tier: DSPy programs as their users write them, run through ``import promptless as dspy``.

Each test starts with the settings as they are on import (no LM, no callbacks, no usage tracking)."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _fresh_settings():
    from promptless import settings

    saved = dict(settings._defaults)
    settings.reset()
    yield
    settings._defaults.clear()
    settings._defaults.update(saved)
