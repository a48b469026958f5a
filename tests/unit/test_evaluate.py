"""Evaluate and the parallel runner, with the scripted LM."""

from __future__ import annotations

import asyncio
import csv
import io
import json
import random
import re
import threading
import time

import pytest

import promptless as pl
from promptless.errors import ConfigurationError, EvaluationError, LMError
from promptless.evaluate import EvaluationResult, ParallelRunner, display_table, exact_match
from promptless.types import Message


def _question(messages: list[Message]) -> str:
    m = re.search(r"\bq-\d+", messages[-1].content)  # the chat and the JSON fallback format alike
    assert m is not None
    return m.group(0)


def _answer(text: str) -> str:
    return f"[[ ## answer ## ]]\n{text}\n\n[[ ## completed ## ]]"


def echo_lm(*, sleep: float = 0.0, fail: set[str] = frozenset(), garbage: set[str] = frozenset(),
            order: list[str] | None = None) -> pl.ScriptedLM:
    """Answers 'answer-<n>' to 'q-<n>'; sleeps a random time up to ``sleep``; fails or babbles on request."""
    lock = threading.Lock()

    def reply(messages: list[Message]) -> str:
        q = _question(messages)
        if sleep:
            time.sleep(random.uniform(0, sleep))
        if order is not None:
            with lock:
                order.append(q)
        if q in fail:
            raise LMError(f"backend down for {q}", model="scripted")
        if q in garbage:
            return "[[ ## thoughts ## ]]\nI cannot help with that."
        return _answer(q.replace("q-", "answer-"))

    return pl.ScriptedLM(reply)


def devset(n: int) -> list[pl.Example]:
    return [pl.Example(question=f"q-{i}", answer=f"answer-{i}").with_inputs("question") for i in range(n)]


def test_scores_and_rows_in_input_order_under_threads():
    order: list[str] = []
    lm = echo_lm(sleep=0.02, order=order)
    data = devset(40)
    program = pl.Predict("question -> answer", lm=lm)
    result = pl.Evaluate(devset=data, metric=exact_match, num_threads=8, display_progress=False)(program)
    assert result.score == 100.0
    assert [r.index for r in result.rows] == list(range(40))
    assert [r.example for r in result.rows] == data
    assert [r.prediction.answer for r in result.rows] == [f"answer-{i}" for i in range(40)]
    assert sorted(order) == sorted(f"q-{i}" for i in range(40))
    assert order != [f"q-{i}" for i in range(40)], "completion order should differ from input order"
    assert result.usage.calls == 40 and float(result) == 100.0


def test_wrong_answers_lower_the_score():
    lm = pl.ScriptedLM(lambda m: _answer("answer-0"))
    result = pl.Evaluate(devset=devset(4), metric=exact_match, display_progress=False)(
        pl.Predict("question -> answer", lm=lm))
    assert result.score == 25.0
    assert [r.score for r in result.rows] == [1.0, 0.0, 0.0, 0.0]
    assert result.n_errors == 0


def test_failures_count_as_misses_with_their_message():
    lm = echo_lm(fail={"q-1"}, garbage={"q-3"})
    result = pl.Evaluate(devset=devset(5), metric=exact_match, num_threads=2, display_progress=False)(
        pl.Predict("question -> answer", lm=lm))
    assert result.n_errors == 2
    assert result.score == pytest.approx(60.0)
    bad = {r.index: r for r in result.rows if r.error}
    assert set(bad) == {1, 3}
    assert bad[1].error.startswith("LMError: backend down for q-1")
    assert bad[3].error.startswith("ParseError") and "I cannot help with that." in bad[3].error
    assert bad[1].prediction is None and bad[1].score == 0.0
    assert all(r.ok for r in result.rows if r.index not in bad)


def test_failure_score_and_traceback():
    lm = echo_lm(fail={"q-0"})
    result = pl.Evaluate(devset=devset(2), metric=exact_match, display_progress=False, failure_score=0.5,
                         provide_traceback=True)(pl.Predict("question -> answer", lm=lm))
    assert result.rows[0].score == 0.5 and result.score == 75.0
    assert "Traceback (most recent call last)" in result.rows[0].error


