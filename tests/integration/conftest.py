"""Fixtures for integration tests: real weights, a real llama.cpp server on 127.0.0.1.

Tests that need llama-cpp-python skip when it is not installed, except under
``CI=true``, where a missing backend is a failure rather than a silent skip.

- ``smollm2_path``: the smollm2-135m GGUF file, fetched once into the models cache.
- ``llama_server``: ``python -m llama_cpp.server`` serving it; yields the
  OpenAI-compatible base URL (``http://127.0.0.1:PORT/v1``). The served model
  is called ``llama_server_model`` (``"smollm2-135m"``).
"""

from __future__ import annotations

import importlib.util
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

SERVER_MODEL_ALIAS = "smollm2-135m"
SERVER_START_TIMEOUT = 120.0


def require_modules(*modules: str, extra: str = "local") -> None:
    """Skip (or, under CI=true, fail) unless every module can be imported."""
    missing = [m for m in modules if importlib.util.find_spec(m) is None]
    if not missing:
        return
    message = f"{', '.join(missing)} not installed (pip install 'promptless[{extra}]')"
    if os.environ.get("CI") == "true":
        pytest.fail(f"{message}; CI=true requires it", pytrace=False)
    pytest.skip(message)


def usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="session")
def llama_cpp_installed() -> None:
    require_modules("llama_cpp")


@pytest.fixture(scope="session")
def smollm2_path(llama_cpp_installed: None) -> Path:
    from promptless.lm import models

    return models.fetch("smollm2-135m", progress=False)


@pytest.fixture(scope="session")
def llama_server_model() -> str:
    return SERVER_MODEL_ALIAS


@pytest.fixture(scope="session")
def llama_server(smollm2_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Start llama.cpp's OpenAI-compatible server on a free local port; stop it afterwards."""
    require_modules(
        "llama_cpp", "fastapi", "uvicorn", "sse_starlette", "starlette_context", "pydantic_settings", extra="server"
    )
    port = free_port()
    log_path = tmp_path_factory.mktemp("llama-server") / "server.log"
    cmd = [
        sys.executable, "-m", "llama_cpp.server",
        "--model", str(smollm2_path),
        "--model_alias", SERVER_MODEL_ALIAS,
        "--host", "127.0.0.1",
        "--port", str(port),
        "--n_threads", str(usable_cores()),
        "--n_ctx", "4096",
    ]  # fmt: skip
    base_url = f"http://127.0.0.1:{port}/v1"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + SERVER_START_TIMEOUT
        while True:
            if proc.poll() is not None:
                pytest.fail(
                    f"llama_cpp.server exited with {proc.returncode} before serving:\n{_tail(log_path)}",
                    pytrace=False,
                )
            try:
                if httpx.get(f"{base_url}/models", timeout=2.0).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(
                    f"llama_cpp.server did not answer on {base_url} within {SERVER_START_TIMEOUT:.0f} s:\n"
                    f"{_tail(log_path)}",
                    pytrace=False,
                )
            time.sleep(0.25)
        yield base_url
    finally:
        _stop(proc)


def _stop(proc: subprocess.Popen[bytes]) -> None:
    """Stop the server we started, by its own pid only."""
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=15)


def _tail(path: Path, limit: int = 4000) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return "(no server log)"
    return text[-limit:]
