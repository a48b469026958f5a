"""Framework overhead per Predict call with a zero-latency LM, and import time:
promptless against DSPy 3.4.1 in the same run, on the same signature and reply.

    bench/.venv/bin/python bench/bench_predict.py            # both (needs dspy in that venv)
    .venv/bin/python bench/bench_predict.py --only promptless

Writes bench/results/predict.json.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Literal

CATS = Literal[
    "Wars and Conflicts", "Politics and Governance", "Science and Innovation", "Cultural and Artistic Movements",
    "Exploration and Discovery", "Economic Events", "Social Movements", "Man-Made Disasters and Accidents",
    "Natural Disasters and Climate", "Sports and Entertainment", "Famous Personalities and Achievements",
]
REPLY = "[[ ## category ## ]]\nWars and Conflicts\n\n[[ ## confidence ## ]]\n0.9\n\n[[ ## completed ## ]]"
EVENT = "Battle of Nineveh: A Byzantine army under Emperor Heraclius defeats Persian forces."


def _time_calls(fn, n: int, repeats: int = 5) -> float:
    for _ in range(min(200, n)):
        fn()
    samples = []
    for _ in range(repeats):
        t = time.perf_counter()
        for _ in range(n):
            fn()
        samples.append((time.perf_counter() - t) / n)
    return statistics.median(samples)


def _import_time(module: str, python: str) -> float:
    code = f"import time; t=time.perf_counter(); import {module}; print(time.perf_counter()-t)"
    runs = [float(subprocess.check_output([python, "-c", code], text=True).strip()) for _ in range(5)]
    return statistics.median(runs)


def _fresh_process_time(module: str, python: str) -> float:
    runs = []
    for _ in range(5):
        t = time.perf_counter()
        subprocess.check_call([python, "-c", f"import {module}"])
        runs.append(time.perf_counter() - t)
    return statistics.median(runs)


def bench_promptless(n: int) -> dict[str, float]:
    import promptless as pl

    class ClassifyEvent(pl.Signature):
        """Classify historic events."""

        event: str = pl.InputField()
        category: CATS = pl.OutputField()
        confidence: float = pl.OutputField()

    lm = pl.ScriptedLM([REPLY])
    predict = pl.Predict(ClassifyEvent, lm=lm)
    assert predict(event=EVENT).category == "Wars and Conflicts"
    per_call = _time_calls(lambda: predict(event=EVENT), n)
    from promptless.adapters.chat import ChatAdapter

    adapter = ChatAdapter()
    fmt = _time_calls(lambda: adapter.format(ClassifyEvent, [], {"event": EVENT}), n)
    parse = _time_calls(lambda: adapter.parse(ClassifyEvent, REPLY), n)
    return {"per_call_us": per_call * 1e6, "format_us": fmt * 1e6, "parse_us": parse * 1e6}


def bench_dspy(n: int) -> dict[str, float]:
    from types import SimpleNamespace

    import dspy

    class ZeroLM(dspy.BaseLM):
        def forward(self, prompt=None, messages=None, **kwargs):
            msg = SimpleNamespace(content=REPLY, tool_calls=None, reasoning_content=None)
            choice = SimpleNamespace(message=msg, finish_reason="stop", logprobs=None)
            return SimpleNamespace(choices=[choice], usage={"prompt_tokens": 1, "completion_tokens": 1,
                                                            "total_tokens": 2}, model="zero", _hidden_params={})

    class ClassifyEvent(dspy.Signature):
        """Classify historic events."""

        event: str = dspy.InputField()
        category: CATS = dspy.OutputField()
        confidence: float = dspy.OutputField()

    lm = ZeroLM("zero", cache=False)
    dspy.configure(lm=lm, adapter=dspy.ChatAdapter())
    predict = dspy.Predict(ClassifyEvent)
    assert predict(event=EVENT).category == "Wars and Conflicts"
    per_call = _time_calls(lambda: predict(event=EVENT), n)
    adapter = dspy.ChatAdapter()
    fmt = _time_calls(lambda: adapter.format(ClassifyEvent, [], {"event": EVENT}), n)
    parse = _time_calls(lambda: adapter.parse(ClassifyEvent, REPLY), n)
    return {"per_call_us": per_call * 1e6, "format_us": fmt * 1e6, "parse_us": parse * 1e6}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument("--only", choices=["promptless", "dspy"])
    args = ap.parse_args()
    results: dict[str, dict[str, float]] = {}
    for name, fn in (("promptless", bench_promptless), ("dspy", bench_dspy)):
        if args.only and args.only != name:
            continue
        try:
            res = fn(args.n)
        except ImportError as exc:
            print(f"skipping {name}: {exc}", file=sys.stderr)
            continue
        res["import_in_process_s"] = _import_time(name, sys.executable)
        res["import_fresh_process_s"] = _fresh_process_time(name, sys.executable)
        results[name] = res
    print(f"{'':12} {'per call µs':>12} {'format µs':>10} {'parse µs':>9} {'import s':>9} {'process s':>10}")
    for name, r in results.items():
        print(f"{name:12} {r['per_call_us']:12.1f} {r['format_us']:10.1f} {r['parse_us']:9.1f} "
              f"{r['import_in_process_s']:9.3f} {r['import_fresh_process_s']:10.3f}")
    if "dspy" in results and "promptless" in results:
        ratio = results["dspy"]["per_call_us"] / results["promptless"]["per_call_us"]
        print(f"promptless is {ratio:.1f}x faster per call")
    out = Path(__file__).parent / "results" / "predict.json"
    out.parent.mkdir(exist_ok=True)
    meta = {"python": platform.python_version(), "machine": platform.machine(), "n": args.n,
            "cpus": len(__import__("os").sched_getaffinity(0))}
    out.write_text(json.dumps({"meta": meta, "results": results}, indent=2) + "\n")


if __name__ == "__main__":
    main()
