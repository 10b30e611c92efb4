"""Reading an uploaded file (.csv, .json, .jsonl, .ndjson) into an Arrow IPC file of text columns, streaming.

Every value becomes text, so what comes back is what was sent: CSV cells as written (empty stays
empty), JSON scalars as their JSON text (``true``, ``1.5``), nested values as compact JSON.
CSV and plain JSON lines (text, integers, booleans, nulls) are read by pyarrow's streaming readers a
block at a time; anything else goes through DuckDB's JSON reader under a small memory limit (it spills
to disk beyond). No per-row Python, and memory holds a block, never the whole file.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.json as pajson

__all__ = ["FORMATS", "ParsedUpload", "UploadError", "iter_parsed", "parse_upload", "read_parsed"]

#: File extension -> format name.
FORMATS = {".csv": "csv", ".json": "json", ".jsonl": "jsonl", ".ndjson": "jsonl"}
_BLOCK = 2 << 20
# pyarrow's streaming CSV reader reads many blocks ahead: small blocks keep that small.
_CSV_BLOCK = 1 << 20
_DUCKDB_MEMORY = 96 << 20
_OBJECT_BYTES = 16 << 20
_DUCKDB_BATCH_ROWS = 16_384


class UploadError(ValueError):
    """The uploaded file cannot be read; the message says why (sent back as a 400 detail)."""


class _NotPlain(Exception):
    """The fast JSON path cannot keep these values' text exactly: use DuckDB."""


@dataclass(frozen=True)
class ParsedUpload:
    """What parsing found: the row count and the column names, in file order."""

    rows: int
    columns: list[str]


def parse_upload(path: Path, fmt: str, shown_name: str, dest: Path) -> ParsedUpload:
    """Parse ``path`` (format ``fmt``) into ``dest`` (Arrow IPC, string columns); ``shown_name`` appears in errors.

    Raises :class:`UploadError` for an unreadable file; ``dest`` is then removed.
    """
    if path.stat().st_size == 0:
        raise UploadError(f"File '{shown_name}' is empty")
    try:
        if fmt == "csv":
            parsed = _write(_csv_batches(path, shown_name), dest)
        elif fmt in ("json", "jsonl"):
            parsed = _parse_json(path, fmt, shown_name, dest)
        else:  # pragma: no cover - callers check the extension first
            raise UploadError(f"Unsupported file format {fmt!r}")
    except BaseException:
        dest.unlink(missing_ok=True)
        raise
    if parsed.rows == 0:
        dest.unlink(missing_ok=True)
        raise UploadError(f"File '{shown_name}' has no data rows")
    return parsed


def iter_parsed(path: Path) -> Iterator[pa.RecordBatch]:
    """The batches of a parsed upload, read one at a time (not memory-mapped: RSS stays one batch)."""
    with pa.OSFile(str(path), "rb") as source:
        reader = pa.ipc.open_file(source)
        for i in range(reader.num_record_batches):
            yield reader.get_batch(i)


def read_parsed(path: Path) -> pa.Table:
    """A whole parsed upload as one table (for small files)."""
    with pa.OSFile(str(path), "rb") as source:
        return pa.ipc.open_file(source).read_all()


def _write(batches: Iterator[pa.RecordBatch], dest: Path) -> ParsedUpload:
    rows = 0
    writer: pa.ipc.RecordBatchFileWriter | None = None
    schema: pa.Schema | None = None
    with pa.OSFile(str(dest), "wb") as sink:
        try:
            for batch in batches:
                if writer is None:
                    schema = batch.schema
                    writer = pa.ipc.new_file(sink, schema)
                if batch.num_rows:
                    writer.write_batch(batch)
                    rows += batch.num_rows
            if writer is None:
                schema = pa.schema([])
                writer = pa.ipc.new_file(sink, schema)
        finally:
            if writer is not None:
                writer.close()
    assert schema is not None
    return ParsedUpload(rows, list(schema.names))


def _clean(message: str, path: Path, shown_name: str) -> str:
    # Never echo the server's temporary path back to the client.
    return message.replace(str(path), shown_name).strip().splitlines()[0][:500]


def _csv_batches(path: Path, shown_name: str) -> Iterator[pa.RecordBatch]:
    try:
        # Learn the header first, then stream with every column typed as text.
        with pacsv.open_csv(path, read_options=pacsv.ReadOptions(block_size=1 << 16)) as probe:
            names = probe.schema.names
        if len(set(names)) != len(names):
            dupes = sorted({n for n in names if names.count(n) > 1})
            raise UploadError(f"File '{shown_name}' has duplicate column names: {', '.join(dupes)}")
        with pacsv.open_csv(
            path,
            read_options=pacsv.ReadOptions(block_size=_CSV_BLOCK, use_threads=False),
            parse_options=pacsv.ParseOptions(newlines_in_values=True),
            convert_options=pacsv.ConvertOptions(
                column_types={n: pa.string() for n in names}, strings_can_be_null=False
            ),
        ) as reader:
            yield from reader
    except UploadError:
        raise
    except (pa.ArrowInvalid, pa.ArrowException, OSError) as exc:
        raise UploadError(f"Could not parse CSV file '{shown_name}': {_clean(str(exc), path, shown_name)}") from exc


def _plain_schema(inferred: pa.Schema) -> pa.Schema:
    """The explicit schema of the fast path: text, integers and booleans as found; nulls and
    timestamp-looking strings as text. Anything else (floats, nested values) is not plain."""
    fields = []
    for f in inferred:
        t = f.type
        if pa.types.is_string(t) or pa.types.is_int64(t) or pa.types.is_boolean(t):
            fields.append(f)
        elif pa.types.is_null(t) or pa.types.is_timestamp(t) or pa.types.is_date(t) or pa.types.is_time(t):
            fields.append(pa.field(f.name, pa.string()))
        else:
            raise _NotPlain(f.name)
    return pa.schema(fields)


