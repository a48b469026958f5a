"""When examples fail: what Evaluate says, when it stops early, and when it raises (the Python API).

The command-line side of the same failures is in test_cli_failures.py.
"""

from __future__ import annotations

import asyncio
import io
import json
import re
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

import promptless as pl
from promptless.errors import (
    ConfigurationError,
    EvaluationError,
    LMAuthenticationError,
    LMConnectionError,
    LMError,
    LMNotFoundError,
    LMRateLimitError,
)
from promptless.evaluate import EvaluationResult, ParallelRunner, exact_match
from promptless.evaluate.result import error_kind
from promptless.lm.retry import RetryPolicy


def devset(n: int) -> list[pl.Example]:
    return [pl.Example(question=f"q-{i}", answer=f"answer-{i}").with_inputs("question") for i in range(n)]


def _q(messages) -> str:
    m = re.search(r"\bq-\d+", messages[-1].content)
    assert m is not None
    return m.group(0)


def scripted(fail: dict[str, Exception] | None = None, *, delay: float = 0.0) -> pl.ScriptedLM:
    """Answers 'answer-<n>' to 'q-<n>', or raises the exception given for that question."""
    fail = fail or {}

    def reply(messages):
        q = _q(messages)
        if delay:
            time.sleep(delay)
        if q in fail:
            raise fail[q]
        return f"[[ ## answer ## ]]\n{q.replace('q-', 'answer-')}\n\n[[ ## completed ## ]]"

    return pl.ScriptedLM(reply)


def program(lm) -> pl.Predict:
    return pl.Predict("question -> answer", lm=lm)


def every(n: int, exc: Exception) -> dict[str, Exception]:
    return {f"q-{i}": exc for i in range(n)}


# -- errors that hit every example stop the run at once ------------------------------------------------------


@pytest.mark.parametrize("exc, why", [
    (LMAuthenticationError("401 Unauthorized; set OPENAI_API_KEY", status=401), "refused the credentials"),
    (LMNotFoundError("404 Not Found: no model 'gpt-5o'", status=404), "does not know this model"),
    (ConfigurationError("no LM is configured"), "a setting is missing or wrong"),
])
def test_a_setup_error_stops_at_the_first_example(exc, why):
    lm = scripted(every(20, exc))
    with pytest.raises(EvaluationError) as info:
        pl.Evaluate(devset=devset(20), metric=exact_match, display_progress=False)(program(lm))
    text = str(info.value)
    assert text.startswith(f"evaluation stopped at example 0: {type(exc).__name__}: ")
    assert str(exc).splitlines()[0] in text and why in text.lower()
    partial = info.value.result
    assert isinstance(partial, EvaluationResult) and partial.stopped and partial.stop_reason == "halted"
    assert len(lm.requests) == 1 and partial.n_errors == 1
    assert [r.skipped for r in partial.rows] == [False] + [True] * 19
    assert partial.rows[0].error_kind == type(exc).__name__


def test_a_setup_error_after_successes_still_stops():
    lm = scripted({"q-3": LMAuthenticationError("403 Forbidden", status=403)})
    with pytest.raises(EvaluationError, match="example 3: LMAuthenticationError: 403 Forbidden") as info:
        pl.Evaluate(devset=devset(10), metric=exact_match, display_progress=False)(program(lm))
    assert [r.ok for r in info.value.result.rows[:3]] == [True] * 3 and info.value.result.rows[4].skipped


def test_an_account_out_of_quota_stops_but_a_rate_limit_does_not():
    quota = LMRateLimitError("429 insufficient_quota", status=429)
    quota.retryable = False
    with pytest.raises(EvaluationError, match="no quota left"):
        pl.Evaluate(devset=devset(5), metric=exact_match, display_progress=False)(program(scripted(every(5, quota))))
    limited = scripted({"q-0": LMRateLimitError("429 slow down", status=429)})  # after its retries: one miss
    result = pl.Evaluate(devset=devset(5), metric=exact_match, display_progress=False)(program(limited))
    assert result.n_errors == 1 and result.score == 80.0 and not result.stopped


