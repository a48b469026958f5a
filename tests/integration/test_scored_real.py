"""pl.Classify with real models: the embedded smollm2-135m, and llama.cpp's OpenAI-compatible server."""

from __future__ import annotations

import math

import pytest

import promptless as pl
from promptless.tasks import Category, ClassifyEvent

pytestmark = pytest.mark.integration

LABELS = list(Category.__args__)  # type: ignore[attr-defined]


@pytest.fixture(scope="module")
def local_lm(smollm2_path):
    return pl.LM("local/smollm2-135m", cache=False)


def test_every_label_gets_a_finite_score_and_the_probabilities_sum_to_one(local_lm):
    clf = pl.Classify(ClassifyEvent, lm=local_lm)
    pred = clf(event="Battle of Hastings won by William the Conqueror and the Normans, 1066")
    assert pred.decided_by == "scores"
    assert pred.category in LABELS
    assert set(pred.label_logprobs) == set(LABELS)
    assert all(math.isfinite(v) and v < 0 for v in pred.label_logprobs.values())
    assert math.isclose(sum(pred.label_probs.values()), 1.0, rel_tol=1e-9)
    assert pred.confidence == pytest.approx(max(pred.label_probs.values()))
    assert all(n >= 2 for n in pred.scoring["tokens"].values())  # every token of each label (and its end)
    # a generation after scoring still works on the same context
    assert local_lm("Say hi").__len__() == 1


def test_scores_match_evaluating_the_whole_text_at_once(local_lm):
    import numpy as np
    from llama_cpp import Llama

    from promptless.lm.logprobs import chat_prompt

    adapter = pl.ChatAdapter()
    messages = adapter.format(ClassifyEvent, [], {"event": "First Rose Bowl; Michigan 49 - Stanford 0, 1902"})
    prefix = "[[ ## category ## ]]\n"
    cands = ["Sports and Entertainment\n\n", "Wars and Conflicts\n\n", "Economic Events\n\n"]
    local_lm("warm the context with another prompt")  # scoring must not depend on what the context held
    got = local_lm.score_continuations(messages, prefix, cands)
    text, add_bos = chat_prompt(local_lm.load(), messages)
    ref = Llama(model_path=str(local_lm.path), n_ctx=2048, logits_all=True, n_threads=2, verbose=False)
    try:
        prompt = ref.tokenize((text + prefix).encode(), add_bos=add_bos, special=True)
        for cand, value in zip(cands, got.logprobs, strict=True):
            seq = ref.tokenize((text + prefix + cand).encode(), add_bos=add_bos, special=True)
            ref.reset()
            ref.eval(seq)
            total = 0.0
            for i in range(len(prompt), len(seq)):
                row = np.asarray(ref.scores[i - 1], dtype=np.float64)
                total += row[seq[i]] - row.max() - math.log(np.exp(row - row.max()).sum())
            assert value == pytest.approx(total, abs=1e-3)
    finally:
        ref.close()


def test_calibration_round_trips_with_the_real_model(local_lm, tmp_path):
    from promptless.tasks import category_match, load_events

    train = load_events("train")[:6]
    better = pl.Calibrate(category_match, method="content_free", progress=False).compile(
        pl.Classify(ClassifyEvent, lm=local_lm), trainset=train)
    assert better.optimization.calls == 3
    assert set(better.offsets) == set(LABELS)
    path = better.save(tmp_path / "calibrated.json")
    fresh = pl.Classify(ClassifyEvent, lm=local_lm).load(path)
    event = train[0].event
    assert fresh(event=event).label_probs == pytest.approx(better(event=event).label_probs)


def test_nearest_neighbour_votes_with_the_real_model_and_embedder(local_lm, tmp_path):
    """Calibrate(knn=...) end to end: real label scores, real all-MiniLM-L6-v2 vectors; the saved program, loaded
    with no embedder attached, builds it from its name and predicts the same."""
    pytest.importorskip("numpy", reason="pip install 'promptless[embeddings]'")
    from promptless import minilm
    from promptless.tasks import category_match, load_events

    minilm.model_dir(fetch=True)
    train, val = load_events("train")[:16], load_events("train")[16:28]
    embedder = pl.Embedder("local/all-MiniLM-L6-v2")
    better = pl.Calibrate(category_match, knn=embedder, holdout=None, progress=False).compile(
        pl.Classify(ClassifyEvent, lm=local_lm), trainset=train, valset=val)
    assert better.optimization.calls == 16  # holdout=None: the valset is not scored
    knn = better.calibration["knn"]
    assert knn["embedder"] == "local/all-MiniLM-L6-v2" and len(knn["examples"]) == 16
    assert math.isfinite(knn["weight"])
    path = better.save(tmp_path / "voted.json")
    fresh = pl.Classify(ClassifyEvent, lm=local_lm).load(path)
    assert fresh.knn_embedder is None
    for ex in val[:4]:
        got, want = fresh(event=ex.event), better(event=ex.event)
        assert got.category == want.category
        assert got.label_probs == pytest.approx(want.label_probs)
        assert got.scoring["neighbour_votes"] == pytest.approx(want.scoring["neighbour_votes"])
    assert fresh.knn_embedder is not None  # built from the saved name on the first call


