"""Serving any WSGI application over real HTTP with werkzeug, in daemon threads, with an optional ticker.

The server knows nothing of what it serves: the emulator passes itself (a WSGI callable) and the
function that advances its jobs, which a background thread calls every ``tick_seconds``.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import threading
from collections.abc import Callable, Iterator
from typing import Any

from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server

__all__ = ["EmulatorServer", "WSGIApp", "serve"]

log = logging.getLogger("sixtyfour_sync.emulator")
_TICK_SECONDS = 0.05

#: A WSGI application: ``app(environ, start_response) -> iterable of bytes``.
WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Any]


class _Handler(WSGIRequestHandler):
    """Request handler that logs method, path and status only (query strings carry signatures)."""

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        path = getattr(self, "path", "").split("?", 1)[0]
        log.debug("emulator: %s %s -> %s", getattr(self, "command", "-"), path, code)

    def log_error(self, format: str, *args: Any) -> None:
        log.debug("emulator: " + format, *args)

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("emulator: " + format, *args)

    def setup(self) -> None:
        super().setup()
        tracked: set[socket.socket] = getattr(self.server, "open_connections", set())
        tracked.add(self.connection)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            tracked: set[socket.socket] = getattr(self.server, "open_connections", set())
            tracked.discard(self.connection)


class EmulatorServer:
    """A running server: ``url``, ``host``, ``port``; ``stop()`` (or leaving ``serve()``) ends it."""

    def __init__(self, app: WSGIApp, httpd: BaseWSGIServer, tick: Callable[[], None] | None = None) -> None:
        self.app = app
        self._httpd = httpd
        self.host = str(httpd.server_address[0])
        self.port = int(httpd.server_address[1])
        host = f"[{self.host}]" if ":" in self.host else self.host
        self.url = f"http://{host}:{self.port}"
        self._tick = tick
        self._stopped = threading.Event()
        self._serve_thread = threading.Thread(
            target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, name="emulator-http", daemon=True
        )
        self._tick_thread = threading.Thread(target=self._ticker, name="emulator-jobs", daemon=True)

    def __repr__(self) -> str:
        return f"EmulatorServer(url={self.url!r})"

    def start(self) -> None:
        """Start answering requests (and ticking)."""
        self._serve_thread.start()
        if self._tick is not None:
            self._tick_thread.start()

    def _ticker(self) -> None:
        assert self._tick is not None
        while not self._stopped.wait(_TICK_SECONDS):
            try:
                self._tick()
            except Exception:  # keep ticking: one broken job must not stall the others
                log.exception("emulator: background tick failed")

    def stop(self) -> None:
        """Stop serving, close open connections and wait for the threads."""
        if self._stopped.is_set():
            return
        self._stopped.set()
        self._httpd.shutdown()
        self._serve_thread.join(timeout=5)
        if self._tick_thread.is_alive():
            self._tick_thread.join(timeout=5)
        for conn in list(getattr(self._httpd, "open_connections", ())):
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
        self._httpd.server_close()

    def wait(self) -> None:
        """Block until the server stops (or the thread is interrupted)."""
        while self._serve_thread.is_alive():
            self._serve_thread.join(timeout=0.5)


@contextlib.contextmanager
def serve(
    app: WSGIApp, host: str = "127.0.0.1", port: int = 0, *, tick: Callable[[], None] | None = None
) -> Iterator[EmulatorServer]:
    """Serve ``app`` on host:port (0: a free port) until the block exits; ``tick`` runs in the background."""
    try:
        httpd = make_server(host, port, app, threaded=True, request_handler=_Handler)
    except SystemExit as exc:  # werkzeug exits the process when it cannot bind
        raise OSError(f"cannot listen on {host}:{port}") from exc
    httpd.open_connections = set()  # type: ignore[attr-defined]
    server = EmulatorServer(app, httpd, tick)
    server.start()
    log.debug("emulator: serving on %s", server.url)
    try:
        yield server
    finally:
        server.stop()
