"""ReAct: an agent that alternates thought, tool call and observation, then answers.

Each step is one ``Predict`` call (``self.react``) whose outputs are
``next_thought``, ``next_tool_name`` (one of the tool names or ``finish``) and
``next_tool_args`` (a JSON object). The tool runs and its result (or its
error) is added to the trajectory as an observation. When the model picks
``finish``, or after ``max_iters`` steps whatever the model emits, a
``ChainOfThought`` over the original signature plus the trajectory
(``self.extract``) writes the outputs.

Nothing the model writes in a step stops the loop early or raises: an
unreadable step, an unknown tool, arguments the tool refuses and a tool that
raises all become observations the model sees in its next step. A call that
repeats an earlier one exactly still runs, and its observation carries a note
saying so (small models otherwise tend to loop on their first call). The returned
prediction holds the outputs, the extract step's ``reasoning`` and the whole
``trajectory`` (``thought_0``, ``tool_name_0``, ``tool_args_0``,
``observation_0``, ...); ``ReAct.format_trajectory`` renders it, and every
step is in ``pl.inspect_history``.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any, Literal

from ..data import Prediction
from ..errors import ConfigurationError, ContextWindowError, ParseError
from ..lm.usage import track_usage
from ..signature import InputField, OutputField, Signature, field_dict, make_signature
from .chain_of_thought import ChainOfThought
from .module import Module
from .predict import Predict

if TYPE_CHECKING:
    from ..tools import Tool

FINISH = "finish"
_NO_STEPS = "(no steps yet)"


class ReAct(Module):
    """``ReAct("question -> answer", tools=[search, calculator], max_iters=6)``."""

    def __init__(
        self,
        signature: str | type[Signature],
        tools: Sequence[Callable[..., Any] | Tool],
        max_iters: int = 10,
        *,
        max_observation_chars: int = 2000,
    ) -> None:
        if max_iters < 1:
            raise ValueError("ReAct: max_iters must be at least 1")
        self.signature = make_signature(signature)
        self.max_iters = int(max_iters)
        self.max_observation_chars = int(max_observation_chars)
        from ..tools import as_tool  # on first use: import promptless does not load the tools

        tool_list = [as_tool(t) for t in tools]
        names = [t.name for t in tool_list]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"ReAct: two tools are named {', '.join(dupes)}; pass Tool(fn, name=...) to rename one")
        if FINISH in names:
            raise ValueError(f"ReAct: {FINISH!r} is the name of the built-in last step; rename that tool")
        self.tools: dict[str, Tool] = {t.name: t for t in tool_list}
        self.react = Predict(self._step_signature())
        extract = make_signature(
            {**field_dict(self.signature.input_fields.values()),
             "trajectory": (str, InputField(desc="the steps taken so far and what they returned")),
             **field_dict(self.signature.output_fields.values())},
            self.signature.instructions,
            name=f"{self.signature.__name__}Extract",
        )
        self.extract = ChainOfThought(extract)

    # -- signatures ------------------------------------------------------------
    def _step_signature(self) -> type[Signature]:
        sig = self.signature
        ins = ", ".join(f"`{n}`" for n in sig.input_fields)
        outs = ", ".join(f"`{n}`" for n in sig.output_fields)
        lines = [
            sig.instructions.strip(),
            "",
            f"You are an agent. You are given the fields {ins} and the trajectory of your steps so far. "
            f"Your goal is to use the tools below to gather what is needed to produce {outs}.",
            "In each step write next_thought (your reasoning about the situation and what to do next), "
            "next_tool_name (one tool name from the list) and next_tool_args (a JSON object of the tool's arguments). "
            "After each step you receive the tool's result as an observation.",
            "",
            "The tools:",
        ]
        for i, tool in enumerate(self.tools.values(), 1):
            lines.append(f"({i}) {tool.describe()}")
        lines.append(
            f"({len(self.tools) + 1}) {FINISH}, whose description is <desc>Marks the task as complete: everything "
            f"needed to produce {outs} is now in the trajectory.</desc>. It takes arguments {{}}."
        )
        choices = Literal.__getitem__((*self.tools, FINISH))  # type: ignore[attr-defined]
        fields = {
            **field_dict(sig.input_fields.values()),
            "trajectory": (str, InputField(desc="the steps taken so far and what they returned")),
            "next_thought": (str, OutputField()),
            "next_tool_name": (choices, OutputField()),
            "next_tool_args": (dict[str, Any], OutputField(desc="a JSON object")),
        }
        return make_signature(fields, "\n".join(lines), name=f"{sig.__name__}ReActStep")

    # -- trajectory ---------------------------------------------------------------
    @staticmethod
    def format_trajectory(trajectory: dict[str, Any]) -> str:
        """The trajectory as the text the model reads."""
        steps = []
        i = 0
        while f"thought_{i}" in trajectory:
            args = trajectory.get(f"tool_args_{i}")
            args_text = json.dumps(args, ensure_ascii=False, default=str) if isinstance(args, dict) else str(args)
            steps.append(
                f"Step {i + 1}\nthought: {trajectory[f'thought_{i}']}\ntool: {trajectory.get(f'tool_name_{i}')}\n"
                f"args: {args_text}\nobservation: {trajectory.get(f'observation_{i}', '')}"
            )
            i += 1
        return "\n\n".join(steps) if steps else _NO_STEPS

    def _observe(self, text: str) -> str:
        limit = self.max_observation_chars
        if len(text) > limit:
            return text[:limit] + f" ... [{len(text) - limit} more characters cut]"
        return text

    def _salvage(self, exc: ParseError) -> tuple[str, str, Any, str]:
        """What an unreadable step still says: (thought, tool name, args, observation)."""
        from ..adapters.chat import ChatAdapter
        from ..adapters.json import JSONAdapter

        lenient = make_signature("trajectory -> next_thought, next_tool_name, next_tool_args")
        got: dict[str, Any] = {}
        errors = [exc]
        for adapter in (ChatAdapter(fallback=False), JSONAdapter()):
            try:
                got = adapter.parse(lenient, exc.raw)
                break
            except ParseError as other:
                errors.append(other)
        allowed = ", ".join([*self.tools, FINISH])
        if not got:
            best = min(errors, key=lambda e: len(e.missing) + len(e.invalid))  # the reading that got furthest
            reason = "; ".join([*(f"missing {m}" for m in best.missing), *best.invalid.values()]) or "unreadable"
            return ("", "(unreadable step)", None,
                    f"Error: your last reply could not be read ({reason}). Reply with next_thought, "
                    f"next_tool_name (one of: {allowed}) and next_tool_args (a JSON object) in the required format.")
        thought, name, raw_args = got["next_thought"], got["next_tool_name"].strip(), got["next_tool_args"]
        if name not in self.tools and name != FINISH:
            return (thought, name, raw_args, f"Error: there is no tool named {name!r}. Use one of: {allowed}.")
        return (thought, name, raw_args,
                f"Error: next_tool_args must be a JSON object of the arguments of {name!r}, got {raw_args.strip()!r}"
                [:600])

    @staticmethod
    def _repeat_note(trajectory: dict[str, Any], i: int, observation: str) -> str:
        """The observation, with a note when step ``i`` repeats an earlier call exactly (small models loop)."""
        call = (trajectory[f"tool_name_{i}"], json.dumps(trajectory[f"tool_args_{i}"], sort_keys=True, default=str))
        for j in range(i):
            earlier = (trajectory.get(f"tool_name_{j}"),
                       json.dumps(trajectory.get(f"tool_args_{j}"), sort_keys=True, default=str))
            if earlier == call:
                return (f"{observation}\n(Note: step {i + 1} repeats the call of step {j + 1} exactly. To make "
                        "progress, call a tool with other arguments, or finish.)")
        return observation

    def _step_inputs(self, inputs: dict[str, Any], trajectory: dict[str, Any]) -> dict[str, Any]:
        return {**inputs, "trajectory": self.format_trajectory(trajectory)}

    @staticmethod
    def _drop_oldest(trajectory: dict[str, Any]) -> bool:
        """Remove the first step (the prompt no longer fits); False when there is nothing left to cut."""
        if "thought_0" not in trajectory:
            return False
        old = dict(trajectory)
        trajectory.clear()
        i = 1
        while f"thought_{i}" in old:
            for key in ("thought", "tool_name", "tool_args", "observation"):
                if f"{key}_{i}" in old:
                    trajectory[f"{key}_{i - 1}"] = old[f"{key}_{i}"]
            i += 1
        return True

    # -- running --------------------------------------------------------------------
    def _record(self, trajectory: dict[str, Any], thought: str, name: str, args: Any) -> int:
        i = _next_index(trajectory)
        trajectory.update({f"thought_{i}": thought, f"tool_name_{i}": name, f"tool_args_{i}": args})
        return i

    def forward(self, **kwargs: Any) -> Prediction:
        inputs, call_opts, max_iters = self._split(kwargs)
        trajectory: dict[str, Any] = {}
        with track_usage() as usage:
            for _ in range(max_iters):
                try:
                    step = _fit(trajectory, lambda: self.react(**self._step_inputs(inputs, trajectory), **call_opts))
                    thought, name, args = step.next_thought, step.next_tool_name, step.next_tool_args
                    observation = "Completed." if name == FINISH else None
                except ParseError as exc:
                    thought, name, args, observation = self._salvage(exc)
                i = self._record(trajectory, thought, name, args)
                if observation is None:
                    observation = self._repeat_note(trajectory, i, self.tools[name].run(args))
                trajectory[f"observation_{i}"] = self._observe(observation)
                if name == FINISH and observation == "Completed.":
                    break
            out = _fit(trajectory, lambda: self.extract(**self._step_inputs(inputs, trajectory), **call_opts))
        return _result(out, trajectory, usage.total)

    async def aforward(self, **kwargs: Any) -> Prediction:
        inputs, call_opts, max_iters = self._split(kwargs)
        trajectory: dict[str, Any] = {}
        with track_usage() as usage:
            for _ in range(max_iters):
                try:
                    step = await _afit(
                        trajectory, lambda: self.react.acall(**self._step_inputs(inputs, trajectory), **call_opts))
                    thought, name, args = step.next_thought, step.next_tool_name, step.next_tool_args
                    observation = "Completed." if name == FINISH else None
                except ParseError as exc:
                    thought, name, args, observation = self._salvage(exc)
                i = self._record(trajectory, thought, name, args)
                if observation is None:
                    observation = self._repeat_note(trajectory, i, await self.tools[name].arun(args))
                trajectory[f"observation_{i}"] = self._observe(observation)
                if name == FINISH and observation == "Completed.":
                    break
            out = await _afit(
                trajectory, lambda: self.extract.acall(**self._step_inputs(inputs, trajectory), **call_opts))
        return _result(out, trajectory, usage.total)

    def _split(self, kwargs: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any], int]:
        """The signature's inputs, per-call options (lm=, config=, temperature= ...) for every step, and the
        most steps this call may take (``max_iters=`` for this call only, else the module's)."""
        max_iters = self.max_iters
        if "max_iters" in kwargs and "max_iters" not in self.signature.input_fields:
            max_iters = kwargs.pop("max_iters")
            if isinstance(max_iters, bool) or not isinstance(max_iters, int) or max_iters < 1:
                raise ConfigurationError(f"ReAct: max_iters must be a whole number >= 1, got {max_iters!r}")
        inputs = {k: v for k, v in kwargs.items() if k in self.signature.input_fields}
        missing = [k for k in self.signature.input_fields if k not in inputs]
        if missing:
            raise ConfigurationError(
                f"ReAct({self.signature.signature_string()}): missing input(s) {', '.join(missing)}. "
                f"Call it with {', '.join(f'{n}=...' for n in self.signature.input_fields)}"
            )
        return inputs, {k: v for k, v in kwargs.items() if k not in inputs}, max_iters

    def __repr__(self) -> str:
        return (f"ReAct({self.signature.signature_string()}, tools={list(self.tools)}, max_iters={self.max_iters})\n"
                f"  react = {self.react!r}\n  extract = {self.extract!r}")


def _next_index(trajectory: dict[str, Any]) -> int:
    i = 0
    while f"thought_{i}" in trajectory:
        i += 1
    return i


def _fit(trajectory: dict[str, Any], call: Callable[[], Prediction]) -> Prediction:
    """Run one step; when the prompt is too long for the model, drop the oldest steps and try again."""
    while True:
        try:
            return call()
        except ContextWindowError:
            if not ReAct._drop_oldest(trajectory):
                raise


async def _afit(trajectory: dict[str, Any], call: Callable[[], Awaitable[Prediction]]) -> Prediction:
    while True:
        try:
            return await call()
        except ContextWindowError:
            if not ReAct._drop_oldest(trajectory):
                raise


def _result(out: Prediction, trajectory: dict[str, Any], usage: Any) -> Prediction:
    pred = Prediction(trajectory=trajectory, **out.to_dict())
    pred.set_usage(usage)
    return pred


__all__ = ["FINISH", "ReAct"]
