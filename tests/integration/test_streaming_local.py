"""Streaming from the embedded llama.cpp model (smollm2-135m), token by token."""

from __future__ import annotations

from pathlib import Path

import pytest

import promptless as pl
from promptless.lm.local import LocalLM
from promptless.streaming import StreamListener, StreamResponse
from promptless.types import LMRequest, Message

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def lm(smollm2_path: Path) -> LocalLM:
    return LocalLM(str(smollm2_path), n_ctx=2048, cache=False, max_tokens=48)


def test_the_model_streams_pieces_that_make_up_its_reply(lm: LocalLM) -> None:
    request = LMRequest(messages=[Message("user", "Name three colours.")], max_tokens=24, temperature=0.0)
    pieces: list[str] = []
    streamed = lm.stream_complete(request, pieces.append)
    whole = lm.complete(request)
    assert len(pieces) > 3 and "".join(pieces) == streamed.texts[0]
    assert streamed.texts[0] == whole.texts[0]  # greedy: the same reply, streamed or not
    assert streamed.usage.completion_tokens == len(pieces)
    assert 0 < streamed.usage.prompt_tokens <= whole.usage.prompt_tokens + 2


def test_streamify_cuts_a_field_out_of_a_constrained_reply(lm: LocalLM) -> None:
    # The marker grammar makes even this small model write the headers, so the listener has a field to find.
    predict = pl.Predict("question -> answer", lm=lm, adapter=pl.ChatAdapter(use_grammar=True))
    program = pl.streamify(predict, stream_listeners=[StreamListener(signature_field_name="answer")])
    items = list(program(question="What colour is the sky on a clear day?"))
    final = items[-1]
    assert isinstance(final, pl.Prediction)
    chunks = [i for i in items if isinstance(i, StreamResponse)]
    assert chunks and chunks[-1].is_last_chunk
    assert "".join(c.chunk for c in chunks) == final.answer


def test_llama_cpp_server_streams_over_server_sent_events(llama_server: str, llama_server_model: str) -> None:
    lm = pl.LM(f"openai/{llama_server_model}", api_base=llama_server, api_key="", cache=False, max_tokens=24,
               temperature=0.0)
    request = LMRequest(messages=[Message("user", "Name three colours.")], max_tokens=24, temperature=0.0)
    pieces: list[str] = []
    streamed = lm.stream_complete(request, pieces.append)
    whole = lm.complete(request)
    assert len(pieces) > 3 and "".join(pieces) == streamed.texts[0] == whole.texts[0]
    # llama-cpp-python's server sends no usage when streaming: each piece (one token) is counted instead
    assert streamed.usage.completion_tokens == len(pieces)
