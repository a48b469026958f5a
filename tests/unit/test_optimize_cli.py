"""``promptless optimize`` on a user's program file and JSONL data, with a scripted LM."""

from __future__ import annotations

import json
import textwrap

import pytest

from promptless.cli import main

PROGRAM = textwrap.dedent(
    '''
    import json, re
    from pathlib import Path
    import promptless as pl

    GOLD = {row["event"]: row["category"] for row in map(json.loads, Path(__file__).with_name("all.jsonl").open())}
    CATS = sorted(set(GOLD.values()))

    class Classify(pl.Signature):
        """Classify the event."""
        event: str = pl.InputField()
        category: str = pl.OutputField()

    def reply(messages):
        if "proposed_instruction" in messages[0].content:
            text = "Sure! Here is the instruction: Find the CLUE."
            return f"[[ ## proposed_instruction ## ]]\\n{text}\\n\\n[[ ## completed ## ]]"
        ins = messages[0].content.split("Task:")[-1]
        event = re.search(r"\\[\\[ ## event ## \\]\\]\\n(.*)", messages[-1].content).group(1).strip()
        n = (len(messages) - 2) // 2
        right = "CLUE" in ins or n >= 1
        label = GOLD[event] if right else CATS[(CATS.index(GOLD[event]) + 1) % len(CATS)]
        return f"[[ ## category ## ]]\\n{label}\\n\\n[[ ## completed ## ]]"

    LM = pl.ScriptedLM(reply)

    def build():
        return pl.Predict(Classify, lm=LM)
    '''
)


