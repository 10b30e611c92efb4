"""Keys of every type keep their type, end to end through the emulator over a socket.

The target's key column is created with the source key's own type (a PostgreSQL ``uuid`` stays ``uuid``, a
``numeric(20,0)`` stays ``numeric(20,0)``, a DuckDB ``UBIGINT`` stays ``UBIGINT``), so the selection's join
compares like with like on every later ``run``, ``plan`` and ``validate``, and keys that differ only beyond a
double's 53 bits never collide. A key type the sync cannot carry exactly (TIME, INTERVAL, BLOB) is refused
by ``validate`` and before anything is paid for, with the list of the supported key types.
"""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal
from typing import Any

import pytest

from sixtyfour_sync import commands as api
from sixtyfour_sync.emulator import EmulatorSettings
from sixtyfour_sync.errors import ConfigError
from tests.e2e.conftest import E2EProject
from tests.e2e.warehouses import Warehouse, make_duckdb, make_mariadb, make_postgres

#: ``reuse: false``: a test may ask the same people again under keys of another type, and what is checked is
#: that each key is sent and lands exactly (a stored answer would answer them without sending).
MODEL = """\
syncs:
  - name: enrich_keyed
    endpoint: people
    source:
      table: keyed
      key: k
      columns: [name]
    struct:
      email: The individual's email address
    target:
      table: keyed_enriched
    chunk_rows: {chunk_rows}
    reuse: false
"""

TWO_53 = 2**53
TWO_63 = 2**63


@pytest.fixture
def emulator_settings(api_key: str) -> EmulatorSettings:
    # every row answered: what is checked is where the answers land
    return EmulatorSettings(api_keys=frozenset({api_key}), job_seconds=0.05, failure_rate=0.0, seed=3)


def _run(project: E2EProject) -> api.RunResult:
    return api.run(project.dir, api_key=project.api_key, api_url=project.url, env=project.env)


def _paid(project: E2EProject) -> int:
    return sum(1 for s in project.emulator.submissions if s.status_code == 200 and not s.replay)


def _setup(wh: Warehouse, sql_type: str, keys: Sequence[Any], *, chunk_rows: int = 100_000) -> None:
    wh.execute("DROP TABLE IF EXISTS {t:keyed}")
    wh.execute(f"CREATE TABLE {{t:keyed}} (k {sql_type}, name VARCHAR(100))")
    wh.executemany("INSERT INTO {t:keyed} VALUES (?, ?)", [(k, f"Person {i}") for i, k in enumerate(keys)])
    (wh.project.dir / "models" / "leads.yml").write_text(MODEL.format(chunk_rows=chunk_rows))


def _key_type(wh: Warehouse, table: str = "keyed_enriched") -> str:
    """The stored type of a table's key column, as the warehouse names it."""
    if wh.kind == "postgres":
        rows = wh.query(
            "SELECT format_type(a.atttypid, a.atttypmod) FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid "
            "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = ? AND c.relname = ? AND a.attname = 'k'",
            [wh.schema, table],
        )
    elif wh.kind == "mariadb":
        rows = wh.query(
            "SELECT column_type FROM information_schema.columns WHERE table_schema = ? AND table_name = ? "
            "AND column_name = 'k'",
            [wh.schema, table],
        )
    else:
        rows = wh.query(
            "SELECT data_type FROM information_schema.columns WHERE table_name = ? AND column_name = 'k'", [table]
        )
    return str(rows[0][0]).lower()


def _target_keys(wh: Warehouse) -> list[Any]:
    return [r[0] for r in wh.query("SELECT k FROM {t:keyed_enriched} WHERE _sixtyfour_status = 'enriched' ORDER BY k")]


def _source_keys(wh: Warehouse) -> list[Any]:
    return [r[0] for r in wh.query("SELECT k FROM {t:keyed} ORDER BY k")]


def _check_round(wh: Warehouse, stored_type: str) -> None:
    """First run: every key sent, answered and stored under its exact value and type; a second run, ``plan``
    and ``validate`` then find nothing to do (the join compares like with like); one changed row is the only
    one asked again."""
    project = wh.project
    n = len(_source_keys(wh))
    first = _run(project)
    assert first.exit_code == 0, first.to_dict()
    s = first.syncs[0]
    assert (s.rows_sent, s.rows_enriched, s.rows_not_returned, s.rows_unexpected) == (n, n, 0, 0), s.to_dict()
    assert _key_type(wh) == stored_type
    assert _target_keys(wh) == _source_keys(wh)
    paid = _paid(project)

    second = _run(project)
    assert second.exit_code == 0, second.to_dict()
    assert second.syncs[0].status == "nothing_to_do", second.syncs[0].to_dict()
    assert _paid(project) == paid
    plan = api.plan(project.dir, env=project.env)[0]
    assert sum(plan.rows_by_reason.values()) == 0, plan.rows_by_reason
    report = api.validate(project.dir, env=project.env)
    assert report.ok, [p.message for p in report.problems]

    # One row changes: exactly that row is asked again (a key colliding with another would ask two, or none).
    wh.execute("UPDATE {t:keyed} SET name = 'Someone Else' WHERE k = ?", [_source_keys(wh)[-1]])
    third = _run(project)
    assert third.exit_code == 0, third.to_dict()
    assert third.syncs[0].rows_sent == 1, third.syncs[0].to_dict()
    assert _target_keys(wh) == _source_keys(wh)


