"""Turning a stream of Arrow batches into the JSONL files that are submitted.

Each file holds at most ``chunk_rows`` rows (<= 100,000) and stays under the API's 100 MB limit. Rows are
serialised by an in-memory DuckDB (``COPY ... TO (FORMAT json)``): vectorised, about 10x faster than a Python
loop over ``to_pylist()``, and the same for every source warehouse. NaN and infinities, which JSON cannot
carry, are sent as null.

A file's name derives from its content hash, and its Idempotency-Key from that hash and the question
(:mod:`sixtyfour_sync.engine.jobs.keys`). Each file also keeps, in memory, the columns the merge needs later (the
key, its hash, the input hash), so nothing has to read the uploaded file again.
"""

from __future__ import annotations

import hashlib
import os
import re
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from sixtyfour_sync.engine.ledger.localdb import ident, literal, local_duckdb
from sixtyfour_sync.errors import LimitExceededError

__all__ = [
    "MAX_FILE_BYTES",
    "ChunkFile",
    "SpilledTable",
    "asking",
    "file_sha256",
    "head_chunk",
    "spill",
    "split_at_questions",
    "tail_chunk",
    "write_chunks",
]

#: The API's limit is 100 MB; keep a margin for the multipart envelope.
MAX_FILE_BYTES = 100 * 1000 * 1000 - 64 * 1024
_HASH_BLOCK = 1 << 20
#: The kept column saying which rows ask their question (engine/rows/select.py's ASKS_COLUMN).
ASKS = "_sixtyfour_asks"


@dataclass(frozen=True)
class ChunkFile:
    """One file ready to submit."""

    path: Path
    rows: int
    bytes: int
    content_hash: str
    #: What ``describe`` said of the file's rows (before ``drop`` columns were removed).
    meta: Mapping[str, Any] = field(default_factory=dict)
    #: The ``keep`` columns of the file's rows, in file order (the key, its hash, the input hash...).
    kept: pa.Table | None = field(default=None, repr=False)


@dataclass(frozen=True)
class SpilledTable:
    """An Arrow table kept in a file (Arrow IPC, uncompressed) until it is needed.

    A submitted file must remember what it sent (its keys and input hashes) until its result is merged, which
    can be hours later; kept in memory, that grows with the rows in flight (50 files of 100,000 rows: about
    400 MB). On disk it costs nothing while it waits, and reading it back is a copy of a few megabytes.
    """

    path: Path
    num_rows: int

    def load(self) -> pa.Table:
        """The table, read into memory."""
        with pa.OSFile(str(self.path), "rb") as src:
            return pa.ipc.open_file(src).read_all()

    def discard(self) -> None:
        """Remove the file."""
        self.path.unlink(missing_ok=True)


def spill(table: pa.Table, path: Path) -> SpilledTable:
    """Write ``table`` to ``path`` (atomically) and return the handle that reads it back."""
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.part")
    try:
        with pa.OSFile(str(tmp), "wb") as sink, pa.ipc.new_file(sink, table.schema) as writer:
            writer.write_table(table)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return SpilledTable(path, table.num_rows)


def file_sha256(path: Path) -> str:
    """SHA-256 of a file's bytes, read in blocks."""
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while block := fh.read(_HASH_BLOCK):
            digest.update(block)
    return digest.hexdigest()


def _exact_as_text(t: pa.DataType) -> bool:
    """Whether a key of Arrow type ``t`` is written as a JSON string: an exact number a double cannot hold
    (a decimal, an unsigned 64-bit integer), which a JSON parser reading numbers as doubles would change."""
    return bool(pa.types.is_decimal(t) or pa.types.is_uint64(t))


def _select_list(schema: pa.Schema, keys: Sequence[str] = ()) -> str:
    parts = []
    for f in schema:
        q = ident(f.name)
        if f.name in keys and _exact_as_text(f.type):
            parts.append(f"CAST({q} AS VARCHAR) AS {q}")
        elif pa.types.is_floating(f.type):
            parts.append(f"CASE WHEN isnan({q}) OR isinf({q}) THEN NULL ELSE {q} END AS {q}")
        else:
            parts.append(q)
    return ", ".join(parts)


