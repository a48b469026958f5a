"""The sandbox really runs code in child processes: every escape must fail safely and leave the parent alone."""

from __future__ import annotations

import os
import socket
import sys
import threading

import pytest

from promptless.sandbox import Sandbox, namespaces_available

_why_not = namespaces_available() if os.name == "posix" else "the sandbox needs a POSIX system"
pytestmark = pytest.mark.skipif(_why_not is not None, reason=f"no isolated sandbox here: {_why_not}")


@pytest.fixture(scope="module")
def sandbox() -> Sandbox:
    return Sandbox(timeout=1.5, memory_mb=128)


def test_plain_code_runs_with_output_and_last_value(sandbox):
    r = sandbox.run("import math, statistics\nxs = [1, 2, 3, 4]\nprint('mean', statistics.mean(xs))\nmath.sqrt(16)")
    assert r.ok, r.error
    assert r.stdout == "mean 2.5\n" and r.value == "4.0"
    assert r.output == "mean 2.5\n4.0"


def test_errors_report_type_message_and_line(sandbox):
    r = sandbox.run("x = 1\ny = 0\nprint('before')\nx / y")
    assert not r.ok and r.error_type == "ZeroDivisionError"
    assert r.error == "ZeroDivisionError: division by zero (line 4)"
    assert "Output before the error:\nbefore" in r.describe()
    s = sandbox.run("def f(:\n    pass")
    assert s.error_type == "SyntaxError" and "line 1" in s.error


@pytest.mark.parametrize(
    ("code", "error_type", "message"),
    [
        ("import os\nos.listdir('/')", "ImportError", "import of 'os' is not allowed"),
        ("import subprocess\nsubprocess.run(['id'])", "ImportError", "import of 'subprocess' is not allowed"),
        ("import socket\ns = socket.socket()\ns.connect(('127.0.0.1', 9))", "ImportError", "'socket' is not allowed"),
        ("import ctypes", "ImportError", "'ctypes' is not allowed"),
        ("import shutil\nshutil.rmtree('/tmp')", "ImportError", "'shutil' is not allowed"),
        ("open('/etc/passwd').read()", "PermissionError", "opening '/etc/passwd' is not allowed"),
        ("open('../escape.txt', 'w').write('x')", "PermissionError", "is not allowed"),
        ("__import__('os').system('echo pwned')", "ImportError", "import of 'os' is not allowed"),
    ],
    ids=["os", "subprocess", "socket", "ctypes", "shutil", "read-passwd", "write-outside", "dunder-import"],
)
def test_escapes_fail_with_clear_errors(sandbox, code, error_type, message):
    r = sandbox.run(code)
    assert not r.ok
    assert r.error_type == error_type
    assert message in r.error


def test_subclass_walks_to_os_are_refused_by_the_audit_hook(sandbox):
    find = "[c for c in ().__class__.__bases__[0].__subclasses__() if c.__name__ == '_wrap_close'][0]"
    r = sandbox.run(f"g = {find}.__init__.__globals__\ng['system']('echo pwned')")
    assert r.error_type == "PermissionError" and "running commands is not allowed" in r.error
    r = sandbox.run(f"g = {find}.__init__.__globals__\ng['listdir']('/')")
    assert r.error_type == "PermissionError" and "os.listdir on '/'" in r.error
    r = sandbox.run(f"g = {find}.__init__.__globals__\ng['kill'](1, 9)")
    assert r.error_type == "PermissionError" and "os.kill" in r.error
    r = sandbox.run("import typing\ntyping.sys.modules['os'].execv('/bin/sh', ['sh'])")
    assert r.error_type == "PermissionError" and "os.exec" in r.error


def test_files_inside_the_working_directory_are_fine_and_private_to_the_run(sandbox):
    r = sandbox.run("with open('notes.txt', 'w') as f:\n    f.write('hello')\nopen('notes.txt').read()")
    assert r.ok and r.value == "'hello'"
    again = sandbox.run("open('notes.txt').read()")  # each run starts with an empty working directory
    assert again.error_type == "FileNotFoundError"


def test_the_process_mode_removes_its_working_directory(monkeypatch):
    import promptless.sandbox as mod

    made = []
    real = mod.tempfile.mkdtemp
    monkeypatch.setattr(mod.tempfile, "mkdtemp", lambda **kw: made.append(real(**kw)) or made[-1])
    r = Sandbox(timeout=3, isolation="process").run("with open('notes.txt', 'w') as f:\n    f.write('hello')\n"
                                                    "open('notes.txt').read()")
    assert r.ok and r.value == "'hello'" and r.details["isolation"] == "process"
    assert len(made) == 1 and not os.path.exists(made[0])


def test_infinite_loop_hits_the_time_limit():
    r = Sandbox(timeout=0.5).run("while True:\n    pass")
    assert not r.ok and r.error_type == "Timeout" and "time limit of 0.5 s exceeded" in r.error
    assert r.seconds < 3


def test_sleeping_hits_the_wall_clock_limit():
    r = Sandbox(timeout=0.5).run("import time\ntime.sleep(30)")
    assert r.error_type == "Timeout" and r.seconds < 3


@pytest.mark.parametrize("code", ["'x' * 10**10", "a = []\nwhile True:\n    a.append('x' * 100_000)",
                                  "b = bytearray(10**9)"])
def test_memory_bombs_hit_the_memory_limit(sandbox, code):
    r = sandbox.run(code)
    assert not r.ok
    assert r.error_type in ("MemoryError", "Killed")
    assert "memory limit of 128 MB" in r.error


def test_output_flood_is_capped():
    r = Sandbox(timeout=3, max_output_chars=100).run("for i in range(20000):\n    print(i)")
    assert r.ok and len(r.stdout) < 200 and "more bytes of output cut" in r.stdout


def test_the_parent_is_unaffected(sandbox):
    cwd, env, threads = os.getcwd(), dict(os.environ), threading.active_count()
    sandbox.run("import time\nx = 1")
    Sandbox(timeout=0.3).run("while True: pass")
    sandbox.run("import os")
    assert os.getcwd() == cwd and dict(os.environ) == env and threading.active_count() == threads
    assert "socket" not in sys.modules or socket.socket  # the parent's own modules are untouched
    socket.socket().close()  # the parent keeps its network


@pytest.mark.skipif(os.name != "posix" or os.geteuid() != 0, reason="dropping privileges needs root")
def test_as_root_the_child_runs_as_nobody(sandbox):
    r = sandbox.run("import typing\nos = typing.sys.modules['os']\nos.getuid()")
    assert r.ok and r.value == "65534" and r.details["dropped_privileges"]


def test_allowed_imports_can_be_widened():
    r = Sandbox(timeout=2, allowed_imports=("math", "base64")).run("import base64\nbase64.b64encode(b'hi')")
    assert r.ok and r.value == "b'aGk='"
    r = Sandbox(timeout=2, allowed_imports=("math",)).run("import json")
    assert r.error_type == "ImportError"
