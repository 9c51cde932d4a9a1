"""A webhook receiver on 127.0.0.1 for tests: records every POST and responds with scripted statuses."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass(frozen=True)
class ReceivedPost:
    path: str
    headers: dict[str, str]
    body: bytes
    answered: int


@dataclass
class Receiver:
    """Responds to the first POSTs to each path with the statuses in `failures[path]`, then with 200."""

    base_url: str
    failures: dict[str, list[int]] = field(default_factory=dict)
    posts: list[ReceivedPost] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def url(self, path: str) -> str:
        return f"{self.base_url}{path}"

    def next_status(self, path: str) -> int:
        with self.lock:
            scripted = self.failures.get(path, [])
            return scripted.pop(0) if scripted else 200

    def record(self, post: ReceivedPost) -> None:
        with self.lock:
            self.posts.append(post)

    def posts_to(self, path: str) -> list[ReceivedPost]:
        with self.lock:
            return [post for post in self.posts if post.path == path]


def _handler(receiver: Receiver) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - the name http.server calls
            length = int(self.headers.get("Content-Length", "0"))
            body = self.rfile.read(length)
            status = receiver.next_status(self.path)
            headers = {key.lower(): value for key, value in self.headers.items()}
            receiver.record(ReceivedPost(self.path, headers, body, status))
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: object) -> None:
            return

    return Handler


@contextmanager
def webhook_receiver(failures: dict[str, list[int]] | None = None) -> Iterator[Receiver]:
    """Serve a Receiver on a free loopback port for the duration of the block."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), None)
    receiver = Receiver(base_url=f"http://127.0.0.1:{server.server_address[1]}", failures=dict(failures or {}))
    server.RequestHandlerClass = _handler(receiver)
    thread = threading.Thread(target=server.serve_forever, name="webhook-receiver", daemon=True)
    thread.start()
    try:
        yield receiver
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
