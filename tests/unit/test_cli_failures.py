"""The command line when things fail: exit status, the one-line reason, and the checks every command shares.

``promptless eval``, ``demo`` and ``optimize`` through ``promptless.cli.main``, with scripted LMs, a closed
port on 127.0.0.1 (connection refused) and a tiny local server that answers 401.
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import textwrap
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

import promptless as pl
from promptless.cli import main
from promptless.errors import ConfigurationError

PROGRAM = '''
import promptless as pl
from promptless.errors import LMAuthenticationError, LMError
from promptless.lm.retry import RetryPolicy

PORT = {port}


def answer(messages):
    question = messages[-1].content.split("[[ ## question ## ]]\\n", 1)[1].split("\\n", 1)[0]
    if question == "bern":
        raise LMError("backend hiccup on bern")
    return f"[[ ## answer ## ]]\\n{{question.upper()}}\\n\\n[[ ## completed ## ]]"


def refuse(messages):
    raise LMAuthenticationError("401 Unauthorized from POST /chat/completions; set OPENAI_API_KEY", status=401)


def hiccup(messages):
    raise LMError("backend hiccup")


program = pl.Predict("question -> answer", lm=pl.ScriptedLM(answer))
refused = pl.Predict("question -> answer", lm=pl.ScriptedLM(refuse))
broken = pl.Predict("question -> answer", lm=pl.ScriptedLM(hiccup))
no_lm = pl.Predict("question -> answer")
unreachable = pl.Predict("question -> answer", lm=pl.LM(
    "openai/some-model", base_url=f"http://127.0.0.1:{{PORT}}/v1", api_key="k", cache=False,
    retry=RetryPolicy(max_attempts=2, initial_delay=0.01, jitter=False)))


def typo(example, pred, trace=None):
    return example.answer == pred.answr
'''

DATA = [
    {"question": "paris", "answer": "PARIS"},
    {"question": "rome", "answer": "Roma"},
    {"question": "oslo", "answer": "OSLO"},
    {"question": "bern", "answer": "BERN"},
]


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def workspace(tmp_path, monkeypatch, request):
    name = re.sub(r"\W", "_", f"failprog_{request.node.name}", flags=re.ASCII)
    (tmp_path / f"{name}.py").write_text(textwrap.dedent(PROGRAM.format(port=_closed_port())))
    (tmp_path / "dev.jsonl").write_text("\n".join(json.dumps(r) for r in DATA) + "\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    yield tmp_path, name
    sys.modules.pop(name, None)


class _Refuses(BaseHTTPRequestHandler):
    calls = 0

    def do_POST(self):
        type(self).calls += 1
        body = json.dumps({"error": {"message": "You didn't provide an API key."}}).encode()
        self.send_response(401)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def refusing_server(monkeypatch):
    """An OpenAI-compatible address that answers 401 to everything, as $OPENAI_BASE_URL, with no key set."""
    _Refuses.calls = 0
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Refuses)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    monkeypatch.setenv("OPENAI_BASE_URL", f"http://127.0.0.1:{httpd.server_address[1]}/v1")
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    yield _Refuses
    httpd.shutdown()
    httpd.server_close()


def _eval(name: str, attr: str, *extra: str) -> int:
    return main(["eval", f"{name}:{attr}", "dev.jsonl", "--no-progress", "--threads", "1", *extra])


# -- promptless eval: failures that explain themselves ---------------------------------------------------------


def test_eval_stops_at_a_refused_key_with_status_1(workspace, capsys):
    tmp, name = workspace
    assert _eval(name, "refused", "--out", "partial.json") == 1
    out, err = capsys.readouterr()
    assert "error: evaluation stopped at example 0: LMAuthenticationError: 401 Unauthorized" in err
    assert "set OPENAI_API_KEY" in err and "refused the credentials" in err
    assert "error" in out and "LMAuthenticationError: 401" in out  # the table's error column, no row succeeded
    assert "score:" not in out
    data = json.loads((tmp / "partial.json").read_text())
    assert data["stop_reason"] == "halted" and [r["skipped"] for r in data["rows"]] == [False, True, True, True]


def test_eval_stops_when_the_server_refuses_the_connection(workspace, capsys):
    _, name = workspace
    assert _eval(name, "unreachable") == 1
    err = capsys.readouterr().err
    assert "evaluation stopped at example 0: LMConnectionError" in err and "cannot be reached" in err


def test_eval_with_a_model_and_no_key_against_a_server_that_says_401(workspace, refusing_server, capsys):
    _, name = workspace
    code = main(["eval", f"{name}:no_lm", "dev.jsonl", "--model", "openai/gpt-4o-mini", "--no-progress",
                 "--no-cache", "--threads", "2"])
    assert code == 1
    err = capsys.readouterr().err
    assert "LMAuthenticationError: 401" in err and "no API key was set" in err
    assert refusing_server.calls <= 2


def test_eval_without_a_key_for_the_openai_api_stops_before_any_request(workspace, monkeypatch, capsys):
    _, name = workspace
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    assert main(["eval", f"{name}:no_lm", "dev.jsonl", "--model", "openai/gpt-4o-mini", "--no-progress"]) == 1
    assert "openai/gpt-4o-mini needs an API key: set OPENAI_API_KEY" in capsys.readouterr().err


def test_eval_a_metric_with_a_typo_stops_after_three_examples(workspace, capsys):
    _, name = workspace
    (workspace[0] / "dev.jsonl").write_text("".join(json.dumps({"question": f"q{i}", "answer": "A"}) + "\n"
                                                    for i in range(10)))
    assert _eval(name, "program", "--metric", f"{name}:typo", "--out", "r.json") == 1
    err = capsys.readouterr().err
    assert "AttributeError in the metric" in err and "the same error on the first 3 examples" in err
    rows = json.loads((workspace[0] / "r.json").read_text())["rows"]
    assert [r["prediction"]["answer"] for r in rows[:3]] == ["Q0", "Q1", "Q2"]  # kept although unscored
    assert sum(r["skipped"] for r in rows) == 7


def test_eval_a_wrong_field_stops_with_the_field_named(workspace, capsys):
    _, name = workspace
    assert _eval(name, "program", "--field", "answr") == 1
    err = capsys.readouterr().err
    assert "no field 'answr'" in err and "ConfigurationError in the metric" in err


def test_eval_where_every_example_failed_exits_1_with_the_counts(workspace, capsys):
    _, name = workspace
    assert _eval(name, "broken") == 1
    out, err = capsys.readouterr()
    assert "every one of the 4 examples failed (4 LMError)" in err
    assert "First error (example 0): LMError: backend hiccup" in err
    assert out.count("LMError: backend hiccup") == 4


def test_eval_with_some_failures_succeeds_and_says_what_failed(workspace, capsys):
    _, name = workspace
    assert _eval(name, "program", "--show", "0") == 0
    out = capsys.readouterr().out
    assert "score: 50.00 (exact_match) on 4 examples, 1 failed" in out
    assert "failed: 1 of 4 examples failed (1 LMError); first error (example 3): LMError: backend hiccup on bern" \
        in out


# -- the same checks of the options everywhere ----------------------------------------------------------------


@pytest.mark.parametrize("args, message", [
    (["eval", "m:p", "dev.jsonl", "--limit", "-1"], "argument --limit: must be 1 or more, got -1"),
    (["eval", "m:p", "dev.jsonl", "--limit", "0"], "argument --limit: must be 1 or more, got 0"),
    (["eval", "m:p", "dev.jsonl", "--threads", "0"], "argument --threads: must be 1 or more, got 0"),
    (["eval", "m:p", "dev.jsonl", "--max-errors", "-2"], "argument --max-errors: must be 0 or more, got -2"),
    (["eval", "m:p", "dev.jsonl", "--show", "x"], "argument --show: must be a whole number, got 'x'"),
    (["eval", "m:p", "missing.jsonl"], "argument data: no such file: missing.jsonl"),
    (["eval", "m:p", "dev.jsonl", "--load", "nope.json"], "argument --load: no such file: nope.json"),
    (["optimize", "m:p", "dev.jsonl", "--threads", "0"], "argument --threads: must be 1 or more, got 0"),
    (["optimize", "m:p", "dev.jsonl", "--max-calls", "0"], "argument --max-calls: must be 1 or more, got 0"),
    (["optimize", "m:p", "dev.jsonl", "--max-cost", "-1"], "argument --max-cost: must be above 0, got -1"),
    (["optimize", "m:p", "dev.jsonl", "--valset", "gone.jsonl"], "argument --valset: no such file: gone.jsonl"),
    (["optimize", "m:p", "."], "argument train: not a file: ."),
    (["demo", "--limit", "-1"], "argument --limit: must be 1 or more, got -1"),
    (["demo", "--threads", "0"], "argument --threads: must be 1 or more, got 0"),
    (["demo", "--show", "-1"], "argument --show: must be 0 or more, got -1"),
])
def test_bad_options_stop_at_parse_time_with_one_line(workspace, capsys, args, message):
    with pytest.raises(SystemExit) as info:
        main(args)
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert message in err
    assert "Traceback" not in err and len([ln for ln in err.splitlines() if "error:" in ln]) == 1


@pytest.mark.parametrize("command", ["eval", "optimize"])
@pytest.mark.parametrize("content, message", [
    ('{"question": "a", "answer": "b"}\n{"question": "c", answer: "d"}\n',
     "bad.jsonl:2: not valid JSON (Expecting property name enclosed in double quotes, column 19)"),
    ('{"question": "a", "answer": "b"}\n\n["question", "c"]\n', "bad.jsonl:3: a JSON list, not an object"),
    ('{"question": "a"}\n{"query": "c"}\n', "bad.jsonl:2: the example has no field(s) question"),
    ("\n\n", "bad.jsonl holds no examples"),
    (b"\xff\xfe{}", "bad.jsonl is not UTF-8 text"),
])
def test_bad_data_files_give_one_line_with_the_file_and_line(workspace, capsys, command, content, message):
    tmp, name = workspace
    path = tmp / "bad.jsonl"
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    assert main([command, f"{name}:program", "bad.jsonl", "--no-progress"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and err.count("\n") == 1


def test_common_types_directly():
    import argparse

    from promptless.cli.common import non_negative_int, positive_float, positive_int

    assert positive_int("3") == 3 and non_negative_int("0") == 0 and positive_float("0.5") == 0.5
    for fn, bad in ((positive_int, "0"), (positive_int, "1.5"), (non_negative_int, "-1"), (positive_float, "0"),
                    (positive_float, "nan")):
        with pytest.raises(argparse.ArgumentTypeError):
            fn(bad)


# -- promptless demo -----------------------------------------------------------------------------------------------


def test_demo_with_openai_and_no_key_stops_before_any_request(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    code = main(["demo", "--model", "openai/gpt-4o-mini", "--out", str(tmp_path), "--no-progress"])
    out, err = capsys.readouterr()
    assert code == 1 and "needs an API key: set OPENAI_API_KEY" in err
    assert "Accuracy" not in out


def test_demo_against_a_server_that_says_401_exits_1_with_the_reason(tmp_path, refusing_server, capsys):
    code = main(["demo", "--model", "openai/gpt-4o-mini", "--out", str(tmp_path / "o"), "--no-progress",
                 "--no-cache", "--limit", "20", "--show", "2"])
    out, err = capsys.readouterr()
    assert code == 1
    assert "evaluation stopped at example" in err and "LMAuthenticationError: 401" in err
    assert "set OPENAI_API_KEY" in err
    assert "Accuracy" not in out and refusing_server.calls <= 8  # the threads in flight, no more
    assert "Partial results:" in out and (tmp_path / "o" / "gpt-4o-mini_dev.csv").exists()


def _demo_lm(monkeypatch, wrong: int = 0, fail: int = -1):
    from promptless.errors import LMError
    from promptless.tasks import load_events

    events = load_events("dev")
    gold = {ex.event: ex.category for ex in events}
    order = [ex.event for ex in events]

    def reply(messages):
        event = messages[-1].content.split("[[ ## event ## ]]\n", 1)[1].split("\n\n", 1)[0]
        i = order.index(event)
        if i == fail:
            raise LMError("backend hiccup")
        label = "Economic Events" if i < wrong and gold[event] != "Economic Events" else gold[event]
        return f"[[ ## category ## ]]\n{label}\n\n[[ ## confidence ## ]]\n0.9\n\n[[ ## completed ## ]]"

    monkeypatch.setattr(pl, "LM", lambda model, **options: pl.ScriptedLM(reply, model=model))


def test_demo_shows_predictions_as_they_come_and_the_failures(tmp_path, monkeypatch, capsys):
    from promptless.tasks import load_events

    _demo_lm(monkeypatch, wrong=1, fail=2)
    code = main(["demo", "--model", "openai/fake", "--limit", "4", "--threads", "1", "--no-optimize",
                 "--out", str(tmp_path), "--show", "0"])
    out, err = capsys.readouterr()
    assert code == 0
    dev = load_events("dev", 4)
    lines = [ln for ln in err.splitlines() if ln.startswith("[")]
    assert len(lines) == 4  # not a terminal under pytest: one line per example as it comes
    assert lines[0].startswith("[1/4] wrong  example 0: ") and f"gold: {dev[0].category}" in lines[0]
    assert "predicted: Economic Events" in lines[0]
    assert lines[1].startswith("[2/4] right  example 1: ") and f"predicted: {dev[1].category}" in lines[1]
    assert lines[2].startswith("[3/4] error  example 2: ") and "predicted: LMError" in lines[2]
    assert "Accuracy: 50.0% (2/4 correct)" in out
    assert "Failed, counted as wrong: 1 of 4 examples failed (1 LMError); first error (example 2): LMError: " \
           "backend hiccup" in out


def test_demo_no_progress_shows_no_predictions(tmp_path, monkeypatch, capsys):
    _demo_lm(monkeypatch)
    assert main(["demo", "--model", "openai/fake", "--limit", "3", "--no-optimize", "--out", str(tmp_path),
                 "--no-progress", "--show", "0"]) == 0
    assert not [ln for ln in capsys.readouterr().err.splitlines() if ln.startswith("[")]


# -- promptless optimize and BootstrapFewShot ----------------------------------------------------------------------


def test_bootstrap_whose_every_teacher_call_failed_raises():
    from promptless.errors import LMError

    def reply(messages):
        raise LMError("backend down")

    program = pl.Predict("question -> answer", lm=pl.ScriptedLM(reply))
    train = [pl.Example(question=f"q{i}", answer="a").with_inputs("question") for i in range(5)]
    with pytest.raises(ConfigurationError) as info:
        pl.BootstrapFewShot(metric=pl.evaluate.exact_match, max_labeled_demos=2).compile(program, trainset=train)
    text = str(info.value)
    assert "teacher program failed on every one of the 5 training examples it ran (5 LMError)" in text
    assert "First error: LMError: backend down" in text


def test_bootstrap_with_some_teacher_failures_goes_on():
    from promptless.errors import LMError

    def reply(messages):
        if "q0" in messages[-1].content:
            raise LMError("backend down")
        return "[[ ## answer ## ]]\na\n\n[[ ## completed ## ]]"

    program = pl.Predict("question -> answer", lm=pl.ScriptedLM(reply))
    train = [pl.Example(question=f"q{i}", answer="a").with_inputs("question") for i in range(5)]
    optimized = pl.BootstrapFewShot(metric=pl.evaluate.exact_match, max_bootstrapped_demos=2,
                                    max_labeled_demos=2).compile(program, trainset=train)
    assert len(optimized.demos) == 2


def test_optimize_bootstrap_where_the_teacher_always_fails_exits_1(workspace, capsys):
    _, name = workspace
    code = main(["optimize", f"{name}:broken", "dev.jsonl", "--optimizer", "bootstrap", "--quiet", "--no-progress",
                 "--out", "o.json"])
    assert code == 1
    err = capsys.readouterr().err
    assert "error: bootstrapping found nothing to learn from" in err and "4 LMError" in err


def test_optimize_reports_the_validation_failures(workspace, capsys):
    _, name = workspace
    code = main(["optimize", f"{name}:program", "dev.jsonl", "--valset", "dev.jsonl", "--optimizer", "labeled",
                 "--max-labeled-demos", "1", "--quiet", "--no-progress", "--out", "o.json"])
    out = capsys.readouterr().out
    assert code == 0
    assert "validation, optimized program: 1 of 4 failed (1 LMError); first error: LMError: backend hiccup on bern" \
        in out


# -- a reader that goes away --------------------------------------------------------------------------------------


def test_models_list_into_a_closed_pipe_ends_quietly():
    read_end, write_end = os.pipe()
    os.close(read_end)  # like `| head` that has already exited
    try:
        proc = subprocess.run([sys.executable, "-m", "promptless", "models", "list", "--json"], stdout=write_end,
                              stderr=subprocess.PIPE, text=True, timeout=60)
    finally:
        os.close(write_end)
    assert proc.returncode == 141 and "Traceback" not in proc.stderr and "BrokenPipe" not in proc.stderr


def test_main_turns_a_broken_pipe_into_status_141(monkeypatch):
    class Closed:
        def write(self, text):
            raise BrokenPipeError(32, "Broken pipe")

        def flush(self):
            raise BrokenPipeError(32, "Broken pipe")

    monkeypatch.setattr(sys, "stdout", Closed())
    assert main(["models", "path"]) == 141
