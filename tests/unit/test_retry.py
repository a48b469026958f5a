from __future__ import annotations

import asyncio
import datetime as dt
import logging
import random

import pytest

from promptless.errors import (
    LMAuthenticationError,
    LMConnectionError,
    LMRateLimitError,
    LMResponseError,
    LMServerError,
    LMTimeoutError,
)
from promptless.lm.retry import RetryPolicy, is_retryable, parse_retry_after


class Clock:
    """A fake monotonic clock that the fake sleep advances."""

    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds

    async def asleep(self, seconds: float) -> None:
        self.sleep(seconds)


def policy(clock: Clock, **kw: object) -> RetryPolicy:
    return RetryPolicy(sleep=clock.sleep, asleep=clock.asleep, clock=clock, rng=random.Random(0), **kw)  # type: ignore[arg-type]


def flaky(errors: list[Exception], result: str = "ok"):
    calls = []

    def fn() -> str:
        calls.append(1)
        if errors:
            raise errors.pop(0)
        return result

    fn.calls = calls  # type: ignore[attr-defined]
    return fn


@pytest.mark.parametrize(
    "error",
    [LMTimeoutError("t"), LMConnectionError("c"), LMRateLimitError("r"), LMServerError("s"), LMResponseError("j")],
)
def test_retryable_errors_are_retried(error: Exception) -> None:
    clock = Clock()
    fn = flaky([error, error])
    assert policy(clock).run(fn) == "ok"
    assert len(fn.calls) == 3
    assert len(clock.sleeps) == 2


def test_non_retryable_error_is_raised_at_once() -> None:
    clock = Clock()
    fn = flaky([LMAuthenticationError("bad key")])
    with pytest.raises(LMAuthenticationError, match="bad key"):
        policy(clock).run(fn)
    assert len(fn.calls) == 1
    assert clock.sleeps == []


def test_plain_exceptions_are_not_retried() -> None:
    clock = Clock()
    fn = flaky([ValueError("bug")])
    with pytest.raises(ValueError):
        policy(clock).run(fn)
    assert clock.sleeps == []


def test_instance_can_opt_out_of_retry() -> None:
    err = LMRateLimitError("quota")
    err.retryable = False
    assert not is_retryable(err)
    clock = Clock()
    with pytest.raises(LMRateLimitError):
        policy(clock).run(flaky([err]))
    assert clock.sleeps == []


def test_gives_up_after_max_attempts_with_a_note() -> None:
    clock = Clock()
    fn = flaky([LMServerError("500 boom")] * 10)
    with pytest.raises(LMServerError) as info:
        policy(clock, max_attempts=3).run(fn)
    assert len(fn.calls) == 3
    assert len(clock.sleeps) == 2
    assert "500 boom" in str(info.value)
    assert "gave up after 3 attempts" in str(info.value)
    assert info.value.attempts == 3  # type: ignore[attr-defined]


def test_backoff_without_jitter_doubles_up_to_max_delay() -> None:
    clock = Clock()
    p = policy(clock, max_attempts=7, initial_delay=0.5, max_delay=4, max_total=1000, jitter=False)
    with pytest.raises(LMServerError):
        p.run(flaky([LMServerError("x")] * 10))
    assert clock.sleeps == [0.5, 1.0, 2.0, 4.0, 4.0, 4.0]


def test_full_jitter_stays_within_the_ceiling() -> None:
    p = RetryPolicy(initial_delay=1.0, max_delay=8.0, rng=random.Random(1))
    for retry in range(1, 8):
        ceiling = min(8.0, 2 ** (retry - 1))
        waits = [p.delay(retry) for _ in range(200)]
        assert all(0.0 <= w <= ceiling for w in waits)
        assert max(waits) > ceiling * 0.5  # it really spreads


def test_retry_after_is_honoured_and_capped() -> None:
    clock = Clock()
    errors = [LMRateLimitError("slow down", retry_after=3.0), LMRateLimitError("slow down", retry_after=500.0)]
    assert policy(clock, max_delay=20).run(flaky(errors)) == "ok"
    assert clock.sleeps == [3.0, 20.0]


def test_max_total_limits_the_whole_run() -> None:
    clock = Clock()
    p = policy(clock, max_attempts=100, initial_delay=10, max_delay=10, max_total=25, jitter=False)
    fn = flaky([LMServerError("x")] * 100)
    with pytest.raises(LMServerError):
        p.run(fn)
    assert sum(clock.sleeps) <= 25
    assert clock.sleeps == [10, 10, 5]
    assert len(fn.calls) == 4


def test_never_makes_one_attempt() -> None:
    clock = Clock()
    p = RetryPolicy.never()
    p.sleep = clock.sleep
    fn = flaky([LMServerError("x")])
    with pytest.raises(LMServerError) as info:
        p.run(fn)
    assert len(fn.calls) == 1
    assert "gave up" not in str(info.value)


def test_bad_settings_are_rejected() -> None:
    with pytest.raises(ValueError):
        RetryPolicy(max_attempts=0)
    with pytest.raises(ValueError):
        RetryPolicy(initial_delay=-1)


def test_each_retry_is_logged_at_info(caplog: pytest.LogCaptureFixture) -> None:
    clock = Clock()
    with caplog.at_level(logging.INFO, logger="promptless.lm"):
        policy(clock).run(flaky([LMServerError("503 unavailable"), LMTimeoutError("slow")]))
    records = [r for r in caplog.records if r.name == "promptless.lm"]
    assert len(records) == 2
    assert all(r.levelno == logging.INFO for r in records)
    assert "LMServerError" in records[0].getMessage()
    assert "retry 1 of 4" in records[0].getMessage()


def test_arun_retries_coroutines() -> None:
    clock = Clock()
    errors: list[Exception] = [LMRateLimitError("r", retry_after=1.5), LMConnectionError("c")]
    calls = []

    async def call() -> str:
        calls.append(1)
        await asyncio.sleep(0)
        if errors:
            raise errors.pop(0)
        return "done"

    assert asyncio.run(policy(clock).arun(call)) == "done"
    assert len(calls) == 3
    assert clock.sleeps[0] == 1.5


def test_arun_raises_non_retryable() -> None:
    clock = Clock()

    async def call() -> str:
        raise LMAuthenticationError("no")

    with pytest.raises(LMAuthenticationError):
        asyncio.run(policy(clock).arun(call))
    assert clock.sleeps == []


@pytest.mark.parametrize(
    ("header", "expected"),
    [("5", 5.0), ("0.25", 0.25), (" 7 ", 7.0), ("-3", 0.0), ("", None), (None, None), ("soon", None), ("nan", None)],
)
def test_parse_retry_after_seconds(header: str | None, expected: float | None) -> None:
    assert parse_retry_after(header) == expected


def test_parse_retry_after_http_date() -> None:
    now = dt.datetime(2024, 5, 1, 12, 0, 0, tzinfo=dt.timezone.utc)
    assert parse_retry_after("Wed, 01 May 2024 12:00:30 GMT", now=now) == 30.0
    assert parse_retry_after("Wed, 01 May 2024 11:00:00 GMT", now=now) == 0.0
