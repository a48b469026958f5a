"""GEPA with scripted task and reflection models: budgets, resume, feedback, the Pareto front, merges."""

from __future__ import annotations

import hashlib
import json
import os
import re
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

import promptless as pl
from promptless.errors import ConfigurationError
from promptless.optimize import GEPA, write_report
from promptless.optimize.checkpoint import count_trials
from promptless.optimize.gepa import _Candidate

CATS = ["War", "Science", "Economy", "Politics"]


class Classify(pl.Signature):
    """Classify the event."""

    event: str = pl.InputField()
    category: str = pl.OutputField()


def make_data(n: int) -> list[pl.Example]:
    return [pl.Example(event=f"event {i}", category=CATS[i % 4]).with_inputs("event") for i in range(n)]


def number(messages) -> int:
    return int(re.search(r"\[\[ ## event ## \]\]\nevent (\d+)", messages[-1].content).group(1))


def task_lm() -> pl.ScriptedLM:
    """Right on events 0 mod 4; on even events too when the instruction names the CLUE, on odd ones with the
    HINT; otherwise it answers Politics."""

    def fn(messages):
        ins, n = messages[0].content, number(messages)
        ok = n % 4 == 0 or ("CLUE" in ins and n % 2 == 0) or ("HINT" in ins and n % 2 == 1)
        return f"[[ ## category ## ]]\n{CATS[n % 4] if ok else 'Politics'}\n\n[[ ## completed ## ]]"

    return pl.ScriptedLM(fn)


class ReflectLM(pl.ScriptedLM):
    """The replies in turn (wrapped as small models wrap them), keeping every prompt it was shown. ``keyed``:
    the reply is a function of the prompt instead, so a second process replies as the first did."""

    def __init__(self, replies=("Use the CLUE in the event.", "Use the HINT in the event.",
                                "Use the CLUE and the HINT in the event."), keyed=False):
        self.prompts: list[str] = []
        self._texts = list(replies)

        def fn(messages):
            self.prompts.append(messages[-1].content)
            i = int(hashlib.sha256(messages[-1].content.encode()).hexdigest(), 16) if keyed else len(self.prompts) - 1
            text = self._texts[i % len(self._texts)]
            return f"[[ ## new_instruction ## ]]\nSure! Here is the new instruction: {text}\n\n[[ ## completed ## ]]"

        super().__init__(fn)


def exact(example, pred, trace=None):
    return example.category == pred.category


def with_feedback(example, pred, trace=None):
    ok = example.category == pred.category
    note = "right" if ok else f"FEEDBACK-{example.event.split()[-1]}: it is {example.category}, not {pred.category}"
    return pl.Prediction(score=float(ok), feedback=note)


def run_gepa(metric=exact, *, train=12, val=18, reflect=None, task=None, **kw):
    data = make_data(train + val)
    reflect = reflect or ReflectLM()
    task = task or task_lm()
    kw.setdefault("max_metric_calls", 150)
    kw.setdefault("holdout", None)  # the pick by validation score alone, as in DSPy (selection: tested below)
    opt = GEPA(metric, reflection_lm=reflect, task_model=task, progress=False, **kw)
    out = opt.compile(pl.Predict(Classify), trainset=data[:train], valset=data[train:])
    return out, reflect, task


# -- what it finds --------------------------------------------------------------------------------------------


def test_gepa_evolves_the_instruction_and_keeps_the_best():
    out, reflect, task = run_gepa(with_feedback)
    r = out.optimization
    assert r.optimizer == "GEPA" and r.stopped == "completed"
    assert r.baseline_score == 50.0 and r.final_score == 100.0
    assert out.signature.instructions == "Use the CLUE and the HINT in the event."  # cleaned of "Sure! ..."
    pool = r.candidates["pool"]
    assert [c["origin"] for c in pool] == ["seed", "reflection", "reflection", "reflection"]
    assert r.best_params["candidate"] == 3 and pool[3]["on the front"]
    # one task call per example scored: the memo never scores a candidate twice on one example
    scored = [(c[0].content, number(c)) for c in (req.messages for req in task.requests)]
    assert len(scored) == len(set(scored)) == r.candidates["metric_calls"]
    assert r.usage["calls_by_role"] == {"task": len(task.requests), "prompt": len(reflect.requests)}


