"""Over a real socket with httpx/httpcore logging at DEBUG: no key or signed URL in any log line,
exception text or repr. Also real-socket truncation and connection handling."""

from __future__ import annotations

import logging
import random
from collections.abc import Iterator
from pathlib import Path

import pytest
from api_fakes import API_KEY, FakeClock, LocalServer

from sixtyfour_sync.api import ApiError, DownloadError, RetryPolicy, SixtyfourClient, SubmissionLimiter

SIG = "SIGNATUREabc123"


@pytest.fixture
def server() -> Iterator[LocalServer]:
    srv = LocalServer()
    yield srv
    srv.close()


def make(server: LocalServer, clock: FakeClock) -> SixtyfourClient:
    return SixtyfourClient(
        API_KEY,
        base_url=server.url,
        retry=RetryPolicy(max_attempts=3, base=0.0, cap=0.0),
        limiter=SubmissionLimiter(clock=clock, sleep=clock.sleep),
        sleep=clock.sleep,
        clock=clock,
        rng=random.Random(1),
        timeout=5.0,
    )


def _status(server: LocalServer, n: int) -> dict[str, object]:
    return {
        "id": "t1",
        "status": "completed",
        "results": [
            {
                "filename": "final.csv",
                "block_number": 2,
                "download_url": f"{server.url}/dl/{n}/final.csv?token={SIG}&expires=900",
                "content_type": "text/csv",
                "file_size": 12,
            }
        ],
    }


def test_no_secret_in_logs_errors_or_reprs(
    server: LocalServer, caplog: pytest.LogCaptureFixture, tmp_path: Path
) -> None:
    clock = FakeClock()
    caplog.set_level(logging.DEBUG)
    for name in ("httpx", "httpcore", "sixtyfour_sync"):
        caplog.set_level(logging.DEBUG, logger=name)
    for n in (1, 2, 3):
        server.add("/job-status/t1", 200, _status(server, n))
    server.add("/dl/1/final.csv", 403, {"detail": f"expired link {API_KEY}"})
    server.add("/dl/2/final.csv", 302, b"", {"Location": f"{server.url}/elsewhere?token={SIG}"})
    server.add("/dl/3/final.csv", 500, {"detail": "Internal server error"})
    server.add("/dl/3/final.csv", 200, b"id,email\n1,x\n", {"Content-Type": "text/csv"})
    server.add("/check-balance", 401, {"detail": "Invalid API key"})
    errors: list[BaseException] = []
    with make(server, clock) as client:
        status = client.job_status("t1")
        result = client.download_result(status, tmp_path / "r.csv")
        assert result.path.read_bytes() == b"id,email\n1,x\n"
        try:
            client.check_balance()
        except ApiError as exc:
            errors.append(exc)
        texts = [repr(client), repr(status), str(status), repr(result)]
    # The key and the signed link were really sent.
    assert any(SIG in path for _, path, _ in server.seen)
    assert all(h.get("x-api-key") == API_KEY for _, _, h in server.seen)
    assert any(r.name.startswith("httpx") for r in caplog.records)
    assert any(r.name.startswith("httpcore") for r in caplog.records)
    assert not any(path.startswith("/elsewhere") for _, path, _ in server.seen)  # redirect not followed
    assert "/elsewhere?***" in caplog.text  # the Location header was logged, redacted
    texts += [caplog.text] + [r.getMessage() for r in caplog.records]
    texts += [str(e) for e in errors] + [repr(e) for e in errors]
    for text in texts:
        assert API_KEY not in text
        assert SIG not in text


def test_real_truncated_download_is_retried(server: LocalServer, tmp_path: Path) -> None:
    clock = FakeClock()
    server.add("/job-status/t1", 200, _status(server, 1))
    server.add("/dl/1/final.csv", 200, b"id,email\n1,x\n", {"Content-Type": "text/csv"})
    server.truncate_next["/dl/1/final.csv"] = 1
    with make(server, clock) as client:
        result = client.download_result("t1", tmp_path / "r.csv")
    assert result.path.read_bytes() == b"id,email\n1,x\n"
    assert len([s for s in server.seen if s[1].startswith("/dl/1/")]) == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.csv"]


