from __future__ import annotations

import json

import pytest

import promptless as pl
from promptless.adapters.chat import ChatAdapter
from promptless.errors import PersistError


def _optimized(sig):
    p = pl.Predict(sig)
    p.signature = p.signature.with_instructions("Pick the single best category for the event.")
    p.signature = p.signature.with_updated_fields("confidence", desc="between 0 and 1")
    p.demos = [
        pl.Example(event="Battle of Hastings, 1066", category="Wars and Conflicts", confidence=0.9).with_inputs("event")
    ]
    p.config = {"temperature": 0.0}
    return p


def test_save_load_round_trip_gives_identical_prompts(tmp_path, classify_signature):
    p = _optimized(classify_signature)
    path = p.save(tmp_path / "classify.json")
    data = json.loads(path.read_text())
    assert data["format"] == "promptless.program" and data["format_version"] == 1
    fresh = pl.Predict(classify_signature).load(path)
    adapter = ChatAdapter()
    inputs = {"event": "Storming of the Bastille, 1789"}
    assert adapter.format(fresh.signature, fresh.demos, inputs) == adapter.format(p.signature, p.demos, inputs)
    assert fresh.config == {"temperature": 0.0}


class Two(pl.Module):
    def __init__(self):
        self.a = pl.Predict("q -> r")
        self.b = pl.ChainOfThought("r -> s")


def test_multi_predictor_program_round_trip(tmp_path):
    prog = Two()
    prog.a.demos = [pl.Example(q="1", r="2")]
    prog.b.signature = prog.b.signature.with_instructions("Be brief.")
    prog.save(tmp_path / "two.json")
    other = Two().load(tmp_path / "two.json")
    assert other.b.signature.instructions == "Be brief." and other.a.demos[0].r == "2"
    assert other.dump_state() == prog.dump_state()


@pytest.mark.parametrize(
    ("content", "fragment"),
    [
        (None, "no saved program"),
        ("{not json", "not valid JSON"),
        ('{"hello": 1}', "not a saved promptless program"),
        ('{"format": "promptless.program", "format_version": 99, "predictors": {}}', "newer"),
    ],
)
def test_bad_files_leave_program_unchanged(tmp_path, classify_signature, content, fragment):
    p = _optimized(classify_signature)
    before = p.dump_state()
    path = tmp_path / "state.json"
    if content is not None:
        path.write_text(content)
    with pytest.raises(PersistError, match=fragment):
        p.load(path)
    assert p.dump_state() == before


def test_another_programs_state_is_refused(tmp_path, classify_signature):
    other = Two()
    other.save(tmp_path / "two.json")
    p = _optimized(classify_signature)
    before = p.dump_state()
    with pytest.raises(PersistError, match="another program"):
        p.load(tmp_path / "two.json")
    assert p.dump_state() == before
    q = pl.Predict("question -> answer")
    q.save(tmp_path / "qa.json")
    with pytest.raises(PersistError, match="another program"):
        pl.Predict(classify_signature).load(tmp_path / "qa.json")


def test_save_program_pickle_is_refused(tmp_path):
    with pytest.raises(PersistError, match="not supported"):
        pl.Predict("a -> b").save(tmp_path / "x.json", save_program=True)
    with pytest.raises(PersistError, match=r"\.json"):
        pl.Predict("a -> b").save(tmp_path / "x.pkl")


def test_import_creates_no_files_and_no_threads(tmp_path):
    import subprocess
    import sys

    code = (
        "import threading, promptless, sys; "
        "sys.exit(0 if threading.active_count() == 1 else 3)"
    )
    env = {"HOME": str(tmp_path), "PATH": "/usr/bin:/bin"}
    subprocess.run([sys.executable, "-c", code], check=True, env=env, cwd=tmp_path)
    assert list(tmp_path.iterdir()) == []
