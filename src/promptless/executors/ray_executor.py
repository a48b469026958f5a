"""``RayExecutor``: the examples of a run worked on by Ray actors, on one machine or a cluster.

    ex = pl.RayExecutor(address="auto", num_workers=8, resources={"CPU": 2})
    result = pl.Evaluate(devset=dev, metric=m, executor=ex)(program)

Needs the ``ray`` extra (``pip install 'promptless[ray]'``); Ray is imported when the executor starts (its first
``map`` or ``bind``), never by ``import promptless``.

**What travels.** Never a live client or a loaded model. A program travels as its structure (pickled the way
Ray ships code: classes by reference when the workers can import them, by value otherwise, or through the
``runtime_env`` you pass) with every LM replaced by a reference, plus its learned state as the JSON ``save``
writes (each predictor's ``dump_state``, applied on the worker as ``load`` applies it). An LM travels as its spec (``BaseLM.spec``: class
and constructor arguments); each worker builds its own LM from it once and keeps it, so an embedded model is
loaded once per worker (an actor), not per example. The program payload is put in Ray's object store once per
bound program; a worker builds it once and keeps it.

**What stays in the driver.** ``Executor.map`` runs the caller's function in driver threads (one per worker);
only the program call inside it goes to a worker. So progress, usage totals, the metric, the run store and the
optimizer's memo are the driver's, as with threads.

**Budgets.** Before a call is sent, the driver reserves LM calls from the budget of the LMs it will use (the
optimizer's ``GuardedLM``): ``calls_per_task`` of them (default: the program's number of predictors), or what is
left. The worker may make that many fresh calls (cache hits are free); a program that needs more stops with the
calls it made, their replies come back to the driver, and the driver reserves again and sends the example again
with those replies, which the worker replays instead of calling the LM, so they are not paid twice (with the
LM's cache on or off). Unused reservations are given back. A budget is
never exceeded, however many workers there are.

**A worker that dies** (killed, out of memory, its node gone) is replaced by a new actor, and the example it
was working on runs again there; the calls reserved for it stay charged (they may have been made), so the
budget still holds. Examples that finished are never run again. After ``max_worker_deaths`` deaths on one
example, the example fails with ``WorkerDiedError``.

**The cache.** Before sending an example, the driver replays the program against its own cache (no backend is
called): the replies it already holds for that example travel with the task, and an example answered entirely
from the cache runs in the driver at no cost. Each worker keeps its own in-memory cache; the replies it gets
come back with the result and go into the driver's cache (its disk file too). ``ship_cache=False`` turns the
replay off.
"""

from __future__ import annotations

import asyncio
import contextvars
import copy
import os
import pickle
import queue
import threading
import uuid
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

from .. import settings
from ..errors import BudgetExceededError, ConfigurationError, PromptlessError
from .base import Executor, _check_count
from .runner import HaltFn, ParallelRunner, ProgressFn, RunReport

T = TypeVar("T")
R = TypeVar("R")

INSTALL_HINT = "pip install 'promptless[ray]'"


class WorkerDiedError(PromptlessError):
    """A Ray worker died while running this example, more times than ``max_worker_deaths`` allows."""


def import_ray() -> Any:
    try:
        import ray
    except ImportError as exc:
        raise ConfigurationError(
            f"RayExecutor needs Ray, which is not installed: {INSTALL_HINT} ({exc})"
        ) from exc
    return ray


# -- what travels --------------------------------------------------------------------------------------


class LMRef:
    """Stands in for an LM inside a program sent to workers: the key of its spec (``lms`` in the payload)."""

    __slots__ = ("key",)

    def __init__(self, key: str) -> None:
        self.key = key

    def __getstate__(self) -> str:
        return self.key

    def __setstate__(self, key: str) -> None:
        self.key = key

    def __repr__(self) -> str:
        return f"LMRef({self.key[:40]!r})"


class SignatureRef:
    """A signature class in a form that travels: its name, fields and instructions, built again on the worker.

    (A signature made at run time, by ``make_signature`` or an edit, is a class no worker can import, and a class
    sent by value is rebuilt empty first, which a signature refuses.)"""

    def __init__(self, signature: Any) -> None:
        from ..signature import field_dict

        self.name = signature.__name__
        self.fields = field_dict(signature.fields.values())
        self.instructions = signature.instructions

    def build(self) -> Any:
        from ..signature import make_signature

        return make_signature(self.fields, self.instructions, name=self.name)


