"""LabeledFewShot, BootstrapFewShot and BootstrapFewShotWithRandomSearch with scripted LMs."""

from __future__ import annotations

import re

import pytest

import promptless as pl
from promptless.errors import ConfigurationError, PromptlessError
from promptless.optimize import BootstrapFewShot, BootstrapFewShotWithRandomSearch, LabeledFewShot

CATS = ["Wars and Conflicts", "Science and Innovation", "Economic Events", "Politics and Governance"]


class Classify(pl.Signature):
    """Classify the event."""

    event: str = pl.InputField()
    category: str = pl.OutputField()


def make_data(n: int, start: int = 0, easy_every: int = 0) -> list[pl.Example]:
    out = []
    for i in range(start, start + n):
        text = f"event number {i}" + (" (easy)" if easy_every and i % easy_every == 0 else "")
        out.append(pl.Example(event=text, category=CATS[i % 4]).with_inputs("event"))
    return out


def field(messages, name: str) -> str:
    return re.search(rf"\[\[ ## {name} ## \]\]\n(.*?)(?:\n\n|\Z)", messages[-1].content, re.S).group(1).strip()


def n_demos(messages) -> int:
    return (len(messages) - 2) // 2


def wrong(label: str) -> str:
    return CATS[(CATS.index(label) + 1) % 4]


def demo_lm(gold: dict[str, str], rule) -> pl.ScriptedLM:
    """Answers right when ``rule(event, n_demos, messages)`` holds."""

    def fn(messages):
        event = field(messages, "event")
        label = gold[event] if rule(event, n_demos(messages), messages) else wrong(gold[event])
        return f"[[ ## category ## ]]\n{label}\n\n[[ ## completed ## ]]"

    return pl.ScriptedLM(fn)


def metric(example, pred, trace=None):
    return example.category == pred.category


def gold_of(*sets) -> dict[str, str]:
    return {ex.event: ex.category for s in sets for ex in s}


# -- LabeledFewShot ------------------------------------------------------------------------------------------


def test_labeled_fewshot_makes_no_call_without_a_valset():
    train = make_data(10)
    lm = pl.ScriptedLM(["unused"])
    out = LabeledFewShot(k=3).compile(pl.Predict(Classify, lm=lm), trainset=train)
    assert len(out.demos) == 3 and all(d in train for d in out.demos)
    assert lm.requests == []
    again = LabeledFewShot(k=3).compile(pl.Predict(Classify, lm=lm), trainset=train)
    assert [d.event for d in again.demos] == [d.event for d in out.demos]  # seeded
    first = LabeledFewShot(k=3, sample=False).compile(pl.Predict(Classify, lm=lm), trainset=train)
    assert [d.event for d in first.demos] == [d.event for d in train[:3]]


def test_labeled_fewshot_improves_a_program_that_needs_demos():
    train, dev = make_data(10), make_data(12, start=100)
    lm = demo_lm(gold_of(train, dev), lambda e, n, m: n >= 2)
    out = LabeledFewShot(k=2, metric=metric).compile(pl.Predict(Classify, lm=lm), trainset=train, valset=dev)
    assert out.optimization.baseline_score == 0.0 and out.optimization.final_score == 100.0
    assert LabeledFewShot(k=0).compile(pl.Predict(Classify, lm=lm), trainset=train).demos == []


def test_labeled_fewshot_gives_every_predictor_the_demos():
    class Two(pl.Module):
        def __init__(self):
            self.a = pl.Predict(Classify)
            self.b = pl.Predict(Classify)

        def forward(self, event):
            return self.b(event=self.a(event=event).category)

    out = LabeledFewShot(k=4).compile(Two(), trainset=make_data(8))
    assert len(out.a.demos) == 4 and len(out.b.demos) == 4


# -- BootstrapFewShot ----------------------------------------------------------------------------------------


def test_bootstrap_keeps_only_traces_that_pass_the_metric():
    train, dev = make_data(20, easy_every=5), make_data(12, start=100)
    # right zero-shot on "(easy)" events only; right on everything with at least one demo
    lm = demo_lm(gold_of(train, dev), lambda e, n, m: "(easy)" in e or n >= 1)
    opt = BootstrapFewShot(metric=metric, max_bootstrapped_demos=3, max_labeled_demos=0)
    out = opt.compile(pl.Predict(Classify, lm=lm), trainset=train, valset=dev)
    assert len(out.demos) == 3
    assert all("(easy)" in d.event for d in out.demos)  # the traces that failed were dropped
    assert all(d.category == gold_of(train)[d.event] for d in out.demos)
    assert out.demos[0].input_keys == frozenset({"event"})
    assert out.optimization.baseline_score == 0.0 and out.optimization.final_score == 100.0


