"""One self-contained HTML page for an optimization run: inline CSS and SVG, no scripts, nothing fetched.

    from promptless.optimize import write_report
    write_report(program.optimization, "run.html")

Sections: the summary (baseline, optimized, calls, cost, time), the selection (how the pick was made: the
held-out split, the pick's score on what the search saw and on what it did not, the paired test), the score of
every trial as a plot, the best instructions and demos per predictor, the candidates, the trials table, the
baseline against the optimized program on every validation example, and the LM usage.
"""

from __future__ import annotations

import html
import json
from pathlib import Path
from typing import Any

from .result import OptimizationResult, Trial

CSS = """
body{font:14px/1.45 system-ui,-apple-system,'Segoe UI',sans-serif;margin:0 auto;max-width:1100px;padding:24px;
color:#1d2330;background:#fff}
h1{font-size:22px;margin:0 0 4px}h2{font-size:17px;margin:28px 0 8px;border-bottom:1px solid #dde;padding-bottom:4px}
h3{font-size:15px;margin:16px 0 6px}
.muted{color:#667}.cards{display:flex;flex-wrap:wrap;gap:10px;margin:14px 0}
.card{border:1px solid #dde;border-radius:6px;padding:8px 12px;min-width:120px}
.card b{display:block;font-size:20px}
table{border-collapse:collapse;width:100%;margin:6px 0 12px;font-size:13px}
th,td{border:1px solid #e2e4ea;padding:4px 6px;text-align:left;vertical-align:top}
th{background:#f4f5f8}
pre{white-space:pre-wrap;word-break:break-word;background:#f7f8fa;border:1px solid #e2e4ea;border-radius:4px;
padding:8px;margin:4px 0;font:12.5px/1.4 ui-monospace,Menlo,Consolas,monospace}
tr.gain td{background:#eefaf0}tr.loss td{background:#fdf0f0}
.ok{color:#17803d}.bad{color:#b42318}
svg text{font:11px system-ui,sans-serif;fill:#445}
.legend span{margin-right:14px}
"""

KIND_STYLE = {
    "baseline": ("#6b7280", "#6b7280"),
    "minibatch": ("#2563eb", "#ffffff"),
    "full": ("#16a34a", "#16a34a"),
    "candidate": ("#16a34a", "#16a34a"),
    "repeat": ("#9ca3af", "#ffffff"),
    "holdout": ("#b45309", "#f59e0b"),
}


