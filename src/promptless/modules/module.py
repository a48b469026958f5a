"""Module: the base of every program. Subclass it, set sub-modules as attributes, write ``forward``.

Predictors are found by walking instance attributes, lists, tuples and dicts
(``named_predictors()``); there is no metaclass and no frame inspection.
"""

from __future__ import annotations

import contextvars
import copy
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..data import Example
    from ..signature import Signature


class Module:
    """Base class of programs: ``__call__`` runs ``forward``; ``acall`` runs ``aforward`` (or ``forward`` in a thread)."""

    #: The record of the optimizer run that made this program (an ``OptimizationResult``: trials, scores, the
    #: evidence for the pick), set on the program an optimizer's ``compile`` returns; None on any other program.
    optimization: Any = None

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError(f"{type(self).__name__} must define forward(self, ...)")

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.forward(*args, **kwargs)

    async def acall(self, *args: Any, **kwargs: Any) -> Any:
        aforward = getattr(self, "aforward", None)
        if aforward is not None:
            return await aforward(*args, **kwargs)
        import asyncio

        ctx = contextvars.copy_context()
        return await asyncio.to_thread(ctx.run, self.__call__, *args, **kwargs)

    def batch(
        self,
        examples: list[Example],
        num_threads: int | None = None,
        max_errors: int | None = None,
        return_failed_examples: bool = False,
        executor: Any = None,
    ) -> Any:
        """Run this program on every example's inputs (``example.inputs()``), in parallel; results in input order.

        ``num_threads`` threads (default 8), or ``executor=`` (``pl.AsyncExecutor``, ``pl.RayExecutor``; the
        ``pl.context(executor=...)`` setting when neither is given). Once more than ``max_errors`` examples have
        failed (None: never stop) no new one starts and ``PromptlessError`` is raised. A failed example's result
        is None; with ``return_failed_examples=True`` the call returns ``(results, failed_examples,
        exceptions)`` instead, the failed examples' inputs with their exceptions, in input order."""
        from ..data import Example
        from ..errors import ConfigurationError
        from .parallel import Parallel

        for i, example in enumerate(examples):
            if not isinstance(example, Example):
                raise ConfigurationError(f"batch: item {i} is a {type(example).__name__}, not a pl.Example; build "
                                         "items with pl.Example(...).with_inputs(...)")
        pairs = [(self, example.inputs() if example.input_keys is not None else example) for example in examples]
        return Parallel(num_threads=num_threads, max_errors=max_errors, return_failed_examples=return_failed_examples,
                        executor=executor)(pairs)

    # -- walking the program -------------------------------------------------
    def _walk(self, prefix: str, seen: set[int]) -> Iterator[tuple[str, Any]]:
        for key, value in vars(self).items():
            if key.startswith("_"):
                continue
            yield from _walk_value(f"{prefix}{key}", value, seen)

    def named_sub_modules(self) -> list[tuple[str, Module]]:
        seen: set[int] = {id(self)}
        return [(n, m) for n, m in self._walk("", seen)]

    def named_predictors(self) -> list[tuple[str, Predictor]]:
        return [(n, m) for n, m in self.named_sub_modules() if isinstance(m, Predictor)]

    def predictors(self) -> list[Predictor]:
        return [p for _, p in self.named_predictors()]

    def set_lm(self, lm: Any) -> None:
        for p in self.predictors():
            p.lm = lm

    def get_lm(self) -> Any:
        lms = {id(p.lm): p.lm for p in self.predictors()}
        if len(lms) != 1:
            raise ValueError("the predictors of this program do not share one LM; read p.lm per predictor")
        return next(iter(lms.values()))

    # -- copies ---------------------------------------------------------------
    def deepcopy(self) -> Module:
        """A deep copy; LMs (shared resources) are shared, not copied."""
        return copy.deepcopy(self)

    def reset_copy(self) -> Module:
        """A deep copy with every predictor's learned state (demos, instructions) reset."""
        new = self.deepcopy()
        for p in new.predictors():
            p.reset()
        return new

    # -- state -------------------------------------------------------------------
    def dump_state(self) -> dict[str, Any]:
        return {name: p.dump_state() for name, p in self.named_predictors()}

    def load_state(self, state: dict[str, Any]) -> Module:
        from ..persist import apply_state

        apply_state(self, {"predictors": state})
        return self

    def save(self, path: str | Path, *, save_program: bool = False, metadata: dict[str, Any] | None = None) -> Path:
        """Write this program's learned state as JSON (never pickle)."""
        from ..persist import save

        return save(self, path, save_program=save_program, metadata=metadata)

    def load(self, path: str | Path) -> Module:
        """Load state saved by ``save``; on any problem the program is left unchanged."""
        from ..persist import load

        load(self, path)
        return self

    def __repr__(self) -> str:
        parts = [f"  {name} = {p!r}" for name, p in self.named_predictors()]
        return f"{type(self).__name__}(\n" + "\n".join(parts) + "\n)" if parts else f"{type(self).__name__}()"


class Predictor(Module):
    """One learnable LM call: what ``named_predictors`` lists, optimizers tune and ``save`` writes.

    ``Predict`` (``predict.py``) is the implementation; its learnable state is declared here so that code
    walking a program reads it without importing ``Predict``."""

    signature: type[Signature]
    demos: list[Example]
    config: dict[str, Any]
    lm: Any
    adapter: Any

    def reset(self) -> None:
        """Forget what was learned: the signature as constructed, no demos."""
        raise NotImplementedError

    def named_predictors(self) -> list[tuple[str, Predictor]]:
        return [("self", self)]


def _walk_value(name: str, value: Any, seen: set[int]) -> Iterator[tuple[str, Any]]:
    if isinstance(value, Module):
        if id(value) in seen:
            return
        seen.add(id(value))
        yield name, value
        yield from value._walk(f"{name}.", seen)
    elif isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            yield from _walk_value(f"{name}[{i}]", item, seen)
    elif isinstance(value, dict):
        for k, item in value.items():
            yield from _walk_value(f"{name}[{k!r}]", item, seen)
