"""Selection that generalizes: the paired test, the held-out split, and every optimizer's pick through them."""

from __future__ import annotations

import re
from typing import Literal

import pytest

import promptless as pl
from promptless.errors import ConfigurationError
from promptless.optimize import (
    BootstrapFewShot,
    BootstrapFewShotWithRandomSearch,
    MIPROv2,
    write_report,
)
from promptless.optimize.budget import Budget, GuardedLM
from promptless.optimize.knn import KNNProgram
from promptless.optimize.proposer import confusion_text, label_guide
from promptless.optimize.selection import (
    HoldoutSplit,
    PairedTest,
    holdout_size,
    paired_test,
    split_folds,
    split_holdout,
)

CATS = ["Wars and Conflicts", "Science and Innovation", "Economic Events", "Politics and Governance"]


class Classify(pl.Signature):
    """Classify the event."""

    event: str = pl.InputField()
    category: str = pl.OutputField()


class Pick(pl.Signature):
    """Classify the event."""

    event: str = pl.InputField()
    category: Literal["Wars and Conflicts", "Science and Innovation", "Economic Events", "Politics and Governance"] = \
        pl.OutputField()


def make_data(n: int, start: int = 0) -> list[pl.Example]:
    return [pl.Example(event=f"event number {i}", category=CATS[i % 4]).with_inputs("event")
            for i in range(start, start + n)]


def number(event: str) -> int:
    return int(event.split()[2])


def event_of(messages) -> str:
    return re.search(r"\[\[ ## event ## \]\]\n(.*?)(?:\n\n|\Z)", messages[-1].content, re.S).group(1).strip()


def wrong(label: str) -> str:
    return CATS[(CATS.index(label) + 1) % 4]


def metric(example, pred, trace=None):
    return example.category == pred.category


def reply(label: str) -> str:
    return f"[[ ## category ## ]]\n{label}\n\n[[ ## completed ## ]]"


class TaskLM(pl.ScriptedLM):
    """Right when ``rule(instructions, n_demos, event)`` holds; keeps (instructions, demos, event) per call."""

    def __init__(self, gold, rule):
        self.calls: list[tuple[str, int, str]] = []

        def fn(messages):
            instructions = messages[0].content.split("Task:")[-1].strip()
            event = event_of(messages)
            n = (len(messages) - 2) // 2
            self.calls.append((instructions, n, event))
            return reply(gold[event] if rule(instructions, n, event) else wrong(gold[event]))

        super().__init__(fn)


def proposals(*texts: str) -> pl.ScriptedLM:
    return pl.ScriptedLM([f"[[ ## proposed_instruction ## ]]\n{t}\n\n[[ ## completed ## ]]" for t in texts])


PROPOSALS = ("Read the event and classify it.", "Look for the CLUE words in the event, then pick the category.",
             "Decide the category from the event text.", "Pick a category for the event, carefully.",
             "Name the category that fits the event best.")


# -- the paired test -----------------------------------------------------------------------------------------


def test_the_paired_test_refuses_a_noise_level_win_and_accepts_a_clear_one():
    base = [1.0] * 15 + [0.0] * 15
    noise = list(base)
    noise[15], noise[16], noise[17] = 1.0, 1.0, 1.0  # 3 better ...
    noise[0], noise[1] = 0.0, 0.0  # ... and 2 worse: +3.3 points on 30 examples
    t = paired_test(base, noise, alpha=0.1)
    assert t.method == "mcnemar" and (t.wins, t.losses, t.ties, t.n) == (3, 2, 25, 30)
    assert t.lift == pytest.approx(100 / 30, abs=1e-3) and t.p_value == pytest.approx(0.5)
    assert not t.significant and t.low < 0 < t.high
    clear = [1.0] * 28 + [0.0] * 2  # 13 better, none worse
    t = paired_test(base, clear, alpha=0.1)
    assert t.significant and t.p_value == pytest.approx(0.5**13) and t.low > 0
    assert t.baseline == 50.0 and t.candidate == pytest.approx(280 / 3, abs=1e-3)


