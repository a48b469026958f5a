"""pl.Calibrate(probe=...): a logistic regression on the inputs' embeddings fitted beside the label scores.
Scripted LM and function embedders only (the real GGUF embedder is in the integration tests)."""

from __future__ import annotations

import json
import math
import random

import pytest

np = pytest.importorskip("numpy")

from test_calibrate_knn import (  # noqa: E402  (the same food classifier, scripted LM and data)
    TOPICS,
    Food,
    accuracy,
    blurred_scores,
    dataset,
    match,
    noise_embedder,
)

import promptless as pl  # noqa: E402
from promptless.errors import ConfigurationError, PersistError  # noqa: E402
from promptless.modules.probe import (  # noqa: E402
    PROBE_CS,
    PROBE_FLOOR,
    check_probe_state,
    choose_c,
    fit_probe,
    held_out_probe,
    probe_logprobs,
)
from promptless.modules.scored import Classify  # noqa: E402
from promptless.optimize.calibrate import Calibrate  # noqa: E402


def hidden_state_embedder(texts):
    """Embeddings where the topic is a weak direction among many noisy ones: a linear probe finds it, the
    nearest neighbours by cosine mostly do not."""
    out = []
    for t in texts:
        rng = random.Random(f"h/{t}")
        signal = [0.8 if word in t else 0.0 for word in TOPICS.values()]
        out.append([s + rng.gauss(0, 0.3) for s in signal] + [rng.gauss(0, 1) for _ in range(29)])
    return out


@pytest.fixture
def lm():
    return pl.ScriptedLM(logprobs=blurred_scores)


def planted(n: int, seed: int, dims: int = 6, labels: int = 3):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, labels, n)
    x = rng.normal(0, 1, (n, dims))
    x[np.arange(n), y] += 2.5  # label j raises dimension j
    return x.tolist(), y.tolist()


