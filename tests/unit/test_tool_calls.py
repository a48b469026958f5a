"""A ``pl.ToolCalls`` output: native function calling over an OpenAI-compatible server (checked on the request
bodies a real HTTP server on 127.0.0.1 receives, and the ``tool_calls`` replies it sends), the text protocol
for LMs without it, and running the calls."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import promptless as pl
from promptless.errors import ConfigurationError, ParseError, ToolError, TypeMismatchWarning
from promptless.lm.cache import Cache
from promptless.lm.openai import OpenAILM
from promptless.media import ToolCalls


@pytest.fixture
def server(chat_server: Callable[..., Any]) -> Callable[..., Any]:
    """Chat servers on 127.0.0.1 (tests/conftest.py's ChatServer): ``server(decide)``, decide(body) -> (status,
    json); request bodies in ``.bodies``."""
    return chat_server


def lm_for(s: Any, **kw: Any) -> OpenAILM:
    kw.setdefault("cache", False)
    kw.setdefault("retry", False)
    return OpenAILM("served", base_url=s.base_url, api_key="", **kw)


def choice(content: str | None = None, calls: list[tuple[str, Any]] = (), index: int = 0) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": content}
    if calls:
        message["tool_calls"] = [
            {"id": f"call_{index}_{i}", "type": "function",
             "function": {"name": name, "arguments": args if isinstance(args, str) else json.dumps(args)}}
            for i, (name, args) in enumerate(calls)]
    return {"index": index, "message": message, "finish_reason": "tool_calls" if calls else "stop"}


def reply(*choices: dict[str, Any]) -> dict[str, Any]:
    return {"choices": list(choices), "usage": {"prompt_tokens": 10, "completion_tokens": 5}}


def get_weather(city: str, unit: str = "celsius") -> str:
    """The weather in a city now."""
    return f"18 degrees {unit} in {city}"


def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


TOOLS = [pl.Tool(get_weather), pl.Tool(add)]


class Ask(pl.Signature):
    """Answer the question, using the tools when they help."""

    question: str = pl.InputField()
    tools: list[pl.Tool] = pl.InputField()
    answer: str = pl.OutputField()
    tool_calls: ToolCalls = pl.OutputField()


class Pick(pl.Signature):
    """Pick the tool calls that answer the request."""

    request: str = pl.InputField()
    tools: list[pl.Tool] = pl.InputField()
    calls: ToolCalls = pl.OutputField()


# -- native --------------------------------------------------------------------------------------------------


def test_tools_go_in_the_request_and_tool_calls_come_back(server: Callable[..., Any]) -> None:
    s = server(lambda body: (200, reply(choice(None, [("get_weather", {"city": "Paris"})]))))
    pred = pl.Predict(Ask, lm=lm_for(s))(question="Weather in Paris?", tools=TOOLS)
    assert pred.answer is None
    (call,) = pred.tool_calls.tool_calls
    assert (call.name, call.args, call.id) == ("get_weather", {"city": "Paris"}, "call_0_0")
    (body,) = s.bodies
    assert body["tools"] == [t.format_as_litellm_function_call() for t in TOOLS]
    assert body["tools"][0] == {"type": "function", "function": {
        "name": "get_weather", "description": "The weather in a city now.",
        "parameters": {"type": "object", "required": ["city"], "properties": {
            "city": {"type": "string"}, "unit": {"type": "string", "default": "celsius"}}}}}
    system, user = (m["content"] for m in body["messages"])
    # the tools travel in `tools`, not in the prompt; the calls come back in `tool_calls`, not as a field
    assert "tools" not in user and "get_weather" not in system + user
    assert "[[ ## tool_calls ## ]]" not in system and "[[ ## answer ## ]]" in system
    assert pred.tool_calls.execute(functions=TOOLS) == ["18 degrees celsius in Paris"]


def test_a_text_answer_without_calls_gives_empty_tool_calls(server: Callable[..., Any]) -> None:
    s = server(lambda body: (200, reply(choice("[[ ## answer ## ]]\nIt is 4.\n[[ ## completed ## ]]"))))
    pred = pl.Predict(Ask, lm=lm_for(s))(question="2+2?", tools=TOOLS)
    assert pred.answer == "It is 4."
    assert isinstance(pred.tool_calls, ToolCalls) and len(pred.tool_calls) == 0 and not pred.tool_calls


def test_calls_with_text_beside_them_keep_both(server: Callable[..., Any]) -> None:
    s = server(lambda body: (200, reply(choice("[[ ## answer ## ]]\nChecking.\n[[ ## completed ## ]]",
                                               [("add", {"a": 2, "b": 3}), ("add", '{"a": 1, "b": 1}')]))))
    pred = pl.Predict(Ask, lm=lm_for(s))(question="2+3 and 1+1?", tools=TOOLS)
    assert pred.answer == "Checking."
    assert [c.args for c in pred.tool_calls] == [{"a": 2, "b": 3}, {"a": 1, "b": 1}]
    assert pred.tool_calls.execute(functions={"add": add}) == [5, 2]


def test_tool_calls_as_the_only_output(server: Callable[..., Any]) -> None:
    s = server(lambda body: (200, reply(choice("", [("add", {"a": 1, "b": 2})]))))
    pred = pl.Predict(Pick, lm=lm_for(s))(request="one plus two", tools=TOOLS)
    assert [(c.name, c.args) for c in pred.calls] == [("add", {"a": 1, "b": 2})]
    system, user = (m["content"] for m in s.bodies[0]["messages"])
    assert "answer by calling the functions you are given" in system
    assert user.endswith("answer by calling the functions you are given.")


def test_each_completion_has_its_own_calls(server: Callable[..., Any]) -> None:
    s = server(lambda body: (200, reply(choice(None, [("add", {"a": 1, "b": 1})], index=0),
                                        choice(None, [("get_weather", {"city": "Oslo"})], index=1))))
    pred = pl.Predict(Pick, lm=lm_for(s), n=2)(request="r", tools=TOOLS)
    assert [c["calls"][0].name for c in pred.completions] == ["add", "get_weather"]
    assert s.bodies[0]["n"] == 2


def test_arguments_that_are_not_json_are_a_parse_error(server: Callable[..., Any]) -> None:
    s = server(lambda body: (200, reply(choice(None, [("add", "a=1, b=2")]))))
    with pytest.raises(ParseError, match="tool call"):
        pl.Predict(Pick, lm=lm_for(s), adapter=pl.ChatAdapter(fallback=False))(request="r", tools=TOOLS)


def test_the_async_path(server: Callable[..., Any]) -> None:
    s = server(lambda body: (200, reply(choice(None, [("add", {"a": 4, "b": 4})]))))

    async def main() -> Any:
        return await pl.Predict(Pick, lm=lm_for(s)).acall(request="r", tools=TOOLS)

    assert asyncio.run(main()).calls[0].execute(functions=TOOLS) == 8
    assert "tools" in s.bodies[0]


def test_a_tool_call_reply_is_cached(server: Callable[..., Any], tmp_path: Path) -> None:
    s = server(lambda body: (200, reply(choice(None, [("add", {"a": 1, "b": 2})]))))
    lm = lm_for(s, cache=Cache(tmp_path / "c.sqlite3"))
    first = pl.Predict(Pick, lm=lm)(request="r", tools=TOOLS)
    again = pl.Predict(Pick, lm=lm)(request="r", tools=TOOLS)
    assert len(s.bodies) == 1
    assert again.calls == first.calls


# -- falling back to the text protocol ------------------------------------------------------------------------

TEXT_REPLY = ('[[ ## answer ## ]]\nLet me look.\n[[ ## tool_calls ## ]]\n'
              '{"tool_calls": [{"name": "get_weather", "args": {"city": "Rome"}}]}\n[[ ## completed ## ]]')


def refuses_tools(body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    if "tools" in body:  # as llama.cpp's server answers without --jinja
        return 500, {"error": {"code": 500, "type": "server_error",
                               "message": "tools param requires --jinja flag"}}
    return 200, reply(choice(TEXT_REPLY))


def test_a_server_that_refuses_tools_is_asked_in_the_text_protocol(server: Callable[..., Any]) -> None:
    s = server(refuses_tools)
    lm = lm_for(s)
    assert lm.supports_function_calling
    pred = pl.Predict(Ask, lm=lm)(question="Weather in Rome?", tools=TOOLS)
    assert pred.answer == "Let me look." and pred.tool_calls[0].args == {"city": "Rome"}
    assert ["tools" in b for b in s.bodies] == [True, False]
    assert not lm.supports_function_calling  # learned: the next call does not offer tools again
    pl.Predict(Ask, lm=lm)(question="Weather in Rome?", tools=TOOLS)
    assert ["tools" in b for b in s.bodies] == [True, False, False]
    text_prompt = s.bodies[1]["messages"][-1]["content"]
    assert "[[ ## tools ## ]]\n(1) get_weather, whose description is <desc>The weather in a city now.</desc>" in (
        text_prompt)
    assert "[[ ## tool_calls ## ]]" in s.bodies[1]["messages"][0]["content"]


def test_the_async_path_falls_back_too(server: Callable[..., Any]) -> None:
    s = server(refuses_tools)

    async def main() -> Any:
        return await pl.Predict(Ask, lm=lm_for(s)).acall(question="q", tools=TOOLS)

    assert asyncio.run(main()).tool_calls[0].name == "get_weather"
    assert ["tools" in b for b in s.bodies] == [True, False]


@pytest.mark.parametrize("how", ["adapter", "lm"])
def test_native_calls_can_be_turned_off(server: Callable[..., Any], how: str) -> None:
    s = server(lambda body: (200, reply(choice(TEXT_REPLY))))
    if how == "adapter":
        lm, adapter = lm_for(s), pl.ChatAdapter(use_native_function_calling=False)
    else:
        lm, adapter = lm_for(s, supports_function_calling=False), None
    pred = pl.Predict(Ask, lm=lm, adapter=adapter)(question="q", tools=TOOLS)
    assert pred.tool_calls[0].name == "get_weather"
    assert "tools" not in s.bodies[0]


def test_an_lm_without_function_calling_uses_the_text_protocol() -> None:
    lm = pl.ScriptedLM([TEXT_REPLY])
    pred = pl.Predict(Ask, lm=lm)(question="q", tools=TOOLS)
    assert pred.tool_calls[0].args == {"city": "Rome"} and pred.answer == "Let me look."
    request = lm.requests[0]
    assert request.tools is None
    assert "<tool_calls: a JSON object {\"tool_calls\": [...]}" in request.messages[0].content
    assert "[[ ## tools ## ]]\n(1) get_weather" in request.messages[-1].content


def test_insisting_on_native_calls_needs_an_input_with_tools() -> None:
    sig = pl.Signature("question -> calls: ToolCalls")
    with pytest.raises(ConfigurationError, match=r"list\[pl.Tool\]"):
        pl.Predict(sig, lm=pl.ScriptedLM(["x"]), adapter=pl.ChatAdapter(use_native_function_calling=True))(
            question="q")


def test_tools_that_are_not_tools_are_refused_for_native_calls(server: Callable[..., Any]) -> None:
    s = server(lambda body: (200, reply(choice(TEXT_REPLY))))
    with pytest.warns(TypeMismatchWarning, match="'tools'"), pytest.raises(ConfigurationError, match=r"pl.Tool\(fn\)"):
        pl.Predict(Ask, lm=lm_for(s))(question="q", tools=[pl.Tool(add), "add"])
    assert s.bodies == []


# -- the ToolCalls value ---------------------------------------------------------------------------------------


def test_tool_calls_read_every_shape_models_write() -> None:
    shapes = [
        {"tool_calls": [{"name": "add", "args": {"a": 1, "b": 2}}]},
        [{"name": "add", "arguments": '{"a": 1, "b": 2}'}],
        {"name": "add", "args": {"a": 1, "b": 2}},
        [{"id": "c9", "type": "function", "function": {"name": "add", "arguments": '{"a": 1, "b": 2}'}}],
    ]
    for shape in shapes:
        calls = ToolCalls.model_validate(shape)
        assert [(c.name, c.args) for c in calls] == [("add", {"a": 1, "b": 2})], shape
    assert ToolCalls.from_dict_list([{"name": "add", "args": {"a": 1, "b": 2}}]) == ToolCalls.model_validate(shapes[0])
    assert ToolCalls.from_reply('```json\n{"tool_calls": []}\n```').tool_calls == []
    with pytest.raises(ValueError, match="name"):
        ToolCalls.model_validate([{"args": {}}])
    schema = ToolCalls.model_json_schema()
    assert schema["required"] == ["tool_calls"] and "id" not in schema["properties"]["tool_calls"]["items"]["properties"]


def test_execute_finds_functions_in_a_list_a_dict_or_the_callers_names() -> None:
    calls = ToolCalls(tool_calls=[{"name": "add", "args": {"a": "2", "b": "3"}}])
    assert calls[0].execute(functions=[pl.Tool(add)]) == 5  # a pl.Tool reads "2" as the integer it takes
    assert calls[0].execute(functions=[add]) == "23"  # a plain function gets the arguments as they are
    assert calls.execute(functions={"add": lambda a, b: f"{a}+{b}"}) == ["2+3"]

    def shout(text: str) -> str:
        return text.upper()

    assert ToolCalls(tool_calls=[{"name": "shout", "args": {"text": "hi"}}])[0].execute() == "HI"
    with pytest.raises(ToolError, match="no function named 'nowhere'"):
        ToolCalls(tool_calls=[{"name": "nowhere", "args": {}}]).execute(functions=[])
    with pytest.raises(ToolError, match="bad arguments"):
        ToolCalls(tool_calls=[{"name": "add", "args": {"a": 1}}])[0].execute(functions=[pl.Tool(add)])

    def broken() -> None:
        raise KeyError("gone")

    with pytest.raises(ToolError, match="tool 'broken' raised KeyError") as info:
        ToolCalls(tool_calls=[{"name": "broken", "args": {}}])[0].execute(functions=[broken])
    assert isinstance(info.value.__cause__, KeyError)
