"""One interface over the warehouses the end-to-end tests run on: DuckDB (a file), PostgreSQL and MariaDB.

Test SQL is written once: ``{t:name}`` becomes the qualified table, ``?`` the driver's placeholder, and the
MariaDB connections of the tests (not the sync's own) use ANSI quotes and ``||`` as concatenation.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb

from tests.e2e.conftest import E2EProject, lead_rows
from tests.services import require_service

PG_DSN = "host=127.0.0.1 port=5432 user=postgres dbname=test"
MARIADB_URL = "mysql+pymysql://root@127.0.0.1:3306/"
#: The test connections' SQL mode on MariaDB: standard quoting and concatenation, so test SQL is portable.
_ANSI = "SET SESSION sql_mode = CONCAT(@@sql_mode, ',ANSI_QUOTES,PIPES_AS_CONCAT')"

#: The target columns the tests compare with a clean run (no timestamps or task ids, which differ by run).
TARGET_COLUMNS = (
    "lead_id, email, title, employee_count, email_confidence, title_confidence, _sixtyfour_status, "
    "_sixtyfour_input_hash, _sixtyfour_spec_hash"
)


def _connect_duckdb(path: Path | None, *, read_only: bool = False) -> duckdb.DuckDBPyConnection:
    """A connection to the test's DuckDB file, waiting (up to 20 s) while a child process holds it."""
    deadline = time.monotonic() + 20
    while True:
        try:
            return duckdb.connect(str(path), read_only=read_only)
        except duckdb.IOException as exc:
            if "lock" not in str(exc).lower() or time.monotonic() > deadline:
                raise
            time.sleep(0.1)


@dataclass
class Warehouse:
    """A source table of leads and a project wired to it."""

    kind: str
    project: E2EProject
    schema: str | None = None
    path: Path | None = None

    # -- SQL -----------------------------------------------------------------------------------------
    def table(self, name: str) -> str:
        """A qualified, quoted table name."""
        return f'"{self.schema}"."{name}"' if self.schema else f'"{name}"'

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """Rows of a query (``{t:name}`` is replaced by the qualified table name)."""
        sql = self._expand(sql)
        if self.kind == "duckdb":
            con = _connect_duckdb(self.path, read_only=True)
            try:
                return con.execute(sql, list(params)).fetchall()
            finally:
                con.close()
        if self.kind == "mariadb":
            with self._mariadb() as con:
                cur = con.cursor()
                cur.execute(sql.replace("?", "%s"), list(params))
                return [tuple(r) for r in cur.fetchall()]
        import psycopg

        with psycopg.connect(PG_DSN) as con:
            return [tuple(r) for r in con.execute(sql.replace("?", "%s"), list(params)).fetchall()]

    def execute(self, sql: str, params: Sequence[Any] = ()) -> None:
        """Run a statement and commit."""
        sql = self._expand(sql)
        if self.kind == "duckdb":
            con = _connect_duckdb(self.path)
            try:
                con.execute(sql, list(params))
            finally:
                con.close()
            return
        if self.kind == "mariadb":
            with self._mariadb() as con:
                con.cursor().execute(sql.replace("?", "%s"), list(params))
                con.commit()
            return
        import psycopg

        with psycopg.connect(PG_DSN, autocommit=True) as con:
            con.execute(sql.replace("?", "%s"), list(params))

    def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        """Run a statement once per row, in one transaction."""
        sql = self._expand(sql)
        if self.kind == "duckdb":
            con = _connect_duckdb(self.path)
            try:
                con.executemany(sql, [list(r) for r in rows])
            finally:
                con.close()
            return
        if self.kind == "mariadb":
            with self._mariadb() as con:
                con.cursor().executemany(sql.replace("?", "%s"), [list(r) for r in rows])
                con.commit()
            return
        import psycopg

        with psycopg.connect(PG_DSN) as con, con.cursor() as cur:
            cur.executemany(sql.replace("?", "%s"), [list(r) for r in rows])

    def _mariadb(self) -> Any:
        import contextlib

        import pymysql

        con = pymysql.connect(host="127.0.0.1", port=3306, user="root", password="", database=self.schema)
        con.cursor().execute(_ANSI)
        return contextlib.closing(con)

    def _expand(self, sql: str) -> str:
        import re

        return re.sub(r"\{t:([A-Za-z_0-9]+)\}", lambda m: self.table(m.group(1)), sql)

    def exists(self, name: str) -> bool:
        """Whether a table exists."""
        schema = self.schema or "main"
        rows = self.query(
            "SELECT count(*) FROM information_schema.tables WHERE table_schema = ? AND table_name = ?", [schema, name]
        )
        return bool(rows[0][0])

    def columns(self, name: str) -> list[str]:
        """The columns of a table."""
        schema = self.schema or "main"
        rows = self.query(
            "SELECT column_name FROM information_schema.columns WHERE table_schema = ? AND table_name = ? "
            "ORDER BY ordinal_position",
            [schema, name],
        )
        return [r[0] for r in rows]

    # -- the sync's tables -------------------------------------------------------------------------------
    def target(self, columns: str = TARGET_COLUMNS) -> list[tuple[Any, ...]]:
        """The target's rows, by key."""
        if not self.exists("leads_enriched"):
            return []
        return self.query(f"SELECT {columns} FROM {{t:leads_enriched}} ORDER BY lead_id")

    def jobs(self, columns: str = "state, task_id, replay, replay_of, charged_cents, error") -> list[tuple[Any, ...]]:
        """The ledger's jobs, oldest first."""
        if not self.exists("_sixtyfour_sync_jobs"):
            return []
        return self.query(f"SELECT {columns} FROM {{t:_sixtyfour_sync_jobs}} ORDER BY created_at, job_id")

    def runs(self, columns: str = "run_id, status, jobs, charged_cents, error") -> list[tuple[Any, ...]]:
        """The ledger's runs, oldest first."""
        if not self.exists("_sixtyfour_sync_runs"):
            return []
        return self.query(f"SELECT {columns} FROM {{t:_sixtyfour_sync_runs}} ORDER BY started_at")

    def charged_in_ledger(self) -> float:
        """What the ledger says was charged, over every job."""
        return float(sum(r[0] or 0 for r in self.jobs("charged_cents")))


