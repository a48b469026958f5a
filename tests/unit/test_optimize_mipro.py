"""MIPROv2 with scripted task and prompt models."""

from __future__ import annotations

import re
from collections import Counter

import pytest

import promptless as pl
from promptless.errors import ConfigurationError
from promptless.optimize import MIPROv2, write_report
from promptless.optimize.mipro import AUTO_PRESETS

CATS = ["Wars and Conflicts", "Science and Innovation", "Economic Events", "Politics and Governance"]


class Classify(pl.Signature):
    """Classify the event."""

    event: str = pl.InputField()
    category: str = pl.OutputField()


def make_data(n: int, start: int = 0) -> list[pl.Example]:
    return [pl.Example(event=f"event number {i}", category=CATS[i % 4]).with_inputs("event")
            for i in range(start, start + n)]


def event_of(messages) -> str:
    return re.search(r"\[\[ ## event ## \]\]\n(.*?)(?:\n\n|\Z)", messages[-1].content, re.S).group(1).strip()


def wrong(label: str) -> str:
    return CATS[(CATS.index(label) + 1) % 4]


def metric(example, pred, trace=None):
    return example.category == pred.category


class TaskLM(pl.ScriptedLM):
    """Right when ``rule(instructions, n_demos, event)`` holds; keeps (instructions, demos, event) per call."""

    def __init__(self, gold, rule):
        self.calls: list[tuple[str, int, str]] = []

        def fn(messages):
            instructions = messages[0].content.split("Task:")[-1].strip()
            event = event_of(messages)
            n = (len(messages) - 2) // 2
            self.calls.append((instructions, n, event))
            label = gold[event] if rule(instructions, n, event) else wrong(gold[event])
            return f"[[ ## category ## ]]\n{label}\n\n[[ ## completed ## ]]"

        super().__init__(fn)


class PromptLM(pl.ScriptedLM):
    """Proposals in turn, wrapped the way small models wrap them; keeps each request's sampling settings."""

    def __init__(self, proposals):
        self.sampling: list[tuple[float | None, object]] = []
        super().__init__([f"[[ ## proposed_instruction ## ]]\n{p}\n\n[[ ## completed ## ]]" for p in proposals])

    def complete(self, request):
        self.sampling.append((request.temperature, request.rollout_id))
        return super().complete(request)


PROPOSALS = [
    "Sure! Here's a new instruction that will be used to prompt a Language Model:\nRead the event and classify it.",
    "### New Instruction\nDecide the category from the event text.\n\nThis instruction helps the model focus.",
    '"Look for the CLUE words in the event, then pick the category."',
    "Pick a category for the event, carefully and precisely.",
    "Name the category that fits the event best, please.",
]


def setup(n_train=20, n_dev=40, rule=lambda ins, n, e: "CLUE" in ins, proposals=PROPOSALS):
    train, dev = make_data(n_train), make_data(n_dev, start=1000)
    gold = {ex.event: ex.category for ex in train + dev}
    return train, dev, TaskLM(gold, rule), PromptLM(proposals)


def test_mipro_finds_the_instruction_that_works():
    train, dev, task, prompt = setup()
    opt = MIPROv2(metric, prompt_model=prompt, task_model=task, auto="light", max_bootstrapped_demos=0,
                  max_labeled_demos=0)
    out = opt.compile(pl.Predict(Classify), trainset=train, valset=dev)
    r = out.optimization
    assert out.signature.instructions == "Look for the CLUE words in the event, then pick the category."
    assert r.baseline_score == 0.0 and r.final_score == 100.0
    assert r.candidates["instructions"]["self"][0] == "Classify the event."  # the original is candidate 0
    assert len(r.candidates["instructions"]["self"]) == 6
    # every proposal was cleaned to the instruction itself
    assert "Read the event and classify it." in r.candidates["instructions"]["self"]
    assert "Decide the category from the event text." in r.candidates["instructions"]["self"]
    # the program keeps its own LM (None: the task model was only used for the search)
    assert out.lm is None


