"""The client against the local emulator over a real socket: one test per documented behaviour."""

from __future__ import annotations

import contextlib
import csv
import io
import json
import logging
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from api_fakes import FakeClock, LocalServer

from sixtyfour_sync.api import (
    AuthenticationError,
    BadRequestError,
    FatalApiError,
    InsufficientCreditsError,
    PermissionDeniedError,
    RetryPolicy,
    SixtyfourClient,
    SubmissionLimiter,
    UnprocessableEntityError,
    final_result,
    verify_webhook_signature,
)

try:
    from sixtyfour_sync.emulator import Emulator, EmulatorSettings
except ImportError:  # pragma: no cover - the emulator ships in the same package
    pytest.skip("the emulator is not importable", allow_module_level=True)

KEY = "live_test_key_0123456789"
WEBHOOK_SECRET = "sk_whsec_" + "5e" * 32
STRUCT = {"email": "The individual's email address", "title": "The individual's job title"}
CONFIG: dict[str, Any] = {"struct": STRUCT, "tier": "low"}
PRICE_LOW = 2


Live = Callable[..., tuple[Any, SixtyfourClient, FakeClock]]


@pytest.fixture
def live() -> Iterator[Live]:
    """Start an emulator (settings as keyword arguments) and a client pointed at it."""
    stack = contextlib.ExitStack()

    def start(api_key: str = KEY, **settings: Any) -> tuple[Any, SixtyfourClient, FakeClock]:
        settings.setdefault("api_keys", frozenset({KEY}))
        settings.setdefault("job_seconds", 0.0)
        emu = Emulator(EmulatorSettings(**settings))
        stack.callback(emu.close)
        server = stack.enter_context(emu.serve(host="127.0.0.1", port=0))
        clock = FakeClock()
        client = SixtyfourClient(
            api_key,
            base_url=server.url,
            retry=RetryPolicy(max_attempts=4, base=0.0, cap=0.0, retry_after_cap=5.0),
            limiter=SubmissionLimiter(clock=clock, sleep=clock.sleep),
            sleep=clock.sleep,
            clock=clock,
            timeout=10.0,
        )
        stack.callback(client.close)
        return emu, client, clock

    with stack:
        yield start


def write_rows(path: Path, n: int) -> Path:
    with path.open("w") as fh:
        for i in range(n):
            row = {"lead_id": i, "first_name": f"Ada{i}", "last_name": "Lovelace", "domain": "example.com"}
            fh.write(json.dumps(row) + "\n")
    return path


def read_csv(path: Path) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(path.read_text(encoding="utf-8-sig"))))


def test_submit_ok(live: Live, tmp_path: Path) -> None:
    emu, client, _ = live()
    result = client.submit("people", write_rows(tmp_path / "a.jsonl", 4), CONFIG, "live-ok-1")
    assert not result.is_replay
    assert result.row_count == 4 and result.estimated_cost_cents == 4 * PRICE_LOW
    assert result.task_id in emu.jobs


def test_wrong_key_is_401(live: Live, tmp_path: Path) -> None:
    _, client, _ = live(api_key="not-the-key")
    with pytest.raises(AuthenticationError) as exc:
        client.check_balance()
    assert exc.value.detail == "Invalid API key"
    assert "not-the-key" not in str(exc.value)


def test_unreadable_file_is_400(live: Live, tmp_path: Path) -> None:
    _, client, _ = live()
    bad = tmp_path / "bad.jsonl"
    bad.write_text("{this is not json}\n{nor this}\n")
    with pytest.raises(BadRequestError) as exc:
        client.submit("people", bad, CONFIG, "live-400")
    assert exc.value.detail


def test_schema_violation_is_422_when_not_validated_locally(live: Live, tmp_path: Path) -> None:
    _, client, _ = live()
    with pytest.raises(UnprocessableEntityError) as exc:
        client.submit("people", write_rows(tmp_path / "a.jsonl", 2), {"tier": "ultra"}, "live-422", validate=False)
    assert exc.value.errors and "tier" in (exc.value.detail or "")


def test_insufficient_credits_is_402_and_nothing_charged(live: Live, tmp_path: Path) -> None:
    _, client, _ = live(balance_cents=5)
    before = client.check_balance().credits
    with pytest.raises(InsufficientCreditsError):
        client.submit("people", write_rows(tmp_path / "a.jsonl", 10), CONFIG, "live-402")
    assert client.check_balance().credits == before


def test_high_tier_without_access_is_403(live: Live, tmp_path: Path) -> None:
    _, client, _ = live()
    config = {"struct": {"website": "Company website"}, "tier": "high"}
    rows = tmp_path / "c.csv"
    rows.write_text("company_id,name\n1,Acme\n")
    with pytest.raises(PermissionDeniedError, match="High tier"):
        client.submit("company", rows, config, "live-403")


