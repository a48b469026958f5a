from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from promptless.errors import (
    ConfigurationError,
    ContextWindowError,
    LMAuthenticationError,
    LMBadRequestError,
    LMConnectionError,
    LMError,
    LMNotFoundError,
    LMRateLimitError,
    LMResponseError,
    LMServerError,
    LMTimeoutError,
)
from promptless.lm import LM
from promptless.lm.cache import Cache
from promptless.lm.litellm import LiteLLMLM
from promptless.lm.openai import DEFAULT_BASE_URL, OpenAILM
from promptless.lm.retry import RetryPolicy

KEY = "sk-test-SECRET-0123456789abcdef"
BASE = "http://llm.test/v1"


def ok(texts: list[str] | str = "hello", *, prompt: int = 7, completion: int = 3, finish: str = "stop") -> dict:
    if isinstance(texts, str):
        texts = [texts]
    return {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "model": "gpt-test",
        "choices": [
            {"index": i, "message": {"role": "assistant", "content": t}, "finish_reason": finish}
            for i, t in enumerate(texts)
        ],
        "usage": {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion},
    }


def error_body(message: str, code: str | None = None) -> dict:
    return {"error": {"message": message, "type": "invalid_request_error", "code": code}}


class Server:
    """A scripted handler for httpx.MockTransport: one response (or exception) per request."""

    def __init__(self, *script: httpx.Response | Exception | Callable[[httpx.Request], httpx.Response]) -> None:
        self.script = list(script)
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        item = self.script.pop(0) if len(self.script) > 1 else self.script[0]
        if isinstance(item, Exception):
            raise item
        if callable(item) and not isinstance(item, httpx.Response):
            return item(request)
        return item

    def body(self, i: int = -1) -> dict[str, Any]:
        return json.loads(self.requests[i].content)


class Sleeps:
    def __init__(self) -> None:
        self.waits: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)

    async def a(self, seconds: float) -> None:
        self.waits.append(seconds)


def make(server: Server, sleeps: Sleeps | None = None, **kw: Any) -> OpenAILM:
    sleeps = sleeps or Sleeps()
    kw.setdefault("api_key", KEY)
    kw.setdefault("cache", False)
    kw.setdefault("retry", RetryPolicy(sleep=sleeps, asleep=sleeps.a, jitter=False))
    return OpenAILM("gpt-test", base_url=BASE, transport=httpx.MockTransport(server), **kw)


# -- request shape ---------------------------------------------------------------


