"""Classification through llama-cpp-python's own OpenAI-compatible server with promptless's default client
settings, counting what goes over the wire: requests, statuses, the structured-output forms sent, and
whether any request was repeated because the server refused a feature (it refuses response_format
json_schema with a 500).

    python bench/bench_server_refusals.py                       # 100 dev events, smollm2-135m
    python bench/bench_server_refusals.py --model qwen2.5-coder-1.5b --limit 100

Starts the server on a free 127.0.0.1 port, puts a counting pass-through proxy (the one the integration
tests use) in front of it, and stops both. Writes bench/results/server_refusals.json.
"""

from __future__ import annotations

import argparse
import collections
import importlib.util
import json
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "src"))

import promptless as pl  # noqa: E402
from promptless.errors import LMError, ParseError  # noqa: E402
from promptless.lm import models  # noqa: E402
from promptless.tasks import category_match, load_events, make_classifier  # noqa: E402


def _proxy_class() -> type:
    path = HERE.parent / "tests" / "integration" / "test_llama_server.py"
    spec = importlib.util.spec_from_file_location("_llama_server_tests", path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.CountingProxy


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--limit", type=int, default=100)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=HERE / "results" / "server_refusals.json")
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # stop the server we started on the way out
    weights = models.fetch(args.model, progress=False)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    log = open(HERE / "results" / "llama_server.log", "wb")  # noqa: SIM115 - closed in finally
    cmd = [sys.executable, "-m", "llama_cpp.server", "--model", str(weights), "--model_alias", args.model,
           "--host", "127.0.0.1", "--port", str(port), "--n_threads", str(args.threads), "--n_ctx", "4096"]  # fmt: skip
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
    try:
        upstream = f"http://127.0.0.1:{port}/v1"
        for _ in range(480):
            try:
                if httpx.get(upstream + "/models", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        proxy = _proxy_class()(upstream)
        lm = pl.LM(f"openai/{args.model}", base_url=proxy.base_url, cache=False)
        classify = make_classifier(lm=lm)
        outcomes: collections.Counter[str] = collections.Counter()
        right = 0
        started = time.time()
        events = load_events("dev", args.limit)
        for i, example in enumerate(events, 1):
            try:
                pred = classify(event=example.event)
                outcomes["ok"] += 1
                right += bool(category_match(example, pred))
            except (LMError, ParseError) as exc:
                outcomes[type(exc).__name__] += 1
            print(f"\r{i}/{len(events)} {dict(outcomes)}", end="", file=sys.stderr)
        print(file=sys.stderr)
        statuses = collections.Counter(str(status) for _, status in proxy.exchanges)
        forms = collections.Counter(
            (body.get("response_format") or {}).get("type", "grammar" if "grammar" in body else "none")
            for body, _ in proxy.exchanges
        )
        bodies = [json.dumps(body, sort_keys=True) for body, _ in proxy.exchanges]
        result = {
            "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "model": args.model,
            "events": len(events),
            "outcomes": dict(outcomes),
            "correct": right,
            "http_requests": len(proxy.exchanges),
            "statuses": dict(statuses),
            "forms_sent": dict(forms),
            "repeated_request_bodies": len(bodies) - len(set(bodies)),
            "learned_mode": lm.structured_output_mode(),
            "seconds": round(time.time() - started, 1),
        }
        proxy.close()
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        log.close()
    print(json.dumps(result, indent=2))
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
