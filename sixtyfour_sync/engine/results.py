"""Parsing a result file into typed, keyed rows ready to merge.

The API's exact column layout is not documented (sixtyfour-bulk-api.md, "Result files"), so columns are found
by name, unknown ones are ignored, missing ones are reported, and nothing is trusted blindly:

- CSV (optionally with a UTF-8 BOM and multi-line quoted fields), JSONL/NDJSON and JSON arrays are read with
  pyarrow, every column as text, so a value that changes type half-way through a file cannot break the read.
- Struct fields are cast to their declared types with DuckDB's ``TRY_CAST`` over the Arrow table (vectorised;
  a value that does not cast becomes NULL and is counted, never a crash). Lists and dicts stay JSON text and
  are checked with ``json_valid``.
- Confidence comes from ``<field>_confidence`` columns, or from one JSON ``field_confidence`` column.
- A row whose struct fields are all empty is a row the API could not enrich: status ``failed``.
- Rows are tied back by the key columns that were sent in the file; the caller compares them with what was
  sent (result keys never sent, sent keys not returned).
"""

from __future__ import annotations

import codecs
import csv
import io
import json
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from sixtyfour_sync.config.models import StructField
from sixtyfour_sync.engine.casts import answered_mask, cast_sql, count_outside_values
from sixtyfour_sync.engine.localdb import duck_type, fetch_one, ident, json_path, literal, local_duckdb, registered
from sixtyfour_sync.errors import SixtyfourSyncError
from sixtyfour_sync.warehouse.arrow import has_duplicate_keys

__all__ = ["ParsedResult", "ResultParseError", "parse_result", "read_result_table"]

STATUS = "_sixtyfour_status"
# A record may be as large as the whole file (100 MB limit): size blocks so none straddles two.
_JSON_BLOCK = 16 << 20
_MAX_OBJECT = 32 << 20  # a single record; DuckDB buffers twice this


def max_object_size(path: Path) -> int:
    """DuckDB's ``maximum_object_size`` for a JSON file: no record is larger than the file itself.

    DuckDB allocates twice this per read, and the process's in-memory DuckDB shares one memory limit
    between threads: sizing it to the file keeps small files from reserving 64 MB each.
    """
    try:
        size = path.stat().st_size
    except OSError:
        return _MAX_OBJECT
    return max(1 << 16, min(_MAX_OBJECT, size + 1))


class ResultParseError(SixtyfourSyncError):
    """A result file cannot be read; the file is kept and its path is in the message."""


@dataclass
class ParsedResult:
    """Typed rows of one result file.

    ``table`` holds the key columns (cast to the sent key types), one column per struct field (named by the
    field), ``<field>_confidence`` (int64) when asked, and ``_sixtyfour_status`` (``enriched``/``failed``).
    """

    table: pa.Table
    rows_read: int
    missing_columns: list[str] = field(default_factory=list)
    extra_columns: list[str] = field(default_factory=list)
    cast_failures: dict[str, int] = field(default_factory=dict)
    duplicate_keys: int = 0
    null_keys: int = 0
    #: Per enum field with values: answers outside them (kept; the run warns).
    outside_enum: dict[str, int] = field(default_factory=dict)

    @property
    def enriched(self) -> int:
        """Rows with at least one struct value."""
        total: int = pc.sum(pc.equal(self.table[STATUS], "enriched")).as_py() or 0
        return total

    @property
    def failed(self) -> int:
        """Rows the API could not enrich."""
        rows: int = self.table.num_rows
        return rows - self.enriched


def _csv_header(path: Path) -> list[str]:
    with path.open("rb") as fh:
        head = fh.read(1 << 20)
    if head.startswith(codecs.BOM_UTF8):
        head = head[len(codecs.BOM_UTF8) :]
    text = head.decode("utf-8", errors="replace")
    reader = csv.reader(io.StringIO(text))
    try:
        return next(reader)
    except StopIteration:
        return []


def read_result_table(path: Path, fmt: str, columns: Collection[str] | None = None) -> pa.Table:
    """Read a result file with every column as text (NULL for empty CSV fields).

    ``columns``: of a CSV, only these are converted (the others are skipped by the parser, as are the inputs
    the API echoes back); the table then has the ones the file has, in the file's order.
    """
    return _read_result(path, fmt, columns)[0]


