"""The warehouse layer's value types, and each dialect's type names as data.

Nothing here does I/O or builds SQL. A dialect's column types are one row of :data:`TYPE_NAMES`
(plus :data:`KEY_TYPE_NAMES` where a key column needs another type); reading a stored type name back
to a :class:`LogicalType` goes through :func:`logical_type_of` with the same shared tables for every
dialect, so a new dialect adds data, not code.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Literal

import pyarrow as pa

__all__ = [
    "KEY_TYPE_NAMES",
    "TYPE_NAMES",
    "Capabilities",
    "Column",
    "EnsureResult",
    "Guard",
    "KeyReport",
    "LogicalType",
    "Quoting",
    "TableRef",
    "UpsertPart",
    "UpsertResult",
    "is_compatible",
    "logical_type_of",
    "type_label",
]


class LogicalType(str, Enum):
    """The column types the sync writes; each dialect names them in :data:`TYPE_NAMES`."""

    TEXT = "text"
    BIGINT = "bigint"
    DOUBLE = "double"
    BOOLEAN = "boolean"
    JSON = "json"
    #: A UTC, timezone-aware timestamp.
    TIMESTAMP = "timestamp"


@dataclass(frozen=True)
class TableRef:
    """A table name, optionally qualified; ``schema=None`` means the adapter's default schema."""

    name: str
    schema: str | None = None
    database: str | None = None

    def __str__(self) -> str:
        return ".".join(p for p in (self.database, self.schema, self.name) if p)


@dataclass(frozen=True)
class Column:
    """A column the sync creates or owns."""

    name: str
    type: LogicalType
    nullable: bool = True
    #: The column's own SQL type, written as it is instead of the dialect's name for ``type`` (a key column
    #: keeping its source key's type: ``UUID``, ``NUMERIC(20,0)``...).
    sql: str | None = None


@dataclass(frozen=True)
class Capabilities:
    """What a dialect can do, declared as data so callers never test the adapter's class."""

    upsert: Literal["merge", "update_insert", "on_conflict", "on_duplicate_key"]
    #: How rows reach the warehouse before the upsert: "arrow", "copy", "parquet_put_copy", "executemany".
    staging: str
    #: The native JSON type ("JSON", "JSONB", "VARIANT") or None when JSON is stored as text.
    json_type: str | None
    #: How the warehouse folds unquoted names.
    identifier_case: Literal["lower", "upper", "preserve"]
    max_identifier_length: int
    transactional_ddl: bool
    #: New rows merged per transaction when results arrive together: fewer, larger transactions where a
    #: statement is costly (DuckDB writes an insert of a quarter million rows straight to its table, three
    #: times faster than one of 100,000 through its log); smaller where the server's insert blocks the rest
    #: of the run for longer than it saves (PostgreSQL: measured by bench/pipeline.py).
    insert_batch_rows: int = 250_000
    #: Whether an upsert whose ``before_commit`` raises leaves nothing behind (every statement one transaction):
    #: only then can the target be tried with a row that is rolled back (Databricks commits each statement).
    atomic_upsert: bool = True


@dataclass(frozen=True)
class Quoting:
    """Which names are quoted as written (True) or fold like unquoted names (False), as dbt's ``quoting:``.

    ``None`` keeps the SQLAlchemy convention: an all-lower-case name folds, any other is exact. dbt-snowflake
    defaults every part to False (``dbt_John`` is the schema ``DBT_JOHN``); other dbt adapters quote.
    ``column`` has no dbt project key: it plays the part of dbt's per-column ``quote:``.
    """

    database: bool | None = None
    schema: bool | None = None
    identifier: bool | None = None
    column: bool | None = None

    def over(self, fallback: Quoting | None) -> Quoting:
        """This policy, with ``fallback``'s settings where this one has none."""
        if fallback is None:
            return self
        return Quoting(
            *(
                mine if mine is not None else theirs
                for mine, theirs in zip(self._parts(), fallback._parts(), strict=True)
            )
        )

    def _parts(self) -> tuple[bool | None, bool | None, bool | None, bool | None]:
        return (self.database, self.schema, self.identifier, self.column)

    @classmethod
    def from_config(cls, config: Any) -> Quoting | None:
        """From a profile's ``quoting:`` block (anything with these four attributes, or None)."""
        if config is None:
            return None
        return cls(config.database, config.schema_, config.identifier, config.column)

    def of(self, kind: NameKind) -> bool | None:
        """The setting for one kind of name."""
        return {"database": self.database, "schema": self.schema, "identifier": self.identifier, "column": self.column}[
            kind
        ]


