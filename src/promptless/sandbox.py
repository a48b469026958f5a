"""Run model-written Python in a separate process that the operating system confines.

``Sandbox().run(code)`` returns a ``SandboxResult`` and never raises for
anything the code does. Everything that limits the code is set up from
outside the interpreter that runs it, so nothing the code does to that
interpreter (and it can do anything to it) loosens the limits:

1. **Namespaces (bubblewrap).** The code runs under ``bwrap`` with new user,
   pid, network, ipc, uts and cgroup namespaces: it sees no process but its
   own, has no network but an empty loopback, and its file system is a
   read-only bind of only what Python needs (the interpreter, its standard
   library, the system's shared libraries), a fresh ``/proc`` of its own pid
   namespace, a minimal ``/dev`` and a private size-limited tmpfs as working
   directory. No capabilities, ``no_new_privs``, a new session, and it dies
   with its parent. When the caller is root, ``bwrap`` itself is started as
   ``nobody``, so the kernel sees an unprivileged user either way.
2. **seccomp** (x86_64 and aarch64). A filter handed to ``bwrap`` refuses
   creating processes (``fork``, ``vfork``, ``clone`` other than threads),
   sockets, ``ptrace``, mounts, new namespaces, kernel keyrings, ``bpf``,
   ``io_uring`` and the like with ``EPERM``.
3. **Resource limits** set before the interpreter starts (``prlimit``) and
   again by the trusted prologue: address space (``memory_mb``), CPU seconds,
   file size, no core files, 64 open files; and no process beyond the
   interpreter (``RLIMIT_NPROC``, set by the prologue inside the user
   namespace, where it counts only the sandbox's own processes: set before
   ``bwrap`` it would count every process of the user on the host).
4. **The parent** reads at most a fixed number of bytes from each of the
   child's pipes (the rest is drained and counted, never kept), stops at the
   wall-clock deadline, and then kills the child's process group; ending the
   pid namespace's first process ends every process in it, so nothing the
   code started outlives the run or keeps the parent waiting.

What the code prints is data: the result's ``stdout`` is the bytes that
reached the output pipe, cut at ``max_output_chars``. The outcome (``ok``,
the value of the last expression, the exception) comes back on a separate
pipe, never mixed with the output, as exactly one frame written after the
code ends; a run with no frame, more than one, one that does not parse, or a
process that ended with a signal or a non-zero status, is a failure. That
frame is written by the interpreter the code controlled, so it says only what
the code itself could have made happen (ending with an expression, raising):
the things the code cannot choose (time, memory, signals, the output) are
measured from outside.

Inside the interpreter an audit hook and an import allow-list give the model
an error it can act on ("import of 'os' is not allowed"); they are advice, not
a boundary: code that switches them off still meets layers 1-4.

Where bubblewrap or user namespaces are missing, ``run`` raises
``ConfigurationError`` naming the fix (``apt-get install bubblewrap``), unless
the caller chose ``Sandbox(isolation="process")``: a plain child process with
the resource limits, the audit hook, and (as root) ``nobody`` plus a network
namespace. That mode keeps honest code honest; it does not contain hostile code.
"""

from __future__ import annotations

import functools
import json
import os
import platform
import selectors
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import threading
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

ISOLATION_MODES = ("namespaces", "process")
WORKDIR = "/sandbox"  # the working directory inside the namespaces
_STDERR_CAP = 64 * 1024
_GRACE = 0.25  # seconds the pipes may stay open after the child exits
_INSTALL_HINT = (
    "install bubblewrap (as root: apt-get install bubblewrap) and allow user namespaces "
    "(sysctl user.max_user_namespaces=10000, and kernel.unprivileged_userns_clone=1 where that setting exists), "
    "or pass Sandbox(isolation=\"process\") to accept the weaker mode, which limits time and memory but "
    "does not contain hostile code"
)


@dataclass
class SandboxResult:
    """What one run gave: ``ok`` and the output, or the error the code raised or the limit it hit."""

    ok: bool
    stdout: str = ""
    value: str | None = None  # repr of the last expression, if the code ended with one
    error: str | None = None  # "ZeroDivisionError: division by zero", "time limit of 5.0 s exceeded", ...
    error_type: str | None = None  # the exception class name, or "Timeout", "MemoryError", "Killed", ...
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


