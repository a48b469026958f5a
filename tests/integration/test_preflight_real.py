"""The preflight with the real llama.cpp build and the real smollm2-135m weights."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from promptless.errors import RuntimeBuildError

pytestmark = pytest.mark.integration


def _run(code: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)


def test_a_crashing_probe_leaves_the_users_process_alive(smollm2_path: Path, tmp_path: Path):
    """A LocalLM whose build 'dies' (the probe's test hook) raises in the caller; nothing else dies."""
    env = dict(os.environ, PROMPTLESS_HOME=str(tmp_path), PROMPTLESS_PREFLIGHT_TEST_CRASH="SIGILL")
    env.pop("PROMPTLESS_PREFLIGHT", None)
    code = (
        "import promptless as pl\n"
        "from promptless.errors import RuntimeBuildError\n"
        "lm = pl.LM('local/smollm2-135m', max_tokens=4)\n"
        "try:\n"
        "    lm('Say hi')\n"
        "except RuntimeBuildError as exc:\n"
        "    print('CAUGHT', exc)\n"
        "print('ALIVE')\n"
    )
    proc = _run(code, env)
    assert proc.returncode == 0, proc.stderr
    assert "CAUGHT" in proc.stdout and "SIGILL" in proc.stdout and "ALIVE" in proc.stdout


def test_the_real_build_passes_and_is_remembered(smollm2_path: Path, tmp_path: Path, monkeypatch):
    from promptless.lm import preflight

    monkeypatch.setenv("PROMPTLESS_HOME", str(tmp_path))
    monkeypatch.delenv("PROMPTLESS_PREFLIGHT_TEST_CRASH", raising=False)
    result = preflight.check(smollm2_path, force=True)
    assert result.ok is True, result.detail
    assert "CPU" in result.system_info
    again = preflight.check(smollm2_path)
    assert again.ok is True and again.cached


def test_a_file_llama_cpp_cannot_read_is_not_called_a_bad_build(llama_cpp_installed: None, tmp_path: Path):
    from promptless.lm import preflight

    bogus = tmp_path / "bogus.gguf"
    bogus.write_bytes(b"not a model at all" * 100)
    result = preflight.probe(bogus)
    assert result.ok is None, result.detail
    assert not isinstance(result, RuntimeBuildError)