def _e(value: Any) -> str:
    if value is None:
        return "-"
    if not isinstance(value, str):
        value = json.dumps(value, ensure_ascii=False, default=str)
    return html.escape(value)


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def plot_svg(trials: list[Trial], baseline: float | None, width: int = 1000, height: int = 300) -> str:
    """Score per trial: one point per trial (shape by kind), the best-so-far line, the baseline."""
    left, right, top, bottom = 44, 16, 12, 34
    w, h = width - left - right, height - top - bottom
    xs = [t.number for t in trials] or [0]
    x_max = max(max(xs), 1)

    def x(n: float) -> float:
        return left + w * (n / x_max)

    def y(s: float) -> float:
        return top + h * (1 - max(0.0, min(100.0, s)) / 100.0)

    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" class="trial-plot" viewBox="0 0 {width} {height}" '
             f'width="100%" role="img" aria-label="score per trial">']
    for s in range(0, 101, 20):
        parts.append(f'<line x1="{left}" x2="{left + w}" y1="{y(s):.1f}" y2="{y(s):.1f}" stroke="#eceef3"/>')
        parts.append(f'<text x="{left - 6}" y="{y(s) + 4:.1f}" text-anchor="end">{s}</text>')
    step = max(1, x_max // 10)
    for n in range(0, x_max + 1, step):
        parts.append(f'<text x="{x(n):.1f}" y="{top + h + 16}" text-anchor="middle">{n}</text>')
    parts.append(f'<text x="{left + w / 2:.1f}" y="{height - 2}" text-anchor="middle">trial</text>')
    parts.append(f'<line x1="{left}" x2="{left}" y1="{top}" y2="{top + h}" stroke="#99a"/>')
    parts.append(f'<line x1="{left}" x2="{left + w}" y1="{top + h}" y2="{top + h}" stroke="#99a"/>')
    if baseline is not None:
        parts.append(f'<line class="baseline-line" x1="{left}" x2="{left + w}" y1="{y(baseline):.1f}" '
                     f'y2="{y(baseline):.1f}" stroke="#6b7280" stroke-dasharray="5 4"/>')
    best_pts = [(t.number, t.best_so_far) for t in trials if t.best_so_far is not None]
    if best_pts:
        path = []
        prev = None
        for n, b in best_pts:
            if prev is not None:
                path.append(f"{x(n):.1f},{y(prev):.1f}")
            path.append(f"{x(n):.1f},{y(b):.1f}")
            prev = b
        parts.append(f'<polyline class="best-line" fill="none" stroke="#16a34a" stroke-width="1.5" '
                     f'points="{" ".join(path)}"/>')
    for t in trials:
        if t.score is None:
            continue
        stroke, fill = KIND_STYLE.get(t.kind, ("#2563eb", "#2563eb"))
        tip = f"trial {t.number} ({t.kind}): {t.score:.1f} on {t.n_examples} examples, {t.calls} calls"
        if t.params:
            tip += " " + json.dumps(t.params, default=str)
        parts.append(
            f'<circle class="trial-point kind-{html.escape(t.kind)}" data-trial="{t.number}" cx="{x(t.number):.1f}" '
            f'cy="{y(t.score):.1f}" r="{5 if t.kind in ("full", "baseline", "candidate") else 4}" fill="{fill}" '
            f'stroke="{stroke}" stroke-width="1.5"><title>{html.escape(tip)}</title></circle>'
        )
    parts.append("</svg>")
    return "".join(parts)


def _fields_table(rows: list[dict[str, Any]], cls: str) -> str:
    if not rows:
        return '<p class="muted">none</p>'
    cols: list[str] = []
    for r in rows:
        for k in r:
            if k not in cols:
                cols.append(k)
    head = "".join(f"<th>{_e(c)}</th>" for c in cols)
    body = "".join(
        "<tr>" + "".join(f"<td>{_e(r.get(c)) if c in r else ''}</td>" for c in cols) + "</tr>" for r in rows
    )
    return f'<table class="{cls}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def _outcome(cell: dict[str, Any] | None) -> str:
    if cell is None:
        return '<span class="muted">not scored</span>'
    score = cell.get("score")
    mark = "ok" if score and score >= 1 else "bad"
    text = f'<b class="{mark}">{_e(round(score, 3) if isinstance(score, float) else score)}</b> '
    if cell.get("error"):
        text += f'<span class="bad">{_e(cell["error"])}</span>'
        if cell.get("traceback"):
            text += f'<pre class="traceback">{_e(cell["traceback"])}</pre>'
    elif cell.get("output") is not None:
        text += _e(cell["output"])
    return text


def render_report(result: OptimizationResult) -> str:
    r = result
    title = f"{r.optimizer} run"
    lift = r.lift
    by_role = r.usage.get("calls_by_role") or {}
    cards = [
        ("baseline", _pct(r.baseline_score)),
        ("optimized", _pct(r.final_score)),
        ("lift", "-" if lift is None else f"{lift:+.1f}"),
        ("trials", str(len(r.trials))),
        ("LM calls", f"{r.calls}" + (f" / {r.max_lm_calls}" if r.max_lm_calls is not None else "")),
    ]
    for role, n in sorted(by_role.items()):
        cards.append((f"{role} calls", str(n)))
    cards.append(("cost", f"{r.cost:.4f}" if r.cost else "0"))
    cards.append(("time", f"{r.seconds:.1f} s"))
    out = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{_e(title)}</title><style>{CSS}</style></head><body>",
        f"<h1>{_e(title)}</h1>",
        f'<p class="muted">metric {_e(r.metric)} · {r.valset_size} validation examples · stopped: {_e(r.stopped)}'
        + (" · resumed" if r.resumed else "") + (f" · run directory {_e(r.run_dir)}" if r.run_dir else "") + "</p>",
        '<div class="cards">' + "".join(f'<div class="card"><span class="muted">{_e(k)}</span><b>{_e(v)}</b></div>'
                                         for k, v in cards) + "</div>",
        *selection_html(r.selection),
        '<h2 id="plot">Score per trial</h2>',
        plot_svg(r.trials, r.baseline_score),
        '<p class="legend muted"><span>● grey: baseline</span><span>○ blue: minibatch</span>'
        '<span>● green: full validation set</span><span>○ grey: repeat (from the memo, no calls)</span>'
        '<span>● amber: held out from the search</span>'
        '<span>green line: best so far</span><span>dashed: baseline</span></p>',
        '<h2 id="best">Best instructions and demos per predictor</h2>',
    ]
    for name, p in r.predictors.items():
        out.append(f'<h3>{_e(name)} <span class="muted">{_e(p.get("signature", ""))}</span></h3>')
        changed = p.get("instructions") != p.get("baseline_instructions")
        out.append(f'<p class="muted">instructions{" (changed)" if changed else " (unchanged)"}</p>')
        out.append(f'<pre class="instructions">{_e(p.get("instructions", ""))}</pre>')
        if changed:
            out.append('<p class="muted">before</p>')
            out.append(f'<pre class="baseline-instructions">{_e(p.get("baseline_instructions", ""))}</pre>')
        out.append(f'<p class="muted">{len(p.get("demos", []))} demos</p>')
        out.append(_fields_table(p.get("demos", []), "demos"))
    cands = r.candidates or {}
    if cands.get("instructions"):
        out.append('<h2 id="candidates">Candidate instructions</h2>')
        for name, items in cands["instructions"].items():
            out.append(f"<h3>{_e(name)}</h3>")
            rows = [{"#": i, "instruction": text} for i, text in enumerate(items)]
            out.append(_fields_table(rows, "candidates"))
        if cands.get("rejected_proposals"):
            out.append('<p class="muted">rejected proposals</p>')
            out.append(_fields_table(cands["rejected_proposals"], "rejected"))
    if cands.get("pool"):  # GEPA: every candidate, its parents, score and place on the Pareto front
        out.append('<h2 id="pool">Candidate pool</h2>')
        out.append(_fields_table(cands["pool"], "pool"))
    if len(cands.get("demo_sets") or []) > 1:
        out.append('<h2 id="demo-sets">Candidate demo sets</h2>')
        rows = [{"#": i, "demo set": d} for i, d in enumerate(cands["demo_sets"])]
        out.append(_fields_table(rows, "demo-sets"))
    out.append('<h2 id="trials">Trials</h2>')
    trial_rows = [
        {"#": t.number, "kind": t.kind, "params": t.params, "score": _pct(t.score),
         "estimate": _pct(t.estimate), "examples": t.n_examples, "calls": t.calls, "seconds": f"{t.seconds:.2f}",
         "best so far": _pct(t.best_so_far)}
        for t in r.trials
    ]
    out.append(_fields_table(trial_rows, "trials"))
    out.append('<h2 id="examples">Baseline against optimized, per validation example</h2>')
    if r.per_example:
        gains = sum(1 for row in r.per_example if _delta(row) > 0)
        losses = sum(1 for row in r.per_example if _delta(row) < 0)
        out.append(f'<p class="muted">{gains} examples gained, {losses} lost, '
                   f'{len(r.per_example) - gains - losses} unchanged</p>')
        parts = any("part" in row for row in r.per_example)  # search / held out from the search
        out.append('<table class="per-example"><thead><tr><th>#</th>' + ("<th>part</th>" if parts else "")
                   + "<th>inputs</th><th>labels</th><th>baseline</th><th>optimized</th></tr></thead><tbody>")
        for i, row in enumerate(r.per_example):
            d = _delta(row)
            cls = "gain" if d > 0 else "loss" if d < 0 else ""
            part = f'<td>{_e(row.get("part"))}</td>' if parts else ""
            out.append(
                f'<tr class="{cls}"><td>{i}</td>{part}<td>{_e(row.get("inputs"))}</td><td>{_e(row.get("labels"))}</td>'
                f'<td>{_outcome(row.get("baseline"))}</td><td>{_outcome(row.get("optimized"))}</td></tr>'
            )
        out.append("</tbody></table>")
    else:
        out.append('<p class="muted">no validation set was scored</p>')
    out.append('<h2 id="usage">LM usage</h2>')
    usage_rows = []
    for model, u in (r.usage.get("by_model") or {}).items():
        usage_rows.append({"model": model, **u})
    total = r.usage.get("total")
    if total:
        usage_rows.append({"model": "total", **total})
    out.append(_fields_table(usage_rows, "usage"))
    if r.usage.get("replayed_calls"):
        out.append(f'<p class="muted">{r.usage["replayed_calls"]} of the calls were made by an earlier process of '
                   "this run and answered from the run directory.</p>")
    out.append(f'<h2 id="settings">Settings</h2><pre>{_e(json.dumps(r.settings, indent=2, default=str))}</pre>')
    out.append("</body></html>")
    return "\n".join(out)