def test_instruction_only_search_makes_no_task_call_outside_the_trials():
    train, dev, task, prompt = setup()
    out = MIPROv2(metric, prompt_model=prompt, task_model=task, max_bootstrapped_demos=0,
                  max_labeled_demos=0).compile(pl.Predict(Classify), trainset=train, valset=dev)
    r = out.optimization
    train_events = {ex.event for ex in train}
    assert not any(event in train_events for _, _, event in task.calls)  # no bootstrapping on the task model
    assert all(n == 0 for _, n, _ in task.calls)
    # the first task calls are the baseline's, with the original instruction: on the search part of the
    # validation set, then on the part held out from the search
    held = [ex.event for ex in dev if ex.event not in {c[2] for c in task.calls[: r.selection["n_search"]]}]
    assert [c[2] for c in task.calls[: len(dev)]] == [ex.event for ex in dev if ex.event not in held] + held
    assert r.selection["n_search"] + r.selection["n_holdout"] == len(dev) and len(held) == r.selection["n_holdout"]
    assert sum(t.calls for t in r.trials) == len(task.calls)
    assert r.usage["calls_by_role"] == {"task": len(task.calls), "prompt": len(prompt.requests)}


def test_no_instruction_is_scored_twice_on_the_same_example():
    train, dev, task, prompt = setup(n_dev=60)
    MIPROv2(metric, prompt_model=prompt, task_model=task, auto=None, num_candidates=6, num_trials=30,
            minibatch_size=15, minibatch_full_eval_steps=4, max_bootstrapped_demos=0,
            max_labeled_demos=0).compile(pl.Predict(Classify), trainset=train, valset=dev)
    counts = Counter((ins, event) for ins, _, event in task.calls)
    assert max(counts.values()) == 1


def test_light_preset_spends_at_most_half_of_dspy_light():
    # 60 train / 100 dev, instruction-only: DSPy 3.4.1 light spends about 580 calls here
    rule = lambda ins, n, e: ("category" in ins.lower()) == (int(e.split()[-1]) % 3 != 0)  # noqa: E731
    train, dev, task, prompt = setup(60, 100, rule=rule)
    out = MIPROv2(metric, prompt_model=prompt, task_model=task, auto="light", max_bootstrapped_demos=0,
                  max_labeled_demos=0).compile(pl.Predict(Classify), trainset=train, valset=dev)
    total = len(task.requests) + len(prompt.requests)
    assert total == out.optimization.calls <= 290
    assert len(prompt.requests) == 5


def test_prompt_and_task_models_are_kept_apart():
    train, dev, task, prompt = setup()
    MIPROv2(metric, prompt_model=prompt, task_model=task, max_bootstrapped_demos=0,
            max_labeled_demos=0).compile(pl.Predict(Classify), trainset=train, valset=dev)
    assert len(prompt.requests) == 5
    assert all("proposed_instruction" in r.messages[0].content for r in prompt.requests)
    assert not any("proposed_instruction" in r.messages[0].content for r in task.requests)
    temps = [t for t, _ in prompt.sampling]
    rollouts = [r for _, r in prompt.sampling]
    assert all(0.7 <= t <= 1.0 for t in temps) and len(set(temps)) > 1
    assert len(set(rollouts)) == len(rollouts) == 5


def test_the_configured_lm_serves_both_roles_by_default():
    train, dev, task, _ = setup()
    task_fn = task._fn

    def both(messages):
        if "proposed_instruction" in messages[0].content:
            return "[[ ## proposed_instruction ## ]]\nFind the CLUE.\n\n[[ ## completed ## ]]"
        return task_fn(messages)

    task._fn = both
    pl.configure(lm=task)
    MIPROv2(metric, max_bootstrapped_demos=0, max_labeled_demos=0).compile(pl.Predict(Classify), trainset=train,
                                                                          valset=dev)
    assert any("proposed_instruction" in r.messages[0].content for r in task.requests)


def test_never_worse_than_the_baseline():
    train, dev, task, prompt = setup(rule=lambda ins, n, e: ins == "Classify the event." or int(e.split()[-1]) % 2)
    out = MIPROv2(metric, prompt_model=prompt, task_model=task, max_bootstrapped_demos=0,
                  max_labeled_demos=0).compile(pl.Predict(Classify), trainset=train, valset=dev)
    assert out.signature.instructions == "Classify the event."
    assert out.optimization.final_score == out.optimization.baseline_score == 100.0


