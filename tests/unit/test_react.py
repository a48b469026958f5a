from __future__ import annotations

import asyncio
import json

import pytest

import promptless as pl
from promptless.errors import ContextWindowError, ParseError
from promptless.lm.calllog import GLOBAL_HISTORY


def reply(**fields) -> str:
    return "\n\n".join(f"[[ ## {k} ## ]]\n{v}" for k, v in fields.items()) + "\n\n[[ ## completed ## ]]"


def step(tool: str, args, thought: str = "thinking") -> str:
    return reply(next_thought=thought, next_tool_name=tool,
                 next_tool_args=args if isinstance(args, str) else json.dumps(args))


ANSWER = reply(reasoning="The tools said so.", answer="42")

TABLE = {"ada": "born 1815", "alan": "born 1912"}


def calculator(expression: str) -> float:
    """Evaluate an arithmetic expression."""
    return eval(expression, {"__builtins__": {}})


def lookup(name: str) -> str:
    """Look a person up."""
    if name not in TABLE:
        raise KeyError(f"no entry for {name}")
    return TABLE[name]


def agent_lm(steps: list[str], answer: str = ANSWER) -> pl.ScriptedLM:
    """Step replies in order for the agent step, then the answer for the extract step."""
    queue = list(steps)

    def fn(messages):
        system = messages[0].content
        if "next_tool_name" in system:
            if "Reply with a single JSON object" in system:  # the chat adapter's fallback: same text again
                return last[0]
            last[0] = queue.pop(0) if queue else step("finish", {})
            return last[0]
        return answer

    last = [""]
    return pl.ScriptedLM(fn)


def test_tool_then_finish_then_extract():
    lm = agent_lm([step("calculator", {"expression": "6*7"}, "multiply"), step("finish", {}, "done")])
    agent = pl.ReAct("question -> answer", tools=[calculator, lookup], max_iters=5)
    pred = agent(question="What is 6*7?", lm=lm)
    assert pred.answer == "42" and pred.reasoning == "The tools said so."
    t = pred.trajectory
    assert t["tool_name_0"] == "calculator" and t["tool_args_0"] == {"expression": "6*7"}
    assert t["observation_0"] == "42" and t["tool_name_1"] == "finish" and "thought_2" not in t
    assert len(lm.requests) == 3 and pred.usage.calls == 3
    extract_prompt = lm.requests[-1].messages[-1].content
    assert "observation: 42" in extract_prompt and "tool: calculator" in extract_prompt


def test_predictors_are_visible_to_optimizers_and_state_round_trips(tmp_path):
    agent = pl.ReAct("question -> answer", tools=[calculator], max_iters=3)
    assert [n for n, _ in agent.named_predictors()] == ["react", "extract"]
    step_sig = agent.react.signature
    assert list(step_sig.output_fields) == ["next_thought", "next_tool_name", "next_tool_args"]
    assert "trajectory" in step_sig.input_fields and "calculator" in step_sig.instructions
    assert list(agent.extract.signature.output_fields) == ["reasoning", "answer"]
    agent.react.demos = [pl.Example(question="q", trajectory="(no steps yet)", next_thought="t",
                                    next_tool_name="finish", next_tool_args={}).with_inputs("question", "trajectory")]
    copy = agent.deepcopy()
    assert copy.tools["calculator"] is agent.tools["calculator"]
    agent.save(tmp_path / "agent.json")
    fresh = pl.ReAct("question -> answer", tools=[calculator], max_iters=3)
    fresh.load(tmp_path / "agent.json")
    assert fresh.react.demos[0].next_tool_name == "finish"


@pytest.mark.parametrize(
    ("bad_step", "expected"),
    [
        (step("search", {"q": "x"}), "Error: there is no tool named 'search'. Use one of: calculator, lookup, finish."),
        (step("calculator", "expression = 6*7"), "Error: next_tool_args must be a JSON object"),
        (step("calculator", {"expr": "6*7"}), "Error: tool 'calculator' got bad arguments"),
        (step("lookup", {"name": "grace"}), "Error: tool 'lookup' raised KeyError: 'no entry for grace'"),
        ("I think I should use a tool but I will not say which.", "Error: your last reply could not be read"),
        (reply(next_thought="hm"), "Error: your last reply could not be read (missing next_tool_name"),
    ],
    ids=["unknown-tool", "args-not-json", "bad-args", "tool-raises", "no-markers", "missing-fields"],
)
def test_bad_model_output_in_a_step_becomes_an_observation(bad_step, expected):
    lm = agent_lm([bad_step, step("calculator", {"expression": "40+2"}), step("finish", {})])
    agent = pl.ReAct("question -> answer", tools=[calculator, lookup], max_iters=5)
    pred = agent(question="q", lm=lm)
    assert pred.trajectory["observation_0"].startswith(expected)
    assert pred.trajectory["observation_1"] == "42"  # the loop went on
    assert pred.answer == "42"
    # the next step's prompt shows the model its error
    next_prompt = [r for r in lm.requests if "next_tool_name" in r.messages[0].content][-2].messages[-1].content
    assert expected[:30] in next_prompt


@pytest.mark.parametrize("max_iters", [1, 3])
def test_the_loop_never_exceeds_max_iters(max_iters):
    lm = agent_lm([step("calculator", {"expression": "1+1"})] * 50)
    agent = pl.ReAct("question -> answer", tools=[calculator], max_iters=max_iters)
    pred = agent(question="q", lm=lm)
    step_calls = [r for r in lm.requests if "next_tool_name" in r.messages[0].content]
    assert len(step_calls) == max_iters
    assert len(lm.requests) == max_iters + 1  # then the extract step
    assert f"thought_{max_iters - 1}" in pred.trajectory and f"thought_{max_iters}" not in pred.trajectory


