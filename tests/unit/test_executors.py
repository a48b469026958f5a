"""Executors: threads, asyncio, and the Ray path run in-process (``InProcessPool``), with scripted LMs.

The Ray path here is the real driver code (payloads, LM specs, budget reservations, cache replay, a worker
replaced when it dies) with workers that are objects in this process and everything sent deep-copied both
ways; tests/integration/test_ray_cluster.py runs the same through a real Ray cluster.
"""

from __future__ import annotations

import asyncio
import random
import re
import subprocess
import sys
import threading
import time

import pytest

import promptless as pl
from promptless.errors import BudgetExceededError, ConfigurationError, PromptlessError
from promptless.executors import AsyncExecutor, ThreadExecutor, resolve
from promptless.executors.ray_executor import InProcessPool, RayExecutor, WorkerDiedError, spec_key
from promptless.lm.cache import Cache
from promptless.optimize import BootstrapFewShotWithRandomSearch, MIPROv2
from promptless.optimize.budget import Budget, GuardedLM

CATS = ["War", "Science", "Economy", "Politics"]


def data(n: int, start: int = 0) -> list[pl.Example]:
    return [pl.Example(event=f"event number {i}", category=CATS[i % 4]).with_inputs("event")
            for i in range(start, start + n)]


def _event(messages) -> str:
    return re.search(r"\[\[ ## event ## \]\]\n(.*)", messages[-1].content).group(1).strip()


class Backend:
    """A scripted backend shared by every LM built from it (workers build their own LM object): counts calls
    per event, answers right for even-numbered events, and can sleep, fail or kill its worker on request."""

    def __init__(self, sleep: float = 0.0, die_on: set[str] | None = None, fail_on: set[str] = frozenset()):
        self.lock = threading.Lock()
        self.calls: dict[str, int] = {}
        self.sleep = sleep
        self.die_on = set(die_on or ())
        self.fail_on = fail_on

    def __call__(self, messages) -> str:
        event = _event(messages)
        with self.lock:
            self.calls[event] = self.calls.get(event, 0) + 1
            die = event in self.die_on
            self.die_on.discard(event)
        if self.sleep:
            time.sleep(random.uniform(0, self.sleep))
        if die:
            raise SystemExit("worker killed")  # the in-process pool's stand-in for a worker that dies
        if event in self.fail_on:
            raise pl.LMError(f"backend down for {event}", model="scripted")
        n = int(event.rsplit(" ", 1)[1])
        label = CATS[n % 4] if n % 2 == 0 else CATS[(n + 1) % 4]
        return f"[[ ## category ## ]]\n{label}\n\n[[ ## completed ## ]]"

    @property
    def total(self) -> int:
        return sum(self.calls.values())

    def __deepcopy__(self, memo):  # one backend, however many LMs are built from it
        return self


def metric(example, pred, trace=None):
    return example.category == pred.category


def ray_in_process(n: int = 3, **kwargs) -> RayExecutor:
    return RayExecutor(num_workers=n, _pool=InProcessPool(n), **kwargs)


# -- the executors' contract ---------------------------------------------------------------------------


@pytest.mark.parametrize("executor", [ThreadExecutor(6), AsyncExecutor(6), ray_in_process(3)])
def test_map_keeps_input_order_and_reports_progress(executor):
    seen: list[int] = []

    def fn(i: int) -> int:
        time.sleep(random.uniform(0, 0.01))
        return i * i

    async def afn(i: int) -> int:
        await asyncio.sleep(random.uniform(0, 0.01))
        return i * i

    report = executor.map(fn, range(30), afn=afn, progress=lambda done, total, o: seen.append(done))
    assert [o.value for o in report.outcomes] == [i * i for i in range(30)]
    assert [o.index for o in report.outcomes] == list(range(30))
    assert sorted(seen) == list(range(1, 31))


@pytest.mark.parametrize("executor", [ThreadExecutor(1), ThreadExecutor(4), AsyncExecutor(4)])
def test_map_stops_starting_items_after_max_errors(executor):
    def fn(i: int) -> int:
        if i % 2:
            raise ValueError(f"odd {i}")
        return i

    report = executor.map(fn, range(40), max_errors=2)
    assert report.stopped and report.n_errors >= 3
    assert any(not o.started for o in report.outcomes)
    assert all(isinstance(o.error, ValueError) for o in report.outcomes if o.started and not o.ok)