def test_the_sign_test_needs_enough_examples_that_differ():
    # 4 better and none worse is p = 1/16 (significant at 0.1, not at 0.05); 3 and none is p = 1/8
    base = [0.0] * 10
    assert paired_test(base, [1.0] * 4 + [0.0] * 6, alpha=0.1).significant
    assert not paired_test(base, [1.0] * 4 + [0.0] * 6, alpha=0.05).significant
    assert not paired_test(base, [1.0] * 3 + [0.0] * 7, alpha=0.1).significant
    assert not paired_test(base, base).significant  # no difference at all: p = 1
    assert paired_test(base, base).p_value == 1.0


def test_the_bootstrap_test_for_graded_scores_is_deterministic():
    base = [0.5 + 0.01 * (i % 7) for i in range(40)]
    small = [b + (0.02 if i % 2 else -0.015) for i, b in enumerate(base)]
    big = [b + 0.2 for b in base]
    t1 = paired_test(base, small, seed=3)
    assert t1.method == "bootstrap" and t1 == paired_test(base, small, seed=3)
    assert not t1.significant and t1.low < 0 < t1.high
    t2 = paired_test(base, big, seed=3)
    assert t2.significant and t2.low == pytest.approx(20.0) and t2.p_value < 0.001
    forced = paired_test([0.0] * 20, [1.0] * 20, method="bootstrap")
    assert forced.method == "bootstrap" and forced.significant
    assert paired_test([0.2, 0.4], [0.3, 0.5], method="mcnemar").method == "sign"  # McNemar is for 0/1 scores


def test_the_paired_test_checks_its_inputs():
    with pytest.raises(ValueError, match="same examples"):
        paired_test([1.0, 0.0], [1.0])
    with pytest.raises(ConfigurationError, match="alpha"):
        paired_test([1.0], [1.0], alpha=0.7)
    with pytest.raises(ConfigurationError, match="paired test must be one of"):
        paired_test([1.0], [1.0], method="t-test")
    d = paired_test([0.0, 1.0], [1.0, 1.0]).to_dict()
    assert {"lift", "low", "high", "p_value", "n", "confidence", "significant"} <= set(d)
    assert isinstance(paired_test([0.0], [1.0]), PairedTest)


# -- the held-out split ---------------------------------------------------------------------------------------


def test_the_holdout_split_is_deterministic_stratified_and_sized_by_rule():
    data = make_data(90)
    a, b = split_holdout(data, "auto", seed=9), split_holdout(data, "auto", seed=9)
    assert isinstance(a, HoldoutSplit) and a.holdout == b.holdout and a.search == b.search
    assert len(a.holdout) == 30 and len(a.search) == 60 and a.stratified
    assert {ex.event for ex in a.holdout}.isdisjoint(ex.event for ex in a.search)
    assert sorted(map(number, [ex.event for ex in a.holdout + a.search])) == list(range(90))
    for cat in CATS:  # each label held out in proportion (22 or 23 of each, a third of them)
        assert 7 <= sum(ex.category == cat for ex in a.holdout) <= 8
    assert [number(ex.event) for ex in a.holdout] == sorted(number(ex.event) for ex in a.holdout)  # order kept
    assert split_holdout(data, "auto", seed=10).holdout != a.holdout
    assert "a third of the 90 validation examples" in a.rule and "stratified" in a.rule
    assert holdout_size(40, "auto")[0] == 20 and holdout_size(300, "auto")[0] == 100
    assert holdout_size(12, "auto")[0] == 6 and holdout_size(5, "auto")[0] == 0
    assert holdout_size(50, 0.2)[0] == 10 and holdout_size(50, 7)[0] == 7 and holdout_size(50, None)[0] == 0
    with pytest.raises(ConfigurationError, match="leaves nothing to search"):
        holdout_size(10, 10)
    with pytest.raises(ConfigurationError, match="holdout must be"):
        holdout_size(10, "half")


def test_folds_cover_every_example_once():
    data = make_data(23)
    folds = split_folds(data, 5, seed=1)
    assert len(folds) == 5 and sorted(i for f in folds for i in f) == list(range(23))
    assert folds == split_folds(data, 5, seed=1) and folds != split_folds(data, 5, seed=2)


