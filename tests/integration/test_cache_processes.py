"""One cache file, written and read by two processes with several threads each at once."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from promptless.lm.cache import Cache

pytestmark = pytest.mark.integration

PROCESSES = 2
THREADS = 4
PER_THREAD = 60

WORKER = textwrap.dedent(
    """
    import logging, sys, threading, time
    from pathlib import Path
    from promptless.lm.cache import Cache

    path, proc, threads, per_thread, ready, go = sys.argv[1:]
    proc, threads, per_thread = int(proc), int(threads), int(per_thread)

    class Count(logging.Handler):
        def __init__(self):
            super().__init__()
            self.records = []
        def emit(self, record):
            self.records.append(record.getMessage())

    count = Count()
    logging.getLogger("promptless.lm").addHandler(count)
    logging.getLogger("promptless.lm").setLevel(logging.WARNING)

    # A tiny memory part, so reads go to the file.
    cache = Cache(path, memory_size=4)
    errors = []

    def value(key):
        return {"texts": [key, "x" * 200], "usage": {"calls": 1}, "model": "m", "finish_reasons": ["stop"]}

    def work(t):
        try:
            for i in range(per_thread):
                own = f"p{proc}-t{t}-{i}"
                cache.put(own, value(own))
                shared = f"shared-{i % 10}"
                cache.put(shared, value(shared))
                for key in (own, shared):
                    got = cache.get(key)
                    if got != value(key):
                        errors.append(f"{key}: read back {got!r}")
                # Read what the other process wrote, if it is there yet: never a wrong value.
                other = f"p{1 - proc}-t{t}-{i // 2}"
                got = cache.get(other)
                if got is not None and got != value(other):
                    errors.append(f"{other}: corrupt {got!r}")
                len(cache)
        except BaseException as exc:
            errors.append(repr(exc))

    Path(ready).touch()
    deadline = time.monotonic() + 30
    while not Path(go).exists():
        if time.monotonic() > deadline:
            sys.exit("never told to go")
        time.sleep(0.005)
    pool = [threading.Thread(target=work, args=(t,)) for t in range(threads)]
    for th in pool:
        th.start()
    for th in pool:
        th.join()
    cache.close()
    problems = errors + count.records
    if problems:
        print("\\n".join(problems[:20]))
        sys.exit(1)
    print("ok")
    """
)


def test_two_processes_and_threads_share_one_file(tmp_path: Path) -> None:
    path = tmp_path / "shared" / "cache.sqlite3"
    go = tmp_path / "go"
    procs = []
    readies = []
    for proc in range(PROCESSES):
        ready = tmp_path / f"ready{proc}"
        readies.append(ready)
        procs.append(
            subprocess.Popen(
                [
                    sys.executable,
                    "-c",
                    WORKER,
                    str(path),
                    str(proc),
                    str(THREADS),
                    str(PER_THREAD),
                    str(ready),
                    str(go),
                ],
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )
        )
    deadline = time.monotonic() + 60
    while not all(r.exists() for r in readies):
        assert time.monotonic() < deadline, "workers did not start"
        assert all(p.poll() is None for p in procs), [p.communicate()[0] for p in procs if p.poll() is not None]
        time.sleep(0.01)
    go.touch()  # both processes start writing at the same moment
    outputs = [p.communicate(timeout=60)[0] for p in procs]
    for p, out in zip(procs, outputs, strict=True):
        assert p.returncode == 0, out
        assert out.strip().endswith("ok"), out

    cache = Cache(path, memory_size=0)
    try:
        assert len(cache) == PROCESSES * THREADS * PER_THREAD + 10
        for proc in range(PROCESSES):
            for t in range(THREADS):
                for i in range(PER_THREAD):
                    key = f"p{proc}-t{t}-{i}"
                    got = cache.get(key)
                    assert got is not None, f"lost {key}"
                    assert got["texts"] == [key, "x" * 200]
        for i in range(10):
            got = cache.get(f"shared-{i}")
            assert got is not None and got["texts"][0] == f"shared-{i}"
    finally:
        cache.close()
