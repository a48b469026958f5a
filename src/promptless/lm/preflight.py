"""Can the installed llama.cpp build run on this machine? Asked once, in a child process.

A llama-cpp-python wheel compiled for one CPU can hold instructions that another
CPU, or the virtual machine around it, does not allow: a native build on an
Intel Xeon that advertises AMX dies with SIGILL on its first real prompt when
the VM does not let a process use AMX, and a build made on a machine with
AVX-512 dies the same way on one without. The process that loaded it dies with
it, with no message.

So before the first model is loaded in a process, the embedded backend runs a
probe in a child process: it loads the model at hand, evaluates a prompt of a
few dozen tokens (a one-token prompt does not reach the kernels that trap) and
generates one token. A child that dies becomes a ``RuntimeBuildError`` in the
parent naming the signal, the likely cause and the command that reinstalls a
portable build. A success is remembered in a small record
(``$PROMPTLESS_HOME/preflight.json``, default ``~/.cache/promptless``) keyed by the
llama-cpp-python version, the identity of its library files, the CPU's flags
and the model file, so the probe runs once per build, machine and model.

``PROMPTLESS_PREFLIGHT=0`` skips the probe (for a build known to be good).

Run as a module it is the probe itself (``--probe MODEL``), or a check for set-up
scripts (``--check [MODEL]``: exit status 0 when the build runs here, 3 when the
probe died, 2 when there is nothing to check with).
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.metadata
import importlib.util
import json
import os
import platform
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import ConfigurationError, RuntimeBuildError

LLAMA_CPP_VERSION = "0.3.36"
# The x86_64 build that runs on every machine of this class: AVX2, FMA and F16C, no AVX-512, no AMX.
# scripts/setup.sh passes the same flags (a unit test keeps the two equal).
PORTABLE_CMAKE_ARGS_X86_64 = "-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON"
PORTABLE_CMAKE_ARGS_OTHER = "-DGGML_NATIVE=OFF"
PROBE_TIMEOUT = 300.0
PROBE_TEXT = (
    "The probe reads this short paragraph about the history of printing. Movable type reached Europe in the "
    "fifteenth century, and within fifty years presses worked in more than two hundred cities. Answer in one word:"
)
_CRASH_HOOK = "PROMPTLESS_PREFLIGHT_TEST_CRASH"  # tests only: the probe kills itself with this signal

_SIGNAL_CAUSES = {
    "SIGILL": "illegal instruction: the build uses CPU instructions this machine does not allow "
    "(a native build made for another CPU, or AMX/AVX-512 that a virtual machine withholds)",
    "SIGSEGV": "segmentation fault inside llama.cpp (a build for another CPU, or a damaged library)",
    "SIGBUS": "bus error inside llama.cpp (a damaged library or model file, or a full disk under a mapped file)",
    "SIGABRT": "llama.cpp aborted (a failed assertion in the build)",
    "SIGKILL": "killed from outside, most often by the kernel for lack of memory",
}

_checked: set[str] = set()
_lock = threading.Lock()


@dataclass
class ProbeResult:
    """What one probe found. ``ok`` is None when the probe could not judge the build (no model, say)."""

    ok: bool | None
    detail: str
    system_info: str = ""
    seconds: float = 0.0
    cached: bool = False


def portable_cmake_args(machine: str | None = None) -> str:
    """The CMAKE_ARGS of a build that runs on any CPU of this architecture that promptless supports."""
    machine = (machine or platform.machine()).lower()
    return PORTABLE_CMAKE_ARGS_X86_64 if machine in {"x86_64", "amd64"} else PORTABLE_CMAKE_ARGS_OTHER


def reinstall_command(version: str | None = None) -> str:
    """The exact command that replaces the installed llama-cpp-python with a portable build."""
    version = version or installed_version() or LLAMA_CPP_VERSION
    return (
        f'CMAKE_ARGS="{portable_cmake_args()}" {sys.executable} -m pip install --force-reinstall --no-deps '
        f"--no-cache-dir --no-binary llama-cpp-python llama-cpp-python=={version}"
    )


def installed_version() -> str | None:
    try:
        return importlib.metadata.version("llama_cpp_python")
    except importlib.metadata.PackageNotFoundError:
        return None


def library_files() -> list[Path]:
    """The shared libraries of the installed llama-cpp-python (found without importing it)."""
    spec = importlib.util.find_spec("llama_cpp")
    if spec is None or not spec.submodule_search_locations:
        return []
    found: list[Path] = []
    for location in spec.submodule_search_locations:
        root = Path(location)
        found.extend(p for p in root.rglob("*") if p.is_file() and not p.is_symlink() and (p.suffix in {".so", ".dylib", ".dll"} or ".so." in p.name))
    return sorted(found)


def cpu_flags() -> str:
    """The CPU's feature flags as the kernel reports them (x86 ``flags``, arm ``Features``)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as handle:
            for line in handle:
                key, _, value = line.partition(":")
                if key.strip() in {"flags", "Features"}:
                    return " ".join(sorted(value.split()))
    except OSError:
        pass
    return platform.processor()


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as handle:
            for line in handle:
                key, _, value = line.partition(":")
                if key.strip() in {"model name", "Model", "Hardware"}:
                    return value.strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def identity(model_path: Path) -> dict[str, Any]:
    """Everything whose change calls for a new probe: the build, the CPU, the model file."""
    libs = []
    for path in library_files():
        try:
            st = path.stat()
        except OSError:
            continue
        libs.append([path.name, st.st_size, st.st_mtime_ns])
    try:
        model_stat = model_path.stat()
        model = [str(model_path.resolve()), model_stat.st_size]
    except OSError:
        model = [str(model_path), -1]
    return {
        "llama_cpp_python": installed_version(),
        "libraries": libs,
        "machine": platform.machine(),
        "cpu_flags": hashlib.sha256(cpu_flags().encode()).hexdigest()[:16],
        "python": sys.prefix,
        "model": model,
    }