def test_a_probe_on_the_real_models_own_hidden_states(local_lm, tmp_path):
    """pl.Embedder('local/<model>') embeds with llama.cpp's embedding mode (the same GGUF file as the LM), and
    Calibrate(probe=...) fits a regression on those vectors beside the real label scores; the saved program,
    loaded with no embedder attached, builds it from its name and predicts the same."""
    pytest.importorskip("numpy", reason="pip install 'promptless[embeddings]'")
    from promptless.tasks import category_match, load_events

    embedder = pl.Embedder("local/smollm2-135m")
    train, val = load_events("train")[:16], load_events("train")[16:28]
    first = embedder([train[0].event, train[1].event])
    assert len(first) == 2 and len(first[0]) == 576 and first[0] != first[1]  # SmolLM2-135M: 576 dimensions
    again = pl.Embedder("local/smollm2-135m")([train[1].event, train[0].event])
    assert again[1] == pytest.approx(first[0], abs=1e-5)  # a text's vector does not depend on its batch
    better = pl.Calibrate(category_match, probe=embedder, holdout=None, progress=False).compile(
        pl.Classify(ClassifyEvent, lm=local_lm), trainset=train, valset=val)
    assert better.optimization.calls == 16  # holdout=None: the valset is not scored; embedding is not an LM call
    probe = better.calibration["probe"]
    assert probe["embedder"] == "local/smollm2-135m" and len(probe["mean"]) == 576
    assert math.isfinite(probe["weight"]) and probe["weight"] >= 0
    path = better.save(tmp_path / "probed.json")
    fresh = pl.Classify(ClassifyEvent, lm=local_lm).load(path)
    assert fresh.probe_embedder is None
    for ex in val[:3]:
        got, want = fresh(event=ex.event), better(event=ex.event)
        assert got.category == want.category
        assert got.label_probs == pytest.approx(want.label_probs, abs=1e-6)
        assert got.scoring["probe"] == pytest.approx(want.scoring["probe"], abs=1e-4)
    assert fresh.probe_embedder is not None  # built from the saved name on the first call


def test_openai_compatible_server_scores_or_says_it_generated(llama_server, llama_server_model):
    lm = pl.LM(f"openai/{llama_server_model}", base_url=llama_server, cache=False)
    pred = pl.Classify(ClassifyEvent, lm=lm)(event="Battle of Hastings won by William the Conqueror, 1066")
    assert pred.category in LABELS
    assert pred.decided_by in ("first-token", "generation")
    if pred.decided_by == "first-token":
        assert math.isclose(sum(pred.label_probs.values()), 1.0, rel_tol=1e-9)


def test_optimize_auto_calibrates_a_predict_program_with_the_real_model(smollm2_path, tmp_path, monkeypatch, capsys):
    """``promptless optimize`` with no --optimizer on a user's Predict program with a label output: converted
    to label scoring, calibrated with the votes of the real all-MiniLM-L6-v2 and a probe on the task model's own
    embeddings, saved, and loaded back."""
    pytest.importorskip("numpy", reason="pip install 'promptless[embeddings]'")
    import json

    from promptless import minilm
    from promptless.cli import main
    from promptless.datasets import PERIODS
    from promptless.tasks import load_periods

    minilm.model_dir(fetch=True)
    (tmp_path / "app.py").write_text(
        "import promptless as pl\nfrom promptless.tasks import DateEvent\n\n"
        "def build():\n    return pl.Predict(DateEvent)\n")
    rows = [{"event": ex.event, "period": ex.period} for ex in load_periods("train")[:28]]
    (tmp_path / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows[:16]))
    (tmp_path / "val.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows[16:]))
    monkeypatch.chdir(tmp_path)
    code = main(["optimize", "app.py:build", "train.jsonl", "--valset", "val.jsonl", "--field", "period",
                 "--model", "local/smollm2-135m", "--no-cache", "--quiet", "--no-progress", "--out", "auto.json",
                 "--result", "run.json"])
    out = capsys.readouterr().out
    assert code == 0
    assert "auto: calibrate, since the program has label outputs, with the votes of the nearest labelled " \
           "examples (local/all-MiniLM-L6-v2) and a probe on the embeddings of local/smollm2-135m" in out
    record = json.loads((tmp_path / "run.json").read_text())
    # 16 scored to fit and 12 for the check; the program as given generates on the examples it is compared on
    # (the 12, and the 16 where the label-scoring program's scores there were not fitted on them), and any reply
    # that did not parse is asked again
    against = record["selection"]["against_given"]
    n = against["evidence"]["n"]
    assert against["decision"] in ("accepted", "rejected") and n in (12, 28)
    assert record["optimizer"] == "Calibrate" and 28 + n <= record["calls"] <= 28 + 2 * n
    saved = json.loads((tmp_path / "auto.json").read_text())
    converted = against["decision"] == "accepted"
    assert (saved["metadata"].get("load_into") == "pl.with_label_scoring(program)") == converted

    import importlib.util

    spec = importlib.util.spec_from_file_location("auto_app", tmp_path / "app.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    loaded = (pl.with_label_scoring(mod.build()) if converted else mod.build()).load(tmp_path / "auto.json")
    with pl.context(lm=pl.LM("local/smollm2-135m", cache=False)):
        got = loaded(event=rows[0]["event"])
    assert got.period in PERIODS
    if converted:
        assert sum(got.label_probs.values()) == pytest.approx(1.0)
