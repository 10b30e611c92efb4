"""Test doubles for the API client: a scripted fake API (for httpx.MockTransport) and a fake clock."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sixtyfour_sync.api import SixtyfourClient

import httpx

API_KEY = "sk_test_0123456789abcdef_SECRETKEY"
BASE_URL = "https://api.sixtyfour.test"
SIGNED_URL = "https://files.sixtyfour.test/results/out.csv?X-Signature=deadbeefSIGNATURE&Expires=99"
WALL_EPOCH = 1_800_000_000.0

ClientFactory = Callable[..., "SixtyfourClient"]
Item = Any  # dict (200 JSON) | (status, body[, headers]) | Exception | Callable[[httpx.Request], httpx.Response]


class FakeClock:
    """A monotonic clock that only moves when something sleeps."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds

    def wall(self) -> float:
        return WALL_EPOCH + self.now


def make_response(status: int, body: Any = None, headers: dict[str, str] | None = None) -> httpx.Response:
    if isinstance(body, (bytes, str)):
        return httpx.Response(status, content=body, headers=headers)
    if body is None:
        return httpx.Response(status, headers=headers)
    return httpx.Response(status, json=body, headers=headers)


class FakeApi:
    """Scripted answers per (method, path); the last answer of a route repeats. Records every request."""

    def __init__(self) -> None:
        self.routes: dict[tuple[str, str], list[Item]] = {}
        self.requests: list[httpx.Request] = []

    def add(self, method: str, path: str, *items: Item) -> FakeApi:
        self.routes.setdefault((method.upper(), path), []).extend(items)
        return self

    def calls(self, method: str, path: str) -> list[httpx.Request]:
        return [r for r in self.requests if r.method == method.upper() and r.url.path == path]

    def __call__(self, request: httpx.Request) -> httpx.Response:
        request.read()
        self.requests.append(request)
        queue = self.routes.get((request.method, request.url.path))
        if not queue:
            return httpx.Response(404, json={"detail": "Not Found"})
        item = queue.pop(0) if len(queue) > 1 else queue[0]
        if isinstance(item, BaseException):
            raise item
        if callable(item):
            return item(request)
        if isinstance(item, dict):
            return httpx.Response(200, json=item)
        return make_response(*item)


def multipart_parts(request: httpx.Request) -> dict[str, tuple[str | None, str | None, bytes]]:
    """Split a multipart request body into name -> (filename, content type, bytes)."""
    ctype = request.headers["content-type"]
    boundary = ctype.split("boundary=", 1)[1].encode()
    parts: dict[str, tuple[str | None, str | None, bytes]] = {}
    for chunk in request.content.split(b"--" + boundary):
        if chunk.startswith(b"\r\n"):
            chunk = chunk[2:]
        if chunk.endswith(b"\r\n"):
            chunk = chunk[:-2]  # the line break before the next boundary belongs to the boundary
        if not chunk or chunk.startswith(b"--"):
            continue
        head, _, body = chunk.partition(b"\r\n\r\n")
        headers = head.decode().split("\r\n")
        disp = next(h for h in headers if h.lower().startswith("content-disposition"))
        name = disp.split('name="', 1)[1].split('"', 1)[0]
        filename = disp.split('filename="', 1)[1].split('"', 1)[0] if 'filename="' in disp else None
        ct = next((h.split(":", 1)[1].strip() for h in headers if h.lower().startswith("content-type")), None)
        parts[name] = (filename, ct, body)
    return parts


PEOPLE_CONFIG: dict[str, Any] = {"struct": {"email": "The individual's email address"}, "tier": "low"}
SUBMIT_OK: dict[str, Any] = {"task_id": "task-1", "status": "RUNNING", "row_count": 3, "estimated_cost_cents": 6}
REPLAY: dict[str, Any] = {"task_id": "task-1", "status": "RUNNING", "already_started": True}


class LocalServer:
    """A tiny real HTTP server on 127.0.0.1 (stdlib, in a thread) with scripted answers per path.

    Answers are ``(status, body, headers)``; the last answer of a path repeats. ``truncate`` answers
    declare the full Content-Length, send half the body and close the socket.
    """

    def __init__(self) -> None:
        import http.server
        import threading

        self.routes: dict[str, list[tuple[int, bytes, dict[str, str]]]] = {}
        self.truncate_next: dict[str, int] = {}
        self.seen: list[tuple[str, str, dict[str, str]]] = []
        #: (path, headers, raw body) of every request, for webhook receivers
        self.received: list[tuple[str, dict[str, str], bytes]] = []
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:  # keep test output quiet
                return

            def _answer(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                raw = self.rfile.read(length) if length else b""
                path = self.path.split("?", 1)[0]
                server.seen.append((self.command, self.path, dict(self.headers)))
                server.received.append((path, dict(self.headers), raw))
                queue = server.routes.get(path) or [(404, b'{"detail":"Not Found"}', {})]
                status, body, headers = queue.pop(0) if len(queue) > 1 else queue[0]
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(body)))
                if server.truncate_next.get(path, 0) > 0:
                    server.truncate_next[path] -= 1
                    self.send_header("Connection", "close")
                    self.end_headers()
                    self.wfile.write(body[: len(body) // 2])
                    self.wfile.flush()
                    self.close_connection = True
                    return
                self.end_headers()
                self.wfile.write(body)

            do_GET = _answer
            do_POST = _answer

        self._httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._httpd.server_address[1]}"
        self._thread = threading.Thread(target=self._httpd.serve_forever, args=(0.05,), daemon=True)
        self._thread.start()

    def add(self, path: str, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
        raw = body if isinstance(body, bytes) else json.dumps(body).encode()
        base = {"Content-Type": "application/json"} if not isinstance(body, bytes) else {}
        self.routes.setdefault(path, []).append((status, raw, {**base, **(headers or {})}))

    def close(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)
