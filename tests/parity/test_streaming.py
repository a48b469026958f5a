"""Streaming, written the way a DSPy program writes it: streamify, a listener per field, status messages."""

from __future__ import annotations

import asyncio
import inspect
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

import promptless as dspy
from promptless.errors import ConfigurationError
from promptless.streaming import StatusMessage, StatusMessageProvider, StreamListener, StreamResponse


def marker_reply(**fields: str) -> str:
    return "".join(f"[[ ## {k} ## ]]\n{v}\n\n" for k, v in fields.items()) + "[[ ## completed ## ]]"


REPLY = marker_reply(reasoning="Light scatters [more] at short wavelengths.", answer="Because of Rayleigh scattering.")


def chunks_of(items: list[Any], field: str) -> list[StreamResponse]:
    return [i for i in items if isinstance(i, StreamResponse) and i.signature_field_name == field]


@pytest.mark.parametrize("size", [1, 3, 7, 1000])
def test_each_listener_streams_its_field_and_the_prediction_comes_last(size: int):
    dspy.configure(lm=dspy.ScriptedLM([REPLY], stream_chunk_size=size))
    program = dspy.streamify(dspy.ChainOfThought("question -> answer"),
                             stream_listeners=[StreamListener(signature_field_name="answer"),
                                               StreamListener(signature_field_name="reasoning")])
    items = list(program(question="Why is the sky blue?"))
    assert isinstance(items[-1], dspy.Prediction)
    for field, value in (("answer", "Because of Rayleigh scattering."),
                         ("reasoning", "Light scatters [more] at short wavelengths.")):
        got = chunks_of(items, field)
        assert "".join(c.chunk for c in got) == value == getattr(items[-1], field)
        assert got[-1].is_last_chunk and not any(c.is_last_chunk for c in got[:-1])
        assert all(c.predict_name == "self" for c in got)
    if size < 10:
        assert len(chunks_of(items, "answer")) > 2  # it came in pieces, not at the end


def test_the_stream_reads_with_async_for_and_as_a_plain_generator():
    dspy.configure(lm=dspy.ScriptedLM([REPLY]))
    predict = dspy.Predict("question -> reasoning, answer")
    stream_predict = dspy.streamify(predict, stream_listeners=[StreamListener(signature_field_name="answer")])

    async def read() -> list[Any]:
        return [value async for value in stream_predict(question="why?")]

    items = asyncio.run(read())
    assert "".join(c.chunk for c in chunks_of(items, "answer")) == "Because of Rayleigh scattering."
    sync = dspy.streamify(predict, stream_listeners=[StreamListener(signature_field_name="answer")],
                          async_streaming=False)
    gen = sync(question="why?")
    assert inspect.isgenerator(gen) and isinstance(list(gen)[-1], dspy.Prediction)


def test_the_final_prediction_can_be_left_out():
    dspy.configure(lm=dspy.ScriptedLM([REPLY]))
    program = dspy.streamify(dspy.Predict("question -> reasoning, answer"),
                             stream_listeners=[StreamListener(signature_field_name="answer")],
                             include_final_prediction_in_output_stream=False)
    items = list(program(question="why?"))
    assert items and all(isinstance(i, StreamResponse) for i in items)


class SearchThenAnswer(dspy.Module):
    def __init__(self) -> None:
        super().__init__()

        def search(query: str) -> str:
            """Look something up."""
            return f"notes about {query}"

        self.search = dspy.Tool(search)
        self.answer = dspy.Predict("context, question -> answer")

    def forward(self, question):
        return self.answer(context=self.search(query=question), question=question)


class Verbose(StatusMessageProvider):
    def module_start_status_message(self, instance, inputs):
        return f"starting {type(instance).__name__}"


def test_status_messages_report_tool_calls_and_what_a_provider_adds():
    dspy.configure(lm=dspy.ScriptedLM([marker_reply(answer="done")]))
    items = list(dspy.streamify(SearchThenAnswer())(question="sky"))
    statuses = [i.message for i in items if isinstance(i, StatusMessage)]
    assert statuses[0] == "Calling tool search..." and len(statuses) == 2
    assert items[-1].answer == "done"
    items = list(dspy.streamify(SearchThenAnswer(), status_message_provider=Verbose())(question="sky"))
    statuses = [i.message for i in items if isinstance(i, StatusMessage)]
    assert statuses[0] == "starting SearchThenAnswer" and "starting Predict" in statuses


