"""Key column types: what a source key is, the type its target column gets, and how keys are compared.

Pure data and string building: no I/O. A source key is classified into a :class:`KeyType` from the type the
warehouse names for it (``DESCRIBE`` on DuckDB, ``format_type`` on PostgreSQL, the column type of MySQL...),
or from the Arrow type its rows arrive as where the warehouse's name is not known. The target's key column
is created with the same type (:func:`key_sql_type`), so the selection's join compares like with like, and
no exact number ever becomes a double. A type the sync cannot carry exactly to the API and back (bytes,
times of day, intervals, nested values...) is refused (:func:`classify_key` returns None) before anything
is paid for, with :data:`SUPPORTED_KEY_TYPES` in the message.

Where the local Arrow form of a key would not be exact or stable (DuckDB's 128-bit integers, MySQL's
unsigned and decimal values read as Python objects) the key travels as text (:attr:`KeyType.transport`):
the selection renders it in the warehouse, the file carries that text, and the result's text is compared
with it as sent; the warehouse converts it back into the key column's own type when the answer is merged.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

import pyarrow as pa

from sixtyfour_sync.warehouse.types import TYPE_NAMES, LogicalType

__all__ = [
    "SUPPORTED_KEY_TYPES",
    "KeyKind",
    "KeyType",
    "classify_arrow",
    "classify_key",
    "join_key_sql",
    "key_logical_type",
    "key_sql_type",
    "refusal_message",
    "stored_kind",
    "transport_sql",
]

KeyKind = Literal[
    "text", "integer", "unsigned", "hugeint", "decimal", "float", "boolean", "date", "timestamp", "timestamptz", "uuid"
]

#: What the docs and the refusal message list: the key types carried exactly, and the target type they get.
SUPPORTED_KEY_TYPES = (
    "text (VARCHAR, TEXT, CHAR, STRING, enums), integers up to 64 bits signed or unsigned (BIGINT, INTEGER, "
    "UBIGINT, BIGINT UNSIGNED), DuckDB HUGEINT/UHUGEINT, exact decimals (DECIMAL/NUMERIC/NUMBER(p,s), "
    "PostgreSQL numeric of any size), floats (DOUBLE, REAL; a NaN or infinite key is skipped like a NULL one), "
    "BOOLEAN, DATE, TIMESTAMP and TIMESTAMP WITH TIME ZONE (to the microsecond), UUID"
)

_PARAMS = re.compile(r"\(([^)]*)\)")
_TEXT = frozenset(
    {
        "varchar",
        "character varying",
        "text",
        "string",
        "char",
        "character",
        "bpchar",
        "nvarchar",
        "nchar",
        "name",
        "citext",
        "longtext",
        "mediumtext",
        "tinytext",
        "clob",
        "enum",
        "set",
        "nvarchar2",
        "varchar2",
    }
)
#: Text types whose values compare with a plain text column without a cast.
_PLAIN_TEXT = frozenset(
    {"varchar", "character varying", "text", "string", "char", "character", "bpchar", "longtext", "mediumtext",
     "tinytext", "nvarchar", "nchar", "clob"}
)  # fmt: skip
_INTEGER = frozenset(
    {
        "bigint",
        "int8",
        "int",
        "integer",
        "int4",
        "smallint",
        "int2",
        "tinyint",
        "mediumint",
        "int64",
        "int32",
        "int16",
        "long",
        "short",
        "byte",
        "int1",
        "serial",
        "bigserial",
        "smallserial",
        "uinteger",
        "usmallint",
        "utinyint",
        "oid",
        "year",
    }
)
_DECIMAL = frozenset({"decimal", "numeric", "number", "dec", "fixed", "bignumeric", "bigdecimal"})
_FLOAT = frozenset({"double", "double precision", "float8", "float", "float4", "real", "float64", "binary_double"})
_BOOLEAN = frozenset({"boolean", "bool"})
_TIMESTAMP = frozenset(
    {"timestamp", "timestamp without time zone", "datetime", "timestamp_ntz", "timestamp_s", "timestamp_ms",
     "datetime2", "smalldatetime"}
)  # fmt: skip
_TIMESTAMPTZ = frozenset({"timestamp with time zone", "timestamptz", "timestamp_tz", "timestamp_ltz", "datetimeoffset"})
_UUID = frozenset({"uuid", "uniqueidentifier"})
#: Names refused outright (whatever their Arrow form): no exact round trip through a file and back.
_REFUSED = frozenset(
    {
        "time",
        "time without time zone",
        "time with time zone",
        "timetz",
        "interval",
        "bytea",
        "blob",
        "binary",
        "varbinary",
        "longblob",
        "mediumblob",
        "tinyblob",
        "bytes",
        "bit",
        "bit varying",
        "varbit",
        "json",
        "jsonb",
        "variant",
        "object",
        "array",
        "struct",
        "map",
        "list",
        "union",
        "geography",
        "geometry",
        "timestamp_ns",
        "time_ns",
        "xml",
        "money",
    }
)


@dataclass(frozen=True)
class KeyType:
    """A source key column's type, as far as the sync carries it."""

    kind: KeyKind
    #: Decimals: digits and scale (None: PostgreSQL's unconstrained numeric, carried as exact text).
    precision: int | None = None
    scale: int | None = None
    #: The source's own type name, as the warehouse gave it ("" when only its Arrow form is known).
    source: str = ""
    #: Carried as text between the warehouse and the result (see the module docstring).
    transport: bool = False

    @property
    def arrow(self) -> pa.DataType:
        """The Arrow type the key has locally: in the files' rows, the results and what a file sent."""
        if self.transport or self.kind in ("text", "uuid", "hugeint"):
            return pa.string()
        if self.kind == "decimal":
            if self.precision is None or self.precision > 38:
                return pa.string()
            return pa.decimal128(self.precision, self.scale or 0)
        return {
            "integer": pa.int64(),
            "unsigned": pa.uint64(),
            "float": pa.float64(),
            "boolean": pa.bool_(),
            "date": pa.date32(),
            "timestamp": pa.timestamp("us"),
            "timestamptz": pa.timestamp("us", tz="UTC"),
        }[self.kind]

    @property
    def label(self) -> str:
        """The type for messages: the source's name, else the kind."""
        return self.source or (
            f"decimal({self.precision},{self.scale})" if self.kind == "decimal" and self.precision else self.kind
        )


