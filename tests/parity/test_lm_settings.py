"""LM and settings, written the way a DSPy program writes them."""

from __future__ import annotations

import importlib.util
from types import SimpleNamespace

import pytest

import promptless as dspy
from promptless.errors import ConfigurationError
from promptless.lm import litellm_installed
from promptless.lm.calllog import GLOBAL_HISTORY


def marker_reply(**fields: str) -> str:
    return "".join(f"[[ ## {k} ## ]]\n{v}\n\n" for k, v in fields.items()) + "[[ ## completed ## ]]"


# -- dspy.LM is a class -----------------------------------------------------------------------------------


def test_every_backend_is_an_lm_and_a_base_lm():
    made = [
        dspy.LM("openai/gpt-4o-mini", api_key="sk-test"),
        dspy.LM("ollama_chat/llama3.2", api_base="http://localhost:11434"),
        dspy.LM("scripted/echo", replies=["hi"]),
        dspy.ScriptedLM(["hi"]),
    ]
    if importlib.util.find_spec("llama_cpp") is not None:
        made.append(dspy.LM("local/smollm2-135m"))
    for lm in made:
        assert isinstance(lm, dspy.LM) and isinstance(lm, dspy.BaseLM), type(lm)
    assert type(made[0]) is not dspy.LM  # the call picked the backend class


def test_lm_takes_the_model_by_keyword_and_refuses_a_missing_one():
    assert dspy.LM(model="openai/gpt-4o-mini", api_key="sk-test").model == "gpt-4o-mini"
    with pytest.raises(ConfigurationError, match="needs a model string"):
        dspy.LM()


def test_api_base_num_retries_and_model_type_mean_what_they_mean_in_dspy():
    lm = dspy.LM("openai/my-model", api_base="http://127.0.0.1:8000/v1", num_retries=2, model_type="chat",
                 api_key="")
    assert lm.base_url == "http://127.0.0.1:8000/v1"
    assert lm.retry.max_attempts == 3  # two retries after the first attempt
    with pytest.raises(ConfigurationError, match="model_type='text' is not supported"):
        dspy.LM("openai/my-model", model_type="text", api_key="")


def test_other_providers_go_through_litellm_or_say_how_to_install_it():
    if litellm_installed():
        from promptless.lm.litellm import LiteLLMLM

        lm = dspy.LM("anthropic/claude-3-5-haiku-latest")
        assert isinstance(lm, LiteLLMLM) and lm.model == "anthropic/claude-3-5-haiku-latest"
    else:
        for model in ("anthropic/claude-3-5-haiku-latest", "gemini/gemini-2.0-flash", "groq/llama-3.1-8b"):
            with pytest.raises(ConfigurationError, match=r"pip install 'promptless\[litellm\]'"):
                dspy.LM(model)


class CountingLM(dspy.BaseLM):
    """A custom LM the DSPy way: forward returns an OpenAI-shaped response."""

    def __init__(self, answer: str) -> None:
        super().__init__(model="house-model", temperature=0.0)
        self.answer = answer
        self.seen: list[dict] = []

    def forward(self, prompt=None, messages=None, **kwargs):
        self.seen.append({"messages": messages, "kwargs": kwargs})
        return SimpleNamespace(
            choices=[SimpleNamespace(message=SimpleNamespace(content=self.answer), finish_reason="stop")],
            usage={"prompt_tokens": 11, "completion_tokens": 5, "total_tokens": 16},
            model="house-model-v2",
        )


def test_a_base_lm_subclass_with_forward_runs_a_program():
    lm = CountingLM(marker_reply(answer="Paris"))
    dspy.configure(lm=lm)
    pred = dspy.Predict("question -> answer")(question="Capital of France?")
    assert pred.answer == "Paris"
    assert len(lm.seen) == 1
    sent = lm.seen[0]
    assert sent["messages"][0]["role"] == "system" and "Capital of France?" in sent["messages"][-1]["content"]
    assert sent["kwargs"]["temperature"] == 0.0
    assert pred.usage.prompt_tokens == 11 and pred.usage.completion_tokens == 5
    assert lm.history[-1]["outputs"] == [marker_reply(answer="Paris")]
    assert lm("hello") == [marker_reply(answer="Paris")]  # called directly, as DSPy users do


def test_a_base_lm_subclass_is_not_answered_from_the_shared_cache():
    lm = CountingLM(marker_reply(answer="Paris"))
    predict = dspy.Predict("question -> answer", lm=lm)
    predict(question="same")
    predict(question="same")
    assert len(lm.seen) == 2


class Recording(dspy.LM):
    """A dspy.LM subclass that wraps __call__ and lets the backend its model string names answer."""

    def __init__(self) -> None:
        super().__init__("scripted/echo", replies=[marker_reply(answer="42")], temperature=0.3)
        self.prompts: list = []

    def __call__(self, prompt=None, messages=None, **kwargs):
        self.prompts.append(messages[-1]["content"] if messages else prompt)
        return super().__call__(prompt=prompt, messages=messages, **kwargs)


