"""pl.with_label_scoring / Classify.from_predict: a program's label steps turned into pl.Classify for Calibrate."""

from __future__ import annotations

import json
from typing import Literal

import pytest

import promptless as pl
from promptless.errors import ConfigurationError, PersistError
from promptless.modules.scored import Classify


class Tag(pl.Signature):
    """Tag the text."""

    text: str = pl.InputField()
    tag: Literal["good", "bad"] = pl.OutputField()


class Summary(pl.Signature):
    """Summarise the text."""

    text: str = pl.InputField()
    summary: str = pl.OutputField()


class Pipeline(pl.Module):
    def __init__(self, lm):
        super().__init__()
        self.tag = pl.Predict(Tag, lm=lm, temperature=0.3)
        self.summarise = pl.Predict(Summary, lm=lm)
        self.steps = [pl.ChainOfThought(Tag, lm=lm)]

    def forward(self, text):
        return pl.Prediction(tag=self.tag(text=text).tag, votes=[s(text=text).tag for s in self.steps],
                             summary=self.summarise(text=text).summary)


def scripted():
    def reply(messages):
        if "summary" in messages[0].content:
            return "[[ ## summary ## ]]\nshort\n\n[[ ## completed ## ]]"
        return "[[ ## reasoning ## ]]\nit reads well\n\n[[ ## tag ## ]]\ngood\n\n[[ ## completed ## ]]"

    return pl.ScriptedLM(reply, logprobs={"good": -2.0, "bad": -0.2})


def test_from_predict_asks_what_the_predictor_asks():
    lm = scripted()
    predict = pl.Predict(Tag, lm=lm, temperature=0.3)
    predict.signature = predict.signature.with_instructions("Tag it carefully.")
    predict.demos = [pl.Example(text="fine", tag="good")]
    clf = Classify.from_predict(predict)
    assert clf.signature.instructions == "Tag it carefully." and clf.demos == predict.demos
    assert clf.lm is lm and clf.config == {"temperature": 0.3}
    assert clf(text="x").tag == "bad" and clf(text="x").decided_by == "scores"
    clf.reset()
    assert clf.signature.instructions == "Tag the text."  # reset goes back to the predictor's own base
    with pytest.raises(ConfigurationError):
        Classify.from_predict(pl.Predict(Summary, lm=lm))  # no label output


def test_label_steps_are_converted_and_the_program_is_left_alone():
    lm = scripted()
    program = Pipeline(lm)
    scored = pl.with_label_scoring(program)
    kinds = {name: type(p).__name__ for name, p in scored.named_predictors()}
    assert kinds == {"tag": "Classify", "summarise": "Predict", "steps[0]": "Classify"}
    assert {type(p).__name__ for p in program.predictors()} == {"Predict", "ChainOfThought"}
    out = scored(text="a fine day")
    assert out.tag == "bad" and out.votes == ["bad"] and out.summary == "short"
    # the chain of thought still reasons first, then its label is scored
    [cot] = scored.steps
    assert "reasoning" in cot.signature.output_fields
    assert isinstance(pl.with_label_scoring(pl.Predict(Tag, lm=lm)), Classify)
    with pytest.raises(ConfigurationError, match=r"takes a pl\.Module"):
        pl.with_label_scoring(lambda text: text)


def test_calibrate_learns_on_the_converted_program_and_it_saves_and_loads(tmp_path):
    lm = scripted()
    train = [pl.Example(text=f"t{i}", tag="good").with_inputs("text") for i in range(20)]

    def metric(ex, pred, trace=None):
        return ex.tag == pred.tag

    # given the Predict itself, Calibrate converts it, but generation is always right here: kept as given
    kept = pl.Calibrate(metric).compile(pl.Predict(Tag, lm=lm), trainset=train)
    assert type(kept) is pl.Predict
    assert kept.optimization.selection["against_given"]["decision"] == "rejected"
    better = pl.Calibrate(metric, holdout=None).compile(pl.with_label_scoring(pl.Predict(Tag, lm=lm)),
                                                        trainset=train)
    assert better(text="t1").tag == "good"
    path = better.save(tmp_path / "tag.json")
    assert "calibration" in json.dumps(json.loads(path.read_text()))
    assert pl.with_label_scoring(pl.Predict(Tag, lm=lm)).load(path)(text="t2").tag == "good"
    with pytest.raises(PersistError):
        pl.Predict(Tag, lm=lm).load(path)  # a plain Predict has no calibration to load into


def test_a_calibration_with_a_scale_below_zero_round_trips(tmp_path):
    # a fit may learn a negative scale where the label scores run against the gold labels; it must load back
    lm = scripted()
    clf = Classify(Tag, lm=lm)
    clf.calibration = {"method": "fit", "offsets": {"good": 0.1, "bad": -0.1}, "scale": -0.5}
    assert clf(text="x").tag == "good"  # -0.5 * (-2.0) > -0.5 * (-0.2)
    fresh = Classify(Tag, lm=lm).load(clf.save(tmp_path / "neg.json"))
    assert fresh.calibration["scale"] == -0.5 and fresh(text="x").tag == "good"
