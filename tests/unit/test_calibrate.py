"""pl.Calibrate: per-label offsets that remove a planted label prior, saved with the program. Scripted LM only."""

from __future__ import annotations

import math
import random
from typing import Literal

import pytest

import promptless as pl
from promptless.errors import ConfigurationError, PersistError
from promptless.modules.scored import Classify
from promptless.optimize.calibrate import Calibrate, content_free_offsets, fit_offsets
from promptless.types import Message


class Pick(pl.Signature):
    """Pick the letter the text names."""

    text: str = pl.InputField()
    label: Literal["a", "b", "c"] = pl.OutputField()
    confidence: float = pl.OutputField()


PRIOR = 2.0  # the scripted model adds this to "a" whatever the input


def _noise(text: str, k: str) -> float:
    return random.Random(f"{text}/{k}").uniform(-0.5, 0.5)


def biased_scores(messages, prefix, candidates):
    """Gold label +1.5 over the others, plus noise, plus a prior towards "a" (also on content-free inputs)."""
    text = messages[-1].content.split("[[ ## text ## ]]\n", 1)[1].split("\n\n", 1)[0]
    gold = text[-1] if text.startswith("item") else None
    return {k: (1.5 if k == gold else 0.0) + (PRIOR if k == "a" else 0.0) + _noise(text, k) for k in "abc"}


def dataset(n: int, seed: int) -> list[pl.Example]:
    rng = random.Random(seed)
    return [pl.Example(text=f"item {seed}-{i} is {g}", label=g).with_inputs("text")
            for i, g in enumerate(rng.choice("abc") for _ in range(n))]


def accuracy(program, examples) -> float:
    return sum(program(text=e.text).label == e.label for e in examples) / len(examples)


def match(example, pred, trace=None) -> bool:
    return example.label == pred.label


@pytest.fixture
def lm():
    return pl.ScriptedLM(logprobs=biased_scores)


def test_fit_recovers_a_planted_offset():
    rng = random.Random(0)
    rows, gold = [], []
    for _ in range(400):
        g = rng.randrange(3)
        r = [rng.gauss(0, 1) for _ in range(3)]
        r[g] += 1.5
        r[0] += 2.0
        rows.append(r)
        gold.append(g)
    b, a = fit_offsets(rows, gold, lam=1e-4)
    assert a == 1.0
    assert b[0] - (b[1] + b[2]) / 2 == pytest.approx(-2.0, abs=0.3)
    # more regularization pulls the offsets towards the prior (here zero)
    strong, _ = fit_offsets(rows, gold, lam=10.0)
    assert max(abs(x) for x in strong) < max(abs(x) for x in b)


def test_content_free_offsets_divide_out_the_prior():
    b = content_free_offsets([[math.log(0.8), math.log(0.1), math.log(0.1)]])
    assert sum(b) == pytest.approx(0.0, abs=1e-12)
    assert b[1] - b[0] == pytest.approx(math.log(8))
    assert b[1] == pytest.approx(b[2])


@pytest.mark.parametrize("method", ["content_free", "fit", "both"])
def test_calibration_removes_a_planted_prior(lm, method):
    train, test = dataset(60, 1), dataset(90, 2)
    program = Classify(Pick, lm=lm)
    before = accuracy(program, test)
    better = Calibrate(match, method=method, progress=False).compile(program, trainset=train)
    after = accuracy(better, test)
    assert before < 0.6
    assert after > 0.9
    offsets = better.calibration["offsets"]
    assert offsets["a"] < min(offsets["b"], offsets["c"]) - 1.0  # pushes down the label the model leans to
    # "both" may keep the content-free offsets alone when the fit does no better on held-out examples
    assert better.calibration["method"] in {"content_free": {"content_free"}, "fit": {"fit"},
                                            "both": {"both", "content_free"}}[method]
    assert program.calibration is None  # the student is left as it was
    calls = len(lm.score_requests)
    expected = {"content_free": 3, "fit": 60, "both": 63}[method]
    assert better.optimization.calls == expected
    assert calls == expected + 2 * 90  # plus the two evaluations here


