"""OpenAILM against a real HTTP server on 127.0.0.1 that misbehaves on cue.

Each test scripts what the server does for each request in turn (an error
status, a slow reply, malformed JSON, a dropped connection, then a good
reply) and checks that retries recover where they should, that the final
errors are clear, and that nothing but a good reply ever lands in the cache.
"""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from collections import deque
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from promptless.errors import LMAuthenticationError, LMConnectionError, LMServerError, LMTimeoutError
from promptless.lm.cache import Cache
from promptless.lm.openai import OpenAILM
from promptless.lm.retry import RetryPolicy
from promptless.types import LMRequest, Message

pytestmark = pytest.mark.integration

KEY = "sk-fault-test-KEY-9f8e7d6c5b4a"
CLIENT_TIMEOUT = 0.5


def completion(text: str) -> dict[str, Any]:
    return {
        "id": "chatcmpl-x",
        "object": "chat.completion",
        "model": "fault-model",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 5, "completion_tokens": 2, "total_tokens": 7},
    }


def error(message: str) -> dict[str, Any]:
    return {"error": {"message": message, "type": "server_error", "code": None}}


class ScriptedServer:
    """A threaded HTTP server whose replies follow a script, one action per request.

    Actions: ``{"status": int, "json": obj, "headers": {...}}``, ``{"raw": bytes}``
    (a 200 with that body), ``{"delay": seconds, ...}`` (wait first), ``{"drop": True}``
    (close the connection without replying). Once the script is used up, every
    request gets a good reply.
    """

    def __init__(self) -> None:
        self.script: deque[dict[str, Any]] = deque()
        self.requests: list[dict[str, Any]] = []
        self.lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:  # keep test output quiet
                pass

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length) or b"{}")
                with outer.lock:
                    outer.requests.append({"path": self.path, "body": body, "auth": self.headers.get("Authorization")})
                    action = outer.script.popleft() if outer.script else {"status": 200, "json": completion("good")}
                if action.get("delay"):
                    time.sleep(action["delay"])
                if action.get("drop"):
                    self.close_connection = True
                    try:
                        self.connection.shutdown(socket.SHUT_RDWR)
                    except OSError:
                        pass
                    return
                payload = action["raw"] if "raw" in action else json.dumps(action.get("json", {})).encode()
                try:
                    self.send_response(action.get("status", 200))
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(payload)))
                    for name, value in action.get("headers", {}).items():
                        self.send_header(name, value)
                    self.end_headers()
                    self.wfile.write(payload)
                except OSError:  # the client gave up (timeout) and closed its end
                    self.close_connection = True

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.httpd.handle_error = lambda request, client_address: None  # type: ignore[method-assign]
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    @property
    def base_url(self) -> str:
        host, port = self.httpd.server_address[:2]
        return f"http://{host}:{port}/v1"

    def start(self) -> ScriptedServer:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=5)

    def then(self, *actions: dict[str, Any]) -> None:
        with self.lock:
            self.script.extend(actions)


@pytest.fixture
def server() -> Iterator[ScriptedServer]:
    srv = ScriptedServer().start()
    try:
        yield srv
    finally:
        srv.stop()
    assert not srv.thread.is_alive()


class RecordingSleep:
    """Records the waits the policy asks for and sleeps a little, for real."""

    def __init__(self) -> None:
        self.waits: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)
        time.sleep(min(seconds, 0.02))

    async def a(self, seconds: float) -> None:
        self.waits.append(seconds)
        await asyncio.sleep(min(seconds, 0.02))


@pytest.fixture
def cache(tmp_path: Path) -> Iterator[Cache]:
    c = Cache(tmp_path / "cache.sqlite3")
    yield c
    c.close()


def make_lm(server: ScriptedServer, cache: Cache, sleep: RecordingSleep, **kw: Any) -> OpenAILM:
    retry = kw.pop("retry", None) or RetryPolicy(
        max_attempts=4, initial_delay=0.01, max_delay=5.0, max_total=10.0, sleep=sleep, asleep=sleep.a
    )
    return OpenAILM(
        "fault-model", base_url=server.base_url, api_key=KEY, timeout=CLIENT_TIMEOUT, retry=retry, cache=cache, **kw
    )


MESSAGES = [{"role": "user", "content": "what is 2+2?"}]


def cached_texts(lm: OpenAILM, cache: Cache) -> list[str] | None:
    key = lm._cache_key(LMRequest(messages=[Message("user", "what is 2+2?")]))
    hit = cache.get(key)
    return None if hit is None else hit["texts"]


def assert_cache_holds_only_good(lm: OpenAILM, cache: Cache) -> None:
    assert len(cache) == 1
    assert cached_texts(lm, cache) == ["good"]


# -- recoveries ------------------------------------------------------------------


def test_429_with_retry_after_then_200(server: ScriptedServer, cache: Cache) -> None:
    sleep = RecordingSleep()
    server.then({"status": 429, "json": error("Rate limit reached"), "headers": {"Retry-After": "2"}})
    with make_lm(server, cache, sleep) as lm:
        resp = lm.request(MESSAGES)
    assert resp.texts == ["good"]
    assert sleep.waits == [2.0]
    assert len(server.requests) == 2
    assert server.requests[0]["path"] == "/v1/chat/completions"
    assert server.requests[0]["auth"] == f"Bearer {KEY}"
    assert_cache_holds_only_good(lm, cache)