def test_async_executor_map_works_inside_a_running_loop():
    async def main():
        return AsyncExecutor(3).map(lambda i: i + 1, range(5))

    assert asyncio.run(main()).values() == [1, 2, 3, 4, 5]


def test_executor_options_are_checked():
    with pytest.raises(ConfigurationError, match="num_threads"):
        ThreadExecutor(0)
    with pytest.raises(ConfigurationError, match="concurrency"):
        AsyncExecutor(-1)
    with pytest.raises(ConfigurationError, match="num_workers"):
        RayExecutor(num_workers=0, _pool=InProcessPool(1))
    with pytest.raises(ConfigurationError, match="resources"):
        RayExecutor(resources={"GPU": -1}, _pool=InProcessPool(1))
    with pytest.raises(ConfigurationError, match="executor must be"):
        resolve("threads")


def test_the_setting_is_the_default_executor():
    ex = AsyncExecutor(2)
    assert isinstance(resolve(None, 4), ThreadExecutor) and resolve(None, 4).num_threads == 4
    with pl.context(executor=ex):
        assert resolve(None, 4) is ex
        assert resolve(ThreadExecutor(2)) is not ex


# -- Evaluate, batch and Parallel through every executor --------------------------------------------------


EXECUTORS = [lambda: ThreadExecutor(4), lambda: AsyncExecutor(4), lambda: ray_in_process(3)]


@pytest.mark.parametrize("make", EXECUTORS)
def test_evaluate_gives_the_same_rows_in_order_on_every_executor(make):
    dev = data(24)
    backend = Backend(sleep=0.005)
    program = pl.Predict("event -> category", lm=pl.ScriptedLM(backend))
    baseline = pl.Evaluate(devset=dev, metric=metric, display_progress=False)(program)
    ev = pl.Evaluate(devset=dev, metric=metric, display_progress=False, executor=make())
    result = ev(program)
    assert result.score == baseline.score == 50.0
    assert [r.prediction.category for r in result.rows] == [r.prediction.category for r in baseline.rows]
    assert [r.example for r in result.rows] == dev
    assert result.usage.calls == 24  # the usage of the workers' calls is the driver's
    again = asyncio.run(ev.acall(program))
    assert again.score == 50.0 and [r.index for r in again.rows] == list(range(24))


@pytest.mark.parametrize("make", EXECUTORS)
def test_batch_returns_predictions_in_order(make):
    examples = data(12)
    program = pl.Predict("event -> category", lm=pl.ScriptedLM(Backend(sleep=0.005)))
    preds = program.batch(examples, executor=make())
    assert [p.category for p in preds] == [program(event=ex.event).category for ex in examples]


def test_batch_failures_and_max_errors():
    examples = data(10)
    backend = Backend(fail_on={"event number 3", "event number 7"})
    program = pl.Predict("event -> category", lm=pl.ScriptedLM(backend))
    results, failed, errors = program.batch(examples, num_threads=3, return_failed_examples=True)
    assert [r is None for r in results] == [i in (3, 7) for i in range(10)]
    assert [f.event for f in failed] == ["event number 3", "event number 7"]
    assert all(isinstance(e, pl.LMError) for e in errors)
    with pytest.raises(PromptlessError, match="max_errors=0"):
        program.batch(examples, num_threads=1, max_errors=0)
    with pytest.raises(ConfigurationError, match=r"not a pl\.Example"):
        program.batch([{"event": "x"}])


def test_parallel_takes_an_executor():
    program = pl.Predict("event -> category", lm=pl.ScriptedLM(Backend()))
    pairs = [(program, {"event": f"event number {i}"}) for i in range(8)]
    threads = pl.Parallel(num_threads=2)(pairs)
    on_ray = pl.Parallel(executor=ray_in_process(2))(pairs)
    assert [p.category for p in on_ray] == [p.category for p in threads]
    assert [p.category for p in asyncio.run(pl.Parallel(executor=AsyncExecutor(3)).acall(pairs))] == \
        [p.category for p in threads]


# -- the Ray path: what travels, budgets, the cache, dying workers ----------------------------------------


def test_lm_spec_rebuilds_the_lm_and_hides_the_key():
    lm = pl.LM("openai/some-model", base_url="http://127.0.0.1:9/v1", api_key="sk-secret-123", temperature=0.3)
    spec = lm.spec()
    again = spec["class"](*spec["args"], **spec["kwargs"])
    assert again.cache_identity() == lm.cache_identity()
    assert "sk-secret" not in spec_key(spec) and "sk-secret" not in repr(vars(lm))
    assert spec_key(spec) == spec_key(again.spec())


