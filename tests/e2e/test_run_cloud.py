"""The pipeline on BigQuery (bqemulator) and Databricks (minilake), through the CLI, against the Sixtyfour emulator.

Each warehouse is a local server in a child process (tests/cloud_emulators.py); the CLI runs in another
child process, so everything crosses real sockets: the CLI -> the warehouse emulator, the CLI -> the
Sixtyfour emulator.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from sixtyfour_sync.config.profiles import parse_target_config
from sixtyfour_sync.warehouse import Adapter, Column, LogicalType, TableRef, connect
from tests.cloud_emulators import (
    STAGING_VOLUME,
    BigQueryEmulator,
    DatabricksEmulator,
)
from tests.e2e.conftest import E2EProject, lead_rows, run_cli

pytestmark = pytest.mark.slow

LEADS = [
    Column("lead_id", LogicalType.BIGINT),
    Column("first_name", LogicalType.TEXT),
    Column("last_name", LogicalType.TEXT),
    Column("company", LogicalType.TEXT),
    Column("domain", LogicalType.TEXT),
    Column("country", LogicalType.TEXT),
]
NAMES = [c.name for c in LEADS]


@dataclass
class CloudTarget:
    """A warehouse schema holding the leads, and an adapter to look at it."""

    adapter: Adapter
    profile: str


def _fill(adapter: Adapter, n: int) -> None:
    table = TableRef("leads")
    with adapter.session() as s:
        cols = ", ".join(adapter.column_def_sql(c) for c in LEADS)
        s.execute(f"CREATE TABLE {adapter.table_sql(table)} ({cols})")
    with adapter.session() as s:
        s.insert(table, [dict(zip(NAMES, row, strict=True)) for row in lead_rows(n)])


def _profile(config: dict[str, str]) -> str:
    body = "".join(f"      {k}: {v}\n" for k, v in config.items())
    return f"sixtyfour:\n  target: cloud\n  outputs:\n    cloud:\n{body}"


@pytest.fixture(params=["bigquery", "databricks"])
def cloud(request: pytest.FixtureRequest) -> Iterator[CloudTarget]:
    schema = f"e2e_{uuid.uuid4().hex[:10]}"
    if request.param == "bigquery":
        bq: BigQueryEmulator = request.getfixturevalue("bigquery_emulator")
        config = {"type": "bigquery", "method": "anonymous", "api_endpoint": bq.url, "project": bq.project}
    else:
        dbx: DatabricksEmulator = request.getfixturevalue("databricks_emulator")
        config = {"type": "databricks", "host": dbx.url, "http_path": dbx.http_path, "token": dbx.token}
        config["catalog"] = "main"
        config["staging_volume"] = STAGING_VOLUME
    config["schema"] = schema
    adapter = connect(parse_target_config(config))
    try:
        adapter.ensure_schema(schema)
        yield CloudTarget(adapter, _profile(config))
    finally:
        adapter.close()


def _enriched(adapter: Adapter) -> list[dict[str, object]]:
    with adapter.session() as s:
        return s.select(
            TableRef("leads_enriched"),
            columns=["lead_id", "email", "_sixtyfour_status", "_sixtyfour_input_hash"],
            order_by=["lead_id"],
        )


@pytest.mark.parametrize("one_pass", [False, True], ids=["full selection", "one pass"])
def test_cli_run_then_nothing_to_do_then_changed_rows(project: E2EProject, cloud: CloudTarget, one_pass: bool) -> None:
    """A first run, a refresh with nothing to do, a refresh of four changed rows; with ``one_pass`` the refreshes
    read the source in one pass (``SIXTYFOUR_SYNC_ONE_PASS_ABOVE=0``: every size takes it)."""
    if one_pass:
        project.env["SIXTYFOUR_SYNC_ONE_PASS_ABOVE"] = "0"
    _fill(cloud.adapter, 60)
    (project.dir / "profiles.yml").write_text(cloud.profile)
    project.write_model(chunk_rows=25)

    first = run_cli(project, "run", "--yes")
    assert first.returncode in (0, 3), first.stdout + first.stderr
    rows = _enriched(cloud.adapter)
    assert [r["lead_id"] for r in rows] == list(range(1, 61))
    assert {r["_sixtyfour_status"] for r in rows} <= {"enriched", "failed"}
    assert all("@" in str(r["email"]) for r in rows if r["_sixtyfour_status"] == "enriched")
    assert all(r["_sixtyfour_input_hash"] for r in rows)
    submitted = len(project.emulator.submissions)
    assert submitted == 3  # 60 rows in files of 25

    again = run_cli(project, "run", "--yes")
    assert again.returncode == 0, again.stdout + again.stderr
    assert len(project.emulator.submissions) == submitted  # nothing paid twice

    with cloud.adapter.session() as s:
        changed = s.execute_count(
            f"UPDATE {cloud.adapter.table_sql(TableRef('leads'))} SET {cloud.adapter.quote('company')} = ? "
            f"WHERE {cloud.adapter.quote('lead_id')} <= ?",
            ["Hooli", 4],
        )
    assert changed == 4
    third = run_cli(project, "run", "--yes")
    assert third.returncode in (0, 3), third.stdout + third.stderr
    assert len(project.emulator.submissions) == submitted + 1
    status = run_cli(project, "status")
    assert status.returncode == 0, status.stderr
    # the four rows back to their first inputs: their answers are in the answer store, taken without a call
    with cloud.adapter.session() as s:
        for row in lead_rows(4):
            s.execute(
                f"UPDATE {cloud.adapter.table_sql(TableRef('leads'))} SET {cloud.adapter.quote('company')} = ? "
                f"WHERE {cloud.adapter.quote('lead_id')} = ?",
                [row[3], row[0]],
            )
    back = run_cli(project, "run", "--yes")
    assert back.returncode == 0, back.stdout + back.stderr
    assert len(project.emulator.submissions) == submitted + 1 and "4 row(s) took a stored answer" in back.stdout
