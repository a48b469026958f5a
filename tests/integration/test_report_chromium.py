"""The optimization report renders in a real browser (headless Chromium), with its plot and tables."""

from __future__ import annotations

import os
import re
import shutil
import subprocess

import pytest

import promptless as pl
from promptless.optimize import MIPROv2, write_report

pytestmark = pytest.mark.integration

CATS = ["Wars and Conflicts", "Science and Innovation", "Economic Events", "Politics and Governance"]
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def _chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        path = shutil.which(name)
        if path:
            return path
    if os.environ.get("CI") == "true":
        pytest.fail("chromium is required in CI (Debian: apt-get install -y chromium)")
    pytest.skip("chromium is not installed (Debian: apt-get install -y chromium)")


class Classify(pl.Signature):
    """Classify the event."""

    event: str = pl.InputField()
    category: str = pl.OutputField()


def _run_report(tmp_path):
    data = [pl.Example(event=f"event {i} <b>&</b>", category=CATS[i % 4]).with_inputs("event") for i in range(60)]
    gold = {ex.event: ex.category for ex in data}

    def task(messages):
        ins = messages[0].content.split("Task:")[-1]
        event = messages[-1].content.split("[[ ## event ## ]]\n")[1].split("\n")[0]
        ok = "CLUE" in ins or int(event.split()[1]) % 4 == 0
        label = gold[event] if ok else CATS[(CATS.index(gold[event]) + 1) % 4]
        return f"[[ ## category ## ]]\n{label}\n\n[[ ## completed ## ]]"

    proposals = ["Classify the event by what happened.", "Find the CLUE, then classify.", "Pick the best category.",
                 "Sure! Here's a new instruction:\n\"Read it and answer.\"", "Label the event <carefully>."]
    prompt = pl.ScriptedLM([f"[[ ## proposed_instruction ## ]]\n{p}\n\n[[ ## completed ## ]]" for p in proposals])
    opt = MIPROv2(lambda e, p, t=None: e.category == p.category, prompt_model=prompt, task_model=pl.ScriptedLM(task),
                  max_bootstrapped_demos=0, max_labeled_demos=2, auto=None, num_candidates=4, num_trials=8,
                  minibatch_size=10, minibatch_full_eval_steps=3)
    program = opt.compile(pl.Predict(Classify), trainset=data[:20], valset=data[20:])
    result = program.optimization
    return result, write_report(result, tmp_path / "run.html")


def test_report_renders_in_headless_chromium(tmp_path):
    browser = _chromium()
    result, page = _run_report(tmp_path)
    profile = tmp_path / "profile"
    cmd = [browser, *FLAGS, f"--user-data-dir={profile}", "--dump-dom", page.as_uri()]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    dom = proc.stdout
    assert proc.returncode == 0 and "<html" in dom, proc.stderr[-2000:]
    # the plot: an svg with one point per trial
    svg = re.search(r"<svg[^>]*class=\"trial-plot\".*?</svg>", dom, re.S)
    assert svg is not None
    assert len(re.findall(r"<circle[^>]*class=\"trial-point", svg.group(0))) == len(result.trials) > 3
    assert "best-line" in svg.group(0)
    # the tables: trials, per-example baseline vs optimized, the best instructions and demos
    assert len(re.findall(r"<tr", _table(dom, "trials"))) == len(result.trials) + 1
    assert len(re.findall(r"<tr", _table(dom, "per-example"))) == len(result.per_example) + 1 == 41
    assert "Find the CLUE, then classify." in dom
    assert "&lt;b&gt;&amp;&lt;/b&gt;" in dom  # example text is escaped, not rendered as markup
    assert "<script" not in dom
    # and it paints: a screenshot of a sensible size
    shot = tmp_path / "shot.png"
    subprocess.run([browser, *FLAGS, f"--user-data-dir={profile}", f"--screenshot={shot}", "--window-size=1200,2000",
                    page.as_uri()], capture_output=True, timeout=120)
    assert shot.exists() and shot.stat().st_size > 20_000


def _table(dom: str, cls: str) -> str:
    m = re.search(rf"<table class=\"{cls}\">.*?</table>", dom, re.S)
    assert m is not None, f"no table {cls}"
    return m.group(0)