def test_row_limit_enforced_by_the_server(live: Live, tmp_path: Path) -> None:
    _, client, _ = live()
    big = tmp_path / "big.jsonl"
    big.write_text('{"a":1}\n' * 100_001)
    # validate=False skips the local row count (it checks the extension only): the server judges.
    with pytest.raises(FatalApiError) as exc:
        client.submit("people", big, {"struct": {"b": "x"}}, "live-413", validate=False)
    assert exc.value.status_code == 413
    assert "100,001" in (exc.value.detail or "") and "100,000" in (exc.value.detail or "")


def test_429_then_success_waits_retry_after(live: Live, tmp_path: Path) -> None:
    emu, client, clock = live()
    emu.inject("POST", "/bulk-intelligence/", status=429, retry_after=2)
    result = client.submit("people", write_rows(tmp_path / "a.jsonl", 2), CONFIG, "live-429")
    assert not result.is_replay
    assert clock.sleeps[0] == 2.0


def test_5xx_then_success(live: Live, tmp_path: Path) -> None:
    emu, client, clock = live()
    emu.inject("POST", "/bulk-intelligence/", status=500, times=2)
    result = client.submit("people", write_rows(tmp_path / "a.jsonl", 2), CONFIG, "live-5xx")
    assert result.row_count == 2 and len(clock.sleeps) == 2
    assert [s.status_code for s in emu.submissions][-1] == 200


def test_dropped_connection_then_success(live: Live, tmp_path: Path) -> None:
    emu, client, clock = live()
    emu.inject("POST", "/bulk-intelligence/", drop=True)
    result = client.submit("people", write_rows(tmp_path / "a.jsonl", 2), CONFIG, "live-drop")
    assert result.row_count == 2 and len(emu.jobs) == 1 and len(clock.sleeps) == 1


def test_lost_answer_after_accept_comes_back_as_replay(live: Live, tmp_path: Path) -> None:
    emu, client, _ = live()
    emu.inject("POST", "/bulk-intelligence/", drop=True, phase="after")
    result = client.submit("people", write_rows(tmp_path / "a.jsonl", 2), CONFIG, "live-lost")
    assert result.is_replay
    assert len(emu.jobs) == 1 and result.task_id in emu.jobs


def test_replay_same_key(live: Live, tmp_path: Path) -> None:
    emu, client, _ = live()
    rows = write_rows(tmp_path / "a.jsonl", 3)
    first = client.submit("people", rows, CONFIG, "live-replay")
    second = client.submit("people", rows, CONFIG, "live-replay")
    assert second.is_replay and second.task_id == first.task_id
    assert second.row_count is None and second.estimated_cost_cents is None
    assert len(emu.jobs) == 1
    assert [s.replay for s in emu.submissions] == [False, True]


def test_cost_units_credits(live: Live, tmp_path: Path) -> None:
    _, client, _ = live()
    result = client.submit("people", write_rows(tmp_path / "a.jsonl", 5), CONFIG, "live-credits", cost_units="credits")
    assert result.estimated_cost_cents is None
    assert result.estimated_cost_credits is not None and result.estimated_cost_credits > 0
    status = client.job_status(result.task_id)
    assert status.is_completed and status.charge_credits is not None


def test_job_status_running_then_completed(live: Live, tmp_path: Path) -> None:
    emu, client, _ = live(job_seconds=3600.0)
    result = client.submit("people", write_rows(tmp_path / "a.jsonl", 2), CONFIG, "live-status")
    running = client.job_status(result.task_id)
    assert running.status == "running" and not running.is_terminal
    emu.complete(result.task_id)
    done = client.job_status(result.task_id)
    assert done.is_completed and done.charge_amount_cents == 2 * PRICE_LOW


def test_results_out_of_order_final_is_highest_block(live: Live, tmp_path: Path) -> None:
    _, client, _ = live(preview_max_rows=0)
    result = client.submit("people", write_rows(tmp_path / "a.jsonl", 3), CONFIG, "live-blocks")
    status = client.job_status(result.task_id)
    blocks = [r.block_number for r in status.results]
    assert len(blocks) >= 2 and blocks != sorted(blocks)
    final = final_result(status.results)
    assert final is not None and final.block_number == max(b for b in blocks if b is not None)
    download = client.download_result(status, tmp_path / "out.csv")
    assert download.source == "download" and download.format == "csv"
    assert download.block_number == final.block_number
    rows = read_csv(tmp_path / "out.csv")
    assert len(rows) == 3 and {"lead_id", "email", "title"} <= set(rows[0])