def test_workers_build_each_lm_and_program_once():
    backend = Backend()
    pool = InProcessPool(2)
    ex = RayExecutor(num_workers=2, _pool=pool)
    program = pl.Predict("event -> category", lm=pl.ScriptedLM(backend))
    program.batch(data(10), executor=ex)
    cores = list(pool.cores.queue)
    assert sum(len(c.programs) for c in cores) <= 2 and all(len(c.lms) <= 1 for c in cores)


def test_trained_state_travels_as_json():
    backend = Backend()
    program = pl.Predict("event -> category", lm=pl.ScriptedLM(backend))
    program.demos = [pl.Example(event="event number 1", category="War")]
    program.signature = program.signature.with_instructions("Sort the event. MARKER-7")
    seen: list[str] = []

    def reply(messages):
        seen.append(messages[0].content + messages[1].content)
        return backend(messages)

    program.lm = pl.ScriptedLM(reply)
    program.batch(data(2), executor=ray_in_process(1))
    assert len(seen) == 2 and all("MARKER-7" in s and "event number 1" in s for s in seen)


def test_trace_comes_back_with_the_drivers_predictors():
    program = pl.ChainOfThought("event -> category", lm=pl.ScriptedLM(
        lambda m: "[[ ## reasoning ## ]]\nhm\n\n[[ ## category ## ]]\nWar\n\n[[ ## completed ## ]]"))
    trace: list = []
    remote = ray_in_process(1).bind(program)
    with pl.context(trace=trace):
        pred = remote(event="event number 0")
    assert pred.category == "War"
    assert [t[0] for t in trace] == program.predictors()
    assert trace[0][1] == {"event": "event number 0"} and trace[0][2].category == "War"


def test_worker_errors_reach_the_driver_with_their_type():
    program = pl.Predict("event -> category", lm=pl.ScriptedLM(Backend(fail_on={"event number 1"})))
    with pytest.raises(pl.LMError, match="backend down"):
        ray_in_process(1).bind(program)(event="event number 1")


def test_new_cache_entries_come_back_and_the_driver_cache_answers_next_time():
    backend = Backend()
    driver_cache = Cache(None)
    program = pl.Predict("event -> category", lm=pl.ScriptedLM(backend, cache=driver_cache))
    ex = ray_in_process(2)
    first = pl.Evaluate(devset=data(8), metric=metric, display_progress=False, executor=ex)(program)
    assert backend.total == 8 and len(driver_cache) == 8
    second = pl.Evaluate(devset=data(8), metric=metric, display_progress=False, executor=ex)(program)
    assert backend.total == 8  # answered from the driver's cache, no call anywhere
    assert second.score == first.score and second.usage.cache_hits == 8 and second.usage.calls == 0


def test_workers_answer_from_the_entries_the_driver_ships():
    """A two-step program whose first step the driver's cache holds: the worker gets that reply with the task and
    only the second step is called."""

    class TwoSteps(pl.Module):
        def __init__(self, lm):
            self.first = pl.Predict("event -> category", lm=lm)
            self.second = pl.Predict("event, category -> verdict", lm=lm)

        def forward(self, event):
            c = self.first(event=event).category
            return self.second(event=event, category=c)

    calls: list[str] = []

    def reply(messages):
        calls.append(messages[0].content)
        if "verdict" in messages[0].content.split("Your output fields are:")[-1]:
            return "[[ ## verdict ## ]]\nok\n\n[[ ## completed ## ]]"
        return "[[ ## category ## ]]\nWar\n\n[[ ## completed ## ]]"

    cache = Cache(None)
    lm = pl.ScriptedLM(reply, cache=cache)
    program = TwoSteps(lm)
    program.first(event="event number 0")  # the driver holds the first step's reply
    calls.clear()
    program.__class__.__module__ = __name__
    out = ray_in_process(1).bind(program)(event="event number 0")
    assert out.verdict == "ok"
    assert len(calls) == 1 and "verdict" in calls[0]


def _two_step_program(backend):
    class Twice(pl.Module):
        def __init__(self):
            self.a = pl.Predict("event -> category", lm=pl.ScriptedLM(backend))
            self.b = pl.Predict("event -> category", lm=pl.ScriptedLM(backend))

        def forward(self, event):
            self.a(event=event)
            return self.b(event=event)

    return Twice()


