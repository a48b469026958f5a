"""One optimizer run on scripted, deterministic LMs, for the kill -9 and budget-stop resume tests.

    python resume_child.py OPTIMIZER RUN_DIR LOG OUT [--stall-from N] [--max-calls N] [--threads N] [--again]

OPTIMIZER ``label`` runs ``pl.label`` instead: the task LM, as a teacher, labels the 52 examples' inputs.

Every LM call appends one line to LOG *before* its reply is made. With ``--stall-from N`` the N-th call and every
later one hang (for a minute) after logging, so a test that waits for line N and then kills this process kills
it with those calls in flight. OUT receives the result as JSON when the run ends. ``--again`` runs the same
``compile`` a second time without a budget once the first is done (a budget stop, then a resume) and writes
both results. ``run(...)`` does one run in-process.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import sys
import threading
import time
from pathlib import Path
from typing import Any

import promptless as pl
from promptless.optimize import BootstrapFewShot, BootstrapFewShotWithRandomSearch, LabeledFewShot, MIPROv2

CATS = ["Wars and Conflicts", "Science and Innovation", "Economic Events", "Politics and Governance"]
PROPOSALS = [
    "Read the event and classify it.",
    "Look for the CLUE in the event, then name its category.",
    "Decide the category of the event from its words.",
    "Use the CLUE words and the examples, then pick a category.",
    "Name the category that fits the event best.",
    "Think about the event, then pick one category.",
]
OPTIMIZERS = ("labeled", "bootstrap", "random", "mipro", "gepa", "label")  # label: pl.label, not an optimizer


class Classify(pl.Signature):
    """Classify the event."""

    event: str = pl.InputField()
    category: str = pl.OutputField()


def _h(*parts: Any) -> int:
    return int(hashlib.sha256("/".join(map(str, parts)).encode()).hexdigest()[:8], 16)


def _data() -> tuple[list[pl.Example], list[pl.Example]]:
    data = [pl.Example(event=f"event number {i}", category=CATS[_h("label", i) % 4]).with_inputs("event")
            for i in range(60)]
    return data[:24], data[24:52]  # 24 train, 28 validation


class _Log:
    """One line per LM call, written before the reply; calls from the ``stall_from``-th on hang."""

    def __init__(self, path: str | Path, stall_from: int | None) -> None:
        self.file = open(path, "a", buffering=1)  # noqa: SIM115 - closed by run()
        self.stall_from = stall_from
        self.count = 0
        self.lock = threading.Lock()

    def call(self, role: str, request: Any) -> None:
        text = "\n".join(m.content for m in request.messages)
        digest = hashlib.sha256(f"{text}/{request.rollout_id}/{request.temperature}".encode()).hexdigest()[:16]
        with self.lock:
            self.count += 1
            n = self.count
            self.file.write(json.dumps([role, digest]) + "\n")
            self.file.flush()
        if self.stall_from is not None and n >= self.stall_from:
            time.sleep(60)


class _Logged(pl.ScriptedLM):
    def __init__(self, role: str, log: _Log, fn: Any) -> None:
        self.role, self.log = role, log
        super().__init__(fn)

    def complete(self, request: Any) -> Any:
        self.log.call(self.role, request)
        return super().complete(request)


def _models(log: _Log, gold: dict[str, str]) -> tuple[pl.ScriptedLM, pl.ScriptedLM]:
    def task(messages: Any) -> str:
        instructions = messages[0].content.split("Task:")[-1].strip()
        event = re.search(r"\[\[ ## event ## \]\]\n(.*?)(?:\n\n|\Z)", messages[-1].content, re.S).group(1)
        demos = (len(messages) - 2) // 2
        skill = 35 + 25 * ("CLUE" in instructions) + 10 * ("examples" in instructions) + 12 * min(demos, 2)
        ok = _h(instructions, demos, event) % 100 < skill
        label = gold[event] if ok else CATS[(CATS.index(gold[event]) + 1) % 4]
        return f"[[ ## category ## ]]\n{label}\n\n[[ ## completed ## ]]"

    state: dict[str, Any] = {}

    def propose(messages: Any) -> str:
        if "new_instruction" in messages[0].content:  # GEPA's reflection: the reply a function of the prompt
            i = _h(messages[-1].content)
            return f"[[ ## new_instruction ## ]]\n{PROPOSALS[i % len(PROPOSALS)]}\n\n[[ ## completed ## ]]"
        i = int(str(state["rollout"]).rsplit("/", 1)[-1])
        return f"[[ ## proposed_instruction ## ]]\n{PROPOSALS[i % len(PROPOSALS)]}\n\n[[ ## completed ## ]]"

    class _Prompt(_Logged):
        def complete(self, request: Any) -> Any:
            state["rollout"] = request.rollout_id
            return super().complete(request)

    return _Logged("task", log, task), _Prompt("prompt", log, propose)


def _metric(example: pl.Example, pred: Any, trace: Any = None) -> bool:
    return bool(example.category == pred.category)


def make_optimizer(name: str, task: Any, prompt: Any, run_dir: str, max_calls: int | None, threads: int) -> Any:
    common: dict[str, Any] = {"max_lm_calls": max_calls, "run_dir": run_dir, "num_threads": threads,
                              "progress": False}
    if name == "labeled":
        return LabeledFewShot(k=3, metric=_metric, **common)
    if name == "bootstrap":
        return BootstrapFewShot(metric=_metric, max_bootstrapped_demos=3, max_labeled_demos=3, **common)
    if name == "random":
        return BootstrapFewShotWithRandomSearch(_metric, num_candidate_programs=3, max_bootstrapped_demos=2,
                                                max_labeled_demos=2, seed=1, **common)
    if name == "mipro":
        return MIPROv2(_metric, prompt_model=prompt, task_model=task, auto=None, num_candidates=6, num_trials=14,
                       minibatch_size=8, minibatch_full_eval_steps=4, max_bootstrapped_demos=1,
                       max_labeled_demos=1, seed=3, **common)
    if name == "gepa":
        from promptless.optimize.gepa import GEPA

        # holdout=None: the pick by validation score, so the resumed run must also reach the evolved instruction
        return GEPA(_metric, reflection_lm=prompt, task_model=task, max_metric_calls=220, reflection_minibatch_size=3,
                    holdout=None, seed=5, **common)
    raise SystemExit(f"unknown optimizer {name!r}; one of {', '.join(OPTIMIZERS)}")


def run(name: str, run_dir: str | Path, log_path: str | Path, *, stall_from: int | None = None,
        max_calls: int | None = None, threads: int = 1) -> dict[str, Any]:
    train, val = _data()
    gold = {ex.event: ex.category for ex in train + val}
    log = _Log(log_path, stall_from)
    if name == "label":
        try:
            task, _ = _models(log, gold)
            labelled = pl.label(pl.Predict(Classify, lm=task), train + val, max_lm_calls=max_calls,
                                run_dir=str(run_dir), num_threads=threads, progress=False)
        finally:
            log.file.close()
        return {"labels": [ex.to_dict() for ex in labelled], "failed": [f.to_dict() for f in labelled.failed],
                "pending": labelled.pending, "calls": labelled.calls, "stopped": labelled.stopped,
                "resumed": labelled.resumed, "replayed": labelled.replayed_calls}
    try:
        task, prompt = _models(log, gold)
        opt = make_optimizer(name, task, prompt, str(run_dir), max_calls, threads)
        program = pl.Predict(Classify, lm=task)
        with pl.context(lm=task, adapter=None):
            out = opt.compile(program, trainset=train, valset=val)
    finally:
        log.file.close()
    r = out.optimization
    return {
        "trials": [[t.number, t.kind, t.params, t.score, t.estimate, t.fingerprint] for t in r.trials],
        "instructions": out.signature.instructions,
        "demos": [d.to_dict() for d in out.demos],
        "final": r.final_score,
        "baseline": r.baseline_score,
        "calls": r.calls,
        "stopped": r.stopped,
        "resumed": r.resumed,
        "replayed": r.usage.get("replayed_calls", 0),
    }


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("optimizer", choices=OPTIMIZERS)
    ap.add_argument("run_dir")
    ap.add_argument("log")
    ap.add_argument("out")
    ap.add_argument("--stall-from", type=int, default=None)
    ap.add_argument("--max-calls", type=int, default=None)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--again", action="store_true")
    args = ap.parse_args(argv)
    result = run(args.optimizer, args.run_dir, args.log, stall_from=args.stall_from, max_calls=args.max_calls,
                 threads=args.threads)
    if args.again:
        result = {"first": result, "again": run(args.optimizer, args.run_dir, args.log, threads=args.threads)}
    Path(args.out).write_text(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
