"""Readable rendering of recent LM calls (``pl.inspect_history``)."""

from __future__ import annotations

import datetime as _dt
from typing import Any


def format_history(entries: list[dict[str, Any]]) -> str:
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
    from .base import GLOBAL_HISTORY

    text = format_history(list(GLOBAL_HISTORY)[-n:])
    print(text)
    return text
