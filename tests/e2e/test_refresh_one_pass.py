"""A refresh of an enriched target reads the source once (the selection's one-pass form), and selects exactly
what the ordered, key-counting selection selects, on every warehouse and key type, end to end.

The one-pass form is taken for sources above ``PROBE_SOURCE_ROWS`` rows; here that bound is 0, so the small
tables of these tests take it. Each case checks what a run sends (counted at the emulator) and what it stores, and
that the one pass gives way to the ordered selection where it cannot stand in for it (keys that repeat, more
rows changed than the bound).
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from decimal import Decimal
from typing import Any

import pytest

from sixtyfour_sync import commands as api
from sixtyfour_sync.emulator import EmulatorSettings
from sixtyfour_sync.engine import runner_submit
from tests.e2e.conftest import E2EProject
from tests.e2e.test_key_types import _check_round, _setup
from tests.e2e.warehouses import Warehouse, make_duckdb, make_mariadb, make_postgres

TWO_53 = 2**53
TWO_63 = 2**63


@pytest.fixture
def emulator_settings(api_key: str) -> EmulatorSettings:
    return EmulatorSettings(api_keys=frozenset({api_key}), job_seconds=0.05, failure_rate=0.0, seed=3)


@pytest.fixture
def one_pass(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every refresh of these small tables tries the one pass; records which form each run read."""
    monkeypatch.setattr(runner_submit, "PROBE_SOURCE_ROWS", 0)
    taken: list[str] = []
    real = runner_submit.SubmitSteps._probe

    def probe(self: Any, source_rows: int) -> Any:
        read = real(self, source_rows)
        taken.append("one pass" if read is not None else "ordered")
        return read

    monkeypatch.setattr(runner_submit.SubmitSteps, "_probe", probe)
    return taken


@pytest.fixture
def duck(project: E2EProject) -> Warehouse:
    return make_duckdb(project)


@pytest.fixture
def pg(project: E2EProject) -> Any:
    yield from make_postgres(project)


@pytest.fixture
def maria(project: E2EProject) -> Any:
    yield from make_mariadb(project)


def _run(project: E2EProject) -> api.RunResult:
    return api.run(project.dir, api_key=project.api_key, api_url=project.url, env=project.env)


def _paid_rows(project: E2EProject) -> int:
    return sum(s.row_count or 0 for s in project.emulator.submissions if s.status_code == 200 and not s.replay)


@pytest.mark.parametrize(
    ("sql_type", "keys", "stored"),
    [
        ("UBIGINT", [TWO_63 + 1, TWO_63 + 2, 2**64 - 1, 0, 1, TWO_53 + 1], "ubigint"),
        ("DECIMAL(38,10)", [Decimal("1234567890123456789012345678.1234567890"), Decimal("0.0000000001")],
         "decimal(38,10)"),
        ("VARCHAR", ["ümlaut ✓", "日本語", "a'b\"c", " spaced "], "varchar"),
        ("TIMESTAMPTZ", ["2024-01-01 00:00:00.000001+00", "2024-06-01 10:00:00+02"], "timestamp with time zone"),
    ],
)  # fmt: skip
def test_duckdb_refreshes_in_one_pass(
    duck: Warehouse, one_pass: list[str], sql_type: str, keys: list[Any], stored: str
) -> None:
    _setup(duck, sql_type, keys, chunk_rows=3)
    _check_round(duck, stored)
    assert one_pass == ["ordered", "one pass", "one pass"]  # a first run has no target to diff with


@pytest.mark.parametrize(
    ("sql_type", "keys", "stored"),
    [
        ("uuid", [str(uuid.UUID(int=(i * 0x9E3779B97F4A7C15) % 2**128)) for i in range(1, 9)], "uuid"),
        ("numeric(20,0)", [Decimal(TWO_53 + i) for i in range(1, 6)], "numeric(20,0)"),
        ("timestamp", ["2024-01-01 00:00:00.000001", "2024-01-01 00:00:00.000002"], "timestamp without time zone"),
    ],
)
def test_postgres_refreshes_in_one_pass(
    pg: Warehouse, one_pass: list[str], sql_type: str, keys: list[Any], stored: str
) -> None:
    _setup(pg, sql_type, keys, chunk_rows=3)
    _check_round(pg, stored)
    assert one_pass == ["ordered", "one pass", "one pass"]


@pytest.mark.parametrize(
    ("sql_type", "keys", "stored"),
    [
        ("BIGINT UNSIGNED", [TWO_63 + 1, TWO_63 + 2, 2**64 - 1, 1, TWO_53 + 1], "bigint(20) unsigned"),
        ("DECIMAL(30,6)", [Decimal("123456789012345678901234.000001"), Decimal("2.000002")], "decimal(30,6)"),
    ],
)
def test_mariadb_refreshes_in_one_pass(
    maria: Warehouse, one_pass: list[str], sql_type: str, keys: list[Any], stored: str
) -> None:
    _setup(maria, sql_type, keys)
    _check_round(maria, stored)
    assert one_pass == ["ordered", "one pass", "one pass"]


