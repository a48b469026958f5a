from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from promptless.lm import cache as cache_mod
from promptless.lm.base import BaseLM
from promptless.lm.cache import Cache, cache_key, default_cache, default_cache_path, reset_default_cache
from promptless.types import LMRequest, LMResponse, Message, Usage


def reply(text: str = "hello") -> dict:
    return LMResponse(texts=[text], usage=Usage(calls=1, prompt_tokens=3, completion_tokens=1), model="m").to_dict()


def req(**kw: object) -> LMRequest:
    messages = kw.pop("messages", [Message("user", "hi")])
    return LMRequest(messages=messages, **kw)  # type: ignore[arg-type]


@pytest.fixture
def fresh_default(monkeypatch: pytest.MonkeyPatch):
    reset_default_cache()
    for name in ("PROMPTLESS_CACHE_DIR", "PROMPTLESS_HOME", "PROMPTLESS_CACHE"):
        monkeypatch.delenv(name, raising=False)
    yield
    reset_default_cache()


# -- get / put -------------------------------------------------------------------


def test_put_then_get_round_trips(tmp_path: Path) -> None:
    with Cache(tmp_path / "c.sqlite3") as c:
        assert c.get("k") is None
        c.put("k", reply("a"))
        assert c.get("k") == reply("a")
        assert len(c) == 1
        c.put("k", reply("b"))
        assert c.get("k") == reply("b")
        assert len(c) == 1
        assert "k" in c and "other" not in c


def test_get_returns_a_fresh_dict(tmp_path: Path) -> None:
    c = Cache(tmp_path / "c.sqlite3")
    c.put("k", reply("a"))
    got = c.get("k")
    assert got is not None
    got["texts"].append("mutated")
    assert c.get("k") == reply("a")
    c.close()


def test_survives_a_new_instance(tmp_path: Path) -> None:
    path = tmp_path / "c.sqlite3"
    Cache(path).put("k", reply("persisted"))
    c2 = Cache(path)
    assert c2.get("k") == reply("persisted")
    c2.close()


def test_values_are_json_text_on_disk(tmp_path: Path) -> None:
    path = tmp_path / "c.sqlite3"
    c = Cache(path)
    c.put("k", reply("plain"))
    c.close()
    with sqlite3.connect(path) as conn:
        (value,) = conn.execute("SELECT value FROM entries WHERE key='k'").fetchone()
    assert isinstance(value, str)
    assert value.startswith("{") and '"plain"' in value


def test_wal_mode(tmp_path: Path) -> None:
    path = tmp_path / "c.sqlite3"
    c = Cache(path)
    c.put("k", reply())
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0].lower() == "wal"
    c.close()


def test_clear(tmp_path: Path) -> None:
    c = Cache(tmp_path / "c.sqlite3")
    for i in range(5):
        c.put(f"k{i}", reply(str(i)))
    assert len(c) == 5
    c.clear()
    assert len(c) == 0
    assert c.get("k1") is None
    c.close()


def test_memory_only_cache() -> None:
    c = Cache(None, memory_size=2)
    c.put("a", reply("a"))
    c.put("b", reply("b"))
    c.put("c", reply("c"))
    assert len(c) == 2
    assert c.get("a") is None
    assert c.get("c") == reply("c")
    c.clear()
    assert len(c) == 0


def test_lru_evicts_least_recently_used_but_disk_keeps_all(tmp_path: Path) -> None:
    c = Cache(tmp_path / "c.sqlite3", memory_size=2)
    c.put("a", reply("a"))
    c.put("b", reply("b"))
    assert c.get("a") is not None  # a is now most recent
    c.put("c", reply("c"))  # evicts b from memory
    assert list(c._memory) == ["a", "c"]
    assert len(c) == 3
    assert c.get("b") == reply("b")  # read back from disk, now in memory again
    assert list(c._memory) == ["c", "b"]
    c.close()


def test_memory_hit_does_not_touch_disk(tmp_path: Path) -> None:
    c = Cache(tmp_path / "c.sqlite3")
    c.put("k", reply("x"))
    c.close()  # disk part gone; memory answers
    assert c.get("k") == reply("x")


