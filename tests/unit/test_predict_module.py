from __future__ import annotations

import asyncio
import threading

import pytest

import promptless as pl
from promptless.errors import ConfigurationError

REPLY = "[[ ## category ## ]]\nWars and Conflicts\n\n[[ ## confidence ## ]]\n0.9\n\n[[ ## completed ## ]]"


def test_predict_end_to_end(classify_signature):
    lm = pl.ScriptedLM([REPLY])
    pl.configure(lm=lm)
    pred = pl.Predict(classify_signature)(event="Battle of Nineveh")
    assert pred.category == "Wars and Conflicts" and pred.confidence == 0.9
    assert pred.usage.calls == 1
    assert "Battle of Nineveh" in lm.requests[0].messages[-1].content


def test_no_lm_configured_is_a_clear_error():
    with pytest.raises(ConfigurationError, match="no LM is configured"):
        pl.Predict("q -> a")(q="x")


def test_bad_inputs_are_clear_errors():
    p = pl.Predict("question -> answer", lm=pl.ScriptedLM(["x"]))
    with pytest.raises(ConfigurationError, match="missing input"):
        p()
    with pytest.raises(ConfigurationError, match="unexpected input"):
        p(question="a", qestion="b")
    with pytest.raises(ConfigurationError, match="keyword arguments"):
        p("positional")
    with pytest.raises(ConfigurationError, match="unknown option"):
        pl.Predict("q -> a", temprature=0.3)


def test_per_call_config_and_n():
    lm = pl.ScriptedLM(["[[ ## answer ## ]]\none", "[[ ## answer ## ]]\ntwo", "[[ ## answer ## ]]\nthree"])
    p = pl.Predict("question -> answer", lm=lm, temperature=0.2)
    pred = p(question="q", n=3, config={"max_tokens": 50})
    assert [c["answer"] for c in pred.completions] == ["one", "two", "three"]
    assert pred.answer == "one"
    req = lm.requests[0]
    assert req.n == 3 and req.temperature == 0.2 and req.max_tokens == 50


def test_chain_of_thought_adds_reasoning_first():
    lm = pl.ScriptedLM(["[[ ## reasoning ## ]]\nBecause.\n[[ ## answer ## ]]\n42"])
    cot = pl.ChainOfThought("question -> answer: int", lm=lm)
    pred = cot(question="6*7?")
    assert pred.reasoning == "Because." and pred.answer == 42
    assert list(cot.signature.output_fields) == ["reasoning", "answer"]


def test_context_overrides_are_scoped_per_thread():
    a = pl.ScriptedLM(["[[ ## answer ## ]]\nA"], model="a")
    b = pl.ScriptedLM(["[[ ## answer ## ]]\nB"], model="b")
    pl.configure(lm=a)
    p = pl.Predict("q -> answer")
    seen = {}

    def other_thread():
        seen["thread"] = p(q="x").answer

    with pl.context(lm=b):
        assert p(q="x").answer == "B"
        t = threading.Thread(target=other_thread)
        t.start()
        t.join()
    assert seen["thread"] == "A"  # the override did not leak into another thread
    assert p(q="x").answer == "A"


def test_context_is_per_asyncio_task():
    a = pl.ScriptedLM(["[[ ## answer ## ]]\nA"], model="a")
    b = pl.ScriptedLM(["[[ ## answer ## ]]\nB"], model="b")
    pl.configure(lm=a)
    p = pl.Predict("q -> answer")

    async def with_b():
        with pl.context(lm=b):
            await asyncio.sleep(0.01)
            return (await p.acall(q="x")).answer

    async def plain():
        await asyncio.sleep(0.005)
        return (await p.acall(q="x")).answer

    async def main():
        return await asyncio.gather(with_b(), plain())

    assert asyncio.run(main()) == ["B", "A"]


def test_unknown_setting_rejected():
    with pytest.raises(ConfigurationError, match="unknown setting"):
        pl.configure(lmm=1)


class Pipeline(pl.Module):
    def __init__(self):
        self.first = pl.Predict("question -> query")
        self.steps = [pl.ChainOfThought("query -> answer"), pl.Predict("answer -> check: bool")]
        self.by_name = {"x": pl.Predict("a -> b")}
        self.inner = Inner()
        self.alias = self.first  # the same predictor twice is listed once

    def forward(self, question):
        q = self.first(question=question).query
        return self.steps[0](query=q)