def _read_result(path: Path, fmt: str, columns: Collection[str] | None) -> tuple[pa.Table, list[str]]:
    """:func:`read_result_table`, and the names of every column the file has (a CSV's whole header)."""
    try:
        if fmt == "csv":
            header = _csv_header(path)
            if not header:
                return pa.table({}), []
            if len(set(header)) != len(header):
                dupes = sorted({h for h in header if header.count(h) > 1})
                raise ResultParseError(f"result file {path} has duplicate columns: {', '.join(dupes)}")
            keep = [h for h in header if columns is None or h in columns] or header
            table = pacsv.read_csv(
                path,
                read_options=pacsv.ReadOptions(use_threads=True, block_size=_JSON_BLOCK, encoding="utf8"),
                parse_options=pacsv.ParseOptions(newlines_in_values=True),
                convert_options=pacsv.ConvertOptions(
                    column_types={h: pa.string() for h in keep},
                    include_columns=keep,
                    strings_can_be_null=True,
                    quoted_strings_can_be_null=True,
                    null_values=[""],  # only an empty field: "NA", "null", "nan" may be answers
                ),
            )
            return table, header
        if fmt in ("jsonl", "ndjson", "json"):
            table = _read_json_objects(path, array=fmt == "json")
            return table, table.column_names
    except ResultParseError:
        raise
    except (pa.ArrowInvalid, OSError, UnicodeDecodeError, ValueError, duckdb.Error) as exc:
        raise ResultParseError(
            f"result file {path} ({fmt}) cannot be parsed: {exc}",
            hint="the file is kept; rerun `sixtyfour-sync run` to download it again",
        ) from exc
    raise ResultParseError(f"result file {path}: unknown format {fmt!r} (expected csv, jsonl or json)")


def _read_json_objects(path: Path, *, array: bool) -> pa.Table:
    """JSON Lines or a JSON array, every field as text (nested values as JSON text).

    pyarrow's JSON reader fixes each column's type from the first block and raises when a later row differs
    (an ``employees`` of 7, then "n/a"); the API gives no such guarantee, so each object is read whole by
    DuckDB and its fields extracted as text.
    """
    con = local_duckdb()
    try:
        fn = "read_json_objects" if array else "read_ndjson_objects"
        fmt = ", format = 'auto'" if array else ""
        con.execute(
            f"CREATE TEMP TABLE j AS SELECT row_number() OVER () AS i, json AS o FROM "
            f"{fn}({literal(str(path))}{fmt}, maximum_object_size = {max_object_size(path)})"
        )
        if array and fetch_one(con, "SELECT count(*) FROM j") == (1,):
            # perhaps {"results": [...]}: an object wrapping the rows
            for key in ("results", "rows", "data"):
                path_sql = literal("$." + key)
                if fetch_one(con, f"SELECT json_type(o, {path_sql}) FROM j") == ("ARRAY",):
                    con.execute(
                        "CREATE OR REPLACE TEMP TABLE j AS SELECT row_number() OVER () AS i, value AS o FROM "
                        f"(SELECT unnest(json_extract(o, {literal('$.' + key + '[*]')})) AS value FROM j)"
                    )
                    break
        bad = fetch_one(con, "SELECT count(*) FROM j WHERE json_type(o) <> 'OBJECT'")
        if bad and bad[0]:
            raise ResultParseError(f"result file {path}: {bad[0]} record(s) are not JSON objects")
        names = [
            r[0]
            for r in con.execute(
                "SELECT k FROM (SELECT unnest(json_keys(o)) AS k, i FROM j) GROUP BY k ORDER BY min(i), k"
            ).fetchall()
        ]
        if not names:
            return pa.table({})
        cols = ", ".join(f"json_extract_string(o, {json_path(n)}) AS {ident(n)}" for n in names)
        return con.sql(f"SELECT {cols} FROM j ORDER BY i").to_arrow_table()
    finally:
        con.execute("DROP TABLE IF EXISTS j")


def rows_to_table(rows: Sequence[Mapping[str, Any]]) -> pa.Table:
    """Inline preview rows (dicts) as an all-text table."""
    names: dict[str, None] = {}
    for row in rows:
        if not isinstance(row, Mapping):
            raise ResultParseError("result rows must be JSON objects")
        names.update(dict.fromkeys(row))
    columns = {}
    for name in names:
        values = []
        for row in rows:
            v = row.get(name)
            if v is None or isinstance(v, str):
                values.append(v)
            elif isinstance(v, (dict, list)):
                values.append(json.dumps(v))
            elif isinstance(v, bool):
                values.append("true" if v else "false")
            else:
                values.append(str(v))
        columns[name] = pa.array(values, pa.string())
    return pa.table(columns) if columns else pa.table({})


def _cast_sql(expr: str, spec: StructField) -> str:
    return cast_sql(expr, spec)  # the rules per struct type: sixtyfour_sync/engine/casts.py


