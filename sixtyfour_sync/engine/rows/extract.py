"""Reading rows out of the warehouse into the files that are submitted.

- :class:`Producer`: a thread that streams a selection from its own connection and writes JSONL files, at
  most ``files_ahead`` files ahead of the submissions, so memory and disk stay bounded whatever the source
  size. Each file keeps in memory what the merge needs later (key, key hash, input hash).
- :func:`rebuild_file`: a file whose local copy is gone (a crash, then a resume on another machine or with a
  cleaned work directory) is rebuilt from the source by the key hashes the ledger kept, in the same order,
  so an unchanged source gives the same bytes and the job is resent with its stored Idempotency-Key.
"""

from __future__ import annotations

import queue
import threading
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from sixtyfour_sync.engine.events import Event, FileWritten, ProducerDone, ProducerFailed, RowsScanned
from sixtyfour_sync.engine.rows.files import ChunkFile, write_chunks
from sixtyfour_sync.engine.rows.select import (
    ASKS_COLUMN,
    DELIBERATE,
    EXISTS_COLUMN,
    HASH_COLUMN,
    KEY_HASH_COLUMN,
    KEY_ROWS_COLUMN,
    REASON_COLUMN,
    Selection,
    drop_held,
    keep_keys,
    rebuild_sql,
)
from sixtyfour_sync.warehouse.adapter import Adapter
from sixtyfour_sync.warehouse.types import KeyReport

__all__ = [
    "NOT_SENT",
    "Producer",
    "Questions",
    "ScanStats",
    "denormalize",
    "first_of_each_question",
    "mark_duplicated",
    "missing_key",
    "rebuild_file",
]

#: Columns of the selection that travel with each row but are not written to the submitted file.
NOT_SENT = (REASON_COLUMN, KEY_HASH_COLUMN, KEY_ROWS_COLUMN, EXISTS_COLUMN, ASKS_COLUMN)


@dataclass
class Questions:
    """Says which rows ask their question: the first of each run of rows with the same input hash.

    The selection puts the rows sharing their inputs together, in key order (engine/rows/select.py), so the
    first of them that is sent (its key is good, no job holds it) asks for them all, and the others follow it
    into the same file. The runs continue across batches.
    """

    #: The input hash of the last row read (across batches).
    last: str | None = None
    #: Rows answered by another row's question (kept with the file, not written to it).
    followers: int = 0

    def pair(self, batch: pa.RecordBatch) -> pa.RecordBatch:
        """``batch`` with :data:`ASKS_COLUMN`: true where a row's input hash differs from the row's before it."""
        if batch.num_rows == 0:
            return batch.append_column(ASKS_COLUMN, pa.array([], pa.bool_()))
        hashes = batch.column(HASH_COLUMN).cast(pa.string())
        previous = pa.concat_arrays([pa.array([self.last], pa.string()), hashes.slice(0, batch.num_rows - 1)])
        asks = pc.invert(pc.equal(hashes, previous).fill_null(False))
        self.last = hashes[batch.num_rows - 1].as_py()
        self.followers += batch.num_rows - int(pc.sum(asks).as_py() or 0)
        return batch.append_column(ASKS_COLUMN, asks)


def mark_duplicated(batch: pa.RecordBatch, duplicated: pa.Array | None) -> pa.RecordBatch:
    """``batch`` with the rows whose key hash is among ``duplicated`` (keys the source holds more than once,
    found over the whole source) counted as such, whatever their bucket counted."""
    if duplicated is None or len(duplicated) == 0 or batch.num_rows == 0:
        return batch
    dup = pc.is_in(batch.column(KEY_HASH_COLUMN).cast(pa.string()), value_set=duplicated)
    if not pc.any(dup).as_py():
        return batch
    i = batch.schema.get_field_index(KEY_ROWS_COLUMN)
    rows = batch.column(i).cast(pa.int64())
    return batch.set_column(i, KEY_ROWS_COLUMN, pc.if_else(dup, pc.max_element_wise(rows, 2), rows))


