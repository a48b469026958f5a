"""A run killed with SIGKILL mid-search resumes from its run directory: same result, no finished work redone."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from promptless.optimize.checkpoint import count_trials

CHILD = textwrap.dedent(
    """
    import hashlib, json, re, sys, time
    import promptless as pl
    from promptless.optimize import MIPROv2

    run_dir, log_path, out_path, delay = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4])
    CATS = ["Wars and Conflicts", "Science and Innovation", "Economic Events", "Politics and Governance"]

    class Classify(pl.Signature):
        \"\"\"Classify the event.\"\"\"
        event: str = pl.InputField()
        category: str = pl.OutputField()

    data = [pl.Example(event=f"event number {i}", category=CATS[i % 4]).with_inputs("event") for i in range(70)]
    train, dev = data[:20], data[20:]
    gold = {ex.event: ex.category for ex in data}
    log = open(log_path, "a", buffering=1)

    def task(messages):
        instructions = messages[0].content.split("Task:")[-1].strip()
        event = re.search(r"\\[\\[ ## event ## \\]\\]\\n(.*?)(?:\\n\\n|\\Z)", messages[-1].content, re.S).group(1)
        n = (len(messages) - 2) // 2
        prompt = hashlib.sha256("\\n".join(m.content for m in messages).encode()).hexdigest()[:16]
        log.write(json.dumps(["task", prompt, event]) + "\\n")
        time.sleep(delay)
        ok = "CLUE" in instructions and (n >= 1 or int(event.split()[-1]) % 3 == 0)
        label = gold[event] if ok else CATS[(CATS.index(gold[event]) + 1) % 4]
        return f"[[ ## category ## ]]\\n{label}\\n\\n[[ ## completed ## ]]"

    proposals = iter(["Read the event and classify it.", "Look for the CLUE in the event.",
                      "Decide the category of the event.", "Use the CLUE words, then pick a category.",
                      "Name the category that fits best."] * 10)

    def propose(messages):
        text = next(proposals)
        log.write(json.dumps(["prompt", text]) + "\\n")
        return f"[[ ## proposed_instruction ## ]]\\n{text}\\n\\n[[ ## completed ## ]]"

    opt = MIPROv2(lambda e, p, t=None: e.category == p.category, prompt_model=pl.ScriptedLM(propose),
                  task_model=pl.ScriptedLM(task), auto=None, num_candidates=6, num_trials=14, minibatch_size=10,
                  minibatch_full_eval_steps=4, max_bootstrapped_demos=1, max_labeled_demos=1, seed=3,
                  run_dir=run_dir, progress=False)
    program = opt.compile(pl.Predict(Classify), trainset=train, valset=dev)
    r = program.optimization
    json.dump({
        "trials": [[t.number, t.kind, t.params, t.score, t.calls, t.fingerprint] for t in r.trials],
        "instructions": program.signature.instructions,
        "demos": [d.to_dict() for d in program.demos],
        "final": r.final_score, "baseline": r.baseline_score, "calls": r.calls, "resumed": r.resumed,
        "replayed": r.usage["replayed_calls"],
    }, open(out_path, "w"))
    """
)


def _start(script: Path, run_dir: Path, log: Path, out: Path, delay: float) -> subprocess.Popen:
    env = {**os.environ, "PROMPTLESS_CACHE": "0"}
    return subprocess.Popen([sys.executable, str(script), str(run_dir), str(log), str(out), str(delay)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _lines(path: Path) -> list[tuple]:
    if not path.exists():
        return []
    return [tuple(json.loads(line)) for line in path.read_text().splitlines() if line.strip()]


@pytest.mark.timeout(300)
def test_a_killed_run_resumes_to_the_same_result(tmp_path):
    script = tmp_path / "child.py"
    script.write_text(CHILD)

    # 1. the uninterrupted run
    ref = _start(script, tmp_path / "ref", tmp_path / "ref.log", tmp_path / "ref.json", 0.0)
    _, err = ref.communicate(timeout=240)
    assert ref.returncode == 0, err
    expected = json.loads((tmp_path / "ref.json").read_text())
    ref_work = _lines(tmp_path / "ref.log")
    n_trials = len(expected["trials"])
    assert n_trials >= 8

    # 2. the same run, killed with SIGKILL once the run directory holds 5 trials
    run_dir = tmp_path / "run"
    first = _start(script, run_dir, tmp_path / "first.log", tmp_path / "first.json", 0.01)
    deadline = time.monotonic() + 200
    while count_trials(run_dir) < 5:
        assert first.poll() is None, "the run finished before it could be killed; slow it down"
        assert time.monotonic() < deadline
        time.sleep(0.02)
    os.kill(first.pid, signal.SIGKILL)
    first.communicate(timeout=60)
    assert first.returncode == -signal.SIGKILL
    assert not (tmp_path / "first.json").exists()
    done_before = count_trials(run_dir)
    assert 5 <= done_before < n_trials
    first_work = _lines(tmp_path / "first.log")

    # 3. resumed with the same call and run directory
    second = _start(script, run_dir, tmp_path / "second.log", tmp_path / "second.json", 0.0)
    _, err = second.communicate(timeout=240)
    assert second.returncode == 0, err
    resumed = json.loads((tmp_path / "second.json").read_text())
    second_work = _lines(tmp_path / "second.log")

    # the same result as the uninterrupted run, trial for trial
    assert resumed["resumed"] is True
    for key in ("trials", "instructions", "demos", "final", "baseline"):
        assert resumed[key] == expected[key], key
    assert resumed["final"] > resumed["baseline"]
    # every call either process made is counted: the call in flight at the kill is counted although it was
    # made again (the one call more than the uninterrupted run), and nothing else is
    made = len(_lines(tmp_path / "first.log")) + len(_lines(tmp_path / "second.log"))
    assert made <= resumed["calls"] <= expected["calls"] + 1
    # no finished work was redone: at most the one call in flight at the kill is repeated
    repeated = set(first_work) & set(second_work)
    assert len(repeated) <= 1
    assert resumed["replayed"] >= len(first_work) - 1
    # and together the two processes did exactly the uninterrupted run's work
    assert set(first_work) | set(second_work) == set(ref_work)
    assert len(second_work) < len(ref_work)


def test_an_unfinished_run_directory_is_reused_in_process(tmp_path):
    """A budget stop is a clean interruption: rerun with a larger budget, only the rest is paid for."""
    import promptless as pl
    from promptless.optimize import MIPROv2

    cats = ["Wars and Conflicts", "Science and Innovation", "Economic Events", "Politics and Governance"]

    class Classify(pl.Signature):
        """Classify the event."""

        event: str = pl.InputField()
        category: str = pl.OutputField()

    data = [pl.Example(event=f"event {i}", category=cats[i % 4]).with_inputs("event") for i in range(50)]
    gold = {ex.event: ex.category for ex in data}

    def task_fn(messages):
        ins = messages[0].content.split("Task:")[-1]
        event = messages[-1].content.split("[[ ## event ## ]]\n")[1].split("\n")[0]
        label = gold[event] if "CLUE" in ins else cats[(cats.index(gold[event]) + 1) % 4]
        return f"[[ ## category ## ]]\n{label}\n\n[[ ## completed ## ]]"

    def make(limit):
        task = pl.ScriptedLM(task_fn)
        prompt = pl.ScriptedLM(["[[ ## proposed_instruction ## ]]\nFind the CLUE.\n\n[[ ## completed ## ]]",
                                "[[ ## proposed_instruction ## ]]\nClassify it well.\n\n[[ ## completed ## ]]"])
        opt = MIPROv2(lambda e, p, t=None: e.category == p.category, prompt_model=prompt, task_model=task,
                      max_bootstrapped_demos=0, max_labeled_demos=0, max_lm_calls=limit, run_dir=str(tmp_path))
        return opt, task, prompt

    opt, task, prompt = make(35)
    out = opt.compile(pl.Predict(Classify), trainset=data[:10], valset=data[10:])
    assert out.optimization.stopped == "budget" and len(task.requests) + len(prompt.requests) == 35
    opt, task, prompt = make(None)
    out = opt.compile(pl.Predict(Classify), trainset=data[:10], valset=data[10:])
    assert out.optimization.stopped == "completed" and out.optimization.resumed
    assert "CLUE" in out.signature.instructions
    assert out.optimization.usage["replayed_calls"] == 35
    assert all(r.messages[-1].content.split("[[ ## event ## ]]\n")[1].split("\n")[0] != "event 10"
               or "Task:\nClassify the event." not in r.messages[0].content for r in task.requests)
