"""Run model-written Python in a separate, locked-down process.

``Sandbox().run(code)`` returns a ``SandboxResult`` and never raises for
anything the code does. The code runs in a fresh ``python -I -S`` process
(no site-packages, no user environment) whose working directory is a new
temporary directory, deleted afterwards. The layers, from the outside in:

1. **Process limits.** A wall-clock timeout (the whole process group is
   killed), a CPU-time limit, an address-space limit (``RLIMIT_AS``: a memory
   bomb gets ``MemoryError`` or the process dies, never the parent), a file
   size limit, no core files, a small number of open files.
2. **Operating system.** When started as root, the child drops to the
   ``nobody`` user with ``RLIMIT_NPROC`` = 1, so it can neither start other
   processes nor signal the parent or write outside its directory. Where the
   ``unshare`` tool can give the child a network namespace of its own (root,
   Linux), it runs in one with no interfaces.
3. **Inside the interpreter.** Before the code runs, an audit hook
   (``sys.addaudithook``) refuses sockets, subprocesses, ``os.system`` /
   ``exec*`` / ``fork`` / ``kill``, ctypes, ``gc`` object walks, code-object
   construction, and any file or directory operation on a path outside the
   temporary directory; ``import`` is limited to an allow-list of pure
   computation modules (``math``, ``json``, ``re``, ``statistics`` ...).

Layer 3 exists to give the model a clear error message it can act on
("import of 'os' is not allowed"); layers 1 and 2 are the boundary. The
result carries what the code printed, the value of its last expression
(as ``repr``), and on failure the exception type and message.
"""

from __future__ import annotations

import functools
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

DEFAULT_ALLOWED_IMPORTS: tuple[str, ...] = (
    "math", "cmath", "statistics", "fractions", "decimal", "numbers", "random",
    "itertools", "functools", "operator", "collections", "heapq", "bisect", "array",
    "re", "string", "textwrap", "unicodedata", "json", "datetime", "calendar", "time",
    "copy", "dataclasses", "enum", "typing", "abc", "_strptime",
)


@dataclass
class SandboxResult:
    """What one run gave: ``ok`` and the output, or the error the code raised or the limit it hit."""

    ok: bool
    stdout: str = ""
    value: str | None = None  # repr of the last expression, if the code ended with one
    error: str | None = None  # "ZeroDivisionError: division by zero", "time limit of 5.0 s exceeded", ...
    error_type: str | None = None  # the exception class name, or "Timeout", "MemoryLimit", "Killed"
    seconds: float = 0.0
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def output(self) -> str:
        """Printed text plus the last expression's value: what a reader of the run would see."""
        parts = [self.stdout.rstrip("\n")] if self.stdout.strip() else []
        if self.value is not None:
            parts.append(self.value)
        return "\n".join(parts)

    def describe(self) -> str:
        """One text for an LM to read: the output, or the error."""
        if self.ok:
            return self.output or "(the code ran and printed nothing)"
        text = f"Error: {self.error}"
        if self.stdout.strip():
            text += f"\nOutput before the error:\n{self.stdout.rstrip()}"
        return text


