"""Module: the base of every program. Subclass it, set sub-modules as attributes, write ``forward``.

Predictors are found by walking instance attributes, lists, tuples and dicts
(``named_predictors()``); there is no metaclass and no frame inspection.
"""

from __future__ import annotations

import contextvars
import copy
import functools
import inspect
from collections import deque
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .. import settings
from ..callbacks import with_callbacks
from ..lm.usage import track_usage

if TYPE_CHECKING:
    from ..data import Example
    from ..signature import Signature


# Set while a module call counts LM usage for its prediction (``track_usage=True``): inner calls leave it be.
_USAGE_SCOPE: contextvars.ContextVar[bool] = contextvars.ContextVar("promptless_usage_scope", default=False)


def _usage_by_model(tracker: Any) -> dict[str, dict[str, Any]]:
    return {model: {"prompt_tokens": u.prompt_tokens, "completion_tokens": u.completion_tokens,
                    "total_tokens": u.total_tokens, "calls": u.calls, "cost": u.cost}
            for model, u in tracker.by_model.items()}


def _attach_usage(out: Any, tracker: Any) -> None:
    if hasattr(out, "set_lm_usage"):
        out.set_lm_usage(_usage_by_model(tracker))


def _reporting(fn: Callable[..., Any]) -> Callable[..., Any]:
    """``fn`` (a module's ``__call__`` or ``acall``) reporting to the callbacks as a module call and, with
    ``track_usage=True``, giving the prediction of an outermost call its LM usage (``get_lm_usage()``)."""
    if getattr(fn, "__promptless_callbacks__", None) == "module":
        return fn
    if inspect.iscoroutinefunction(fn):
        @functools.wraps(fn)
        async def counted_async(self: Any, *args: Any, **kwargs: Any) -> Any:
            if _USAGE_SCOPE.get() or not settings.get("track_usage"):
                return await fn(self, *args, **kwargs)
            token = _USAGE_SCOPE.set(True)
            try:
                with track_usage() as tracker:
                    out = await fn(self, *args, **kwargs)
            finally:
                _USAGE_SCOPE.reset(token)
            _attach_usage(out, tracker)
            return out

        return with_callbacks("module")(counted_async)

    @functools.wraps(fn)
    def counted(self: Any, *args: Any, **kwargs: Any) -> Any:
        if _USAGE_SCOPE.get() or not settings.get("track_usage"):
            return fn(self, *args, **kwargs)
        token = _USAGE_SCOPE.set(True)
        try:
            with track_usage() as tracker:
                out = fn(self, *args, **kwargs)
        finally:
            _USAGE_SCOPE.reset(token)
        _attach_usage(out, tracker)
        return out

    return with_callbacks("module")(counted)


