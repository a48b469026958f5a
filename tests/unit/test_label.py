"""pl.label: a teacher program labels inputs; the budget, resuming, failures, and the scores against the labels."""

from __future__ import annotations

import hashlib
import json
import sys
import textwrap
import threading

import pytest

import promptless as pl
from promptless.cli import main
from promptless.errors import ConfigurationError, LMAuthenticationError, LMTimeoutError

CATS = ["war", "science", "economy"]


def _event(messages) -> str:
    """The event of the marker-format request; the JSON adapter's retry finds it in its own format."""
    text = messages[-1].content
    if "[[ ## event ## ]]" in text:
        return text.split("[[ ## event ## ]]\n", 1)[1].split("\n\n", 1)[0].strip()
    return json.loads(text[text.index("{"):text.rindex("}") + 1])["event"] if "{" in text else text


def _teacher_says(event: str) -> str:
    """What the scripted teacher answers: a fixed function of the event (not always the gold label)."""
    return CATS[int(hashlib.sha256(event.encode()).hexdigest(), 16) % 3]


class Counting(pl.ScriptedLM):
    """A scripted teacher that counts its calls and may fail on chosen events."""

    def __init__(self, *, garble=(), timeout=(), **kw):
        self.calls = 0
        self.lock = threading.Lock()
        self.garble, self.timeout = set(garble), set(timeout)
        super().__init__(self.reply, **kw)

    def reply(self, messages):
        with self.lock:
            self.calls += 1
        event = _event(messages)
        if event in self.timeout:
            raise LMTimeoutError("the server took too long")
        if event in self.garble:
            return "I would rather not say."
        return f"[[ ## category ## ]]\n{_teacher_says(event)}\n\n[[ ## confidence ## ]]\n0.8\n\n[[ ## completed ## ]]"


def _teacher(lm, **kw):
    return pl.Predict("event -> category, confidence: float", lm=lm, **kw)


def _gold(n: int = 8) -> list[pl.Example]:
    return [pl.Example(event=f"event {i}", category=CATS[i % 3], id=i).with_inputs("event") for i in range(n)]


def _same(example, pred, trace=None) -> bool:
    return example.category == pred.category


def test_labels_are_what_the_teacher_says_and_gold_fields_are_ignored():
    lm = Counting()
    gold = _gold()
    result = pl.label(_teacher(lm), gold, progress=False)
    assert result.stopped == "completed" and not result.failed and result.pending == 0
    assert len(result) == 8 and result.calls == 8 == lm.calls
    for ex, got in zip(gold, result, strict=True):
        assert got.to_dict() == {"event": ex.event, "category": _teacher_says(ex.event), "confidence": 0.8}
        assert got.input_keys == frozenset({"event"})  # no id, no gold category: inputs + the teacher's outputs


def test_fields_restrict_the_labels_and_dicts_are_inputs():
    result = pl.label(_teacher(Counting()), [{"event": "a"}, {"event": "b"}], fields=["category"], progress=False)
    assert [ex.to_dict() for ex in result] == [{"event": "a", "category": _teacher_says("a")},
                                              {"event": "b", "category": _teacher_says("b")}]
    assert result[0].input_keys == frozenset({"event"})


def test_a_repeated_input_is_labelled_once():
    lm = Counting()
    result = pl.label(_teacher(lm), [{"event": "a"}, {"event": "b"}, {"event": "a"}], progress=False)
    assert lm.calls == 2 and [ex.event for ex in result] == ["a", "b", "a"]


@pytest.mark.parametrize("threads", [1, 3])
def test_the_budget_is_exact(tmp_path, threads):
    lm = Counting()
    result = pl.label(_teacher(lm), _gold(10), max_lm_calls=4, num_threads=threads, run_dir=tmp_path / "run",
                      progress=False)
    assert lm.calls == 4 and result.calls == 4
    assert result.stopped == "budget" and len(result) == 4 and result.pending == 6
    assert "run_dir=" in result.message and "larger budget" in result.message
    assert result.to_dict()["stopped"] == "budget"


def test_a_resume_after_a_budget_stop_pays_for_nothing_twice(tmp_path):
    lm = Counting()
    run = tmp_path / "run"
    first = pl.label(_teacher(lm), _gold(10), max_lm_calls=6, run_dir=run, progress=False)
    assert first.stopped == "budget" and lm.calls == 6
    again = pl.label(_teacher(lm), _gold(10), max_lm_calls=6, run_dir=run, progress=False)  # same budget: no more
    assert lm.calls == 6 and again.stopped == "budget" and len(again) == 6 and again.resumed
    done = pl.label(_teacher(lm), _gold(10), max_lm_calls=20, run_dir=run, progress=False)
    assert lm.calls == 10  # the 4 missing ones only
    assert done.stopped == "completed" and len(done) == 10 and done.calls == 10 and done.replayed_calls == 6
    fresh = pl.label(_teacher(Counting()), _gold(10), progress=False)
    assert [ex.to_dict() for ex in done] == [ex.to_dict() for ex in fresh]


