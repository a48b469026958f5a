"""Fixtures shared by every test tier."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

Reply = Callable[[dict[str, Any]], tuple[int, dict[str, Any]]]


def chat_reply(*texts: str) -> dict[str, Any]:
    """A chat-completions reply with one choice per text."""
    return {"choices": [{"index": i, "message": {"role": "assistant", "content": t}, "finish_reason": "stop"}
                        for i, t in enumerate(texts)],
            "usage": {"prompt_tokens": 3, "completion_tokens": 2}}


class ChatServer:
    """An OpenAI-compatible server on 127.0.0.1: POST answers ``reply(body) -> (status, json)`` (default: "ok")
    and keeps every request body in ``bodies``; GET serves ``files`` (path -> (content type, bytes)).
    ``url`` is the server's root, ``base_url`` its ``/v1``."""

    def __init__(self, reply: Reply | None = None, files: dict[str, tuple[str, bytes]] | None = None) -> None:
        self.bodies: list[dict[str, Any]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def _send(self, status: int, content_type: str, data: bytes) -> None:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:
                found = (files or {}).get(self.path)
                if found is None:
                    self._send(404, "text/plain", b"not found")
                else:
                    self._send(200, found[0], found[1])

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)) or b"{}")
                outer.bodies.append(body)
                status, data = reply(body) if reply else (200, chat_reply("ok"))
                self._send(status, "application/json", json.dumps(data).encode())

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.base_url = self.url + "/v1"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def chat_server() -> Iterator[Callable[..., ChatServer]]:
    """Start ``ChatServer``s (same arguments); each is stopped after the test."""
    made: list[ChatServer] = []

    def start(*args: Any, **kw: Any) -> ChatServer:
        made.append(ChatServer(*args, **kw))
        return made[-1]

    yield start
    for s in made:
        s.close()