class Module:
    """Base class of programs: ``__call__`` runs ``forward``; ``acall`` runs ``aforward`` (or ``forward`` in a thread).

    Every call reports to the callbacks (``callbacks=`` here, or ``pl.configure(callbacks=...)``), including
    those of subclasses that define their own ``__call__`` or ``acall``."""

    #: The record of the optimizer run that made this program (an ``OptimizationResult``: trials, scores, the
    #: evidence for the pick), set on the program an optimizer's ``compile`` returns; None on any other program.
    optimization: Any = None

    def __init__(self, callbacks: list[Any] | None = None) -> None:
        self.callbacks: list[Any] = list(callbacks or [])

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        for name in ("__call__", "acall"):
            if name in cls.__dict__:
                setattr(cls, name, _reporting(cls.__dict__[name]))

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError(f"{type(self).__name__} must define forward(self, ...)")

    @_reporting
    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.forward(*args, **kwargs)

    @_reporting
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
        provide_traceback: bool = False,
        disable_progress_bar: bool = True,
        timeout: float | None = None,
        straggler_limit: int = 3,
    ) -> Any:
        """Run this program on every example's inputs (``example.inputs()``), in parallel; results in input order.

        ``num_threads`` threads (default 8), or ``executor=`` (``pl.AsyncExecutor``, ``pl.RayExecutor``; the
        ``pl.context(executor=...)`` setting when neither is given). Once more than ``max_errors`` examples have
        failed (None: never stop) no new one starts and ``PromptlessError`` is raised. A failed example's result
        is None; with ``return_failed_examples=True`` the call returns ``(results, failed_examples,
        exceptions)`` instead, the failed examples' inputs with their exceptions, in input order. ``timeout``,
        ``straggler_limit``, ``provide_traceback`` and ``disable_progress_bar`` mean what they mean to ``Parallel``."""
        from ..data import Example
        from ..errors import ConfigurationError
        from .parallel import Parallel

        for i, example in enumerate(examples):
            if not isinstance(example, Example):
                raise ConfigurationError(f"batch: item {i} is a {type(example).__name__}, not a pl.Example; build "
                                         "items with pl.Example(...).with_inputs(...)")
        pairs = [(self, example.inputs() if example.input_keys is not None else example) for example in examples]
        return Parallel(num_threads=num_threads, max_errors=max_errors, return_failed_examples=return_failed_examples,
                        executor=executor, provide_traceback=provide_traceback,
                        disable_progress_bar=disable_progress_bar, timeout=timeout,
                        straggler_limit=straggler_limit)(pairs)

    # -- walking the program -------------------------------------------------
    def _walk(self, prefix: str, seen: set[int]) -> Iterator[tuple[str, Any]]:
        for key, value in vars(self).items():
            if key.startswith("_"):
                continue
            yield from _walk_value(f"{prefix}{key}", value, seen)

    def _sub_modules(self) -> list[tuple[str, Module]]:
        """Every module under this one, depth first, named by its path from here (``"qa"``, ``"steps[0]"``)."""
        seen: set[int] = {id(self)}
        return list(self._walk("", seen))

    def named_sub_modules(self, type_: type | None = None, skip_compiled: bool = False) -> Iterator[tuple[str, Any]]:
        """This module and every module under it, breadth first, named as DSPy names them: ``"self"``,
        ``"self.qa"``, ``"self.steps[0]"``, ``"self.by_name[key]"``. ``type_`` keeps those of one class;
        ``skip_compiled`` does not look inside modules an optimizer returned."""
        want = Module if type_ is None else type_
        queue: deque[tuple[str, Any]] = deque([("self", self)])
        seen = {id(self)}
        while queue:
            name, item = queue.popleft()
            if isinstance(item, want):
                yield name, item
            if isinstance(item, Module):
                if skip_compiled and item is not self and getattr(item, "optimization", None) is not None:
                    continue
                children = [(f"{name}.{k}", v) for k, v in vars(item).items() if not k.startswith("_")]
            elif isinstance(item, (list, tuple)):
                children = [(f"{name}[{i}]", v) for i, v in enumerate(item)]
            elif isinstance(item, dict):
                children = [(f"{name}[{k}]", v) for k, v in item.items()]
            else:
                continue
            for child_name, child in children:
                if isinstance(child, (Module, list, tuple, dict)) and id(child) not in seen:
                    seen.add(id(child))
                    queue.append((child_name, child))

    def named_predictors(self) -> list[tuple[str, Predictor]]:
        """The predictors of this program by their path (``"qa"``, ``"steps[0]"``, ``"by_name['key']"``); a
        predictor on its own is ``"self"``. These names key ``dump_state``, ``save`` and the optimizers."""
        return [(n, m) for n, m in self._sub_modules() if isinstance(m, Predictor)]

    def predictors(self) -> list[Predictor]:
        return [p for _, p in self.named_predictors()]

    def named_parameters(self) -> list[tuple[str, Predictor]]:
        """DSPy's name for ``named_predictors``: the learnable parts are the predictors."""
        return self.named_predictors()

    def parameters(self) -> list[Predictor]:
        """DSPy's name for ``predictors``."""
        return self.predictors()

    def inspect_history(self, n: int = 1) -> str:
        """Print the last ``n`` LM calls this program's predictors made (from the process-wide log of the last
        200 calls), and return the text. ``pl.inspect_history(n)`` shows every LM's."""
        from ..lm.calllog import calls_of, format_calls

        text = format_calls(calls_of(list(self.predictors()), n))
        print(text)
        return text

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
        """Load what ``dump_state`` gave, or the state DSPy's ``dump_state`` gives for the same program."""
        from ..persist import apply_state, looks_like_dspy

        apply_state(self, {**state, "format": "dspy"} if isinstance(state, dict) and looks_like_dspy(state)
                    else {"predictors": state})
        return self

    def save(self, path: str | Path, *, save_program: bool = False, metadata: dict[str, Any] | None = None) -> Path:
        """Write this program's learned state as JSON (never pickle)."""
        from ..persist import save

        return save(self, path, save_program=save_program, metadata=metadata)

    def load(self, path: str | Path) -> Module:
        """Load state saved by ``save``, or the JSON state DSPy's ``save`` wrote for the same program (its
        instructions, field descriptions and prefixes, demos, and its LMs' sampling settings); on any problem
        the program is left unchanged. A pickle is refused, never loaded."""
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