def parse_result(
    source: Path | pa.Table,
    *,
    fmt: str = "csv",
    key_types: Mapping[str, pa.DataType],
    struct: Mapping[str, StructField],
    field_confidence: bool,
    carry: Sequence[str] = (),
) -> ParsedResult:
    """Read, type and classify a result file (or inline rows already read into a text table).

    ``carry`` names columns passed through as text when the result has them (such as the input hash that
    was uploaded alongside the rows).
    """
    key = list(key_types)
    wanted = set(key) | set(struct) | set(carry)
    conf_cols = {f"{f}_confidence" for f in struct}
    if field_confidence:
        wanted |= conf_cols | {"field_confidence"}
    if isinstance(source, pa.Table):
        raw, names = source, source.column_names
    else:
        # Only the columns the merge reads are parsed (the inputs echoed back are not); the header says
        # what else the file had, for the report.
        raw, names = _read_result(source, fmt, wanted)
    present = set(raw.column_names)
    missing = [k for k in key if k not in present]
    if missing:
        where = source if isinstance(source, Path) else "inline results"
        raise ResultParseError(
            f"{where}: the key column(s) {', '.join(missing)} are missing, so no row can be tied back; "
            "nothing from this file was merged",
            hint="the file is kept for inspection",
        )
    missing_fields = [f for f in struct if f not in present]
    extra = [c for c in names if c not in wanted and c not in conf_cols]

    select: list[str] = []
    for k, typ in key_types.items():
        select.append(f"TRY_CAST({ident(k)} AS {duck_type(typ)}) AS {ident(k)}")
    for name, spec in struct.items():
        expr = _cast_sql(ident(name), spec) if name in present else "NULL"
        select.append(f"{expr} AS {ident(name)}")
    if field_confidence:
        for name in struct:
            col = f"{name}_confidence"
            if col in present:
                conf = f"TRY_CAST(TRY_CAST(NULLIF(trim({ident(col)}), '') AS DOUBLE) AS BIGINT)"
            elif "field_confidence" in present:
                conf = (
                    'TRY_CAST(TRY_CAST(json_extract_string(CASE WHEN json_valid("field_confidence") '
                    f'THEN "field_confidence" END, {json_path(name)}) AS DOUBLE) '
                    "AS BIGINT)"
                )
            else:
                conf = "NULL"
            select.append(f"CASE WHEN {conf} BETWEEN 0 AND 100 THEN {conf} END AS {ident(col)}")
    for name in carry:
        if name in present and name not in key_types and name not in struct:
            select.append(ident(name))
    # One vectorised pass casts every column; what did not cast, the empty rows and the keys are then
    # counted with Arrow kernels (no second pass, no join, no sort).
    with registered(raw) as (con, (name,)):
        typed = con.sql("SELECT " + ", ".join(select) + f" FROM {name}").to_arrow_table()
    failures: dict[str, int] = {}
    for field_name in struct:
        if field_name not in present:
            continue
        given = answered_mask(raw.column(field_name), struct[field_name])
        lost = int(pc.sum(pc.and_(given, pc.is_null(typed.column(field_name)))).as_py() or 0)
        if lost:
            failures[field_name] = lost
    any_value = None
    for field_name in struct:
        v = pc.is_valid(typed.column(field_name))
        any_value = v if any_value is None else pc.or_(any_value, v)
    enriched = any_value if any_value is not None else pa.repeat(pa.scalar(False), typed.num_rows)
    typed = typed.append_column(STATUS, pc.if_else(enriched, "enriched", "failed"))
    key_null = None
    for k in key:
        m = pc.is_null(typed.column(k))
        key_null = m if key_null is None else pc.or_(key_null, m)
    null_keys = int(pc.sum(key_null).as_py() or 0) if key_null is not None else 0
    if null_keys:
        typed = typed.filter(pc.invert(key_null))
    duplicate_keys = 0
    if has_duplicate_keys(typed, key):
        # One row per key: an enriched row beats a failed one; among equals the last in the file wins.
        before = typed.num_rows
        typed = _fold_duplicates(typed, key)
        duplicate_keys = before - typed.num_rows
    table = typed
    return ParsedResult(
        table=table,
        rows_read=raw.num_rows,
        missing_columns=missing_fields,
        extra_columns=extra,
        cast_failures=failures,
        duplicate_keys=duplicate_keys,
        null_keys=null_keys,
        outside_enum=count_outside_values(table, struct),
    )


def _fold_duplicates(typed: pa.Table, key: Sequence[str]) -> pa.Table:
    """One row per key: enriched before failed, then the later row in the file (rare: the API repeated a key)."""
    order = "__sixtyfour_row"
    indexed = typed.append_column(order, pa.array(np.arange(typed.num_rows, dtype=np.int64)))
    key_list = ", ".join(ident(k) for k in key)
    with registered(indexed) as (con, (name,)):
        return con.sql(
            f"SELECT * EXCLUDE ({ident(order)}, __rank) FROM (SELECT *, row_number() OVER (PARTITION BY {key_list} "
            f"ORDER BY CASE WHEN {ident(STATUS)} = 'enriched' THEN 0 ELSE 1 END, {ident(order)} DESC) AS __rank "
            f"FROM {name}) WHERE __rank = 1 ORDER BY {ident(order)}"
        ).to_arrow_table()
