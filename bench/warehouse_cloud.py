"""BigQuery and Databricks adapters next to the raw load + MERGE, each on its local emulator.

    python bench/warehouse_cloud.py --rows 1000000 --backends bigquery,databricks

Same data as bench/warehouse.py (a source, an N-row target with a column the sync does not own, N enriched
rows with shuffled keys and ten owned columns). For each backend:

- ``upsert``: ``adapter.upsert()`` of the N enriched rows into the N-row target (its staging, one MERGE,
  the staging table dropped).
- ``raw upsert``: the hand-written minimum on the same emulator. BigQuery: one Parquet load job into a
  staging table + one ``MERGE`` with the same columns. Databricks: minilake runs SQL on DuckDB in its own
  process, so its floor is ``CREATE TABLE ... AS SELECT * FROM read_parquet('<local file>')`` + the same
  ``MERGE`` (a real workspace would read a Volume instead).
- ``extract``: ``adapter.stream()`` of the N-row source to the end; ``raw extract``: the client's own read
  (BigQuery ``query().result().to_arrow()``; Databricks one EXTERNAL_LINKS ARROW_STREAM statement whose
  chunks are downloaded and read, no casting).

The emulators, not the adapters, set most of these numbers (bqemulator translates SQL with SQLGlot and
keeps results as JSON pages; minilake builds Python lists of every result row). Times are wall-clock
seconds of one run after a warm-up of the same step on 1% of the rows; the emulator runs in its own process.
"""

from __future__ import annotations

import argparse
import io
import json
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve()
#: --databricks-values: stage Databricks rows with INSERT ... VALUES (no staging volume).
VALUES_STAGING = "--databricks-values" in sys.argv
sys.path[:0] = [str(HERE.parent), str(HERE.parents[1])]

from warehouse import KEY, OWNED, SRC, TARGET, UNOWNED, generate  # noqa: E402


def _columns() -> tuple[list[Any], list[Any]]:
    from sixtyfour_sync.warehouse import Column, LogicalType

    types = {
        "employee_count": LogicalType.BIGINT,
        "email_confidence": LogicalType.BIGINT,
        "_sixtyfour_enriched_at": LogicalType.TIMESTAMP,
    }
    key = [Column(KEY, LogicalType.BIGINT)]
    return key, [Column(c, types.get(c, LogicalType.TEXT)) for c in OWNED] + [Column(UNOWNED, LogicalType.TEXT)]


@contextmanager
def emulator(backend: str, work: Path) -> Iterator[dict[str, Any]]:
    """The emulator running, and the profile output that points at it (a fresh schema)."""
    from tests import cloud_emulators as ce

    schema = f"bench_{uuid.uuid4().hex[:8]}"
    if backend == "bigquery":
        with ce.serve_bigquery(work) as bq:
            yield {
                "type": "bigquery",
                "method": "anonymous",
                "api_endpoint": bq.url,
                "project": bq.project,
                "dataset": schema,
            }
    else:
        with ce.serve_databricks(work) as dbx:
            yield {
                "type": "databricks",
                "host": dbx.url,
                "http_path": dbx.http_path,
                "token": dbx.token,
                "catalog": "main",
                "schema": schema,
                "staging_volume": None if VALUES_STAGING else ce.STAGING_VOLUME,
                "statement_timeout_seconds": 7200,
                "_emu": dbx,
            }


def _adapter(config: dict[str, Any]) -> Any:
    from sixtyfour_sync.config.profiles import parse_target_config
    from sixtyfour_sync.warehouse import connect

    return connect(parse_target_config({k: v for k, v in config.items() if not k.startswith("_")}))


