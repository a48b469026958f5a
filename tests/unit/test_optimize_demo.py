"""The demo's second half (``promptless demo --optimize``) with a scripted LM in place of the local model."""

from __future__ import annotations

import argparse
import io
import json
import re

from rich.console import Console

import promptless as pl
from promptless.cli.demo import DemoRun, evaluate_stage, optimize_stage
from promptless.tasks import load_events, make_classifier


def _scripted() -> pl.ScriptedLM:
    gold = {ex.event: ex.category for split in ("train", "dev") for ex in load_events(split)}

    def scores(messages, prefix, candidates):
        # a planted label prior: "Politics and Governance" outscores the gold label on every event
        event = re.search(r"\[\[ ## event ## \]\]\n(.*?)\n\n", messages[-1].content, re.S).group(1)
        labels = [c.strip() for c in candidates]  # each candidate ends with the line break after the value
        return [-0.5 if c == "Politics and Governance" else -1.0 if c == gold[event] else -4.0 for c in labels]

    def reply(messages):
        if "proposed_instruction" in messages[0].content:
            return ("[[ ## proposed_instruction ## ]]\nSure! Here's a new instruction:\n"
                    "\"Use the CLUE words of the event to choose its category.\"\n\n[[ ## completed ## ]]")
        instructions = messages[0].content.split("Task:")[-1]
        event = re.search(r"\[\[ ## event ## \]\]\n(.*?)\n\n", messages[-1].content, re.S).group(1)
        label = gold[event] if "CLUE" in instructions else "Politics and Governance"
        return f"[[ ## category ## ]]\n{label}\n\n[[ ## confidence ## ]]\n0.8\n\n[[ ## completed ## ]]"

    return pl.ScriptedLM(reply, logprobs=scores)


def test_demo_optimizes_saves_and_reloads(tmp_path, capsys):
    lm = _scripted()
    args = argparse.Namespace(model="scripted", split="dev", limit=20, threads=1, out=str(tmp_path), show=0,
                              no_progress=True, no_cache=False, optimize=True, prompt_model=None, train_size=60,
                              max_calls=None, run_dir=None, optimizer="mipro")
    buf = io.StringIO()
    run = DemoRun(args=args, console=Console(file=buf, width=200), model="scripted", lm=lm,
                  program=make_classifier(lm=lm), devset=load_events("dev", 20), out_dir=tmp_path)
    evaluate_stage(run)
    assert optimize_stage(run) == 0
    text = buf.getvalue()
    assert run.optimized.signature.instructions == "Use the CLUE words of the event to choose its category."
    assert run.optimized_result.score == 100.0 > run.result.score
    assert "reloaded into a fresh classifier: 10/10 predictions identical" in text
    saved = json.loads((tmp_path / "classifier_optimized.json").read_text())
    assert saved["metadata"]["optimizer"] == "MIPROv2"
    assert (tmp_path / "optimization_report.html").exists()
    assert (tmp_path / "scripted_dev_optimized.json").exists()
    # the optimizer never saw the dev split, and instruction-only means no demos and no bootstrapping
    dev_events = {ex.event for ex in load_events("dev")}
    search = run.optimized.optimization
    assert all(len(r.messages) == 2 for r in lm.requests)
    assert search.valset_size == 90
    assert not any(row["inputs"]["event"] in dev_events for row in search.per_example)
    assert "trial 0 (baseline)" in capsys.readouterr().err


def test_the_demo_command_calibrates_by_default(tmp_path, monkeypatch, capsys):
    from promptless.cli import main

    lm = _scripted()
    monkeypatch.setattr(pl, "LM", lambda model, **options: lm)
    out = tmp_path / "demo"
    code = main(["demo", "--model", "openai/scripted", "--limit", "12", "--out", str(out), "--no-progress",
                 "--show", "0"])
    assert code == 0
    text = capsys.readouterr().out
    assert "Optimizing" in text and "pl.Calibrate" in text and "10/10 predictions identical" in text
    # the planted prior is removed: Politics is lowered the most, and every dev event then gets its gold label
    assert re.search(r"offsets, most lowered: Politics and Governance -", text)
    assert "accepted" in text  # the held-out check on the 90 validation examples, reported
    assert re.search(r"Accuracy on dev: [\d.]+% -> 100\.0%", text)
    saved = json.loads((out / "classifier_optimized.json").read_text())
    assert saved["metadata"]["optimizer"] == "Calibrate"
    [state] = saved["predictors"].values()
    assert state["extra"]["calibration"]["offsets"]["Politics and Governance"] < 0
    # the optimizer never saw the dev split: 60 training + 90 validation events scored, one call each
    dev_events = {ex.event for ex in load_events("dev")}
    scored = [re.search(r"\[\[ ## event ## \]\]\n(.*?)\n\n", m[-1].content, re.S).group(1)
              for m, _, _ in lm.score_requests]
    assert len(scored) == 150 + 12 + 10  # train and val, then the dev evaluation, then the reload check
    assert not set(scored[:150]) & dev_events
    assert (out / "scripted_dev_optimized.json").exists() and (out / "optimization_report.html").exists()