def test_metric_errors_and_bad_metric_values_are_row_errors():
    lm = echo_lm()

    def returns_none(example, pred, trace=None):
        return None

    def picky(example, pred, trace=None):
        if example.question == "q-1":
            raise KeyError("answr")
        return None if example.question == "q-2" else True

    result = pl.Evaluate(devset=devset(4), metric=picky, display_progress=False)(
        pl.Predict("question -> answer", lm=lm))
    assert result.n_errors == 2 and result.score == 50.0
    assert result.rows[1].error == "KeyError in the metric: 'answr'"
    assert result.rows[1].error_kind == "KeyError in the metric"
    assert "a metric must return a bool or a number" in result.rows[2].error
    # the program did answer: the row keeps its prediction
    assert result.rows[1].prediction.answer == "answer-1" and result.rows[2].prediction.answer == "answer-2"
    assert result.error_counts() == {"KeyError in the metric": 1, "ConfigurationError in the metric": 1}

    with pytest.raises(EvaluationError, match="every one of the 2 examples failed") as info:
        pl.Evaluate(devset=devset(2), metric=returns_none, display_progress=False)(
            pl.Predict("question -> answer", lm=lm))
    assert "a metric must return a bool or a number" in str(info.value)
    assert [r.prediction.answer for r in info.value.result.rows] == ["answer-0", "answer-1"]


def test_max_errors_stops_and_raises_with_the_partial_result():
    lm = echo_lm(fail={f"q-{i}" for i in range(10)})
    evaluate = pl.Evaluate(devset=devset(10), metric=exact_match, display_progress=False, max_errors=2)
    with pytest.raises(EvaluationError, match="more than max_errors=2") as info:
        evaluate(pl.Predict("question -> answer", lm=lm))
    partial = info.value.result
    assert isinstance(partial, EvaluationResult) and partial.stopped
    assert partial.n_errors == 3
    assert [r.skipped for r in partial.rows] == [False] * 3 + [True] * 7
    assert len(lm.requests) == 3  # nothing started after the third failure
    assert partial.score == 0.0


def test_max_errors_with_threads_stops_starting_new_examples():
    lm = echo_lm(sleep=0.01, fail={f"q-{i}" for i in range(50)})
    evaluate = pl.Evaluate(devset=devset(50), metric=exact_match, display_progress=False, max_errors=3,
                           num_threads=4)
    with pytest.raises(EvaluationError) as info:
        evaluate(pl.Predict("question -> answer", lm=lm))
    partial = info.value.result
    started = sum(not r.skipped for r in partial.rows)
    assert 4 <= started <= 4 + 3  # the errors, plus what was in flight
    assert partial.n_errors == started


def test_errors_within_max_errors_do_not_stop():
    lm = echo_lm(fail={"q-0", "q-1"})
    result = pl.Evaluate(devset=devset(5), metric=exact_match, display_progress=False, max_errors=2)(
        pl.Predict("question -> answer", lm=lm))
    assert result.n_errors == 2 and not result.stopped and result.score == 60.0


def test_context_lm_reaches_worker_threads():
    lm = echo_lm(sleep=0.005)
    program = pl.Predict("question -> answer")  # no LM of its own
    evaluate = pl.Evaluate(devset=devset(12), metric=exact_match, num_threads=4, display_progress=False)
    with pl.context(lm=lm):
        result = evaluate(program)
    assert result.score == 100.0 and result.n_errors == 0
    assert len(lm.requests) == 12
    with pytest.raises(EvaluationError, match="no LM is configured") as info:
        evaluate(program)  # outside the block there is no LM: the first failure stops the run, with the reason
    outside = info.value.result
    assert outside.stop_reason == "halted" and "no LM is configured" in outside.rows[0].error
    assert outside.n_errors <= 4 and sum(r.skipped for r in outside.rows) >= 8  # 4 threads: at most 4 ran


def test_usage_counts_only_this_run():
    lm = echo_lm()
    program = pl.Predict("question -> answer", lm=lm)
    program(question="q-99")
    result = pl.Evaluate(devset=devset(3), metric=exact_match, display_progress=False)(program)
    assert result.usage.calls == 3
    assert result.usage.prompt_tokens > 0 and result.usage.completion_tokens > 0


def test_plain_function_program_and_overrides():
    def program(question: str) -> pl.Prediction:
        return pl.Prediction(answer=question.replace("q-", "answer-"))

    evaluate = pl.Evaluate(devset=devset(3), metric=exact_match, display_progress=False)
    assert evaluate(program).score == 100.0
    other = devset(6)[3:]
    result = evaluate(program, devset=other, metric=lambda ex, pred, trace=None: 0.5)
    assert [r.example for r in result.rows] == other and result.score == 50.0
    with pytest.raises(ConfigurationError, match="unknown option"):
        evaluate(program, num_thread=3)


def test_setup_errors_are_clear():
    with pytest.raises(ConfigurationError, match="needs a metric"):
        pl.Evaluate(devset=devset(1))(lambda question: None)
    unmarked = [pl.Example(question="q", answer="a")]
    with pytest.raises(ConfigurationError, match="with_inputs"):
        pl.Evaluate(devset=unmarked, metric=exact_match)(lambda question: None)
    with pytest.raises(ConfigurationError, match="num_threads"):
        pl.Evaluate(devset=devset(1), metric=exact_match, num_threads=-2)(lambda question: None)