def test_inline_preview(live: Live, tmp_path: Path) -> None:
    emu, client, _ = live()
    rows_file = write_rows(tmp_path / "a.jsonl", 3)
    result = client.submit("people", rows_file, CONFIG, "live-inline")
    before = len(emu.submissions)
    download = client.download_result(result.task_id, tmp_path / "out.jsonl")
    assert download.source == "inline" and download.row_count == 3
    lines = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert [r["lead_id"] for r in lines] == [0, 1, 2] or [int(r["lead_id"]) for r in lines] == [0, 1, 2]
    assert len(emu.submissions) == before


def test_expired_link_is_refreshed(live: Live, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    emu, client, _ = live(preview_max_rows=0)
    result = client.submit("people", write_rows(tmp_path / "a.jsonl", 3), CONFIG, "live-expired")
    status = client.job_status(result.task_id)
    emu.expire_links(result.task_id)
    caplog.set_level(logging.INFO, logger="sixtyfour_sync.api")
    download = client.download_result(status, tmp_path / "out.csv")
    assert "Download link expired" in caplog.text and "polling for fresh links (1 of 3)" in caplog.text
    assert download.source == "download" and len(read_csv(tmp_path / "out.csv")) == 3


def test_truncated_download_is_retried(live: Live, tmp_path: Path) -> None:
    emu, client, clock = live(preview_max_rows=0)
    result = client.submit("people", write_rows(tmp_path / "a.jsonl", 20), CONFIG, "live-trunc")
    status = client.job_status(result.task_id)
    emu.inject("GET", "/downloads/", truncate=True)
    client.download_result(status, tmp_path / "out.csv")
    assert len(clock.sleeps) == 1  # one truncated attempt, then a whole one
    assert len(read_csv(tmp_path / "out.csv")) == 20
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.jsonl", "out.csv"]


def test_live_status(live: Live, tmp_path: Path) -> None:
    _, client, _ = live(job_seconds=3600.0)
    result = client.submit("people", write_rows(tmp_path / "a.jsonl", 4), CONFIG, "live-progress")
    progress = client.live_status(result.task_id)
    assert progress.overall_status == "running"
    assert progress.blocks and all(b.total_count == 4 for b in progress.blocks)


def test_cancel(live: Live, tmp_path: Path) -> None:
    _, client, _ = live(job_seconds=3600.0)
    result = client.submit("people", write_rows(tmp_path / "a.jsonl", 2), CONFIG, "live-cancel")
    cancel = client.cancel(result.task_id)
    assert cancel.status == "canceled" and cancel.job_id == result.task_id
    status = client.job_status(result.task_id)
    assert status.is_terminal and status.is_failed


def test_balance_reflects_the_charge(live: Live, tmp_path: Path) -> None:
    _, client, _ = live(balance_cents=10_000)
    start = client.check_balance().credits
    assert start is not None
    result = client.submit("people", write_rows(tmp_path / "a.jsonl", 10), CONFIG, "live-balance")
    status = client.job_status(result.task_id)
    assert status.is_completed and status.charge_amount_cents is not None
    after = client.check_balance().credits
    assert after is not None and after < start
    # The emulator's rate: 1 credit = 100 cents.
    assert round((start - after) * 100) == status.charge_amount_cents


def test_webhook_delivered_and_verified(live: Live, tmp_path: Path) -> None:
    receiver = LocalServer()
    try:
        receiver.add("/hook", 200, {"ok": True})
        _, client, _ = live(webhook_secret=WEBHOOK_SECRET, allow_insecure_webhooks=True)
        config = {**CONFIG, "webhook_url": f"{receiver.url}/hook"}
        # The client refuses http:// webhooks; the emulator allows them on loopback for tests.
        result = client.submit("people", write_rows(tmp_path / "a.jsonl", 2), config, "live-webhook", validate=False)
        assert client.job_status(result.task_id).is_completed
        deadline = time.monotonic() + 10
        while not receiver.received and time.monotonic() < deadline:
            time.sleep(0.05)
        assert receiver.received, "no webhook delivery arrived"
        path, headers, body = receiver.received[0]
        assert path == "/hook"
        lowered = {k.lower(): v for k, v in headers.items()}
        verify_webhook_signature(WEBHOOK_SECRET, lowered["sixtyfour-signature"], body)
        payload = json.loads(body)
        assert result.task_id in (payload.get("task_id"), payload.get("run_id"), payload.get("id"))
        assert lowered["sixtyfour-event-id"] and lowered["sixtyfour-delivery-attempt"] == "1"
    finally:
        receiver.close()
