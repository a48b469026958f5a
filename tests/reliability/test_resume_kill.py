"""Optimizer runs killed with SIGKILL, or stopped by their budget, resume to the uninterrupted run's result; the
calls made by all the processes of a run together stay within ``max_lm_calls``.

Each run is a real subprocess (``resume_child.py``) running an optimizer on scripted, deterministic LMs. Every
LM call is logged before its reply is made; to kill a run at call N the child is told to hang from its N-th call
on, the test waits for line N of the log and sends SIGKILL, so the kill always lands with calls in flight. The
same ``compile`` call with the same run directory then resumes it.

The fast tier kills each optimizer (and a `pl.label` run) once (MIPROv2 late in the run, at 70 % and 90 % of its calls, where a resumed
search used to see scores the killed process stored later and steer elsewhere) and checks the bound with one
and two threads; the ``slow`` tier kills every optimizer at five points with one and two threads.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

CHILD = Path(__file__).with_name("resume_child.py")
SAME = ("trials", "instructions", "demos", "final", "baseline", "stopped")
SAME_LABELS = ("labels", "failed", "pending", "stopped")  # pl.label's run (the "label" mode)


def _lines(path: Path) -> int:
    return len(path.read_text().splitlines()) if path.exists() else 0


def _spawn(name: str, run_dir: Path, log: Path, out: Path, *options: str) -> subprocess.Popen[str]:
    env = {**os.environ, "PROMPTLESS_CACHE": "0"}
    return subprocess.Popen([sys.executable, str(CHILD), name, str(run_dir), str(log), str(out), *options],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _finish(proc: subprocess.Popen[str], out: Path) -> dict[str, Any]:
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    return json.loads(out.read_text())


class _Runs:
    """The uninterrupted run of each optimizer (and thread count), made once per module."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.done: dict[tuple[str, int], tuple[dict[str, Any], int]] = {}

    def reference(self, name: str, threads: int = 1) -> tuple[dict[str, Any], int]:
        key = (name, threads)
        if key not in self.done:
            d = self.root / f"ref-{name}-{threads}"
            d.mkdir()
            result = _finish(_spawn(name, d / "run", d / "log", d / "out.json", "--threads", str(threads)),
                             d / "out.json")
            self.done[key] = (result, _lines(d / "log"))
            assert result["calls"] == self.done[key][1]  # every call counted, none twice
        return self.done[key]


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> _Runs:
    return _Runs(tmp_path_factory.mktemp("references"))


