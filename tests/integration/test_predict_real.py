"""A Predict through real models: llama.cpp's OpenAI-compatible server and the embedded backend."""

from __future__ import annotations

import itertools
from typing import Literal

import pytest

import promptless as pl

pytestmark = pytest.mark.integration


class Sentiment(pl.Signature):
    """Say whether the sentence is positive or negative."""

    sentence: str = pl.InputField()
    sentiment: Literal["positive", "negative"] = pl.OutputField()


def test_predict_through_openai_compatible_server(llama_server, llama_server_model, tmp_path):
    from promptless.lm.cache import Cache

    lm = pl.LM(f"openai/{llama_server_model}", base_url=llama_server, cache=Cache(tmp_path / "c.sqlite3"),
               max_tokens=64, temperature=0.0, supports_grammar=True)
    predict = pl.Predict(Sentiment, lm=lm, adapter=pl.ChatAdapter(use_grammar=True))
    with pl.track_usage() as usage:
        pred = predict(sentence="I love this wonderful day.")
    assert pred.sentiment in ("positive", "negative")
    assert usage.total.calls == 1 and usage.total.prompt_tokens > 0  # the server applied the grammar
    # The same call again is a cache hit: no new LM call.
    with pl.track_usage() as again:
        predict(sentence="I love this wonderful day.")
    assert again.total.calls == 0 and again.total.cache_hits >= 1


def test_json_adapter_through_server(llama_server, llama_server_model):
    lm = pl.LM(f"openai/{llama_server_model}", base_url=llama_server, cache=False, max_tokens=64,
               temperature=0.0, supports_grammar=True)
    with pl.context(adapter=pl.JSONAdapter()):
        pred = pl.Predict(Sentiment, lm=lm)(sentence="This is the worst meal I ever had.")
    assert pred.sentiment in ("positive", "negative")


SENTENCES = ["I love this wonderful day.", "This is the worst meal I ever had.", "What a great gift!"]


def test_predict_embedded_with_grammar_needs_one_call(smollm2_path):
    lm = pl.LM(f"local/{smollm2_path}", cache=False, max_tokens=48)
    predict = pl.Predict(Sentiment, lm=lm, adapter=pl.ChatAdapter(use_grammar=True))
    sentences = ["I love this wonderful day.", "This is the worst meal I ever had.", "What a great gift!"]
    with pl.track_usage() as usage:
        preds = [predict(sentence=s) for s in sentences]
    assert all(p.sentiment in ("positive", "negative") for p in preds)
    assert usage.total.calls == len(sentences)  # grammar-constrained: every reply parsed first time


def test_predict_embedded_default_grammar_only_for_replies_that_need_it(smollm2_path):
    lm = pl.LM(f"local/{smollm2_path}", cache=False, max_tokens=48, history_size=50)
    predict = pl.Predict(Sentiment, lm=lm)
    with pl.track_usage() as usage:
        preds = [predict(sentence=s) for s in SENTENCES * 2]
    assert all(p.sentiment in ("positive", "negative") for p in preds)  # every reply parsed, at worst on retry
    assert len(SENTENCES) * 2 <= usage.total.calls <= len(SENTENCES) * 4
    # a retry is the same prompt under the grammar; a first attempt is free
    requests = [entry["request"] for entry in lm.history]
    assert requests[0].grammar is None
    for before, after in itertools.pairwise(requests):
        if after.grammar is not None:
            assert before.grammar is None and after.messages == before.messages
