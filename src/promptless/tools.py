"""Tools: Python functions an agent (``ReAct``) can call.

``Tool(fn)`` reads everything it needs from the function itself:

- the name from ``fn.__name__`` (or ``name=``);
- the description from the first paragraph of the docstring (or ``desc=``);
- one JSON schema per argument from its type hint (through pydantic), with
  the argument's description taken from an ``Args:`` section
  (``name: text``) or ``:param name: text`` lines of the docstring.

``args=`` (a JSON schema per argument) and ``arg_types=`` replace what is read
from the function, as in DSPy; ``format_as_litellm_function_call()`` (DSPy's
name) is the tool as the OpenAI API's function schema, which is what an
adapter sends for native tool calls (a ``pl.ToolCalls`` output).

Calling a tool validates the arguments first (``"3"`` becomes ``3`` for an
``int``, unknown and missing arguments are refused) and raises ``ToolError``
with a message an LM can act on. Exceptions raised by the function itself
propagate from ``tool(...)``; ``tool.run(args)`` (what ReAct uses) turns any
failure into an observation text instead. Sync and async functions both work:
``tool(...)`` for either (outside a running event loop), ``await
tool.acall(...)`` for either.
"""

from __future__ import annotations

import contextvars
import inspect
import json
import re
from collections.abc import Callable, Mapping
from typing import Any

from .callbacks import with_callbacks
from .errors import ToolError

_SECTION = re.compile(r"^\s*(Args|Arguments|Parameters|Params|Returns?|Raises|Yields|Examples?|Notes?)\s*:\s*$", re.I)


def _doc_parts(doc: str | None) -> tuple[str, dict[str, str]]:
    """The summary (first paragraph) and per-argument descriptions of a docstring."""
    if not doc:
        return "", {}
    text = inspect.cleandoc(doc)
    lines = text.splitlines()
    summary: list[str] = []
    for line in lines:
        if not line.strip() or _SECTION.match(line) or line.strip().startswith(":"):
            break
        summary.append(line.strip())
    args: dict[str, str] = {}
    for found in re.finditer(r":param\s+(?:[\w\[\], ]+\s+)?(\w+)\s*:\s*(.+)", text):
        args[found.group(1)] = found.group(2).strip()
    in_args, current = False, None
    for line in lines:
        head = _SECTION.match(line)
        if head:
            in_args = head.group(1).lower() in ("args", "arguments", "parameters", "params")
            current = None
            continue
        if not in_args:
            continue
        m = re.match(r"^\s{0,8}(\*{0,2}\w+)\s*(?:\([^)]*\))?\s*:\s*(.*)$", line)
        if m and not line.startswith(" " * 9):
            current = m.group(1).lstrip("*")
            args[current] = m.group(2).strip()
        elif current and line.strip():
            args[current] = (args[current] + " " + line.strip()).strip()
        elif not line.strip():
            current = None
    return " ".join(summary), args


