"""pl.Calibrate(knn=...): the nearest labelled examples' votes fitted beside the label scores. Scripted LM and a
function embedder only."""

from __future__ import annotations

import json
import math
import random
from typing import Literal

import pytest

import promptless as pl
from promptless.errors import ConfigurationError, PersistError
from promptless.modules.neighbours import embedder_spec, knn_text, label_votes, unit
from promptless.modules.scored import Classify
from promptless.optimize.calibrate import Calibrate, fit_calibration, fit_offsets

TOPICS = {"a": "apple", "b": "bread", "c": "cheese"}


class Food(pl.Signature):
    """Name the food the text is about."""

    text: str = pl.InputField()
    label: Literal["a", "b", "c"] = pl.OutputField()


def blurred_scores(messages, prefix, candidates):
    """The model knows apples, but cannot tell bread from cheese: both get the same score, "b" a little more."""
    text = messages[-1].content.split("[[ ## text ## ]]\n", 1)[1].split("\n\n", 1)[0]
    noise = random.Random(text).uniform(-0.1, 0.1)
    if "apple" in text:
        return {"a": -0.1, "b": -3.0, "c": -3.0}
    return {"a": -3.0, "b": -0.5 + noise, "c": -0.6}


def topic_embedder(texts):
    """Embeddings that place texts by their topic word (a stand-in for a sentence embedder)."""
    return [[1.0 if word in t else 0.0 for word in TOPICS.values()] + [0.2] for t in texts]


def noise_embedder(texts):
    """Embeddings that know nothing about the label."""
    return [[random.Random(f"{t}/{i}").gauss(0, 1) for i in range(8)] for t in texts]


def dataset(n: int, seed: int) -> list[pl.Example]:
    rng = random.Random(seed)
    out = []
    for i in range(n):
        g = rng.choice("abc")
        out.append(pl.Example(text=f"{TOPICS[g]} number {seed}-{i}", label=g).with_inputs("text"))
    return out


def accuracy(program, examples) -> float:
    return sum(program(text=e.text).label == e.label for e in examples) / len(examples)


def match(example, pred, trace=None) -> bool:
    return example.label == pred.label


@pytest.fixture
def lm():
    return pl.ScriptedLM(logprobs=blurred_scores)


def test_label_votes_leave_the_example_itself_out_and_keep_a_floor():
    pool = [unit(v) for v in ([1, 0], [1, 0.1], [0, 1])]
    votes = label_votes(pool[0], pool, [0, 1, 2], 3, k=2, temperature=0.1, floor=0.02, exclude=0)
    # without itself, its nearest are the second (label 1, very close) and the third (label 2, far)
    assert votes[1] > votes[2] > votes[0] == pytest.approx(math.log(0.02))
    assert sum(math.exp(v) - 0.02 for v in votes) == pytest.approx(1.0)
    with_itself = label_votes(pool[0], pool, [0, 1, 2], 3, k=2, temperature=0.1, floor=0.02)
    assert with_itself[0] > votes[0]
    assert label_votes(pool[0], [], [], 3) == [math.log(1 / 3 + 0.02)] * 3  # no pool: no preference


def test_the_fit_recovers_a_planted_vote_weight_and_is_unchanged_without_votes():
    rng = random.Random(1)
    rows, votes, gold = [], [], []
    for _ in range(400):
        r = [rng.gauss(0, 1) for _ in range(3)]
        v = [rng.gauss(0, 1) for _ in range(3)]
        z = [x + 2.0 * w for x, w in zip(r, v, strict=True)]
        p = [math.exp(x) for x in z]
        u, acc = rng.random() * sum(p), 0.0
        g = next(i for i, x in enumerate(p) if (acc := acc + x) >= u)
        rows.append(r)
        votes.append(v)
        gold.append(g)
    b, a, (c,) = fit_calibration(rows, gold, lam=1e-4, fit_scale=True, votes=votes)
    assert c == pytest.approx(2.0, abs=0.4) and a == pytest.approx(1.0, abs=0.3)
    assert max(abs(x) for x in b) < 0.3
    unrelated = [[rng.gauss(0, 1) for _ in range(3)] for _ in rows]
    assert abs(fit_calibration(rows, gold, lam=0.01, fit_scale=True, votes=unrelated)[2][0]) < 0.3
    b0, a0, c0 = fit_calibration(rows, gold, lam=0.01, fit_scale=True)
    assert (b0, a0) == fit_offsets(rows, gold, lam=0.01, fit_scale=True) and c0 == []


def test_votes_fix_what_the_label_scores_cannot_tell_apart(lm):
    train, val, test = dataset(45, 1), dataset(45, 2), dataset(60, 3)
    plain = Calibrate(match).compile(Classify(Food, lm=lm), trainset=train, valset=val)
    assert accuracy(plain, test) < 0.8  # offsets alone cannot split bread from cheese
    voted = Calibrate(match, knn=topic_embedder).compile(Classify(Food, lm=lm), trainset=train, valset=val)
    assert accuracy(voted, test) == 1.0
    cal = voted.calibration
    assert cal["knn"]["weight"] > 0.5 and cal["knn"]["embedder"].endswith("topic_embedder")
    # checked on the valset with the training examples voting, then refitted with all 90 voting
    sel = voted.optimization.selection
    assert sel["decision"] == "accepted" and sel["evidence"]["n"] == 45
    assert len(cal["knn"]["examples"]) == 90 and cal["refit"]["examples"] == 90
    assert "votes of the 10 nearest of 90 labelled examples" in voted.optimization.summary()
    assert {"text": train[0].text, "label": train[0].label} in cal["knn"]["examples"]  # one input: its value
    pred = voted(text="cheese number 7")
    assert pred.label == "c" and pred.scoring["neighbour_votes"]["c"] > pred.scoring["neighbour_votes"]["b"]