def test_the_demo_command_runs_mipro_when_asked(tmp_path, monkeypatch, capsys):
    from promptless.cli import main

    lm = _scripted()
    monkeypatch.setattr(pl, "LM", lambda model, **options: lm)
    out = tmp_path / "demo"
    code = main(["demo", "--model", "openai/scripted", "--limit", "12", "--out", str(out), "--no-progress",
                 "--show", "0", "--optimizer", "mipro"])
    assert code == 0
    text = capsys.readouterr().out
    assert "Optimizing" in text and "MIPROv2" in text and "10/10 predictions identical" in text
    assert re.search(r"Accuracy on dev: [\d.]+% -> 100\.0%", text)
    assert not lm.score_requests  # generation only
    assert json.loads((out / "classifier_optimized.json").read_text())["metadata"]["optimizer"] == "MIPROv2"


def test_a_prompt_model_without_mipro_is_refused_before_the_long_work(tmp_path, capsys):
    from promptless.cli import main

    assert main(["demo", "--model", "local/smollm2-135m", "--prompt-model", "local/smollm2-135m",
                 "--out", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert "--prompt-model is for --optimizer mipro" in err
    assert not any(tmp_path.iterdir())


def test_optimizing_on_the_split_it_evaluates_is_flagged(tmp_path, monkeypatch, capsys):
    from promptless.cli import main

    lm = _scripted()
    monkeypatch.setattr(pl, "LM", lambda model, **options: lm)
    code = main(["demo", "--model", "openai/scripted", "--split", "train", "--limit", "4", "--out",
                 str(tmp_path), "--no-progress", "--show", "0", "--max-calls", "20", "--optimizer", "mipro"])
    assert code == 0
    assert "score after optimization is optimistic" in capsys.readouterr().out


class _TopicEmbedder:
    """Stands in for all-MiniLM-L6-v2: events that share a gold label get the same direction."""

    provider, model = "local", "all-MiniLM-L6-v2"

    def __init__(self, name, **options):
        from promptless.datasets import CATEGORIES

        self.gold = {ex.event: ex.category for split in ("train", "dev") for ex in load_events(split)}
        self.labels = list(CATEGORIES)

    def __call__(self, texts):
        return [[1.0 if self.gold.get(t) == label else 0.0 for label in self.labels] + [0.3] for t in texts]


def test_the_demo_calibrates_with_votes_when_asked(tmp_path, monkeypatch, capsys):
    import promptless.embeddings
    from promptless.cli import main

    lm = _scripted()
    monkeypatch.setattr(pl, "LM", lambda model, **options: lm)
    monkeypatch.setattr(promptless.embeddings, "Embedder", _TopicEmbedder)
    out = tmp_path / "demo"
    code = main(["demo", "--model", "openai/scripted", "--limit", "12", "--out", str(out), "--no-progress",
                 "--show", "0", "--knn"])
    assert code == 0
    text = capsys.readouterr().out
    assert "The nearest labelled examples vote too" in text and "Votes of the 10 nearest of 150" in text
    assert "10/10 predictions identical" in text  # reloaded: the embedder built again from its saved name
    saved = json.loads((out / "classifier_optimized.json").read_text())
    assert saved["metadata"]["knn"] == "local/all-MiniLM-L6-v2"
    [state] = saved["predictors"].values()
    assert len(state["extra"]["calibration"]["knn"]["examples"]) == 150


def test_knn_without_calibrate_is_refused_before_the_long_work(tmp_path, capsys):
    from promptless.cli import main

    assert main(["demo", "--model", "local/smollm2-135m", "--optimizer", "mipro", "--knn",
                 "--out", str(tmp_path)]) == 1
    assert "--knn is for --optimizer calibrate" in capsys.readouterr().err
    assert not any(tmp_path.iterdir())


def test_an_lm_that_cannot_score_labels_stops_the_calibration_after_one_call(tmp_path, monkeypatch, capsys):
    from promptless.cli import main

    lm = pl.ScriptedLM(lambda messages: "[[ ## category ## ]]\nPolitics and Governance\n\n"
                                        "[[ ## confidence ## ]]\n0.8\n\n[[ ## completed ## ]]")
    monkeypatch.setattr(pl, "LM", lambda model, **options: lm)
    code = main(["demo", "--model", "openai/scripted", "--limit", "4", "--out", str(tmp_path), "--no-progress",
                 "--show", "0"])
    assert code == 1
    err = capsys.readouterr().err
    assert "gave no label scores" in err and "--optimizer mipro" in err
    assert len(lm.requests) == 4 + 1  # the first evaluation, then one training example, and no more