def load_table(adapter: Any, config: dict[str, Any], name: str, path: Path) -> None:
    """(Re)create ``name`` from a Parquet file (set-up, not timed)."""
    from sixtyfour_sync.warehouse import TableRef

    table = adapter.table_sql(TableRef(name))
    if config["type"] == "bigquery":
        adapter.client().delete_table(adapter._ref(TableRef(name)), not_found_ok=True)
        _bq_create_from_parquet(adapter, name, path)
    else:
        from tests.cloud_emulators import databricks_statement

        databricks_statement(config["_emu"], f"DROP TABLE IF EXISTS {table}")
        databricks_statement(config["_emu"], f"CREATE TABLE {table} AS SELECT * FROM read_parquet('{path}')")


def _bq_create_from_parquet(adapter: Any, name: str, path: Path) -> None:
    import pyarrow.parquet as pq
    from google.cloud import bigquery

    from sixtyfour_sync.warehouse import TableRef
    from sixtyfour_sync.warehouse.bigquery_sql import parquet_ready, stage_schema

    ref = adapter._ref(TableRef(name))
    ready = parquet_ready(pq.read_table(path))
    client = adapter.client()
    client.create_table(bigquery.Table(ref, schema=[bigquery.SchemaField(n, t) for n, t in stage_schema(ready)]))
    buf = io.BytesIO()
    pq.write_table(ready, buf)
    buf.seek(0)
    client.load_table_from_file(buf, ref, job_config=bigquery.LoadJobConfig(source_format="PARQUET")).result()


def _enriched(work: Path, rows: int | None = None) -> Any:
    import pyarrow as pa

    with pa.memory_map(str(work / "enriched.arrow")) as source:
        table = pa.ipc.open_file(source).read_all()
    return table if rows is None else table.slice(0, rows)


