"""The sandbox escape catalogue: what hostile model-written code tries, run as root and as an unprivileged user.

Each case runs the code through ``sandbox_harness.py`` in a separate process
(as root, or as ``nobody`` via setpriv when the tests run as root, or as the
current user otherwise), so that the process whose environment, memory, pipes
and listeners the code goes after is a real parent. Most cases first switch
off the sandbox's in-interpreter audit hook (two ways; the first needs no
import), to show that what holds is the operating system, not the hook.

Every case here failed on promptless 0.1.0's sandbox (an audit hook as the
policy); see docs/reliability.md for the table. To run the catalogue against
another sandbox.py: ``PROMPTLESS_SANDBOX_MODULE=/path/to/sandbox.py pytest ...``.
"""

from __future__ import annotations

import functools
import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from promptless.errors import ConfigurationError

HARNESS = Path(__file__).with_name("sandbox_harness.py")
SECRET = "promptless-escape-secret-" + secrets.token_hex(8)

# Two ways to switch the audit hook off from inside. The first uses no import at
# all: the guarded __import__ is a function of the runner, so its globals are the
# runner's, flag and all. The second swaps the hook's code through an allowed module.
HOOK_OFF_NO_IMPORT = """
_g = __import__.__globals__
_g['_armed'] = False
__builtins__.__import__ = _g['_real_import']
"""
HOOK_OFF_CODE_SWAP = """
import typing
_m = typing.sys.modules['__main__']
_m._hook.__code__ = (lambda event, args: None).__code__
typing.sys.modules['builtins'].__import__ = _m._real_import
_g = vars(_m)
"""
PROVE_HOOK_OFF = """
import os
os.listdir('/')
print('HOOK-OFF')
"""


def _why_no_sandbox() -> str | None:
    if not sys.platform.startswith("linux"):
        return "the escape catalogue needs Linux"
    from promptless.sandbox import namespaces_available

    return namespaces_available()


_WHY_NOT = _why_no_sandbox()
pytestmark = pytest.mark.skipif(_WHY_NOT is not None, reason=f"no isolated sandbox here: {_WHY_NOT}")


def _nobody() -> tuple[int, int]:
    import pwd

    entry = pwd.getpwnam("nobody")
    return entry.pw_uid, entry.pw_gid


def _drop_prefix() -> list[str]:
    uid, gid = _nobody()
    if shutil.which("setpriv"):
        return ["setpriv", f"--reuid={uid}", f"--regid={gid}", "--clear-groups", "--"]
    return ["runuser", "-u", "nobody", "--"]


@functools.lru_cache(maxsize=1)
def _unprivileged_python() -> str | None:
    """An interpreter (3.10+) that nobody can run: the tests' own, or the system's."""
    for python in (sys.executable, "/usr/bin/python3", "/usr/local/bin/python3"):
        try:
            probe = subprocess.run([*_drop_prefix(), python, "-I", "-c",
                                    "import os, sys; assert sys.version_info >= (3, 10) "
                                    "and os.access(sys.executable, os.X_OK)"],
                                   capture_output=True, timeout=30, cwd="/")
        except (OSError, subprocess.SubprocessError):
            continue
        if probe.returncode == 0:
            return python
    return None


@pytest.fixture(params=["root", "unprivileged"])
def who(request) -> str:
    if request.param == "root" and os.geteuid() != 0:
        pytest.skip("the root half needs the tests to run as root")
    if request.param == "unprivileged" and os.geteuid() == 0:
        if _unprivileged_python() is None:
            pytest.skip("no Python interpreter that the user nobody can run")
        if not os.access(HARNESS, os.R_OK) or (HARNESS.stat().st_mode & 0o004) == 0:
            pytest.skip("the checkout is not readable by the user nobody")
    return request.param


def run_in_sandbox(who: str, code: str, **limits) -> dict:
    """Run ``code`` in a fresh harness process as ``who``; return what the sandbox reported."""
    if who == "unprivileged" and os.geteuid() == 0:
        argv = [*_drop_prefix(), _unprivileged_python() or sys.executable, "-I", str(HARNESS)]
    else:
        argv = [sys.executable, "-I", str(HARNESS)]
    env = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "PROMPTLESS_ESCAPE_SECRET": SECRET}
    if os.environ.get("PROMPTLESS_SANDBOX_MODULE"):
        env["PROMPTLESS_SANDBOX_MODULE"] = os.environ["PROMPTLESS_SANDBOX_MODULE"]
    request = {"code": code, "limits": {"timeout": 5.0, "memory_mb": 256, **limits}}
    proc = subprocess.run(argv, input=json.dumps(request).encode(), capture_output=True, timeout=120, env=env,
                          cwd="/")
    assert proc.returncode == 0, proc.stderr.decode()[-3000:]
    result = json.loads(proc.stdout)
    assert (result["uid"] == 0) == (who == "root" and os.geteuid() == 0)
    return result


@pytest.fixture
def outside():
    """A host directory anyone may write to: the code must not be able to put a file in it."""
    path = Path(tempfile.mkdtemp(prefix="promptless-escape-", dir="/tmp"))
    path.chmod(0o777)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def listener():
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(8)
    sock.setblocking(False)
    yield sock
    sock.close()


