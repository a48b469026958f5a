"""pl.Classify and the label scorers (scripted log-probabilities, a fake llama.cpp context, an OpenAI-style
server behind httpx.MockTransport). No network, no model."""

from __future__ import annotations

import ctypes
import enum
import json
import math
from typing import Any, Literal

import httpx
import pytest

import promptless as pl
from promptless.adapters.chat import ChatAdapter
from promptless.errors import ConfigurationError, ScoringNotSupportedError
from promptless.lm import logprobs as lp
from promptless.lm.logprobs import ContinuationScores, _Position, find_value_start, score_first_token
from promptless.modules.scored import VALUE_END, Classify, ScoredPrediction
from promptless.tasks import ClassifyEvent

LABELS = [
    "Wars and Conflicts", "Politics and Governance", "Science and Innovation", "Cultural and Artistic Movements",
    "Exploration and Discovery", "Economic Events", "Social Movements", "Man-Made Disasters and Accidents",
    "Natural Disasters and Climate", "Sports and Entertainment", "Famous Personalities and Achievements",
]


class Color(enum.Enum):
    RED = "red"
    BLUE = "blue"


class JudgeSig(pl.Signature):
    """Judge."""

    text: str = pl.InputField()
    ok: bool = pl.OutputField()


class PaintSig(pl.Signature):
    """Paint."""

    text: str = pl.InputField()
    color: Color = pl.OutputField()


class CitySig(pl.Signature):
    """Where?"""

    text: str = pl.InputField()
    city: Literal["New York", "New Orleans", "Boston"] = pl.OutputField()


class ReasonSig(pl.Signature):
    """Classify with a reason."""

    event: str = pl.InputField()
    reasoning: str = pl.OutputField()
    category: Literal["war", "peace"] = pl.OutputField()


class CountSig(pl.Signature):
    """Count, then classify."""

    event: str = pl.InputField()
    steps: int = pl.OutputField()
    category: Literal["war", "peace"] = pl.OutputField()


def scores_for(best: str, best_lp: float = -0.2, rest: float = -4.0) -> dict[str, float]:
    return {label: (best_lp if label == best else rest) for label in LABELS}


# -- the predictor -----------------------------------------------------------------------------------------


def test_picks_the_most_likely_label_and_reports_probabilities():
    lm = pl.ScriptedLM(logprobs=scores_for("Science and Innovation"))
    pred = Classify(ClassifyEvent, lm=lm)(event="Edison patents the phonograph, 1878")
    assert isinstance(pred, ScoredPrediction)
    assert pred.category == "Science and Innovation"
    assert pred.decided_by == "scores"
    assert set(pred.label_probs) == set(LABELS)
    assert math.isclose(sum(pred.label_probs.values()), 1.0, rel_tol=1e-12)
    assert max(pred.label_probs, key=pred.label_probs.get) == "Science and Innovation"
    # the confidence output is the chosen label's probability
    assert pred.confidence == pytest.approx(pred.label_probs["Science and Innovation"])
    expected = math.exp(-0.2) / (math.exp(-0.2) + 10 * math.exp(-4.0))
    assert pred.confidence == pytest.approx(expected)
    assert pred.label_logprobs["Wars and Conflicts"] == -4.0
    assert lm.usage.calls == 1


def test_prompt_is_the_chat_adapters_with_the_reply_begun_at_the_label():
    lm = pl.ScriptedLM(logprobs=scores_for("Wars and Conflicts"))
    demos = [pl.Example(event="Battle of Hastings, 1066", category="Wars and Conflicts").with_inputs("event")]
    clf = Classify(ClassifyEvent, lm=lm)
    clf.demos = demos
    clf(event="Tet Offensive, 1968")
    messages, prefix, candidates = lm.score_requests[0]
    assert messages == ChatAdapter().format(ClassifyEvent, demos, {"event": "Tet Offensive, 1968"})
    assert prefix == "[[ ## category ## ]]\n"
    assert candidates == [label + VALUE_END for label in LABELS]