def test_export_json_and_csv_round_trip(tmp_path):
    lm = echo_lm(fail={"q-2"})
    data = [pl.Example(question=f"q-{i}", answer=f"answer-{i}", tags=["x", i]).with_inputs("question")
            for i in range(4)]
    result = pl.Evaluate(devset=data, metric=exact_match, display_progress=False)(
        pl.Predict("question -> answer", lm=lm))
    path = result.to_json(tmp_path / "out" / "r.json")
    loaded = EvaluationResult.load_json(path)
    assert loaded.score == result.score == 75.0
    assert loaded.n_errors == 1 and loaded.usage.calls == result.usage.calls
    assert [r.example for r in loaded.rows] == data
    assert loaded.rows[0].example.inputs().to_dict() == {"question": "q-0"}
    assert loaded.rows[1].prediction.answer == "answer-1"
    assert loaded.rows[2].prediction is None and loaded.rows[2].error.startswith("LMError")
    raw = json.loads(path.read_text())
    assert raw["rows"][3] == {"index": 3, "inputs": {"question": "q-3"}, "labels": {"answer": "answer-3",
                              "tags": ["x", 3]}, "prediction": {"answer": "answer-3"}, "score": 1.0,
                              "error": None, "error_kind": None, "skipped": False,
                              "seconds": raw["rows"][3]["seconds"]}
    assert raw["rows"][2]["error_kind"] == "LMError" and loaded.rows[2].error_kind == "LMError"

    csv_path = result.to_csv(tmp_path / "r.csv")
    with csv_path.open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert list(rows[0]) == ["index", "question", "gold_answer", "gold_tags", "pred_answer", "score", "error"]
    assert [r["question"] for r in rows] == ["q-0", "q-1", "q-2", "q-3"]
    assert [float(r["score"]) for r in rows] == [1.0, 1.0, 0.0, 1.0]
    assert json.loads(rows[1]["gold_tags"]) == ["x", 1]
    assert rows[2]["pred_answer"] == "" and rows[2]["error"].startswith("LMError")


def test_save_as_options(tmp_path):
    evaluate = pl.Evaluate(devset=devset(2), metric=exact_match, display_progress=False,
                           save_as_json=tmp_path / "a.json", save_as_csv=tmp_path / "a.csv")
    evaluate(lambda question: pl.Prediction(answer="answer-0"))
    assert json.loads((tmp_path / "a.json").read_text())["score"] == 50.0
    assert (tmp_path / "a.csv").read_text().count("\n") == 3


def test_async_path_keeps_order_and_counts_usage():
    lm = echo_lm(sleep=0.02)
    program = pl.Predict("question -> answer", lm=lm)
    evaluate = pl.Evaluate(devset=devset(16), metric=exact_match, num_threads=4, display_progress=False)
    result = asyncio.run(evaluate.acall(program))
    assert result.score == 100.0
    assert [r.prediction.answer for r in result.rows] == [f"answer-{i}" for i in range(16)]
    assert result.usage.calls == 16


def test_async_program_with_out_of_order_completion_and_max_errors():
    finished: list[int] = []

    class Slow(pl.Module):
        async def aforward(self, question: str) -> pl.Prediction:
            i = int(question.split("-")[1])
            await asyncio.sleep(0.002 * (10 - i))
            finished.append(i)
            if i == 7:
                raise ValueError("seven is unlucky")
            return pl.Prediction(answer=f"answer-{i}")

    evaluate = pl.Evaluate(devset=devset(10), metric=exact_match, num_threads=10, display_progress=False)
    result = asyncio.run(evaluate.acall(Slow()))
    assert finished != sorted(finished)
    assert [r.index for r in result.rows] == list(range(10))
    assert result.rows[7].error == "ValueError: seven is unlucky" and result.score == 90.0

    failing = pl.Evaluate(devset=devset(10), metric=exact_match, num_threads=1, display_progress=False,
                          max_errors=0)
    finished.clear()
    with pytest.raises(EvaluationError) as info:
        asyncio.run(failing.acall(Slow()))
    assert info.value.result.rows[8].skipped and finished == list(range(8))


def test_async_with_a_plain_function_program():
    evaluate = pl.Evaluate(devset=devset(3), metric=exact_match, display_progress=False)
    result = asyncio.run(evaluate.acall(lambda question: pl.Prediction(answer=question.replace("q", "answer"))))
    assert result.score == 100.0