def test_a_setup_error_stops_a_threaded_run_too():
    lm = scripted(every(60, LMAuthenticationError("401", status=401)), delay=0.01)
    with pytest.raises(EvaluationError) as info:
        pl.Evaluate(devset=devset(60), metric=exact_match, num_threads=4, display_progress=False)(program(lm))
    started = sum(not r.skipped for r in info.value.result.rows)
    assert 1 <= started <= 8 and len(lm.requests) == started  # what was in flight, nothing more


def test_a_setup_error_stops_the_async_path_too():
    lm = scripted(every(10, LMAuthenticationError("401", status=401)))
    evaluate = pl.Evaluate(devset=devset(10), metric=exact_match, num_threads=1, display_progress=False)
    with pytest.raises(EvaluationError, match="stopped at example 0") as info:
        asyncio.run(evaluate.acall(program(lm)))
    assert sum(r.skipped for r in info.value.result.rows) == 9


def test_a_wrapped_setup_error_is_recognised():
    class Wrapper(pl.Module):
        def forward(self, question):
            try:
                raise LMAuthenticationError("401 no key", status=401)
            except LMError as exc:
                raise RuntimeError("the retriever failed") from exc

    with pytest.raises(EvaluationError, match="refused the credentials"):
        pl.Evaluate(devset=devset(5), metric=exact_match, display_progress=False)(Wrapper())


def test_connection_errors_stop_before_any_success_or_three_in_a_row():
    down = LMConnectionError("connection refused")
    with pytest.raises(EvaluationError, match="cannot be reached") as info:
        pl.Evaluate(devset=devset(8), metric=exact_match, display_progress=False)(program(scripted(every(8, down))))
    assert info.value.result.n_errors == 1

    # after a success, a single dropped connection is a miss; three in a row stop the run
    lm = scripted({"q-1": down, "q-3": down, "q-4": down, "q-5": down})
    with pytest.raises(EvaluationError, match="example 1: LMConnectionError") as info:
        pl.Evaluate(devset=devset(10), metric=exact_match, display_progress=False)(program(lm))
    rows = info.value.result.rows
    assert [r.ok for r in rows[:6]] == [True, False, True, False, False, False]
    assert all(r.skipped for r in rows[6:])

    lm = scripted({"q-1": down, "q-4": down})
    result = pl.Evaluate(devset=devset(6), metric=exact_match, display_progress=False)(program(lm))
    assert result.n_errors == 2 and not result.stopped


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_connection_refused_by_a_real_client_stops_after_its_retries():
    lm = pl.LM("openai/some-model", base_url=f"http://127.0.0.1:{_closed_port()}/v1", api_key="k", cache=False,
               retry=RetryPolicy(max_attempts=2, initial_delay=0.01, jitter=False))
    started = time.perf_counter()
    with pytest.raises(EvaluationError) as info:
        pl.Evaluate(devset=devset(30), metric=exact_match, display_progress=False)(program(lm))
    assert time.perf_counter() - started < 10
    partial = info.value.result
    assert partial.rows[0].error_kind == "LMConnectionError" and partial.n_errors == 1
    assert "check that the server is running" in str(info.value)


class _Refuses(BaseHTTPRequestHandler):
    calls = 0

    def do_POST(self):
        type(self).calls += 1
        body = json.dumps({"error": {"message": "Incorrect API key provided", "code": "invalid_api_key"}}).encode()
        self.send_response(401)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def refusing_server():
    _Refuses.calls = 0
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Refuses)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/v1", _Refuses
    httpd.shutdown()
    httpd.server_close()


def test_a_401_from_a_real_server_stops_at_once(refusing_server):
    url, handler = refusing_server
    lm = pl.LM("openai/gpt-4o-mini", base_url=url, api_key="", cache=False)
    with pytest.raises(EvaluationError) as info:
        pl.Evaluate(devset=devset(30), metric=exact_match, num_threads=4, display_progress=False)(program(lm))
    text = str(info.value)
    assert "LMAuthenticationError: 401" in text and "Incorrect API key provided" in text
    assert "set OPENAI_API_KEY" in text
    assert handler.calls <= 4  # never retried; at most what the four threads had in flight