def test_nothing_on_disk_until_first_use(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "c.sqlite3"
    c = Cache(path)
    assert not path.parent.exists()
    c.get("k")
    assert path.exists()
    c.close()


# -- corrupt rows ----------------------------------------------------------------


@pytest.mark.parametrize("bad", ["{not json", "[1, 2]", "42", "null", ""])
def test_corrupt_row_is_a_miss(tmp_path: Path, bad: str) -> None:
    path = tmp_path / "c.sqlite3"
    c = Cache(path, memory_size=0)
    c.put("k", reply())
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE entries SET value = ? WHERE key = 'k'", (bad,))
    assert c.get("k") is None
    c.put("k", reply("fixed"))
    assert c.get("k") == reply("fixed")
    c.close()


def test_non_text_row_is_a_miss(tmp_path: Path) -> None:
    path = tmp_path / "c.sqlite3"
    c = Cache(path, memory_size=0)
    c.put("k", reply())
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE entries SET value = ? WHERE key = 'k'", (b"\x80\x04pickle",))
    assert c.get("k") is None
    c.close()


def test_unreadable_file_is_a_miss_not_an_error(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "c.sqlite3"
    path.write_bytes(b"this is not a database" * 100)
    c = Cache(path)
    assert c.get("k") is None
    c.put("k", reply())  # logged, not raised
    assert c.get("k") == reply()  # the memory part still works
    c.get("other")
    warnings = [r for r in caplog.records if r.name == "promptless.lm" and r.levelname == "WARNING"]
    assert len(warnings) == 1  # said once, not on every call
    assert "cannot be used" in warnings[0].getMessage()
    c.close()


def test_unwritable_folder_falls_back_to_memory(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    c = Cache(blocker / "c.sqlite3")
    c.put("k", reply())
    assert c.get("k") == reply()
    assert len(c) == 1


# -- threads ---------------------------------------------------------------------


def test_threads_share_one_cache(tmp_path: Path) -> None:
    c = Cache(tmp_path / "c.sqlite3", memory_size=8)
    errors: list[BaseException] = []

    def work(t: int) -> None:
        try:
            for i in range(30):
                c.put(f"{t}-{i}", reply(f"{t}-{i}"))
                assert c.get(f"{t}-{i}") == reply(f"{t}-{i}")
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(t,)) for t in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert len(c) == 120
    c.close()


# -- keys ------------------------------------------------------------------------


def test_key_is_stable_and_hex() -> None:
    k = cache_key("m", req(temperature=0.5))
    assert k == cache_key("m", req(temperature=0.5))
    assert len(k) == 64 and int(k, 16) >= 0


def test_key_depends_on_model_and_messages() -> None:
    base = cache_key("m", req())
    assert cache_key("other", req()) != base
    assert cache_key("m", req(messages=[Message("user", "hi!")])) != base
    assert cache_key("m", req(messages=[Message("system", "hi")])) != base
    assert cache_key("m", req(messages=[Message("user", "hi"), Message("user", "hi")])) != base


@pytest.mark.parametrize(
    "change",
    [
        {"temperature": 0.7},
        {"max_tokens": 10},
        {"n": 2},
        {"stop": ["\n"]},
        {"seed": 1},
        {"response_format": {"type": "object"}},
        {"grammar": "root ::= 'a'"},
        {"rollout_id": 1},
        {"rollout_id": "a"},
        {"extra": {"top_p": 0.5}},
    ],
)
def test_key_depends_on_each_sampling_param(change: dict) -> None:
    assert cache_key("m", req(**change)) != cache_key("m", req())


def test_key_distinguishes_rollouts() -> None:
    assert cache_key("m", req(rollout_id=1)) != cache_key("m", req(rollout_id=2))


def test_key_treats_equal_numbers_alike() -> None:
    assert cache_key("m", req(temperature=1)) == cache_key("m", req(temperature=1.0))
    assert cache_key("m", req(temperature=0.0)) != cache_key("m", req(temperature=0.1))


# -- default cache location ------------------------------------------------------


def test_default_under_cache_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fresh_default: None) -> None:
    monkeypatch.setenv("PROMPTLESS_CACHE_DIR", str(tmp_path / "cd"))
    monkeypatch.setenv("PROMPTLESS_HOME", str(tmp_path / "home"))
    assert default_cache_path() == tmp_path / "cd" / "cache.sqlite3"
    c = default_cache()
    c.put("k", reply())
    assert (tmp_path / "cd" / "cache.sqlite3").exists()
    assert not (tmp_path / "home").exists()
    assert default_cache() is c


def test_default_under_promptless_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fresh_default: None) -> None:
    monkeypatch.setenv("PROMPTLESS_HOME", str(tmp_path / "home"))
    default_cache().put("k", reply())
    assert (tmp_path / "home" / "cache" / "cache.sqlite3").exists()


