"""The optimizers' shared core: budget, guarded LMs, memoised scoring, run store, progress, result."""

from __future__ import annotations

import logging
import re
import subprocess
import sys
import threading
from collections import Counter
from typing import Literal

import pytest

import promptless as pl
from promptless.errors import BudgetExceededError, ConfigurationError
from promptless.lm.cache import Cache
from promptless.optimize import BootstrapFewShotWithRandomSearch, LabeledFewShot, MIPROv2
from promptless.optimize.budget import Budget, GuardedLM
from promptless.optimize.checkpoint import RunStore, count_calls, count_trials
from promptless.optimize.fingerprint import example_key, program_fingerprint
from promptless.optimize.progress import Progress

CATS = ["Wars and Conflicts", "Science and Innovation", "Economic Events", "Politics and Governance"]


class Classify(pl.Signature):
    """Classify the event."""

    event: str = pl.InputField()
    category: str = pl.OutputField()


def make_data(n: int, start: int = 0) -> list[pl.Example]:
    return [pl.Example(event=f"event number {i}", category=CATS[i % 4]).with_inputs("event")
            for i in range(start, start + n)]


def gold_of(examples: list[pl.Example]) -> dict[str, str]:
    return {ex.event: ex.category for ex in examples}


def event_of(messages) -> str:
    return re.search(r"\[\[ ## event ## \]\]\n(.*)", messages[-1].content).group(1).strip()


def reply(label: str) -> str:
    return f"[[ ## category ## ]]\n{label}\n\n[[ ## completed ## ]]"


def wrong(label: str) -> str:
    return CATS[(CATS.index(label) + 1) % 4]


def keyword_lm(gold: dict[str, str], keyword: str = "CLUE") -> pl.ScriptedLM:
    """Right only when the instruction holds the keyword."""

    def fn(messages):
        instructions = messages[0].content.split("Task:")[-1]
        label = gold[event_of(messages)]
        return reply(label if keyword in instructions else wrong(label))

    return pl.ScriptedLM(fn)


class Pick(pl.Signature):
    """Classify the event."""

    event: str = pl.InputField()
    category: Literal["Wars and Conflicts", "Science and Innovation", "Economic Events", "Politics and Governance"] = \
        pl.OutputField()


def metric(example, pred, trace=None):
    return example.category == pred.category


PROPOSALS = [
    "Sure! Here's a new instruction:\n\"Read the event and classify it.\"",
    "Decide the category from the event text.",
    "Look for the CLUE words in the event, then pick the category.",
    "Pick a category for the event, carefully.",
    "Name the category that fits the event best.",
]


# -- budget ----------------------------------------------------------------------------------------


def test_guarded_lm_stops_exactly_at_the_limit():
    lm = pl.ScriptedLM(["a"])
    budget = Budget(max_lm_calls=3)
    g = GuardedLM(lm, budget, "task")
    for _ in range(3):
        assert g("hi") == ["a"]
    with pytest.raises(BudgetExceededError, match="max_lm_calls=3"):
        g("hi")
    assert len(lm.requests) == 3
    assert budget.calls == 3 and budget.by_role == {"task": 3}


def test_guarded_lm_is_exact_under_threads():
    lm = pl.ScriptedLM(["a"])
    budget = Budget(max_lm_calls=25)
    g = GuardedLM(lm, budget, "task")
    refused = []

    def worker():
        for _ in range(10):
            try:
                g("x")
            except BudgetExceededError:
                refused.append(1)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(lm.requests) == 25
    assert len(refused) == 80 - 25


def test_cache_hits_cost_nothing_and_give_the_reservation_back():
    lm = pl.ScriptedLM(["a"], cache=Cache())
    budget = Budget(max_lm_calls=1)
    g = GuardedLM(lm, budget, "task")
    g("same")
    assert budget.calls == 1
    with pytest.raises(BudgetExceededError):
        g("same")  # refused before the lookup: the budget cannot know it would have been a hit
    budget2 = Budget(max_lm_calls=2)
    g2 = GuardedLM(lm, budget2, "task")
    g2("same")  # a hit
    g2("same")
    assert budget2.calls == 0 and len(lm.requests) == 1


