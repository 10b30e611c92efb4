"""Choosing the rows a run sends, in SQL, inside the warehouse.

The source (a table, a query or a dbt model, with its ``where``) is first cleaned of rows whose key is NULL
or duplicated (reported, never sent). Each remaining row gets a hash of its input columns, computed by the
warehouse, and is joined to the target's bookkeeping columns. Only the rows that need work come back,
labelled with the reason:

- ``new``: never enriched (no target row, or a target row the sync never wrote);
- ``changed``: the input hash or the spec hash differs from what was enriched;
- ``stale``: enriched longer ago than ``max_age``;
- ``failed_retry``: the API could not enrich it, and ``retry_failed_after`` has passed;
- ``refresh``: ``when: always`` or ``--full-refresh``.

Which reasons count depends on ``refresh.when``: ``missing`` sends new rows (and failed retries); ``changed``
(the default) adds changed rows, and stale ones when ``max_age`` is set; ``stale`` sends new and stale rows;
``always`` sends everything. A row the API could not enrich is not paid for again for the same question until
``retry_failed_after`` has passed (never, when it is not set); a changed question is a new one.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sixtyfour_sync.config.models import SyncSpec
from sixtyfour_sync.warehouse.base import Adapter, LogicalType, TableRef

__all__ = [
    "DELIBERATE",
    "HASH_COLUMN",
    "KEY_HASH_COLUMN",
    "REASONS",
    "REASON_COLUMN",
    "Selection",
    "build_selection",
    "count_by_reason_sql",
    "rebuild_sql",
    "source_relation_sql",
]

HASH_COLUMN = "_sixtyfour_input_hash"
KEY_HASH_COLUMN = "_sixtyfour_key_hash"
REASON_COLUMN = "_sixtyfour_reason"
REASONS = ("new", "changed", "stale", "failed_retry", "refresh")
#: Reasons that ask a question again on purpose: their files get a run-specific Idempotency-Key.
DELIBERATE = frozenset({"stale", "failed_retry", "refresh"})


@dataclass(frozen=True)
class Selection:
    """The SQL of a selection and what it returns.

    ``sql`` returns the key columns, the inputs, the input hash (carried in the file, not researched), the
    key hash and the reason; ``hashed_sql`` is the cleaned source with both hashes, before the join with the
    target, which a resume uses to rebuild a lost file from the warehouse by its key hashes.
    """

    sql: str
    key: list[str]
    inputs: list[str]
    hashed_sql: str = ""
    params: tuple[Any, ...] = ()

    @property
    def sent_columns(self) -> list[str]:
        """Columns written to the files: key, inputs, and the input hash (carried, not researched)."""
        return [*self.key, *self.inputs, HASH_COLUMN]


def source_relation_sql(adapter: Adapter, sync: SyncSpec, ref_table: TableRef | None = None) -> str:
    """``SELECT * FROM <table|(sql)|ref> WHERE <where>`` for the sync's source."""
    src = sync.source
    if src.sql:
        return adapter.source_sql(sql=src.sql, where=src.where)
    table = ref_table if src.ref else TableRef(src.table or "", src.schema_, src.database)
    if table is None:
        raise ValueError(f"sync {sync.name}: source.ref {src.ref!r} was not resolved to a table")
    return adapter.source_sql(table=table, where=src.where)