def test_an_lm_subclass_that_overrides_call_still_reaches_its_backend_once():
    lm = Recording()
    assert isinstance(lm, dspy.LM) and type(lm) is Recording
    with dspy.track_usage() as usage:
        pred = dspy.Predict("question -> answer", lm=lm)(question="6 * 7?")
    assert pred.answer == "42"
    assert len(lm.prompts) == 1 and "6 * 7?" in lm.prompts[0]
    assert usage.calls == 1 and len(lm.history) == 1  # counted and logged once, not once per layer
    assert lm.history[-1]["request"].temperature == 0.3


class Shouting(dspy.LM):
    def forward(self, prompt=None, messages=None, **kwargs):
        reply = super().forward(prompt=prompt, messages=messages, **kwargs)
        reply.choices[0].message.content = reply.choices[0].message.content.replace("quiet", "LOUD")
        return reply


def test_an_lm_subclass_forward_can_call_super_forward():
    lm = Shouting("scripted/echo", replies=[marker_reply(answer="quiet")])
    assert dspy.Predict("q -> answer", lm=lm)(q="x").answer == "LOUD"


def test_lm_copy_changes_sampling_defaults_only_on_the_copy():
    lm = dspy.LM("openai/gpt-4o-mini", api_key="sk-test", temperature=0.0)
    hot = lm.copy(temperature=0.9)
    assert hot.kwargs["temperature"] == 0.9 and lm.kwargs["temperature"] == 0.0
    assert type(hot) is type(lm) and hot.history is not lm.history


# -- dspy.settings --------------------------------------------------------------------------------------


def test_settings_read_as_an_object():
    lm = dspy.ScriptedLM(["x"])
    adapter = dspy.JSONAdapter()
    dspy.configure(lm=lm, adapter=adapter)
    assert dspy.settings.lm is lm and dspy.settings.adapter is adapter
    assert dspy.settings["lm"] is lm and "lm" in dspy.settings and "nonsense" not in dspy.settings
    assert dspy.settings.callbacks == [] and dspy.settings.track_usage is False
    assert dspy.settings.get("not_a_setting", "fallback") == "fallback"
    assert dspy.settings.config["lm"] is lm
    other = dspy.ScriptedLM(["y"])
    with dspy.context(lm=other):
        assert dspy.settings.lm is other
    assert dspy.settings.lm is lm
    dspy.settings.lm = other  # assignment configures, as in DSPy
    assert dspy.settings.lm is other
    with pytest.raises(AttributeError, match="no setting 'lmm'"):
        dspy.settings.lmm  # noqa: B018


class TwoSteps(dspy.Module):
    def __init__(self) -> None:
        super().__init__()
        self.draft = dspy.Predict("question -> answer", lm=dspy.ScriptedLM([marker_reply(answer="draft")],
                                                                           model="drafter"))
        self.check = dspy.Predict("answer -> verdict", lm=dspy.ScriptedLM([marker_reply(verdict="ok")],
                                                                          model="checker"))

    def forward(self, question):
        return self.check(answer=self.draft(question=question).answer)


def test_track_usage_puts_lm_usage_by_model_on_the_prediction():
    program = TwoSteps()
    assert program(question="q").get_lm_usage() is None  # not tracked unless asked
    dspy.configure(track_usage=True)
    pred = program(question="q")
    usage = pred.get_lm_usage()
    assert set(usage) == {"drafter", "checker"}
    for model in usage:
        assert usage[model]["calls"] == 1
        assert usage[model]["total_tokens"] == usage[model]["prompt_tokens"] + usage[model]["completion_tokens"] > 0


def test_track_usage_names_models_as_they_were_given_to_lm():
    dspy.configure(track_usage=True, lm=dspy.LM("scripted/house", replies=[marker_reply(answer="a")]))
    assert set(dspy.Predict("q -> answer")(q="x").get_lm_usage()) == {"scripted/house"}


def test_disable_history_keeps_no_lm_calls():
    lm = dspy.ScriptedLM([marker_reply(answer="a")])
    before = len(GLOBAL_HISTORY)
    dspy.configure(disable_history=True)
    dspy.Predict("q -> answer", lm=lm)(q="x")
    assert len(lm.history) == 0 and len(GLOBAL_HISTORY) == before
    dspy.configure(disable_history=False)
    dspy.Predict("q -> answer", lm=lm)(q="x")
    assert len(lm.history) == 1


def test_max_trace_size_bounds_the_trace_keeping_the_latest():
    lm = dspy.ScriptedLM([marker_reply(answer="a")])
    predict = dspy.Predict("q -> answer", lm=lm)
    trace: list = []
    with dspy.context(trace=trace, max_trace_size=2):
        for q in ("one", "two", "three"):
            predict(q=q)
    assert [inputs["q"] for _, inputs, _ in trace] == ["two", "three"]


def test_the_other_dspy_settings_are_taken_and_checked():
    dspy.configure(warn_on_type_mismatch=False, max_trace_size=10, callbacks=[])
    assert dspy.settings.warn_on_type_mismatch is False and dspy.settings.max_trace_size == 10
    with pytest.raises(ConfigurationError, match="track_usage must be True or False"):
        dspy.configure(track_usage="yes")
    with pytest.raises(ConfigurationError, match="max_trace_size must be a whole number"):
        dspy.configure(max_trace_size=-1)