def first_of_each_question(table: pa.Table) -> pa.Table:
    """``table`` (rows in key order) with :data:`ASKS_COLUMN` true on the first row of each input hash, the rows
    of each question together after it: the order a file was written in, for a rebuilt file."""
    hashes = table.column(HASH_COLUMN).combine_chunks()
    firsts = pc.index_in(pc.unique(hashes), value_set=hashes)
    rank = pc.index_in(hashes, value_set=pc.unique(hashes))  # each row's question, in order of first appearance
    asks = pc.is_in(pa.array(range(table.num_rows), pa.int64()), value_set=firsts.cast(pa.int64()))
    with_flag = table.append_column(ASKS_COLUMN, asks) if ASKS_COLUMN not in table.column_names else table
    order = pc.sort_indices(pa.table({"q": rank, "n": pa.array(range(table.num_rows), pa.int64())}),
                            sort_keys=[("q", "ascending"), ("n", "ascending")])  # fmt: skip
    return with_flag.take(order)


def denormalize(adapter: Adapter, batch: pa.RecordBatch) -> pa.RecordBatch:
    """A batch with the column names as the sync spells them (``LEAD_ID`` -> ``lead_id`` on Snowflake)."""
    names = [adapter.denormalize_identifier(n) for n in batch.schema.names]
    if names == batch.schema.names:
        return batch
    return pa.RecordBatch.from_arrays(batch.columns, names=names)


def missing_key(column: pa.Array | pa.ChunkedArray) -> pa.Array | pa.ChunkedArray:
    """Where a key part is missing: NULL, or a float that no file can carry and no result can tie back (NaN
    and the infinities are written as null); such a row is skipped and counted like one with a NULL key."""
    if pa.types.is_floating(column.type):
        return pc.or_kleene(pc.is_null(column, nan_is_null=True), pc.is_inf(column)).fill_null(True)
    return pc.is_null(column)


def _describe(table: pa.Table) -> dict[str, Any]:
    counts = {str(i["values"]): int(i["counts"]) for i in pc.value_counts(table[REASON_COLUMN]).to_pylist()}
    return {"reasons": counts, "deliberate": any(r in DELIBERATE for r in counts)}


@dataclass
class ScanStats:
    """What one pass over the source found: rows by reason, and the NULL and duplicated keys it skipped."""

    key: tuple[str, ...]
    source_rows: int = 0
    rows_by_reason: dict[str, int] = field(default_factory=dict)
    null_key_rows: int = 0
    duplicate_rows: int = 0
    duplicate_keys: int = 0
    null_samples: list[tuple[Any, ...]] = field(default_factory=list)
    duplicate_samples: dict[tuple[Any, ...], int] = field(default_factory=dict)
    limited: bool = False
    #: Selected rows dropped because the target holds their key more than once (the join repeated them).
    target_repeats: int = 0
    target_repeat_samples: list[tuple[Any, ...]] = field(default_factory=list)
    _last_duplicate: tuple[Any, ...] | None = None
    _last_key_hash: str | None = None

    def skip_bad_keys(self, batch: pa.RecordBatch) -> pa.RecordBatch:
        """``batch`` without its rows of NULL or duplicated keys, which are counted (with a few samples)."""
        nulls = None
        for k in self.key:
            m = missing_key(batch.column(k))
            nulls = m if nulls is None else pc.or_(nulls, m)
        dup = pc.not_equal(batch.column(KEY_ROWS_COLUMN), 1)
        bad = pc.or_(nulls, dup) if nulls is not None else dup
        if not pc.any(bad).as_py():
            return batch
        n_null = int(pc.sum(nulls).as_py() or 0) if nulls is not None else 0
        dups = batch.filter(pc.and_(dup, pc.invert(nulls)) if nulls is not None else dup)
        self.null_key_rows += n_null
        if n_null and len(self.null_samples) < 20:
            sample = batch.filter(nulls).select(list(self.key)).slice(0, 20 - len(self.null_samples))
            self.null_samples.extend(tuple(r.values()) for r in sample.to_pylist())
        if dups.num_rows:
            self.duplicate_rows += dups.num_rows
            keys = pa.Table.from_batches([dups.select(list(self.key))]) if isinstance(dups, pa.RecordBatch) else dups
            groups = keys.group_by(list(self.key)).aggregate([([], "count_all")])
            # The rows of one key are adjacent (the selection is in key order): a key split across two batches
            # is the last key of one and the first of the next, and is counted once.
            for row in groups.to_pylist():
                n = int(row.pop("count_all"))
                values = tuple(row[c] for c in self.key)
                if values in self.duplicate_samples:
                    self.duplicate_samples[values] += n
                elif len(self.duplicate_samples) < 20:
                    self.duplicate_samples[values] = n
                elif values != self._last_duplicate:
                    self.duplicate_keys += 1
            last = dups.slice(dups.num_rows - 1).select(list(self.key)).to_pylist()[0]
            self._last_duplicate = tuple(last[c] for c in self.key)
        return batch.filter(pc.invert(bad))

    def skip_repeated(self, batch: pa.RecordBatch) -> pa.RecordBatch:
        """``batch`` without the repeats of a row whose key the target holds more than once.

        The selection joins the target, so a key a table written by other tools holds twice comes back twice;
        the rows of one key are adjacent (the selection is in key order), so the repeats are the rows whose key
        hash equals the previous row's (across batches too). Each source row is sent once.
        """
        if batch.num_rows == 0:
            return batch
        hashes = batch.column(KEY_HASH_COLUMN)
        previous = pa.concat_arrays([pa.array([self._last_key_hash], hashes.type), hashes.slice(0, batch.num_rows - 1)])
        repeat = pc.fill_null(pc.equal(hashes, previous), False)
        self._last_key_hash = hashes[batch.num_rows - 1].as_py()
        n = int(pc.sum(repeat).as_py() or 0)
        if not n:
            return batch
        self.target_repeats += n
        if len(self.target_repeat_samples) < 5:
            sample = batch.filter(repeat).select(list(self.key)).slice(0, 5 - len(self.target_repeat_samples))
            self.target_repeat_samples.extend(tuple(r.values()) for r in sample.to_pylist())
        return batch.filter(pc.invert(repeat))

    def count(self, batch: pa.RecordBatch) -> None:
        """Count a batch's rows by reason."""
        for item in pc.value_counts(batch.column(REASON_COLUMN)).to_pylist():
            name = str(item["values"])
            self.rows_by_reason[name] = self.rows_by_reason.get(name, 0) + int(item["counts"])

    def report(self) -> KeyReport:
        """The key report of the pass (as :meth:`Adapter.key_report` gives it, without a second scan)."""
        samples = sorted(self.duplicate_samples.items(), key=lambda kv: -kv[1])
        return KeyReport(
            key=self.key,
            total_rows=self.source_rows,
            null_key_rows=self.null_key_rows,
            duplicate_keys=self.duplicate_keys + len(self.duplicate_samples),
            duplicate_rows=self.duplicate_rows,
            null_samples=tuple(self.null_samples),
            duplicate_samples=tuple((k, n) for k, n in samples),
        )


