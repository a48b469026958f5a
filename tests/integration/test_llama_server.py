"""llama.cpp's OpenAI-compatible server, started on 127.0.0.1 by the test session."""

from __future__ import annotations

import json

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
