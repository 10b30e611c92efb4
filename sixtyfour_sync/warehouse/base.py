"""The warehouse adapter interface and the logic every backend shares.

An :class:`Adapter` is one connection to one warehouse target. The sync engine uses it to create and
evolve the target table (:meth:`Adapter.ensure_table`), stream source rows as Arrow record batches
(:meth:`Adapter.stream`), build selection SQL with the adapter's quoting and dialect functions, upsert
enriched rows together with its ledger writes in one transaction (:meth:`Adapter.upsert`), and keep
its small ledger tables through a :class:`Session`.

A backend subclasses :class:`Adapter` and overrides only what its dialect does differently: it must
implement :meth:`Adapter._open_session` (a :class:`Session` with ``_execute``/``_query``/``_commit``/
``_rollback``), :meth:`Adapter.stream` and, for speed, :meth:`Adapter._stage` (loading an Arrow table
into a temporary staging relation). Everything else - identifier validation and quoting, type
mapping, introspection through ``information_schema``, key checks, row hashing, DDL, the
update-then-insert upsert, Arrow deduplication and the Session conveniences - is built here from small SQL
builder methods a dialect can override.

Identifier rule (deliberate, the same on every backend):

1. Every identifier that reaches SQL is validated against a conservative pattern - ASCII letters,
   digits and ``_`` (and ``$`` where the dialect allows it in plain names), not starting with a digit,
   at most the dialect's maximum length. Quotes, semicolons, comment markers, whitespace, control
   characters and any non-ASCII character (confusables) raise :class:`UnsafeIdentifierError` naming
   the offending name and where it came from.
2. Every identifier is then *always* quoted.
3. Because quoting makes names case-sensitive on some warehouses, a name is first normalised to the
   dialect's folding (:meth:`Adapter.normalize_identifier`), following SQLAlchemy's convention: an
   all-lower-case name is "case-insensitive" and is written the way the warehouse folds unquoted
   names (Snowflake: ``lead_id`` becomes ``"LEAD_ID"``, so ``select lead_id from leads`` written by a
   user still works); a name with any upper-case letter is taken as exactly spelled. PostgreSQL folds
   to lower case, so lower-case names are unchanged there; DuckDB and MySQL compare names
   case-insensitively anyway.
4. Existing columns are matched with :meth:`Adapter.find_column`: exactly (after normalisation) first,
   then case-insensitively where the dialect is case-insensitive or the match is unique.
"""

from __future__ import annotations

import builtins
import json
import logging
import re
import uuid
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, ClassVar, Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from sixtyfour_sync._redact import redact
from sixtyfour_sync.errors import DataError, UnsafeIdentifierError, WarehouseError

if TYPE_CHECKING:
    from sixtyfour_sync.config.profiles import ResolvedTarget, TargetConfig

__all__ = [
    "Adapter",
    "Capabilities",
    "Column",
    "EnsureResult",
    "KeyReport",
    "LogicalType",
    "Session",
    "TableRef",
    "UpsertPart",
    "UpsertResult",
    "convert_qmark",
    "dedupe_last",
]

log = logging.getLogger("sixtyfour_sync.warehouse")


class LogicalType(str, Enum):
    """The column types the sync writes; each dialect maps them with :meth:`Adapter.sql_type`."""

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


@dataclass(frozen=True)
class Capabilities:
    """What a dialect can do, declared as data so callers never test the adapter's class."""

    upsert: Literal["merge", "update_insert", "on_conflict", "on_duplicate_key"]
    #: How rows reach the warehouse before the upsert: "arrow", "copy", "write_pandas", ...
    staging: str
    #: The native JSON type ("JSON", "JSONB", "VARIANT") or None when JSON is stored as text.
    json_type: str | None
    #: How the warehouse folds unquoted names.
    identifier_case: Literal["lower", "upper", "preserve"]
    max_identifier_length: int
    transactional_ddl: bool


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
        """Rows that :meth:`Adapter.clean_source_sql` keeps."""
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
    """What :meth:`Adapter.ensure_table` did."""

    created: bool
    added_columns: tuple[str, ...] = ()
    #: The table's columns afterwards, actual names as stored.
    columns: Mapping[str, LogicalType | str] = field(default_factory=dict)


@dataclass(frozen=True)
class UpsertPart:
    """Rows keyed by the upsert key; for existing rows only ``set_columns`` are written.

    Columns holding lists or structs are written as JSON text.
    """

    data: pa.Table
    set_columns: Sequence[str]


@dataclass(frozen=True)
class UpsertResult:
    """Row counts of one :meth:`Adapter.upsert`."""

    inserted: int = 0
    updated: int = 0
    #: Rows dropped before staging because a later row in the same part had the same key.
    duplicates_dropped: int = 0

    @property
    def rows(self) -> int:
        """Rows written (inserted + updated)."""
        return self.inserted + self.updated

    def __add__(self, other: UpsertResult) -> UpsertResult:
        return UpsertResult(
            self.inserted + other.inserted,
            self.updated + other.updated,
            self.duplicates_dropped + other.duplicates_dropped,
        )


# --------------------------------------------------------------------------------------------------
# Pure functions


def _literal_spans(sql: str) -> Iterator[tuple[int, int, bool]]:
    """Split SQL into (start, end, is_code) spans; quoted strings/identifiers and comments are not code."""
    i, n, start = 0, len(sql), 0
    while i < n:
        ch = sql[i]
        end = -1
        if ch in ("'", '"', "`"):
            j = i + 1
            while j < n:
                if sql[j] == ch:
                    if j + 1 < n and sql[j + 1] == ch:  # doubled quote inside the literal
                        j += 2
                        continue
                    break
                if sql[j] == "\\" and ch == "'":
                    j += 2
                    continue
                j += 1
            end = min(j + 1, n)
        elif sql.startswith("--", i):
            j = sql.find("\n", i)
            end = n if j < 0 else j
        elif sql.startswith("/*", i):
            j = sql.find("*/", i + 2)
            end = n if j < 0 else j + 2
        if end >= 0:
            if start < i:
                yield start, i, True
            yield i, end, False
            start = i = end
        else:
            i += 1
    if start < n:
        yield start, n, True