def _modules_of(program: Any) -> list[Any]:
    return [program, *(m for _, m in program.named_sub_modules())]


def _portable_signatures(program: Any) -> None:
    """Replace every signature class a module of ``program`` holds by a ``SignatureRef`` (one per class)."""
    from ..signature import Signature

    refs: dict[int, SignatureRef] = {}
    for module in _modules_of(program):
        for name, value in list(vars(module).items()):
            if isinstance(value, type) and issubclass(value, Signature):
                ref = refs.get(id(value))
                if ref is None:
                    ref = refs[id(value)] = SignatureRef(value)
                setattr(module, name, ref)


def _built_signatures(program: Any) -> None:
    built: dict[int, Any] = {}
    for module in _modules_of(program):
        for name, value in list(vars(module).items()):
            if isinstance(value, SignatureRef):
                cls = built.get(id(value))
                if cls is None:
                    cls = built[id(value)] = value.build()
                setattr(module, name, cls)


def lm_spec(lm: Any, check: Callable[[Any], Any] | None = None) -> dict[str, Any]:
    spec = getattr(lm, "spec", None)
    if not callable(spec):
        raise ConfigurationError(
            f"RayExecutor: the LM {lm!r} cannot be rebuilt on a worker (it has no spec()); use an LM made with "
            "pl.LM(...) or a promptless LM class, or run with threads"
        )
    out = spec()
    try:
        if check is not None:
            check((out["args"], out["kwargs"]))
    except Exception as exc:  # an argument that cannot travel (an open client, a lock)
        raise ConfigurationError(
            f"RayExecutor: the LM {lm!r} was made with an argument that cannot be sent to a worker ({exc}); "
            "make it from plain values (model name, base_url, options)"
        ) from exc
    return out


def spec_key(spec: dict[str, Any]) -> str:
    cls = spec["class"]
    import hashlib

    kwargs = sorted((k, repr(v)) for k, v in spec["kwargs"].items())
    text = f"{spec['args']!r}|{kwargs}|cache={spec['cache']}"  # hashed: an api_key must not show in a key
    return f"{cls.__module__}.{cls.__qualname__}:{hashlib.sha256(text.encode()).hexdigest()[:24]}"


def _guard_of(lm: Any) -> tuple[Any, Any, str | None]:
    """``(inner LM, budget or None, role)`` of an LM that may be seen through an optimizer's budget."""
    budget = getattr(type(lm), "budget", None)
    if isinstance(budget, property) and hasattr(lm, "inner"):
        return lm.inner, lm.budget, lm.role
    return lm, None, None


class _AllowanceUsed(BaseException):
    """On a worker: the program wants a fresh call beyond what the driver reserved for this dispatch."""


class _Miss(BaseException):
    """In the driver's cache replay: a request the cache does not hold."""


class WorkerDied(Exception):  # noqa: N818 - raised by pools, handled by the driver
    """The worker running a task is gone (a replacement has been started)."""


# -- the worker ------------------------------------------------------------------------------------------


def _cache_class() -> Any:
    from ..lm.cache import Cache

    class RecordingCache(Cache):
        """A worker's in-memory cache for one LM: what it stores during a task is sent back to the driver."""

        def __init__(self, owner: WorkerCore, key: str) -> None:
            super().__init__(None, memory_size=4096)
            self._owner = owner
            self._key = key

        def put(self, key: str, value: dict[str, Any]) -> bool:
            stored = super().put(key, value)
            task = self._owner.task
            if stored and task is not None:
                task["entries"].setdefault(self._key, []).append((key, value))
            return stored

        def put_shipped(self, key: str, value: dict[str, Any]) -> None:
            Cache.put(self, key, value)

    return RecordingCache