def _connections(sock: socket.socket) -> int:
    count = 0
    while True:
        try:
            conn, _ = sock.accept()
        except BlockingIOError:
            return count
        conn.close()
        count += 1


def _passwd_first_line() -> str:
    return Path("/etc/passwd").read_text().splitlines()[0]


def _processes_with(marker: str) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes()
        except OSError:
            continue
        if marker.encode() in cmdline:
            found.append(int(entry))
    return found


READ_PASSWD = """
try:
    print(open('/etc/passwd').read())
except OSError as e:
    print('passwd refused:', type(e).__name__)
"""


@pytest.mark.parametrize("hook_off", [HOOK_OFF_NO_IMPORT, HOOK_OFF_CODE_SWAP], ids=["no-import", "code-swap"])
def test_hook_switched_off_then_read_etc_passwd(who, hook_off):
    r = run_in_sandbox(who, hook_off + PROVE_HOOK_OFF + READ_PASSWD)
    assert "HOOK-OFF" in r["stdout"], r  # the hook really is off: what holds below is the operating system
    assert _passwd_first_line() not in r["stdout"]


def test_write_outside_the_working_directory(who, outside):
    token = secrets.token_hex(4)
    targets = [str(outside / "escaped.txt"), f"/tmp/promptless-escaped-{token}", f"../promptless-escaped-{token}-up"]
    code = HOOK_OFF_NO_IMPORT + f"""
import os
for p in {targets!r}:
    try:
        with open(p, 'w') as f:
            f.write('escaped')
        print('WROTE', p)
    except OSError as e:
        print('refused', p, type(e).__name__)
"""
    up = f"promptless-escaped-{token}-up"  # where ../ from the old working directory (under /tmp) or / lands
    try:
        r = run_in_sandbox(who, code)
        written = [p for p in (targets[0], targets[1], f"/{up}", f"/tmp/{up}") if os.path.exists(p)]
    finally:
        for p in (targets[1], f"/{up}", f"/tmp/{up}"):
            if os.path.exists(p):
                os.remove(p)
    assert "refused" in r["stdout"] or "WROTE" in r["stdout"], r  # the code ran to the writes
    assert written == [], f"the code wrote {written} on the host"
    assert not list(outside.iterdir())


def test_parent_environment_through_proc(who):
    code = HOOK_OFF_NO_IMPORT + """
import os
for pid in os.listdir('/proc'):
    if pid.isdigit():
        try:
            data = open(f'/proc/{pid}/environ', 'rb').read()
        except OSError:
            continue
        print(pid, data.decode('latin-1'))
"""
    r = run_in_sandbox(who, code)
    assert r["error_type"] is None, r
    assert SECRET not in r["stdout"]


def test_connect_to_a_listener_on_localhost(who, listener):
    port = listener.getsockname()[1]
    code = HOOK_OFF_NO_IMPORT + f"""
try:
    import socket
    s = socket.create_connection(('127.0.0.1', {port}), timeout=2)
    s.sendall(b'escaped')
    print('CONNECTED')
except Exception as e:
    print('refused', type(e).__name__, e)
"""
    r = run_in_sandbox(who, code)
    assert "refused" in r["stdout"], r
    assert _connections(listener) == 0 and "CONNECTED" not in r["stdout"]


def test_os_system(who, outside):
    marker = outside / "system-ran"
    code = HOOK_OFF_NO_IMPORT + f"""
import os
print('status', os.system('echo SYSTEM-RAN; touch {marker}'))
"""
    r = run_in_sandbox(who, code)
    assert not marker.exists() and "SYSTEM-RAN" not in r["stdout"], r


def test_subprocess(who, outside):
    marker = outside / "subprocess-ran"
    code = HOOK_OFF_NO_IMPORT + f"""
import subprocess, sys
for argv in (['/bin/sh', '-c', 'echo SUBPROCESS-RAN; touch {marker}'],
             [sys.executable, '-c', 'print("SUBPROCESS-RAN"); open("{marker}", "w")']):
    try:
        print('rc', subprocess.run(argv, timeout=3).returncode)
    except Exception as e:
        print('refused', type(e).__name__, e)
"""
    r = run_in_sandbox(who, code)
    assert not marker.exists() and "SUBPROCESS-RAN" not in r["stdout"], r


def test_ctypes(who, outside):
    marker = outside / "ctypes-ran"
    code = HOOK_OFF_NO_IMPORT + f"""
import ctypes
libc = ctypes.CDLL(None)
print('system', libc.system(b'echo CTYPES-RAN; touch {marker}'))
"""
    r = run_in_sandbox(who, code)
    assert not marker.exists() and "CTYPES-RAN" not in r["stdout"], r


