"""From a parsed result to the rows written into the target: reconcile with what was sent, then shape.

Pure work on Arrow tables (with the process's in-memory DuckDB for joins), so it runs on a download worker;
only :func:`apply_merge` touches the warehouse, on the thread that owns its connection, in one transaction
with the ledger write.

- A result row is merged only when its key was sent in that file, and it gets the input hash that was sent
  (so a row whose inputs changed since is asked again next run); result keys never sent are counted, not
  merged; sent keys that came back without a row are marked ``failed``.
- Enriched rows write the struct fields, confidences and bookkeeping; failed rows write only bookkeeping, so
  a value an earlier run found is kept.
- A result that lacked a requested column is stamped with the spec hash of the fields it did answer, so the
  next run does not take the missing fields as answered.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from sixtyfour_sync.config.models import SyncSpec
from sixtyfour_sync.engine.localdb import ident, registered
from sixtyfour_sync.engine.results import ParsedResult
from sixtyfour_sync.engine.select import HASH_COLUMN
from sixtyfour_sync.warehouse.base import Adapter, Session, TableRef, UpsertPart, UpsertResult
from sixtyfour_sync.warehouse.types import Guard

__all__ = ["MergePlan", "apply_merge", "plan_merge", "reconcile"]

_HASH = "__sent_hash"


@dataclass
class Reconciled:
    """A result set against what was sent."""

    returned: pa.Table  # result rows whose key was sent, with the sent hash in ``__sent_hash``
    missing: pa.Table  # sent rows (key + sent hash) that came back without a row
    unexpected: int  # result rows whose key was never sent
    note: str | None = None


@dataclass
class MergePlan:
    """Everything a merge writes, and the counts it reports."""

    parts: list[UpsertPart]
    enriched: int
    failed: int
    not_returned: int
    unexpected: int
    returned: int
    filled: dict[str, int]
    missing_columns: list[str]
    warnings: list[str] = field(default_factory=list)
    #: Answers below min_confidence per field, not written.
    gated: dict[str, int] = field(default_factory=dict)

    @property
    def rows(self) -> int:
        """Rows written into the target."""
        return self.enriched + self.failed + self.not_returned


def reconcile(parsed: ParsedResult, sent: pa.Table | None, key: list[str]) -> Reconciled:
    """Tie result rows back to the rows that were sent (``sent``: key columns + the input hash)."""
    table = parsed.table
    if sent is None:
        # Nothing is known of what was sent (a ledger from an older version, and the file is gone): trust the
        # hash the result carried back, or leave it empty so the rows count as changed next run.
        if HASH_COLUMN in table.column_names:
            returned = table.rename_columns([_HASH if c == HASH_COLUMN else c for c in table.column_names])
            note = "what was sent is not known here: result keys were not checked against it"
        else:
            returned = table.append_column(_HASH, pa.nulls(table.num_rows, pa.string()))
            note = "what was sent is not known here and the result has no input hashes: the rows count as changed"
        missing = pa.table(
            {k: pa.array([], table.schema.field(k).type) for k in key} | {_HASH: pa.array([], pa.string())}
        )
        return Reconciled(returned, missing, 0, note)
    res = table.drop_columns([HASH_COLUMN]) if HASH_COLUMN in table.column_names else table
    sent = sent.select([*key, HASH_COLUMN])
    if len(key) == 1:
        return _reconcile_one_key(res, sent, key[0])
    on = " AND ".join(f"r.{ident(k)} = s.{ident(k)}" for k in key)
    with registered(res, sent) as (con, (r_name, s_name)):
        returned = con.sql(
            f"SELECT r.*, s.{ident(HASH_COLUMN)} AS {ident(_HASH)} FROM {r_name} r JOIN {s_name} s ON {on}"
        ).to_arrow_table()
        missing = con.sql(
            f"SELECT {', '.join('s.' + ident(k) for k in key)}, s.{ident(HASH_COLUMN)} AS {ident(_HASH)} "
            f"FROM {s_name} s WHERE NOT EXISTS (SELECT 1 FROM {r_name} r WHERE {on})"
        ).to_arrow_table()
    unexpected = res.num_rows - returned.num_rows
    return Reconciled(returned, missing, max(0, unexpected))


def _reconcile_one_key(res: pa.Table, sent: pa.Table, k: str) -> Reconciled:
    """:func:`reconcile` for a one-column key, with Arrow's hash lookups (no join, no copy into DuckDB)."""
    sent_keys = sent.column(k).combine_chunks()
    res_keys = res.column(k)
    if res_keys.type != sent_keys.type:
        res_keys = res_keys.cast(sent_keys.type)
    where = pc.index_in(res_keys, value_set=sent_keys)
    hit = pc.is_valid(where)
    returned = res.filter(hit)
    returned = returned.append_column(_HASH, sent.column(HASH_COLUMN).take(where.filter(hit)))
    came_back = pc.is_in(
        sent_keys, value_set=res_keys.combine_chunks() if isinstance(res_keys, pa.ChunkedArray) else res_keys
    )
    missing = sent.filter(pc.invert(came_back)).rename_columns([k, _HASH])
    return Reconciled(returned, missing, res.num_rows - returned.num_rows)


