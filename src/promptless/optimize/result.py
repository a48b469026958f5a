"""What an optimization run leaves behind: its trials, scores, best prompts and usage.

``report.write_report(result, path)`` writes it as one HTML page; this module knows nothing of that page.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any


@dataclass
class Trial:
    """One scored candidate.

    ``kind`` is ``baseline`` (the unoptimized program on the validation examples the search scores),
    ``minibatch`` (a candidate on a sample of them), ``full`` (a candidate on all of them), ``candidate`` (a
    candidate of a non-search optimizer, or of random search, on all of them), ``holdout`` (the starting program
    or the pick on the examples held out from the search, for the selection; see ``selection.py``) or
    ``repeat`` (a candidate already scored: its stored score, at no cost).
    ``score`` is a percentage; ``calls`` the LM calls the trial cost (0 when answered from the memo).
    """

    number: int
    kind: str
    params: dict[str, Any]
    score: float | None
    n_examples: int
    calls: int = 0
    cost: float = 0.0
    seconds: float = 0.0
    fingerprint: str = ""
    best_so_far: float | None = None
    estimate: float | None = None  # a minibatch trial's estimated full score (see MIPROv2)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Trial:
        return cls(**{k: data[k] for k in cls.__dataclass_fields__ if k in data})


@dataclass
class OptimizationResult:
    """The record of one ``compile`` run (``write_report(result, path)`` writes it as one HTML page).

    ``baseline_score`` and ``final_score`` are on the validation examples the search scored (all of the
    validation set when nothing was held out). ``selection`` says how the pick was made: ``mode`` (``holdout``,
    ``validation set``, ``cross-validation``, ``none`` or ``off``), the sizes (``n_search``, ``n_holdout``)
    and the ``rule`` that chose them, ``decision`` and ``reason``, ``pick`` (``candidate`` or ``starting
    program``), ``scores`` (per program: ``seen``, on what the search saw, and ``unseen``, on what it did
    not) and ``evidence`` (the paired test: lift, interval, p-value, n; see ``selection.PairedTest``).

    ``refused``: the candidate the check did not keep (a program, ready to call, save or evaluate), or None when
    the pick was kept or there was none. It is not part of ``to_dict()``; a user who has reason to trust it
    more than the check (more data of their own, say) can take it: ``optimizer.result.refused``.
    """

    optimizer: str
    settings: dict[str, Any]
    trials: list[Trial]
    baseline_score: float | None
    final_score: float | None
    predictors: dict[str, dict[str, Any]]
    candidates: dict[str, Any] = field(default_factory=dict)
    best_params: dict[str, Any] = field(default_factory=dict)
    per_example: list[dict[str, Any]] = field(default_factory=list)
    usage: dict[str, Any] = field(default_factory=dict)
    calls: int = 0
    cost: float = 0.0
    max_lm_calls: int | None = None
    seconds: float = 0.0
    stopped: str = "completed"
    resumed: bool = False
    run_dir: str | None = None
    metric: str | None = None
    valset_size: int = 0
    selection: dict[str, Any] = field(default_factory=dict)

    #: The candidate the held-out check did not keep (set by ``compile``; left out of ``to_dict``).
    refused: Any = field(default=None, repr=False, compare=False)

    @property
    def best_instructions(self) -> dict[str, str]:
        return {name: p["instructions"] for name, p in self.predictors.items()}

    @property
    def best_demos(self) -> dict[str, list[dict[str, Any]]]:
        return {name: p["demos"] for name, p in self.predictors.items()}

    @property
    def lift(self) -> float | None:
        if self.baseline_score is None or self.final_score is None:
            return None
        return self.final_score - self.baseline_score

    @property
    def evidence(self) -> dict[str, Any] | None:
        """The paired test behind the pick (lift, low, high, p_value, n, ...), or None when none was run."""
        return (self.selection or {}).get("evidence")

    @property
    def holdout_score(self) -> float | None:
        """The returned program's score on the examples its search did not see (None when not scored)."""
        scores = (self.selection or {}).get("scores") or {}
        pick = (self.selection or {}).get("pick", "starting program")
        return (scores.get(pick) or scores.get("starting program") or {}).get("unseen")

    def to_dict(self) -> dict[str, Any]:
        out = asdict(replace(self, refused=None))
        out.pop("refused", None)
        out["trials"] = [t.to_dict() for t in self.trials]
        return out

    def to_json(self, path: str | Path) -> Path:
        p = Path(path)
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(json.dumps(self.to_dict(), indent=2, ensure_ascii=False, default=str) + "\n", encoding="utf-8")
        return p

    def summary(self) -> str:
        def pct(v: float | None) -> str:
            return "-" if v is None else f"{v:.1f}"

        lines = [
            f"{self.optimizer}: baseline {pct(self.baseline_score)} -> optimized {pct(self.final_score)} "
            f"on {self.valset_size} validation examples",
            f"trials {len(self.trials)}, LM calls {self.calls}"
            + (f" of {self.max_lm_calls}" if self.max_lm_calls is not None else "")
            + (f", cost {self.cost:.4f}" if self.cost else "")
            + f", {self.seconds:.1f} s, stopped: {self.stopped}",
        ]
        lines.extend(selection_lines(self.selection))
        by_role = self.usage.get("calls_by_role") or {}
        if by_role:
            lines.append("calls by role: " + ", ".join(f"{k} {v}" for k, v in sorted(by_role.items())))
        for name, p in self.predictors.items():
            line = f"[{name}] instructions: {p['instructions']!r}; demos: {len(p['demos'])}"
            cal = p.get("calibration")
            if cal:
                line += f"; calibrated: scale {float(cal.get('scale') or 1.0):.2f}, {cal.get('offsets')} offsets"
                if cal.get("knn_weight") is not None:
                    line += (f", votes of the {cal.get('knn_k')} nearest of {cal.get('knn_examples')} labelled "
                             f"examples (weight {float(cal['knn_weight']):.2f})")
                if cal.get("probe_weight") is not None:
                    line += (f", a probe on {cal.get('probe_embedder')}'s {cal.get('probe_dimensions')}-dimensional "
                             f"embeddings (weight {float(cal['probe_weight']):.2f})")
            lines.append(line)
        return "\n".join(lines)

    def __repr__(self) -> str:
        return (
            f"OptimizationResult(optimizer={self.optimizer!r}, baseline={self.baseline_score}, "
            f"final={self.final_score}, trials={len(self.trials)}, calls={self.calls}, stopped={self.stopped!r})"
        )