def asking(table: pa.Table | pa.RecordBatch, asks: str | None) -> pa.Array | pa.ChunkedArray | None:
    """Which rows of ``table`` ask their question (``asks``: the flag column); None when every row does."""
    if asks is None or asks not in table.column_names:
        return None
    return table.column(asks)


def split_at_questions(kept: pa.Table, questions: int, asks: str | None) -> int:
    """Where a file's kept rows are cut to keep its first ``questions`` questions (the rows that ask them and
    those that follow them), for a file cut in two (:func:`head_chunk`, :func:`tail_chunk`)."""
    flag = asking(kept, asks)
    if flag is None:
        return questions
    where = pc.indices_nonzero(flag)
    return int(where[questions].as_py()) if questions < len(where) else kept.num_rows


class _Writer:
    def __init__(
        self,
        out_dir: Path,
        prefix: str,
        max_bytes: int,
        drop: Sequence[str],
        describe: Callable[[pa.Table], Mapping[str, Any]] | None,
        keep: Sequence[str] = (),
        keys: Sequence[str] = (),
        asks: str | None = None,
    ) -> None:
        self.out_dir = out_dir
        self.prefix = prefix
        self.max_bytes = max_bytes
        self.drop = set(drop)
        self.describe = describe
        self.keep = list(keep)
        self.keys = list(keys)
        self.asks = asks
        self.con = local_duckdb()

    def write(self, table: pa.Table) -> list[ChunkFile]:
        tmp = self.out_dir / f".{self.prefix}-{uuid.uuid4().hex}.jsonl.part"
        try:
            meta = self.describe(table) if self.describe is not None else {}
            flag = asking(table, self.asks)
            # a copy only when some rows follow another's question (most files: every row asks)
            asked = table.filter(flag) if flag is not None and not pc.all(flag).as_py() else table
            questions = asked.num_rows
            sent = asked.select([n for n in table.column_names if n not in self.drop and n != self.asks])
            name = f"chunk_{uuid.uuid4().hex[:12]}"
            self.con.register(name, sent)
            try:
                target = literal(str(tmp))
                self.con.execute(
                    f"COPY (SELECT {_select_list(sent.schema, self.keys)} FROM {name}) TO {target} (FORMAT json)"
                )
            finally:
                self.con.unregister(name)
            size = tmp.stat().st_size
            if size > self.max_bytes:
                tmp.unlink()
                if questions <= 1:
                    raise LimitExceededError(
                        "a single row serialised to JSON",
                        limit=self.max_bytes,
                        actual=size,
                        hint="send fewer or shorter columns (source.columns)",
                    )
                half = split_at_questions(table, questions // 2, self.asks)
                return self.write(table.slice(0, half)) + self.write(table.slice(half))
            digest = file_sha256(tmp)
            final = self.out_dir / f"{self.prefix}-{digest[:16]}.jsonl"
            os.replace(tmp, final)
            kept = table.select(self.keep).combine_chunks() if self.keep else None
            return [ChunkFile(final, questions, size, digest, meta, kept)]
        finally:
            tmp.unlink(missing_ok=True)

    def close(self) -> None:
        """Nothing to release: the connection is the thread's shared one."""


def write_chunks(
    batches: Iterable[pa.RecordBatch],
    *,
    out_dir: Path,
    prefix: str,
    chunk_rows: int,
    max_bytes: int = MAX_FILE_BYTES,
    drop: Sequence[str] = (),
    describe: Callable[[pa.Table], Mapping[str, Any]] | None = None,
    keep: Sequence[str] = (),
    keys: Sequence[str] = (),
    asks: str | None = None,
) -> Iterator[ChunkFile]:
    """Write batches as JSONL files of at most ``chunk_rows`` rows and ``max_bytes`` bytes, lazily.

    ``drop`` columns travel with the rows but are not written; ``describe`` sees each file's rows (with
    them) and its answer is kept on the :class:`ChunkFile`, as are the ``keep`` columns. ``keys`` name the
    key columns: an exact number there (a decimal, an unsigned 64-bit integer) is written as a JSON string,
    so a reader that parses JSON numbers as doubles cannot change it. Memory holds at most one file's rows
    at a time.

    ``asks`` names a boolean column: only the rows where it is true are written (one per question), each
    followed by the rows that share its question (kept, not written), which stay in the same file. A file
    then holds ``chunk_rows`` questions.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    writer = _Writer(out_dir, re.sub(r"[^A-Za-z0-9_.-]", "_", prefix), max_bytes, drop, describe, keep, keys, asks)
    pending: list[pa.RecordBatch] = []
    pending_rows = 0
    try:
        for batch in batches:
            offset = 0
            flag = asking(batch, asks)
            starts = pc.indices_nonzero(flag).to_numpy() if flag is not None else None
            while offset < batch.num_rows:
                if starts is None:
                    take = min(chunk_rows - pending_rows, batch.num_rows - offset)
                    added = take
                else:  # up to the row that would ask one question more than the file holds
                    ahead = starts[starts >= offset]
                    room = chunk_rows - pending_rows
                    stop = int(ahead[room]) if room < len(ahead) else batch.num_rows
                    take, added = stop - offset, min(room, len(ahead))
                if take:
                    pending.append(batch.slice(offset, take))
                pending_rows += added
                offset += take
                # a file ends where the next question begins: the rows sharing the last one may be in the next batch
                if pending_rows >= chunk_rows and (starts is None or offset < batch.num_rows):
                    yield from writer.write(pa.Table.from_batches(pending))
                    pending, pending_rows = [], 0
        if pending:
            yield from writer.write(pa.Table.from_batches(pending))
    finally:
        writer.close()


def head_chunk(chunk: ChunkFile, rows: int) -> ChunkFile:
    """A new file holding the first ``rows`` rows of ``chunk`` (one JSON object per line), beside it.

    Used when only part of a file fits the budget: the rest is not sent.
    """
    if not 0 < rows < chunk.rows:
        raise ValueError(f"head_chunk: rows must be between 1 and {chunk.rows - 1}")
    tmp = chunk.path.with_name(f".{chunk.path.stem}-head-{uuid.uuid4().hex[:8]}.jsonl.part")
    try:
        with chunk.path.open("rb") as src, tmp.open("wb") as out:
            for _ in range(rows):
                line = src.readline()
                if not line:
                    raise ValueError(f"{chunk.path.name} has fewer than {rows} lines")
                out.write(line)
        digest = file_sha256(tmp)
        final = chunk.path.with_name(f"{chunk.path.stem.rsplit('-', 1)[0]}-{digest[:16]}.jsonl")
        os.replace(tmp, final)
    finally:
        tmp.unlink(missing_ok=True)
    kept = chunk.kept.slice(0, split_at_questions(chunk.kept, rows, ASKS)) if chunk.kept is not None else None
    return ChunkFile(final, rows, final.stat().st_size, digest, _derived(chunk.meta), kept)


def tail_chunk(chunk: ChunkFile, skip: int) -> ChunkFile:
    """A new file holding the rows of ``chunk`` after the first ``skip``, beside it."""
    if not 0 < skip < chunk.rows:
        raise ValueError(f"tail_chunk: skip must be between 1 and {chunk.rows - 1}")
    tmp = chunk.path.with_name(f".{chunk.path.stem}-tail-{uuid.uuid4().hex[:8]}.jsonl.part")
    try:
        with chunk.path.open("rb") as src, tmp.open("wb") as out:
            for _ in range(skip):
                src.readline()
            while block := src.read(_HASH_BLOCK):
                out.write(block)
        digest = file_sha256(tmp)
        final = chunk.path.with_name(f"{chunk.path.stem.rsplit('-', 1)[0]}-{digest[:16]}.jsonl")
        os.replace(tmp, final)
    finally:
        tmp.unlink(missing_ok=True)
    kept = chunk.kept.slice(split_at_questions(chunk.kept, skip, ASKS)) if chunk.kept is not None else None
    return ChunkFile(final, chunk.rows - skip, final.stat().st_size, digest, _derived(chunk.meta), kept)


def _derived(meta: Mapping[str, Any]) -> dict[str, Any]:
    """A part of a file gets its own job: the row keys written for the whole file are not its keys."""
    return {k: v for k, v in meta.items() if k != "job_id"}