def _same(value: Any, n: int, typ: pa.DataType) -> pa.Array:
    """``n`` copies of one value (vectorised: a Python list of 100,000 zoned datetimes took 0.2 s to convert)."""
    return pa.repeat(pa.scalar(value, typ), n)


def plan_merge(
    spec: SyncSpec,
    parsed: ParsedResult,
    sent: pa.Table | None,
    *,
    task_id: str | None,
    now: datetime,
    file_label: str,
    insert_only: bool = False,
) -> MergePlan:
    """Reconcile a parsed result with what was sent and shape the part to upsert.

    ``insert_only``: none of the file's keys is in the target (the selection said so) and the warehouse
    enforces its primary key, so the rows are inserted without looking for matches.
    """
    key = list(spec.source.key)
    rec = reconcile(parsed, sent, key)
    returned = rec.returned
    answered = [f for f in spec.struct if f not in parsed.missing_columns]
    # An enriched row answered only the fields the result had; a failed row was asked the whole question.
    partial_stamp, full_stamp = spec.spec_hash(answered), spec.spec_hash()
    bk = spec.bookkeeping

    status = returned.column("_sixtyfour_status")
    is_enriched = pc.equal(status, "enriched")
    enriched_rows = int(pc.sum(is_enriched).as_py() or 0)
    values = list(spec.struct)
    if spec.field_confidence:
        values += [f"{f}_confidence" for f in spec.struct]
    book = [c for c in spec.bookkeeping_columns() if not (spec.field_subset and c == bk("tier"))]
    # ONE part for every row the file answered: the fields and confidences are written only where the row
    # was enriched (a failed row keeps what an earlier run found); the bookkeeping always.
    write = "__sixtyfour_write"
    missing = rec.missing
    n_missing = missing.num_rows
    cols: dict[str, pa.ChunkedArray] = {}
    for k in key:
        cols[k] = _cat(returned.column(k), missing.column(k))
    for c in values:
        cols[spec.column_for(c)] = _cat(returned.column(c), pa.nulls(n_missing, returned.schema.field(c).type))
    n = returned.num_rows + n_missing
    data = pa.table(cols)
    data = data.append_column(write, _cat(is_enriched, _same(False, n_missing, pa.bool_())))
    data = data.append_column(
        bk("status"), _cat(pc.if_else(is_enriched, "enriched", "failed"), _same("failed", n_missing, pa.string()))
    )
    data = data.append_column(bk("enriched_at"), _same(now, n, pa.timestamp("us", tz="UTC")))
    data = data.append_column(bk("task_id"), _same(task_id, n, pa.string()))
    data = data.append_column(bk("input_hash"), _cat(returned.column(_HASH), missing.column(_HASH)))
    stamps = pc.if_else(is_enriched, partial_stamp, full_stamp)
    data = data.append_column(bk("spec_hash"), _cat(stamps, _same(full_stamp, n_missing, pa.string())))
    if not spec.field_subset:  # a "new fields" answer completes the row: the tier of its answer stays
        data = data.append_column(bk("tier"), _same(spec.tier, n, pa.string()))
    fields = [spec.column_for(c) for c in values]
    guards = {f: Guard(when=write) for f in fields}
    gated: dict[str, int] = {}
    filled = {f: int(pc.sum(pc.is_valid(returned.column(f))).as_py() or 0) for f in spec.struct}
    if spec.field_confidence:
        data, guards, gated = _confidence_guards(spec, data, returned, is_enriched, n_missing, write)
        filled = {f: filled[f] - gated.get(f, 0) for f in filled}
    set_columns = [*fields, *book]
    if spec.gating:
        set_columns.append(spec.bookkeeping("field_status"))
    parts = []
    if n:
        parts.append(
            UpsertPart(
                data,
                set_columns,
                guards=guards,
                insert_only=insert_only,
                unique_keys=True,  # results are folded to one row per key, and sent keys are unique
            )
        )
    failed_rows = returned.num_rows - enriched_rows
    warnings = []
    if rec.note:
        warnings.append(f"{file_label}: {rec.note}")
    if parsed.missing_columns:
        warnings.append(
            f"{file_label}: the result has no column(s) {', '.join(parsed.missing_columns)}; "
            f"{enriched_rows:,} row(s) are incomplete and those fields are asked again next run"
        )
    if rec.unexpected:
        warnings.append(f"{file_label}: {rec.unexpected} result row(s) had keys that were never sent; not merged")
    if rec.missing.num_rows:
        warnings.append(f"{file_label}: {rec.missing.num_rows} sent row(s) came back without a result; marked failed")
    if parsed.duplicate_keys:
        warnings.append(f"{file_label}: {parsed.duplicate_keys} duplicate result row(s) were folded")
    if parsed.outside_enum:
        counts = ", ".join(f"{f} {n:,}" for f, n in parsed.outside_enum.items())
        warnings.append(f"{file_label}: answers outside the field's values (kept as answered): {counts}")
    return MergePlan(
        parts=parts,
        enriched=enriched_rows,
        failed=failed_rows,
        not_returned=rec.missing.num_rows,
        unexpected=rec.unexpected,
        returned=returned.num_rows,
        filled=filled,
        missing_columns=list(parsed.missing_columns),
        warnings=warnings,
        gated=gated,
    )


