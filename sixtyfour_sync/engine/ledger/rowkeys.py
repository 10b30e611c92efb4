"""A job's row keys, packed small enough to write with every file (pure).

Before a file is sent, the ledger records which rows it holds: for each row a 64-bit prefix of the warehouse's
hash of its key, and the full hash of the inputs that were sent. A file's 100,000 rows pack into about 3 MB of
text (an Arrow IPC stream, zstd-compressed, base64), stored in a few rows of at most :data:`PART_CHARS`
characters, so every warehouse's text type holds them (MySQL's TEXT stops at 64 KB). Writing that once per file
costs a fraction of writing 100,000 ledger rows, and it is read back only on the rare paths that need it: a
resume that lost its local file, a selection leaving out the rows of a held job.

A 64-bit key prefix is plenty to tell a few hundred thousand held rows from millions of others (a false match
would only hold one more row back); the input hash is kept whole, since it is compared with the target's.
"""

from __future__ import annotations

import base64
import io
from collections.abc import Iterable

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.ipc as ipc

__all__ = ["KEY_PREFIX_CHARS", "PART_CHARS", "key_prefix", "pack", "unpack"]

#: Hex characters of the key hash that are kept (64 bits).
KEY_PREFIX_CHARS = 16
#: Longest text of one stored part.
PART_CHARS = 48_000

_SCHEMA = pa.schema([("key", pa.string()), ("input_hash", pa.string())])


def key_prefix(key_hashes: pa.Array | pa.ChunkedArray) -> pa.Array | pa.ChunkedArray:
    """The stored prefix of full key hashes."""
    return pc.utf8_slice_codeunits(key_hashes, 0, KEY_PREFIX_CHARS)


def pack(key_hashes: pa.Array | pa.ChunkedArray, input_hashes: pa.Array | pa.ChunkedArray) -> list[str]:
    """The rows' keys and input hashes as text parts of at most :data:`PART_CHARS` characters."""
    table = pa.table({"key": key_prefix(key_hashes.cast(pa.string())), "input_hash": input_hashes.cast(pa.string())})
    sink = io.BytesIO()
    with ipc.new_stream(sink, _SCHEMA, options=ipc.IpcWriteOptions(compression="zstd")) as writer:
        writer.write_table(table.cast(_SCHEMA))
    text = base64.b64encode(sink.getvalue()).decode("ascii")
    return [text[i : i + PART_CHARS] for i in range(0, len(text), PART_CHARS)] or [""]


def unpack(parts: Iterable[str]) -> pa.Table:
    """The table :func:`pack` packed (columns ``key`` and ``input_hash``), from its parts in order."""
    text = "".join(parts)
    if not text:
        return _SCHEMA.empty_table()
    with ipc.open_stream(io.BytesIO(base64.b64decode(text))) as reader:
        return reader.read_all()
