"""Headless Chromium driven over the Chrome DevTools protocol, with the standard library only.

Chromium is started with ``--remote-debugging-pipe``: it reads protocol messages (JSON, NUL-terminated) on
file descriptor 3 and writes its answers and events on descriptor 4, so no port is opened and no websocket
client is needed. A page load records what a browser would complain about: console messages, uncaught
exceptions, log entries (a Content-Security-Policy violation, a failed load) and every request it made.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import json
import os
import select
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.services import IN_CI

#: The flags the project runs Chromium with: headless, no sandbox (containers), nothing phoning home.
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--remote-debugging-pipe",
]


def chromium_binary() -> str:
    """Debian's ``chromium`` (skipped locally when missing; CI=true requires it)."""
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found:
        return found
    reason = "chromium is not installed (apt-get install -y chromium)"
    if IN_CI:
        pytest.fail(f"{reason}; CI=true requires it", pytrace=False)
    pytest.skip(reason)


@dataclass
class PageLoad:
    """What loading one page showed."""

    title: str
    values: dict[str, Any]
    screenshot: bytes
    console: list[tuple[str, str]] = field(default_factory=list)
    exceptions: list[str] = field(default_factory=list)
    log: list[tuple[str, str, str]] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)

    @property
    def errors(self) -> list[str]:
        """Everything a person would see as an error in the browser's console."""
        out = [f"console.{lvl}: {text}" for lvl, text in self.console if lvl in ("error", "assert", "warning")]
        out += [f"exception: {x}" for x in self.exceptions]
        out += [f"log {lvl}: {text} ({url})" for lvl, text, url in self.log if lvl in ("error", "warning")]
        return out + [f"failed to load: {u}" for u in self.failed]


def _high(fd: int) -> int:
    """``fd`` duplicated above 9, so moving the two ends to 3 and 4 never clobbers one with the other."""
    new = fcntl.fcntl(fd, fcntl.F_DUPFD, 10)
    os.close(fd)
    return new


