"""Scaling out with RayExecutor: 1 against 2 local Ray workers, with a latency-bound LM.

The LM is a stub OpenAI-compatible server on 127.0.0.1 that sleeps ``--delay`` seconds (200 ms) before each
reply, the way a hosted model or a busy server keeps a client waiting; the CPU is nearly idle, so the measure is
how well the workers overlap waiting, not how fast this machine computes. The program is a ``pl.Predict`` over
``--n`` examples, scored by ``pl.Evaluate`` with ``executor=pl.RayExecutor(num_workers=k)`` (Ray started in
this process, no cluster needed), and, for reference, with threads. Every run uses an LM without a cache, so
every example pays its call. Each case runs ``--rounds`` times; the median is reported.

Run (it waits, it does not compute, but the machine is shared): ``nice -n 10 .venv/bin/python
bench/bench_scale.py``. Needs the ``ray`` extra. Writes ``bench/results/scale.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("RAY_AUTH_MODE", "disabled")  # a Ray private to this process

REPLY = "[[ ## category ## ]]\nScience\n\n[[ ## completed ## ]]"


class SleepyHandler(BaseHTTPRequestHandler):
    delay = 0.2

    def do_POST(self) -> None:
        length = int(self.headers.get("content-length") or 0)
        self.rfile.read(length)
        time.sleep(self.delay)
        body = json.dumps({
            "id": "x", "object": "chat.completion", "model": "stub",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": REPLY}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15},
        }).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


def serve(delay: float) -> tuple[str, ThreadingHTTPServer]:
    SleepyHandler.delay = delay
    server = ThreadingHTTPServer(("127.0.0.1", 0), SleepyHandler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return f"http://127.0.0.1:{server.server_address[1]}/v1", server


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=40, help="examples per run")
    parser.add_argument("--delay", type=float, default=0.2, help="seconds the server sleeps per call")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", default=str(ROOT / "results" / "scale.json"))
    args = parser.parse_args()

    src = str(ROOT.parent / "src")  # this checkout's promptless, here and in the workers Ray starts
    sys.path.insert(0, src)
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (src, os.environ.get("PYTHONPATH")) if p)
    import ray

    import promptless as pl

    base_url, server = serve(args.delay)
    dev = [pl.Example(event=f"event {i}", category="Science").with_inputs("event") for i in range(args.n)]

    def metric(example: Any, pred: Any, trace: Any = None) -> bool:
        return example.category == pred.category

    def program() -> Any:
        lm = pl.LM("openai/stub", base_url=base_url, api_key="none", cache=False)
        return pl.Predict("event -> category", lm=lm)

    def run(executor: Any) -> float:
        ev = pl.Evaluate(devset=dev, metric=metric, display_progress=False, executor=executor)
        t0 = time.perf_counter()
        result = ev(program())
        seconds = time.perf_counter() - t0
        assert result.score == 100.0 and result.usage.calls == args.n, result
        return seconds

    cases: dict[str, Any] = {}
    started = time.perf_counter()
    ray.init(include_dashboard=False, log_to_driver=False, num_cpus=2)
    ray_startup = time.perf_counter() - started
    executors = {
        "threads, 1": lambda: pl.ThreadExecutor(1),
        "threads, 2": lambda: pl.ThreadExecutor(2),
        "ray, 1 worker": lambda: pl.RayExecutor(num_workers=1),
        "ray, 2 workers": lambda: pl.RayExecutor(num_workers=2),
    }
    for name, make in executors.items():
        executor = make()
        if isinstance(executor, pl.RayExecutor):
            t0 = time.perf_counter()
            executor.start()
            executor.worker_pids()  # the actors are up
            start_s = time.perf_counter() - t0
            run(executor)  # warm: each worker builds its LM client once
        else:
            start_s = 0.0
        times = [run(executor) for _ in range(args.rounds)]
        executor.close()
        median = statistics.median(times)
        cases[name] = {"median_s": round(median, 3), "rounds_s": [round(t, 3) for t in times],
                       "s_per_example": round(median / args.n, 4), "examples_per_s": round(args.n / median, 2),
                       "worker_start_s": round(start_s, 2)}
        print(f"{name:16s} {median:6.2f} s for {args.n} examples ({args.n / median:5.2f}/s)")
    ray.shutdown()
    server.shutdown()
    one, two = cases["ray, 1 worker"]["median_s"], cases["ray, 2 workers"]["median_s"]
    floor = args.n * args.delay
    out = {
        "benchmark": "RayExecutor scaling, 1 vs 2 local workers, latency-bound LM",
        "command": "nice -n 10 .venv/bin/python bench/bench_scale.py",
        "n": args.n, "delay_s": args.delay, "rounds": args.rounds,
        "machine": {"arch": platform.machine(), "cpus": os.cpu_count(), "python": platform.python_version(),
                    "system": platform.system()},
        "versions": {"promptless": pl.__version__, "ray": ray.__version__},
        "ray_init_s": round(ray_startup, 2),
        "serial_floor_s": round(floor, 2),
        "results": cases,
        "speedup_2_vs_1_ray_workers": round(one / two, 2),
        "ray_overhead_per_example_s": round((one - floor) / args.n, 4),
    }
    Path(args.out).write_text(json.dumps(out, indent=2) + "\n")
    print(f"2 workers vs 1: {one / two:.2f}x; Ray's overhead per example with 1 worker: "
          f"{1000 * (one - floor) / args.n:.1f} ms; wrote {args.out}")


if __name__ == "__main__":
    main()
