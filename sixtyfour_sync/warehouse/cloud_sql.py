"""Pure SQL and Arrow helpers shared by the BigQuery and Databricks adapters (no I/O).

Both warehouses upsert the same way: rows are staged in a table of their own, then one ``MERGE``
(or, for a part whose keys are known to be new, one ``INSERT ... SELECT``) writes only the columns
the sync owns. Per-column guards decide row by row whether a value is written, kept or cleared
(:mod:`sixtyfour_sync.warehouse.sql.guards`, shared with every other warehouse); the guards' flag columns
themselves are never written.

Names reach these builders already quoted by the adapter (a ``quote`` callable), so nothing here
decides how a dialect spells an identifier.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence

import pyarrow as pa
import pyarrow.compute as pc

from sixtyfour_sync.warehouse.sql import guards as guard_sql
from sixtyfour_sync.warehouse.types import Guard

__all__ = [
    "insert_select_sql",
    "merge_sql",
    "parquet_ready",
    "substitute_qmarks",
]

Quote = Callable[[str], str]


def _value(col: str, alias: str, quote: Quote, json_cols: Iterable[str], parse_json: str | None) -> str:
    ref = f"{alias}.{quote(col)}"
    return f"{parse_json}({ref})" if parse_json and col in set(json_cols) else ref


def merge_sql(
    *,
    target: str,
    source: str,
    key: Sequence[str],
    set_columns: Sequence[str],
    guards: Mapping[str, Guard],
    quote: Quote,
    json_columns: Iterable[str] = (),
    parse_json: str | None = None,
) -> str:
    """``MERGE INTO target AS t USING source AS s ON keys`` updating and inserting only ``set_columns``.

    ``target``/``source`` are already-quoted relation names; ``parse_json`` names the function that
    turns staged JSON text into the target's JSON type for ``json_columns``.
    """
    json_cols = list(json_columns)
    on = " AND ".join(f"t.{quote(k)} = s.{quote(k)}" for k in key)
    sql = f"MERGE INTO {target} AS t USING {source} AS s ON {on}"
    sets = []
    for c in set_columns:
        value = _value(c, "s", quote, json_cols, parse_json)
        value = guard_sql.update_value(guards.get(c), c, quote, value)
        sets.append(f"{quote(c)} = {value}")
    if sets:
        sql += " WHEN MATCHED THEN UPDATE SET " + ", ".join(sets)
    cols = [*key, *set_columns]
    values = [_insert_value(c, guards, quote, json_cols, parse_json) for c in cols]
    names = ", ".join(quote(c) for c in cols)
    return sql + f" WHEN NOT MATCHED THEN INSERT ({names}) VALUES ({', '.join(values)})"


def _insert_value(
    col: str, guards: Mapping[str, Guard], quote: Quote, json_cols: Sequence[str], parse_json: str | None
) -> str:
    return guard_sql.insert_value(guards.get(col), quote, _value(col, "s", quote, json_cols, parse_json))


def insert_select_sql(
    *,
    target: str,
    source: str,
    key: Sequence[str],
    set_columns: Sequence[str],
    guards: Mapping[str, Guard],
    quote: Quote,
    json_columns: Iterable[str] = (),
    parse_json: str | None = None,
) -> str:
    """``INSERT INTO target (key, cols) SELECT ... FROM source AS s``: rows whose keys are known to be new."""
    json_cols = list(json_columns)
    cols = [*key, *set_columns]
    values = [_insert_value(c, guards, quote, json_cols, parse_json) for c in cols]
    names = ", ".join(quote(c) for c in cols)
    return f"INSERT INTO {target} ({names}) SELECT {', '.join(values)} FROM {source} AS s"


def substitute_qmarks(sql: str, positions: Sequence[int], rendered: Sequence[str]) -> str:
    """Replace the placeholders at ``positions`` by the ``rendered`` SQL texts, in order."""
    if len(positions) != len(rendered):
        raise ValueError(f"the statement has {len(positions)} placeholder(s) but {len(rendered)} value(s) were given")
    pieces: list[str] = []
    last = 0
    for pos, text in zip(positions, rendered, strict=True):
        pieces.append(sql[last:pos])
        pieces.append(text)
        last = pos + 1
    pieces.append(sql[last:])
    return "".join(pieces)


def parquet_ready(data: pa.Table) -> pa.Table:
    """UTC microsecond timestamps, plain strings and no NULL-typed columns, as a Parquet load wants."""
    arrays = []
    for col in data.columns:
        t = col.type
        if pa.types.is_timestamp(t):
            col = pc.assume_timezone(col, "UTC") if t.tz is None else col
            col = col.cast(pa.timestamp("us", tz="UTC"), safe=False)
        elif pa.types.is_null(t) or pa.types.is_large_string(t):
            col = col.cast(pa.string())
        arrays.append(col)
    return pa.Table.from_arrays(arrays, names=data.column_names)