def test_feedback_reaches_the_reflection_prompt():
    _, reflect, _ = run_gepa(with_feedback, max_metric_calls=45)
    first = reflect.prompts[0]
    assert "Classify the event." in first  # the current instruction
    assert re.search(r"FEEDBACK-\d+: it is \w+, not Politics", first)
    assert "- event: event " in first and "- category: Politics" in first  # inputs and outputs


def test_without_feedback_the_reflection_sees_right_wrong_and_the_expected_output():
    _, reflect, _ = run_gepa(exact, max_metric_calls=45)
    first = reflect.prompts[0]
    assert re.search(r"Feedback \(score 0\): incorrect\. The expected output: category: (War|Science|Economy)\.",
                     first)


def test_a_tuple_metric_gives_feedback_too():
    def tupled(example, pred, trace=None):
        ok = example.category == pred.category
        return float(ok), ("fine" if ok else "TUPLE-NOTE wrong")

    _, reflect, _ = run_gepa(tupled, max_metric_calls=45)
    assert "TUPLE-NOTE wrong" in reflect.prompts[0]


def test_a_metric_with_pred_name_gives_feedback_per_predictor():
    seen = []

    def per_step(gold, pred, trace=None, pred_name=None, pred_trace=None):
        ok = gold.category == pred.category
        if pred_name is None:
            return pl.Prediction(score=float(ok), feedback="program level")
        seen.append((pred_name, len(pred_trace), pred_trace[0][0] is not None))
        return pl.Prediction(score=float(ok), feedback=f"STEP {pred_name} " + ("ok" if ok else "wrong"))

    _, reflect, _ = run_gepa(per_step, max_metric_calls=45)
    assert "STEP self wrong" in reflect.prompts[0] and "program level" not in reflect.prompts[0]
    assert seen and all(s == ("self", 1, True) for s in seen)


def test_skip_perfect_score_reflects_only_on_imperfect_minibatches():
    def right(messages):
        return f"[[ ## category ## ]]\n{CATS[number(messages) % 4]}\n\n[[ ## completed ## ]]"

    out, reflect, _ = run_gepa(exact, task=pl.ScriptedLM(right))
    assert reflect.requests == [] and out.optimization.final_score == 100.0
    assert out.optimization.stopped == "completed"


# -- budgets ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("limit", [18, 23, 40, 57, 81])
def test_max_metric_calls_is_never_passed(limit):
    out, _, task = run_gepa(with_feedback, max_metric_calls=limit)
    r = out.optimization
    assert len(task.requests) == r.candidates["metric_calls"] <= limit
    assert r.candidates["max_metric_calls"] == limit
    if limit < 81:
        assert r.stopped == "budget"


def test_a_budget_too_small_for_the_seed_returns_the_program_unchanged():
    out, reflect, task = run_gepa(exact, max_metric_calls=10)  # 18 validation examples
    assert task.requests == [] and reflect.requests == []
    assert out.optimization.stopped == "budget" and out.signature.instructions == "Classify the event."


@pytest.mark.parametrize("limit", [25, 31, 44])
def test_max_lm_calls_is_exact(limit):
    out, reflect, task = run_gepa(exact, max_metric_calls=None, max_lm_calls=limit)
    assert len(task.requests) + len(reflect.requests) == limit == out.optimization.calls
    assert out.optimization.stopped == "budget"


def test_auto_and_max_full_evals_set_the_metric_budget():
    out, _, _ = run_gepa(exact, max_metric_calls=None, max_full_evals=2)
    assert out.optimization.candidates["max_metric_calls"] == 2 * (12 + 18)
    out, _, task = run_gepa(exact, max_metric_calls=None, auto="light")
    # 1 predictor, N=6: T = max(ceil(4 log2 6), 9) = 11 reflections, V=18, b=3
    assert out.optimization.candidates["max_metric_calls"] == 18 * (1 + 4) + 2 * 3 * 11
    assert len(task.requests) <= 18 * 5 + 66