def test_request_body_and_headers() -> None:
    server = Server(httpx.Response(200, json=ok("hi there")))
    lm = make(server, temperature=0.2)
    resp = lm.request(
        [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hello"}],
        max_tokens=50,
        stop="END",
        seed=7,
    )
    assert resp.texts == ["hi there"]
    request = server.requests[0]
    assert request.method == "POST"
    assert str(request.url) == f"{BASE}/chat/completions"
    assert request.headers["authorization"] == f"Bearer {KEY}"
    assert request.headers["content-type"] == "application/json"
    assert server.body() == {
        "model": "gpt-test",
        "messages": [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hello"}],
        "temperature": 0.2,
        "max_tokens": 50,
        "stop": ["END"],
        "seed": 7,
    }


def test_minimal_body_has_no_optional_fields() -> None:
    server = Server(httpx.Response(200, json=ok()))
    make(server).request(prompt="x", rollout_id=3)
    assert server.body() == {"model": "gpt-test", "messages": [{"role": "user", "content": "x"}]}


def test_no_authorization_header_without_a_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    server = Server(httpx.Response(200, json=ok()))
    lm = make(server, api_key=None)
    lm.request(prompt="x")
    assert "authorization" not in server.requests[0].headers
    assert not lm.has_api_key


def test_key_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-from-env")
    server = Server(httpx.Response(200, json=ok()))
    make(server, api_key=None).request(prompt="x")
    assert server.requests[0].headers["authorization"] == "Bearer sk-from-env"


def test_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    lm = OpenAILM("gpt-4o-mini", cache=False)
    assert lm.base_url == DEFAULT_BASE_URL
    assert lm.timeout == 120.0
    assert lm.retry.max_attempts == 5
    assert lm.provider == "openai"


def test_factory_makes_openai_lm() -> None:
    lm = LM("openai/gpt-test", base_url=BASE + "/", api_key=KEY, cache=False)
    assert isinstance(lm, OpenAILM)
    assert lm.model == "gpt-test"
    assert lm.base_url == BASE


def test_bad_base_url_is_a_configuration_error() -> None:
    with pytest.raises(ConfigurationError, match="base_url"):
        OpenAILM("m", base_url="llm.test/v1")


def test_unknown_option_is_rejected() -> None:
    with pytest.raises(ConfigurationError, match="top_k"):
        OpenAILM("m", base_url=BASE, top_k=3)


def test_response_format_sent_when_supported() -> None:
    schema = {"type": "object", "properties": {"answer": {"type": "string"}}, "required": ["answer"]}
    server = Server(httpx.Response(200, json=ok('{"answer": "x"}')))
    make(server).request(prompt="q", response_format=schema)
    assert server.body()["response_format"] == {
        "type": "json_schema",
        "json_schema": {"name": "output", "schema": schema, "strict": False},
    }


def test_response_format_not_sent_when_unsupported() -> None:
    server = Server(httpx.Response(200, json=ok("{}")))
    make(server, supports_structured_output=False).request(prompt="q", response_format={"type": "object"})
    assert "response_format" not in server.body()


def test_extra_headers() -> None:
    server = Server(httpx.Response(200, json=ok()))
    make(server, headers={"X-Team": "research"}).request(prompt="x")
    assert server.requests[0].headers["x-team"] == "research"


# -- reply, usage, cost ----------------------------------------------------------


def test_usage_and_cost() -> None:
    server = Server(httpx.Response(200, json=ok("a", prompt=1000, completion=500)))
    lm = make(server, price=(0.15, 0.60))
    resp = lm.request(prompt="x")
    assert resp.usage.prompt_tokens == 1000
    assert resp.usage.completion_tokens == 500
    assert resp.usage.calls == 1
    assert resp.usage.cost == pytest.approx((1000 * 0.15 + 500 * 0.60) / 1e6)
    assert resp.model == "gpt-test"
    assert resp.finish_reasons == ["stop"]
    assert lm.usage.prompt_tokens == 1000


def test_no_cost_without_price_and_missing_usage_is_zero() -> None:
    body = ok("a")
    del body["usage"]
    resp = make(Server(httpx.Response(200, json=body))).request(prompt="x")
    assert resp.usage.cost is None
    assert resp.usage.prompt_tokens == 0


def test_n_greater_than_one() -> None:
    server = Server(httpx.Response(200, json=ok(["one", "two", "three"])))
    resp = make(server).request(prompt="x", n=3)
    assert server.body()["n"] == 3
    assert resp.texts == ["one", "two", "three"]
    assert resp.finish_reasons == ["stop"] * 3


def test_choices_are_ordered_by_index() -> None:
    body = ok(["zero", "one"])
    body["choices"].reverse()
    assert make(Server(httpx.Response(200, json=body))).request(prompt="x", n=2).texts == ["zero", "one"]


def test_null_content_becomes_empty_text() -> None:
    body = ok("x")
    body["choices"][0]["message"]["content"] = None
    assert make(Server(httpx.Response(200, json=body))).request(prompt="x").texts == [""]


def test_call_returns_list_of_strings() -> None:
    lm = make(Server(httpx.Response(200, json=ok("hey"))))
    assert lm("hello") == ["hey"]
    assert lm(messages=[{"role": "user", "content": "hello"}]) == ["hey"]


def test_truncated_reply_is_not_cached(tmp_path: Path) -> None:
    c = Cache(tmp_path / "c.sqlite3")
    server = Server(httpx.Response(200, json=ok("partial", finish="length")))
    lm = make(server, cache=c)
    assert lm.request(prompt="x").truncated
    assert len(c) == 0
    lm.request(prompt="x")
    assert len(server.requests) == 2


def test_good_reply_is_cached(tmp_path: Path) -> None:
    c = Cache(tmp_path / "c.sqlite3")
    server = Server(httpx.Response(200, json=ok("kept")))
    lm = make(server, cache=c)
    lm.request(prompt="x")
    hit = lm.request(prompt="x")
    assert hit.cached and hit.texts == ["kept"]
    assert len(server.requests) == 1
    assert len(c) == 1


# -- status mapping --------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "body", "error", "phrase"),
    [
        (400, error_body("Invalid value for 'temperature'"), LMBadRequestError, "Invalid value"),
        (
            400,
            error_body("This model's maximum context length is 8192 tokens.", "context_length_exceeded"),
            ContextWindowError,
            "context window",
        ),
        (400, error_body("too many tokens in the prompt"), ContextWindowError, "too many tokens"),
        (400, error_body("the request exceeds the available context size"), ContextWindowError, "context size"),
        (400, error_body("max_tokens exceeds the maximum allowed value"), LMBadRequestError, "allowed value"),
        (401, error_body("Incorrect API key provided"), LMAuthenticationError, "OPENAI_API_KEY"),
        (403, error_body("not allowed"), LMAuthenticationError, "api_key"),
        (404, error_body("The model `gpt-test` does not exist"), LMNotFoundError, "base_url"),
        (422, error_body("unprocessable"), LMBadRequestError, "unprocessable"),
        (408, error_body("request timeout"), LMTimeoutError, "408"),
        (409, error_body("conflict"), LMServerError, "409"),
        (429, error_body("Rate limit reached"), LMRateLimitError, "Rate limit"),
        (500, error_body("internal"), LMServerError, "500"),
        (502, "<html>Bad gateway</html>", LMServerError, "Bad gateway"),
        (503, error_body("overloaded"), LMServerError, "overloaded"),
    ],
)
def test_status_mapping(status: int, body: Any, error: type[LMError], phrase: str) -> None:
    response = httpx.Response(status, json=body) if isinstance(body, dict) else httpx.Response(status, text=body)
    server = Server(response)
    lm = make(server, retry=False)
    with pytest.raises(error) as info:
        lm.request(prompt="x")
    exc = info.value
    assert type(exc) is error
    message = str(exc)
    assert phrase in message
    assert str(status) in message
    assert "'gpt-test'" in message
    assert "/v1/chat/completions" in message
    assert exc.status == status
    assert exc.model == "gpt-test"
    assert len(server.requests) == 1


@pytest.mark.parametrize(
    ("status", "retryable"),
    [(400, False), (401, False), (404, False), (408, True), (409, True), (429, True), (500, True), (503, True)],
)
def test_which_statuses_are_retried(status: int, retryable: bool) -> None:
    sleeps = Sleeps()
    server = Server(httpx.Response(status, json=error_body("e")), httpx.Response(200, json=ok("recovered")))
    lm = make(server, sleeps)
    if retryable:
        assert lm.request(prompt="x").texts == ["recovered"]
        assert len(server.requests) == 2
        assert len(sleeps.waits) == 1
    else:
        with pytest.raises(LMError):
            lm.request(prompt="x")
        assert len(server.requests) == 1
        assert sleeps.waits == []


def test_missing_key_401_says_how_to_set_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    lm = make(Server(httpx.Response(401, json=error_body("no key"))), api_key=None)
    with pytest.raises(LMAuthenticationError, match="no API key was set"):
        lm.request(prompt="x")


def test_retry_on_429_honours_retry_after_seconds() -> None:
    sleeps = Sleeps()
    server = Server(
        httpx.Response(429, json=error_body("slow down"), headers={"Retry-After": "7"}),
        httpx.Response(200, json=ok("fine")),
    )
    assert make(server, sleeps).request(prompt="x").texts == ["fine"]
    assert sleeps.waits == [7.0]


def test_retry_after_is_capped_by_max_delay() -> None:
    sleeps = Sleeps()
    server = Server(
        httpx.Response(429, json=error_body("slow down"), headers={"Retry-After": "3600"}),
        httpx.Response(200, json=ok("fine")),
    )
    lm = make(server, sleeps, retry=RetryPolicy(sleep=sleeps, max_delay=5))
    lm.request(prompt="x")
    assert sleeps.waits == [5.0]


def test_retry_after_ms_header() -> None:
    sleeps = Sleeps()
    server = Server(
        httpx.Response(429, json=error_body("slow"), headers={"retry-after-ms": "250"}),
        httpx.Response(200, json=ok("fine")),
    )
    make(server, sleeps).request(prompt="x")
    assert sleeps.waits == [0.25]


def test_429_gives_up_after_max_attempts() -> None:
    sleeps = Sleeps()
    server = Server(httpx.Response(429, json=error_body("slow down"), headers={"Retry-After": "1"}))
    lm = make(server, sleeps, retry=RetryPolicy(max_attempts=3, sleep=sleeps))
    with pytest.raises(LMRateLimitError, match="gave up after 3 attempts") as info:
        lm.request(prompt="x")
    assert info.value.retry_after == 1.0
    assert len(server.requests) == 3
    assert sleeps.waits == [1.0, 1.0]


def test_insufficient_quota_is_not_retried() -> None:
    sleeps = Sleeps()
    server = Server(httpx.Response(429, json=error_body("You exceeded your current quota", "insufficient_quota")))
    with pytest.raises(LMRateLimitError, match="quota"):
        make(server, sleeps).request(prompt="x")
    assert len(server.requests) == 1


def test_no_retry_on_401() -> None:
    sleeps = Sleeps()
    server = Server(httpx.Response(401, json=error_body("bad key")), httpx.Response(200, json=ok()))
    with pytest.raises(LMAuthenticationError):
        make(server, sleeps).request(prompt="x")
    assert len(server.requests) == 1
    assert sleeps.waits == []


def test_malformed_json_then_good_is_retried() -> None:
    sleeps = Sleeps()
    server = Server(
        httpx.Response(200, text='{"choices": [', headers={"content-type": "application/json"}),
        httpx.Response(200, json=ok("good")),
    )
    assert make(server, sleeps).request(prompt="x").texts == ["good"]
    assert len(sleeps.waits) == 1


@pytest.mark.parametrize(
    "body", ['{"choices": [', '{"choices": []}', '{"object": "x"}', "[]", '{"choices": [{"index": 0}]}']
)
def test_bad_200_is_a_response_error(body: str) -> None:
    server = Server(httpx.Response(200, text=body))
    with pytest.raises(LMResponseError) as info:
        make(server, retry=False).request(prompt="x")
    assert "'gpt-test'" in str(info.value)
    assert "/chat/completions" in str(info.value)


def test_timeout_maps_to_timeout_error() -> None:
    server = Server(httpx.ReadTimeout("timed out"))
    with pytest.raises(LMTimeoutError, match="no reply within 3 s"):
        make(server, retry=False, timeout=3).request(prompt="x")


@pytest.mark.parametrize(
    "exc",
    [
        httpx.ConnectError("connection refused"),
        httpx.ReadError("connection reset"),
        httpx.RemoteProtocolError("Server disconnected without sending a response."),
    ],
)
def test_connection_errors_map_and_retry(exc: Exception) -> None:
    sleeps = Sleeps()
    server = Server(exc, httpx.Response(200, json=ok("back")))
    assert make(server, sleeps).request(prompt="x").texts == ["back"]
    server2 = Server(exc)
    with pytest.raises(LMConnectionError, match="server is running"):
        make(server2, retry=False).request(prompt="x")


# -- the key never leaks ---------------------------------------------------------


def test_api_key_never_in_repr_or_errors(caplog: pytest.LogCaptureFixture) -> None:
    echo = {"error": {"message": f"Incorrect API key provided: {KEY}. Header was Bearer {KEY}", "code": None}}
    scripts: list[Any] = [
        httpx.Response(401, json=echo),
        httpx.Response(400, json=echo),
        httpx.Response(404, json=echo),
        httpx.Response(500, json=echo),
        httpx.Response(429, json=echo),
        httpx.Response(200, text=f"not json {KEY}"),
        httpx.Response(200, json={"error": KEY}),
        httpx.ConnectError(f"failed with {KEY}"),
        httpx.ReadTimeout(f"timeout {KEY}"),
    ]
    for item in scripts:
        sleeps = Sleeps()
        lm = make(Server(item), sleeps, retry=RetryPolicy(max_attempts=2, sleep=sleeps))
        assert KEY not in repr(lm)
        assert KEY not in str(vars(lm))
        with caplog.at_level(logging.DEBUG), pytest.raises(LMError) as info:
            lm.request(prompt="x")
        text = str(info.value) + repr(info.value) + "".join(str(a) for a in info.value.args)
        assert KEY not in text
        assert "***" in text
        assert info.value.__cause__ is None or KEY not in str(info.value.__cause__)
    assert KEY not in caplog.text


def test_base_url_credentials_not_shown() -> None:
    lm = OpenAILM("m", base_url="https://user:hunter2@llm.test/v1?key=abc", api_key=KEY)
    assert "hunter2" not in repr(lm) and "abc" not in repr(lm)


# -- async -----------------------------------------------------------------------


def test_async_path() -> None:
    server = Server(httpx.Response(200, json=ok("async hi")))
    lm = make(server)

    async def main() -> list[str]:
        async with lm:
            first = await lm.arequest(prompt="x", temperature=0.1)
            texts = await lm.acall("y")
            return first.texts + texts

    assert asyncio.run(main()) == ["async hi", "async hi"]
    assert server.body(0)["temperature"] == 0.1
    assert len(server.requests) == 2


def test_async_retry_and_errors() -> None:
    sleeps = Sleeps()
    server = Server(
        httpx.Response(503, json=error_body("busy")),
        httpx.Response(429, json=error_body("slow"), headers={"Retry-After": "2"}),
        httpx.Response(200, json=ok("finally")),
    )
    lm = make(server, sleeps)
    assert asyncio.run(lm.arequest(prompt="x")).texts == ["finally"]
    assert sleeps.waits[1] == 2.0
    assert len(server.requests) == 3

    bad = make(Server(httpx.Response(401, json=error_body("nope"))), sleeps)
    with pytest.raises(LMAuthenticationError):
        asyncio.run(bad.arequest(prompt="x"))


def test_async_client_per_event_loop() -> None:
    server = Server(httpx.Response(200, json=ok("x")))
    lm = make(server)
    # Two separate asyncio.run calls: two loops, each with its own client.
    asyncio.run(lm.arequest(prompt="a"))
    asyncio.run(lm.arequest(prompt="b"))
    assert len(server.requests) == 2
    lm.close()


def test_async_concurrency() -> None:
    server = Server(lambda r: httpx.Response(200, json=ok(json.loads(r.content)["messages"][0]["content"])))
    lm = make(server, max_concurrency=2)

    async def main() -> list[str]:
        results = await asyncio.gather(*(lm.arequest(prompt=f"p{i}") for i in range(6)))
        return [r.text for r in results]

    assert asyncio.run(main()) == [f"p{i}" for i in range(6)]


# -- lifecycle -------------------------------------------------------------------


def test_close_and_reuse() -> None:
    server = Server(httpx.Response(200, json=ok("x")))
    with make(server) as lm:
        lm.request(prompt="a")
        client = lm.client
        assert lm.client is client  # pooled
    assert lm._client is None
    lm.request(prompt="b")  # reconnects
    assert len(server.requests) == 2
    lm.close()


# -- LiteLLM extra ---------------------------------------------------------------


def test_litellm_missing_extra_has_install_hint(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "litellm", None)  # makes `import litellm` fail even where it is installed
    lm = LM("litellm/anthropic/claude-test", cache=False)
    assert isinstance(lm, LiteLLMLM)
    assert lm.model == "anthropic/claude-test"
    with pytest.raises(ConfigurationError, match=r"pip install 'promptless\[litellm\]'"):
        lm.request(prompt="x")
    with pytest.raises(ConfigurationError, match="litellm"):
        asyncio.run(lm.arequest(prompt="x"))


# -- servers that refuse a structured-output feature -------------------------------------------
# A small HTTP server on 127.0.0.1 answers each request with what a real server does for the fields in
# it: llama-cpp-python 0.3.36's server (500 for response_format json_schema, json_object with a schema
# and grammar accepted), Ollama (400 "invalid JSON schema in format" when it cannot take a schema),
# vLLM (400 BadRequestError, its own error shape, when its structured-output backend cannot take the
# schema; unknown fields such as grammar ignored), OpenAI (400 naming param "response_format"; an
# unknown field refused by name).

LLAMA_CPP_500 = {
    "error": {
        # As llama-cpp-python 0.3.36's server sends it (its traceback lines left out).
        "message": "1 validation error:\n  {'type': 'literal_error', 'loc': ('body', 'response_format', 'type'), "
        "'msg': \"Input should be 'text' or 'json_object'\", 'input': 'json_schema', "
        "'ctx': {'expected': \"'text' or 'json_object'\"}}\n",
        "type": "internal_server_error",
        "param": None,
        "code": None,
    }
}
OLLAMA_400 = {"error": {"message": "invalid JSON schema in format", "type": "invalid_request_error", "param": None,
                        "code": None}}
VLLM_400 = {"object": "error", "message": "The provided JSON schema contains features not supported by xgrammar.",
            "type": "BadRequestError", "param": None, "code": 400}
OPENAI_400 = {"error": {"message": "Invalid parameter: 'response_format' of type 'json_schema' is not supported "
                                   "with this model.", "type": "invalid_request_error", "param": "response_format",
                        "code": None}}
OPENAI_GRAMMAR_400 = {"error": {"message": "Unrecognized request argument supplied: grammar",
                                "type": "invalid_request_error", "param": None, "code": None}}
SCHEMA = {"type": "object", "properties": {"label": {"enum": ["a", "b"], "type": "string"}}, "required": ["label"]}


def llama_cpp_server(body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    rf = body.get("response_format")
    if isinstance(rf, dict) and rf.get("type") not in ("text", "json_object"):
        return 500, LLAMA_CPP_500
    return 200, ok('{"label": "a"}')


def ollama_server(body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    rf = body.get("response_format")
    if isinstance(rf, dict) and rf.get("type") == "json_schema":
        return 400, OLLAMA_400
    return 200, ok('{"label": "a"}')  # json_object is format "json"; an unknown "schema" key is ignored


def vllm_server(body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    if "response_format" in body:  # no structured output for this schema, in either form
        return 400, VLLM_400
    return 200, ok('{"label": "a"}')  # extra fields such as grammar are ignored


def openai_old_model(body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    if "response_format" in body:
        return 400, OPENAI_400
    if "grammar" in body:
        return 400, OPENAI_GRAMMAR_400
    return 200, ok('{"label": "a"}')


class FaultServer:
    """``decide(body) -> (status, json)`` served over real HTTP on 127.0.0.1; every request body is kept."""

    def __init__(self, decide: Callable[[dict[str, Any]], tuple[int, dict[str, Any]]]) -> None:
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        self.bodies: list[dict[str, Any]] = []
        self.statuses: list[int] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)) or b"{}")
                status, reply = decide(body)
                outer.bodies.append(body)
                outer.statuses.append(status)
                data = json.dumps(reply).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base_url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def forms(self) -> list[str]:
        """How each request carried the schema: json_schema, json_object, grammar or none."""
        out = []
        for body in self.bodies:
            rf = body.get("response_format")
            out.append(rf["type"] if isinstance(rf, dict) else "grammar" if "grammar" in body else "none")
        return out


@pytest.fixture
def fault_server() -> Any:
    servers: list[FaultServer] = []

    def start(decide: Callable[[dict[str, Any]], tuple[int, dict[str, Any]]]) -> FaultServer:
        servers.append(FaultServer(decide))
        return servers[-1]

    yield start
    for server in servers:
        server.close()


def real(server: FaultServer, sleeps: Sleeps, **kw: Any) -> OpenAILM:
    kw.setdefault("cache", False)
    kw.setdefault("api_key", "")
    return OpenAILM("served-model", base_url=server.base_url,
                    retry=RetryPolicy(sleep=sleeps, asleep=sleeps.a, jitter=False), **kw)


@pytest.mark.parametrize(
    ("decide", "learned", "first_forms"),
    [
        (llama_cpp_server, "json_object", ["json_schema", "json_object"]),
        (ollama_server, "json_object", ["json_schema", "json_object"]),
        (vllm_server, "grammar", ["json_schema", "json_object", "grammar"]),
        (openai_old_model, "none", ["json_schema", "json_object", "grammar", "none"]),
    ],
    ids=["llama-cpp-python-500", "ollama-400", "vllm-400", "openai-400-param"],
)
def test_a_refused_schema_form_is_learned_once_and_never_resent(
    fault_server: Any, decide: Any, learned: str, first_forms: list[str]
) -> None:
    server = fault_server(decide)
    sleeps = Sleeps()
    lm = real(server, sleeps)
    for _ in range(3):
        assert lm.request(prompt="classify", response_format=SCHEMA).texts == ['{"label": "a"}']
    # The first call walks down once; the later calls go straight to what the server takes.
    assert server.forms() == [*first_forms, learned, learned]
    assert lm.structured_output_mode() == learned
    assert sleeps.waits == []  # a refusal is not a transient fault: no backoff
    assert server.statuses.count(200) == 3
    bodies = [json.dumps(b, sort_keys=True) for b, s in zip(server.bodies, server.statuses, strict=True) if s != 200]
    assert len(bodies) == len(set(bodies))  # no refused request was sent twice
    assert lm.usage.calls == 3


def test_the_json_object_form_carries_the_schema(fault_server: Any) -> None:
    server = fault_server(llama_cpp_server)
    real(server, Sleeps()).request(prompt="q", response_format=SCHEMA)
    assert server.bodies[1]["response_format"] == {"type": "json_object", "schema": SCHEMA}


def test_the_grammar_form_is_built_from_the_schema(fault_server: Any) -> None:
    server = fault_server(vllm_server)
    real(server, Sleeps()).request(prompt="q", response_format=SCHEMA)
    grammar = server.bodies[-1]["grammar"]
    assert "response_format" not in server.bodies[-1]
    assert '"\\"label\\""' in grammar and '"\\"a\\""' in grammar and '"\\"b\\""' in grammar


def test_a_refused_grammar_field_is_dropped_and_remembered(fault_server: Any) -> None:
    server = fault_server(openai_old_model)
    sleeps = Sleeps()
    lm = real(server, sleeps, supports_grammar=True)
    assert lm.request(prompt="q", grammar='root ::= "a"').texts == ['{"label": "a"}']
    assert lm.request(prompt="q", grammar='root ::= "a"').texts == ['{"label": "a"}']
    assert ["grammar" in b for b in server.bodies] == [True, False, False]
    assert server.statuses == [400, 200, 200]
    assert sleeps.waits == []


def test_learning_is_per_lm_and_model(fault_server: Any) -> None:
    server = fault_server(llama_cpp_server)
    first = real(server, Sleeps())
    first.request(prompt="q", response_format=SCHEMA)
    assert first.structured_output_mode() == "json_object"
    assert first.structured_output_mode("another-model") == "json_schema"
    second = real(server, Sleeps())  # a new LM starts from json_schema again
    assert second.structured_output_mode() == "json_schema"


def test_the_async_path_learns_the_same_way(fault_server: Any) -> None:
    server = fault_server(llama_cpp_server)
    sleeps = Sleeps()
    lm = real(server, sleeps)

    async def main() -> list[str]:
        out = []
        for _ in range(2):
            out += (await lm.arequest(prompt="q", response_format=SCHEMA)).texts
        await lm.aclose()
        return out

    assert asyncio.run(main()) == ['{"label": "a"}'] * 2
    assert server.forms() == ["json_schema", "json_object", "json_object"]
    assert sleeps.waits == []


def test_concurrent_calls_learn_without_repeating_requests(fault_server: Any) -> None:
    from concurrent.futures import ThreadPoolExecutor

    server = fault_server(vllm_server)
    lm = real(server, Sleeps(), max_concurrency=4)
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda i: lm.request(prompt=f"q{i}", response_format=SCHEMA).texts, range(8)))
    assert results == [['{"label": "a"}']] * 8
    assert lm.structured_output_mode() == "grammar"
    # Each call sends each refused form at most once, and no form below what it learned.
    per_prompt: dict[str, list[str]] = {}
    for body, form in zip(server.bodies, server.forms(), strict=True):
        per_prompt.setdefault(body["messages"][0]["content"], []).append(form)
    for forms in per_prompt.values():
        assert len(forms) == len(set(forms)) and forms[-1] == "grammar"


