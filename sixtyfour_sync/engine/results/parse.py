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
import re
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeAlias, Union

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from sixtyfour_sync.config.models import StructField
from sixtyfour_sync.engine.ledger.localdb import duck_type, ident, json_path, registered
from sixtyfour_sync.engine.results.jsonrecords import NotRecords, read_records
from sixtyfour_sync.engine.rows.casts import answered_mask, cast_sql, count_outside_values
from sixtyfour_sync.errors import SixtyfourSyncError
from sixtyfour_sync.warehouse.arrow import has_duplicate_keys

__all__ = ["ParsedResult", "ResultParseError", "parse_result", "read_result_table"]

STATUS = "_sixtyfour_status"
# A record may be as large as the whole file (100 MB limit): size blocks so none straddles two.
_JSON_BLOCK = 16 << 20
_MAX_OBJECT = 32 << 20  # a single record; DuckDB buffers twice this


def max_object_size(path: Path, *, lines: bool = True) -> int:
    """DuckDB's ``maximum_object_size`` for a JSON file: no record is larger than its longest line (JSON Lines)
    or than the file (a JSON array).

    DuckDB allocates twice this per read, and the process's in-memory DuckDB shares one memory limit
    between threads: sizing it to the records keeps a 15 MB file of 15 KB records from reserving 30 MB.
    """
    try:
        size = path.stat().st_size
        longest = _longest_line(path) if lines else size
    except OSError:
        return _MAX_OBJECT
    return max(1 << 16, min(_MAX_OBJECT, longest + 1))


def _longest_line(path: Path) -> int:
    """The length of the longest line of a file, in bytes (read in blocks: about 10 ms per 15 MB)."""
    longest = current = 0
    with path.open("rb") as fh:
        while block := fh.read(1 << 20):
            start = 0
            while (end := block.find(b"\n", start)) >= 0:
                longest = max(longest, current + end - start)
                current, start = 0, end + 1
            current += len(block) - start
    return max(longest, current)


class ResultParseError(SixtyfourSyncError):
    """A result file cannot be read; the file is kept. The message names the file and the reason, never its bytes."""


#: A reason is cut to this many characters: a reason, not a dump.
_MAX_REASON = 240
_CSV_COUNTS = re.compile(r"Expected \d+ columns, got \d+")
_ROW_AT = re.compile(r"\b(?:row|line) \d+\b", re.IGNORECASE)
#: How much of a CSV is read to find its header (a header longer than this is not one).
_HEADER_BYTES = 1 << 20


def describe_parse_failure(exc: BaseException) -> str:
    """Why a file could not be parsed, in words that never quote the file's own bytes.

    Library messages often end with the offending text (pyarrow: ``Expected 3 columns, got 1: <the line>``;
    DuckDB: ``... in line 2: <the record>``), which may be binary, huge or personal: only the kind of
    problem (and where, when the library says) is kept.
    """
    if isinstance(exc, UnicodeDecodeError):
        return f"not UTF-8 text (an invalid byte at offset {exc.start:,})"
    if isinstance(exc, MemoryError):
        return "too large to parse within the memory limit"
    text = str(exc)
    found = _CSV_COUNTS.search(text)
    if found:
        return f"a row has the wrong number of fields ({found.group(0).lower()})"
    lowered = text.lower()
    for needle, reason in (
        ("invalid utf", "not UTF-8 text"),
        ("straddl", "a record is larger than the parser's block"),
        ("out of memory", "too large to parse within the memory limit"),
        ("expected object", "a record is not a JSON object"),
        ("malformed json", "not valid JSON"),
        ("json", "not valid JSON"),
        ("unterminated", "a quoted field is not closed"),
    ):
        if needle in lowered:
            where = _ROW_AT.search(text)
            return reason + (f" ({where.group(0)})" if where else "")
    return f"the parser failed ({type(exc).__name__})"


def _bounded(message: str) -> str:
    """``message`` with unprintable characters replaced, and cut to a reasonable length."""
    message = "".join(ch if ch.isprintable() else "?" for ch in message)
    return message if len(message) <= _MAX_REASON else message[: _MAX_REASON - 1] + "…"


