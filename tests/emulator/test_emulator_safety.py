"""Concurrency around idempotency, and credentials kept out of logs and reprs."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

import httpx
import pytest

from sixtyfour_sync.emulator import EmulatorSettings

from .helpers import KEY, Live

CONFIG = {"struct": {"email": "e"}}


def test_concurrent_submissions_with_one_key_create_one_job(serve_emulator: Callable[..., Live]) -> None:
    live = serve_emulator()
    answers: list[dict[str, object]] = []
    lock = threading.Lock()

    def send() -> None:
        with httpx.Client(base_url=live.url, headers={"x-api-key": KEY}, timeout=30) as c:
            body = live.submit(CONFIG, client=c, headers={"Idempotency-Key": "same"}).json()
        with lock:
            answers.append(body)

    threads = [threading.Thread(target=send) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(live.emu.jobs) == 1
    assert len({a["task_id"] for a in answers}) == 1
    assert sum(1 for a in answers if a.get("already_started")) == 5
    assert live.emu.balance_cents(KEY) == 10_000_000 - 6


def test_no_key_or_signature_in_logs(live: Live, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    task_id = live.submit(CONFIG).json()["task_id"]
    url = live.final(task_id)["download_url"]
    assert live.client.get(url).status_code == 200
    live.client.get(url.replace("signature=", "signature=0"))
    signature = url.split("signature=", 1)[1]
    assert "GET /downloads/" in caplog.text  # the request was logged, without its query
    assert signature not in caplog.text
    assert KEY not in caplog.text


def test_settings_repr_hides_credentials() -> None:
    settings = EmulatorSettings(api_keys=frozenset({"sk-very-secret"}), webhook_secret="sk_whsec_" + "0" * 64)
    assert "sk-very-secret" not in repr(settings)
    assert "sk_whsec_" not in repr(settings)


def test_every_answer_has_a_request_id(live: Live) -> None:
    ids = {live.client.get("/check-balance").headers["x-request-id"] for _ in range(2)}
    assert len(ids) == 2
    assert httpx.get(live.url + "/check-balance").headers["x-request-id"]