def convert_qmark(sql: str, placeholder: str = "%s", *, escape_percent: bool = True) -> str:
    """Turn ``?`` placeholders into a driver's style, leaving literals, quoted names and comments alone.

    With ``escape_percent`` every ``%`` (literals included) is doubled, as pyformat drivers such as
    psycopg and pymysql require once parameters are passed.
    """
    out: list[str] = []
    for start, end, code in _literal_spans(sql):
        piece = sql[start:end]
        if escape_percent:
            piece = piece.replace("%", "%%")
        if code:
            piece = piece.replace("?", placeholder)
        out.append(piece)
    return "".join(out)


def count_qmarks(sql: str) -> int:
    """The number of ``?`` placeholders outside literals and comments."""
    return sum(sql[s:e].count("?") for s, e, code in _literal_spans(sql) if code)


def has_duplicate_keys(table: pa.Table, key: Sequence[str]) -> bool:
    """Whether two rows share a key (NULL keys must have been rejected before).

    Most results arrive without duplicates, so this check is the common path and must be cheap: a
    single integer key is checked with a numpy sort (~20x faster here than Arrow's hash kernels);
    other keys by counting distinct values or groups.
    """
    n: int = table.num_rows
    if n <= 1:
        return False
    if len(key) == 1:
        col = table.column(key[0])
        if pa.types.is_integer(col.type):
            values = np.sort(col.to_numpy())
            return bool((values[1:] == values[:-1]).any())
        distinct: int = pc.count_distinct(col, mode="all").as_py()
        return distinct != n
    groups = table.select(list(key)).group_by(list(key), use_threads=False).aggregate([])
    groups_count: int = groups.num_rows
    return groups_count != n


def dedupe_last(table: pa.Table, key: Sequence[str]) -> tuple[pa.Table, int]:
    """Keep the last occurrence of each key (deterministic), in first-seen order of the kept rows.

    Returns the deduplicated table and how many rows were dropped.
    """
    n: int = table.num_rows
    if n <= 1 or not has_duplicate_keys(table, key):
        return table, 0
    idx_name = "__sixtyfour_row"
    while idx_name in table.column_names:
        idx_name += "_"
    keyed = table.select(list(key)).append_column(idx_name, pa.array(np.arange(n, dtype=np.int64)))
    last = keyed.group_by(list(key), use_threads=False).aggregate([(idx_name, "max")])
    keep = last.column(f"{idx_name}_max")
    if len(keep) == n:
        return table, 0
    keep = pc.sort_indices(pa.table({"i": keep}), [("i", "ascending")])
    positions = pc.take(last.column(f"{idx_name}_max"), keep)
    return table.take(positions), n - len(positions)


def json_columns_to_text(table: pa.Table) -> pa.Table:
    """Render list, struct and map columns as JSON text so every dialect can stage them."""
    for i, fld in enumerate(table.schema):
        t = fld.type
        if pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_struct(t) or pa.types.is_map(t):
            values = [
                None if v is None else json.dumps(v, ensure_ascii=False, default=str, separators=(",", ":"))
                for v in table.column(i).to_pylist()
            ]
            table = table.set_column(i, pa.field(fld.name, pa.string()), pa.array(values, pa.string()))
    return table


def _safe_repr(values: Iterable[Any]) -> tuple[Any, ...]:
    return tuple(values)


# --------------------------------------------------------------------------------------------------
# Sessions


