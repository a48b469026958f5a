"""Examples and predictions, plus small data helpers (JSONL/CSV loading, splits)."""

from __future__ import annotations

import csv
import json
import random
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any


class Example:
    """A record of named values; ``with_inputs`` marks which of them are inputs.

    ``ex.question`` and ``ex["question"]`` both read a value; ``inputs()`` and
    ``labels()`` split it into the inputs and everything else.
    """

    __slots__ = ("_input_keys", "_store")

    def __init__(self, base: Example | dict[str, Any] | None = None, **kwargs: Any) -> None:
        store: dict[str, Any] = {}
        input_keys: frozenset[str] | None = None
        if isinstance(base, Example):
            store.update(base._store)
            input_keys = base._input_keys
        elif isinstance(base, dict):
            store.update(base)
        elif base is not None:
            raise TypeError(f"Example() takes an Example or a dict, got {type(base).__name__}")
        store.update(kwargs)
        object.__setattr__(self, "_store", store)
        object.__setattr__(self, "_input_keys", input_keys)

    # mapping access
    def __getattr__(self, key: str) -> Any:
        if (key.startswith("__") and key.endswith("__")) or key in ("_store", "_input_keys"):
            raise AttributeError(key)
        try:
            return self._store[key]
        except KeyError:
            raise AttributeError(
                f"{type(self).__name__} has no field {key!r}; fields: {', '.join(self._store) or '(none)'}"
            ) from None

    def __setattr__(self, key: str, value: Any) -> None:
        self._store[key] = value

    def __getitem__(self, key: str) -> Any:
        return self._store[key]

    def __setitem__(self, key: str, value: Any) -> None:
        self._store[key] = value

    def __delitem__(self, key: str) -> None:
        del self._store[key]

    def __contains__(self, key: object) -> bool:
        return key in self._store

    def __len__(self) -> int:
        return len(self._store)

    def __iter__(self) -> Iterator[str]:
        return iter(self._store)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Example) and self._store == other._store

    def __hash__(self) -> int:
        return hash(tuple(sorted((k, repr(v)) for k, v in self._store.items())))

    def __repr__(self) -> str:
        inner = ", ".join(f"{k}={v!r}" for k, v in self._store.items())
        extra = f" (inputs: {', '.join(sorted(self._input_keys))})" if self._input_keys else ""
        return f"{type(self).__name__}({inner}){extra}"

    def __deepcopy__(self, memo: dict[int, Any]) -> Example:
        import copy

        new = copy.copy(self)
        object.__setattr__(new, "_store", copy.deepcopy(self._store, memo))
        return new

    def __copy__(self) -> Example:
        new = object.__new__(type(self))
        for cls in type(self).__mro__:
            for slot in getattr(cls, "__slots__", ()):
                if hasattr(self, slot):
                    object.__setattr__(new, slot, object.__getattribute__(self, slot))
        return new

    def __getstate__(self) -> dict[str, Any]:
        return {"store": self._store, "input_keys": self._input_keys}

    def __setstate__(self, state: dict[str, Any]) -> None:
        object.__setattr__(self, "_store", state["store"])
        object.__setattr__(self, "_input_keys", state["input_keys"])
        if isinstance(self, Prediction):
            object.__setattr__(self, "_completions", None)
            object.__setattr__(self, "_usage", None)
            object.__setattr__(self, "_lm_usage", None)

    def keys(self) -> list[str]:
        return list(self._store)

    def values(self) -> list[Any]:
        return list(self._store.values())

    def items(self) -> list[tuple[str, Any]]:
        return list(self._store.items())

    def get(self, key: str, default: Any = None) -> Any:
        return self._store.get(key, default)

    # inputs and labels
    def with_inputs(self, *keys: str) -> Example:
        missing = [k for k in keys if k not in self._store]
        if missing:
            raise KeyError(f"with_inputs: no field(s) {', '.join(missing)} in {self!r}")
        new = self.copy()
        object.__setattr__(new, "_input_keys", frozenset(keys))
        return new

    @property
    def input_keys(self) -> frozenset[str] | None:
        return self._input_keys

    def inputs(self) -> Example:
        if self._input_keys is None:
            raise ValueError("this Example has no inputs marked; call .with_inputs('field', ...) first")
        new = type(self)({k: v for k, v in self._store.items() if k in self._input_keys})
        object.__setattr__(new, "_input_keys", self._input_keys)
        return new

    def labels(self) -> Example:
        keys = self._input_keys or frozenset()
        return type(self)({k: v for k, v in self._store.items() if k not in keys})

    def copy(self, **kwargs: Any) -> Example:
        new = type(self)(dict(self._store), **kwargs)
        object.__setattr__(new, "_input_keys", self._input_keys)
        return new

    def without(self, *keys: str) -> Example:
        new = self.copy()
        for k in keys:
            new._store.pop(k, None)
        return new

    def to_dict(self) -> dict[str, Any]:
        return dict(self._store)

    toDict = to_dict  # noqa: N815 - the name users of this family of tools know


