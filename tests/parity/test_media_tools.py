"""Typed media, code and native tool calls, written the way a DSPy program writes them, run through
``import promptless as dspy``. The OpenAI-compatible server is a real HTTP server on 127.0.0.1."""

import base64
import json
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import promptless as dspy

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 16


def marker_reply(**fields: object) -> str:
    return "\n\n".join([*(f"[[ ## {k} ## ]]\n{v}" for k, v in fields.items()), "[[ ## completed ## ]]"])


@pytest.fixture
def served(chat_server: Callable[..., Any]) -> Callable[..., Any]:
    """A chat-completions server on 127.0.0.1 answering with ``answer(body)`` (tests/conftest.py's ChatServer);
    it keeps every request body."""

    def start(answer: Callable[[dict[str, Any]], dict[str, Any]]) -> Any:
        return chat_server(lambda body: (200, answer(body)))

    return start


@pytest.fixture(autouse=True)
def _settings_restored() -> Iterator[None]:
    from promptless import settings

    saved = dict(settings._defaults)
    yield
    settings._defaults.clear()
    settings._defaults.update(saved)


def message(content: str | None, calls: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    msg: dict[str, Any] = {"role": "assistant", "content": content}
    if calls:
        msg["tool_calls"] = [{"id": f"call_{i}", "type": "function",
                              "function": {"name": c["name"], "arguments": json.dumps(c["args"])}}
                             for i, c in enumerate(calls)]
    return {"choices": [{"index": 0, "message": msg, "finish_reason": "tool_calls" if calls else "stop"}],
            "usage": {"prompt_tokens": 1, "completion_tokens": 1}}


# -- images ---------------------------------------------------------------------------------------------------


def test_a_picture_goes_to_a_vision_model_as_an_image_part(served: Callable[..., Any],
                                                          tmp_path: Path) -> None:
    server = served(lambda body: message(marker_reply(description="A black square.")))
    dspy.configure(lm=dspy.LM("openai/vision-model", api_base=server.base_url, api_key="", cache=False))

    class DescribeImage(dspy.Signature):
        """Describe the image in one sentence."""

        image: dspy.Image = dspy.InputField()
        description: str = dspy.OutputField()

    picture = tmp_path / "square.png"
    picture.write_bytes(PNG)
    describe = dspy.Predict(DescribeImage)
    assert describe(image=dspy.Image.from_file(str(picture))).description == "A black square."
    assert describe(image=dspy.Image(url="https://example.com/cat.jpg")).description == "A black square."

    first, second = (body["messages"][-1]["content"] for body in server.bodies)
    assert {"type": "image_url", "image_url": {"url": "data:image/png;base64," + base64.b64encode(PNG).decode()}} \
        in first
    assert {"type": "image_url", "image_url": {"url": "https://example.com/cat.jpg"}} in second


def test_a_string_signature_can_take_an_image() -> None:
    lm = dspy.ScriptedLM([marker_reply(answer="two")])
    count = dspy.Predict("image: dspy.Image, question -> answer", lm=lm)
    assert count(image=dspy.Image("https://example.com/cats.png"), question="How many cats?").answer == "two"
    assert lm.requests[0].messages[-1].media == [
        {"type": "image_url", "image_url": {"url": "https://example.com/cats.png"}}]


def test_several_images_in_one_field() -> None:
    class Compare(dspy.Signature):
        images: list[dspy.Image] = dspy.InputField()
        same: bool = dspy.OutputField()

    lm = dspy.ScriptedLM([marker_reply(same="False")])
    pred = dspy.Predict(Compare, lm=lm)(images=[dspy.Image("https://a.org/1.png"), dspy.Image("https://a.org/2.png")])
    assert pred.same is False
    assert len(lm.requests[0].messages[-1].media) == 2


def test_audio_and_documents_as_content_parts(served: Callable[..., Any]) -> None:
    server = served(lambda body: message(marker_reply(summary="A short talk.")))

    class Summarize(dspy.Signature):
        recording: dspy.Audio = dspy.InputField()
        slides: dspy.File = dspy.InputField()
        summary: str = dspy.OutputField()

    lm = dspy.LM("openai/audio-model", api_base=server.base_url, api_key="", cache=False)
    pred = dspy.Predict(Summarize, lm=lm)(
        recording=dspy.Audio(data=base64.b64encode(b"RIFF").decode(), audio_format="wav"),
        slides=dspy.File.from_bytes(b"%PDF-1.7", filename="slides.pdf", mime_type="application/pdf"))
    assert pred.summary == "A short talk."
    parts = server.bodies[0]["messages"][-1]["content"]
    assert {"type": "input_audio", "input_audio": {"data": "UklGRg==", "format": "wav"}} in parts
    assert any(p["type"] == "file" and p["file"]["filename"] == "slides.pdf" for p in parts)


def test_a_program_with_an_image_demo_saves_as_json(tmp_path: Path) -> None:
    program = dspy.Predict("image: dspy.Image -> label")
    program.demos = [dspy.Example(image=dspy.Image("https://a.org/dog.png"), label="dog").with_inputs("image")]
    program.save(str(tmp_path / "program.json"))
    saved = json.loads((tmp_path / "program.json").read_text())
    assert saved["predictors"]["self"]["demos"] == [{"image": {"url": "https://a.org/dog.png"}, "label": "dog"}]

    again = dspy.Predict("image: dspy.Image -> label")
    again.load(str(tmp_path / "program.json"))
    lm = dspy.ScriptedLM([marker_reply(label="cat")])
    assert again(image=dspy.Image("https://a.org/cat.png"), lm=lm).label == "cat"
    assert lm.requests[0].messages[1].media == [{"type": "image_url", "image_url": {"url": "https://a.org/dog.png"}}]


# -- code and reasoning ------------------------------------------------------------------------------------------


def test_code_in_a_language_comes_back_without_its_fence() -> None:
    class CodeGeneration(dspy.Signature):
        """Write a function that answers the question."""

        question: str = dspy.InputField()
        code: dspy.Code["python"] = dspy.OutputField()  # noqa: F821 (ruff reads "python" as a name)

    lm = dspy.ScriptedLM([marker_reply(code="```python\ndef double(x):\n    return 2 * x\n```")])
    result = dspy.Predict(CodeGeneration, lm=lm)(question="Double a number.")
    assert result.code.code == "def double(x):\n    return 2 * x"
    assert "```python" in lm.requests[0].messages[0].content


def test_reasoning_reads_like_a_string() -> None:
    class Solve(dspy.Signature):
        problem: str = dspy.InputField()
        reasoning: dspy.Reasoning = dspy.OutputField()
        answer: int = dspy.OutputField()

    lm = dspy.ScriptedLM([marker_reply(reasoning="Three and four make seven.", answer="7")])
    pred = dspy.Predict(Solve, lm=lm)(problem="3 + 4")
    assert pred.answer == 7 and pred.reasoning == "Three and four make seven." and "seven" in pred.reasoning


# -- tool calls --------------------------------------------------------------------------------------------


def test_native_tool_calls_and_running_them(served: Callable[..., Any]) -> None:
    def weather(city: str) -> str:
        """Get the weather for a city."""
        return f"The weather in {city} is sunny."

    def calculator(expression: str) -> str:
        """Evaluate an arithmetic expression."""
        return str(eval(expression, {"__builtins__": {}}))

    server = served(lambda body: message(None, [{"name": "weather", "args": {"city": "Lisbon"}},
                                                {"name": "calculator", "args": {"expression": "6*7"}}]))
    dspy.configure(lm=dspy.LM("openai/tool-model", api_base=server.base_url, api_key="", cache=False))

    class ToolSignature(dspy.Signature):
        """Use the tools to answer."""

        question: str = dspy.InputField()
        tools: list[dspy.Tool] = dspy.InputField()
        outputs: dspy.ToolCalls = dspy.OutputField()

    tools = [dspy.Tool(weather), dspy.Tool(calculator)]
    response = dspy.Predict(ToolSignature)(question="Weather in Lisbon, and 6 times 7?", tools=tools)
    results = [call.execute() for call in response.outputs.tool_calls]  # found among this function's names
    assert results == ["The weather in Lisbon is sunny.", "42"]
    assert response.outputs.execute(functions=tools) == results
    (body,) = server.bodies
    assert [t["function"]["name"] for t in body["tools"]] == ["weather", "calculator"]
    assert body["tools"][0]["function"]["parameters"]["properties"] == {"city": {"type": "string"}}


def test_tool_calls_from_a_model_without_function_calling() -> None:
    def search(query: str) -> list[str]:
        """Search the knowledge base."""
        return [f"result for {query}"]

    class Plan(dspy.Signature):
        question: str = dspy.InputField()
        tools: list[dspy.Tool] = dspy.InputField()
        next_calls: dspy.ToolCalls = dspy.OutputField()

    lm = dspy.ScriptedLM([marker_reply(next_calls=json.dumps(
        {"tool_calls": [{"name": "search", "args": {"query": "tallest mountain"}}]}))])
    plan = dspy.Predict(Plan, lm=lm)(question="What is the tallest mountain?", tools=[dspy.Tool(search)])
    assert plan.next_calls.tool_calls[0].execute(functions=[dspy.Tool(search)]) == ["result for tallest mountain"]
    assert "search, whose description is <desc>Search the knowledge base.</desc>" in lm.requests[0].messages[-1].content


def test_tool_calls_built_by_hand() -> None:
    calls = dspy.ToolCalls.from_dict_list([{"name": "add", "args": {"a": 1, "b": 2}}])
    assert calls.tool_calls[0].execute(functions={"add": lambda a, b: a + b}) == 3
    assert calls.tool_calls[0].format() == {"name": "add", "args": {"a": 1, "b": 2}}


# -- type-mismatch warnings ----------------------------------------------------------------------------------


def test_a_value_of_the_wrong_type_is_warned_about() -> None:
    lm = dspy.ScriptedLM([marker_reply(answer="ok")])
    predict = dspy.Predict("question: str, top_k: int -> answer", lm=lm)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        predict(question="q", top_k="five")
        predict(question="q", top_k=5)
    messages = [str(w.message) for w in caught if issubclass(w.category, dspy.TypeMismatchWarning)]
    assert len(messages) == 1 and "'top_k'" in messages[0] and "declared int" in messages[0]