# The script the sandboxed interpreter runs. Its first part (up to the exec of
# the code) is trusted: it reads the settings and the code from stdin, sets the
# resource limits, and arms the advisory guards. The outcome goes to the result
# descriptor as one JSON line; printed output goes straight to fd 1.
_RUNNER = r'''
import sys, os, json, resource, builtins, io, traceback
cfg = json.loads(sys.stdin.buffer.read())
_res_fd = cfg["result_fd"]

def _limit(which, soft, hard=None):
    try:
        resource.setrlimit(which, (soft, soft if hard is None else hard))
    except (ValueError, OSError):
        pass

_mem = cfg["memory_bytes"]
_limit(resource.RLIMIT_AS, _mem)
_limit(resource.RLIMIT_CPU, cfg["cpu_seconds"], cfg["cpu_seconds"] + 1)
_limit(resource.RLIMIT_FSIZE, cfg["file_bytes"])
_limit(resource.RLIMIT_CORE, 0)
_limit(resource.RLIMIT_NOFILE, 64)
if cfg["nproc"]:
    _limit(resource.RLIMIT_NPROC, cfg["nproc"])
import ast
# Everything the code may import is loaded now, while the standard library can still be read.
for _name in [*cfg["allowed_imports"], "encodings.latin_1", "encodings.ascii", "encodings.utf_16", "encodings.idna"]:
    try:
        __import__(_name)
    except ImportError:
        pass
if cfg["drop_to"]:
    try:
        resource.setrlimit(resource.RLIMIT_NPROC, (1, 1))
        os.setgroups([])
        os.setgid(cfg["drop_to"][1])
        os.setuid(cfg["drop_to"][0])
    except OSError as e:
        os.write(2, f"promptless-sandbox: could not drop privileges: {e}\n".encode())
        os._exit(3)
_tmp = os.path.realpath(cfg["workdir"])
_allowed = frozenset(cfg["allowed_imports"])
_cap = cfg["max_output_chars"]

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

def _text(obj):
    try:
        s = str(obj)
    except BaseException:
        s = "<the message could not be shown>"
    return s if len(s) <= _cap else s[:_cap] + f"... [{len(s) - _cap} more characters cut]"

_out = io.TextIOWrapper(io.FileIO(1, "w", closefd=False), encoding="utf-8", errors="backslashreplace",
                        line_buffering=True)
result = {"ok": False, "value": None, "error": None, "error_type": None}
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
    sys.stdout = sys.stderr = _out
    sys.addaudithook(_hook)
    _armed = True
    exec(body, namespace)
    if last_code is not None:
        _v = eval(last_code, namespace)
        if _v is not None:
            result["value"] = repr(_v)[:_cap]
    result["ok"] = True
except MemoryError:
    _reserve = None
    result["error_type"] = "MemoryError"
    result["error"] = f"MemoryError: the code used more than the memory limit of {_mem // 2**20} MB"
except SyntaxError as e:
    result["error_type"] = "SyntaxError"
    result["error"] = _text(f"SyntaxError: {e.msg} (line {e.lineno})" + (f": {e.text.strip()}" if e.text else ""))
except BaseException as e:
    _reserve = None
    try:
        tb = traceback.StackSummary.extract(traceback.walk_tb(e.__traceback__), lookup_lines=False)
        line = next((f.lineno for f in reversed(tb) if f.filename == "<sandbox>"), None)
    except BaseException:
        line = None
    name = "PermissionError" if isinstance(e, _Refused) else type(e).__name__
    result["error_type"] = _text(name)
    where = f" (line {line})" if line else ""
    msg = _text(e)
    result["error"] = f"{result['error_type']}: {msg}{where}" if msg else f"{result['error_type']}{where}"
_armed = False
try:
    _out.flush()
except BaseException:
    pass
_data = memoryview((json.dumps(result, ensure_ascii=True, default=str) + "\n").encode())
while _data:
    _data = _data[os.write(_res_fd, _data):]
os._exit(0)
'''

_PROBE = "import sys; sys.stdout.write('promptless-sandbox-ok')"

# ---------------------------------------------------------------- seccomp

