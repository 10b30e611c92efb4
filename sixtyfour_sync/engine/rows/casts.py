"""How a struct field's answer is read from a result file: one DuckDB expression per type, and the enum check.

The rules (the "Struct types" table of ``docs/config.md``):

- ``str``, ``enum`` and a type the API's schema does not list: the text as it came; only an empty field is NULL
  (never the words ``NA``, ``null``, ``nan``, ``N/A``: they may be answers).
- ``int``: an exact integer (``3.0`` and ``1e3`` are integers); anything else is NULL.
- ``float``: a finite number; ``inf``, ``-inf``, ``nan`` (and ``1e400``, which overflows) are NULL: no SQL
  warehouse stores them all.
- ``bool``: what DuckDB reads as a boolean (true/false, t/f, yes/no, 1/0, any case); anything else is NULL.
- JSON-typed (``list``, ``list[...]``, ``list[enum]``, ``object``, ``object_list``, ``dict``): valid JSON text of
  the right shape, kept as written: an ``object`` is a JSON object, the lists and ``object_list`` a JSON array,
  a ``dict`` any JSON value. The JSON literal ``null`` is no answer (NULL); anything else is NULL too.

A NULL from a non-empty field (but from ``null`` of a JSON type) is a cast failure, counted by the parser.
"""

from __future__ import annotations

from collections.abc import Mapping

import pyarrow as pa
import pyarrow.compute as pc

from sixtyfour_sync.config.models import StructField
from sixtyfour_sync.config.structtypes import json_shape
from sixtyfour_sync.engine.ledger.localdb import fetch_one, literal, registered

__all__ = ["answered_mask", "cast_sql", "count_outside_values"]

_SHAPE_TYPE = {"object": "OBJECT", "array": "ARRAY"}


def cast_sql(expr: str, field: StructField) -> str:
    """The DuckDB expression reading the text ``expr`` as ``field``'s type (NULL where it does not read)."""
    kind = field.type
    blank = f"NULLIF(trim({expr}), '')"
    if kind == "int":
        # "3.0" and "1e3" are integers the API may render as floats; round only when exact.
        return (
            f"COALESCE(TRY_CAST({blank} AS BIGINT), CASE WHEN TRY_CAST({blank} AS DOUBLE) = "
            f"round(TRY_CAST({blank} AS DOUBLE)) THEN TRY_CAST(TRY_CAST({blank} AS DOUBLE) AS BIGINT) END)"
        )
    if kind == "float":
        number = f"TRY_CAST({blank} AS DOUBLE)"
        return f"CASE WHEN isfinite({number}) THEN {number} END"
    if kind == "bool":
        return f"TRY_CAST({blank} AS BOOLEAN)"
    shape = json_shape(kind)
    if shape is not None:
        # json_type() raises on invalid JSON: the outer CASE keeps it to valid values
        wanted = f"IN ('{_SHAPE_TYPE[shape]}')" if shape in _SHAPE_TYPE else "<> 'NULL'"
        return f"CASE WHEN json_valid({blank}) THEN CASE WHEN json_type({blank}) {wanted} THEN {blank} END END"
    return f"NULLIF({expr}, '')"


def answered_mask(raw: pa.ChunkedArray | pa.Array, field: StructField) -> pa.ChunkedArray | pa.Array:
    """Where the result gave ``field`` an answer (a NULL there that the cast made is a cast failure): a
    non-blank value, but the JSON literal ``null`` of a JSON-typed field, which is no answer."""
    given = pc.not_equal(pc.utf8_trim_whitespace(raw), "")
    if field.is_json:
        given = pc.and_(given, pc.not_equal(pc.utf8_trim_whitespace(raw), "null"))
    return given


def count_outside_values(table: pa.Table, struct: Mapping[str, StructField]) -> dict[str, int]:
    """Per enum field with ``values``: the answers outside them (kept: the API decided), by row.

    ``enum``: a value not among the allowed ones; ``list[enum]``: an array holding at least one such item.
    Compared exactly (case matters). Fields without values, or absent from ``table``, are not counted.
    """
    out: dict[str, int] = {}
    for name, field in struct.items():
        if field.values is None or name not in table.column_names:
            continue
        column = table.column(name)
        allowed = pa.array(field.values, pa.string())
        if field.type == "enum":
            outside = pc.and_(pc.is_valid(column), pc.invert(pc.is_in(column, value_set=allowed)))
            n = int(pc.sum(outside).as_py() or 0)
        elif field.type == "list[enum]":
            listed = "[" + ", ".join(literal(v) for v in field.values) + "]"
            with registered(pa.table({"v": column})) as (con, (t,)):
                row = fetch_one(
                    con,
                    f"SELECT count(*) FROM {t} WHERE v IS NOT NULL AND NOT "
                    f"list_has_all({listed}::VARCHAR[], json_extract_string(v, '$[*]'))",
                )
            n = int(row[0]) if row else 0
        else:
            continue
        if n:
            out[name] = n
    return out
