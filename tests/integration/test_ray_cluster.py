"""RayExecutor on a real Ray cluster: a head and a second node, started here as separate processes on 127.0.0.1.

With the smallest embedded model (smollm2-135m, one thread, no prefix reuse so that each reply depends only on
its prompt), an evaluation and a small optimization through the cluster give the same predictions, in order,
and the same scores as with threads; the budget holds; a worker process killed mid-run is replaced and the run
completes with nothing lost and no finished example paid twice. The cluster is stopped at the end by stopping
the processes this test started (and theirs), never with ``ray stop``, which would stop every Ray on the machine.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import promptless as pl
from promptless.datasets import Category
from promptless.lm.cache import Cache
from promptless.optimize import BootstrapFewShotWithRandomSearch
from promptless.optimize.budget import Budget, GuardedLM

pytestmark = [pytest.mark.integration, pytest.mark.timeout(400)]


def require_ray() -> None:
    """Skip without Ray, or fail under CI=true, where a missing extra is an error rather than a silent skip."""
    import importlib.util

    if importlib.util.find_spec("ray") is None:
        message = "ray is not installed (pip install 'promptless[ray]')"
        if os.environ.get("CI") == "true":
            pytest.fail(f"{message}; CI=true requires it", pytrace=False)
        pytest.skip(message)


def free_port() -> int:
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])

class Sort(pl.Signature):
    """Name the category of the historic event."""

    event: str = pl.InputField()
    category: Category = pl.OutputField()


def metric(example, pred, trace=None):
    return example.category == pred.category


_runs = iter(range(1000))


def make_lm() -> pl.BaseLM:
    """The LM of one run, with an empty cache here and on the workers, so that no run answers from another's
    replies: a cache object of its own in this process, and a spec of its own (``history_size`` changes nothing
    else), so that each worker builds a new LM with an empty cache for it (the weights stay loaded)."""
    return pl.LM("local/smollm2-135m", n_threads=1, prefix_reuse=False, max_tokens=40, cache=Cache(None),
                 history_size=200 + next(_runs))


def _children(pids: set[int]) -> set[int]:
    """``pids`` and every process descended from them (read from /proc)."""
    parent: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
                parent[int(entry.name)] = int(fields[1])
            except (OSError, IndexError, ValueError):
                continue
    found = set(pids)
    grew = True
    while grew:
        grew = False
        for pid, ppid in parent.items():
            if ppid in found and pid not in found:
                found.add(pid)
                grew = True
    return found


class Cluster:
    def __init__(self) -> None:
        require_ray()
        self.temp = Path(tempfile.mkdtemp(prefix="plray-", dir="/tmp"))  # short: Ray's socket paths have a limit
        self.port = free_port()
        self.address = f"127.0.0.1:{self.port}"
        src = str(Path(pl.__file__).resolve().parents[1])
        self.env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (src, os.environ.get("PYTHONPATH")) if p),
                    "RAY_USAGE_STATS_ENABLED": "0", "RAY_AUTH_MODE": "disabled"}
        self.procs: list[subprocess.Popen[bytes]] = []
        self.seen: set[int] = set()
        self.ray = str(Path(sys.executable).with_name("ray"))

    def start_node(self, *args: str, name: str) -> None:
        log = open(self.temp / f"{name}.log", "wb")  # noqa: SIM115 - kept open for the process's life
        cmd = [self.ray, "start", "--block", "--node-ip-address=127.0.0.1", "--num-cpus=1",
               f"--temp-dir={self.temp}", "--disable-usage-stats", *args]
        self.procs.append(subprocess.Popen(cmd, env=self.env, stdout=log, stderr=subprocess.STDOUT,
                                           start_new_session=True))

    def wait_for_nodes(self, n: int, timeout: float = 90.0) -> None:
        code = ("import ray, sys; ray.init(address=sys.argv[1], log_to_driver=False); "
                "print(sum(1 for x in ray.nodes() if x['Alive']))")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for proc in self.procs:
                if proc.poll() is not None:
                    pytest.fail(f"a Ray node exited with {proc.returncode}:\n{self.logs()}", pytrace=False)
            out = subprocess.run([sys.executable, "-c", code, self.address], env=self.env, capture_output=True,
                                 text=True, timeout=60)
            if out.returncode == 0 and out.stdout.strip().splitlines()[-1:] == [str(n)]:
                return
            time.sleep(1.0)
        pytest.fail(f"the Ray cluster did not reach {n} nodes:\n{self.logs()}", pytrace=False)

    def logs(self) -> str:
        return "\n".join(p.read_text(errors="replace")[-2000:] for p in self.temp.glob("*.log"))

    def stop(self) -> None:
        """Stop the nodes this test started and every process they started (workers included), by pid."""
        ours = _children({p.pid for p in self.procs}) | self.seen
        for proc in self.procs:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + 10
        for proc in self.procs:
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)
        for pid in ours:
            try:
                os.kill(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        import shutil

        shutil.rmtree(self.temp, ignore_errors=True)


@pytest.fixture(scope="module")
def cluster(smollm2_path: Path) -> Iterator[Cluster]:
    c = Cluster()
    # a cluster private to this test, on this machine: no token to share (Ray 2.60 asks for one by default)
    saved = os.environ.get("RAY_AUTH_MODE")
    os.environ["RAY_AUTH_MODE"] = "disabled"
    try:
        c.start_node("--head", f"--port={c.port}", "--include-dashboard=false", name="head")
        c.wait_for_nodes(1)
        c.start_node(f"--address={c.address}", name="node2")
        c.wait_for_nodes(2)
        yield c
    finally:
        c.stop()
        if saved is None:
            os.environ.pop("RAY_AUTH_MODE", None)
        else:
            os.environ["RAY_AUTH_MODE"] = saved


@pytest.fixture(scope="module")
def executor(cluster: Cluster) -> Iterator[pl.RayExecutor]:
    ex = pl.RayExecutor(address=cluster.address, num_workers=2)
    ex.start()
    cluster.seen.update(ex.worker_pids())
    try:
        yield ex
    finally:
        ex.close()


@pytest.fixture(scope="module")
def data() -> tuple[list[pl.Example], list[pl.Example]]:
    from promptless.datasets import historic_events

    dev = historic_events("dev")
    return dev[:2], dev[2:10]


@pytest.fixture(scope="module")
def baseline(data) -> pl.evaluate.EvaluationResult:
    """The evaluation with threads, in this process: what the cluster must reproduce."""
    return pl.Evaluate(devset=data[1], metric=metric, display_progress=False)(pl.Predict(Sort, lm=make_lm()))


def test_workers_run_on_both_nodes(executor: pl.RayExecutor, cluster: Cluster):
    import ray

    nodes = {n["NodeID"] for n in ray.nodes() if n["Alive"]}
    assert len(nodes) == 2
    assert len(set(executor.worker_pids())) == 2


def test_evaluation_on_the_cluster_matches_threads(executor: pl.RayExecutor, data, baseline):
    _, dev = data
    on_ray = pl.Evaluate(devset=dev, metric=metric, display_progress=False, executor=executor)(
        pl.Predict(Sort, lm=make_lm()))
    assert [r.prediction.category for r in on_ray.rows] == [r.prediction.category for r in baseline.rows]
    assert [r.example for r in on_ray.rows] == dev
    assert on_ray.score == baseline.score
    assert on_ray.n_errors == 0
    assert on_ray.usage.calls == baseline.usage.calls >= len(dev)


def test_a_killed_worker_is_replaced_and_nothing_is_lost_or_paid_twice(executor: pl.RayExecutor, cluster: Cluster,
                                                                      data, baseline):
    _, dev = data
    budget = Budget(max_lm_calls=1000)
    program = pl.Predict(Sort, lm=GuardedLM(make_lm(), budget, "task"))
    killed: list[int] = []
    replaced_before = executor.replaced_workers

    def kill_a_busy_worker() -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not killed:
            if budget.calls >= 3:  # some examples are done: kill a worker in the middle of its next one
                busy = executor.worker_pids(busy=True)
                if busy:
                    killed.append(busy[0])
                    os.kill(busy[0], signal.SIGKILL)
                    return
            time.sleep(0.02)

    killer = threading.Thread(target=kill_a_busy_worker)
    killer.start()
    result = pl.Evaluate(devset=dev, metric=metric, display_progress=False, executor=executor)(program)
    killer.join()
    cluster.seen.update(executor.worker_pids())
    assert killed, "no worker was busy to kill"
    assert executor.replaced_workers == replaced_before + 1
    assert killed[0] not in executor.worker_pids()
    # nothing lost: every example scored, the same predictions as with threads, in order
    assert result.n_errors == 0 and not any(r.skipped for r in result.rows)
    assert [r.prediction.category for r in result.rows] == [r.prediction.category for r in baseline.rows]
    assert result.score == baseline.score
    # no example paid twice: the calls that came back are exactly the threads' calls, and the budget holds those
    # plus the one call reserved for the killed worker's example, which stays charged
    assert result.usage.calls == baseline.usage.calls
    assert budget.calls == baseline.usage.calls + 1


def test_a_small_optimization_on_the_cluster_matches_threads_and_keeps_its_budget(executor: pl.RayExecutor, data):
    train, dev = data
    val = dev[:3]

    def optimize(ex: pl.RayExecutor | None, limit: int) -> pl.Module:
        opt = BootstrapFewShotWithRandomSearch(metric, num_candidate_programs=1, max_bootstrapped_demos=1,
                                               max_labeled_demos=1, max_lm_calls=limit, num_threads=2,
                                               executor=ex, holdout=None)
        return opt.compile(pl.Predict(Sort, lm=make_lm()), trainset=train, valset=val)

    threads = optimize(None, 200)
    on_ray = optimize(executor, 200)
    assert on_ray.dump_state() == threads.dump_state()
    assert [t.score for t in on_ray.optimization.trials] == [t.score for t in threads.optimization.trials]
    assert on_ray.optimization.calls == threads.optimization.calls <= 200
    small = optimize(executor, 7)
    assert small.optimization.calls <= 7 and small.optimization.stopped == "budget"
