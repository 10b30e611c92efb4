"""End-to-end fixtures: a project directory, a warehouse with leads, and the emulator on a real socket."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from sixtyfour_sync.emulator import Emulator, EmulatorSettings

API_KEY = "sk-e2e-test-key-9f8e7d6c5b4a"


def unique_key() -> str:
    """A fresh API key: the client paces submissions per key per process, so tests must not share one."""
    import uuid

    return f"sk-e2e-{uuid.uuid4().hex}"


MODEL = """\
syncs:
  - name: enrich_leads
    tags: [daily]
    endpoint: people
    source:
      table: leads
      key: lead_id
      columns: [first_name, last_name, company, domain]
    struct:
      email: The individual's email address
      title: The individual's job title
      employee_count: {{description: Employees at their company, type: int}}
    tier: low
    field_confidence: true
    target:
      table: leads_enriched
    refresh:
      when: {when}
{extra}    chunk_rows: {chunk_rows}
"""

FIRST = ["Ada", "Grace", "Alan", "Edsger", "Barbara", "Donald", "Frances", "John", "Margaret", "Ken"]
LAST = ["Lovelace", "Hopper", "Turing", "Dijkstra", "Liskov", "Knuth", "Allen", "Backus", "Hamilton", "Thompson"]
COMPANIES = [("Acme", "acme.com"), ("Globex", "globex.io"), ("Initech", "initech.net"), ("Umbrella", "umbrella.co")]


def lead_rows(n: int, start: int = 1) -> list[tuple[Any, ...]]:
    """Deterministic leads, each with inputs of its own (rows sharing their inputs ask one question: the tests
    of that make them on purpose). Names and companies repeat every 20 leads; the domain tells them apart."""
    rows = []
    for i in range(start, start + n):
        company, domain = COMPANIES[i % len(COMPANIES)]
        if i >= 20:
            name, tld = domain.split(".", 1)
            domain = f"{name}{i // 20}.{tld}"
        rows.append((i, FIRST[i % 10], LAST[(i * 7) % 10], company, domain, "US" if i % 3 else "DE"))
    return rows


@dataclass
class E2EProject:
    """A project directory wired to an emulator."""

    dir: Path
    emulator: Emulator
    url: str
    env: dict[str, str]
    api_key: str

    def write_model(self, *, when: str = "changed", chunk_rows: int = 100_000, extra: str = "") -> None:
        (self.dir / "models").mkdir(exist_ok=True)
        text = MODEL.format(when=when, chunk_rows=chunk_rows, extra=textwrap.indent(extra, "    ") if extra else "")
        (self.dir / "models" / "leads.yml").write_text(text)


def run_cli(
    project: E2EProject,
    *args: str,
    project_dir: Path | None = None,
    env: dict[str, str] | None = None,
    failpoint: str | None = None,
    cwd: Path | None = None,
) -> subprocess.CompletedProcess[str]:
    """`sixtyfour-sync --project-dir DIR ARGS` in a child process (in ``cwd``), with the project's API environment."""
    full = {**os.environ, **project.env, **(env or {})}
    full.pop("SIXTYFOUR_SYNC_FAILPOINT", None)
    if failpoint:
        full["SIXTYFOUR_SYNC_FAILPOINT"] = failpoint
    return subprocess.run(
        [sys.executable, "-m", "sixtyfour_sync", "--project-dir", str(project_dir or project.dir), *args],
        env=full,
        capture_output=True,
        text=True,
        timeout=300,
        stdin=subprocess.DEVNULL,
        cwd=cwd,
    )


@pytest.fixture
def api_key() -> str:
    return unique_key()


@pytest.fixture
def emulator_settings(api_key: str) -> EmulatorSettings:
    return EmulatorSettings(api_keys=frozenset({api_key}), job_seconds=0.2, failure_rate=0.1, seed=7)


@pytest.fixture
def emulator(emulator_settings: EmulatorSettings) -> Iterator[tuple[Emulator, str]]:
    emu = Emulator(emulator_settings)
    with emu.serve(host="127.0.0.1", port=0) as server:
        yield emu, server.url


@pytest.fixture
def project(
    tmp_path: Path, emulator: tuple[Emulator, str], api_key: str, monkeypatch: pytest.MonkeyPatch
) -> E2EProject:
    emu, url = emulator
    monkeypatch.setenv("SIXTYFOUR_SYNC_POLL_INTERVAL", "0.05")
    env = {"SIXTYFOUR_API_KEY": api_key, "SIXTYFOUR_API_URL": url, "SIXTYFOUR_SYNC_POLL_INTERVAL": "0.05"}
    p = E2EProject(tmp_path, emu, url, env, api_key)
    p.write_model()
    return p


@pytest.fixture(params=["duckdb", "postgres"])
def wh(request: pytest.FixtureRequest, project: E2EProject) -> Iterator[Any]:
    """The project's warehouse (tests/e2e/warehouses.py): DuckDB, then PostgreSQL."""
    from tests.e2e.warehouses import make_duckdb, make_postgres

    if request.param == "duckdb":
        yield make_duckdb(project)
    else:
        yield from make_postgres(project)


@pytest.fixture(params=["duckdb", "postgres", "mariadb"])
def wh3(request: pytest.FixtureRequest, project: E2EProject) -> Iterator[Any]:
    """The project's warehouse: DuckDB, PostgreSQL, then MariaDB (through the SQLAlchemy adapter)."""
    from tests.e2e.warehouses import make_duckdb, make_mariadb, make_postgres

    if request.param == "duckdb":
        yield make_duckdb(project)
    elif request.param == "postgres":
        yield from make_postgres(project)
    else:
        yield from make_mariadb(project)
