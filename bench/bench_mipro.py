"""Optimizers on the historic-events task with a real model, and MIPROv2 here against DSPy 3.4.1.

    python bench/bench_mipro.py                         # promptless: baseline + every optimizer (see STEPS)
    python bench/bench_mipro.py --steps mipro0 mipro2   # only some steps
    python bench/bench_mipro.py --steps --dspy          # DSPy 3.4.1's MIPROv2 (0 and 2 demos), needs bench/.venv
    python bench/bench_mipro.py --test                  # also the 375-example test split, for finished steps

The protocol, the same for every step and both sides: the classifier ``ClassifyEvent`` (Literal category, float
confidence), the first 60 examples of the train split to ground proposals and make demos, the other 90 as the
optimizer's validation set, and the 100 examples of the dev split, never seen by an optimizer, for the
accuracy before and after. Model: qwen2.5-coder-1.5b (greedy) as both task and prompt model. Seed 9.

promptless runs the model in process (``local/...``); DSPy runs it through ``llama_cpp.server`` on 127.0.0.1
(DSPy talks to models through LiteLLM), one request at a time. LM calls are counted per role: task-model
calls (running the classifier) and prompt-model calls (writing instructions). The LM cache is off on both
sides. Each finished step is merged into ``bench/results/optimizers.json`` at once, so an interrupted run
continues with the next step when started again (``--redo`` runs steps again).

Every promptless optimizer runs with ``max_lm_calls`` (``--max-calls``, default 400: everything it spends,
bootstrapping, proposals and the held-out check included) and its default selection: part of the validation
set held out from the search, the pick kept only when a paired test says it beats the zero-shot program there.
Each record keeps that evidence (``selection``: the split, the decision and its reason, the scores on what the
search saw and on what it did not, and the paired test's lift, interval, p-value and n). ``--test`` scores the
zero-shot program and each finished step's pick on the test split (375 examples, about 20 minutes a program on
2 cores), one record at a time: the pick is rebuilt by replaying its run directory (no LM call), so it can run
long after the search. ``--knn`` adds the ``_knn`` steps (per-input nearest-neighbour demos by the local
all-MiniLM-L6-v2 embedder as one more candidate; left out cleanly when it cannot be loaded), and the
calibrations with the votes of the nearest labelled examples (``calibrate_knn``) and with a probe on the task
model's own hidden states too (``calibrate_knn_probe``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
# Rows measured with held-out selection (every optimizer picks on examples its search did not fit). The rows
# measured before that selection existed stay in optimizers.json (``--results bench/results/optimizers.json``).
RESULTS = HERE / "results" / "optimizers_selected.json"
RUNS = HERE / "results" / "runs"
# Evaluations of the final programs (dev and test) go through an LM cache of the bench's own, shared with
# bench_scoring.py: greedy replies to the same request are the same, so a program scored before is not paid
# again. The searches themselves run with the cache off, so their call counts are what a user would pay.
EVAL_CACHE = Path("~/.cache/promptless/bench_scoring.sqlite3").expanduser()
MODEL = "qwen2.5-coder-1.5b"
SEED = 9
N_TRAIN = 60

STEPS = ("baseline", "calibrate", "mipro0", "gepa", "labeled", "bootstrap", "random", "mipro2")
KNN_STEPS = ("random_knn", "mipro2_knn", "calibrate_knn", "calibrate_knn_probe")
HOLDOUT_STEPS = ("random_half",)  # random search with half the valset held out instead of a third
MAX_CALLS = 400


def _load() -> dict[str, Any]:
    return json.loads(RESULTS.read_text()) if RESULTS.exists() else {}


def _save(key: str, value: dict[str, Any]) -> None:
    data = _load()
    data[key] = value
    data.setdefault("_meta", {}).update({
        "model": MODEL, "seed": SEED, "train": N_TRAIN, "valset": "train[60:150]", "devset": "dev (100)",
        "machine": f"{os.cpu_count()} cores {platform.machine()}, Python {platform.python_version()}",
    })
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(data, indent=2) + "\n")


# -- promptless ------------------------------------------------------------------------------------------


def selection_record(r: Any) -> dict[str, Any]:
    """What the bench keeps of a run's selection: the split, the decision and why, the scores of the starting
    program and the candidate on what the search saw and on what it did not, and the paired test."""
    sel = dict(r.selection or {})
    ev = sel.get("evidence") or {}
    return {
        "selection": sel,
        "holdout_score": r.holdout_score,
        "lift": ev.get("lift"), "interval": [ev.get("low"), ev.get("high")] if ev else None,
        "p_value": ev.get("p_value"), "n": ev.get("n"), "decision": sel.get("decision"),
    }


def run_promptless(steps: list[str], redo: bool, threads: int, max_calls: int | None = MAX_CALLS,
                   test: bool = False, refused: bool = False) -> None:
    sys.path.insert(0, str(ROOT / "src"))
    import promptless as pl
    from promptless.evaluate import Evaluate
    from promptless.lm.cache import Cache
    from promptless.modules.neighbours import voters_counted
    from promptless.tasks import category_match, load_events, make_classifier

    lm = pl.LM(f"local/{MODEL}", cache=False, n_threads=threads)
    eval_lm = pl.LM(f"local/{MODEL}", cache=Cache(EVAL_CACHE), n_threads=threads)  # same weights, loaded once
    t0 = time.perf_counter()
    lm.load()
    print(f"loaded {MODEL} in {time.perf_counter() - t0:.1f} s", flush=True)
    train_all, dev = load_events("train"), load_events("dev")
    train, val = train_all[:N_TRAIN], train_all[N_TRAIN:]

    def split_eval(program: Any, examples: list[Any]) -> dict[str, Any]:
        program = program.deepcopy()
        for _, p in program.named_predictors():
            p.lm = eval_lm
        with pl.track_usage() as usage:
            result = Evaluate(devset=examples, metric=category_match, num_threads=1,
                              display_progress=False)(program)
        labels = [r.prediction.get("category") if r.prediction is not None else None for r in result.rows]
        return {"accuracy": round(result.score, 2), "calls": usage.total.calls + usage.total.cache_hits,
                "new_calls": usage.total.calls, "seconds": round(result.seconds, 1),
                "errors": result.n_errors, "distinct_labels": len(set(labels)),
                "correct": [bool(r.score) for r in result.rows]}

    def dev_eval(program: Any) -> dict[str, Any]:
        return split_eval(program, dev)

    knn_embedder = None

    def embedder() -> Any:
        nonlocal knn_embedder
        if knn_embedder is None:
            knn_embedder = pl.Embedder("local/all-MiniLM-L6-v2")
        return knn_embedder

    def optimizer_for(step: str) -> tuple[Any, dict[str, Any]]:
        common = {"run_dir": str(RUNS / step), "progress": False, "max_lm_calls": max_calls}
        knn = {"knn": embedder()} if step.endswith("_knn") else {}
        if step == "mipro0":
            return pl.MIPROv2(category_match, prompt_model=lm, task_model=lm, auto="light", seed=SEED,
                              max_bootstrapped_demos=0, max_labeled_demos=0, **common), {"valset": val}
        if step in ("mipro2", "mipro2_knn"):
            return pl.MIPROv2(category_match, prompt_model=lm, task_model=lm, auto="light", seed=SEED,
                              max_bootstrapped_demos=2, max_labeled_demos=2, **knn, **common), {"valset": val}
        if step == "calibrate":  # label scoring (pl.Classify) with a calibration checked on the valset
            return pl.Calibrate(category_match, **common), {"valset": val}
        if step == "calibrate_knn":  # the same, with the nearest labelled examples' votes in the fit
            return pl.Calibrate(category_match, knn=embedder(), **common), {"valset": val}
        if step == "calibrate_knn_probe":  # and a probe on the task model's own hidden states
            return pl.Calibrate(category_match, knn=embedder(), probe=pl.Embedder(f"local/{MODEL}"),
                                **common), {"valset": val}
        if step == "gepa":
            return pl.GEPA(category_match, auto="light", reflection_lm=lm, seed=SEED, **common), {"valset": val}
        if step == "labeled":
            return pl.LabeledFewShot(k=4, seed=SEED, **common), {}
        if step == "bootstrap":  # the demos are checked on the same 90 validation examples as the others
            return pl.BootstrapFewShot(metric=category_match, max_bootstrapped_demos=4, max_labeled_demos=0,
                                       **common), {"valset": val}
        if step in ("random", "random_knn", "random_half"):
            half = {"holdout": 0.5} if step == "random_half" else {}
            return pl.BootstrapFewShotWithRandomSearch(category_match, num_candidate_programs=3,
                                                       max_bootstrapped_demos=4, max_labeled_demos=4, seed=SEED,
                                                       **knn, **half, **common), {"valset": val}
        raise SystemExit(f"unknown step {step}")

    def start(step: str) -> Any:
        if step in ("calibrate", "calibrate_knn", "calibrate_knn_probe"):
            from promptless.tasks import ClassifyEvent

            return pl.Classify(ClassifyEvent, lm=lm)
        return make_classifier(lm=lm)

    import logging

    from promptless.optimize.report import write_report

    logging.basicConfig(level=logging.INFO, format="  %(message)s", stream=sys.stdout)
    done = _load()
    for step in steps:
        key = f"promptless/{step}"
        if key in done and not redo:
            print(f"{step}: done already ({done[key].get('dev', done[key])})", flush=True)
            continue
        print(f"== {step}", flush=True)
        if step == "baseline":
            base_record = {"dev": dev_eval(make_classifier(lm=lm))}
            if test:
                base_record["test"] = split_eval(make_classifier(lm=lm), load_events("test"))
            _save(key, base_record)
            continue
        if redo:  # a fresh search: the old run directory may hold another prompt format, or the old result
            shutil.rmtree(RUNS / step, ignore_errors=True)
        opt, extra = optimizer_for(step)
        t0 = time.perf_counter()
        optimized = opt.compile(start(step), trainset=train, **extra)
        search_seconds = time.perf_counter() - t0
        r = optimized.optimization
        write_report(r, RUNS / f"{step}.html")
        inner = getattr(optimized, "program", optimized)  # a KNNProgram wraps the classifier
        record = {
            "optimizer": r.optimizer,
            "search_seconds": round(search_seconds, 1),
            "calls": r.calls,
            "max_lm_calls": max_calls,
            "calls_by_role": r.usage.get("calls_by_role", {}),
            "stopped": r.stopped,
            "trials": len(r.trials),
            "val_before": r.baseline_score,
            "val_after": r.final_score,
            **selection_record(r),
            "instructions": inner.signature.instructions,
            "calibration": voters_counted(getattr(inner, "calibration", None)),
            "demos": "per input (knn)" if inner is not optimized else len(optimized.demos),
            "candidates": r.candidates.get("instructions", {}),
            "rejected": r.candidates.get("rejected_proposals", []),
            "dev": dev_eval(optimized),
        }
        if test:
            record["test"] = split_eval(optimized, load_events("test"))
        _save(key, record)
        print(json.dumps({k: v for k, v in record.items()
                          if k not in ("candidates", "rejected", "selection", "calibration")}, indent=1,
                         default=str)[:3000], flush=True)
    if test:
        test_split = load_events("test")
        for step in steps:
            key = f"promptless/{step}"
            record = _load().get(key)
            if record is None or ("test" in record and not redo):
                continue
            print(f"== {step}: test split ({len(test_split)} examples)", flush=True)
            if step == "baseline":
                program = make_classifier(lm=lm)
            else:  # the same compile call replays its run directory: the pick again, without an LM call
                opt, extra = optimizer_for(step)
                program = opt.compile(start(step), trainset=train, **extra)
            record["test"] = split_eval(program, test_split)
            _save(key, record)
            print(json.dumps(record["test"]), flush=True)
    if refused:
        # The candidate a check refused, scored like a pick: was the check right to keep the starting program?
        # The same compile call replays its run directory (no LM call); result.refused is the candidate.
        for step in steps:
            key = f"promptless/{step}"
            record = _load().get(key)
            if record is None or step in ("baseline", "labeled") or ("refused" in record and not redo):
                continue
            opt, extra = optimizer_for(step)
            program = opt.compile(start(step), trainset=train, **extra)
            cand = program.optimization.refused
            if cand is None:
                continue
            print(f"== {step}: the refused candidate on dev and test", flush=True)
            record["refused"] = {"dev": dev_eval(cand), "test": split_eval(cand, load_events("test")),
                                 "params": program.optimization.selection.get("candidate")}
            _save(key, record)
            print(json.dumps({k: v["accuracy"] for k, v in record["refused"].items() if k != "params"}), flush=True)


# -- DSPy ------------------------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def run_dspy(demos: list[int], redo: bool, threads: int) -> None:
    """Start llama.cpp's server, then run the DSPy side in bench/.venv against it."""
    sys.path.insert(0, str(ROOT / "src"))
    import httpx

    from promptless.lm import models

    todo = [d for d in demos if redo or f"dspy/mipro{d}" not in _load()]
    if not todo:
        print("dspy: done already", flush=True)
        return
    path = models.fetch(MODEL, progress=False)
    port = _free_port()
    log = open(HERE / "results" / "llama_server.log", "wb")  # noqa: SIM115
    server = subprocess.Popen(
        [sys.executable, "-m", "llama_cpp.server", "--model", str(path), "--model_alias", MODEL, "--host",
         "127.0.0.1", "--port", str(port), "--n_ctx", "4096", "--n_threads", str(threads)],
        stdout=log, stderr=subprocess.STDOUT,
    )
    try:
        base = f"http://127.0.0.1:{port}/v1"
        deadline = time.monotonic() + 180
        while True:
            try:
                if httpx.get(f"{base}/models", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if server.poll() is not None or time.monotonic() > deadline:
                raise SystemExit("llama_cpp.server did not start; see bench/results/llama_server.log")
            time.sleep(0.5)
        for d in todo:
            out = HERE / "results" / f"dspy_mipro{d}.json"
            subprocess.run([str(HERE / ".venv" / "bin" / "python"), __file__, "--dspy-child", base, str(d), str(out)],
                           check=True)
            _save(f"dspy/mipro{d}", json.loads(out.read_text()))
    finally:
        server.terminate()
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()


def dspy_child(base: str, demos: int, out: str) -> None:
    """Runs inside bench/.venv (DSPy 3.4.1)."""
    from typing import Literal

    import dspy

    rows = [json.loads(line) for line in (ROOT / "src/promptless/datasets/historic_events.jsonl").read_text()
            .splitlines() if line.strip()]
    ex = {s: [dspy.Example(event=r["event"], category=r["category"]).with_inputs("event") for r in rows
              if r["split"] == s] for s in ("train", "dev")}
    train, val, dev = ex["train"][:N_TRAIN], ex["train"][N_TRAIN:], ex["dev"]
    cats = ("Wars and Conflicts", "Politics and Governance", "Science and Innovation",
            "Cultural and Artistic Movements", "Exploration and Discovery", "Economic Events", "Social Movements",
            "Man-Made Disasters and Accidents", "Natural Disasters and Climate", "Sports and Entertainment",
            "Famous Personalities and Achievements")

    # built with real annotation objects: this file's ``from __future__ import annotations`` would leave
    # ``Literal[cats]`` a string that pydantic cannot resolve from inside a function
    ClassifyEvent = type("ClassifyEvent", (dspy.Signature,), {  # noqa: N806
        "__doc__": "Classify the historic event into the one category that fits it best.",
        "__annotations__": {"event": str, "category": Literal[cats], "confidence": float},
        "event": dspy.InputField(desc="a dated historic event, in one line"),
        "category": dspy.OutputField(desc="the category of the event"),
        "confidence": dspy.OutputField(desc="how sure you are of the category, from 0.0 to 1.0"),
    })

    def metric(example: Any, pred: Any, trace: Any = None) -> bool:
        return str(getattr(pred, "category", "")).strip().casefold() == example.category.casefold()

    def make_lm() -> Any:
        return dspy.LM(f"openai/{MODEL}", api_base=base, api_key="none", temperature=0.0, max_tokens=512,
                       cache=False, num_retries=0)

    task_lm, prompt_lm = make_lm(), make_lm()
    dspy.configure(lm=task_lm)

    def dev_eval(program: Any) -> dict[str, Any]:
        n0, t0 = len(task_lm.history), time.perf_counter()
        res = dspy.Evaluate(devset=dev, metric=metric, num_threads=1, display_progress=False,
                            provide_traceback=False)(program)
        score = float(getattr(res, "score", res))
        return {"accuracy": round(score, 2), "calls": len(task_lm.history) - n0,
                "seconds": round(time.perf_counter() - t0, 1)}

    program = dspy.Predict(ClassifyEvent)
    before = dev_eval(program)
    n_task, n_prompt, t0 = len(task_lm.history), len(prompt_lm.history), time.perf_counter()
    tp = dspy.MIPROv2(metric=metric, prompt_model=prompt_lm, task_model=task_lm, auto="light", seed=SEED,
                      max_bootstrapped_demos=demos, max_labeled_demos=demos, num_threads=1, verbose=False)
    optimized = tp.compile(program, trainset=train, valset=val)
    search = time.perf_counter() - t0
    calls_task, calls_prompt = len(task_lm.history) - n_task, len(prompt_lm.history) - n_prompt
    after = dev_eval(optimized)
    instructions = optimized.signature.instructions
    Path(out).write_text(json.dumps({
        "dspy": dspy.__version__, "search_seconds": round(search, 1),
        "calls_by_role": {"task": calls_task, "prompt": calls_prompt}, "calls": calls_task + calls_prompt,
        "instructions": instructions, "demos": len(optimized.demos), "dev_before": before, "dev": after,
    }, indent=2))


LABELS = {
    "promptless/baseline": "promptless, no optimizer",
    "promptless/mipro0": "promptless MIPROv2 light, instruction-only",
    "promptless/mipro2": "promptless MIPROv2 light, up to 2 demos",
    "promptless/mipro2_placeholder_demos": "promptless MIPROv2 light, up to 2 demos, before demos left out missing "
                                           "typed fields",
    "promptless/calibrate": "promptless Calibrate (pl.Classify, fit on train, checked on the valset)",
    "promptless/gepa": "promptless GEPA light",
    "promptless/labeled": "promptless LabeledFewShot(k=4)",
    "promptless/bootstrap": "promptless BootstrapFewShot(4 bootstrapped)",
    "promptless/random": "promptless BootstrapFewShotWithRandomSearch(3 candidates)",
    "promptless/calibrate_knn": "promptless Calibrate + votes of the 10 nearest labelled examples (all-MiniLM-L6-v2)",
    "promptless/calibrate_knn_probe": "promptless Calibrate + votes + a probe on the 1.5B's own hidden states",
    "promptless/random_knn": "promptless BootstrapFewShotWithRandomSearch(3 candidates) + kNN demos",
    "promptless/random_half": "promptless BootstrapFewShotWithRandomSearch(3 candidates), holdout=0.5",
    "promptless/mipro2_knn": "promptless MIPROv2 light, up to 2 demos + kNN demos",
    "dspy/mipro0": "DSPy 3.4.1 MIPROv2 light, instruction-only",
    "dspy/mipro2": "DSPy 3.4.1 MIPROv2 light, up to 2 demos",
    "grammar_first_prompt/mipro0": "earlier chat prompt: promptless MIPROv2 light, instruction-only",
    "grammar_first_prompt/labeled": "earlier chat prompt: promptless LabeledFewShot(k=4)",
}


def _held_out(r: dict[str, Any]) -> str:
    """The pick's selection in one cell: held-out scores of the zero-shot program and the candidate, the lift's
    p-value and the decision."""
    sel = r.get("selection") or {}
    scores = sel.get("scores") or {}
    base, cand = scores.get("starting program") or {}, scores.get("candidate") or {}
    ev = sel.get("evidence") or {}
    if not sel:
        return "–"
    cell = sel.get("decision", "–")
    if base.get("unseen") is not None and cand.get("unseen") is not None:
        cell = f"{base['unseen']:.1f} → {cand['unseen']:.1f}, p = {ev.get('p_value', 1):.2g}: {cell}"
    return cell


def _refused(r: dict[str, Any]) -> str:
    """The refused candidate's dev and test scores (``--refused``), or a dash."""
    ref = r.get("refused")
    if not ref:
        return "–"
    return f"{ref['dev']['accuracy']:.1f} / {ref['test']['accuracy']:.1f}"


def table() -> str:
    """The results as a Markdown table (dev and test accuracy before/after, calls by role, times, selection)."""
    data = _load()
    rows = ["| run | dev before | dev after | test before | test after | task-LM calls | prompt-LM calls | "
            "search time | val (search part) before → after | held out: zero-shot → candidate, p: decision | "
            "refused candidate: dev / test |",
            "|---|---|---|---|---|---|---|---|---|---|---|"]
    for key, label in LABELS.items():
        r = data.get(key)
        if r is None or key.endswith("/baseline"):
            continue
        baseline = data.get(key.split("/")[0] + "/baseline", {})
        before = r.get("dev_before", {}).get("accuracy", baseline.get("dev", {}).get("accuracy"))
        test_before = baseline.get("test", {}).get("accuracy", "–")
        test_after = r.get("test", {}).get("accuracy", "–")
        by_role = r.get("calls_by_role", {})
        val = (f"{r['val_before']:.1f} → {r['val_after']:.1f}"
               if r.get("val_before") is not None and r.get("val_after") is not None else "–")
        rows.append(f"| {label} | {before} | {r['dev']['accuracy']} | {test_before} | {test_after} | "
                    f"{by_role.get('task', 0)} | {by_role.get('prompt', 0)} | {r.get('search_seconds', 0):,.0f} s | "
                    f"{val} | {_held_out(r)} | {_refused(r)} |")
    return "\n".join(rows)


def main() -> None:
    global RESULTS
    if len(sys.argv) > 1 and sys.argv[1] == "--dspy-child":
        dspy_child(sys.argv[2], int(sys.argv[3]), sys.argv[4])
        return
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--steps", nargs="*", default=list(STEPS), choices=STEPS + KNN_STEPS + HOLDOUT_STEPS)
    ap.add_argument("--knn", action="store_true", help="also the steps with nearest-neighbour demo candidates")
    ap.add_argument("--test", action="store_true",
                    help="score the zero-shot program and each finished step's pick on the test split (375)")
    ap.add_argument("--refused", action="store_true",
                    help="score on dev and test the candidate each finished step's check refused (result.refused)")
    ap.add_argument("--max-calls", type=int, default=MAX_CALLS,
                    help=f"max_lm_calls of every optimizer (default {MAX_CALLS}; 0: no limit)")
    ap.add_argument("--dspy", action="store_true", help="also run DSPy 3.4.1's MIPROv2 (needs bench/.venv)")
    ap.add_argument("--dspy-demos", nargs="*", type=int, default=[0, 2])
    ap.add_argument("--table", action="store_true", help="print the results as a Markdown table and stop")
    ap.add_argument("--results", type=Path, default=RESULTS,
                    help="results file (default: the rows with held-out selection; bench/results/optimizers.json "
                         "holds the rows measured before it)")
    ap.add_argument("--redo", action="store_true", help="run finished steps again")
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 2,
                    help="llama.cpp threads (use 1 when promptless and DSPy run side by side on 2 cores)")
    args = ap.parse_args()
    RESULTS = args.results
    if args.table:
        print(table())
        return
    steps = list(args.steps) + ([s for s in KNN_STEPS if s not in args.steps] if args.knn else [])
    if steps:
        run_promptless(steps, args.redo, args.threads, args.max_calls or None, args.test, args.refused)
    if args.dspy:
        run_dspy(args.dspy_demos, args.redo, args.threads)
    print(json.dumps(_load(), indent=1)[:4000])


if __name__ == "__main__":
    main()