# -- metric errors ----------------------------------------------------------------------------------------------


def test_the_same_metric_error_on_the_first_three_examples_stops_the_run():
    def typo(example, pred, trace=None):
        return example.answer == pred.answr

    lm = scripted()
    with pytest.raises(EvaluationError) as info:
        pl.Evaluate(devset=devset(20), metric=typo, display_progress=False)(program(lm))
    text = str(info.value)
    assert "the same error on the first 3 examples" in text and "AttributeError in the metric" in text
    partial = info.value.result
    assert len(lm.requests) == 3 and sum(r.skipped for r in partial.rows) == 17
    # the program's predictions are kept in the rows the metric could not score
    assert [r.prediction.answer for r in partial.rows[:3]] == ["answer-0", "answer-1", "answer-2"]
    assert partial.error_counts() == {"AttributeError in the metric": 3}


def test_a_wrong_field_for_a_named_metric_stops_the_run():
    with pytest.raises(EvaluationError, match="no field 'answr'"):
        pl.Evaluate(devset=devset(10), metric=pl.evaluate.ExactMatch("answr"), display_progress=False)(
            program(scripted()))


def test_metric_errors_on_some_examples_do_not_stop():
    def fussy(example, pred, trace=None):
        if example.question in ("q-0", "q-2"):
            raise ValueError(f"cannot score {example.question}")
        return True

    result = pl.Evaluate(devset=devset(6), metric=fussy, display_progress=False)(program(scripted()))
    assert result.n_errors == 2 and result.score == pytest.approx(100 * 4 / 6) and not result.stopped
    assert result.rows[0].prediction.answer == "answer-0"
    assert result.rows[0].error == "ValueError in the metric: cannot score q-0"


def test_different_metric_errors_do_not_stop():
    def varied(example, pred, trace=None):
        if example.question in ("q-0", "q-1", "q-2"):
            raise ValueError(f"cannot score {example.question}")
        return True

    result = pl.Evaluate(devset=devset(5), metric=varied, display_progress=False)(program(scripted()))
    assert result.n_errors == 3 and result.score == 40.0


# -- every example failed ------------------------------------------------------------------------------------


def test_a_run_where_every_example_failed_raises_with_the_counts():
    fail = {f"q-{i}": LMError(f"backend hiccup {i}") for i in range(4)}
    lm = pl.ScriptedLM(lambda m: (_ for _ in ()).throw(fail[_q(m)]) if _q(m) in fail else "[[ ## thoughts ## ]]\nhm")
    with pytest.raises(EvaluationError) as info:
        pl.Evaluate(devset=devset(6), metric=exact_match, display_progress=False)(program(lm))
    text = str(info.value)
    assert text.startswith("every one of the 6 examples failed (4 LMError, 2 ParseError)")
    assert "First error (example 0): LMError: backend hiccup 0." in text
    partial = info.value.result
    assert partial.stop_reason == "all_failed" and not partial.stopped and partial.n_errors == 6
    assert not any(r.skipped for r in partial.rows)


def test_async_every_example_failed_raises():
    async def broken(question):
        raise ValueError("nope")

    class Broken(pl.Module):
        async def aforward(self, question):
            return await broken(question)

    with pytest.raises(EvaluationError, match="every one of the 3 examples failed"):
        asyncio.run(pl.Evaluate(devset=devset(3), metric=exact_match, display_progress=False).acall(Broken()))


def test_some_failures_print_the_count_per_kind_and_the_first_error(capsys):
    lm = scripted({"q-1": LMError("backend down for q-1"), "q-2": LMError("backend down for q-2")})
    result = pl.Evaluate(devset=devset(5), metric=exact_match)(program(lm))
    err = capsys.readouterr().err
    assert "2 of 5 examples failed (2 LMError); first error (example 1): LMError: backend down for q-1" in err
    assert result.errors_summary() in err and result.score == 60.0
    assert pl.Evaluate(devset=devset(5), metric=exact_match, display_progress=False)(program(scripted())).n_errors == 0
    assert capsys.readouterr().err == ""  # quiet when asked