# Syscalls refused with EPERM inside the namespaces. Creating processes is refused
# through clone's flags (threads stay possible; RLIMIT_NPROC and the address-space
# limit bound them); clone3 answers ENOSYS so the C library falls back to clone.
_DENIED = (
    "fork", "vfork", "socket", "ptrace", "process_vm_readv", "process_vm_writev", "kexec_load", "kexec_file_load",
    "mount", "umount2", "pivot_root", "chroot", "unshare", "setns", "keyctl", "add_key", "request_key", "bpf",
    "perf_event_open", "userfaultfd", "io_uring_setup", "io_uring_enter", "io_uring_register", "acct", "swapon",
    "swapoff", "reboot", "init_module", "finit_module", "delete_module", "open_by_handle_at", "name_to_handle_at",
    "kcmp", "pidfd_open", "pidfd_getfd", "syslog", "open_tree", "move_mount", "fsopen", "fsconfig", "fsmount",
    "fspick", "mount_setattr", "personality", "quotactl", "iopl", "ioperm",
)
_SYSCALLS = {
    "x86_64": (0xC000003E, {
        "clone": 56, "clone3": 435, "fork": 57, "vfork": 58, "socket": 41, "ptrace": 101, "process_vm_readv": 310,
        "process_vm_writev": 311, "kexec_load": 246, "kexec_file_load": 320, "mount": 165, "umount2": 166,
        "pivot_root": 155, "chroot": 161, "unshare": 272, "setns": 308, "keyctl": 250, "add_key": 248,
        "request_key": 249, "bpf": 321, "perf_event_open": 298, "userfaultfd": 323, "io_uring_setup": 425,
        "io_uring_enter": 426, "io_uring_register": 427, "acct": 163, "swapon": 167, "swapoff": 168, "reboot": 169,
        "init_module": 175, "finit_module": 313, "delete_module": 176, "open_by_handle_at": 304,
        "name_to_handle_at": 303, "kcmp": 312, "pidfd_open": 434, "pidfd_getfd": 438, "syslog": 103,
        "open_tree": 428, "move_mount": 429, "fsopen": 430, "fsconfig": 431, "fsmount": 432, "fspick": 433,
        "mount_setattr": 442, "personality": 135, "quotactl": 179, "iopl": 172, "ioperm": 173,
    }),
    # The generic table (no fork/vfork, iopl/ioperm); the same filter, not exercised on this project's machines.
    "aarch64": (0xC00000B7, {
        "clone": 220, "clone3": 435, "socket": 198, "ptrace": 117, "process_vm_readv": 270,
        "process_vm_writev": 271, "kexec_load": 104, "kexec_file_load": 294, "mount": 40, "umount2": 39,
        "pivot_root": 41, "chroot": 51, "unshare": 97, "setns": 268, "keyctl": 219, "add_key": 217,
        "request_key": 218, "bpf": 280, "perf_event_open": 241, "userfaultfd": 282, "io_uring_setup": 425,
        "io_uring_enter": 426, "io_uring_register": 427, "acct": 89, "swapon": 224, "swapoff": 225, "reboot": 142,
        "init_module": 105, "finit_module": 273, "delete_module": 106, "open_by_handle_at": 265,
        "name_to_handle_at": 264, "kcmp": 272, "pidfd_open": 434, "pidfd_getfd": 438, "syslog": 116,
        "open_tree": 428, "move_mount": 429, "fsopen": 430, "fsconfig": 431, "fsmount": 432, "fspick": 433,
        "mount_setattr": 442, "personality": 92, "quotactl": 60,
    }),
}


def seccomp_program(machine: str | None = None, *, sockets: bool = False) -> bytes | None:
    """The classic-BPF filter (``struct sock_filter[]``) ``bwrap --seccomp`` loads, or None off x86_64/aarch64.

    ``sockets=True`` leaves ``socket()`` allowed (for ``Sandbox(isolate_network=False)``).
    """
    machine = machine or platform.machine()
    if machine in ("amd64", "AMD64"):
        machine = "x86_64"
    if machine == "arm64":
        machine = "aarch64"
    if machine not in _SYSCALLS or sys.byteorder != "little":
        return None
    arch, nrs = _SYSCALLS[machine]
    ld, jeq, jge, jset, ret = 0x20, 0x15, 0x35, 0x45, 0x06
    allow, kill, eperm, enosys = 0x7FFF0000, 0x80000000, 0x00050000 | 1, 0x00050000 | 38
    prog: list[tuple[int, int, int, int]] = [
        (ld, 0, 0, 4),  # seccomp_data.arch
        (jeq, 1, 0, arch),
        (ret, 0, 0, kill),  # another ABI (i386, x32 entry points): refuse outright
        (ld, 0, 0, 0),  # seccomp_data.nr
    ]
    if machine == "x86_64":
        prog += [(jge, 0, 1, 0x40000000), (ret, 0, 0, kill)]  # x32 numbers
    prog += [(jeq, 0, 1, nrs["clone3"]), (ret, 0, 0, enosys)]
    for name in _DENIED:
        if name in nrs and not (sockets and name == "socket"):
            prog += [(jeq, 0, 1, nrs[name]), (ret, 0, 0, eperm)]
    clone_thread = 0x00010000
    prog += [
        (jeq, 0, 4, nrs["clone"]),
        (ld, 0, 0, 16),  # low half of args[0]: the clone flags
        (jset, 1, 0, clone_thread),
        (ret, 0, 0, eperm),
        (ret, 0, 0, allow),
        (ret, 0, 0, allow),
    ]
    return b"".join(struct.pack("=HBBI", code, jt, jf, k) for code, jt, jf, k in prog)


