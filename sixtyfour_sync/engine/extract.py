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
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from sixtyfour_sync.engine.files import ChunkFile, write_chunks
from sixtyfour_sync.engine.select import (
    DELIBERATE,
    HASH_COLUMN,
    KEY_HASH_COLUMN,
    REASON_COLUMN,
    Selection,
    rebuild_sql,
)
from sixtyfour_sync.warehouse.base import Adapter

__all__ = ["Producer", "denormalize", "rebuild_file"]


def denormalize(adapter: Adapter, batch: pa.RecordBatch) -> pa.RecordBatch:
    """A batch with the column names as the sync spells them (``LEAD_ID`` -> ``lead_id`` on Snowflake)."""
    names = [adapter.denormalize_identifier(n) for n in batch.schema.names]
    if names == batch.schema.names:
        return batch
    return pa.RecordBatch.from_arrays(batch.columns, names=names)


def _describe(table: pa.Table) -> dict[str, Any]:
    counts = {str(i["values"]): int(i["counts"]) for i in pc.value_counts(table[REASON_COLUMN]).to_pylist()}
    return {"reasons": counts, "deliberate": any(r in DELIBERATE for r in counts)}


class Producer:
    """Streams a selection into files on a thread; the owner takes them from :attr:`events`.

    Events are ``("file", ChunkFile)``, ``("producer_error", exception)`` and ``("producer_done", None)``.
    Each file holds a slot until :meth:`release` is called for it (when the API has answered), so extraction
    runs at most ``files_ahead`` files ahead.
    """

    def __init__(
        self,
        *,
        adapter_factory: Callable[[], Adapter],
        selection: Selection,
        out_dir: Path,
        prefix: str,
        chunk_rows: int,
        batch_rows: int,
        files_ahead: int,
        events: queue.Queue[tuple[str, Any]],
        owns_adapter: bool,
    ) -> None:
        self._factory = adapter_factory
        self._selection = selection
        self._out_dir = out_dir
        self._prefix = prefix
        self._chunk_rows = chunk_rows
        self._batch_rows = batch_rows
        self._events = events
        self._owns_adapter = owns_adapter
        self._slots = threading.Semaphore(max(1, files_ahead))
        self._stop = threading.Event()
        self.done = False
        self.rows_read = 0
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
        sel = self._selection
        for batch in adapter.stream(sel.sql, list(sel.params), batch_rows=self._batch_rows):
            if self._stop.is_set():
                return
            self.rows_read += batch.num_rows
            yield denormalize(adapter, batch)

    def _run(self) -> None:
        adapter = self._factory()
        try:
            keep = [*self._selection.key, KEY_HASH_COLUMN, HASH_COLUMN]
            for chunk in write_chunks(
                self._batches(adapter),
                out_dir=self._out_dir,
                prefix=self._prefix,
                chunk_rows=self._chunk_rows,
                drop=[REASON_COLUMN, KEY_HASH_COLUMN],
                describe=_describe,
                keep=keep,
            ):
                while not self._slots.acquire(timeout=0.5):
                    if self._stop.is_set():
                        chunk.path.unlink(missing_ok=True)
                        return
                if self._stop.is_set():
                    self._slots.release()
                    chunk.path.unlink(missing_ok=True)
                    return
                self._events.put(("file", chunk))
        except BaseException as exc:  # reported to the main thread, which decides
            self._events.put(("producer_error", exc))
        finally:
            if self._owns_adapter:
                adapter.close()
            self._events.put(("producer_done", None))


def rebuild_file(
    adapter: Adapter,
    selection: Selection,
    key_hashes_sql: str,
    params: list[Any],
    *,
    out_dir: Path,
    prefix: str,
) -> ChunkFile | None:
    """Rebuild a lost file from the source rows whose key hashes the ledger kept; None when none are left."""
    sql = rebuild_sql(adapter, selection, key_hashes_sql)
    batches = (denormalize(adapter, b) for b in adapter.stream(sql, params))
    keep = [*selection.key, KEY_HASH_COLUMN, HASH_COLUMN]
    files = list(
        write_chunks(
            batches,
            out_dir=out_dir,
            prefix=prefix,
            chunk_rows=10**9,
            drop=[KEY_HASH_COLUMN],
            keep=keep,
        )
    )
    if not files:
        return None
    if len(files) > 1:  # cannot happen below the 100 MB limit the original file kept; refuse rather than guess
        for f in files:
            f.path.unlink(missing_ok=True)
        raise ValueError("the rebuilt file would exceed the API's file size limit")
    return files[0]