def test_display_table_and_summary(capsys):
    from rich.console import Console

    lm = echo_lm(fail={"q-1"})
    result = pl.Evaluate(devset=devset(4), metric=exact_match, display_progress=True)(
        pl.Predict("question -> answer", lm=lm))
    err = capsys.readouterr().err
    assert "Evaluated: 75.00% on 4 examples (1 failed)" in err  # stderr is not a terminal under pytest
    buf = io.StringIO()
    display_table(result, 3, console=Console(file=buf, width=120))
    text = buf.getvalue()
    assert "first 3 of 4" in text and "predicted answer" in text and "gold answer" in text
    assert "answer-0" in text and "LMError: backend down for q-1" in text and "q-3" not in text
    assert re.search(r"┃ error\s*┃", text)


def test_the_error_column_shows_when_no_row_succeeded():
    from rich.console import Console

    lm = echo_lm(fail={"q-0", "q-1", "q-2"})
    with pytest.raises(EvaluationError) as info:
        pl.Evaluate(devset=devset(3), metric=exact_match, display_progress=False)(
            pl.Predict("question -> answer", lm=lm))
    buf = io.StringIO()
    display_table(info.value.result, None, console=Console(file=buf, width=160))
    text = buf.getvalue()
    assert "error" in text and text.count("LMError: backend down for q-") == 3


def test_display_table_option_prints_rows(capsys):
    pl.Evaluate(devset=devset(3), metric=exact_match, display_progress=False, display_table=2)(
        lambda question: pl.Prediction(answer="answer-0"))
    out = capsys.readouterr().out
    assert "q-0" in out and "q-1" in out and "q-2" not in out


# -- the runner on its own -----------------------------------------------------------------


def test_runner_order_progress_and_errors():
    seen: list[tuple[int, int, threading.Thread]] = []

    def fn(i: int) -> int:
        time.sleep(0.001 * (8 - i % 8))
        if i == 5:
            raise KeyError(i)
        return i * i

    runner = ParallelRunner(4, progress=lambda done, total, o: seen.append((done, total, threading.current_thread())))
    report = runner.run(fn, range(12))
    assert report.values() == [i * i if i != 5 else None for i in range(12)]
    assert report.n_errors == 1 and not report.stopped
    assert isinstance(report.outcomes[5].error, KeyError) and "KeyError" in report.outcomes[5].traceback
    assert [d for d, _, _ in seen] == list(range(1, 13)) and {t for _, t, _ in seen} == {12}
    assert all(th is threading.main_thread() for _, _, th in seen)


def test_runner_workers_see_the_callers_context_not_each_other():
    import contextvars

    var: contextvars.ContextVar[str] = contextvars.ContextVar("var", default="unset")
    var.set("caller")

    def fn(i: int) -> str:
        before = var.get()
        var.set(f"item-{i}")  # private to this item
        time.sleep(0.001)
        return f"{before}/{var.get()}"

    report = ParallelRunner(3).run(fn, range(6))
    assert report.values() == [f"caller/item-{i}" for i in range(6)]
    assert var.get() == "caller"


def test_runner_async_stop():
    async def fn(i: int) -> int:
        await asyncio.sleep(0)
        raise RuntimeError("no")

    report = asyncio.run(ParallelRunner(1, max_errors=1).arun(fn, range(5)))
    assert report.stopped and report.n_errors == 2 and report.n_started == 2


def test_classifier_task_with_evaluate(classify_signature):
    from promptless.datasets import CATEGORIES
    from promptless.tasks import ClassifyEvent, category_match, load_events, make_classifier

    assert ClassifyEvent.output_fields["category"].annotation.__args__ == CATEGORIES
    dev = load_events("dev", limit=6)
    assert len(dev) == 6 and dev[0].input_keys == frozenset({"event"})
    gold = {ex.event: ex.category for ex in dev}

    def reply(messages: list[Message]) -> str:
        event = messages[-1].content.split("[[ ## event ## ]]\n", 1)[1].split("\n\n")[0]
        category = gold[event] if len(event) % 2 else "Economic Events"
        return f"[[ ## category ## ]]\n{category}\n\n[[ ## confidence ## ]]\n0.8\n\n[[ ## completed ## ]]"

    result = pl.Evaluate(devset=dev, metric=category_match, display_progress=False)(
        make_classifier(lm=pl.ScriptedLM(reply)))
    expected = [1.0 if len(ex.event) % 2 or ex.category == "Economic Events" else 0.0 for ex in dev]
    assert [r.score for r in result.rows] == expected
    assert all(r.prediction.confidence == 0.8 for r in result.rows)