# ---------------------------------------------------------------- the interpreter and the namespaces

_INFO = (
    "import json, os, sys, sysconfig; v = sysconfig.get_config_vars(); "
    "print(json.dumps({'executable': os.path.realpath(sys.executable), 'stdlib': sysconfig.get_path('stdlib'), "
    "'platstdlib': sysconfig.get_path('platstdlib'), 'shared': bool(v.get('Py_ENABLE_SHARED')), "
    "'libdir': v.get('LIBDIR'), 'soname': v.get('INSTSONAME') or v.get('LDLIBRARY')}))"
)


@functools.lru_cache(maxsize=16)
def _interpreter_info(python: str) -> dict[str, Any] | None:
    """Where an interpreter's executable, standard library and libpython are (None if it does not run)."""
    try:
        out = subprocess.run([python, "-I", "-S", "-c", _INFO], capture_output=True, timeout=30, check=True).stdout
        info: dict[str, Any] = json.loads(out)
    except (OSError, subprocess.SubprocessError, ValueError):
        return None
    return info


def _python_paths(info: dict[str, Any]) -> list[str]:
    paths = [info["executable"], info["stdlib"], info["platstdlib"]]
    if info.get("shared") and info.get("libdir") and info.get("soname"):
        lib = os.path.join(info["libdir"], info["soname"])
        if os.path.exists(lib):
            paths.append(os.path.realpath(lib))
    return [p for p in paths if p]


def _mounts(info: dict[str, Any]) -> list[str]:
    """bwrap arguments for a read-only view of only what the interpreter needs."""
    args: list[str] = []
    bound: list[str] = []
    for path in ("/usr/lib", "/usr/lib64", "/lib", "/lib64"):
        if os.path.islink(path):
            args += ["--symlink", os.readlink(path), path]
        elif os.path.isdir(path):
            args += ["--ro-bind", path, path]
            bound.append(path)
    if os.path.exists("/etc/ld.so.cache"):
        args += ["--ro-bind", "/etc/ld.so.cache", "/etc/ld.so.cache"]
    for path in dict.fromkeys(_python_paths(info)):
        if not any(path == b or path.startswith(b + "/") for b in bound):
            args += ["--ro-bind", path, path]
            bound.append(path)
    return args


def _nobody() -> tuple[int, int]:
    try:
        import pwd

        entry = pwd.getpwnam("nobody")
        return entry.pw_uid, entry.pw_gid
    except (ImportError, KeyError):
        return 65534, 65534


@dataclass(frozen=True)
class _Setup:
    bwrap: str
    python: str
    mounts: tuple[str, ...]
    seccomp: bytes | None
    user: tuple[int, int] | None  # drop to this (uid, gid) before starting bwrap (the caller is root)


_setup_lock = threading.Lock()
_setups: dict[tuple[Any, ...], _Setup | str] = {}


def _find_bwrap() -> str | None:
    return shutil.which("bwrap")


def _candidates(python: str | None) -> list[str]:
    """The caller's interpreter first; then the system's, for when bwrap cannot bind the caller's (a Python
    under /root when the code runs as nobody, say). The runner needs only the standard library."""
    if python is not None:
        return [python]
    minor = f"python{sys.version_info[0]}.{sys.version_info[1]}"
    found = [sys.executable, shutil.which(minor), f"/usr/bin/{minor}", f"/usr/local/bin/{minor}", "/usr/bin/python3",
             "/usr/local/bin/python3"]
    seen: dict[str, str] = {}
    for p in found:
        if p:
            seen.setdefault(os.path.realpath(p), p)
    return list(seen.values())


def _namespace_setup(python: str | None, drop_privileges: bool, share_net: bool) -> _Setup:
    """Find bwrap and an interpreter that runs under it here, once per process; raise if there is none."""
    from .errors import ConfigurationError

    if not sys.platform.startswith("linux"):
        raise ConfigurationError(f"Sandbox: isolation='namespaces' needs Linux (this is {sys.platform}); "
                                 f"{_INSTALL_HINT}")
    bwrap = _find_bwrap()
    user = _nobody() if (os.geteuid() == 0 and drop_privileges) else None
    key = (bwrap, python, user, share_net)
    with _setup_lock:
        cached = _setups.get(key)
        if cached is None:
            cached = _probe_setup(bwrap, python, user, share_net)
            _setups[key] = cached
    if isinstance(cached, str):
        raise ConfigurationError(f"Sandbox: the code cannot be isolated on this machine: {cached}. Fix: "
                                 f"{_INSTALL_HINT}.")
    return cached


