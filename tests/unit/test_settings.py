"""Settings: every key taken does something; the ones promptless does not support are refused, not ignored."""

from __future__ import annotations

import pytest

import promptless as pl
from promptless import settings
from promptless.errors import ConfigurationError


def test_callbacks_are_taken_and_checked():
    class Seen(pl.utils.callback.BaseCallback):
        pass

    pl.configure(callbacks=[Seen()])
    assert isinstance(settings.get("callbacks")[0], Seen)
    with pytest.raises(ConfigurationError, match=r"callbacks must be a list.*callbacks=\[MyCallback\(\)\]"):
        pl.configure(callbacks=Seen())


def test_an_unknown_setting_names_the_ones_there_are():
    with pytest.raises(ConfigurationError, match=r"unknown setting\(s\) max_histroy; the settings are: lm, adapter, "
                                                 r"trace, callbacks"):
        pl.configure(max_histroy=10)


def test_dspy_settings_that_mean_nothing_here_say_what_to_write():
    with pytest.raises(ConfigurationError, match=r"pass num_threads= to pl\.Evaluate"):
        pl.configure(num_threads=4)


def test_the_settings_there_are_take_effect_in_a_context():
    lm = pl.ScriptedLM(["[[ ## answer ## ]]\n4\n\n[[ ## completed ## ]]"])
    trace: list = []
    with pl.context(lm=lm, trace=trace):
        assert settings.current_lm() is lm
        pred = pl.Predict("question -> answer")(question="2+2?")
    assert pred.answer == "4" and len(trace) == 1 and trace[0][2] is pred
    assert settings.get("trace") is None
