"""``plan --preview N``: the first file a run would send, written locally, without an API call.

The preview is built by the code a run uses: the same selection (read in the same buckets), the same rows
left out (NULL or duplicated keys, rows an unfinished or held job still owns), the same JSONL writer and the
same ``config`` object. Only the number of rows differs: the first ``N`` rows the run would send.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa

from sixtyfour_sync.engine.rows.extract import NOT_SENT, Questions, ScanStats, denormalize
from sixtyfour_sync.engine.rows.files import write_chunks
from sixtyfour_sync.engine.rows.select import ASKS_COLUMN, Selection, drop_held
from sixtyfour_sync.warehouse.adapter import Adapter

__all__ = ["Preview", "write_preview"]


@dataclass(frozen=True)
class Preview:
    """The files of one sync's preview."""

    rows_file: Path
    config_file: Path
    rows: int
    bytes: int

    def to_dict(self) -> dict[str, object]:
        """Paths and sizes, as JSON output and run artifacts carry them."""
        return {"rows_file": str(self.rows_file), "config_file": str(self.config_file), "rows": self.rows,
                "bytes": self.bytes}  # fmt: skip


def _first_rows(
    adapter: Adapter, selections: Iterator[Selection], key: tuple[str, ...], held: pa.Array | None, rows: int
) -> Iterator[pa.RecordBatch]:
    stats = ScanStats(key)
    questions = Questions()
    left = rows
    for sel in selections:
        for raw in adapter.stream(sel.sql, list(sel.params)):
            batch = drop_held(stats.skip_repeated(stats.skip_bad_keys(denormalize(adapter, raw))), held)
            # one row per question, as a run sends them (the rows sharing a question are in no file)
            batch = questions.pair(batch)
            batch = batch.filter(batch.column(ASKS_COLUMN)).slice(0, left)
            if batch.num_rows:
                yield batch
                left -= batch.num_rows
            if left <= 0:
                return


def write_preview(
    adapter: Adapter,
    selections: Callable[[], Iterator[Selection]],
    *,
    key: tuple[str, ...],
    config: dict[str, object],
    rows: int,
    out_dir: Path,
    held: pa.Array | None = None,
) -> Preview:
    """Write ``rows.jsonl`` (the first ``rows`` rows a run would send) and ``config.json`` under ``out_dir``.

    ``selections`` yields the run's selections in the order it reads them (its buckets); reading stops as soon
    as ``rows`` rows are written. The directory is replaced whole, so an older preview never lingers.
    """
    if rows < 1:
        raise ValueError("--preview needs at least one row")
    tmp = out_dir.with_name(f".{out_dir.name}.part")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        chunks = list(
            write_chunks(
                _first_rows(adapter, selections(), key, held, rows),
                out_dir=tmp,
                prefix="rows",
                chunk_rows=rows,
                drop=NOT_SENT,
                keys=key,
            )
        )
        rows_file = tmp / "rows.jsonl"
        if chunks:
            # a preview of more rows than one file holds under the size limit still shows what is sent, in order
            with rows_file.open("wb") as out:
                for c in chunks:
                    with c.path.open("rb") as src:
                        shutil.copyfileobj(src, out)
                    c.path.unlink()
        else:
            rows_file.touch()
        (tmp / "config.json").write_text(json.dumps(config, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        shutil.rmtree(out_dir, ignore_errors=True)
        os.replace(tmp, out_dir)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    final = out_dir / "rows.jsonl"
    return Preview(final, out_dir / "config.json", sum(c.rows for c in chunks), final.stat().st_size)
