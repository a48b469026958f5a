"""What every OpenAI-compatible HTTP client here shares (the chat LM in ``openai.py``, label scoring in
``logprobs.py``): the endpoints' paths."""

from __future__ import annotations

#: The chat completions endpoint, below the server's base URL.
CHAT_PATH = "/chat/completions"
