"""The core in one minute, with no model: a class-based signature, Predict, inspect_history, save and load.

    python examples/scripted_classify.py

A ScriptedLM stands in for a real model (it answers from a list), so this runs
anywhere in well under a second. Swap in ``pl.LM("local/qwen2.5-coder-1.5b")``
to run the same program for real.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Literal

import promptless as pl


class ClassifyEvent(pl.Signature):
    """Classify a historic event into one category."""

    event: str = pl.InputField(desc="a one-line dated event")
    category: Literal["Wars and Conflicts", "Science and Innovation", "Politics and Governance"] = pl.OutputField()
    confidence: float = pl.OutputField(desc="between 0 and 1")


def main() -> None:
    # A model that bends the format the way small models do: another case, a near-miss label, a percentage.
    lm = pl.ScriptedLM([
        "[[ ## category ## ]]\nWars and Conflicts\n\n[[ ## confidence ## ]]\n0.9\n\n[[ ## completed ## ]]",
        "Sure!\n[[ ## Category ## ]]\nscience and innovation.\n[[ ## confidence ## ]]\n85%",
    ])
    pl.configure(lm=lm)

    classify = pl.Predict(ClassifyEvent)
    for event in ("Battle of Hastings won by William the Conqueror, 1066", "First transatlantic telephone call, 1927"):
        pred = classify(event=event)
        print(f"{event!r}\n  -> {pred.category} ({pred.confidence:.2f})")

    print("\nThe last call, as the model saw it:")
    pl.inspect_history(n=1)

    # Learned state (demos, instructions) is saved as JSON and loaded into a program built the same way.
    classify.demos = [pl.Example(event="Moon landing, 1969", category="Science and Innovation",
                                 confidence=0.95).with_inputs("event")]
    with tempfile.TemporaryDirectory() as tmp:
        path = classify.save(Path(tmp) / "classify.json")
        fresh = pl.Predict(ClassifyEvent)
        fresh.load(path)
        print(f"\nsaved {path.name} ({path.stat().st_size} bytes); loaded demos: {len(fresh.demos)}")
        assert fresh.demos[0].category == "Science and Innovation"


if __name__ == "__main__":
    main()
