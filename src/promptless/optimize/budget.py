"""The budget of an optimization run, and the LMs seen through it.

``max_lm_calls`` and ``max_cost`` cover every LM a run uses (task and prompt models). Each LM is wrapped in a
``GuardedLM`` that reserves a call *before* it is made and refuses with ``BudgetExceededError`` once the budget
is used up, so ``max_lm_calls=N`` never makes call N+1, even with several threads. Cache hits cost nothing and
give their reservation back.
"""

from __future__ import annotations

import threading
from typing import Any

from ..errors import BudgetExceededError, ConfigurationError


class Budget:
    """LM calls and cost spent by a run, against optional limits. Thread-safe."""

    def __init__(self, max_lm_calls: int | None = None, max_cost: float | None = None) -> None:
        if max_lm_calls is not None and (not isinstance(max_lm_calls, int) or max_lm_calls < 0):
            raise ConfigurationError(f"max_lm_calls must be None or a whole number >= 0, got {max_lm_calls!r}")
        if max_cost is not None and (not isinstance(max_cost, (int, float)) or max_cost < 0):
            raise ConfigurationError(f"max_cost must be None or a number >= 0, got {max_cost!r}")
        self.max_lm_calls = max_lm_calls
        self.max_cost = max_cost
        self.calls = 0
        self.cost = 0.0
        self.by_role: dict[str, int] = {}
        self.replayed_calls = 0
        self.replayed_cost = 0.0
        self._reserved = 0
        self._lock = threading.Lock()
        self.hit = False

    @property
    def exhausted(self) -> bool:
        with self._lock:
            return self._exhausted_locked(0)

    def _exhausted_locked(self, reserved: int) -> bool:
        if self.max_lm_calls is not None and self.calls + reserved >= self.max_lm_calls:
            return True
        return self.max_cost is not None and self.cost >= self.max_cost

    def _error(self) -> BudgetExceededError:
        if self.max_lm_calls is not None and self.calls + self._reserved >= self.max_lm_calls:
            what = f"max_lm_calls={self.max_lm_calls} reached ({self.calls} calls made)"
        else:
            what = f"max_cost={self.max_cost} reached (cost {self.cost:.4f})"
        return BudgetExceededError(
            f"the optimizer's budget is used up: {what}. Raise the limit, or resume with the same run_dir "
            "and a larger budget to continue"
        )

    def reserve(self) -> None:
        """Claim one call before making it; raises BudgetExceededError when none is left."""
        with self._lock:
            if self._exhausted_locked(self._reserved):
                self.hit = True
                raise self._error()
            self._reserved += 1

    def settle(self, role: str, calls: int, cost: float) -> None:
        """Give the reservation back and count what the call really cost (0 calls for a cache hit)."""
        with self._lock:
            self._reserved -= 1
            self.calls += calls
            self.cost += cost
            self.by_role[role] = self.by_role.get(role, 0) + calls

    def charge(self, calls: int, cost: float = 0.0) -> None:
        """Count calls made by an earlier process of the same run (a resumed run)."""
        if not calls and not cost:
            return
        with self._lock:
            self.calls += calls
            self.cost += cost
            self.replayed_calls += calls
            self.replayed_cost += cost

    def check(self) -> None:
        """Raise BudgetExceededError if nothing is left (used between steps)."""
        with self._lock:
            if self._exhausted_locked(self._reserved):
                self.hit = True
                raise self._error()


class GuardedLM:
    """An LM seen through a budget: every request reserves a call first. Everything else is the LM's own."""

    def __init__(self, lm: Any, budget: Budget, role: str) -> None:
        self._lm = lm
        self._budget = budget
        self._role = role

    @property
    def inner(self) -> Any:
        return self._lm

    def request(self, messages: Any = None, *, prompt: str | None = None, cache: bool = True, **params: Any) -> Any:
        self._budget.reserve()
        try:
            resp = self._lm.request(messages, prompt=prompt, cache=cache, **params)
        except BaseException:
            self._budget.settle(self._role, 1, 0.0)  # the request may have reached the backend: count it
            raise
        self._budget.settle(self._role, resp.usage.calls, resp.usage.cost or 0.0)
        return resp

    async def arequest(
        self, messages: Any = None, *, prompt: str | None = None, cache: bool = True, **params: Any
    ) -> Any:
        self._budget.reserve()
        try:
            resp = await self._lm.arequest(messages, prompt=prompt, cache=cache, **params)
        except BaseException:
            self._budget.settle(self._role, 1, 0.0)
            raise
        self._budget.settle(self._role, resp.usage.calls, resp.usage.cost or 0.0)
        return resp

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


def unwrap_lm(lm: Any) -> Any:
    return lm.inner if isinstance(lm, GuardedLM) else lm


__all__ = ["Budget", "GuardedLM", "unwrap_lm"]