@pytest.mark.parametrize(
    ("status", "body", "error"),
    [
        (500, error_body("CUDA out of memory"), LMServerError),
        (400, error_body("Invalid value for 'temperature'"), LMBadRequestError),
        (400, error_body("This model's maximum context length is 4096 tokens (the schema counts)",
                         "context_length_exceeded"), ContextWindowError),
    ],
    ids=["transient-500", "other-400", "context-window"],
)
def test_errors_that_are_not_refusals_are_not_learned(
    fault_server: Any, status: int, body: dict[str, Any], error: type[LMError]
) -> None:
    server = fault_server(lambda _: (status, body))
    sleeps = Sleeps()
    lm = real(server, sleeps)
    with pytest.raises(error):
        lm.request(prompt="q", response_format=SCHEMA)
    assert lm.structured_output_mode() == "json_schema"
    assert set(server.forms()) == {"json_schema"}
    assert len(server.bodies) == (5 if error.retryable else 1)  # retried as before, or not at all


def test_a_refusal_that_learning_cannot_avoid_is_raised_once_not_retried(fault_server: Any) -> None:
    # A response_format the caller put in request.extra is sent as given whatever was learned: the
    # refused request would be identical, so the refusal is raised at once instead of retried.
    from promptless.types import LMRequest, Message

    server = fault_server(llama_cpp_server)
    sleeps = Sleeps()
    lm = real(server, sleeps)
    forced = {"type": "json_schema", "json_schema": {"name": "x", "schema": SCHEMA}}
    request = LMRequest(messages=[Message("user", "q")], extra={"response_format": forced})
    with pytest.raises(LMServerError, match="json_object") as info:
        lm.complete(request)
    assert info.value.retryable is False
    assert len(server.bodies) == 1
    assert sleeps.waits == []


