"""What the portable llama.cpp build costs against a native one, on the same machine, side by side.

    python bench/bench_build.py --build portable=.venv/bin/python --build native=/path/to/venv/bin/python \
        --model smollm2-135m --model qwen2.5-coder-1.5b

Each ``--build`` is an interpreter whose environment holds one llama-cpp-python build (scripts/install_llama.sh
makes the portable one; ``PROMPTLESS_LLAMA_BUILD=native`` or ``CMAKE_ARGS=-DGGML_NATIVE=ON`` a native one).
For every model, the builds take turns (``--rounds`` times, A B A B ...) running bench_local.py's raw-speed
measurement (prompt tokens/s on a ~512-token prompt, generation tokens/s over 128 tokens), by default on one
thread timed by CPU time, so that other work on the machine moves the figures as little as it can. The best
round of each build is kept. Writes bench/results/build.json and prints a table.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent


def _cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return "unknown"


def system_info(python: str) -> str:
    code = "import llama_cpp; print(llama_cpp.llama_print_system_info().decode().strip())"
    return subprocess.run([python, "-c", code], capture_output=True, text=True, check=True).stdout.strip()


_CHILD = """
import json, sys, time
sys.path.insert(0, {here!r})
import bench_local
from promptless.lm.local import LocalLM
bench_local.clock = bench_local.CLOCKS[{clock!r}]
lm = LocalLM({model!r}, cache=False, n_threads={threads})
print(json.dumps(bench_local.raw_speed(lm.load(), {repeats})))
"""


def one_round(python: str, model: str, threads: int, clock: str, repeats: int) -> dict[str, Any]:
    """bench_local.py's raw-speed measurement, run by ``python`` (so with its llama-cpp-python build)."""
    code = _CHILD.format(here=str(HERE), clock=clock, model=model, threads=threads, repeats=repeats)
    env = dict(os.environ, PROMPTLESS_PREFLIGHT="0")  # the probe is not what is measured
    env["PYTHONPATH"] = str(HERE.parent / "src")
    out = subprocess.run([python, "-c", code], check=True, env=env, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--build", action="append", required=True, metavar="LABEL=PYTHON")
    parser.add_argument("--model", action="append", help="registry name (repeatable; default smollm2-135m)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--clock", choices=["cpu", "wall"], default="cpu")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=HERE / "results" / "build.json")
    args = parser.parse_args(argv)
    builds = dict(b.split("=", 1) for b in args.build)
    models = args.model or ["smollm2-135m"]
    results: dict[str, Any] = {
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "threads": args.threads,
        "clock": args.clock,
        "rounds": args.rounds,
        "machine": {"cpu": _cpu_model(), "cores": os.cpu_count(), "python": sys.version.split()[0]},
        "builds": {label: {"python": py, "system_info": system_info(py)} for label, py in builds.items()},
        "models": {},
    }
    for model in models:
        rows: dict[str, list[dict[str, Any]]] = {label: [] for label in builds}
        for r in range(args.rounds):
            for label, py in builds.items():
                print(f"{model}: {label}, round {r + 1}/{args.rounds}", file=sys.stderr)
                rows[label].append(one_round(py, model, args.threads, args.clock, args.repeats))
        results["models"][model] = {
            label: {
                "prompt_tok_s": max(e["prompt_tok_s"] for e in entries),
                "completion_tok_s": max(e["completion_tok_s"] for e in entries),
                "rounds": [{"prompt_tok_s": e["prompt_tok_s"], "completion_tok_s": e["completion_tok_s"]} for e in entries],
            }
            for label, entries in rows.items()
        }
    labels = list(builds)
    print(f"\n{'model':<22}" + "".join(f"{lab + ' prompt':>18}{lab + ' gen':>14}" for lab in labels))
    for model, per in results["models"].items():
        cells = "".join(f"{per[lab]['prompt_tok_s']:>18.1f}{per[lab]['completion_tok_s']:>14.1f}" for lab in labels)
        print(f"{model:<22}{cells}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
