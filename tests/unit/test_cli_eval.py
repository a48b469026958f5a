"""``promptless eval`` on a user's program module, and ``promptless demo`` with a scripted LM."""

from __future__ import annotations

import csv
import json
import sys
import textwrap

import pytest

import promptless as pl
from promptless.cli import main

PROGRAM = '''
import promptless as pl


def reply(messages):
    last = messages[-1].content
    question = last.split("[[ ## question ## ]]\\n", 1)[1].split("\\n", 1)[0]
    answer = question.upper() if len(messages) <= 2 else "with demos"
    return f"[[ ## answer ## ]]\\n{answer}\\n\\n[[ ## completed ## ]]"


lm = pl.ScriptedLM(reply)
program = pl.Predict("question -> answer", lm=lm)
no_lm = pl.Predict("question -> answer")


class QA(pl.Module):
    def __init__(self):
        self.predict = pl.Predict("question -> answer", lm=lm)

    def forward(self, question):
        return self.predict(question=question)


def build():
    return QA()


def shout(question):
    return pl.Prediction(answer=question.upper() + "!")


def first_letter(example, pred, trace=None):
    return example.answer[0].lower() == pred.answer[0].lower()
'''

DATA = [
    {"question": "paris", "answer": "PARIS"},
    {"question": "rome", "answer": "Roma"},
    {"question": "oslo", "answer": "OSLO"},
    {"question": "bern", "answer": "the bern"},
]


