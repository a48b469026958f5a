"""Throughput on one machine: the historic-events dev split through the embedded model, through llama.cpp's
server, and through DSPy 3.4.1 on that server, each against the floor this machine allows.

    python bench/bench_throughput.py                      # every row, the 100 dev events
    python bench/bench_throughput.py --rows floor embedded # some rows only
    python bench/bench_throughput.py --limit 3 --out /tmp/tput.json   # a quick check of every row
    python bench/bench_throughput.py --redo               # measure finished rows again
    python bench/bench_throughput.py --table              # the results as a Markdown table

The task: ``promptless.tasks.make_classifier`` (``Predict(ClassifyEvent)``: a Literal category and a float
confidence) over the first ``--limit`` events of the dev split, zero-shot, greedy, LM cache off, one example at a
time, model qwen2.5-coder-1.5b with ``--threads`` llama.cpp threads (default 2) everywhere.

Rows:

* ``floor``: the same llama.cpp build and thread count, driven directly: prompt tokens/s (a ~500-token prompt
  evaluated into an empty context, best of 2) and generation tokens/s (64 tokens, one decode and an argmax each,
  best of 2).
* ``embedded``: ``pl.LM("local/qwen2.5-coder-1.5b", n_threads=2)`` in this process, through ``Evaluate``
  (``num_threads=1``). The weights are loaded before the clock starts.
* ``server``: the same program with ``pl.LM("openai/<alias>", base_url=..., temperature=0.0)`` against
  ``llama_cpp.server`` (started here on 127.0.0.1 with a free port, the same threads; its log next to the
  results file).
* ``dspy``: DSPy 3.4.1's ``dspy.Predict`` of the same signature against the same server (``cache=False``,
  ``num_retries=0``), in ``bench/.venv``, created here when missing.

Each row records wall seconds per example, LM calls, prompt and completion tokens (from the replies' usage; for
DSPy from ``lm.history``), accuracy, and the load average before and after. The floor of a row is what its own
tokens cost at the floor's rates with the shared prompt prefix evaluated once::

    floor seconds = prefix / prompt_tps + (prompt_tokens - calls * prefix) / prompt_tps + completion / gen_tps

divided by the number of examples; ``ratio`` = measured / floor. The shared prefix is the number of leading tokens
two examples' full prompts (chat template applied, tokenized by the model) have in common. ``ratio_vs_embedded``
divides by the embedded row's floor instead (the same task, promptless's prompt), which puts DSPy's longer prompt
on the same scale.

Every finished row is merged into the results file at once (default ``bench/results/throughput.json``), so an
interrupted run continues with the next row; a row measured with another ``--limit`` or thread count is measured
again.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
RESULTS = HERE / "results" / "throughput.json"
VENV = HERE / ".venv"
MODEL = "qwen2.5-coder-1.5b"
DSPY_VERSION = "3.4.1"
ROWS = ("floor", "embedded", "server", "dspy")
PROBE_PROMPT_TOKENS = 500
PROBE_GEN_TOKENS = 64

CATEGORIES = ("Wars and Conflicts", "Politics and Governance", "Science and Innovation",
              "Cultural and Artistic Movements", "Exploration and Discovery", "Economic Events", "Social Movements",
              "Man-Made Disasters and Accidents", "Natural Disasters and Climate", "Sports and Entertainment",
              "Famous Personalities and Achievements")


# -- results -----------------------------------------------------------------------------------------------


def _load(out: Path) -> dict[str, Any]:
    return json.loads(out.read_text()) if out.exists() else {}


def _machine() -> dict[str, Any]:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        mem_gb = round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)
    except (ValueError, OSError, AttributeError):
        mem_gb = None
    try:
        import llama_cpp

        llama_version = llama_cpp.__version__
    except ImportError:
        llama_version = None
    try:
        usable = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        usable = os.cpu_count()
    return {"cpu": cpu, "cores": os.cpu_count(), "usable_cores": usable, "memory_gb": mem_gb,
            "python": platform.python_version(), "llama_cpp_python": llama_version, "platform": platform.platform()}


def _loadavg() -> list[float]:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return []


def _floor_seconds(row: dict[str, Any], floor: dict[str, Any], prefix: int | None = None) -> float | None:
    """What the row's tokens cost at the floor's rates, per example, with the shared prefix evaluated once."""
    n = row.get("n") or 0
    if not n or not floor.get("prompt_tps") or not floor.get("gen_tps"):
        return None
    prefix = row.get("shared_prefix_tokens", 0) if prefix is None else prefix
    calls = row.get("calls", 0)
    unshared = max(0, row["prompt_tokens"] - calls * prefix)
    seconds = (prefix + unshared) / floor["prompt_tps"] + row["completion_tokens"] / floor["gen_tps"]
    return seconds / n


def _summarize(data: dict[str, Any]) -> None:
    """Fill in each measured row's floor and ratios from the floor row (when both are there)."""
    floor = data.get("floor") or {}
    embedded = data.get("embedded")
    ref = _floor_seconds(embedded, floor) if embedded else None
    for name in ("embedded", "server", "dspy"):
        row = data.get(name)
        if not row or "seconds_per_example" not in row:
            continue
        own = _floor_seconds(row, floor)
        row["floor_seconds_per_example"] = round(own, 4) if own else None
        row["ratio"] = round(row["seconds_per_example"] / own, 2) if own else None
        row["ratio_vs_embedded"] = round(row["seconds_per_example"] / ref, 2) if ref else None


