"""The live progress line of an optimizer (trial, best score, LM calls) or of a labelling run (inputs done, LM
calls), on stderr when it is a terminal.

rich is imported only when the display is shown.
"""

from __future__ import annotations

import sys
from typing import Any


class Progress:
    def __init__(self, name: str, *, enabled: bool | None = None, max_calls: int | None = None,
                 total: int | None = None, unit: str = "trial", show_best: bool = True) -> None:
        if enabled is None:
            enabled = bool(getattr(sys.stderr, "isatty", lambda: False)())
        self.enabled = enabled
        self.name = name
        self.max_calls = max_calls
        self.total = total
        self.unit = unit  # what the count counts: trials of an optimizer, inputs of a labelling run
        self.show_best = show_best
        self.trial: int | None = None
        self.best: float | None = None
        self.calls = 0
        self.stage = "starting"
        self._live: Any = None

    def __enter__(self) -> Progress:
        if self.enabled:
            try:
                from rich.console import Console
                from rich.live import Live
            except ImportError:  # pragma: no cover - rich is a dependency, but stay usable without it
                self.enabled = False
                return self
            self._live = Live(self._render(), console=Console(stderr=True), refresh_per_second=4, transient=False)
            self._live.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._live is not None:
            self._live.update(self._render())
            self._live.__exit__(*exc)
            self._live = None

    def text(self) -> str:
        trial = "-" if self.trial is None else str(self.trial)
        if self.total:
            trial += f"/{self.total}"
        best = "-" if self.best is None else f"{self.best:.1f}"
        calls = f"{self.calls}" + (f"/{self.max_calls}" if self.max_calls is not None else "")
        best_part = f"  best {best}" if self.show_best else ""
        return f"{self.name}  {self.stage}  {self.unit} {trial}{best_part}  LM calls {calls}"

    def _render(self) -> Any:
        from rich.text import Text

        return Text(self.text())

    def update(self, *, trial: int | None = None, best: float | None = None, calls: int | None = None,
               stage: str | None = None) -> None:
        if trial is not None:
            self.trial = trial
        if best is not None:
            self.best = best
        if calls is not None:
            self.calls = calls
        if stage is not None:
            self.stage = stage
        if self._live is not None:
            self._live.update(self._render())


__all__ = ["Progress"]
