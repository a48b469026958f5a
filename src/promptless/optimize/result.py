"""What an optimization run leaves behind: its trials, scores, best prompts and usage.

``report.write_report(result, path)`` writes it as one HTML page; this module knows nothing of that page.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class Trial:
    """One scored candidate.

    ``kind`` is ``baseline`` (the unoptimized program on the full validation set), ``minibatch`` (a candidate
    on a sample of it), ``full`` (a candidate on all of it), ``candidate`` (a candidate of a non-search
    optimizer, on all of it) or ``repeat`` (a candidate already scored: its stored score, at no cost).
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
    """The record of one ``compile`` run (``write_report(result, path)`` writes it as one HTML page)."""

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

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
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
        by_role = self.usage.get("calls_by_role") or {}
        if by_role:
            lines.append("calls by role: " + ", ".join(f"{k} {v}" for k, v in sorted(by_role.items())))
        for name, p in self.predictors.items():
            lines.append(f"[{name}] instructions: {p['instructions']!r}; demos: {len(p['demos'])}")
        return "\n".join(lines)

    def __repr__(self) -> str:
        return (
            f"OptimizationResult(optimizer={self.optimizer!r}, baseline={self.baseline_score}, "
            f"final={self.final_score}, trials={len(self.trials)}, calls={self.calls}, stopped={self.stopped!r})"
        )


__all__ = ["OptimizationResult", "Trial"]