def test_default_under_user_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fresh_default: None) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    assert default_cache_path() == tmp_path / ".cache" / "promptless" / "cache.sqlite3"
    default_cache().put("k", reply())
    assert default_cache_path().exists()


@pytest.mark.parametrize("off", ["0", "false", "off"])
def test_promptless_cache_0_keeps_memory_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fresh_default: None, off: str
) -> None:
    monkeypatch.setenv("PROMPTLESS_CACHE_DIR", str(tmp_path / "cd"))
    monkeypatch.setenv("PROMPTLESS_CACHE", off)
    c = default_cache()
    assert c.path is None
    c.put("k", reply())
    assert c.get("k") == reply()
    assert not (tmp_path / "cd").exists()


def test_nothing_created_at_import(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("PROMPTLESS_")}
    env.update(HOME=str(home), XDG_CACHE_HOME=str(home / ".cache"), PYTHONDONTWRITEBYTECODE="1")
    code = "import promptless, promptless.lm, promptless.lm.cache, promptless.lm.openai, promptless.lm.litellm"
    subprocess.run([sys.executable, "-c", code], env=env, check=True, timeout=60)
    assert list(home.iterdir()) == []


# -- through an LM ---------------------------------------------------------------


class CountingLM(BaseLM):
    def __init__(self, **kw: object) -> None:
        super().__init__("counting", **kw)  # type: ignore[arg-type]
        self.calls = 0
        self.finish = "stop"

    def complete(self, request: LMRequest) -> LMResponse:
        self.calls += 1
        return LMResponse(
            texts=[f"reply {self.calls}"],
            usage=Usage(calls=1, prompt_tokens=2, completion_tokens=2),
            model=self.model,
            finish_reasons=[self.finish],
        )


def test_lm_uses_the_cache(tmp_path: Path) -> None:
    lm = CountingLM(cache=Cache(tmp_path / "c.sqlite3"))
    first = lm.request(prompt="hi")
    second = lm.request(prompt="hi")
    assert lm.calls == 1
    assert second.cached and not first.cached
    assert second.texts == first.texts
    assert lm.request(prompt="hi", rollout_id=1).texts == ["reply 2"]
    assert lm.request(prompt="hi", cache=False).texts == ["reply 3"]
    assert lm.usage.cache_hits == 1


def test_lm_does_not_cache_truncated_replies(tmp_path: Path) -> None:
    c = Cache(tmp_path / "c.sqlite3")
    lm = CountingLM(cache=c)
    lm.finish = "length"
    lm.request(prompt="hi")
    assert len(c) == 0
    lm.request(prompt="hi")
    assert lm.calls == 2


def test_lm_cache_false_never_touches_a_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cache_mod, "default_cache", lambda: pytest.fail("default cache used"))
    lm = CountingLM(cache=False)
    lm.request(prompt="hi")
    lm.request(prompt="hi")
    assert lm.calls == 2


