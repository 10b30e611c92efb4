"""An answer as the store keeps it, and a stored answer as the merge reads it. Pure work on Arrow tables (with the
process's in-memory DuckDB for JSON).

The store keeps each answer's fields (and confidences) as one JSON object of their text forms: the text a result
file gives, so a stored answer is typed again by the same rules as a result (engine/results/parse.py) and merged
by the same merge, whatever warehouse holds the ledger.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import pyarrow as pa
import pyarrow.compute as pc

from sixtyfour_sync.config.models import SyncSpec
from sixtyfour_sync.engine.ledger.localdb import ident, json_path, registered
from sixtyfour_sync.engine.reuse.sql import ANSWER

__all__ = ["answer_values", "answered_text", "store_rows", "with_answer_columns"]

STATUS = "_sixtyfour_status"


def answer_values(spec: SyncSpec) -> list[str]:
    """The columns of an answer the store keeps: the struct's fields, and their confidences when asked."""
    values = list(spec.struct)
    if spec.field_confidence:
        values += [f"{f}_confidence" for f in spec.struct]
    return values


def answered_text(spec: SyncSpec, returned: pa.Table, hash_column: str) -> pa.Table:
    """The answers among ``returned`` (typed result rows with the input hash that was sent in ``hash_column``), one
    per input hash: ``input_hash``, ``status`` (``enriched``, or ``failed``: the API returned the row and could not
    enrich it) and ``answer`` (the JSON object of the values' text)."""
    values = [c for c in answer_values(spec) if c in returned.column_names]
    empty = pa.table(
        {
            "input_hash": pa.array([], pa.string()),
            "status": pa.array([], pa.string()),
            "answer": pa.array([], pa.string()),
        }
    )
    if not returned.num_rows or not values or hash_column not in returned.column_names:
        return empty
    answered = returned.filter(pc.is_valid(returned.column(hash_column)))
    if not answered.num_rows:
        return empty
    # one answer per input hash, an enriched one first (Arrow: no window over every column of a wide answer)
    answered = answered.take(pc.sort_indices(pc.not_equal(answered.column(STATUS), "enriched")))
    hashes = answered.column(hash_column).cast(pa.string())
    answered = answered.take(pc.index_in(pc.unique(hashes), value_set=hashes))
    objects = [_json_objects(answered.select(group)) for group in _groups(values)]
    answer = objects[0] if len(objects) == 1 else _joined(objects)
    return pa.table(
        {
            "input_hash": answered.column(hash_column).cast(pa.string()),
            "status": answered.column(STATUS),
            "answer": answer,
        }
    ).cast(empty.schema)


def _groups(values: Sequence[str], size: int = 100) -> list[list[str]]:
    """The values in groups a JSON object is built of at a time (a result of 1,600 columns within DuckDB's cap)."""
    return [list(values[i : i + size]) for i in range(0, len(values), size)]


def _json_objects(table: pa.Table) -> pa.ChunkedArray:
    """One JSON object per row of ``table``: each column's value as its text (NULL as ``null``)."""
    pack = ", ".join(f"{ident(c)} := CAST({ident(c)} AS VARCHAR)" for c in table.column_names)
    with registered(table) as (con, (name,)):
        out = con.sql(f"SELECT CAST(to_json(struct_pack({pack})) AS VARCHAR) AS j FROM {name}").to_arrow_table()
    return out.column("j")


def _joined(objects: Sequence[pa.ChunkedArray]) -> pa.ChunkedArray:
    """JSON objects of the same rows joined into one (``{"a": 1}`` and ``{"b": 2}`` give ``{"a": 1,"b": 2}``)."""
    inner = [pc.utf8_slice_codeunits(o, 1, -1) for o in objects]
    body = pc.binary_join_element_wise(*inner, ",")
    return pc.binary_join_element_wise("{", body, "}", "")


def store_rows(
    answers: pa.Table,
    *,
    question: str,
    task_id: str | None,
    job_id: str,
    sync_name: str,
    endpoint: str,
    tier: str,
    answered_at: datetime,
) -> pa.Table:
    """The store's rows for one job's answers (``answers``: from :func:`answered_text`)."""
    n = answers.num_rows

    def same(value: object, typ: pa.DataType) -> pa.Array:
        return pa.repeat(pa.scalar(value, typ), n)

    return pa.table(
        {
            "question": same(question, pa.string()),
            "input_hash": answers.column("input_hash"),
            "status": answers.column("status"),
            "answer": answers.column("answer"),
            "task_id": same(task_id, pa.string()),
            "job_id": same(job_id, pa.string()),
            "sync_name": same(sync_name, pa.string()),
            "endpoint": same(endpoint, pa.string()),
            "tier": same(tier, pa.string()),
            "answered_at": same(answered_at, pa.timestamp("us", tz="UTC")),
        }
    )


def with_answer_columns(spec: SyncSpec, rows: pa.Table | pa.RecordBatch, key: Sequence[str]) -> pa.Table:
    """Rows carrying a stored answer (key columns and :data:`ANSWER`) as a result file gives them: the key, and
    each value of the answer as text (a JSON value as its JSON text), for the result parser to type."""
    table = pa.Table.from_batches([rows]) if isinstance(rows, pa.RecordBatch) else rows
    values = answer_values(spec)
    columns: dict[str, pa.ChunkedArray] = {k: table.column(k) for k in key}
    for group in _groups(values):
        extracted = ", ".join(f"json_extract_string({ident(ANSWER)}, {json_path(c)}) AS {ident(c)}" for c in group)
        with registered(table.select([ANSWER])) as (con, (name,)):
            part = con.sql(f"SELECT {extracted} FROM {name}").to_arrow_table()
        columns.update({c: part.column(c) for c in group})
    return pa.table(columns)
