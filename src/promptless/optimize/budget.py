"""The budget of an optimization run, and the LMs seen through it.

``max_lm_calls`` and ``max_cost`` cover every LM a run uses (task and prompt models). Each LM is wrapped in a
``GuardedLM`` that reserves a call *before* it is made and refuses with ``BudgetExceededError`` once the budget
is used up, so ``max_lm_calls=N`` never makes call N+1, even with several threads. A budget counts LM
requests: a cache hit costs nothing and gives its reservation back, and the HTTP retries inside one request
are one call (the usage totals report them).

With a journal (the run store), each reservation is written down *before* the call is made and settled with
what the call cost after it, so a process killed with calls in flight leaves them on record: a resumed run
counts them, even though it makes them again, and the bound holds across processes.

A ``Meter`` (``budget.metering()``) adds up the calls and cost spent in its context (the calls settled there
and the replayed calls charged there, in threads started from it too) and lists the journal rows reserved
there, which the record holding their result then claims.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any, Protocol

from ..errors import BudgetExceededError, ConfigurationError


class Journal(Protocol):
    """Where reservations are written down before the call is made (``checkpoint.RunStore``)."""

    def reserve_call(self, role: str) -> int: ...

    def settle_call(self, ticket: int, calls: int, cost: float) -> None: ...


@dataclass
class Meter:
    """Calls and cost spent inside one ``Budget.metering()`` block, and the journal rows reserved there."""

    calls: int = 0
    cost: float = 0.0
    tickets: list[int] = field(default_factory=list)


_meters: ContextVar[tuple[Meter, ...]] = ContextVar("promptless_budget_meters", default=())


class Budget:
    """LM calls and cost spent by a run, against optional limits. Thread-safe.

    ``calls`` / ``cost`` are what the run has been charged so far: this process's calls plus the calls of
    earlier processes of the same run, charged as their results are reused (``charge``). ``before_calls`` /
    ``before_cost`` are everything earlier processes spent, from the journal; the limits hold against both
    counts, so a run that resumes never spends more in all than its limit.
    """

    def __init__(self, max_lm_calls: int | None = None, max_cost: float | None = None, *,
                 journal: Journal | None = None, before_calls: int = 0, before_cost: float = 0.0) -> None:
        if max_lm_calls is not None and (not isinstance(max_lm_calls, int) or max_lm_calls < 0):
            raise ConfigurationError(f"max_lm_calls must be None or a whole number >= 0, got {max_lm_calls!r}")
        if max_cost is not None and (not isinstance(max_cost, (int, float)) or max_cost < 0):
            raise ConfigurationError(f"max_cost must be None or a number >= 0, got {max_cost!r}")
        self.max_lm_calls = max_lm_calls
        self.max_cost = max_cost
        self.journal = journal
        self.before_calls = before_calls
        self.before_cost = before_cost
        self.calls = 0
        self.cost = 0.0
        self.by_role: dict[str, int] = {}
        self.replayed_calls = 0
        self.replayed_cost = 0.0
        self._reserved = 0
        self._lock = threading.Lock()
        self.hit = False
        self.kept_calls = 0  # kept back from the search for the held-out check (see keep_back)
        self.kept_cost = 0.0

    @property
    def fresh_calls(self) -> int:
        """Calls this process made (charged calls less the replayed ones)."""
        return self.calls - self.replayed_calls

    @property
    def spent_calls(self) -> int:
        """Calls made by every process of the run so far: the earlier ones' and this one's."""
        return self.before_calls + self.calls - self.replayed_calls

    @property
    def exhausted(self) -> bool:
        """Whether a fresh call would be refused now."""
        with self._lock:
            return self._exhausted_locked(0)

    def keep_back(self, calls: int = 0, cost: float = 0.0) -> None:
        """Keep ``calls`` / ``cost`` of the limits back: until called again with 0, the budget counts as used up
        that much earlier. A search keeps back what the held-out check of its pick will need, and the check
        gives it back before it runs, so a budget stop still leaves room to test the pick."""
        with self._lock:
            self.kept_calls = max(0, int(calls))
            self.kept_cost = max(0.0, float(cost))

    def _exhausted_locked(self, reserved: int, fresh: bool = True) -> bool:
        """With ``fresh``, whether a new call would go over the limits counting every process of the run;
        without, whether this run's own timeline (its charged calls, replayed ones included) has reached them,
        which is where an uninterrupted run stopped."""
        calls = max(self.calls, self.spent_calls) if fresh else self.calls
        if self.max_lm_calls is not None and calls + reserved + self.kept_calls >= self.max_lm_calls:
            return True
        spent_cost = self.before_cost + self.cost - self.replayed_cost
        cost = max(self.cost, spent_cost) if fresh else self.cost
        return self.max_cost is not None and cost + self.kept_cost >= self.max_cost

    def _error(self) -> BudgetExceededError:
        calls = max(self.calls, self.spent_calls)
        kept = f", {self.kept_calls} kept back for the held-out check" if self.kept_calls else ""
        if self.max_lm_calls is not None and calls + self._reserved + self.kept_calls >= self.max_lm_calls:
            what = f"max_lm_calls={self.max_lm_calls} reached ({calls} calls made{kept})"
        else:
            what = f"max_cost={self.max_cost} reached (cost {self.cost:.4f})"
        return BudgetExceededError(
            f"the optimizer's budget is used up: {what}. Raise the limit, or resume with the same run_dir "
            "and a larger budget to continue"
        )

    def reserve(self, role: str = "task") -> int | None:
        """Claim one call before making it (written to the journal first, when there is one); raises
        BudgetExceededError when none is left. Returns the journal's ticket for ``settle``."""
        with self._lock:
            if self._exhausted_locked(self._reserved):
                self.hit = True
                raise self._error()
            self._reserved += 1
        ticket = None
        if self.journal is not None:
            try:
                ticket = self.journal.reserve_call(role)
            except BaseException:
                with self._lock:
                    self._reserved -= 1
                raise
            for meter in _meters.get():
                meter.tickets.append(ticket)
        return ticket

    def settle(self, role: str, calls: int, cost: float, ticket: int | None = None) -> None:
        """Give the reservation back and count what the call really cost (0 calls for a cache hit)."""
        if ticket is not None and self.journal is not None:
            self.journal.settle_call(ticket, calls, cost)
        with self._lock:
            self._reserved -= 1
            self.calls += calls
            self.cost += cost
            self.by_role[role] = self.by_role.get(role, 0) + calls
        for meter in _meters.get():
            meter.calls += calls
            meter.cost += cost

    def charge(self, calls: int, cost: float = 0.0) -> None:
        """Count calls made by an earlier process of the same run (a resumed run)."""
        if not calls and not cost:
            return
        with self._lock:
            self.calls += calls
            self.cost += cost
            self.replayed_calls += calls
            self.replayed_cost += cost
        for meter in _meters.get():
            meter.calls += calls
            meter.cost += cost

    def check(self, fresh: bool = False) -> None:
        """Raise BudgetExceededError if nothing is left. Between steps (the default) this asks whether the run's
        own timeline has used the budget up, so a resumed run replaying stored steps stops exactly where the
        uninterrupted run stopped, not earlier because the earlier process already spent the calls it is
        replaying; ``fresh=True`` (before making new calls) counts every process of the run, as ``reserve`` does."""
        with self._lock:
            if self._exhausted_locked(self._reserved, fresh=fresh):
                self.hit = True
                raise self._error()

    @staticmethod
    @contextmanager
    def metering() -> Iterator[Meter]:
        """A ``Meter`` of what the block spends (nested meters all count; threads started inside count)."""
        meter = Meter()
        token = _meters.set((*_meters.get(), meter))
        try:
            yield meter
        finally:
            _meters.reset(token)