def test_the_default_fit_learns_a_scale_and_applies_it():
    def overconfident(messages, prefix, candidates):  # the biased scores, five times too sure of themselves
        return {k: 5.0 * v for k, v in biased_scores(messages, prefix, candidates).items()}

    lm = pl.ScriptedLM(logprobs=overconfident)
    better = Calibrate(match, progress=False).compile(Classify(Pick, lm=lm), trainset=dataset(80, 8))
    cal = better.calibration
    assert cal["method"] == "fit" and 0.0 < cal["scale"] < 0.95  # softened
    pred = better(text="item x is b")
    raw = pred.label_logprobs
    adjusted = {k: cal["scale"] * raw[k] + cal["offsets"][k] for k in raw}
    total = sum(math.exp(v) for v in adjusted.values())
    assert pred.label_probs == pytest.approx({k: math.exp(v) / total for k, v in adjusted.items()})
    assert accuracy(better, dataset(60, 9)) > 0.85


def fair_scores(messages, prefix, candidates):
    text = messages[-1].content.split("[[ ## text ## ]]\n", 1)[1].split("\n\n", 1)[0]
    return {k: (1.5 if text.endswith(k) else 0.0) + _noise(text, k) for k in "abc"}


def test_without_a_prior_the_classifier_is_left_uncalibrated():
    lm = pl.ScriptedLM(logprobs=fair_scores)
    program = Classify(Pick, lm=lm)
    better = Calibrate(match, progress=False).compile(program, trainset=dataset(60, 3))
    result = better.optimization
    assert better.calibration is None  # nothing beat "none" by more than the noise
    assert result.selection["pick"] == "starting program"
    assert result.selection["decision"] in ("rejected", "nothing to test")
    assert result.final_score == result.baseline_score


def test_a_planted_prior_passes_the_paired_test_with_evidence(lm):
    better = Calibrate(match, progress=False).compile(Classify(Pick, lm=lm), trainset=dataset(60, 1))
    sel = better.optimization.selection
    assert sel["mode"] == "cross-validation" and sel["decision"] == "accepted"
    ev = sel["evidence"]
    assert ev["significant"] and ev["p_value"] <= 0.1 and ev["lift"] > 20 and ev["n"] == 60
    assert better.calibration["evidence"]["lift"] == ev["lift"]
    assert better.optimization.final_score - better.optimization.baseline_score == pytest.approx(ev["lift"])
    assert len(better.optimization.per_example) == 60


def test_the_check_runs_on_the_valset_when_one_is_given(lm):
    train, val = dataset(40, 10), dataset(30, 11)
    opt = Calibrate(match, progress=False)
    better = opt.compile(Classify(Pick, lm=lm), trainset=train, valset=val)
    sel = better.optimization.selection
    assert sel["mode"] == "validation set" and sel["evidence"]["n"] == 30
    assert better.optimization.calls == 70
    assert better.calibration is not None
    # a valset on which the calibration cannot show a win keeps the classifier as it was
    lm2 = pl.ScriptedLM(logprobs=fair_scores)
    same = Calibrate(match, progress=False, regularization=1e-4).compile(
        Classify(Pick, lm=lm2), trainset=dataset(40, 12), valset=dataset(8, 13))
    assert same.calibration is None
    assert same.optimization.selection["pick"] == "starting program"
    assert better.optimization.refused is None  # kept: nothing refused
    # the fitted calibration the check did not keep is there for a user who wants it anyway
    assert same.optimization.selection["decision"] == "rejected"
    refused = same.optimization.refused
    assert refused is not None and refused.calibration is not None
    assert refused.calibration == same.optimization.candidates["calibration"]["self"]["candidate"]
    assert refused(text="item x is b").label_probs != same(text="item x is b").label_probs