def test_error_kinds_from_texts():
    assert error_kind("ParseError: could not parse\n--- raw reply ---") == "ParseError"
    assert error_kind("KeyError in the metric: 'answr'") == "KeyError in the metric"
    tb = 'Traceback (most recent call last):\n  File "x.py", line 1, in f\npromptless.errors.LMError: down'
    assert error_kind(tb) == "LMError" and error_kind("in the metric: " + tb) == "LMError in the metric"
    assert error_kind("something odd") == "error" and error_kind(None) == "error"


def test_tracebacks_still_name_the_kind():
    lm = scripted({"q-0": LMError("down")})
    result = pl.Evaluate(devset=devset(2), metric=exact_match, display_progress=False, provide_traceback=True)(
        program(lm))
    assert result.rows[0].error.startswith("Traceback") and result.rows[0].error_kind == "LMError"
    assert "first error (example 0): LMError: down" in result.errors_summary()


# -- predictions as they come -----------------------------------------------------------------------------------


def test_predictions_one_line_each_without_a_terminal(capsys):
    lm = scripted({"q-2": LMError("down")})
    pl.Evaluate(devset=devset(4), metric=exact_match, display_predictions=True)(
        program(lm), devset=[*devset(3), pl.Example(question="q-3", answer="other").with_inputs("question")])
    lines = [ln for ln in capsys.readouterr().err.splitlines() if ln.startswith("[")]
    assert lines == [
        "[1/4] right  example 0: q-0 | gold: answer-0 | predicted: answer-0",
        "[2/4] right  example 1: q-1 | gold: answer-1 | predicted: answer-1",
        "[3/4] error  example 2: q-2 | gold: answer-2 | predicted: LMError",
        "[4/4] wrong  example 3: q-3 | gold: other | predicted: answer-3",
    ]


def test_predictions_under_the_live_bar(monkeypatch):
    import sys

    buf = io.StringIO()
    monkeypatch.setattr(sys, "stderr", buf)
    result = pl.Evaluate(devset=devset(12), metric=exact_match, display_progress="always",
                         display_predictions=3)(program(scripted({"q-11": LMError("down")})))
    assert result.n_errors == 1
    text = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", buf.getvalue())
    assert "Evaluating" in text and "12/12" in text
    tail = text[text.rindex("Evaluating"):]  # the last frame: the bar, then the last three predictions
    assert "answer-9" in tail and "answer-10" in tail and "LMError" in tail and "answer-8 " not in tail
    assert tail.index("12/12") < tail.index("answer-9") and "right" in tail and "error" in tail


def test_display_predictions_is_checked():
    with pytest.raises(ConfigurationError, match="display_predictions"):
        pl.Evaluate(devset=devset(1), metric=exact_match, display_predictions=-1)(program(scripted()))


# -- the runner's halt hook ---------------------------------------------------------------------------------


def test_runner_halt_stops_starting_new_items():
    seen: list[int] = []

    def fn(i: int) -> int:
        seen.append(i)
        if i == 2:
            raise KeyError("stop here")
        return i

    def halt(outcome):
        return outcome.error

    report = ParallelRunner(1, halt=halt).run(fn, range(6))
    assert seen == [0, 1, 2] and report.stopped and isinstance(report.halted, KeyError)
    assert [o.started for o in report.outcomes] == [True, True, True, False, False, False]

    async def afn(i: int) -> int:
        return fn(i)

    seen.clear()
    areport = asyncio.run(ParallelRunner(1, halt=halt).arun(afn, range(6)))
    assert seen == [0, 1, 2] and areport.stopped and isinstance(areport.halted, KeyError)
    assert ParallelRunner(1, halt=lambda o: None).run(fn, [0, 1]).halted is None