class WorkerCore:
    """What one worker (a Ray actor, or an in-process stand-in for tests) holds and does.

    It keeps the LMs it built (by spec) and the programs it was sent (by payload id), runs one task at a time,
    counts the fresh calls against the task's allowance and records each call's usage and new cache entries."""

    def __init__(self) -> None:
        self.lms: dict[str, Any] = {}
        self.programs: dict[str, Any] = {}
        self.task: dict[str, Any] | None = None

    def pid(self) -> int:
        return os.getpid()

    # -- LMs ------------------------------------------------------------------------------------------
    def _lm(self, key: str, spec: dict[str, Any]) -> Any:
        lm = self.lms.get(key)
        if lm is not None:
            return lm
        cache = _cache_class()(self, key) if spec["cache"] else False
        lm = spec["class"](*spec["args"], cache=cache, **spec["kwargs"])
        complete, finish = lm.complete, lm._finish

        def counted_complete(request: Any) -> Any:
            replayed = self._replayed(lm, request)
            if replayed is not None:
                return replayed
            self._charge(key)
            resp = complete(request)
            if self.task is not None:
                self.task["fresh"].append((lm._cache_key(request), resp.to_dict()))
            return resp

        def recorded_finish(request: Any, resp: Any, cache_key: Any, started: float) -> Any:
            out = finish(request, resp, cache_key, started)
            if self.task is not None:
                self.task["records"].append((key, out.usage.to_dict()))
            return out

        lm.complete = counted_complete
        lm._finish = recorded_finish
        from ..lm.base import BaseLM

        if type(lm).acomplete is not BaseLM.acomplete:  # a native async client: count it too
            acomplete = lm.acomplete

            async def counted_acomplete(request: Any) -> Any:
                replayed = self._replayed(lm, request)
                if replayed is not None:
                    return replayed
                self._charge(key)
                resp = await acomplete(request)
                if self.task is not None:
                    self.task["fresh"].append((lm._cache_key(request), resp.to_dict()))
                return resp

            lm.acomplete = counted_acomplete
        self.lms[key] = lm
        return lm

    def _replayed(self, lm: Any, request: Any) -> Any:
        """A reply this example already got (and paid for) in an earlier dispatch, else None."""
        task = self.task
        if task is None or not task["replay"]:
            return None
        waiting = task["replay"].get(lm._cache_key(request))
        if not waiting:
            return None
        from ..types import LMResponse, Usage

        resp = LMResponse.from_dict(waiting.pop(0))
        resp.cached = True  # not a new call: nothing to count or store again
        resp.usage = Usage()
        return resp

    def _charge(self, key: str) -> None:
        task = self.task
        if task is None or key not in task["limited"]:
            return
        if task["allowance"] is not None and task["used_total"] >= task["allowance"]:
            raise _AllowanceUsed()
        task["used_total"] += 1
        task["used"][key] = task["used"].get(key, 0) + 1

    # -- programs -------------------------------------------------------------------------------------
    def _program(self, box: list[Any], get: Callable[[Any], Any]) -> Any:
        ref = box[0]
        payload_id = box[1]
        program = self.programs.get(payload_id)
        if program is not None:
            return program
        payload = get(ref)
        from ..persist import apply_state

        program = payload["skeleton"]
        _built_signatures(program)
        apply_state(program, {"predictors": payload["state"]}, "the program's state")
        for p in program.predictors():
            if isinstance(p.lm, LMRef):
                p.lm = self._lm(p.lm.key, payload["lms"][p.lm.key])
        if len(self.programs) >= 8:
            self.programs.pop(next(iter(self.programs)))
        self.programs[payload_id] = program
        return program

    def run(self, box: list[Any], task: dict[str, Any], get: Callable[[Any], Any] | None = None) -> dict[str, Any]:
        program = self._program(box, get or (lambda ref: ref))
        default = None
        if task["default_lm"] is not None:
            key, spec = task["default_lm"]
            default = self._lm(key, spec)
        for key, entries in task["cached"].items():
            lm = self.lms.get(key)
            cache = getattr(lm, "cache", None) if lm is not None else None
            if cache is not None:
                for k, v in entries:
                    cache.put_shipped(k, v)
        replay: dict[str, list[Any]] = {}
        for k, v in task["replay"]:
            replay.setdefault(k, []).append(v)
        self.task = {"limited": set(task["limited"]), "allowance": task["allowance"], "used_total": 0,
                     "used": {}, "records": [], "entries": {}, "fresh": [], "replay": replay}
        trace: list[Any] | None = [] if task["trace"] else None
        out: dict[str, Any] = {"pid": os.getpid(), "value": None, "error": None, "trace": []}
        try:
            with settings.context(lm=default, adapter=task["adapter"], trace=trace, executor=None):
                out["value"] = program(*task["args"], **task["kwargs"])
            out["status"] = "done"
        except _AllowanceUsed:
            out["status"] = "more"
        except Exception as exc:
            out["status"] = "error"
            out["error"] = _portable_error(exc)
        finally:
            state, self.task = self.task, None
        if trace is not None and out["status"] == "done":
            names = {id(p): n for n, p in program.named_predictors()}
            out["trace"] = [(names.get(id(p)), dict(inputs), pred) for p, inputs, pred in trace]
        out.update(used=state["used"], records=state["records"], entries=state["entries"], fresh=state["fresh"])
        return out


