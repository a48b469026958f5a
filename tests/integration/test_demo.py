"""``promptless demo`` end to end on the smallest embedded model: the main command must not silently break."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from promptless.cli import main
from promptless.datasets import CATEGORIES

pytestmark = pytest.mark.integration


@pytest.mark.timeout(900)
def test_demo_on_smollm2(smollm2_path: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Both halves, as the README's command runs them (a smaller model, split and budget)."""
    out = tmp_path / "demo"
    code = main(["demo", "--model", "local/smollm2-135m", "--limit", "5", "--threads", "1", "--out", str(out),
                 "--no-progress", "--no-cache", "--train-size", "140", "--max-calls", "40",
                 "--run-dir", str(tmp_path / "run")])
    assert code == 0  # includes: the saved optimized program, loaded afresh, predicts the same
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
    # the second half: a budgeted calibration (every label scored by the real model), the optimized program
    # evaluated, saved, reloaded, reported
    assert "5/5 predictions identical" in text and "Calibration: 40 LM calls" in text
    optimized = json.loads((out / "smollm2-135m_dev_optimized.json").read_text())
    assert optimized["n"] == 5 and optimized["stage"] == "optimized"
    for row in optimized["rows"]:  # a pl.Classify: the confidence is the chosen label's probability
        assert row["prediction"]["category"] in CATEGORIES and 0.0 < row["prediction"]["confidence"] <= 1.0
    saved = json.loads((out / "classifier_optimized.json").read_text())
    assert saved["metadata"]["optimizer"] == "Calibrate" and saved["metadata"]["task_model"] == "local/smollm2-135m"
    assert "<svg" in (out / "optimization_report.html").read_text()
    # run again: the calibration resumes from its run directory (no call paid twice) and ends the same
    code = main(["demo", "--model", "local/smollm2-135m", "--limit", "5", "--threads", "1", "--out", str(out),
                 "--no-progress", "--no-cache", "--train-size", "140", "--max-calls", "40",
                 "--run-dir", str(tmp_path / "run"), "--show", "0"])
    assert code == 0
    again = json.loads((out / "classifier_optimized.json").read_text())
    assert again["predictors"] == saved["predictors"]


def test_demo_checks_its_options_before_the_long_work(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo", "--model", "local/smollm2-135m", "--train-size", "0", "--out", str(tmp_path)]) == 1
    assert "--train-size must be between 1 and" in capsys.readouterr().err
    assert not any(tmp_path.iterdir())  # refused before any model was loaded or anything evaluated
