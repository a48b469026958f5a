"""The OpenAI-compatible client against a misbehaving server on 127.0.0.1, and against malformed keys.

The chaos server speaks HTTP/1.1 over a raw socket so that it can do what a well-behaved server
library would not: trickle the status line, the headers or the body a byte at a time, reset the
connection half-way, or send a reply whose JSON breaks the chat completions protocol. Each case
below failed on promptless 0.1.0 (a trickle ran for a minute under timeout=1, a string ``index``
raised TypeError, a malformed key reached the wire or leaked through an exception).
"""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from promptless.errors import (
    ConfigurationError,
    LMConnectionError,
    LMError,
    LMResponseError,
    LMTimeoutError,
)
from promptless.lm.openai import OpenAILM

GOOD_KEY = "sk-reliability-0123456789abcdefXYZ"
TIMEOUT = 1.0
# A trickled reply that a per-read timeout never stops takes TRICKLE_STEP * its length: 0.25 s a byte.
TRICKLE_STEP = 0.25
# Generous for a busy 2-core machine, and still far below what a trickle takes unbounded (> 15 s).
DEADLINE_SLACK = 1.5


def completion(text: str = "fine", **choice: Any) -> dict[str, Any]:
    return {
        "id": "chatcmpl-r",
        "object": "chat.completion",
        "model": "chaos-model",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop",
                     **choice}],
        "usage": {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4},
    }


