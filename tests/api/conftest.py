"""Fixtures for the API client tests."""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from api_fakes import API_KEY, BASE_URL, ClientFactory, FakeApi, FakeClock

from sixtyfour_sync.api import RetryPolicy, SixtyfourClient, SubmissionLimiter


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def api() -> FakeApi:
    return FakeApi()


@pytest.fixture
def limiter(clock: FakeClock) -> SubmissionLimiter:
    return SubmissionLimiter(clock=clock, sleep=clock.sleep)


@pytest.fixture
def make_client(api: FakeApi, clock: FakeClock, limiter: SubmissionLimiter) -> Iterator[ClientFactory]:
    made: list[SixtyfourClient] = []

    def factory(**overrides: Any) -> SixtyfourClient:
        kwargs: dict[str, Any] = {
            "base_url": BASE_URL,
            "transport": httpx.MockTransport(api),
            "retry": RetryPolicy(max_attempts=4, base=1.0, cap=8.0, retry_after_cap=120.0),
            "limiter": limiter,
            "sleep": clock.sleep,
            "clock": clock,
            "wall_clock": clock.wall,
            "rng": random.Random(7),
        }
        kwargs.update(overrides)
        client = SixtyfourClient(API_KEY, **kwargs)
        made.append(client)
        return client

    yield factory
    for client in made:
        client.close()


@pytest.fixture
def rows_file(tmp_path: Path) -> Path:
    path = tmp_path / "rows.jsonl"
    rows = [{"lead_id": i, "first_name": f"A{i}", "domain": "example.com"} for i in range(3)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path