def _portable_error(exc: Exception) -> Exception:
    """``exc`` if it survives pickling (so the driver raises the same type), else a PromptlessError with its text."""
    try:
        pickle.loads(pickle.dumps(exc))
        return exc
    except Exception:
        return PromptlessError(f"{type(exc).__name__}: {exc}")


# -- pools: where tasks run ------------------------------------------------------------------------------


class InProcessPool:
    """Workers as ``WorkerCore`` objects in this process, with everything sent deep-copied both ways: the Ray
    path without Ray, for tests. A task that raises ``SystemExit`` kills its worker (it is replaced and the
    driver sees ``WorkerDied``)."""

    def __init__(self, num_workers: int) -> None:
        self.cores: queue.Queue[WorkerCore] = queue.Queue()
        self.started = 0
        for _ in range(num_workers):
            self._start()

    def _start(self) -> None:
        self.started += 1
        self.cores.put(WorkerCore())

    def put(self, payload: dict[str, Any]) -> Any:
        return copy.deepcopy(payload)

    def run(self, box: list[Any], task: dict[str, Any]) -> dict[str, Any]:
        core = self.cores.get()
        try:  # in a fresh context, as in another process: none of the caller's settings, usage scopes or meters
            result = contextvars.Context().run(core.run, copy.copy(box), copy.deepcopy(task), copy.deepcopy)
        except SystemExit:
            self._start()
            raise WorkerDied("an in-process worker exited") from None
        except BaseException:
            self.cores.put(core)
            raise
        self.cores.put(core)
        return copy.deepcopy(result)

    def pids(self, busy: bool = False) -> list[int]:
        return [] if busy else [os.getpid()] * self.cores.qsize()

    def close(self) -> None:
        pass


