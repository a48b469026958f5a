"""LM backends behind one seam. ``LM("provider/model", ...)`` picks the backend.

``LM`` is a class (``lm/base.py``): calling it makes the backend below, itself an ``LM``;
subclassing it makes an LM of your own (see ``lm/base.py``).

- ``openai/<model>``: OpenAI or any OpenAI-compatible server (``base_url=...``)
- ``ollama_chat/<model>`` or ``ollama/<model>``: Ollama's OpenAI-compatible endpoint
  (``http://localhost:11434/v1`` unless ``base_url=`` says otherwise)
- ``local/<name>`` or ``local/<path.gguf>``: a llama.cpp model in this process
- ``litellm/<provider>/<model>``: any provider LiteLLM knows (optional extra); another
  provider's prefix as LiteLLM writes it (``anthropic/...``, ``gemini/...``) goes there too

Options spelled as DSPy spells them are taken where they mean the same thing:
``api_base=`` is ``base_url=``, ``num_retries=N`` is ``retry=RetryPolicy(max_attempts=N + 1)``,
``model_type="chat"`` is what every promptless LM is. DSPy options with no counterpart are
refused with a message that says what to write instead (see docs/lms.md).
"""

from __future__ import annotations

import importlib.util
import sys
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from ..errors import ConfigurationError
from . import base as _base
from .base import LM, BaseLM
from .fake import ScriptedLM

OLLAMA_BASE_URL = "http://localhost:11434/v1"

_OWN_PROVIDERS = ("openai", "ollama_chat", "ollama", "local", "litellm")

# Prefixes LiteLLM reads as a provider (a common subset, for the message when LiteLLM is missing;
# with LiteLLM installed its own provider list decides).
LITELLM_PROVIDERS = frozenset({
    "anthropic", "azure", "azure_ai", "bedrock", "cerebras", "cohere", "cohere_chat", "databricks",
    "deepinfra", "deepseek", "fireworks_ai", "gemini", "groq", "huggingface", "hosted_vllm", "lm_studio",
    "mistral", "nvidia_nim", "openrouter", "perplexity", "replicate", "sagemaker", "text-completion-openai",
    "together_ai", "vertex_ai", "watsonx", "xai",
})  # fmt: skip

# DSPy ``dspy.LM`` options that promptless does not take, and what to do instead.
_DSPY_ONLY = {
    "provider": "the provider is the model string's prefix ('openai/...', 'local/...', 'litellm/...')",
    "finetuning_model": "promptless does not fine-tune models",
    "launch_kwargs": "promptless does not launch or fine-tune models",
    "train_kwargs": "promptless does not launch or fine-tune models",
    "use_developer_role": "promptless sends the system prompt with the 'system' role",
    "cache_in_memory": "cache=False turns the cache off; PROMPTLESS_CACHE=0 keeps it in memory only",
    "max_completion_tokens": "write max_tokens=...",
}


def make_lm(model: str | None = None, **kwargs: Any) -> BaseLM:
    """The backend for a ``provider/model`` string (see the module docstring): what ``LM(...)`` returns."""
    if model is None:
        raise ConfigurationError("LM() needs a model string, e.g. LM('openai/gpt-4o-mini') or LM('local/smollm2-135m')")
    lm = _make(model, **kwargs)
    if lm.model_id is None:
        lm.model_id = model
    return lm


def _make(model: str, **kwargs: Any) -> BaseLM:
    if not isinstance(model, str) or "/" not in model:
        raise ConfigurationError(
            f"model {model!r} needs a provider prefix: 'openai/gpt-4o-mini', "
            "'openai/<name>' with base_url=... for a local server, 'ollama_chat/<name>' for Ollama, "
            "'local/qwen2.5-coder-1.5b', 'local/path/to/model.gguf' or 'litellm/<provider>/<model>'"
        )
    provider, name = model.split("/", 1)
    if provider == "scripted":
        replies = kwargs.pop("replies", None)
        if replies is None:
            raise ConfigurationError("'scripted/...' needs replies=[...]")
        return ScriptedLM(replies, model=model, **kwargs)
    if not name:
        raise ConfigurationError(f"model {model!r} names no model after {provider + '/'!r}")
    remote = provider != "local"
    kwargs = _dspy_options(model, kwargs, remote=remote)
    if provider == "openai":
        from .openai import OpenAILM

        return OpenAILM(name, **kwargs)
    if provider in ("ollama_chat", "ollama"):
        from .openai import OpenAILM

        kwargs["base_url"] = _ollama_base(kwargs.get("base_url"))
        if kwargs.get("api_key") is None:
            kwargs["api_key"] = ""  # Ollama needs no key: never send $OPENAI_API_KEY there
        return OpenAILM(name, **kwargs)
    if provider == "local":
        from .local import LocalLM

        return LocalLM(name, **kwargs)
    if provider == "litellm":
        from .litellm import LiteLLMLM

        return LiteLLMLM(name, **kwargs)
    return _other_provider(model, provider, kwargs)


