"""Reading a JSON Lines or JSON array result as text columns, one record at a time, in bounded memory.

Each record is parsed once, by Python's JSON parser, and only the wanted fields are kept, as text (a nested
value as its JSON text, ``true``/``false``, a number as written by the parser; a JSON ``null`` is NULL). Rows
are turned into Arrow columns a batch at a time, so memory holds the result's text columns and one batch of
parsed records, whatever the width of a record: a SQL engine parses a vector of 2,048 records at once, and
records of 1,600 fields with confidences (55 KB each) outgrew a 128 MB cap there.

A JSON array is read element by element (a decoder over a sliding buffer), not loaded whole; a single object
wrapping the rows (``{"results": [...]}``, also ``rows`` or ``data``) is unwrapped.
"""

from __future__ import annotations

import codecs
import json
from collections.abc import Collection, Iterator
from pathlib import Path
from typing import Any, TextIO

import pyarrow as pa

__all__ = ["read_records"]

#: Records turned into Arrow columns at a time.
BATCH = 4096
#: Characters read at a time from a JSON array.
_CHUNK = 1 << 20
_WRAPPERS = ("results", "rows", "data")


class NotRecords(ValueError):
    """A record that is not a JSON object (said without quoting it)."""


def read_records(path: Path, columns: Collection[str] | None, *, array: bool) -> tuple[pa.Table, list[str]]:
    """The wanted fields of every record as text columns (every field when ``columns`` is None), and the names
    of every field the records have, in the order they first appear."""
    names: dict[str, None] = {}
    wanted: dict[str, list[pa.Array]] = {}
    pending: list[dict[str, Any]] = []
    rows = 0

    def flush() -> None:
        for name in wanted:
            wanted[name].append(pa.array([_text(r.get(name)) for r in pending], pa.string()))
        pending.clear()

    with path.open("r", encoding="utf-8", errors="strict", newline="") as fh:
        _skip_bom(fh)
        records = _array_records(fh) if array else _line_records(fh)
        for record in records:
            if not isinstance(record, dict):
                raise NotRecords(f"record {rows + 1:,} is not a JSON object")
            for name in record:
                if name not in names:
                    names[name] = None
                    if columns is None or name in columns:
                        wanted[name] = [pa.nulls(rows, pa.string())] if rows else []
            pending.append(record)
            rows += 1
            if len(pending) >= BATCH:
                flush()
    flush()
    if not wanted:
        return pa.table({"__rows": pa.nulls(rows)}).drop_columns(["__rows"]), list(names)
    table = pa.table({n: pa.chunked_array(chunks, pa.string()) for n, chunks in wanted.items()})
    return table, list(names)


def _text(value: Any) -> str | None:
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (dict, list)):
        return json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    return str(value)


def _skip_bom(fh: TextIO) -> None:
    first = fh.read(1)
    if first and first != codecs.BOM_UTF8.decode("utf-8"):
        fh.seek(0)


def _line_records(fh: TextIO) -> Iterator[Any]:
    for number, line in enumerate(fh, start=1):
        if not line.strip():
            continue
        try:
            yield json.loads(line)
        except json.JSONDecodeError:
            raise ValueError(f"not valid JSON (line {number:,})") from None


def _array_records(fh: TextIO) -> Iterator[Any]:
    """The elements of a top-level JSON array, decoded one at a time; or the rows of an object wrapping them."""
    decoder = json.JSONDecoder()
    buf, pos, eof = "", 0, False

    def more() -> bool:
        nonlocal buf, pos, eof
        if eof:
            return False
        chunk = fh.read(_CHUNK)
        if not chunk:
            eof = True
            return False
        buf, pos = buf[pos:] + chunk, 0
        return True

    def skip(chars: str) -> str:
        """Skip whitespace and ``chars``; the next significant character ('' at the end)."""
        nonlocal pos
        while True:
            while pos < len(buf) and (buf[pos].isspace() or buf[pos] in chars):
                pos += 1
            if pos < len(buf):
                return buf[pos]
            if not more():
                return ""

    start = skip("")
    if start == "{":  # one object: perhaps {"results": [...]} (read whole: rare, and bounded by the file limit)
        while more():
            pass
        whole = json.loads(buf[pos:])
        for key in _WRAPPERS:
            if isinstance(whole.get(key), list):
                yield from whole[key]
                return
        yield whole
        return
    if start != "[":
        raise ValueError("not valid JSON: not an array of records")
    pos += 1
    while True:
        nxt = skip(",")
        if nxt == "]":
            return
        if nxt == "":
            raise ValueError("not valid JSON: the array is not closed")
        while True:
            try:
                record, end = decoder.raw_decode(buf, pos)
            except json.JSONDecodeError:
                if more():
                    continue
                raise ValueError("not valid JSON (an element of the array)") from None
            if end == len(buf) and not eof and more():
                continue  # a number or a literal cut at the buffer's end: decode it whole
            break
        pos = end
        yield record
