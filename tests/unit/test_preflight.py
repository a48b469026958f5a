"""The embedded backend's preflight: a probe child that dies becomes a clear error in the parent."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from promptless.errors import ConfigurationError, RuntimeBuildError
from promptless.lm import preflight

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("PROMPTLESS_HOME", str(tmp_path))
    monkeypatch.delenv("PROMPTLESS_PREFLIGHT", raising=False)
    monkeypatch.setattr(preflight, "_checked", set())
    return tmp_path


@pytest.mark.parametrize("sig", ["SIGILL", "SIGSEGV", "SIGBUS"])
def test_a_probe_that_dies_is_an_error_in_the_parent(home: Path, tmp_path: Path, monkeypatch, sig: str):
    monkeypatch.setenv("PROMPTLESS_PREFLIGHT_TEST_CRASH", sig)
    model = tmp_path / "model.gguf"
    model.write_bytes(b"GGUF")
    with pytest.raises(RuntimeBuildError) as info:
        preflight.ensure(model)
    message = str(info.value)
    assert isinstance(info.value, ConfigurationError)
    assert sig in message
    assert "--no-binary llama-cpp-python" in message and "GGML_NATIVE=OFF" in message
    assert sys.executable in message
    if sig == "SIGILL":
        assert "illegal instruction" in message
    # nothing is remembered for a failed build: the next process probes again
    assert not preflight.record_path().exists()
    # and this process is alive to say so
    assert os.getpid() > 0


def test_a_success_is_remembered_per_build_and_model(home: Path, tmp_path: Path, monkeypatch):
    calls: list[Path] = []

    def fake_probe(path: Path, *, timeout: float = 0) -> preflight.ProbeResult:
        calls.append(path)
        return preflight.ProbeResult(True, "ran", "CPU : AVX2 = 1")

    monkeypatch.setattr(preflight, "probe", fake_probe)
    a = tmp_path / "a.gguf"
    b = tmp_path / "b.gguf"
    a.write_bytes(b"x" * 10)
    b.write_bytes(b"y" * 20)
    preflight.ensure(a)
    preflight.ensure(a)
    assert len(calls) == 1
    monkeypatch.setattr(preflight, "_checked", set())  # a new process
    preflight.ensure(a)
    assert len(calls) == 1  # from the record
    preflight.ensure(b)
    assert len(calls) == 2  # another model is another probe
    record = json.loads(preflight.record_path().read_text())
    assert len(record) == 2 and all(entry["ok"] for entry in record.values())
    a.write_bytes(b"x" * 11)  # the file changed: probe again
    monkeypatch.setattr(preflight, "_checked", set())
    preflight.ensure(a)
    assert len(calls) == 3


def test_a_probe_that_cannot_judge_does_not_block(home: Path, tmp_path: Path, monkeypatch):
    monkeypatch.setattr(preflight, "probe", lambda path, timeout=0: preflight.ProbeResult(None, "no llama_cpp"))
    preflight.ensure(tmp_path / "missing.gguf")  # the real load reports its own error
    assert not preflight.record_path().exists()


def test_preflight_can_be_turned_off(home: Path, tmp_path: Path, monkeypatch):
    monkeypatch.setenv("PROMPTLESS_PREFLIGHT", "0")
    monkeypatch.setenv("PROMPTLESS_PREFLIGHT_TEST_CRASH", "SIGILL")
    preflight.ensure(tmp_path / "m.gguf")  # no probe, no error


def test_the_check_command_exits_3_on_a_dead_probe(home: Path, tmp_path: Path):
    model = tmp_path / "m.gguf"
    model.write_bytes(b"GGUF")
    env = dict(os.environ, PROMPTLESS_PREFLIGHT_TEST_CRASH="SIGILL", PROMPTLESS_HOME=str(home))
    proc = subprocess.run(
        [sys.executable, "-m", "promptless.lm.preflight", "--check", str(model)],
        capture_output=True, text=True, env=env, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 3, proc.stderr
    assert "SIGILL" in proc.stderr and "fix:" in proc.stderr


def test_setup_script_builds_the_same_portable_target():
    script = (ROOT / "scripts" / "install_llama.sh").read_text()
    match = re.search(r'^PORTABLE_X86_64="([^"]+)"', script, re.MULTILINE)
    assert match and match.group(1) == preflight.PORTABLE_CMAKE_ARGS_X86_64
    assert "AMX" not in preflight.PORTABLE_CMAKE_ARGS_X86_64 and "AVX512" not in preflight.PORTABLE_CMAKE_ARGS_X86_64
    assert re.search(r"^VERSION=(\S+)", script, re.MULTILINE).group(1) == preflight.LLAMA_CPP_VERSION  # type: ignore[union-attr]
    pin = (ROOT / "pyproject.toml").read_text()
    assert f'llama-cpp-python=={preflight.LLAMA_CPP_VERSION}"' in pin


def test_portable_args_per_architecture():
    assert "AVX2=ON" in preflight.portable_cmake_args("x86_64")
    assert preflight.portable_cmake_args("aarch64") == "-DGGML_NATIVE=OFF"
