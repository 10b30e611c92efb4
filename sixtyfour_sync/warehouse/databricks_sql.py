"""Pure Databricks SQL pieces (no I/O): literals, staged ``VALUES``, result types and DML metrics.

Values reach Databricks as SQL literals rather than named parameters: the Statement Execution API
binds ``:name`` parameters, but one code path for every value (scalars, ledger rows and staged rows)
is easier to keep exact. A literal never depends on how a parser treats escapes: a string's single
quotes, backslashes and backticks are spliced in as ``chr(39)``, ``chr(92)`` and ``chr(96)``
(Databricks reads backslash escapes in string literals, ANSI SQL does not), timestamps are written in
UTC with an explicit ``+00:00``, and doubles go through ``CAST(... AS DOUBLE)`` (a bare ``1.5`` is a
DECIMAL in Databricks).
"""

from __future__ import annotations

import datetime as dt
import decimal
import math
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

__all__ = [
    "arrow_type_for",
    "dml_count",
    "literal",
    "stage_type",
    "string_literal",
    "values_rows",
    "values_statements",
]

_SPLICE = {"'": "' || chr(39) || '", "\\": "' || chr(92) || '", "`": "' || chr(96) || '"}


def string_literal(text: str) -> str:
    """A string literal that reads the same with or without backslash escapes."""
    out = "'" + "".join(_SPLICE.get(ch, ch) for ch in text) + "'"
    return out.replace("'' || ", "").replace(" || ''", "") if out != "''" else out