class _RayPool:
    """``num_workers`` Ray actors, each running one task at a time; a dead one is replaced."""

    def __init__(self, executor: RayExecutor) -> None:
        self.ray = ray = import_ray()
        self.executor = executor
        self.started_ray = False
        if not ray.is_initialized():
            kwargs: dict[str, Any] = {"address": executor.address, "ignore_reinit_error": True,
                                      "include_dashboard": False, "log_to_driver": executor.log_to_driver}
            if executor.runtime_env is not None:
                kwargs["runtime_env"] = executor.runtime_env
            if executor.address is not None:
                kwargs.pop("include_dashboard")
            ray.init(**kwargs)
            self.started_ray = True
        options: dict[str, Any] = {"max_restarts": 0, "max_task_retries": 0}
        options.update(_actor_resources(executor.resources))
        self.actor_class = ray.remote(**options)(_Actor)
        self.free: queue.Queue[Any] = queue.Queue()
        self.actors: list[Any] = []
        self.lock = threading.Lock()
        self.busy: set[Any] = set()
        self.pid_of: dict[Any, Any] = {}
        self.replaced = 0
        for _ in range(executor.num_workers):
            self._start()

    def _start(self) -> Any:
        actor = self.actor_class.remote()
        pid = actor.pid.remote()  # asked first, so it is answered before any task (an actor runs one at a time)
        with self.lock:
            self.actors.append(actor)
            self.pid_of[actor] = pid
        self.free.put(actor)
        return actor

    def put(self, payload: dict[str, Any]) -> Any:
        return self.ray.put(payload)

    def check(self, value: Any) -> None:
        """Raise if ``value`` cannot be sent to a worker."""
        from ray import cloudpickle

        cloudpickle.dumps(value)

    def run(self, box: list[Any], task: dict[str, Any]) -> dict[str, Any]:
        ray = self.ray
        actor = self.free.get()
        with self.lock:
            self.busy.add(actor)
        try:
            result = ray.get(actor.run.remote(box, task))
        except (ray.exceptions.RayActorError, ray.exceptions.WorkerCrashedError,
                ray.exceptions.ObjectLostError) as exc:
            with self.lock:
                if actor in self.actors:
                    self.actors.remove(actor)
                self.replaced += 1
            self._start()
            raise WorkerDied(f"a Ray worker died: {type(exc).__name__}") from exc
        except BaseException:
            self._release(actor)
            raise
        self._release(actor)
        return result  # type: ignore[no-any-return]

    def _release(self, actor: Any) -> None:
        with self.lock:
            self.busy.discard(actor)
        self.free.put(actor)

    def pids(self, busy: bool = False) -> list[int]:
        with self.lock:
            actors = [a for a in self.actors if not busy or a in self.busy]
        return [self._pid(a) for a in actors]

    def _pid(self, actor: Any) -> int:
        return int(self.ray.get(self.pid_of[actor]))

    def close(self) -> None:
        with self.lock:
            actors, self.actors = self.actors, []
        for actor in actors:
            try:
                self.ray.kill(actor)
            except Exception:
                pass
        if self.started_ray:
            self.ray.shutdown()


class _Actor(WorkerCore):
    """The Ray actor: a ``WorkerCore`` whose program payload is fetched from the object store."""

    def run(self, box: list[Any], task: dict[str, Any], get: Callable[[Any], Any] | None = None) -> dict[str, Any]:
        import ray

        return super().run(box, task, ray.get)


def _actor_resources(resources: dict[str, Any] | None) -> dict[str, Any]:
    """Ray actor options from ``{"CPU": 1, "GPU": 0.5, "memory": bytes, "<custom>": n}``; one CPU by default."""
    out: dict[str, Any] = {"num_cpus": 1}
    custom: dict[str, float] = {}
    for name, amount in (resources or {}).items():
        if not isinstance(amount, (int, float)) or isinstance(amount, bool) or amount < 0:
            raise ConfigurationError(f"RayExecutor: resources[{name!r}] must be a number >= 0, got {amount!r}")
        if name == "CPU":
            out["num_cpus"] = amount
        elif name == "GPU":
            out["num_gpus"] = amount
        elif name == "memory":
            out["memory"] = amount
        else:
            custom[name] = amount
    if custom:
        out["resources"] = custom
    return out


# -- the driver's side ---------------------------------------------------------------------------------------


_replay_sink: contextvars.ContextVar[dict[str, list[Any]] | None] = contextvars.ContextVar(
    "promptless_replay_sink", default=None)


class _CacheOnlyLM:
    """An LM that answers only from its LM's cache and stops the replay on the first request it does not hold."""

    def __init__(self, inner: Any, key: str) -> None:
        self._inner = inner
        self._key = key

    def request(self, messages: Any = None, *, prompt: str | None = None, cache: bool = True, **params: Any) -> Any:
        from ..lm.base import to_messages

        inner = self._inner
        store = inner.cache if cache else None
        if store is None:
            raise _Miss()
        request = inner.build_request(to_messages(messages, prompt), params)
        key, hit = inner._lookup(request, True)
        if hit is None:
            raise _Miss()
        raw = store.get(key)
        sink = _replay_sink.get()
        if raw is None or sink is None:
            raise _Miss()
        sink.setdefault(self._key, []).append((key, raw))
        return hit

    async def arequest(self, *args: Any, **kwargs: Any) -> Any:
        return self.request(*args, **kwargs)

    def __call__(self, prompt: str | None = None, messages: Any = None, **params: Any) -> list[str]:
        return list(self.request(messages, prompt=prompt, **params).texts)

    def score_continuations(self, *args: Any, **kwargs: Any) -> Any:
        raise _Miss()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


