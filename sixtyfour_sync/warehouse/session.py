"""A :class:`Session`: one open transaction on an adapter's connection.

Statements use ``?`` placeholders; each backend converts them for its driver. A backend implements
``_execute`` (returning the affected row count), ``_query`` (column names and rows), ``_commit`` and
``_rollback``; ``_executemany`` and ``_close`` are optional.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from sixtyfour_sync.warehouse.sql import dml
from sixtyfour_sync.warehouse.types import TableRef, UpsertPart, UpsertResult

if TYPE_CHECKING:
    from sixtyfour_sync.warehouse.adapter import Adapter

__all__ = ["Session"]


class Session(ABC):
    """One open transaction (see the module docstring)."""

    def __init__(self, adapter: Adapter[Any]) -> None:
        self.adapter = adapter

    # -- what a backend implements
    @abstractmethod
    def _execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        """Run one statement; return the affected row count (-1 only for statements that have none)."""

    @abstractmethod
    def _query(self, sql: str, params: Sequence[Any] = ()) -> tuple[list[str], list[tuple[Any, ...]]]:
        """Run a query; return (column names, rows)."""

    @abstractmethod
    def _commit(self) -> None:
        """Commit the transaction."""

    @abstractmethod
    def _rollback(self) -> None:
        """Roll the transaction back."""

    def _executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        """Run one statement for many parameter rows (backends batch this)."""
        for row in rows:
            self._execute(sql, row)

    def _close(self) -> None:  # noqa: B027 - optional hook
        """Release per-transaction resources."""

    # -- public API
    def _params(self, params: Sequence[Any]) -> list[Any]:
        return [self.adapter.adapt_value(v) for v in params]

    def execute(self, sql: str, params: Sequence[Any] = ()) -> None:
        """Run one statement (``?`` placeholders)."""
        with self.adapter._errors("running SQL", sql):
            self._execute(sql, self._params(params))

    def execute_count(self, sql: str, params: Sequence[Any] = ()) -> int:
        """Run one statement and return the number of rows it inserted, updated or deleted."""
        with self.adapter._errors("running SQL", sql):
            return self._execute(sql, self._params(params))

    def fetchall(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """Run a query and return every row."""
        with self.adapter._errors("running SQL", sql):
            return self._query(sql, self._params(params))[1]

    def fetchone(self, sql: str, params: Sequence[Any] = ()) -> tuple[Any, ...] | None:
        """Run a query and return the first row, or None."""
        rows = self.fetchall(sql, params)
        return rows[0] if rows else None

    def insert(self, table: TableRef, rows: Sequence[Mapping[str, Any]]) -> None:
        """Insert rows (all with the same keys) into ``table``."""
        if not rows:
            return
        cols = list(rows[0].keys())
        for r in rows[1:]:
            if list(r.keys()) != cols:
                raise ValueError(f"insert into {table}: every row must have the same columns {cols}")
        sql = dml.insert_sql(self.adapter.names, table, cols)
        with self.adapter._errors("running SQL", sql):
            self._executemany(sql, [self._params([r[c] for c in cols]) for r in rows])

    def insert_if_absent(self, table: TableRef, row: Mapping[str, Any], key: Sequence[str]) -> bool:
        """Insert ``row`` unless a row with its ``key`` values exists; True when it was inserted.

        One statement (:meth:`Adapter.insert_if_absent_sql`); where the backend can only detect a racing
        insert by its primary key (MySQL), that duplicate-key error also means False.
        """
        cols = list(row.keys())
        sql = self.adapter.insert_if_absent_sql(table, cols, key)
        try:
            with self.adapter._errors("running SQL", sql):
                return self._execute(sql, self._params([row[c] for c in cols])) > 0
        except Exception as exc:
            if self.adapter._is_duplicate_key(exc):
                return False
            raise

    def update(self, table: TableRef, values: Mapping[str, Any], where: Mapping[str, Any]) -> int:
        """``UPDATE table SET values WHERE where`` (equality, None means IS NULL); returns rows changed."""
        sql, where_params = dml.update_sql(self.adapter.names, table, list(values), where)
        with self.adapter._errors("running SQL", sql):
            return self._execute(sql, self._params([*values.values(), *where_params]))

    def delete(self, table: TableRef, where: Mapping[str, Any]) -> int:
        """``DELETE FROM table WHERE where``; returns rows deleted."""
        sql, params = dml.delete_sql(self.adapter.names, table, where)
        with self.adapter._errors("running SQL", sql):
            return self._execute(sql, self._params(params))

    def select(
        self,
        table: TableRef,
        where: Mapping[str, Any] | None = None,
        columns: Sequence[str] | None = None,
        order_by: Sequence[str] | None = None,
    ) -> list[dict[str, Any]]:
        """Rows of ``table`` as dicts keyed by the requested column names (or the stored names)."""
        a = self.adapter
        sql, params = dml.select_sql(a.names, table, where, columns, order_by)
        with a._errors("running SQL", sql):
            names, rows = self._query(sql, self._params(params))
        keys = list(columns) if columns else [a.denormalize_identifier(n) for n in names]
        return [dict(zip(keys, row, strict=True)) for row in rows]

    def upsert(self, table: TableRef, key: Sequence[str], parts: Sequence[UpsertPart]) -> UpsertResult:
        """:meth:`Adapter.upsert` inside this transaction."""
        return self.adapter._upsert_in_session(self, table, key, parts)