def test_a_budget_keeps_calls_back_and_gives_them_back():
    budget = Budget(max_lm_calls=5)
    g = GuardedLM(pl.ScriptedLM(["a"]), budget, "task")
    budget.keep_back(calls=3)
    g("1")
    g("2")
    with pytest.raises(pl.BudgetExceededError, match="3 kept back for the held-out check"):
        g("3")
    budget.keep_back(0)
    g("3")
    g("4")
    g("5")
    with pytest.raises(pl.BudgetExceededError):
        g("6")
    assert budget.calls == 5


# -- the optimizers' picks ---------------------------------------------------------------------------------------


def _mipro(rule, n_dev=60, **options):
    train, dev = make_data(20), make_data(n_dev, start=1000)
    gold = {ex.event: ex.category for ex in train + dev}
    task = TaskLM(gold, rule)
    opts = {"auto": None, "num_candidates": 6, "num_trials": 10, "minibatch_size": 10, "max_bootstrapped_demos": 0,
            "max_labeled_demos": 0, "seed": 9, "progress": False, **options}
    prompt = proposals(*PROPOSALS)
    out = MIPROv2(metric, prompt_model=prompt, task_model=task, **opts).compile(pl.Predict(Classify), trainset=train,
                                                                              valset=dev)
    return out, task, prompt, dev


def test_mipro_does_not_pick_a_candidate_that_only_wins_on_the_search_examples():
    held = {ex.event for ex in split_holdout(make_data(60, start=1000), "auto", seed=9).holdout}

    # the CLUE instruction is right on every search example; on the held-out ones it does what the original
    # does (right on every other example)
    def rule(ins, n, e):
        if "CLUE" in ins and e not in held:
            return True
        return number(e) % 2 == 0

    out, task, prompt, _dev = _mipro(rule)
    r = out.optimization
    assert out.signature.instructions == "Classify the event."  # the starting program is kept
    sel = r.selection
    assert sel["mode"] == "holdout" and sel["n_holdout"] == 20 and sel["n_search"] == 40
    assert sel["decision"] == "rejected" and sel["pick"] == "starting program"
    tested = r.candidates["instructions"]["self"][sel["candidate"]["self.instruction"]]
    assert "CLUE" in tested  # the search's pick was the CLUE instruction
    assert sel["scores"]["candidate"]["seen"] == 100.0 and sel["scores"]["candidate"]["unseen"] == 50.0
    assert sel["scores"]["starting program"]["unseen"] == 50.0
    ev = r.evidence
    assert ev["lift"] == 0.0 and ev["p_value"] == 1.0 and ev["n"] == 20 and not ev["significant"]
    assert r.holdout_score == 50.0 and r.final_score == r.baseline_score == 50.0
    assert r.best_params == {}
    # the refused candidate is there for a user who wants it anyway, left out of the saved record
    assert r.refused is not None and "CLUE" in r.refused.signature.instructions
    assert r.refused is not out and "refused" not in r.to_dict()
    assert "optimizer.result.refused" in r.summary()
    # the held-out examples were scored only by the two held-out trials: the search never saw them
    held_calls = [(ins, e) for ins, _, e in task.calls if e in held]
    assert len(held_calls) == 40 and {ins for ins, _ in held_calls} == {"Classify the event.", tested}
    holdout_trials = [t for t in r.trials if t.kind == "holdout"]
    assert len(holdout_trials) == 2 and all(t.n_examples == 20 for t in holdout_trials)
    # the prompt model never saw a held-out example
    assert not any(e in r.messages[-1].content for r in prompt.requests for e in held)


def test_mipro_picks_a_candidate_that_wins_on_the_held_out_examples_too():
    out, _task, _prompt, _dev = _mipro(lambda ins, n, e: "CLUE" in ins or number(e) % 2 == 0)
    r = out.optimization
    assert "CLUE" in out.signature.instructions
    sel = r.selection
    assert sel["decision"] == "accepted" and sel["pick"] == "candidate"
    assert sel["scores"]["candidate"] == {"seen": 100.0, "unseen": 100.0}
    ev = r.evidence
    assert ev["lift"] == 50.0 and ev["wins"] == 10 and ev["losses"] == 0 and ev["p_value"] < 0.01
    assert ev["low"] > 0 and ev["confidence"] == pytest.approx(0.8)
    assert r.holdout_score == 100.0 and r.best_params
    text = r.summary()
    assert "20 of 60 validation examples held out from the search" in text
    assert "on what the search saw" in text and "accepted" in text


