from __future__ import annotations

import copy

import pytest

import promptless as pl

WORDS = ["battle", "war", "king", "election", "vote", "moon", "rocket"]


def bag_of_words(texts):
    return [[float(t.lower().count(w)) for w in WORDS] for t in texts]


CORPUS = [
    "The battle of Hastings, a war for the crown of a king",
    "An election: the first vote for women",
    "The rocket reached the moon",
    "A king is crowned",
]


@pytest.mark.parametrize("use_numpy", [True, False])
def test_nearest_entries_best_first(use_numpy):
    r = pl.Retriever(pl.Embedder(bag_of_words), CORPUS, k=2, use_numpy=use_numpy)
    hits = r("which war had a battle?")
    assert hits.passages[0] == CORPUS[0] and hits.indices[0] == 0
    assert len(hits.passages) == 2 and hits.scores[0] >= hits.scores[1]
    assert r("moon rocket", k=1).indices == [2]
    assert r("vote").passages == [CORPUS[1], CORPUS[0]]  # ties (all zero) keep corpus order
    assert pytest.approx(r.scores("moon")[2], rel=1e-5) == 1 / 2 ** 0.5


def test_records_with_a_key_and_k_larger_than_the_corpus():
    records = [pl.Example(text=t, id=i) for i, t in enumerate(CORPUS)]
    r = pl.Retriever(bag_of_words, records, k=10, key="text")
    hits = r("election vote")
    assert hits.passages[0].id == 1 and len(hits.passages) == 4
    with pytest.raises(pl.ConfigurationError, match="key='field'"):
        pl.Retriever(bag_of_words, records)
    with pytest.raises(pl.ConfigurationError, match="no field 'body'"):
        pl.Retriever(bag_of_words, records, key="body")


def test_empty_corpus_and_sharing():
    r = pl.Retriever(bag_of_words, [], k=3)
    assert r("x").passages == []
    assert copy.deepcopy(r) is r
    with pytest.raises(pl.ConfigurationError, match="k must be"):
        pl.Retriever(bag_of_words, CORPUS, k=0)