# ---------------------------------------------------------------------------------------------- PostgreSQL


@pytest.fixture
def pg(project: E2EProject) -> Any:
    yield from make_postgres(project)


def test_postgres_uuid_keys_stay_uuid(pg: Warehouse) -> None:
    import uuid

    keys = [str(uuid.UUID(int=(i * 0x9E3779B97F4A7C15) % 2**128)) for i in range(1, 16)]
    _setup(pg, "uuid", keys, chunk_rows=7)
    _check_round(pg, "uuid")


def test_postgres_numeric_20_0_keys_beyond_2_53_do_not_collide(pg: Warehouse) -> None:
    keys = [Decimal(TWO_53 + i) for i in range(1, 6)] + [Decimal(10**19 + i) for i in range(5)]
    _setup(pg, "numeric(20,0)", keys)
    _check_round(pg, "numeric(20,0)")


def test_postgres_numeric_38_10_keys_keep_their_fractions(pg: Warehouse) -> None:
    keys = [
        Decimal("1234567890123456789012345678.1234567890"),
        Decimal("1234567890123456789012345678.1234567891"),
        Decimal("0.0000000001"),
        Decimal("-0.0000000001"),
        Decimal("9999999999999999999999999999.9999999999"),
        Decimal("-9999999999999999999999999999.9999999999"),
    ]
    _setup(pg, "numeric(38,10)", keys)
    _check_round(pg, "numeric(38,10)")


def test_postgres_unconstrained_numeric_keys_are_exact(pg: Warehouse) -> None:
    keys = [
        Decimal("123456789012345678901234567890123456789012.5"),
        Decimal("123456789012345678901234567890123456789012.25"),
    ]
    _setup(pg, "numeric", keys)
    _check_round(pg, "numeric")


def test_postgres_date_and_timestamp_keys(pg: Warehouse) -> None:
    import datetime as dt

    _setup(pg, "date", [dt.date(2024, 1, d) for d in range(1, 11)])
    _check_round(pg, "date")
    pg.execute("DROP TABLE {t:keyed_enriched}")
    pg.execute("DROP TABLE {t:_sixtyfour_sync_jobs}")
    _setup(pg, "timestamp", [dt.datetime(2024, 1, 1, 12, 0, 0, i * 1000 + 1) for i in range(8)])
    _check_round(pg, "timestamp without time zone")


def test_postgres_a_text_key_written_by_an_earlier_version_keeps_working(pg: Warehouse) -> None:
    """A target whose uuid key an earlier version stored as text: runs, plan and validate compare as text."""
    import uuid

    keys = [str(uuid.UUID(int=i * 7919)) for i in range(1, 9)]
    _setup(pg, "uuid", keys)
    first = _run(pg.project)
    assert first.exit_code == 0, first.to_dict()
    pg.execute("ALTER TABLE {t:keyed_enriched} ALTER COLUMN k TYPE text")
    second = _run(pg.project)
    assert second.exit_code == 0, second.to_dict()
    assert second.syncs[0].status == "nothing_to_do", second.syncs[0].to_dict()
    assert api.validate(pg.project.dir, env=pg.project.env).ok
    assert sum(api.plan(pg.project.dir, env=pg.project.env)[0].rows_by_reason.values()) == 0
    pg.execute("UPDATE {t:keyed} SET name = 'Changed' WHERE k = ?", [keys[3]])
    third = _run(pg.project)
    assert third.exit_code == 0 and third.syncs[0].rows_sent == 1, third.to_dict()
    assert [r[0] for r in pg.query("SELECT count(*) FROM {t:keyed_enriched}")] == [len(keys)]


# ---------------------------------------------------------------------------------------------- DuckDB


@pytest.fixture
def duck(project: E2EProject) -> Warehouse:
    return make_duckdb(project)


