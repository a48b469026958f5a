from __future__ import annotations

import json

import httpx
import pytest

import promptless as pl
from promptless.errors import (
    ConfigurationError,
    LMAuthenticationError,
    LMBadRequestError,
    LMConnectionError,
    LMNotFoundError,
    LMResponseError,
    LMServerError,
)
from promptless.lm.retry import RetryPolicy


def server(calls: list, status: int = 200, body=None):
    def handler(request: httpx.Request) -> httpx.Response:
        payload = json.loads(request.content)
        calls.append({"payload": payload, "auth": request.headers.get("authorization"), "url": str(request.url)})
        if status != 200:
            return httpx.Response(status, json=body or {"error": {"message": "nope"}})
        data = [{"index": i, "embedding": [float(len(t)), float(i)]} for i, t in enumerate(payload["input"])]
        data.reverse()  # servers may return them in any order
        return httpx.Response(200, json={"data": data, "model": payload["model"]})

    return httpx.MockTransport(handler)


def test_openai_compatible_endpoint_batches_and_orders():
    calls: list = []
    emb = pl.Embedder("openai/text-embedding-3-small", base_url="http://127.0.0.1:9/v1", api_key="sk-test",
                      batch_size=2, transport=server(calls), dimensions=2)
    vectors = emb(["a", "bbb", "cc", "dddd", "e"])
    assert vectors == [[1.0, 0.0], [3.0, 1.0], [2.0, 0.0], [4.0, 1.0], [1.0, 0.0]]
    assert [c["payload"]["input"] for c in calls] == [["a", "bbb"], ["cc", "dddd"], ["e"]]
    assert calls[0]["payload"]["model"] == "text-embedding-3-small" and calls[0]["payload"]["dimensions"] == 2
    assert calls[0]["auth"] == "Bearer sk-test" and calls[0]["url"] == "http://127.0.0.1:9/v1/embeddings"
    assert emb("bbb") == [3.0, 1.0]
    assert len(calls) == 3  # cached: no new request
    assert "sk-test" not in repr(emb)