class Chromium:
    """One headless Chromium with a fresh, empty profile."""

    def __init__(self, binary: str, *, timeout: float = 60.0) -> None:
        self.binary = binary
        self.timeout = timeout
        self._id = 0
        self._buf = b""
        self.events: list[dict[str, Any]] = []

    def __enter__(self) -> Chromium:
        self._profile = tempfile.TemporaryDirectory(prefix="report-chromium-")
        cmd_r, self._cmd_w = os.pipe()
        self._out_r, out_w = os.pipe()
        cmd_r, out_w = _high(cmd_r), _high(out_w)
        self._stderr = open(Path(self._profile.name) / "stderr.log", "wb")
        args = [*FLAGS, f"--user-data-dir={self._profile.name}/profile", "about:blank"]
        # A small Python trampoline puts the pipe ends on descriptors 3 and 4, then becomes Chromium (no
        # preexec_fn: tests run threads; no shell: dash takes single-digit descriptors only).
        trampoline = (
            "import os, sys; a, b = int(sys.argv[1]), int(sys.argv[2]); os.dup2(a, 3); os.dup2(b, 4); "
            "os.close(a); os.close(b); os.execv(sys.argv[3], sys.argv[3:])"
        )
        self.proc = subprocess.Popen(
            [sys.executable, "-c", trampoline, str(cmd_r), str(out_w), self.binary, *args],
            pass_fds=(cmd_r, out_w),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=self._stderr,
        )
        os.close(cmd_r)
        os.close(out_w)
        return self

    def __exit__(self, *exc: object) -> None:
        with contextlib.suppress(Exception):
            self._send("Browser.close")
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)
        for fd in (self._cmd_w, self._out_r):
            with contextlib.suppress(OSError):
                os.close(fd)
        self._stderr.close()
        self._profile.cleanup()

    # -- the protocol ----------------------------------------------------------------------------------
    def _send(self, method: str, params: dict[str, Any] | None = None, session: str | None = None) -> int:
        self._id += 1
        msg: dict[str, Any] = {"id": self._id, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = session
        os.write(self._cmd_w, json.dumps(msg).encode() + b"\0")
        return self._id

    def _read(self, deadline: float) -> dict[str, Any]:
        while b"\0" not in self._buf:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("chromium did not answer in time")
            ready, _, _ = select.select([self._out_r], [], [], left)
            if ready:
                chunk = os.read(self._out_r, 1 << 20)
                if not chunk:
                    raise EOFError(f"chromium exited ({self.proc.poll()})")
                self._buf += chunk
        raw, self._buf = self._buf.split(b"\0", 1)
        message: dict[str, Any] = json.loads(raw)
        return message

    def call(self, method: str, params: dict[str, Any] | None = None, session: str | None = None) -> dict[str, Any]:
        """Send a command and wait for its answer; events that arrive meanwhile are kept in :attr:`events`."""
        wanted = self._send(method, params, session)
        deadline = time.monotonic() + self.timeout
        while True:
            msg = self._read(deadline)
            if msg.get("id") == wanted:
                if "error" in msg:
                    raise RuntimeError(f"{method}: {msg['error']}")
                result: dict[str, Any] = msg.get("result", {})
                return result
            if "method" in msg:
                self.events.append(msg)

    def wait_for(self, method: str) -> dict[str, Any]:
        """The first event ``method`` (already received, or coming)."""
        deadline = time.monotonic() + self.timeout
        for ev in self.events:
            if ev["method"] == method:
                return ev
        while True:
            msg = self._read(deadline)
            if "method" in msg:
                self.events.append(msg)
                if msg["method"] == method:
                    return msg

    # -- a page ----------------------------------------------------------------------------------------
    def load(self, path: Path, expressions: dict[str, str], *, width: int = 1280) -> PageLoad:
        """Open ``path``, evaluate ``expressions`` (name -> JavaScript) and take a full-page screenshot."""
        target = self.call("Target.createTarget", {"url": "about:blank"})["targetId"]
        sid = self.call("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        for domain in ("Page", "Runtime", "Log", "Network"):
            self.call(f"{domain}.enable", session=sid)
        self.call(
            "Emulation.setDeviceMetricsOverride",
            {"width": width, "height": 900, "deviceScaleFactor": 1, "mobile": False},
            session=sid,
        )
        self.events.clear()
        self.call("Page.navigate", {"url": path.resolve().as_uri()}, session=sid)
        self.wait_for("Page.loadEventFired")
        values = {}
        for name, expr in expressions.items():
            params = {"expression": expr, "returnByValue": True, "awaitPromise": True}
            answer = self.call("Runtime.evaluate", params, session=sid)
            if "exceptionDetails" in answer:
                raise AssertionError(f"{name}: {answer['exceptionDetails']}")
            values[name] = answer["result"].get("value")
        metrics = self.call("Page.getLayoutMetrics", session=sid)
        height = int(metrics["cssContentSize"]["height"])
        shot = self.call(
            "Page.captureScreenshot",
            {
                "format": "png",
                "captureBeyondViewport": True,
                "clip": {"x": 0, "y": 0, "width": width, "height": height, "scale": 1},
            },
            session=sid,
        )
        title = self.call("Runtime.evaluate", {"expression": "document.title", "returnByValue": True}, session=sid)
        return self._page(title["result"]["value"], values, base64.b64decode(shot["data"]))

    def _page(self, title: str, values: dict[str, Any], screenshot: bytes) -> PageLoad:
        page = PageLoad(title, values, screenshot)
        for ev in self.events:
            p = ev.get("params", {})
            if ev["method"] == "Runtime.consoleAPICalled":
                text = " ".join(str(a.get("value", a.get("description", ""))) for a in p.get("args", []))
                page.console.append((p.get("type", ""), text))
            elif ev["method"] == "Runtime.exceptionThrown":
                x = p.get("exceptionDetails", {})
                what = (x.get("exception") or {}).get("description") or x.get("text") or json.dumps(x)
                page.exceptions.append(f"{what} (line {x.get('lineNumber')})"[:500])
            elif ev["method"] == "Log.entryAdded":
                e = p.get("entry", {})
                page.log.append((e.get("level", ""), e.get("text", ""), e.get("url", "")))
            elif ev["method"] == "Network.requestWillBeSent":
                page.requests.append(p.get("request", {}).get("url", ""))
            elif ev["method"] == "Network.loadingFailed":
                page.failed.append(f"{p.get('errorText')} ({p.get('requestId')})")
        return page