def test_lm_does_not_cache_an_empty_completion(tmp_path: Path) -> None:
    class EmptyLM(CountingLM):
        def complete(self, request: LMRequest) -> LMResponse:
            resp = super().complete(request)
            resp.texts = [""] if self.calls == 1 else resp.texts
            return resp

    c = Cache(tmp_path / "c.sqlite3")
    lm = EmptyLM(cache=c)
    assert lm.request(prompt="hi").texts == [""]
    assert len(c) == 0
    assert lm.request(prompt="hi").texts == ["reply 2"]
    assert lm.request(prompt="hi").cached
    assert lm.calls == 2


# -- what a row must be --------------------------------------------------------------


def test_put_refuses_a_reply_that_is_not_well_formed(tmp_path: Path) -> None:
    c = Cache(tmp_path / "c.sqlite3")
    good = reply("ok")
    assert c.put("good", good) is True
    for bad in (
        {**good, "texts": [""]},
        {**good, "texts": ["ok", "  "]},
        {**good, "texts": []},
        {**good, "texts": "ok"},
        {**good, "usage": None},
        {**good, "finish_reasons": ["length"]},
        {**good, "finish_reasons": "stop"},
        {**good, "extra": object()},  # not JSON: refused, not raised
    ):
        assert c.put("bad", bad) is False
        assert c.get("bad") is None
    assert len(c) == 1
    c.close()


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ("nope", "not a JSON object"),
        ({"texts": []}, "no completions"),
        ({"texts": [1]}, "not text"),
        ({"texts": [" "]}, "empty completion"),
        ({"texts": ["a"], "usage": []}, "usage is not an object"),
        ({"texts": ["a"], "usage": {"calls": True}}, "usage.calls"),
        ({"texts": ["a"], "usage": {"cost": float("nan")}}, "usage.cost"),
        ({"texts": ["a"], "usage": {}, "model": None}, "model"),
        ({"texts": ["a"], "usage": {}, "model": "m", "finish_reasons": "stop"}, "finish_reasons"),
        ({"texts": ["a"], "usage": {}, "model": "m", "finish_reasons": ["length"]}, "truncated"),
    ],
)
def test_entry_problem_names_what_is_wrong(value: object, problem: str) -> None:
    found = cache_mod.entry_problem(value)
    assert found is not None and problem in found


def test_entry_problem_accepts_what_an_lm_response_writes() -> None:
    assert cache_mod.entry_problem(reply()) is None
    assert cache_mod.entry_problem(LMResponse(texts=["a", "b"]).to_dict()) is None  # no finish reasons: fine


def test_deeply_nested_row_is_a_miss(tmp_path: Path) -> None:
    path = tmp_path / "c.sqlite3"
    c = Cache(path, memory_size=0)
    c.put("k", reply())
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE entries SET value = ? WHERE key = 'k'", ("[" * 100_000 + "]" * 100_000,))
    assert c.get("k") is None
    c.close()


def test_a_row_with_fewer_completions_than_asked_is_a_miss(tmp_path: Path) -> None:
    c = Cache(tmp_path / "c.sqlite3")
    lm = CountingLM(cache=c)
    request = lm.build_request([Message("user", "hi")], {"n": 2})
    c.put(lm._cache_key(request), reply("one only"))
    assert lm.request(prompt="hi", n=2).texts == ["reply 1"]
    assert lm.calls == 1


# -- identities: where the request goes is part of the key ----------------------------------


def openai(base_url: str = "http://127.0.0.1:8080/v1", **kw: object):
    from promptless.lm.openai import OpenAILM

    return OpenAILM("llama3", base_url=base_url, cache=False, **kw)  # type: ignore[arg-type]


def test_openai_identity_has_provider_model_and_endpoint_without_credentials() -> None:
    lm = openai("http://user:secret@Example.org:8080/v1/?api_key=k2#frag", api_key="sk-hidden",
                headers={"X-Route": "eu", "Authorization": "Bearer hidden", "api-key": "hidden"})
    identity = lm.cache_identity()
    assert identity["provider"] == "openai" and identity["model"] == "llama3"
    assert identity["base_url"] == "http://example.org:8080/v1"
    assert identity["headers"] == {"x-route": "eu"}
    text = json.dumps(identity)
    for secret in ("secret", "sk-hidden", "k2", "hidden", "user"):
        assert secret not in text