def selection_lines(sel: dict[str, Any] | None) -> list[str]:
    """The selection in a few lines of text (for ``summary()`` and the command line)."""
    if not sel:
        return []

    def pct(v: Any) -> str:
        return "-" if v is None else f"{v:.1f}"

    mode = sel.get("mode")
    if mode == "holdout":
        head = (f"selection: {sel.get('n_holdout')} of {sel.get('n_search', 0) + sel.get('n_holdout', 0)} "
                f"validation examples held out from the search ({sel.get('rule')}, seed {sel.get('seed')})")
    elif mode == "cross-validation":
        head = f"selection: {sel.get('rule')}"
    else:
        head = f"selection: {sel.get('rule')}"
    lines = [head]
    scores = sel.get("scores") or {}
    if scores:
        parts = []
        for who in ("starting program", "candidate"):
            s = scores.get(who)
            if s:
                parts.append(f"{who}: {pct(s.get('seen'))} on what the search saw, {pct(s.get('unseen'))} on what "
                             "it did not")
        if parts:
            lines.append("  " + "; ".join(parts))
    decision = sel.get("decision")
    if decision and decision != "not reached":
        lines.append(f"  {decision}: {sel.get('reason', '')}".rstrip())
    if decision in ("rejected", "not tested") and sel.get("pick") == "starting program":
        lines.append("  the candidate not kept is optimizer.result.refused (a program you can evaluate on data of your own)")
    return lines


__all__ = ["OptimizationResult", "Trial", "selection_lines"]