@pytest.mark.parametrize(("kwargs", "words"), [
    ({}, "needs a budget"),
    ({"auto": "light", "max_metric_calls": 10}, "not auto and max_metric_calls"),
    ({"auto": "huge"}, "auto must be one of"),
    ({"max_metric_calls": 0}, "max_metric_calls must be a whole number >= 1"),
    ({"max_metric_calls": 5, "candidate_selection_strategy": "best"}, "'pareto' or 'current_best'"),
    ({"max_metric_calls": 5, "component_selector": "random"}, "'round_robin' or 'all'"),
    ({"max_metric_calls": 5, "use_wandb": True}, "Weights & Biases"),
    ({"max_metric_calls": 5, "instruction_proposer": lambda *a: {}}, "reflection_lm"),
    ({"max_metric_calls": 5, "gepa_kwargs": {"x": 1}}, "gepa package"),
    ({"max_metric_calls": 5, "failure_score": 1.0}, "below perfect_score"),
])
def test_options_that_cannot_work_are_refused_with_a_reason(kwargs, words):
    with pytest.raises(ConfigurationError, match=re.escape(words)):
        GEPA(exact, **kwargs)


def test_a_teacher_is_refused():
    data = make_data(6)
    opt = GEPA(exact, reflection_lm=ReflectLM(), task_model=task_lm(), max_metric_calls=20, progress=False)
    with pytest.raises(ConfigurationError, match="teacher"):
        opt.compile(pl.Predict(Classify), trainset=data, teacher=pl.Predict(Classify))


# -- resume ----------------------------------------------------------------------------------------------------


def test_a_finished_run_replays_from_its_run_directory_without_calls(tmp_path):
    first, _, _ = run_gepa(with_feedback, run_dir=str(tmp_path))
    again, reflect, task = run_gepa(with_feedback, run_dir=str(tmp_path))
    assert task.requests == [] and reflect.requests == []
    r1, r2 = first.optimization, again.optimization
    assert r2.resumed and r2.usage["replayed_calls"] == r1.calls
    assert [(t.kind, t.params, t.score) for t in r2.trials] == [(t.kind, t.params, t.score) for t in r1.trials]
    assert again.signature.instructions == first.signature.instructions


def test_a_budget_stop_resumes_with_a_larger_budget_to_the_uninterrupted_result(tmp_path):
    ref, ref_reflect, ref_task = run_gepa(with_feedback, reflect=ReflectLM(keyed=True))
    assert len(ref.optimization.candidates["pool"]) >= 3
    stopped, r1, t1 = run_gepa(with_feedback, run_dir=str(tmp_path), max_metric_calls=45,
                               reflect=ReflectLM(keyed=True))
    assert stopped.optimization.stopped == "budget"
    done, r2, t2 = run_gepa(with_feedback, run_dir=str(tmp_path), max_metric_calls=150,
                            reflect=ReflectLM(keyed=True))
    assert done.optimization.resumed and done.optimization.stopped == "completed"
    assert [(t.kind, t.params, t.score) for t in done.optimization.trials] == \
        [(t.kind, t.params, t.score) for t in ref.optimization.trials]
    assert done.signature.instructions == ref.signature.instructions
    # nothing done twice: the two processes together made the uninterrupted run's calls
    assert len(t1.requests) + len(t2.requests) == len(ref_task.requests)
    assert len(r1.requests) + len(r2.requests) == len(ref_reflect.requests)


def test_a_run_directory_made_with_other_settings_is_refused(tmp_path):
    run_gepa(exact, run_dir=str(tmp_path), max_metric_calls=30)
    with pytest.raises(ConfigurationError, match="holds another run"):
        run_gepa(exact, run_dir=str(tmp_path), max_metric_calls=30, reflection_minibatch_size=4)