def _base(native: str) -> tuple[str, list[int], bool]:
    """A type name lower-cased without parameters, its integer parameters, and whether it is unsigned."""
    raw = native.strip().lower()
    params = [int(p) for m in _PARAMS.findall(raw) for p in re.findall(r"-?\d+", m)]
    base = _PARAMS.sub("", raw)
    unsigned = bool(re.search(r"\bunsigned\b", base))
    base = re.sub(r"\b(unsigned|signed|zerofill)\b", "", base)
    base = re.sub(r"\s+", " ", base).strip()
    if re.fullmatch(r"timestamp(\(\d+\))? with(out)? time zone", raw):
        base = "timestamp with time zone" if "without" not in raw else "timestamp without time zone"
    return base, params, unsigned


def classify_arrow(t: pa.DataType) -> KeyType | None:
    """A key type from the Arrow type its rows arrive as; None: not a type the sync carries exactly."""
    if pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_null(t):
        return KeyType("text")
    if pa.types.is_uint64(t):
        return KeyType("unsigned")
    if pa.types.is_integer(t):
        return KeyType("integer")
    if pa.types.is_decimal128(t):
        return KeyType("decimal", t.precision, t.scale)
    if pa.types.is_floating(t):
        return KeyType("float")
    if pa.types.is_boolean(t):
        return KeyType("boolean")
    if pa.types.is_date(t):
        return KeyType("date")
    if pa.types.is_timestamp(t) and t.unit != "ns":
        return KeyType("timestamptz" if t.tz is not None else "timestamp")
    return None


def classify_key(native: str | None, arrow: pa.DataType | None, dialect: str) -> KeyType | None:
    """The key type of a source column from its warehouse type name (``native``) and, where that name is not
    known or not one of ours, its Arrow type; ``dialect`` names the dialect's type table (``Dialect.types``).
    None: refused (see :data:`SUPPORTED_KEY_TYPES`)."""
    kt = _classify_native(native, arrow, dialect) if native else None
    if kt is None and native:
        base = _base(native)[0]
        if base in _REFUSED or "[]" in native or base.startswith(("struct", "map", "array", "list", "union")):
            return None
    if kt is None:
        if arrow is None:
            return KeyType("text", source=native or "")
        kt = classify_arrow(arrow)
        if kt is None:
            return None
        kt = KeyType(kt.kind, kt.precision, kt.scale, native or "")
    return _with_transport(kt, dialect)


