"""Plain data passed across the LM seam: messages, requests, responses and usage."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any


@dataclass(frozen=True, slots=True)
class Message:
    role: str
    content: str

    def to_dict(self) -> dict[str, str]:
        return {"role": self.role, "content": self.content}


@dataclass(slots=True)
class LMRequest:
    """What one LM call asks for. Every backend reads the same fields.

    ``response_format`` is a JSON schema (a dict) for servers that support
    structured output; ``grammar`` a GBNF grammar for llama.cpp backends.
    ``rollout_id`` makes otherwise-identical requests distinct cache entries.
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
    """What a backend returns: one text per completion, and what it cost."""

    texts: list[str]
    usage: Usage = field(default_factory=Usage)
    model: str = ""
    finish_reasons: list[str] = field(default_factory=list)
    cached: bool = False

    @property
    def text(self) -> str:
        return self.texts[0] if self.texts else ""

    @property
    def truncated(self) -> bool:
        return any(r == "length" for r in self.finish_reasons)

    def to_dict(self) -> dict[str, Any]:
        return {
            "texts": list(self.texts),
            "usage": self.usage.to_dict(),
            "model": self.model,
            "finish_reasons": list(self.finish_reasons),
        }

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
        )