def test_search_over_instructions_and_demos_together():
    # right only with the CLUE instruction and at least one demo
    train, dev, task, prompt = setup(rule=lambda ins, n, e: "CLUE" in ins and n >= 1)
    out = MIPROv2(metric, prompt_model=prompt, task_model=task, auto=None, num_candidates=4, num_trials=16,
                  minibatch_size=10, max_bootstrapped_demos=0, max_labeled_demos=2, seed=1).compile(
        pl.Predict(Classify), trainset=train, valset=dev)
    r = out.optimization
    assert "CLUE" in out.signature.instructions and len(out.demos) == 2
    assert r.final_score == 100.0 and r.baseline_score == 0.0
    assert set(r.best_params) == {"self.instruction", "self.demos"}


def test_bootstrapped_demo_candidates_use_the_task_model_on_train():
    train, dev, task, prompt = setup(rule=lambda ins, n, e: n >= 1 or "number 1 " in e + " ")
    out = MIPROv2(metric, prompt_model=prompt, task_model=task, auto="light", max_bootstrapped_demos=1,
                  max_labeled_demos=0).compile(pl.Predict(Classify), trainset=train, valset=dev)
    assert out.optimization.final_score == 100.0 and len(out.demos) == 1
    assert out.demos[0].event == "event number 1"  # the only trace that passed the metric


class Two(pl.Module):
    def __init__(self):
        self.first = pl.Predict(Classify)
        self.second = pl.Predict(Classify)

    def forward(self, event):
        self.first(event=event)
        return self.second(event=event)


def test_every_predictor_gets_its_own_instruction_candidates():
    train, dev, task, prompt = setup(rule=lambda ins, n, e: "CLUE" in ins)
    out = MIPROv2(metric, prompt_model=prompt, task_model=task, auto=None, num_candidates=6, num_trials=16,
                  max_bootstrapped_demos=0, max_labeled_demos=0).compile(Two(), trainset=train, valset=dev)
    r = out.optimization
    assert set(r.candidates["instructions"]) == {"first", "second"}
    assert set(r.best_params) == {"first.instruction", "second.instruction"}
    assert "CLUE" in out.second.signature.instructions
    assert r.final_score == 100.0


def test_same_seed_same_run():
    runs = []
    for _ in range(2):
        train, dev, task, prompt = setup(rule=lambda ins, n, e: ("pick" in ins.lower()) == (len(e) % 2 == 0))
        out = MIPROv2(metric, prompt_model=prompt, task_model=task, auto=None, num_candidates=6, num_trials=12,
                      minibatch_size=10, minibatch_full_eval_steps=4, max_bootstrapped_demos=2,
                      max_labeled_demos=2, seed=5).compile(pl.Predict(Classify), trainset=train, valset=dev)
        r = out.optimization
        runs.append(([(t.kind, t.params, t.score, t.calls) for t in r.trials], out.signature.instructions,
                     [d.event for d in out.demos], task.calls))
    assert runs[0] == runs[1]


def test_minibatch_off_scores_every_trial_on_the_whole_valset():
    train, dev, task, prompt = setup(n_dev=12)
    out = MIPROv2(metric, prompt_model=prompt, task_model=task, auto=None, num_candidates=3, num_trials=4,
                  minibatch=False, max_bootstrapped_demos=0, max_labeled_demos=0).compile(
        pl.Predict(Classify), trainset=train, valset=dev)
    scored = [t for t in out.optimization.trials if t.kind not in ("repeat", "holdout")]
    # 12 validation examples: 6 held out from the search, every trial on the other 6
    assert all(t.kind in ("baseline", "full") and t.n_examples == 6 for t in scored)


