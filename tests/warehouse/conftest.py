"""The ``backend`` fixture: one connected adapter per warehouse, on a fresh, uniquely named schema/database.

Backends: duckdb (a file in tmp_path), postgres (a new schema in db ``test``), mariadb (a new database, via
the SQLAlchemy adapter and pymysql), sqlite (a file in tmp_path, via the SQLAlchemy adapter) and snowflake
(fakesnow, in process), bigquery (bqemulator) and databricks (minilake), each a local server on an
ephemeral port (tests/cloud_emulators.py). postgres and mariadb skip locally when their server is down and
fail under CI=true; a backend whose adapter module is not importable is skipped with "adapter not available".
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from sixtyfour_sync.config.profiles import parse_target_config
from sixtyfour_sync.errors import MissingDriverError, WarehouseError
from sixtyfour_sync.warehouse import Adapter, adapter_class, connect
from tests.cloud_emulators import (
    STAGING_VOLUME,
    BigQueryEmulator,
    DatabricksEmulator,
)
from tests.services import require_service

BACKENDS = ["duckdb", "postgres", "mariadb", "sqlite", "snowflake", "bigquery", "databricks"]
_ADAPTER_TYPE = {
    "duckdb": "duckdb",
    "postgres": "postgres",
    "mariadb": "sqlalchemy",
    "sqlite": "sqlalchemy",
    "snowflake": "snowflake",
    "bigquery": "bigquery",
    "databricks": "databricks",
}

PG_HOST, PG_PORT = "127.0.0.1", 5432
MARIADB_HOST, MARIADB_PORT = "127.0.0.1", 3306


def unique(prefix: str) -> str:
    """A short, unique, lower-case identifier."""
    return f"{prefix}_{uuid.uuid4().hex[:10]}"


def _require_adapter(kind: str) -> None:
    try:
        adapter_class(kind)
    except (WarehouseError, MissingDriverError, ImportError) as exc:
        pytest.skip(f"adapter not available ({exc})")


@pytest.fixture
def pg_config() -> dict[str, Any]:
    """Connection keys for the local PostgreSQL (skips locally when it is down)."""
    require_service("postgres", PG_HOST, PG_PORT)
    return {"type": "postgres", "host": PG_HOST, "port": PG_PORT, "user": "postgres", "dbname": "test"}


def _duckdb(tmp_path: Path) -> Iterator[Adapter]:
    schema = unique("sync")
    adapter = connect(parse_target_config({"type": "duckdb", "path": str(tmp_path / "w.duckdb"), "schema": schema}))
    try:
        adapter.ensure_schema(schema)
        yield adapter
    finally:
        adapter.close()


def _postgres() -> Iterator[Adapter]:
    require_service("postgres", PG_HOST, PG_PORT)
    _require_adapter("postgres")
    schema = unique("w")
    adapter = connect(
        parse_target_config(
            {
                "type": "postgres",
                "host": PG_HOST,
                "port": PG_PORT,
                "user": "postgres",
                "dbname": "test",
                "schema": schema,
            }
        )
    )
    try:
        adapter.ensure_schema(schema)
        yield adapter
    finally:
        try:
            with adapter.session() as s:
                s.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        finally:
            adapter.close()


def _mariadb() -> Iterator[Adapter]:
    require_service("mariadb", MARIADB_HOST, MARIADB_PORT)
    _require_adapter("sqlalchemy")
    import pymysql

    db = unique("w")
    root = pymysql.connect(host=MARIADB_HOST, port=MARIADB_PORT, user="root", password="", autocommit=True)
    try:
        with root.cursor() as cur:
            cur.execute(f"CREATE DATABASE `{db}`")
        adapter = connect(
            parse_target_config(
                {"type": "sqlalchemy", "url": f"mysql+pymysql://root@{MARIADB_HOST}:{MARIADB_PORT}/{db}", "schema": db}
            )
        )
        try:
            yield adapter
        finally:
            adapter.close()
    finally:
        with root.cursor() as cur:
            cur.execute(f"DROP DATABASE IF EXISTS `{db}`")
        root.close()


def _sqlite(tmp_path: Path) -> Iterator[Adapter]:
    _require_adapter("sqlalchemy")
    adapter = connect(parse_target_config({"type": "sqlalchemy", "url": f"sqlite:///{tmp_path / 'x.db'}"}))
    try:
        yield adapter
    finally:
        adapter.close()


def _snowflake() -> Iterator[Adapter]:
    _require_adapter("snowflake")
    try:
        import fakesnow
    except ImportError as exc:  # pragma: no cover - the test extra installs it
        pytest.skip(f"fakesnow not installed ({exc})")
    with fakesnow.patch():
        adapter = connect(
            parse_target_config(
                {
                    "type": "snowflake",
                    "account": "fakesnow",
                    "user": "tester",
                    "password": "not-a-real-password",
                    "database": unique("DB").upper(),
                    "schema": unique("S").upper(),
                }
            )
        )
        try:
            schema = adapter.default_schema
            if schema:
                adapter.ensure_schema(schema)
            yield adapter
        finally:
            adapter.close()


def _bigquery(request: pytest.FixtureRequest) -> Iterator[Adapter]:
    _require_adapter("bigquery")
    emu: BigQueryEmulator = request.getfixturevalue("bigquery_emulator")
    dataset = unique("w")
    config = {"type": "bigquery", "method": "anonymous", "api_endpoint": emu.url, "project": emu.project}
    adapter = connect(parse_target_config({**config, "dataset": dataset}))
    try:
        adapter.ensure_schema(dataset)
        yield adapter
    finally:
        try:
            adapter.client().delete_dataset(f"{emu.project}.{dataset}", delete_contents=True, not_found_ok=True)
        finally:
            adapter.close()


def _databricks(request: pytest.FixtureRequest) -> Iterator[Adapter]:
    _require_adapter("databricks")
    emu: DatabricksEmulator = request.getfixturevalue("databricks_emulator")
    schema = unique("w")
    config = {"type": "databricks", "host": emu.url, "http_path": emu.http_path, "token": emu.token}
    config["staging_volume"] = STAGING_VOLUME
    adapter = connect(parse_target_config({**config, "catalog": "main", "schema": schema}))
    try:
        adapter.ensure_schema(schema)
        yield adapter
    finally:
        try:
            with adapter.session() as s:
                s.execute(f"DROP SCHEMA IF EXISTS {adapter.quote('main')}.{adapter.quote(schema)} CASCADE")
        finally:
            adapter.close()


#: Shared-suite tests that need a multi-statement transaction to roll back, which Databricks' Statement
#: Execution API does not offer (each statement commits on its own).
NEEDS_ROLLBACK = {
    "test_failure_in_before_commit_rolls_back_everything",
    "test_session_rolls_back_on_error",
    "test_upsert_rejects_null_keys_and_changes_nothing",
    "test_a_sibling_has_its_own_connection",
}
#: Shared-suite tests that need two transactions isolated from each other, which bqemulator cannot give
#: (BigQuery itself isolates sessions with snapshot isolation).
NEEDS_ISOLATION = {"test_a_sibling_has_its_own_connection"}


@pytest.fixture(params=BACKENDS)
def backend_name(request: pytest.FixtureRequest) -> str:
    """The name of the backend under test (duckdb, postgres, mariadb, sqlite, snowflake)."""
    return str(request.param)


@pytest.fixture
def backend(backend_name: str, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Adapter]:
    """A connected adapter on a fresh, uniquely named schema/database, dropped afterwards."""
    if backend_name == "databricks" and request.node.originalname in NEEDS_ROLLBACK:
        pytest.skip("databricks: each statement commits on its own (no multi-statement rollback)")
    if backend_name == "bigquery" and request.node.originalname in NEEDS_ISOLATION:
        pytest.skip("bqemulator runs one server-wide transaction: a second session sees and joins the first one's")
    if backend_name == "duckdb":
        yield from _duckdb(tmp_path)
    elif backend_name == "postgres":
        yield from _postgres()
    elif backend_name == "mariadb":
        yield from _mariadb()
    elif backend_name == "sqlite":
        yield from _sqlite(tmp_path)
    elif backend_name == "snowflake":
        yield from _snowflake()
    elif backend_name == "bigquery":
        yield from _bigquery(request)
    elif backend_name == "databricks":
        yield from _databricks(request)
    else:  # pragma: no cover
        raise AssertionError(backend_name)


# ---------------------------------------------------------------------------------------------- perturbed twins


@contextmanager
def perturbed_twin(backend_name: str, adapter: Adapter) -> Iterator[tuple[Adapter, Callable[[], str]]]:
    """A second adapter on the same target whose connections start from other session defaults.

    The defaults are changed the way an administrator could change them (a role's settings, a global
    default, a connection init command), never on the adapter's own connection. Yields the twin and a probe
    that reads, on a raw connection, the setting the adapter is expected to pin (so a test can check that
    the change really happened).
    """
    if backend_name == "duckdb":
        yield from _duckdb_twin(adapter)
    elif backend_name == "postgres":
        yield from _postgres_twin(adapter)
    elif backend_name == "mariadb":
        yield from _mariadb_twin(adapter)
    elif backend_name == "sqlite":
        pytest.skip("SQLite has no session setting that changes how a value is rendered as text")
    elif backend_name == "snowflake":
        pytest.skip("fakesnow ignores session parameters; test_snowflake checks the ones every connection pins")
    elif backend_name == "bigquery":
        pytest.skip(
            "bqemulator has no @@time_zone; the hash's TO_JSON_STRING writes timestamps in UTC whatever it is "
            "(test_bigquery pins the SQL)"
        )
    elif backend_name == "databricks":
        pytest.skip(
            "the Statement Execution API keeps no session settings, and minilake has no warehouse-level TIMEZONE "
            "(which would change how Databricks casts a timestamp to text)"
        )
    else:  # pragma: no cover
        raise AssertionError(backend_name)


def _duckdb_twin(adapter: Adapter) -> Iterator[tuple[Adapter, Callable[[], str]]]:
    from sixtyfour_sync.warehouse.duckdb import DuckDBAdapter

    assert isinstance(adapter, DuckDBAdapter)
    con = adapter.connection()
    # The instance-wide default every new cursor starts from.
    con.execute("SET GLOBAL TimeZone = 'Asia/Kolkata'")

    def probe() -> str:
        cur = con.cursor()
        try:
            return str(cur.sql("SELECT current_setting('TimeZone')").fetchall()[0][0])
        finally:
            cur.close()

    twin = adapter.sibling()
    try:
        yield twin, probe
    finally:
        twin.close()
        con.execute("SET GLOBAL TimeZone = 'UTC'")


def _postgres_twin(adapter: Adapter) -> Iterator[tuple[Adapter, Callable[[], str]]]:
    import psycopg

    role = unique("r")
    schema = adapter.default_schema
    with adapter.session() as s:
        s.execute(f'CREATE ROLE "{role}" LOGIN')
        s.execute(f'GRANT USAGE ON SCHEMA "{schema}" TO "{role}"')
        s.execute(f'GRANT SELECT ON ALL TABLES IN SCHEMA "{schema}" TO "{role}"')
        for setting, value in (
            ("TimeZone", "Asia/Kolkata"),
            ("DateStyle", "SQL, DMY"),
            ("extra_float_digits", "0"),
            ("IntervalStyle", "sql_standard"),
        ):
            s.execute(f"ALTER ROLE \"{role}\" SET {setting} = '{value}'")
    config = {"type": "postgres", "host": PG_HOST, "port": PG_PORT, "user": role, "dbname": "test", "schema": schema}

    def probe() -> str:
        with psycopg.connect(host=PG_HOST, port=PG_PORT, user=role, dbname="test") as conn:
            row = conn.execute("SELECT current_setting('TimeZone')").fetchone()
        return str(row[0]) if row else ""

    twin = connect(parse_target_config(config))
    try:
        yield twin, probe
    finally:
        twin.close()
        with adapter.session() as s:
            s.execute(f'DROP OWNED BY "{role}"')
            s.execute(f'DROP ROLE "{role}"')


def _mariadb_twin(adapter: Adapter) -> Iterator[tuple[Adapter, Callable[[], str]]]:
    import pymysql

    init = "SET time_zone = '+05:30'"
    db = adapter.default_schema
    config = {
        "type": "sqlalchemy",
        "url": f"mysql+pymysql://root@{MARIADB_HOST}:{MARIADB_PORT}/{db}",
        "schema": db,
        "connect_args": {"init_command": init},
    }

    def probe() -> str:
        conn = pymysql.connect(host=MARIADB_HOST, port=MARIADB_PORT, user="root", password="", init_command=init)
        try:
            with conn.cursor() as cur:
                cur.execute("SELECT @@session.time_zone")
                row = cur.fetchone()
            return str(row[0]) if row else ""
        finally:
            conn.close()

    twin = connect(parse_target_config(config))
    try:
        yield twin, probe
    finally:
        twin.close()
