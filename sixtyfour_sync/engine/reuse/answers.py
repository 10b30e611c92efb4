"""An answer as the store keeps it, and a stored answer as the merge reads it. Pure work on Arrow tables (with the
process's in-memory DuckDB for JSON).

The store keeps each answer's fields (and confidences) as one JSON array of their text forms, in the order of
:func:`answer_values` (the question fixes the struct, so the order): the text a result file gives, so a stored
answer is typed again by the same rules as a result (engine/results/parse.py) and merged by the same merge,
whatever warehouse holds the ledger. A row the API could not enrich is stored with no answer (NULL).
"""

from __future__ import annotations

from collections.abc import Sequence

import pyarrow as pa
import pyarrow.compute as pc

from sixtyfour_sync.config.models import SyncSpec
from sixtyfour_sync.engine.ledger.localdb import ident, registered
from sixtyfour_sync.engine.rows.select import ANSWER

__all__ = ["answer_values", "answered_text", "store_rows", "with_answer_columns"]

STATUS = "_sixtyfour_status"


def answer_values(spec: SyncSpec) -> list[str]:
    """The columns of an answer the store keeps: the struct's fields, and their confidences when asked."""
    values = list(spec.struct)
    if spec.field_confidence:
        values += [f"{f}_confidence" for f in spec.struct]
    return values


def answered_text(spec: SyncSpec, returned: pa.Table, hash_column: str) -> pa.Table:
    """The answers among ``returned`` (typed result rows with the input hash that was sent in ``hash_column``):
    ``input_hash`` and ``answer`` (the JSON array of the values' text; NULL for a row the API returned and could not
    enrich). A file asks each question once, so each input hash comes once; were one to come twice, the store would
    hold both, and the reader takes an enriched one (engine/reuse/sql.py)."""
    values = answer_values(spec)
    empty = pa.table({c: pa.array([], pa.string()) for c in ("input_hash", "answer")})
    if not returned.num_rows or hash_column not in returned.column_names:
        return empty
    if any(c not in returned.column_names for c in values):
        return empty  # a result without a field: asked again anyway, not stored
    answered = returned.select([hash_column, STATUS, *values])
    hashes = answered.column(hash_column)
    if hashes.null_count:
        answered = answered.filter(pc.is_valid(hashes))
    arrays = [_json_arrays(answered.select(group)) for group in _groups(values)]
    answer = arrays[0] if len(arrays) == 1 else _joined(arrays)
    enriched = pc.fill_null(pc.equal(answered.column(STATUS), "enriched"), False)
    answer = pc.if_else(enriched, answer, pa.scalar(None, pa.string()))
    hashes = answered.column(hash_column).cast(pa.string())
    return pa.table({"input_hash": hashes, "answer": answer}).cast(empty.schema)


def _groups(values: Sequence[str], size: int = 100) -> list[list[str]]:
    """The values in groups a JSON array is built of at a time (a result of 1,600 columns within DuckDB's cap)."""
    return [list(values[i : i + size]) for i in range(0, len(values), size)]


def _json_arrays(table: pa.Table) -> pa.ChunkedArray:
    """One JSON array per row of ``table``: each column's value as its text (NULL as ``null``)."""
    items = ", ".join(f"CAST({ident(c)} AS VARCHAR)" for c in table.column_names)
    with registered(table) as (con, (name,)):
        out = con.sql(f"SELECT CAST(json_array({items}) AS VARCHAR) AS j FROM {name}").to_arrow_table()
    return out.column("j")


def _joined(arrays: Sequence[pa.ChunkedArray]) -> pa.ChunkedArray:
    """JSON arrays of the same rows joined into one (``["a"]`` and ``["b", null]`` give ``["a","b", null]``)."""
    inner = [pc.utf8_slice_codeunits(a, 1, -1) for a in arrays]
    body = pc.binary_join_element_wise(*inner, ",")
    return pc.binary_join_element_wise("[", body, "]", "")


def store_rows(answers: pa.Table, *, job_id: str) -> pa.Table:
    """The store's rows for one job's answers (``answers``: from :func:`answered_text`)."""
    return pa.table(
        {
            "job_id": pa.repeat(pa.scalar(job_id, pa.string()), answers.num_rows),
            "input_hash": answers.column("input_hash"),
            "answer": answers.column("answer"),
        }
    )


def with_answer_columns(spec: SyncSpec, rows: pa.Table | pa.RecordBatch, key: Sequence[str]) -> pa.Table:
    """Rows carrying a stored answer (key columns and :data:`ANSWER`) as a result file gives them: the key, and
    each value of the answer as text (a JSON value as its JSON text), for the result parser to type."""
    table = pa.Table.from_batches([rows]) if isinstance(rows, pa.RecordBatch) else rows
    values = answer_values(spec)
    columns: dict[str, pa.ChunkedArray] = {k: table.column(k) for k in key}
    for offset in range(0, len(values), 100):
        group = values[offset : offset + 100]
        extracted = ", ".join(
            f"json_extract_string({ident(ANSWER)}, '$[{offset + i}]') AS {ident(c)}" for i, c in enumerate(group)
        )
        with registered(table.select([ANSWER])) as (con, (name,)):
            part = con.sql(f"SELECT {extracted} FROM {name}").to_arrow_table()
        columns.update({c: part.column(c) for c in group})
    return pa.table(columns)
