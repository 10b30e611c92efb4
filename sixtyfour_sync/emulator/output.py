"""A completed job's result files, generated a slice at a time and written as CSV while generated.

Three stage outputs (docs/emulator.md): block 1 the upload as received, block 2 the enriched columns
alone, block 3 the final output (uploaded columns, struct fields, confidences), in one file or split into
``job.result_parts`` files of about equal rows. Memory holds one slice of rows (``SLICE_ROWS``), never the
whole file: the parsed upload is read batch by batch from its Arrow IPC file and each slice's CSV is
written before the next one is generated (into the part files in turn, one open at a time).

Test controls change the final output: columns dropped from it (``dropped_columns``) or the bytes of a
part replaced (``corrupted``); either also changes or removes the inline preview (of that part).
"""

from __future__ import annotations

from collections.abc import Collection, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.csv as pacsv

from sixtyfour_sync.emulator.answers import AnswerErrors
from sixtyfour_sync.emulator.generate import OutputPlan, generate_table, make_plan, parse_struct, preview_value
from sixtyfour_sync.emulator.models import Job, ResultFile
from sixtyfour_sync.emulator.uploads import iter_parsed

__all__ = ["FINAL_NAME", "SLICE_ROWS", "OutputOptions", "part_name", "part_sizes", "produce_outputs"]

#: Rows generated at a time: bounds the generator's temporaries whatever the file size.
SLICE_ROWS = 16_384
#: And bytes of input per slice, for wide rows.
SLICE_BYTES = 16 << 20
_CSV_BOM = b"\xef\xbb\xbf"
CONTENT_TYPES = {"csv": "text/csv", "jsonl": "application/x-ndjson", "json": "application/json"}
#: The final output's file; its other parts are ``block_3_enriched.part1.csv``, ``.part2.csv``...
FINAL_NAME = "block_3_enriched.csv"


def part_name(index: int) -> str:
    """The file name of part ``index`` of the final output."""
    return FINAL_NAME if index == 0 else f"block_3_enriched.part{index}.csv"