def test_a_program_needing_more_calls_than_reserved_is_sent_again_without_paying_twice():
    backend = Backend()
    program = _two_step_program(backend)
    budget = Budget(max_lm_calls=100)
    for p in program.predictors():
        p.lm = GuardedLM(p.lm, budget, "task")
    ex = ray_in_process(2, calls_per_task=1)
    preds = program.batch(data(6), executor=ex)
    assert len(preds) == 6 and all(p is not None for p in preds)
    # each example makes two calls, in two dispatches of one reserved call each; nothing is called twice
    assert backend.total == 12 and all(n == 2 for n in backend.calls.values())
    assert budget.calls == 12 and budget._reserved == 0


def test_a_budget_is_never_exceeded_by_the_workers():
    backend = Backend(sleep=0.002)
    program = pl.Predict("event -> category", lm=pl.ScriptedLM(backend))
    budget = Budget(max_lm_calls=7)
    program.lm = GuardedLM(program.lm, budget, "task")
    results, _failed, errors = program.batch(data(20), executor=ray_in_process(4), return_failed_examples=True)
    assert backend.total == 7 == budget.calls
    assert sum(r is not None for r in results) == 7
    assert all(isinstance(e, BudgetExceededError) for e in errors)


def test_a_dead_worker_is_replaced_and_its_example_runs_again_with_its_call_still_charged():
    backend = Backend(die_on={"event number 5"})
    program = pl.Predict("event -> category", lm=pl.ScriptedLM(backend))
    budget = Budget(max_lm_calls=1000)
    program.lm = GuardedLM(program.lm, budget, "task")
    pool = InProcessPool(3)
    ex = RayExecutor(num_workers=3, _pool=pool)
    preds = program.batch(data(12), executor=ex)
    assert all(p is not None for p in preds)  # nothing lost
    assert [p.category for p in preds] == [pl.Predict("event -> category", lm=pl.ScriptedLM(Backend()))(
        event=f"event number {i}").category for i in range(12)]
    assert backend.calls["event number 5"] == 2  # the example the worker died on ran again
    assert all(n == 1 for e, n in backend.calls.items() if e != "event number 5")  # no other example ran twice
    assert budget.calls == 13  # the dead worker's reserved call stays charged
    assert pool.started == 4


def test_an_example_that_keeps_killing_workers_fails_alone():
    class Always(Backend):
        def __call__(self, messages):
            if _event(messages) == "event number 2":
                raise SystemExit("again")
            return super().__call__(messages)

    program = pl.Predict("event -> category", lm=pl.ScriptedLM(Always()))
    results, _failed, errors = program.batch(data(4), executor=ray_in_process(2, max_worker_deaths=2),
                                            return_failed_examples=True)
    assert [r is None for r in results] == [False, False, True, False]
    assert isinstance(errors[0], WorkerDiedError)


@pytest.mark.parametrize("optimizer", ["random_search", "mipro"])
def test_optimizers_score_through_the_executor_with_the_same_result_and_budget(optimizer):
    train, dev = data(8), data(10, start=100)

    def build(executor, limit):
        if optimizer == "random_search":
            return BootstrapFewShotWithRandomSearch(metric, num_candidate_programs=2, max_bootstrapped_demos=2,
                                                    max_labeled_demos=2, max_lm_calls=limit, executor=executor)
        return MIPROv2(metric, prompt_model=pl.ScriptedLM(["Classify it.", "Name the category.", "Pick one."]),
                       auto=None, num_candidates=3, num_trials=4, minibatch_size=5, max_bootstrapped_demos=1,
                       max_labeled_demos=1, max_lm_calls=limit, executor=executor)

    results = []
    for executor in (None, ray_in_process(3)):
        backend = Backend()
        out = build(executor, 60).compile(pl.Predict("event -> category", lm=pl.ScriptedLM(backend)),
                                          trainset=train, valset=dev)
        task_calls = backend.total
        assert out.optimization.calls <= 60
        results.append((out.dump_state(), [t.score for t in out.optimization.trials], task_calls))
    assert results[0][0] == results[1][0]
    assert results[0][1] == results[1][1]
    assert results[0][2] == results[1][2]


# -- the optional extra ----------------------------------------------------------------------------------


def test_without_ray_the_error_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)
    with pytest.raises(ConfigurationError, match=r"pip install 'promptless\[ray\]'"):
        pl.RayExecutor()


def test_import_promptless_loads_no_ray():
    code = ("import sys, promptless as pl; pl.RayExecutor; pl.ThreadExecutor; "
            "import promptless.executors.ray_executor; print('ray' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