def test_votes_that_know_nothing_get_little_weight_and_change_little(lm):
    train, val, test = dataset(60, 4), dataset(60, 5), dataset(60, 6)
    plain = Calibrate(match, refit=False).compile(Classify(Food, lm=lm), trainset=train, valset=val)
    noisy = Calibrate(match, knn=noise_embedder, refit=False).compile(Classify(Food, lm=lm), trainset=train,
                                                                       valset=val)
    decision = noisy.optimization.candidates["calibration"]["self"]
    if decision.get("candidate"):  # a fit was tried on the valset: the votes were given little weight
        assert abs(decision["candidate"]["knn"]["weight"]) < 0.5
    assert accuracy(noisy, test) >= accuracy(plain, test) - 0.1


def test_saved_with_the_program_and_the_embedder_attached_again(lm, tmp_path):
    train, val, test = dataset(30, 7), dataset(30, 8), dataset(20, 9)
    voted = Calibrate(match, knn=topic_embedder).compile(Classify(Food, lm=lm), trainset=train, valset=val)
    path = voted.save(tmp_path / "food.json")
    saved = json.loads(path.read_text())
    [state] = saved["predictors"].values()
    assert len(state["extra"]["calibration"]["knn"]["examples"]) == 60
    fresh = Classify(Food, lm=lm).load(path)
    with pytest.raises(ConfigurationError, match="knn_embedder = "):
        fresh(text="bread number 1")  # a function of the user's own cannot be built from its name
    fresh.knn_embedder = topic_embedder
    assert [fresh(text=e.text).label for e in test] == [voted(text=e.text).label for e in test]
    copy = fresh.deepcopy()
    assert copy.knn_embedder is topic_embedder and copy(text="cheese number 2").label == "c"


def test_a_saved_vote_with_a_label_the_classifier_lacks_is_refused(lm, tmp_path):
    voted = Calibrate(match, knn=topic_embedder).compile(Classify(Food, lm=lm), trainset=dataset(30, 10),
                                                         valset=dataset(30, 11))
    path = voted.save(tmp_path / "food.json")
    data = json.loads(path.read_text())
    [state] = data["predictors"].values()
    state["extra"]["calibration"]["knn"]["examples"][0]["label"] = "z"
    path.write_text(json.dumps(data))
    with pytest.raises(PersistError, match="knn example"):
        Classify(Food, lm=lm).load(path)


def test_knn_options_are_checked():
    with pytest.raises(ConfigurationError, match="Calibrate: knn must be an embedder"):
        Calibrate(match, knn=["local/all-MiniLM-L6-v2"])
    named = Calibrate(match, knn="local/all-MiniLM-L6-v2").knn  # a name is made a pl.Embedder (loaded when used)
    assert (named.provider, named.model) == ("local", "all-MiniLM-L6-v2")
    with pytest.raises(ConfigurationError, match="knn_k"):
        Calibrate(match, knn=topic_embedder, knn_k=0)
    with pytest.raises(ConfigurationError, match="method='fit'"):
        Calibrate(match, knn=topic_embedder, method="both")


def test_an_embedder_is_saved_under_a_name_it_can_be_built_again_from():
    assert embedder_spec(pl.Embedder("local/all-MiniLM-L6-v2")) == "local/all-MiniLM-L6-v2"
    assert embedder_spec(topic_embedder).endswith("test_calibrate_knn.topic_embedder")


def test_the_text_embedded_is_the_value_of_a_single_input_and_named_lines_for_several():
    assert knn_text(["text"], {"text": "bread number 1"}) == "bread number 1"
    assert knn_text(["title", "body"], {"body": "b", "title": "t"}) == "title: t\nbody: b"


def test_a_saved_pool_votes_as_the_fit_did():
    from promptless.modules.neighbours import VotePool

    examples = [{"text": f"{TOPICS[g]} {i}", "label": g} for i, g in enumerate("abcabcaab")]
    pool = VotePool({"weight": 1.0, "k": 3, "embedder": "x", "examples": examples}, ["a", "b", "c"], noise_embedder)
    vectors = [unit(v) for v in noise_embedder([e["text"] for e in examples])]
    query = unit(noise_embedder(["bread 99"])[0])
    expected = label_votes(query, vectors, ["abc".index(e["label"]) for e in examples], 3, k=3)
    assert pool.votes("bread 99") == pytest.approx(expected)


def test_an_embedder_that_fails_stops_the_run_before_any_lm_call(lm):
    def broken(texts):
        raise RuntimeError("no weights here")

    with pytest.raises(ConfigurationError, match=r"failed on a test text before anything was scored.*no weights"):
        Calibrate(match, knn=broken).compile(Classify(Food, lm=lm), trainset=dataset(20, 12), valset=dataset(20, 13))
    assert lm.score_requests == []


def test_similarities_are_the_same_with_and_without_numpy(monkeypatch):
    import sys

    from promptless.modules.neighbours import similarities

    queries = [unit(v) for v in noise_embedder(["a", "b"])]
    pool = [unit(v) for v in noise_embedder(["c", "d", "e"])]
    with_numpy = similarities(queries, pool)
    monkeypatch.setitem(sys.modules, "numpy", None)  # import numpy now raises ImportError
    without = similarities(queries, pool)
    assert [x for row in without for x in row] == pytest.approx([x for row in with_numpy for x in row])
    assert similarities(queries, []) == [[], []]
