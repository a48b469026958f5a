"""Cache-hit time per LM call: promptless against DSPy, side by side in one run.

Both libraries talk to the same stub OpenAI-compatible server on 127.0.0.1
(a fixed reply, no model) for the one call that fills their cache; every timed
call after that is a cache hit, so what is measured is the cost of the cache
path itself: building the request, the key, the lookup, the response object,
history and usage bookkeeping.

Cases (each timed for N calls, in R interleaved rounds):

- promptless, memory hit: ``OpenAILM`` with a ``Cache`` in a temp dir, ``lm(messages=...)``
  and ``lm.request(messages)``.
- promptless, disk hit: the same file through a ``Cache`` with no memory part
  (every hit reads SQLite, as a second process would).
- DSPy, memory hit: ``dspy.LM("openai/x", cache=True)``, ``lm(messages=...)``, with its
  default engine and with ``engine="litellm"``.
- DSPy, disk hit: the same with its memory cache turned off.

Run: ``bench/.venv/bin/python bench/bench_cache.py`` (DSPy and promptless both
installed in that environment). Writes ``bench/results/cache.json``.
"""

from __future__ import annotations

import argparse
import atexit
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import threading
import time
import warnings
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent
TMP = Path(tempfile.mkdtemp(prefix="bench-cache-"))
atexit.register(shutil.rmtree, TMP, ignore_errors=True)

# Keep both libraries' caches and LiteLLM's price table local to this run (no network, no home-dir files).
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
os.environ["DSPY_CACHEDIR"] = str(TMP / "dspy-default")
os.environ["PROMPTLESS_CACHE_DIR"] = str(TMP / "promptless-default")

REPLY = {
    "id": "chatcmpl-bench",
    "object": "chat.completion",
    "created": 1,
    "model": "x",
    "choices": [{"index": 0, "message": {"role": "assistant", "content": "Paris."}, "finish_reason": "stop"}],
    "usage": {"prompt_tokens": 24, "completion_tokens": 2, "total_tokens": 26},
}
MESSAGES = [
    {"role": "system", "content": "You answer geography questions in one word."},
    {"role": "user", "content": "What is the capital of France?"},
]


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    posts = 0

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        type(self).posts += 1
        body = json.dumps(REPLY).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def start_stub() -> tuple[ThreadingHTTPServer, str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}/v1"


def per_call_us(fn: Callable[[], Any], n: int) -> float:
    start = time.perf_counter()
    for _ in range(n):
        fn()
    return (time.perf_counter() - start) / n * 1e6


def promptless_cases(url: str) -> dict[str, Callable[[], Any]]:
    from promptless.lm.cache import Cache
    from promptless.lm.openai import OpenAILM

    path = TMP / "promptless" / "cache.sqlite3"
    lm = OpenAILM("x", base_url=url, api_key="sk-bench", cache=Cache(path))
    before = _Handler.posts
    assert lm(messages=MESSAGES) == ["Paris."]
    assert _Handler.posts == before + 1, "the warm-up call should reach the stub"
    assert lm.request(MESSAGES).cached

    disk_lm = OpenAILM("x", base_url=url, api_key="sk-bench", cache=Cache(path, memory_size=0))
    assert disk_lm.request(MESSAGES).cached

    return {
        "promptless memory hit, lm(messages=...)": lambda: lm(messages=MESSAGES),
        "promptless memory hit, lm.request(messages)": lambda: lm.request(MESSAGES),
        "promptless disk hit (SQLite), lm(messages=...)": lambda: disk_lm(messages=MESSAGES),
    }


def dspy_cases(url: str) -> tuple[str, dict[str, Callable[[], Any]]]:
    warnings.simplefilter("ignore")  # DSPy 3.4 warns that messages= is deprecated
    import dspy

    disk_dir = str(TMP / "dspy")
    dspy.configure_cache(enable_disk_cache=True, enable_memory_cache=True, disk_cache_dir=disk_dir)
    memory_cache = dspy.cache
    cases: dict[str, Callable[[], Any]] = {}
    lms = {}
    for engine in ("auto", "litellm"):
        lm = dspy.LM("openai/x", cache=True, engine=engine, api_key="sk-bench", api_base=url)
        assert lm(messages=MESSAGES) == ["Paris."]  # the first engine fills the cache; both share the entry
        before = _Handler.posts
        lm(messages=MESSAGES)
        assert _Handler.posts == before, "the second call should be a cache hit"
        lms[engine] = lm
    label = {"auto": "default engine", "litellm": "engine='litellm'"}

    def hit(lm: Any, cache: Any) -> Callable[[], Any]:
        def call() -> Any:
            dspy.cache = cache
            return lm(messages=MESSAGES)

        return call

    dspy.configure_cache(enable_disk_cache=True, enable_memory_cache=False, disk_cache_dir=disk_dir)
    disk_cache = dspy.cache
    for engine, lm in lms.items():
        cases[f"DSPy memory hit, {label[engine]}, lm(messages=...)"] = hit(lm, memory_cache)
    for engine, lm in lms.items():
        before = _Handler.posts
        dspy.cache = disk_cache
        lm(messages=MESSAGES)
        assert _Handler.posts == before, "a disk hit should not reach the stub"
        cases[f"DSPy disk hit, {label[engine]}, lm(messages=...)"] = hit(lm, disk_cache)
    return dspy.__version__, cases


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=2000, help="calls per round (default 2000)")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds (default 5)")
    parser.add_argument("--out", type=Path, default=ROOT / "results" / "cache.json")
    args = parser.parse_args()

    server, url = start_stub()
    try:
        cases = promptless_cases(url)
        try:
            dspy_version, more = dspy_cases(url)
            cases.update(more)
        except ImportError:
            dspy_version = None
            print("DSPy is not installed here; timing promptless only", file=sys.stderr)

        for fn in cases.values():  # warm every path before timing
            per_call_us(fn, 200)
        posts = _Handler.posts
        samples: dict[str, list[float]] = {name: [] for name in cases}
        for _ in range(args.rounds):
            for name, fn in cases.items():
                samples[name].append(per_call_us(fn, args.n))
        assert _Handler.posts == posts, "a timed call reached the stub: not a cache hit"
    finally:
        server.shutdown()

    import promptless

    results = {
        name: {
            "median_us": round(statistics.median(s), 1),
            "best_us": round(min(s), 1),
            "rounds_us": [round(x, 1) for x in s],
        }
        for name, s in samples.items()
    }
    width = max(len(n) for n in results)
    print(f"\ncache hit, time per call (N={args.n} calls x {args.rounds} rounds; median and best round)\n")
    print(f"{'case':<{width}}  {'median µs':>10}  {'best µs':>8}")
    print(f"{'-' * width}  {'-' * 10}  {'-' * 8}")
    for name, r in results.items():
        print(f"{name:<{width}}  {r['median_us']:>10.1f}  {r['best_us']:>8.1f}")

    record = {
        "benchmark": "cache hit, time per LM call",
        "command": "bench/.venv/bin/python bench/bench_cache.py",
        "n": args.n,
        "rounds": args.rounds,
        "machine": {
            "arch": platform.machine(),
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "system": platform.system(),
        },
        "versions": {"promptless": promptless.__version__, "dspy": dspy_version},
        "results": results,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(record, indent=2) + "\n")
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