def _names(wh: Warehouse, rows: Sequence[tuple[Any, str]]) -> None:
    wh.execute("DROP TABLE IF EXISTS {t:keyed}")
    wh.execute("CREATE TABLE {t:keyed} (k INTEGER, name VARCHAR(100))")
    wh.executemany("INSERT INTO {t:keyed} VALUES (?, ?)", list(rows))
    (wh.project.dir / "models" / "leads.yml").write_text(
        "syncs:\n  - name: enrich_keyed\n    endpoint: people\n    source:\n      table: keyed\n      key: k\n"
        "      columns: [name]\n    struct:\n      email: The individual's email address\n"
        "    target:\n      table: keyed_enriched\n    chunk_rows: 4\n"
    )


@pytest.fixture(params=["duckdb", "postgres"])
def wh(request: pytest.FixtureRequest, project: E2EProject) -> Any:
    if request.param == "duckdb":
        yield make_duckdb(project)
    else:
        yield from make_postgres(project)


def test_a_refresh_sends_exactly_the_new_and_changed_rows_and_reports_bad_keys(
    wh: Warehouse, one_pass: list[str]
) -> None:
    """New rows, changed rows and rows with a NULL key after a first run: the one pass sends the new and changed
    ones (nothing else), and reports the NULL keys as the ordered selection does."""
    project = wh.project
    _names(wh, [(i, f"Person {i}") for i in range(1, 21)])
    first = _run(project)
    assert first.exit_code == 0 and first.syncs[0].rows_sent == 20, first.to_dict()
    paid = _paid_rows(project)

    wh.execute("UPDATE {t:keyed} SET name = name || ' Jr' WHERE k IN (3, 7, 11)")
    wh.executemany("INSERT INTO {t:keyed} VALUES (?, ?)", [(21, "Person 21"), (22, "Person 22"), (None, "No Key")])
    second = _run(project)
    s = second.syncs[0]
    assert one_pass[-1] == "one pass"
    assert s.rows_sent == 5 and s.rows_by_reason == {"changed": 3, "new": 2}, s.to_dict()
    assert _paid_rows(project) - paid == 5
    assert any("NULL" in w for w in s.warnings), s.warnings
    stored = {r[0]: r[1] for r in wh.query("SELECT k, _sixtyfour_status FROM {t:keyed_enriched}")}
    assert sorted(stored) == list(range(1, 23)) and set(stored.values()) == {"enriched"}

    third = _run(project)  # the NULL key is reported again; nothing is sent
    assert third.syncs[0].rows_sent == 0 and any("NULL" in w for w in third.syncs[0].warnings)
    assert _paid_rows(project) - paid == 5


def test_repeated_keys_take_the_ordered_selection_and_are_reported(duck: Warehouse, one_pass: list[str]) -> None:
    _names(duck, [(i, f"Person {i}") for i in range(1, 11)])
    assert _run(duck.project).syncs[0].rows_sent == 10
    duck.execute("INSERT INTO {t:keyed} VALUES (5, 'Another Five'), (5, 'Third Five')")
    duck.execute("UPDATE {t:keyed} SET name = 'Changed' WHERE k = 2")
    second = _run(duck.project).syncs[0]
    assert one_pass[-1] == "ordered"
    assert second.rows_sent == 1 and second.rows_by_reason == {"changed": 1}, second.to_dict()
    assert any("more than once" in w or "duplicate" in w.lower() for w in second.warnings), second.warnings


