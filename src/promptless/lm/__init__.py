"""LM backends behind one seam. ``LM("provider/model", ...)`` picks the backend.

- ``openai/<model>``: OpenAI or any OpenAI-compatible server (``base_url=...``)
- ``local/<name>`` or ``local/<path.gguf>``: a llama.cpp model in this process
- ``litellm/<provider>/<model>``: any provider LiteLLM knows (optional extra)
"""

from __future__ import annotations

from typing import Any

from ..errors import ConfigurationError
from .base import BaseLM
from .fake import ScriptedLM


def LM(model: str, **kwargs: Any) -> BaseLM:  # noqa: N802 - a factory named like the class users expect
    """Create an LM from a ``provider/model`` string."""
    if not isinstance(model, str) or "/" not in model:
        raise ConfigurationError(
            f"model {model!r} needs a provider prefix: 'openai/gpt-4o-mini', "
            "'openai/<name>' with base_url=... for a local server, 'local/qwen2.5-coder-1.5b', "
            "'local/path/to/model.gguf' or 'litellm/<provider>/<model>'"
        )
    provider, name = model.split("/", 1)
    if provider == "openai":
        from .openai import OpenAILM

        return OpenAILM(name, **kwargs)
    if provider == "local":
        from .local import LocalLM

        return LocalLM(name, **kwargs)
    if provider == "litellm":
        from .litellm import LiteLLMLM

        return LiteLLMLM(name, **kwargs)
    if provider == "scripted":
        replies = kwargs.pop("replies", None)
        if replies is None:
            raise ConfigurationError("'scripted/...' needs replies=[...]")
        return ScriptedLM(replies, model=model, **kwargs)
    raise ConfigurationError(
        f"unknown provider {provider!r} in {model!r}; use one of: openai, local, litellm "
        "(e.g. 'openai/gpt-4o-mini', 'local/qwen2.5-coder-1.5b')"
    )


__all__ = ["LM", "BaseLM", "ScriptedLM"]
