"""The bundled historic-events data set and its loader."""

from __future__ import annotations

import json
import random
import re
import subprocess
import sys
from importlib.resources import files

import pytest

from promptless.data import Example
from promptless.datasets import CATEGORIES, SPLITS, historic_events

SIZES = {"train": 150, "dev": 100, "test": 375}
SEED = 20261125


def _rows() -> list[dict]:
    text = (files("promptless.datasets") / "historic_events.jsonl").read_text(encoding="utf-8")
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def test_categories_are_the_eleven_in_order():
    assert CATEGORIES == (
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
    )


def test_file_rows_are_well_formed():
    rows = _rows()
    assert len(rows) == sum(SIZES.values())
    for n, row in enumerate(rows, 1):
        assert set(row) == {"id", "date", "year", "event", "category", "split"}
        assert row["id"] == f"he-{n:04d}"  # numbered in source order
        assert re.fullmatch(r"(0[1-9]|1[0-2])/(0[1-9]|[12]\d|3[01])", row["date"])
        assert row["year"] is None or isinstance(row["year"], int)
        assert row["category"] in CATEGORIES
        assert row["split"] in SPLITS
        assert row["event"] == row["event"].strip() and "  " not in row["event"] and "\t" not in row["event"]
    # dates follow the calendar, as the source file does
    assert [r["date"] for r in rows] == sorted(r["date"] for r in rows)


def test_every_category_is_used():
    assert {r["category"] for r in _rows()} == set(CATEGORIES)


def test_ids_and_texts_unique():
    rows = _rows()
    assert len({r["id"] for r in rows}) == len(rows)
    assert len({r["event"] for r in rows}) == len(rows)


def test_loader_returns_examples_per_split():
    data = historic_events()
    assert set(data) == set(SPLITS)
    assert {name: len(items) for name, items in data.items()} == SIZES
    for items in data.values():
        for ex in items:
            assert isinstance(ex, Example)
            assert set(ex.keys()) == {"event", "category", "id", "year"}
            assert ex.input_keys == frozenset({"event"})
            assert set(ex.inputs().keys()) == {"event"}
            assert ex.labels().category in CATEGORIES


def test_single_split_matches_full_load():
    full = historic_events()
    for name in SPLITS:
        assert [ex.id for ex in historic_events(name)] == [ex.id for ex in full[name]]
    # fresh objects each call: editing one does not leak into the next load
    first = historic_events("dev")[0]
    first["category"] = "changed"
    assert historic_events("dev")[0].category != "changed"


def test_splits_are_disjoint():
    data = historic_events()
    ids = {name: {ex.id for ex in items} for name, items in data.items()}
    texts = {name: {ex.event for ex in items} for name, items in data.items()}
    for a in SPLITS:
        for b in SPLITS:
            if a < b:
                assert not ids[a] & ids[b]
                assert not texts[a] & texts[b]


def test_splits_follow_the_documented_seeded_shuffle():
    rows = _rows()
    shuffled = list(rows)
    random.Random(SEED).shuffle(shuffled)
    expected = {}
    for k, row in enumerate(shuffled):
        expected[row["id"]] = "train" if k < SIZES["train"] else "dev" if k < SIZES["train"] + SIZES["dev"] else "test"
    assert {r["id"]: r["split"] for r in rows} == expected


def test_no_calendar_noise_slipped_in():
    banned = [
        r"meteor shower",
        r"\bmeteoroids\b",
        r"^Anniversary\b",
        r"\bAnniversary in\b",
        r"\bBirthday\b",
        r"\bFeast of\b",
        r"\bDog days\b",
        r"\bdegrees\b",
        r"°",
        r"^Swallows\b",
        r"\bmigration\b",
        r"\bmating season\b",
        r"\bperihelion\b",
        r"\bConjunction\b",
        r"\bPhileas Fogg\b",
        r"\bEarth created\b",
        r"\bborn this day\b",
        r"\beach year\b",
    ]
    for row in _rows():
        for pattern in banned:
            assert not re.search(pattern, row["event"], re.IGNORECASE), (pattern, row["event"])


def test_known_rows():
    by_id = {r["id"]: r for r in _rows()}
    assert by_id["he-0001"] == {
        "id": "he-0001",
        "date": "01/01",
        "year": 1959,
        "event": "Castro expels Cuban President Batista, 1959",
        "category": "Politics and Governance",
        "split": "train",
    }
    by_text = {r["event"]: r for r in _rows()}
    hastings = by_text["Battle of Hastings won by William the Conqueror and the Normans, 1066"]
    assert (hastings["year"], hastings["category"]) == (1066, "Wars and Conflicts")
    assert by_text["Rome is founded by Romulus and Remus, 753 BC"]["year"] == -753
    assert by_text["Battle of New Orleans"]["year"] is None
    assert by_text["San Francisco earthquake, 1906"]["category"] == "Natural Disasters and Climate"
    assert by_text["Great Chicago Fire, 1871"]["category"] == "Man-Made Disasters and Accidents"


def test_unknown_split_raises_naming_the_valid_ones():
    with pytest.raises(ValueError) as info:
        historic_events("validation")
    message = str(info.value)
    assert "validation" in message
    for name in SPLITS:
        assert name in message


def test_import_is_light():
    code = (
        "import sys, promptless\n"
        "before = set(sys.modules)\n"
        "import promptless.datasets\n"
        "new = sorted(m for m in set(sys.modules) - before if m.startswith('promptless'))\n"
        "assert new == ['promptless.datasets'], new\n"
        "heavy = {'promptless.data', 'pydantic', 'httpx', 'numpy'} & (set(sys.modules) - before)\n"
        "assert not heavy, heavy\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, env=None)


def test_historic_periods_take_the_year_off_and_label_by_it():
    from promptless.datasets import PERIODS, historic_periods, period_of

    data = historic_periods()
    assert {name: len(items) for name, items in data.items()} == {"train": 144, "dev": 96, "test": 354}
    by_id = {r["id"]: r for r in _rows()}
    for split, items in data.items():
        for ex in items:
            row = by_id[ex.id]
            assert row["split"] == split and ex.year == row["year"]
            assert row["event"] == f"{ex.event}, {ex.year}"  # only the trailing year is taken off
            assert not ex.event.endswith(str(ex.year))
            assert ex.period in PERIODS and ex.input_keys == frozenset({"event"})
    assert [period_of(y) for y in (-44, 1066, 1799, 1800, 1899, 1900, 1939, 1940, 1969, 1970, 2001)] == [
        "before 1800", "before 1800", "before 1800", "1800-1899", "1800-1899", "1900-1939", "1900-1939",
        "1940-1969", "1940-1969", "1970 or later", "1970 or later"]
    assert {ex.period for ex in data["test"]} == set(PERIODS)
    with pytest.raises(ValueError, match="unknown split"):
        historic_periods("val")


def test_the_periods_task_is_ready_made():
    from promptless.data import Prediction
    from promptless.tasks import DateEvent, load_periods, period_match

    assert DateEvent.output_fields["period"].annotation.__args__[0] == "before 1800"
    ex = load_periods("dev", 1)[0]
    assert period_match(ex, Prediction(period=f" {ex.period.upper()} "))
    assert not period_match(ex, Prediction(period="somewhere else")) and not period_match(ex, Prediction())