#: What a name is, for :class:`Quoting`: a database, a schema, a table ("identifier" in dbt) or a column.
NameKind = Literal["database", "schema", "identifier", "column"]


@dataclass(frozen=True)
class KeyReport:
    """NULL and duplicate keys found in a source query (counted in SQL), with samples."""

    key: tuple[str, ...]
    total_rows: int
    null_key_rows: int
    duplicate_keys: int
    duplicate_rows: int
    #: Key values of sample rows with a NULL key part (``None`` marks the NULL parts).
    null_samples: tuple[tuple[Any, ...], ...] = ()
    #: ``(key values, occurrences)`` of sample duplicated keys, most frequent first.
    duplicate_samples: tuple[tuple[tuple[Any, ...], int], ...] = ()

    @property
    def ok(self) -> bool:
        """True when every row has a complete, unique key."""
        return self.null_key_rows == 0 and self.duplicate_keys == 0

    @property
    def clean_rows(self) -> int:
        """Rows that ``clean_source_sql`` keeps."""
        return self.total_rows - self.null_key_rows - self.duplicate_rows

    def describe(self) -> str:
        """One human sentence about the problems, or "" when there are none."""
        parts = []
        if self.null_key_rows:
            parts.append(f"{self.null_key_rows:,} row(s) with a NULL key part (e.g. {list(self.null_samples[:3])})")
        if self.duplicate_keys:
            sample = ", ".join(f"{k!r} x{n}" for k, n in self.duplicate_samples[:3])
            parts.append(
                f"{self.duplicate_keys:,} duplicated key(s) over {self.duplicate_rows:,} row(s) (e.g. {sample})"
            )
        if not parts:
            return ""
        return f"key ({', '.join(self.key)}): " + "; ".join(parts) + "; these rows are skipped"


@dataclass(frozen=True)
class EnsureResult:
    """What ``ensure_table`` did."""

    created: bool
    added_columns: tuple[str, ...] = ()
    #: The table's columns afterwards, actual names as stored.
    columns: Mapping[str, LogicalType | str] = field(default_factory=dict)


@dataclass(frozen=True)
class Guard:
    """When an upsert may overwrite one column of an existing row (the overwrite rule, docs/config.md).

    ``when`` names a staged boolean column: the value is written only where it is true. ``same`` names
    columns (staged and stored, e.g. the input and spec hashes) that are all equal when the stored row
    answered the same question as the staged one. With ``not_below`` (a column staged and stored, e.g.
    ``email_confidence``) the value is also kept where the stored value is higher than the staged one (a
    NULL stored value never blocks), but only between answers to the same question when ``same`` is given.
    ``clear`` names a staged boolean column: where it is true and the stored row answered another question
    (with no ``same`` columns: wherever it is true), the stored value is cleared (NULL) rather than left
    standing as if it answered this one. A new row gets
    the value where ``when`` is true, else NULL. The ``when`` and ``clear`` columns are never written.
    """

    when: str
    not_below: str | None = None
    same: tuple[str, ...] = ()
    clear: str | None = None

    @property
    def flags(self) -> tuple[str, ...]:
        """The staged boolean columns this guard reads."""
        return (self.when,) if self.clear is None else (self.when, self.clear)

    @property
    def compared(self) -> tuple[str, ...]:
        """The columns compared between the stage and the stored row."""
        return (*self.same, *((self.not_below,) if self.not_below else ()))


@dataclass(frozen=True)
class UpsertPart:
    """Rows keyed by the upsert key; for existing rows only ``set_columns`` are written.

    ``guards`` maps a set column to the :class:`Guard` deciding, row by row, whether it is written.
    ``insert_only`` is the caller's promise that no key exists in the target yet: the rows are
    inserted without looking for matches (a first run's fast path); ``unique_keys`` that no key is twice in
    the rows. Columns holding lists or structs are written as JSON text.
    """

    data: pa.Table
    set_columns: Sequence[str]
    guards: Mapping[str, Guard] = field(default_factory=dict)
    insert_only: bool = False
    #: The caller's promise that no key appears twice in ``data`` (the check is skipped; NULL keys are
    #: still refused).
    unique_keys: bool = False


@dataclass(frozen=True)
class AlsoWrite:
    """Rows an upsert writes into another table in the same transaction (inserted or upserted by ``key``), such as
    the ledger's copy of what the upsert writes; their counts are not the upsert's."""

    table: TableRef
    key: Sequence[str]
    parts: Sequence[UpsertPart]


