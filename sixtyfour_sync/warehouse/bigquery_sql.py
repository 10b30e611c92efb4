"""Pure BigQuery SQL pieces (no I/O): type names, parameter binding, statement kinds, staged Parquet."""

from __future__ import annotations

import datetime as dt
import decimal
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import pyarrow as pa

from sixtyfour_sync.errors import ConfigError, UnsafeIdentifierError
from sixtyfour_sync.warehouse import cloud_sql
from sixtyfour_sync.warehouse.cloud_sql import parquet_ready
from sixtyfour_sync.warehouse.sql.identifiers import Names
from sixtyfour_sync.warehouse.sql.placeholders import placeholder_positions
from sixtyfour_sync.warehouse.types import TableRef

__all__ = [
    "BigQueryNames",
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
_PROJECT_RE = re.compile(r"(?:[a-z][a-z0-9.-]*[a-z0-9]:)?[a-z][a-z0-9-]*[a-z0-9]")


def validate_project(name: str, *, what: str) -> str:
    """A project id (lower-case letters, digits, hyphens; optionally ``domain:``-scoped)."""
    if not isinstance(name, str) or not _PROJECT_RE.fullmatch(name) or len(name) > 127:
        raise UnsafeIdentifierError(
            f"{what}: {name!r} is not a valid BigQuery project id",
            hint="use the project id (lower-case letters, digits and '-'), not its display name",
        )
    return name


@dataclass(frozen=True)
class BigQueryNames(Names):
    """BigQuery's names: every table is ```project`.`dataset`.`table``` (the profile's project by default).

    A bare ``dataset.table`` would resolve in the project that runs the job, which ``execution_project``
    may make another one. Project ids hold hyphens and are checked against their own pattern.
    """

    project: str = ""

    def table(self, table: TableRef) -> str:
        """```project`.`dataset`.`table``` with each part quoted as written (BigQuery keeps their case)."""
        project = validate_project(table.database or self.project, what=f"project of table {table}")
        dataset = self.schema_of(table)
        if not dataset:
            raise ConfigError(f"bigquery: table {table} has no dataset and the profile sets none")
        ds = self.quote(dataset, what=f"dataset of table {table}", kind="schema")
        return f"`{project}`.{ds}.{self.quote(table.name, what='table name', kind='identifier')}"


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
    positions = list(placeholder_positions(sql, "bigquery"))
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
