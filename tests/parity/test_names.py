"""docs/coming-from-dspy.md stays true: what it calls the same imports from promptless, what it says was
renamed resolves, and what it says is missing is still missing."""

from __future__ import annotations

import importlib
import re
import types
from pathlib import Path

import pytest

import promptless

DOC = Path(__file__).resolve().parents[2] / "docs" / "coming-from-dspy.md"
STATUSES = {"same", "renamed", "different", "missing"}
ROW = re.compile(r"^\| `(?P<name>[^`]+)` \| (?P<status>[a-z]+) \| (?:`(?P<ours>[^`]+)`)? ?\|")


def _rows() -> list[tuple[str, str, str | None]]:
    rows = []
    for line in DOC.read_text(encoding="utf-8").splitlines():
        m = ROW.match(line)
        if m:
            rows.append((m["name"], m["status"], m["ours"]))
    return rows


ROWS = _rows()


def _resolve(target: str) -> object:
    """``Name`` from promptless, or ``promptless.mod.Name``."""
    if "." not in target:
        return getattr(promptless, target)
    module, _, attr = target.rpartition(".")
    return getattr(importlib.import_module(module), attr)


def test_the_table_is_read_and_well_formed():
    assert len(ROWS) > 100
    names = [n for n, _, _ in ROWS]
    assert len(names) == len(set(names)), "a DSPy name is listed twice"
    assert {s for _, s, _ in ROWS} <= STATUSES
    for name, status, ours in ROWS:
        if status in ("same", "renamed"):
            assert ours, f"{name}: a {status} row names what promptless has"
        if status == "same":
            assert ours == name, f"{name}: a same row has the same name in promptless"


@pytest.mark.parametrize("name", [n for n, s, _ in ROWS if s == "same"])
def test_same_names_import_from_promptless(name):
    assert _resolve(name) is not None
    if name != "__version__":
        assert name in promptless.__all__, f"{name} is importable but not in promptless.__all__"


@pytest.mark.parametrize(("name", "target"), [(n, o) for n, s, o in ROWS if s == "renamed"])
def test_renamed_targets_exist(name, target):
    assert _resolve(target) is not None


@pytest.mark.parametrize("name", [n for n, s, _ in ROWS if s == "missing"])
def test_missing_names_are_still_missing(name):
    found = getattr(promptless, name, None)
    # A sub-module of that name (promptless.settings) is not DSPy's object of that name.
    assert found is None or isinstance(found, types.ModuleType), (
        f"promptless.{name} exists now: update its row in docs/coming-from-dspy.md")
