"""Snowflake's Arrow edges, pure: result chunks cast to one schema, and rows made ready for Parquet staging.

``fetch_arrow_batches`` hands a result over chunk by chunk, and chunks of one result differ: an integer
column comes as int8 in one chunk and int64 in the next, timestamps in ns or us, zoned ones with their own
offsets. :func:`arrow_batches` casts every chunk to the types the result metadata declares. Staging goes
the other way: :func:`parquet_ready` writes timestamps in UTC and decimals within Snowflake's 38 digits.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from sixtyfour_sync.errors import DataError
from sixtyfour_sync.warehouse.arrow import conform_batches, rows_to_batches
from sixtyfour_sync.warehouse.sql.upsert import SEQ

__all__ = ["MAX_PRECISION", "arrow_batches", "parquet_ready", "result_types", "stage_type"]

#: NUMBER's largest precision.
MAX_PRECISION = 38


def result_types(description: Sequence[Any]) -> list[pa.DataType | None]:
    """The Arrow type each result column is cast to, from the cursor's metadata (None: the first batch's).

    NUMBER(p, 0) is int64 whatever width a chunk used (p up to 18, and 38: Snowflake's INTEGER and BIGINT);
    a NUMBER declared wider than 18 digits (NUMBER(20,0)) or with a scale is a decimal of that precision and
    scale, exact and the same in every chunk; timestamps are microseconds, zoned ones in UTC.
    """
    try:
        from snowflake.connector.constants import FIELD_ID_TO_NAME
    except ImportError:  # pragma: no cover - the connector is installed when a cursor exists
        return [None for _ in description]
    out: list[pa.DataType | None] = []
    for col in description:
        code = getattr(col, "type_code", None)
        name = FIELD_ID_TO_NAME.get(code, "") if isinstance(code, int) else ""
        scale = getattr(col, "scale", None)
        precision = getattr(col, "precision", None)
        if name == "FIXED":
            if not scale and (precision is None or precision <= 18 or precision == MAX_PRECISION):
                out.append(pa.int64())
            else:
                out.append(pa.decimal128(min(precision or MAX_PRECISION, MAX_PRECISION), scale or 0))
        elif name in ("TIMESTAMP_TZ", "TIMESTAMP_LTZ"):
            out.append(pa.timestamp("us", tz="UTC"))
        elif name in ("TIMESTAMP_NTZ", "TIMESTAMP"):
            out.append(pa.timestamp("us"))
        else:
            out.append(
                {"REAL": pa.float64(), "TEXT": pa.string(), "BOOLEAN": pa.bool_(), "VARIANT": pa.string()}.get(name)
            )
    return out


def arrow_batches(cursor: Any, batch_rows: int) -> Iterator[pa.RecordBatch]:
    """Yield an executed cursor's result as Arrow batches of at most ``batch_rows`` rows, one schema.

    ``fetch_arrow_batches`` hands over the result chunk by chunk as Snowflake serves them; each is
    re-sliced (zero copy) and cast to the types from the result metadata. A cursor without it is read
    with ``fetchmany`` and converted.
    """
    fetch = getattr(cursor, "fetch_arrow_batches", None)
    if not callable(fetch):
        names = [str(d[0]) for d in cursor.description or ()]
        # Decimals get the declared precision and scale, not the first rows' (a key must keep one type).
        declared = [t if t is not None and pa.types.is_decimal(t) else None for t in result_types(cursor.description)]
        yield from rows_to_batches(cursor.fetchmany, names, batch_rows, declared if any(declared) else None)
        return
    try:
        # Without it each chunk picks its own timestamp unit (ns, or us for dates outside 1677-2262).
        tables = fetch(force_microsecond_precision=True)
    except TypeError:
        tables = fetch()
    description = list(getattr(cursor, "description", None) or ())
    wanted = result_types(description) if description else None

    def sliced() -> Iterator[pa.RecordBatch]:
        for table in tables:
            yield from table.to_batches(max_chunksize=batch_rows)

    yield from conform_batches(sliced(), wanted)


def stage_type(t: pa.DataType) -> str:
    """The staging table's column type for an Arrow type (decimals within 38 digits)."""
    if pa.types.is_boolean(t):
        return "BOOLEAN"
    if pa.types.is_integer(t):
        return "NUMBER(38,0)"
    if pa.types.is_floating(t):
        return "DOUBLE"
    if pa.types.is_decimal(t):
        return f"NUMBER({min(t.precision, MAX_PRECISION)},{min(t.scale, MAX_PRECISION)})"
    if pa.types.is_timestamp(t):
        return "TIMESTAMP_TZ"
    if pa.types.is_date(t):
        return "DATE"
    if pa.types.is_binary(t) or pa.types.is_large_binary(t):
        return "BINARY"
    return "VARCHAR"


def parquet_ready(data: pa.Table, names: Sequence[str]) -> pa.Table:
    """Stored spellings, UTC timestamps, decimals within 38 digits, text where Parquet has no type."""
    arrays: list[pa.ChunkedArray] = []
    for fld, col in zip(data.schema, data.columns, strict=True):
        t = col.type
        if pa.types.is_timestamp(t):
            col = pc.assume_timezone(col, "UTC") if t.tz is None else col.cast(pa.timestamp(t.unit, tz="UTC"))
        elif pa.types.is_null(t) or pa.types.is_large_string(t):
            col = col.cast(pa.string())
        elif pa.types.is_decimal(t) and (t.precision > MAX_PRECISION or pa.types.is_decimal256(t)):
            want = pa.decimal128(MAX_PRECISION, min(t.scale, MAX_PRECISION))
            try:
                col = col.cast(want)
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
                raise DataError(
                    f"snowflake: column {fld.name!r} holds decimals beyond 38 digits ({exc})",
                    hint="round it or cast it to text before the upsert",
                ) from None
        arrays.append(col)
    out = pa.Table.from_arrays(arrays, names=list(names))
    return out.append_column(SEQ, pa.array(range(out.num_rows), pa.int64()))
