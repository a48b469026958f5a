"""Scoring candidate continuations: how likely the model finds each allowed value of a label field.

``lm.score_continuations(messages, prefix, candidates)`` asks: given these chat messages and an
assistant reply begun with ``prefix`` (e.g. ``"[[ ## category ## ]]\\n"``), what is the log-probability
of each candidate text coming next? The answer is a ``ContinuationScores``.

Two backends can answer:

- **llama.cpp in this process** (``score_llama``): the prompt is rendered with the model's own chat
  template exactly as a generation call renders it, evaluated once, and then every candidate's tokens are
  evaluated on top of it, all of them, with the KV cache rolled back to the prompt between candidates. A
  candidate's score is the sum of the log-probabilities of all its tokens (``method="full"``).
- **OpenAI-compatible servers that return ``logprobs``** (``score_openai``): one chat completion with
  ``logprobs: true, top_logprobs: N``. The reply's tokens are walked to where the label's value begins, and
  each candidate is scored on the first token that tells it apart from the others, from the top
  alternatives listed there (``method="first-token"``). When the reply carries no log-probabilities, or the
  value cannot be found in it, nothing is scored: ``method="generation"`` and ``text`` holds the reply,
  for the caller to parse as an ordinary generation.

Every scoring call goes through the LM's cache, usage totals and call history like a generation call
(``run_scoring``). Backends without scoring raise ``ScoringNotSupportedError``.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..errors import (
    ConfigurationError,
    ContextWindowError,
    LMBadRequestError,
    LMError,
    ScoringNotSupportedError,
)
from ..types import LMRequest, Message, Usage
from . import usage as _usage
from ._http import CHAT_PATH
from .base import BaseLM, to_messages
from .calllog import record

METHODS = ("full", "first-token", "generation")
# llama.cpp computes a batch of one token with other kernels than a longer one, and the logits differ a little
# (up to 0.3 nats on a label's log-probability with smollm2-135m). Decoding at least two tokens at a time
# makes a score independent of what the context held before: the same as evaluating the whole text at once.
MIN_REEVAL = 2


@dataclass
class ContinuationScores:
    """What scoring returned.

    ``logprobs``: one per candidate, the log-probability of the whole candidate after the prefix (``None``
    when the backend could not score and generated instead). ``method``: ``"full"`` (every token of every
    candidate scored), ``"first-token"`` (each candidate scored on the first token that tells it apart,
    from a server's top log-probabilities) or ``"generation"`` (no scores; ``text`` is the reply).
    ``tokens``: how many tokens were scored per candidate. ``unlisted``: candidates a server did not list
    among its top alternatives (their log-probability is an upper bound: the mass the listed ones leave).
    """

    logprobs: list[float] | None
    method: str
    tokens: list[int] = field(default_factory=list)
    text: str | None = None
    unlisted: list[int] = field(default_factory=list)
    usage: Usage = field(default_factory=Usage)
    cached: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {"logprobs": self.logprobs, "method": self.method, "tokens": list(self.tokens), "text": self.text,
                "unlisted": list(self.unlisted), "usage": self.usage.to_dict()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ContinuationScores:
        u = data.get("usage") or {}
        lps = data.get("logprobs")
        return cls(
            logprobs=None if lps is None else [float(x) for x in lps],
            method=str(data["method"]),
            tokens=[int(t) for t in data.get("tokens") or []],
            text=data.get("text"),
            unlisted=[int(i) for i in data.get("unlisted") or []],
            usage=Usage(calls=int(u.get("calls", 1)), prompt_tokens=int(u.get("prompt_tokens", 0)),
                        completion_tokens=int(u.get("completion_tokens", 0)), cost=u.get("cost")),
        )


def check_candidates(candidates: Sequence[str]) -> list[str]:
    out = [str(c) for c in candidates]
    if not out:
        raise ConfigurationError("score_continuations needs at least one candidate text")
    if any(c == "" for c in out):
        raise ConfigurationError("score_continuations: a candidate text is empty; every candidate needs text")
    if len(set(out)) != len(out):
        raise ConfigurationError(f"score_continuations: the candidates repeat a text: {out}")
    return out


def run_scoring(
    lm: BaseLM,
    messages: Any,
    prefix: str,
    candidates: Sequence[str],
    backend: Callable[[list[Message], str, list[str]], ContinuationScores],
    *,
    options: dict[str, Any] | None = None,
    cache: bool = True,
    **unknown: Any,
) -> ContinuationScores:
    """The bookkeeping every scoring backend shares: cache lookup, the call, usage totals and history.

    A result is cached as an ordinary reply whose one text is the scores as JSON, under a key that holds
    the prefix and candidates besides the messages, so it never meets a generation's entry."""
    if unknown:
        raise ConfigurationError(
            f"score_continuations: unknown option(s) {', '.join(sorted(unknown))}; it takes cache=True|False "
            "(and top_logprobs=N for OpenAI-compatible servers)"
        )
    msgs = to_messages(messages)
    cands = check_candidates(candidates)
    request = LMRequest(messages=msgs, extra={"score": {"prefix": prefix, "candidates": cands, **(options or {})}})
    store = lm.cache if cache else None
    key = None
    started = time.perf_counter()
    result: ContinuationScores | None = None
    if store is not None:
        key = lm._cache_key(request)
        hit = store.get(key)
        try:
            stored = json.loads(hit["texts"][0]) if isinstance(hit, dict) else None
            if isinstance(stored, dict) and stored.get("kind") == "scores":
                result = ContinuationScores.from_dict(stored)
                result.cached = True
                result.usage = Usage(calls=0, cache_hits=1)
        except (KeyError, IndexError, TypeError, ValueError):  # a row of another shape: a miss
            result = None
    if result is None:
        if lm._sem is not None:
            with lm._sem:
                result = backend(msgs, prefix, cands)
        else:
            result = backend(msgs, prefix, cands)
        result.usage.seconds = time.perf_counter() - started
        if result.usage.calls == 0:
            result.usage.calls = 1
        if store is not None and key is not None:
            store.put(key, {"texts": [json.dumps({"kind": "scores", **result.to_dict()}, ensure_ascii=False)],
                            "usage": result.usage.to_dict(), "model": lm.model, "finish_reasons": ["stop"]})
    with lm._lock:
        lm.usage.add(result.usage)
    _usage.record(lm.model, result.usage)
    shown = result.to_dict()
    entry = {
        "model": lm.model,
        "messages": msgs,
        "request": request,
        "outputs": [json.dumps({"prefix": prefix, "scores": dict(zip(cands, shown["logprobs"] or [], strict=False)),
                                "method": result.method}, ensure_ascii=False)],
        "usage": result.usage,
        "cached": result.cached,
        "timestamp": time.time(),
    }
    record(lm.history, entry)
    return result


# -- llama.cpp -------------------------------------------------------------------------------------------


def _common_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n


def chat_prompt(llama: Any, messages: list[Message]) -> tuple[str, bool]:
    """The prompt text a ``create_chat_completion`` call would evaluate for these messages (the model's chat
    template with the assistant turn opened), and whether a BOS token is added in front when tokenizing."""
    from llama_cpp import llama_chat_format as lcf

    if getattr(llama, "chat_handler", None) is not None:
        raise ScoringNotSupportedError(
            "this llama.cpp model has a custom chat_handler; its prompt cannot be rendered for scoring"
        )
    name = getattr(llama, "chat_format", None) or ""
    dicts = [m.to_dict() for m in messages]
    metadata = getattr(llama, "metadata", {}) or {}
    if name.startswith("chat_template."):
        key = "tokenizer.chat_template" if name == "chat_template.default" else "tokenizer." + name
        template = metadata.get(key)
        if template is None:
            raise ScoringNotSupportedError(f"the model's chat template {name!r} is not in its metadata")
        formatters = llama.__dict__.setdefault("_promptless_formatters", {})
        fmt = formatters.get(name)
        if fmt is None:
            eos_id, bos_id = llama.token_eos(), llama.token_bos()
            eos = llama._model.token_get_text(eos_id) if eos_id != -1 else ""
            bos = llama._model.token_get_text(bos_id) if bos_id != -1 else ""
            fmt = formatters[name] = lcf.Jinja2ChatFormatter(template=template, eos_token=eos, bos_token=bos,
                                                             stop_token_ids=[eos_id])
        res = fmt(messages=dicts)
        return res.prompt, not res.added_special
    known = {"chatml": "format_chatml", "llama-3": "format_llama3", "mistral-instruct": "format_mistral_instruct",
             "llama-2": "format_llama2"}
    fn = getattr(lcf, known.get(name, ""), None)
    if fn is None:
        raise ScoringNotSupportedError(
            f"the llama.cpp chat format {name!r} cannot be rendered for scoring; use a GGUF with a chat template"
        )
    res = fn(messages=dicts)
    return res.prompt, not res.added_special


def _log_softmax_at(row: Any, token: int) -> float:
    import numpy as np

    r = np.asarray(row, dtype=np.float64)
    m = float(r.max())
    return float(r[token] - m - math.log(float(np.exp(r - m).sum())))


def score_llama(
    llama: Any, messages: list[Message], prefix: str, candidates: list[str], *, reuse_prefix: bool = True,
    model: str = "local",
) -> ContinuationScores:
    """Score every candidate on every one of its tokens with a ``llama_cpp.Llama`` (the caller holds its lock).

    The prompt (chat template, assistant turn opened, ``prefix``) is evaluated once, reusing whatever prefix
    of it the context already holds; each candidate's tokens are then evaluated on top of it with logits for
    every position, and the KV cache is rolled back to the prompt before the next candidate. A boundary
    where the tokenizer merges the end of the prompt with a candidate's first characters is handled: the
    candidate is scored from the first token that differs from the prompt's own tokenization.
    """
    import numpy as np

    text, add_bos = chat_prompt(llama, messages)
    full = text + prefix
    prompt = list(llama.tokenize(full.encode("utf-8"), add_bos=add_bos, special=True))
    seqs = [list(llama.tokenize((full + c).encode("utf-8"), add_bos=add_bos, special=True)) for c in candidates]
    n_ctx = llama.n_ctx()
    longest = max(len(s) for s in seqs)
    if longest > n_ctx:
        raise ContextWindowError(
            f"the prompt and the longest label take {longest} tokens, more than the context window ({n_ctx}); "
            "shorten the prompt (fewer demos) or load the model with a larger n_ctx", model=model)
    starts = []
    for c, s in zip(candidates, seqs, strict=True):
        start = _common_prefix(s, prompt)
        if start >= len(s):
            raise ConfigurationError(f"the candidate {c!r} adds no token to the prompt")
        starts.append(max(1, start))
    shared = min(starts)
    ctx = llama._ctx
    n_batch = int(llama.n_batch)
    n_vocab = int(llama.n_vocab())

    def decode(tokens: list[int], n_past: int, all_logits: bool) -> Any:
        """Decode ``tokens`` at ``n_past``; the logits of every position (or of the last), as an array."""
        rows = []
        for i in range(0, len(tokens), n_batch):
            chunk = tokens[i : i + n_batch]
            llama._batch.set_batch(batch=chunk, n_past=n_past + i, logits_all=all_logits)
            try:
                ctx.decode(llama._batch)
            except RuntimeError as exc:
                raise LMError(f"llama.cpp failed while scoring: {exc}", model=model) from exc
            n_out = len(chunk) if all_logits else 1
            if all_logits or i + n_batch >= len(tokens):
                out = np.ctypeslib.as_array(ctx.get_logits(), shape=(n_out * n_vocab,))
                rows.append(out.reshape(n_out, n_vocab).copy())
        return np.concatenate(rows, axis=0)

    # The shared prompt: keep what the context already holds of it, evaluate the rest.
    keep = 0
    if reuse_prefix and llama.n_tokens > 0:
        keep = max(0, min(_common_prefix(llama.input_ids[: llama.n_tokens].tolist(), prompt[:shared]),
                          shared - MIN_REEVAL))
    ctx.kv_cache_seq_rm(-1, keep, -1)
    llama.n_tokens = keep
    llama._requires_eval = True
    evaluated = shared - keep
    last = decode(prompt[keep:shared], keep, all_logits=False)[-1]
    llama.input_ids[keep:shared] = prompt[keep:shared]
    llama.n_tokens = shared

    scores: list[float] = []
    counts: list[int] = []
    try:
        for s, start in zip(seqs, starts, strict=True):
            tail = s[shared:-1]  # positions whose logits predict the candidate's tokens after the first
            if len(tail) == 1:
                tail = s[shared:]  # one more (its logits unused): never a batch of one, see MIN_REEVAL
            rows = decode(tail, shared, all_logits=True) if tail else None
            total = 0.0
            for i in range(start, len(s)):
                row = last if i == shared else rows[i - shared - 1]  # type: ignore[index]
                total += _log_softmax_at(row, s[i])
            evaluated += len(tail)
            scores.append(total)
            counts.append(len(s) - start)
            if tail:
                ctx.kv_cache_seq_rm(-1, shared, -1)  # roll back to the prompt for the next candidate
    finally:
        ctx.kv_cache_seq_rm(-1, shared, -1)
        llama.n_tokens = shared
        llama._requires_eval = True  # the context's last logits are a candidate's, not the prompt's
    return ContinuationScores(logprobs=scores, method="full", tokens=counts,
                              usage=Usage(calls=1, prompt_tokens=evaluated, completion_tokens=0))


# -- OpenAI-style top_logprobs ---------------------------------------------------------------------------


@dataclass
class _Position:
    text: str
    logprob: float
    alternatives: dict[str, float]


def _token_text(entry: dict[str, Any]) -> str:
    raw = entry.get("bytes")
    if isinstance(raw, list) and raw and all(isinstance(b, int) for b in raw):
        try:
            return bytes(raw).decode("utf-8")
        except (UnicodeDecodeError, ValueError):
            pass
    return str(entry.get("token", ""))


def positions_from_reply(data: Any) -> list[_Position] | None:
    """The generated tokens with their top alternatives, from a ``/chat/completions`` reply (None: none given)."""
    try:
        content = data["choices"][0]["logprobs"]["content"]
    except (KeyError, IndexError, TypeError):
        return None
    if not isinstance(content, list) or not content:
        return None
    out = []
    for entry in content:
        if not isinstance(entry, dict) or not isinstance(entry.get("logprob"), (int, float)):
            return None
        text = _token_text(entry)
        alts: dict[str, float] = {}
        for alt in entry.get("top_logprobs") or []:
            if isinstance(alt, dict) and isinstance(alt.get("logprob"), (int, float)):
                t = _token_text(alt)
                alts[t] = max(alts.get(t, -math.inf), float(alt["logprob"]))
        alts.setdefault(text, float(entry["logprob"]))
        out.append(_Position(text, float(entry["logprob"]), alts))
    return out


def _logsumexp(values: list[float]) -> float:
    m = max(values)
    if m == -math.inf:
        return m
    return m + math.log(sum(math.exp(v - m) for v in values))


def score_first_token(positions: list[_Position], value_start: int, candidates: list[str]) -> ContinuationScores:
    """Score each candidate on the first generated position that tells it apart from the others.

    ``value_start`` is the character offset in the concatenated reply where the field's value begins. From the
    token holding that offset on, a candidate stays on the generated path while the generated tokens spell
    it and some other candidate still shares them (their log-probabilities add up); at the first position
    where it parts from the path or from every other candidate, its score adds the listed alternatives that
    spell its next characters. A candidate no listed alternative spells gets the mass the listed ones leave
    (an upper bound) and is reported in ``unlisted``. When no candidate is spelled by anything listed,
    nothing is scored (``logprobs=None``).
    """
    offsets = []
    pos = 0
    for p in positions:
        offsets.append(pos)
        pos += len(p.text)
    k = next((i for i, p in enumerate(positions) if offsets[i] + len(p.text) > value_start), None)
    if k is None:
        return ContinuationScores(logprobs=None, method="generation")
    pre = "".join(p.text for p in positions)[offsets[k] : value_start]
    targets = [pre + c for c in candidates]
    acc = [0.0] * len(candidates)
    done: list[float | None] = [None] * len(candidates)
    unlisted: set[int] = set()
    matched_any = False
    consumed = ""
    for j in range(k, len(positions)):
        p = positions[j]
        alive = [i for i in range(len(candidates)) if done[i] is None]
        if not alive:
            break
        rest = {i: targets[i][len(consumed):] for i in alive}
        matches = {i: [t for t in p.alternatives if t and (rest[i].startswith(t) or t.startswith(rest[i]))]
                   for i in alive}
        on_path = [i for i in alive if p.text in matches[i] and not p.text.startswith(rest[i])]
        for i in alive:
            if i in on_path and len(on_path) > 1:
                acc[i] += p.logprob  # still shared with another candidate: decide further on
                continue
            if matches[i]:
                matched_any = True
                done[i] = acc[i] + _logsumexp([p.alternatives[t] for t in matches[i]])
            else:
                listed = _logsumexp(list(p.alternatives.values()))
                left = math.log(max(1e-12, 1.0 - math.exp(min(0.0, listed))))
                n_unl = sum(1 for x in alive if not matches[x])
                done[i] = acc[i] + min(min(p.alternatives.values()), left - math.log(n_unl))
                unlisted.add(i)
        consumed += p.text
    for i in range(len(candidates)):
        if done[i] is None:  # the reply ended while the candidate was still shared: what it has so far
            done[i] = acc[i]
    if not matched_any:
        return ContinuationScores(logprobs=None, method="generation")
    scores = [float(d) for d in done if d is not None]
    return ContinuationScores(logprobs=scores, method="first-token", tokens=[1] * len(candidates),
                              unlisted=sorted(unlisted))


def find_value_start(text: str, prefix: str) -> int | None:
    """Where the value after ``prefix`` (the reply begun up to a field's value) starts in a generated reply.

    The prefix's last header is looked up in the reply's marker headers (any case or spacing, as the chat
    adapter reads them); the value starts after it and the line break that follows. None: not found.
    """
    from ..adapters.protocol import HEADER, label_key

    headers = list(HEADER.finditer(prefix))
    if not headers:
        return 0 if not prefix.strip() else None
    want = label_key(headers[-1].group(1))
    for m in HEADER.finditer(text):
        if label_key(m.group(1)) == want:
            end = m.end()
            while end < len(text) and text[end] in " \t":
                end += 1
            if text.startswith("\r\n", end):
                end += 2
            elif end < len(text) and text[end] == "\n":
                end += 1
            return end
    return None


def score_openai(lm: Any, messages: list[Message], prefix: str, candidates: list[str], *, top_logprobs: int = 20,
                 max_tokens: int | None = None) -> ContinuationScores:
    """One chat completion with ``logprobs``; candidates scored on the first token that tells them apart."""
    import httpx

    budget = max_tokens or 48 + 4 * len(prefix) // 3
    request = LMRequest(messages=list(messages), temperature=0.0, max_tokens=budget,
                        extra={"logprobs": True, "top_logprobs": int(top_logprobs)})
    body = lm.payload(request)

    def once() -> tuple[Any, Usage]:
        try:
            response = lm.client.post(CHAT_PATH, json=body, timeout=lm.timeout)
        except httpx.TransportError as exc:
            raise lm._transport_error(exc) from None
        if response.status_code >= 400 and "logprob" in response.text.lower():
            # A server that cannot give log-probabilities (llama-cpp-python's, unless started with
            # logits_all, answers 500): not a failure to retry, but a backend that cannot score.
            raise ScoringNotSupportedError(
                f"{lm.model}: the server refused a request for log-probabilities ({response.status_code}: "
                f"{lm.redact(response.text[:300])}); it cannot score label values"
            )
        reply = lm._parse(response)  # raises the right error for a non-2xx or malformed reply
        return response.json(), reply.usage

    try:
        data, usage = lm.retry.run(once)
    except LMBadRequestError as exc:
        if isinstance(exc, ContextWindowError):
            raise
        raise ScoringNotSupportedError(
            f"the server refused a request for log-probabilities ({exc}); it cannot score label values"
        ) from exc
    message = (data.get("choices") or [{}])[0].get("message") or {}
    text = message.get("content") if isinstance(message.get("content"), str) else ""
    positions = positions_from_reply(data)
    if positions is None:
        return ContinuationScores(logprobs=None, method="generation", text=text, usage=usage)
    joined = "".join(p.text for p in positions)
    start = find_value_start(joined, prefix)
    if start is None:
        return ContinuationScores(logprobs=None, method="generation", text=text, usage=usage)
    result = score_first_token(positions, start, candidates)
    result.text = text
    result.usage = usage
    return result


__all__ = [
    "METHODS",
    "ContinuationScores",
    "chat_prompt",
    "find_value_start",
    "positions_from_reply",
    "run_scoring",
    "score_first_token",
    "score_llama",
    "score_openai",
]
