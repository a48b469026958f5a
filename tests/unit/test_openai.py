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