# The script the child runs. It reads its settings and the code from stdin,
# applies the limits, installs the guards, runs the code and writes one JSON
# line, prefixed with a nonce, to the original stdout.
_RUNNER = r'''
import sys, json, resource, builtins, io, os, traceback
cfg = json.loads(sys.stdin.read())
_out_fd = os.dup(1)
import ast
# Everything the code may import is loaded now, while the standard library can still be read.
for _name in [*cfg["allowed_imports"], "encodings.latin_1", "encodings.ascii", "encodings.utf_16", "encodings.idna"]:
    try:
        __import__(_name)
    except ImportError:
        pass
_mem = cfg["memory_bytes"]
for _lim, _val in ((resource.RLIMIT_AS, _mem), (resource.RLIMIT_CPU, cfg["cpu_seconds"]),
                   (resource.RLIMIT_FSIZE, cfg["file_bytes"]), (resource.RLIMIT_CORE, 0),
                   (resource.RLIMIT_NOFILE, 64)):
    try:
        resource.setrlimit(_lim, (_val, _val))
    except (ValueError, OSError):
        pass
_dropped = False
if os.getuid() == 0 and cfg["drop_privileges"]:
    try:
        resource.setrlimit(resource.RLIMIT_NPROC, (1, 1))
        os.setgroups([])
        os.setgid(cfg["nobody_gid"])
        os.setuid(cfg["nobody_uid"])
        _dropped = True
    except OSError:
        pass
_tmp = os.path.realpath(cfg["tmpdir"])
_allowed = frozenset(cfg["allowed_imports"])

class _Refused(PermissionError):
    pass

def _top(name):
    return name.split(".", 1)[0]

def _inside(path):
    if isinstance(path, int) or path is None:
        return True
    try:
        path = os.fsdecode(path)
    except TypeError:
        return False
    real = os.path.realpath(os.path.join(_tmp, path))
    return real == _tmp or real.startswith(_tmp + os.sep)

_BLOCKED_PREFIXES = ("socket.", "subprocess.", "ctypes.", "os.system", "os.exec", "os.posix_spawn", "os.spawn",
                     "os.fork", "os.forkpty", "os.kill", "os.killpg", "os.putenv", "os.unsetenv", "os.chdir",
                     "os.chroot", "os.setxattr", "os.removexattr", "gc.get_", "code.__new__", "mmap.",
                     "resource.setrlimit", "resource.prlimit", "sys.addaudithook", "urllib.", "webbrowser.",
                     "pty.", "ftplib.", "smtplib.", "http.", "imaplib.", "poplib.", "nntplib.", "telnetlib.",
                     "sqlite3.", "shelve.", "dbm.", "sys.remote_exec", "sys.monitoring")
_PATH_EVENTS = frozenset({"os.listdir", "os.scandir", "os.remove", "os.rename", "os.rmdir", "os.mkdir", "os.chmod",
                          "os.chown", "os.link", "os.symlink", "os.truncate", "os.utime", "os.chflags",
                          "os.lchflags", "os.lchmod", "os.lchown", "os.getxattr", "os.listxattr", "glob.glob",
                          "glob.glob/2", "shutil.copyfile", "shutil.copymode", "shutil.copystat", "shutil.copytree",
                          "shutil.move", "shutil.rmtree", "shutil.chown", "shutil.make_archive",
                          "shutil.unpack_archive", "tempfile.mkstemp", "tempfile.mkdtemp", "os.walk", "os.fwalk"})
_armed = False

def _hook(event, args):
    if not _armed:
        return
    if event == "open":
        if not _inside(args[0]):
            raise _Refused(f"opening {args[0]!r} is not allowed: only files in the working directory can be used")
        return
    if event == "import":
        if _top(args[0]) not in _allowed and _top(args[0]) != "encodings":
            raise _Refused(f"import of {args[0]!r} is not allowed; allowed modules: {', '.join(sorted(_allowed))}")
        return
    if event in _PATH_EVENTS:
        for a in args:
            if isinstance(a, (str, bytes)) and not _inside(a):
                raise _Refused(f"{event} on {a!r} is not allowed: only the working directory can be used")
        return
    if event.startswith(_BLOCKED_PREFIXES):
        what = {"socket.": "network access", "subprocess.": "starting processes", "os.system": "running commands",
                "ctypes.": "ctypes"}
        for prefix, label in what.items():
            if event.startswith(prefix):
                raise _Refused(f"{label} is not allowed in the sandbox ({event})")
        raise _Refused(f"{event} is not allowed in the sandbox")

_real_import = builtins.__import__

def _guarded_import(name, globals=None, locals=None, fromlist=(), level=0):
    if level == 0 and _top(name) not in _allowed:
        raise ImportError(f"import of {name!r} is not allowed in the sandbox; allowed modules: "
                          f"{', '.join(sorted(_allowed))}")
    return _real_import(name, globals, locals, fromlist, level)

class _Capped(io.TextIOBase):
    def __init__(self, limit):
        self.parts, self.size, self.limit, self.dropped = [], 0, limit, 0
    def writable(self):
        return True
    def write(self, s):
        s = str(s)
        room = self.limit - self.size
        if room > 0:
            self.parts.append(s[:room])
            self.size += min(len(s), room)
        self.dropped += max(0, len(s) - max(room, 0))
        return len(s)
    def text(self):
        t = "".join(self.parts)
        return t + (f"\n... [{self.dropped} more characters of output cut]" if self.dropped else "")

_buf = _Capped(cfg["max_output_chars"])
result = {"ok": False, "stdout": "", "value": None, "error": None, "error_type": None, "dropped_privileges": _dropped}
_reserve = bytearray(1 << 20)  # freed on MemoryError so the report can still be written
try:
    tree = ast.parse(cfg["code"], "<sandbox>", "exec")
    last = None
    if tree.body and isinstance(tree.body[-1], ast.Expr):
        last = ast.Expression(tree.body.pop().value)
    body = compile(tree, "<sandbox>", "exec")
    last_code = compile(last, "<sandbox>", "eval") if last is not None else None
    del ast, tree, last
    namespace = {"__name__": "__main__", "__builtins__": builtins}
    builtins.__import__ = _guarded_import
    sys.stdout = sys.stderr = _buf
    sys.addaudithook(_hook)
    _armed = True
    exec(body, namespace)
    if last_code is not None:
        _v = eval(last_code, namespace)
        if _v is not None:
            result["value"] = repr(_v)[: cfg["max_output_chars"]]
    result["ok"] = True
except MemoryError:
    _reserve = None
    result["error_type"] = "MemoryError"
    result["error"] = f"MemoryError: the code used more than the memory limit of {_mem // 2**20} MB"
except SyntaxError as e:
    result["error_type"] = "SyntaxError"
    result["error"] = f"SyntaxError: {e.msg} (line {e.lineno})" + (f": {e.text.strip()}" if e.text else "")
except BaseException as e:
    _reserve = None
    tb = traceback.StackSummary.extract(traceback.walk_tb(e.__traceback__), lookup_lines=False)
    line = next((f.lineno for f in reversed(tb) if f.filename == "<sandbox>"), None)
    name = type(e).__name__
    if isinstance(e, _Refused):
        name = "PermissionError"
    result["error_type"] = name
    where = f" (line {line})" if line else ""
    result["error"] = f"{name}: {e}{where}" if str(e) else f"{name}{where}"
_armed = False
result["stdout"] = _buf.text()
try:
    data = json.dumps(result, ensure_ascii=True, default=str)
except BaseException:
    data = json.dumps({"ok": False, "stdout": "", "value": None, "error": "the result could not be reported",
                       "error_type": "ReportError"})
os.write(_out_fd, (cfg["nonce"] + data + "\n").encode())
os._exit(0)
'''


