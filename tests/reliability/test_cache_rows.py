"""The LM cache never serves a wrong answer, and a bad row is a miss, never an error.

Cases from the hardening probe (issue 11), each of which the cache before the
fix got wrong:

- one model name at two ``base_url``s shared entries (one server's answer was
  served for the other);
- an empty completion (``content`` null, ``""``, a number, missing) was stored
  and served again after the server recovered, without a new request;
- damaged rows were served (``{"texts": "WRONG"}`` as five one-letter
  completions, ``{"texts": [42]}``, ``{"texts": []}``) or broke the call (a bad
  ``usage`` raised AttributeError);
- rows of the older key scheme must simply miss.

Then a hypothesis fuzzer writes damaged rows straight into the SQLite file:
every one must be a miss (the call reaches the model, the reply is the model's)
and the damaged row must be gone afterwards. ``PROMPTLESS_FUZZ_EXAMPLES`` sets
how many rows it tries (default 200; the slower tier runs with thousands).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import promptless as pl
from promptless.lm.base import BaseLM
from promptless.lm.cache import Cache
from promptless.types import LMRequest, LMResponse, Message, Usage

EXAMPLES = int(os.environ.get("PROMPTLESS_FUZZ_EXAMPLES", "200"))


# -- helpers ---------------------------------------------------------------------------


def chat_reply(content: Any = "good", *, has_content: bool = True) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant"}
    if has_content:
        message["content"] = content
    return {
        "id": "x",
        "object": "chat.completion",
        "model": "llama3",
        "choices": [{"index": 0, "message": message, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 5, "completion_tokens": 1, "total_tokens": 6},
    }


class Server:
    """An OpenAI-compatible endpoint in process (httpx.MockTransport): answers from a queue, counts posts."""

    def __init__(self, *replies: dict[str, Any]) -> None:
        self.replies = list(replies)
        self.posts = 0
        self.transport = httpx.MockTransport(self._handle)

    def _handle(self, request: httpx.Request) -> httpx.Response:
        self.posts += 1
        reply = self.replies.pop(0) if len(self.replies) > 1 else self.replies[0]
        return httpx.Response(200, json=reply)


def openai_lm(server: Server, cache: Cache, base_url: str = "http://10.0.0.1:8080/v1", **kw: Any) -> BaseLM:
    return pl.LM("openai/llama3", base_url=base_url, api_key="sk-test", cache=cache, transport=server.transport,
                 retry=False, **kw)


class CountingLM(BaseLM):
    """Answers "fresh <n>" and counts its calls."""

    provider = "counting"

    def __init__(self, cache: Cache) -> None:
        super().__init__("counting-model", cache=cache)
        self.calls = 0

    def complete(self, request: LMRequest) -> LMResponse:
        self.calls += 1
        return LMResponse(
            texts=[f"fresh {self.calls}"] * request.n,
            usage=Usage(calls=1, prompt_tokens=3, completion_tokens=2),
            model=self.model,
            finish_reasons=["stop"] * request.n,
        )


MESSAGES = [Message("user", "what is 2+2?")]


def set_row(path: Path, key: str, value: Any) -> None:
    """Overwrite the stored value of ``key`` (written first by a good call) with ``value``, as damage would."""
    with sqlite3.connect(path) as conn:
        changed = conn.execute("UPDATE entries SET value = ? WHERE key = ?", (value, key)).rowcount
    assert changed == 1


def stored(path: Path, key: str) -> Any:
    with sqlite3.connect(path) as conn:
        row = conn.execute("SELECT value FROM entries WHERE key = ?", (key,)).fetchone()
    return None if row is None else row[0]


@pytest.fixture
def cache_path(tmp_path: Path) -> Path:
    return tmp_path / "cache.sqlite3"


@pytest.fixture
def cache(cache_path: Path) -> Iterator[Cache]:
    c = Cache(cache_path, memory_size=0)  # every read goes to the file
    yield c
    c.close()


# -- the key: where the request goes -------------------------------------------------------


def test_one_model_at_two_servers_does_not_share_entries(cache: Cache) -> None:
    a, b = Server(chat_reply("from server A")), Server(chat_reply("from server B"))
    lm_a = openai_lm(a, cache, base_url="http://10.0.0.1:8080/v1")
    lm_b = openai_lm(b, cache, base_url="http://10.0.0.2:8080/v1")
    assert lm_a(prompt="hi") == ["from server A"]
    assert lm_b(prompt="hi") == ["from server B"]
    assert (a.posts, b.posts) == (1, 1)
    # Each is then answered from its own entry.
    assert lm_a(prompt="hi") == ["from server A"] and lm_b(prompt="hi") == ["from server B"]
    assert (a.posts, b.posts) == (1, 1)


def test_the_same_server_reached_with_other_credentials_shares_entries(cache: Cache) -> None:
    server = Server(chat_reply("shared"))
    first = openai_lm(server, cache, base_url="http://user:pw1@10.0.0.1:8080/v1")
    second = pl.LM("openai/llama3", base_url="http://10.0.0.1:8080/v1/", api_key="sk-other", cache=cache,
                   transport=server.transport, retry=False)
    assert first(prompt="hi") == ["shared"]
    assert second(prompt="hi") == ["shared"]
    assert server.posts == 1


def test_structured_output_setting_is_part_of_the_key(cache: Cache) -> None:
    server = Server(chat_reply('{"a": 1}'), chat_reply("a: 1"))
    with_schema = openai_lm(server, cache)
    without = openai_lm(server, cache, supports_structured_output=False)
    fmt = {"type": "object", "properties": {"a": {"type": "integer"}}}
    assert with_schema(prompt="hi", response_format=fmt) == ['{"a": 1}']
    assert without(prompt="hi", response_format=fmt) == ["a: 1"]  # a different body was sent
    assert server.posts == 2


# -- only well-formed replies are stored -------------------------------------------------------


@pytest.mark.parametrize(
    "empty",
    [
        pytest.param(chat_reply(None), id="content-null"),
        pytest.param(chat_reply(""), id="content-empty"),
        pytest.param(chat_reply(42), id="content-number"),
        pytest.param(chat_reply(has_content=False), id="no-content"),
        pytest.param(chat_reply("   \n"), id="content-blank"),
    ],
)
def test_an_empty_completion_is_not_served_after_the_server_recovers(cache: Cache, empty: dict[str, Any]) -> None:
    server = Server(empty, chat_reply("recovered"))
    lm = openai_lm(server, cache)
    try:
        first = lm.request(prompt="hi")
    except pl.errors.LMResponseError:
        pass  # a client may refuse an empty reply outright; it must not cache it either way
    else:
        assert first.texts[0].strip() == "" and not first.cached
    again = lm.request(prompt="hi")
    assert server.posts == 2, "the second call must reach the recovered server"
    assert again.texts == ["recovered"] and not again.cached
    # ... and the good reply is what is cached now.
    assert lm.request(prompt="hi").cached
    assert len(cache) == 1


def test_fewer_completions_than_asked_are_not_cached(cache: Cache) -> None:
    server = Server(chat_reply("only one"))
    lm = openai_lm(server, cache)
    lm.request(prompt="hi", n=3)
    lm.request(prompt="hi", n=3)
    assert server.posts == 2
    assert len(cache) == 0


# -- damaged rows are a miss, and are dropped ----------------------------------------------------


@pytest.fixture
def lm_with_row(cache: Cache, cache_path: Path) -> tuple[CountingLM, str]:
    lm = CountingLM(cache)
    assert lm.request(MESSAGES).texts == ["fresh 1"]
    key = lm._cache_key(lm.build_request(MESSAGES, {}))
    assert stored(cache_path, key) is not None
    return lm, key


GOOD = {"texts": ["cached"], "usage": {"calls": 1, "prompt_tokens": 3, "completion_tokens": 1}, "model": "m",
        "finish_reasons": ["stop"]}

DAMAGED = {
    "texts-a-string": {**GOOD, "texts": "WRONG"},
    "texts-a-number-inside": {**GOOD, "texts": [42]},
    "texts-empty-list": {**GOOD, "texts": []},
    "texts-empty-string": {**GOOD, "texts": [""]},
    "texts-null": {**GOOD, "texts": None},
    "texts-missing": {k: v for k, v in GOOD.items() if k != "texts"},
    "usage-a-list": {**GOOD, "usage": [1, 2]},
    "usage-a-string": {**GOOD, "usage": "lots"},
    "usage-a-number": {**GOOD, "usage": 7},
    "usage-count-a-string": {**GOOD, "usage": {"calls": "one"}},
    "usage-count-negative": {**GOOD, "usage": {"prompt_tokens": -5}},
    "usage-cost-a-string": {**GOOD, "usage": {"cost": "free"}},
    "model-a-list": {**GOOD, "model": ["m"]},
    "finish-reasons-a-string": {**GOOD, "finish_reasons": "stop"},
    "finish-reasons-truncated": {**GOOD, "finish_reasons": ["length"]},
    "a-list": [GOOD],
}


@pytest.mark.parametrize("name", list(DAMAGED))
def test_a_damaged_row_is_a_miss_and_is_dropped(
    lm_with_row: tuple[CountingLM, str], cache: Cache, cache_path: Path, name: str
) -> None:
    lm, key = lm_with_row
    set_row(cache_path, key, json.dumps(DAMAGED[name]))
    resp = lm.request(MESSAGES)  # no error
    assert lm.calls == 2, "a damaged row must not be served"
    assert not resp.cached and resp.texts == ["fresh 2"]
    # The damaged row is gone, replaced by the fresh good reply.
    assert json.loads(stored(cache_path, key))["texts"] == ["fresh 2"]


@pytest.mark.parametrize("name", list(DAMAGED))
def test_cache_get_drops_a_damaged_row(lm_with_row: tuple[CountingLM, str], cache: Cache, cache_path: Path,
                                       name: str) -> None:
    _, key = lm_with_row
    set_row(cache_path, key, json.dumps(DAMAGED[name]))
    assert cache.get(key) is None
    assert stored(cache_path, key) is None


def test_a_row_under_the_old_key_scheme_is_never_served(cache: Cache, cache_path: Path) -> None:
    lm = CountingLM(cache)
    request = lm.build_request(MESSAGES, {})
    # The key before identities were part of it: version 1, the model name, messages and sampling.
    payload = {"v": 1, "model": lm.model, "messages": [[m.role, m.content] for m in request.messages],
               "sampling": request.sampling()}
    old_key = hashlib.sha256(
        json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
    ).hexdigest()
    cache.put(old_key, {**GOOD, "texts": ["stale answer"]})
    assert lm.request(MESSAGES).texts == ["fresh 1"]
    assert lm.calls == 1


def test_a_file_of_the_old_layout_is_emptied_not_served(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite3"
    with sqlite3.connect(path) as conn:  # the layout promptless 0.1.0 wrote
        conn.execute("CREATE TABLE entries (key TEXT PRIMARY KEY, value TEXT NOT NULL, created REAL NOT NULL)")
        conn.executemany("INSERT INTO entries VALUES (?, ?, 0)", [(f"k{i}", json.dumps(GOOD)) for i in range(5)])
    c = Cache(path, memory_size=0)
    lm = CountingLM(c)
    assert lm.request(MESSAGES).texts == ["fresh 1"]
    assert c.get("k1") is None
    assert len(c) == 1  # only the new reply
    c.close()


# -- the fuzzer ---------------------------------------------------------------------------------


def well_formed(value: Any) -> bool:
    """The test's own statement of a servable row (written apart from the cache's check)."""
    try:
        texts, usage, model, reasons = value["texts"], value["usage"], value["model"], value["finish_reasons"]
    except (TypeError, KeyError, IndexError):
        return False
    if type(texts) is not list or len(texts) == 0:
        return False
    if any(type(t) is not str or t.strip() == "" for t in texts):
        return False
    if type(usage) is not dict or type(model) is not str or type(reasons) is not list:
        return False
    for name in ("calls", "prompt_tokens", "completion_tokens", "cache_hits"):
        if name in usage and (type(usage[name]) is not int or usage[name] < 0):
            return False
    for name in ("seconds", "cost"):
        v = usage.get(name)
        if v is not None and (type(v) not in (int, float) or not math.isfinite(v) or v < 0):
            return False
    return all(type(r) is str for r in reasons) and "length" not in reasons


json_scalars = st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats() | st.text(max_size=8)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4),
    max_leaves=12,
)
# Values that are certainly not a servable completion list / usage object / ...
bad_texts = (
    st.one_of(json_scalars, st.dictionaries(st.text(max_size=4), json_values, max_size=2), st.just([]))
    | st.lists(st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.just(""), st.just(" \n"),
                         st.lists(st.text(max_size=3), max_size=2)), min_size=1, max_size=3)
    .flatmap(lambda bad: st.permutations(["ok", *bad]))
)
bad_count = st.one_of(
    st.none(), st.booleans(), st.floats(), st.integers(max_value=-1), st.text(max_size=4),
    st.lists(st.integers(), max_size=2),
)
bad_usage = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=6), st.lists(json_scalars, max_size=3),
    st.tuples(st.sampled_from(["calls", "prompt_tokens", "completion_tokens", "cache_hits"]), bad_count).map(
        lambda kv: {kv[0]: kv[1]}
    ),
    st.tuples(st.sampled_from(["cost", "seconds"]),
              st.one_of(st.text(max_size=3), st.just(float("nan")), st.just(float("inf")), st.just(-1.0),
                        st.booleans(), st.lists(st.integers(), max_size=1))).map(lambda kv: {kv[0]: kv[1]}),
)
bad_model = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.lists(st.text(max_size=3), max_size=2))
bad_reasons = st.one_of(
    st.none(), st.integers(), st.text(max_size=5), st.just(["length"]), st.just(["stop", "length"]),
    st.lists(st.one_of(st.integers(), st.none()), min_size=1, max_size=2),
)


def _damage(field: str, bad: Any) -> Any:
    row = json.loads(json.dumps(GOOD))
    if bad is _MISSING:
        del row[field]
    else:
        row[field] = bad
    return json.dumps(row, allow_nan=True)


_MISSING = object()

damaged_rows = st.one_of(
    st.tuples(st.just("texts"), bad_texts | st.just(_MISSING)).map(lambda fb: _damage(*fb)),
    st.tuples(st.just("usage"), bad_usage | st.just(_MISSING)).map(lambda fb: _damage(*fb)),
    st.tuples(st.just("model"), bad_model | st.just(_MISSING)).map(lambda fb: _damage(*fb)),
    st.tuples(st.just("finish_reasons"), bad_reasons | st.just(_MISSING)).map(lambda fb: _damage(*fb)),
    # Not JSON, not an object, truncated text, nesting deeper than the parser goes, not text at all.
    st.text(max_size=30).filter(lambda t: not well_formed(_loads(t))),
    json_values.filter(lambda v: not well_formed(v)).map(lambda v: json.dumps(v, allow_nan=True)),
    st.integers(min_value=1, max_value=len(json.dumps(GOOD)) - 1).map(lambda n: json.dumps(GOOD)[:n]),
    st.integers(min_value=1000, max_value=100_000).map(lambda depth: "[" * depth + "]" * depth),
    st.binary(max_size=30),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.floats(allow_nan=False),
)


def _loads(text: str) -> Any:
    try:
        return json.loads(text)
    except (ValueError, RecursionError):
        return None


@pytest.fixture(scope="module")
def fuzz_lm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[CountingLM, Path, str]]:
    """One file and one LM for all fuzz examples (a fresh SQLite file per example costs more than the check)."""
    path = tmp_path_factory.mktemp("fuzz") / "cache.sqlite3"
    cache = Cache(path, memory_size=0)
    lm = CountingLM(cache)
    key = lm._cache_key(lm.build_request(MESSAGES, {}))
    yield lm, path, key
    cache.close()


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(row=damaged_rows)
def test_fuzz_every_damaged_row_is_a_miss_never_an_error_never_served(
    fuzz_lm: tuple[CountingLM, Path, str], row: Any
) -> None:
    if isinstance(row, str):
        assert not well_formed(_loads(row)), row  # the strategy makes only damaged rows
    lm, path, key = fuzz_lm
    cache = lm.cache
    assert cache is not None
    cache.put(key, GOOD)
    set_row(path, key, row)
    calls = lm.calls
    resp = lm.request(MESSAGES)  # never an error
    assert lm.calls == calls + 1, f"served a damaged row: {row!r}"
    assert resp.texts == [f"fresh {lm.calls}"] and not resp.cached
    assert json.loads(stored(path, key))["texts"] == [f"fresh {lm.calls}"]  # replaced by the good reply
    # Read directly, a damaged row is None and is dropped.
    set_row(path, key, row)
    assert cache.get(key) is None
    assert stored(path, key) is None


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(value=json_values)
def test_fuzz_any_json_row_is_served_only_if_well_formed(fuzz_lm: tuple[CountingLM, Path, str], value: Any) -> None:
    lm, path, key = fuzz_lm
    cache = lm.cache
    assert cache is not None
    cache.put(key, GOOD)
    set_row(path, key, json.dumps(value, allow_nan=True))
    calls = lm.calls
    resp = lm.request(MESSAGES)
    if well_formed(value):
        assert resp.cached and resp.texts == value["texts"] and lm.calls == calls
    else:
        assert not resp.cached and resp.texts == [f"fresh {lm.calls}"] and lm.calls == calls + 1


# -- three processes, one bounded file ---------------------------------------------------------

WORKER = r"""
import logging, sys, threading
from promptless.lm.cache import Cache