class Producer:
    """Streams a selection into files on a thread; the owner takes them from :attr:`events`.

    Events are ``("file", ChunkFile)``, ``("scanned", rows)``, ``("producer_error", exception)`` and
    ``("producer_done", None)``. Each file holds a slot until :meth:`release` is called for it (when the API
    has answered), so extraction runs at most ``files_ahead`` files ahead. ``selections`` are read one after
    the other (the buckets of a big source), ``limit`` caps the rows sent.
    """

    def __init__(
        self,
        *,
        adapter_factory: Callable[[], Adapter],
        selections: list[Selection],
        out_dir: Path,
        prefix: str,
        chunk_rows: int,
        batch_rows: int,
        files_ahead: int,
        events: queue.Queue[Event],
        owns_adapter: bool,
        stats: ScanStats,
        limit: int | None = None,
        key_writer: Callable[[str, pa.Table], None] | None = None,
        held: pa.Array | None = None,
        read: list[pa.RecordBatch] | None = None,
        duplicated: pa.Array | None = None,
    ) -> None:
        self._factory = adapter_factory
        self._selections = selections
        #: The rows of ``selections`` already read, in key order (a refresh's few rows, engine/runner_submit.py).
        self._read = read
        self._out_dir = out_dir
        self._prefix = prefix
        self._chunk_rows = chunk_rows
        self._batch_rows = batch_rows
        self._events = events
        self._owns_adapter = owns_adapter
        self._slots = threading.Semaphore(max(1, files_ahead))
        self._stop = threading.Event()
        self.stats = stats
        self.questions = Questions()
        self._limit = limit
        self._key_writer = key_writer
        self._held = held
        self._duplicated = duplicated
        self.done = False
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Start reading."""
        self._thread = threading.Thread(target=self._run, name=f"extract-{self._prefix}", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop at the next batch; files not handed over are removed."""
        self._stop.set()

    def release(self) -> None:
        """Give back one file's slot."""
        self._slots.release()

    def join(self, timeout: float = 30.0) -> None:
        """Wait for the thread to end."""
        if self._thread is not None:
            self._thread.join(timeout)

    def _batches(self, adapter: Adapter) -> Iterator[pa.RecordBatch]:
        left = self._limit
        sources: Iterator[Iterator[pa.RecordBatch]] = (
            iter([iter(self._read)])
            if self._read is not None
            else (adapter.stream(sel.sql, list(sel.params), batch_rows=self._batch_rows) for sel in self._selections)
        )
        for source in sources:
            for raw in source:
                if self._stop.is_set():
                    return
                batch = mark_duplicated(denormalize(adapter, raw), self._duplicated)
                batch = self.stats.skip_repeated(self.stats.skip_bad_keys(batch))
                batch = self.questions.pair(drop_held(batch, self._held))
                done = False
                if left is not None:  # the limit counts the rows sent: questions, each with every key it answers
                    starts = pc.indices_nonzero(batch.column(ASKS_COLUMN))
                    if left < len(starts):
                        batch = batch.slice(0, int(starts[left].as_py()))
                        self.stats.limited, done = True, True
                    left -= min(left, len(starts))
                self.stats.count(batch)
                self._events.put(RowsScanned(raw.num_rows))
                if batch.num_rows:
                    yield batch
                if done:
                    return

    def _run(self) -> None:
        adapter = self._factory()
        try:
            keep = [*self._selections[0].key, KEY_HASH_COLUMN, HASH_COLUMN, EXISTS_COLUMN, ASKS_COLUMN]
            for chunk in write_chunks(
                self._batches(adapter),
                out_dir=self._out_dir,
                prefix=self._prefix,
                chunk_rows=self._chunk_rows,
                drop=NOT_SENT,
                describe=_describe,
                keep=keep,
                keys=self._selections[0].key,
                asks=ASKS_COLUMN,
            ):
                while not self._slots.acquire(timeout=0.5):
                    if self._stop.is_set():
                        chunk.path.unlink(missing_ok=True)
                        return
                if self._stop.is_set():
                    self._slots.release()
                    chunk.path.unlink(missing_ok=True)
                    return
                if self._key_writer is not None and chunk.kept is not None:
                    # The file's row keys go to the ledger here, beside the main thread's work; the main
                    # thread records the job (under this id) before sending it.
                    job_id = uuid.uuid4().hex
                    self._key_writer(job_id, chunk.kept.select([KEY_HASH_COLUMN, HASH_COLUMN]))
                    chunk = replace(chunk, meta={**chunk.meta, "job_id": job_id})
                self._events.put(FileWritten(chunk))
        except BaseException as exc:  # reported to the main thread, which decides
            self._events.put(ProducerFailed(exc))
        finally:
            if self._owns_adapter:
                adapter.close()
            self._events.put(ProducerDone())