def test_real_truncation_every_time_fails_cleanly(server: LocalServer, tmp_path: Path) -> None:
    clock = FakeClock()
    server.add("/job-status/t1", 200, _status(server, 1))
    server.add("/dl/1/final.csv", 200, b"id,email\n1,x\n", {"Content-Type": "text/csv"})
    server.truncate_next["/dl/1/final.csv"] = 10
    with make(server, clock) as client, pytest.raises(DownloadError) as exc:
        client.download_result("t1", tmp_path / "r.csv")
    assert SIG not in str(exc.value) and API_KEY not in str(exc.value)
    assert list(tmp_path.iterdir()) == []


def test_connection_refused_is_a_connection_error() -> None:
    clock = FakeClock()
    client = SixtyfourClient(
        API_KEY,
        base_url="http://127.0.0.1:9",
        retry=RetryPolicy(max_attempts=2, base=0.0, cap=0.0),
        sleep=clock.sleep,
        clock=clock,
        timeout=2.0,
    )
    with client, pytest.raises(ApiError) as exc:
        client.check_balance()
    assert exc.value.retryable and exc.value.status_code is None
    assert API_KEY not in str(exc.value)


def _parts_status(server: LocalServer, n: int, names: list[str]) -> dict[str, object]:
    return {
        "id": "t2",
        "status": "completed",
        "results": [
            {
                "filename": name,
                "block_number": 3,
                # The token is in the path as well as in the query: both are credentials.
                "download_url": f"{server.url}/dl/{n}/{SIG}{i}/{name}?token={SIG}&expires=900",
                "content_type": "text/csv",
            }
            for i, name in reversed(list(enumerate(names)))
        ],
    }


def test_no_secret_in_logs_or_errors_with_several_parts(
    server: LocalServer, caplog: pytest.LogCaptureFixture, tmp_path: Path
) -> None:
    clock = FakeClock()
    caplog.set_level(logging.DEBUG)
    for name in ("httpx", "httpcore", "sixtyfour_sync"):
        caplog.set_level(logging.DEBUG, logger=name)
    names = ["out.csv", "out.part1.csv", "out.part2.csv"]
    for n in (1, 2):
        server.add("/job-status/t2", 200, _parts_status(server, n, names))
    server.add(f"/dl/1/{SIG}0/out.csv", 200, b"id\n1\n", {"Content-Type": "text/csv"})
    echoed = f"{server.url}/dl/1/{SIG}1/out.part1.csv?token={SIG}&expires=900"
    server.add(f"/dl/1/{SIG}1/out.part1.csv", 403, {"detail": f"expired link {echoed} for key {API_KEY}"})
    server.add(f"/dl/2/{SIG}1/out.part1.csv", 302, b"", {"Location": f"{server.url}/elsewhere?token={SIG}"})
    server.add(f"/dl/2/{SIG}2/out.part2.csv", 200, b"id\n3\n", {"Content-Type": "text/csv"})
    errors: list[BaseException] = []
    with make(server, clock) as client:
        status = client.job_status("t2")
        try:
            client.download_result(status, tmp_path / "r.csv", max_refreshes=1)
        except DownloadError as exc:
            errors.append(exc)
        # A repr shows a link's path (SignedUrl); logged, a path that carries a token is masked.
        logging.getLogger("sixtyfour_sync.api").info("status: %r", status)
    (error,) = errors
    assert "file 2 of 3 (out.part1.csv)" in str(error) and "after 1 link refreshes" in str(error)
    assert list(tmp_path.iterdir()) == []  # part 0 was fetched, and removed with the failure
    assert any(SIG in path for _, path, _ in server.seen)
    assert all(h.get("x-api-key") == API_KEY for _, _, h in server.seen)
    assert not any(path.startswith("/elsewhere") for _, path, _ in server.seen)
    assert any(r.name.startswith("httpx") for r in caplog.records)
    assert "status: JobStatus(" in caplog.text
    texts = [caplog.text] + [r.getMessage() for r in caplog.records] + [str(error), repr(error)]
    for text in texts:
        assert API_KEY not in text
        assert SIG not in text
