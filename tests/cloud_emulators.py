"""Local stand-ins for BigQuery and Databricks, each served by a child process on 127.0.0.1.

- ``bigquery_emulator``: bqemulator (BigQuery's REST API on DuckDB + SQLGlot) for google-cloud-bigquery.
  Its start-up loads DuckDB's ``spatial`` extension, which would be downloaded: the launcher turns that
  load off (GEOGRAPHY is unavailable) and the optional Avro/ORC extensions too. Its query cache is off.
- ``databricks_emulator``: minilake (the SQL Statement Execution API on DuckDB) for databricks-sdk, with
  one SQL warehouse created for the session.

Both are session-scoped (one server per test run) on an ephemeral port, in a temporary data directory.
A missing package skips the tests that need it with the reason, and fails them when CI=true.
"""

from __future__ import annotations

import importlib.util
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.services import IN_CI, port_open

BQ_PROJECT = "sync-test-project"
DATABRICKS_TOKEN = "dapi-local-emulator-token"

#: minilake hands SQL to DuckDB untranslated: the Databricks functions the adapter uses that DuckDB lacks
#: are defined as DuckDB macros with Databricks' meaning. ``read_files`` reads a volume path where
#: minilake's Files API stored it ({root}: its data directory).
DUCKDB_SHIMS = (
    "CREATE OR REPLACE TEMP MACRO unix_micros(ts) AS epoch_us(ts)",
    "CREATE OR REPLACE TEMP MACRO read_files(path, format := 'parquet') AS TABLE "
    "SELECT * FROM read_parquet('{root}' || path)",
)
#: The volume the Databricks tests stage files in (minilake keeps no catalog of volumes).
STAGING_VOLUME = "/Volumes/main/default/sixtyfour_staging"

_BQ_LAUNCHER = """
import sys
from bqemulator.storage import engine
engine.DuckDBEngine._load_spatial = lambda self: None  # no download at start-up; GEOGRAPHY unavailable
from bqemulator.cli import main
sys.argv = ["bqemulator", "start", "--rest-host", "127.0.0.1", "--rest-port", sys.argv[1],
            "--grpc-host", "127.0.0.1", "--grpc-port", sys.argv[2], "--project", sys.argv[3],
            "--log-level", "warning", "--log-format", "console"]
main()
"""


def require_packages(*names: str) -> None:
    """Skip (locally) or fail (CI=true) when one of the packages cannot be imported."""
    missing = [n for n in names if importlib.util.find_spec(n) is None]
    if not missing:
        return
    reason = f"package(s) {', '.join(missing)} not installed (pip install -e '.[test]')"
    if IN_CI:
        pytest.fail(f"{reason}; CI=true requires them", pytrace=False)
    pytest.skip(reason)


def free_port() -> int:
    """A port nothing listens on right now (the child binds it a moment later)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_for(proc: subprocess.Popen[bytes], port: int, log: Path, what: str, timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode}:\n{log.read_text(errors='replace')[-3000:]}")
        if port_open("127.0.0.1", port, timeout=0.2):
            return
        time.sleep(0.2)
    proc.kill()
    raise RuntimeError(f"{what} did not listen on 127.0.0.1:{port} within {timeout:.0f}s")


def _stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=10)


@dataclass(frozen=True)
class BigQueryEmulator:
    """Where the BigQuery emulator listens."""

    url: str
    project: str = BQ_PROJECT


@dataclass(frozen=True)
class DatabricksEmulator:
    """Where the Databricks emulator listens, and its SQL warehouse."""

    url: str
    warehouse_id: str
    token: str = DATABRICKS_TOKEN

    @property
    def http_path(self) -> str:
        """The warehouse's HTTP path, as a dbt-databricks profile names it."""
        return f"/sql/1.0/warehouses/{self.warehouse_id}"


def databricks_statement(emu: DatabricksEmulator, sql: str) -> None:
    """Run one statement on the emulator directly (set-up, not through the adapter)."""
    response = httpx.post(
        f"{emu.url}/api/2.0/sql/statements",
        json={"statement": sql, "warehouse_id": emu.warehouse_id, "wait_timeout": "50s"},
        headers={"Authorization": f"Bearer {emu.token}"},
        timeout=600,
    )
    response.raise_for_status()
    state = response.json()["status"]["state"]
    if state != "SUCCEEDED":
        raise RuntimeError(f"minilake: {sql!r} ended {state}: {response.text[:500]}")


@contextmanager
def serve_bigquery(work: Path) -> Iterator[BigQueryEmulator]:
    """Run bqemulator in a child process (data and uploads under ``work``) until the block ends."""
    port, grpc_port = free_port(), free_port()
    env = {
        **os.environ,
        "BQEMU_ENABLE_FORMAT_EXTENSIONS": "false",
        "BQEMU_QUERY_CACHE_TTL_SECONDS": "0",
        "BQEMU_UPLOAD_STAGING_DIR": str(work / "uploads"),
    }
    env.pop("BIGQUERY_EMULATOR_HOST", None)
    log = work / "bqemulator.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-c", _BQ_LAUNCHER, str(port), str(grpc_port), BQ_PROJECT],
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            cwd=work,
            env=env,
        )
    try:
        _wait_for(proc, port, log, "bqemulator")
        yield BigQueryEmulator(f"http://127.0.0.1:{port}")
    finally:
        _stop(proc)


@contextmanager
def serve_databricks(work: Path) -> Iterator[DatabricksEmulator]:
    """Run minilake in a child process (data under ``work``), with one SQL warehouse, until the block ends."""
    port = free_port()
    env = {**os.environ, "MINILAKE_DATA_DIR": str(work / "data"), "MINILAKE_NOTEBOOK": "false"}
    log = work / "minilake.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "minilake", "--host", "127.0.0.1", "--port", str(port)],
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            cwd=work,
            env=env,
        )
    try:
        _wait_for(proc, port, log, "minilake")
        url = f"http://127.0.0.1:{port}"
        response = httpx.post(
            f"{url}/api/2.0/sql/warehouses",
            json={"name": "sync-tests", "cluster_size": "2X-Small"},
            headers={"Authorization": f"Bearer {DATABRICKS_TOKEN}"},
            timeout=30,
        )
        response.raise_for_status()
        emu = DatabricksEmulator(url, str(response.json()["id"]))
        for sql in DUCKDB_SHIMS:
            databricks_statement(emu, sql.format(root=work / "data" / "dbfs"))
        yield emu
    finally:
        _stop(proc)


@pytest.fixture(scope="session")
def bigquery_emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BigQueryEmulator]:
    """bqemulator in a child process on an ephemeral port."""
    require_packages("bqemulator", "google.cloud.bigquery")
    with serve_bigquery(tmp_path_factory.mktemp("bqemulator")) as emu:
        yield emu


@pytest.fixture(scope="session")
def databricks_emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DatabricksEmulator]:
    """minilake in a child process on an ephemeral port, with one SQL warehouse."""
    require_packages("minilake", "databricks.sdk")
    with serve_databricks(tmp_path_factory.mktemp("minilake")) as emu:
        yield emu