def test_holdout_none_picks_on_the_whole_valset_as_before():
    held = {ex.event for ex in split_holdout(make_data(60, start=1000), "auto", seed=9).holdout}
    out, *_ = _mipro(lambda ins, n, e: ("CLUE" in ins and e not in held) or number(e) % 2 == 0, holdout=None)
    r = out.optimization
    assert "CLUE" in out.signature.instructions  # no check: the search's best on all 60 wins
    assert r.selection["mode"] == "off" and r.selection["decision"] == "accepted without a test"
    assert not any(t.kind == "holdout" for t in r.trials) and r.trials[0].n_examples == 60


def test_selection_options_are_checked():
    with pytest.raises(ConfigurationError, match="holdout must be"):
        MIPROv2(metric, holdout=1.5)
    with pytest.raises(ConfigurationError, match="alpha"):
        BootstrapFewShotWithRandomSearch(metric, alpha=0)
    with pytest.raises(ConfigurationError, match="paired test must be one of"):
        MIPROv2(metric, selection_test="z")
    with pytest.raises(ConfigurationError, match="no part of it to hold out"):
        BootstrapFewShot(metric=metric, holdout=0.3)
    with pytest.raises(ConfigurationError, match="knn must be an embedder"):
        MIPROv2(metric, knn=3)
    with pytest.raises(ConfigurationError, match="needs a provider prefix"):
        MIPROv2(metric, knn="minilm")
    named = BootstrapFewShotWithRandomSearch(metric, knn="local/all-MiniLM-L6-v2").knn  # a name is an embedder
    assert (named.provider, named.model) == ("local", "all-MiniLM-L6-v2")


def test_the_selection_pays_nothing_twice_and_resumes(tmp_path):
    rule = lambda ins, n, e: "CLUE" in ins or number(e) % 3 == 0  # noqa: E731
    first, task1, prompt1, _ = _mipro(rule, run_dir=str(tmp_path))
    calls = len(task1.requests) + len(prompt1.requests)
    assert first.optimization.calls == calls
    again, task2, prompt2, _ = _mipro(rule, run_dir=str(tmp_path))
    assert len(task2.requests) + len(prompt2.requests) == 0  # everything, the held-out runs too, from the store
    assert again.optimization.selection == first.optimization.selection
    assert again.signature.instructions == first.signature.instructions
    assert again.optimization.calls == calls


@pytest.mark.parametrize("limit", [70, 100, 130, 160])
def test_a_budget_stop_leaves_room_for_the_held_out_check_and_replays_exactly(limit, tmp_path):
    rule = lambda ins, n, e: "CLUE" in ins or number(e) % 3 == 0  # noqa: E731
    out, task, prompt, _ = _mipro(rule, max_lm_calls=limit, run_dir=str(tmp_path))
    r = out.optimization
    total = len(task.requests) + len(prompt.requests)
    assert total <= limit and r.calls == total
    if r.selection["decision"] in ("accepted", "rejected"):  # a candidate was tested: its held-out run was paid
        assert sum(t.calls for t in r.trials if t.kind == "holdout") == 40
    # the same call again (same budget, same run directory) replays the run: the same trials and pick, no call
    again, task2, prompt2, _ = _mipro(rule, max_lm_calls=limit, run_dir=str(tmp_path))
    assert len(task2.requests) + len(prompt2.requests) == 0
    a = again.optimization
    assert [(t.kind, t.params, t.score) for t in a.trials] == [(t.kind, t.params, t.score) for t in r.trials]
    assert a.selection == r.selection and a.stopped == r.stopped and a.calls == r.calls
    assert again.signature.instructions == out.signature.instructions


