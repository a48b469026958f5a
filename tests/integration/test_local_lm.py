"""LocalLM against the real smollm2-135m weights, in this process."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from promptless.adapters.grammar import json_grammar, marker_grammar
from promptless.errors import ConfigurationError, ContextWindowError
from promptless.lm import LM
from promptless.lm.local import LocalLM, usable_cores

pytestmark = pytest.mark.integration

CATEGORIES = [
    "Wars and Conflicts",
    "Politics and Governance",
    "Science and Technology",
    "Arts and Culture",
    "Religion",
    "Other",
]

SYSTEM = (
    "Your input fields are:\n1. `event` (str): a dated historic event\n"
    "Your output fields are:\n1. `category` (Literal[" + ", ".join(repr(c) for c in CATEGORIES) + "])\n"
    "2. `confidence` (float)\n"
    "All interactions will be structured in the following way, with the appropriate values filled in.\n\n"
    "[[ ## event ## ]]\n{event}\n\n[[ ## category ## ]]\n{category}\n\n"
    "[[ ## confidence ## ]]\n{confidence}        # note: the value you produce must be a single float value\n\n"
    "[[ ## completed ## ]]\n"
    "In adhering to this structure, your objective is: Classify the historic event."
)

EVENTS = [
    "Battle of Hastings won by William the Conqueror and the Normans, 1066",
    "Galileo observes the moons of Jupiter, 1610",
    "Magna Carta sealed by King John, 1215",
]


def user_turn(event: str) -> str:
    return (
        f"[[ ## event ## ]]\n{event}\n\n"
        "Respond with the corresponding output fields, starting with the field `[[ ## category ## ]]`, "
        "then `[[ ## confidence ## ]]`, and then ending with the marker for `[[ ## completed ## ]]`."
    )


def messages_for(event: str) -> list[dict[str, str]]:
    return [{"role": "system", "content": SYSTEM}, {"role": "user", "content": user_turn(event)}]


MARKER_REPLY = re.compile(
    r"\A\[\[ ## category ## \]\]\n(?P<category>.+)\n\n"
    r"\[\[ ## confidence ## \]\]\n(?P<confidence>[-0-9.eE+]+)\n\n"
    r"\[\[ ## completed ## \]\]\Z"
)


@pytest.fixture(scope="module")
def lm(smollm2_path: Path) -> LocalLM:
    return LocalLM("smollm2-135m", cache=False)


class EvalCounter:
    """Counts the tokens llama.cpp evaluates (prompt + generated) per call."""

    def __init__(self, llama: Any) -> None:
        self.llama = llama
        self.batches: list[int] = []

    def __enter__(self) -> EvalCounter:
        original = type(self.llama).eval

        def counting_eval(tokens: Any) -> None:
            self.batches.append(len(tokens))
            original(self.llama, tokens)

        self.llama.eval = counting_eval
        return self

    def __exit__(self, *exc: object) -> None:
        del self.llama.eval

    @property
    def first_batch(self) -> int:
        """Prompt tokens evaluated before the first sampled token."""
        return self.batches[0]


@pytest.fixture
def counting(lm: LocalLM) -> Iterator[type[EvalCounter]]:
    yield EvalCounter


def test_plain_chat_call_returns_text_and_usage(lm: LocalLM) -> None:
    resp = lm.request(prompt="What is the capital of France? Answer in one short sentence.", max_tokens=32)
    assert resp.text.strip()
    assert "Paris" in resp.text
    assert resp.usage.calls == 1
    assert resp.usage.prompt_tokens > 5
    assert 0 < resp.usage.completion_tokens <= 32
    assert resp.finish_reasons == ["stop"]
    assert resp.model == "smollm2-135m"
    assert lm.usage.calls >= 1


def test_defaults_and_settings(lm: LocalLM, smollm2_path: Path) -> None:
    assert lm.provider == "local"
    assert lm.supports_grammar is True
    assert lm.n_threads == usable_cores()
    assert lm.n_ctx == 4096
    assert lm.kwargs["temperature"] == 0.0
    assert lm.path == smollm2_path
    assert lm.llama.n_threads == usable_cores()


def test_factory_and_shared_weights(lm: LocalLM, smollm2_path: Path) -> None:
    other = LM("local/smollm2-135m", cache=False)
    assert isinstance(other, LocalLM)
    assert other.llama is lm.llama  # loaded once per process
    by_path = LocalLM(str(smollm2_path), cache=False)
    assert by_path.llama is lm.llama


def test_max_tokens_truncates(lm: LocalLM) -> None:
    resp = lm.request(prompt="Count from one to one hundred in words.", max_tokens=5)
    assert resp.usage.completion_tokens == 5
    assert resp.finish_reasons == ["length"]
    assert resp.truncated


def test_greedy_is_deterministic(smollm2_path: Path) -> None:
    fresh = LocalLM("smollm2-135m", cache=False, prefix_reuse=False)
    replies = {fresh.request(prompt="Name a colour.", max_tokens=16).text for _ in range(3)}
    assert len(replies) == 1


def test_n_and_seed(lm: LocalLM) -> None:
    resp = lm.request(prompt="Write a word.", n=3, temperature=1.0, seed=7, max_tokens=8)
    assert len(resp.texts) == 3
    assert len(resp.finish_reasons) == 3
    again = lm.request(prompt="Write a word.", n=3, temperature=1.0, seed=7, max_tokens=8)
    assert again.texts == resp.texts


def test_stop_sequence(lm: LocalLM) -> None:
    resp = lm.request(prompt="List the numbers 1, 2, 3, 4, 5 separated by commas.", stop=["3"], max_tokens=40)
    assert "3" not in resp.text
    assert "4" not in resp.text


@pytest.mark.parametrize("event", EVENTS)
def test_marker_grammar_reply_parses(lm: LocalLM, event: str) -> None:
    grammar = marker_grammar([("category", "literal", CATEGORIES), ("confidence", "float", None)])
    resp = lm.request(messages_for(event), grammar=grammar, max_tokens=64)
    match = MARKER_REPLY.match(resp.text)
    assert match, resp.text
    assert match["category"] in CATEGORIES
    float(match["confidence"])
    assert resp.finish_reasons == ["stop"]


def test_marker_grammar_free_text_field(lm: LocalLM) -> None:
    # The bound on free text keeps a rambling small model from using up max_tokens.
    grammar = marker_grammar([("reasoning", "str", None), ("category", "literal", CATEGORIES)], max_chars=120)
    resp = lm.request(messages_for(EVENTS[0]), grammar=grammar, max_tokens=256)
    assert resp.finish_reasons == ["stop"], resp.text
    match = re.match(
        r"\A\[\[ ## reasoning ## \]\]\n(?P<r>.+?)\n\n"
        r"\[\[ ## category ## \]\]\n(?P<c>.+)\n\n\[\[ ## completed ## \]\]\Z",
        resp.text,
        re.S,
    )
    assert match, resp.text
    assert "[[" not in match["r"]
    assert len(match["r"]) <= 2 * 120  # "[" and the character after it count as one
    assert match["c"] in CATEGORIES


def test_json_grammar_and_response_format(lm: LocalLM) -> None:
    fields = [("category", "literal", CATEGORIES), ("confidence", "float", None)]
    by_grammar = json.loads(lm.request(messages_for(EVENTS[1]), grammar=json_grammar(fields), max_tokens=64).text)
    assert list(by_grammar) == ["category", "confidence"]
    assert by_grammar["category"] in CATEGORIES

    schema = {
        "type": "object",
        "properties": {"category": {"enum": CATEGORIES}, "confidence": {"type": "number"}},
        "required": ["category", "confidence"],
    }
    for response_format in (schema, {"type": "json_schema", "json_schema": {"name": "out", "schema": schema}}):
        data = json.loads(lm.request(messages_for(EVENTS[1]), response_format=response_format, max_tokens=64).text)
        assert data["category"] in CATEGORIES
        assert isinstance(data["confidence"], (int, float))


def test_grammar_off(smollm2_path: Path) -> None:
    lm = LocalLM("smollm2-135m", cache=False, grammar=False)
    assert lm.supports_grammar is False
    # The grammar would force a bare "yes"; with constrained decoding off it is ignored.
    resp = lm.request(prompt="Say hello to the world in a full sentence.", grammar='root ::= "yes"\n', max_tokens=24)
    assert resp.text != "yes"


def test_broken_grammar_is_a_configuration_error(lm: LocalLM) -> None:
    with pytest.raises(ConfigurationError, match="rejected the GBNF grammar"):
        lm.request(prompt="hi", grammar='root ::= "a" undefined-rule\n')
    # The model still works afterwards.
    assert lm.request(prompt="Say hi.", max_tokens=8).text


def test_context_window_error(smollm2_path: Path) -> None:
    small = LocalLM("smollm2-135m", cache=False, n_ctx=256)
    with pytest.raises(ContextWindowError, match="n_ctx"):
        small.request(prompt="history " * 600, max_tokens=8)
    assert small.request(prompt="Say hi.", max_tokens=8).text
    with pytest.raises(ConfigurationError, match="at least 256"):
        LocalLM("smollm2-135m", n_ctx=64)


def test_unknown_model_name() -> None:
    from promptless.errors import ModelFetchError

    with pytest.raises(ModelFetchError, match="known models"):
        LocalLM("no-such-model")


def _classify_twice(lm: LocalLM) -> tuple[list[str], list[int], int]:
    """Two calls sharing the system prompt; the texts and tokens evaluated before sampling."""
    grammar = marker_grammar([("category", "literal", CATEGORIES), ("confidence", "float", None)])
    texts, first_batches = [], []
    prompt_tokens = 0
    for event in EVENTS[:2]:
        with EvalCounter(lm.llama) as counter:
            resp = lm.request(messages_for(event), grammar=grammar, max_tokens=64)
        texts.append(resp.text)
        first_batches.append(counter.first_batch)
        prompt_tokens = resp.usage.prompt_tokens
    return texts, first_batches, prompt_tokens


def test_prefix_reuse_on_and_off(lm: LocalLM) -> None:
    off = LocalLM("smollm2-135m", cache=False, prefix_reuse=False)
    assert off.llama is lm.llama
    texts_off, evaluated_off, prompt_tokens = _classify_twice(off)
    texts_on, evaluated_on, _ = _classify_twice(lm)

    # Without reuse each call evaluates its whole prompt.
    assert evaluated_off[1] == prompt_tokens
    # With reuse the second call evaluates only what differs from the first.
    assert evaluated_on[1] < prompt_tokens // 2
    # Both produce well-formed replies. (They need not be identical: a suffix evaluated on its
    # own rounds slightly differently from a whole prompt, which can tip a near-tie.)
    for text in texts_on + texts_off:
        assert MARKER_REPLY.match(text), text
