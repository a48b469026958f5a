"""``pl.utils.DummyLM`` and ``pl.utils.DummyVectorizer``: test doubles under the names DSPy users' tests import.

``DummyLM`` answers with field values instead of raw text, and writes them in the format of the adapter it is
given (the chat markers by default, JSON for a ``JSONAdapter``, tags for an ``XMLAdapter``), so a test says
what each output field holds and not how a model would spell it:

- ``DummyLM([{"answer": "red"}, {"answer": "blue"}])`` answers from the list in turn; once the list is used up
  every call answers ``answer`` = "No more responses";
- ``DummyLM({"sky": {"answer": "blue"}})`` answers with the entry whose key appears in the last message
  ("No more responses" as the whole reply when none does);
- with no ``adapter=``, the format follows the adapter configured in ``pl.settings`` (chat markers when none);
- ``follow_examples=True``: when a demo in the prompt has the same inputs as the call, its outputs are the reply.

It is a ``ScriptedLM``: nothing is cached, every request is kept in ``.requests`` and ``.history``.
``get_convo(i)`` gives the messages and the reply of the i-th call. ``DummyVectorizer`` turns texts into
character-bigram count vectors (numpy arrays), a stand-in embedder for retrieval tests.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from ..adapters import JSONAdapter, XMLAdapter
from ..adapters.parts import render_input
from ..adapters.protocol import COMPLETED, header
from ..errors import ConfigurationError
from ..lm.fake import ScriptedLM
from ..values import to_jsonable

NO_MORE = "No more responses"


class DummyLM(ScriptedLM):
    def __init__(self, answers: Sequence[Mapping[str, Any]] | Mapping[str, Mapping[str, Any]],
                 follow_examples: bool = False, reasoning: bool = False, adapter: Any = None,
                 **kwargs: Any) -> None:
        if isinstance(answers, Mapping):
            self._by_key: Mapping[str, Mapping[str, Any]] | None = answers
            self._queue: Iterator[Mapping[str, Any]] = iter(())
        elif isinstance(answers, (list, tuple)):
            self._by_key = None
            self._queue = iter(list(answers))
        else:
            raise ConfigurationError(
                "DummyLM takes a list of {field: value} dicts (one per call) or a dict of "
                f"{{text in the prompt: {{field: value}}}}, got {type(answers).__name__}"
            )
        self.answers = answers
        self.follow_examples = follow_examples
        self.reasoning = reasoning
        self.adapter = adapter
        kwargs.setdefault("model", "dummy")
        super().__init__(self._reply, cycle=False, **kwargs)

    def _format(self, values: Mapping[str, Any]) -> str:
        adapter = self.adapter
        if adapter is None:
            from .. import settings

            adapter = settings.get("adapter")
        if isinstance(adapter, JSONAdapter):
            return json.dumps({k: to_jsonable(v) for k, v in values.items()}, ensure_ascii=False)
        if isinstance(adapter, XMLAdapter):
            return "\n\n".join(f"<{k}>\n{render_input(v, None, k)}\n</{k}>" for k, v in values.items())
        blocks = [f"{header(k)}\n{render_input(v, None, k)}" for k, v in values.items()]
        blocks.append(header(COMPLETED))
        return "\n\n".join(blocks)

    def _from_demos(self, messages: list[Any]) -> str | None:
        """The assistant turn of the latest demo whose user turn holds the call's first input block."""
        if len(messages) < 3:
            return None
        wanted = str(messages[-1].content).split("\n\n")[0]
        for user, reply in zip(reversed(messages[:-2]), reversed(messages[1:-1]), strict=False):
            if user.role == "user" and reply.role == "assistant" and wanted in user.content:
                return str(reply.content)
        return None

    def _reply(self, messages: list[Any]) -> str:
        if self.follow_examples:
            found = self._from_demos(messages)
            if found is not None:
                return found
        if self._by_key is not None:
            last = str(messages[-1].content) if messages else ""
            for key, values in self._by_key.items():
                if key in last:
                    return self._format(values)
            return NO_MORE
        return self._format(next(self._queue, {"answer": NO_MORE}))

    def get_convo(self, index: int) -> tuple[Any, Any]:
        """The messages and the reply of the ``index``-th call kept in the history."""
        entry = list(self.history)[index]
        return entry.get("messages"), entry.get("outputs", entry.get("response"))


class DummyVectorizer:
    """Character n-gram counts hashed into ``max_length`` buckets, normalised to unit length."""

    def __init__(self, max_length: int = 100, n_gram: int = 2) -> None:
        if max_length < 1 or n_gram < 1:
            raise ConfigurationError("DummyVectorizer needs max_length >= 1 and n_gram >= 1")
        self.max_length = max_length
        self.n_gram = n_gram
        rng = random.Random(123)
        self._prime = 1_000_000_007
        self._coeffs = [rng.randrange(1, self._prime) for _ in range(n_gram)]

    def _bucket(self, gram: str) -> int:
        h = 1
        for coeff, ch in zip(self._coeffs, gram, strict=False):
            h = (h * coeff + ord(ch)) % self._prime
        return h % self.max_length

    def __call__(self, texts: Sequence[str]) -> Any:
        try:
            import numpy as np
        except ImportError as exc:  # pragma: no cover - numpy ships with the embeddings extra
            raise ConfigurationError("DummyVectorizer needs numpy: pip install numpy") from exc
        out = np.zeros((len(texts), self.max_length), dtype=np.float32)
        for row, text in enumerate(texts):
            for i in range(len(text) - self.n_gram + 1):
                out[row, self._bucket(text[i:i + self.n_gram])] += 1
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        return out / np.where(norms == 0, 1, norms)


__all__ = ["DummyLM", "DummyVectorizer"]
