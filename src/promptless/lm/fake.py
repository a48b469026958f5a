"""A scripted LM for tests, examples and users' own tests.

``ScriptedLM(["reply 1", "reply 2"])`` answers from the list in turn (and
cycles); ``ScriptedLM(lambda messages: ...)`` answers with a function of the
messages (a string, or a list of strings for ``n > 1``). Every request is
kept in ``.requests``. It never caches and never touches the network.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable, Sequence
from typing import Any

from ..errors import ConfigurationError
from ..types import LMRequest, LMResponse, Message, Usage
from .base import BaseLM

Replier = Callable[[list[Message]], "str | list[str]"]


class ScriptedLM(BaseLM):
    provider = "scripted"

    def __init__(
        self,
        replies: Sequence[str] | Replier,
        *,
        model: str = "scripted",
        cycle: bool = True,
        **kwargs: Any,
    ) -> None:
        kwargs.setdefault("cache", False)
        super().__init__(model, **kwargs)
        if callable(replies):
            self._fn: Replier | None = replies
            self._replies: list[str] = []
        else:
            if isinstance(replies, str):
                replies = [replies]
            if not replies:
                raise ConfigurationError("ScriptedLM needs at least one reply, or a function of the messages")
            self._fn = None
            self._replies = list(replies)
        self._cycle = cycle
        self._index = itertools.count()
        self._reqlock = threading.Lock()
        self.requests: list[LMRequest] = []

    def _one(self, messages: list[Message]) -> list[str]:
        if self._fn is not None:
            out = self._fn(messages)
            return [out] if isinstance(out, str) else list(out)
        i = next(self._index)
        if i >= len(self._replies) and not self._cycle:
            raise ConfigurationError(f"ScriptedLM ran out of replies after {len(self._replies)} calls")
        return [self._replies[i % len(self._replies)]]

    def complete(self, request: LMRequest) -> LMResponse:
        with self._reqlock:
            self.requests.append(request)
        texts: list[str] = []
        while len(texts) < request.n:
            texts.extend(self._one(request.messages))
        texts = texts[: request.n]
        # A rough count (4 characters a token): the scripted LM has no tokenizer.
        prompt_tokens = sum(len(m.content) for m in request.messages) // 4
        completion_tokens = sum(len(t) for t in texts) // 4
        return LMResponse(
            texts=texts,
            usage=Usage(calls=1, prompt_tokens=prompt_tokens, completion_tokens=completion_tokens),
            model=self.model,
            finish_reasons=["stop"] * len(texts),
        )