def _save(out: Path, key: str, value: dict[str, Any], meta: dict[str, Any]) -> None:
    data = _load(out)
    data[key] = value
    data.setdefault("_meta", {}).update(meta)
    _summarize(data)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(out.suffix + ".tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n")
    tmp.replace(out)


# -- tokens ------------------------------------------------------------------------------------------------


def _chat_tokens(llama: Any, messages: list[dict[str, Any]]) -> list[int]:
    """The prompt tokens llama-cpp-python's chat completion builds for ``messages`` with the model's own template
    (as ``create_chat_completion`` does for a model whose GGUF carries a template)."""
    from llama_cpp.llama_chat_format import Jinja2ChatFormatter

    template = llama.metadata.get("tokenizer.chat_template")
    if not template:
        raise SystemExit(f"{MODEL}'s GGUF has no chat template; cannot count the shared prefix")
    model = llama._model
    eos_id, bos_id = llama.token_eos(), llama.token_bos()
    fmt = Jinja2ChatFormatter(template=template, eos_token=model.token_get_text(eos_id) if eos_id != -1 else "",
                              bos_token=model.token_get_text(bos_id) if bos_id != -1 else "")
    result = fmt(messages=messages)
    return list(llama.tokenize(result.prompt.encode("utf-8"), add_bos=not result.added_special, special=True))


def _shared_prefix(llama: Any, first: list[dict[str, Any]], second: list[dict[str, Any]]) -> dict[str, int]:
    a, b = _chat_tokens(llama, first), _chat_tokens(llama, second)
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return {"shared_prefix_tokens": n, "first_prompt_tokens": len(a), "second_prompt_tokens": len(b)}


def _promptless_messages(examples: list[Any]) -> list[list[dict[str, Any]]]:
    from promptless.adapters.chat import ChatAdapter
    from promptless.tasks import ClassifyEvent

    adapter = ChatAdapter()
    return [[m.to_dict() for m in adapter.format(ClassifyEvent, [], {"event": ex.event})] for ex in examples]


# -- rows --------------------------------------------------------------------------------------------------


def measure_floor(llama: Any, text: str) -> dict[str, Any]:
    """Prompt tokens/s and generation tokens/s of ``llama`` driven directly (best of 2 each)."""
    import numpy as np

    tokens = list(llama.tokenize(text.encode("utf-8"), add_bos=False, special=False))
    if len(tokens) < PROBE_PROMPT_TOKENS:
        raise SystemExit(f"the probe text has only {len(tokens)} tokens")
    prompt = tokens[:PROBE_PROMPT_TOKENS]
    prompt_runs = []
    for _ in range(2):
        llama.reset()
        t0 = time.perf_counter()
        llama.eval(prompt)
        prompt_runs.append(time.perf_counter() - t0)
    short = tokens[:16]
    n_vocab = llama.n_vocab()
    gen_runs = []
    for _ in range(2):
        llama.reset()
        llama.eval(short)
        t0 = time.perf_counter()
        for _ in range(PROBE_GEN_TOKENS):
            logits = np.ctypeslib.as_array(llama._ctx.get_logits(), shape=(n_vocab,))
            llama.eval([int(np.argmax(logits))])
        gen_runs.append(time.perf_counter() - t0)
    llama.reset()
    return {
        "prompt_tps": round(PROBE_PROMPT_TOKENS / min(prompt_runs), 2),
        "gen_tps": round(PROBE_GEN_TOKENS / min(gen_runs), 2),
        "probe_prompt_tokens": PROBE_PROMPT_TOKENS, "probe_gen_tokens": PROBE_GEN_TOKENS,
        "prompt_seconds": [round(s, 3) for s in prompt_runs], "gen_seconds": [round(s, 3) for s in gen_runs],
    }