def timed(fn: Callable[[], Any]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def adapter_upsert(adapter: Any, data: Any) -> None:
    from sixtyfour_sync.warehouse import TableRef, UpsertPart

    adapter.upsert(TableRef(TARGET), [KEY], [UpsertPart(data, OWNED)])


def raw_upsert(adapter: Any, config: dict[str, Any], data: Any, work: Path) -> None:
    """The minimum: stage by the emulator's fastest path, then one MERGE of the same columns."""
    import pyarrow.parquet as pq

    from sixtyfour_sync.warehouse import TableRef

    q = adapter.quote
    stage = f"raw_stage_{uuid.uuid4().hex[:8]}"
    target, source = adapter.table_sql(TableRef(TARGET)), adapter.table_sql(TableRef(stage))
    sets = ", ".join(f"{q(c)} = s.{q(c)}" for c in OWNED)
    names = ", ".join(q(c) for c in [KEY, *OWNED])
    merge = (
        f"MERGE INTO {target} AS t USING {source} AS s ON t.{q(KEY)} = s.{q(KEY)} WHEN MATCHED THEN UPDATE SET "
        f"{sets} WHEN NOT MATCHED THEN INSERT ({names}) VALUES ({', '.join('s.' + q(c) for c in [KEY, *OWNED])})"
    )
    path = work / f"{stage}.parquet"
    if config["type"] == "bigquery":
        from google.cloud import bigquery

        from sixtyfour_sync.warehouse.bigquery_sql import parquet_ready, stage_schema

        client = adapter.client()
        ready = parquet_ready(data)
        ref = adapter._ref(TableRef(stage))
        client.create_table(bigquery.Table(ref, schema=[bigquery.SchemaField(n, t) for n, t in stage_schema(ready)]))
        pq.write_table(ready, path)
        with path.open("rb") as fh:
            client.load_table_from_file(fh, ref, job_config=bigquery.LoadJobConfig(source_format="PARQUET")).result()
        client.query(merge).result()
        client.delete_table(ref)
    else:
        from tests.cloud_emulators import databricks_statement

        pq.write_table(data, path)
        emu = config["_emu"]
        databricks_statement(emu, f"CREATE TABLE {source} AS SELECT * FROM read_parquet('{path}')")
        databricks_statement(emu, merge)
        databricks_statement(emu, f"DROP TABLE {source}")
    path.unlink()


def adapter_extract(adapter: Any) -> int:
    from sixtyfour_sync.warehouse import TableRef

    return sum(b.num_rows for b in adapter.stream(adapter.source_sql(table=TableRef(SRC)), batch_rows=100_000))


def raw_extract(adapter: Any, config: dict[str, Any]) -> int:
    import httpx
    import pyarrow as pa

    from sixtyfour_sync.warehouse import TableRef

    sql = f"SELECT * FROM {adapter.table_sql(TableRef(SRC))}"
    if config["type"] == "bigquery":
        return int(
            adapter.client().query(sql).result(page_size=100_000).to_arrow(create_bqstorage_client=False).num_rows
        )
    from databricks.sdk.service.sql import Disposition, Format

    api = adapter.client().statement_execution
    r = api.execute_statement(
        statement=sql,
        warehouse_id=adapter.cfg.warehouse_id,
        wait_timeout="50s",
        disposition=Disposition.EXTERNAL_LINKS,
        format=Format.ARROW_STREAM,
    )
    n, result = 0, r.result
    while result is not None:
        nxt = None
        for link in result.external_links or []:
            n += pa.ipc.open_stream(httpx.get(link.external_link, timeout=600).content).read_all().num_rows
            nxt = link.next_chunk_index
        result = None if nxt is None else api.get_statement_result_chunk_n(r.statement_id, nxt)
    return n


def run_backend(backend: str, rows: int, work: Path) -> dict[str, float]:
    from sixtyfour_sync.warehouse import TableRef

    out: dict[str, float] = {}
    with emulator(backend, work) as config:
        adapter = _adapter(config)
        try:
            adapter.ensure_schema(config.get("dataset") or config["schema"])
            load_table(adapter, config, SRC, work / "source.parquet")
            warm = max(1, rows // 100)
            for step, fn in (
                ("upsert", lambda d: adapter_upsert(adapter, d)),
                ("raw_upsert", lambda d: raw_upsert(adapter, config, d, work)),
            ):
                load_table(adapter, config, TARGET, work / "target.parquet")
                fn(_enriched(work, warm))
                load_table(adapter, config, TARGET, work / "target.parquet")
                data = _enriched(work)
                out[step] = timed(lambda: fn(data))  # noqa: B023 - called right here
                print(f"{backend} {step}: {out[step]:.1f} s", flush=True)
            out["extract"] = timed(lambda: adapter_extract(adapter))
            print(f"{backend} extract: {out['extract']:.1f} s", flush=True)
            out["raw_extract"] = timed(lambda: raw_extract(adapter, config))
            print(f"{backend} raw_extract: {out['raw_extract']:.1f} s", flush=True)
            with adapter.session() as s:
                count = s.fetchall(f"SELECT COUNT(*) FROM {adapter.table_sql(TableRef(TARGET))}")[0][0]
            assert int(count) == rows, count
        finally:
            adapter.close()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--backends", default="bigquery,databricks")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    parser.add_argument("--databricks-values", action="store_true", help="no staging volume: INSERT ... VALUES")
    args = parser.parse_args()
    results: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory(prefix="bench-cloud-") as tmp:
        work = Path(tmp)
        generate(work, args.rows)
        for backend in args.backends.split(","):
            results[backend] = run_backend(backend.strip(), args.rows, work)
    if args.json:
        print(json.dumps({"rows": args.rows, "results": results}, indent=2))
    else:
        print(
            f"\n{args.rows:,} rows   "
            + "   ".join(f"{s:>11}" for s in ("upsert", "raw_upsert", "extract", "raw_extract"))
        )
        for backend, r in results.items():
            print(
                f"{backend:<12}"
                + "   ".join(f"{r[s]:>10.1f}s" for s in ("upsert", "raw_upsert", "extract", "raw_extract"))
            )


if __name__ == "__main__":
    main()