def _key(ident: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(ident, sort_keys=True).encode()).hexdigest()[:24]


def record_path() -> Path:
    home = os.environ.get("PROMPTLESS_HOME")
    base = Path(home).expanduser() if home else Path("~/.cache/promptless").expanduser()
    return base / "preflight.json"


def _read_record() -> dict[str, Any]:
    try:
        data = json.loads(record_path().read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _remember(key: str, entry: dict[str, Any]) -> None:
    """Add a success to the record; a record that cannot be written only costs a probe next time."""
    path = record_path()
    data = _read_record()
    data[key] = entry
    if len(data) > 64:  # old builds and models: keep the newest entries
        data = dict(sorted(data.items(), key=lambda kv: kv[1].get("checked_at", 0))[-64:])
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(data, indent=1, sort_keys=True))
        os.replace(tmp, path)
    except OSError:
        pass


def _signal_name(returncode: int) -> str:
    try:
        return signal.Signals(-returncode).name
    except ValueError:
        return f"signal {-returncode}"


def probe(model_path: Path, *, timeout: float = PROBE_TIMEOUT) -> ProbeResult:
    """Run the probe child on ``model_path`` now (no record consulted or written)."""
    cmd = [sys.executable, "-m", "promptless.lm.preflight", "--probe", str(model_path)]
    env = dict(os.environ)
    src = str(Path(__file__).resolve().parents[2])  # the child imports this same promptless
    env["PYTHONPATH"] = src + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    start = time.monotonic()
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        return ProbeResult(False, f"the probe did not finish within {timeout:.0f} s", seconds=time.monotonic() - start)
    seconds = time.monotonic() - start
    if proc.returncode < 0:
        name = _signal_name(proc.returncode)
        cause = _SIGNAL_CAUSES.get(name, "the process was killed by a signal")
        return ProbeResult(False, f"the probe process died with {name}: {cause}", seconds=seconds)
    report: dict[str, Any] = {}
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith("{"):
            try:
                report = json.loads(line)
            except ValueError:
                continue
            break
    if proc.returncode == 0 and report.get("ok") is True:
        return ProbeResult(True, "ran a prompt and generated a token", report.get("system_info", ""), seconds)
    if report.get("stage") in {"import", "load"}:
        # Not the build's instructions: llama_cpp missing or a model it cannot read. The caller's own
        # load reports that with its usual error.
        return ProbeResult(None, f"the probe could not {report['stage']}: {report.get('error', '')}", seconds=seconds)
    tail = (proc.stderr or proc.stdout or "").strip().splitlines()[-5:]
    return ProbeResult(False, f"the probe exited with status {proc.returncode}: {' / '.join(tail)}", seconds=seconds)