def test_bootstrap_fills_up_with_labelled_examples():
    train = make_data(20, easy_every=5)
    lm = demo_lm(gold_of(train), lambda e, n, m: "(easy)" in e)
    # holdout=None: keep the demos without checking that they help (they do not, with this LM)
    out = BootstrapFewShot(metric=metric, max_bootstrapped_demos=2, max_labeled_demos=5, holdout=None).compile(
        pl.Predict(Classify, lm=lm), trainset=train)
    assert len(out.demos) == 5
    assert sum("(easy)" in d.event for d in out.demos[:2]) == 2
    assert len({d.event for d in out.demos}) == 5  # labelled ones are other examples


def test_bootstrap_metric_threshold():
    train = make_data(8)
    lm = demo_lm(gold_of(train), lambda e, n, m: True)
    half = lambda e, p, t=None: 0.5  # noqa: E731
    strict = BootstrapFewShot(metric=half, metric_threshold=0.9, max_bootstrapped_demos=2, max_labeled_demos=0)
    assert strict.compile(pl.Predict(Classify, lm=lm), trainset=train).demos == []
    loose = BootstrapFewShot(metric=half, metric_threshold=0.5, max_bootstrapped_demos=2, max_labeled_demos=0)
    assert len(loose.compile(pl.Predict(Classify, lm=lm), trainset=train).demos) == 2


class Topic(pl.Signature):
    """Name the topic of the event."""

    event: str = pl.InputField()
    topic: str = pl.OutputField()


class FromTopic(pl.Signature):
    """Classify the event given its topic."""

    event: str = pl.InputField()
    topic: str = pl.InputField()
    category: str = pl.OutputField()


class TwoStep(pl.Module):
    def __init__(self, lm=None):
        self.topic = pl.Predict(Topic, lm=lm)
        self.classify = pl.Predict(FromTopic, lm=lm)

    def forward(self, event):
        t = self.topic(event=event).topic
        return self.classify(event=event, topic=t)


def test_bootstrap_gives_demos_to_every_predictor_of_a_multi_step_program():
    train = make_data(10)
    gold = gold_of(train)

    def fn(messages):
        if "- category" in messages[0].content:  # the classify step
            label = gold[field(messages, "event")]
            return f"[[ ## category ## ]]\n{label}\n\n[[ ## completed ## ]]"
        return f"[[ ## topic ## ]]\ntopic of {field(messages, 'event')}\n\n[[ ## completed ## ]]"

    lm = pl.ScriptedLM(fn)
    out = BootstrapFewShot(metric=metric, max_bootstrapped_demos=2, max_labeled_demos=0, holdout=None).compile(
        TwoStep(lm), trainset=train)
    assert [d.topic for d in out.topic.demos] == [f"topic of {d.event}" for d in train[:2]]
    assert set(out.topic.demos[0].keys()) == {"event", "topic"}
    assert out.topic.demos[0].input_keys == frozenset({"event"})
    assert [d.category for d in out.classify.demos] == [d.category for d in train[:2]]
    assert out.classify.demos[0].input_keys == frozenset({"event", "topic"})
    assert out.classify.demos[0].topic == f"topic of {train[0].event}"


def test_later_rounds_sample_at_temperature_one_with_a_fresh_rollout():
    train = make_data(6)
    gold = gold_of(train)

    class Sampling(pl.ScriptedLM):
        def complete(self, request):
            self.seen.append((request.temperature, request.rollout_id))
            return super().complete(request)

    def fn(messages):
        return f"[[ ## category ## ]]\n{wrong(gold[field(messages, 'event')])}\n\n[[ ## completed ## ]]"

    lm = Sampling(fn)
    lm.seen = []
    # a second LM call answers right only when sampled (temperature 1.0)
    right = Sampling(lambda m: f"[[ ## category ## ]]\n{gold[field(m, 'event')]}\n\n[[ ## completed ## ]]")
    right.seen = []

    class Switch(pl.ScriptedLM):
        def request(self, messages=None, **params):
            target = right if params.get("temperature") == 1.0 else lm
            return target.request(messages, **params)

    out = BootstrapFewShot(metric=metric, max_bootstrapped_demos=2, max_labeled_demos=0, max_rounds=2).compile(
        pl.Predict(Classify, lm=Switch(["x"])), trainset=train)
    assert len(out.demos) == 2
    assert lm.seen and all(t is None for t, _ in lm.seen)  # round 1: the predictor's own settings
    assert right.seen and all(t == 1.0 and r == "bootstrap-round-1" for t, r in right.seen)