def test_valset_defaults_to_part_of_trainset():
    train, _, task, prompt = setup(n_train=30)
    out = MIPROv2(metric, prompt_model=prompt, task_model=task, max_bootstrapped_demos=0,
                  max_labeled_demos=0).compile(pl.Predict(Classify), trainset=train)
    r = out.optimization
    assert r.trials[0].n_examples == r.selection["n_search"] == 12  # 24 of 30, half held out from the search
    assert r.selection["n_holdout"] == 12 and r.valset_size == 24


def test_light_caps_the_valset_at_100():
    train, dev, task, prompt = setup(n_train=10, n_dev=150)
    out = MIPROv2(metric, prompt_model=prompt, task_model=task, max_bootstrapped_demos=0,
                  max_labeled_demos=0).compile(pl.Predict(Classify), trainset=train, valset=dev)
    r = out.optimization
    assert r.trials[0].n_examples == 67 and r.selection["n_holdout"] == 33  # 100, a third held out


def test_options_are_checked():
    with pytest.raises(ConfigurationError, match="auto must be"):
        MIPROv2(metric, auto="huge")
    with pytest.raises(ConfigurationError, match="num_candidates and num_trials"):
        MIPROv2(metric, auto=None).compile(pl.Predict(Classify), trainset=make_data(4))
    with pytest.raises(ConfigurationError, match="needs a metric"):
        MIPROv2(None)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="unexpected option"):
        MIPROv2(metric).compile(pl.Predict(Classify), trainset=make_data(4), bogus=1)
    assert AUTO_PRESETS["light"]["num_candidates"] == 6


def test_dspy_style_compile_options_override():
    train, dev, task, prompt = setup()
    opt = MIPROv2(metric, prompt_model=prompt, task_model=task, auto="light")
    out = opt.compile(pl.Predict(Classify), trainset=train, valset=dev, max_bootstrapped_demos=0,
                      max_labeled_demos=0, num_trials=3, requires_permission_to_run=False)
    assert sum(1 for t in out.optimization.trials if t.kind == "minibatch") <= 3
    assert all(n == 0 for _, n, _ in task.calls)


def test_rejected_proposals_fall_back_to_the_original():
    train, dev, task, prompt = setup(proposals=["", "Sure!", "Classify the event.", "x" * 5000])
    out = MIPROv2(metric, prompt_model=prompt, task_model=task, auto=None, num_candidates=5, num_trials=5,
                  max_bootstrapped_demos=0, max_labeled_demos=0).compile(pl.Predict(Classify), trainset=train,
                                                                        valset=dev)
    r = out.optimization
    assert r.candidates["instructions"]["self"] == ["Classify the event."]
    reasons = sorted(x["reason"] for x in r.candidates["rejected_proposals"])
    assert reasons == ["duplicate", "empty", "empty", "too long"]
    assert [t.kind for t in r.trials] == ["baseline", "holdout"]  # nothing to search
    assert r.selection["decision"] == "nothing to test"


def test_report_of_a_mipro_run(tmp_path):
    train, dev, task, prompt = setup()
    out = MIPROv2(metric, prompt_model=prompt, task_model=task, max_bootstrapped_demos=0,
                  max_labeled_demos=0).compile(pl.Predict(Classify), trainset=train, valset=dev)
    page = write_report(out.optimization, tmp_path / "run.html").read_text()
    assert page.count('class="trial-point') == len(out.optimization.trials)
    assert "CLUE" in page and "<script" not in page
    assert re.search(r"""(src|href)=["']?https?:""", page) is None


def test_the_result_describes_the_validation_examples_actually_scored():
    train, dev, task, prompt = setup(n_train=10, n_dev=150)
    r = MIPROv2(metric, prompt_model=prompt, task_model=task, max_bootstrapped_demos=0,
                max_labeled_demos=0).compile(pl.Predict(Classify), trainset=train, valset=dev).optimization
    assert r.valset_size == len(r.per_example) == 100
    assert all(row["baseline"] is not None and row["optimized"] is not None for row in r.per_example)
    split = MIPROv2(metric, prompt_model=prompt, task_model=task, max_bootstrapped_demos=0,
                    max_labeled_demos=0).compile(pl.Predict(Classify), trainset=make_data(30)).optimization
    assert split.valset_size == len(split.per_example) == 24


