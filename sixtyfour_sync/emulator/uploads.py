"""Reading an uploaded file (.csv, .json, .jsonl, .ndjson) into an Arrow table of text columns.

Every value becomes text, so what comes back is what was sent: CSV cells as written (empty stays
empty), JSON scalars as their JSON text (``true``, ``1.5``), nested values as compact JSON.
CSV is read by pyarrow; JSON by DuckDB's JSON reader, one object per row, with no per-row Python.
"""

from __future__ import annotations

from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.json as pajson

__all__ = ["FORMATS", "UploadError", "load_table", "read_upload", "save_table"]

#: File extension -> format name.
FORMATS = {".csv": "csv", ".json": "json", ".jsonl": "jsonl", ".ndjson": "jsonl"}
_BLOCK = 16 << 20


class UploadError(ValueError):
    """The uploaded file cannot be read; the message says why (sent back as a 400 detail)."""


def read_upload(path: Path, fmt: str, shown_name: str) -> pa.Table:
    """Read ``path`` (format ``fmt``) into a table of string columns; ``shown_name`` appears in errors."""
    if path.stat().st_size == 0:
        raise UploadError(f"File '{shown_name}' is empty")
    if fmt == "csv":
        table = _read_csv(path, shown_name)
    elif fmt in ("json", "jsonl"):
        table = _read_json(path, fmt, shown_name)
    else:  # pragma: no cover - callers check the extension first
        raise UploadError(f"Unsupported file format {fmt!r}")
    if table.num_rows == 0:
        raise UploadError(f"File '{shown_name}' has no data rows")
    return table


def _clean(message: str, path: Path, shown_name: str) -> str:
    # Never echo the server's temporary path back to the client.
    return message.replace(str(path), shown_name).strip().splitlines()[0][:500]


def _read_csv(path: Path, shown_name: str) -> pa.Table:
    try:
        # Read once to learn the header, then again with every column typed as text.
        with pacsv.open_csv(path, read_options=pacsv.ReadOptions(block_size=1 << 16)) as reader:
            names = reader.schema.names
        if len(set(names)) != len(names):
            dupes = sorted({n for n in names if names.count(n) > 1})
            raise UploadError(f"File '{shown_name}' has duplicate column names: {', '.join(dupes)}")
        return pacsv.read_csv(
            path,
            read_options=pacsv.ReadOptions(block_size=_BLOCK),
            parse_options=pacsv.ParseOptions(newlines_in_values=True),
            convert_options=pacsv.ConvertOptions(
                column_types={n: pa.string() for n in names}, strings_can_be_null=False
            ),
        )
    except UploadError:
        raise
    except (pa.ArrowInvalid, pa.ArrowException, OSError) as exc:
        raise UploadError(f"Could not parse CSV file '{shown_name}': {_clean(str(exc), path, shown_name)}") from exc


def _is_plain(t: pa.DataType) -> bool:
    return bool(pa.types.is_string(t) or pa.types.is_int64(t) or pa.types.is_boolean(t) or pa.types.is_null(t))


def _read_jsonl_fast(path: Path) -> pa.Table | None:
    """pyarrow's reader, when every column is text, integer, boolean or null (None otherwise).

    Those types turn back into their JSON text exactly; anything else (floats, nested values,
    strings pyarrow takes for timestamps, type changes between blocks) goes to the DuckDB path.
    """
    try:
        table = pajson.read_json(path, read_options=pajson.ReadOptions(block_size=4 << 20))
    except (pa.ArrowInvalid, pa.ArrowException, OSError):
        return None
    if not all(_is_plain(f.type) for f in table.schema):
        return None
    return pa.table([c.cast(pa.string()) for c in table.columns], names=table.column_names)


def _read_json(path: Path, fmt: str, shown_name: str) -> pa.Table:
    if fmt == "jsonl":
        fast = _read_jsonl_fast(path)
        if fast is not None:
            return fast
    layout = "array" if fmt == "json" else "newline_delimited"
    what = "a JSON array of objects" if fmt == "json" else "JSON lines (one object per line)"
    con = duckdb.connect(":memory:")
    try:
        con.execute("SET threads TO 2")
        con.execute(
            "CREATE TEMP TABLE rows AS SELECT row_number() OVER () AS r, json AS j "
            "FROM read_json_objects(?, format = ?, maximum_object_size = 104857600)",
            [str(path), layout],
        )
        bad = con.sql("SELECT min(r) FROM rows WHERE json_type(j) <> 'OBJECT'").fetchall()[0][0]
        if bad is not None:
            raise UploadError(f"File '{shown_name}' must hold {what}: row {bad} is not an object")
        keys = [
            k
            for (k,) in con.sql(
                "SELECT k FROM (SELECT r, unnest(json_keys(j)) AS k, "
                "generate_subscripts(json_keys(j), 1) AS i FROM rows) "
                "GROUP BY k ORDER BY min(r), arg_min(i, r)"
            ).fetchall()
        ]
        if not keys:
            if con.sql("SELECT count(*) FROM rows").fetchall()[0][0] == 0:
                return pa.table({})
            raise UploadError(f"File '{shown_name}' holds only empty objects")
        # JSON pointers (RFC 6901) address any key, whatever characters it holds.
        pointers = ["/" + k.replace("~", "~0").replace("/", "~1") for k in keys]
        select = ", ".join(f"json_extract_string(j, ${i + 1}) AS c{i}" for i in range(len(keys)))
        table = con.sql(f"SELECT {select} FROM rows ORDER BY r", params=pointers).to_arrow_table()
        return table.rename_columns(keys)
    except UploadError:
        raise
    except duckdb.Error as exc:
        raise UploadError(
            f"Could not parse file '{shown_name}' as {what}: {_clean(str(exc), path, shown_name)}"
        ) from exc
    finally:
        con.close()


def save_table(table: pa.Table, path: Path) -> None:
    """Keep a parsed upload as an Arrow IPC file, so producing the output does not parse again."""
    with pa.OSFile(str(path), "wb") as sink, pa.ipc.new_file(sink, table.schema) as writer:
        writer.write_table(table)


def load_table(path: Path) -> pa.Table:
    """Read a table written by :func:`save_table`."""
    with pa.OSFile(str(path), "rb") as source:
        return pa.ipc.open_file(source).read_all()