def test_a_listener_must_find_exactly_one_predictor():
    class Two(dspy.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a = dspy.Predict("q -> answer")
            self.b = dspy.Predict("q -> answer")

        def forward(self, q):
            return self.b(q=self.a(q=q).answer)

    with pytest.raises(ConfigurationError, match="no predictor of the program has an output field 'nope'"):
        dspy.streamify(dspy.Predict("q -> answer"), stream_listeners=[StreamListener(signature_field_name="nope")])
    with pytest.raises(ConfigurationError, match=r"several predictors .*\(a, b\).*predict="):
        dspy.streamify(Two(), stream_listeners=[StreamListener(signature_field_name="answer")])
    program = Two()
    dspy.configure(lm=dspy.ScriptedLM([marker_reply(answer="x1")]))
    items = list(dspy.streamify(program, stream_listeners=[
        StreamListener(signature_field_name="answer", predict=program.b, predict_name="b")])(q="go"))
    assert {c.predict_name for c in chunks_of(items, "answer")} == {"b"}


def test_an_error_in_the_program_comes_out_of_the_iteration():
    program = dspy.streamify(dspy.Predict("q -> answer"))  # and no LM configured
    with pytest.raises(ConfigurationError, match="no LM is configured"):
        list(program(q="x"))


# -- over HTTP: an OpenAI-compatible server that streams server-sent events ------------------------------


class SSEServer:
    """Streams ``text`` as chat completion chunks of ``size`` characters, then a usage event and [DONE]."""

    def __init__(self, text: str, size: int = 5) -> None:
        self.bodies: list[dict[str, Any]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)))
                outer.bodies.append(body)
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.send_header("Connection", "close")
                self.end_headers()

                def send(event: dict[str, Any] | str) -> None:
                    data = event if isinstance(event, str) else json.dumps(event)
                    self.wfile.write(f"data: {data}\n\n".encode())
                    self.wfile.flush()

                send({"model": "served", "choices": [{"index": 0, "delta": {"role": "assistant"}}]})
                for i in range(0, len(text), size):
                    send({"model": "served", "choices": [{"index": 0, "delta": {"content": text[i:i + size]},
                                                          "finish_reason": None}]})
                send({"model": "served", "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
                send({"model": "served", "choices": [], "usage": {"prompt_tokens": 40, "completion_tokens": 12}})
                send("[DONE]")
                self.close_connection = True

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base_url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def sse_server() -> Iterator[SSEServer]:
    server = SSEServer(REPLY)
    yield server
    server.close()


def test_streaming_over_an_openai_compatible_server(sse_server: SSEServer):
    lm = dspy.LM("openai/served", api_base=sse_server.base_url, api_key="", cache=False)
    dspy.configure(lm=lm)
    program = dspy.streamify(dspy.ChainOfThought("question -> answer"),
                             stream_listeners=[StreamListener(signature_field_name="answer")])
    with dspy.track_usage() as usage:
        items = list(program(question="Why is the sky blue?"))
    body = sse_server.bodies[-1]
    assert body["stream"] is True and body["stream_options"] == {"include_usage": True}
    answer = chunks_of(items, "answer")
    assert len(answer) > 1 and "".join(c.chunk for c in answer) == "Because of Rayleigh scattering."
    assert items[-1].answer == "Because of Rayleigh scattering."
    assert usage.total.prompt_tokens == 40 and usage.total.completion_tokens == 12
    assert lm.history[-1]["outputs"] == [REPLY]


def test_outside_a_stream_the_same_lm_asks_without_streaming(sse_server: SSEServer):
    # The stub always streams; a client that did not ask for it would fail to read the reply as JSON.
    lm = dspy.LM("openai/served", api_base=sse_server.base_url, api_key="", cache=False, num_retries=0)
    with pytest.raises(dspy.LMError):
        lm("hi")
    assert "stream" not in sse_server.bodies[-1]