path, proc, limit = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
problems = []

class Count(logging.Handler):
    def emit(self, record):
        if record.levelno >= logging.WARNING:
            problems.append(record.getMessage())

logging.getLogger("promptless.lm").addHandler(Count())
cache = Cache(path, memory_size=4, max_bytes=limit)
cache._touch_seconds = 0  # every hit is a write too: the most contention

def value(key):
    return {"texts": [key, "x" * 300], "usage": {"calls": 1}, "model": "m", "finish_reasons": ["stop"]}

def work(t):
    try:
        for i in range(80):
            own = f"p{proc}-t{t}-{i}"
            cache.put(own, value(own))
            for key in (own, f"p{(proc + 1) % 3}-t{t}-{i}", f"p{proc}-t{t}-{i // 2}"):
                got = cache.get(key)
                if got is not None and got != value(key):
                    problems.append(f"{key}: wrong value {got!r}")
    except BaseException as exc:
        problems.append(repr(exc))

threads = [threading.Thread(target=work, args=(t,)) for t in range(2)]
for th in threads:
    th.start()
for th in threads:
    th.join()
cache.close()
print("\n".join(problems[:20]) if problems else "ok")
sys.exit(1 if problems else 0)
"""


def test_three_processes_share_one_bounded_file(tmp_path: Path) -> None:
    import subprocess
    import sys

    path = tmp_path / "shared" / "cache.sqlite3"
    limit = 40_000  # about 100 of the 3 x 2 x 80 = 480 entries fit: eviction runs all the time
    procs = [
        subprocess.Popen([sys.executable, "-c", WORKER, str(path), str(p), str(limit)],
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        for p in range(3)
    ]
    outputs = [p.communicate(timeout=120)[0] for p in procs]
    for p, out in zip(procs, outputs, strict=True):
        assert p.returncode == 0 and out.strip().endswith("ok"), out
    cache = Cache(path, memory_size=0)
    stats = cache.stats()
    # Each process may write up to a sixteenth of the limit past its last check.
    assert 0 < stats["bytes"] <= limit * (1 + 3 / 16)
    for key in [f"p{p}-t{t}-79" for p in range(3) for t in range(2)]:
        got = cache.get(key)
        assert got is None or got["texts"][0] == key
    cache.close()