class Tool:
    """A callable an agent can use, with a name, a description and an argument schema."""

    fn: Callable[..., Any]

    def __init__(
        self,
        fn: Callable[..., Any] | None = None,
        name: str | None = None,
        desc: str | None = None,
        args: Mapping[str, Any] | None = None,
        arg_types: Mapping[str, Any] | None = None,
        arg_desc: Mapping[str, str] | None = None,
        *,
        func: Callable[..., Any] | None = None,
    ) -> None:
        if func is not None:  # DSPy's keyword
            if fn is not None:
                raise ToolError("Tool() takes the function once: Tool(fn) or Tool(func=fn)")
            fn = func
        if fn is None:
            raise ToolError("Tool() needs a function: Tool(fn)")
        if isinstance(fn, Tool):
            fn = fn.fn
        if not callable(fn):
            raise ToolError(f"Tool() needs a function, got {type(fn).__name__}")
        self.fn = fn
        target = fn if inspect.isfunction(fn) or inspect.ismethod(fn) else getattr(fn, "__call__", fn)  # noqa: B004
        self.name = name or getattr(fn, "__name__", None) or type(fn).__name__
        if not re.fullmatch(r"[A-Za-z_][\w\-.]*", self.name):
            raise ToolError(f"tool name {self.name!r} must be letters, digits, _ - or . (pass name=...)")
        summary, doc_args = _doc_parts(inspect.getdoc(fn) or inspect.getdoc(target))
        self.desc = desc if desc is not None else summary
        self.is_async = inspect.iscoroutinefunction(fn) or inspect.iscoroutinefunction(target)
        self._build_schema(target, {**doc_args, **dict(arg_desc or {})})
        if arg_types is not None or args is not None:
            self._override(args, arg_types, dict(arg_desc or {}))

    # -- schema -------------------------------------------------------------
    def _build_schema(self, target: Callable[..., Any], descs: dict[str, str]) -> None:
        import typing

        from pydantic import ConfigDict, TypeAdapter, create_model

        try:
            sig = inspect.signature(target)
        except (TypeError, ValueError):
            sig = inspect.Signature()
        try:
            hints = typing.get_type_hints(target)
        except Exception:
            hints = {}
        fields: dict[str, Any] = {}
        self.args: dict[str, dict[str, Any]] = {}
        self.arg_types: dict[str, Any] = {}
        self.required: list[str] = []
        self.accepts_extra = False
        self._positional_only: list[str] = []
        for pname, param in sig.parameters.items():
            if param.kind is param.VAR_KEYWORD:
                self.accepts_extra = True
                continue
            if param.kind is param.VAR_POSITIONAL:
                continue
            if param.kind is param.POSITIONAL_ONLY:
                self._positional_only.append(pname)
            ann = hints.get(pname, Any)
            default = ... if param.default is param.empty else param.default
            fields[pname] = (ann, default)
            self.arg_types[pname] = ann
            try:
                schema = TypeAdapter(ann).json_schema()
            except Exception:
                schema = {}
            schema.pop("title", None)
            if pname in descs:
                schema["description"] = descs[pname]
            if default is not ...:
                try:
                    json.dumps(default)
                    schema["default"] = default
                except (TypeError, ValueError):
                    pass
            else:
                self.required.append(pname)
            self.args[pname] = schema
        config = ConfigDict(extra="allow" if self.accepts_extra else "forbid", arbitrary_types_allowed=True)
        self._model = create_model(f"{self.name.replace('-', '_').replace('.', '_')}_args", __config__=config,
                                   **fields)

    def _override(self, args: Mapping[str, Any] | None, arg_types: Mapping[str, Any] | None,
                  descs: dict[str, str]) -> None:
        """Arguments given by the caller (``args=``: a JSON schema each; ``arg_types=``: a type each) in place
        of those read from the function: a function of ``**kwargs`` wrapping a remote tool, say."""
        from pydantic import ConfigDict, TypeAdapter, create_model

        if args is not None and not (isinstance(args, Mapping) and all(isinstance(v, Mapping) for v in args.values())):
            raise ToolError("Tool(args=...) takes a JSON schema per argument: {'query': {'type': 'string'}}")
        names = list(args) if args is not None else list(arg_types or {})
        types_ = dict(arg_types or {})
        schemas: dict[str, dict[str, Any]] = {}
        for n in names:
            if args is not None:
                schemas[n] = dict(args[n])
            else:
                try:
                    schemas[n] = TypeAdapter(types_[n]).json_schema()
                except Exception:
                    schemas[n] = {}
                schemas[n].pop("title", None)
            if n in descs:
                schemas[n]["description"] = descs[n]
            if n not in types_:
                types_[n] = _SCHEMA_TYPES.get(str(schemas[n].get("type")), Any)
        self.args = schemas
        self.arg_types = {n: types_[n] for n in names}
        self.required = [n for n in names if "default" not in schemas[n]]
        self._positional_only = [n for n in self._positional_only if n in names]
        fields: dict[str, Any] = {n: (self.arg_types[n], ... if n in self.required else schemas[n].get("default"))
                                  for n in names}
        config = ConfigDict(extra="allow" if self.accepts_extra else "forbid", arbitrary_types_allowed=True)
        self._model = create_model(f"{self.name.replace('-', '_').replace('.', '_')}_args", __config__=config,
                                   **fields)

    @property
    def schema(self) -> dict[str, Any]:
        """The arguments as one JSON schema object (what function-calling APIs expect)."""
        return {"type": "object", "properties": self.args, "required": list(self.required)}

    @property
    def func(self) -> Callable[..., Any]:
        """The wrapped function (DSPy's name for ``fn``)."""
        return self.fn

    @property
    def has_kwargs(self) -> bool:
        """Whether the function takes ``**kwargs`` (arguments beyond ``args`` are then passed on)."""
        return self.accepts_extra

    def format_as_litellm_function_call(self) -> dict[str, Any]:
        """The tool as the OpenAI chat API's function schema (``{"type": "function", "function": {...}}``)."""
        function: dict[str, Any] = {"name": self.name, "parameters": self.schema}
        if self.desc:
            function["description"] = self.desc
        return {"type": "function", "function": function}

    def describe(self) -> str:
        """One line for a prompt: name, description and arguments."""
        args = json.dumps(self.args, ensure_ascii=False) if self.args else "{}"
        desc = f", whose description is <desc>{self.desc}</desc>" if self.desc else ""
        return f"{self.name}{desc}. It takes arguments {args}."

    prompt_text = describe  # how a tool given as an input value reads in a prompt

    def __str__(self) -> str:
        return self.describe()

    # -- validation ---------------------------------------------------------
    def validate(self, args: Mapping[str, Any] | None) -> dict[str, Any]:
        """Check and convert the arguments, or raise ToolError saying what is wrong and what the tool takes."""
        from pydantic import ValidationError

        if args is None:
            args = {}
        if not isinstance(args, Mapping):
            raise ToolError(
                f"tool {self.name!r} takes its arguments as a JSON object {self._takes()}, "
                f"got {type(args).__name__}: {args!r}"[:500]
            )
        try:
            obj = self._model.model_validate(dict(args))
        except ValidationError as exc:
            problems = []
            for err in exc.errors()[:5]:
                where = ".".join(str(p) for p in err.get("loc", ())) or "arguments"
                msg = err.get("msg", "invalid")
                if err.get("type") == "extra_forbidden":
                    msg = "unknown argument"
                problems.append(f"{where}: {msg}")
            raise ToolError(f"tool {self.name!r} got bad arguments ({'; '.join(problems)}); it takes {self._takes()}")\
                from None
        values = {name: getattr(obj, name) for name in self.arg_types}
        if self.accepts_extra and obj.model_extra:
            values.update(obj.model_extra)
        return values

    def _takes(self) -> str:
        if not self.args:
            return "no arguments"
        from .signature import type_name

        parts = []
        for name in self.args:
            opt = "" if name in self.required else " (optional)"
            parts.append(f"{name}: {type_name(self.arg_types[name])}{opt}")
        return "{" + ", ".join(parts) + "}"

    def _split(self, values: dict[str, Any]) -> tuple[list[Any], dict[str, Any]]:
        pos = [values.pop(n) for n in self._positional_only if n in values]
        return pos, values

    # -- calling ----------------------------------------------------------------
    @with_callbacks("tool")
    def __call__(self, **kwargs: Any) -> Any:
        values = self.validate(kwargs)
        pos, kw = self._split(values)
        if self.is_async:
            import asyncio

            try:
                asyncio.get_running_loop()
            except RuntimeError:
                return asyncio.run(self.fn(*pos, **kw))
            raise ToolError(f"tool {self.name!r} is async and an event loop is running: use `await tool.acall(...)`")
        return self.fn(*pos, **kw)

    @with_callbacks("tool")
    async def acall(self, **kwargs: Any) -> Any:
        values = self.validate(kwargs)
        pos, kw = self._split(values)
        if self.is_async:
            return await self.fn(*pos, **kw)
        import asyncio

        ctx = contextvars.copy_context()
        return await asyncio.to_thread(ctx.run, self.fn, *pos, **kw)

    def run(self, args: Any) -> str:
        """Call with ``args`` and return the result as text; any failure becomes an ``Error: ...`` text."""
        try:
            return format_result(self(**_as_kwargs(self, args)))
        except ToolError as exc:
            return f"Error: {exc}"
        except Exception as exc:  # the tool's own failure is an observation for the model
            return f"Error: tool {self.name!r} raised {type(exc).__name__}: {exc}"

    async def arun(self, args: Any) -> str:
        try:
            return format_result(await self.acall(**_as_kwargs(self, args)))
        except ToolError as exc:
            return f"Error: {exc}"
        except Exception as exc:
            return f"Error: tool {self.name!r} raised {type(exc).__name__}: {exc}"

    def __deepcopy__(self, memo: dict[int, Any]) -> Tool:
        return self  # a tool is a resource (it may hold a database handle); copies of a program share it

    def __repr__(self) -> str:
        return f"Tool({self.name!r}, args={list(self.args)})"


_SCHEMA_TYPES: dict[str, Any] = {"string": str, "integer": int, "number": float, "boolean": bool, "array": list,
                                 "object": dict}


def _as_kwargs(tool: Tool, args: Any) -> dict[str, Any]:
    if args is None or args == "":
        return {}
    if isinstance(args, str):
        try:
            from .adapters.parsing import parse_json_text

            parsed = parse_json_text(args)
        except ValueError:
            parsed = None
        if isinstance(parsed, dict):
            return parsed
        if len(tool.args) == 1:  # a bare value for a one-argument tool
            return {next(iter(tool.args)): args}
        raise ToolError(f"tool {tool.name!r} takes its arguments as a JSON object {tool._takes()}, got {args!r}"[:500])
    if isinstance(args, Mapping):
        return dict(args)
    raise ToolError(f"tool {tool.name!r} takes its arguments as a JSON object {tool._takes()}, got {args!r}"[:500])


def format_result(value: Any) -> str:
    if isinstance(value, str):
        return value
    from .values import render_value

    return render_value(value)


def as_tool(obj: Any) -> Tool:
    return obj if isinstance(obj, Tool) else Tool(obj)


__all__ = ["Tool", "as_tool", "format_result"]
