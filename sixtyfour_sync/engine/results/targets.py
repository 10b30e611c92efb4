"""The target, checked and made ready before anything is paid for.

Before a sync's first submission of a run, and in ``validate``:

- an existing target must hold the sync's columns in types that can take its values, and the sync must own
  every column it writes: a column that already exists and that the sync did not create (the ledger's
  ``_sixtyfour_sync_columns`` knows) belongs to someone else, and is written only when ``target.adopt_columns``
  names it. A source that is the target itself never has its input columns written, adopted or not;
- one row shaped like the rows the sync writes (its key taken from the source) is upserted in a transaction
  that is then rolled back, where the warehouse can roll an upsert back: a view, a NOT NULL column without a
  default, a CHECK constraint, a trigger that raises or a column too narrow refuse it here, and the sync pays
  nothing and says what to change. Where the warehouse can roll DDL back too (PostgreSQL, DuckDB, SQLite), a
  target that does not exist yet, or lacks columns, is created or completed inside that transaction, so it is
  tried as the merge will find it; elsewhere an incomplete target is tried only once it is complete.

Nothing is written by the checks: the target is created (or completed) by the first merge, and the columns the
sync created are recorded then (``_sixtyfour_sync_columns``). A target an older version created, on which the
sync has already written (its status column is there), has always been written by the sync: its columns are
recorded as the sync's the first time it is merged into.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from typing import Any

import pyarrow as pa

from sixtyfour_sync._redact import sanitize
from sixtyfour_sync.config.models import LoadedSync, SyncSpec
from sixtyfour_sync.engine.ledger.store import Ledger
from sixtyfour_sync.engine.plan.columns import owned_columns
from sixtyfour_sync.errors import ConfigError, ConfigProblem, SixtyfourSyncError, WarehouseBusyError
from sixtyfour_sync.warehouse.adapter import Adapter
from sixtyfour_sync.warehouse.types import Column, LogicalType, TableRef, UpsertPart

__all__ = ["claimed_columns", "dry_run", "ownership_problems", "type_problems"]


class _RolledBack(Exception):
    """Raised inside the trial upsert's transaction so that it is rolled back."""


def type_problems(adapter: Adapter, spec: SyncSpec, existing: Mapping[str, LogicalType | str]) -> list[str]:
    """Existing columns whose type cannot take what the sync writes, and key columns that are missing."""
    problems = []
    for col in owned_columns(spec):
        stored = adapter.find_column(existing, col.name)
        if stored is not None and not adapter.is_compatible(existing[stored], col.type):
            problems.append(f"column {stored!r} has type {existing[stored]}, the sync writes {col.type.value}")
    for k in spec.source.key:
        if adapter.find_column(existing, k) is None:
            problems.append(f"key column {k!r} is missing")
    return problems


def claimed_columns(spec: SyncSpec, existing: Mapping[str, LogicalType | str], created: Mapping[str, str]) -> list[str]:
    """The existing columns this sync owns by the ledger: those it created, or, where the ledger knows nothing of
    this sync on this target but the table holds its status column (an older version's target), every column
    of the sync's that is there and no other sync created."""
    mine = {c for c, sync in created.items() if sync == spec.name}
    if mine:
        return sorted(mine)
    lower = {c.lower() for c in existing}
    if spec.bookkeeping("status").lower() not in lower:
        return []
    return sorted(c.lower() for c in spec.output_columns() if c.lower() in lower and c.lower() not in created)


def ownership_problems(
    spec: SyncSpec,
    existing: Mapping[str, LogicalType | str],
    owned: Sequence[str],
    *,
    inputs_of_target: Sequence[str] = (),
) -> list[str]:
    """Columns the sync would write that exist in the target and are not its own (nor adopted); input columns of
    a source that is the target itself, whatever ``adopt_columns`` says."""
    lower = {c.lower(): c for c in existing}
    mine = {c.lower() for c in owned}
    adopted = {c.lower() for c in spec.target.adopt_columns}
    inputs = {c.lower() for c in inputs_of_target}
    problems = []
    for col in spec.output_columns():
        stored = lower.get(col.lower())
        if stored is None or col.lower() in mine:
            continue
        if col.lower() in inputs:
            problems.append(
                f"column {stored!r} is an input of the source, which is this target: the sync never writes it "
                "(rename the struct field or set target.prefix)"
            )
        elif col.lower() not in adopted:
            problems.append(
                f"column {stored!r} exists in the target and this sync did not create it: another tool may own it "
                f"(rename the struct field, set target.prefix, or let the sync write it: target.adopt_columns: "
                f"[{stored}])"
            )
    return problems


