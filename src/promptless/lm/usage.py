"""Usage totals within a scope: ``with pl.track_usage() as usage: ...``."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

from ..types import Usage


class UsageTracker:
    """Totals of every LM call made inside its scope, overall and per model."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.total = Usage()
        self.by_model: dict[str, Usage] = {}

    def record(self, model: str, usage: Usage) -> None:
        with self._lock:
            self.total.add(usage)
            self.by_model.setdefault(model, Usage()).add(usage)

    @property
    def calls(self) -> int:
        return self.total.calls

    def to_dict(self) -> dict[str, object]:
        return {"total": self.total.to_dict(), "by_model": {m: u.to_dict() for m, u in self.by_model.items()}}

    def __repr__(self) -> str:
        t = self.total
        return (
            f"UsageTracker(calls={t.calls}, cache_hits={t.cache_hits}, prompt_tokens={t.prompt_tokens}, "
            f"completion_tokens={t.completion_tokens}, seconds={t.seconds:.2f}, cost={t.cost})"
        )


_active: ContextVar[tuple[UsageTracker, ...]] = ContextVar("promptless_usage", default=())


@contextmanager
def track_usage() -> Iterator[UsageTracker]:
    tracker = UsageTracker()
    token = _active.set((*_active.get(), tracker))
    try:
        yield tracker
    finally:
        _active.reset(token)


def record(model: str, usage: Usage) -> None:
    for tracker in _active.get():
        tracker.record(model, usage)