def run_promptless(lm: Any, examples: list[Any]) -> dict[str, Any]:
    """The classifier over ``examples`` through ``Evaluate`` (one thread), timed on the wall clock."""
    import promptless as pl
    from promptless.evaluate import Evaluate
    from promptless.tasks import category_match, make_classifier

    program = make_classifier(lm=lm)
    with pl.track_usage() as usage:
        t0 = time.perf_counter()
        result = Evaluate(devset=examples, metric=category_match, num_threads=1, display_progress=False)(program)
        seconds = time.perf_counter() - t0
    total = usage.total
    n = len(examples)
    return {
        "n": n, "seconds": round(seconds, 2), "seconds_per_example": round(seconds / n, 4),
        "calls": total.calls, "cache_hits": total.cache_hits,
        "prompt_tokens": total.prompt_tokens, "completion_tokens": total.completion_tokens,
        "accuracy": round(sum(float(r.score) for r in result.rows) / n, 4), "errors": result.n_errors,
        "error_kinds": result.error_counts(),
    }


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Server:
    """``llama_cpp.server`` for the model on 127.0.0.1, started on entry and stopped on exit."""

    def __init__(self, path: Path, threads: int, log: Path) -> None:
        self.path, self.threads, self.log_path = path, threads, log
        self.proc: subprocess.Popen[bytes] | None = None
        self.base = ""

    def __enter__(self) -> Server:
        import httpx

        port = _free_port()
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = open(self.log_path, "wb")  # the server writes to it until it stops
        t0 = time.perf_counter()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "llama_cpp.server", "--model", str(self.path), "--model_alias", MODEL,
             "--host", "127.0.0.1", "--port", str(port), "--n_ctx", "4096", "--n_batch", "512",
             "--n_threads", str(self.threads), "--n_threads_batch", str(self.threads)],
            stdout=log, stderr=subprocess.STDOUT,
        )
        log.close()
        self.base = f"http://127.0.0.1:{port}/v1"
        deadline = time.monotonic() + 180
        while True:
            try:
                if httpx.get(f"{self.base}/models", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.__exit__()
                raise SystemExit(f"llama_cpp.server did not start; see {self.log_path}")
            time.sleep(0.5)
        print(f"server up at {self.base} in {time.perf_counter() - t0:.1f} s", flush=True)
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None


def ensure_venv() -> Path:
    """bench/.venv with DSPy 3.4.1 (created when missing); its python."""
    python = VENV / "bin" / "python"
    check = [str(python), "-c", f"import dspy, sys; sys.exit(dspy.__version__ != {DSPY_VERSION!r})"]
    if python.exists() and subprocess.run(check, capture_output=True).returncode == 0:
        return python
    print(f"creating {VENV} with dspy=={DSPY_VERSION} ...", flush=True)
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
    subprocess.run([str(python), "-m", "pip", "install", "-q", f"dspy=={DSPY_VERSION}"], check=True)
    return python


def run_dspy(python: Path, base: str, limit: int, out: Path) -> dict[str, Any]:
    subprocess.run([str(python), __file__, "--dspy-child", base, str(limit), str(out)], check=True)
    return json.loads(out.read_text())


def dspy_child(base: str, limit: int, out: str) -> None:
    """Runs inside bench/.venv (DSPy 3.4.1): the dev split through dspy.Predict against the server."""
    from typing import Literal

    import dspy

    rows = [json.loads(line) for line in (ROOT / "src/promptless/datasets/historic_events.jsonl").read_text()
            .splitlines() if line.strip()]
    dev = [dspy.Example(event=r["event"], category=r["category"]).with_inputs("event") for r in rows
           if r["split"] == "dev"][:limit]

    # built with real annotation objects (this file's ``from __future__ import annotations`` would leave
    # ``Literal[...]`` a string that pydantic cannot resolve from inside a function)
    ClassifyEvent = type("ClassifyEvent", (dspy.Signature,), {  # noqa: N806
        "__doc__": "Classify the historic event into the one category that fits it best.",
        "__annotations__": {"event": str, "category": Literal[CATEGORIES], "confidence": float},
        "event": dspy.InputField(desc="a dated historic event, in one line"),
        "category": dspy.OutputField(desc="the category of the event"),
        "confidence": dspy.OutputField(desc="how sure you are of the category, from 0.0 to 1.0"),
    })

    def metric(example: Any, pred: Any, trace: Any = None) -> bool:
        return str(getattr(pred, "category", "")).strip().casefold() == example.category.casefold()

    lm = dspy.LM(f"openai/{MODEL}", api_base=base, api_key="none", temperature=0.0, max_tokens=512, cache=False,
                 num_retries=0)
    dspy.configure(lm=lm)
    program = dspy.Predict(ClassifyEvent)
    t0 = time.perf_counter()
    res = dspy.Evaluate(devset=dev, metric=metric, num_threads=1, display_progress=False,
                        provide_traceback=False)(program)
    seconds = time.perf_counter() - t0
    prompt = completion = 0
    for h in lm.history:
        usage = h.get("usage") or {}
        prompt += int(usage.get("prompt_tokens") or 0)
        completion += int(usage.get("completion_tokens") or 0)
    # the messages DSPy's adapter builds for the first two examples, for the shared prefix
    adapter = dspy.settings.adapter or dspy.ChatAdapter()
    firsts = [adapter.format(ClassifyEvent, demos=[], inputs={"event": ex.event}) for ex in dev[:2]]
    n = len(dev)
    correct = sum(float(score) for _, _, score in res.results)
    Path(out).write_text(json.dumps({
        "dspy": dspy.__version__, "n": n, "seconds": round(seconds, 2), "seconds_per_example": round(seconds / n, 4),
        "calls": len(lm.history), "prompt_tokens": prompt, "completion_tokens": completion,
        "accuracy": round(correct / n, 4), "messages": firsts,
    }, indent=2))


# -- driver ------------------------------------------------------------------------------------------------


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--dspy-child":
        dspy_child(sys.argv[2], int(sys.argv[3]), sys.argv[4])
        return
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rows", nargs="*", default=list(ROWS), choices=ROWS)
    ap.add_argument("--limit", type=int, default=100, help="dev events per row (default 100, the whole split)")
    ap.add_argument("--threads", type=int, default=2, help="llama.cpp threads for every row (default 2)")
    ap.add_argument("--redo", action="store_true", help="measure finished rows again")
    ap.add_argument("--out", type=Path, default=RESULTS, help=f"results file (default {RESULTS.relative_to(ROOT)})")
    ap.add_argument("--table", action="store_true", help="print the results as a Markdown table and stop")
    args = ap.parse_args()
    out: Path = args.out
    if args.table:
        print(table(_load(out)))
        return
    if args.limit < 2:
        raise SystemExit("--limit must be at least 2 (the shared prefix compares two examples)")

    sys.path.insert(0, str(ROOT / "src"))
    import promptless as pl
    from promptless.lm import models
    from promptless.tasks import load_events

    examples = load_events("dev", limit=args.limit)
    meta = {"model": MODEL, "task": "historic events, dev split, zero-shot, greedy, LM cache off",
            "limit": len(examples), "threads": args.threads, "machine": _machine()}

    def todo(row: str) -> bool:
        rec = _load(out).get(row)
        if args.redo or rec is None:
            return True
        same = rec.get("threads") == args.threads and (row == "floor" or rec.get("n") == len(examples))
        if same:
            print(f"{row}: done already", flush=True)
        return not same

    rows = [r for r in ROWS if r in args.rows and todo(r)]
    if not rows:
        print(table(_load(out)))
        return
    path = models.fetch(MODEL, progress=False)

    # one embedded model serves the floor, the token counts and the embedded row
    lm = pl.LM(f"local/{MODEL}", n_threads=args.threads, cache=False)
    t0 = time.perf_counter()
    llama = lm.load()
    load_seconds = round(time.perf_counter() - t0, 2)
    print(f"loaded {MODEL} in {load_seconds} s", flush=True)
    messages = _promptless_messages(examples[:2])
    prefix = _shared_prefix(llama, messages[0], messages[1])

    def busy(row: str) -> list[float]:
        """The load average now, with a warning when other work is running: the figures would not be the
        machine's own (llama.cpp's threads stall when they lose their cores)."""
        load = _loadavg()
        cores = meta["machine"]["usable_cores"] or 1
        if load and load[0] > 0.5 * cores:
            print(f"warning: load average {load[0]} on {cores} cores before {row}: the machine is not quiet",
                  flush=True)
        return load

    def record(row: str, body: dict[str, Any], before: list[float]) -> None:
        body.update(threads=args.threads, loadavg_before=before, loadavg_after=_loadavg(),
                    at=time.strftime("%Y-%m-%d %H:%M:%S"))
        _save(out, row, body, meta)
        shown = {k: v for k, v in _load(out)[row].items() if k != "messages"}
        print(f"{row}: {json.dumps(shown)}", flush=True)

    if "floor" in rows:
        before = busy("floor")
        probe = "\n\n".join(m[-1]["content"] for m in _promptless_messages(load_events("train", limit=40)))
        record("floor", {**measure_floor(llama, probe), "load_seconds": load_seconds}, before)

    if "embedded" in rows:
        llama.reset()  # start cold: the row pays for the shared prefix once, as its floor does
        before = busy("embedded")
        record("embedded", {**run_promptless(lm, examples), **prefix}, before)

    if "server" in rows or "dspy" in rows:
        python = ensure_venv() if "dspy" in rows else None
        with Server(path, args.threads, out.parent / "llama_server.log") as server:
            if "server" in rows:
                # greedy and the same reply limit as the embedded model (the server's own default is 0.8)
                client = pl.LM(f"openai/{MODEL}", base_url=server.base, api_key="none", cache=False,
                               temperature=0.0, max_tokens=512)
                before = busy("server")
                record("server", {**run_promptless(client, examples), **prefix}, before)
            if "dspy" in rows:
                assert python is not None
                child_out = out.with_name(out.stem + ".dspy_child.json")
                before = busy("dspy")
                body = run_dspy(python, server.base, len(examples), child_out)
                child_out.unlink(missing_ok=True)
                msgs = body.pop("messages") or []
                if len(msgs) >= 2:
                    body.update(_shared_prefix(llama, msgs[0], msgs[1]))
                else:
                    body["shared_prefix_tokens"] = 0
                record("dspy", body, before)
    print(table(_load(out)))


LABELS = {"embedded": "promptless, embedded (`local/`)", "server": "promptless via llama_cpp.server",
          "dspy": f"DSPy {DSPY_VERSION} via llama_cpp.server"}


def _num(x: float | None) -> str:
    return "–" if x is None else f"{x:.2f}"


def table(data: dict[str, Any]) -> str:
    floor = data.get("floor")
    lines = []
    if floor:
        lines.append(f"Floor: prompt {floor['prompt_tps']} tok/s, generation {floor['gen_tps']} tok/s "
                     f"({floor.get('threads')} threads).\n")
    lines += ["| row | s / example | floor s / example | ratio | vs embedded floor | calls | prompt tok | "
              "completion tok | shared prefix | accuracy | load before → after |",
              "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
    for key, label in LABELS.items():
        r = data.get(key)
        if not r:
            continue
        n = r["n"]
        lines.append(
            f"| {label} | {r['seconds_per_example']:.2f} | {_num(r.get('floor_seconds_per_example'))} | "
            f"{r.get('ratio') or '–'} | {r.get('ratio_vs_embedded') or '–'} | {r['calls']} | "
            f"{r['prompt_tokens'] / n:.0f} | {r['completion_tokens'] / n:.1f} | {r.get('shared_prefix_tokens')} | "
            f"{r['accuracy']:.2f} | {(r.get('loadavg_before') or ['–'])[0]} → {(r.get('loadavg_after') or ['–'])[0]} |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
