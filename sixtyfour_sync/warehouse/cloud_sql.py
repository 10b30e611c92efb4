"""Pure SQL and Arrow helpers shared by the BigQuery and Databricks adapters (no I/O).

Both warehouses upsert the same way: rows are staged in a table of their own, then one ``MERGE``
(or, for a part whose keys are known to be new, one ``INSERT ... SELECT``) writes only the columns
the sync owns. Per-column guards decide row by row whether a value is written:

- an existing row gets ``s.col`` where the staged boolean ``when`` column is true and (without
  ``not_below``, or where the stored ``not_below`` value is NULL or not above the staged one), and
  keeps ``t.col`` otherwise;
- a new row gets ``s.col`` where ``when`` is true, else NULL;
- the ``when`` columns themselves are never written.

Names reach these builders already quoted by the adapter (a ``quote`` callable), so nothing here
decides how a dialect spells an identifier.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import pyarrow as pa
import pyarrow.compute as pc

from sixtyfour_sync.errors import DataError

__all__ = [
    "GuardSpec",
    "PreparedPart",
    "insert_select_sql",
    "merge_sql",
    "parquet_ready",
    "part_options",
    "prepare_part",
    "qmark_positions",
    "reject_null_keys",
    "substitute_qmarks",
]

Quote = Callable[[str], str]


class GuardSpec(Protocol):
    """What a guard says (``sixtyfour_sync.warehouse`` ``Guard``): the staged flag and the optional floor."""

    @property
    def when(self) -> str: ...

    @property
    def not_below(self) -> str | None: ...


@dataclass(frozen=True)
class PreparedPart:
    """One upsert part ready to stage: key, written columns, their guards and the staged columns."""

    data: pa.Table
    set_columns: tuple[str, ...]
    guards: Mapping[str, GuardSpec]
    insert_only: bool
    duplicates_dropped: int


def part_options(part: object) -> tuple[Mapping[str, GuardSpec], bool]:
    """``(guards, insert_only)`` of an upsert part (parts without them have none and are not insert-only)."""
    guards: Mapping[str, GuardSpec] = getattr(part, "guards", None) or {}
    return guards, bool(getattr(part, "insert_only", False))


def reject_null_keys(data: pa.Table, key: Sequence[str], table: object) -> None:
    """Raise :class:`DataError` naming how many rows (and which) have a NULL key part."""
    mask = None
    for k in key:
        m = pc.is_null(data.column(k))
        mask = m if mask is None else pc.or_(mask, m)
    if mask is None or not pc.any(mask).as_py():
        return
    bad = data.filter(mask)
    sample = [tuple(r.values()) for r in bad.select(list(key)).slice(0, 5).to_pylist()]
    raise DataError(
        f"upsert into {table}: {bad.num_rows:,} row(s) have a NULL key part ({', '.join(key)}); e.g. {sample}",
        hint="filter NULL keys out of the source (the sync skips them when it selects rows)",
    )


def _value(col: str, alias: str, quote: Quote, json_cols: Iterable[str], parse_json: str | None) -> str:
    ref = f"{alias}.{quote(col)}"
    return f"{parse_json}({ref})" if parse_json and col in set(json_cols) else ref


def _guard_condition(guard: GuardSpec, quote: Quote) -> str:
    cond = f"s.{quote(guard.when)}"
    if guard.not_below:
        nb = quote(guard.not_below)
        cond += f" AND (t.{nb} IS NULL OR s.{nb} >= t.{nb})"
    return cond


def merge_sql(
    *,
    target: str,
    source: str,
    key: Sequence[str],
    set_columns: Sequence[str],
    guards: Mapping[str, GuardSpec],
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
        guard = guards.get(c)
        if guard is not None:
            value = f"CASE WHEN {_guard_condition(guard, quote)} THEN {value} ELSE t.{quote(c)} END"
        sets.append(f"{quote(c)} = {value}")
    if sets:
        sql += " WHEN MATCHED THEN UPDATE SET " + ", ".join(sets)
    cols = [*key, *set_columns]
    values = [_insert_value(c, guards, quote, json_cols, parse_json) for c in cols]
    names = ", ".join(quote(c) for c in cols)
    return sql + f" WHEN NOT MATCHED THEN INSERT ({names}) VALUES ({', '.join(values)})"


def _insert_value(
    col: str, guards: Mapping[str, GuardSpec], quote: Quote, json_cols: Sequence[str], parse_json: str | None
) -> str:
    value = _value(col, "s", quote, json_cols, parse_json)
    guard = guards.get(col)
    if guard is None:
        return value
    return f"CASE WHEN s.{quote(guard.when)} THEN {value} END"


def insert_select_sql(
    *,
    target: str,
    source: str,
    key: Sequence[str],
    set_columns: Sequence[str],
    guards: Mapping[str, GuardSpec],
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


def qmark_positions(sql: str, spans: Iterable[tuple[int, int, bool]]) -> list[int]:
    """Offsets of the ``?`` placeholders in ``sql`` that lie in code spans (not literals or comments)."""
    out: list[int] = []
    for start, end, code in spans:
        if code:
            out.extend(start + i for i, ch in enumerate(sql[start:end]) if ch == "?")
    return out


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


def staged_columns(key: Sequence[str], set_columns: Sequence[str], guards: Mapping[str, GuardSpec]) -> list[str]:
    """Key, set columns, then every guard column not already among them (in a stable order)."""
    out = [*key, *[c for c in set_columns if c not in key]]
    for g in guards.values():
        for c in (g.when, g.not_below):
            if c and c not in out:
                out.append(c)
    return out


def unknown_guarded(set_columns: Sequence[str], guards: Mapping[str, Any]) -> list[str]:
    """Guarded columns that are not set columns (a caller mistake)."""
    return [c for c in guards if c not in set_columns]


def prepare_part(part: Any, key: Sequence[str], table: object, validate: Callable[[str, str], object]) -> PreparedPart:
    """Validate names, reject NULL keys, keep the last row per key, and keep only the staged columns.

    ``validate(name, what)`` is the adapter's identifier check. Lists and structs become JSON text.
    """
    from sixtyfour_sync.warehouse.base import dedupe_last, json_columns_to_text

    if not key:
        raise ValueError("upsert needs at least one key column")
    guards, insert_only = part_options(part)
    set_cols = [c for c in part.set_columns if c not in key]
    stray = unknown_guarded(set_cols, guards)
    if stray:
        raise ValueError(f"upsert into {table}: guards for column(s) {stray} that are not set columns")
    cols = staged_columns(key, set_cols, guards)
    for c in cols:
        validate(c, f"column of {table}")
    data: pa.Table = part.data
    missing = [c for c in cols if c not in data.column_names]
    if missing:
        raise DataError(f"upsert into {table}: the rows have no column(s) {missing} (they have {data.column_names})")
    data = data.select(cols)
    reject_null_keys(data, key, table)
    data, dropped = dedupe_last(data, key)
    return PreparedPart(json_columns_to_text(data), tuple(set_cols), guards, insert_only, dropped)


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
