"""Adapters turn a signature, demos and inputs into messages, and replies back into values."""

from .base import Adapter
from .chat import ChatAdapter
from .json import JSONAdapter
from .xml import XMLAdapter

__all__ = ["Adapter", "ChatAdapter", "JSONAdapter", "XMLAdapter"]