def _probe_setup(bwrap: str | None, python: str | None, user: tuple[int, int] | None, share_net: bool) -> _Setup | str:
    if bwrap is None:
        return "bubblewrap (bwrap) is not installed"
    program = seccomp_program(sockets=share_net)
    problems = []
    for candidate in _candidates(python):
        info = _interpreter_info(candidate)
        if info is None:
            problems.append(f"{candidate} does not run")
            continue
        setup = _Setup(bwrap, info["executable"], tuple(_mounts(info)), program, user)
        seccomp_r = _seccomp_pipe(program) if program is not None else None
        argv = [*_bwrap_argv(setup, share_net, file_bytes=2**20, seccomp_fd=seccomp_r), "-c", _PROBE]
        try:
            probe = subprocess.run(argv, capture_output=True, timeout=30, env=_env(),
                                   pass_fds=[seccomp_r] if seccomp_r is not None else [], **_user_kwargs(user))
        except (OSError, subprocess.SubprocessError) as exc:
            problems.append(f"bwrap could not start {candidate}: {exc}")
            continue
        finally:
            if seccomp_r is not None:
                os.close(seccomp_r)
        if probe.returncode == 0 and probe.stdout == b"promptless-sandbox-ok":
            return setup
        why = probe.stderr.decode("utf-8", "replace").strip().splitlines()[-1:] or [f"exit code {probe.returncode}"]
        problems.append(f"bwrap could not run {candidate}{' as nobody' if user else ''}: {why[0]}")
    return "; ".join(problems) or "no Python interpreter was found"


def _user_kwargs(user: tuple[int, int] | None) -> dict[str, Any]:
    return {"user": user[0], "group": user[1], "extra_groups": []} if user else {}


def _env() -> dict[str, str]:
    return {"PATH": "/usr/bin:/bin", "HOME": WORKDIR, "TMPDIR": WORKDIR, "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8"}


def _seccomp_pipe(program: bytes) -> int:
    r, w = os.pipe()
    try:
        os.write(w, program)  # a few hundred bytes: fits in the pipe
    finally:
        os.close(w)
    return r


def _bwrap_argv(setup: _Setup, share_net: bool, *, file_bytes: int, seccomp_fd: int | None) -> list[str]:
    argv = [setup.bwrap, "--unshare-all", *(["--share-net"] if share_net else []), "--die-with-parent",
            "--new-session", "--cap-drop", "ALL", "--uid", "65534", "--gid", "65534", "--hostname", "sandbox",
            *setup.mounts, "--proc", "/proc", "--dev", "/dev",
            "--size", str(max(file_bytes, 1 << 20)), "--tmpfs", WORKDIR, "--chdir", WORKDIR,
            # Only the working directory (size-limited) stays writable: the root and /dev are tmpfs too.
            "--remount-ro", "/dev", "--remount-ro", "/"]
    if seccomp_fd is not None:
        argv += ["--seccomp", str(seccomp_fd)]
    return [*argv, "--", setup.python, "-I", "-S"]