def test_openai_keys_differ_by_endpoint_and_settings_not_by_key() -> None:
    request = req()
    base = openai()._cache_key(request)
    assert openai("http://127.0.0.1:8081/v1")._cache_key(request) != base
    assert openai("http://127.0.0.1:8080/v2")._cache_key(request) != base
    assert openai(supports_structured_output=False)._cache_key(request) != base
    assert openai(supports_structured_output="json_object")._cache_key(request) != base
    assert openai(supports_structured_output=True)._cache_key(request) == base
    assert openai(headers={"X-Route": "us"})._cache_key(request) != base
    assert openai(api_key="sk-a")._cache_key(request) == base
    assert openai("http://127.0.0.1:8080/v1/")._cache_key(request) == base
    lm = openai()
    lm.base_url = "http://127.0.0.1:9999/v1"  # changed after construction: the key follows
    assert lm._cache_key(request) != base


def test_litellm_identity_has_api_base_without_credentials() -> None:
    from promptless.lm.litellm import LiteLLMLM

    plain = LiteLLMLM("anthropic/claude", cache=False).cache_identity()
    assert plain == {"provider": "litellm", "model": "anthropic/claude"}
    lm = LiteLLMLM("anthropic/claude", base_url="https://u:pw@Proxy.example/v1?key=abc", cache=False)
    identity = lm.cache_identity()
    assert identity["api_base"] == "https://proxy.example/v1"
    assert "pw" not in json.dumps(identity) and "abc" not in json.dumps(identity)


def _local(model: str, **settings: object):
    from promptless.lm.local import LocalLM

    lm = LocalLM.__new__(LocalLM)  # without llama.cpp or weights: only the identity is looked at
    BaseLM.__init__(lm, model, cache=False)
    lm.n_ctx, lm.n_batch, lm.use_grammar, lm.prefix_reuse = 4096, 512, True, True
    for name, value in settings.items():
        setattr(lm, name, value)
    return lm


def test_local_identity_has_weights_and_settings(tmp_path: Path) -> None:
    from promptless.lm import models

    name = next(iter(models.REGISTRY))
    assert _local(name).cache_identity()["weights"] == models.REGISTRY[name].sha256
    gguf = tmp_path / "m.gguf"
    gguf.write_bytes(b"GGUF" + b"\0" * 100)
    base = _local(str(gguf)).cache_identity()
    assert base["provider"] == "local" and base["weights"]["size"] == 104
    for change in ({"n_ctx": 2048}, {"use_grammar": False}, {"prefix_reuse": False}, {"n_batch": 64}):
        assert _local(str(gguf), **change).cache_identity() != base
    gguf.write_bytes(b"GGUF" + b"\1" * 200)  # other weights at the same path
    assert _local(str(gguf)).cache_identity() != base


def test_base_identity_tells_unnamed_backends_apart() -> None:
    class A(BaseLM):
        pass

    class B(BaseLM):
        pass

    assert A("m").cache_identity() != B("m").cache_identity()
    assert cache_key(A("m").cache_identity(), req()) != cache_key(B("m").cache_identity(), req())
    assert CountingLM().cache_identity()["model"] == "counting"


def test_key_is_versioned() -> None:
    import hashlib

    request = req()
    old = {"v": 1, "model": "m", "messages": [["user", "hi"]], "sampling": request.sampling()}
    old_key = hashlib.sha256(json.dumps(old, sort_keys=True, separators=(",", ":")).encode()).hexdigest()
    assert cache_key("m", request) != old_key


# -- the size limit --------------------------------------------------------------------


def sized_reply(i: int, size: int = 900) -> dict:
    return reply(f"{i}:" + "x" * size)