def _classify_native(native: str, arrow: pa.DataType | None, dialect: str) -> KeyType | None:
    base, params, unsigned = _base(native)
    src = native.strip()
    if base in _UUID:
        return KeyType("uuid", source=src)
    if base in ("hugeint", "uhugeint", "int128", "uint128"):
        return KeyType("hugeint", source=src)
    if base in ("ubigint", "uint64") or (base in ("bigint", "int8") and unsigned):
        return KeyType("unsigned", source=src)
    if base in _INTEGER:
        return KeyType("integer", source=src)
    if base in _DECIMAL:
        if base in ("bignumeric", "bigdecimal") and (arrow is None or not pa.types.is_string(arrow)):
            return None  # 76 digits: beyond Arrow's decimal128 and the local engine's DECIMAL
        if len(params) >= 1:
            precision, scale = params[0], params[1] if len(params) > 1 else 0
        elif dialect == "postgres" or (arrow is not None and pa.types.is_string(arrow)):
            precision, scale = None, None  # PostgreSQL's numeric without a typmod: any size, read as text
        elif arrow is not None and pa.types.is_decimal128(arrow):
            precision, scale = arrow.precision, arrow.scale
        else:
            precision, scale = (38, 0) if base == "number" else (38, 9) if base == "numeric" else (10, 0)
        if precision is not None and precision > 38 and arrow is not None and not pa.types.is_string(arrow):
            return None
        return KeyType("decimal", precision, scale, src)
    if base in _FLOAT:
        return KeyType("float", source=src)
    if base in _BOOLEAN:
        return KeyType("boolean", source=src)
    if base == "date":
        return KeyType("date", source=src)
    if dialect == "bigquery" and base == "timestamp":
        return KeyType("timestamptz", source=src)
    if base in _TIMESTAMPTZ:
        return KeyType("timestamptz", source=src)
    if base in _TIMESTAMP:
        return KeyType("timestamp", source=src)
    if base in _TEXT:
        return KeyType("text", source=src)
    return None


#: Type tables of the dialects whose driver reads rows as Python objects (SQLAlchemy): unsigned and decimal
#: keys travel as text there (a batch's Arrow type would follow its values).
_ROW_DRIVERS = frozenset({"mysql", "sqlite", "generic", "generic_upper"})


def _with_transport(kt: KeyType, dialect: str) -> KeyType:
    if kt.kind == "hugeint" or (dialect in _ROW_DRIVERS and kt.kind in ("unsigned", "decimal")):
        return KeyType(kt.kind, kt.precision, kt.scale, kt.source, transport=True)
    return kt


def transport_sql(expr: str, kt: KeyType, dialect: str, text_type: str) -> str:
    """The key as the selection hands it over: ``expr``, or its text for a key carried as text."""
    if not kt.transport:
        return expr
    return f"CAST({expr} AS {text_type})"


# ---------------------------------------------------------------------------------------------- target types

#: The target key type per dialect for the kinds whose name is not the dialect's logical type name.
_KEY_SQL: Mapping[str, Mapping[str, str]] = {
    "duckdb": {
        "unsigned": "UBIGINT",
        "decimal": "DECIMAL({p},{s})",
        "date": "DATE",
        "timestamp": "TIMESTAMP",
        "uuid": "UUID",
    },
    "postgres": {
        "unsigned": "NUMERIC(20,0)",
        "decimal": "NUMERIC({p},{s})",
        "decimal_any": "NUMERIC",
        "date": "DATE",
        "timestamp": "TIMESTAMP",
        "uuid": "UUID",
    },
    "mysql": {
        "unsigned": "BIGINT UNSIGNED",
        "decimal": "DECIMAL({p},{s})",
        "date": "DATE",
        "timestamp": "DATETIME(6)",
    },
    "snowflake": {
        "unsigned": "NUMBER(20,0)",
        "decimal": "NUMBER({p},{s})",
        "date": "DATE",
        "timestamp": "TIMESTAMP_NTZ",
    },
    "bigquery": {
        "unsigned": "NUMERIC",
        "decimal": "NUMERIC",
        "decimal_big": "BIGNUMERIC",
        "date": "DATE",
        "timestamp": "DATETIME",
    },
    "databricks": {
        "unsigned": "DECIMAL(20,0)",
        "decimal": "DECIMAL({p},{s})",
        "date": "DATE",
        "timestamp": "TIMESTAMP_NTZ",
    },
    # SQLite keeps what it is given: exact numbers beyond 64 bits stay text (NUMERIC affinity would round them).
    "sqlite": {"unsigned": "TEXT", "decimal": "TEXT", "date": "DATE", "timestamp": "TIMESTAMP"},
    "generic": {
        "unsigned": "NUMERIC(20,0)",
        "decimal": "NUMERIC({p},{s})",
        "date": "DATE",
        "timestamp": "TIMESTAMP",
    },
    "generic_upper": {
        "unsigned": "NUMERIC(20,0)",
        "decimal": "NUMERIC({p},{s})",
        "date": "DATE",
        "timestamp": "TIMESTAMP",
    },
}