@pytest.fixture
def workspace(tmp_path, monkeypatch, request):
    """A folder with a uniquely named program module and a data file, as the current directory."""
    name = f"userprog_{request.node.name}".replace("[", "_").replace("]", "_").replace("-", "_")
    (tmp_path / f"{name}.py").write_text(textwrap.dedent(PROGRAM))
    (tmp_path / "dev.jsonl").write_text("\n".join(json.dumps(r) for r in DATA) + "\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    yield tmp_path, name
    sys.modules.pop(name, None)


def test_eval_a_module_instance_writes_results(workspace, capsys):
    tmp, name = workspace
    code = main(["eval", f"{name}:program", "dev.jsonl", "--metric", "exact", "--out", "out/results.json",
                 "--no-progress"])
    assert code == 0
    data = json.loads((tmp / "out" / "results.json").read_text())
    assert data["score"] == 75.0 and data["n"] == 4 and data["metric"] == "exact_match"
    assert [r["prediction"]["answer"] for r in data["rows"]] == ["PARIS", "ROME", "OSLO", "BERN"]
    assert data["usage"]["calls"] == 4
    out = capsys.readouterr().out
    assert "score: 75.00 (exact_match) on 4 examples" in out and "results:" in out


@pytest.mark.parametrize("attr", ["QA", "build"])
def test_eval_a_class_or_a_factory(workspace, attr):
    tmp, name = workspace
    assert main(["eval", f"{name}:{attr}", "dev.jsonl", "--out", "r.json", "--no-progress", "--show", "0"]) == 0
    assert json.loads((tmp / "r.json").read_text())["score"] == 75.0


def test_eval_a_file_path_plain_function_f1_and_csv(workspace):
    tmp, name = workspace
    code = main(["eval", f"{tmp / (name + '.py')}:shout", str(tmp / "dev.jsonl"), "--metric", "f1",
                 "--field", "answer", "--out", "r.csv", "--no-progress"])
    assert code == 0
    with (tmp / "r.csv").open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    # "PARIS!" normalises to "paris": 1.0; "ROME!" vs "Roma": 0.0; "BERN!" vs "the bern": 1.0
    assert [float(r["score"]) for r in rows] == [1.0, 0.0, 1.0, 1.0]
    assert rows[0]["pred_answer"] == "PARIS!"


def test_eval_with_a_custom_metric_inputs_and_limit(workspace):
    tmp, name = workspace
    code = main(["eval", f"{name}:program", "dev.jsonl", "--metric", f"{name}:first_letter", "--inputs", "question",
                 "--limit", "2", "--out", "r.json", "--no-progress"])
    assert code == 0
    data = json.loads((tmp / "r.json").read_text())
    assert data["n"] == 2 and data["score"] == 100.0 and data["metric"] == "first_letter"


def test_eval_loads_saved_state(workspace):
    tmp, name = workspace
    saved = pl.Predict("question -> answer")
    saved.demos = [pl.Example(question="x", answer="y")]
    saved.save(tmp / "state.json")
    code = main(["eval", f"{name}:program", "dev.jsonl", "--load", "state.json", "--out", "r.json", "--no-progress"])
    assert code == 0
    data = json.loads((tmp / "r.json").read_text())
    assert {r["prediction"]["answer"] for r in data["rows"]} == {"with demos"}
    assert len(sys.modules[name].lm.requests[0].messages) == 4  # system, demo pair, question


def test_eval_errors_are_clear(workspace, capsys):
    _, name = workspace
    assert main(["eval", f"{name}:nothing", "dev.jsonl"]) == 1
    assert "has no attribute 'nothing'" in capsys.readouterr().err
    assert main(["eval", "no_such_module_xyz:program", "dev.jsonl"]) == 1
    assert "cannot import module 'no_such_module_xyz'" in capsys.readouterr().err
    assert main(["eval", "justaname", "dev.jsonl"]) == 1
    assert "module:attribute" in capsys.readouterr().err
    assert main(["eval", f"{name}:program", "dev.jsonl", "--inputs", "query", "--no-progress"]) == 1
    assert "has no field(s) query" in capsys.readouterr().err
    assert main(["eval", f"{name}:no_lm", "dev.jsonl", "--no-progress"]) == 1
    assert "no LM: pass --model" in capsys.readouterr().err
    assert main(["eval", f"{name}:program", "dev.jsonl", "--metric", "bleu"]) == 1
    assert "unknown metric 'bleu'" in capsys.readouterr().err


def test_eval_max_errors_writes_the_partial_result(workspace, capsys):
    tmp, name = workspace
    (tmp / "bad.jsonl").write_text("\n".join(json.dumps({"question": i, "answer": "a"}) for i in range(5)) + "\n")
    code = main(["eval", f"{name}:shout", "bad.jsonl", "--max-errors", "1", "--threads", "1", "--out", "partial.json",
                 "--no-progress"])
    assert code == 1
    err = capsys.readouterr().err
    assert "more than max_errors=1" in err and "AttributeError" in err
    data = json.loads((tmp / "partial.json").read_text())
    assert data["stopped"] and data["n_errors"] == 2
    assert [r["skipped"] for r in data["rows"]] == [False, False, True, True, True]


# -- the demo, with a scripted LM in place of the local model ---------------------------------------------


def test_demo_runs_end_to_end_with_a_scripted_lm(tmp_path, monkeypatch, capsys):
    from promptless.tasks import load_events

    gold = {ex.event: ex.category for ex in load_events("dev")}
    made: list[str] = []

    def reply(messages):
        event = messages[-1].content.split("[[ ## event ## ]]\n", 1)[1].split("\n\n", 1)[0]
        return f"[[ ## category ## ]]\n{gold[event]}\n\n[[ ## confidence ## ]]\n0.9\n\n[[ ## completed ## ]]"

    def fake_lm(model, **options):
        made.append(model)
        return pl.ScriptedLM(reply, model=model)

    monkeypatch.setattr(pl, "LM", fake_lm)
    out = tmp_path / "demo"
    code = main(["demo", "--model", "openai/fake-1.5b", "--limit", "6", "--out", str(out), "--no-progress",
                 "--no-optimize"])
    assert code == 0 and made == ["openai/fake-1.5b"]
    assert sorted(p.name for p in out.iterdir()) == ["fake-1.5b_dev.csv", "fake-1.5b_dev.json"]
    data = json.loads((out / "fake-1.5b_dev.json").read_text())
    assert data["n"] == 6 and data["score"] == 100.0 and data["model"] == "openai/fake-1.5b"
    assert data["threads"] == 8 and data["usage"]["calls"] == 6
    assert all(r["prediction"]["confidence"] == 0.9 for r in data["rows"])
    assert (out / "fake-1.5b_dev.csv").read_text().count("\n") == 7
    text = capsys.readouterr().out
    assert "Accuracy: 100.0% (6/6 correct)" in text and "LM calls: 6" in text and "fake-1.5b_dev.json" in text
    assert "Optimizing" not in text


def test_demo_model_names():
    from promptless.cli.demo import model_slug, normalize_model

    assert normalize_model("smollm2-135m") == "local/smollm2-135m"
    assert normalize_model("local/qwen2.5-coder-1.5b") == "local/qwen2.5-coder-1.5b"
    assert model_slug("local/qwen2.5-coder-1.5b") == "qwen2.5-coder-1.5b"
    assert model_slug("local//models/My Model.gguf") == "My-Model"
    assert model_slug("openai/org/gpt-4o") == "org-gpt-4o"
