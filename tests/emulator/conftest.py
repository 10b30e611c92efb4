"""Fixtures for the emulator tests: an emulator served on an ephemeral loopback port, plain httpx."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from sixtyfour_sync.emulator import Emulator, EmulatorSettings

from .helpers import HIGH_KEY, KEY, OTHER_KEY, Live


@pytest.fixture
def serve_emulator() -> Iterator[Callable[..., Live]]:
    """Factory: ``live = serve_emulator(job_seconds=0, ...)``; everything stops at teardown."""
    stack: list[tuple[Any, httpx.Client]] = []

    def start(**overrides: Any) -> Live:
        settings: dict[str, Any] = {
            "api_keys": frozenset({KEY, OTHER_KEY, HIGH_KEY}),
            "high_tier_keys": frozenset({HIGH_KEY}),
            "job_seconds": 0.0,
        }
        settings.update(overrides)
        emu = Emulator(EmulatorSettings(**settings))
        ctx = emu.serve(host="127.0.0.1", port=0)
        server = ctx.__enter__()
        client = httpx.Client(base_url=server.url, headers={"x-api-key": KEY}, timeout=10)
        stack.append((ctx, client))
        return Live(emu, server, client)

    yield start
    for ctx, client in reversed(stack):
        client.close()
        ctx.__exit__(None, None, None)


@pytest.fixture
def live(serve_emulator: Callable[..., Live]) -> Live:
    """An emulator with default test settings (jobs complete at the first poll)."""
    return serve_emulator()