def test_an_accepted_calibration_is_fitted_again_on_the_training_set_and_the_valset(lm):
    """The check passes the fit made on the training set; what is returned is the same fit made on every labelled
    example scored (lambda cross-validated again), with what was checked kept beside it. No LM call more."""
    train, val = dataset(12, 20), dataset(60, 21)
    better = Calibrate(match, progress=False).compile(Classify(Pick, lm=lm), trainset=train, valset=val)
    cal = better.calibration
    assert better.optimization.selection["decision"] == "accepted"
    assert better.optimization.calls == 72
    assert cal["refit"]["examples"] == 72 and cal["evidence"]["n"] == 60
    assert "fitted again on the 72 training and validation examples" in better.optimization.selection["reason"]
    checked = cal["refit"]["checked"]
    assert checked == better.optimization.candidates["calibration"]["self"]["candidate"]["refit"]["checked"]

    def prior_error(c):  # the planted prior, +PRIOR on "a" before the scale: the offsets should take it back out
        o = c["offsets"]
        return abs((o["a"] - (o["b"] + o["c"]) / 2) / c["scale"] + PRIOR)

    assert prior_error(cal) < prior_error(checked)
    rows = [[biased_scores([Message("user", f"[[ ## text ## ]]\n{e.text}\n\n")], "", list("abc"))[k]
             for k in "abc"] for e in train + val]
    b, a = fit_offsets(rows, ["abc".index(e.label) for e in train + val], lam=cal["lambda"], fit_scale=True)
    assert [cal["offsets"][k] for k in "abc"] == pytest.approx(b, abs=1e-5) and cal["scale"] == pytest.approx(a, abs=1e-5)
    # refit=False returns what the check passed
    kept = Calibrate(match, refit=False, progress=False).compile(Classify(Pick, lm=lm), trainset=train, valset=val)
    assert "refit" not in kept.calibration
    assert kept.calibration["offsets"] == checked["offsets"]


def test_holdout_none_keeps_the_choice_without_a_test(lm):
    better = Calibrate(match, method="content_free", holdout=None, progress=False).compile(
        Classify(Pick, lm=lm), trainset=dataset(10, 14))
    assert better.optimization.selection["decision"] == "accepted without a test"
    assert better.calibration["method"] == "content_free"
    with pytest.raises(ConfigurationError, match="holdout"):
        Calibrate(match, holdout=0.3)


def test_offsets_round_trip_through_save_and_load(lm, tmp_path):
    better = Calibrate(match, method="both", progress=False).compile(Classify(Pick, lm=lm), trainset=dataset(40, 4))
    path = better.save(tmp_path / "calibrated.json")
    fresh = Classify(Pick, lm=lm).load(path)
    assert fresh.calibration == better.calibration
    assert fresh.offsets == better.offsets and fresh.offsets
    test = dataset(20, 5)
    assert [fresh(text=e.text).label for e in test] == [better(text=e.text).label for e in test]
    state = fresh.dump_state()
    assert state["extra"]["calibration"]["offsets"] == better.calibration["offsets"]
    # the JSON state round-trips in memory too, and a plain Predict refuses a calibrated state
    again = Classify(Pick, lm=lm).load_state({"self": state})
    assert again.calibration == better.calibration
    with pytest.raises(PersistError, match="does not keep"):
        pl.Predict(Pick).load(path)


def test_a_calibration_for_other_labels_is_refused(lm, tmp_path):
    clf = Classify(Pick, lm=lm)
    clf.calibration = {"offsets": {"a": 0.5, "zebra": 1.0}}
    path = clf.save(tmp_path / "bad.json")
    target = Classify(Pick, lm=lm)
    with pytest.raises(PersistError, match="zebra"):
        target.load(path)
    assert target.calibration is None  # left unchanged


def test_resume_scores_nothing_twice_and_the_budget_holds(lm, tmp_path):
    train = dataset(30, 6)
    run_dir = str(tmp_path / "run")
    first = Calibrate(match, method="fit", max_lm_calls=12, run_dir=run_dir, progress=False)
    partial = first.compile(Classify(Pick, lm=lm), trainset=train)
    assert partial.optimization.stopped == "budget"
    assert len(lm.score_requests) == 12
    second = Calibrate(match, method="fit", max_lm_calls=100, run_dir=run_dir, progress=False)
    done = second.compile(Classify(Pick, lm=lm), trainset=train)
    assert done.optimization.stopped == "completed"
    assert len(lm.score_requests) == 30  # the first 12 were replayed from the run store
    assert done.calibration is not None