def test_the_regression_reaches_its_optimum():
    x, y = planted(80, 1)
    c = 1.0
    state = fit_probe(x, y, 3, c=c)
    # the gradient of mean cross-entropy + ||W||^2 / (2 C n) is zero at the returned weights
    xs = (np.asarray(x) - state["mean"]) / state["spread"]
    z = xs @ state["coef"] + state["intercept"]
    p = np.exp(z - z.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    onehot = np.eye(3)[y]
    grad_w = xs.T @ (p - onehot) / len(y) + state["coef"] / (c * len(y))
    grad_b = (p - onehot).sum(0) / len(y)
    assert np.abs(grad_w).max() < 1e-5 and np.abs(grad_b).max() < 1e-5
    test_x, test_y = planted(200, 2)
    logp = np.array(probe_logprobs(state, test_x))
    assert np.mean(logp.argmax(1) == np.array(test_y)) > 0.85
    assert np.allclose(np.exp(logp).sum(1), 1.0) and logp.min() >= PROBE_FLOOR - math.log(1.01)


def test_a_stronger_penalty_gives_flatter_probabilities():
    x, y = planted(60, 3)
    strong = np.array(probe_logprobs(fit_probe(x, y, 3, c=0.01), x))
    weak = np.array(probe_logprobs(fit_probe(x, y, 3, c=10.0), x))
    assert strong.max(1).mean() < weak.max(1).mean()


def test_each_example_is_predicted_by_a_probe_not_fitted_on_it():
    rng = np.random.default_rng(4)
    x = rng.normal(0, 1, (60, 40)).tolist()  # labels unrelated to the vectors: nothing to learn
    y = rng.integers(0, 3, 60).tolist()
    own = np.array(probe_logprobs(fit_probe(x, y, 3, c=100.0), x))
    held = np.array(held_out_probe(x, y, 3, c=100.0))
    assert np.mean(own.argmax(1) == np.array(y)) > 0.95  # 40 dimensions memorise 60 examples
    assert np.mean(held.argmax(1) == np.array(y)) < 0.6  # held out, it is near chance
    c, rows = choose_c(x, y, 3)
    assert c == min(PROBE_CS)  # nothing to learn: the strongest penalty gives the best held-out likelihood
    assert len(rows) == 60


def test_the_probe_fixes_what_the_label_scores_and_the_neighbours_cannot(lm):
    train, val, test = dataset(60, 1), dataset(60, 2), dataset(90, 3)
    plain = Calibrate(match).compile(Classify(Food, lm=lm), trainset=train, valset=val)
    voted = Calibrate(match, knn=hidden_state_embedder).compile(Classify(Food, lm=lm), trainset=train, valset=val)
    probed = Calibrate(match, probe=hidden_state_embedder).compile(Classify(Food, lm=lm), trainset=train,
                                                                   valset=val)
    assert accuracy(plain, test) < 0.8 and accuracy(voted, test) < 0.85
    assert accuracy(probed, test) >= 0.95
    cal = probed.calibration
    assert cal["probe"]["weight"] > 0.5 and cal["probe"]["embedder"].endswith("hidden_state_embedder")
    assert len(cal["probe"]["mean"]) == 32 and len(cal["probe"]["coef"]) == 32
    assert cal["refit"]["examples"] == 120 and "probe_weight" in cal["refit"]["checked"]
    assert probed.optimization.selection["decision"] == "accepted"
    assert "a probe on" in probed.optimization.summary()
    pred = probed(text="cheese number 7")
    assert pred.label == "c" and pred.scoring["probe"]["c"] > pred.scoring["probe"]["b"]


def test_a_probe_that_knows_nothing_gets_little_weight(lm):
    train, val, test = dataset(60, 4), dataset(60, 5), dataset(60, 6)
    plain = Calibrate(match, refit=False).compile(Classify(Food, lm=lm), trainset=train, valset=val)
    noisy = Calibrate(match, probe=noise_embedder, refit=False).compile(Classify(Food, lm=lm), trainset=train,
                                                                         valset=val)
    decision = noisy.optimization.candidates["calibration"]["self"]
    if decision.get("candidate"):  # a fit was tried: what the probe adds moves the label scores little
        cand = Classify(Food, lm=lm)
        cand.calibration = decision["candidate"]
        cand.probe_embedder = noise_embedder
        weight = decision["candidate"]["probe"]["weight"]
        spans = [weight * (max(p.values()) - min(p.values()))
                 for p in (cand(text=e.text).scoring["probe"] for e in test)]
        assert sum(abs(s) for s in spans) / len(spans) < 0.5
    assert accuracy(noisy, test) >= accuracy(plain, test) - 0.1


def test_votes_and_probe_together_each_get_a_weight(lm):
    train, val = dataset(45, 7), dataset(45, 8)
    both = Calibrate(match, knn=hidden_state_embedder, probe=hidden_state_embedder).compile(
        Classify(Food, lm=lm), trainset=train, valset=val)
    cal = both.calibration
    assert "knn" in cal and "probe" in cal
    pred = both(text="bread number 3")
    assert set(pred.scoring) >= {"neighbour_votes", "probe"}


def test_saved_with_the_program_and_the_embedder_attached_again(lm, tmp_path):
    train, val, test = dataset(45, 9), dataset(45, 10), dataset(30, 11)
    probed = Calibrate(match, probe=hidden_state_embedder).compile(Classify(Food, lm=lm), trainset=train,
                                                                   valset=val)
    path = probed.save(tmp_path / "food.json")
    fresh = Classify(Food, lm=lm).load(path)
    with pytest.raises(ConfigurationError, match="probe_embedder = "):
        fresh(text="bread number 1")  # a function of the user's own cannot be built from its name
    fresh.probe_embedder = hidden_state_embedder
    assert [fresh(text=e.text).label for e in test] == [probed(text=e.text).label for e in test]
    assert fresh.deepcopy().probe_embedder is hidden_state_embedder


def test_a_saved_probe_of_the_wrong_shape_is_refused(lm, tmp_path):
    probed = Calibrate(match, probe=hidden_state_embedder).compile(Classify(Food, lm=lm), trainset=dataset(30, 12),
                                                                   valset=dataset(30, 13))
    path = probed.save(tmp_path / "food.json")
    data = json.loads(path.read_text())
    [state] = data["predictors"].values()
    state["extra"]["calibration"]["probe"]["coef"][0] = [1.0]
    path.write_text(json.dumps(data))
    with pytest.raises(PersistError, match="probe coef"):
        Classify(Food, lm=lm).load(path)


def test_probe_states_are_checked():
    good = {"weight": 1.0, "embedder": "local/x", "labels": ["a", "b"], "mean": [0.0, 1.0], "spread": [1.0, 1.0],
            "coef": [[0.1, -0.1], [0.2, 0.0]], "intercept": [0.0, 0.0]}
    check_probe_state(good, ["a", "b"])
    for bad, words in (({**good, "weight": float("nan")}, "weight"), ({**good, "labels": ["a", "z"]}, "labels"),
                       ({**good, "spread": [1.0]}, "spread"), ({**good, "intercept": [0.0]}, "intercept"),
                       ({**good, "mean": [0.0, "x"]}, "mean"), ({**good, "embedder": None}, "embedder")):
        with pytest.raises(ValueError, match=words):
            check_probe_state(bad, ["a", "b"])


def test_probe_options_are_checked(lm):
    with pytest.raises(ConfigurationError, match="Calibrate: probe must be an embedder"):
        Calibrate(match, probe=42)
    with pytest.raises(ConfigurationError, match="method='fit'"):
        Calibrate(match, probe=noise_embedder, method="content_free")
    named = Calibrate(match, probe="local/qwen2.5-coder-1.5b").probe  # a name: a pl.Embedder, loaded when used
    assert (named.provider, named.model) == ("local", "qwen2.5-coder-1.5b")

    def broken(texts):
        raise RuntimeError("no weights here")

    with pytest.raises(ConfigurationError, match=r"probe=.*failed on a test text before anything was scored"):
        Calibrate(match, probe=broken).compile(Classify(Food, lm=lm), trainset=dataset(20, 14))
    assert lm.score_requests == []


def test_too_few_examples_for_a_probe_leave_it_out(lm):
    one = Calibrate(match, probe=hidden_state_embedder, holdout=None).compile(Classify(Food, lm=lm),
                                                                               trainset=dataset(1, 15))
    assert one.calibration is None or "probe" not in one.calibration
    rows = held_out_probe([[0.0, 1.0], [1.0, 0.0]], [0, 1], 2, c=1.0)
    assert all(len(r) == 2 and all(math.isfinite(x) for x in r) for r in rows)


def test_holdout_cv_checks_by_cross_validation_over_the_training_set_and_the_valset(lm):
    train, val, test = dataset(40, 16), dataset(50, 17), dataset(60, 18)
    crossed = Calibrate(match, probe=hidden_state_embedder, holdout="cv").compile(
        Classify(Food, lm=lm), trainset=train, valset=val)
    sel = crossed.optimization.selection
    assert sel["mode"] == "cross-validation" and sel["evidence"]["n"] == 90
    assert "90 labelled examples (training set and valset" in sel["rule"]
    assert sel["decision"] == "accepted" and "refit" not in crossed.calibration  # fitted on all 90 already
    assert crossed.optimization.calls == 90  # both sets scored once, nothing more
    assert accuracy(crossed, test) >= 0.95
    with pytest.raises(ConfigurationError, match="'cv'"):
        Calibrate(match, holdout=0.3)
