"""The parallel runner, kept importable under its old name: it lives in ``promptless.executors.runner`` now."""

from __future__ import annotations

from ..executors.runner import Outcome, ParallelRunner, RunReport, run_parallel

__all__ = ["Outcome", "ParallelRunner", "RunReport", "run_parallel"]