def test_needs_a_label_step():
    class Free(pl.Signature):
        """Say something."""

        text: str = pl.InputField()
        label: str = pl.OutputField()

    with pytest.raises(ConfigurationError, match="no label step to calibrate"):
        Calibrate(match, progress=False).compile(pl.Predict(Free, lm=pl.ScriptedLM(["x"])),
                                                 trainset=dataset(5, 7))
    with pytest.raises(ConfigurationError, match="method"):
        Calibrate(match, method="magic")


@pytest.mark.parametrize("limit", [7, 23])
def test_other_optimizers_count_label_scoring_against_max_lm_calls(lm, limit):
    """A Classify inside MIPROv2 or random search scores labels instead of generating: those scoring calls are
    LM calls too, and max_lm_calls holds them exactly."""
    train, val = dataset(12, 7), dataset(30, 8)
    opt = pl.BootstrapFewShotWithRandomSearch(match, num_candidate_programs=3, max_bootstrapped_demos=2,
                                              max_labeled_demos=2, max_lm_calls=limit, progress=False, seed=1)
    before = len(lm.score_requests) + len(lm.requests)
    result = opt.compile(Classify(Pick, lm=lm), trainset=train, valset=val)
    spent = len(lm.score_requests) + len(lm.requests) - before
    assert spent == limit
    assert result.optimization.calls == limit
    assert result.optimization.stopped == "budget"


def test_every_optimizer_runs_on_a_classify_and_calibrate_comes_last(lm, tmp_path):
    """The flow the docs advise: search instructions or demos for a pl.Classify, then calibrate what they return."""
    train, val = dataset(30, 30), dataset(30, 31)

    def proposals(n):
        return pl.ScriptedLM([f"[[ ## proposed_instruction ## ]]\nName the letter the text ends with ({i}).\n\n"
                              "[[ ## completed ## ]]" for i in range(n)])

    runs = {
        "mipro": pl.MIPROv2(match, prompt_model=proposals(5), task_model=lm, auto="light", max_bootstrapped_demos=0,
                            max_labeled_demos=0, max_lm_calls=150, progress=False),
        "bootstrap": pl.BootstrapFewShot(metric=match, max_bootstrapped_demos=2, max_labeled_demos=0),
        "random": pl.BootstrapFewShotWithRandomSearch(match, num_candidate_programs=2, max_bootstrapped_demos=2,
                                                      max_labeled_demos=2, progress=False),
        "gepa": pl.GEPA(match, reflection_lm=proposals(20), max_metric_calls=120, progress=False),
    }
    for name, opt in runs.items():
        out = opt.compile(Classify(Pick, lm=lm), trainset=train, valset=val)
        assert isinstance(out, Classify), name
        assert out(text="item z is c").label_probs is not None, name  # still scores its labels
        if name in ("mipro", "gepa"):
            assert out.optimization.calls <= (150 if name == "mipro" else 120 + 30), name
    shown = pl.LabeledFewShot(k=2, seed=1).compile(Classify(Pick, lm=lm), trainset=train)
    better = Calibrate(match, progress=False).compile(shown, trainset=train, valset=val)
    assert better.optimization.selection["decision"] == "accepted"
    assert better.demos == shown.demos and better.signature.instructions == shown.signature.instructions
    assert better.calibration["refit"]["examples"] == 60
    fresh = Classify(Pick, lm=lm).load(better.save(tmp_path / "calibrated.json"))
    assert fresh.demos == shown.demos
    assert fresh(text="item y is b").label_probs == pytest.approx(better(text="item y is b").label_probs)


def test_an_lm_that_cannot_score_is_told_after_one_example():
    lm = pl.ScriptedLM(["[[ ## label ## ]]\na\n\n[[ ## confidence ## ]]\n0.9\n\n[[ ## completed ## ]]"])
    with pytest.raises(ConfigurationError, match="gave no label scores"):
        Calibrate(match).compile(Classify(Pick, lm=lm), trainset=dataset(30, 1), valset=dataset(30, 2))
    assert len(lm.requests) == 1