class RemoteProgram:
    """A program whose calls run on the executor's workers (what ``RayExecutor.bind`` returns)."""

    def __init__(self, executor: RayExecutor, program: Any) -> None:
        self.executor = executor
        self.program = program
        self._lock = threading.Lock()
        self._box: list[Any] | None = None
        self._inner: dict[str, Any] = {}  # spec key -> the driver's LM (unwrapped)
        self._guards: dict[str, tuple[Any, str]] = {}  # spec key -> (budget, role) for budgeted LMs
        self._replay: Any = None
        self._specs: dict[str, dict[str, Any]] = {}

    # -- set-up, once -------------------------------------------------------------------------------------
    def _key_of(self, lm: Any) -> str:
        inner, budget, role = _guard_of(lm)
        spec = lm_spec(inner, getattr(self.executor._pool_or_start(), "check", None))
        key = spec_key(spec)
        self._inner.setdefault(key, inner)
        if budget is not None:
            self._guards.setdefault(key, (budget, role or "task"))
        self._specs[key] = spec
        return key

    def _prepare(self) -> list[Any]:
        with self._lock:
            if self._box is not None:
                return self._box
            program = self.program
            skeleton = program.deepcopy()
            replay = program.deepcopy()
            for (_, p), sk, rp in zip(program.named_predictors(), skeleton.predictors(), replay.predictors(),
                                       strict=True):
                if p.lm is not None:
                    key = self._key_of(p.lm)
                    sk.lm = LMRef(key)
                    rp.lm = _CacheOnlyLM(self._inner[key], key)
                sk.demos = []  # the learned state travels as JSON (below)
            _portable_signatures(skeleton)
            state = {name: p.dump_state() for name, p in program.named_predictors()}  # JSON, as save() writes it
            payload = {"skeleton": skeleton, "state": state, "lms": dict(self._specs)}
            try:
                ref = self.executor._pool_or_start().put(payload)
            except Exception as exc:
                raise ConfigurationError(
                    f"RayExecutor: the program {type(program).__name__} could not be sent to the workers ({exc}). "
                    "Its classes must be importable on the workers (or shipped with runtime_env=...), and what it "
                    "holds must pickle"
                ) from exc
            self._replay = replay
            self._box = [ref, uuid.uuid4().hex]
            return self._box

    # -- one call ---------------------------------------------------------------------------------------------
    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        box = self._prepare()
        default = settings.get("lm")
        default_key = self._key_of(default) if default is not None else None
        trace = settings.get("trace")
        cached: dict[str, list[Any]] = {}
        if self.executor.ship_cache:
            done, cached = self._replay_call(args, kwargs, default, default_key)
            if done:  # every request it makes is in the driver's cache: answer here, at no cost
                return self.program(*args, **kwargs)
        limited = sorted(self._guards)
        budgets = {id(b): b for b, _ in self._guards.values()}
        if len(budgets) > 1:
            raise ConfigurationError("RayExecutor: the program's LMs are under different budgets; use one budget")
        budget, role = next(iter(self._guards.values())) if self._guards else (None, "task")
        per_task = self.executor.calls_per_task or max(1, len(self.program.predictors()))
        deaths = 0
        replay: list[Any] = []
        while True:
            tickets = _reserve(budget, role, per_task) if budget is not None else []
            task = {"args": args, "kwargs": kwargs, "trace": trace is not None, "adapter": settings.get("adapter"),
                    "default_lm": (default_key, self._specs[default_key]) if default_key else None,
                    "limited": limited, "allowance": len(tickets) if budget is not None else None,
                    "cached": cached, "replay": replay}
            try:
                result = self.executor._pool_or_start().run(box, task)
            except WorkerDied as exc:
                for ticket in tickets:  # the calls may have been made: they stay charged
                    assert budget is not None
                    budget.settle(role, 1, 0.0, ticket)
                deaths += 1
                if deaths > self.executor.max_worker_deaths:
                    raise WorkerDiedError(
                        f"a Ray worker died {deaths} times while running this example (last: {exc}); it may be "
                        "what kills them (memory, a crash in native code). Run it alone to see"
                    ) from exc
                continue
            except BaseException:
                for ticket in tickets:
                    assert budget is not None
                    budget.settle(role, 1, 0.0, ticket)
                raise
            self._absorb(result, budget, tickets)
            if result["status"] == "more":  # send it again with the replies it got, so they are not paid twice
                replay.extend(result["fresh"])
                continue
            if result["status"] == "error":
                raise result["error"]
            if trace is not None:
                by_name = dict(self.program.named_predictors())
                for name, inputs, pred in result["trace"]:
                    trace.append((by_name.get(name), inputs, pred))
            return result["value"]

    async def acall(self, *args: Any, **kwargs: Any) -> Any:
        ctx = contextvars.copy_context()
        return await asyncio.to_thread(ctx.run, lambda: self(*args, **kwargs))

    def _replay_call(self, args: tuple[Any, ...], kwargs: dict[str, Any], default: Any,
                     default_key: str | None) -> tuple[bool, dict[str, list[Any]]]:
        """Run the program against the driver's cache only: (whether it finished, the entries it used)."""
        sink: dict[str, list[Any]] = {}
        token = _replay_sink.set(sink)
        lm = _CacheOnlyLM(self._inner[default_key], default_key) if default_key else None
        try:
            with settings.context(lm=lm, trace=None, executor=None):
                self._replay(*args, **kwargs)
            done = True
        except _Miss:
            done = False
        except Exception:  # the program fails the same way from the cache: let the driver's run show it
            done = True
        finally:
            _replay_sink.reset(token)
        return done, sink

    def _absorb(self, result: dict[str, Any], budget: Any, tickets: list[Any]) -> None:
        """Settle the reservations with the calls made, add the usage and the new cache entries to the driver's."""
        from ..lm import usage as _usage
        from ..types import Usage

        for key, usage in result["records"]:
            lm = self._inner.get(key)
            if lm is None:
                continue
            u = Usage(**usage)
            with lm._lock:
                lm.usage.add(u)
            _usage.record(lm.model, u)
        for key, entries in result["entries"].items():
            lm = self._inner.get(key)
            cache = getattr(lm, "cache", None) if lm is not None else None
            if cache is not None:
                for k, v in entries:
                    cache.put(k, v)
        if budget is None:
            return
        costs: dict[str, float] = {}
        fresh = [(k, u) for k, u in result["records"] if k in self._guards and u.get("calls", 0) > 0]
        for k, u in fresh:
            costs[k] = costs.get(k, 0.0) + float(u.get("cost") or 0.0)
        used = [(k, n) for k, n in result["used"].items()]
        i = 0
        for key, n in used:
            role = self._guards[key][1]
            for j in range(n):
                cost = costs.pop(key, 0.0) if j == 0 else 0.0
                budget.settle(role, 1, cost, tickets[i])
                i += 1
        for ticket in tickets[i:]:
            budget.settle(self._guards[next(iter(self._guards))][1], 0, 0.0, ticket)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.program, name)

    def __repr__(self) -> str:
        return f"RemoteProgram({type(self.program).__name__})"