def test_multi_token_labels_are_scored_on_every_token():
    # "New" is the likeliest first token, but what follows it is unlikely for both New cities.
    lm = pl.ScriptedLM(logprobs={"New York": [-0.1, -4.0, -0.01], "New Orleans": [-0.1, -5.0, -0.01],
                                 "Boston": [-1.5, -0.01]})
    pred = Classify(CitySig, lm=lm)(text="Red Sox")
    assert pred.city == "Boston"
    assert pred.label_logprobs == pytest.approx({"New York": -4.11, "New Orleans": -5.11, "Boston": -1.51})
    assert pred.scoring["tokens"] == {"New York": 3, "New Orleans": 3, "Boston": 2}


def test_bool_and_enum_labels_come_back_typed():
    pred = Classify(JudgeSig, lm=pl.ScriptedLM(logprobs={"True": -2.0, "False": -0.1}))(text="x")
    assert pred.ok is False
    pred = Classify(PaintSig, lm=pl.ScriptedLM(logprobs={"red": -2.0, "blue": -0.1}))(text="sky")
    assert pred.color is Color.BLUE


def test_fields_before_the_label_are_generated_first_and_prefix_the_scoring():
    lm = pl.ScriptedLM(["[[ ## reasoning ## ]]\nA battle is fought.\n\n"], logprobs={"war": -0.3, "peace": -2.0})
    pred = Classify(ReasonSig, lm=lm)(event="Battle of Hastings")
    assert pred.reasoning == "A battle is fought."
    assert pred.category == "war"
    assert "[[ ## category ## ]]" in lm.requests[0].stop
    assert lm.score_requests[0][1] == "[[ ## reasoning ## ]]\nA battle is fought.\n\n[[ ## category ## ]]\n"
    assert lm.usage.calls == 2


def test_unsuitable_signatures_are_refused_with_a_reason():
    with pytest.raises(ConfigurationError, match="no output field is a label"):
        Classify("question -> answer")
    with pytest.raises(ConfigurationError, match="after the label"):
        Classify("text -> label: bool, explanation")
    with pytest.raises(ConfigurationError, match="field="):
        Classify("text -> a: bool, b: bool")
    assert Classify("text -> a: bool, b: bool", field="b").plan().field == "b"
    with pytest.raises(ConfigurationError, match="must be a float"):
        Classify("text -> label: bool, note: str", confidence="note")
    with pytest.raises(ConfigurationError, match="chat marker format"):
        Classify(ClassifyEvent, lm=pl.ScriptedLM(logprobs=scores_for("Wars and Conflicts")),
                 adapter=pl.JSONAdapter())(event="x")


def test_falls_back_to_generation_when_the_lm_cannot_score():
    reply = "[[ ## category ## ]]\nEconomic Events\n\n[[ ## confidence ## ]]\n0.9\n\n[[ ## completed ## ]]"
    pred = Classify(ClassifyEvent, lm=pl.ScriptedLM([reply]))(event="Black Tuesday, 1929")
    assert pred.category == "Economic Events"
    assert pred.decided_by == "generation"
    assert pred.label_probs is None
    with pytest.raises(ScoringNotSupportedError, match="cannot score"):
        Classify(ClassifyEvent, lm=pl.ScriptedLM([reply]), fallback=False)(event="Black Tuesday, 1929")


def test_scores_are_cached_like_replies(tmp_path):
    from promptless.lm.cache import Cache

    lm = pl.ScriptedLM(logprobs=scores_for("Economic Events"), cache=Cache(tmp_path / "c.sqlite"))
    clf = Classify(ClassifyEvent, lm=lm)
    first = clf(event="Black Tuesday, 1929")
    second = clf(event="Black Tuesday, 1929")
    assert len(lm.score_requests) == 1
    assert second.label_logprobs == first.label_logprobs
    assert lm.usage.calls == 1 and lm.usage.cache_hits == 1