def generating(answer):
    """A scripted LM that generates ``answer(text, gold)`` as the label and scores labels with the planted prior."""
    def reply(messages):
        text = messages[-1].content.split("[[ ## text ## ]]\n", 1)[1].split("\n\n", 1)[0]
        label = answer(text, text[-1])
        return f"[[ ## label ## ]]\n{label}\n\n[[ ## confidence ## ]]\n0.9\n\n[[ ## completed ## ]]"
    return pl.ScriptedLM(reply, logprobs=biased_scores)


def test_a_predict_program_is_scored_calibrated_and_checked_against_itself():
    """Given a pl.Predict, Calibrate scores its label step as a pl.Classify; the calibrated program replaces the
    program as given only when it beats it (its labels generated) on the same held-out examples."""
    train, val = dataset(40, 7), dataset(40, 8)
    lm = generating(lambda text, gold: "a")  # generation answers the prior whatever the input
    given = pl.Predict(Pick, lm=lm)
    better = Calibrate(match, progress=False).compile(given, trainset=train, valset=val)
    assert isinstance(better, Classify) and better.calibration is not None and not isinstance(given, Classify)
    sel = better.optimization.selection
    assert sel["decision"] == "accepted" and sel["against_given"]["decision"] == "accepted"
    assert "against the program as given" in sel["reason"]
    assert better.optimization.baseline_score == pytest.approx(100 * accuracy(given, val))
    # train and valset scored; both generated once by the program as given, to compare on all 80
    assert better.optimization.calls == 40 + 40 + 80
    assert sel["against_given"]["evidence"]["n"] == 80
    assert sel["rule"].endswith("against the program as given: the 80 training and validation examples, each with a "
                                "score not fitted on it")
    assert accuracy(better, val) > accuracy(given, val) + 0.3


def test_a_predict_program_that_generates_better_is_kept_as_given():
    train, val = dataset(40, 7), dataset(40, 8)
    lm = generating(lambda text, gold: gold)  # generation is always right: nothing can beat it
    given = pl.Predict(Pick, lm=lm)
    kept = Calibrate(match, progress=False).compile(given, trainset=train, valset=val)
    assert type(kept) is pl.Predict and kept is not given
    sel = kept.optimization.selection
    assert sel["decision"] == "rejected" and sel["against_given"]["decision"] == "rejected"
    assert "so the program is kept as given" in sel["reason"]
    assert isinstance(kept.optimization.refused, Classify)  # the label-scoring program, for whoever wants it
    assert accuracy(kept, val) == 1.0


def test_the_check_against_the_given_program_keeps_it_when_the_budget_runs_out():
    train, val = dataset(20, 7), dataset(20, 8)
    given = pl.Predict(Pick, lm=generating(lambda text, gold: "a"))
    kept = Calibrate(match, progress=False, max_lm_calls=45).compile(given, trainset=train, valset=val)
    assert type(kept) is pl.Predict
    result = kept.optimization
    assert result.stopped == "budget" and result.calls == 45
    assert "budget ran out before the program as given was scored" in result.selection["reason"]


def test_a_program_with_two_label_steps_is_not_checked_against_itself_and_says_so():
    class Twice(pl.Module):
        def __init__(self, lm):
            super().__init__()
            self.first = pl.Predict(Pick, lm=lm)
            self.second = pl.Predict(Pick, lm=lm)

        def forward(self, text):
            self.first(text=text)
            return self.second(text=text)

    train, val = dataset(20, 7), dataset(20, 8)
    out = Calibrate(match, progress=False).compile(Twice(generating(lambda text, gold: "a")), trainset=train,
                                                   valset=val)
    assert all(isinstance(p, Classify) for p in out.predictors())
    assert out.optimization.selection["against_given"] == {"decision": "not checked",
                                                           "reason": "the program has more than one label step"}
    assert out.optimization.calls == 2 * (20 + 20)  # both steps scored on train and valset, nothing generated
