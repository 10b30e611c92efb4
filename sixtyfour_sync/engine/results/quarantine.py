"""Paid answers the target refuses, held one by one instead of holding their whole file.

A warehouse may refuse a row the engine cannot foresee: a CHECK constraint, a trigger that raises, a value
longer than a column someone narrowed. When a file's merge fails, its rows are merged in halves (each its
own transaction) until the rows that fail alone are found; the rest of the file merges, and each refused row
goes to the ledger's quarantine (``_sixtyfour_sync_quarantine``) with its key, the warehouse's reason and the
answer itself, in the transaction that records the job merged. A quarantined row is held: no run asks it
again. Every run first tries to merge what is quarantined (cheap: a few rows), so once the target is fixed
the answers land without being paid for twice.

A file whose rows fail in great number is not split forever: past :data:`MAX_ATTEMPTS` merges or
:data:`MAX_REFUSED` refused rows the problem is the target, not a few rows, and the whole file is held as
before, with the warehouse's error.
"""

from __future__ import annotations

import base64
import io
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.ipc as ipc

from sixtyfour_sync._redact import sanitize
from sixtyfour_sync.engine.ledger.localdb import ident, registered
from sixtyfour_sync.errors import WarehouseBusyError, WarehouseError
from sixtyfour_sync.warehouse.types import Guard, UpsertPart

__all__ = [
    "MAX_ATTEMPTS",
    "MAX_REFUSED",
    "Refused",
    "find_refused",
    "pack_row",
    "part_from_rows",
    "refused_records",
    "unpack_rows",
]

#: Merges tried to isolate the refused rows of one file before holding the whole file.
MAX_ATTEMPTS = 400
#: Refused rows of one file past which the target, not a few rows, is the problem.
MAX_REFUSED = 100
#: Longest reason kept per row.
MAX_REASON = 500
#: Errors that mean "the warehouse refused these rows" (a dropped connection is one too: splitting then fails
#: every slice and gives up within the budget).
REFUSALS = (WarehouseError, pa.ArrowException)


@dataclass(frozen=True)
class Refused:
    """A row (its position in the part's data) the warehouse refused alone, and why."""

    index: int
    reason: str


def find_refused(
    attempt: Callable[[int, int], None],
    rows: int,
    *,
    max_attempts: int = MAX_ATTEMPTS,
    max_refused: int = MAX_REFUSED,
) -> list[Refused] | None:
    """Merge rows ``[0, rows)`` in halves, each half its own ``attempt(start, stop)`` (committed), splitting a
    half that fails, until every row is merged or refused alone. The whole range is known to fail already.

    Returns the refused rows, or None when the budget ran out (the caller holds the whole file).
    """
    if rows <= 0:
        return []
    refused: list[Refused] = []
    pending = _halves(0, rows)
    attempts = 0
    while pending:
        lo, hi = pending.pop()
        attempts += 1
        if attempts > max_attempts:
            return None
        try:
            attempt(lo, hi)
        except REFUSALS as exc:
            if isinstance(exc, WarehouseBusyError):
                raise  # the warehouse is out of reach, not refusing rows
            if hi - lo > 1:
                pending.extend(_halves(lo, hi))
                continue
            refused.append(Refused(lo, sanitize(exc, MAX_REASON)))
            if len(refused) > max_refused:
                return None
    return sorted(refused, key=lambda r: r.index)


def _halves(lo: int, hi: int) -> list[tuple[int, int]]:
    """``[lo, hi)`` split in two, the first half last (so it is tried first); one row stays itself."""
    if hi - lo <= 1:
        return [(lo, hi)]
    mid = (lo + hi) // 2
    return [(mid, hi), (lo, mid)]


# ------------------------------------------------------------------ what the ledger keeps of a refused row


def pack_row(row: pa.Table) -> str:
    """A one-row (or few-row) table as text: Arrow IPC, zstd-compressed, base64."""
    sink = io.BytesIO()
    with ipc.new_stream(sink, row.schema, options=ipc.IpcWriteOptions(compression="zstd")) as writer:
        writer.write_table(row)
    return base64.b64encode(sink.getvalue()).decode("ascii")


def unpack_rows(texts: Sequence[str]) -> pa.Table:
    """The rows :func:`pack_row` packed, stacked (columns a later answer added are NULL for older rows)."""
    tables = []
    for text in texts:
        with ipc.open_stream(io.BytesIO(base64.b64decode(text))) as reader:
            tables.append(reader.read_all())
    return pa.concat_tables(tables, promote_options="permissive")


def merge_spec(part: UpsertPart) -> str:
    """How a part's rows are merged (its set columns and guards), as JSON kept beside each refused row."""
    guards = {c: [g.when, g.not_below, list(g.same), g.clear] for c, g in part.guards.items()}
    return json.dumps({"set_columns": list(part.set_columns), "guards": guards}, sort_keys=True)


def part_from_rows(data: pa.Table, spec_text: str) -> UpsertPart:
    """The part that merges quarantined rows again, as their file's merge would have."""
    spec = json.loads(spec_text)
    guards = {c: Guard(g[0], g[1], tuple(g[2]), g[3]) for c, g in spec["guards"].items()}
    return UpsertPart(data, spec["set_columns"], guards=guards, unique_keys=True)


def refused_records(
    part: UpsertPart,
    refused: Sequence[Refused],
    sent: pa.Table,
    key: Sequence[str],
    prefix_column: str,
    *,
    sync_name: str,
    job_id: str,
    task_id: str | None,
) -> list[dict[str, Any]] | None:
    """The ledger rows of refused answers; None when a refused row's key cannot be found among the sent rows
    (then it could not be held, and the whole file is held instead)."""
    rows = part.data.take(pa.array([r.index for r in refused], pa.int64()))
    keys = rows.select(list(key))
    prefixes = _sent_prefixes(keys, sent, key, prefix_column)
    if prefixes is None:
        return None
    spec = merge_spec(part)
    out = []
    for i, r in enumerate(refused):
        key_values = {k: keys.column(k)[i].as_py() for k in key}
        out.append(
            {
                "sync_name": sync_name,
                "job_id": job_id,
                "task_id": task_id,
                "key_prefix": prefixes[i],
                "key_text": json.dumps(key_values, default=str, ensure_ascii=False),
                "reason": r.reason,
                "row_data": pack_row(rows.slice(i, 1)),
                "merge_spec": spec,
            }
        )
    return out


def _sent_prefixes(keys: pa.Table, sent: pa.Table, key: Sequence[str], prefix_column: str) -> list[str] | None:
    """The stored key-hash prefix of each refused key, from what its file sent (in the refused rows' order)."""
    if prefix_column not in sent.column_names or not keys.num_rows:
        return None
    order = "__sixtyfour_i"
    indexed = keys.append_column(order, pa.array(range(keys.num_rows), pa.int64()))
    on = " AND ".join(f"k.{ident(c)} = s.{ident(c)}" for c in key)
    with registered(indexed, sent.select([*key, prefix_column])) as (con, (k_name, s_name)):
        found = con.sql(
            f"SELECT k.{ident(order)}, s.{ident(prefix_column)} FROM {k_name} k JOIN {s_name} s ON {on} "
            f"ORDER BY k.{ident(order)}"
        ).to_arrow_table()
    if found.num_rows != keys.num_rows or pc.any(pc.is_null(found.column(1))).as_py():
        return None
    return [str(v) for v in found.column(1).to_pylist()]


def slice_part(part: UpsertPart, start: int, stop: int) -> UpsertPart:
    """Rows ``[start, stop)`` of a part, merged as the part would be."""
    return replace(part, data=part.data.slice(start, stop - start))