def test_deepcopy_and_calibration_offsets_apply():
    lm = pl.ScriptedLM(logprobs=scores_for("Politics and Governance", best_lp=-1.0, rest=-1.5))
    clf = Classify(ClassifyEvent, lm=lm)
    assert clf(event="x").category == "Politics and Governance"
    clf.calibration = {"offsets": {"Politics and Governance": -1.0}}
    copy = clf.deepcopy()
    assert copy.calibration == clf.calibration and copy.calibration is not clf.calibration
    pred = copy(event="x")
    assert pred.category != "Politics and Governance"
    assert pred.scoring["offsets"] == {"Politics and Governance": -1.0}
    assert pred.label_logprobs["Politics and Governance"] == -1.0  # raw scores stay raw


# -- the first-token scorer (OpenAI-style top_logprobs) -------------------------------------------------


def positions(*tokens: tuple[str, dict[str, float]]) -> list[_Position]:
    return [_Position(text, alts[text], dict(alts)) for text, alts in tokens]


def test_first_token_scoring_reads_the_alternatives_at_the_value():
    toks = positions(("[[ ## label ## ]]", {"[[ ## label ## ]]": 0.0}), ("\n", {"\n": 0.0}),
                     ("Sports", {"Sports": -0.2, "Wars": -2.0, "Science": -3.0}), (" and", {" and": 0.0}))
    text = "".join(p.text for p in toks)
    start = find_value_start(text, "[[ ## label ## ]]\n")
    assert text[start:].startswith("Sports")
    res = score_first_token(toks, start, ["Sports and Fun\n\n", "Wars\n\n", "Science\n\n", "Economy\n\n"])
    assert res.method == "first-token"
    assert res.logprobs[:3] == [-0.2, -2.0, -3.0]
    assert res.unlisted == [3] and res.logprobs[3] <= -3.0  # not listed: at most the smallest listed


def test_first_token_scoring_goes_on_while_labels_share_tokens():
    toks = positions(("New", {"New": -0.1, "Boston": -2.5}), (" York", {" York": -0.5, " Orleans": -1.2}),
                     ("\n\n", {"\n\n": 0.0}))
    res = score_first_token(toks, 0, ["New York\n\n", "New Orleans\n\n", "Boston\n\n"])
    assert res.logprobs == pytest.approx([-0.6, -1.3, -2.5])


def test_first_token_scoring_gives_up_when_nothing_spells_a_label():
    toks = positions(("Hmm", {"Hmm": -0.1, "Well": -1.0}))
    assert score_first_token(toks, 0, ["yes\n\n", "no\n\n"]).logprobs is None


def _openai_reply(tokens: list[tuple[str, dict[str, float]]], with_logprobs: bool = True) -> dict[str, Any]:
    content = "".join(t for t, _ in tokens)
    choice: dict[str, Any] = {"index": 0, "finish_reason": "length", "message": {"role": "assistant", "content": content}}
    if with_logprobs:
        choice["logprobs"] = {"content": [
            {"token": t, "logprob": alts[t], "bytes": list(t.encode()),
             "top_logprobs": [{"token": a, "logprob": v, "bytes": list(a.encode())} for a, v in alts.items()]}
            for t, alts in tokens]}
    return {"id": "x", "model": "m", "choices": [choice], "usage": {"prompt_tokens": 50, "completion_tokens": 5}}


def _server_lm(reply: dict[str, Any], seen: list[dict[str, Any]]) -> Any:
    from promptless.lm.openai import OpenAILM

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(json.loads(request.content))
        return httpx.Response(200, json=reply)

    return OpenAILM("m", base_url="http://127.0.0.1:9/v1", transport=httpx.MockTransport(handler), cache=False)


def test_openai_compatible_server_scores_on_the_first_distinguishing_token():
    reply = _openai_reply([("[[ ## category ## ]]", {"[[ ## category ## ]]": -0.01}), ("\n", {"\n": 0.0}),
                           ("Economic", {"Economic": -0.3, "Politics": -1.6, "Science": -4.0}),
                           (" Events", {" Events": 0.0})])
    seen: list[dict[str, Any]] = []
    pred = Classify(ClassifyEvent, lm=_server_lm(reply, seen))(event="Black Tuesday, 1929")
    assert seen[0]["logprobs"] is True and seen[0]["top_logprobs"] == 20
    assert pred.category == "Economic Events"
    assert pred.decided_by == "first-token"
    assert pred.label_probs["Economic Events"] > pred.label_probs["Politics and Governance"] > pred.label_probs[
        "Science and Innovation"]
    assert "Wars and Conflicts" in pred.scoring["unlisted"]


