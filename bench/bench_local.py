"""Local llama.cpp models: raw speed, and what prefix reuse buys a classification loop.

    python bench/bench_local.py                              # smollm2-135m
    python bench/bench_local.py --model qwen2.5-coder-1.5b   # any registry name or .gguf path
    python bench/bench_local.py --model smollm2-135m --model qwen2.5-coder-0.5b

For each model:

1. prompt tokens/s: a ~512-token prompt evaluated from an empty context;
2. completion tokens/s: 128 greedy tokens after a short prompt (sampling included);
3. a repeated-prefix classification, the shape of an optimizer's inner loop:
   one system message (~600 tokens: fields, format, a long labelling guide)
   plus 4 worked demos, then 10 different short final user turns, through the
   chat adapter and its marker grammar, time per call with prefix reuse on and
   off (and, for reference, with reuse on and constrained decoding off).

Prints a table and merges the figures into bench/results/local.json (one entry
per model, so models can be measured in separate runs).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Literal

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "src"))

import promptless as pl  # noqa: E402
from promptless.errors import ParseError  # noqa: E402
from promptless.lm import models  # noqa: E402
from promptless.lm.local import LocalLM, usable_cores  # noqa: E402

Category = Literal[
    "Wars and Conflicts",
    "Politics and Governance",
    "Science and Technology",
    "Exploration and Discovery",
    "Arts and Culture",
    "Religion",
    "Disasters",
    "Other",
]

GUIDE = """Classify a dated historic event into exactly one category.

Labelling guide:
- Wars and Conflicts: battles, sieges, invasions, declarations of war, armistices, surrenders, massacres during \
wars, uprisings and revolts fought with arms, the founding or disbanding of armies, mutinies and naval engagements.
- Politics and Governance: elections, coronations, abdications, assassinations of heads of state, constitutions, \
treaties that are not the end of a war, independence declared without fighting, laws passed, parliaments \
convened or dissolved, the founding of states, provinces, cities and international bodies.
- Science and Technology: discoveries, inventions, patents, first demonstrations of machines, first flights, \
launches of spacecraft and satellites, medical firsts, publications of scientific results, new elements, \
astronomical observations made by a named person.
- Exploration and Discovery: voyages, first sightings of coasts and islands, expeditions reaching a pole, a summit \
or the source of a river, circumnavigations, first crossings of oceans, deserts and continents.
- Arts and Culture: first performances of plays, operas and symphonies, publication of novels and poems, openings \
of museums, theatres and libraries, births and deaths of artists and writers, festivals, sporting firsts.
- Religion: councils, popes elected, saints canonised, schisms, reformations, founding of orders and churches, \
religious edicts and the building or consecration of cathedrals, temples and mosques.
- Disasters: earthquakes, floods, fires, eruptions, epidemics, famines, shipwrecks and other accidents with \
loss of life, when no war caused them.
- Other: anything that fits none of the above, such as the founding of a company or a record set for its own sake.