def http_reply(body: bytes, status: str = "200 OK") -> tuple[bytes, bytes]:
    head = (
        f"HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode()
    return head, body


Action = Callable[[socket.socket], None]


def send(body: bytes | dict[str, Any], status: str = "200 OK") -> Action:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()

    def act(conn: socket.socket) -> None:
        head, payload = http_reply(raw, status)
        conn.sendall(head + payload)

    return act


def trickle(part: str, step: float = TRICKLE_STEP) -> Action:
    """A good reply whose headers (``part="head"``) or body (``"body"``) arrive one byte per ``step``."""

    def act(conn: socket.socket) -> None:
        head, body = http_reply(json.dumps(completion("x" * 40)).encode())
        if part == "body":
            conn.sendall(head)
            slow = body
        else:
            slow = head + body
        for i in range(len(slow)):
            conn.sendall(slow[i : i + 1])
            time.sleep(step)

    return act


def silent(seconds: float) -> Action:
    def act(conn: socket.socket) -> None:
        time.sleep(seconds)

    return act


def reset_mid_body(conn: socket.socket) -> None:
    head, body = http_reply(json.dumps(completion()).encode())
    conn.sendall(head + body[:10])
    reset(conn)


def reset(conn: socket.socket) -> None:
    """Close with a TCP reset (linger on, zero seconds)."""
    conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    conn.close()


class ChaosServer:
    """A threaded HTTP/1.1 server on 127.0.0.1 that answers each request with the next scripted action.

    Once the script is used up every request gets a good completion. ``requests`` holds what arrived:
    the request line, the headers (lower-cased names) and the decoded JSON body.
    """

    def __init__(self) -> None:
        self.script: list[Action] = []
        self.requests: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(16)
        self.port = self._sock.getsockname()[1]
        self.base_url = f"http://127.0.0.1:{self.port}/v1"
        self._stopping = False
        self._threads: list[threading.Thread] = []
        self._conns: list[socket.socket] = []
        accept = threading.Thread(target=self._accept, daemon=True)
        accept.start()
        self._threads.append(accept)

    def _accept(self) -> None:
        while not self._stopping:
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return
            with self._lock:
                self._conns.append(conn)
            t = threading.Thread(target=self._serve, args=(conn,), daemon=True)
            t.start()

    def _read_request(self, conn: socket.socket, buf: bytes) -> tuple[dict[str, Any] | None, bytes]:
        while b"\r\n\r\n" not in buf:
            chunk = conn.recv(65536)
            if not chunk:
                return None, b""
            buf += chunk
        head, _, rest = buf.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
        length = int(headers.get("content-length") or 0)
        while len(rest) < length:
            chunk = conn.recv(65536)
            if not chunk:
                return None, b""
            rest += chunk
        body = json.loads(rest[:length] or b"{}")
        return {"line": lines[0], "headers": headers, "body": body}, rest[length:]

    def _serve(self, conn: socket.socket) -> None:
        buf = b""
        try:
            while not self._stopping:
                request, buf = self._read_request(conn, buf)
                if request is None:
                    return
                with self._lock:
                    self.requests.append(request)
                    action = self.script.pop(0) if self.script else send(completion())
                action(conn)
        except OSError:
            pass
        finally:
            conn.close()

    def stop(self) -> None:
        self._stopping = True
        self._sock.close()
        with self._lock:
            conns = list(self._conns)
        for conn in conns:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            conn.close()


@pytest.fixture
def chaos() -> Iterator[ChaosServer]:
    server = ChaosServer()
    try:
        yield server
    finally:
        server.stop()


def lm_for(server: ChaosServer, **kw: Any) -> OpenAILM:
    kw.setdefault("api_key", GOOD_KEY)
    kw.setdefault("timeout", TIMEOUT)
    kw.setdefault("retry", False)
    kw.setdefault("cache", False)
    return OpenAILM("chaos-model", base_url=server.base_url, **kw)


def timed(fn: Callable[[], Any]) -> tuple[BaseException | None, float]:
    started = time.monotonic()
    try:
        fn()
    except BaseException as exc:  # returned to the test
        return exc, time.monotonic() - started
    return None, time.monotonic() - started


# -- the timeout is a deadline for the whole request ---------------------------------------------------


@pytest.mark.parametrize("part", ["body", "head"])
def test_trickling_reply_ends_at_the_deadline(chaos: ChaosServer, part: str) -> None:
    chaos.script = [trickle(part)]
    lm = lm_for(chaos)
    exc, elapsed = timed(lambda: lm.request(prompt="x"))
    assert isinstance(exc, LMTimeoutError), exc
    assert elapsed < TIMEOUT + DEADLINE_SLACK, f"a {part} trickle ran {elapsed:.1f} s under timeout={TIMEOUT}"
    assert "no reply within 1 s" in str(exc) and "whole request" in str(exc)
    assert exc.__context__ is None and exc.__cause__ is None


@pytest.mark.parametrize("part", ["body", "head"])
def test_trickling_reply_ends_at_the_deadline_async(chaos: ChaosServer, part: str) -> None:
    chaos.script = [trickle(part)]
    lm = lm_for(chaos)
    exc, elapsed = timed(lambda: asyncio.run(lm.arequest(prompt="x")))
    assert isinstance(exc, LMTimeoutError), exc
    assert elapsed < TIMEOUT + DEADLINE_SLACK
    assert exc.__context__ is None


def test_a_reply_within_the_deadline_is_not_cut(chaos: ChaosServer) -> None:
    # Slow but inside the deadline: 0.3 s of silence, then a reply trickled over ~0.3 s.
    def slow_but_in_time(conn: socket.socket) -> None:
        time.sleep(0.3)
        head, body = http_reply(json.dumps(completion("in time")).encode())
        conn.sendall(head)
        for i in range(0, len(body), 40):
            conn.sendall(body[i : i + 40])
            time.sleep(0.05)

    chaos.script = [slow_but_in_time]
    lm = lm_for(chaos, timeout=5.0)
    assert lm.request(prompt="x").texts == ["in time"]


def test_the_client_recovers_after_a_deadline(chaos: ChaosServer) -> None:
    chaos.script = [trickle("body")]
    lm = lm_for(chaos)
    with pytest.raises(LMTimeoutError):
        lm.request(prompt="x")
    assert lm.request(prompt="y").texts == ["fine"]  # a fresh connection, a fresh deadline
    assert len(chaos.requests) == 2


def test_each_retry_gets_its_own_deadline_and_the_retries_are_bounded(chaos: ChaosServer) -> None:
    from promptless.lm.retry import RetryPolicy

    chaos.script = [trickle("body"), silent(5.0)]
    lm = lm_for(chaos, retry=RetryPolicy(max_attempts=3, initial_delay=0.0, jitter=False))
    started = time.monotonic()
    assert lm.request(prompt="x").texts == ["fine"]
    assert time.monotonic() - started < 2 * TIMEOUT + 2 * DEADLINE_SLACK
    assert len(chaos.requests) == 3


def test_the_sync_client_enforces_the_deadline_below_httpx() -> None:
    # The deadline lives in the connection pool's network backend; an httpx/httpcore upgrade that
    # moves the pool must fail here rather than silently bring the per-read timeout back.
    from promptless.lm.openai import _DeadlineBackend

    lm = OpenAILM("m", base_url="http://127.0.0.1:9/v1", api_key="", cache=False)
    pool = lm.client._transport._pool  # type: ignore[attr-defined]
    assert isinstance(pool._network_backend, _DeadlineBackend)
    lm.close()


# -- replies that break the protocol -----------------------------------------------------------------


@pytest.mark.parametrize("index", ["0", None, 1.5, True, [0], {"i": 0}])
def test_a_choice_index_that_is_not_a_whole_number_is_a_response_error(chaos: ChaosServer, index: Any) -> None:
    chaos.script = [send(completion(index=index))]
    with pytest.raises(LMResponseError, match="index") as info:
        lm_for(chaos).request(prompt="x")
    assert "chaos-model" in str(info.value)


def test_mixed_indexes_are_a_response_error(chaos: ChaosServer) -> None:
    body = completion()
    body["choices"].append({"index": "1", "message": {"role": "assistant", "content": "b"}, "finish_reason": "stop"})
    chaos.script = [send(body)]
    with pytest.raises(LMResponseError, match="index"):
        lm_for(chaos).request(prompt="x")


def test_missing_indexes_keep_the_order_sent(chaos: ChaosServer) -> None:
    body = completion("a")
    body["choices"].append({"message": {"role": "assistant", "content": "b"}, "finish_reason": "stop"})
    del body["choices"][0]["index"]
    chaos.script = [send(body)]
    assert lm_for(chaos).request(prompt="x", n=2).texts == ["a", "b"]


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"{",
        b"[" * 100_000 + b"]" * 100_000,  # nested past the JSON parser's recursion limit
        json.dumps({"choices": "none"}).encode(),
        json.dumps({"choices": [42]}).encode(),
        json.dumps({"choices": [{"index": 0, "message": "hi"}]}).encode(),
    ],
    ids=["empty", "truncated", "deeply-nested", "choices-not-a-list", "choice-not-an-object", "message-not-an-object"],
)
def test_malformed_bodies_are_response_errors(chaos: ChaosServer, body: bytes) -> None:
    chaos.script = [send(body)]
    with pytest.raises(LMResponseError) as info:
        lm_for(chaos).request(prompt="x")
    assert info.value.__context__ is None


