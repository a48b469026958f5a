from __future__ import annotations

import pytest

import promptless as pl
from promptless.datasets import Category


class ClassifyEvent(pl.Signature):
    """Classify historic events."""

    event: str = pl.InputField()
    category: Category = pl.OutputField()
    confidence: float = pl.OutputField()


@pytest.fixture
def classify_signature() -> type[pl.Signature]:
    return ClassifyEvent


@pytest.fixture(autouse=True)
def _clean_settings():
    """Every test starts with no LM configured and the default adapter."""
    from promptless import settings

    saved = dict(settings._defaults)
    yield
    settings._defaults.clear()
    settings._defaults.update(saved)