_LOGICAL: Mapping[str, LogicalType] = {
    "text": LogicalType.TEXT,
    "uuid": LogicalType.TEXT,
    "integer": LogicalType.BIGINT,
    "float": LogicalType.DOUBLE,
    "boolean": LogicalType.BOOLEAN,
    "timestamptz": LogicalType.TIMESTAMP,
}


def key_logical_type(kt: KeyType) -> LogicalType:
    """The nearest logical type (for messages and the checks of an existing column)."""
    return _LOGICAL.get(kt.kind, LogicalType.TEXT)


def key_sql_type(types: str, kt: KeyType, text_key_type: str) -> str:
    """The column type a target key of type ``kt`` gets on the dialect whose type table is ``types``
    (``text_key_type``: the dialect's type for a text key)."""
    names = _KEY_SQL.get(types, _KEY_SQL["generic"])
    logical = TYPE_NAMES.get(types, TYPE_NAMES["generic"])
    if kt.kind == "text":
        return text_key_type
    if kt.kind in ("integer", "float", "boolean", "timestamptz"):
        return logical[_LOGICAL[kt.kind]]
    if kt.kind == "hugeint":
        return kt.source.upper() if types == "duckdb" else names.get("decimal", "NUMERIC({p},{s})").format(p=38, s=0)
    if kt.kind == "uuid":
        return names.get("uuid", text_key_type)
    if kt.kind == "decimal":
        if kt.precision is None:
            return names.get("decimal_any", "NUMERIC")
        p, s = kt.precision, kt.scale or 0
        if types == "bigquery":
            return names["decimal"] if s <= 9 and p - s <= 29 else names["decimal_big"]
        return names["decimal"].format(p=p, s=s)
    return names[kt.kind]


# ---------------------------------------------------------------------------------------------- comparisons


def stored_kind(stored: LogicalType | str) -> str:
    """What an existing key column holds, for comparisons: "text", "float" or "other"."""
    if isinstance(stored, LogicalType):
        if stored in (LogicalType.TEXT, LogicalType.JSON):
            return "text"
        return "float" if stored is LogicalType.DOUBLE else "other"
    base = _base(stored)[0]
    if base in _TEXT:
        return "text"
    return "float" if base in _FLOAT else "other"


def join_key_sql(
    expr: str, kt: KeyType | None, stored: LogicalType | str | None, *, text_type: str, double_type: str
) -> str:
    """The source side of a key comparison with an existing target column of type ``stored``.

    A target written with the source key's own type compares as it is. A target an earlier version created
    with a text key for a non-text source (a PostgreSQL uuid, date or enum), or a double for an exact number,
    is compared with the source key cast to that type, as its values were written: the comparison is like
    with like, and an existing target keeps working.
    """
    if kt is None or stored is None:
        return expr
    kind = stored_kind(stored)
    if kind == "text":
        plain = kt.kind == "text" and (not kt.source or _base(kt.source)[0] in _PLAIN_TEXT)
        return expr if plain else f"CAST({expr} AS {text_type})"
    if kind == "float" and kt.kind != "float":
        return f"CAST({expr} AS {double_type})"
    return expr


def refusal_message(key: str, type_label: str) -> str:
    """Why a key column is refused."""
    return (
        f"key column {key!r} has type {type_label}, which the sync cannot carry exactly to the API and back; "
        f"supported key types: {SUPPORTED_KEY_TYPES}"
    )
