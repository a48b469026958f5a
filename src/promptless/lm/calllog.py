"""The call log: every LM call this process made, kept for reading back (``pl.inspect_history``).

Each LM keeps its own last calls in ``lm.history``; ``GLOBAL_HISTORY`` holds the last 200 across all LMs.
An entry is a dict: ``model``, ``messages``, ``request`` (the ``LMRequest``), ``outputs`` (the texts),
``usage``, ``cached`` and ``timestamp``. ``record`` appends one to both logs; ``format_calls`` renders
entries for a person to read. (The conversation input type ``pl.History`` is another thing: ``history.py``.)
"""

from __future__ import annotations

import datetime as _dt
from collections import deque
from collections.abc import Iterator, MutableSequence
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

from .. import settings

# Process-wide ring of recent calls across all LMs, for pl.inspect_history().
GLOBAL_HISTORY: deque[dict[str, Any]] = deque(maxlen=200)

# The predictor making the LM calls here (its id), recorded in each entry as "caller" so that a program's own
# calls can be picked out of the log (``Module.inspect_history``).
_caller: ContextVar[int | None] = ContextVar("promptless_caller", default=None)


@contextmanager
def calls_by(owner: object) -> Iterator[None]:
    """Record the LM calls made inside the block as made by ``owner`` (a predictor)."""
    token = _caller.set(id(owner))
    try:
        yield
    finally:
        _caller.reset(token)


def record(own: MutableSequence[dict[str, Any]], entry: dict[str, Any]) -> None:
    """Append ``entry`` to an LM's own log ``own`` and to the process-wide one (neither with
    ``disable_history=True`` in the settings)."""
    if settings.get("disable_history"):
        return
    entry.setdefault("caller", _caller.get())
    own.append(entry)
    GLOBAL_HISTORY.append(entry)


def calls_of(owners: list[object], n: int) -> list[dict[str, Any]]:
    """The last ``n`` logged calls made by any of ``owners`` (still in the process-wide log)."""
    ids = {id(o) for o in owners}
    return [e for e in GLOBAL_HISTORY if e.get("caller") in ids][-n:] if n > 0 else []


def format_calls(entries: list[dict[str, Any]]) -> str:
    """The entries as text: a header line per call (model, time, tokens), its messages and its replies."""
    blocks: list[str] = []
    for i, e in enumerate(entries, 1):
        when = _dt.datetime.fromtimestamp(e["timestamp"]).strftime("%Y-%m-%d %H:%M:%S")
        usage = e["usage"]
        head = f"=== call {i}/{len(entries)}  {e['model']}  {when}"
        if e.get("cached"):
            head += "  (cache hit)"
        else:
            head += f"  {usage.prompt_tokens}+{usage.completion_tokens} tokens, {usage.seconds:.2f}s"
        lines = [head + " ==="]
        params = e["request"].sampling() if e.get("request") is not None else {}
        if params:
            lines.append(f"params: {params}")
        for m in e["messages"]:
            lines.append(f"\n--- {m.role} ---\n{m.content}")
        for j, out in enumerate(e["outputs"]):
            label = "reply" if len(e["outputs"]) == 1 else f"reply {j + 1}"
            lines.append(f"\n--- {label} ---\n{out}")
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks) if blocks else "(no LM calls recorded)"


def inspect_history(n: int = 1) -> str:
    """Print the last ``n`` LM calls made in this process (all LMs), and return the text."""
    text = format_calls(list(GLOBAL_HISTORY)[-n:])
    print(text)
    return text


__all__ = ["GLOBAL_HISTORY", "calls_by", "calls_of", "format_calls", "inspect_history", "record"]