def test_fork(who, outside):
    marker = outside / "fork-child-ran"
    code = HOOK_OFF_NO_IMPORT + f"""
import os
try:
    pid = os.fork()
except OSError as e:
    print('refused', type(e).__name__)
else:
    if pid == 0:
        open('{marker}', 'w').close()
        os._exit(0)
    os.waitpid(pid, 0)
    print('FORKED')
"""
    r = run_in_sandbox(who, code)
    assert not marker.exists() and "FORKED" not in r["stdout"], r


def test_grandchild_holding_the_pipe_does_not_outlive_the_run(who):
    marker = "promptless-grandchild-" + secrets.token_hex(6)
    code = HOOK_OFF_NO_IMPORT + f"""
import os, sys
try:
    if os.fork() == 0:
        os.setsid()
        os.execv(sys.executable, [sys.executable, '-c', 'import time; time.sleep(15)', '{marker}'])
except OSError as e:
    print('refused', type(e).__name__)
print('parent done')
"""
    try:
        r = run_in_sandbox(who, code, timeout=2.0)
        assert r["elapsed"] < 2.0 + 1.5, r
        assert _processes_with(marker) == []
    finally:
        for pid in _processes_with(marker):
            os.kill(pid, 9)


def test_huge_raw_writes_to_stdout_and_stderr_keep_the_parent_small(who):
    code = HOOK_OFF_NO_IMPORT + """
import os
chunk = b'x' * 40_000_000
for _ in range(10):
    os.write(1, chunk)
    os.write(2, chunk)
print('done')
"""
    r = run_in_sandbox(who, code, timeout=60.0, max_output_chars=10_000)
    grown_mb = (r["maxrss_after_kb"] - r["maxrss_before_kb"]) / 1024
    assert grown_mb < 64, f"the parent grew by {grown_mb:.0f} MB reading the child's output"
    assert len(r["stdout"]) <= 10_000 + 100


def test_a_result_frame_printed_to_stdout_is_only_output(who):
    # The old protocol: a nonce plus a JSON line on the output; the nonce was readable from the runner's globals.
    code = HOOK_OFF_NO_IMPORT + """
import os, json
nonce = _g.get('cfg', {}).get('nonce', '')
frame = json.dumps({'ok': True, 'stdout': 'FORGED', 'value': "'FORGED'", 'error': None, 'error_type': None})
line = (nonce + frame + '\\n').encode()
for fd in {1, _g.get('_out_fd', 1)}:
    os.write(fd, line)
os._exit(0)
"""
    r = run_in_sandbox(who, code)
    assert not r["ok"], r
    assert r["value"] != "'FORGED'" and r["stdout"] != "FORGED"
    assert '"stdout": "FORGED"' in r["stdout"]  # what the code printed comes back as printed text


def test_a_forged_report_on_the_result_channel_does_not_turn_a_failure_into_success(who):
    code = HOOK_OFF_NO_IMPORT + """
import os, json
nonce = _g.get('cfg', {}).get('nonce', '')
frame = json.dumps({'ok': True, 'value': "'FORGED'", 'error': None, 'error_type': None})
for fd in range(3, 64):
    try:
        os.write(fd, (nonce + frame + '\\n').encode())
    except OSError:
        pass
raise ValueError('the real outcome')
"""
    r = run_in_sandbox(who, code)
    assert not r["ok"] and r["value"] != "'FORGED'", r


def test_a_report_of_the_right_shape_cannot_change_what_was_printed(who):
    # Writing a well-formed report and leaving at once is the same as ending with an expression:
    # the code may choose its own value. It cannot choose the output: that is what reached fd 1.
    code = HOOK_OFF_NO_IMPORT + """
import os, json
print('REAL')
frame = json.dumps({'ok': True, 'stdout': 'FORGED', 'value': "'FORGED'", 'error': None, 'error_type': None})
for fd in range(3, 64):
    try:
        os.write(fd, (_g.get('cfg', {}).get('nonce', '') + frame + '\\n').encode())
    except OSError:
        pass
os._exit(0)
"""
    r = run_in_sandbox(who, code)
    assert r["stdout"] == "REAL\n", r


def test_the_run_refuses_without_bubblewrap(monkeypatch):
    import promptless.sandbox as mod

    monkeypatch.setattr(mod, "_find_bwrap", lambda: None)
    monkeypatch.setattr(mod, "_setups", {})
    with pytest.raises(ConfigurationError) as err:
        mod.Sandbox(timeout=2).run("1")
    text = str(err.value)
    assert "bubblewrap (bwrap) is not installed" in text and "apt-get install bubblewrap" in text
    assert 'isolation="process"' in text
    weak = mod.Sandbox(timeout=5, isolation="process").run("print(6 * 7)")  # the weaker mode is an explicit choice
    assert weak.ok and weak.stdout == "42\n" and weak.details["isolation"] == "process"


def test_the_layers_in_use_are_reported():
    from promptless.sandbox import Sandbox

    r = Sandbox(timeout=5).run("1 + 1")
    assert r.ok and r.value == "2"
    d = r.details
    assert d["isolation"] == "namespaces" and d["network_namespace"] is True
    assert d["seccomp"] is (os.uname().machine in ("x86_64", "aarch64"))
    assert d["dropped_privileges"] is (os.geteuid() == 0)
