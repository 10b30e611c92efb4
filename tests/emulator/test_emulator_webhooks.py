"""Signed webhook deliveries to a real receiver on loopback, retried on failure."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from werkzeug.serving import make_server
from werkzeug.wrappers import Request, Response

from .helpers import Live

SECRET = "sk_whsec_" + "ab" * 32


@dataclass
class Receiver:
    url: str
    answers: list[int] = field(default_factory=list)
    received: list[tuple[dict[str, str], bytes]] = field(default_factory=list)
    event: threading.Event = field(default_factory=threading.Event)

    def wait_for(self, n: int, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while len(self.received) < n and time.monotonic() < deadline:
            time.sleep(0.02)
        assert len(self.received) >= n, f"got {len(self.received)} deliveries, wanted {n}"


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    holder: dict[str, Receiver] = {}

    @Request.application  # type: ignore[arg-type]
    def app(request: Request) -> Response:
        rec = holder["r"]
        rec.received.append((dict(request.headers), request.get_data()))
        status = rec.answers.pop(0) if rec.answers else 200
        return Response("ok", status=status)

    server = make_server("127.0.0.1", 0, app, threaded=True)
    holder["r"] = Receiver(f"http://127.0.0.1:{server.server_port}/hook")
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield holder["r"]
    server.shutdown()
    thread.join(timeout=5)
    server.server_close()


def _verify(headers: dict[str, str], body: bytes) -> None:
    sig = headers["Sixtyfour-Signature"]
    parts = dict(p.split("=", 1) for p in sig.split(","))
    expected = hmac.new(SECRET.encode(), f"{parts['t']}.".encode() + body, hashlib.sha256).hexdigest()
    assert hmac.compare_digest(parts["v1"], expected)
    assert abs(time.time() - int(parts["t"])) < 300


def test_completion_is_delivered_signed(serve_emulator: Callable[..., Live], receiver: Receiver) -> None:
    live = serve_emulator(webhook_secret=SECRET, allow_insecure_webhooks=True, job_seconds=0.05)
    task_id = live.submit({"struct": {"email": "e"}, "webhook_url": receiver.url}).json()["task_id"]
    receiver.wait_for(1)
    headers, body = receiver.received[0]
    _verify(headers, body)
    payload: dict[str, Any] = json.loads(body)
    assert payload["task_id"] == task_id and payload["status"] == "completed"
    assert payload["event_type"] == headers["Sixtyfour-Event-Type"] == "bulk_job.completed"
    assert payload["event_id"] == headers["Sixtyfour-Event-Id"]
    assert headers["Sixtyfour-Delivery-Attempt"] == "1"
    assert payload["charge_amount"] == 6
    final = max(payload["results"], key=lambda e: e["block_number"])
    assert payload["results_download_url"] == final["download_url"]
    assert live.client.get(payload["results_download_url"]).status_code == 200
    deadline = time.monotonic() + 10  # the emulator records a delivery once its answer is read
    while not live.emu.webhook_deliveries and time.monotonic() < deadline:
        time.sleep(0.02)
    assert [d.status_code for d in live.emu.webhook_deliveries] == [200]


def test_non_2xx_is_retried_with_backoff_then_succeeds(serve_emulator: Callable[..., Live], receiver: Receiver) -> None:
    receiver.answers = [500, 503]
    live = serve_emulator(webhook_secret=SECRET, allow_insecure_webhooks=True, webhook_retry_seconds=0.05)
    live.submit({"struct": {"email": "e"}, "webhook_url": receiver.url})
    receiver.wait_for(3)
    attempts = [h["Sixtyfour-Delivery-Attempt"] for h, _ in receiver.received]
    assert attempts == ["1", "2", "3"]
    assert len({h["Sixtyfour-Event-Id"] for h, _ in receiver.received}) == 1
    for headers, body in receiver.received:
        _verify(headers, body)
    deadline = time.monotonic() + 5
    while len(live.emu.webhook_deliveries) < 3 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert [d.status_code for d in live.emu.webhook_deliveries] == [500, 503, 200]
    first, second, third = live.emu.webhook_deliveries
    # The wait doubles: 0.05 s, then 0.1 s.
    assert second.at - first.at >= 0.05
    assert third.at - second.at >= 0.1


def test_retries_are_bounded(serve_emulator: Callable[..., Live], receiver: Receiver) -> None:
    receiver.answers = [500] * 10
    live = serve_emulator(allow_insecure_webhooks=True, webhook_retry_seconds=0.01, webhook_max_attempts=3)
    live.submit({"struct": {"email": "e"}, "webhook_url": receiver.url})
    receiver.wait_for(3)
    time.sleep(0.3)
    assert len(receiver.received) == 3
    # Without a secret, deliveries go unsigned.
    assert all("Sixtyfour-Signature" not in h for h, _ in receiver.received)


def test_failed_job_event(serve_emulator: Callable[..., Live], receiver: Receiver) -> None:
    live = serve_emulator(webhook_secret=SECRET, allow_insecure_webhooks=True, job_seconds=60)
    task_id = live.submit({"struct": {"email": "e"}, "webhook_url": receiver.url}).json()["task_id"]
    live.emu.fail(task_id, "boom")
    receiver.wait_for(1)
    payload = json.loads(receiver.received[0][1])
    assert payload["event_type"] == "bulk_job.failed" and payload["error"] == "boom"
    assert "results" not in payload


def test_webhook_secret_format_is_checked() -> None:
    from sixtyfour_sync.emulator import EmulatorSettings

    with pytest.raises(ValueError, match="sk_whsec_"):
        EmulatorSettings(webhook_secret="whsec_123")


def test_plain_http_is_refused_without_the_flag(live: Live, receiver: Receiver) -> None:
    response = live.submit({"struct": {"email": "e"}, "webhook_url": receiver.url})
    assert response.status_code == 422
    assert httpx.get(receiver.url.replace("/hook", "/")).status_code == 200  # receiver is fine
