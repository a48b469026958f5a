"""GEPA with a real embedded model (smollm2-135m: fast, weak) as task and reflection model: a tiny run end to end."""

from __future__ import annotations

import pytest

import promptless as pl
from promptless.optimize import write_report
from promptless.tasks import category_match, load_events, make_classifier

pytestmark = pytest.mark.integration


def feedback_metric(example, pred, trace=None):
    ok = category_match(example, pred)
    note = "correct" if ok else f"wrong: the category is {example.category}, not {pred.get('category')}"
    return pl.Prediction(score=float(ok), feedback=note)


@pytest.mark.timeout(1800)
def test_gepa_with_a_real_model(smollm2_path, tmp_path):
    lm = pl.LM("local/smollm2-135m", cache=False, max_tokens=60)
    train, dev = load_events("train")[:4], load_events("dev")[:4]
    opt = pl.GEPA(feedback_metric, reflection_lm=lm, task_model=lm, max_metric_calls=20, reflection_max_tokens=100,
                  run_dir=str(tmp_path / "run"), progress=False)
    with pl.track_usage() as usage:
        program = opt.compile(make_classifier(), trainset=train, valset=dev)
    r = program.optimization
    assert r.optimizer == "GEPA" and r.stopped in ("completed", "budget")
    assert usage.total.calls == r.calls
    metric_calls = r.candidates["metric_calls"]
    assert 4 <= metric_calls <= 20  # the seed's 4, then whole iterations only
    assert r.candidates["max_metric_calls"] == 20 and r.candidates["iterations"]
    assert r.usage["calls_by_role"]["prompt"] >= 1  # the reflection model was asked
    assert r.final_score is not None and r.baseline_score is not None and r.final_score >= r.baseline_score
    for text in r.candidates["instructions"]["self"][1:]:
        assert text.strip() and not text.lower().startswith(("here", "sure", "[[")), text
    # the saved program loads into a fresh classifier with the same instruction
    path = program.save(tmp_path / "classify.json")
    fresh = make_classifier(lm=lm).load(path)
    assert fresh.signature.instructions == program.signature.instructions
    assert "Candidate pool" in write_report(r, tmp_path / "run.html").read_text()
    # the same call again replays the run directory: nothing is paid twice
    with pl.track_usage() as again:
        opt.compile(make_classifier(), trainset=train, valset=dev)
    assert again.total.calls == 0