def test_a_call_is_one_call_however_many_http_attempts_it_took():
    class Retried(pl.ScriptedLM):
        def complete(self, request):
            resp = super().complete(request)
            resp.usage.calls = 3  # the usage reports the attempts; the budget counts the request once
            return resp

    budget = Budget(max_lm_calls=2)
    g = GuardedLM(Retried(["a"]), budget, "task")
    g("one")
    g("two")
    assert budget.calls == 2
    with pytest.raises(BudgetExceededError):
        g("three")


def test_each_call_is_written_down_before_it_is_made(tmp_path):
    """The reservation is a row in the run store before the LM is called, so a kill during the call leaves it
    on record; a resumed run counts it (and still holds the bound against everything spent before)."""
    store = RunStore(tmp_path)
    store.check_identity({"optimizer": "X"})
    seen_on_disk = []

    def fn(messages):
        seen_on_disk.append(count_calls(tmp_path))  # read by another connection while the call is in flight
        return "a"

    budget = Budget(max_lm_calls=5, journal=store)
    g = GuardedLM(pl.ScriptedLM(fn), budget, "task")
    with Budget.metering() as meter:
        g("one")
        g("two")
    assert seen_on_disk == [1, 2]
    store.put("proposal", "p", {"text": "t"}, calls=meter.calls, claim=meter.tickets)
    in_flight = budget.reserve("task")  # reserved, then the process dies before the call returns
    assert in_flight is not None
    store.close()

    again = RunStore(tmp_path)
    assert again.check_identity({"optimizer": "X"}) is True
    assert (again.previous_calls, again.unclaimed_calls, again.in_flight) == (3, 1, 1)
    resumed = Budget(max_lm_calls=5, journal=again, before_calls=again.previous_calls)
    resumed.charge(again.unclaimed_calls)  # what Run does on resume
    assert resumed.calls == 1 and resumed.spent_calls == 3
    g2 = GuardedLM(pl.ScriptedLM(["a"]), resumed, "task")
    g2("x")
    g2("y")
    with pytest.raises(BudgetExceededError, match="max_lm_calls=5 reached"):
        g2("z")  # 3 before + 2 now: the replayed record was never charged, the bound holds all the same
    again.close()


def test_a_resumed_run_sees_only_the_scores_its_replay_has_reached(tmp_path):
    store = RunStore(tmp_path)
    store.check_identity({"optimizer": "X"})
    store.put("score", "fp/a", {"score": 1.0}, calls=1)
    store.put("score", "fp/b", {"score": 0.0}, calls=1)
    store.close()
    again = RunStore(tmp_path)
    again.check_identity({"optimizer": "X"})
    assert again.get("score", "fp/b") is not None  # the memo still answers it
    assert again.get_seen("score", "fp/a") is None and again.get_seen("score", "fp/b") is None
    again.take_previous_cost("score", "fp/a")  # the replay reaches it
    assert again.get_seen("score", "fp/a").value == {"score": 1.0}
    assert again.get_seen("score", "fp/b") is None  # stored later by the earlier process: not seen yet
    again.put("score", "fp/c", {"score": 1.0})
    assert again.get_seen("score", "fp/c") is not None
    again.close()


def test_a_run_directory_of_another_store_schema_is_not_resumed(tmp_path):
    import sqlite3

    store = RunStore(tmp_path)
    store.check_identity({"optimizer": "X"})
    store.close()
    db = sqlite3.connect(tmp_path / "run.sqlite")
    db.execute("UPDATE meta SET value = '1' WHERE key = 'schema'")
    db.commit()
    db.close()
    again = RunStore(tmp_path)
    with pytest.raises(ConfigurationError, match=r"another version of promptless.*pass a new run_dir"):
        again.check_identity({"optimizer": "X"})
    again.close()