def _confidence_guards(
    spec: SyncSpec,
    data: pa.Table,
    returned: pa.Table,
    is_enriched: pa.ChunkedArray,
    n_missing: int,
    write: str,
) -> tuple[pa.Table, dict[str, Guard], dict[str, int]]:
    """Per-field guards: min_confidence gating and, unless ``overwrite: always``, never below a stored confidence.

    A field answered below its threshold (or without a confidence) is not written: its value stays, its
    confidence is kept in ``<field>_confidence`` and ``_sixtyfour_field_status`` says ``low_confidence``.
    """
    guards: dict[str, Guard] = {}
    gated: dict[str, int] = {}
    statuses: list[pa.ChunkedArray] = []
    keep_higher = spec.overwrite != "always"
    no = _same(False, n_missing, pa.bool_())
    for f in spec.struct:
        col, conf_col = spec.column_for(f), spec.column_for(f"{f}_confidence")
        conf = returned.column(f"{f}_confidence")
        not_below = conf_col if keep_higher else None
        threshold = spec.threshold(f)
        if threshold is None:
            low = pa.chunked_array([_same(False, returned.num_rows, pa.bool_())])
        else:
            below = pc.or_kleene(pc.is_null(conf), pc.less(conf, pa.scalar(threshold, conf.type)))
            low = pc.fill_null(pc.and_kleene(pc.and_kleene(is_enriched, pc.is_valid(returned.column(f))), below), False)
        gated[f] = int(pc.sum(low).as_py() or 0)
        when = f"__sixtyfour_write_{f}"
        data = data.append_column(when, _cat(pc.and_(is_enriched, pc.invert(low)), no))
        guards[col] = Guard(when=when, not_below=not_below)
        guards[conf_col] = Guard(when=write, not_below=not_below)
        text = pc.if_else(low, json.dumps({f: "low_confidence"})[1:-1] + ", ", "")
        statuses.append(_cat(text, _same("", n_missing, pa.string())))
    if spec.gating:
        # {"email": "low_confidence", ...} for the fields held back; NULL when none was
        joined = pc.utf8_rtrim(pc.binary_join_element_wise(*statuses, ""), characters=", ")
        wrapped = pc.binary_join_element_wise("{", joined, "}", "")
        status = pc.if_else(pc.equal(joined, ""), pa.scalar(None, pa.string()), wrapped)
        data = data.append_column(spec.bookkeeping("field_status"), status)
    return data, guards, gated


def _cat(a: pa.Array | pa.ChunkedArray, b: pa.Array | pa.ChunkedArray) -> pa.ChunkedArray:
    """``a`` then ``b`` as one column of ``a``'s type (``b`` cast to it; a typeless null column allowed)."""
    typ = a.type if not pa.types.is_null(a.type) else b.type
    chunks: list[pa.Array] = []
    for x in (a, b):
        x = x.cast(typ) if x.type != typ else x
        chunks.extend(x.chunks if isinstance(x, pa.ChunkedArray) else [x])
    return pa.chunked_array(chunks, type=typ)


def apply_merge(
    adapter: Adapter,
    target: TableRef,
    key: list[str],
    plan: MergePlan,
    before_commit: Callable[[Session], None],
) -> UpsertResult:
    """Upsert the plan's parts and run ``before_commit`` (the ledger write) in ONE transaction."""
    return adapter.upsert(target, key, plan.parts, before_commit=before_commit)


def counts(plan: MergePlan) -> Mapping[str, int]:
    """The row counts a merge records in the ledger."""
    return {
        "rows_enriched": plan.enriched,
        "rows_failed": plan.failed,
        "rows_not_returned": plan.not_returned,
        "rows_unexpected": plan.unexpected,
    }
