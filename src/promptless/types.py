"""Plain data passed across the LM seam: messages, requests, responses and usage."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any


@dataclass(frozen=True, slots=True)
class Message:
    """One chat message. ``content`` is its text; a message that also carries media (an image, audio, a file)
    has ``parts``: the whole content as OpenAI content parts (``{"type": "text", ...}``,
    ``{"type": "image_url", ...}``), while ``content`` holds the text with a short placeholder per media part,
    for readers that take text only (logs, a scripted LM)."""

    role: str
    content: str
    parts: tuple[dict[str, Any], ...] | None = None

    def to_dict(self) -> dict[str, Any]:
        """The message as the OpenAI chat API takes it (content parts when it has media)."""
        if self.parts:
            return {"role": self.role, "content": [dict(p) for p in self.parts]}
        return {"role": self.role, "content": self.content}

    @property
    def media(self) -> list[dict[str, Any]]:
        """The parts that are not text."""
        return [p for p in self.parts or () if p.get("type") != "text"]


@dataclass(slots=True)
class LMRequest:
    """What one LM call asks for. Every backend reads the same fields.

    ``response_format`` is a JSON schema (a dict) for servers that support
    structured output; ``grammar`` a GBNF grammar for llama.cpp backends.
    ``rollout_id`` makes otherwise-identical requests distinct cache entries.
    ``tools`` are function schemas in the OpenAI shape (``{"type": "function",
    "function": {...}}``) for native function calling, ``tool_choice`` as that
    API takes it; ``parallel_tool_calls`` whether the model may call several tools in one reply (sent only
    with ``tools``; None: the server's default).
    """

    messages: list[Message]
    temperature: float | None = None
    max_tokens: int | None = None
    n: int = 1
    stop: list[str] | None = None
    seed: int | None = None
    response_format: dict[str, Any] | None = None
    grammar: str | None = None
    rollout_id: int | str | None = None
    tools: list[dict[str, Any]] | None = None
    tool_choice: Any = None
    parallel_tool_calls: bool | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def sampling(self) -> dict[str, Any]:
        """The sampling parameters as a plain dict (for cache keys and logs)."""
        out: dict[str, Any] = {}
        for f in fields(self):
            if f.name == "messages":
                continue
            value = getattr(self, f.name)
            if value is None or value == {}:
                continue
            out[f.name] = value
        return out


@dataclass(slots=True)
class Usage:
    calls: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cache_hits: int = 0
    seconds: float = 0.0
    cost: float | None = None

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def add(self, other: Usage) -> None:
        self.calls += other.calls
        self.prompt_tokens += other.prompt_tokens
        self.completion_tokens += other.completion_tokens
        self.cache_hits += other.cache_hits
        self.seconds += other.seconds
        if other.cost is not None:
            self.cost = (self.cost or 0.0) + other.cost

    def copy(self) -> Usage:
        return Usage(self.calls, self.prompt_tokens, self.completion_tokens, self.cache_hits, self.seconds, self.cost)

    def to_dict(self) -> dict[str, Any]:
        return {
            "calls": self.calls,
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "cache_hits": self.cache_hits,
            "seconds": round(self.seconds, 4),
            "cost": self.cost,
        }


@dataclass(slots=True)
class LMResponse:
    """What a backend returns: one text per completion, and what it cost.

    ``tool_calls`` holds, per completion, the functions the model called through native function calling
    (``{"id", "name", "args"}`` each); empty when it called none, or when the request had no tools.
    """

    texts: list[str]
    usage: Usage = field(default_factory=Usage)
    model: str = ""
    finish_reasons: list[str] = field(default_factory=list)
    cached: bool = False
    tool_calls: list[list[dict[str, Any]]] = field(default_factory=list)

    def calls(self, i: int) -> list[dict[str, Any]]:
        """The tool calls of completion ``i`` (none when it made none)."""
        return self.tool_calls[i] if i < len(self.tool_calls) else []

    @property
    def text(self) -> str:
        return self.texts[0] if self.texts else ""

    @property
    def truncated(self) -> bool:
        return any(r == "length" for r in self.finish_reasons)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "texts": list(self.texts),
            "usage": self.usage.to_dict(),
            "model": self.model,
            "finish_reasons": list(self.finish_reasons),
        }
        if any(self.tool_calls):
            out["tool_calls"] = [list(calls) for calls in self.tool_calls]
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LMResponse:
        u = data.get("usage") or {}
        return cls(
            texts=list(data["texts"]),
            usage=Usage(
                calls=u.get("calls", 1),
                prompt_tokens=u.get("prompt_tokens", 0),
                completion_tokens=u.get("completion_tokens", 0),
                cost=u.get("cost"),
            ),
            model=data.get("model", ""),
            finish_reasons=list(data.get("finish_reasons", [])),
            tool_calls=[list(calls) for calls in data.get("tool_calls") or []],
        )