def test_500_500_then_200(server: ScriptedServer, cache: Cache) -> None:
    sleep = RecordingSleep()
    server.then({"status": 500, "json": error("boom")}, {"status": 500, "json": error("boom again")})
    with make_lm(server, cache, sleep) as lm:
        assert lm.request(MESSAGES).texts == ["good"]
        # A second identical call is answered from the cache: no new request.
        again = lm.request(MESSAGES)
    assert again.cached
    assert len(sleep.waits) == 2
    assert len(server.requests) == 3
    assert_cache_holds_only_good(lm, cache)


def test_slow_reply_then_fast(server: ScriptedServer, cache: Cache) -> None:
    sleep = RecordingSleep()
    server.then({"delay": CLIENT_TIMEOUT * 2, "status": 200, "json": completion("too late")})
    with make_lm(server, cache, sleep) as lm:
        assert lm.request(MESSAGES).texts == ["good"]
    assert len(sleep.waits) == 1
    assert_cache_holds_only_good(lm, cache)


def test_malformed_json_then_good(server: ScriptedServer, cache: Cache) -> None:
    sleep = RecordingSleep()
    server.then({"raw": b'{"choices": [{"index": 0, "message": {"content": "trunc'})
    with make_lm(server, cache, sleep) as lm:
        assert lm.request(MESSAGES).texts == ["good"]
    assert len(sleep.waits) == 1
    assert_cache_holds_only_good(lm, cache)


def test_dropped_connection_then_good(server: ScriptedServer, cache: Cache) -> None:
    sleep = RecordingSleep()
    server.then({"drop": True})
    with make_lm(server, cache, sleep) as lm:
        assert lm.request(MESSAGES).texts == ["good"]
    assert len(sleep.waits) == 1
    assert len(server.requests) == 2
    assert_cache_holds_only_good(lm, cache)


def test_async_recovers_too(server: ScriptedServer, cache: Cache) -> None:
    sleep = RecordingSleep()
    server.then({"status": 503, "json": error("overloaded")}, {"drop": True})
    lm = make_lm(server, cache, sleep)

    async def main() -> list[str]:
        async with lm:
            return (await lm.arequest(MESSAGES)).texts

    assert asyncio.run(main()) == ["good"]
    assert len(sleep.waits) == 2
    assert_cache_holds_only_good(lm, cache)


# -- failures that stay failures -------------------------------------------------


def test_401_is_not_retried_and_says_what_to_do(server: ScriptedServer, cache: Cache) -> None:
    sleep = RecordingSleep()
    server.then({"status": 401, "json": error(f"Incorrect API key provided: {KEY}")})
    with make_lm(server, cache, sleep) as lm, pytest.raises(LMAuthenticationError) as info:
        lm.request(MESSAGES)
    message = str(info.value)
    assert "401" in message and "OPENAI_API_KEY" in message and "/v1/chat/completions" in message
    assert "Incorrect API key provided" in message
    assert KEY not in message
    assert sleep.waits == []
    assert len(server.requests) == 1
    assert len(cache) == 0


def test_persistent_500_gives_up_clearly(server: ScriptedServer, cache: Cache) -> None:
    sleep = RecordingSleep()
    server.then(*[{"status": 500, "json": error("database on fire")}] * 4)
    with make_lm(server, cache, sleep) as lm, pytest.raises(LMServerError) as info:
        lm.request(MESSAGES)
    message = str(info.value)
    assert "500" in message and "database on fire" in message and "'fault-model'" in message
    assert "gave up after 4 attempts" in message
    assert len(server.requests) == 4
    assert len(cache) == 0


def test_persistent_timeout_gives_up_clearly(server: ScriptedServer, cache: Cache) -> None:
    sleep = RecordingSleep()
    server.then(*[{"delay": CLIENT_TIMEOUT * 2, "json": completion("late")}] * 2)
    retry = RetryPolicy(max_attempts=2, initial_delay=0.01, sleep=sleep)
    with make_lm(server, cache, sleep, retry=retry) as lm, pytest.raises(LMTimeoutError) as info:
        lm.request(MESSAGES)
    assert f"no reply within {CLIENT_TIMEOUT:g} s" in str(info.value)
    assert "gave up after 2 attempts" in str(info.value)
    assert len(cache) == 0


def test_nothing_listening_is_a_connection_error(cache: Cache) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # free now that it is closed below
    sleep = RecordingSleep()
    lm = OpenAILM(
        "fault-model",
        base_url=f"http://127.0.0.1:{port}/v1",
        timeout=CLIENT_TIMEOUT,
        retry=RetryPolicy(max_attempts=2, initial_delay=0.01, sleep=sleep),
        cache=cache,
    )
    with lm, pytest.raises(LMConnectionError, match="server is running"):
        lm.request(MESSAGES)
    assert len(sleep.waits) == 1
    assert len(cache) == 0