def test_odd_usage_and_finish_values_do_not_break_a_good_reply(chaos: ChaosServer) -> None:
    body = completion("ok", finish_reason=7)
    body["usage"] = {"prompt_tokens": "many", "completion_tokens": 1e999}
    body["model"] = ["not", "a", "name"]
    chaos.script = [send(json.dumps(body).replace("Infinity", "1e999").encode())]
    resp = lm_for(chaos).request(prompt="x")
    assert resp.texts == ["ok"]
    assert resp.usage.prompt_tokens == 0 and resp.usage.completion_tokens == 0
    assert resp.finish_reasons == [""]
    assert resp.model == "chaos-model"


def test_a_reset_mid_body_is_a_connection_error(chaos: ChaosServer) -> None:
    chaos.script = [reset_mid_body]
    with pytest.raises(LMConnectionError) as info:
        lm_for(chaos).request(prompt="x")
    assert info.value.__context__ is None


# -- malformed keys: a ConfigurationError before any request, with no part of the key -------------------

BAD_KEYS = {
    "non-ascii": "sk-ünïcode-0123456789abcdefSECRETPART",
    "typographic-dash": "sk-proj\u2013abcdef0123456789SECRETPART",
    "trailing-newline": "sk-newline-0123456789abcdefSECRETPART\n",
    "trailing-crlf": "sk-crlf-0123456789abcdefSECRETPART\r\n",
    "leading-space": " sk-space-0123456789abcdefSECRETPART",
    "inner-tab": "sk-tab\t0123456789abcdefSECRETPART",
    "control-char": "sk-ctrl\x070123456789abcdefSECRETPART",
}