class GuardedLM:
    """An LM seen through a budget: every request reserves a call first. Everything else is the LM's own."""

    def __init__(self, lm: Any, budget: Budget, role: str) -> None:
        self._lm = lm
        self._budget = budget
        self._role = role

    @property
    def inner(self) -> Any:
        return self._lm

    @property
    def budget(self) -> Budget:
        """The budget every request reserves a call from (a Ray executor reserves from it before dispatch)."""
        return self._budget

    @property
    def role(self) -> str:
        return self._role

    def request(self, messages: Any = None, *, prompt: str | None = None, cache: bool = True, **params: Any) -> Any:
        ticket = self._budget.reserve(self._role)
        try:
            resp = self._lm.request(messages, prompt=prompt, cache=cache, **params)
        except BaseException:
            self._budget.settle(self._role, 1, 0.0, ticket)  # the request may have reached the backend: count it
            raise
        self._budget.settle(self._role, *_cost_of(resp), ticket)
        return resp

    async def arequest(
        self, messages: Any = None, *, prompt: str | None = None, cache: bool = True, **params: Any
    ) -> Any:
        ticket = self._budget.reserve(self._role)
        try:
            resp = await self._lm.arequest(messages, prompt=prompt, cache=cache, **params)
        except BaseException:
            self._budget.settle(self._role, 1, 0.0, ticket)
            raise
        self._budget.settle(self._role, *_cost_of(resp), ticket)
        return resp

    def score_continuations(self, *args: Any, **kwargs: Any) -> Any:
        """Label scoring (``pl.Classify``) counts against the budget like a request: one call, none from the cache."""
        from ..errors import ScoringNotSupportedError

        ticket = self._budget.reserve(self._role)
        try:
            result = self._lm.score_continuations(*args, **kwargs)
        except ScoringNotSupportedError:
            self._budget.settle(self._role, 0, 0.0, ticket)  # refused before anything was asked
            raise
        except BaseException:
            self._budget.settle(self._role, 1, 0.0, ticket)  # it may have reached the backend: count it
            raise
        usage = getattr(result, "usage", None)
        self._budget.settle(self._role, int(getattr(usage, "calls", 1)), float(getattr(usage, "cost", None) or 0.0),
                            ticket)
        return result

    def __call__(self, prompt: str | None = None, messages: Any = None, **params: Any) -> list[str]:
        return list(self.request(messages, prompt=prompt, **params).texts)

    async def acall(self, prompt: str | None = None, messages: Any = None, **params: Any) -> list[str]:
        return list((await self.arequest(messages, prompt=prompt, **params)).texts)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._lm, name)

    def __deepcopy__(self, memo: dict[int, Any]) -> GuardedLM:
        return self

    def __repr__(self) -> str:
        return f"GuardedLM({self._lm!r}, role={self._role!r})"


def _cost_of(resp: Any) -> tuple[int, float]:
    """One call, or none for a reply from the cache (the retries inside a request are still one call)."""
    usage = getattr(resp, "usage", None)
    cost = float(getattr(usage, "cost", None) or 0.0)
    if getattr(resp, "cached", False):
        return 0, cost
    return 1, cost


def unwrap_lm(lm: Any) -> Any:
    return lm.inner if isinstance(lm, GuardedLM) else lm


__all__ = ["Budget", "GuardedLM", "Journal", "Meter", "unwrap_lm"]