def unreadable(path: Path | str, fmt: str, reason: str) -> ResultParseError:
    """The one error a result that cannot be read raises: where, what kind, why (never the file's bytes)."""
    return ResultParseError(
        _bounded(f"result file {Path(path).name} ({fmt}) cannot be read: {reason}"),
        hint="the file is kept; rerun `sixtyfour-sync run --retry-unreadable` to download it again",
    )


@dataclass
class ParsedResult:
    """Typed rows of one result (one or several files).

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
    #: How many files the result came in.
    parts: int = 1

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
    """The CSV's column names, as the parser reads them (a UTF-8 BOM skipped; a name that is not UTF-8 text,
    or holds a NUL or a line break, makes the header unreadable)."""
    with path.open("rb") as fh:
        head = fh.read(_HEADER_BYTES)
    if head.startswith(codecs.BOM_UTF8):
        head = head[len(codecs.BOM_UTF8) :]
    if not head.strip():
        return []
    # Bytes that are not UTF-8 survive decoding as surrogates, so they can be found in the names (and only
    # there: the rows are the parser's business).
    rows = csv.reader(io.StringIO(head.decode("utf-8", errors="surrogateescape"), newline=""))
    try:
        names = next(rows)
    except StopIteration:
        return []
    for name in names:
        if any("\udc80" <= ch <= "\udcff" for ch in name):
            raise ValueError("invalid utf-8 in the header")
        if "\x00" in name or "\n" in name or "\r" in name:
            raise ValueError("the header holds a NUL or a line break inside a name: not a header")
    return names


def read_result_table(path: Path, fmt: str, columns: Collection[str] | None = None) -> pa.Table:
    """Read a result file with every column as text, exactly as written.

    No value becomes NULL by its spelling: an empty CSV field is the empty string, and ``NA``, ``null`` or
    ``nan`` are text (deciding what is empty is the typing's job, per field). ``columns``: only these are
    read (the others, such as the inputs the API echoes back, are skipped by the parser).
    """
    return _read_result(path, fmt, columns)[0]


def _read_result(path: Path, fmt: str, columns: Collection[str] | None) -> tuple[pa.Table, list[str]]:
    """:func:`read_result_table`, and the names of every column the file has.

    Whatever the file holds, this returns a table or raises :class:`ResultParseError` (never another error).
    """
    if fmt not in ("csv", "jsonl", "ndjson", "json"):
        raise unreadable(path, fmt, "unknown format (expected csv, jsonl or json)")
    try:
        if fmt == "csv":
            return _read_csv(path, columns)
        return _read_json_objects(path, columns, array=fmt == "json")
    except ResultParseError:
        raise
    except Exception as exc:  # any failure of any library on any bytes: the file is unreadable, not a bug
        raise unreadable(path, fmt, describe_parse_failure(exc)) from None


def _read_csv(path: Path, columns: Collection[str] | None) -> tuple[pa.Table, list[str]]:
    header = _csv_header(path)
    if not header:
        raise unreadable(path, "csv", "the file is empty (no header)")
    counts: dict[str, int] = {}
    for h in header:
        counts[h] = counts.get(h, 0) + 1
    wanted = [h for h in dict.fromkeys(header) if columns is None or h in columns]
    dupes = sorted(h for h in wanted if counts[h] > 1)
    if dupes:
        raise unreadable(path, "csv", f"the header names {', '.join(map(repr, dupes[:5]))} more than once")
    if not wanted:
        return pa.table({}), header
    table = pacsv.read_csv(
        path,
        read_options=pacsv.ReadOptions(use_threads=True, block_size=_JSON_BLOCK, encoding="utf8"),
        parse_options=pacsv.ParseOptions(newlines_in_values=True),
        convert_options=pacsv.ConvertOptions(
            column_types={h: pa.string() for h in wanted},
            include_columns=wanted,
            null_values=[],
            strings_can_be_null=False,
            quoted_strings_can_be_null=False,
        ),
    )
    if table.column_names != wanted:
        raise unreadable(path, "csv", "the parser read another header than the file's first line")
    return table, header


def _read_json_objects(path: Path, columns: Collection[str] | None, *, array: bool) -> tuple[pa.Table, list[str]]:
    """JSON Lines or a JSON array, the wanted fields as text (nested values as JSON text), each record parsed
    once (:mod:`sixtyfour_sync.engine.results.jsonrecords`).

    pyarrow's JSON reader fixes each column's type from the first block and raises when a later row differs
    (an ``employees`` of 7, then "n/a"); the API gives no such guarantee, so every value is read as text.
    """
    try:
        return read_records(path, columns, array=array)
    except NotRecords as exc:
        raise unreadable(path, "json" if array else "jsonl", str(exc)) from None


#: Columns typed by one query: DuckDB holds a vector per column per chunk, so a query over all of a wide
#: result's 1,600 columns outgrew the 128 MB cap.
_GROUP = 128


def _groups(items: Sequence[str]) -> list[Sequence[str]]:
    return [items[i : i + _GROUP] for i in range(0, len(items), _GROUP)] or [items]


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
    return cast_sql(expr, spec)  # the rules per struct type: sixtyfour_sync/engine/rows/casts.py


#: A result to parse: one file, several (the parts of one result, each with its format), or a text table.
ResultSource: TypeAlias = Union[Path, Sequence[tuple[Path, str]], pa.Table]  # noqa: UP007


def parse_result(
    source: ResultSource,
    *,
    fmt: str = "csv",
    key_types: Mapping[str, pa.DataType],
    struct: Mapping[str, StructField],
    field_confidence: bool,
    carry: Sequence[str] = (),
) -> ParsedResult:
    """Read, type and classify a result: one file, every part of a result that came as several files (read
    and stacked before anything else), or inline rows already read into a text table.

    ``carry`` names columns passed through as text when the result has them (such as the input hash that
    was uploaded alongside the rows). Whatever the files hold, this returns a result or raises
    :class:`ResultParseError`.
    """
    key = list(key_types)
    wanted = set(key) | set(struct) | set(carry)
    conf_cols = {f"{f}_confidence" for f in struct}
    if field_confidence:
        wanted |= conf_cols | {"field_confidence"}
    if isinstance(source, pa.Table):
        raw, names, present, parts = source, source.column_names, set(source.column_names), 1
        where = "inline results"
    else:
        files = [(source, fmt)] if isinstance(source, Path) else list(source)
        raw, names, present = _read_parts(files, wanted, key)
        parts, where = len(files), files[0][0].name if len(files) == 1 else f"{len(files)} result files"
    missing = [k for k in key if k not in present]
    if missing:
        raise ResultParseError(
            f"{where}: the key column(s) {', '.join(missing)} are missing, so no row can be tied back; "
            "nothing from this result was merged",
            hint="the file is kept for inspection",
        )
    try:
        return _typed(raw, names, present, key_types, struct, field_confidence, carry, wanted, conf_cols, parts)
    except ResultParseError:
        raise
    except Exception as exc:  # typing text that came from anywhere: a failure is the file's, not a bug
        raise ResultParseError(_bounded(f"{where} cannot be typed: {describe_parse_failure(exc)}")) from None


def _read_parts(
    files: Sequence[tuple[Path, str]], wanted: Collection[str], key: Sequence[str]
) -> tuple[pa.Table, list[str], set[str]]:
    """Every part as text, stacked; the columns every part has (a column one part lacks is missing)."""
    tables: list[pa.Table] = []
    names: dict[str, None] = {}
    present: set[str] | None = None
    for path, fmt in files:
        # Only the columns the merge reads are parsed (the inputs echoed back are not); the header says
        # what else the file had, for the report.
        table, header = _read_result(path, fmt, wanted)
        lacking = [k for k in key if k not in table.column_names]
        if lacking:
            raise ResultParseError(
                f"result file {path.name} ({fmt}): the key column(s) {', '.join(lacking)} are missing, so no row "
                "can be tied back; nothing from this result was merged",
                hint="the file is kept for inspection",
            )
        names.update(dict.fromkeys(header))
        present = set(table.column_names) if present is None else present & set(table.column_names)
        tables.append(table)
    if len(tables) == 1:
        return tables[0], list(names), present or set()
    typed = [t.cast(pa.schema([pa.field(c, pa.string()) for c in t.column_names])) for t in tables]
    return pa.concat_tables(typed, promote_options="permissive"), list(names), present or set()


def _typed(
    raw: pa.Table,
    names: Sequence[str],
    present: set[str],
    key_types: Mapping[str, pa.DataType],
    struct: Mapping[str, StructField],
    field_confidence: bool,
    carry: Sequence[str],
    wanted: set[str],
    conf_cols: set[str],
    parts: int,
) -> ParsedResult:
    """Cast the text table to the key and field types, classify rows, fold duplicate keys."""
    key = list(key_types)
    missing_fields = [f for f in struct if f not in present]
    extra = [c for c in names if c not in wanted and c not in conf_cols]

    select = _select_list(present, key_types, struct, field_confidence, carry)
    # One vectorised pass casts every column; what did not cast, the empty rows and the keys are then
    # counted with Arrow kernels (no second pass, no join, no sort).
    with registered(raw) as (con, (name,)):
        # in groups of columns, so that a result of 1,600 columns is typed within the memory cap
        pieces = [con.sql("SELECT " + ", ".join(group) + f" FROM {name}").to_arrow_table() for group in _groups(select)]
    typed = pa.table([c for t in pieces for c in t.columns], names=[n for t in pieces for n in t.column_names])
    failures = _cast_failures(raw, typed, struct, present)
    typed = _with_status(typed, struct)
    typed, null_keys = _drop_null_keys(typed, key)
    duplicate_keys = 0
    if has_duplicate_keys(typed, key):
        # One row per key: an enriched row beats a failed one; among equals the last in the file wins.
        before = typed.num_rows
        typed = _fold_duplicates(typed, key)
        duplicate_keys = before - typed.num_rows
    return ParsedResult(
        table=typed,
        rows_read=raw.num_rows,
        missing_columns=missing_fields,
        extra_columns=extra,
        cast_failures=failures,
        duplicate_keys=duplicate_keys,
        null_keys=null_keys,
        outside_enum=count_outside_values(typed, struct),
        parts=parts,
    )


def _select_list(
    present: set[str],
    key_types: Mapping[str, pa.DataType],
    struct: Mapping[str, StructField],
    field_confidence: bool,
    carry: Sequence[str],
) -> list[str]:
    """The typing query's columns: the keys and fields cast to their types (an absent field NULL), the
    confidences (0-100, from their own columns or the ``field_confidence`` object) and the carried columns."""
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
    return select


def _cast_failures(
    raw: pa.Table, typed: pa.Table, struct: Mapping[str, StructField], present: set[str]
) -> dict[str, int]:
    """Per field, how many rows gave a value that did not cast to the field's type."""
    failures: dict[str, int] = {}
    for field_name in struct:
        if field_name not in present:
            continue
        given = answered_mask(raw.column(field_name), struct[field_name])
        lost = int(pc.sum(pc.and_(given, pc.is_null(typed.column(field_name)))).as_py() or 0)
        if lost:
            failures[field_name] = lost
    return failures


def _with_status(typed: pa.Table, struct: Mapping[str, StructField]) -> pa.Table:
    """The typed rows with their status: ``enriched`` when any field has a value, else ``failed``."""
    any_value = None
    for field_name in struct:
        v = pc.is_valid(typed.column(field_name))
        any_value = v if any_value is None else pc.or_(any_value, v)
    enriched = any_value if any_value is not None else pa.repeat(pa.scalar(False), typed.num_rows)
    return typed.append_column(STATUS, pc.if_else(enriched, "enriched", "failed"))


def _drop_null_keys(typed: pa.Table, key: Sequence[str]) -> tuple[pa.Table, int]:
    """The rows whose every key column has a value, and how many rows were dropped for a missing key."""
    key_null = None
    for k in key:
        m = pc.is_null(typed.column(k))
        key_null = m if key_null is None else pc.or_(key_null, m)
    null_keys = int(pc.sum(key_null).as_py() or 0) if key_null is not None else 0
    if null_keys:
        typed = typed.filter(pc.invert(key_null))
    return typed, null_keys


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