def _reserve(budget: Any, role: str, n: int) -> list[Any]:
    """Up to ``n`` calls reserved (at least one, else the budget's BudgetExceededError)."""
    tickets: list[Any] = []
    for _ in range(n):
        try:
            tickets.append(budget.reserve(role))
        except BudgetExceededError:
            if not tickets:
                raise
            break
    return tickets


class RayExecutor(Executor):
    """Examples worked on by ``num_workers`` Ray actors (see the module docstring).

    - ``address``: None starts Ray in this process (or joins the cluster ``RAY_ADDRESS`` names); ``"auto"`` joins
      the cluster running on this machine; ``"ray://host:10001"`` connects through Ray Client.
    - ``num_workers``: actors, each working on one example at a time (the driver keeps that many in flight).
    - ``resources``: what each actor claims: ``{"CPU": 1}`` by default; ``"GPU"``, ``"memory"`` and custom
      resources too (``{"CPU": 4, "GPU": 1}`` for a worker that loads an embedded model on a GPU).
    - ``runtime_env``: Ray's runtime environment for ``ray.init`` (``{"working_dir": ".", "pip": [...]}``), how
      your own program classes reach workers that cannot import them.
    - ``calls_per_task``: LM calls reserved per dispatch under a budget (default: the program's predictors).
    - ``ship_cache``: replay each example against the driver's cache first (default True).
    - ``max_worker_deaths``: how often one example may lose its worker before it fails (default 3).
    """

    def __init__(self, address: str | None = None, num_workers: int = 2, resources: dict[str, Any] | None = None,
                 *, runtime_env: dict[str, Any] | None = None, calls_per_task: int | None = None,
                 ship_cache: bool = True, max_worker_deaths: int = 3, log_to_driver: bool = False,
                 _pool: Any = None) -> None:
        if address is not None and not isinstance(address, str):
            raise ConfigurationError(f"RayExecutor: address must be None, 'auto' or 'ray://host:port', got {address!r}")
        self.address = address
        self.concurrency = self.num_workers = _check_count("num_workers", num_workers)
        _actor_resources(resources)  # checks
        self.resources = dict(resources) if resources else None
        self.runtime_env = runtime_env
        self.calls_per_task = None if calls_per_task is None else _check_count("calls_per_task", calls_per_task)
        self.ship_cache = bool(ship_cache)
        self.max_worker_deaths = int(max_worker_deaths)
        self.log_to_driver = log_to_driver
        self._pool = _pool
        self._start_lock = threading.Lock()
        if _pool is None:
            import_ray()  # a clear message now, not at the first example

    def _pool_or_start(self) -> Any:
        if self._pool is None:
            with self._start_lock:
                if self._pool is None:
                    self._pool = _RayPool(self)
        return self._pool

    def start(self) -> RayExecutor:
        """Connect to Ray and start the workers now (otherwise the first ``map`` or call does)."""
        self._pool_or_start()
        return self

    def bind(self, program: Any) -> Any:
        if isinstance(program, RemoteProgram):
            return program
        if not hasattr(program, "named_predictors"):  # a plain function: runs in the driver
            return program
        return RemoteProgram(self, program)

    def map(self, fn: Callable[[T], R], items: Sequence[T], *, afn: Callable[[T], Awaitable[R]] | None = None,
            max_errors: int | None = None, progress: ProgressFn | None = None, halt: HaltFn | None = None,
            keep_traceback: bool = True) -> RunReport[R]:
        self._pool_or_start()
        runner = ParallelRunner(self.num_workers, max_errors=max_errors, progress=progress,
                                keep_traceback=keep_traceback, halt=halt)
        return runner.run(fn, items)

    async def amap(self, afn: Callable[[T], Awaitable[R]], items: Sequence[T], *, fn: Callable[[T], R] | None = None,
                   max_errors: int | None = None, progress: ProgressFn | None = None, halt: HaltFn | None = None,
                   keep_traceback: bool = True) -> RunReport[R]:
        if fn is None:
            return await super().amap(afn, items, max_errors=max_errors, progress=progress, halt=halt,
                                      keep_traceback=keep_traceback)
        ctx = contextvars.copy_context()
        return await asyncio.to_thread(ctx.run, lambda: self.map(fn, items, max_errors=max_errors, progress=progress,
                                                                 halt=halt, keep_traceback=keep_traceback))

    def worker_pids(self, busy: bool = False) -> list[int]:
        """The process ids of the live workers (``busy=True``: of those working on an example now), for
        monitoring, or for a test that kills one."""
        return list(self._pool_or_start().pids(busy))

    @property
    def replaced_workers(self) -> int:
        """How many dead workers have been replaced so far."""
        return int(getattr(self._pool, "replaced", 0) or 0)

    def close(self) -> None:
        """Stop the workers (and the Ray instance this executor started, if it started one)."""
        pool, self._pool = self._pool, None
        if pool is not None:
            pool.close()

    def __repr__(self) -> str:
        return f"RayExecutor(address={self.address!r}, num_workers={self.num_workers})"


__all__ = ["INSTALL_HINT", "InProcessPool", "LMRef", "RayExecutor", "RemoteProgram", "WorkerCore",
           "WorkerDiedError", "import_ray"]
