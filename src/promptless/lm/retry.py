"""Retrying LM calls that failed for a reason that may pass.

``RetryPolicy().run(fn)`` calls ``fn()`` and, when it raises an error whose
``retryable`` attribute is true (timeouts, dropped connections, 429, 5xx,
malformed replies: see ``promptless.errors``), waits and calls it again:
exponential backoff with full jitter (a random wait between 0 and
``initial_delay * 2**(retry-1)``, at most ``max_delay``). A rate-limit error
that carries ``retry_after`` (the server's Retry-After) waits that long
instead, still capped by ``max_delay``. No attempt starts after
``max_total`` seconds; the last error is raised with a note of how many
attempts were made. ``arun(coro_fn)`` does the same for coroutines.

The sleep functions, the clock and the random source are injectable, so tests
can record the waits instead of making them.
"""

from __future__ import annotations

import asyncio
import datetime as _dt
import email.utils
import logging
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TypeVar

logger = logging.getLogger("promptless.lm")

T = TypeVar("T")


def parse_retry_after(value: str | None, *, now: _dt.datetime | None = None) -> float | None:
    """Seconds to wait from a Retry-After header: a number of seconds or an HTTP date."""
    if value is None:
        return None
    value = value.strip()
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if when is None:
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=_dt.timezone.utc)
        now = now or _dt.datetime.now(_dt.timezone.utc)
        seconds = (when - now).total_seconds()
    if seconds != seconds:  # NaN
        return None
    return max(0.0, seconds)


def is_retryable(exc: BaseException) -> bool:
    return bool(getattr(exc, "retryable", False))


@dataclass
class RetryPolicy:
    """How often and how long to retry a failed LM call.

    ``max_attempts`` counts the first call (``1`` means never retry).
    """

    max_attempts: int = 5
    initial_delay: float = 0.5
    max_delay: float = 20.0
    max_total: float = 120.0
    jitter: bool = True
    sleep: Callable[[float], None] = field(default=time.sleep, repr=False)
    asleep: Callable[[float], Awaitable[None]] = field(default=asyncio.sleep, repr=False)
    clock: Callable[[], float] = field(default=time.monotonic, repr=False)
    rng: random.Random = field(default_factory=random.Random, repr=False)

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError("RetryPolicy.max_attempts must be at least 1 (1 means no retries)")
        if self.initial_delay < 0 or self.max_delay < 0 or self.max_total < 0:
            raise ValueError("RetryPolicy delays must not be negative")

    @classmethod
    def never(cls) -> RetryPolicy:
        """A policy that makes exactly one attempt."""
        return cls(max_attempts=1)

    def delay(self, retry: int, exc: BaseException | None = None) -> float:
        """The wait before retry number ``retry`` (1 for the first retry)."""
        retry_after = getattr(exc, "retry_after", None) if exc is not None else None
        if isinstance(retry_after, (int, float)) and retry_after >= 0:
            return min(float(retry_after), self.max_delay)
        ceiling = min(self.max_delay, self.initial_delay * (2 ** (retry - 1)))
        return self.rng.uniform(0.0, ceiling) if self.jitter else ceiling

    def _next_wait(self, attempt: int, exc: BaseException, started: float) -> float | None:
        """The wait before the next attempt, or ``None`` to give up and raise ``exc``."""
        if not is_retryable(exc) or attempt >= self.max_attempts:
            return None
        remaining = self.max_total - (self.clock() - started)
        if remaining <= 0:
            return None
        wait = min(self.delay(attempt, exc), remaining)
        logger.info(
            "LM call failed (%s: %s); retry %d of %d in %.2f s",
            type(exc).__name__,
            _first_line(exc),
            attempt,
            self.max_attempts - 1,
            wait,
        )
        return wait

    def _give_up(self, exc: BaseException, attempt: int, started: float) -> None:
        if attempt > 1 and is_retryable(exc):
            note = f" (gave up after {attempt} attempts in {self.clock() - started:.1f} s)"
            if exc.args and isinstance(exc.args[0], str):
                exc.args = (exc.args[0] + note, *exc.args[1:])
        try:
            exc.attempts = attempt  # type: ignore[attr-defined]
        except AttributeError:
            pass

    def run(self, fn: Callable[[], T]) -> T:
        """Call ``fn()`` until it succeeds, fails for good, or the policy runs out."""
        started = self.clock()
        attempt = 0
        while True:
            attempt += 1
            try:
                return fn()
            except Exception as exc:
                wait = self._next_wait(attempt, exc, started)
                if wait is None:
                    self._give_up(exc, attempt, started)
                    raise
            self.sleep(wait)

    async def arun(self, coro_fn: Callable[[], Awaitable[T]]) -> T:
        """``run`` for a coroutine function: ``await policy.arun(lambda: client.post(...))``."""
        started = self.clock()
        attempt = 0
        while True:
            attempt += 1
            try:
                return await coro_fn()
            except Exception as exc:
                wait = self._next_wait(attempt, exc, started)
                if wait is None:
                    self._give_up(exc, attempt, started)
                    raise
            await self.asleep(wait)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    line = text[0] if text else ""
    return line if len(line) <= 200 else line[:200] + "..."


__all__ = ["RetryPolicy", "is_retryable", "parse_retry_after"]