def test_disk_stays_under_the_limit_evicting_least_recently_used(tmp_path: Path) -> None:
    c = Cache(tmp_path / "c.sqlite3", memory_size=0, max_bytes=10_000)
    c._touch_seconds = 0  # record every hit, so the order of use is exact
    for i in range(8):
        c.put(f"k{i}", sized_reply(i))
    assert c.stats()["bytes"] <= 10_000 and len(c) == 8
    assert c.get("k0") is not None  # k0 is now the most recently used
    for i in range(8, 12):
        c.put(f"k{i}", sized_reply(i))
    stats = c.stats()
    assert stats["bytes"] <= 10_000
    kept = {f"k{i}" for i in range(12) if c.get(f"k{i}") is not None}
    assert "k0" in kept and "k11" in kept
    assert "k1" not in kept and "k2" not in kept  # the least recently used went first
    c.close()


def test_a_second_writer_enforces_the_limit_on_its_first_write(tmp_path: Path) -> None:
    path = tmp_path / "c.sqlite3"
    big = Cache(path, memory_size=0, max_bytes=1 << 20)
    for i in range(20):
        big.put(f"k{i}", sized_reply(i))
    big.close()
    small = Cache(path, memory_size=0, max_bytes=5_000)  # e.g. the limit was lowered
    small.put("new", sized_reply(99))
    assert small.stats()["bytes"] <= 5_000
    assert small.get("new") is not None
    small.close()


def test_max_bytes_zero_keeps_nothing_on_disk(tmp_path: Path) -> None:
    c = Cache(tmp_path / "c.sqlite3", max_bytes=0)
    c.put("k", reply())
    assert c.get("k") == reply()  # memory
    assert c.stats()["entries"] == 0
    c.close()


def test_a_hit_is_recorded_as_a_use(tmp_path: Path) -> None:
    path = tmp_path / "c.sqlite3"
    c = Cache(path, memory_size=0)
    c.put("k", reply())
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE entries SET used = 1000")
    assert c.get("k") is not None
    with sqlite3.connect(path) as conn:
        (used,) = conn.execute("SELECT used FROM entries").fetchone()
    assert used > 1000
    c.close()


@pytest.mark.parametrize(
    ("text", "expected"),
    [("1024", 1024), ("500M", 500 << 20), ("2G", 2 << 30), ("1.5KiB", 1536), ("64 kb", 64 << 10), ("0", 0)],
)
def test_size_setting(text: str, expected: int) -> None:
    assert cache_mod.parse_size(text) == expected


@pytest.mark.parametrize("bad", ["", "lots", "-1", "5X", "1e9"])
def test_bad_size_setting_says_how_to_fix_it(monkeypatch: pytest.MonkeyPatch, bad: str) -> None:
    from promptless.errors import ConfigurationError

    monkeypatch.setenv("PROMPTLESS_CACHE_MAX_BYTES", bad)
    if bad == "":
        assert cache_mod.resolve_max_bytes() == cache_mod.DEFAULT_MAX_BYTES
        return
    with pytest.raises(ConfigurationError, match=r"PROMPTLESS_CACHE_MAX_BYTES=.*for example"):
        Cache(None)


def test_limit_from_argument_env_and_default(monkeypatch: pytest.MonkeyPatch, fresh_default: None,
                                             tmp_path: Path) -> None:
    from promptless.errors import ConfigurationError

    assert Cache(None).max_bytes == 1 << 30
    monkeypatch.setenv("PROMPTLESS_CACHE_MAX_BYTES", "3M")
    assert Cache(None).max_bytes == 3 << 20
    assert Cache(None, max_bytes=123).max_bytes == 123
    assert Cache(None, max_bytes="1K").max_bytes == 1024
    monkeypatch.setenv("PROMPTLESS_CACHE_DIR", str(tmp_path))
    assert default_cache().max_bytes == 3 << 20
    for bad in (-1, 1.5, True):
        with pytest.raises(ConfigurationError, match="max_bytes"):
            Cache(None, max_bytes=bad)  # type: ignore[arg-type]


def test_old_layout_file_is_emptied_on_open(tmp_path: Path) -> None:
    path = tmp_path / "c.sqlite3"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE entries (key TEXT PRIMARY KEY, value TEXT NOT NULL, created REAL NOT NULL)")
        conn.execute("INSERT INTO entries VALUES ('k', ?, 0)", (json.dumps(reply()),))
    c = Cache(path)
    assert c.get("k") is None and len(c) == 0
    c.put("k", reply())
    assert c.get("k") == reply()
    c.close()