def _dspy_options(model: str, kwargs: dict[str, Any], *, remote: bool) -> dict[str, Any]:
    """``kwargs`` with DSPy's spellings turned into promptless's, or a ``ConfigurationError``."""
    kwargs = dict(kwargs)
    for name, instead in _DSPY_ONLY.items():
        if name in kwargs:
            raise ConfigurationError(f"{name}= is a DSPy LM option that promptless does not take: {instead}")
    if "model_type" in kwargs:
        model_type = kwargs.pop("model_type")
        if model_type != "chat":
            raise ConfigurationError(
                f"model_type={model_type!r} is not supported: promptless talks to chat models only "
                "(/chat/completions); drop model_type or use a chat model"
            )
    if "api_base" in kwargs:
        api_base = kwargs.pop("api_base")
        if kwargs.get("base_url") not in (None, api_base):
            raise ConfigurationError("api_base= and base_url= name the same thing and disagree: pass only base_url=")
        if api_base is not None:
            kwargs["base_url"] = api_base
    if "num_retries" in kwargs:
        num_retries = kwargs.pop("num_retries")
        if "retry" in kwargs:
            raise ConfigurationError("pass either num_retries= (DSPy's spelling) or retry=, not both")
        if isinstance(num_retries, bool) or not isinstance(num_retries, int) or num_retries < 0:
            raise ConfigurationError(f"num_retries must be a whole number >= 0, got {num_retries!r}")
        if not remote:
            raise ConfigurationError(f"{model!r} runs in this process and makes no network calls: drop num_retries=")
        from .retry import RetryPolicy

        kwargs["retry"] = RetryPolicy(max_attempts=num_retries + 1)
    return kwargs


def _ollama_base(base_url: Any) -> str:
    """Ollama's OpenAI-compatible root: the default, or ``base_url`` with ``/v1`` added to a bare host."""
    if base_url is None:
        return OLLAMA_BASE_URL
    if not isinstance(base_url, str):
        raise ConfigurationError(f"base_url must be a string, got {type(base_url).__name__}")
    parts = urlsplit(base_url)
    if parts.scheme in ("http", "https") and parts.path.strip("/") == "":
        # DSPy and LiteLLM write Ollama's root ('http://localhost:11434'); its OpenAI API lives under /v1.
        return urlunsplit((parts.scheme, parts.netloc, "/v1", "", ""))
    return base_url


def litellm_installed() -> bool:
    """Whether LiteLLM can be imported here (without importing it)."""
    if "litellm" in sys.modules:
        return sys.modules["litellm"] is not None
    try:
        return importlib.util.find_spec("litellm") is not None
    except (ImportError, ValueError):
        return False


def _other_provider(model: str, provider: str, kwargs: dict[str, Any]) -> BaseLM:
    """A prefix that is not promptless's own: LiteLLM's, when it is installed and knows it."""
    own = ", ".join(_OWN_PROVIDERS)
    if litellm_installed():
        known = provider in LITELLM_PROVIDERS
        if not known:
            import litellm

            known = provider in {str(getattr(p, "value", p)) for p in getattr(litellm, "provider_list", ())}
        if known:
            from .litellm import LiteLLMLM

            return LiteLLMLM(model, **kwargs)
        raise ConfigurationError(
            f"unknown provider {provider!r} in {model!r}: neither promptless ({own}) nor LiteLLM knows it"
        )
    if provider in LITELLM_PROVIDERS:
        raise ConfigurationError(
            f"{model!r} is a LiteLLM model name and LiteLLM is not installed: pip install 'promptless[litellm]' "
            f"to use it as written; or, if {provider} serves an OpenAI-compatible API, write "
            f"'openai/{model.split('/', 1)[1]}' with base_url=<its API root> and api_key=..."
        )
    raise ConfigurationError(
        f"unknown provider {provider!r} in {model!r}; use one of: {own} "
        "(e.g. 'openai/gpt-4o-mini', 'ollama_chat/llama3.2', 'local/qwen2.5-coder-1.5b'), "
        "or a LiteLLM prefix such as 'anthropic/...' with pip install 'promptless[litellm]'"
    )


_base._DISPATCH[:] = [make_lm]

__all__ = ["LITELLM_PROVIDERS", "LM", "OLLAMA_BASE_URL", "BaseLM", "ScriptedLM", "litellm_installed", "make_lm"]
