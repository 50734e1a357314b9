"""A tiny real HTTP server for the worker's tests: scripted answers, recorded requests.

Real sockets and real ``requests`` on the client side; nothing is mocked. Each route is a
function ``(Request) -> Reply``; the server records every request it receives.
"""
from __future__ import annotations

import json
import os
import socket
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Callable
from urllib.parse import urlsplit

# fedcore's own override, so the tests also run where the Debian package is not installed.
FASHION_DIR = Path(os.environ.get("FEDPLATFORM_DATA_DIR") or "/usr/share/datasets/fashion-mnist")


@dataclass
class Request:
    method: str
    path: str  # without the query string
    query: str
    headers: dict[str, str]
    body: bytes

    def json(self):
        return json.loads(self.body)


@dataclass
class Reply:
    status: int = 200
    body: bytes | dict | list | None = None
    headers: dict[str, str] = field(default_factory=dict)


Route = Callable[[Request], Reply]


def error(status: int, code: str, detail: str) -> Reply:
    return Reply(status, {"code": code, "detail": detail})


class StubServer:
    def __init__(self, routes: dict[tuple[str, str], Route] | None = None, port: int = 0) -> None:
        self.routes: dict[tuple[str, str], Route] = dict(routes or {})
        self.requests: list[Request] = []
        stub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                parts = urlsplit(self.path)
                request = Request(self.command, parts.path, parts.query,
                                  {k: v for k, v in self.headers.items()}, self.rfile.read(length))
                stub.requests.append(request)
                route = stub.routes.get((self.command, parts.path))
                reply = route(request) if route else error(404, "not_found", self.path)
                body = reply.body
                headers = dict(reply.headers)
                if isinstance(body, (dict, list)):
                    body = json.dumps(body).encode()
                    headers.setdefault("Content-Type", "application/json")
                body = body or b""
                self.send_response(reply.status)
                for key, value in headers.items():
                    self.send_header(key, value)
                if reply.status not in (204, 304):
                    self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if reply.status not in (204, 304):
                    self.wfile.write(body)

            do_GET = do_POST = do_PUT = do_DELETE = _handle

            def log_message(self, *args) -> None:  # keep test output clean
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self._thread = threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    def start(self) -> "StubServer":
        self._thread.start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def calls(self, method: str, path: str) -> list[Request]:
        return [r for r in self.requests if r.method == method and r.path == path]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]