def _leaks(key: str, text: str) -> bool:
    """Whether ``text`` holds the key or any 8-character piece of it."""
    key = key.strip()
    return any(key[i : i + 8] in text for i in range(len(key) - 7))


def _everything_said(exc: BaseException) -> str:
    parts = [str(exc), repr(exc), *(str(a) for a in exc.args)]
    for linked in (exc.__context__, exc.__cause__):
        if linked is not None:
            parts += [str(linked), repr(linked)]
    return "\n".join(parts)


@pytest.mark.parametrize("name", sorted(BAD_KEYS))
def test_a_malformed_key_is_refused_at_construction(
    chaos: ChaosServer, name: str, caplog: pytest.LogCaptureFixture
) -> None:
    key = BAD_KEYS[name]
    with caplog.at_level(logging.DEBUG), pytest.raises(ConfigurationError) as info:
        lm_for(chaos, api_key=key)
    said = _everything_said(info.value)
    assert "API key" in said and "api_key=" in said
    assert not _leaks(key, said), said
    assert not _leaks(key, caplog.text)
    assert chaos.requests == []


@pytest.mark.parametrize("name", sorted(BAD_KEYS))
def test_a_malformed_key_from_the_environment_is_refused(
    chaos: ChaosServer, name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    key = BAD_KEYS[name]
    monkeypatch.setenv("OPENAI_API_KEY", key)
    with pytest.raises(ConfigurationError, match=r"\$OPENAI_API_KEY") as info:
        OpenAILM("chaos-model", base_url=chaos.base_url, cache=False)
    assert not _leaks(key, _everything_said(info.value))
    assert chaos.requests == []


@pytest.mark.parametrize(
    ("name", "phrase"),
    [("trailing-newline", "ends with a newline"), ("leading-space", "starts with a space"),
     ("non-ascii", "non-ASCII"), ("inner-tab", "inside it")],
)
def test_the_error_names_the_problem(name: str, phrase: str) -> None:
    with pytest.raises(ConfigurationError, match=phrase):
        OpenAILM("m", base_url="http://127.0.0.1:9/v1", api_key=BAD_KEYS[name], cache=False)


def test_a_malformed_key_never_reaches_httpcore_or_its_log(
    chaos: ChaosServer, caplog: pytest.LogCaptureFixture
) -> None:
    # The whole round trip at DEBUG (httpcore logs there) with a good key: nothing of the key in any
    # log line; and with a newline key: refused before httpx is ever involved.
    with caplog.at_level(logging.DEBUG):
        assert lm_for(chaos).request(prompt="x").texts == ["fine"]
        with pytest.raises(ConfigurationError):
            lm_for(chaos, api_key=BAD_KEYS["trailing-newline"])
    assert not _leaks(GOOD_KEY, caplog.text)
    assert not _leaks(BAD_KEYS["trailing-newline"], caplog.text)
    assert len(chaos.requests) == 1
    assert chaos.requests[0]["headers"]["authorization"] == f"Bearer {GOOD_KEY}"


def test_an_empty_key_means_no_key(chaos: ChaosServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "")
    lm = OpenAILM("chaos-model", base_url=chaos.base_url, cache=False, retry=False)
    assert lm.request(prompt="x").texts == ["fine"]
    assert "authorization" not in chaos.requests[0]["headers"]


@pytest.mark.parametrize("value", ["caf\u00e9", "two\nlines", " padded"])
def test_a_header_http_cannot_carry_is_refused_without_its_value(value: str) -> None:
    with pytest.raises(ConfigurationError, match="X-Team") as info:
        OpenAILM("m", base_url="http://127.0.0.1:9/v1", api_key="", headers={"X-Team": value}, cache=False)
    assert value not in str(info.value)


def test_errors_keep_no_httpx_exception_as_context(chaos: ChaosServer) -> None:
    # A server that closes at once: the connection error must not carry httpx's exception (and what it
    # says about the request) along as __context__.
    chaos.script = [reset]
    with pytest.raises(LMError) as info:
        lm_for(chaos).request(prompt="x")
    assert info.value.__context__ is None
    assert GOOD_KEY not in _everything_said(info.value)