@functools.lru_cache(maxsize=1)
def _network_wrapper() -> tuple[str, ...]:
    """``unshare --net`` where it works here (root on Linux), else nothing (the weak mode only)."""
    exe = shutil.which("unshare")
    if exe is None or not sys.platform.startswith("linux") or os.geteuid() != 0:
        return ()
    try:
        probe = subprocess.run([exe, "--net", "true"], capture_output=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return ()
    return (exe, "--net") if probe.returncode == 0 else ()


def namespaces_available(python: str | None = None) -> str | None:
    """None when ``Sandbox()`` can isolate code here; else why not (the fix is in the error ``run`` raises)."""
    from .errors import ConfigurationError

    try:
        _namespace_setup(python, True, False)
    except ConfigurationError as exc:
        return str(exc)
    return None


# ---------------------------------------------------------------- the sandbox


class Sandbox:
    """A recipe for running code: limits and allowed imports. ``run(code)`` starts a fresh process each time.

    ``timeout`` is wall-clock seconds; ``memory_mb`` the address-space limit of the
    child (the interpreter itself takes ~16 MB of it); ``max_output_chars`` how much
    of the printed output and of the last value is kept; ``file_mb`` the largest file
    the code may write (and the size of its working directory); ``allowed_imports``
    the top-level modules the code may import (all pure computation by default).
    ``isolation`` is ``"namespaces"`` (bubblewrap; the default, and the only mode
    that contains hostile code) or ``"process"`` (a plain child process: an
    explicit choice for machines without bubblewrap or user namespaces).
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
        isolation: str = "namespaces",
    ) -> None:
        if timeout <= 0 or memory_mb < 32:
            raise ValueError("Sandbox: timeout must be > 0 and memory_mb at least 32")
        if max_output_chars < 1 or file_mb < 1:
            raise ValueError("Sandbox: max_output_chars and file_mb must be at least 1")
        if isolation not in ISOLATION_MODES:
            raise ValueError(f"Sandbox: isolation must be one of {', '.join(map(repr, ISOLATION_MODES))}, "
                             f"not {isolation!r}")
        self.timeout = float(timeout)
        self.memory_mb = int(memory_mb)
        self.max_output_chars = int(max_output_chars)
        self.file_mb = int(file_mb)
        self.allowed_imports = tuple(allowed_imports)
        self.isolate_network = isolate_network
        self.drop_privileges = drop_privileges
        self.python = python
        self.isolation = isolation

    @property
    def cpu_seconds(self) -> int:
        return max(1, int(self.timeout) + 1)

    def check(self) -> None:
        """Raise ``ConfigurationError`` (naming the fix) if this sandbox cannot run code here."""
        if os.name != "posix":
            from .errors import ConfigurationError

            raise ConfigurationError("Sandbox: the sandbox needs a POSIX system (Linux, or macOS with "
                                     "isolation=\"process\") for its process limits")
        if self.isolation == "namespaces":
            _namespace_setup(self.python, self.drop_privileges, not self.isolate_network)

    def run(self, code: str) -> SandboxResult:
        self.check()
        started = time.monotonic()
        if self.isolation == "namespaces":
            return self._run_namespaces(code, started)
        return self._run_process(code, started)

    # -- the two ways to start the child

    def _cfg(self, code: str, workdir: str, result_fd: int, nproc: int, drop_to: tuple[int, int] | None) -> bytes:
        return json.dumps({
            "code": code, "workdir": workdir, "result_fd": result_fd, "nproc": nproc,
            "drop_to": list(drop_to) if drop_to else None, "memory_bytes": self.memory_mb * 2**20,
            "cpu_seconds": self.cpu_seconds, "file_bytes": self.file_mb * 2**20,
            "max_output_chars": self.max_output_chars, "allowed_imports": list(self.allowed_imports),
        }).encode()

    def _prlimit(self) -> list[str]:
        exe = shutil.which("prlimit")
        if exe is None:
            return []  # the runner's prologue sets the same limits before any code runs
        mem, fsize, cpu = self.memory_mb * 2**20, self.file_mb * 2**20, self.cpu_seconds
        return [exe, f"--as={mem}:{mem}", f"--cpu={cpu}:{cpu + 1}", f"--fsize={fsize}:{fsize}", "--core=0:0",
                "--nofile=64:64", "--"]

    def _run_namespaces(self, code: str, started: float) -> SandboxResult:
        setup = _namespace_setup(self.python, self.drop_privileges, not self.isolate_network)
        res_r, res_w = os.pipe()
        seccomp_r = _seccomp_pipe(setup.seccomp) if setup.seccomp is not None else None
        pass_fds = [res_w] + ([seccomp_r] if seccomp_r is not None else [])
        argv = [*self._prlimit(), *_bwrap_argv(setup, not self.isolate_network, file_bytes=self.file_mb * 2**20,
                                               seccomp_fd=seccomp_r), "-c", _RUNNER]
        # The pid namespace holds bwrap's init and the interpreter; RLIMIT_NPROC allows nothing more.
        cfg = self._cfg(code, WORKDIR, res_w, nproc=2, drop_to=None)
        details = {"isolation": "namespaces", "python": setup.python, "seccomp": setup.seccomp is not None,
                   "dropped_privileges": setup.user is not None, "network_namespace": self.isolate_network}
        try:
            proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                    env=_env(), pass_fds=pass_fds, start_new_session=True,
                                    **_user_kwargs(setup.user))
        except BaseException:
            os.close(res_r)
            raise
        finally:
            os.close(res_w)
            if seccomp_r is not None:
                os.close(seccomp_r)
        return self._collect(proc, cfg, res_r, started, details, signal_base=128)

    def _run_process(self, code: str, started: float) -> SandboxResult:
        tmpdir = tempfile.mkdtemp(prefix="promptless-sandbox-")
        drop = self.drop_privileges and os.geteuid() == 0
        uid, gid = _nobody()
        try:
            if drop:
                os.chown(tmpdir, uid, gid)
            res_r, res_w = os.pipe()
            wrapper = _network_wrapper() if self.isolate_network else ()
            argv = [*self._prlimit(), *wrapper, self.python or sys.executable, "-I", "-S", "-c", _RUNNER]
            cfg = self._cfg(code, tmpdir, res_w, nproc=0, drop_to=(uid, gid) if drop else None)
            env = {**_env(), "HOME": tmpdir, "TMPDIR": tmpdir}
            details = {"isolation": "process", "python": self.python or sys.executable, "seccomp": False,
                       "dropped_privileges": drop, "network_namespace": bool(wrapper)}
            try:
                proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                        cwd=tmpdir, env=env, pass_fds=[res_w], start_new_session=True)
            except BaseException:
                os.close(res_r)
                raise
            finally:
                os.close(res_w)
            return self._collect(proc, cfg, res_r, started, details, signal_base=None)
        finally:
            shutil.rmtree(tmpdir, ignore_errors=True)

    # -- reading the child

    def _collect(self, proc: subprocess.Popen[bytes], cfg: bytes, res_r: int, started: float,
                 details: dict[str, Any], signal_base: int | None) -> SandboxResult:
        assert proc.stdin is not None and proc.stdout is not None and proc.stderr is not None
        out_cap = 4 * self.max_output_chars + 4
        res_cap = 32 * self.max_output_chars + 65536  # two capped strings, JSON-escaped
        streams = {proc.stdout.fileno(): "out", proc.stderr.fileno(): "err", res_r: "res"}
        caps = {"out": out_cap, "err": _STDERR_CAP, "res": res_cap}
        kept: dict[str, bytearray] = {name: bytearray() for name in caps}
        total = dict.fromkeys(caps, 0)
        deadline = started + self.timeout
        timed_out = False
        sel = selectors.DefaultSelector()
        try:
            for fd, name in streams.items():
                os.set_blocking(fd, False)
                sel.register(fd, selectors.EVENT_READ, name)
            stdin_fd = proc.stdin.fileno()
            os.set_blocking(stdin_fd, False)
            sel.register(stdin_fd, selectors.EVENT_WRITE, "in")
            pending = memoryview(cfg)
            exited_at: float | None = None
            while sel.get_map():
                now = time.monotonic()
                if exited_at is None and _has_exited(proc):
                    exited_at = now
                if now >= deadline:
                    timed_out = exited_at is None
                    break
                if exited_at is not None and now - exited_at > _GRACE:
                    break  # the child is gone; whatever still holds a pipe is not waited for
                for key, _ in sel.select(min(deadline - now, 0.1)):
                    fd, name = key.fd, key.data
                    if name == "in":
                        try:
                            pending = pending[os.write(fd, pending[:65536]):]
                        except BlockingIOError:
                            continue
                        except OSError:
                            pending = pending[:0]
                        if not pending:
                            sel.unregister(fd)
                            try:
                                proc.stdin.close()
                            except OSError:
                                pass
                        continue
                    try:
                        chunk = os.read(fd, 65536)
                    except BlockingIOError:
                        continue
                    except OSError:
                        chunk = b""
                    if not chunk:
                        sel.unregister(fd)
                        continue
                    total[name] += len(chunk)
                    room = caps[name] - len(kept[name])
                    if room > 0:
                        kept[name] += chunk[:room]
            while not timed_out and not _has_exited(proc):  # the pipes closed; the child is about to end
                if time.monotonic() >= deadline:
                    timed_out = True
                    break
                time.sleep(0.005)
        finally:
            sel.close()
            _end(proc)
            os.close(res_r)
        seconds = time.monotonic() - started
        stdout = self._stdout_text(bytes(kept["out"]), total["out"])
        details = {**details, "stdout_bytes": total["out"], "exit_status": proc.returncode}
        if timed_out:
            return SandboxResult(ok=False, stdout=stdout, error=f"time limit of {self.timeout:g} s exceeded (an "
                                 "endless loop?)", error_type="Timeout", seconds=seconds, details=details)
        return self._outcome(proc.returncode, stdout, bytes(kept["res"]), total["res"] > res_cap,
                             bytes(kept["err"]), seconds, details, signal_base)

    def _stdout_text(self, data: bytes, total: int) -> str:
        text = data.decode("utf-8", "replace")
        if len(text) > self.max_output_chars or total > len(data):
            keep = text[: self.max_output_chars]
            cut = total - len(keep.encode("utf-8", "replace"))
            return keep + f"\n... [{cut} more bytes of output cut]"
        return text

    def _outcome(self, rc: int, stdout: str, frame_bytes: bytes, frame_overflow: bool, err: bytes, seconds: float,
                 details: dict[str, Any], signal_base: int | None) -> SandboxResult:
        def fail(error: str, error_type: str) -> SandboxResult:
            return SandboxResult(ok=False, stdout=stdout, error=error, error_type=error_type, seconds=seconds,
                                 details=details)

        frame, problem = _read_frame(frame_bytes, frame_overflow)
        if problem is not None:
            return fail(f"the code wrote to the sandbox's result channel ({problem}); its report was discarded",
                        "ResultTampered")
        sig = _signal_of(rc, signal_base)
        if frame is not None and rc == 0:
            return SandboxResult(ok=frame["ok"], stdout=stdout, value=frame["value"], error=frame["error"],
                                 error_type=frame["error_type"], seconds=seconds, details=details)
        if sig is not None:
            if sig == getattr(signal, "SIGXCPU", -1):
                return fail(f"CPU time limit of {self.cpu_seconds} s exceeded", "Timeout")
            if sig == getattr(signal, "SIGXFSZ", -1):
                return fail(f"file size limit of {self.file_mb} MB exceeded", "FileLimit")
            name = signal.Signals(sig).name if sig in signal.Signals._value2member_map_ else str(sig)
            return fail(f"the process was killed by {name} (over the memory limit of {self.memory_mb} MB?)", "Killed")
        err_text = err.decode("utf-8", "replace").strip()
        if err_text.startswith("bwrap:"):
            return fail(f"the sandbox could not start: {err_text.splitlines()[0]}", "SandboxError")
        if "promptless-sandbox: could not drop privileges" in err_text:
            return fail("the sandbox could not drop privileges to nobody; the code was not run", "SandboxError")
        tail = err_text.splitlines()[-3:]
        if "MemoryError" in " ".join(tail):
            return fail(f"MemoryError: the code used more than the memory limit of {self.memory_mb} MB", "MemoryError")
        if rc == 0:
            return fail("the code ended the interpreter itself (os._exit, exec?) before its result was reported",
                        "NoResult")
        why = " / ".join(tail) if tail else f"exit code {rc}"
        return fail(f"the sandboxed process ended without a result ({why})", "Crashed")


_FRAME_KEYS = frozenset({"ok", "value", "error", "error_type"})


def _read_frame(data: bytes, overflow: bool) -> tuple[dict[str, Any] | None, str | None]:
    """The one result frame, or (None, None) if there is none, or (None, why) if what came is not one frame."""
    if overflow:
        return None, "more data than a report can hold"
    if not data:
        return None, None
    if not data.endswith(b"\n") or data.count(b"\n") != 1:
        return None, "not exactly one line"
    try:
        frame = json.loads(data)
    except ValueError:
        return None, "not JSON"
    if not isinstance(frame, dict) or set(frame) != _FRAME_KEYS or not isinstance(frame["ok"], bool):
        return None, "not the report's fields"
    if any(frame[k] is not None and not isinstance(frame[k], str) for k in ("value", "error", "error_type")):
        return None, "fields of the wrong type"
    if not frame["ok"] and not frame["error"]:
        return None, "a failure without an error"
    return frame, None


def _signal_of(rc: int | None, base: int | None) -> int | None:
    if rc is None:
        return None
    if base is None:
        return -rc if rc < 0 else None
    sig = rc - base
    return sig if rc > base and sig in signal.Signals._value2member_map_ else None


def _has_exited(proc: subprocess.Popen[bytes]) -> bool:
    """Whether the child has ended, without reaping it (so its process group id cannot be reused yet)."""
    if proc.returncode is not None:
        return True
    if hasattr(os, "waitid"):
        try:
            return os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None
        except ChildProcessError:
            return True
    return proc.poll() is not None


def _end(proc: subprocess.Popen[bytes]) -> None:
    """Kill the child's process group (the pid namespace goes with it), then reap the child."""
    for stream in (proc.stdin, proc.stdout, proc.stderr):
        try:
            if stream is not None:
                stream.close()
        except OSError:
            pass
    if proc.returncode is None:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            try:
                proc.kill()
            except OSError:
                pass
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:  # pragma: no cover - SIGKILL was sent
        proc.kill()
        proc.wait()


def run_code(code: str, **limits: Any) -> SandboxResult:
    """``Sandbox(**limits).run(code)``."""
    return Sandbox(**limits).run(code)


__all__ = ["DEFAULT_ALLOWED_IMPORTS", "ISOLATION_MODES", "Sandbox", "SandboxResult", "namespaces_available",
           "run_code", "seccomp_program"]