@dataclass(frozen=True)
class UpsertResult:
    """Row counts of one upsert."""

    inserted: int = 0
    updated: int = 0
    #: Rows dropped before staging because a later row in the same part had the same key.
    duplicates_dropped: int = 0
    #: Values changed so the warehouse can store them (a NUL removed from text, an infinite float made NULL).
    adjusted: int = 0

    @property
    def rows(self) -> int:
        """Rows written (inserted + updated)."""
        return self.inserted + self.updated

    def __add__(self, other: UpsertResult) -> UpsertResult:
        return UpsertResult(
            self.inserted + other.inserted,
            self.updated + other.updated,
            self.duplicates_dropped + other.duplicates_dropped,
            self.adjusted + other.adjusted,
        )


# --------------------------------------------------------------------------------------------------
# Type names per dialect (what CREATE TABLE writes)

_L = LogicalType

#: The column type each dialect creates for each logical type.
TYPE_NAMES: Mapping[str, Mapping[LogicalType, str]] = {
    "duckdb": {
        _L.TEXT: "VARCHAR",
        _L.BIGINT: "BIGINT",
        _L.DOUBLE: "DOUBLE",
        _L.BOOLEAN: "BOOLEAN",
        _L.JSON: "JSON",
        _L.TIMESTAMP: "TIMESTAMPTZ",
    },
    "postgres": {
        _L.TEXT: "TEXT",
        _L.BIGINT: "BIGINT",
        _L.DOUBLE: "DOUBLE PRECISION",
        _L.BOOLEAN: "BOOLEAN",
        _L.JSON: "JSONB",
        _L.TIMESTAMP: "TIMESTAMPTZ",
    },
    "snowflake": {
        _L.TEXT: "VARCHAR",
        _L.BIGINT: "BIGINT",
        _L.DOUBLE: "DOUBLE",
        _L.BOOLEAN: "BOOLEAN",
        _L.JSON: "VARIANT",
        _L.TIMESTAMP: "TIMESTAMP_TZ",
    },
    "mysql": {
        # TEXT stops at 64 KB: an answer (a summary, a JSON list) can be longer.
        _L.TEXT: "LONGTEXT",
        _L.BIGINT: "BIGINT",
        _L.DOUBLE: "DOUBLE",
        _L.BOOLEAN: "BOOLEAN",
        _L.JSON: "JSON",
        # UTC held in DATETIME: MySQL's TIMESTAMP stops in 2038 and shifts with the session time zone.
        _L.TIMESTAMP: "DATETIME(6)",
    },
    "sqlite": {
        _L.TEXT: "TEXT",
        _L.BIGINT: "BIGINT",
        _L.DOUBLE: "DOUBLE",
        _L.BOOLEAN: "BOOLEAN",
        # A JSON-named column has NUMERIC affinity in SQLite and would turn '123' into 123.
        _L.JSON: "TEXT",
        _L.TIMESTAMP: "TIMESTAMP",
    },
    "bigquery": {
        _L.TEXT: "STRING",
        _L.BIGINT: "INT64",
        _L.DOUBLE: "FLOAT64",
        _L.BOOLEAN: "BOOL",
        _L.JSON: "JSON",
        _L.TIMESTAMP: "TIMESTAMP",
    },
    "databricks": {
        _L.TEXT: "STRING",
        _L.BIGINT: "BIGINT",
        _L.DOUBLE: "DOUBLE",
        _L.BOOLEAN: "BOOLEAN",
        _L.JSON: "STRING",
        _L.TIMESTAMP: "TIMESTAMP",
    },
    "generic": {
        _L.TEXT: "TEXT",
        _L.BIGINT: "BIGINT",
        _L.DOUBLE: "DOUBLE PRECISION",
        _L.BOOLEAN: "BOOLEAN",
        _L.JSON: "TEXT",
        _L.TIMESTAMP: "TIMESTAMP WITH TIME ZONE",
    },
    "generic_upper": {
        _L.TEXT: "VARCHAR(4000)",
        _L.BIGINT: "BIGINT",
        _L.DOUBLE: "DOUBLE PRECISION",
        _L.BOOLEAN: "BOOLEAN",
        _L.JSON: "VARCHAR(4000)",
        _L.TIMESTAMP: "TIMESTAMP WITH TIME ZONE",
    },
}

#: Where a key column needs another type than a plain column (MySQL: a TEXT column cannot be a key).
KEY_TYPE_NAMES: Mapping[str, Mapping[LogicalType, str]] = {
    "mysql": {_L.TEXT: "VARCHAR(255)", _L.JSON: "VARCHAR(255)"},
}


# --------------------------------------------------------------------------------------------------
# Reading stored type names back (lower-cased, without parameters, as information_schema reports them)