def test_openai_compatible_server_without_logprobs_falls_back_to_its_reply():
    tokens = [("[[ ## category ## ]]\nSocial Movements\n\n[[ ## confidence ## ]]\n0.7\n\n[[ ## completed ## ]]", {})]
    reply = _openai_reply(tokens, with_logprobs=False)
    seen: list[dict[str, Any]] = []
    pred = Classify(ClassifyEvent, lm=_server_lm(reply, seen))(event="Women's suffrage march, 1913")
    assert pred.category == "Social Movements"
    assert pred.decided_by == "generation"
    assert len(seen) == 1  # the reply it already had was parsed: no second call


def test_base_lm_refuses_to_score():
    class Plain(pl.BaseLM):
        pass

    with pytest.raises(ScoringNotSupportedError, match="cannot score label values"):
        Plain("m").score_continuations([{"role": "user", "content": "x"}], "", ["a"])


# -- the llama.cpp scorer against a fake context -------------------------------------------------------


class FakeCtx:
    """A KV cache that checks every decode continues exactly where the cache ends (so a missing rollback fails)."""

    def __init__(self, llama: FakeLlama) -> None:
        self.llama = llama
        self.kv: list[int] = []
        self.decoded: list[list[int]] = []
        self._out: Any = None

    def kv_cache_seq_rm(self, seq: int, p0: int, p1: int) -> bool:
        del self.kv[p0:]
        return True

    def decode(self, batch: FakeBatch) -> None:
        import numpy as np

        assert batch.n_past == len(self.kv), f"decode at {batch.n_past} but the cache holds {len(self.kv)}"
        rows = []
        for i, tok in enumerate(batch.tokens):
            self.kv.append(tok)
            if batch.logits_all or i == len(batch.tokens) - 1:
                rows.append(self.llama.table[tok])
        self._out = np.ascontiguousarray(np.array(rows, dtype=np.float32).reshape(-1))
        self.decoded.append(list(batch.tokens))

    def get_logits(self) -> Any:
        return self._out.ctypes.data_as(ctypes.POINTER(ctypes.c_float))


class FakeBatch:
    def set_batch(self, batch: list[int], n_past: int, logits_all: bool) -> None:
        self.tokens, self.n_past, self.logits_all = list(batch), n_past, logits_all


class FakeLlama:
    """One token per character; next-token logits depend on the previous token only (a bigram table)."""

    def __init__(self, n_batch: int = 8) -> None:
        import numpy as np

        rng = np.random.default_rng(0)
        self.table = rng.normal(0, 2, size=(128, 128))
        self.n_batch = n_batch
        self.n_tokens = 0
        self.input_ids = np.zeros(4096, dtype=np.intc)
        self._ctx = FakeCtx(self)
        self._batch = FakeBatch()
        self._requires_eval = False

    def tokenize(self, text: bytes, add_bos: bool = True, special: bool = False) -> list[int]:
        return [ord(c) % 128 for c in text.decode()]

    def n_ctx(self) -> int:
        return 4096

    def n_vocab(self) -> int:
        return 128


def _expected(llama: FakeLlama, prompt: str, cand: str) -> float:
    total = 0.0
    toks = [ord(c) % 128 for c in prompt + cand]
    for i in range(len(prompt), len(toks)):
        row = llama.table[toks[i - 1]]
        m = row.max()
        total += row[toks[i]] - m - math.log(sum(math.exp(v - m) for v in row))
    return total