@pytest.fixture
def project(tmp_path, monkeypatch):
    cats = ["War", "Science", "Economy", "Politics"]
    rows = [{"event": f"event {i}", "category": cats[i % 4], "id": i} for i in range(40)]
    (tmp_path / "all.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (tmp_path / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows[:15]))
    (tmp_path / "dev.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows[15:]))
    (tmp_path / "app.py").write_text(PROGRAM)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_optimize_mipro_from_the_command_line(project, capsys):
    code = main(["optimize", "app.py:build", "train.jsonl", "--valset", "dev.jsonl", "--metric", "exact",
                 "--field", "category", "--optimizer", "mipro", "--max-bootstrapped-demos", "0",
                 "--max-labeled-demos", "0", "--out", "best.json", "--report", "run.html", "--result", "run.json",
                 "--run-dir", "ckpt", "--no-progress"])
    out = capsys.readouterr()
    assert code == 0, out.err
    assert "baseline 0.0 -> optimized 100.0" in out.out
    saved = json.loads((project / "best.json").read_text())
    assert saved["predictors"]["self"]["signature"]["instructions"] == "Find the CLUE."
    assert saved["metadata"]["final_score"] == 100.0
    assert "<svg" in (project / "run.html").read_text()
    assert json.loads((project / "run.json").read_text())["optimizer"] == "MIPROv2"
    assert (project / "ckpt" / "run.sqlite").exists()
    assert "trial 0 (baseline)" in out.err  # one log line per trial
    # the saved state loads into a fresh program
    import importlib.util

    spec = importlib.util.spec_from_file_location("app_fresh", project / "app.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    fresh = mod.build().load(project / "best.json")
    assert fresh.signature.instructions == "Find the CLUE."


@pytest.mark.parametrize("name", ["labeled", "bootstrap", "random"])
def test_the_demo_optimizers_from_the_command_line(project, capsys, name):
    code = main(["optimize", "app:build", "train.jsonl", "--valset", "dev.jsonl", "--field", "category",
                 "--optimizer", name, "--max-labeled-demos", "2", "--num-candidates", "2", "--out", "out.json",
                 "--quiet", "--no-progress"])
    out = capsys.readouterr()
    assert code == 0, out.err
    assert "optimized 100.0" in out.out
    assert len(json.loads((project / "out.json").read_text())["predictors"]["self"]["demos"]) >= 1


def test_budget_and_errors_on_the_command_line(project, capsys):
    code = main(["optimize", "app.py:build", "train.jsonl", "--valset", "dev.jsonl", "--field", "category",
                 "--max-calls", "7", "--max-bootstrapped-demos", "0", "--max-labeled-demos", "0", "--quiet",
                 "--no-progress", "--out", "o.json"])
    out = capsys.readouterr()
    assert code == 0 and "LM calls 7 of 7" in out.out and "stopped: budget" in out.out
    assert main(["optimize", "app.py:nothing", "train.jsonl"]) == 1
    assert "no attribute" in capsys.readouterr().err
    assert main(["optimize", "app.py:build", "train.jsonl", "--optimizer", "labeled", "--prompt-model", "x/y"]) == 1
    assert "--prompt-model applies to --optimizer mipro and gepa only" in capsys.readouterr().err
    assert main(["optimize", "app.py:build", "train.jsonl", "--inputs", "question"]) == 1
    assert "no field(s) question" in capsys.readouterr().err


def test_holdout_and_alpha_reach_the_optimizer(project, capsys):
    code = main(["optimize", "app.py:build", "train.jsonl", "--valset", "dev.jsonl", "--field", "category",
                 "--optimizer", "random", "--num-candidates", "2", "--max-labeled-demos", "2", "--holdout", "0.4",
                 "--alpha", "0.2", "--result", "run.json", "--quiet", "--no-progress", "--out", "o.json"])
    out = capsys.readouterr()
    assert code == 0, out.err
    selection = json.loads((project / "run.json").read_text())["selection"]
    assert selection["n_holdout"] == 10  # 0.4 of the 25 validation examples
    assert selection["alpha"] == 0.2
    code = main(["optimize", "app.py:build", "train.jsonl", "--valset", "dev.jsonl", "--field", "category",
                 "--optimizer", "random", "--num-candidates", "2", "--holdout", "none", "--result", "off.json",
                 "--quiet", "--no-progress", "--out", "o2.json"])
    assert code == 0, capsys.readouterr().err
    assert json.loads((project / "off.json").read_text())["selection"]["mode"] == "off"


def test_a_refused_candidate_can_be_saved(project, capsys):
    # 3 held-out examples cannot show a win at alpha 0.1 (an exact one-sided test gives p = 1/8 at best)
    args = ["optimize", "app.py:build", "train.jsonl", "--valset", "dev.jsonl", "--field", "category",
            "--optimizer", "random", "--num-candidates", "2", "--max-labeled-demos", "2", "--holdout", "3",
            "--quiet", "--no-progress", "--out", "kept.json"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "rejected" in out and "add --save-refused FILE to keep it" in out
    assert not (project / "refused.json").exists()
    assert main([*args, "--save-refused", "refused.json"]) == 0
    assert "refused candidate saved to" in capsys.readouterr().out
    kept = json.loads((project / "kept.json").read_text())
    refused = json.loads((project / "refused.json").read_text())
    assert refused["metadata"]["refused"] is True and refused["metadata"]["decision"] == "rejected"
    assert refused["metadata"]["evidence"]["n"] == 3
    assert kept != refused and json.dumps(refused).count("event ") > json.dumps(kept).count("event ")  # its demos


@pytest.mark.parametrize(("args", "words"), [
    (["--holdout", "1.5"], "expected auto, none, cv, a fraction"),
    (["--holdout", "lots"], "expected auto, none, cv, a fraction"),
    (["--optimizer", "mipro", "--holdout", "cv"], "holdout must be"),
    (["--alpha", "2"], "expected a level between 0 and 1"),
    (["--optimizer", "labeled", "--holdout", "auto"], "labeled picks demos without scoring"),
    (["--optimizer", "calibrate"], "no label step to calibrate"),
    (["--optimizer", "labeled", "--knn", "local/all-MiniLM-L6-v2"], "--knn applies to --optimizer calibrate"),
    (["--optimizer", "calibrate", "--knn", "all-MiniLM-L6-v2"], "needs a provider prefix"),
])
def test_bad_selection_options_say_what_to_write(project, capsys, args, words):
    try:
        code = main(["optimize", "app.py:build", "train.jsonl", "--field", "category", "--quiet", "--no-progress",
                     *args])
    except SystemExit as exc:  # argparse refuses the value itself
        code = exc.code
    assert code not in (0, None)
    assert words in capsys.readouterr().err


@pytest.mark.parametrize("name", ["calibrate", "random", "mipro"])
def test_knn_names_the_embedder_the_optimizer_gets(project, name):
    import argparse

    from promptless.cli.optimize import build_optimizer, register

    parser = argparse.ArgumentParser()
    register(parser.add_subparsers())
    args = parser.parse_args(["optimize", "app.py:build", "train.jsonl", "--optimizer", name,
                              "--knn", "local/all-MiniLM-L6-v2"])
    optimizer = build_optimizer(args, lambda ex, pred, trace=None: True)
    assert (optimizer.knn.provider, optimizer.knn.model) == ("local", "all-MiniLM-L6-v2")


LABEL_PROGRAM = textwrap.dedent(
    '''
    import json
    from pathlib import Path
    from typing import Literal
    import promptless as pl

    GOLD = {row["event"]: row["category"] for row in map(json.loads, Path(__file__).with_name("all.jsonl").open())}

    class Classify(pl.Signature):
        """Classify the event."""
        event: str = pl.InputField()
        category: Literal["War", "Science", "Economy", "Politics"] = pl.OutputField()

    def scores(messages, prefix, candidates):
        event = messages[-1].content.split("[[ ## event ## ]]\\n", 1)[1].split("\\n\\n", 1)[0]
        # the gold label a little above the rest, "Politics" far above everything: a prior to remove
        return [(-1.0 if c.strip() == GOLD[event] else -2.0) + (1.5 if c.strip() == "Politics" else 0.0)
                for c in candidates]

    LM = pl.ScriptedLM(["[[ ## category ## ]]\\nPolitics\\n\\n[[ ## completed ## ]]"], logprobs=scores)

    def build():
        return pl.Predict(Classify, lm=LM)
    '''
)


def test_calibrate_turns_the_label_steps_of_a_predict_program_into_classify(project, capsys):
    (project / "labels.py").write_text(LABEL_PROGRAM)
    code = main(["optimize", "labels.py:build", "train.jsonl", "--valset", "dev.jsonl", "--field", "category",
                 "--optimizer", "calibrate", "--quiet", "--no-progress", "--out", "cal.json"])
    out = capsys.readouterr()
    assert code == 0, out.err
    assert "1 label step(s) of labels.py:build score their labels (pl.Classify), and the result replaces" in out.out
    assert "against the program as given" in out.out  # the summary's reason: the check against generation
    assert "load it with pl.with_label_scoring(program).load('cal.json')" in out.out
    saved = json.loads((project / "cal.json").read_text())
    assert saved["metadata"]["load_into"] == "pl.with_label_scoring(program)"
    import importlib.util

    import promptless as pl

    spec = importlib.util.spec_from_file_location("labels_mod", project / "labels.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    loaded = pl.with_label_scoring(mod.build()).load(project / "cal.json")
    assert loaded.calibration["offsets"]["Politics"] < 0  # the prior learned away
    assert loaded(event="event 1").category == "Science"


class WordEmbedder:
    """Stands in for pl.Embedder in these tests (no model to fetch): a vector of word counts."""

    WORDS = ("event", "0", "1", "2", "3", "4", "5", "6", "7", "8", "9")
    made: list[str] = []

    def __init__(self, name):
        self.provider, self.model = name.split("/", 1)
        WordEmbedder.made.append(name)

    def __call__(self, texts):
        return [[1.0 + sum(c == w for c in t.replace(" ", "")) if w != "event" else 1.0 for w in self.WORDS]
                for t in texts]


class BrokenEmbedder(WordEmbedder):
    def __call__(self, texts):
        raise OSError("no network to fetch the weights")


def test_auto_calibrates_a_program_with_label_outputs_with_the_votes(project, capsys, monkeypatch):
    monkeypatch.setattr("promptless.embeddings.Embedder", WordEmbedder)
    (project / "labels.py").write_text(LABEL_PROGRAM)
    code = main(["optimize", "labels.py:build", "train.jsonl", "--valset", "dev.jsonl", "--field", "category",
                 "--quiet", "--no-progress", "--out", "auto.json", "--result", "auto_run.json"])
    out = capsys.readouterr()
    assert code == 0, out.err
    assert ("auto: calibrate, since the program has label outputs, with the votes of the nearest labelled "
            "examples (local/all-MiniLM-L6-v2)") in out.out
    assert json.loads((project / "auto_run.json").read_text())["optimizer"] == "Calibrate"
    saved = json.loads((project / "auto.json").read_text())
    assert saved["metadata"]["load_into"] == "pl.with_label_scoring(program)"
    assert '"embedder": "local/all-MiniLM-L6-v2"' in json.dumps(saved)


@pytest.mark.parametrize("how", ["--knn none", "no embedder"])
def test_auto_calibrates_without_the_votes_when_told_or_when_the_embedder_fails(project, capsys, monkeypatch, how):
    monkeypatch.setattr("promptless.embeddings.Embedder", BrokenEmbedder)
    (project / "labels.py").write_text(LABEL_PROGRAM)
    WordEmbedder.made.clear()
    code = main(["optimize", "labels.py:build", "train.jsonl", "--valset", "dev.jsonl", "--field", "category",
                 "--quiet", "--no-progress", "--out", "auto.json", *(how.split() if how.startswith("--") else [])])
    out = capsys.readouterr()
    assert code == 0, out.err
    assert ("auto: calibrate, since the program has label outputs, checked by cross-validation over the training "
            "and validation examples together (--optimizer mipro") in out.out
    assert ("is not available here (OSError: no network to fetch the weights); calibrating without the votes"
            in out.out) == (how == "no embedder")
    assert WordEmbedder.made == ([] if how.startswith("--") else ["local/all-MiniLM-L6-v2"])
    assert '"embedder"' not in (project / "auto.json").read_text()


def test_auto_searches_instructions_for_a_program_without_label_outputs(project, capsys):
    code = main(["optimize", "app.py:build", "train.jsonl", "--valset", "dev.jsonl", "--field", "category",
                 "--max-bootstrapped-demos", "0", "--max-labeled-demos", "0", "--auto", "none",
                 "--num-candidates", "2", "--num-trials", "2", "--quiet", "--no-progress", "--out", "auto.json",
                 "--result", "auto_run.json"])
    out = capsys.readouterr()
    assert code == 0, out.err
    assert "auto: mipro, since the program has no label output" in out.out
    assert json.loads((project / "auto_run.json").read_text())["optimizer"] == "MIPROv2"
    assert "load_into" not in json.loads((project / "auto.json").read_text())["metadata"]


def test_auto_falls_back_to_mipro_when_the_lm_gives_no_label_scores(project, capsys, monkeypatch):
    monkeypatch.setattr("promptless.embeddings.Embedder", WordEmbedder)
    # the same label program on an LM that only generates: one scoring try, then the instruction search
    (project / "labels.py").write_text(LABEL_PROGRAM.replace(", logprobs=scores)", ")"))
    WordEmbedder.made.clear()
    code = main(["optimize", "labels.py:build", "train.jsonl", "--valset", "dev.jsonl", "--field", "category",
                 "--max-bootstrapped-demos", "0", "--max-labeled-demos", "0", "--auto", "none",
                 "--num-candidates", "2", "--num-trials", "2", "--quiet", "--no-progress", "--out", "auto.json",
                 "--result", "auto_run.json", "--run-dir", "runs", "--max-calls", "12"])
    out = capsys.readouterr()
    assert code == 0, out.err
    assert "auto: calibrate" in out.out
    assert "auto: the LM gave no label scores, so there is nothing to calibrate; running mipro instead" in out.out
    record = json.loads((project / "auto_run.json").read_text())
    assert record["optimizer"] == "MIPROv2"
    assert record["calls"] == 11  # the search stopped at the budget, less the scoring try
    assert "load_into" not in json.loads((project / "auto.json").read_text())["metadata"]
    assert (project / "runs" / "calibrate").is_dir() and (project / "runs" / "mipro").is_dir()
    # the embedder was built for the calibration (tried, then given to it), not for the search
    assert WordEmbedder.made == ["local/all-MiniLM-L6-v2"] * 2


def test_auto_refuses_a_prompt_model_it_would_not_use(project, capsys):
    (project / "labels.py").write_text(LABEL_PROGRAM)
    assert main(["optimize", "labels.py:build", "train.jsonl", "--field", "category", "--prompt-model",
                 "local/qwen2.5-coder-1.5b"]) == 1
    assert "auto chose calibrate because the program has label outputs" in capsys.readouterr().err


def test_calibrate_keeps_a_program_that_generates_better_as_given(project, capsys):
    # generation gives the gold label, the label scores lean to Politics: the check keeps the program as it is
    (project / "labels.py").write_text(LABEL_PROGRAM.replace(
        'LM = pl.ScriptedLM(["[[ ## category ## ]]\\nPolitics\\n\\n[[ ## completed ## ]]"], logprobs=scores)',
        'LM = pl.ScriptedLM(lambda m: "[[ ## category ## ]]\\n" + GOLD[m[-1].content.split("[[ ## event ## ]]\\n", 1)[1]'
        '.split("\\n\\n", 1)[0]] + "\\n\\n[[ ## completed ## ]]", logprobs=scores)'))
    code = main(["optimize", "labels.py:build", "train.jsonl", "--valset", "dev.jsonl", "--field", "category",
                 "--optimizer", "calibrate", "--quiet", "--no-progress", "--out", "kept.json"])
    out = capsys.readouterr()
    assert code == 0, out.err
    assert "so the program is kept as given" in out.out
    assert "load it with program.load('kept.json')" in out.out
    assert "load_into" not in json.loads((project / "kept.json").read_text())["metadata"]


def test_probe_names_the_embedder_calibrate_gets_and_only_calibrate(project):
    import argparse

    from promptless.cli.optimize import build_optimizer, register
    from promptless.errors import ConfigurationError

    parser = argparse.ArgumentParser()
    register(parser.add_subparsers())
    args = parser.parse_args(["optimize", "app.py:build", "train.jsonl", "--optimizer", "calibrate",
                              "--probe", "local/qwen2.5-coder-1.5b"])
    optimizer = build_optimizer(args, lambda ex, pred, trace=None: True)
    assert (optimizer.probe.provider, optimizer.probe.model) == ("local", "qwen2.5-coder-1.5b")
    args = parser.parse_args(["optimize", "app.py:build", "train.jsonl", "--optimizer", "mipro",
                              "--probe", "local/qwen2.5-coder-1.5b"])
    with pytest.raises(ConfigurationError, match="--probe applies to --optimizer calibrate"):
        build_optimizer(args, lambda ex, pred, trace=None: True)


def test_the_default_probe_is_the_task_model_when_it_is_local_and_can_embed(monkeypatch, capsys):
    from types import SimpleNamespace

    from promptless.cli.optimize import default_probe

    local = SimpleNamespace(provider="local", model="tiny")
    monkeypatch.setattr("promptless.embeddings.Embedder", WordEmbedder)
    assert default_probe(local, None) == "local/tiny"
    assert default_probe(SimpleNamespace(provider="openai", model="gpt"), None) == "none"  # opt-in elsewhere
    monkeypatch.setattr("promptless.embeddings.Embedder", BrokenEmbedder)
    assert default_probe(local, None) == "none"
    assert "auto: local/tiny cannot embed here (OSError" in capsys.readouterr().out


def test_auto_adds_a_probe_on_a_local_task_model(project, capsys, monkeypatch):
    monkeypatch.setattr("promptless.embeddings.Embedder", WordEmbedder)
    (project / "labels.py").write_text(LABEL_PROGRAM + "\nLM.provider, LM.model = 'local', 'tiny'\n")
    code = main(["optimize", "labels.py:build", "train.jsonl", "--valset", "dev.jsonl", "--field", "category",
                 "--quiet", "--no-progress", "--out", "auto.json", "--result", "run.json"])
    out = capsys.readouterr()
    assert code == 0, out.err
    assert ("with the votes of the nearest labelled examples (local/all-MiniLM-L6-v2) and a probe on the "
            "embeddings of local/tiny, checked by cross-validation") in out.out
    record = json.loads((project / "run.json").read_text())
    assert record["selection"]["mode"] == "cross-validation"  # auto with a valset: holdout="cv"
    assert "40 labelled examples (training set and valset" in record["selection"]["rule"]
    saved = (project / "auto.json").read_text()
    assert json.loads(saved)["metadata"]["load_into"] == "pl.with_label_scoring(program)"
    assert '"embedder": "local/tiny"' in saved  # the probe's embedder, saved with the calibration
