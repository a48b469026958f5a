from __future__ import annotations

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
