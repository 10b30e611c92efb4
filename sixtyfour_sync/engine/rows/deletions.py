"""Target rows whose key is gone from the source: kept, flagged or deleted (``target.on_source_delete``).

One statement in the warehouse at the end of a sync's run, in a transaction of its own:

- ``flag``: ``_sixtyfour_source_deleted_at`` is set on the rows the sync wrote whose key the source no longer
  has (when a run first saw it gone), and cleared on flagged rows whose key is back;
- ``delete``: the rows the sync wrote whose key the source no longer has are deleted (only when the target
  holds nothing but this sync's columns: a row other tools or syncs also write is never removed).

"The source" is the table, query or model without its ``where`` (``on_source_delete_scope: source``), or with
it (``selection``); with a ``where``, the configuration must say which. Rows the sync never wrote (its status
column is NULL) are never touched. A target that is the source table itself loses its rows with the source's:
nothing to do there.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from sixtyfour_sync.config.models import SyncSpec
from sixtyfour_sync.engine.rows.select import key_join_sql, source_relation_sql
from sixtyfour_sync.errors import ConfigError, ConfigProblem
from sixtyfour_sync.warehouse.adapter import Adapter
from sixtyfour_sync.warehouse.keytypes import KeyType
from sixtyfour_sync.warehouse.sql.identifiers import strip_sql
from sixtyfour_sync.warehouse.types import LogicalType, TableRef

__all__ = ["Deletions", "check_delete", "deletion_statements", "scope_sql"]


@dataclass(frozen=True)
class Deletions:
    """What one run did to rows gone from the source."""

    flagged: int = 0
    unflagged: int = 0
    deleted: int = 0


def scope_sql(adapter: Adapter, spec: SyncSpec, ref_table: TableRef | None) -> str:
    """The relation whose keys count as "in the source"."""
    if spec.target.on_source_delete_scope == "selection" or not spec.source.where:
        return source_relation_sql(adapter, spec, ref_table)
    unfiltered = spec.model_copy(update={"source": spec.source.model_copy(update={"where": None})})
    return source_relation_sql(adapter, unfiltered, ref_table)


def _gone(
    adapter: Adapter,
    spec: SyncSpec,
    target: str,
    source: str,
    columns: Mapping[str, LogicalType | str],
    key_types: Mapping[str, KeyType] | None,
) -> str:
    """SQL true for a target row (the unaliased ``target``) whose key the source does not have (compared like
    with like: see :func:`~sixtyfour_sync.engine.rows.select.key_join_sql`)."""
    on = " AND ".join(
        f"{key_join_sql(adapter, 's.' + adapter.quote(k, what='key column'), k, key_types, columns)} = "
        f"{target}.{adapter.quote(k, what='key column')}"
        for k in spec.source.key
    )
    inner = strip_sql(source, adapter.dialect.sqlglot)
    return f"NOT EXISTS (SELECT 1 FROM ({inner}) {adapter.subquery_alias('s')} WHERE {on})"


def deletion_statements(
    adapter: Adapter,
    spec: SyncSpec,
    target: TableRef,
    columns: Mapping[str, LogicalType | str],
    source: str,
    key_types: Mapping[str, KeyType] | None = None,
) -> list[tuple[str, str]]:
    """The statements a run executes, each with what its row count means (``flagged``, ``unflagged`` or
    ``deleted``). ``columns``: the target's columns as stored (names as the warehouse spells them)."""
    table = adapter.table_sql(target)
    alias = adapter.dialect.dml_alias
    t = "t" if alias else table  # how the statement's subquery and conditions name the target
    named = f"{table} AS t" if alias else table

    def stored(name: str) -> str:
        found = adapter.find_column(columns, name)
        if found is None:
            raise ConfigError(f"the target {target} has no column {name!r}", hint="run once to add it")
        return f"{adapter.quote_char}{found}{adapter.quote_char}"

    owned = f"{t}.{stored(spec.bookkeeping('status'))} IS NOT NULL"
    gone = _gone(adapter, spec, t, source, columns, key_types)
    if spec.target.on_source_delete == "delete":
        return [(f"DELETE FROM {named} WHERE {owned} AND {gone}", "deleted")]
    flag = stored(spec.bookkeeping("source_deleted_at"))
    now = adapter.now_sql()
    return [
        (f"UPDATE {named} SET {flag} = {now} WHERE {owned} AND {t}.{flag} IS NULL AND {gone}", "flagged"),
        (f"UPDATE {named} SET {flag} = NULL WHERE {t}.{flag} IS NOT NULL AND NOT ({gone})", "unflagged"),
    ]


def check_delete(
    spec: SyncSpec, columns: Mapping[str, LogicalType | str], owned: Sequence[str], key: Sequence[str], *, where: str
) -> None:
    """``delete`` removes whole rows: refuse it on a target holding columns this sync does not own."""
    mine = {c.lower() for c in (*owned, *key)}
    others = sorted(c for c in columns if c.lower() not in mine)
    if spec.target.on_source_delete == "delete" and others:
        raise ConfigError(
            problems=[
                ConfigProblem(
                    where,
                    f"{spec.name}.target.on_source_delete",
                    f"delete removes whole rows, but the target holds columns this sync does not own "
                    f"({', '.join(others[:5])}{', ...' if len(others) > 5 else ''}): their values would go too",
                    hint="use on_source_delete: flag, or give the sync a table of its own",
                )
            ]
        )