def test_llama_scorer_scores_every_token_and_evaluates_the_prompt_once(monkeypatch):
    pytest.importorskip("numpy")
    monkeypatch.setattr(lp, "chat_prompt", lambda llama, messages: ("<sys>" + messages[-1].content + "<a>", False))
    llama = FakeLlama(n_batch=8)
    cands = ["Wars and Conflicts\n\n", "Wave\n\n", "Politics\n\n", "P\n\n"]
    msgs = [pl.types.Message("user", "Battle of Hastings")]
    res = lp.score_llama(llama, msgs, "[[ ## c ## ]]\n", cands)
    prompt = "<sys>Battle of Hastings<a>[[ ## c ## ]]\n"
    assert res.method == "full"
    assert res.logprobs == pytest.approx([_expected(llama, prompt, c) for c in cands], rel=1e-5)
    assert res.tokens == [len(c) for c in cands]  # every character-token of every candidate
    # the prompt went through decode once (in n_batch chunks); then each candidate's own tokens only
    prompt_tokens = sum(len(d) for d in llama._ctx.decoded[: math.ceil(len(prompt) / 8)])
    assert prompt_tokens == len(prompt)
    assert llama.n_tokens == len(prompt) and llama._ctx.kv == [ord(c) for c in prompt]  # rolled back to the prompt
    # scoring the same prompt again re-evaluates only a short suffix and gives the same numbers
    before = len(llama._ctx.decoded)
    again = lp.score_llama(llama, msgs, "[[ ## c ## ]]\n", cands)
    assert again.logprobs == pytest.approx(res.logprobs, rel=1e-6)
    assert len(llama._ctx.decoded[before]) == lp.MIN_REEVAL
    assert llama._requires_eval is True  # a generation after scoring re-evaluates before sampling


def test_scripted_lm_scores_need_every_label():
    lm = pl.ScriptedLM(logprobs={"yes": -0.1})
    with pytest.raises(ConfigurationError, match="no log-probability for the candidate 'no'"):
        lm.score_continuations([{"role": "user", "content": "x"}], "", ["yes\n\n", "no\n\n"])
    fixed = ContinuationScores(logprobs=[-1.0, -2.0], method="first-token", tokens=[1, 1])
    lm = pl.ScriptedLM(logprobs=lambda m, p, c: fixed)
    assert lm.score_continuations([{"role": "user", "content": "x"}], "", ["a", "b"]).method == "first-token"


def test_a_server_that_refuses_logprobs_makes_the_label_by_generation():
    from promptless.lm.openai import OpenAILM

    reply = _openai_reply([("[[ ## category ## ]]\nWars and Conflicts\n\n[[ ## confidence ## ]]\n0.8\n\n"
                            "[[ ## completed ## ]]", {})], with_logprobs=False)
    seen: list[dict[str, Any]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        seen.append(body)
        if body.get("logprobs"):  # llama-cpp-python's server without logits_all
            return httpx.Response(500, json={"error": {"message": "logprobs is not supported for models created "
                                                                  "with logits_all=False"}})
        return httpx.Response(200, json=reply)

    lm = OpenAILM("m", base_url="http://127.0.0.1:9/v1", transport=httpx.MockTransport(handler), cache=False)
    pred = Classify(ClassifyEvent, lm=lm)(event="Tet Offensive, 1968")
    assert pred.category == "Wars and Conflicts"
    assert pred.decided_by == "generation"
    assert [bool(b.get("logprobs")) for b in seen] == [True, False]  # refused once, not retried, then generated


def test_a_field_before_the_label_that_does_not_parse_is_asked_again_like_predict():
    lm = pl.ScriptedLM(["[[ ## steps ## ]]\nmany\n\n",
                        "[[ ## steps ## ]]\n3\n\n[[ ## category ## ]]\npeace\n\n[[ ## completed ## ]]"],
                       logprobs={"war": -0.2, "peace": -1.9})
    pred = Classify(CountSig, lm=lm)(event="Treaty of Versailles")
    assert pred.steps == 3
    assert pred.category == "war"  # still decided by the scores, after the generated field
    assert lm.score_requests[0][1] == "[[ ## steps ## ]]\n3\n\n[[ ## category ## ]]\n"
