"""Module and Predict methods as DSPy programs use them (issue 15, item 4)."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

import promptless as dspy

from .conftest import reply


class Pipeline(dspy.Module):
    def __init__(self):
        self.draft = dspy.Predict("topic -> outline")
        self.steps = [dspy.ChainOfThought("outline -> paragraph"), dspy.Predict("paragraph -> title")]
        self.by_lang = {"fr": dspy.Predict("text -> translation")}

    def forward(self, topic):
        outline = self.draft(topic=topic).outline
        paragraph = self.steps[0](outline=outline).paragraph
        return self.steps[1](paragraph=paragraph)


def test_named_parameters_and_parameters():
    program = Pipeline()
    names = [n for n, _ in program.named_parameters()]
    assert names == ["draft", "steps[0]", "steps[1]", "by_lang['fr']"]
    assert program.parameters() == [p for _, p in program.named_parameters()]
    assert all(isinstance(p, dspy.Predict) for p in program.parameters())
    alone = dspy.Predict("a -> b")
    assert alone.named_parameters() == [("self", alone)]


def test_named_sub_modules_uses_dspys_names():
    program = Pipeline()
    names = [n for n, _ in program.named_sub_modules()]
    assert names == ["self", "self.draft", "self.steps[0]", "self.steps[1]", "self.by_lang[fr]"]
    only_cot = [n for n, _ in program.named_sub_modules(type_=dspy.ChainOfThought)]
    assert only_cot == ["self.steps[0]"]


def test_module_inspect_history_shows_only_its_own_calls(capsys):
    mine = dspy.Predict("q -> a", lm=dspy.ScriptedLM([reply(a="mine")]))
    other = dspy.Predict("q -> a", lm=dspy.ScriptedLM([reply(a="theirs")]))
    mine(q="first")
    other(q="second")
    text = mine.inspect_history(n=5)
    assert "mine" in text and "theirs" not in text
    assert "mine" in capsys.readouterr().out


def test_get_config_and_update_config():
    qa = dspy.Predict("question -> answer", temperature=0.2)
    assert qa.get_config() == {"temperature": 0.2}
    qa.update_config(temperature=0.9, n=2)
    assert qa.get_config() == {"temperature": 0.9, "n": 2}
    with pytest.raises(dspy.ConfigurationError, match="unknown option"):
        qa.update_config(tempreature=1)


def test_append_and_prepend_instructions():
    sig = dspy.Signature("text -> summary", "Summarize the text.")
    longer = sig.append_instructions("Use one sentence.")
    assert longer.instructions == "Summarize the text.\n\nUse one sentence."
    assert sig.instructions == "Summarize the text."
    assert sig.prepend_instructions("You are terse.").instructions == "You are terse.\n\nSummarize the text."


def test_column_access_on_completions():
    lm = dspy.ScriptedLM(lambda messages: [reply(answer="Paris"), reply(answer="Lyon"), reply(answer="Paris")])
    pred = dspy.Predict("question -> answer", n=3, lm=lm)(question="Capital of France?")
    assert pred.completions.answer == ["Paris", "Lyon", "Paris"]
    assert pred.completions["answer"] == ["Paris", "Lyon", "Paris"]
    assert pred.completions[1]["answer"] == "Lyon"
    assert len(pred.completions) == 3
    with pytest.raises(AttributeError, match="no field 'score'"):
        pred.completions.score  # noqa: B018


def test_chain_of_thought_predict_attribute():
    cot = dspy.ChainOfThought("question -> answer")
    cot.predict.demos = [dspy.Example(question="1+1?", reasoning="one and one", answer="2")]
    assert cot.demos == cot.predict.demos
    assert cot.predict.signature is cot.signature


def _echo_tool(text: str) -> str:
    """Return the text."""
    return text


def test_react_max_iters_per_call():
    steps = reply(next_thought="look", next_tool_name="_echo_tool", next_tool_args='{"text": "hi"}')
    lm = dspy.ScriptedLM(lambda messages: reply(reasoning="done", answer="hi")
                         if "trajectory" in messages[0].content and "next_thought" not in messages[0].content
                         else steps)
    agent = dspy.ReAct("question -> answer", tools=[_echo_tool], max_iters=10)
    pred = agent(question="say hi", max_iters=2, lm=lm)
    assert [k for k in pred.trajectory if k.startswith("thought_")] == ["thought_0", "thought_1"]
    assert agent.max_iters == 10
    with pytest.raises(dspy.ConfigurationError, match="max_iters"):
        agent(question="x", max_iters=0, lm=lm)


class _Slow:
    """Its first call on item 0 hangs until released; every other call returns at once."""

    def __init__(self):
        self.calls = 0
        self.lock = threading.Lock()
        self.release = threading.Event()

    def __call__(self, x):
        with self.lock:
            self.calls += 1
            first = self.calls == 1
        if x == 0 and first:
            self.release.wait(5)
            return "late"
        return f"done {x}"


def test_parallel_restarts_a_straggler_after_timeout():
    slow = _Slow()
    start = time.monotonic()
    results = dspy.Parallel(num_threads=4, timeout=0.2, straggler_limit=2)([(slow, (i,)) for i in range(4)])
    slow.release.set()
    assert results == ["done 0", "done 1", "done 2", "done 3"]
    assert time.monotonic() - start < 4


def test_parallel_timeout_is_checked():
    with pytest.raises(dspy.ConfigurationError, match="timeout"):
        dspy.Parallel(timeout=-1)
    with pytest.raises(dspy.ConfigurationError, match="straggler_limit"):
        dspy.Parallel(straggler_limit=-1)


def _exact(example, prediction, trace=None):
    return example.answer == prediction.answer


def test_evaluate_takes_dspys_argument_order_and_ours():
    devset = [dspy.Example(question=q, answer=a).with_inputs("question") for q, a in [("a", "A"), ("b", "X")]]
    program = dspy.Predict("question -> answer", lm=dspy.ScriptedLM(
        lambda messages: reply(answer=messages[-1].content.split("\n")[1].upper())))
    evaluate = dspy.Evaluate(devset=devset, display_progress=False)
    dspy_order = evaluate(program, _exact, devset)
    our_order = evaluate(program, devset, _exact)
    keywords = evaluate(program, metric=_exact, devset=devset)
    assert dspy_order.score == our_order.score == keywords.score == 50.0


def test_asyncify_and_syncify():
    program = dspy.Predict("q -> a", lm=dspy.ScriptedLM([reply(a="async ok")]))
    run = dspy.asyncify(program)
    assert asyncio.run(run(q="x")).a == "async ok"
    assert asyncio.run(dspy.asyncify(lambda x: x * 2)(21)) == 42

    class Fetch(dspy.Module):
        async def aforward(self, n):
            await asyncio.sleep(0)
            return n + 1

    assert dspy.syncify(Fetch())(1) == 2
    wrapped = dspy.syncify(Fetch(), in_place=False)
    assert wrapped(5) == 6 and isinstance(wrapped.program, Fetch)

    async def inside_a_loop():
        return dspy.syncify(Fetch())(9)

    assert asyncio.run(inside_a_loop()) == 10
    with pytest.raises(dspy.ConfigurationError, match="aforward"):
        dspy.syncify(object())


def test_knn_few_shot_at_top_level():
    from promptless.optimize import KNNFewShot

    assert dspy.KNNFewShot is KNNFewShot
    assert "KNNFewShot" in dspy.__all__


def test_configure_cache(tmp_path):
    from promptless.lm import cache

    try:
        made = dspy.configure_cache(enable_disk_cache=True, disk_cache_dir=str(tmp_path), memory_max_entries=10)
        assert cache.default_cache() is made
        assert made.path == tmp_path / "cache.sqlite3" and made.memory_size == 10
        memory_only = dspy.configure_cache(enable_disk_cache=False)
        assert memory_only.path is None
        with pytest.raises(dspy.ConfigurationError, match="never unpickles"):
            dspy.configure_cache(safe_types=[dict])
    finally:
        cache.reset_default_cache()


def test_compile_restrict_scores_only_the_named_candidates():
    train = [dspy.Example(question=f"q{i}", answer=f"Q{i}").with_inputs("question") for i in range(6)]
    lm = dspy.ScriptedLM(lambda messages: reply(answer=messages[-1].content.split("\n")[1].upper()))
    student = dspy.Predict("question -> answer", lm=lm)
    opt = dspy.BootstrapFewShotWithRandomSearch(metric=_exact, num_candidate_programs=3, max_bootstrapped_demos=1,
                                                max_labeled_demos=1, holdout=None, progress=False)
    opt.compile(student, trainset=train, valset=train, restrict=[-3])
    scored = [t for t in opt.result.trials if t.kind == "candidate"]
    assert len(scored) == 1
    with pytest.raises(dspy.ConfigurationError, match="names no candidate"):
        opt.compile(student, trainset=train, valset=train, restrict=[99])