CHILD = textwrap.dedent(
    """
    import json, re, sys, time
    import promptless as pl
    from promptless.optimize import GEPA

    run_dir, log_path, out_path, delay = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4])
    CATS = ["War", "Science", "Economy", "Politics"]

    class Classify(pl.Signature):
        \"\"\"Classify the event.\"\"\"
        event: str = pl.InputField()
        category: str = pl.OutputField()

    data = [pl.Example(event=f"event {i}", category=CATS[i % 4]).with_inputs("event") for i in range(40)]
    log = open(log_path, "a", buffering=1)

    def task(messages):
        ins = messages[0].content
        n = int(re.search(r"event (\\d+)", messages[-1].content).group(1))
        log.write(json.dumps(["task", ins.split("Task:")[-1].strip()[:40], n]) + "\\n")
        time.sleep(delay)
        ok = n % 4 == 0 or ("CLUE" in ins and n % 2 == 0) or ("HINT" in ins and n % 2 == 1)
        return f"[[ ## category ## ]]\\n{CATS[n % 4] if ok else 'Politics'}\\n\\n[[ ## completed ## ]]"

    texts = ["Use the CLUE in the event.", "Use the HINT in the event.", "Try harder.",
             "Use the CLUE and the HINT in the event."]

    def reflect(messages):
        key = messages[-1].content
        log.write(json.dumps(["reflect", len(key)]) + "\\n")
        return "[[ ## new_instruction ## ]]\\n" + texts[len(key) % 4] + "\\n\\n[[ ## completed ## ]]"

    def metric(ex, pred, trace=None):
        ok = ex.category == pred.category
        return pl.Prediction(score=float(ok), feedback="right" if ok else f"it is {ex.category}")

    opt = GEPA(metric, reflection_lm=pl.ScriptedLM(reflect), task_model=pl.ScriptedLM(task),
               max_metric_calls=160, run_dir=run_dir, progress=False, seed=1)
    program = opt.compile(pl.Predict(Classify), trainset=data[:16], valset=data[16:])
    r = program.optimization
    json.dump({"trials": [[t.number, t.kind, t.params, t.score, t.fingerprint] for t in r.trials],
               "instructions": program.signature.instructions, "final": r.final_score, "calls": r.calls,
               "resumed": r.resumed, "metric_calls": r.candidates["metric_calls"]}, open(out_path, "w"))
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
def test_a_run_killed_with_sigkill_resumes_to_the_same_result(tmp_path):
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    ref = _start(script, tmp_path / "ref", tmp_path / "ref.log", tmp_path / "ref.json", 0.0)
    _, err = ref.communicate(timeout=240)
    assert ref.returncode == 0, err
    expected = json.loads((tmp_path / "ref.json").read_text())
    assert len(expected["trials"]) >= 6 and expected["final"] > expected["trials"][0][3]

    run_dir = tmp_path / "run"
    first = _start(script, run_dir, tmp_path / "first.log", tmp_path / "first.json", 0.01)
    deadline = time.monotonic() + 200
    while count_trials(run_dir) < 4:
        assert first.poll() is None, "the run finished before it could be killed; slow it down"
        assert time.monotonic() < deadline
        time.sleep(0.02)
    os.kill(first.pid, signal.SIGKILL)
    first.communicate(timeout=60)
    assert first.returncode == -signal.SIGKILL and not (tmp_path / "first.json").exists()

    second = _start(script, run_dir, tmp_path / "second.log", tmp_path / "second.json", 0.0)
    _, err = second.communicate(timeout=240)
    assert second.returncode == 0, err
    resumed = json.loads((tmp_path / "second.json").read_text())
    assert resumed["resumed"] is True
    for key in ("trials", "instructions", "final", "metric_calls"):
        assert resumed[key] == expected[key], key
    first_work, second_work = _lines(tmp_path / "first.log"), _lines(tmp_path / "second.log")
    assert len(set(first_work) & set(second_work)) <= 1  # at most the call in flight at the kill is made again
    assert set(first_work) | set(second_work) == set(_lines(tmp_path / "ref.log"))
    assert resumed["calls"] <= expected["calls"] + 1


# -- the Pareto front and the pick -----------------------------------------------------------------------------


def _pool(*rows: list[float]) -> list[_Candidate]:
    return [_Candidate(i, {"self": f"i{i}"}, [] if i == 0 else [0], f"fp{i}", list(s), "seed" if i == 0 else
                       "reflection", i) for i, s in enumerate(rows)]


def test_the_front_keeps_a_candidate_best_on_a_single_example():
    opt = GEPA(exact, max_metric_calls=10)
    pool = _pool([1, 0, 0, 0, 0], [0, 1, 1, 1, 0], [0, 1, 1, 0, 0], [0, 0, 0, 0, 0])
    front = opt._front(pool)
    # 0 wins example 0 alone, 1 wins 1-3; 2 is covered by 1 everywhere, 3 (a tie on the last example only) by
    # the others; the last example, where all tie, counts for those left
    assert front == {0: 2, 1: 4}
    picks = {opt._select(_state(pool), i).index for i in range(1, 60)}
    assert picks == {0, 1}  # the weak candidate that wins one example is still drawn as a parent
    best = GEPA(exact, max_metric_calls=10, candidate_selection_strategy="current_best")
    assert {best._select(_state(pool), i).index for i in range(1, 20)} == {1}


def test_identical_candidates_on_the_front_keep_one():
    opt = GEPA(exact, max_metric_calls=10)
    assert opt._front(_pool([1, 0], [1, 0])) == {0: 2}


def _state(pool):
    from promptless.optimize.gepa import _State

    return _State(pool=pool)


def test_a_weak_candidate_best_on_one_example_is_reflected_on():
    """End to end: candidate 0 keeps one example only it answers, so the pareto draw sometimes picks it."""

    def fn(messages):
        ins, n = messages[0].content, number(messages)
        ok = (12 <= n <= 15) != ("CLUE" in ins) or n % 4 == 0
        return f"[[ ## category ## ]]\n{CATS[n % 4] if ok else 'Politics'}\n\n[[ ## completed ## ]]"

    texts = ("Use the CLUE in the event.", "Another CLUE idea.", "A third CLUE idea.", "A fourth CLUE idea.")
    out, _, _ = run_gepa(exact, task=pl.ScriptedLM(fn), reflect=ReflectLM(texts), max_metric_calls=200)
    cands = out.optimization.candidates
    assert cands["pool"][0]["on the front"] and cands["pool"][0]["best on"] >= 4
    assert cands["pareto_front"][0] == 0 and out.optimization.final_score > out.optimization.baseline_score
    parents = [it["parent"] for it in cands["iterations"] if "parent" in it]
    assert parents[0] == 0 and 0 in parents[1:]  # drawn again after a better candidate joined
    assert len(set(parents)) >= 2


# -- merge -----------------------------------------------------------------------------------------------------


class Two(pl.Module):
    def __init__(self):
        super().__init__()
        self.left = pl.Predict("event -> left_label")
        self.right = pl.Predict("event -> right_label")

    def forward(self, event):
        return pl.Prediction(left_label=self.left(event=event).left_label,
                             right_label=self.right(event=event).right_label)


def test_merge_combines_two_descendants_that_changed_different_predictors():
    data = [pl.Example(event=f"event {i}", left_label="L", right_label="R").with_inputs("event") for i in range(40)]

    def task(messages):
        system, n = messages[0].content, number(messages)
        if "left_label" in system:  # LEFT flips which events the left step gets right
            return f"[[ ## left_label ## ]]\n{'L' if ('LEFT' in system) != (n % 3 == 0) else 'x'}\n\n" \
                   "[[ ## completed ## ]]"
        return f"[[ ## right_label ## ]]\n{'R' if ('RIGHT' in system) != (n % 3 == 1) else 'x'}\n\n" \
               "[[ ## completed ## ]]"

    def reflect(messages):
        text = "Use the LEFT rule." if "step 'left'" in messages[-1].content else "Use the RIGHT rule."
        return f"[[ ## new_instruction ## ]]\n{text}\n\n[[ ## completed ## ]]"

    def metric(ex, pred, trace=None):
        return ((ex.left_label == pred.left_label) + (ex.right_label == pred.right_label)) / 2

    merged = []
    for seed in range(4):
        opt = GEPA(metric, reflection_lm=pl.ScriptedLM(reflect), task_model=pl.ScriptedLM(task),
                   max_metric_calls=400, progress=False, seed=seed, holdout=None)
        out = opt.compile(Two(), trainset=data[:15], valset=data[15:])
        pool = out.optimization.candidates["pool"]
        merged += [(seed, c, out) for c in pool if c["origin"] == "merge"]
    assert merged, "no merge in four seeds"
    seed, cand, out = merged[0]
    assert cand["instructions"] == {"left": "Use the LEFT rule.", "right": "Use the RIGHT rule."}
    assert len(cand["parents"]) == 2
    assert out.optimization.best_params["origin"] == "merge"
    assert out.left.signature.instructions == "Use the LEFT rule." and "RIGHT" in out.right.signature.instructions
    kinds = [t.params for t in out.optimization.trials if "merge" in t.params]
    assert kinds and kinds[0]["merge"] == cand["parents"]
    # without merges the same seed never combines them in one step
    opt = GEPA(metric, reflection_lm=pl.ScriptedLM(reflect), task_model=pl.ScriptedLM(task), max_metric_calls=400,
               progress=False, seed=seed, use_merge=False, holdout=None)
    out = opt.compile(Two(), trainset=data[:15], valset=data[15:])
    assert all(c["origin"] != "merge" for c in out.optimization.candidates["pool"])


# -- selection on held-out examples --------------------------------------------------------------------------


def _events(prompts: list[str]) -> set[int]:
    return {int(n) for text in prompts for n in re.findall(r"- event: event (\d+)", text)}


@pytest.mark.parametrize("with_valset", [True, False])
def test_the_pick_is_tested_on_held_out_examples_the_reflection_never_saw(with_valset):
    data = make_data(40)
    reflect, task = ReflectLM(), task_lm()
    opt = GEPA(with_feedback, reflection_lm=reflect, task_model=task, max_metric_calls=200, progress=False)
    if with_valset:
        out = opt.compile(pl.Predict(Classify), trainset=data[:12], valset=data[12:])
    else:
        out = opt.compile(pl.Predict(Classify), trainset=data)
    r = out.optimization
    sel = r.selection
    held = {int(row["inputs"]["event"].split()[-1]) for row in r.per_example if row.get("part") == "holdout"}
    assert held and sel["decision"] == "accepted" and out.signature.instructions != "Classify the event."
    assert not held & _events(reflect.prompts)  # no held-out example was shown to the reflection model
    searched = {int(ex.event.split()[-1]) for ex in opt._selection.search}
    assert not held & searched
    kinds = [t.kind for t in r.trials]
    assert kinds.count("holdout") == 2  # the program as given, then the pick
    assert len(task.requests) == r.candidates["metric_calls"] <= 200


def test_a_win_on_the_search_examples_only_is_not_kept():
    from promptless.optimize.selection import split_holdout

    data = make_data(40)
    train, val = data[:12], data[12:]
    split = split_holdout(val, "auto", seed=0, keys=["category"])
    held = sorted(int(ex.event.split()[-1]) for ex in split.holdout)
    lucky = held[1] if held[1] % 4 else held[2]  # one held-out example the CLUE gets right besides

    def fn(messages):
        ins, n = messages[0].content, number(messages)
        ok = n % 4 == 0 or ("CLUE" in ins and (n not in held or n == lucky))
        return f"[[ ## category ## ]]\n{CATS[n % 4] if ok else 'Politics'}\n\n[[ ## completed ## ]]"

    opt = GEPA(exact, reflection_lm=ReflectLM(), task_model=pl.ScriptedLM(fn), max_metric_calls=200, progress=False)
    out = opt.compile(pl.Predict(Classify), trainset=train, valset=val)
    sel = out.optimization.selection
    assert sel["decision"] == "rejected" and sel["evidence"]["wins"] == 1 and sel["evidence"]["losses"] == 0
    assert out.signature.instructions == "Classify the event."  # the starting program comes back
    assert out.optimization.candidates["pool"][-1]["score"] == 100.0  # though the search found a 100


@pytest.mark.parametrize("limit", [30, 41, 64])
def test_max_metric_calls_counts_the_held_out_runs(limit):
    data = make_data(40)
    task = task_lm()
    opt = GEPA(with_feedback, reflection_lm=ReflectLM(), task_model=task, max_metric_calls=limit, progress=False)
    out = opt.compile(pl.Predict(Classify), trainset=data[:12], valset=data[12:])
    assert len(task.requests) == out.optimization.candidates["metric_calls"] <= limit


# -- the record ------------------------------------------------------------------------------------------------


def test_the_report_shows_the_pool_and_the_program_saves_and_loads(tmp_path):
    out, _, _ = run_gepa(with_feedback, track_best_outputs=True)
    r = out.optimization
    page = write_report(r, tmp_path / "run.html").read_text()
    assert "Candidate pool" in page and "Use the CLUE and the HINT in the event." in page
    assert len(r.candidates["best_outputs"]) == 18
    assert r.per_example and r.per_example[1]["optimized"]["feedback"] == "right"
    path = out.save(tmp_path / "p.json")
    loaded = pl.Predict(Classify)
    loaded.load(path)
    assert loaded.signature.instructions == out.signature.instructions


def test_failures_score_failure_score_and_show_their_error_when_asked():
    def fn(messages):
        n = number(messages)
        if n % 4 == 1:
            raise ValueError("the server broke")
        return f"[[ ## category ## ]]\n{CATS[n % 4] if n % 4 == 0 else 'Politics'}\n\n[[ ## completed ## ]]"

    out, reflect, _ = run_gepa(exact, task=pl.ScriptedLM(fn), max_metric_calls=45,
                               add_format_failure_as_feedback=True, failure_score=-0.5)
    rows = [row["baseline"] for row in out.optimization.per_example]
    assert {row["score"] for row in rows if row["error"]} == {-0.5}
    assert "The program failed on this example" in "".join(reflect.prompts)


# -- the command line ------------------------------------------------------------------------------------------

CLI_PROGRAM = textwrap.dedent(
    '''
    import re
    import promptless as pl

    CATS = ["War", "Science", "Economy", "Politics"]

    class Classify(pl.Signature):
        """Classify the event."""
        event: str = pl.InputField()
        category: str = pl.OutputField()

    def reply(messages):
        if "new_instruction" in messages[0].content:
            return "[[ ## new_instruction ## ]]\\nUse the CLUE.\\n\\n[[ ## completed ## ]]"
        n = int(re.search(r"event (\\d+)", messages[-1].content).group(1))
        ok = "CLUE" in messages[0].content or n % 4 == 0
        return f"[[ ## category ## ]]\\n{CATS[n % 4] if ok else 'Politics'}\\n\\n[[ ## completed ## ]]"

    LM = pl.ScriptedLM(reply)

    def build():
        return pl.Predict(Classify, lm=LM)
    '''
)


def test_optimize_gepa_from_the_command_line(tmp_path, monkeypatch, capsys):
    from promptless.cli import main

    rows = [{"event": f"event {i}", "category": CATS[i % 4]} for i in range(30)]
    (tmp_path / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows[:10]))
    (tmp_path / "dev.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows[10:]))
    (tmp_path / "app.py").write_text(CLI_PROGRAM)
    monkeypatch.chdir(tmp_path)
    code = main(["optimize", "app.py:build", "train.jsonl", "--valset", "dev.jsonl", "--field", "category",
                 "--optimizer", "gepa", "--max-metric-calls", "60", "--out", "best.json", "--report", "run.html",
                 "--run-dir", "ckpt", "--no-progress"])
    out = capsys.readouterr()
    assert code == 0, out.err
    assert "-> optimized 100.0" in out.out and "accepted: the candidate beats the starting program" in out.out
    saved = json.loads((tmp_path / "best.json").read_text())
    assert saved["predictors"]["self"]["signature"]["instructions"] == "Use the CLUE."
    assert "Candidate pool" in (tmp_path / "run.html").read_text()
    assert "GEPA iteration 1:" in out.err
    code = main(["optimize", "app.py:build", "train.jsonl", "--optimizer", "bootstrap", "--max-metric-calls", "9"])
    assert code != 0 and "--max-metric-calls applies to --optimizer gepa only" in capsys.readouterr().err