def test_cost_budget_stops_once_reached():
    class Priced(pl.ScriptedLM):
        def complete(self, request):
            resp = super().complete(request)
            resp.usage.cost = 0.4
            return resp

    lm = Priced(["a"])
    g = GuardedLM(lm, Budget(max_cost=1.0), "task")
    g("1")
    g("2")
    g("3")  # 1.2 spent: the limit is checked before each call
    with pytest.raises(BudgetExceededError, match="max_cost"):
        g("4")
    assert len(lm.requests) == 3


def test_budget_validates_its_options():
    with pytest.raises(ConfigurationError):
        Budget(max_lm_calls=-1)
    with pytest.raises(ConfigurationError):
        MIPROv2(metric, max_lm_calls="ten")  # type: ignore[arg-type]


@pytest.mark.parametrize("limit", [1, 9, 30, 47, 88])
def test_mipro_never_exceeds_max_lm_calls(limit):
    train, dev = make_data(20), make_data(30, start=100)
    gold = gold_of(train + dev)
    task, prompt = keyword_lm(gold), pl.ScriptedLM(PROPOSALS)
    opt = MIPROv2(metric, prompt_model=prompt, task_model=task, auto=None, num_candidates=5, num_trials=8,
                  minibatch_size=10, max_bootstrapped_demos=2, max_labeled_demos=2, max_lm_calls=limit)
    program = opt.compile(pl.Predict(Classify), trainset=train, valset=dev)
    total = len(task.requests) + len(prompt.requests)
    # never more than allowed; the search stops early by at most the 15 calls it keeps back for the held-out
    # check of its pick (15 of the 30 validation examples are held out)
    assert limit - 15 <= total <= limit
    assert program.optimization.calls == total
    assert program.optimization.stopped == "budget"
    assert isinstance(program, pl.Predict)