def test_a_run_dir_of_other_inputs_or_fields_is_refused(tmp_path):
    run = tmp_path / "run"
    pl.label(_teacher(Counting()), _gold(4), run_dir=run, progress=False)
    with pytest.raises(ConfigurationError, match=r"holds another run .*inputs"):
        pl.label(_teacher(Counting()), _gold(5), run_dir=run, progress=False)
    with pytest.raises(ConfigurationError, match=r"holds another run .*fields"):
        pl.label(_teacher(Counting()), _gold(4), fields=["category"], run_dir=run, progress=False)
    other = _teacher(Counting(model="bigger"))
    with pytest.raises(ConfigurationError, match=r"holds another run .*lms"):
        pl.label(other, _gold(4), run_dir=run, progress=False)


def test_failures_are_recorded_and_only_lasting_ones_are_stored(tmp_path):
    lm = Counting(garble={"event 1"}, timeout={"event 2"})
    run = tmp_path / "run"
    result = pl.label(_teacher(lm), _gold(5), run_dir=run, progress=False)
    assert result.stopped == "completed" and len(result) == 3
    by_index = {f.index: f for f in result.failed}
    assert set(by_index) == {1, 2}
    assert "ParseError" in by_index[1].error and by_index[1].stored
    assert "LMTimeoutError" in by_index[2].error and not by_index[2].stored
    assert by_index[2].inputs == {"event": "event 2"} and "try them again" in result.message
    calls = lm.calls
    lm.timeout.clear()
    again = pl.label(_teacher(lm), _gold(5), run_dir=run, progress=False)
    assert lm.calls == calls + 1  # only the timed-out input is asked again; the unreadable reply is kept
    assert len(again) == 4 and [f.index for f in again.failed] == [1]


def test_an_error_every_input_would_hit_stops_the_run():
    class Refusing(pl.ScriptedLM):
        def complete(self, request):
            raise LMAuthenticationError("bad key", status=401)

    with pytest.raises(LMAuthenticationError):
        pl.label(_teacher(Refusing("x")), _gold(6), progress=False)


def test_agreement_and_teacher_accuracy():
    gold = _gold(9)
    result = pl.label(_teacher(Counting()), gold, fields=["category"], progress=False)
    expected = 100 * sum(_teacher_says(ex.event) == ex.category for ex in gold) / len(gold)
    accuracy = result.teacher_accuracy(gold, _same)
    assert accuracy.score == pytest.approx(expected) and accuracy.n == 9
    assert 0 < expected < 100  # the teacher is neither always right nor always wrong here

    def student_reply(messages):
        return f"[[ ## category ## ]]\n{'war'}\n\n[[ ## completed ## ]]"

    student = pl.Predict("event -> category", lm=pl.ScriptedLM(student_reply))
    agreement = result.agreement(student, _same)
    assert agreement.score == pytest.approx(100 * sum(ex.category == "war" for ex in result) / len(result))
    assert result.agreement(_teacher(Counting()), _same).score == 100.0  # the teacher agrees with itself
    # gold examples whose inputs were not labelled are left out; a failed input counts as wrong
    extra = [*gold, pl.Example(event="never seen", category="war").with_inputs("event")]
    assert result.teacher_accuracy(extra, _same).n == 9
    failing = pl.label(_teacher(Counting(garble={"event 0"})), gold, progress=False)
    acc = failing.teacher_accuracy(gold, _same)
    assert acc.n == 9 and acc.rows[0].score == 0 and acc.rows[0].error
    with pytest.raises(ConfigurationError, match="none of the 1 gold examples"):
        result.teacher_accuracy([extra[-1]], _same)


def test_bad_arguments_are_refused_clearly():
    teacher = _teacher(Counting())
    with pytest.raises(ConfigurationError, match="inputs is empty"):
        pl.label(teacher, [])
    with pytest.raises(ConfigurationError, match="no inputs marked"):
        pl.label(teacher, [pl.Example(event="a")])
    with pytest.raises(ConfigurationError, match=r"has no field.* event"):
        pl.label(teacher, [{"text": "a"}])
    with pytest.raises(ConfigurationError, match=r"gives no field.* label; its output fields are category, confidence"):
        pl.label(teacher, [{"event": "a"}], fields=["label"])
    with pytest.raises(ConfigurationError, match=r"must be a pl.Module"):
        pl.label(lambda event: None, [{"event": "a"}])
    with pytest.raises(ConfigurationError, match="has no LM"):
        pl.label(pl.Predict("event -> category"), [{"event": "a"}])
    with pytest.raises(ConfigurationError, match="max_lm_calls"):
        pl.label(teacher, [{"event": "a"}], max_lm_calls=-1)