def _timestamp_text(value: dt.datetime) -> str:
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.timezone.utc)
    return value.astimezone(dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S.%f") + "+00:00"


def literal(value: Any) -> str:
    """One Python value as a Databricks SQL literal (``None`` is ``NULL``)."""
    if value is None:
        return "NULL"
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        text = "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
        return f"CAST('{repr(value) if math.isfinite(value) else text}' AS DOUBLE)"
    if isinstance(value, decimal.Decimal):
        exp = value.as_tuple().exponent
        scale = max(0, -exp) if isinstance(exp, int) else 0
        return f"CAST('{value}' AS DECIMAL(38, {min(scale, 38)}))"
    if isinstance(value, dt.datetime):
        return f"TIMESTAMP '{_timestamp_text(value)}'"
    if isinstance(value, dt.date):
        return f"DATE '{value.isoformat()}'"
    if isinstance(value, (bytes, bytearray)):
        return f"unhex('{bytes(value).hex()}')"
    return string_literal(str(value))


def stage_type(t: pa.DataType) -> str:
    """The Databricks column type a staged Arrow column is written to."""
    if pa.types.is_boolean(t):
        return "BOOLEAN"
    if pa.types.is_integer(t):
        return "BIGINT"
    if pa.types.is_floating(t):
        return "DOUBLE"
    if pa.types.is_decimal(t):
        return f"DECIMAL({min(t.precision, 38)}, {min(t.scale, 38)})"
    if pa.types.is_timestamp(t):
        return "TIMESTAMP"
    if pa.types.is_date(t):
        return "DATE"
    if pa.types.is_binary(t) or pa.types.is_large_binary(t):
        return "BINARY"
    return "STRING"


def _column_literals(col: pa.ChunkedArray) -> pa.ChunkedArray:
    """Every value of one column as literal SQL text, computed column-wise (no Python per row)."""
    t = col.type
    if pa.types.is_null(t):
        return pa.chunked_array([pa.repeat(pa.scalar("NULL", pa.string()), len(col))])
    if pa.types.is_boolean(t):
        text = pc.if_else(col, "TRUE", "FALSE")
    elif pa.types.is_integer(t):
        text = pc.cast(col, pa.string())
    elif pa.types.is_floating(t):
        text = pc.binary_join_element_wise("CAST('", pc.cast(col, pa.string()), "' AS DOUBLE)", "")
        text = pc.replace_substring(pc.replace_substring(text, "'inf'", "'Infinity'"), "'-inf'", "'-Infinity'")
        text = pc.replace_substring(text, "'nan'", "'NaN'")
    elif pa.types.is_timestamp(t):
        utc = col if t.tz is not None else pc.assume_timezone(col, "UTC")
        utc = utc.cast(pa.timestamp("us", tz="UTC"), safe=False)
        text = pc.binary_join_element_wise("TIMESTAMP '", pc.strftime(utc, format="%Y-%m-%d %H:%M:%S"), "+00:00'", "")
    elif pa.types.is_date(t):
        text = pc.binary_join_element_wise("DATE '", pc.cast(col, pa.string()), "'", "")
    elif pa.types.is_decimal(t):
        typ = f"DECIMAL({min(t.precision, 38)}, {min(t.scale, 38)})"
        text = pc.binary_join_element_wise("CAST('", pc.cast(col, pa.string()), f"' AS {typ})", "")
    elif pa.types.is_binary(t) or pa.types.is_large_binary(t):
        hexed = pa.chunked_array([pa.array([None if v is None else v.hex() for v in col.to_pylist()], pa.string())])
        text = pc.binary_join_element_wise("unhex('", hexed, "')", "")
    else:
        s = col.cast(pa.string())
        for ch, splice in _SPLICE.items():
            s = pc.replace_substring(s, ch, splice)
        text = pc.binary_join_element_wise("'", s, "'", "")
    return pc.fill_null(text, "NULL")


def values_rows(data: pa.Table) -> pa.ChunkedArray:
    """Each row of ``data`` as ``(lit, lit, ...)`` text, in row order."""
    literals = [_column_literals(c) for c in data.columns]
    joined = pc.binary_join_element_wise(*literals, ", ") if len(literals) > 1 else literals[0]
    return pc.binary_join_element_wise("(", joined, ")", "")


def values_statements(prefix: str, data: pa.Table, *, max_bytes: int = 4 << 20) -> Iterator[str]:
    """``prefix VALUES (...), (...)`` statements of at most about ``max_bytes`` each, covering every row."""
    rows = values_rows(data)
    pieces: list[str] = []
    size = 0
    for chunk in rows.chunks:
        for text in chunk.to_pylist():
            if pieces and size + len(text) > max_bytes:
                yield f"{prefix} VALUES " + ", ".join(pieces)
                pieces, size = [], 0
            pieces.append(text)
            size += len(text) + 2
    if pieces:
        yield f"{prefix} VALUES " + ", ".join(pieces)


#: Result column type names (``type_name``, else ``type_text``) -> the Arrow type rows are cast to.
_ARROW_TYPES: Mapping[str, pa.DataType] = {
    "BOOLEAN": pa.bool_(),
    "BYTE": pa.int8(),
    "TINYINT": pa.int8(),
    "SHORT": pa.int16(),
    "SMALLINT": pa.int16(),
    "INT": pa.int32(),
    "INTEGER": pa.int32(),
    "LONG": pa.int64(),
    "BIGINT": pa.int64(),
    "FLOAT": pa.float32(),
    "REAL": pa.float32(),
    "DOUBLE": pa.float64(),
    "STRING": pa.string(),
    "VARCHAR": pa.string(),
    "DATE": pa.date32(),
    "TIMESTAMP": pa.timestamp("us", tz="UTC"),
    "TIMESTAMP WITH TIME ZONE": pa.timestamp("us", tz="UTC"),
    "TIMESTAMP_NTZ": pa.timestamp("us"),
    "BINARY": pa.binary(),
}


def arrow_type_for(type_name: str | None, type_text: str | None) -> pa.DataType | None:
    """The Arrow type of a result column as the manifest names it, or None when it has no fixed one."""
    for name in (type_name, type_text):
        if name:
            found = _ARROW_TYPES.get(name.upper().split("(")[0].strip())
            if found is not None:
                return found
    return None


def dml_count(names: Sequence[str], row: Sequence[Any] | None) -> int:
    """Rows a DML statement changed, from its one-row result (``num_affected_rows``; a bare count otherwise)."""
    if not row:
        return 0
    lowered = [n.lower() for n in names]
    for wanted in ("num_affected_rows", "count"):
        if wanted in lowered:
            value = row[lowered.index(wanted)]
            return int(value or 0)
    return int(row[0] or 0) if len(row) == 1 and str(row[0]).lstrip("-").isdigit() else 0