@pytest.mark.parametrize(
    ("setting", "form"),
    [(True, "json_schema"), ("json_object", "json_object"), ("grammar", "grammar"), (False, "none"),
     ("none", "none")],
)
def test_supports_structured_output_picks_the_first_form(fault_server: Any, setting: Any, form: str) -> None:
    server = fault_server(lambda body: (200, ok('{"label": "a"}')))
    real(server, Sleeps(), supports_structured_output=setting).request(prompt="q", response_format=SCHEMA)
    assert server.forms() == [form]


def test_supports_structured_output_rejects_unknown_modes() -> None:
    with pytest.raises(ConfigurationError, match="json_object"):
        OpenAILM("m", base_url=BASE, supports_structured_output="xml")


def test_json_adapter_fallback_through_a_refusing_server(fault_server: Any) -> None:
    # The chat adapter's reply does not parse, its JSON fallback asks with a schema: llama-cpp-python's
    # server refuses json_schema once; every later fallback goes straight to json_object.
    import promptless as pl

    def decide(body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        if "response_format" not in body:
            return 200, ok("I think it is a.")  # no markers: the chat adapter cannot read it
        return llama_cpp_server(body)

    server = fault_server(decide)
    sleeps = Sleeps()
    lm = real(server, sleeps)
    predict = pl.Predict("text -> label: Literal['a', 'b']")
    with pl.context(lm=lm):
        labels = [predict(text=f"item {i}").label for i in range(3)]
    assert labels == ["a", "a", "a"]
    assert server.forms() == ["none", "json_schema", "json_object"] + ["none", "json_object"] * 2
    assert server.statuses.count(500) == 1
    assert sleeps.waits == []


# -- DSPy's spellings and other providers' prefixes --------------------------------------------


def test_dspy_api_base_and_num_retries() -> None:
    lm = LM("openai/gpt-test", api_base=BASE, api_key=KEY, num_retries=2, cache=False)
    assert isinstance(lm, OpenAILM)
    assert lm.base_url == BASE
    assert lm.retry.max_attempts == 3
    assert LM("openai/m", base_url=BASE, api_base=BASE, cache=False).base_url == BASE  # the same: fine
    assert LM("openai/m", base_url=BASE, num_retries=0, cache=False).retry.max_attempts == 1


@pytest.mark.parametrize(
    ("kwargs", "phrase"),
    [
        ({"api_base": "http://a.test/v1", "base_url": "http://b.test/v1"}, "only base_url"),
        ({"num_retries": 2, "retry": False}, "not both"),
        ({"num_retries": -1}, "whole number"),
        ({"num_retries": "3"}, "whole number"),
        ({"model_type": "text"}, "chat models only"),
        ({"model_type": "responses"}, "chat models only"),
        ({"provider": object()}, "prefix"),
        ({"finetuning_model": "x"}, "fine-tune"),
        ({"train_kwargs": {}}, "fine-tune"),
        ({"use_developer_role": True}, "system"),
        ({"max_completion_tokens": 10}, "max_tokens"),
    ],
)
def test_dspy_options_that_do_not_fit_are_refused_clearly(kwargs: dict[str, Any], phrase: str) -> None:
    with pytest.raises(ConfigurationError, match=phrase):
        LM("openai/m", **{"base_url": BASE, **kwargs})


def test_dspy_model_type_chat_is_accepted() -> None:
    assert isinstance(LM("openai/m", base_url=BASE, model_type="chat", cache=False), OpenAILM)


def test_num_retries_is_refused_for_a_model_in_this_process() -> None:
    with pytest.raises(ConfigurationError, match="drop num_retries"):
        LM("local/smollm2-135m", num_retries=3)


@pytest.mark.parametrize("prefix", ["ollama_chat", "ollama"])
def test_ollama_prefixes_use_the_openai_client_at_ollamas_url(
    prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    monkeypatch.setenv("OPENAI_BASE_URL", "https://elsewhere.test/v1")
    lm = LM(f"{prefix}/llama3.2:1b", cache=False)
    assert isinstance(lm, OpenAILM)
    assert lm.model == "llama3.2:1b"
    assert lm.base_url == "http://localhost:11434/v1"
    assert not lm.has_api_key  # the OpenAI key is never sent to Ollama


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("http://gpu-box:11434", "http://gpu-box:11434/v1"),  # DSPy's spelling: Ollama's root
        ("http://gpu-box:11434/", "http://gpu-box:11434/v1"),
        ("http://gpu-box:11434/v1", "http://gpu-box:11434/v1"),
        ("https://proxy.test/ollama/v1", "https://proxy.test/ollama/v1"),
    ],
)
def test_ollama_base_url_or_api_base(given: str, expected: str) -> None:
    assert LM("ollama_chat/llama3.2", api_base=given, api_key="", cache=False).base_url == expected
    assert LM("ollama/llama3.2", base_url=given, cache=False).base_url == expected