class Completions(list):  # type: ignore[type-arg]
    """Every completion of a call (``n > 1``), one dict per completion, plus column access:
    ``pred.completions.answer`` (or ``pred.completions["answer"]``) is the list of every completion's answer."""

    def __getattr__(self, name: str) -> list[Any]:
        if name.startswith("__"):
            raise AttributeError(name)
        if self and all(name in c for c in self):
            return [c[name] for c in self]
        fields = ", ".join(self[0]) if self else "none"
        raise AttributeError(f"the completions have no field {name!r}; their fields: {fields}")

    def __getitem__(self, key: Any) -> Any:
        if isinstance(key, str):
            try:
                return self.__getattr__(key)
            except AttributeError as exc:
                raise KeyError(str(exc)) from None
        return super().__getitem__(key)

    def __contains__(self, item: object) -> bool:
        if isinstance(item, str):
            return bool(self) and all(item in c for c in self)
        return super().__contains__(item)


class Prediction(Example):
    """What a module returns: the output fields, plus every completion when n > 1."""

    __slots__ = ("_completions", "_lm_usage", "_usage")

    def __init__(self, base: Example | dict[str, Any] | None = None, **kwargs: Any) -> None:
        super().__init__(base, **kwargs)
        object.__setattr__(self, "_completions", None)
        object.__setattr__(self, "_usage", None)
        object.__setattr__(self, "_lm_usage", None)

    @classmethod
    def from_completions(cls, completions: Sequence[dict[str, Any]]) -> Prediction:
        pred = cls(dict(completions[0]) if completions else {})
        object.__setattr__(pred, "_completions", [dict(c) for c in completions])
        return pred

    @property
    def completions(self) -> Completions:
        return Completions(self._completions if self._completions is not None else [dict(self._store)])

    @property
    def usage(self) -> Any:
        return self._usage

    def set_usage(self, usage: Any) -> None:
        object.__setattr__(self, "_usage", usage)

    def get_lm_usage(self) -> dict[str, dict[str, Any]] | None:
        """The LM usage of the call that made this prediction, by model (``{"openai/gpt-4o-mini":
        {"prompt_tokens": ..., "completion_tokens": ..., "total_tokens": ..., ...}}``), when it was made
        with ``pl.configure(track_usage=True)``; else None (``prediction.usage`` always has the totals)."""
        return self._lm_usage

    def set_lm_usage(self, value: dict[str, dict[str, Any]] | None) -> None:
        object.__setattr__(self, "_lm_usage", value)

    def copy(self, **kwargs: Any) -> Prediction:
        new = super().copy(**kwargs)
        object.__setattr__(new, "_completions", self._completions)
        object.__setattr__(new, "_usage", self._usage)
        object.__setattr__(new, "_lm_usage", self._lm_usage)
        return new  # type: ignore[return-value]


# -- loading and splitting ------------------------------------------------------------


def load_jsonl(path: str | Path, input_keys: Iterable[str] | None = None) -> list[Example]:
    """Read a JSON-lines file of objects into Examples (inputs marked if ``input_keys`` is given)."""
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"no data file at {p}")
    out: list[Example] = []
    with p.open(encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            line = line.strip()
            if not line:
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ValueError(f"{p}:{lineno}: not valid JSON ({exc.msg})") from None
            if not isinstance(row, dict):
                raise ValueError(f"{p}:{lineno}: each line must be a JSON object")
            out.append(_mark(Example(row), input_keys))
    return out


def load_csv(path: str | Path, input_keys: Iterable[str] | None = None) -> list[Example]:
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"no data file at {p}")
    with p.open(encoding="utf-8", newline="") as fh:
        return [_mark(Example(dict(row)), input_keys) for row in csv.DictReader(fh)]


def _mark(ex: Example, input_keys: Iterable[str] | None) -> Example:
    return ex.with_inputs(*input_keys) if input_keys else ex


def split(
    examples: Sequence[Example], sizes: Sequence[int | float], *, seed: int = 0
) -> list[list[Example]]:
    """Deterministic shuffled split: ``train, dev = split(data, [0.8, 0.2], seed=1)``."""
    items = list(examples)
    random.Random(seed).shuffle(items)
    n = len(items)
    counts = [round(s * n) if isinstance(s, float) and s <= 1 else int(s) for s in sizes]
    if sum(counts) > n:
        raise ValueError(f"split sizes {list(sizes)} ask for {sum(counts)} examples but there are {n}")
    out, start = [], 0
    for c in counts:
        out.append(items[start : start + c])
        start += c
    return out