class Session(ABC):
    """One open transaction on the adapter's connection.

    Statements use ``?`` placeholders; backends convert them for their driver. A backend implements
    ``_execute`` (returning the affected row count, or -1 when the driver cannot tell), ``_query``
    (column names and rows), ``_commit`` and ``_rollback``; ``_executemany`` and ``_close`` are optional.
    """

    def __init__(self, adapter: Adapter) -> None:
        self.adapter = adapter

    # -- what a backend implements
    @abstractmethod
    def _execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        """Run one statement; return the affected row count or -1."""

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
    def execute(self, sql: str, params: Sequence[Any] = ()) -> None:
        """Run one statement (``?`` placeholders)."""
        with self.adapter._errors("running SQL", sql):
            self._execute(sql, params)

    def execute_count(self, sql: str, params: Sequence[Any] = ()) -> int:
        """Run one statement and return the affected row count (-1 when the driver cannot tell)."""
        with self.adapter._errors("running SQL", sql):
            return self._execute(sql, params)

    def fetchall(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """Run a query and return every row."""
        with self.adapter._errors("running SQL", sql):
            return self._query(sql, params)[1]

    def fetchone(self, sql: str, params: Sequence[Any] = ()) -> tuple[Any, ...] | None:
        """Run a query and return the first row, or None."""
        rows = self.fetchall(sql, params)
        return rows[0] if rows else None

    def insert(self, table: TableRef, rows: Sequence[Mapping[str, Any]]) -> None:
        """Insert rows (all with the same keys) into ``table``."""
        if not rows:
            return
        a = self.adapter
        cols = list(rows[0].keys())
        for r in rows[1:]:
            if list(r.keys()) != cols:
                raise ValueError(f"insert into {table}: every row must have the same columns {cols}")
        names = ", ".join(a.quote(c, what=f"column of {table}") for c in cols)
        sql = f"INSERT INTO {a.table_sql(table)} ({names}) VALUES ({', '.join('?' for _ in cols)})"
        with self.adapter._errors("running SQL", sql):
            self._executemany(sql, [[a.adapt_value(r[c]) for c in cols] for r in rows])

    def update(self, table: TableRef, values: Mapping[str, Any], where: Mapping[str, Any]) -> int:
        """``UPDATE table SET values WHERE where`` (equality, None means IS NULL); returns rows changed."""
        if not values:
            raise ValueError(f"update of {table}: no values to set")
        a = self.adapter
        sets = ", ".join(f"{a.quote(c, what=f'column of {table}')} = ?" for c in values)
        where_sql, where_params = a.where_sql(where, table=table)
        params = [a.adapt_value(v) for v in values.values()] + where_params
        sql = f"UPDATE {a.table_sql(table)} SET {sets}{where_sql}"
        with self.adapter._errors("running SQL", sql):
            return self._execute(sql, params)

    def delete(self, table: TableRef, where: Mapping[str, Any]) -> int:
        """``DELETE FROM table WHERE where``; returns rows deleted (-1 when unknown)."""
        a = self.adapter
        where_sql, params = a.where_sql(where, table=table)
        sql = f"DELETE FROM {a.table_sql(table)}{where_sql}"
        with self.adapter._errors("running SQL", sql):
            return self._execute(sql, params)

    def select(
        self,
        table: TableRef,
        where: Mapping[str, Any] | None = None,
        columns: Sequence[str] | None = None,
        order_by: Sequence[str] | None = None,
    ) -> list[dict[str, Any]]:
        """Rows of ``table`` as dicts keyed by the requested column names (or the stored names)."""
        a = self.adapter
        what = f"column of {table}"
        cols_sql = ", ".join(a.quote(c, what=what) for c in columns) if columns else "*"
        where_sql, params = a.where_sql(where or {}, table=table)
        sql = f"SELECT {cols_sql} FROM {a.table_sql(table)}{where_sql}"
        if order_by:
            sql += " ORDER BY " + ", ".join(a.order_term(o, what=f"order_by of {table}") for o in order_by)
        with self.adapter._errors("running SQL", sql):
            names, rows = self._query(sql, params)
        keys = list(columns) if columns else [a.denormalize_identifier(n) for n in names]
        return [dict(zip(keys, row, strict=True)) for row in rows]

    def upsert(
        self,
        table: TableRef,
        key: Sequence[str],
        parts: Sequence[UpsertPart],
    ) -> UpsertResult:
        """:meth:`Adapter.upsert` inside this transaction."""
        return self.adapter._upsert_in_session(self, table, key, parts)


# --------------------------------------------------------------------------------------------------
# Type compatibility (raw type names as information_schema reports them, lower-cased, no parameters)

_EXACT_TYPES: dict[str, LogicalType] = {
    **dict.fromkeys(
        ["text", "varchar", "character varying", "string", "nvarchar", "longtext", "mediumtext", "clob"],
        LogicalType.TEXT,
    ),
    **dict.fromkeys(["bigint", "int8", "int64", "long"], LogicalType.BIGINT),
    **dict.fromkeys(["double", "double precision", "float8", "float64"], LogicalType.DOUBLE),
    **dict.fromkeys(["boolean", "bool"], LogicalType.BOOLEAN),
    **dict.fromkeys(["json", "jsonb", "variant"], LogicalType.JSON),
    **dict.fromkeys(
        ["timestamp with time zone", "timestamptz", "timestamp_tz", "timestamp_ltz"], LogicalType.TIMESTAMP
    ),
}

_COMPATIBLE: dict[LogicalType, frozenset[str]] = {
    LogicalType.TEXT: frozenset({"char", "character", "bpchar", "tinytext", "nchar", "name"}),
    LogicalType.BIGINT: frozenset(
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
    LogicalType.DOUBLE: frozenset({"real", "float", "float4", "float32", "numeric", "decimal", "number"}),
    LogicalType.BOOLEAN: frozenset({"tinyint", "bit"}),
    LogicalType.JSON: frozenset(
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
    LogicalType.TIMESTAMP: frozenset(
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

_IDENT_FORBIDDEN_HINT = (
    "use letters, digits and '_' only, not starting with a digit; rename the column/table or select it under an alias"
)


# --------------------------------------------------------------------------------------------------
# Adapter


class Adapter(ABC):
    """One connection to one warehouse target (see the module docstring for the identifier rule)."""

    type: ClassVar[str]
    capabilities: ClassVar[Capabilities]
    #: Whether ``$`` is allowed in names (we quote anyway; this only widens validation).
    identifier_allows_dollar: ClassVar[bool] = False
    #: Whether the warehouse compares quoted names case-insensitively (DuckDB, MySQL columns).
    identifiers_case_insensitive: ClassVar[bool] = False
    #: The type name used by :meth:`text_sql` for casts to text.
    text_cast_type: ClassVar[str] = "VARCHAR"
    #: The quote character for identifiers.
    quote_char: ClassVar[str] = '"'

    default_schema: str | None

    def __init__(self, config: TargetConfig | None = None, *, project_dir: Path | None = None) -> None:
        self.config = config
        self.project_dir = project_dir
        self.default_schema = getattr(config, "schema", None) if config is not None else None
        ledger_schema = getattr(config, "ledger_schema", None) if config is not None else None
        #: Where the ledger tables live (the target schema unless the profile says otherwise).
        self.ledger_schema: str | None = ledger_schema or self.default_schema
        self._session: Session | None = None
        self._closed = False
        self._unique_cache: dict[tuple[str, str, tuple[str, ...]], bool] = {}

    # ------------------------------------------------------------------------------ lifecycle
    @classmethod
    def from_target(cls, target: ResolvedTarget | TargetConfig, *, project_dir: Path | None = None) -> Adapter:
        """Build an adapter from a resolved target or a bare config (does not connect)."""
        from sixtyfour_sync.config.profiles import ResolvedTarget

        if isinstance(target, ResolvedTarget):
            return cls(target.config, project_dir=project_dir or target.project_dir)
        return cls(target, project_dir=project_dir)

    def open(self) -> None:  # noqa: B027 - optional hook
        """Connect now (adapters otherwise connect on first use), so connection errors surface early."""

    def close(self) -> None:
        """Close the connection; the adapter cannot be used afterwards."""
        self._closed = True

    def __enter__(self) -> Adapter:
        return self

    def __exit__(
        self,
        exc_type: builtins.type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def describe(self) -> str:
        """Where this adapter points, safe to print (no secrets)."""
        return f"{self.type} target (schema {self.default_schema})"

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.describe()}>"

    # ------------------------------------------------------------------------------ errors
    def _driver_errors(self) -> tuple[builtins.type[BaseException], ...]:
        """The driver's exception classes that :meth:`_errors` converts to :class:`WarehouseError`."""
        return ()

    @contextmanager
    def _errors(self, doing: str, sql: str | None = None) -> Iterator[None]:
        """Convert driver errors raised inside the block to :class:`WarehouseError`, once, here."""
        kinds = self._driver_errors()
        if not kinds:
            yield
            return
        try:
            yield
        except kinds as exc:
            raise self._wrap_error(exc, doing, sql) from exc

    def _wrap_error(self, exc: BaseException, doing: str, sql: str | None = None) -> WarehouseError:
        text = redact(str(exc).strip()) or type(exc).__name__
        message = f"{self.type}: {doing} failed: {text}"
        if sql:
            short = " ".join(sql.split())
            message += f"\n  SQL: {redact(short[:300])}{'...' if len(short) > 300 else ''}"
        return WarehouseError(message)

    # ------------------------------------------------------------------------------ identifiers
    def normalize_identifier(self, name: str) -> str:
        """The stored spelling of a name we write: all-lower-case names follow the dialect's folding."""
        if self.capabilities.identifier_case == "upper" and name == name.lower():
            return name.upper()
        return name

    def denormalize_identifier(self, name: str) -> str:
        """The inverse of :meth:`normalize_identifier` for names read back (``LEAD_ID`` -> ``lead_id``)."""
        if self.capabilities.identifier_case == "upper" and name == name.upper():
            return name.lower()
        return name

    def validate_identifier(self, name: str, *, what: str) -> str:
        """Return ``name`` when it is a safe identifier, else raise :class:`UnsafeIdentifierError`."""
        if not isinstance(name, str) or not name:
            raise UnsafeIdentifierError(f"{what}: an empty name is not a valid identifier")
        pattern = r"[A-Za-z_][A-Za-z0-9_$]*" if self.identifier_allows_dollar else r"[A-Za-z_][A-Za-z0-9_]*"
        if not re.fullmatch(pattern, name):
            bad = next(
                (c for c in name if not (c.isascii() and (c.isalnum() or c == "_"))),
                name[0],
            )
            raise UnsafeIdentifierError(
                f"{what}: {name!r} is not a safe identifier for {self.type} (offending character {bad!r})",
                hint=_IDENT_FORBIDDEN_HINT,
            )
        limit = self.capabilities.max_identifier_length
        if len(name) > limit:
            raise UnsafeIdentifierError(
                f"{what}: {name!r} is {len(name)} characters; {self.type} allows at most {limit}",
                hint="use a shorter name (for struct fields, a shorter target.prefix or field name)",
            )
        return name

    def quote(self, name: str, *, what: str = "identifier") -> str:
        """Validate, normalise and quote one identifier (always quoted)."""
        self.validate_identifier(name, what=what)
        q = self.quote_char
        return q + self.normalize_identifier(name).replace(q, q + q) + q

    def table_sql(self, table: TableRef) -> str:
        """The qualified, quoted name of ``table`` (the default schema when it names none)."""
        schema = table.schema if table.schema is not None else self.default_schema
        parts = []
        if table.database:
            parts.append(self.quote(table.database, what=f"database of table {table}"))
        if schema:
            parts.append(self.quote(schema, what=f"schema of table {table}"))
        parts.append(self.quote(table.name, what="table name"))
        return ".".join(parts)

    def find_column(self, columns: Iterable[str], name: str) -> str | None:
        """The stored name in ``columns`` that ``name`` refers to, or None."""
        names = list(columns)
        wanted = self.normalize_identifier(name)
        if wanted in names:
            return wanted
        if name in names:
            return name
        folded = [c for c in names if c.lower() == name.lower()]
        if len(folded) == 1 or (folded and self.identifiers_case_insensitive):
            return folded[0]
        return None

    def order_term(self, term: str, *, what: str) -> str:
        """``name`` or ``name DESC``/``name ASC`` with the name quoted."""
        parts = term.split()
        if len(parts) == 2 and parts[1].upper() in ("ASC", "DESC"):
            return f"{self.quote(parts[0], what=what)} {parts[1].upper()}"
        return self.quote(term, what=what)

    def where_sql(self, where: Mapping[str, Any], *, table: TableRef | str = "") -> tuple[str, list[Any]]:
        """`` WHERE a = ? AND b IS NULL`` for an equality mapping (empty string when none)."""
        if not where:
            return "", []
        terms, params = [], []
        for col, value in where.items():
            q = self.quote(col, what=f"column of {table}")
            if value is None:
                terms.append(f"{q} IS NULL")
            else:
                terms.append(f"{q} = ?")
                params.append(self.adapt_value(value))
        return " WHERE " + " AND ".join(terms), params

    def adapt_value(self, value: Any) -> Any:
        """A Python value as the driver should receive it (dicts and lists as JSON text)."""
        if isinstance(value, (dict, list, tuple)):
            return json.dumps(value, ensure_ascii=False, default=str, separators=(",", ":"))
        if isinstance(value, Enum):
            return value.value
        return value

    # ------------------------------------------------------------------------------ types
    def sql_type(self, t: LogicalType) -> str:
        """The dialect's column type for a logical type."""
        if t is LogicalType.JSON:
            return self.capabilities.json_type or self._type_names()[LogicalType.TEXT]
        return self._type_names()[t]

    def _type_names(self) -> Mapping[LogicalType, str]:
        return {
            LogicalType.TEXT: "TEXT",
            LogicalType.BIGINT: "BIGINT",
            LogicalType.DOUBLE: "DOUBLE PRECISION",
            LogicalType.BOOLEAN: "BOOLEAN",
            LogicalType.JSON: "TEXT",
            LogicalType.TIMESTAMP: "TIMESTAMP WITH TIME ZONE",
        }

    def logical_type_of(self, raw: str) -> LogicalType | str:
        """Map a stored type name to a logical type, or return it unchanged when there is none."""
        base = re.sub(r"\(.*\)", "", raw).strip().lower()
        return _EXACT_TYPES.get(base, raw)

    def is_compatible(self, actual: LogicalType | str, wanted: LogicalType) -> bool:
        """Whether an existing column of type ``actual`` can hold values of ``wanted``."""
        if actual == wanted:
            return True
        if isinstance(actual, LogicalType):
            # JSON may live in a text column; the reverse would reject non-JSON strings.
            return wanted is LogicalType.JSON and actual is LogicalType.TEXT
        base = re.sub(r"\(.*\)", "", actual).strip().lower()
        return base in _COMPATIBLE[wanted]

    # ------------------------------------------------------------------------------ introspection
    def _lookup_schema(self, table: TableRef) -> str | None:
        schema = table.schema if table.schema is not None else self.default_schema
        return None if schema is None else self.normalize_identifier(schema)

    def _name_match_sql(self, column: str) -> str:
        """A predicate matching a stored name against a ``?`` parameter."""
        if self.identifiers_case_insensitive:
            return f"LOWER({column}) = LOWER(?)"
        return f"{column} = ?"

    def _information_schema(self, table: TableRef) -> str:
        if table.database:
            return f"{self.quote(table.database, what=f'database of table {table}')}.information_schema"
        return "information_schema"

    def table_exists(self, table: TableRef) -> bool:
        """Whether ``table`` exists (a table or a view)."""
        self.validate_identifier(table.name, what="table name")
        sql = (
            f"SELECT table_name FROM {self._information_schema(table)}.tables "
            f"WHERE {self._name_match_sql('table_name')}"
        )
        params: list[Any] = [self.normalize_identifier(table.name)]
        schema = self._lookup_schema(table)
        if schema is not None:
            sql += f" AND {self._name_match_sql('table_schema')}"
            params.append(schema)
        with self.session() as s:
            rows = s.fetchall(sql, params)
        return bool(rows)

    def get_columns(self, table: TableRef) -> dict[str, LogicalType | str]:
        """The table's columns in order, actual names as stored -> logical type (or the raw type name)."""
        self.validate_identifier(table.name, what="table name")
        sql = (
            f"SELECT column_name, data_type FROM {self._information_schema(table)}.columns "
            f"WHERE {self._name_match_sql('table_name')}"
        )
        params: list[Any] = [self.normalize_identifier(table.name)]
        schema = self._lookup_schema(table)
        if schema is not None:
            sql += f" AND {self._name_match_sql('table_schema')}"
            params.append(schema)
        sql += " ORDER BY ordinal_position"
        with self.session() as s:
            rows = s.fetchall(sql, params)
        return {str(name): self.logical_type_of(str(raw)) for name, raw in rows}

    # ------------------------------------------------------------------------------ reading
    @abstractmethod
    def stream(self, sql: str, params: Sequence[Any] = (), *, batch_rows: int = 50_000) -> Iterator[pa.RecordBatch]:
        """Run any SELECT and yield its rows as Arrow record batches of at most ``batch_rows`` rows.

        Memory stays bounded whatever the result size. Reading runs on its own cursor or connection,
        outside any open :meth:`session`: it sees committed data, and ledger writes (and commits) while
        a stream is open do not disturb it. Closing the generator early is safe.
        """

    def source_sql(
        self,
        *,
        table: TableRef | None = None,
        sql: str | None = None,
        columns: Sequence[str] | None = None,
        where: str | None = None,
        order_by: Sequence[str] | None = None,
    ) -> str:
        """``SELECT columns FROM table|(sql) WHERE where ORDER BY ...``; ``where``/``sql`` are user SQL."""
        if (table is None) == (sql is None):
            raise ValueError("source_sql needs exactly one of table= or sql=")
        if table is not None:
            from_sql = self.table_sql(table)
        else:
            assert sql is not None
            from_sql = f"({self._strip_sql(sql)}) {self.subquery_alias('_src')}"
        cols = ", ".join(self.quote(c, what="source column") for c in columns) if columns else "*"
        out = f"SELECT {cols} FROM {from_sql}"
        if where and where.strip():
            out += f" WHERE ({where.strip()})"
        if order_by:
            out += " ORDER BY " + ", ".join(self.order_term(o, what="source order_by") for o in order_by)
        return out

    def subquery_alias(self, alias: str) -> str:
        """How a derived table is aliased (``AS x``; some dialects reject ``AS``)."""
        return f"AS {alias}"

    @staticmethod
    def _strip_sql(sql: str) -> str:
        """User SQL ready to nest in parentheses: no trailing semicolon or whitespace."""
        text = sql.strip()
        while text.endswith(";"):
            text = text[:-1].rstrip()
        if not text:
            raise ValueError("empty SQL")
        return text

    def _key_terms(self, key: Sequence[str], alias: str) -> list[str]:
        if not key:
            raise ValueError("a key needs at least one column")
        return [f"{alias}.{self.quote(k, what='key column')}" for k in key]

    def key_report(self, source_sql: str, key: Sequence[str], *, sample: int = 20) -> KeyReport:
        """Count NULL and duplicate keys of a source query in SQL, with up to ``sample`` examples each."""
        src = f"({self._strip_sql(source_sql)}) {self.subquery_alias('s')}"
        ks = self._key_terms(key, "s")
        any_null = " OR ".join(f"{k} IS NULL" for k in ks)
        none_null = " AND ".join(f"{k} IS NOT NULL" for k in ks)
        key_list = ", ".join(ks)
        totals_sql = f"SELECT COUNT(*), COALESCE(SUM(CASE WHEN {any_null} THEN 1 ELSE 0 END), 0) FROM {src}"
        dups_sql = (
            f"SELECT COUNT(*), COALESCE(SUM(d.n), 0) FROM (SELECT COUNT(*) AS n FROM {src} "
            f"WHERE {none_null} GROUP BY {key_list} HAVING COUNT(*) > 1) {self.subquery_alias('d')}"
        )
        with self.session() as sess:
            total, nulls = sess.fetchall(totals_sql)[0]
            dup_keys, dup_rows = sess.fetchall(dups_sql)[0]
            null_samples: list[tuple[Any, ...]] = []
            dup_samples: list[tuple[tuple[Any, ...], int]] = []
            if int(nulls or 0) and sample > 0:
                rows = sess.fetchall(self.limit_sql(f"SELECT {key_list} FROM {src} WHERE {any_null}", sample))
                null_samples = [tuple(r) for r in rows]
            if int(dup_keys or 0) and sample > 0:
                rows = sess.fetchall(
                    self.limit_sql(
                        f"SELECT {key_list}, COUNT(*) AS n FROM {src} WHERE {none_null} GROUP BY {key_list} "
                        f"HAVING COUNT(*) > 1 ORDER BY COUNT(*) DESC, {key_list}",
                        sample,
                    )
                )
                dup_samples = [(tuple(r[:-1]), int(r[-1])) for r in rows]
        return KeyReport(
            key=tuple(key),
            total_rows=int(total or 0),
            null_key_rows=int(nulls or 0),
            duplicate_keys=int(dup_keys or 0),
            duplicate_rows=int(dup_rows or 0),
            null_samples=tuple(null_samples),
            duplicate_samples=tuple(dup_samples),
        )

    def limit_sql(self, sql: str, n: int) -> str:
        """``sql`` limited to ``n`` rows."""
        return f"{sql} LIMIT {int(n)}"

    def clean_source_sql(self, source_sql: str, key: Sequence[str]) -> str:
        """The source minus rows with a NULL key part or a duplicated key, so they are never sent.

        Portable form: join the source to its keys that occur exactly once (equality never matches
        NULL, so NULL keys drop out too). Dialects with ``* EXCLUDE`` may use a window count instead.
        """
        inner = self._strip_sql(source_sql)
        ks = self._key_terms(key, "u")
        key_list = ", ".join(ks)
        none_null = " AND ".join(f"{k} IS NOT NULL" for k in ks)
        on = " AND ".join(f"s.{self.quote(k, what='key column')} = k.{self.quote(k, what='key column')}" for k in key)
        return (
            f"SELECT s.* FROM ({inner}) {self.subquery_alias('s')} JOIN (SELECT {key_list} FROM ({inner}) "
            f"{self.subquery_alias('u')} WHERE {none_null} GROUP BY {key_list} HAVING COUNT(*) = 1) "
            f"{self.subquery_alias('k')} ON {on}"
        )

    # ------------------------------------------------------------------------------ hashing / time
    def text_sql(self, expr: str) -> str:
        """``expr`` cast to text."""
        return f"CAST({expr} AS {self.text_cast_type})"

    def concat_sql(self, parts: Sequence[str]) -> str:
        """Concatenate text expressions (none of them NULL)."""
        return "(" + " || ".join(parts) + ")"

    def md5_sql(self, expr: str) -> str:
        """Lower-case hex MD5 of a text expression."""
        return f"MD5({expr})"

    def row_hash_sql(self, columns: Sequence[str], alias: str | None = None) -> str:
        """A deterministic hex MD5 over the columns' text forms, NULL-safe and separator-safe.

        Each value is encoded as ``'N'`` for NULL or ``'V' || length || ':' || text``, so neither a
        NULL, an empty string nor a value containing a separator can collide with another row.
        """
        if not columns:
            raise ValueError("row_hash_sql needs at least one column")
        prefix = f"{self.quote(alias, what='table alias')}." if alias else ""
        parts: list[str] = []
        for c in columns:
            col = prefix + self.quote(c, what="hashed column")
            txt = self.text_sql(col)
            length = self.text_sql(f"LENGTH({txt})")
            encoded = self.concat_sql(["'V'", length, "':'", txt])
            parts.append(f"CASE WHEN {col} IS NULL THEN 'N' ELSE {encoded} END")
        return self.md5_sql(self.concat_sql(parts))

    def now_sql(self) -> str:
        """The current UTC timestamp."""
        return "CURRENT_TIMESTAMP"

    def age_seconds_sql(self, column_sql: str) -> str:
        """Seconds elapsed since the timestamp expression ``column_sql``."""
        return f"EXTRACT(EPOCH FROM ({self.now_sql()} - {column_sql}))"

    # ------------------------------------------------------------------------------ DDL
    def column_def_sql(self, column: Column, *, not_null: bool = False) -> str:
        """``"name" TYPE [NOT NULL]``."""
        sql = f"{self.quote(column.name, what='column')} {self.sql_type(column.type)}"
        if not_null or not column.nullable:
            sql += " NOT NULL"
        return sql

    def create_table_sql(self, table: TableRef, key: Sequence[Column], columns: Sequence[Column]) -> str:
        """``CREATE TABLE`` with the key NOT NULL and its PRIMARY KEY."""
        defs = [self.column_def_sql(k, not_null=True) for k in key]
        defs += [self.column_def_sql(c) for c in columns]
        if key:
            defs.append("PRIMARY KEY (" + ", ".join(self.quote(k.name, what="key column") for k in key) + ")")
        return f"CREATE TABLE {self.table_sql(table)} ({', '.join(defs)})"

    def add_column_sql(self, table: TableRef, column: Column) -> str:
        """``ALTER TABLE ... ADD COLUMN`` (always nullable: existing rows have no value)."""
        return f"ALTER TABLE {self.table_sql(table)} ADD COLUMN {self.column_def_sql(column)}"

    def create_schema_sql(self, schema: str) -> str:
        """``CREATE SCHEMA IF NOT EXISTS``."""
        return f"CREATE SCHEMA IF NOT EXISTS {self.quote(schema, what='schema')}"

    def schema_exists(self, schema: str) -> bool:
        """Whether ``schema`` exists (checked first: CREATE SCHEMA needs a privilege the user may lack)."""
        self.validate_identifier(schema, what="schema")
        sql = f"SELECT 1 FROM information_schema.schemata WHERE {self._name_match_sql('schema_name')}"
        with self.session() as s:
            return bool(s.fetchall(sql, [self.normalize_identifier(schema)]))

    def ensure_schema(self, schema: str | None = None) -> None:
        """Create the schema (default: the target schema) when it does not exist."""
        schema = schema or self.default_schema
        if schema:
            with self.session() as s:
                s.execute(self.create_schema_sql(schema))

    def ensure_table(self, table: TableRef, key: Sequence[Column], columns: Sequence[Column]) -> EnsureResult:
        """Create ``table`` when missing, add missing listed columns; never drop or alter others.

        An existing listed column of an incompatible type raises :class:`DataError`.
        """
        if not key:
            raise ValueError("ensure_table needs at least one key column")
        names = [c.name for c in (*key, *columns)]
        for c in (*key, *columns):
            self.validate_identifier(c.name, what=f"column of target table {table}")
        dup = {n.lower() for n in names if [m.lower() for m in names].count(n.lower()) > 1}
        if dup:
            raise DataError(
                f"target table {table}: column(s) {sorted(dup)} listed twice",
                hint="rename a struct field or set target.prefix",
            )
        if not self.table_exists(table):
            schema = table.schema if table.schema is not None else self.default_schema
            if schema and not table.database and not self.schema_exists(schema):
                self.ensure_schema(schema)
            with self._errors(f"creating table {table}"), self.session() as s:
                s.execute(self.create_table_sql(table, key, columns))
            return EnsureResult(created=True, added_columns=(), columns=self.get_columns(table))
        existing = self.get_columns(table)
        problems: list[str] = []
        missing: list[Column] = []
        for col in key:
            stored = self.find_column(existing, col.name)
            if stored is None:
                problems.append(f"key column {col.name!r} is missing")
            elif not self.is_compatible(existing[stored], col.type) and not self._key_compatible(existing[stored]):
                problems.append(f"key column {stored!r} has type {existing[stored]}")
        for col in columns:
            stored = self.find_column(existing, col.name)
            if stored is None:
                missing.append(col)
            elif not self.is_compatible(existing[stored], col.type):
                problems.append(
                    f"column {stored!r} has type {self._type_label(existing[stored])}, the sync writes "
                    f"{col.type.value} ({self.sql_type(col.type)})"
                )
        if problems:
            raise DataError(
                f"target table {table} is not compatible: " + "; ".join(problems),
                hint="rename the struct field, set target.prefix so the sync writes its own columns, "
                "or drop the conflicting column",
            )
        if missing:
            with self._errors(f"adding columns to {table}"), self.session() as s:
                for col in missing:
                    s.execute(self.add_column_sql(table, col))
            existing = self.get_columns(table)
        return EnsureResult(created=False, added_columns=tuple(c.name for c in missing), columns=existing)

    def _key_compatible(self, actual: LogicalType | str) -> bool:
        # Key columns come from the source as they are: any stored type can hold them.
        return True

    @staticmethod
    def _type_label(t: LogicalType | str) -> str:
        return t.value if isinstance(t, LogicalType) else t

    # ------------------------------------------------------------------------------ transactions
    @abstractmethod
    def _open_session(self) -> Session:
        """Begin a transaction on the connection and return its :class:`Session`."""

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A transaction: committed when the block ends, rolled back when it raises.

        Nested calls join the open transaction (the outermost block commits or rolls back).
        """
        if self._closed:
            raise WarehouseError(f"{self.type}: the connection is closed")
        if self._session is not None:
            yield self._session
            return
        with self._errors("beginning a transaction"):
            sess = self._open_session()
        self._session = sess
        try:
            yield sess
        except BaseException:
            try:
                with self._errors("rolling back"):
                    sess._rollback()
            except WarehouseError:
                log.warning("rollback failed after an error", exc_info=True)
            raise
        else:
            with self._errors("committing"):
                sess._commit()
        finally:
            self._session = None
            sess._close()

    # ------------------------------------------------------------------------------ upsert
    def upsert(
        self,
        table: TableRef,
        key: Sequence[str],
        parts: Sequence[UpsertPart],
        *,
        before_commit: Callable[[Session], None] | None = None,
    ) -> UpsertResult:
        """Upsert every part and run ``before_commit`` in ONE transaction; any failure changes nothing.

        For existing keys only each part's ``set_columns`` are written; new keys are inserted with the
        key and ``set_columns`` (other columns NULL). Keys within a part are deduplicated (last
        occurrence wins); a NULL key part raises :class:`DataError` before anything is written.
        """
        prepared = [self._prepare_part(table, key, p) for p in parts]
        with self.session() as s:
            result = UpsertResult()
            for data, set_cols, dropped in prepared:
                result += self._upsert_prepared(s, table, key, data, set_cols)
                result += UpsertResult(duplicates_dropped=dropped)
            if before_commit is not None:
                before_commit(s)
        return result

    def _upsert_in_session(
        self, session: Session, table: TableRef, key: Sequence[str], parts: Sequence[UpsertPart]
    ) -> UpsertResult:
        result = UpsertResult()
        for p in parts:
            data, set_cols, dropped = self._prepare_part(table, key, p)
            result += self._upsert_prepared(session, table, key, data, set_cols)
            result += UpsertResult(duplicates_dropped=dropped)
        return result

    def _prepare_part(self, table: TableRef, key: Sequence[str], part: UpsertPart) -> tuple[pa.Table, list[str], int]:
        """Validate names, reject NULL keys, deduplicate, and keep only key + set columns."""
        if not key:
            raise ValueError("upsert needs at least one key column")
        for k in key:
            self.validate_identifier(k, what=f"key column of {table}")
        set_cols = [c for c in part.set_columns if c not in key]
        for c in set_cols:
            self.validate_identifier(c, what=f"column of {table}")
        data = part.data
        missing = [c for c in (*key, *set_cols) if c not in data.column_names]
        if missing:
            raise DataError(
                f"upsert into {table}: the rows have no column(s) {missing} (they have {data.column_names})"
            )
        data = data.select([*key, *set_cols])
        null_mask = None
        for k in key:
            m = pc.is_null(data.column(k))
            null_mask = m if null_mask is None else pc.or_(null_mask, m)
        if null_mask is not None and pc.any(null_mask).as_py():
            bad = data.filter(null_mask)
            sample = [_safe_repr(r.values()) for r in bad.select(list(key)).slice(0, 5).to_pylist()]
            raise DataError(
                f"upsert into {table}: {bad.num_rows:,} row(s) have a NULL key part ({', '.join(key)}); e.g. {sample}",
                hint="filter NULL keys out of the source (the sync skips them when it selects rows)",
            )
        data, dropped = dedupe_last(data, key)
        data = json_columns_to_text(data)
        return data, set_cols, dropped

    def _upsert_prepared(
        self, session: Session, table: TableRef, key: Sequence[str], data: pa.Table, set_cols: Sequence[str]
    ) -> UpsertResult:
        """Stage ``data`` then UPDATE existing keys and INSERT missing ones (override for MERGE etc.)."""
        if data.num_rows == 0:
            return UpsertResult()
        n = data.num_rows
        with self._errors(f"upserting into {table}"):
            stage = self._stage(session, table, key, data)
            try:
                updated = -1
                if set_cols:
                    updated = session.execute_count(self.update_from_sql(table, stage, key, set_cols))
                if updated == n and self.key_is_unique(table, key):
                    # Every staged key matched exactly one row: nothing to insert, skip the anti-join.
                    inserted = 0
                else:
                    inserted = session.execute_count(self.insert_missing_sql(table, stage, key, set_cols))
                if inserted < 0:
                    raise WarehouseError(f"{self.type}: the driver did not report the inserted row count")
            finally:
                self._drop_stage(session, stage)
        return UpsertResult(inserted=inserted, updated=n - inserted)

    def key_is_unique(self, table: TableRef, key: Sequence[str]) -> bool:
        """Whether the target enforces a primary key or unique constraint on exactly ``key``.

        Only then does an UPDATE row count equal the number of matched staged keys (a table without
        one may hold a key twice). The answer is cached per table and key. Default: unknown (False).
        """
        cache_key = (str(table), self.table_sql(table), tuple(key))
        cached = self._unique_cache.get(cache_key)
        if cached is None:
            cached = self._unique_cache[cache_key] = self._key_is_unique(table, key)
        return cached

    def _key_is_unique(self, table: TableRef, key: Sequence[str]) -> bool:
        return False

    def stage_name(self) -> str:
        """A unique name for a staging relation."""
        return f"_sixtyfour_stage_{uuid.uuid4().hex[:12]}"

    def _stage(self, session: Session, table: TableRef, key: Sequence[str], data: pa.Table) -> str:
        """Load ``data`` into a temporary relation; return its SQL name.

        Generic path: a temporary table shaped like the target's columns, filled with executemany in
        chunks. Backends override with their bulk path (Arrow registration, COPY, PUT...).
        """
        name = self.stage_name()
        cols = ", ".join(self.quote(c, what="column") for c in data.column_names)
        session.execute(self.create_stage_sql(name, table, data.column_names))
        marks = ", ".join("?" for _ in data.column_names)
        insert = f"INSERT INTO {self.quote(name)} ({cols}) VALUES ({marks})"
        for batch in data.to_batches(max_chunksize=5_000):
            rows = [tuple(r.values()) for r in batch.to_pylist()]
            session._executemany(insert, rows)
        return self.quote(name)

    def create_stage_sql(self, name: str, table: TableRef, columns: Sequence[str]) -> str:
        """A temporary table with the target's column types (no rows)."""
        cols = ", ".join(self.quote(c, what="column") for c in columns)
        return f"CREATE TEMPORARY TABLE {self.quote(name)} AS SELECT {cols} FROM {self.table_sql(table)} WHERE 1 = 0"

    def _drop_stage(self, session: Session, stage: str) -> None:
        session.execute(f"DROP TABLE IF EXISTS {stage}")

    def _key_join(self, key: Sequence[str], left: str, right: str) -> str:
        return " AND ".join(
            f"{left}.{self.quote(k, what='key column')} = {right}.{self.quote(k, what='key column')}" for k in key
        )

    def update_from_sql(self, table: TableRef, stage: str, key: Sequence[str], set_cols: Sequence[str]) -> str:
        """``UPDATE t SET c = s.c FROM stage s WHERE keys match`` (PostgreSQL, DuckDB, SQLite 3.33+)."""
        target = self.table_sql(table)
        sets = ", ".join(f"{self.quote(c, what='column')} = s.{self.quote(c, what='column')}" for c in set_cols)
        return f"UPDATE {target} AS t SET {sets} FROM {stage} AS s WHERE {self._key_join(key, 't', 's')}"

    def insert_missing_sql(self, table: TableRef, stage: str, key: Sequence[str], set_cols: Sequence[str]) -> str:
        """``INSERT INTO t (key, cols) SELECT ... FROM stage s WHERE NOT EXISTS (same key in t)``."""
        target = self.table_sql(table)
        cols = [self.quote(c, what="column") for c in (*key, *set_cols)]
        return (
            f"INSERT INTO {target} ({', '.join(cols)}) SELECT {', '.join('s.' + c for c in cols)} "
            f"FROM {stage} AS s WHERE NOT EXISTS "
            f"(SELECT 1 FROM {target} AS t WHERE {self._key_join(key, 't', 's')})"
        )