def part_sizes(rows: int, parts: int) -> list[int]:
    """Rows per part: about equal, the first ones one larger; more parts than rows leaves the last ones empty."""
    return [rows // parts + (1 if i < rows % parts else 0) for i in range(parts)]


@dataclass(frozen=True)
class OutputOptions:
    """The emulator settings that shape every output."""

    seed: int
    failure_rate: float
    preview_max_rows: int
    #: None: every uploaded column comes back; else only the feeding ones and these carried ones.
    carried: Collection[str] | None = None
    #: Wrong answers against the ground truth (None: the seed's values, as always).
    errors: AnswerErrors | None = None


class _CsvSink:
    """A CSV file written batch by batch: UTF-8 BOM, header once, every text value quoted."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._file = pa.OSFile(str(path), "wb")
        self._file.write(_CSV_BOM)
        self._writer: pacsv.CSVWriter | None = None
        self.schema: pa.Schema | None = None
        self.rows = 0

    def write(self, table: pa.Table) -> None:
        if self._writer is None:
            self.schema = table.schema
            self._writer = pacsv.CSVWriter(self._file, table.schema)
        elif table.schema != self.schema:
            table = table.cast(self.schema)
        self._writer.write_table(table)
        self.rows += table.num_rows

    def close(self, schema: pa.Schema) -> None:
        if self._writer is None:  # no rows at all: still a header
            self._writer = pacsv.CSVWriter(self._file, schema)
        self._writer.close()
        self._file.close()


class _PartSinks:
    """The final output split into files of planned sizes, filled in turn with one file open at a time.

    The last part takes any rows beyond the plan; a part given no rows is still a CSV with a header.
    """

    def __init__(self, paths: list[Path], sizes: list[int], schema: pa.Schema, *, keep: bool) -> None:
        self.paths = paths
        self._sizes = sizes
        self._schema = schema
        self.rows = [0] * len(paths)
        #: The slices written to each part, when ``keep`` (for the inline previews).
        self.pieces: list[list[pa.Table]] = [[] for _ in paths]
        self._keep = keep
        self._index = 0
        self._sink: _CsvSink | None = None

    def write(self, table: pa.Table) -> None:
        offset = 0
        while offset < table.num_rows:
            i = self._index
            left = table.num_rows - offset
            room = left if i == len(self.paths) - 1 else min(left, self._sizes[i] - self.rows[i])
            if room <= 0:
                self._next()
                continue
            piece = table.slice(offset, room)
            if self._sink is None:
                self._sink = _CsvSink(self.paths[i])
            self._sink.write(piece)
            self.rows[i] += room
            if self._keep:
                self.pieces[i].append(piece)
            offset += room

    def _next(self) -> None:
        sink = self._sink or _CsvSink(self.paths[self._index])
        self._sink = None
        sink.close(self._schema)
        self._index += 1

    def close(self) -> None:
        """Close the open part and write the ones not reached yet (header only)."""
        while self._index < len(self.paths):
            self._next()


def _slices(path: Path) -> Iterator[pa.Table]:
    """The parsed upload in tables of about SLICE_ROWS rows (or SLICE_BYTES bytes)."""
    pending: list[pa.RecordBatch] = []
    rows = size = 0
    for batch in iter_parsed(path):
        pending.append(batch)
        rows += batch.num_rows
        size += batch.nbytes
        if rows >= SLICE_ROWS or size >= SLICE_BYTES:
            yield pa.Table.from_batches(pending)
            pending, rows, size = [], 0, 0
    if pending:
        yield pa.Table.from_batches(pending)


def _plan(job: Job, columns: Sequence[str], options: OutputOptions) -> OutputPlan:
    config = job.config
    return make_plan(
        columns,
        config.get("struct"),
        endpoint=job.endpoint,
        field_confidence=bool(config.get("field_confidence", False)),
        columns=config.get("columns"),
        carried=options.carried,
    )


def produce_outputs(job: Job, options: OutputOptions, now: float) -> tuple[list[ResultFile], int]:
    """Write the job's result files under its directory; return them and how many rows failed."""
    job_dir = job.upload_path.parent
    parsed = job_dir / "parsed.arrow"
    with pa.OSFile(str(parsed), "rb") as source:
        schema = pa.ipc.open_file(source).schema
    plan = _plan(job, schema.names, options)
    struct_names = [s.name for s in plan.specs]
    dropped = set(job.dropped_columns)
    empty = generate_table(
        plan, schema.empty_table(), seed=options.seed, failure_rate=options.failure_rate, errors=options.errors
    )[0]
    parts = max(1, job.result_parts)
    for stale in job_dir.glob("block_3_enriched.part*.csv"):  # from an earlier split into more parts
        stale.unlink(missing_ok=True)
    research = _CsvSink(job_dir / "block_2_research.csv")
    want_preview = job.row_count <= options.preview_max_rows
    final = _PartSinks(
        [job_dir / part_name(i) for i in range(parts)],
        part_sizes(job.row_count, parts),
        empty.drop_columns([c for c in empty.column_names if c in dropped]).schema,
        keep=want_preview,
    )
    failed_rows = 0
    try:
        for table in _slices(parsed):
            out, failed = generate_table(
                plan, table, seed=options.seed, failure_rate=options.failure_rate, errors=options.errors
            )
            failed_rows += failed
            research.write(out.select(struct_names))
            if dropped:
                out = out.drop_columns([c for c in out.column_names if c in dropped])
            final.write(out)
    finally:
        research.close(empty.select(struct_names).schema)
        final.close()
    for index, data in job.corrupted.items():
        if index < parts:
            final.paths[index].write_bytes(data)
    files = [
        ResultFile(
            1,
            f"block_1_input{job.upload_path.suffix}",
            job.upload_path,
            job.row_count,
            CONTENT_TYPES[job.upload_format],
            now,
        ),
        ResultFile(2, research.path.name, research.path, research.rows, "text/csv", now),
    ]
    for index, path in enumerate(final.paths):
        part = ResultFile(3, path.name, path, final.rows[index], "text/csv", now, part=index)
        if want_preview and index not in job.corrupted:
            part.preview = _preview(plan, final.pieces[index])
        files.append(part)
    for f in files:
        f.file_size = f.path.stat().st_size
    return files, failed_rows


def _preview(plan: OutputPlan, tables: list[pa.Table]) -> list[dict[str, Any]]:
    kinds = {s.name: s.kind for s in plan.specs}
    rows: list[dict[str, Any]] = []
    for table in tables:
        rows.extend({k: preview_value(kinds.get(k, "str"), v) for k, v in row.items()} for row in table.to_pylist())
    return rows


def struct_field_names(job: Job) -> list[str]:
    """The struct fields of a job's config (people without a struct get the defaults)."""
    return [f.name for f in parse_struct(job.config.get("struct"), job.endpoint)]
