"""Shared helpers of the emulator tests."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import httpx

from sixtyfour_sync.emulator import Emulator, EmulatorServer

KEY = "test-key-0001"
OTHER_KEY = "test-key-0002"
HIGH_KEY = "test-key-high"

LEADS_CSV = (
    "lead_id,first_name,last_name,company,domain\n"
    "1,Ada,Lovelace,Analytical Engines,analytical.example\n"
    "2,Grace,Hopper,Navy,https://www.navy.example/about\n"
    '3,"Jean ""JL"" Luc",Picard,"Starfleet, Inc.",starfleet.example\n'
)


class FakeClock:
    """A clock tests move by hand."""

    def __init__(self, start: float = 1_800_000_000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@dataclass
class Live:
    """An emulator being served, with a client that sends the test key."""

    emu: Emulator
    server: EmulatorServer
    client: httpx.Client

    @property
    def url(self) -> str:
        return self.server.url

    def submit(
        self,
        config: dict[str, Any] | str | None = None,
        *,
        endpoint: str = "people",
        filename: str = "leads.csv",
        content: bytes | str = LEADS_CSV,
        headers: dict[str, str] | None = None,
        params: dict[str, str] | None = None,
        client: httpx.Client | None = None,
    ) -> httpx.Response:
        """POST a file and config to a bulk endpoint."""
        if config is None:
            config = {"struct": {"email": "The email", "title": "Job title"}}
        body = content.encode() if isinstance(content, str) else content
        data = {"config": config if isinstance(config, str) else json.dumps(config)}
        return (client or self.client).post(
            f"/bulk-intelligence/{endpoint}",
            files={"file": (filename, body, "application/octet-stream")},
            data=data,
            headers=headers or {},
            params=params or {},
        )

    def status(self, task_id: str, **params: str) -> dict[str, Any]:
        response = self.client.get(f"/job-status/{task_id}", params=params)
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body

    def final(self, task_id: str) -> dict[str, Any]:
        """The completed job's highest-block result entry."""
        body = self.status(task_id)
        assert body["status"] == "completed", body
        entry: dict[str, Any] = max(body["results"], key=lambda e: e["block_number"])
        return entry