def test_random_search_checks_its_pick_on_held_out_examples():
    train, dev = make_data(24), make_data(30, start=1000)
    gold = {ex.event: ex.category for ex in train + dev}
    held = {ex.event for ex in split_holdout(dev, "auto", seed=0).holdout}
    # two demos help on the search examples only
    lm = TaskLM(gold, lambda ins, n, e: (n == 2 and e not in held) or number(e) % 2 == 0)
    out = BootstrapFewShotWithRandomSearch(metric, num_candidate_programs=4, max_bootstrapped_demos=2,
                                           max_labeled_demos=2).compile(pl.Predict(Classify, lm=lm), trainset=train,
                                                                        valset=dev)
    r = out.optimization
    assert out.demos == [] and r.selection["decision"] == "rejected"
    assert r.selection["scores"]["candidate"]["seen"] > r.selection["scores"]["candidate"]["unseen"]
    assert r.refused is not None and len(r.refused.demos) == 2  # the two-demo candidate the check refused
    lm2 = TaskLM(gold, lambda ins, n, e: n == 2 or number(e) % 2 == 0)
    out2 = BootstrapFewShotWithRandomSearch(metric, num_candidate_programs=4, max_bootstrapped_demos=2,
                                            max_labeled_demos=2).compile(pl.Predict(Classify, lm=lm2),
                                                                         trainset=train, valset=dev)
    assert len(out2.demos) == 2 and out2.optimization.selection["decision"] == "accepted"
    ev = out2.optimization.evidence  # the odd-numbered held-out events, right only with the demos
    assert ev["lift"] == pytest.approx(100 * ev["wins"] / 15, abs=1e-3) and ev["wins"] >= 6 and ev["losses"] == 0


def test_random_search_without_a_valset_holds_out_training_examples_and_takes_no_demo_from_them():
    train = make_data(30)
    gold = {ex.event: ex.category for ex in train}
    lm = TaskLM(gold, lambda ins, n, e: n >= 1)
    out = BootstrapFewShotWithRandomSearch(metric, num_candidate_programs=3, max_bootstrapped_demos=2,
                                           max_labeled_demos=2).compile(pl.Predict(Classify, lm=lm), trainset=train)
    r = out.optimization
    held = {ex.event for ex in split_holdout(train, "auto", seed=0).holdout}
    assert r.selection["n_holdout"] == 15 and len(held) == 15
    assert r.selection["decision"] == "accepted" and out.demos
    assert not {d.event for d in out.demos} & held


def test_bootstrap_keeps_demos_only_when_they_help_on_the_valset():
    train, dev = make_data(12), make_data(12, start=100)
    gold = {ex.event: ex.category for ex in train + dev}
    helps = TaskLM(gold, lambda ins, n, e: n >= 1)
    out = BootstrapFewShot(metric=metric, max_bootstrapped_demos=0, max_labeled_demos=2).compile(
        pl.Predict(Classify, lm=helps), trainset=train, valset=dev)
    r = out.optimization
    assert len(out.demos) == 2 and r.selection["decision"] == "accepted"
    assert r.selection["mode"] == "validation set" and r.evidence["n"] == 12 and r.evidence["wins"] == 12
    useless = TaskLM(gold, lambda ins, n, e: number(e) % 2 == 0)
    out = BootstrapFewShot(metric=metric, max_bootstrapped_demos=0, max_labeled_demos=2).compile(
        pl.Predict(Classify, lm=useless), trainset=train, valset=dev)
    assert out.demos == [] and out.optimization.selection["decision"] == "rejected"
    assert out.optimization.final_score == out.optimization.baseline_score


