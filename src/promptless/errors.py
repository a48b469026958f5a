"""Every exception promptless raises.

    PromptlessError
    ├── ConfigurationError      no LM configured, bad option, missing extra
    │   ├── RuntimeBuildError   the embedded llama.cpp build cannot run on this CPU (its probe died)
    │   └── ScoringNotSupportedError  the LM cannot score label values (no log-probabilities)
    ├── SignatureError          a signature string or class that cannot be understood
    ├── ParseError              an LM reply that cannot be read back into the output fields
    ├── LMError                 a backend failed
    │   ├── LMTimeoutError        no reply in time (retried)
    │   ├── LMConnectionError     connection refused or dropped (retried)
    │   ├── LMRateLimitError      429 (retried, honours Retry-After)
    │   ├── LMServerError         5xx (retried)
    │   ├── LMAuthenticationError 401/403 (never retried)
    │   ├── LMNotFoundError       404, unknown model (never retried)
    │   ├── LMBadRequestError     400 (never retried)
    │   │   └── ContextWindowError  the prompt does not fit the model
    │   └── LMResponseError       a reply that is not what the protocol says (malformed JSON)
    ├── ModelFetchError         named weights could not be fetched or failed their checksum
    ├── PersistError            a saved program that cannot be loaded into this one
    ├── BudgetExceededError     an optimizer or tracker ran out of its LM-call or cost budget
    ├── EvaluationError         an evaluation that gave no result: too many failures (.result: partial)
    └── ToolError               a tool was called with bad arguments (or a tool call could not run)

    TypeMismatchWarning (a UserWarning)  an input value of another type than its field declares

This module imports nothing from the package, so every layer may import it.
"""

from __future__ import annotations

from typing import Any


class PromptlessError(Exception):
    """Base class of every error raised by promptless."""


class ConfigurationError(PromptlessError):
    """A setting is missing or wrong; the message says which and how to set it."""


class SignatureError(PromptlessError, ValueError):
    """A signature string or class could not be understood."""


class ParseError(PromptlessError):
    """An LM reply could not be read back into the signature's output fields.

    ``raw`` holds the reply as received, ``missing`` the output fields that were
    absent and ``invalid`` maps fields that were present but could not be
    coerced to their declared type to the reason.
    """

    def __init__(
        self,
        message: str,
        *,
        raw: str = "",
        missing: list[str] | None = None,
        invalid: dict[str, str] | None = None,
        adapter: str = "",
    ) -> None:
        self.raw = raw
        self.missing = list(missing or [])
        self.invalid = dict(invalid or {})
        self.adapter = adapter
        details = []
        if self.missing:
            details.append(f"missing fields: {', '.join(self.missing)}")
        for name, why in self.invalid.items():
            details.append(f"field {name!r}: {why}")
        shown = raw if len(raw) <= 600 else raw[:600] + f"... [{len(raw) - 600} more chars]"
        text = message
        if details:
            text += " (" + "; ".join(details) + ")"
        text += f"\n--- raw reply ---\n{shown}\n--- end of reply ---"
        super().__init__(text)


class LMError(PromptlessError):
    """A language-model backend failed.

    ``refused`` names a request feature the server refused (``"tools"``: it takes no native tool calls), so
    that the caller can ask again without it."""

    retryable: bool = False
    refused: str | None = None

    def __init__(self, message: str, *, status: int | None = None, model: str | None = None) -> None:
        self.status = status
        self.model = model
        super().__init__(message)


class LMTimeoutError(LMError):
    retryable = True


class LMConnectionError(LMError):
    retryable = True


class LMRateLimitError(LMError):
    retryable = True

    def __init__(self, message: str, *, retry_after: float | None = None, **kw: Any) -> None:
        self.retry_after = retry_after
        super().__init__(message, **kw)


class LMServerError(LMError):
    retryable = True


class LMAuthenticationError(LMError):
    pass


class LMNotFoundError(LMError):
    pass


class LMBadRequestError(LMError):
    pass


class ContextWindowError(LMBadRequestError):
    pass


class LMResponseError(LMError):
    retryable = True


class RuntimeBuildError(ConfigurationError):
    """The installed llama-cpp-python build cannot run on this machine.

    Raised by the embedded backend's preflight when its probe process dies (for example
    SIGILL from instructions the CPU or its virtual machine does not allow). The message
    names the signal and the command that reinstalls a portable build.
    """


class ScoringNotSupportedError(ConfigurationError):
    """The LM cannot score candidate continuations (it gives no token log-probabilities).

    Raised by ``BaseLM.score_continuations`` for backends without scoring; ``pl.Classify`` then falls back
    to generating the label (unless told not to) and says so in its prediction.
    """


class ModelFetchError(PromptlessError):
    """Named model weights could not be fetched, or failed their checksum."""


class PersistError(PromptlessError):
    """A saved program could not be loaded; the program was left unchanged."""


class BudgetExceededError(PromptlessError):
    """An LM-call or cost budget was used up."""


class EvaluationError(PromptlessError):
    """An evaluation that gave no result: more examples failed than ``max_errors`` allows, every example
    failed, or an error every example would hit (a refused API key, an unreachable server) stopped it.

    ``result`` holds the partial ``EvaluationResult`` (examples never run are marked ``skipped``).
    """

    def __init__(self, message: str, *, result: Any = None) -> None:
        self.result = result
        super().__init__(message)


class ToolError(PromptlessError):
    """A tool was given arguments it cannot take."""


class TypeMismatchWarning(UserWarning):
    """An input value does not have the type its signature field declares (it is still written into the prompt).

    Turn these off with ``pl.configure(warn_on_type_mismatch=False)``, or filter them with ``warnings``."""


__all__ = [name for name in dir() if name.endswith(("Error", "Warning")) and name not in ("Warning", "UserWarning")]
