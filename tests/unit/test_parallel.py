from __future__ import annotations

import asyncio
import threading
import time

import pytest

import promptless as pl
from promptless.errors import PromptlessError


def echo_lm() -> pl.ScriptedLM:
    def fn(messages):
        question = messages[-1].content.split("[[ ## question ## ]]\n", 1)[1].split("\n", 1)[0]
        if question.startswith("fail"):
            return "no markers, and two fields are expected"
        time.sleep(0.01 * (hash(question) % 3))  # finish out of order
        return f"[[ ## answer ## ]]\n{question.upper()}\n[[ ## n ## ]]\n1"

    return pl.ScriptedLM(fn)


def qa(lm=None) -> pl.Predict:
    return pl.Predict("question -> answer, n: int", lm=lm, adapter=pl.ChatAdapter(fallback=False))


def test_results_come_back_in_input_order_from_threads():
    program = qa(echo_lm())
    pairs = [(program, {"question": f"q{i}"}) for i in range(20)]
    results = pl.Parallel(num_threads=4)(pairs)
    assert [r.answer for r in results] == [f"Q{i}" for i in range(20)]


def test_inputs_may_be_examples_dicts_or_tuples():
    program = qa(echo_lm())
    ex = pl.Example(question="from example", answer="ignored").with_inputs("question")
    results = pl.Parallel(num_threads=2)([(program, ex), (program, {"question": "from dict"}),
                                          (lambda x: x * 2, (21,))])
    assert results[0].answer == "FROM EXAMPLE" and results[1].answer == "FROM DICT" and results[2] == 42


def test_failed_items_are_none_and_collected():
    program = qa(echo_lm())
    pairs = [(program, {"question": q}) for q in ("a", "fail-1", "b", "fail-2")]
    results, failed, errors = pl.Parallel(num_threads=3, return_failed_examples=True)(pairs)
    assert [r.answer if r else None for r in results] == ["A", None, "B", None]
    assert failed == [{"question": "fail-1"}, {"question": "fail-2"}]
    assert all(isinstance(e, pl.ParseError) for e in errors)
    assert pl.Parallel(num_threads=3)(pairs)[1] is None


def test_more_errors_than_max_errors_stops_and_raises():
    started = []
    lock = threading.Lock()

    def flaky(i):
        with lock:
            started.append(i)
        if i % 2:
            raise ValueError(f"item {i} broke")
        return i

    pairs = [(flaky, (i,)) for i in range(50)]
    with pytest.raises(PromptlessError, match=r"Parallel stopped after \d+ failed items \(max_errors=2\)") as info:
        pl.Parallel(num_threads=1, max_errors=2)(pairs)
    assert isinstance(info.value.__cause__, ValueError)
    assert len(started) == 6  # items 1, 3, 5 failed; nothing started after the third error


def test_contextvars_reach_the_workers():
    lm = echo_lm()
    program = qa()  # no LM of its own: it must come from the context
    with pl.context(lm=lm), pl.track_usage() as usage:
        results = pl.Parallel(num_threads=4)([(program, {"question": f"x{i}"}) for i in range(6)])
    assert all(r is not None for r in results) and usage.calls == 6


def test_asyncio_mode():
    program = qa(echo_lm())

    async def main():
        return await pl.Parallel(num_threads=3).acall([(program, {"question": f"a{i}"}) for i in range(8)]
                                                      + [(program, {"question": "fail"})])

    results = asyncio.run(main())
    assert [r.answer for r in results[:8]] == [f"A{i}" for i in range(8)] and results[8] is None


def test_bad_options_and_pairs():
    with pytest.raises(pl.ConfigurationError, match="num_threads"):
        pl.Parallel(num_threads=0)
    with pytest.raises(pl.ConfigurationError, match="max_errors"):
        pl.Parallel(max_errors=-1)
    with pytest.raises(pl.ConfigurationError, match=r"\(module, inputs\) pair"):
        pl.Parallel()([qa()])
    results, _failed, errors = pl.Parallel(return_failed_examples=True)([(qa(echo_lm()), "just a string")])
    assert results == [None] and "must be an Example, a dict or a tuple" in str(errors[0])