def test_a_file_of_a_newer_layout_is_left_alone(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "c.sqlite3"
    with sqlite3.connect(path) as conn:
        conn.execute("PRAGMA user_version = 99")
    c = Cache(path)
    c.put("k", reply())  # memory only, and said once
    assert c.get("k") == reply()
    assert any("newer promptless" in r.getMessage() for r in caplog.records)
    c.close()
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == 99


# -- promptless cache info | clear ---------------------------------------------------------


@pytest.fixture
def cli_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fresh_default: None) -> Path:
    monkeypatch.setenv("PROMPTLESS_CACHE_DIR", str(tmp_path / "pc"))
    return tmp_path / "pc" / "cache.sqlite3"


def fill(path: Path, n: int) -> None:
    c = Cache(path)
    for i in range(n):
        c.put(f"k{i}", reply(f"answer {i}"))
    c.close()


def test_cli_info_without_a_file(cli_cache: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from promptless.cli import main

    assert main(["cache", "info"]) == 0
    out = capsys.readouterr().out
    assert str(cli_cache) in out and "none yet" in out and "1.0 GiB" in out
    assert not cli_cache.parent.exists()  # looking does not create anything


def test_cli_info_reports_entries_and_limit(cli_cache: Path, monkeypatch: pytest.MonkeyPatch,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    from promptless.cli import main

    fill(cli_cache, 7)
    monkeypatch.setenv("PROMPTLESS_CACHE_MAX_BYTES", "2M")
    assert main(["cache", "info"]) == 0
    out = capsys.readouterr().out
    assert "entries     7 (" in out and "2.0 MiB (from PROMPTLESS_CACHE_MAX_BYTES)" in out
    assert main(["cache", "info", "--json"]) == 0
    record = json.loads(capsys.readouterr().out)
    assert record["entries"] == 7 and record["max_bytes"] == 2 << 20 and record["path"] == str(cli_cache)
    assert 0 < record["bytes"] < record["file_bytes"]


def test_cli_clear_empties_the_cache(cli_cache: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from promptless.cli import main

    fill(cli_cache, 5)
    assert main(["cache", "clear"]) == 0
    assert "5 entries removed" in capsys.readouterr().out
    assert main(["cache", "info", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["entries"] == 0
    c = Cache(cli_cache)
    assert c.get("k1") is None  # the file still works
    c.put("k1", reply())
    assert len(c) == 1
    c.close()


def test_cli_clear_with_no_file(cli_cache: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from promptless.cli import main

    assert main(["cache", "clear"]) == 0
    assert "nothing to clear" in capsys.readouterr().out
    assert not cli_cache.exists()


def test_cli_damaged_file_info_says_so_and_clear_deletes_it(cli_cache: Path,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    from promptless.cli import main

    cli_cache.parent.mkdir(parents=True)
    cli_cache.write_bytes(b"not a database" * 200)
    assert main(["cache", "info"]) == 1
    assert "promptless cache clear" in capsys.readouterr().err
    assert main(["cache", "clear"]) == 0
    assert "deleted" in capsys.readouterr().out
    assert not cli_cache.exists()


def test_cli_bad_limit_is_an_error(cli_cache: Path, monkeypatch: pytest.MonkeyPatch,
                                   capsys: pytest.CaptureFixture[str]) -> None:
    from promptless.cli import main

    monkeypatch.setenv("PROMPTLESS_CACHE_MAX_BYTES", "huge")
    assert main(["cache", "info"]) == 1
    assert "PROMPTLESS_CACHE_MAX_BYTES" in capsys.readouterr().err


def test_cli_path_option(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from promptless.cli import main

    other = tmp_path / "elsewhere.sqlite3"
    fill(other, 3)
    assert main(["cache", "info", "--path", str(other), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["entries"] == 3
    assert main(["cache", "clear", "--path", str(other)]) == 0
    assert Cache(other).stats()["entries"] == 0
