"""The small statements a :class:`~sixtyfour_sync.warehouse.session.Session` runs for the ledger (pure)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from sixtyfour_sync.warehouse.sql.identifiers import Names
from sixtyfour_sync.warehouse.types import TableRef

__all__ = ["delete_sql", "insert_sql", "select_sql", "update_sql", "where_sql"]


def where_sql(names: Names, where: Mapping[str, Any], *, table: TableRef | str = "") -> tuple[str, list[Any]]:
    """`` WHERE a = ? AND b IS NULL`` for an equality mapping (empty string when none), and its params."""
    if not where:
        return "", []
    terms, params = [], []
    for col, value in where.items():
        q = names.quote(col, what=f"column of {table}")
        if value is None:
            terms.append(f"{q} IS NULL")
        else:
            terms.append(f"{q} = ?")
            params.append(value)
    return " WHERE " + " AND ".join(terms), params


def insert_sql(names: Names, table: TableRef, columns: Sequence[str]) -> str:
    """``INSERT INTO t (a, b) VALUES (?, ?)``."""
    cols = names.columns(columns, what=f"column of {table}")
    return f"INSERT INTO {names.table(table)} ({cols}) VALUES ({', '.join('?' for _ in columns)})"


def update_sql(
    names: Names, table: TableRef, columns: Sequence[str], where: Mapping[str, Any]
) -> tuple[str, list[Any]]:
    """``UPDATE t SET a = ?, b = ? WHERE ...`` and the WHERE's params (the SET values come first)."""
    if not columns:
        raise ValueError(f"update of {table}: no values to set")
    sets = ", ".join(f"{names.quote(c, what=f'column of {table}')} = ?" for c in columns)
    where_text, params = where_sql(names, where, table=table)
    return f"UPDATE {names.table(table)} SET {sets}{where_text}", params


def delete_sql(names: Names, table: TableRef, where: Mapping[str, Any]) -> tuple[str, list[Any]]:
    """``DELETE FROM t WHERE ...`` and its params."""
    where_text, params = where_sql(names, where, table=table)
    return f"DELETE FROM {names.table(table)}{where_text}", params


def select_sql(
    names: Names,
    table: TableRef,
    where: Mapping[str, Any] | None = None,
    columns: Sequence[str] | None = None,
    order_by: Sequence[str] | None = None,
) -> tuple[str, list[Any]]:
    """``SELECT cols FROM t WHERE ... ORDER BY ...`` and its params."""
    cols = names.columns(columns, what=f"column of {table}") if columns else "*"
    where_text, params = where_sql(names, where or {}, table=table)
    sql = f"SELECT {cols} FROM {names.table(table)}{where_text}"
    if order_by:
        sql += " ORDER BY " + ", ".join(names.order_term(o, what=f"order_by of {table}") for o in order_by)
    return sql, params