def build_selection(
    adapter: Adapter,
    sync: SyncSpec,
    *,
    source_sql: str,
    inputs: Sequence[str],
    target: TableRef,
    target_columns: Mapping[str, LogicalType | str] | None,
    spec_hash: str,
    full_refresh: bool = False,
    limit: int | None = None,
    held_keys: tuple[str, Sequence[Any]] | None = None,
) -> Selection:
    """The selection query for a sync (``target_columns`` None: the target table does not exist yet).

    ``held_keys`` is SQL (and its parameters) returning key hashes that unfinished or held jobs own: those
    rows are left out, so a row is never in two jobs at once and a held job's rows are not bought again.
    Parameters of the returned SQL are those of ``held_keys``, in order (:attr:`Selection.params`).
    """
    q = adapter.quote
    key = list(sync.source.key)
    key_cols = ", ".join(f"c.{q(k, what='key column')}" for k in key)
    input_cols = "".join(f", c.{q(c, what='source column')}" for c in inputs)
    row_hash = adapter.row_hash_sql(list(inputs) or key, alias="c")
    key_hash = adapter.row_hash_sql(key, alias="c")
    clean = adapter.clean_source_sql(source_sql, key)
    hashed = (
        f"SELECT {key_cols}{input_cols}, {row_hash} AS {q(HASH_COLUMN)}, {key_hash} AS {q(KEY_HASH_COLUMN)} "
        f"FROM ({clean}) {adapter.subquery_alias('c')}"
    )
    out_cols = ", ".join(f"s.{q(c)}" for c in [*key, *inputs, HASH_COLUMN, KEY_HASH_COLUMN])
    hold = ""
    params: list[Any] = []
    if held_keys is not None:
        held_sql, held_params = held_keys
        hold = f" AND s.{q(KEY_HASH_COLUMN)} NOT IN ({held_sql})"
        params = list(held_params)

    if target_columns is None:
        reason = "'refresh'" if (full_refresh or sync.refresh.when == "always") else "'new'"
        sql = f"SELECT {out_cols}, {reason} AS {q(REASON_COLUMN)} FROM ({hashed}) {adapter.subquery_alias('s')}" + (
            f" WHERE 1 = 1{hold}" if hold else ""
        )
        order = ", ".join(f"{q(k)}" for k in key)
        sql = f"SELECT * FROM ({sql}) {adapter.subquery_alias('r')}"
    else:

        def col(name: str) -> str:
            stored = adapter.find_column(target_columns, name)
            return "NULL" if stored is None else f"t.{adapter.quote_char}{stored}{adapter.quote_char}"

        status, at = col(sync.bookkeeping("status")), col(sync.bookkeeping("enriched_at"))
        in_hash, sp_hash = col(sync.bookkeeping("input_hash")), col(sync.bookkeeping("spec_hash"))
        first_key = col(key[0])
        spec_lit = "'" + spec_hash.replace("'", "''") + "'"
        is_new = f"({first_key} IS NULL OR {status} IS NULL)"
        changed = (
            f"({in_hash} IS NULL OR {in_hash} <> s.{q(HASH_COLUMN)} OR {sp_hash} IS NULL OR {sp_hash} <> {spec_lit})"
        )

        def older_than(seconds: float) -> str:
            if at == "NULL":
                return "TRUE"
            return f"({at} IS NULL OR {adapter.age_seconds_sql(at)} > {int(seconds)})"

        refresh = sync.refresh
        retry = (
            f"({status} = 'failed' AND {older_than(refresh.retry_failed_after.total_seconds())})"
            if refresh.retry_failed_after is not None
            else "FALSE"
        )
        stale = (
            f"({status} = 'enriched' AND {older_than(refresh.max_age.total_seconds())})"
            if refresh.max_age is not None
            else "FALSE"
        )
        when = "always" if full_refresh else refresh.when
        cases = [f"WHEN {is_new} THEN 'new'"]
        if when in ("changed",):
            cases.append(f"WHEN {changed} THEN 'changed'")
        if when in ("changed", "stale"):
            cases.append(f"WHEN {stale} THEN 'stale'")
        cases.append(f"WHEN {retry} THEN 'failed_retry'")
        fallback = "'refresh'" if when == "always" else "NULL"
        reason = f"CASE {' '.join(cases)} ELSE {fallback} END"
        on = " AND ".join(f"t.{q(k)} = s.{q(k)}" if col(k) != "NULL" else "FALSE" for k in key)
        where = f" WHERE 1 = 1{hold}" if hold else ""
        inner = (
            f"SELECT {out_cols}, {reason} AS {q(REASON_COLUMN)} FROM ({hashed}) {adapter.subquery_alias('s')} "
            f"LEFT JOIN {adapter.table_sql(target)} t ON {on}{where}"
        )
        sql = f"SELECT * FROM ({inner}) {adapter.subquery_alias('r')} WHERE r.{q(REASON_COLUMN)} IS NOT NULL"
        order = ", ".join(f"r.{q(k)}" for k in key)
    sql += f" ORDER BY {order}"
    n = limit if limit is not None else sync.refresh.limit
    if n is not None:
        sql = adapter.limit_sql(sql, n)
    return Selection(sql=sql, key=key, inputs=list(inputs), hashed_sql=hashed, params=tuple(params))


def rebuild_sql(adapter: Adapter, selection: Selection, key_hashes_sql: str) -> str:
    """The rows of a lost file, rebuilt from the source: the hashed source rows whose key hash is listed.

    Ordered by key, as the selection orders them, so an unchanged source gives the same file again.
    """
    q = adapter.quote
    cols = ", ".join(f"h.{q(c)}" for c in [*selection.key, *selection.inputs, HASH_COLUMN, KEY_HASH_COLUMN])
    order = ", ".join(f"h.{q(k)}" for k in selection.key)
    return (
        f"SELECT {cols} FROM ({selection.hashed_sql}) {adapter.subquery_alias('h')} "
        f"WHERE h.{q(KEY_HASH_COLUMN)} IN ({key_hashes_sql}) ORDER BY {order}"
    )


def count_by_reason_sql(adapter: Adapter, selection: Selection) -> str:
    """``SELECT reason, count(*)`` over a selection, for ``plan``."""
    q = adapter.quote
    return (
        f"SELECT x.{q(REASON_COLUMN)}, COUNT(*) FROM ({selection.sql}) {adapter.subquery_alias('x')} "
        f"GROUP BY x.{q(REASON_COLUMN)}"
    )
