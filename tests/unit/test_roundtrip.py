"""Render-then-parse round trips for every supported output type (property-based)."""

from __future__ import annotations

import enum
import math
from typing import Literal, Optional

from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

import promptless as pl
from promptless.adapters.chat import ChatAdapter
from promptless.adapters.json import JSONAdapter


class Color(enum.Enum):
    RED = "red"
    GREEN = "green"


class Item(BaseModel):
    name: str
    qty: int


LABELS = ["Wars and Conflicts", "Politics and Governance", "Economic Events"]

SIG = pl.make_signature(
    {
        "x": pl.InputField(),
        "text": (str, pl.OutputField()),
        "count": (int, pl.OutputField()),
        "ratio": (float, pl.OutputField()),
        "flag": (bool, pl.OutputField()),
        "label": (Literal["Wars and Conflicts", "Politics and Governance", "Economic Events"], pl.OutputField()),
        "color": (Color, pl.OutputField()),
        "words": (list[str], pl.OutputField()),
        "table": (dict[str, int], pl.OutputField()),
        "maybe": (Optional[int], pl.OutputField()),  # noqa: UP045
        "item": (Item, pl.OutputField()),
    }
)

safe_text = st.text(
    alphabet=st.characters(blacklist_categories=("Cs", "Cc"), blacklist_characters="[]"), min_size=1, max_size=60
).map(str.strip).filter(lambda s: s != "")

values = st.fixed_dictionaries(
    {
        "text": safe_text,
        "count": st.integers(min_value=-(10**12), max_value=10**12),
        "ratio": st.floats(allow_nan=False, allow_infinity=False, width=64).filter(lambda f: abs(f) < 1e15),
        "flag": st.booleans(),
        "label": st.sampled_from(LABELS),
        "color": st.sampled_from(list(Color)),
        "words": st.lists(safe_text, max_size=5),
        "table": st.dictionaries(safe_text, st.integers(-1000, 1000), max_size=4),
        "maybe": st.none() | st.integers(-1000, 1000),
        "item": st.builds(Item, name=safe_text, qty=st.integers(0, 100)),
    }
)


def _same(a, b):
    if isinstance(a, float):
        return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12)
    return a == b


@settings(max_examples=150, deadline=None)
@given(values)
def test_chat_round_trip(vals):
    adapter = ChatAdapter()
    text = adapter.format_outputs(SIG, vals)
    parsed = adapter.parse(SIG, text)
    for k, v in vals.items():
        assert _same(parsed[k], v), (k, v, parsed[k], text)


@settings(max_examples=150, deadline=None)
@given(values)
def test_json_round_trip(vals):
    adapter = JSONAdapter()
    text = adapter.format_outputs(SIG, vals)
    parsed = adapter.parse(SIG, text)
    for k, v in vals.items():
        assert _same(parsed[k], v), (k, v, parsed[k], text)
