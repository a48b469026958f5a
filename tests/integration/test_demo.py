"""``promptless demo`` end to end on the smallest embedded model: the main command must not silently break."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from promptless.cli import main
from promptless.datasets import CATEGORIES

pytestmark = pytest.mark.integration


def test_demo_on_smollm2(smollm2_path: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "demo"
    code = main(["demo", "--model", "local/smollm2-135m", "--limit", "5", "--threads", "1", "--out", str(out),
                 "--no-progress", "--no-cache"])
    assert code == 0
    data = json.loads((out / "smollm2-135m_dev.json").read_text())
    assert data["n"] == 5 and len(data["rows"]) == 5
    assert 0.0 <= data["score"] <= 100.0
    assert data["usage"]["calls"] >= 5 and data["usage"]["completion_tokens"] > 0
    for row in data["rows"]:
        assert row["inputs"]["event"] and row["labels"]["category"] in CATEGORIES
        if row["error"] is None:
            assert row["prediction"]["category"] in CATEGORIES
            assert isinstance(row["prediction"]["confidence"], float)
    with (out / "smollm2-135m_dev.csv").open(newline="") as fh:
        assert len(list(csv.DictReader(fh))) == 5
    text = capsys.readouterr().out
    assert "Accuracy:" in text and "LM calls:" in text and "smollm2-135m_dev.json" in text
