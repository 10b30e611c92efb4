"""An :class:`UpsertPart` checked and made ready to stage: names, NULL keys, duplicates, guards (pure).

Everything an upsert can reject is rejected here, before any statement runs, so a bad part never
leaves half a write behind.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import pyarrow as pa
import pyarrow.compute as pc

from sixtyfour_sync.errors import DataError
from sixtyfour_sync.warehouse.arrow import dedupe_last, json_columns_to_text
from sixtyfour_sync.warehouse.dialect import Dialect
from sixtyfour_sync.warehouse.sql.identifiers import Names
from sixtyfour_sync.warehouse.types import Guard, TableRef, UpsertPart

__all__ = ["PreparedPart", "apply_insert_guards", "guards_decided_in_stage", "prepare_part"]


@dataclass(frozen=True)
class PreparedPart:
    """A validated part: ``data`` holds the key, the set columns, then the guards' extra columns."""

    data: pa.Table
    key: tuple[str, ...]
    set_columns: tuple[str, ...]
    guards: Mapping[str, Guard] = field(default_factory=dict)
    insert_only: bool = False
    duplicates_dropped: int = 0
    #: Staged boolean columns that exist only in the stage (the guards' ``when`` columns).
    flag_columns: tuple[str, ...] = ()


def _check_guards(table: TableRef, key: Sequence[str], set_cols: Sequence[str], part: UpsertPart) -> list[str]:
    """The guards' extra staged columns, in first-use order; DataError for a guard that cannot work."""
    extra: list[str] = []
    where = f"upsert into {table}"
    for col, guard in part.guards.items():
        if col not in set_cols:
            raise DataError(f"{where}: a guard for {col!r}, which is not among the set columns {list(set_cols)}")
        for flag in guard.flags:
            if flag in key or flag in set_cols:
                raise DataError(f"{where}: guard column {flag!r} of {col!r} is a key or set column, not a flag")
        for name in guard.compared:
            if name in key:
                raise DataError(f"{where}: guard of {col!r} compares the key column {name!r}")
        for name in guard.same:
            if name not in set_cols:
                raise DataError(f"{where}: guard of {col!r} compares {name!r}, which is not among the set columns")
        for name in (*guard.flags, *guard.compared):
            if name not in set_cols and name not in extra:
                extra.append(name)
    return extra


def _null_key_check(data: pa.Table, table: TableRef, key: Sequence[str]) -> None:
    null_mask = None
    for k in key:
        m = pc.is_null(data.column(k))
        null_mask = m if null_mask is None else pc.or_(null_mask, m)
    if null_mask is not None and pc.any(null_mask).as_py():
        bad = data.filter(null_mask)
        sample = [tuple(r.values()) for r in bad.select(list(key)).slice(0, 5).to_pylist()]
        raise DataError(
            f"upsert into {table}: {bad.num_rows:,} row(s) have a NULL key part ({', '.join(key)}); e.g. {sample}",
            hint="filter NULL keys out of the source (the sync skips them when it selects rows)",
        )


def _flags_to_bool(data: pa.Table, flags: Sequence[str], table: TableRef) -> pa.Table:
    for name in flags:
        col = data.column(name)
        if pa.types.is_boolean(col.type):
            continue
        if not pa.types.is_null(col.type):
            raise DataError(f"upsert into {table}: guard column {name!r} must be boolean, not {col.type}")
        data = data.set_column(data.column_names.index(name), name, pc.cast(col, pa.bool_()))
    return data


def prepare_part(names: Names, table: TableRef, key: Sequence[str], part: UpsertPart) -> PreparedPart:
    """Validate names, reject NULL keys, deduplicate (last wins), keep only the staged columns."""
    if not key:
        raise ValueError("upsert needs at least one key column")
    for k in key:
        names.validate(k, what=f"key column of {table}")
    set_cols = [c for c in part.set_columns if c not in key]
    for c in set_cols:
        names.validate(c, what=f"column of {table}")
    extra = _check_guards(table, key, set_cols, part)
    for c in extra:
        names.validate(c, what=f"guard column of {table}")
    data = part.data
    missing = [c for c in (*key, *set_cols, *extra) if c not in data.column_names]
    if missing:
        raise DataError(f"upsert into {table}: the rows have no column(s) {missing} (they have {data.column_names})")
    data = data.select([*key, *set_cols, *extra])
    flags = [f for g in part.guards.values() for f in g.flags]
    data = _flags_to_bool(data, list(dict.fromkeys(flags)), table)
    _null_key_check(data, table, key)
    data, dropped = (data, 0) if part.unique_keys else dedupe_last(data, key)
    data = json_columns_to_text(data)
    return PreparedPart(
        data,
        tuple(key),
        tuple(set_cols),
        dict(part.guards),
        part.insert_only,
        dropped,
        tuple(dict.fromkeys(flags)),
    )


def apply_insert_guards(part: PreparedPart) -> pa.Table:
    """The rows as a plain insert writes them: a guarded value is NULL where its ``when`` is not true.

    Only the key and set columns remain (an inserted row has no stored value to compare with).
    """
    data = part.data
    for col, guard in part.guards.items():
        i = data.column_names.index(col)
        when = pc.fill_null(data.column(guard.when), False)
        values = data.column(i)
        data = data.set_column(i, data.schema.field(i), pc.if_else(when, values, pa.scalar(None, values.type)))
    return data.select([*part.key, *part.set_columns])


def guards_decided_in_stage(
    part: PreparedPart, dialect: Dialect
) -> tuple[PreparedPart, list[tuple[tuple[str, str | None], Guard]]]:
    """Where SET assignments may see each other (MySQL), guards that compare stored values are decided in the
    stage first.

    Each such guard gets flag columns (copies of its ``when`` and ``clear``) that one UPDATE of the stage
    decides against the stored rows; the upsert then tests only the flags. Returns the part to stage and the
    ((write flag, clear flag), guard) pairs to decide; elsewhere the part unchanged and no pairs.
    """
    needs = {c: g for c, g in part.guards.items() if g.compared}
    if dialect.assignments_see_old_values or not needs:
        return part, []
    data = part.data
    guards = dict(part.guards)
    decide: list[tuple[tuple[str, str | None], Guard]] = []
    taken = set(data.column_names)

    def fresh(base: str) -> str:
        name = base
        while name in taken:
            name += "_"
        taken.add(name)
        return name

    for i, (col, guard) in enumerate(needs.items()):
        write = fresh(f"__sixtyfour_guard_{i}")
        data = data.append_column(write, data.column(guard.when))
        clear: str | None = None
        if guard.clear is not None and guard.same:
            clear = fresh(f"__sixtyfour_clear_{i}")
            data = data.append_column(clear, data.column(guard.clear))
        guards[col] = Guard(when=write, clear=clear)
        decide.append(((write, clear), guard))
    flags = (*part.flag_columns, *(f for (w, c), _ in decide for f in (w, c) if f is not None))
    return PreparedPart(data, part.key, part.set_columns, guards, False, part.duplicates_dropped, flags), decide