def rebuild_file(
    adapter: Adapter,
    selection: Selection,
    keys: pa.Array,
    *,
    out_dir: Path,
    prefix: str,
    file_rows: int | None = None,
) -> ChunkFile | None:
    """Rebuild a lost file from the source rows whose key prefixes the ledger kept; None when none are left.

    The ledger keeps every key the job answers: the first of the keys sharing their inputs asked the question
    (in key order, as the selection chose it), the others follow it and are not written. A job whose file held
    as many rows (``file_rows``) as it kept keys had every row ask (a file written before rows sharing their
    inputs were asked once holds them all)."""
    batches = [keep_keys(denormalize(adapter, b), keys) for b in adapter.stream(rebuild_sql(adapter, selection))]
    found = [b for b in batches if b.num_rows]
    if not found:
        return None
    rows = pa.Table.from_batches(found)
    if file_rows is not None and file_rows == len(keys):
        rows = rows.append_column(ASKS_COLUMN, pa.repeat(pa.scalar(True), rows.num_rows))
    else:
        rows = first_of_each_question(rows)
    keep = [*selection.key, KEY_HASH_COLUMN, HASH_COLUMN, ASKS_COLUMN]
    files = list(
        write_chunks(
            rows.to_batches(),
            out_dir=out_dir,
            prefix=prefix,
            chunk_rows=10**9,
            drop=[KEY_HASH_COLUMN],
            keep=keep,
            keys=selection.key,
            asks=ASKS_COLUMN,
        )
    )
    if not files:
        return None
    if len(files) > 1:  # cannot happen below the 100 MB limit the original file kept; refuse rather than guess
        for f in files:
            f.path.unlink(missing_ok=True)
        raise ValueError("the rebuilt file would exceed the API's file size limit")
    return files[0]