def test_random_search_never_exceeds_max_lm_calls():
    train, dev = make_data(12), make_data(16, start=100)
    task = keyword_lm(gold_of(train + dev))
    unlimited = BootstrapFewShotWithRandomSearch(metric, num_candidate_programs=4, max_bootstrapped_demos=2,
                                                 max_labeled_demos=2)
    unlimited.compile(pl.Predict(Classify, lm=task), trainset=train, valset=dev)
    full_cost = len(task.requests)
    for limit in (5, full_cost // 2, full_cost - 1):
        task.requests.clear()
        opt = BootstrapFewShotWithRandomSearch(metric, num_candidate_programs=4, max_bootstrapped_demos=2,
                                               max_labeled_demos=2, max_lm_calls=limit)
        out = opt.compile(pl.Predict(Classify, lm=task), trainset=train, valset=dev)
        # never more than allowed; at most the 8 calls kept back for the held-out check go unspent
        assert limit - 8 <= len(task.requests) <= limit
        assert out.optimization.calls == len(task.requests)
        assert out.optimization.stopped == "budget"


def test_a_budget_too_small_for_the_baseline_returns_the_program_unchanged():
    train, dev = make_data(8), make_data(10, start=100)
    task = keyword_lm(gold_of(train + dev))
    student = pl.Predict(Classify, lm=task)
    out = MIPROv2(metric, prompt_model=pl.ScriptedLM(PROPOSALS), max_lm_calls=4, max_bootstrapped_demos=0,
                  max_labeled_demos=0).compile(student, trainset=train, valset=dev)
    assert len(task.requests) == 4
    assert out.signature.instructions == student.signature.instructions
    assert out.optimization.baseline_score is None and out.optimization.stopped == "budget"


# -- memo ----------------------------------------------------------------------------------------------


def test_no_identical_prompt_is_sent_twice_in_a_mipro_run():
    train, dev = make_data(20), make_data(40, start=100)
    task, prompt = keyword_lm(gold_of(train + dev)), pl.ScriptedLM(PROPOSALS)
    opt = MIPROv2(metric, prompt_model=prompt, task_model=task, auto=None, num_candidates=5, num_trials=20,
                  minibatch_size=10, minibatch_full_eval_steps=3, max_bootstrapped_demos=0, max_labeled_demos=0)
    program = opt.compile(pl.Predict(Classify), trainset=train, valset=dev)
    counts = Counter(tuple(m.content for m in r.messages) for r in task.requests)
    assert max(counts.values()) == 1
    kinds = Counter(t.kind for t in program.optimization.trials)
    assert kinds["repeat"] > 0 and kinds["full"] >= 2  # repeats happened, and full evaluations reused the memo
    assert all(t.calls == 0 for t in program.optimization.trials if t.kind == "repeat")


def test_fingerprints_follow_the_learnable_state():
    a = pl.Predict(Classify)
    b = pl.Predict(Classify)
    assert program_fingerprint(a) == program_fingerprint(b)
    b.demos = make_data(1)
    assert program_fingerprint(a) != program_fingerprint(b)
    c = pl.Predict(Classify.with_instructions("Other."))
    assert program_fingerprint(a) != program_fingerprint(c)
    ex = make_data(1)[0]
    assert example_key(ex) == example_key(ex.copy())
    assert example_key(ex) != example_key(ex.copy(category="x"))


# -- run store ---------------------------------------------------------------------------------------------


def test_run_store_persists_and_refuses_another_run(tmp_path):
    store = RunStore(tmp_path)
    assert store.check_identity({"optimizer": "X", "seed": 1}) is False
    store.put("score", "fp/ex", {"score": 1.0}, calls=2)
    store.put("trial", "00000", {"number": 0})
    store.close()
    again = RunStore(tmp_path)
    assert again.check_identity({"optimizer": "X", "seed": 1}) is True
    assert again.get("score", "fp/ex").value == {"score": 1.0}
    assert again.take_previous_cost("score", "fp/ex") == (2, 0.0)
    assert again.take_previous_cost("score", "fp/ex") == (0, 0.0)  # charged once
    assert count_trials(tmp_path) == 1
    with pytest.raises(ConfigurationError, match="differs in: seed"):
        again.check_identity({"optimizer": "X", "seed": 2})
    again.close()


def test_resuming_with_other_settings_is_refused(tmp_path):
    train, dev = make_data(6), make_data(6, start=100)
    task = keyword_lm(gold_of(train + dev))
    LabeledFewShot(k=2, metric=metric, run_dir=str(tmp_path)).compile(pl.Predict(Classify, lm=task), trainset=train,
                                                                      valset=dev)
    with pytest.raises(ConfigurationError, match="holds another run"):
        LabeledFewShot(k=3, metric=metric, run_dir=str(tmp_path)).compile(pl.Predict(Classify, lm=task),
                                                                          trainset=train, valset=dev)


# -- checks, progress, result ------------------------------------------------------------------------------


def test_examples_without_inputs_are_refused():
    with pytest.raises(ConfigurationError, match="with_inputs"):
        LabeledFewShot(k=1).compile(pl.Predict(Classify), trainset=[pl.Example(event="x", category="y")])


def test_a_program_that_fails_everywhere_is_reported_not_optimized():
    lm = pl.ScriptedLM(["no markers and not a category at all [[ ## other ## ]] x"])
    train, dev = make_data(4), make_data(4, start=100)
    with pytest.raises(ConfigurationError, match="failed on every one"):
        MIPROv2(metric, prompt_model=pl.ScriptedLM(PROPOSALS), max_bootstrapped_demos=0,
                max_labeled_demos=0).compile(pl.Predict(Classify, lm=lm), trainset=train, valset=dev)


def test_a_metric_returning_nonsense_is_a_clear_error():
    train, dev = make_data(4), make_data(4, start=100)
    task = keyword_lm(gold_of(train + dev))
    with pytest.raises(ConfigurationError, match="must return a bool or a number"):
        LabeledFewShot(k=1, metric=lambda e, p: "yes").compile(pl.Predict(Classify, lm=task), trainset=train,
                                                              valset=dev)


def test_one_log_line_per_trial(caplog):
    train, dev = make_data(10), make_data(30, start=100)
    task, prompt = keyword_lm(gold_of(train + dev)), pl.ScriptedLM(PROPOSALS)
    with caplog.at_level(logging.INFO, logger="promptless.optimize"):
        program = MIPROv2(metric, prompt_model=prompt, task_model=task, max_bootstrapped_demos=0,
                          max_labeled_demos=0, progress=False).compile(pl.Predict(Classify), trainset=train,
                                                                       valset=dev)
    lines = [r for r in caplog.records if r.name == "promptless.optimize" and " trial " in r.getMessage()]
    assert len(lines) == len(program.optimization.trials) > 2


def test_progress_line_text():
    p = Progress("MIPROv2", enabled=False, max_calls=100, total=10)
    p.update(trial=3, best=61.25, calls=42, stage="search")
    assert p.text() == "MIPROv2  search  trial 3/10  best 61.2  LM calls 42/100"


def test_result_is_attached_to_program_and_optimizer():
    train, dev = make_data(6), make_data(6, start=100)
    task = keyword_lm(gold_of(train + dev))
    opt = LabeledFewShot(k=2, metric=metric)
    out = opt.compile(pl.Predict(Classify, lm=task), trainset=train, valset=dev)
    r = out.optimization
    assert r is opt.result
    assert [t.kind for t in r.trials] == ["baseline", "candidate"]
    assert r.baseline_score == 0.0 and r.final_score == 0.0
    assert len(r.per_example) == 6 and r.per_example[0]["baseline"]["score"] == 0.0
    assert r.best_demos["self"][0]["event"] in {ex.event for ex in train}
    assert "LabeledFewShot" in r.summary()
    assert r.to_dict()["trials"][0]["kind"] == "baseline"


def test_importing_promptless_stays_light():
    code = "import sys, promptless; print('optuna' in sys.modules, 'rich' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False"]