def _killed_at(name: str, run_dir: Path, log: Path, n: int, *options: str) -> None:
    """Run until the n-th LM call is in flight (with 2 threads: both threads' calls), then SIGKILL."""
    proc = _spawn(name, run_dir, log, run_dir.parent / "killed.json", "--stall-from", str(n), *options)
    deadline = time.monotonic() + 60
    while _lines(log) < n:
        assert proc.poll() is None, f"the run ended before call {n}: {proc.communicate()[1][-2000:]}"
        assert time.monotonic() < deadline, "the run never reached the kill point"
        time.sleep(0.005)
    if "--threads" in options:
        time.sleep(0.2)  # let the other threads reach their calls too
    os.kill(proc.pid, signal.SIGKILL)
    proc.communicate(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    assert not (run_dir.parent / "killed.json").exists()


def _kill_and_resume(runs: _Runs, tmp_path: Path, name: str, fraction: float, threads: int = 1) -> None:
    expected, total = runs.reference(name, threads)
    n = max(1, round(fraction * total))
    run_dir, first, second = tmp_path / "run", tmp_path / "first.log", tmp_path / "second.log"
    opts = ("--threads", str(threads)) if threads > 1 else ()
    _killed_at(name, run_dir, first, n, *opts)
    assert n <= _lines(first) < total
    resumed = _finish(_spawn(name, run_dir, second, tmp_path / "out.json", *opts), tmp_path / "out.json")

    assert resumed["resumed"] is True
    for key in SAME_LABELS if name == "label" else SAME:
        assert resumed[key] == expected[key], f"{key} differs after a kill at call {n} of {total}"
    # together the two processes made the uninterrupted run's calls, plus at most the ones in flight at the
    # kill (made again), and every one of them is counted
    made = _lines(first) + _lines(second)
    assert total <= made <= total + threads
    assert made <= resumed["calls"] <= total + threads


@pytest.mark.parametrize(("name", "fraction"), [
    ("labeled", 0.5), ("bootstrap", 0.5), ("random", 0.5), ("mipro", 0.7), ("mipro", 0.9), ("label", 0.5),
    ("gepa", 0.3), ("gepa", 0.8),
])
def test_a_killed_run_resumes_to_the_uninterrupted_result(runs, tmp_path, name, fraction):
    _kill_and_resume(runs, tmp_path, name, fraction)


@pytest.mark.slow
@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("fraction", [0.03, 0.25, 0.5, 0.75, 0.95])
@pytest.mark.parametrize("name", ["labeled", "bootstrap", "random", "mipro", "gepa", "label"])
def test_kills_at_every_point_resume_to_the_uninterrupted_result(runs, tmp_path, name, fraction, threads):
    _kill_and_resume(runs, tmp_path, name, fraction, threads)


@pytest.mark.parametrize("fraction", [0.7, 0.9])
def test_mipro_stopped_by_its_budget_late_resumes_to_the_uninterrupted_result(runs, tmp_path, fraction):
    expected, total = runs.reference("mipro")
    limit = round(fraction * total)
    out = _finish(_spawn("mipro", tmp_path / "run", tmp_path / "log", tmp_path / "out.json",
                         "--max-calls", str(limit), "--again"), tmp_path / "out.json")
    first, again = out["first"], out["again"]
    assert first["stopped"] == "budget" and first["calls"] == limit
    assert again["resumed"] is True
    for key in SAME:
        assert again[key] == expected[key], f"{key} differs after a budget stop at {limit} of {total} calls"
    assert again["calls"] == total == _lines(tmp_path / "log")  # nothing paid twice


@pytest.mark.parametrize("threads", [1, 2])
def test_max_lm_calls_bounds_the_calls_of_a_killed_and_resumed_run(runs, tmp_path, threads):
    """The calls in flight at the kill are counted on resume although they are made again: the two processes
    together never make more than max_lm_calls."""
    _, total = runs.reference("mipro")
    limit = round(0.6 * total)
    opts = ("--max-calls", str(limit), "--threads", str(threads))
    run_dir, first, second = tmp_path / "run", tmp_path / "first.log", tmp_path / "second.log"
    _killed_at("mipro", run_dir, first, limit // 2, *opts)
    resumed = _finish(_spawn("mipro", run_dir, second, tmp_path / "out.json", *opts), tmp_path / "out.json")
    made = _lines(first) + _lines(second)
    assert resumed["stopped"] == "budget"
    assert made <= limit, f"{made} calls made for max_lm_calls={limit}"
    assert made <= resumed["calls"] <= limit


def test_labelling_stopped_by_its_budget_resumes_paying_for_nothing_twice(runs, tmp_path):
    expected, total = runs.reference("label")
    limit = total // 3
    out = _finish(_spawn("label", tmp_path / "run", tmp_path / "log", tmp_path / "out.json",
                         "--max-calls", str(limit), "--again"), tmp_path / "out.json")
    first, again = out["first"], out["again"]
    assert first["stopped"] == "budget" and first["calls"] == limit == len(first["labels"])
    assert again["resumed"] is True and again["replayed"] == limit
    for key in SAME_LABELS:
        assert again[key] == expected[key], f"{key} differs after a budget stop at {limit} of {total} calls"
    assert again["calls"] == total == _lines(tmp_path / "log")  # nothing paid twice


@pytest.mark.parametrize("threads", [1, 2])
def test_max_lm_calls_bounds_the_calls_of_a_killed_and_resumed_labelling(runs, tmp_path, threads):
    _, total = runs.reference("label")
    limit = round(0.6 * total)
    opts = ("--max-calls", str(limit), "--threads", str(threads))
    run_dir, first, second = tmp_path / "run", tmp_path / "first.log", tmp_path / "second.log"
    _killed_at("label", run_dir, first, limit // 2, *opts)
    resumed = _finish(_spawn("label", run_dir, second, tmp_path / "out.json", *opts), tmp_path / "out.json")
    made = _lines(first) + _lines(second)
    assert resumed["stopped"] == "budget"
    assert made <= limit, f"{made} calls made for max_lm_calls={limit}"
    assert made <= resumed["calls"] <= limit
    assert len(resumed["labels"]) + resumed["pending"] == 52