def test_ollama_prefix_talks_to_the_server(fault_server: Any) -> None:
    server = fault_server(ollama_server)
    lm = LM("ollama_chat/llama3.2", api_base=server.base_url.removesuffix("/v1"), cache=False)
    assert lm(prompt="hi") == ['{"label": "a"}']
    assert server.bodies[0]["model"] == "llama3.2"


def test_other_providers_without_litellm_say_what_to_install_or_write(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "litellm", None)
    with pytest.raises(ConfigurationError) as info:
        LM("anthropic/claude-3-5-haiku-latest", api_key="x")
    message = str(info.value)
    assert "pip install 'promptless[litellm]'" in message
    assert "'openai/claude-3-5-haiku-latest' with base_url=" in message
    with pytest.raises(ConfigurationError, match="unknown provider 'opnai'"):
        LM("opnai/gpt-4o-mini")


def test_other_providers_go_through_litellm_when_installed(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys
    import types

    fake = types.ModuleType("litellm")
    fake.provider_list = ["anthropic", "some_new_provider"]  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "litellm", fake)
    lm = LM("anthropic/claude-3-5-haiku-latest", api_base="https://proxy.test", num_retries=1, cache=False)
    assert isinstance(lm, LiteLLMLM)
    assert lm.model == "anthropic/claude-3-5-haiku-latest"  # LiteLLM's own model string
    assert lm.base_url == "https://proxy.test"
    assert lm.retry.max_attempts == 2
    assert isinstance(LM("some_new_provider/m", cache=False), LiteLLMLM)  # LiteLLM's list decides
    with pytest.raises(ConfigurationError, match="neither promptless"):
        LM("opnai/gpt-4o-mini")


def test_litellm_refuses_a_malformed_key_and_keeps_no_context(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys
    import types

    with pytest.raises(ConfigurationError, match="ends with a newline") as info:
        LiteLLMLM("anthropic/claude-test", api_key=KEY + "\n")
    assert KEY not in str(info.value)

    class AuthenticationError(Exception):
        status_code = 401

    fake = types.ModuleType("litellm")
    fake.AuthenticationError = AuthenticationError  # type: ignore[attr-defined]

    def completion(**kwargs: Any) -> Any:
        raise AuthenticationError(f"invalid x-api-key {kwargs['api_key']}")

    fake.completion = completion  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "litellm", fake)
    lm = LiteLLMLM("anthropic/claude-test", api_key=KEY, cache=False)
    with pytest.raises(LMAuthenticationError) as err:
        lm.request(prompt="x")
    assert KEY not in str(err.value) and "***" in str(err.value)
    assert err.value.__context__ is None
