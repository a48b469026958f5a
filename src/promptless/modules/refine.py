"""BestOfN and Refine: run a module several times and keep the best-scored prediction.

Both call ``reward_fn(inputs, prediction)`` after each attempt. It returns a
number (``True``/``False`` count as 1/0), or a ``(score, feedback)`` pair, or
an object with ``.score`` and ``.feedback``; a higher score is better. The
first attempt scoring at least ``threshold`` is returned at once; otherwise
the best of the ``N`` attempts is.

Every attempt runs on a copy of the module whose predictors sample at
temperature 1.0 with a distinct ``rollout_id`` (so a cache returns distinct
entries and the attempts differ).

``Refine`` adds feedback: from the second attempt on, every predictor's
instructions get a "Hints from earlier attempts" section, built from each
earlier attempt's outputs, its score and the ``feedback`` text the reward
function returned (or the error the attempt raised). The hint lives only in
the copy; the module itself is never modified, so it is safe to use from
several threads.

Attempts that raise count as failures; ``fail_count`` of them (``N`` by
default) are tolerated, and the next one raises (as in DSPy: ``fail_count=1``
lets one attempt fail). When every attempt fails, the last error is raised. Under an active trace (as when an
optimizer bootstraps demos) only the returned attempt's steps are added to
it, recorded against the module's own predictors.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .. import settings
from ..data import Prediction
from ..values import render_value
from .module import Module

RewardFn = Callable[[dict[str, Any], Prediction], Any]


@dataclass
class Attempt:
    index: int
    prediction: Prediction | None
    score: float
    feedback: str = ""
    error: BaseException | None = None


def read_reward(value: Any) -> tuple[float, str]:
    """A reward function's return value as (score, feedback)."""
    feedback = ""
    if isinstance(value, tuple) and len(value) == 2:
        value, feedback = value
    elif hasattr(value, "score"):
        feedback = getattr(value, "feedback", "") or ""
        value = value.score
    try:
        score = float(value)
    except (TypeError, ValueError):
        raise TypeError(
            f"reward_fn must return a number, a (score, feedback) pair or an object with .score; got {value!r}"
        ) from None
    return score, str(feedback or "")


class BestOfN(Module):
    """``BestOfN(module, N=5, reward_fn=fn, threshold=1.0)``: up to N attempts, the best kept."""

    def __init__(
        self,
        module: Module,
        N: int,  # noqa: N803 - the name users of this family of tools know
        reward_fn: RewardFn,
        threshold: float,
        fail_count: int | None = None,
    ) -> None:
        if N < 1:
            raise ValueError(f"{type(self).__name__}: N must be at least 1")
        self.module = module
        self.N = int(N)
        self._reward_fn = reward_fn
        self.threshold = float(threshold)
        self.fail_count = int(fail_count) if fail_count is not None else int(N)

    # -- hooks for Refine ------------------------------------------------------
    def _prepare_copy(self, copy: Module, attempts: list[Attempt]) -> None:
        """Change the attempt's copy before it runs (Refine adds hints here)."""

    # -- running ------------------------------------------------------------------
    def _copy_for(self, index: int, attempts: list[Attempt]) -> tuple[Module, dict[int, Any]]:
        copy = self.module.deepcopy()
        originals = dict(self.module.named_predictors())
        back: dict[int, Any] = {}
        for name, p in copy.named_predictors():
            p.config = {**p.config, "temperature": 1.0, "rollout_id": index}
            if name in originals:
                back[id(p)] = originals[name]
        self._prepare_copy(copy, attempts)
        return copy, back

    def forward(self, **kwargs: Any) -> Prediction:
        attempts: list[Attempt] = []
        outer_trace = settings.get("trace")
        best: tuple[float, Prediction, list[Any]] | None = None
        failures = 0
        for index in range(self.N):
            copy, back = self._copy_for(index, attempts)
            trace: list[Any] = []
            try:
                with settings.context(trace=trace):
                    pred = copy(**kwargs)
                score, feedback = read_reward(self._reward_fn(dict(kwargs), pred))
            except Exception as exc:
                failures += 1
                attempts.append(Attempt(index, None, float("-inf"), error=exc))
                if failures > self.fail_count:
                    raise
                continue
            attempts.append(Attempt(index, pred, score, feedback))
            mapped = [(back.get(id(p), p), inputs, out) for p, inputs, out in trace]
            if best is None or score > best[0]:
                best = (score, pred, mapped)
            if score >= self.threshold:
                break
        if best is None:  # every attempt failed, within fail_count: report the last error
            last = attempts[-1].error
            assert last is not None
            raise last
        if outer_trace is not None:
            outer_trace.extend(best[2])
        return best[1]

    def __repr__(self) -> str:
        return f"{type(self).__name__}(N={self.N}, threshold={self.threshold}, module={self.module!r})"


class Refine(BestOfN):
    """``Refine(module, N=3, reward_fn=fn, threshold=1.0)``: like BestOfN, each retry told how earlier ones fared."""

    max_hint_chars = 1500

    def _prepare_copy(self, copy: Module, attempts: list[Attempt]) -> None:
        hint = self.hints(attempts)
        if not hint:
            return
        for _, p in copy.named_predictors():
            p.signature = p.signature.with_instructions(p.signature.instructions.rstrip() + "\n\n" + hint)

    def hints(self, attempts: list[Attempt]) -> str:
        """The text added to every predictor's instructions, from the attempts so far ("" for the first)."""
        if not attempts:
            return ""
        lines = ["Hints from earlier attempts (they did not reach the required quality; do better this time):"]
        for a in attempts:
            if a.error is not None:
                lines.append(f"- Attempt {a.index + 1} failed with an error: {type(a.error).__name__}: "
                             f"{str(a.error).splitlines()[0][:300]}")
                continue
            assert a.prediction is not None
            shown = ", ".join(f"{k}={_short(v)}" for k, v in a.prediction.items() if k != "trajectory")
            line = f"- Attempt {a.index + 1} gave {shown} and scored {a.score:g} (needed {self.threshold:g})."
            if a.feedback:
                line += f" Feedback: {a.feedback.strip()}"
            lines.append(line)
        text = "\n".join(lines)
        if len(text) > self.max_hint_chars:
            text = text[: self.max_hint_chars] + " ..."
        return text


def _short(value: Any, limit: int = 200) -> str:
    text = render_value(value).replace("\n", " ")
    return repr(text if len(text) <= limit else text[:limit] + "...")


__all__ = ["Attempt", "BestOfN", "Refine", "read_reward"]
