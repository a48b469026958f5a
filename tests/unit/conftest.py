from __future__ import annotations

from typing import Literal

import pytest

import promptless as pl

CATEGORY = Literal[
    "Wars and Conflicts",
    "Politics and Governance",
    "Science and Innovation",
    "Cultural and Artistic Movements",
    "Exploration and Discovery",
    "Economic Events",
    "Social Movements",
    "Man-Made Disasters and Accidents",
    "Natural Disasters and Climate",
    "Sports and Entertainment",
    "Famous Personalities and Achievements",
]


class ClassifyEvent(pl.Signature):
    """Classify historic events."""

    event: str = pl.InputField()
    category: CATEGORY = pl.OutputField()
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