def setup_leads(wh: Warehouse, rows: int, start: int = 1) -> None:
    """Create (or refill) the leads table with ``rows`` deterministic leads."""
    wh.execute("DROP TABLE IF EXISTS {t:leads}")
    wh.execute(
        "CREATE TABLE {t:leads} (lead_id BIGINT, first_name VARCHAR(100), last_name VARCHAR(100), "
        "company VARCHAR(100), domain VARCHAR(100), country VARCHAR(10))"
    )
    wh.executemany("INSERT INTO {t:leads} VALUES (?, ?, ?, ?, ?, ?)", lead_rows(rows, start))


def make_duckdb(project: E2EProject) -> Warehouse:
    """A DuckDB file in the project."""
    path = project.dir / "wh.duckdb"
    (project.dir / "profiles.yml").write_text(
        "sixtyfour:\n  target: dev\n  outputs:\n    dev:\n      type: duckdb\n      path: wh.duckdb\n"
    )
    duckdb.connect(str(path)).close()
    return Warehouse("duckdb", project, path=path)


def make_postgres(project: E2EProject) -> Iterator[Warehouse]:
    """A fresh schema on the local PostgreSQL, dropped afterwards."""
    require_service("postgres", "127.0.0.1", 5432)
    import psycopg

    schema = f"e2e_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(PG_DSN, autocommit=True) as con:
        con.execute(f'CREATE SCHEMA "{schema}"')
    (project.dir / "profiles.yml").write_text(
        "sixtyfour:\n  target: pg\n  outputs:\n    pg:\n      type: postgres\n      host: 127.0.0.1\n"
        f"      port: 5432\n      user: postgres\n      dbname: test\n      schema: {schema}\n"
    )
    try:
        yield Warehouse("postgres", project, schema=schema)
    finally:
        with psycopg.connect(PG_DSN, autocommit=True) as con:
            con.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


def make_mariadb(project: E2EProject) -> Iterator[Warehouse]:
    """A fresh database on the local MariaDB (the sync's schema), dropped afterwards."""
    require_service("mariadb", "127.0.0.1", 3306)
    import pymysql

    db = f"e2e_{uuid.uuid4().hex[:10]}"
    admin = pymysql.connect(host="127.0.0.1", port=3306, user="root", password="", autocommit=True)
    try:
        admin.cursor().execute(f"CREATE DATABASE `{db}`")
        (project.dir / "profiles.yml").write_text(
            "sixtyfour:\n  target: db\n  outputs:\n    db:\n      type: sqlalchemy\n"
            f'      url: "{MARIADB_URL}{db}"\n      schema: {db}\n'
        )
        yield Warehouse("mariadb", project, schema=db)
    finally:
        admin.cursor().execute(f"DROP DATABASE IF EXISTS `{db}`")
        admin.close()
