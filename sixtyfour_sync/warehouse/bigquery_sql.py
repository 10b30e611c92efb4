"""Pure BigQuery SQL pieces (no I/O): type names, parameter binding, statement kinds, staged Parquet."""

from __future__ import annotations

import datetime as dt
import decimal
import re
from collections.abc import Callable, Sequence
from typing import Any

import pyarrow as pa

from sixtyfour_sync.warehouse import cloud_sql
from sixtyfour_sync.warehouse.base import LogicalType, _literal_spans
from sixtyfour_sync.warehouse.cloud_sql import parquet_ready

__all__ = [
    "FROM_API",
    "TYPE_NAMES",
    "bind_params",
    "insert_if_absent",
    "is_dml",
    "merge_counts",
    "parquet_ready",
    "stage_schema",
    "stage_type",
]

_DML_RE = re.compile(r"^\s*(?:\(\s*)*(INSERT|UPDATE|DELETE|MERGE)\b", re.IGNORECASE)
_TRUNCATE_RE = re.compile(r"^\s*TRUNCATE\b", re.IGNORECASE)
TYPE_NAMES: dict[LogicalType, str] = {
    LogicalType.TEXT: "STRING",
    LogicalType.BIGINT: "INT64",
    LogicalType.DOUBLE: "FLOAT64",
    LogicalType.BOOLEAN: "BOOL",
    LogicalType.JSON: "JSON",
    LogicalType.TIMESTAMP: "TIMESTAMP",
}
# The REST API reports legacy names (INTEGER, FLOAT, BOOLEAN) for the standard SQL types.
FROM_API: dict[str, LogicalType] = {
    "STRING": LogicalType.TEXT,
    "INTEGER": LogicalType.BIGINT,
    "INT64": LogicalType.BIGINT,
    "FLOAT": LogicalType.DOUBLE,
    "FLOAT64": LogicalType.DOUBLE,
    "BOOLEAN": LogicalType.BOOLEAN,
    "BOOL": LogicalType.BOOLEAN,
    "JSON": LogicalType.JSON,
    "TIMESTAMP": LogicalType.TIMESTAMP,
}


def is_dml(sql: str) -> bool:
    """Whether a statement changes rows (and so must run inside the session's transaction)."""
    return bool(_DML_RE.match(sql) or _TRUNCATE_RE.match(sql))


def _param_type(value: Any) -> str:
    if isinstance(value, bool):
        return "BOOL"
    if isinstance(value, int):
        return "INT64"
    if isinstance(value, float):
        return "FLOAT64"
    if isinstance(value, decimal.Decimal):
        return "BIGNUMERIC"
    if isinstance(value, bytes):
        return "BYTES"
    if isinstance(value, dt.datetime):
        return "TIMESTAMP"
    if isinstance(value, dt.date):
        return "DATE"
    return "STRING"


def bind_params(sql: str, params: Sequence[Any]) -> tuple[str, list[tuple[str, Any]]]:
    """``?`` placeholders as BigQuery positional parameters ``(type, value)``; ``None`` becomes ``NULL``.

    A NULL query parameter needs a type, and BigQuery refuses to assign a NULL STRING to an INT64
    column: a ``NULL`` literal coerces to any type. Naive datetimes are taken as UTC.
    """
    positions = cloud_sql.qmark_positions(sql, _literal_spans(sql))
    if len(positions) != len(params):
        raise ValueError(f"the statement has {len(positions)} placeholder(s) but {len(params)} value(s) were given")
    keep_at, rendered, out = [], [], []
    for pos, value in zip(positions, params, strict=True):
        if value is None:
            keep_at.append(pos)
            rendered.append("NULL")
            continue
        if isinstance(value, dt.datetime) and value.tzinfo is None:
            value = value.replace(tzinfo=dt.timezone.utc)
        out.append((_param_type(value), value))
    return cloud_sql.substitute_qmarks(sql, keep_at, rendered), out


def stage_type(t: pa.DataType) -> str:
    """The BigQuery type a staged Arrow column loads into."""
    if pa.types.is_boolean(t):
        return "BOOL"
    if pa.types.is_integer(t):
        return "INT64"
    if pa.types.is_floating(t):
        return "FLOAT64"
    if pa.types.is_decimal(t):
        return "BIGNUMERIC" if t.precision > 38 or t.scale > 9 else "NUMERIC"
    if pa.types.is_timestamp(t):
        return "TIMESTAMP"
    if pa.types.is_date(t):
        return "DATE"
    if pa.types.is_binary(t) or pa.types.is_large_binary(t):
        return "BYTES"
    return "STRING"


def stage_schema(data: pa.Table) -> list[tuple[str, str]]:
    """``(name, BigQuery type)`` of each staged column."""
    return [(f.name, stage_type(f.type)) for f in data.schema]


def insert_if_absent(
    target: str, columns: Sequence[str], key_columns: Sequence[str], types: Sequence[str], quote: Callable[[str], str]
) -> str:
    """One MERGE inserting one row (a ``?`` per column, in order) unless a row with its key exists.

    A MERGE, not ``INSERT ... WHERE NOT EXISTS``: BigQuery runs concurrent INSERTs side by side, while two
    mutating statements on one table are serialized (or one fails), so two first runs cannot both insert.
    Each value is cast to its column's type, so a NULL (bound as a ``NULL`` literal) keeps that type.
    """
    if not key_columns or any(k not in columns for k in key_columns):
        raise ValueError("insert_if_absent: the key columns must be among the columns")
    selects = ", ".join(f"CAST(? AS {t}) AS {quote(c)}" for c, t in zip(columns, types, strict=True))
    names = ", ".join(quote(c) for c in columns)
    match = " AND ".join(f"t.{quote(k)} = v.{quote(k)}" for k in key_columns)
    return (
        f"MERGE INTO {target} AS t USING (SELECT {selects}) AS v ON {match} "
        f"WHEN NOT MATCHED THEN INSERT ({names}) VALUES ({', '.join('v.' + quote(c) for c in columns)})"
    )


def merge_counts(stats: Any, affected: int | None, staged: int, matched: int | None) -> tuple[int, int]:
    """``(inserted, updated)`` of a MERGE: from the job's ``dmlStats`` when the API reports them, else from
    the staged keys that matched an existing row (counted before the MERGE) and the affected row count."""
    if stats is not None:
        return int(stats.inserted_row_count or 0), int(stats.updated_row_count or 0)
    hits = staged if matched is None else matched
    return staged - hits, int(affected or 0) - (staged - hits)