def _line_chunks(path: Path, size: int) -> Iterator[bytes]:
    """The file in pieces of about ``size`` bytes that end at a line break (a longer line is one piece)."""
    with open(path, "rb") as fh:
        rest = b""
        while True:
            block = fh.read(size)
            if not block:
                break
            data = rest + block
            cut = data.rfind(b"\n")
            if cut < 0:
                rest = data
                continue
            yield data[: cut + 1]
            rest = data[cut + 1 :]
        if rest.strip():
            yield rest


def _jsonl_fast_batches(path: Path) -> Iterator[pa.RecordBatch]:
    """pyarrow's reader over pieces of the file, with the first piece's schema fixed as text-preserving types.

    One piece is parsed at a time (pyarrow's own streaming reader reads tens of MB ahead). Raises
    ``pa.ArrowInvalid`` (or :class:`_NotPlain`) when a later piece does not fit: new keys, a type
    change, a value pyarrow would not render back as its JSON text.
    """
    schema: pa.Schema | None = None
    for chunk in _line_chunks(path, _BLOCK):
        read_options = pajson.ReadOptions(block_size=len(chunk) + 1, use_threads=False)
        if schema is None:
            inferred = pajson.read_json(pa.BufferReader(chunk), read_options=read_options).schema
            schema = _plain_schema(inferred)
        parse_options = pajson.ParseOptions(explicit_schema=schema, unexpected_field_behavior="error")
        table = pajson.read_json(pa.BufferReader(chunk), read_options=read_options, parse_options=parse_options)
        for batch in table.to_batches():
            yield pa.RecordBatch.from_arrays([c.cast(pa.string()) for c in batch.columns], names=batch.schema.names)


def _parse_json(path: Path, fmt: str, shown_name: str, dest: Path) -> ParsedUpload:
    if fmt == "jsonl":
        try:
            return _write(_jsonl_fast_batches(path), dest)
        except (_NotPlain, pa.ArrowInvalid, pa.ArrowException, OSError):
            dest.unlink(missing_ok=True)
    return _write(_duckdb_json_batches(path, fmt, shown_name), dest)


def _duckdb_json_batches(path: Path, fmt: str, shown_name: str) -> Iterator[pa.RecordBatch]:
    try:
        yield from _duckdb_json_pass(path, fmt, shown_name, _OBJECT_BYTES)
    except _ObjectTooLarge:
        # A row beyond the usual object size: read again with the file's own size as the bound.
        yield from _duckdb_json_pass(path, fmt, shown_name, max(_OBJECT_BYTES, path.stat().st_size + 1))


class _ObjectTooLarge(Exception):
    pass


def _duckdb_json_pass(path: Path, fmt: str, shown_name: str, max_object: int) -> Iterator[pa.RecordBatch]:
    """Two streaming passes of DuckDB's reader: checks and column names, then the values in file order."""
    layout = "array" if fmt == "json" else "newline_delimited"
    what = "a JSON array of objects" if fmt == "json" else "JSON lines (one object per line)"
    spill = path.parent / f".{path.name}.spill"
    source = f"read_json_objects(?, format = '{layout}', maximum_object_size = {int(max_object)})"
    con = duckdb.connect(":memory:")
    try:
        con.execute(f"SET memory_limit = '{max(_DUCKDB_MEMORY, 3 * max_object) >> 20}MB'")
        con.execute("SET threads TO 1")
        con.execute("SET temp_directory = '" + str(spill).replace("'", "''") + "'")
        bad = con.execute(
            f"SELECT min(r) FROM (SELECT row_number() OVER () AS r, json_type(json) AS t FROM {source}) "
            "WHERE t <> 'OBJECT'",
            [str(path)],
        ).fetchall()[0][0]
        if bad is not None:
            raise UploadError(f"File '{shown_name}' must hold {what}: row {bad} is not an object")
        keys = [
            k
            for (k,) in con.execute(
                "SELECT k FROM (SELECT r, unnest(keys) AS k, generate_subscripts(keys, 1) AS i "
                f"FROM (SELECT row_number() OVER () AS r, json_keys(json) AS keys FROM {source})) "
                "GROUP BY k ORDER BY min(r), arg_min(i, r)",
                [str(path)],
            ).fetchall()
        ]
        if not keys:
            if con.execute(f"SELECT count(*) FROM {source}", [str(path)]).fetchall()[0][0] == 0:
                return
            raise UploadError(f"File '{shown_name}' holds only empty objects")
        # JSON pointers (RFC 6901) address any key, whatever characters it holds; insertion order is
        # preserved, so the values stream out in file order.
        pointers = ["/" + k.replace("~", "~0").replace("/", "~1") for k in keys]
        select = ", ".join(f"json_extract_string(json, ${i + 2}) AS c{i}" for i in range(len(keys)))
        reader = con.sql(f"SELECT {select} FROM {source.replace('?', '$1')}", params=[str(path), *pointers])
        for batch in reader.to_arrow_reader(_DUCKDB_BATCH_ROWS):
            yield pa.RecordBatch.from_arrays(batch.columns, names=keys)
    except UploadError:
        raise
    except duckdb.Error as exc:
        if "maximum_object_size" in str(exc) and max_object < path.stat().st_size + 1:
            raise _ObjectTooLarge from exc
        raise UploadError(
            f"Could not parse file '{shown_name}' as {what}: {_clean(str(exc), path, shown_name)}"
        ) from exc
    finally:
        con.close()
        shutil.rmtree(spill, ignore_errors=True)