def test_a_run_made_under_another_prompt_format_is_not_resumed(tmp_path):
    train, dev = make_data(6), make_data(6, start=100)
    task = keyword_lm(gold_of(train + dev))

    def compile_once():
        LabeledFewShot(k=2, metric=metric, run_dir=str(tmp_path)).compile(pl.Predict(Classify, lm=task),
                                                                          trainset=train, valset=dev)

    compile_once()
    compile_once()  # same format: resumes
    with pl.context(adapter=pl.ChatAdapter(use_grammar=True)), \
            pytest.raises(ConfigurationError, match="differs in: prompt"):
        compile_once()
    with pl.context(adapter=pl.JSONAdapter()), pytest.raises(ConfigurationError, match="differs in: prompt"):
        compile_once()


def test_an_unset_adapter_option_leaves_the_prompt_fingerprint_as_it_was():
    """A run directory made before an adapter gained an option (unset by default) is still resumed; setting the
    option changes the fingerprint."""
    from promptless.optimize.fingerprint import prompt_fingerprint

    ex = make_data(1)[0]
    program = pl.Predict(Classify)

    def fingerprint(adapter):
        with pl.context(adapter=adapter):
            return prompt_fingerprint(program, ex)

    before = fingerprint(pl.ChatAdapter())
    adapter = pl.ChatAdapter()
    adapter.an_option_added_later = None
    assert fingerprint(adapter) == before
    adapter.an_option_added_later = True
    assert fingerprint(adapter) != before
    assert fingerprint(pl.ChatAdapter(use_native_function_calling=True)) != before


