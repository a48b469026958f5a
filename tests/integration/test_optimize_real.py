"""MIPROv2 with a real embedded model (smollm2-135m: fast, weak): a small budgeted run end to end."""

from __future__ import annotations

import pytest

import promptless as pl
from promptless.optimize import write_report
from promptless.tasks import category_match, load_events, make_classifier

pytestmark = pytest.mark.integration


@pytest.mark.timeout(1800)
def test_mipro_instruction_only_with_a_real_model(smollm2_path, tmp_path):
    lm = pl.LM("local/smollm2-135m", cache=False, max_tokens=120)
    train, dev = load_events("train")[:8], load_events("dev")[:8]
    opt = pl.MIPROv2(category_match, prompt_model=lm, task_model=lm, auto=None, num_candidates=2, num_trials=2,
                     minibatch_size=4, max_bootstrapped_demos=0, max_labeled_demos=0, max_lm_calls=30,
                     proposal_max_tokens=120, run_dir=str(tmp_path / "run"), progress=False)
    with pl.track_usage() as usage:
        program = opt.compile(make_classifier(), trainset=train, valset=dev)
    r = program.optimization
    assert usage.total.calls == r.calls <= 30
    assert r.usage["calls_by_role"].get("prompt", 0) >= 1
    for text in r.candidates.get("instructions", {}).get("self", [])[1:]:
        assert text.strip() and not text.lower().startswith(("here", "sure", "[[")), text
    if r.final_score is not None and r.baseline_score is not None:
        assert r.final_score >= r.baseline_score
    # the saved program loads into a fresh classifier with the same instruction
    path = program.save(tmp_path / "classify.json")
    fresh = make_classifier(lm=lm).load(path)
    assert fresh.signature.instructions == program.signature.instructions
    assert "<svg" in write_report(r, tmp_path / "run.html").read_text()
    # the same call again resumes from the run directory: nothing is paid twice
    with pl.track_usage() as again:
        opt.compile(make_classifier(), trainset=train, valset=dev)
    assert again.total.calls == 0