def selection_html(sel: dict[str, Any] | None) -> list[str]:
    """The selection section: how the pick was made, its scores on seen and unseen examples, the evidence."""
    if not sel:
        return []
    out = ['<h2 id="selection">Selection</h2>', f'<p class="selection-rule">{_e(sel.get("rule"))}'
           + (f' · seed {_e(sel.get("seed"))}' if sel.get("mode") == "holdout" else "") + "</p>"]
    scores = sel.get("scores") or {}
    if scores:
        rows = [{"program": who + (" (returned)" if sel.get("pick") == who else ""),
                 "on what the search saw": _pct(s.get("seen")), "on what it did not see": _pct(s.get("unseen"))}
                for who, s in scores.items() if s]
        out.append(_fields_table(rows, "selection-scores"))
    ev = sel.get("evidence")
    if ev:
        out.append(
            f'<p class="evidence">paired test ({_e(ev.get("method"))}, alpha {ev.get("alpha")}): lift '
            f'<b>{ev.get("lift", 0):+.1f}</b> points, {100 * ev.get("confidence", 0):.0f}% interval '
            f'[{ev.get("low", 0):+.1f}, {ev.get("high", 0):+.1f}], p = {ev.get("p_value", 1):.3g}, n = {ev.get("n")} '
            f'({ev.get("wins")} better, {ev.get("losses")} worse, {ev.get("ties")} same)</p>')
    decision = sel.get("decision")
    if decision and decision != "not reached":
        cls = "ok" if decision.startswith("accepted") else "bad" if decision == "rejected" else "muted"
        out.append(f'<p class="decision"><b class="{cls}">{_e(decision)}</b> {_e(sel.get("reason", ""))}</p>')
    return out


def write_report(result: OptimizationResult, path: str | Path) -> Path:
    """Write ``result`` as one self-contained HTML page (inline SVG and CSS, no scripts) and return its path."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(render_report(result), encoding="utf-8")
    return p


def _delta(row: dict[str, Any]) -> float:
    b, o = row.get("baseline"), row.get("optimized")
    if not b or not o:
        return 0.0
    return float(o.get("score") or 0) - float(b.get("score") or 0)


__all__ = ["plot_svg", "render_report", "selection_html", "write_report"]