def test_teacher_must_line_up_with_student():
    with pytest.raises(ConfigurationError, match="line up"):
        BootstrapFewShot(metric=metric).compile(pl.Predict(Classify), trainset=make_data(3), teacher=TwoStep())


def test_max_errors_stops_bootstrapping_with_a_clear_error():
    lm = pl.ScriptedLM(["garbage without markers [[ ## nope ## ]]"])
    with pytest.raises(PromptlessError, match="max_errors=1"):
        BootstrapFewShot(metric=metric, max_errors=1, max_labeled_demos=0).compile(
            pl.Predict(Classify, lm=lm), trainset=make_data(5))


def test_a_custom_teacher_makes_the_traces():
    train = make_data(8)
    gold = gold_of(train)
    weak = demo_lm(gold, lambda e, n, m: False)
    strong = demo_lm(gold, lambda e, n, m: True)
    out = BootstrapFewShot(metric=metric, max_bootstrapped_demos=2, max_labeled_demos=0).compile(
        pl.Predict(Classify, lm=weak), trainset=train, teacher=pl.Predict(Classify, lm=strong))
    assert len(out.demos) == 2 and weak.requests == []
    assert out.lm is weak  # the student keeps its own LM


# -- random search ---------------------------------------------------------------------------------------------


def test_random_search_finds_the_one_demo_set_that_works():
    train, dev = make_data(24, easy_every=1), make_data(16, start=100)
    # bootstrapping always succeeds; the task is solved only with exactly two demos
    lm = demo_lm(gold_of(train, dev), lambda e, n, m: n == 2 or ("(easy)" in e and n == 0))
    opt = BootstrapFewShotWithRandomSearch(metric, num_candidate_programs=8, max_bootstrapped_demos=4,
                                           max_labeled_demos=0, seed=0)
    out = opt.compile(pl.Predict(Classify, lm=lm), trainset=train, valset=dev)
    r = out.optimization
    assert len(out.demos) == 2
    assert r.baseline_score == 0.0 and r.final_score == 100.0
    labels = [t.params.get("label") for t in r.trials if t.kind == "candidate"]
    assert "zero-shot" in labels and "bootstrap" in labels and len(labels) >= 5
    scores = {t.params.get("label"): t.score for t in r.trials if t.kind == "candidate"}
    assert scores["bootstrap"] == 0.0  # the unshuffled four-demo set does not work: a search was needed


def test_random_search_keeps_the_starting_program_on_ties():
    train, dev = make_data(8, easy_every=1), make_data(8, start=100)
    lm = demo_lm(gold_of(train, dev), lambda e, n, m: "(easy)" in e)
    student = pl.Predict(Classify, lm=lm)
    out = BootstrapFewShotWithRandomSearch(metric, num_candidate_programs=2, max_bootstrapped_demos=2,
                                           max_labeled_demos=2).compile(student, trainset=train, valset=dev)
    assert out.demos == [] and out.optimization.final_score == out.optimization.baseline_score


def test_random_search_is_deterministic():
    train, dev = make_data(16, easy_every=2), make_data(12, start=100)
    gold = gold_of(train, dev)
    results = []
    for _ in range(2):
        lm = demo_lm(gold, lambda e, n, m: n == 3 or "(easy)" in e)
        out = BootstrapFewShotWithRandomSearch(metric, num_candidate_programs=5, max_bootstrapped_demos=4,
                                               max_labeled_demos=4, seed=3).compile(
            pl.Predict(Classify, lm=lm), trainset=train, valset=dev)
        results.append(([d.event for d in out.demos], [(t.params, t.score) for t in out.optimization.trials]))
    assert results[0] == results[1]
