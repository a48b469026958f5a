"""Callbacks and OpenTelemetry traces, written the way a DSPy program writes them."""

from __future__ import annotations

import asyncio
import logging

import pytest

import promptless as dspy
from promptless.utils.callback import ACTIVE_CALL_ID, BaseCallback


def marker_reply(**fields: str) -> str:
    return "".join(f"[[ ## {k} ## ]]\n{v}\n\n" for k, v in fields.items()) + "[[ ## completed ## ]]"


class Recorder(BaseCallback):
    """Keeps every event: (handler, call_id, instance or outputs, inputs or exception, the active call id)."""

    def __init__(self) -> None:
        self.events: list[tuple] = []

    def _start(self, kind, call_id, instance, inputs):
        self.events.append((f"{kind}_start", call_id, instance, inputs, ACTIVE_CALL_ID.get()))

    def _end(self, kind, call_id, outputs, exception):
        self.events.append((f"{kind}_end", call_id, outputs, exception, ACTIVE_CALL_ID.get()))

    def on_module_start(self, call_id, instance, inputs):
        self._start("module", call_id, instance, inputs)

    def on_module_end(self, call_id, outputs, exception):
        self._end("module", call_id, outputs, exception)

    def on_lm_start(self, call_id, instance, inputs):
        self._start("lm", call_id, instance, inputs)

    def on_lm_end(self, call_id, outputs, exception):
        self._end("lm", call_id, outputs, exception)

    def on_adapter_format_start(self, call_id, instance, inputs):
        self._start("format", call_id, instance, inputs)

    def on_adapter_format_end(self, call_id, outputs, exception):
        self._end("format", call_id, outputs, exception)

    def on_adapter_parse_start(self, call_id, instance, inputs):
        self._start("parse", call_id, instance, inputs)

    def on_adapter_parse_end(self, call_id, outputs, exception):
        self._end("parse", call_id, outputs, exception)

    def on_tool_start(self, call_id, instance, inputs):
        self._start("tool", call_id, instance, inputs)

    def on_tool_end(self, call_id, outputs, exception):
        self._end("tool", call_id, outputs, exception)

    def on_evaluate_start(self, call_id, instance, inputs):
        self._start("evaluate", call_id, instance, inputs)

    def on_evaluate_end(self, call_id, outputs, exception):
        self._end("evaluate", call_id, outputs, exception)

    def names(self) -> list[str]:
        return [e[0] for e in self.events]

    def first(self, name: str) -> tuple:
        return next(e for e in self.events if e[0] == name)


REPLY = marker_reply(reasoning="France's capital.", answer="Paris")


def test_a_global_callback_sees_module_adapter_and_lm_calls_in_order():
    rec = Recorder()
    dspy.configure(lm=dspy.ScriptedLM([REPLY]), callbacks=[rec])
    cot = dspy.ChainOfThought("question -> answer")
    pred = cot(question="Capital of France?")
    assert rec.names() == ["module_start", "format_start", "format_end", "lm_start", "lm_end", "parse_start",
                           "parse_end", "module_end"]
    start = rec.first("module_start")
    assert start[2] is cot and start[3]["kwargs"] == {"question": "Capital of France?"}
    lm_start, lm_end = rec.first("lm_start"), rec.first("lm_end")
    assert lm_start[2] is dspy.settings.lm
    assert lm_start[3]["messages"][-1]["role"] == "user" and "Capital of France?" in lm_start[3]["messages"][-1]["content"]
    assert lm_end[2] == [REPLY] and lm_end[2].usage.calls == 1 and lm_end[1] == lm_start[1]
    assert rec.first("format_end")[2][0]["role"] == "system"
    assert rec.first("parse_start")[3]["completion"] == REPLY
    assert rec.first("parse_end")[2] == {"reasoning": "France's capital.", "answer": "Paris"}
    end = rec.first("module_end")
    assert end[2] is pred and end[3] is None and end[1] == start[1]


def test_inner_calls_see_the_enclosing_call_as_active():
    rec = Recorder()
    dspy.configure(lm=dspy.ScriptedLM([REPLY]), callbacks=[rec])
    dspy.ChainOfThought("question -> answer")(question="q")
    module_id = rec.first("module_start")[1]
    assert rec.first("module_start")[4] is None  # nothing encloses the outermost call
    assert rec.first("lm_start")[4] == module_id and rec.first("format_start")[4] == module_id
    assert ACTIVE_CALL_ID.get() is None


def test_callbacks_given_to_one_module_or_lm_report_that_one_only():
    on_module, on_lm = Recorder(), Recorder()
    lm = dspy.ScriptedLM([marker_reply(answer="a")], callbacks=[on_lm])
    watched = dspy.Predict("q -> answer", lm=lm, callbacks=[on_module])
    unwatched = dspy.Predict("q -> answer", lm=dspy.ScriptedLM([marker_reply(answer="b")]))
    watched(q="x")
    unwatched(q="y")
    assert on_module.names() == ["module_start", "module_end"]
    assert on_lm.names() == ["lm_start", "lm_end"]
    lm("direct")  # a direct call of the LM reports once
    assert on_lm.names()[-2:] == ["lm_start", "lm_end"] and len(on_lm.names()) == 4


class Broken(BaseCallback):
    def on_module_start(self, call_id, instance, inputs):
        raise RuntimeError("callback bug")

    def on_lm_end(self, call_id, outputs, exception):
        raise KeyError("another")