class Inner(pl.Module):
    def __init__(self):
        self.deep = pl.Predict("a -> b")


def test_named_predictors_walk_attributes_lists_dicts():
    names = [n for n, _ in Pipeline().named_predictors()]
    assert names == ["first", "steps[0]", "steps[1]", "by_name['x']", "inner.deep"]
    assert pl.Predict("a -> b").named_predictors()[0][0] == "self"


def test_module_call_runs_forward():
    lm = pl.ScriptedLM(["[[ ## query ## ]]\nq1", "[[ ## reasoning ## ]]\nr\n[[ ## answer ## ]]\nans"])
    pl.configure(lm=lm)
    assert Pipeline()(question="what?").answer == "ans"


def test_deepcopy_shares_lm_and_copies_demos():
    lm = pl.ScriptedLM(["x"])
    prog = Pipeline()
    prog.set_lm(lm)
    prog.first.demos = [pl.Example(question="q", query="r")]
    copy = prog.deepcopy()
    assert copy.first.lm is lm
    assert copy.first.demos == prog.first.demos and copy.first.demos is not prog.first.demos
    copy.first.demos.append(pl.Example(question="q2", query="r2"))
    assert len(prog.first.demos) == 1
    reset = prog.reset_copy()
    assert reset.first.demos == [] and len(prog.first.demos) == 1


def test_reset_restores_instructions():
    p = pl.Predict("q -> a")
    original = p.signature.instructions
    p.signature = p.signature.with_instructions("changed")
    p.demos = [pl.Example(q="1", a="2")]
    p.reset()
    assert p.signature.instructions == original and p.demos == []


def test_inspect_history_shows_messages_and_reply(capsys, classify_signature):
    lm = pl.ScriptedLM([REPLY])
    pl.Predict(classify_signature, lm=lm)(event="Battle of Nineveh")
    text = pl.inspect_history(1)
    assert "Battle of Nineveh" in text and "Wars and Conflicts" in text and "--- system ---" in text
    assert capsys.readouterr().out.strip() == text.strip()


def test_history_is_bounded():
    lm = pl.ScriptedLM(["[[ ## a ## ]]\nx"], history_size=5)
    p = pl.Predict("q -> a", lm=lm)
    for i in range(20):
        p(q=str(i))
    assert len(lm.history) == 5


def test_track_usage_totals_by_model():
    a = pl.ScriptedLM(["[[ ## a ## ]]\nx"], model="m1")
    b = pl.ScriptedLM(["[[ ## a ## ]]\nx"], model="m2")
    with pl.track_usage() as usage:
        pl.Predict("q -> a", lm=a)(q="1")
        pl.Predict("q -> a", lm=b)(q="1")
        pl.Predict("q -> a", lm=b)(q="2")
    assert usage.total.calls == 3
    assert usage.by_model["m1"].calls == 1 and usage.by_model["m2"].calls == 2


def test_scripted_lm_function_and_exhaustion():
    lm = pl.ScriptedLM(lambda msgs: f"[[ ## a ## ]]\n{len(msgs)}")
    assert pl.Predict("q -> a", lm=lm)(q="x").a == "2"
    once = pl.ScriptedLM(["[[ ## a ## ]]\nx"], cycle=False)
    p = pl.Predict("q -> a", lm=once)
    p(q="1")
    with pytest.raises(ConfigurationError, match="ran out"):
        p(q="2")


def test_lm_factory_errors():
    with pytest.raises(ConfigurationError, match="provider prefix"):
        pl.LM("gpt-4o")
    with pytest.raises(ConfigurationError, match="unknown provider"):
        pl.LM("nosuch/model")


def test_optimization_is_a_declared_attribute_set_by_compile():
    program = pl.Predict("q -> a", lm=pl.ScriptedLM(["[[ ## a ## ]]\nx"]))
    assert program.optimization is None and pl.Module().optimization is None
    trainset = [pl.Example(q=str(i), a="x").with_inputs("q") for i in range(3)]
    optimizer = pl.LabeledFewShot(k=2)
    better = optimizer.compile(program, trainset=trainset)
    assert isinstance(better.optimization, pl.OptimizationResult) and better.optimization is optimizer.result
    assert program.optimization is None  # the student is left as it was