def test_duplicates_are_sent_once_and_key_comes_from_the_environment(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-env")
    monkeypatch.setenv("OPENAI_BASE_URL", "http://127.0.0.1:9/v2")
    calls: list = []
    emb = pl.Embedder("openai/m", transport=server(calls))
    assert emb(["x", "x", "yy"]) == [[1.0, 0.0], [1.0, 0.0], [2.0, 1.0]]
    assert calls[0]["payload"]["input"] == ["x", "yy"] and calls[0]["auth"] == "Bearer sk-env"
    assert calls[0]["url"].startswith("http://127.0.0.1:9/v2/")


@pytest.mark.parametrize(("status", "error"), [(401, LMAuthenticationError), (404, LMNotFoundError),
                                               (400, LMBadRequestError), (503, LMServerError)])
def test_http_errors_map_to_the_error_classes(status, error):
    calls: list = []
    emb = pl.Embedder("openai/m", base_url="http://127.0.0.1:9/v1", api_key="sk-secret", retry=False,
                      transport=server(calls, status, {"error": {"message": "bad key sk-secret"}}))
    with pytest.raises(error) as info:
        emb(["x"])
    assert "sk-secret" not in str(info.value) and "/embeddings" in str(info.value)


def test_server_errors_are_retried():
    calls: list = []
    state = {"n": 0}
    ok = server(calls)

    def flaky(request):
        state["n"] += 1
        if state["n"] == 1:
            return httpx.Response(500, json={"error": {"message": "boom"}})
        return ok.handle_request(request)

    emb = pl.Embedder("openai/m", base_url="http://127.0.0.1:9/v1", transport=httpx.MockTransport(flaky),
                      retry=RetryPolicy(max_attempts=3, initial_delay=0, jitter=False, sleep=lambda s: None))
    assert emb(["ab"]) == [[2.0, 0.0]] and state["n"] == 2


def test_malformed_replies_and_connection_failures():
    emb = pl.Embedder("openai/m", base_url="http://127.0.0.1:9/v1", retry=False,
                      transport=httpx.MockTransport(lambda r: httpx.Response(200, json={"data": "?"})))
    with pytest.raises(LMResponseError, match="not an embeddings reply"):
        emb(["x"])

    def refuse(request):
        raise httpx.ConnectError("connection refused")

    emb = pl.Embedder("openai/m", base_url="http://127.0.0.1:9/v1", retry=False,
                      transport=httpx.MockTransport(refuse))
    with pytest.raises(LMConnectionError, match="check that the server runs"):
        emb(["x"])


def test_function_embedder_and_configuration_errors():
    emb = pl.Embedder(lambda texts: [[1.0, float(len(t))] for t in texts])
    assert emb(["abc"]) == [[1.0, 3.0]]
    with pytest.raises(ConfigurationError, match="provider prefix"):
        pl.Embedder("text-embedding-3-small")
    with pytest.raises(ConfigurationError, match="unknown embedding provider"):
        pl.Embedder("cohere/embed")
    with pytest.raises(ConfigurationError, match="unknown local embedding model"):
        pl.Embedder("local/no-such-model")("x")
    bad = pl.Embedder(lambda texts: [[1.0]])
    with pytest.raises(LMResponseError, match="returned 1 vectors for 2 texts"):
        bad(["a", "b"])


def test_local_backend_option_is_checked():
    with pytest.raises(ConfigurationError, match="backend"):
        pl.Embedder("local/all-MiniLM-L6-v2", backend="onnx")


def test_wordpiece_tokenizer(tmp_path):
    from promptless.minilm import WordPiece

    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "the", "battle", "of", "has", "##ting", "##s", ",", "cafe", "東"]
    (tmp_path / "vocab.txt").write_text("\n".join(vocab) + "\n", encoding="utf-8")
    wp = WordPiece(tmp_path / "vocab.txt")
    ids = wp.ids("The Battle of  Hastings, CAFÉ 東xyz")
    assert [vocab[i] for i in ids] == ["[CLS]", "the", "battle", "of", "has", "##ting", "##s", ",", "cafe", "東",
                                       "[UNK]", "[SEP]"]
    assert len(wp.ids("the " * 1000)) == 256 and wp.ids("")[-1] == 3


def _call(client):
    return client(["x"]) if isinstance(client, pl.Embedder) else client("x")


@pytest.mark.parametrize("kind", ["embedder", "chat"])
def test_the_embedder_maps_errors_as_the_chat_client_does(kind):
    """One status -> error mapping (lm/_http.py) for both clients: Retry-After, quota, context, no key in text."""
    from promptless.errors import ContextWindowError, LMRateLimitError
    from promptless.lm.openai import OpenAILM

    def make(status, body, headers=None):
        transport = httpx.MockTransport(lambda request: httpx.Response(status, json=body, headers=headers or {}))
        if kind == "embedder":
            return pl.Embedder("openai/m", base_url="http://127.0.0.1:9/v1", api_key="sk-secret", retry=False,
                               transport=transport)
        return OpenAILM("m", base_url="http://127.0.0.1:9/v1", api_key="sk-secret", retry=False, transport=transport)

    with pytest.raises(LMRateLimitError) as info:
        _call(make(429, {"error": {"message": "slow down, sk-secret", "code": "rate_limit_exceeded"}},
                   {"retry-after": "7"}))
    assert info.value.retry_after == 7.0 and info.value.retryable and "sk-secret" not in str(info.value)
    with pytest.raises(LMRateLimitError) as info:
        _call(make(429, {"error": {"message": "You exceeded your current quota", "code": "insufficient_quota"}}))
    assert not info.value.retryable
    with pytest.raises(ContextWindowError, match="maximum context length"):
        _call(make(400, {"error": {"message": "This model's maximum context length is 8192 tokens"}}))