def test_a_callback_that_raises_is_logged_and_the_program_goes_on(caplog: pytest.LogCaptureFixture):
    rec = Recorder()
    dspy.configure(lm=dspy.ScriptedLM([marker_reply(answer="fine")]), callbacks=[Broken(), rec])
    with caplog.at_level(logging.WARNING, logger="promptless.callbacks"):
        pred = dspy.Predict("q -> answer")(q="x")
    assert pred.answer == "fine"
    assert "callback bug" in caplog.text and "on_module_start" in caplog.text and "on_lm_end" in caplog.text
    assert "module_end" in rec.names()  # the callbacks after the broken one still ran


def test_a_failing_module_ends_with_its_exception():
    rec = Recorder()
    dspy.configure(callbacks=[rec])  # and no LM: the call fails

    with pytest.raises(dspy.ConfigurationError):
        dspy.Predict("q -> answer")(q="x")
    end = rec.first("module_end")
    assert end[2] is None and isinstance(end[3], dspy.ConfigurationError)


class Pipeline(dspy.Module):
    def __init__(self) -> None:
        super().__init__()
        self.first = dspy.Predict("q -> answer")
        self.second = dspy.Predict("answer -> verdict")

    def forward(self, q):
        return self.second(answer=self.first(q=q).answer)


def test_nested_modules_report_each_call_with_its_own_id():
    rec = Recorder()
    lm = dspy.ScriptedLM(lambda msgs: marker_reply(answer="a", verdict="v"))
    dspy.configure(lm=lm, callbacks=[rec])
    program = Pipeline()
    program(q="x")
    starts = [e for e in rec.events if e[0] == "module_start"]
    assert [e[2] for e in starts] == [program, program.first, program.second]
    assert len({e[1] for e in starts}) == 3
    assert starts[1][4] == starts[0][1] and starts[2][4] == starts[0][1]  # both inside the program's call


def test_acall_reports_once():
    rec = Recorder()
    dspy.configure(lm=dspy.ScriptedLM(lambda msgs: marker_reply(answer="a", verdict="v")), callbacks=[rec])
    asyncio.run(Pipeline().acall(q="x"))
    assert rec.names().count("module_start") == 3 and rec.names().count("lm_start") == 2


def test_tools_and_evaluate_report_too():
    rec = Recorder()
    dspy.configure(callbacks=[rec])

    def add(a: int, b: int) -> int:
        """Add two numbers."""
        return a + b

    tool = dspy.Tool(add)
    assert tool(a=2, b="3") == 5
    assert rec.first("tool_start")[2] is tool and rec.first("tool_start")[3] == {"kwargs": {"a": 2, "b": "3"}}
    assert rec.first("tool_end")[2] == 5

    dspy.configure(lm=dspy.ScriptedLM([marker_reply(answer="4")]))
    devset = [dspy.Example(q="2+2?", answer="4").with_inputs("q")]
    evaluate = dspy.Evaluate(devset=devset, metric=lambda ex, pred, trace=None: ex.answer == pred.answer,
                             display_progress=False)
    result = evaluate(dspy.Predict("q -> answer"))
    assert rec.first("evaluate_start")[2] is evaluate and rec.first("evaluate_end")[2] is result


def test_opentelemetry_spans_nest_and_carry_usage():
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from promptless.otel import OpenTelemetryCallback

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    lm = dspy.ScriptedLM(lambda msgs: marker_reply(answer="a", verdict="v"), model="house")
    dspy.configure(lm=lm, callbacks=[OpenTelemetryCallback(tracer_provider=provider)])
    Pipeline()(q="x")
    spans = {s.name: s for s in exporter.get_finished_spans()}
    names = [s.name for s in exporter.get_finished_spans()]
    assert sorted(names) == sorted(["Pipeline", "Predict", "Predict", "chat house", "chat house"])
    root = spans["Pipeline"]
    predicts = [s for s in exporter.get_finished_spans() if s.name == "Predict"]
    chats = [s for s in exporter.get_finished_spans() if s.name == "chat house"]
    assert all(p.parent.span_id == root.context.span_id for p in predicts)
    assert {c.parent.span_id for c in chats} == {p.context.span_id for p in predicts}
    for chat in chats:
        assert chat.attributes["gen_ai.request.model"] == "house"
        assert chat.attributes["gen_ai.usage.input_tokens"] > 0 and chat.attributes["gen_ai.usage.output_tokens"] > 0
        assert chat.attributes["promptless.cache_hit"] is False
    assert predicts[0].attributes["promptless.signature"] == "q -> answer"
    assert "promptless.messages" not in chats[0].attributes  # content only with capture_content=True


def test_an_opentelemetry_span_of_a_failed_call_has_an_error_status():
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
    from opentelemetry.trace import StatusCode

    from promptless.otel import OpenTelemetryCallback

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    dspy.configure(callbacks=[OpenTelemetryCallback(tracer_provider=provider, capture_content=True)])
    with pytest.raises(dspy.ConfigurationError):
        dspy.Predict("q -> answer")(q="x")
    (span,) = exporter.get_finished_spans()
    assert span.status.status_code is StatusCode.ERROR and span.events[0].name == "exception"
    assert '"q": "x"' in span.attributes["promptless.inputs"]