def test_bootstrap_without_a_valset_cross_validates_on_the_training_set():
    train = make_data(20)
    gold = {ex.event: ex.category for ex in train}
    helps = TaskLM(gold, lambda ins, n, e: n >= 1 or number(e) < 3)
    out = BootstrapFewShot(metric=metric, max_bootstrapped_demos=2, max_labeled_demos=0).compile(
        pl.Predict(Classify, lm=helps), trainset=train)
    r = out.optimization
    assert len(out.demos) == 2 and r.selection["mode"] == "cross-validation"
    assert r.selection["decision"] == "accepted" and r.selection["folds"] == 5 and r.evidence["n"] == 20
    folds = [t for t in r.trials if t.kind == "holdout"]
    assert len(folds) == 10 and sum(t.n_examples for t in folds) == 40
    useless = TaskLM(gold, lambda ins, n, e: number(e) < 3 or number(e) % 2 == 0)
    out = BootstrapFewShot(metric=metric, max_bootstrapped_demos=2, max_labeled_demos=0).compile(
        pl.Predict(Classify, lm=useless), trainset=train)
    assert out.demos == [] and out.optimization.selection["decision"] == "rejected"
    cheap = TaskLM(gold, lambda ins, n, e: number(e) < 3)
    out = BootstrapFewShot(metric=metric, max_bootstrapped_demos=2, max_labeled_demos=0, holdout=None).compile(
        pl.Predict(Classify, lm=cheap), trainset=train)
    assert len(out.demos) == 2 and len(cheap.requests) == 2  # no check: the two traces only


def test_the_report_shows_the_pick_on_seen_and_unseen_examples(tmp_path):
    out, *_ = _mipro(lambda ins, n, e: "CLUE" in ins or number(e) % 2 == 0)
    page = write_report(out.optimization, tmp_path / "run.html").read_text()
    assert '<h2 id="selection">Selection</h2>' in page
    assert "on what the search saw" in page and "on what it did not see" in page
    assert "paired test (mcnemar, alpha 0.1): lift <b>+50.0</b>" in page and "accepted" in page
    assert page.count("kind-holdout") == 2 and "<th>part</th>" in page


# -- proposals that see the confusion ------------------------------------------------------------------------------


def test_the_confusion_summary_names_over_and_under_predicted_labels():
    program = pl.Predict(Pick)
    examples = make_data(20)
    rows = []
    for ex in examples:  # answers "Politics and Governance" for everything but the wars
        got = ex.category if ex.category == "Wars and Conflicts" else "Politics and Governance"
        rows.append({"score": float(got == ex.category), "output": {"category": got}})
    text = confusion_text(program, examples, rows)
    assert "over-predicted: Politics and Governance (15 / 5)" in text
    assert "Under-predicted: Science and Innovation (0 / 5), Economic Events (0 / 5)" in text
    assert "Science and Innovation -> Politics and Governance (5)" in text
    assert confusion_text(pl.Predict(Classify), examples, rows) == ""  # a free-text output is no label


def test_the_label_guide_shows_training_inputs_per_label():
    train = [*make_data(12), pl.Example(event="A very long event " * 20, category=CATS[0]).with_inputs("event")]
    guide = label_guide(pl.Predict(Pick), train, seed=1)
    text = guide["self"]
    assert text.startswith("category: what each label covers, from the 13 training examples")
    for cat in CATS:
        assert re.search(rf"- {cat} \(\d+\): e\.g\. \"event number \d+\", \"event number \d+\"", text)
    assert "A very long event" not in text  # the shortest inputs are shown
    assert label_guide(pl.Predict(Classify), train) == {}


def test_mipro_proposals_see_the_label_guide_and_the_confusion():
    train, dev = make_data(20), make_data(30, start=1000)
    gold = {ex.event: ex.category for ex in train + dev}
    task = TaskLM(gold, lambda ins, n, e: gold[e] == "Wars and Conflicts")  # the others answered as the next label
    prompt = proposals(*PROPOSALS)
    MIPROv2(metric, prompt_model=prompt, task_model=task, auto=None, num_candidates=3, num_trials=2,
            max_bootstrapped_demos=0, max_labeled_demos=0, progress=False).compile(pl.Predict(Pick), trainset=train,
                                                                                 valset=dev)
    text = prompt.requests[0].messages[-1].content
    assert "[[ ## labels ## ]]\ncategory: what each label covers, from the 20 training examples" in text
    assert "Most common confusions (correct -> answered):" in text
    assert "Under-predicted:" in text or "over-predicted:" in text
    prompt2 = proposals(*PROPOSALS)
    MIPROv2(metric, prompt_model=prompt2, task_model=task, auto=None, num_candidates=3, num_trials=2,
            max_bootstrapped_demos=0, max_labeled_demos=0, progress=False).compile(pl.Predict(Classify),
                                                                                 trainset=train, valset=dev)
    assert "[[ ## labels ## ]]\n(not given)" in prompt2.requests[0].messages[-1].content


