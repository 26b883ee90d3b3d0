"""A real HTTP server on 127.0.0.1 serving CRLs and answering OCSP requests (no mocks)."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest


class RevocationServer:
    """Routes: GET path -> bytes; POST path -> callable(request body) -> bytes. Counts requests per path."""

    def __init__(self) -> None:
        self.get_routes: dict[str, bytes] = {}
        self.post_routes: dict[str, Callable[[bytes], bytes]] = {}
        self.hits: Counter[str] = Counter()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def _reply(self, body: bytes | None, content_type: str) -> None:
                if body is None:
                    self.send_error(404)
                    return
                self.send_response(200)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self) -> None:
                server.hits[self.path] += 1
                self._reply(server.get_routes.get(self.path), "application/pkix-crl")

            def do_POST(self) -> None:
                server.hits[self.path] += 1
                request = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                handler = server.post_routes.get(self.path)
                self._reply(handler(request) if handler else None, "application/ocsp-response")

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    def url(self, path: str) -> str:
        return self.base + path


@pytest.fixture
def revocation_server() -> Iterator[RevocationServer]:
    server = RevocationServer()
    server.thread.start()
    try:
        yield server
    finally:
        server.httpd.shutdown()
        server.httpd.server_close()
        server.thread.join(timeout=5)