def test_a_repeated_call_still_runs_and_is_pointed_out():
    lm = agent_lm([step("lookup", {"name": "ada"}), step("lookup", {"name": "ada"}), step("lookup", {"name": "alan"}),
                   step("finish", {})])
    pred = pl.ReAct("question -> answer", tools=[lookup], max_iters=5)(question="q", lm=lm)
    t = pred.trajectory
    assert t["observation_0"] == "born 1815"
    assert t["observation_1"].startswith("born 1815\n(Note: step 2 repeats the call of step 1 exactly.")
    assert t["observation_2"] == "born 1912"


def test_max_iters_with_every_step_unreadable():
    lm = agent_lm(["garbage"] * 10)
    pred = pl.ReAct("question -> answer", tools=[calculator], max_iters=2)(question="q", lm=lm)
    assert pred.trajectory["tool_name_1"] == "(unreadable step)"
    assert pred.answer == "42"


def test_an_unreadable_extract_step_raises_parse_error():
    lm = agent_lm([step("finish", {})], answer="no markers here, and two outputs are expected")
    agent = pl.ReAct("question -> answer, confidence: float", tools=[calculator], max_iters=2)
    with pytest.raises(ParseError):
        agent(question="q", lm=lm)


def test_json_adapter():
    def fn(messages):
        system = messages[0].content
        if "next_tool_name" in system:
            if "observation: 4" in messages[-1].content:
                return json.dumps({"next_thought": "done", "next_tool_name": "finish", "next_tool_args": {}})
            return json.dumps({"next_thought": "add", "next_tool_name": "calculator",
                               "next_tool_args": {"expression": "2+2"}})
        return json.dumps({"reasoning": "2+2=4", "answer": "4"})

    lm = pl.ScriptedLM(fn)
    with pl.context(adapter=pl.JSONAdapter(), lm=lm):
        pred = pl.ReAct("question -> answer", tools=[calculator], max_iters=4)(question="2+2?")
    assert pred.answer == "4" and pred.trajectory["observation_0"] == "4"
    assert "Reply with the JSON object." in lm.requests[0].messages[-1].content


def test_json_adapter_bad_step_is_salvaged():
    replies = iter([
        json.dumps({"next_thought": "x", "next_tool_name": "google", "next_tool_args": {}}),
        json.dumps({"next_thought": "done", "next_tool_name": "finish", "next_tool_args": {}}),
    ])

    def fn(messages):
        if "next_tool_name" in messages[0].content:
            return next(replies)
        return json.dumps({"reasoning": "r", "answer": "a"})

    with pl.context(adapter=pl.JSONAdapter(), lm=pl.ScriptedLM(fn)):
        pred = pl.ReAct("question -> answer", tools=[calculator], max_iters=4)(question="q")
    assert pred.trajectory["observation_0"].startswith("Error: there is no tool named 'google'")


def test_trajectory_is_in_inspect_history(capsys):
    GLOBAL_HISTORY.clear()
    lm = agent_lm([step("lookup", {"name": "ada"}), step("finish", {})])
    pl.ReAct("question -> answer", tools=[lookup], max_iters=3)(question="When was Ada born?", lm=lm)
    text = pl.inspect_history(n=3)
    assert "observation: born 1815" in text and "tool: lookup" in text
    assert "ReAct" not in capsys.readouterr().err


def test_async_agent_with_async_tool():
    async def slow_lookup(name: str) -> str:
        """Look a person up, slowly."""
        await asyncio.sleep(0)
        return TABLE.get(name, "unknown")

    lm = agent_lm([step("slow_lookup", {"name": "alan"}), step("finish", {})])
    agent = pl.ReAct("question -> answer", tools=[slow_lookup], max_iters=3)
    pred = asyncio.run(agent.acall(question="q", lm=lm))
    assert pred.trajectory["observation_0"] == "born 1912" and pred.answer == "42"


def test_context_window_overflow_drops_the_oldest_steps():
    calls = {"n": 0}

    def fn(messages):
        system = messages[0].content
        prompt = messages[-1].content
        if prompt.count("Step ") > 2:
            raise ContextWindowError("too long")
        if "next_tool_name" in system:
            calls["n"] += 1
            return step("calculator", {"expression": f"{calls['n']}+0"}) if calls["n"] < 5 else step("finish", {})
        return ANSWER

    pred = pl.ReAct("question -> answer", tools=[calculator], max_iters=6)(question="q", lm=pl.ScriptedLM(fn))
    assert pred.answer == "42"
    assert pred.trajectory["tool_name_1"] == "finish"  # only the last steps were kept
    assert pred.trajectory["observation_0"] == "4"


def test_construction_errors():
    with pytest.raises(ValueError, match="max_iters"):
        pl.ReAct("q -> a", tools=[calculator], max_iters=0)
    with pytest.raises(ValueError, match="two tools are named"):
        pl.ReAct("q -> a", tools=[calculator, pl.Tool(lookup, name="calculator")])
    with pytest.raises(ValueError, match="finish"):
        pl.ReAct("q -> a", tools=[pl.Tool(lookup, name="finish")])
    with pytest.raises(pl.ConfigurationError, match="missing input"):
        pl.ReAct("question -> answer", tools=[calculator])(lm=pl.ScriptedLM(["x"]))