def enabled() -> bool:
    return os.environ.get("PROMPTLESS_PREFLIGHT", "1").strip().lower() not in {"0", "false", "no", "off"}


def check(model_path: Path, *, force: bool = False) -> ProbeResult:
    """The probe's verdict for this build, machine and model, from the record or by running it."""
    ident = identity(model_path)
    key = _key(ident)
    if not force:
        entry = _read_record().get(key)
        if isinstance(entry, dict) and entry.get("ok") is True:
            return ProbeResult(True, "checked before", entry.get("system_info", ""), cached=True)
    result = probe(model_path)
    if result.ok:
        _remember(key, {"ok": True, "checked_at": time.time(), "system_info": result.system_info, **ident})
    return result


def ensure(model_path: Path) -> None:
    """Raise ``RuntimeBuildError`` unless the installed build can run ``model_path`` here (once per process)."""
    if not enabled():
        return
    ident_key = _key(identity(model_path))
    with _lock:
        if ident_key in _checked:
            return
        result = check(model_path)
        if result.ok is False:
            raise RuntimeBuildError(
                f"the embedded llama.cpp build (llama-cpp-python {installed_version()}) cannot run on this "
                f"machine ({cpu_model()}): {result.detail}. Nothing was loaded in this process. "
                f"Reinstall a portable build: {reinstall_command()}  "
                "(or run `promptless doctor` for details; PROMPTLESS_PREFLIGHT=0 skips this check)"
            )
        if result.ok:
            _checked.add(ident_key)


# -- the child -------------------------------------------------------------------------------------------
def _probe_main(model: str) -> int:
    crash = os.environ.get(_CRASH_HOOK)
    if crash:
        os.kill(os.getpid(), getattr(signal, crash))
    try:
        import llama_cpp
    except Exception as exc:
        print(json.dumps({"ok": False, "stage": "import", "error": f"{type(exc).__name__}: {exc}"}))
        return 1
    try:
        llama = llama_cpp.Llama(
            model_path=model, n_ctx=512, n_batch=512, n_threads=2, n_threads_batch=2, n_gpu_layers=0, verbose=False
        )
    except Exception as exc:
        print(json.dumps({"ok": False, "stage": "load", "error": f"{type(exc).__name__}: {exc}"}))
        return 1
    tokens = llama.tokenize(PROBE_TEXT.encode("utf-8"))
    llama.create_completion(tokens, max_tokens=1, temperature=0.0)
    info = llama_cpp.llama_print_system_info()
    print(json.dumps({"ok": True, "tokens": len(tokens), "system_info": info.decode(errors="replace").strip()}))
    return 0


def _default_model() -> Path | None:
    from . import models

    for spec in models.REGISTRY.values():  # smallest first
        if models.is_cached(spec.name):
            return models.resolve(spec.name)
    return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m promptless.lm.preflight", description=__doc__.splitlines()[0])
    group = parser.add_mutually_exclusive_group(required=True)
    group.add_argument("--probe", metavar="MODEL", help="(internal) the probe itself")
    group.add_argument("--check", metavar="MODEL", nargs="?", const="", help="check the build (exit 0 when it runs)")
    group.add_argument("--portable-cmake-args", action="store_true", help="print the portable CMAKE_ARGS")
    args = parser.parse_args(argv)
    if args.portable_cmake_args:
        print(portable_cmake_args())
        return 0
    if args.probe is not None:
        return _probe_main(args.probe)
    path = Path(args.check).expanduser() if args.check else _default_model()
    if path is None:
        print("preflight: no model to check with (run `promptless models pull smollm2-135m`)", file=sys.stderr)
        return 2
    try:
        result = check(path, force=True)
    except ConfigurationError as exc:  # pragma: no cover - defensive
        print(f"preflight: {exc}", file=sys.stderr)
        return 2
    if result.ok:
        print(f"preflight: llama-cpp-python {installed_version()} runs here ({result.seconds:.1f} s, {path.name})")
        return 0
    if result.ok is None:
        print(f"preflight: could not check: {result.detail}", file=sys.stderr)
        return 2
    print(f"preflight: the llama.cpp build cannot run here: {result.detail}", file=sys.stderr)
    print(f"preflight: fix: {reinstall_command()}", file=sys.stderr)
    return 3


if __name__ == "__main__":
    sys.exit(main())