def test_proposals_are_grounded_in_the_baselines_mistakes_and_every_label():
    train, dev, task, prompt = setup()
    MIPROv2(metric, prompt_model=prompt, task_model=task, max_bootstrapped_demos=0,
            max_labeled_demos=0).compile(pl.Predict(Classify), trainset=train, valset=dev)
    first = prompt.requests[0].messages[-1].content
    assert "gets 0 of 20 examples right" in first and "Some mistakes:" in first  # the 20 not held out
    assert all(c in first for c in CATS)  # one worked example per label
    assert "Fix the mistakes shown" in "".join(r.messages[-1].content for r in prompt.requests)
    prompt2 = PromptLM(PROPOSALS)
    MIPROv2(metric, prompt_model=prompt2, task_model=setup()[2], max_bootstrapped_demos=0, max_labeled_demos=0,
            feedback=False).compile(pl.Predict(Classify), trainset=train, valset=dev)
    text = "".join(r.messages[-1].content for r in prompt2.requests)
    assert "Some mistakes" not in text and "Fix the mistakes shown" not in text


# -- DSPy's option names: each does what it says, or is refused -------------------------------------------


def _field(request, name: str) -> str:
    text = request.messages[-1].content
    return re.search(rf"\[\[ ## {name} ## \]\]\n(.*?)(?:\n\n(?:\[\[|Reply with)|\Z)", text, re.S).group(1).strip()


def test_teacher_settings_lm_makes_the_bootstrap_traces():
    train, dev, task, prompt = setup(n_train=8, n_dev=12)
    gold = {ex.event: ex.category for ex in train + dev}
    teacher = TaskLM(gold, lambda ins, n, e: True)
    out = MIPROv2(metric, prompt_model=prompt, task_model=task, auto=None, num_candidates=3, num_trials=2,
                  max_bootstrapped_demos=2, max_labeled_demos=0, teacher_settings={"lm": teacher}, progress=False,
                  ).compile(pl.Predict(Classify), trainset=train, valset=dev)
    assert teacher.calls, "the teacher LM made no call"
    assert {e for _, _, e in teacher.calls} <= {ex.event for ex in train}  # it only bootstraps
    assert not any(e in {ex.event for ex in train} and n == 0 for _, n, e in task.calls)
    assert out.optimization.settings["teacher_settings"] == {"lm": "scripted"}


def test_teacher_settings_that_cannot_apply_are_refused():
    with pytest.raises(ConfigurationError, match="teacher_settings has temperature"):
        MIPROv2(metric, teacher_settings={"temperature": 1.0})
    with pytest.raises(ConfigurationError, match="must be a dict"):
        MIPROv2(metric, teacher_settings=["lm"])  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="max_bootstrapped_demos=0"):
        MIPROv2(metric, teacher_settings={"lm": pl.ScriptedLM("x")}, max_bootstrapped_demos=0)
    MIPROv2(metric, teacher_settings={}, max_bootstrapped_demos=0)  # nothing asked for: fine


def test_track_stats_false_and_permission_prompts_are_refused():
    MIPROv2(metric, track_stats=True)
    with pytest.raises(ConfigurationError, match=r"track_stats=False.*program\.optimization"):
        MIPROv2(metric, track_stats=False)
    train, dev, task, prompt = setup(n_train=4, n_dev=4)
    opt = MIPROv2(metric, prompt_model=prompt, task_model=task, max_bootstrapped_demos=0, max_labeled_demos=0)
    with pytest.raises(ConfigurationError, match=r"requires_permission_to_run=True.*max_lm_calls"):
        opt.compile(pl.Predict(Classify), trainset=train, valset=dev, requires_permission_to_run=True)
    assert not task.requests  # refused before any call


