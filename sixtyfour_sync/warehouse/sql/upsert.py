"""Upsert and merge SQL: update from a stage, insert what is missing, guarded columns, MERGE (pure).

A staged part carries the key, the set columns and, for guarded columns, the staged boolean ``when`` (and
``clear``) columns. A guarded column's value is decided by :mod:`.guards` (write, keep, or clear a value
that answered another question); an inserted row gets ``CASE WHEN s.when THEN s.col END``. Every SET
expression sees the row's old values (standard SQL), except in MySQL's multi-table UPDATE, where
:func:`guard_stage_sql` decides the guards in the stage first.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from sixtyfour_sync.warehouse.sql import guards as guard_sql
from sixtyfour_sync.warehouse.sql.identifiers import Names
from sixtyfour_sync.warehouse.types import Guard, TableRef

__all__ = [
    "ROWID",
    "SEQ",
    "guard_stage_sql",
    "insert_if_absent_sql",
    "insert_missing_sql",
    "insert_select_sql",
    "matched_vectors_sql",
    "merge_sql",
    "replaced_rows_sql",
    "stored_name",
    "update_from_sql",
]

#: The rowid column DuckDB's ordered update carries through its subquery.
ROWID = "_sixtyfour_rowid"
#: The staged row order Snowflake's MERGE source deduplicates by (last wins).
SEQ = "_SIXTYFOUR_SEQ"

Guards = Mapping[str, Guard]


def _quote(names: Names) -> guard_sql.Quote:
    return lambda name: names.quote(name, what="column")


def _update_value(names: Names, col: str, guards_: Guards, s: str, t: str, staged: str | None = None) -> str:
    """The value an existing row gets; ``staged`` replaces ``s.col`` (e.g. parsed as JSON)."""
    value = staged or f"{s}.{names.quote(col, what='column')}"
    return guard_sql.update_value(guards_.get(col), col, _quote(names), value, s, t)


def _insert_value(names: Names, col: str, guards_: Guards, s: str) -> str:
    return guard_sql.insert_value(guards_.get(col), _quote(names), f"{s}.{names.quote(col, what='column')}", s)


def update_from_sql(
    names: Names,
    table: TableRef,
    stage: str,
    key: Sequence[str],
    set_cols: Sequence[str],
    guards: Guards | None = None,
) -> str:
    """UPDATE the target's matching rows from ``stage`` (its SQL name) in the dialect's update style."""
    g = guards or {}
    target = names.table(table)
    style = names.dialect.update_style
    if style == "rowid":
        return _rowid_update(names, target, stage, key, set_cols, g)
    if style == "join":
        sets = ", ".join(
            f"t.{names.quote(c, what='column')} = {_update_value(names, c, g, 's', 't')}" for c in set_cols
        )
        return f"UPDATE {target} AS t JOIN {stage} AS s ON {names.key_join(key, 't', 's')} SET {sets}"
    if style == "correlated":
        match = " AND ".join(
            f"s.{names.quote(k, what='key column')} = {target}.{names.quote(k, what='key column')}" for k in key
        )
        sets = ", ".join(
            f"{names.quote(c, what='column')} = (SELECT {_update_value(names, c, g, 's', target)} "
            f"FROM {stage} s WHERE {match})"
            for c in set_cols
        )
        return f"UPDATE {target} SET {sets} WHERE EXISTS (SELECT 1 FROM {stage} s WHERE {match})"
    sets = ", ".join(f"{names.quote(c, what='column')} = {_update_value(names, c, g, 's', 't')}" for c in set_cols)
    return f"UPDATE {target} AS t SET {sets} FROM {stage} AS s WHERE {names.key_join(key, 't', 's')}"


def _rowid_update(
    names: Names, target: str, stage: str, key: Sequence[str], set_cols: Sequence[str], guards: Guards
) -> str:
    """DuckDB: ``UPDATE ... FROM`` the staged rows in the target's physical (rowid) order.

    DuckDB 2.0 slows down by up to 200x when an update touches a large share of a table's rows (but not
    all) in random order with many columns: 50,000 of 200,000 rows took 70 s, the same rows sorted by rowid
    0.2-0.8 s. So the staged rows are joined to the target first and applied in rowid order; guards are
    decided in that join, against the target's values before the update.
    """
    if guards:
        values = [f"{_update_value(names, c, guards, 's0', 't2')} AS {names.quote(c, what='column')}" for c in set_cols]
        picked = ", ".join(values)
    else:
        picked = "s0.*"
    sets = ", ".join(f"{names.quote(c, what='column')} = s.{names.quote(c, what='column')}" for c in set_cols)
    return (
        f"UPDATE {target} AS t SET {sets} FROM (SELECT t2.rowid AS {ROWID}, {picked} FROM {stage} AS s0 "
        f"JOIN {target} AS t2 ON {names.key_join(key, 't2', 's0')} ORDER BY t2.rowid) AS s "
        f"WHERE t.rowid = s.{ROWID}"
    )


def stored_name(name: str) -> str:
    """A column name read from the catalog, as a quoted identifier (its double quotes doubled)."""
    return '"' + name.replace('"', '""') + '"'


def matched_vectors_sql(names: Names, table: TableRef, stage: str, key: Sequence[str], vector_rows: int) -> str:
    """DuckDB: how many target rows ``stage`` matches, and in how many vectors of ``vector_rows`` rows."""
    target = names.table(table)
    return (
        f"SELECT COUNT(*), COUNT(DISTINCT t2.rowid // {int(vector_rows)}) FROM {stage} AS s0 "
        f"JOIN {target} AS t2 ON {names.key_join(key, 't2', 's0')}"
    )


def replaced_rows_sql(
    names: Names,
    table: TableRef,
    stage: str,
    key: Sequence[str],
    set_cols: Sequence[str],
    columns: Sequence[str],
    guards: Guards | None = None,
) -> str:
    """DuckDB: the new version of every target row ``stage`` matches, all of the target's ``columns`` in order
    (the set columns from the stage, guards decided against the stored values, every other column as stored),
    and the rowid of the row it replaces, as :data:`ROWID` (see ``DuckDBAdapter._apply_stage``).

    ``columns`` are the names the catalog stores (any text, quoted with their quotes doubled); a set column
    matches its stored name without regard to case, as DuckDB matches names.
    """
    g = guards or {}
    target = names.table(table)
    owned = {c.lower(): c for c in set_cols}
    values = [
        f"{_update_value(names, owned[c.lower()], g, 's0', 't2')} AS {stored_name(c)}"
        if c.lower() in owned
        else f"t2.{stored_name(c)}"
        for c in columns
    ]
    return (
        f"SELECT {', '.join(values)}, t2.rowid AS {ROWID} FROM {stage} AS s0 "
        f"JOIN {target} AS t2 ON {names.key_join(key, 't2', 's0')}"
    )


def guard_stage_sql(
    names: Names, table: TableRef, stage: str, key: Sequence[str], flags: tuple[str, str | None], guard: Guard
) -> str:
    """Decide a guard in the stage, against the stored rows: ``flags`` (copies of ``guard.when`` and
    ``guard.clear``) become the write and clear decisions; the update that follows tests only them.

    For MySQL's multi-table UPDATE, whose assignments may see each other's new values (the stored hashes a
    guard compares are written by the same statement). Rows with no stored match keep the copies.
    """
    q = _quote(names)
    write_flag, clear_flag = flags
    sets = [f"s.{q(write_flag)} = ({guard_sql.write_condition(Guard(write_flag, guard.not_below, guard.same), q)})"]
    clear = guard_sql.clear_condition(Guard(write_flag, None, guard.same, clear_flag), q) if clear_flag else None
    if clear_flag is not None:
        sets.append(f"s.{q(clear_flag)} = ({clear or 'FALSE'})")
    return (
        f"UPDATE {stage} AS s JOIN {names.table(table)} AS t ON {names.key_join(key, 's', 't')} SET {', '.join(sets)}"
    )


def insert_missing_sql(
    names: Names,
    table: TableRef,
    stage: str,
    key: Sequence[str],
    set_cols: Sequence[str],
    guards: Guards | None = None,
) -> str:
    """``INSERT INTO t (key, cols) SELECT ... FROM stage s WHERE NOT EXISTS (same key in t)``."""
    g = guards or {}
    target = names.table(table)
    cols = [names.quote(c, what="column") for c in (*key, *set_cols)]
    values = [f"s.{names.quote(k, what='key column')}" for k in key]
    values += [_insert_value(names, c, g, "s") for c in set_cols]
    return (
        f"INSERT INTO {target} ({', '.join(cols)}) SELECT {', '.join(values)} "
        f"FROM {stage} AS s WHERE NOT EXISTS "
        f"(SELECT 1 FROM {target} AS t WHERE {names.key_join(key, 't', 's')})"
    )


def _staged(names: Names, col: str, json_cols: frozenset[str], prefix: str = "") -> str:
    q = prefix + names.quote(col, what="column")
    return names.dialect.parse_json.format(q) if col in json_cols else q


def insert_select_sql(
    names: Names, table: TableRef, stage: str, columns: Sequence[str], json_cols: frozenset[str] = frozenset()
) -> str:
    """``INSERT INTO t (cols) SELECT cols FROM stage``: rows the caller knows are new."""
    values = ", ".join(_staged(names, c, json_cols, "s.") for c in columns)
    return f"INSERT INTO {names.table(table)} ({names.columns(columns)}) SELECT {values} FROM {stage} AS s"


def merge_sql(
    names: Names,
    table: TableRef,
    stage: str,
    key: Sequence[str],
    set_cols: Sequence[str],
    json_cols: frozenset[str] = frozenset(),
    guards: Guards | None = None,
) -> str:
    """One MERGE from the deduplicated stage (Snowflake); only ``set_cols`` are written.

    The source keeps the last staged row per key (real Snowflake rejects a MERGE where a target row matches
    two source rows); ``json_cols`` are parsed with the dialect's ``parse_json`` (VARIANT). With guards the
    source LEFT JOINs the target and decides each guarded value there - for a row with no match the stored
    side is NULL, so the same expression is the insert value - and the MERGE itself only copies values.
    """
    g = guards or {}
    target = names.table(table)
    qk = [names.quote(k, what="key column") for k in key]
    src = "s0" if g else None
    select = [f"{src}.{k}" if src else k for k in qk]
    for c in set_cols:
        q = names.quote(c, what="column")
        if c in g:
            value = _update_value(names, c, g, "s0", "t0", _staged(names, c, json_cols, "s0."))
            select.append(f"{value} AS {q}")
        elif src:
            select.append(f"{_staged(names, c, json_cols, 's0.')} AS {q}")
        else:
            select.append(f"{_staged(names, c, json_cols)} AS {q}" if c in json_cols else q)
    seq = f'"{SEQ}"'
    if src:
        join = names.key_join(key, "t0", "s0")
        source = (
            f"SELECT {', '.join(select)} FROM {stage} AS s0 LEFT JOIN {target} AS t0 ON {join} "
            f"QUALIFY ROW_NUMBER() OVER (PARTITION BY {', '.join('s0.' + k for k in qk)} ORDER BY s0.{seq} DESC) = 1"
        )
    else:
        source = (
            f"SELECT {', '.join(select)} FROM {stage} "
            f"QUALIFY ROW_NUMBER() OVER (PARTITION BY {', '.join(qk)} ORDER BY {seq} DESC) = 1"
        )
    sql = f"MERGE INTO {target} AS t USING ({source}) AS s ON {names.key_join(key, 't', 's')}"
    if set_cols:
        sets = ", ".join(f"{names.quote(c, what='column')} = s.{names.quote(c, what='column')}" for c in set_cols)
        sql += f" WHEN MATCHED THEN UPDATE SET {sets}"
    cols = [*qk, *(names.quote(c, what="column") for c in set_cols)]
    sql += f" WHEN NOT MATCHED THEN INSERT ({', '.join(cols)}) VALUES ({', '.join('s.' + c for c in cols)})"
    return sql


def insert_if_absent_sql(names: Names, table: TableRef, columns: Sequence[str], key_columns: Sequence[str]) -> str:
    """ONE statement inserting one row (``?`` params in column order) unless its key exists; 1 or 0 rows.

    - PostgreSQL, DuckDB, SQLite: ``INSERT ... VALUES ... ON CONFLICT (key) DO NOTHING``: race-free, and
      the key must carry a primary key or unique constraint (as ``ensure_table`` creates it).
    - Snowflake (keys not enforced): ``MERGE ... WHEN NOT MATCHED THEN INSERT``; MERGE statements on one
      table take locks against each other, plain INSERTs do not.
    - MySQL/MariaDB and the generic path: ``INSERT ... SELECT ... WHERE NOT EXISTS``; two transactions
      racing for one key make the later one fail on the primary key instead of inserting twice.
    """
    if not columns:
        raise ValueError(f"insert into {table}: no columns")
    missing = [k for k in key_columns if k not in columns]
    if not key_columns or missing:
        raise ValueError(f"insert into {table}: the key column(s) {missing or '(none)'} must be among the columns")
    target = names.table(table)
    cols = names.columns(columns, what=f"column of {table}")
    style = names.dialect.insert_if_absent
    if style == "on_conflict":
        keys = names.columns(key_columns, what=f"key column of {table}")
        marks = ", ".join("?" for _ in columns)
        return f"INSERT INTO {target} ({cols}) VALUES ({marks}) ON CONFLICT ({keys}) DO NOTHING"
    row = ", ".join(f"? AS {names.quote(c, what=f'column of {table}')}" for c in columns)
    source = f"(SELECT {row}) {names.alias('s')}"
    if style == "merge":
        values = names.columns(columns, prefix="s.")
        return (
            f"MERGE INTO {target} AS t USING {source} ON {names.key_join(key_columns, 't', 's')} "
            f"WHEN NOT MATCHED THEN INSERT ({cols}) VALUES ({values})"
        )
    return (
        f"INSERT INTO {target} ({cols}) SELECT {names.columns(columns, prefix='s.')} FROM {source} "
        f"WHERE NOT EXISTS (SELECT 1 FROM {target} AS t WHERE {names.key_join(key_columns, 't', 's')})"
    )
