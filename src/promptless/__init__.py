"""promptless: programming, not prompting, language models."""

__version__ = "0.1.0"