@pytest.mark.parametrize(("option", "field", "kept"), [
    ("program_aware_proposer", "program", "A program of one step"),
    ("fewshot_aware_proposer", "examples", "event: event number"),
    ("data_aware_proposer", "data_summary", "training examples"),
    ("tip_aware_proposer", "tip", ""),
])
def test_proposer_switches_leave_their_grounding_out(option, field, kept):
    def proposal_fields(**options):
        train, dev, task, prompt = setup(n_train=8, n_dev=8)
        MIPROv2(metric, prompt_model=prompt, task_model=task, auto=None, num_candidates=3, num_trials=1,
                max_bootstrapped_demos=0, max_labeled_demos=0, feedback=False, progress=False,
                ).compile(pl.Predict(Classify), trainset=train, valset=dev, **options)
        return [_field(r, field) for r in prompt.requests]

    on, off = proposal_fields(**{option: True}), proposal_fields(**{option: False})
    assert len(on) == len(off) == 2
    assert all(text in ("(not given)", "(none)") for text in off)
    assert all(text not in ("(not given)", "(none)") and kept in text for text in on)


def test_proposer_switches_must_be_booleans_and_agree_with_the_constructor():
    train, dev, task, prompt = setup(n_train=4, n_dev=4)
    opt = MIPROv2(metric, prompt_model=prompt, task_model=task, max_bootstrapped_demos=0, max_labeled_demos=0,
                  data_summary=False)
    with pytest.raises(ConfigurationError, match="program_aware_proposer must be True or False"):
        opt.compile(pl.Predict(Classify), trainset=train, valset=dev, program_aware_proposer="yes")
    with pytest.raises(ConfigurationError, match=r"data_aware_proposer=True.*data_summary=False"):
        opt.compile(pl.Predict(Classify), trainset=train, valset=dev, data_aware_proposer=True)
    with pytest.raises(ConfigurationError, match=r"view_data_batch_size=5.*data_summary='lm'"):
        opt.compile(pl.Predict(Classify), trainset=train, valset=dev, view_data_batch_size=5)
    assert not task.requests


def test_view_data_batch_size_is_how_many_examples_the_summary_reads():
    train, dev, task, _ = setup(n_train=12, n_dev=8)

    def prompt_fn(messages):
        if "[[ ## summary ## ]]" in messages[0].content or "summary" in messages[0].content.split("Task:")[-1]:
            return "[[ ## summary ## ]]\nEvents and their categories.\n\n[[ ## completed ## ]]"
        return "[[ ## proposed_instruction ## ]]\nFind the CLUE.\n\n[[ ## completed ## ]]"

    prompt = pl.ScriptedLM(prompt_fn)
    MIPROv2(metric, prompt_model=prompt, task_model=task, auto=None, num_candidates=2, num_trials=1,
            max_bootstrapped_demos=0, max_labeled_demos=0, data_summary="lm", progress=False,
            ).compile(pl.Predict(Classify), trainset=train, valset=dev, view_data_batch_size=3)
    summary_requests = [r for r in prompt.requests if "Describe this data set" in r.messages[0].content]
    assert len(summary_requests) == 1
    assert _field(summary_requests[0], "examples").count("event: ") == 3


def test_provide_traceback_keeps_the_traceback_of_a_failed_example():
    train, dev = make_data(4), make_data(6, start=1000)
    gold = {ex.event: ex.category for ex in train + dev}

    def fn(messages):
        if event_of(messages).endswith("1003"):
            raise RuntimeError("the backend fell over")
        return f"[[ ## category ## ]]\n{gold[event_of(messages)]}\n\n[[ ## completed ## ]]"

    def rows(**options):
        r = MIPROv2(metric, prompt_model=PromptLM(PROPOSALS), task_model=pl.ScriptedLM(fn), auto=None,
                    num_candidates=2, num_trials=1, max_bootstrapped_demos=0, max_labeled_demos=0, progress=False,
                    ).compile(pl.Predict(Classify), trainset=train, valset=dev, **options).optimization
        return [row["baseline"] for row in r.per_example if row["baseline"]["error"]]

    plain, full = rows(), rows(provide_traceback=True)
    assert len(plain) == len(full) == 1
    assert "traceback" not in plain[0]
    assert full[0]["error"] == plain[0]["error"] == "RuntimeError: the backend fell over"
    assert full[0]["traceback"].startswith("Traceback (most recent call last):")
    assert "the backend fell over" in full[0]["traceback"]