def test_a_run_stored_under_the_older_prompt_fingerprint_is_resumed(tmp_path):
    """Earlier versions hashed unset adapter settings too; their run directories hold the same prompt."""
    import json
    import sqlite3

    from promptless.optimize.fingerprint import older_prompt_fingerprints, prompt_fingerprint

    train, dev = make_data(6), make_data(6, start=100)
    task = keyword_lm(gold_of(train + dev))

    def compile_once():
        opt = LabeledFewShot(k=2, metric=metric, run_dir=str(tmp_path))
        opt.compile(pl.Predict(Classify, lm=task), trainset=train, valset=dev)
        return opt.result

    compile_once()
    older = older_prompt_fingerprints(pl.Predict(Classify), train[0])
    assert older and prompt_fingerprint(pl.Predict(Classify), train[0]) not in older

    def store_prompt(value):
        db = sqlite3.connect(tmp_path / "run.sqlite")
        identity = json.loads(db.execute("SELECT value FROM meta WHERE key = 'identity'").fetchone()[0])
        identity["prompt"] = value
        db.execute("UPDATE meta SET value = ? WHERE key = 'identity'", (json.dumps(identity, sort_keys=True),))
        db.commit()
        db.close()

    store_prompt(next(iter(older)))
    assert compile_once().resumed
    store_prompt("0" * 20)
    with pytest.raises(ConfigurationError, match="differs in: prompt"):
        compile_once()


def test_calls_cut_off_mid_example_are_counted_when_the_run_resumes(tmp_path):
    """An unparsable free reply is asked again under the grammar; when the budget refuses that second request,
    the first call has no stored result. A resume with the same budget must count it and pay nothing more."""
    train, dev = make_data(6), make_data(12, start=100)
    gold = gold_of(train + dev)

    def fn(messages):
        if event_of(messages).endswith("7"):
            return "It is about wars, I think."  # not one of the labels: the adapter asks again
        return reply(gold[event_of(messages)])

    def compile_once(task):
        opt = MIPROv2(metric, prompt_model=pl.ScriptedLM(PROPOSALS), task_model=task, auto=None, num_candidates=2,
                      num_trials=2, minibatch_size=4, max_bootstrapped_demos=0, max_labeled_demos=0,
                      max_lm_calls=8, run_dir=str(tmp_path), progress=False)
        return opt.compile(pl.Predict(Pick), trainset=train, valset=dev)

    first_lm = pl.ScriptedLM(fn)
    first = compile_once(first_lm)
    assert first.optimization.stopped == "budget" and len(first_lm.requests) == 8
    again_lm = pl.ScriptedLM(fn)
    again = compile_once(again_lm)
    assert len(again_lm.requests) == 0
    assert again.optimization.calls == 8 and again.optimization.stopped == "budget"
    assert again.signature.instructions == first.signature.instructions


def _optimize_imports() -> dict[str, set[str]]:
    """Every import between the optimizer modules, lazy and TYPE_CHECKING ones included."""
    import ast
    from pathlib import Path

    import promptless.optimize

    root = Path(promptless.optimize.__file__).parent
    graph: dict[str, set[str]] = {}
    for path in sorted(root.glob("*.py")):
        name = path.stem
        graph[name] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.level == 1:
                targets = [node.module] if node.module else [a.name for a in node.names]
                graph[name].update(t.split(".")[0] for t in targets)
            elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("promptless.optimize."):
                graph[name].add(node.module.split(".")[2])
    return graph


def test_the_optimizer_modules_import_each_other_without_a_circle():
    graph = _optimize_imports()
    assert "report" not in graph["result"]  # the report reads the result; the result knows nothing of it

    def visit(node: str, path: list[str]) -> None:
        assert node not in path, "import circle: " + " -> ".join([*path, node])
        for nxt in graph.get(node, ()):
            if nxt != "__init__":
                visit(nxt, [*path, node])

    for name in graph:
        visit(name, [])