@pytest.mark.parametrize(
    ("sql_type", "keys", "stored"),
    [
        ("DECIMAL(18,0)", [Decimal(TWO_53 + i) for i in range(1, 8)] + [Decimal(10**17 + 1)], "decimal(18,0)"),
        (
            "HUGEINT",
            [TWO_63 + 1, TWO_63 + 2, -(2**100) - 1, -(2**100), 2**127 - 1, -(2**127), TWO_53 + 1, TWO_53],
            "hugeint",
        ),
        ("UBIGINT", [TWO_63 + 1, TWO_63 + 2, 2**64 - 1, 2**64 - 2, 0, 1, TWO_53 + 1], "ubigint"),
        (
            "DECIMAL(38,10)",
            [
                Decimal("1234567890123456789012345678.1234567890"),
                Decimal("1234567890123456789012345678.1234567891"),
                Decimal("-9999999999999999999999999999.9999999999"),
                Decimal("0.0000000001"),
            ],
            "decimal(38,10)",
        ),
        ("UUID", ["00000000-0000-0000-0000-000000000001", "ffffffff-ffff-ffff-ffff-ffffffffffff"], "uuid"),
        ("DATE", ["2024-01-01", "1999-12-31", "0001-01-01"], "date"),
        ("TIMESTAMP", ["2024-01-01 00:00:00.000001", "2024-01-01 00:00:00.000002"], "timestamp"),
        ("TIMESTAMPTZ", ["2024-01-01 00:00:00.000001+00", "2024-06-01 10:00:00+02"], "timestamp with time zone"),
        ("VARCHAR", ["ümlaut ✓", "日本語", "a'b\"c", " spaced "], "varchar"),
    ],
)
def test_duckdb_keys_keep_their_type(duck: Warehouse, sql_type: str, keys: list[Any], stored: str) -> None:
    _setup(duck, sql_type, keys, chunk_rows=3)
    _check_round(duck, stored)


# ---------------------------------------------------------------------------------------------- MariaDB


@pytest.fixture
def maria(project: E2EProject) -> Any:
    yield from make_mariadb(project)


@pytest.mark.parametrize(
    ("sql_type", "keys", "stored"),
    [
        ("BIGINT UNSIGNED", [TWO_63 + 1, TWO_63 + 2, 2**64 - 1, 2**64 - 2, 1, TWO_53 + 1], "bigint(20) unsigned"),
        ("DECIMAL(30,0)", [Decimal(TWO_53 + i) for i in range(1, 6)] + [Decimal(10**29 + 1)], "decimal(30,0)"),
        (
            "DECIMAL(30,6)",
            [Decimal("123456789012345678901234.000001"), Decimal("123456789012345678901234.000002")],
            "decimal(30,6)",
        ),
        ("DATE", ["2024-01-01", "2024-01-02"], "date"),
    ],
)
def test_mariadb_keys_keep_their_type(maria: Warehouse, sql_type: str, keys: list[Any], stored: str) -> None:
    _setup(maria, sql_type, keys)
    _check_round(maria, stored)


# ---------------------------------------------------------------------------------------------- refused


@pytest.mark.parametrize(
    ("kind", "sql_type", "keys"),
    [
        ("duckdb", "TIME", ["01:02:03", "04:05:06"]),
        ("duckdb", "INTERVAL", ["1 day", "2 days"]),
        ("duckdb", "BLOB", [b"\x00\x01", b"\x02"]),
        ("postgres", "bytea", [b"\x00\x01", b"\x02"]),
        ("postgres", "interval", ["1 day", "2 days"]),
        ("postgres", "time", ["01:02:03", "04:05:06"]),
    ],
)
def test_key_types_that_cannot_be_carried_exactly_are_refused_before_paying(
    project: E2EProject, kind: str, sql_type: str, keys: list[Any]
) -> None:
    if kind == "duckdb":
        wh = make_duckdb(project)
        _refused(wh, sql_type, keys)
    else:
        for wh in make_postgres(project):
            _refused(wh, sql_type, keys)


def _refused(wh: Warehouse, sql_type: str, keys: list[Any]) -> None:
    _setup(wh, sql_type, keys)
    report = api.validate(wh.project.dir, env=wh.project.env)
    assert not report.ok
    text = " ".join(f"{p.message} {p.hint or ''}" for p in report.problems)
    assert "key column 'k'" in text and "supported key types" in text, text
    assert sql_type.split("(")[0].lower() in text.lower(), text
    with pytest.raises(ConfigError, match="supported key types"):
        api.plan(wh.project.dir, env=wh.project.env)
    result = _run(wh.project)
    assert result.exit_code != 0
    assert "supported key types" in (result.error or str(result.to_dict())), result.to_dict()
    assert _paid(wh.project) == 0 and not project_submissions(wh)
    assert not wh.exists("keyed_enriched")


def project_submissions(wh: Warehouse) -> list[Any]:
    return list(wh.project.emulator.submissions)