# -- nearest-neighbour demos as a candidate ---------------------------------------------------------------------


def _vectors(texts):
    return [[float(number(t.split(": ", 1)[1]) % 4 == j) for j in range(4)] for t in texts]


def test_random_search_tries_nearest_neighbour_demos_when_given_an_embedder():
    train, dev = make_data(24), make_data(30, start=1000)
    gold = {ex.event: ex.category for ex in train + dev}

    def fn(messages):
        event = event_of(messages)
        demo_labels = [m.content for m in messages[1:-1] if m.role == "assistant"]
        same = bool(demo_labels) and all(gold[event] in d for d in demo_labels)  # demos of the same label
        return reply(gold[event] if same else wrong(gold[event]))

    lm = pl.ScriptedLM(fn)
    opt = BootstrapFewShotWithRandomSearch(metric, num_candidate_programs=2, max_bootstrapped_demos=0,
                                           max_labeled_demos=2, knn=_vectors)
    out = opt.compile(pl.Predict(Classify, lm=lm), trainset=train, valset=dev)
    r = out.optimization
    assert isinstance(out, KNNProgram) and out.k == 2
    assert r.selection["decision"] == "accepted" and r.selection["candidate"]["label"] == "knn (k=2)"
    assert r.candidates["knn"].startswith("k=2 nearest of 24 training examples")
    assert out(event="event number 5").category == gold["event number 5"]


def test_random_search_scores_the_nearest_neighbour_candidate_first_so_a_tight_budget_still_tries_it():
    train, dev = make_data(24), make_data(30, start=1000)
    gold = {ex.event: ex.category for ex in train + dev}
    lm = pl.ScriptedLM(lambda messages: reply(gold[event_of(messages)]))
    # the baseline's search and held-out runs (30), one candidate on the 20 searched, the pick's held-out run (10)
    opt = BootstrapFewShotWithRandomSearch(metric, num_candidate_programs=4, max_bootstrapped_demos=2,
                                           max_labeled_demos=2, knn=_vectors, max_lm_calls=60, progress=False)
    out = opt.compile(pl.Predict(Classify, lm=lm), trainset=train, valset=dev)
    r = out.optimization
    tried = [t.params.get("label") for t in r.trials if t.kind == "candidate"]
    assert tried[0] == "knn (k=2)"
    assert r.calls <= 60 and r.stopped == "budget"
    assert r.candidates["demo_sets"][0] == {"candidate": "knn", "label": "knn (k=2)"}


def test_mipro_searches_nearest_neighbour_demos_and_skips_them_cleanly_without_an_embedder():
    train, dev = make_data(24), make_data(30, start=1000)
    gold = {ex.event: ex.category for ex in train + dev}

    def fn(messages):
        event = event_of(messages)
        demo_labels = [m.content for m in messages[1:-1] if m.role == "assistant"]
        same = bool(demo_labels) and all(gold[event] in d for d in demo_labels)
        return reply(gold[event] if same else wrong(gold[event]))

    def run(knn):
        return MIPROv2(metric, prompt_model=proposals(*PROPOSALS), task_model=pl.ScriptedLM(fn), auto=None,
                       num_candidates=2, num_trials=12, minibatch=False, max_bootstrapped_demos=0,
                       max_labeled_demos=2, progress=False, knn=knn, seed=1).compile(pl.Predict(Classify),
                                                                                    trainset=train, valset=dev)

    out = run(_vectors)
    r = out.optimization
    assert any("knn" in t.params for t in r.trials)
    assert isinstance(out, KNNProgram) and r.best_params.get("knn") == 1
    assert r.selection["decision"] == "accepted"

    def broken(texts):
        raise ConfigurationError("the embedding model is not installed")

    out = run(broken)
    assert not isinstance(out, KNNProgram)
    assert out.optimization.candidates["knn"].startswith("left out: the training examples could not be embedded")
    assert not any("knn" in t.params for t in out.optimization.trials)