def test_more_changed_rows_than_the_bound_take_the_ordered_selection(
    duck: Warehouse, one_pass: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    _names(duck, [(i, f"Person {i}") for i in range(1, 13)])
    assert _run(duck.project).syncs[0].rows_sent == 12
    monkeypatch.setattr(runner_submit, "PROBE_ROWS", 5)
    duck.execute("UPDATE {t:keyed} SET name = name || '!' WHERE k <= 8")
    second = _run(duck.project).syncs[0]
    assert one_pass[-1] == "ordered"
    assert second.rows_sent == 8 and second.rows_by_reason == {"changed": 8}, second.to_dict()
    duck.execute("UPDATE {t:keyed} SET name = name || '?' WHERE k > 9")
    third = _run(duck.project).syncs[0]
    assert one_pass[-1] == "one pass" and third.rows_sent == 3, third.to_dict()


def test_a_target_holding_a_key_twice_sends_the_source_row_once(duck: Warehouse, one_pass: list[str]) -> None:
    """A table other tools write, without a primary key, holding a key twice: each source row is sent once."""
    _names(duck, [(i, f"Person {i}") for i in range(1, 9)])
    duck.execute("CREATE TABLE {t:keyed_enriched} (k INTEGER, note VARCHAR(20))")
    duck.execute("INSERT INTO {t:keyed_enriched} VALUES (3, 'a'), (3, 'b'), (5, 'c'), (5, 'd'), (5, 'e')")
    first = _run(duck.project).syncs[0]
    assert one_pass == ["one pass"]
    assert first.rows_sent == 8 and _paid_rows(duck.project) == 8, first.to_dict()
    assert any("holds key(s) more than once" in w for w in first.warnings), first.warnings


@pytest.mark.parametrize("kind", ["duckdb", "postgres"])
def test_a_primary_key_spares_the_key_count(
    kind: str, request: pytest.FixtureRequest, one_pass: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A source table whose primary key is the sync's key needs no GROUP BY to show its keys unique."""
    wh: Warehouse = request.getfixturevalue("duck" if kind == "duckdb" else "pg")
    counted: list[str] = []
    real = runner_submit.repeated_keys_sql
    monkeypatch.setattr(runner_submit, "repeated_keys_sql", lambda *a: counted.append("count") or real(*a))
    _names(wh, [(i, f"Person {i}") for i in range(1, 7)])
    assert _run(wh.project).syncs[0].rows_sent == 6
    wh.execute("UPDATE {t:keyed} SET name = 'Changed' WHERE k = 2")
    assert _run(wh.project).syncs[0].rows_sent == 1 and counted == ["count"] and one_pass[-1] == "one pass"
    wh.execute("DROP TABLE {t:keyed}")
    wh.execute("CREATE TABLE {t:keyed} (k INTEGER PRIMARY KEY, name VARCHAR(100))")
    wh.executemany("INSERT INTO {t:keyed} VALUES (?, ?)", [(i, f"Person {i}") for i in range(1, 7)])
    back = _run(wh.project).syncs[0]  # row 2 is back to its first inputs: their answer is in the store
    assert (back.rows_sent, back.rows_reused) == (0, 1)
    assert counted == ["count"] and one_pass[-1] == "one pass"


def test_changed_rows_sharing_inputs_ask_once_in_the_one_pass(wh: Warehouse, one_pass: list[str]) -> None:
    """Rows a refresh selects that share their inputs ask one question, in the one pass as in the full selection;
    every key gets the answer."""
    project = wh.project
    _names(wh, [(i, f"Person {i}") for i in range(1, 13)])
    assert _run(project).syncs[0].rows_sent == 12
    paid = _paid_rows(project)
    wh.execute("UPDATE {t:keyed} SET name = 'Twin A' WHERE k IN (2, 9, 11)")
    wh.execute("UPDATE {t:keyed} SET name = 'Twin B' WHERE k IN (4, 5)")
    wh.execute("UPDATE {t:keyed} SET name = 'Alone' WHERE k = 7")
    second = _run(project).syncs[0]
    assert one_pass[-1] == "one pass"
    assert _paid_rows(project) - paid == 3, second.to_dict()  # three questions for six keys
    assert second.rows_sent == 3 and second.rows_deduplicated == 3, second.to_dict()
    rows = {r[0]: (r[1], r[2]) for r in wh.query("SELECT k, email, _sixtyfour_task_id FROM {t:keyed_enriched}")}
    assert rows[2] == rows[9] == rows[11] and rows[4] == rows[5] and rows[2] != rows[4]
    assert all(v[0] for v in rows.values())


def test_snowflake_refreshes_in_one_pass(project: E2EProject, one_pass: list[str]) -> None:
    """Snowflake's SQL (fakesnow): the one pass selects the changed rows, upper-case names and all."""
    fakesnow = pytest.importorskip("fakesnow")
    import snowflake.connector

    db, schema = f"DB_{uuid.uuid4().hex[:8]}".upper(), f"S_{uuid.uuid4().hex[:8]}".upper()
    with fakesnow.patch():
        con = snowflake.connector.connect(account="fakesnow", user="u", password="p")
        cur = con.cursor()
        cur.execute(f"CREATE DATABASE {db}")
        cur.execute(f"CREATE SCHEMA {db}.{schema}")
        cur.execute(f"CREATE TABLE {db}.{schema}.KEYED (K NUMBER, NAME TEXT)")
        cur.executemany(f"INSERT INTO {db}.{schema}.KEYED VALUES (%s, %s)", [(i, f"Person {i}") for i in range(1, 11)])
        (project.dir / "profiles.yml").write_text(
            "sixtyfour:\n  target: sf\n  outputs:\n    sf:\n      type: snowflake\n      account: fakesnow\n"
            f"      user: loader\n      password: not-a-real-password\n      database: {db}\n      schema: {schema}\n"
        )
        (project.dir / "models" / "leads.yml").write_text(
            "syncs:\n  - name: enrich_keyed\n    endpoint: people\n    source:\n      table: keyed\n      key: k\n"
            "      columns: [name]\n    struct:\n      email: The individual's email address\n"
            "    target:\n      table: keyed_enriched\n    chunk_rows: 4\n"
        )
        assert _run(project).syncs[0].rows_sent == 10
        assert _run(project).syncs[0].status == "nothing_to_do" and one_pass[-1] == "one pass"
        cur.execute(f"UPDATE {db}.{schema}.KEYED SET NAME = 'Twin' WHERE K IN (3, 8)")
        third = _run(project).syncs[0]
        con.close()
    assert one_pass[-1] == "one pass"
    assert third.rows_sent == 1 and third.rows_deduplicated == 1, third.to_dict()