_EXACT: dict[str, LogicalType] = {
    **dict.fromkeys(
        ["text", "varchar", "character varying", "string", "nvarchar", "longtext", "mediumtext", "clob"], _L.TEXT
    ),
    **dict.fromkeys(["bigint", "int8", "int64", "long"], _L.BIGINT),
    **dict.fromkeys(["double", "double precision", "float8", "float64"], _L.DOUBLE),
    **dict.fromkeys(["boolean", "bool"], _L.BOOLEAN),
    **dict.fromkeys(["json", "jsonb", "variant"], _L.JSON),
    **dict.fromkeys(["timestamp with time zone", "timestamptz", "timestamp_tz", "timestamp_ltz"], _L.TIMESTAMP),
}

#: Dialect-specific readings that differ from :data:`_EXACT` (checked first).
_DIALECT_EXACT: dict[str, dict[str, LogicalType]] = {
    # Snowflake reports NUMBER/TEXT/FLOAT; BIGINT is NUMBER(38,0) (see logical_type_of).
    "snowflake": {
        **dict.fromkeys(["float", "double", "real", "float8", "double precision"], _L.DOUBLE),
        **dict.fromkeys(["text", "varchar", "string"], _L.TEXT),
    },
    # BigQuery's API reports the legacy names (INTEGER, FLOAT, BOOLEAN); TIMESTAMP is an instant.
    "bigquery": {
        **dict.fromkeys(["integer", "int64"], _L.BIGINT),
        **dict.fromkeys(["float", "float64"], _L.DOUBLE),
        **dict.fromkeys(["boolean", "bool"], _L.BOOLEAN),
        "string": _L.TEXT,
        "json": _L.JSON,
        "timestamp": _L.TIMESTAMP,
    },
    # Databricks' TIMESTAMP is an instant (TIMESTAMP_NTZ is the local one).
    "databricks": {"timestamp": _L.TIMESTAMP, "timestamp with time zone": _L.TIMESTAMP, "long": _L.BIGINT},
    # SQLite keeps the declared type name as written.
    "sqlite": {"timestamp": _L.TIMESTAMP, "datetime": _L.TIMESTAMP, "integer": _L.BIGINT},
}

_COMPATIBLE: dict[LogicalType, frozenset[str]] = {
    _L.TEXT: frozenset({"char", "character", "bpchar", "tinytext", "nchar", "name"}),
    _L.BIGINT: frozenset(
        {
            "integer",
            "int",
            "int4",
            "smallint",
            "int2",
            "tinyint",
            "mediumint",
            "hugeint",
            "number",
            "numeric",
            "decimal",
            "int32",
            "ubigint",
        }
    ),
    _L.DOUBLE: frozenset({"real", "float", "float4", "float32", "numeric", "decimal", "number"}),
    _L.BOOLEAN: frozenset({"tinyint", "bit"}),
    _L.JSON: frozenset(
        {
            "text",
            "varchar",
            "character varying",
            "string",
            "longtext",
            "mediumtext",
            "clob",
            "object",
            "array",
            "nvarchar",
        }
    ),
    _L.TIMESTAMP: frozenset(
        {
            "timestamp",
            "timestamp without time zone",
            "datetime",
            "timestamp_ntz",
            "timestamp_s",
            "timestamp_ms",
            "timestamp_ns",
        }
    ),
}

_PARAMS = re.compile(r"\(.*\)")


def _base(raw: str) -> str:
    return _PARAMS.sub("", raw).strip().lower()


def logical_type_of(raw: str, dialect: str = "generic") -> LogicalType | str:
    """A stored type name as a logical type, or the name unchanged when it is none of ours."""
    base = _base(raw)
    if dialect == "snowflake" and base == "number" and re.search(r",\s*0\)$", raw.strip()):
        return _L.BIGINT
    found = _DIALECT_EXACT.get(dialect, {}).get(base) or _EXACT.get(base)
    return found if found is not None else raw


def is_compatible(actual: LogicalType | str, wanted: LogicalType) -> bool:
    """Whether an existing column of type ``actual`` can hold values of ``wanted``."""
    if actual == wanted:
        return True
    if isinstance(actual, LogicalType):
        # JSON may live in a text column; the reverse would reject non-JSON strings.
        return wanted is _L.JSON and actual is _L.TEXT
    return _base(actual) in _COMPATIBLE[wanted]


def type_label(t: LogicalType | str) -> str:
    """A type for messages: the logical name, or the stored name."""
    return t.value if isinstance(t, LogicalType) else t
