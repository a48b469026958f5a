"""A scripted LM for tests, examples and users' own tests.

``ScriptedLM(["reply 1", "reply 2"])`` answers from the list in turn (and
cycles); ``ScriptedLM(lambda messages: ...)`` answers with a function of the
messages (a string, or a list of strings for ``n > 1``). Every request is
kept in ``.requests``. It never caches and never touches the network.

It can also script log-probabilities for label scoring (``pl.Classify``):
``ScriptedLM(logprobs={"yes": -0.1, "no": -2.3})`` scores each candidate by its
text (the label, without the line break that ends it); a list of numbers is a
label of several tokens, each one scored (``{"New York": [-0.2, -3.0]}``); a
function ``logprobs(messages, prefix, candidates)`` may return such a dict, a
list (one entry per candidate) or a ``ContinuationScores``. Every scoring call
is kept in ``.score_requests``.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from ..errors import ConfigurationError
from ..types import LMRequest, LMResponse, Message, Usage
from .base import LM, not_supported

Replier = Callable[[list[Message]], "str | list[str]"]
Scores = Mapping[str, "float | Sequence[float]"]
Scorer = Callable[[list[Message], str, list[str]], Any]


class ScriptedLM(LM):
    provider = "scripted"

    def __init__(
        self,
        replies: Sequence[str] | Replier = (),
        *,
        model: str = "scripted",
        cycle: bool = True,
        logprobs: Scores | Scorer | None = None,
        stream_chunk_size: int = 4,
        **kwargs: Any,
    ) -> None:
        kwargs.setdefault("cache", False)
        super().__init__(model, **kwargs)
        if isinstance(stream_chunk_size, bool) or not isinstance(stream_chunk_size, int) or stream_chunk_size < 1:
            raise ConfigurationError(f"stream_chunk_size must be a whole number >= 1, got {stream_chunk_size!r}")
        self.stream_chunk_size = stream_chunk_size
        self._logprobs = logprobs
        self.score_requests: list[tuple[list[Message], str, list[str]]] = []
        if callable(replies):
            self._fn: Replier | None = replies
            self._replies: list[str] = []
        else:
            if isinstance(replies, str):
                replies = [replies]
            if not replies and logprobs is None:
                raise ConfigurationError(
                    "ScriptedLM needs at least one reply, a function of the messages, or logprobs=... to score"
                )
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
        if not self._replies:
            raise ConfigurationError("this ScriptedLM scripts log-probabilities only: give it replies=[...] too")
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

    def stream_complete(self, request: LMRequest, on_chunk: Callable[[str], None]) -> LMResponse:
        resp = self.complete(request)
        text = resp.texts[0] if resp.texts else ""
        for i in range(0, len(text), self.stream_chunk_size):
            on_chunk(text[i:i + self.stream_chunk_size])
        return resp

    # -- scripted log-probabilities --------------------------------------------------------------------
    def score_continuations(self, messages: Any, prefix: str, candidates: Sequence[str], **options: Any) -> Any:
        """Scores from ``logprobs=`` (see the module's docstring), through the same bookkeeping as real backends."""
        from .logprobs import ContinuationScores, run_scoring

        if self._logprobs is None:
            raise not_supported(self)

        def backend(msgs: list[Message], pre: str, cands: list[str]) -> ContinuationScores:
            with self._reqlock:
                self.score_requests.append((msgs, pre, list(cands)))
            spec = self._logprobs
            out = spec(msgs, pre, list(cands)) if callable(spec) else spec
            if isinstance(out, ContinuationScores):
                return out
            if isinstance(out, Mapping):
                values = []
                for c in cands:
                    key = c if c in out else c.strip()
                    if key not in out:
                        raise ConfigurationError(
                            f"ScriptedLM has no log-probability for the candidate {c.strip()!r}; "
                            f"scripted: {sorted(out)}"
                        )
                    values.append(out[key])
            else:
                values = list(out)  # type: ignore[arg-type]
                if len(values) != len(cands):
                    raise ConfigurationError(
                        f"ScriptedLM's logprobs function returned {len(values)} scores for {len(cands)} candidates"
                    )
            sums, counts = [], []
            for v in values:
                parts = [float(x) for x in v] if isinstance(v, (list, tuple)) else [float(v)]  # type: ignore[arg-type]
                sums.append(sum(parts))
                counts.append(len(parts))
            prompt_tokens = (sum(len(m.content) for m in msgs) + len(pre)) // 4
            return ContinuationScores(logprobs=sums, method="full", tokens=counts,
                                      usage=Usage(calls=1, prompt_tokens=prompt_tokens))

        return run_scoring(self, messages, prefix, candidates, backend, **options)