When an event could fit two categories, choose the one that describes what the event was, not its consequences: \
a treaty ending a war is Wars and Conflicts; a scientist elected to parliament is Politics and Governance; a ship \
lost while exploring is Exploration and Discovery unless the text stresses the loss of life. Dates and places do \
not decide the category. Give your confidence as a number between 0 and 1, lower when two categories fit."""


class ClassifyEvent(pl.Signature):
    event: str = pl.InputField(desc="one dated historic event, as a single line of text")
    category: Category = pl.OutputField(desc="the single best category from the labelling guide")
    confidence: float = pl.OutputField(desc="how sure the label is, between 0 and 1")


Classify = ClassifyEvent.with_instructions(GUIDE)

DEMOS = [
    {"event": "Battle of Waterloo ends Napoleon's rule, 1815", "category": "Wars and Conflicts", "confidence": 0.95},
    {"event": "Isaac Newton publishes the Principia, 1687", "category": "Science and Technology", "confidence": 0.9},
    {
        "event": "Magellan's fleet enters the Pacific Ocean, 1520",
        "category": "Exploration and Discovery",
        "confidence": 0.9,
    },
    {
        "event": "Victoria crowned Queen of the United Kingdom, 1838",
        "category": "Politics and Governance",
        "confidence": 0.85,
    },
]

EVENTS = [
    ("Battle of Hastings won by William of Normandy, 1066", "Wars and Conflicts"),
    ("Galileo first observes the moons of Jupiter, 1610", "Science and Technology"),
    ("Magna Carta sealed by King John at Runnymede, 1215", "Politics and Governance"),
    ("Mount Vesuvius erupts and buries Pompeii, 79", "Disasters"),
    ("Shakespeare's Hamlet first performed, 1602", "Arts and Culture"),
    ("Council of Nicaea convenes, 325", "Religion"),
    ("Roald Amundsen's party reaches the South Pole, 1911", "Exploration and Discovery"),
    ("Wright brothers make the first powered flight, 1903", "Science and Technology"),
    ("Great Fire of London begins in Pudding Lane, 1666", "Disasters"),
    ("Siege of Vienna lifted by the Polish cavalry, 1683", "Wars and Conflicts"),
]

FILLER = (
    "The history of the calendar is long. Astronomers measured the year by the sun and the month by the moon, "
    "and rulers reformed the count of days many times, adding leap days and moving the new year. "
)


def machine() -> dict[str, Any]:
    cpu = platform.processor() or ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import llama_cpp

    return {
        "description": f"{usable_cores()}-core {platform.machine()}, no GPU",
        "cpu": cpu,
        "usable_cores": usable_cores(),
        "python": platform.python_version(),
        "llama_cpp_python": llama_cpp.__version__,
    }


def cpu_idle_fraction(seconds: float = 1.0) -> float | None:
    """How idle the whole machine was over a short window (None where /proc/stat is missing)."""

    def sample() -> tuple[int, int]:
        fields = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
        return fields[3] + fields[4], sum(fields)

    try:
        idle0, total0 = sample()
        time.sleep(seconds)
        idle1, total1 = sample()
    except (OSError, ValueError, IndexError):
        return None
    return (idle1 - idle0) / max(1, total1 - total0)


def wait_until_idle(limit_s: float) -> float | None:
    """Wait (up to ``limit_s``) for other processes to leave the CPUs alone; the last idle reading."""
    deadline = time.monotonic() + limit_s
    idle = cpu_idle_fraction()
    while idle is not None and idle < 0.9 and time.monotonic() < deadline:
        print(f"machine busy ({1 - idle:.0%} of the CPUs in use by others); waiting ...", file=sys.stderr)
        idle = cpu_idle_fraction(2.0)
    return idle


# The clock that times each measurement: wall time by default; with --clock cpu, this
# process's CPU time, which stays meaningful when other work competes for the cores
# (use it with --threads 1, so that no time is spent waiting for a second thread).
CLOCKS = {"wall": time.perf_counter, "cpu": time.process_time}
clock = time.perf_counter


def raw_speed(llama: Any, repeats: int) -> dict[str, float]:
    """Prompt and completion tokens/s straight on the llama.cpp object."""
    text = FILLER * 20
    tokens = llama.tokenize(text.encode())[:512]
    prompt_rates = []
    for _ in range(repeats):
        llama.reset()
        started = clock()
        llama.eval(tokens)
        prompt_rates.append(len(tokens) / (clock() - started))

    short = llama.tokenize(b"Write a long story about the history of the calendar.")
    gen_tokens = 128
    completion_rates = []
    for _ in range(repeats):
        llama.reset()
        started = 0.0
        for produced, _token in enumerate(llama.generate(short, temp=0.0, top_k=1, reset=True)):
            if produced == 0:
                started = clock()  # the prompt is evaluated before the first token
            elif produced == gen_tokens:
                break
        completion_rates.append(gen_tokens / (clock() - started))
    llama.reset()
    return {
        "prompt_tokens": len(tokens),
        "prompt_tok_s": round(statistics.median(prompt_rates), 1),
        "completion_tokens": gen_tokens,
        "completion_tok_s": round(statistics.median(completion_rates), 1),
    }


def classification(lm: LocalLM, *, prefix_reuse: bool, grammar: bool) -> dict[str, Any]:
    """Ten calls sharing one system message and the demos; per-call times and how many parsed."""
    adapter = pl.ChatAdapter(fallback=None)
    lm.prefix_reuse = prefix_reuse
    lm.use_grammar = grammar
    lm.llama.reset()  # start every configuration from an empty context
    times, correct, parsed = [], 0, 0
    prompt_tokens = completion_tokens = 0
    for event, label in EVENTS:
        messages = adapter.format(Classify, DEMOS, {"event": event})
        params = adapter.request_params(Classify, lm)
        started = clock()
        resp = lm.request(messages, max_tokens=48, **params)
        times.append(clock() - started)
        prompt_tokens = resp.usage.prompt_tokens
        completion_tokens += resp.usage.completion_tokens
        try:
            values = adapter.parse(Classify, resp.text)
        except ParseError:
            continue
        parsed += 1
        correct += values["category"] == label
    return {
        "prefix_reuse": prefix_reuse,
        "grammar": grammar,
        "calls": len(times),
        "prompt_tokens_per_call": prompt_tokens,
        "completion_tokens_total": completion_tokens,
        "first_call_s": round(times[0], 3),
        "later_calls_mean_s": round(statistics.mean(times[1:]), 3),
        "mean_s": round(statistics.mean(times), 3),
        "total_s": round(sum(times), 2),
        "parsed": parsed,
        "correct": correct,
    }


def system_tokens(lm: LocalLM) -> int:
    messages = pl.ChatAdapter().format(Classify, [], {"event": "x"})
    return len(lm.llama.tokenize(messages[0].content.encode()))


def bench_model(name: str, repeats: int, threads: int | None) -> dict[str, Any]:
    started = time.perf_counter()
    cached = name not in models.REGISTRY or models.is_cached(name)
    path = models.resolve(name)
    fetch_s = None if cached else round(time.perf_counter() - started, 1)
    lm = LocalLM(name, cache=False, n_threads=threads)
    started = time.perf_counter()
    llama = lm.load()
    load_s = round(time.perf_counter() - started, 2)
    result: dict[str, Any] = {
        "model": name,
        "file": path.name,
        "size_bytes": path.stat().st_size,
        "fetch_s": fetch_s,
        "load_s": load_s,
        "n_threads": lm.n_threads,
        "clock": "cpu" if clock is time.process_time else "wall",
        "n_ctx": lm.n_ctx,
    }
    result.update(raw_speed(llama, repeats))
    result["system_message_tokens"] = system_tokens(lm)
    result["classification"] = [
        classification(lm, prefix_reuse=True, grammar=True),
        classification(lm, prefix_reuse=False, grammar=True),
        classification(lm, prefix_reuse=True, grammar=False),
    ]
    return result


def print_tables(results: list[dict[str, Any]], info: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(width=max(120, Console().width))
    how = f"{results[0]['n_threads']} threads, {results[0]['clock']} time"
    speed = Table(
        title=f"local models, {info['description']} ({info['cpu']}), llama-cpp-python {info['llama_cpp_python']}, {how}"
    )
    for col in ("model", "size", "load s", "prompt tok/s", "completion tok/s"):
        speed.add_column(col, justify="left" if col == "model" else "right")
    for r in results:
        speed.add_row(
            r["model"],
            f"{r['size_bytes'] / 1e6:,.0f} MB",
            f"{r['load_s']:.2f}",
            f"{r['prompt_tok_s']:.0f}",
            f"{r['completion_tok_s']:.0f}",
        )
    console.print(speed)

    calls = Table(
        title=f"repeated-prefix classification: {len(EVENTS)} calls, same system message + {len(DEMOS)} demos, {how}"
    )
    for col in (
        "model",
        "prefix reuse",
        "grammar",
        "prompt tok",
        "first call s",
        "later calls s",
        "mean s",
        "parsed",
        "correct",
    ):
        calls.add_column(col, justify="left" if col == "model" else "right")
    for r in results:
        for c in r["classification"]:
            calls.add_row(
                r["model"],
                "on" if c["prefix_reuse"] else "off",
                "on" if c["grammar"] else "off",
                str(c["prompt_tokens_per_call"]),
                f"{c['first_call_s']:.2f}",
                f"{c['later_calls_mean_s']:.2f}",
                f"{c['mean_s']:.2f}",
                f"{c['parsed']}/{c['calls']}",
                f"{c['correct']}/{c['calls']}",
            )
    console.print(calls)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", action="append", help="registry name or .gguf path (repeatable)")
    parser.add_argument("--repeats", type=int, default=3, help="repeats of the raw speed runs (median)")
    parser.add_argument("--out", type=Path, default=HERE / "results" / "local.json")
    parser.add_argument("--threads", type=int, default=None, help="llama.cpp threads (default: the usable cores)")
    parser.add_argument("--clock", choices=sorted(CLOCKS), default="wall", help="time by wall clock or CPU time")
    parser.add_argument(
        "--wait-idle",
        type=float,
        default=0.0,
        metavar="S",
        help="wait up to S seconds for a quiet machine per model; give up (exit 3) if it stays busy",
    )
    args = parser.parse_args(argv)
    names = args.model or ["smollm2-135m"]
    global clock
    clock = CLOCKS[args.clock]
    info = machine()
    results = []
    for name in names:
        idle = wait_until_idle(args.wait_idle) if args.wait_idle else cpu_idle_fraction()
        if args.wait_idle and idle is not None and idle < 0.9:
            print(f"the machine stayed busy for {args.wait_idle:.0f} s; not measuring {name}", file=sys.stderr)
            return 3
        print(f"benchmarking {name} ...", file=sys.stderr)
        wall, cpu = time.perf_counter(), time.process_time()
        result = bench_model(name, args.repeats, args.threads)
        # Near 1.0 when this run had the cores to itself; well below when other work competed.
        result["cpu_share"] = round((time.process_time() - cpu) / ((time.perf_counter() - wall) * usable_cores()), 2)
        result["machine_idle_before"] = None if idle is None else round(idle, 2)
        results.append(result)
    print_tables(results, info)

    args.out.parent.mkdir(parents=True, exist_ok=True)
    data: dict[str, Any] = {}
    if args.out.exists():
        try:
            data = json.loads(args.out.read_text())
        except json.JSONDecodeError:
            data = {}
    data["machine"] = info
    data.setdefault("models", {})
    for r in results:
        r["measured_at"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        default_run = r["clock"] == "wall" and r["n_threads"] == usable_cores()
        data["models"][r["model"] if default_run else f"{r['model']} [{r['n_threads']} thread, {r['clock']} time]"] = r
    tmp = args.out.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n")
    os.replace(tmp, args.out)
    print(f"wrote {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
