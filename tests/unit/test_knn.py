from __future__ import annotations

import threading

import pytest

import promptless as pl
from promptless.optimize.knn import KNNFewShot, KNNProgram

WORDS = ["battle", "war", "election", "vote", "moon", "rocket", "storm", "flood"]


def vectors(texts):
    return [[float(t.lower().count(w)) for w in WORDS] for t in texts]


TRAIN = [
    pl.Example(event="A great battle in the war", category="war").with_inputs("event"),
    pl.Example(event="The election and the vote", category="politics").with_inputs("event"),
    pl.Example(event="A rocket to the moon", category="science").with_inputs("event"),
    pl.Example(event="A storm and a flood", category="disaster").with_inputs("event"),
    pl.Example(event="Another war, another battle", category="war").with_inputs("event"),
]


def test_each_call_gets_its_nearest_training_examples_as_demos():
    lm = pl.ScriptedLM(["[[ ## category ## ]]\nwar"])
    student = pl.Predict("event -> category", lm=lm)
    program = KNNFewShot(k=2, trainset=TRAIN, vectorizer=pl.Embedder(vectors)).compile(student)
    assert isinstance(program, KNNProgram)
    assert program(event="battle of the war").category == "war"
    prompt = "\n".join(m.content for m in lm.requests[0].messages)
    assert "A great battle in the war" in prompt and "Another war, another battle" in prompt
    assert "moon" not in prompt and "election" not in prompt
    program(event="a rocket and the moon")
    prompt = "\n".join(m.content for m in lm.requests[1].messages)
    assert "A rocket to the moon" in prompt
    assert student.demos == []  # the student is never changed
    assert [n for n, _ in program.named_predictors()] == ["program"]


def test_calls_in_parallel_keep_their_own_demos():
    def fn(messages):
        demo_events = [m.content for m in messages if m.role == "user"][:-1]
        return "[[ ## category ## ]]\n" + ("war" if any("battle" in d for d in demo_events) else "other")

    program = KNNFewShot(k=1, trainset=TRAIN, vectorizer=vectors).compile(
        pl.Predict("event -> category", lm=pl.ScriptedLM(fn)))
    out = {}

    def run(name, event):
        out[name] = program(event=event).category

    threads = [threading.Thread(target=run, args=(f"t{i}", e)) for i, e in
               enumerate(["battle", "moon rocket"] * 4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert [out[f"t{i}"] for i in range(8)] == ["war", "other"] * 4


def test_scored_on_a_valset_like_other_optimizers():
    lm = pl.ScriptedLM(["[[ ## category ## ]]\nwar"])
    knn = KNNFewShot(k=1, trainset=TRAIN, vectorizer=vectors, metric=lambda ex, pred, trace=None:
                     ex.category == pred.category)
    program = knn.compile(pl.Predict("event -> category", lm=lm), valset=TRAIN[:2])
    assert program.optimization is not None


def test_configuration_errors():
    with pytest.raises(pl.ConfigurationError, match="k must be"):
        KNNFewShot(k=0, trainset=TRAIN, vectorizer=vectors)
    with pytest.raises(pl.ConfigurationError, match="vectorizer"):
        KNNFewShot(k=1, trainset=TRAIN, vectorizer=None)
    unmarked = [pl.Example(event="x", category="y"), pl.Example(event="z", category="w")]
    with pytest.raises(pl.ConfigurationError, match="no inputs marked"):
        KNNFewShot(k=1, trainset=unmarked, vectorizer=vectors).compile(pl.Predict("event -> category"))