def _trial_value(col: Column, spec: SyncSpec) -> Any:
    """A value shaped like what the sync writes in ``col`` (text of a plausible length, a JSON document...)."""
    name = col.name
    if col.type is LogicalType.BIGINT:
        return 50
    if col.type is LogicalType.DOUBLE:
        return 1.5
    if col.type is LogicalType.BOOLEAN:
        return True
    if col.type is LogicalType.TIMESTAMP:
        return datetime.now(timezone.utc)
    if col.type is LogicalType.JSON:
        field = next((f for n, f in spec.struct.items() if spec.column_for(n) == name), None)
        return "[]" if field is not None and field.type.startswith(("list", "object_list")) else "{}"
    bk = spec.bookkeeping
    fixed = {
        bk("status"): "enriched",
        bk("task_id"): str(uuid.uuid4()),
        bk("input_hash"): "0" * 32,
        bk("spec_hash"): "0" * 32,
        bk("tier"): spec.tier,
        bk("field_status"): None,
    }
    return fixed.get(name, "x" * 32)


def _trial_part(spec: SyncSpec, sample_key: Mapping[str, Any]) -> UpsertPart:
    columns = owned_columns(spec)
    # the key as the source typed it (a one-row Arrow array: a HUGEINT or a UBIGINT above 2^63 fits no Python
    # int conversion), or a plain value
    data: dict[str, pa.Array] = {
        k: v if isinstance(v, (pa.Array, pa.ChunkedArray)) else pa.array([v]) for k, v in sample_key.items()
    }
    for col in columns:
        value = _trial_value(col, spec)
        data[col.name] = pa.array([value], type=pa.timestamp("us", tz="UTC") if isinstance(value, datetime) else None)
    data = {n: (a.cast(pa.string()) if pa.types.is_null(a.type) else a) for n, a in data.items()}
    return UpsertPart(pa.table(data), [c.name for c in columns], unique_keys=True)


def dry_run(
    adapter: Adapter,
    spec: SyncSpec,
    target: TableRef,
    sample_key: Mapping[str, Any],
    key_columns: Sequence[Column] = (),
) -> str | None:
    """Upsert one row like the sync's (key ``sample_key``) and roll it back; the warehouse's refusal, or None.

    A target that does not exist or lacks columns is created or completed first, in the same transaction, where
    DDL rolls back (``key_columns`` then say how to create the key); elsewhere it is not tried until complete.
    Nothing is tried (None) where an upsert cannot be rolled back (each statement commits on its own).
    """
    if not adapter.capabilities.atomic_upsert:
        return None
    columns = owned_columns(spec)
    exists = adapter.table_exists(target)
    existing = adapter.get_columns(target) if exists else {}
    missing = [c for c in columns if adapter.find_column(existing, c.name) is None]
    if (not exists or missing) and not (adapter.capabilities.transactional_ddl and key_columns):
        return None
    part = _trial_part(spec, sample_key)

    def roll_back(_: Any) -> None:
        raise _RolledBack

    try:
        if exists and not missing:  # the target as it is: the upsert's own transaction, rolled back
            adapter.upsert(target, list(spec.source.key), [part], before_commit=roll_back)
            return None
        with adapter.session() as s:  # created or completed, then tried, in one transaction rolled back
            if not exists:
                schema = adapter.names.schema_of(target)
                if schema and not target.database and not adapter.schema_exists(schema):
                    s.execute(adapter.create_schema_sql(schema))
                s.execute(adapter.create_table_sql(target, key_columns, columns))
            else:
                for col in missing:
                    s.execute(adapter.add_column_sql(target, col))
            s.upsert(target, list(spec.source.key), [part])
            raise _RolledBack
    except _RolledBack:
        return None
    except WarehouseBusyError:
        raise  # the target is out of reach, not refusing the row
    except SixtyfourSyncError as exc:
        return sanitize(exc, 500)


def refuse(loaded: LoadedSync, target: TableRef, problems: Sequence[str]) -> ConfigError:
    """The error a sync stops with, before paying, when its target cannot take its rows."""
    return ConfigError(
        problems=[
            ConfigProblem(
                str(loaded.file),
                f"{loaded.spec.name}.target",
                f"the target {target} cannot take this sync's rows: {p}",
                line=loaded.line_of("target"),
                hint="nothing was sent (nothing paid): change the target or the sync, and run again",
            )
            for p in problems
        ]
    )


def check(
    adapter: Adapter,
    ledger: Ledger | None,
    loaded: LoadedSync,
    target: TableRef,
    target_id: str,
    *,
    inputs_of_target: Sequence[str] = (),
) -> list[str]:
    """What an existing target lacks for this sync (types, keys, ownership); [] when it does not exist yet."""
    spec = loaded.spec
    if not adapter.table_exists(target):
        return []
    existing = adapter.get_columns(target)
    created = ledger.created_columns(target_id) if ledger is not None and ledger.exists() else {}
    owned = claimed_columns(spec, existing, created)
    return type_problems(adapter, spec, existing) + ownership_problems(
        spec, existing, owned, inputs_of_target=inputs_of_target
    )