def test_to_jsonl_round_trips(tmp_path):
    result = pl.label(_teacher(Counting()), _gold(3), progress=False)
    path = result.to_jsonl(tmp_path / "sub" / "labelled.jsonl")
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    assert rows == [ex.to_dict() for ex in result]


def test_progress_line_counts_inputs():
    from promptless.optimize.progress import Progress

    p = Progress("label", enabled=False, max_calls=100, total=10, unit="labelled", show_best=False)
    p.update(trial=3, calls=4, stage="labelling")
    assert p.text() == "label  labelling  labelled 3/10  LM calls 4/100"


# -- the command ------------------------------------------------------------------------------------------------

PROGRAM = '''
import promptless as pl

CATS = ["war", "science", "economy"]


def reply(messages):
    text = messages[-1].content
    if "[[ ## event ## ]]" not in text or "garbled" in text:
        return "no idea"
    event = text.split("[[ ## event ## ]]\\n", 1)[1].split("\\n\\n", 1)[0].strip()
    return f"[[ ## category ## ]]\\n{CATS[len(event) % 3]}\\n\\n[[ ## confidence ## ]]\\n0.5\\n\\n[[ ## completed ## ]]"


lm = pl.ScriptedLM(reply)
teacher = pl.Predict("event -> category, confidence: float", lm=lm)
'''


@pytest.fixture
def workspace(tmp_path, monkeypatch, request):
    name = f"labelprog_{request.node.name}".replace("[", "_").replace("]", "_").replace("-", "_")
    (tmp_path / f"{name}.py").write_text(textwrap.dedent(PROGRAM))
    rows = [{"event": e, "category": "gold"} for e in ("a", "bb", "garbled", "dddd", "eeeee")]
    (tmp_path / "events.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    yield tmp_path, name
    sys.modules.pop(name, None)


def test_cli_labels_a_jsonl_file(workspace, capsys):
    tmp, name = workspace
    code = main(["label", f"{name}:teacher", "events.jsonl", "--out", "out/labelled.jsonl", "--fields", "category",
                 "--no-progress"])
    assert code == 0
    rows = [json.loads(line) for line in (tmp / "out" / "labelled.jsonl").read_text().splitlines()]
    cats = ["war", "science", "economy"]
    assert rows == [{"event": e, "category": cats[len(e) % 3]} for e in ("a", "bb", "dddd", "eeeee")]
    out = capsys.readouterr().out
    assert "labelled: 4 of 5 inputs" in out and "LM calls: 6" in out  # the garbled one is asked twice (retry)
    assert "failed: 1 of 5 failed (1 ParseError)" in out and "stopped: completed" in out


def test_cli_budget_stop_and_resume(workspace, capsys):
    tmp, name = workspace
    args = ["label", f"{name}:teacher", "events.jsonl", "--out", "l.jsonl", "--run-dir", "run", "--no-progress",
            "--threads", "1"]  # one at a time: which inputs a tight budget reaches is then fixed
    assert main([*args, "--max-lm-calls", "2", "--limit", "4"]) == 0
    captured = capsys.readouterr()
    assert "stopped: budget (2 inputs not labelled)" in captured.out and "--run-dir run" in captured.err
    assert len((tmp / "l.jsonl").read_text().splitlines()) == 2
    assert main([*args, "--max-lm-calls", "10", "--limit", "4"]) == 0
    out = capsys.readouterr().out
    assert "LM calls: 5 (2 made by an earlier run of this --run-dir, 3 new)" in out and "stopped: completed" in out
    assert len((tmp / "l.jsonl").read_text().splitlines()) == 3
    assert main([*args, "--limit", "3"]) == 1  # other inputs: refused
    assert "holds another run" in capsys.readouterr().err


def test_cli_errors_are_clear(workspace, capsys):
    _, name = workspace
    assert main(["label", f"{name}:teacher", "events.jsonl", "--out", "x.jsonl", "--inputs", "text"]) == 1
    assert "has no field(s) text" in capsys.readouterr().err
    assert main(["label", f"{name}:teacher", "events.jsonl", "--out", "x.jsonl", "--fields", "label"]) == 1
    assert "gives no field(s) label" in capsys.readouterr().err
    assert main(["label", f"{name}:teacher", "events.jsonl", "--out", "x.txt"]) == 1
    assert "--out must name a .jsonl file" in capsys.readouterr().err
    assert main(["label", f"{name}:reply", "events.jsonl", "--out", "x.jsonl"]) == 1
    assert "must be a pl.Module" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["label", f"{name}:teacher", "events.jsonl"])  # --out is required