@functools.lru_cache(maxsize=1)
def _network_wrapper() -> tuple[str, ...]:
    """``unshare --net`` where it works here (root on Linux), else nothing."""
    exe = shutil.which("unshare")
    if exe is None or not sys.platform.startswith("linux") or os.geteuid() != 0:
        return ()
    try:
        probe = subprocess.run([exe, "--net", "true"], capture_output=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return ()
    return (exe, "--net") if probe.returncode == 0 else ()


def _nobody() -> tuple[int, int]:
    try:
        import pwd

        entry = pwd.getpwnam("nobody")
        return entry.pw_uid, entry.pw_gid
    except (ImportError, KeyError):
        return 65534, 65534


class Sandbox:
    """A recipe for running code: limits and allowed imports. ``run(code)`` starts a fresh process each time.

    ``timeout`` is wall-clock seconds; ``memory_mb`` the address-space limit of the
    child (the interpreter itself takes ~20 MB of it); ``allowed_imports`` the
    top-level modules the code may import (all pure computation by default).
    """

    def __init__(
        self,
        *,
        timeout: float = 5.0,
        memory_mb: int = 256,
        max_output_chars: int = 10_000,
        file_mb: int = 16,
        allowed_imports: Iterable[str] = DEFAULT_ALLOWED_IMPORTS,
        isolate_network: bool = True,
        drop_privileges: bool = True,
        python: str | None = None,
    ) -> None:
        if timeout <= 0 or memory_mb < 32:
            raise ValueError("Sandbox: timeout must be > 0 and memory_mb at least 32")
        self.timeout = float(timeout)
        self.memory_mb = int(memory_mb)
        self.max_output_chars = int(max_output_chars)
        self.file_mb = int(file_mb)
        self.allowed_imports = tuple(allowed_imports)
        self.isolate_network = isolate_network
        self.drop_privileges = drop_privileges
        self.python = python or sys.executable

    def run(self, code: str) -> SandboxResult:
        if os.name != "posix":
            from .errors import ConfigurationError

            raise ConfigurationError("the sandbox needs a POSIX system (Linux or macOS) for its process limits")
        started = time.perf_counter()
        tmpdir = tempfile.mkdtemp(prefix="promptless-sandbox-")
        nonce = "@@promptless-result-" + secrets.token_hex(8) + "@@"
        uid, gid = _nobody()
        try:
            if os.name == "posix" and os.geteuid() == 0 and self.drop_privileges:
                os.chown(tmpdir, uid, gid)
            cfg = {
                "code": code,
                "tmpdir": tmpdir,
                "nonce": nonce,
                "memory_bytes": self.memory_mb * 2**20,
                "cpu_seconds": max(1, int(self.timeout) + 1),
                "file_bytes": self.file_mb * 2**20,
                "max_output_chars": self.max_output_chars,
                "allowed_imports": list(self.allowed_imports),
                "drop_privileges": self.drop_privileges,
                "nobody_uid": uid,
                "nobody_gid": gid,
            }
            argv = [*(_network_wrapper() if self.isolate_network else ()), self.python, "-I", "-S", "-c", _RUNNER]
            env = {"PATH": "/usr/bin:/bin", "HOME": tmpdir, "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8"}
            proc = subprocess.Popen(
                argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=tmpdir, env=env,
                start_new_session=True,
            )
            try:
                out, err = proc.communicate(json.dumps(cfg).encode(), timeout=self.timeout)
            except subprocess.TimeoutExpired:
                _kill_group(proc)
                out, err = proc.communicate()
                return SandboxResult(
                    ok=False, stdout="", error=f"time limit of {self.timeout:g} s exceeded (an endless loop?)",
                    error_type="Timeout", seconds=time.perf_counter() - started,
                )
            return self._result(proc.returncode, out, err, nonce, time.perf_counter() - started)
        finally:
            shutil.rmtree(tmpdir, ignore_errors=True)

    def _result(self, rc: int, out: bytes, err: bytes, nonce: str, seconds: float) -> SandboxResult:
        text = out.decode("utf-8", "replace")
        at = text.rfind(nonce)
        if at != -1:
            try:
                data = json.loads(text[at + len(nonce):].splitlines()[0])
                return SandboxResult(
                    ok=bool(data["ok"]), stdout=data.get("stdout") or "", value=data.get("value"),
                    error=data.get("error"), error_type=data.get("error_type"), seconds=seconds,
                    details={"dropped_privileges": data.get("dropped_privileges", False),
                             "network_namespace": bool(_network_wrapper()) and self.isolate_network},
                )
            except (ValueError, KeyError, IndexError):
                pass
        if rc is not None and rc < 0:
            sig = -rc
            if sig == getattr(signal, "SIGXCPU", -1):
                return SandboxResult(ok=False, error=f"CPU time limit of {max(1, int(self.timeout) + 1)} s exceeded",
                                     error_type="Timeout", seconds=seconds)
            if sig == signal.SIGXFSZ:
                return SandboxResult(ok=False, error=f"file size limit of {self.file_mb} MB exceeded",
                                     error_type="FileLimit", seconds=seconds)
            name = signal.Signals(sig).name if sig in signal.Signals._value2member_map_ else str(sig)
            return SandboxResult(ok=False, error=f"the process was killed by {name} (over the memory limit of "
                                 f"{self.memory_mb} MB?)", error_type="Killed", seconds=seconds)
        tail = err.decode("utf-8", "replace").strip().splitlines()[-3:]
        why = " / ".join(tail) if tail else f"exit code {rc}"
        if "MemoryError" in why:
            return SandboxResult(ok=False, error=f"MemoryError: the code used more than the memory limit of "
                                 f"{self.memory_mb} MB", error_type="MemoryError", seconds=seconds)
        return SandboxResult(ok=False, error=f"the sandboxed process ended without a result ({why})",
                             error_type="Crashed", seconds=seconds)


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        proc.kill()


def run_code(code: str, **limits: Any) -> SandboxResult:
    """``Sandbox(**limits).run(code)``."""
    return Sandbox(**limits).run(code)


__all__ = ["DEFAULT_ALLOWED_IMPORTS", "Sandbox", "SandboxResult", "run_code"]
