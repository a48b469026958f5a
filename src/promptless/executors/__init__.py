"""Where the examples of a run are worked on: threads (the default), asyncio tasks, or a Ray cluster.

Every part of promptless that runs a program over many examples goes through one ``Executor``: ``Evaluate``,
``Module.batch``, ``Parallel``, and the scoring inside the optimizers (minibatches, full evaluations,
bootstrapped traces, GEPA's rollouts, calibration's label scores).

    ev = pl.Evaluate(devset=dev, metric=m, executor=pl.ThreadExecutor(8))
    preds = program.batch(examples, executor=pl.AsyncExecutor(32))
    opt = pl.MIPROv2(metric=m, executor=pl.RayExecutor(address="auto", num_workers=16))
    with pl.context(executor=pl.RayExecutor(num_workers=4)): ...   # the default for everything inside

The contract, the same for every executor:

- ``map(fn, items)`` calls ``fn(item)`` for every item and returns a ``RunReport`` whose outcomes are in
  input order, whatever order they finished in. ``fn`` always runs in the calling process (in threads or
  tasks of it), so progress displays, usage tracking, budgets, the run store and the optimizer's memo stay
  there; errors, ``max_errors``, ``halt`` and ``progress`` behave as ``runner.ParallelRunner`` documents.
- ``bind(program)`` is what ``fn`` calls to run the program. Threads and asyncio run the program itself; a
  Ray executor gives a stand-in that runs each call on a worker (``executors/ray_executor.py``) and brings
  back the prediction, the trace, the usage and the new cache entries, charging the calls to the driver's
  budget before they are made.
- ``amap`` is the same from inside an event loop.
"""

from __future__ import annotations

from typing import Any

from .base import AsyncExecutor, Executor, ThreadExecutor, call_async, resolve
from .runner import Outcome, ParallelRunner, RunReport


def __getattr__(name: str) -> Any:
    if name == "RayExecutor":  # its module imports Ray only when a RayExecutor starts, but load it on demand anyway
        from .ray_executor import RayExecutor

        return RayExecutor
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "AsyncExecutor",
    "Executor",
    "Outcome",
    "ParallelRunner",
    "RayExecutor",
    "RunReport",
    "ThreadExecutor",
    "call_async",
    "resolve",
]
