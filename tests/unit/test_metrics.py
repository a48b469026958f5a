"""The metrics: normalisation, exact match, token F1, contains, the DSPy-style helpers and the registry."""

from __future__ import annotations

import pytest

import promptless as pl
from promptless.errors import ConfigurationError
from promptless.evaluate import metrics as m


def ex(**kw):
    return pl.Example(question="q", **kw).with_inputs("question")


def test_normalize_text_steps():
    assert m.normalize_text("  The Battle of  Hastings!  ") == "battle of hastings"
    assert m.normalize_text("Café—Crème") == "cafecreme"
    assert m.normalize_text("The End.", strip_articles=False) == "the end"
    assert m.normalize_text("The End.", lowercase=False) == "End"
    assert m.normalize_text("x-y, z", strip_punctuation=False) == "x-y, z"
    assert m.normalize_text("a-b", strip_punctuation=False) == "-b"  # "a" is an article
    assert m.normalize_text(42) == "42"


def test_exact_match_normalises_by_default():
    assert m.exact_match(ex(answer="The Eiffel Tower"), pl.Prediction(answer="eiffel tower.")) is True
    assert m.exact_match(ex(answer="Paris"), pl.Prediction(answer="Paris, France")) is False
    strict = m.ExactMatch("answer", normalize=False)
    assert strict(ex(answer="Paris"), pl.Prediction(answer=" Paris ")) is True
    assert strict(ex(answer="Paris"), pl.Prediction(answer="paris")) is False
    cased = m.ExactMatch("answer", lowercase=False)
    assert cased(ex(answer="Paris"), pl.Prediction(answer="paris")) is False


def test_exact_match_values_and_gold_lists():
    assert m.exact_match(ex(answer=3), pl.Prediction(answer="3"))
    assert m.exact_match(ex(answer=0.5), pl.Prediction(answer=0.5))
    assert m.exact_match(ex(answer=True), pl.Prediction(answer=True))
    assert not m.exact_match(ex(answer=2), pl.Prediction(answer=3))
    assert m.exact_match(ex(answer=["NYC", "New York City"]), pl.Prediction(answer="new york city"))


def test_field_none_compares_every_shared_label():
    example = ex(category="War", year=1066, note="not predicted")
    assert m.exact_match(example, pl.Prediction(category="war", year=1066, extra="x"))
    assert not m.exact_match(example, pl.Prediction(category="war", year=1067))
    assert m.exact_match(example, pl.Prediction(category="war", year=1067), field="category")
    assert m.f1_score(example, pl.Prediction(category="war", year=1067)) == 0.5
    with pytest.raises(ConfigurationError, match="no field in common"):
        m.exact_match(example, pl.Prediction(answer="war"))
    with pytest.raises(ConfigurationError, match="prediction has no field 'category'"):
        m.exact_match(example, pl.Prediction(answer="war"), field="category")
    with pytest.raises(ConfigurationError, match="example has no field 'answer'"):
        m.exact_match(example, pl.Prediction(answer="war"), field="answer")


def test_plain_dicts_work_too():
    assert m.exact_match({"answer": "Rome"}, {"answer": "rome"}, field="answer")


def test_token_f1():
    assert m.token_f1("a b c", "a b c") == 1.0
    assert m.token_f1("a b", "c d") == 0.0
    assert m.token_f1("", "") == 1.0 and m.token_f1("a", "") == 0.0
    # precision 2/4, recall 2/2
    assert m.token_f1("william conqueror", "william the great conqueror") == pytest.approx(2 * 0.5 * 1 / 1.5)
    score = m.f1_score(ex(answer="William the Conqueror"), pl.Prediction(answer="William, the Norman"))
    assert score == pytest.approx(0.5)  # tokens after normalisation: [william, conqueror] vs [william, norman]
    assert m.F1("answer")(ex(answer=["x y", "norman william"]), pl.Prediction(answer="William, the Norman")) == 1.0


def test_contains():
    assert m.contains(ex(answer="Hastings"), pl.Prediction(answer="The Battle of Hastings, 1066"))
    assert not m.contains(ex(answer="Hast"), pl.Prediction(answer="The Battle of Hastings"))
    assert m.Contains("answer")(ex(answer="1066"), pl.Prediction(answer="in 1066."))


def test_answer_helpers_like_dspy():
    assert m.answer_exact_match(ex(answer="Paris"), pl.Prediction(answer="paris"))
    assert m.answer_exact_match(ex(answer=["Lyon", "Paris"]), pl.Prediction(answer="Paris!"))
    assert not m.answer_exact_match(ex(answer="the city of Paris"), pl.Prediction(answer="Paris"))
    assert m.answer_exact_match(ex(answer="the city of Paris"), pl.Prediction(answer="Paris city"), frac=0.5)
    pred = pl.Prediction(context=["Rome is in Italy.", "Paris is the capital of France."], answer="x")
    assert m.answer_passage_match(ex(answer="paris"), pred)
    assert not m.answer_passage_match(ex(answer="Berlin"), pred)


def test_registry():
    assert isinstance(m.get_metric("exact"), m.ExactMatch)
    f1 = m.get_metric("F1", field="answer")
    assert isinstance(f1, m.F1) and f1.field == "answer" and f1.__name__ == "f1(answer)"
    assert isinstance(m.get_metric("contains"), m.Contains)
    assert set(m.METRICS) >= {"exact", "f1", "contains"}
    with pytest.raises(ConfigurationError, match="unknown metric 'bleu'"):
        m.get_metric("bleu")


def test_public_names():
    assert pl.evaluate.exact_match is m.exact_match
    assert pl.evaluate.answer_exact_match is m.answer_exact_match
    assert pl.Evaluate is pl.evaluate.Evaluate


def test_category_match():
    from promptless.tasks import category_match

    gold = pl.Example(event="e", category="Wars and Conflicts").with_inputs("event")
    assert category_match(gold, pl.Prediction(category="wars and conflicts "))
    assert not category_match(gold, pl.Prediction(category="Politics and Governance"))
    assert not category_match(gold, pl.Prediction(answer="Wars and Conflicts"))
    assert category_match(gold, {"category": "Wars and Conflicts"})
