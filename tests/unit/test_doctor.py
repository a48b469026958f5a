"""`promptless doctor`: says what works, never shows a key, exits non-zero when something asked fails."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import pytest

from promptless.cli import main
from promptless.lm import preflight


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for name in ("PROMPTLESS_CACHE_DIR", "PROMPTLESS_CACHE", "PROMPTLESS_MODELS_DIR", "OPENAI_BASE_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("PROMPTLESS_HOME", str(tmp_path))
    return tmp_path


def _checks(capsys: pytest.CaptureFixture[str], argv: list[str]) -> tuple[int, dict[str, dict]]:
    code = main(["doctor", "--json", *argv])
    out = capsys.readouterr().out
    return code, {c["name"]: c for c in json.loads(out)}


def test_a_healthy_install_exits_zero_and_hides_keys(home: Path, monkeypatch, capsys):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-very-secret-value")
    monkeypatch.setenv("PROMPTLESS_CACHE_MAX_BYTES", "10MB")
    code, checks = _checks(capsys, ["--no-verify"])
    assert code == 0
    assert checks["env OPENAI_API_KEY"]["detail"] == "set (20 characters)"
    assert "10MB" in checks["env PROMPTLESS_CACHE_MAX_BYTES"]["detail"]
    assert checks["cache"]["status"] == "ok"
    assert "python" in checks and "promptless" in checks and "cpu" in checks
    main(["doctor", "--no-verify"])
    assert "sk-very-secret-value" not in capsys.readouterr().out


def test_an_unwritable_cache_fails(home: Path, monkeypatch, capsys):
    blocker = home / "file"
    blocker.write_text("not a folder")
    monkeypatch.setenv("PROMPTLESS_CACHE_DIR", str(blocker / "cache"))
    code, checks = _checks(capsys, ["--no-verify"])
    assert code == 1
    assert checks["cache"]["status"] == "FAIL" and "PROMPTLESS_CACHE_DIR" in checks["cache"]["fix"]


def test_a_damaged_model_file_fails(home: Path, monkeypatch, capsys):
    models_dir = home / "models"
    models_dir.mkdir()
    monkeypatch.setenv("PROMPTLESS_MODELS_DIR", str(models_dir))
    from promptless.lm import models

    spec = models.REGISTRY["smollm2-135m"]
    with open(models_dir / spec.filename, "wb") as handle:  # the right size, the wrong bytes (sparse)
        handle.truncate(spec.size)
    monkeypatch.setattr(preflight, "installed_version", lambda: None)  # no runtime probe in this test
    code, checks = _checks(capsys, [])
    assert code == 1
    assert checks["model smollm2-135m"]["status"] == "FAIL"
    assert "models pull smollm2-135m --force" in checks["model smollm2-135m"]["fix"]


def test_a_build_that_dies_fails_with_the_fix(home: Path, monkeypatch, capsys):
    models_dir = home / "models"
    models_dir.mkdir()
    monkeypatch.setenv("PROMPTLESS_MODELS_DIR", str(models_dir))
    from promptless.lm import models

    spec = models.REGISTRY["smollm2-135m"]
    with open(models_dir / spec.filename, "wb") as handle:  # present; the probe dies before reading it
        handle.truncate(spec.size)
    monkeypatch.setattr(preflight, "installed_version", lambda: "0.3.36")
    monkeypatch.setenv("PROMPTLESS_PREFLIGHT_TEST_CRASH", "SIGILL")
    code, checks = _checks(capsys, ["--no-verify"])
    assert code == 1
    runtime = checks["llama.cpp runs here"]
    assert runtime["status"] == "FAIL" and "SIGILL" in runtime["detail"]
    assert "--no-binary llama-cpp-python" in runtime["fix"]


class _Chat(BaseHTTPRequestHandler):
    status = 200

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        body = {"choices": [{"index": 0, "message": {"role": "assistant", "content": "OK"}, "finish_reason": "stop"}],
                "usage": {"prompt_tokens": 5, "completion_tokens": 1}}  # fmt: skip
        if self.status != 200:
            body = {"error": {"message": "invalid api key"}}
        data = json.dumps(body).encode()
        self.send_response(self.status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: object) -> None:
        pass


@pytest.mark.parametrize("status", [200, 401])
def test_round_trip_to_a_server(home: Path, monkeypatch, capsys, status: int):
    handler = type("H", (_Chat,), {"status": status})
    server = HTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    monkeypatch.setattr(preflight, "installed_version", lambda: None)
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/v1"
        code, checks = _checks(capsys, ["--no-verify", "--lm", "openai/tiny", "--base-url", url])
    finally:
        server.shutdown()
        server.server_close()
    check = checks[f"call openai/tiny at {url}"]
    if status == 200:
        assert code == 0 and check["status"] == "ok" and "'OK'" in check["detail"]
    else:
        assert code == 1 and check["status"] == "FAIL" and "LMAuthenticationError" in check["detail"]


def test_base_url_without_lm_is_refused(home: Path, capsys):
    assert main(["doctor", "--base-url", "http://127.0.0.1:9/v1"]) == 2
    assert "--base-url needs --lm" in capsys.readouterr().err
