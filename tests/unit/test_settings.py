"""Settings: every key taken does something; the ones promptless does not support are refused, not ignored."""

from __future__ import annotations

import pytest

import promptless as pl
from promptless import settings
from promptless.errors import ConfigurationError


def test_callbacks_are_refused_with_what_to_use_instead():
    for call in (lambda: pl.configure(callbacks=[print]), lambda: pl.context(callbacks=[]).__enter__()):
        with pytest.raises(ConfigurationError, match="callbacks are not supported yet") as info:
            call()
        assert "pl.track_usage()" in str(info.value)
    assert "callbacks" not in settings.snapshot()


def test_an_unknown_setting_names_the_ones_there_are():
    with pytest.raises(ConfigurationError, match=r"unknown setting\(s\) max_history; the settings are: lm, adapter, "
                                                 r"trace"):
        pl.configure(max_history=10)


def test_the_settings_there_are_take_effect_in_a_context():
    lm = pl.ScriptedLM(["[[ ## answer ## ]]\n4\n\n[[ ## completed ## ]]"])
    trace: list = []
    with pl.context(lm=lm, trace=trace):
        assert settings.current_lm() is lm
        pred = pl.Predict("question -> answer")(question="2+2?")
    assert pred.answer == "4" and len(trace) == 1 and trace[0][2] is pred
    assert settings.get("trace") is None
