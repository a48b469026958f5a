"""OpenTelemetry traces of a program: a span per module call, per LM call and per tool call.

    from promptless.otel import OpenTelemetryCallback
    pl.configure(callbacks=[OpenTelemetryCallback()])   # spans go to the global tracer provider

Needs the ``otel`` extra (``pip install 'promptless[otel]'``, which is ``opentelemetry-api``); set up an SDK
tracer provider and exporter as usual, or pass ``tracer_provider=``. Spans nest as the calls do: a program's
span holds its predictors' spans, each holds its LM calls. An LM span is named ``chat <model>`` and carries the
GenAI attributes: ``gen_ai.operation.name``, ``gen_ai.system``, ``gen_ai.request.model``,
``gen_ai.request.temperature`` and ``gen_ai.request.max_tokens`` when set, ``gen_ai.response.model``,
``gen_ai.usage.input_tokens`` and ``gen_ai.usage.output_tokens``; and ``promptless.cache_hit`` and
``promptless.cost`` (when known). A module span is named after the module's class and, for a predictor,
carries its signature (``promptless.signature``). A call that raised ends its span with an error status and
the exception recorded. Prompts and replies are left out unless ``capture_content=True``.
"""

from __future__ import annotations

import json
from typing import Any

from ._version import __version__
from .callbacks import BaseCallback
from .errors import ConfigurationError

INSTALL_HINT = "OpenTelemetry tracing needs the otel extra: pip install 'promptless[otel]'"


def _import() -> tuple[Any, Any]:
    try:
        from opentelemetry import context, trace
    except ImportError as exc:
        raise ConfigurationError(INSTALL_HINT) from exc
    return trace, context


class OpenTelemetryCallback(BaseCallback):
    """A callback that records the calls it sees as OpenTelemetry spans (see the module docstring)."""

    def __init__(self, tracer_provider: Any = None, *, tracer: Any = None, capture_content: bool = False) -> None:
        self._trace, self._context = _import()
        self._tracer = tracer or self._trace.get_tracer("promptless", __version__, tracer_provider=tracer_provider)
        self.capture_content = capture_content
        self._open: dict[str, tuple[Any, Any]] = {}

    # -- spans ---------------------------------------------------------------------------
    def _start(self, call_id: str, name: str, attributes: dict[str, Any]) -> None:
        span = self._tracer.start_span(name, attributes={k: v for k, v in attributes.items() if v is not None})
        token = self._context.attach(self._trace.set_span_in_context(span))
        self._open[call_id] = (span, token)

    def _end(self, call_id: str, exception: BaseException | None, attributes: dict[str, Any] | None = None) -> None:
        entry = self._open.pop(call_id, None)
        if entry is None:
            return
        span, token = entry
        try:
            self._context.detach(token)
        finally:
            for key, value in (attributes or {}).items():
                if value is not None:
                    span.set_attribute(key, value)
            if exception is not None:
                span.record_exception(exception)
                span.set_status(self._trace.Status(self._trace.StatusCode.ERROR, f"{type(exception).__name__}"))
            span.end()

    def _text(self, value: Any) -> str:
        try:
            return json.dumps(value, default=str, ensure_ascii=False)[:20_000]
        except (TypeError, ValueError):
            return str(value)[:20_000]

    # -- modules -------------------------------------------------------------------------
    def on_module_start(self, call_id: str, instance: Any, inputs: dict[str, Any]) -> None:
        signature = getattr(instance, "signature", None)
        attributes: dict[str, Any] = {
            "promptless.kind": "module",
            "promptless.module": f"{type(instance).__module__}.{type(instance).__qualname__}",
            "promptless.signature": (signature.signature_string()  # type: ignore[union-attr]
                                     if hasattr(signature, "signature_string") else None),
        }
        if self.capture_content:
            attributes["promptless.inputs"] = self._text(inputs)
        self._start(call_id, type(instance).__name__, attributes)

    def on_module_end(self, call_id: str, outputs: Any, exception: BaseException | None = None) -> None:
        extra = {}
        if self.capture_content and outputs is not None:
            extra["promptless.outputs"] = self._text(dict(outputs.items()) if hasattr(outputs, "items") else outputs)
        self._end(call_id, exception, extra)

    # -- LMs -----------------------------------------------------------------------------
    def on_lm_start(self, call_id: str, instance: Any, inputs: dict[str, Any]) -> None:
        model = str(getattr(instance, "model", "?"))
        params = {**{k: v for k, v in (getattr(instance, "defaults", None) or {}).items() if v is not None},
                  **{k: v for k, v in (inputs.get("kwargs") or {}).items() if v is not None}}
        attributes: dict[str, Any] = {
            "promptless.kind": "lm",
            "gen_ai.operation.name": "chat",
            "gen_ai.system": str(getattr(instance, "provider", "")) or None,
            "gen_ai.request.model": model,
            "gen_ai.request.temperature": params.get("temperature"),
            "gen_ai.request.max_tokens": params.get("max_tokens"),
        }
        if self.capture_content:
            attributes["promptless.messages"] = self._text(inputs.get("messages") or inputs.get("prompt"))
        self._start(call_id, f"chat {model}", attributes)

    def on_lm_end(self, call_id: str, outputs: Any, exception: BaseException | None = None) -> None:
        usage = getattr(outputs, "usage", None)
        extra: dict[str, Any] = {}
        if usage is not None:
            extra.update({
                "gen_ai.usage.input_tokens": usage.prompt_tokens,
                "gen_ai.usage.output_tokens": usage.completion_tokens,
                "promptless.cost": usage.cost,
            })
        if outputs is not None:
            extra["gen_ai.response.model"] = getattr(outputs, "model", None)
            extra["promptless.cache_hit"] = getattr(outputs, "cached", None)
            if self.capture_content:
                extra["promptless.completions"] = self._text(list(outputs))
        self._end(call_id, exception, extra)

    # -- tools ---------------------------------------------------------------------------
    def on_tool_start(self, call_id: str, instance: Any, inputs: dict[str, Any]) -> None:
        name = str(getattr(instance, "name", "tool"))
        attributes: dict[str, Any] = {"promptless.kind": "tool", "gen_ai.operation.name": "execute_tool",
                                      "gen_ai.tool.name": name}
        if self.capture_content:
            attributes["promptless.inputs"] = self._text(inputs)
        self._start(call_id, f"execute_tool {name}", attributes)

    def on_tool_end(self, call_id: str, outputs: Any, exception: BaseException | None = None) -> None:
        self._end(call_id, exception, {"promptless.outputs": self._text(outputs)} if self.capture_content else None)


__all__ = ["INSTALL_HINT", "OpenTelemetryCallback"]
