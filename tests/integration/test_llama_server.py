"""llama.cpp's OpenAI-compatible server, started on 127.0.0.1 by the test session."""

from __future__ import annotations

import json
from collections.abc import Iterator

import httpx
import pytest

pytestmark = pytest.mark.integration


def test_server_lists_the_model(llama_server: str, llama_server_model: str) -> None:
    resp = httpx.get(f"{llama_server}/models", timeout=10.0)
    assert resp.status_code == 200
    ids = [m["id"] for m in resp.json()["data"]]
    assert llama_server_model in ids


def test_chat_completion(llama_server: str, llama_server_model: str) -> None:
    body = {
        "model": llama_server_model,
        "messages": [
            {"role": "system", "content": "You are a concise assistant."},
            {"role": "user", "content": "What is the capital of France? Answer in one short sentence."},
        ],
        "temperature": 0.0,
        "max_tokens": 32,
    }
    resp = httpx.post(f"{llama_server}/chat/completions", json=body, timeout=120.0)
    assert resp.status_code == 200, resp.text
    data = resp.json()
    choice = data["choices"][0]
    assert choice["message"]["role"] == "assistant"
    assert "Paris" in choice["message"]["content"]
    assert choice["finish_reason"] in {"stop", "length"}
    assert data["usage"]["prompt_tokens"] > 5
    assert data["usage"]["completion_tokens"] > 0


def test_chat_completion_with_json_schema(llama_server: str, llama_server_model: str) -> None:
    schema = {
        "type": "object",
        "properties": {"answer": {"type": "string"}, "confidence": {"type": "number"}},
        "required": ["answer", "confidence"],
    }
    body = {
        "model": llama_server_model,
        "messages": [{"role": "user", "content": "What is the capital of France? Reply in JSON."}],
        "temperature": 0.0,
        "max_tokens": 64,
        "response_format": {"type": "json_object", "schema": schema},
    }
    resp = httpx.post(f"{llama_server}/chat/completions", json=body, timeout=120.0)
    assert resp.status_code == 200, resp.text
    data = json.loads(resp.json()["choices"][0]["message"]["content"])
    assert set(data) == {"answer", "confidence"}


def test_max_tokens_reports_length(llama_server: str, llama_server_model: str) -> None:
    body = {
        "model": llama_server_model,
        "messages": [{"role": "user", "content": "Count from one to one hundred in words."}],
        "temperature": 0.0,
        "max_tokens": 4,
    }
    resp = httpx.post(f"{llama_server}/chat/completions", json=body, timeout=120.0)
    assert resp.status_code == 200, resp.text
    data = resp.json()
    assert data["choices"][0]["finish_reason"] == "length"
    assert data["usage"]["completion_tokens"] == 4


# -- promptless through the server: refused request features are learned, never retried ------------------


class CountingProxy:
    """A pass-through HTTP proxy on 127.0.0.1 in front of the server: it records every request body
    and the status the server gave, so the test counts what really went over the wire."""

    def __init__(self, upstream: str) -> None:
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        self.exchanges: list[tuple[dict, int]] = []
        self.lock = threading.Lock()
        outer = self
        client = httpx.Client(timeout=300.0)

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: object) -> None:
                pass

            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                reply = client.post(upstream + self.path.removeprefix("/v1"), content=raw,
                                    headers={"Content-Type": "application/json"})
                with outer.lock:
                    outer.exchanges.append((json.loads(raw), reply.status_code))
                self.send_response(reply.status_code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(reply.content)))
                self.end_headers()
                self.wfile.write(reply.content)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base_url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()
        self.client = client

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.client.close()

    def refused(self) -> list[tuple[dict, int]]:
        return [(body, status) for body, status in self.exchanges if status != 200]


@pytest.fixture
def proxy(llama_server: str) -> Iterator[CountingProxy]:
    p = CountingProxy(llama_server)
    try:
        yield p
    finally:
        p.close()


def test_json_schema_refusal_is_learned_once(proxy: CountingProxy, llama_server_model: str) -> None:
    """The server answers response_format json_schema with a 500; promptless steps to json_object with
    the schema (which the server takes) at once, and sends json_object from then on."""
    from promptless.lm import LM
    from promptless.lm.retry import RetryPolicy

    waits: list[float] = []
    lm = LM(f"openai/{llama_server_model}", base_url=proxy.base_url, api_key="", cache=False,
            temperature=0.0, max_tokens=48, retry=RetryPolicy(sleep=waits.append))
    schema = {"type": "object", "properties": {"answer": {"type": "string"}}, "required": ["answer"]}
    for question in ("What is the capital of France?", "What is the capital of Italy?"):
        reply = lm.request(prompt=f"{question} Reply in JSON.", response_format=schema)
        assert set(json.loads(reply.text)) == {"answer"}
    forms = [body.get("response_format", {}).get("type") for body, _ in proxy.exchanges]
    assert forms == ["json_schema", "json_object", "json_object"]
    assert [status for _, status in proxy.exchanges] == [500, 200, 200]
    assert lm.structured_output_mode() == "json_object"
    assert waits == []  # no backoff for a refusal


# Classification through the server with promptless defaults (chat adapter, its JSON fallback, default
# retries). The measurement used 140 events and the 1.5B model; the test runs a few with
# smollm2-135m, whose replies miss the marker format often, so the JSON fallback is exercised.
CLASSIFY_EVENTS = 6


def test_classification_loses_nothing_to_refused_features(proxy: CountingProxy, llama_server_model: str) -> None:
    import promptless as pl
    from promptless.errors import LMError, ParseError
    from promptless.tasks import load_events, make_classifier

    lm = pl.LM(f"openai/{llama_server_model}", base_url=proxy.base_url, api_key="", cache=False,
               temperature=0.0, max_tokens=96)
    classify = make_classifier(lm=lm)
    lm_errors: list[str] = []
    other_errors = 0
    for example in load_events("dev", CLASSIFY_EVENTS):
        try:
            classify(event=example.event)
        except LMError as exc:
            lm_errors.append(f"{type(exc).__name__}: {exc}")
        except ParseError:
            other_errors += 1  # a reply that does not parse even as JSON: the model's doing, not the server's
    assert lm_errors == []
    refused = proxy.refused()
    # At most the one refusal that teaches the client (only if some reply needed the JSON fallback).
    assert len(refused) <= 1, [status for _, status in refused]
    fallback_forms = [body["response_format"]["type"] for body, _ in proxy.exchanges if "response_format" in body]
    assert fallback_forms, "no reply needed the JSON fallback: the test did not exercise what it is for"
    assert fallback_forms[0] == "json_schema"
    assert set(fallback_forms[1:]) <= {"json_object"}
    assert [status for _, status in refused] == [500]
    bodies = [json.dumps(body, sort_keys=True) for body, _ in proxy.exchanges]
    repeated = [b for b in set(bodies) if bodies.count(b) > 1]
    assert repeated == []  # no request was sent twice
