"""Streaming internals: the server-sent-events client's edge cases and the listener's cutting of marker text."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

import promptless as pl
from promptless.errors import LMBadRequestError, LMResponseError
from promptless.lm.openai import OpenAILM
from promptless.lm.retry import RetryPolicy
from promptless.streaming import StreamListener
from promptless.types import LMRequest, Message


def sse(*events: Any) -> httpx.Response:
    body = "".join(f"data: {e if isinstance(e, str) else json.dumps(e)}\n\n" for e in events)
    return httpx.Response(200, headers={"content-type": "text/event-stream"}, content=body.encode())


def piece(text: str) -> dict[str, Any]:
    return {"choices": [{"index": 0, "delta": {"content": text}, "finish_reason": None}]}


def client(handler: Any, **kw: Any) -> OpenAILM:
    kw.setdefault("retry", RetryPolicy(sleep=lambda s: None, jitter=False))
    return OpenAILM("m", base_url="http://llm.test/v1", api_key="", cache=False,
                    transport=httpx.MockTransport(handler), **kw)


REQUEST = LMRequest(messages=[Message("user", "hi")])


def test_events_are_joined_and_comments_and_other_choices_skipped():
    def handler(request: httpx.Request) -> httpx.Response:
        return sse(piece("Hel"), {"choices": [{"index": 1, "delta": {"content": "other"}}]}, piece("lo"),
                   {"choices": [{"index": 0, "delta": {}, "finish_reason": "length"}]}, "[DONE]", piece("after"))

    got: list[str] = []
    resp = client(handler).stream_complete(REQUEST, got.append)
    assert got == ["Hel", "lo"] and resp.texts == ["Hello"] and resp.finish_reasons == ["length"]


def test_an_error_event_after_text_is_not_retried():
    calls = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(1)
        return sse(piece("partial"), {"error": {"message": "model crashed"}})

    with pytest.raises(LMResponseError, match="model crashed"):
        client(handler).stream_complete(REQUEST, lambda text: None)
    assert len(calls) == 1  # the caller has seen "partial": asking again would repeat it


def test_a_failure_before_any_text_is_retried():
    replies = [httpx.Response(503, json={"error": {"message": "busy"}}), sse(piece("ok"), "[DONE]")]

    def handler(request: httpx.Request) -> httpx.Response:
        return replies.pop(0)

    assert client(handler).stream_complete(REQUEST, lambda text: None).texts == ["ok"]


def test_a_server_that_answers_in_one_piece_still_streams_it():
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={"choices": [{"index": 0, "message": {"content": "whole"},
                                                      "finish_reason": "stop"}]})

    got: list[str] = []
    assert client(handler).stream_complete(REQUEST, got.append).texts == ["whole"] and got == ["whole"]


def test_a_refused_stream_options_field_is_dropped_and_remembered():
    bodies: list[dict[str, Any]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        bodies.append(body)
        if "stream_options" in body:
            return httpx.Response(400, json={"error": {"message": "Unrecognized request argument: stream_options"}})
        return sse(piece("fine"), "[DONE]")

    lm = client(handler)
    assert lm.stream_complete(REQUEST, lambda text: None).texts == ["fine"]
    assert lm.stream_complete(REQUEST, lambda text: None).texts == ["fine"]
    assert ["stream_options" in b for b in bodies] == [True, False, False]


def test_another_bad_request_is_raised():
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(400, json={"error": {"message": "bad messages"}})

    with pytest.raises(LMBadRequestError, match="bad messages"):
        client(handler).stream_complete(REQUEST, lambda text: None)


@pytest.mark.parametrize(
    ("pieces", "answer"),
    [
        (["[[ ## answer ## ]]\n", "Yes", "\n\n[[ ## completed ## ]]"], "Yes"),
        (["[", "[ ##", " answ", "er ## ]", "]\n  ", "a [b] [[c", "]] d\n", "\n[[ ## comp"], "a [b] [[c]] d"),
        (["[[ ## answer ## ]]\nunfinished reply [[ ## ans"], "unfinished reply"),  # the model stopped mid-header
        (["[[ ## Answer ## ]]\nspacing differs\n[[ ## completed ## ]]"], "spacing differs"),
        (["[[ ## other ## ]]\nx\n[[ ## completed ## ]]"], None),
    ],
)
def test_the_listener_cuts_the_field_out_of_any_split_of_the_reply(pieces: list[str], answer: str | None):
    listener = StreamListener("answer")
    out = []
    for p in pieces:
        out += listener._receive(1, p)
    out += listener._end(1)
    if answer is None:
        assert out == []
    else:
        assert "".join(c.chunk for c in out) == answer and out[-1].is_last_chunk
        assert sum(c.is_last_chunk for c in out) == 1


def test_a_listener_without_reuse_streams_its_field_once_per_run():
    lm = pl.ScriptedLM(["[[ ## answer ## ]]\nfirst\n\n[[ ## completed ## ]]",
                        "[[ ## answer ## ]]\nsecond\n\n[[ ## completed ## ]]"])

    class Twice(pl.Module):
        def __init__(self) -> None:
            super().__init__()
            self.p = pl.Predict("q -> answer", lm=lm)

        def forward(self, q):
            self.p(q=q)
            return self.p(q=q + "!")

    once = pl.streamify(Twice(), stream_listeners=[StreamListener("answer")])
    texts = [i.chunk for i in once(q="x") if hasattr(i, "chunk")]
    assert "".join(texts) == "first"
    again = pl.streamify(Twice(), stream_listeners=[StreamListener("answer", allow_reuse=True)])
    texts = [i.chunk for i in again(q="x") if hasattr(i, "chunk")]
    assert "".join(texts) == "firstsecond"


def test_a_stream_without_usage_counts_one_token_a_piece():
    def handler(request: httpx.Request) -> httpx.Response:
        return sse(piece("a"), piece("b"), piece("c"), "[DONE]")

    usage = client(handler).stream_complete(REQUEST, lambda text: None).usage
    assert usage.completion_tokens == 3 and usage.prompt_tokens == 0
