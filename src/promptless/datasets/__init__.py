"""Small data sets that ship with promptless.

``historic_events`` is a topic-classification task: a one-line dated historic
event (``event``) and one of eleven categories (``category``). The texts come
from FreeBSD's history calendar (see ``COPYRIGHT`` beside this file); the
labels and the fixed train/dev/test splits are described in ``docs/dataset.md``.

``historic_periods`` is a second task on the same texts: the event with its year taken off (``event``) and
the period it happened in (``period``, one of five), for the 594 events whose text ends with their year. Its
labels come from the year alone, so nothing about them was chosen by a model; it asks what a model knows
of history rather than how it names topics, which makes it a check that a method tuned on the first task
carries over.

Nothing heavy is imported here; the JSONL file is read on first use.
"""

from __future__ import annotations

import json
from functools import lru_cache
from typing import TYPE_CHECKING, Any, Literal, get_args

if TYPE_CHECKING:
    from promptless.data import Example

__all__ = ["CATEGORIES", "PERIODS", "SPLITS", "Category", "Period", "historic_events", "historic_periods"]

#: The eleven categories of ``historic_events``, as the type of a label field (``tasks.ClassifyEvent`` uses it).
Category = Literal[
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

#: The same categories, in order, as a tuple of strings.
CATEGORIES: tuple[str, ...] = get_args(Category)

SPLITS: tuple[str, ...] = ("train", "dev", "test")

#: The five periods of ``historic_periods``, as the type of a label field (``tasks.DateEvent`` uses it).
Period = Literal["before 1800", "1800-1899", "1900-1939", "1940-1969", "1970 or later"]

#: The same periods, in order, as a tuple of strings.
PERIODS: tuple[str, ...] = get_args(Period)

#: The first year of each period but the first.
_PERIOD_STARTS: tuple[int, ...] = (1800, 1900, 1940, 1970)

_HISTORIC_EVENTS_FILE = "historic_events.jsonl"


@lru_cache(maxsize=1)
def _historic_event_rows() -> tuple[dict[str, Any], ...]:
    from importlib.resources import files

    text = (files("promptless.datasets") / _HISTORIC_EVENTS_FILE).read_text(encoding="utf-8")
    return tuple(json.loads(line) for line in text.splitlines() if line.strip())


def historic_events(split: str | None = None) -> list[Example] | dict[str, list[Example]]:
    """Load the historic-events classification set.

    Each item is ``Example(event=..., category=..., id=..., year=...)`` with
    ``event`` marked as the input. ``year`` is an int (negative for BC) or
    ``None`` when the text gives none.

    With no argument, returns ``{"train": [...], "dev": [...], "test": [...]}``;
    with ``split`` one of those names, returns that list. The splits are fixed
    (150 / 100 / 375 events), so results are comparable across runs.
    """
    if split is not None and split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; valid splits: {', '.join(SPLITS)}")

    from promptless.data import Example

    out: dict[str, list[Example]] = {name: [] for name in SPLITS}
    for row in _historic_event_rows():
        example = Example(event=row["event"], category=row["category"], id=row["id"], year=row["year"])
        out[row["split"]].append(example.with_inputs("event"))
    return out if split is None else out[split]


def period_of(year: int) -> str:
    """The period (one of ``PERIODS``) that ``year`` falls in."""
    return PERIODS[sum(year >= start for start in _PERIOD_STARTS)]


def historic_periods(split: str | None = None) -> list[Example] | dict[str, list[Example]]:
    """Load the historic-periods task: when did the event happen?

    Each item is ``Example(event=..., period=..., id=..., year=...)`` with ``event`` (the historic event's
    text without its trailing year, e.g. ``"Castro expels Cuban President Batista"``) marked as the input and
    ``period`` one of ``PERIODS``. Only the events whose text ends with their year are kept (594 of 625), in
    the splits of ``historic_events`` (144 / 96 / 354). With no argument, returns all three splits.
    """
    if split is not None and split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; valid splits: {', '.join(SPLITS)}")

    from promptless.data import Example

    out: dict[str, list[Example]] = {name: [] for name in SPLITS}
    for row in _historic_event_rows():
        text, year = row["event"].rstrip(), row["year"]
        if year is None or not text.endswith(f", {year}"):
            continue
        example = Example(event=text[: -len(f", {year}")].rstrip(), period=period_of(year), id=row["id"], year=year)
        out[row["split"]].append(example.with_inputs("event"))
    return out if split is None else out[split]
