"""Targets sharing a ledger work side by side: a job belongs to the target its answers go to.

A profile with ``dev`` (schema adv_dev) and ``prod`` (schema adv_prod), both with ``ledger_schema: adv_ops``:
a job ``run --no-wait --target dev`` left is never merged into prod by ``run --target prod`` (it is listed and
left alone), prod's own file of the same rows is a replay of dev's ($0), ``cancel --target prod`` leaves dev's
jobs alone, and ``run --target dev`` finishes dev's job into dev. PostgreSQL, and DuckDB with two schemas.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import duckdb
import pytest

from tests.e2e.conftest import E2EProject, lead_rows, run_cli
from tests.services import require_service

PG_DSN = "host=127.0.0.1 port=5432 user=postgres dbname=test"


def _profile_pg(base: str) -> str:
    common = "      type: postgres\n      host: 127.0.0.1\n      port: 5432\n      user: postgres\n      dbname: test\n"
    return (
        "sixtyfour:\n  target: dev\n  outputs:\n"
        f"    dev:\n{common}      schema: {base}_dev\n      ledger_schema: {base}_ops\n"
        f"    prod:\n{common}      schema: {base}_prod\n      ledger_schema: {base}_ops\n"
    )


def _profile_duckdb(base: str) -> str:
    common = "      type: duckdb\n      path: wh.duckdb\n"
    return (
        "sixtyfour:\n  target: dev\n  outputs:\n"
        f"    dev:\n{common}      schema: {base}_dev\n      ledger_schema: {base}_ops\n"
        f"    prod:\n{common}      schema: {base}_prod\n      ledger_schema: {base}_ops\n"
    )


@pytest.fixture(params=["postgres", "duckdb"])
def shared(request: pytest.FixtureRequest, project: E2EProject) -> Iterator[tuple[str, str]]:
    """(kind, base): the leads table in both schemas, and a profile whose two targets share a ledger schema."""
    base = f"adv_{uuid.uuid4().hex[:8]}"
    rows = lead_rows(10)
    if request.param == "postgres":
        require_service("postgres", "127.0.0.1", 5432)
        import psycopg

        with psycopg.connect(PG_DSN, autocommit=True) as con:
            for schema in ("dev", "prod"):
                con.execute(f'CREATE SCHEMA "{base}_{schema}"')
                con.execute(
                    f'CREATE TABLE "{base}_{schema}".leads (lead_id BIGINT, first_name TEXT, last_name TEXT, '
                    "company TEXT, domain TEXT, country TEXT)"
                )
                with con.cursor() as cur:
                    cur.executemany(f'INSERT INTO "{base}_{schema}".leads VALUES (%s, %s, %s, %s, %s, %s)', rows)
        (project.dir / "profiles.yml").write_text(_profile_pg(base))
        try:
            yield "postgres", base
        finally:
            with psycopg.connect(PG_DSN, autocommit=True) as con:
                for schema in ("dev", "prod", "ops"):
                    con.execute(f'DROP SCHEMA IF EXISTS "{base}_{schema}" CASCADE')
        return
    con = duckdb.connect(str(project.dir / "wh.duckdb"))
    for schema in ("dev", "prod"):
        con.execute(f"CREATE SCHEMA {base}_{schema}")
        con.execute(
            f"CREATE TABLE {base}_{schema}.leads (lead_id BIGINT, first_name VARCHAR, last_name VARCHAR, "
            "company VARCHAR, domain VARCHAR, country VARCHAR)"
        )
        con.executemany(f"INSERT INTO {base}_{schema}.leads VALUES (?, ?, ?, ?, ?, ?)", rows)
    con.close()
    (project.dir / "profiles.yml").write_text(_profile_duckdb(base))
    yield "duckdb", base


def _count(kind: str, project: E2EProject, sql: str) -> int:
    if kind == "postgres":
        import psycopg

        with psycopg.connect(PG_DSN) as con:
            row = con.execute(sql).fetchone()
    else:
        con = duckdb.connect(str(project.dir / "wh.duckdb"), read_only=True)
        try:
            row = con.execute(sql).fetchone()
        finally:
            con.close()
    return int(row[0]) if row else 0


def _exists(kind: str, project: E2EProject, schema: str, table: str) -> bool:
    return bool(
        _count(
            kind,
            project,
            "SELECT count(*) FROM information_schema.tables "
            f"WHERE table_schema = '{schema}' AND table_name = '{table}'",
        )
    )


def test_dev_and_prod_sharing_a_ledger_never_swap_paid_results(project: E2EProject, shared: tuple[str, str]) -> None:
    kind, base = shared
    dev = run_cli(project, "run", "--yes", "--no-wait", "--target", "dev")
    assert dev.returncode == 0, dev.stdout + dev.stderr
    assert _count(kind, project, f'SELECT count(*) FROM "{base}_ops"."_sixtyfour_sync_jobs"') == 1

    prod = run_cli(project, "run", "--yes", "--target", "prod")
    out = prod.stdout + prod.stderr
    assert prod.returncode == 0, out
    assert "picked up" not in out  # dev's job is not prod's
    assert "answer another target" in " ".join(out.split())
    assert _count(kind, project, f'SELECT count(*) FROM "{base}_prod"."leads_enriched"') == 10
    assert not _exists(kind, project, f"{base}_dev", "leads_enriched")  # dev's answers never went to prod only
    paid = [s for s in project.emulator.submissions if s.status_code == 200 and not s.replay]
    assert len(paid) == 1  # prod's file of the same rows is the same question: a replay of dev's job ($0)
    states = _count(
        kind, project, f"""SELECT count(*) FROM "{base}_ops"."_sixtyfour_sync_jobs" WHERE state = 'submitted'"""
    )
    assert states == 1  # dev's job, still waiting for dev

    cancel = run_cli(project, "cancel", "--target", "prod")
    assert cancel.returncode == 0, cancel.stdout + cancel.stderr
    assert "cancelled" not in cancel.stdout  # nothing of prod's to cancel; dev's job is not touched

    status = run_cli(project, "status", "--target", "prod")
    assert "dev" in status.stdout and "prod" in status.stdout  # the jobs say where their answers go

    back = run_cli(project, "run", "--yes", "--target", "dev")
    assert back.returncode == 0, back.stdout + back.stderr
    assert _count(kind, project, f'SELECT count(*) FROM "{base}_dev"."leads_enriched"') == 10
    done = _count(kind, project, f"""SELECT count(*) FROM "{base}_ops"."_sixtyfour_sync_jobs" WHERE state = 'merged'""")
    assert done == 2
