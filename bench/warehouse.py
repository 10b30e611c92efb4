"""Warehouse benchmark: the adapters' extract and upsert next to the raw database operation.

    python bench/warehouse.py --rows 1000000 --backends duckdb,postgres
    python bench/warehouse.py --rows 100000 --backends mariadb,sqlite
    python bench/warehouse.py --rows 1000000 --backends duckdb,postgres --write-docs docs/benchmarks.md

For each backend it measures, each in a fresh subprocess (so ``ru_maxrss`` is that step's peak RSS):

- ``extract``: ``adapter.stream(source_sql)`` -> Arrow batches -> JSONL files of ``--file-rows`` rows
  written by an in-memory DuckDB (``con.register(name, RecordBatchReader)`` + ``COPY ... (FORMAT json)``),
  as the sync engine does. The time inside ``stream()`` and the JSONL time are reported separately.
- ``raw extract``: the database's own fastest export (DuckDB ``COPY (...) TO 'f.jsonl' (FORMAT json)``;
  PostgreSQL ``COPY (...) TO STDOUT (FORMAT csv)`` into a file; MariaDB/SQLite: the driver's cursor read
  to the end, no conversion).
- ``upsert``: ``adapter.upsert()`` of N enriched rows (shuffled keys, 10 owned columns) into an N-row
  target that also has a column the sync does not own.
- ``raw upsert``: the hand-written minimum for the same change (DuckDB ``UPDATE ... FROM`` a registered
  Arrow table; PostgreSQL ``COPY`` into a TEMP table + ``ANALYZE`` + ``SET LOCAL enable_hashjoin = off`` +
  ``UPDATE ... FROM``; MariaDB/SQLite: ``executemany`` into a temporary table + update-join).
- ``upsert guarded``: the same upsert with ``email`` and ``email_confidence`` guarded (written only where a
  staged flag is true - 3 rows in 4 - and the stored confidence is not higher), compared with ``upsert``.
- ``insert only``: the enriched rows into an empty target with ``UpsertPart(insert_only=True)``, compared
  with ``insert``, the plain upsert of the same rows into the same empty target.

Setup (data generation, loading, resetting the target before each upsert) is never timed. Results are
medians over ``--repeat`` runs; ``--json`` prints them machine-readably.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve()
SRC = "src_leads"
TARGET = "leads_enriched"
KEY = "lead_id"
SOURCE_COLUMNS = ["first_name", "last_name", "company", "domain", "country", "score", "created_at"]
OWNED = [
    "email",
    "title",
    "linkedin",
    "employee_count",
    "email_confidence",
    "_sixtyfour_status",
    "_sixtyfour_enriched_at",
    "_sixtyfour_task_id",
    "_sixtyfour_input_hash",
    "_sixtyfour_spec_hash",
]
UNOWNED = "owner_note"
PG = {"host": "127.0.0.1", "port": 5432, "user": "postgres", "dbname": "test"}
MARIADB = {"host": "127.0.0.1", "port": 3306, "user": "root", "password": ""}
OPS = ["idle", "extract", "raw_extract", "upsert", "raw_upsert", "upsert_guarded", "insert", "insert_only"]
#: Steps that need the full target reset first, and those that need it empty.
RESET_FULL = ("upsert", "raw_upsert", "upsert_guarded")
RESET_EMPTY = ("insert", "insert_only")


# ---------------------------------------------------------------------------------------------- data


def generate(workdir: Path, rows: int) -> None:
    """Write source.parquet, target.parquet (old values) and enriched.arrow (new values, shuffled keys)."""
    import duckdb
    import pyarrow as pa

    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    n = int(rows)
    con.execute(
        f"""
        COPY (
          SELECT i AS lead_id, 'first_' || i AS first_name, 'last_' || (i * 7 % 100003) AS last_name,
                 'Company ' || (i % 50000) AS company, 'c' || (i % 50000) || '.example.com' AS domain,
                 ['US', 'GB', 'DE', 'FR'][1 + i % 4] AS country, (i % 1000) / 10.0 AS score,
                 TIMESTAMPTZ '2024-01-01 00:00:00+00' + to_seconds(i) AS created_at
          FROM range(1, {n} + 1) t(i)
        ) TO '{workdir / "source.parquet"}' (FORMAT parquet)
        """
    )
    enriched = """
          SELECT i AS lead_id, 'person' || i || '@c' || (i % 50000) || '.example.com' AS email,
                 ['CEO', 'CTO', 'VP Sales', 'Engineer'][1 + i % 4] || '{suffix}' AS title,
                 'https://linkedin.com/in/p' || i AS linkedin, (i % 5000)::BIGINT AS employee_count,
                 (i % 101)::BIGINT AS email_confidence, 'enriched' AS _sixtyfour_status,
                 TIMESTAMPTZ '{at}' AS _sixtyfour_enriched_at, '{task}' AS _sixtyfour_task_id,
                 md5(i::VARCHAR) AS _sixtyfour_input_hash, 'spec-v1' AS _sixtyfour_spec_hash
          FROM range(1, {n} + 1) t(i)
    """
    old = enriched.format(suffix=" (old)", at="2024-06-01 00:00:00+00", task="task-old", n=n)
    con.execute(
        f"COPY (SELECT *, 'note ' || lead_id AS {UNOWNED} FROM ({old})) "
        f"TO '{workdir / 'target.parquet'}' (FORMAT parquet)"
    )
    new = enriched.format(suffix="", at="2025-01-15 12:00:00+00", task="task-new", n=n)
    # The upsert input as an uncompressed Arrow IPC file, memory-mapped by the measuring process: reading
    # a Parquet file peaks at ~3x the table's size (decompression buffers), which would swamp the
    # adapter's own memory. The table itself (~175 MB for 1M rows) is held, as the engine holds its
    # parsed results.
    table = con.sql(f"SELECT * FROM ({new}) ORDER BY hash(lead_id)").to_arrow_table()
    with pa.OSFile(str(workdir / "enriched.arrow"), "wb") as sink, pa.ipc.new_file(sink, table.schema) as writer:
        writer.write_table(table, max_chunksize=100_000)
    con.close()


# ---------------------------------------------------------------------------------------------- backends


def target_config(backend: str, workdir: Path, name: str) -> dict[str, Any]:
    """The profiles.yml output for a backend (``name``: the schema/database this run owns)."""
    if backend == "duckdb":
        return {"type": "duckdb", "path": str(workdir / "bench.duckdb"), "schema": "main"}
    if backend == "postgres":
        return {"type": "postgres", **PG, "schema": name}
    if backend == "mariadb":
        url = f"mysql+pymysql://{MARIADB['user']}@{MARIADB['host']}:{MARIADB['port']}/{name}"
        return {"type": "sqlalchemy", "url": url, "schema": name}
    if backend == "sqlite":
        return {"type": "sqlalchemy", "url": f"sqlite:///{workdir / 'bench.sqlite'}"}
    raise SystemExit(f"unknown backend {backend!r}; choose from duckdb, postgres, mariadb, sqlite")


def open_adapter(backend: str, workdir: Path, name: str) -> Any:
    from sixtyfour_sync.config.profiles import parse_target_config
    from sixtyfour_sync.warehouse import connect

    return connect(parse_target_config(target_config(backend, workdir, name)))


def _columns() -> tuple[list[Any], list[Any]]:
    from sixtyfour_sync.warehouse import Column, LogicalType

    types = {
        "employee_count": LogicalType.BIGINT,
        "email_confidence": LogicalType.BIGINT,
        "_sixtyfour_enriched_at": LogicalType.TIMESTAMP,
    }
    key = [Column(KEY, LogicalType.BIGINT)]
    cols = [Column(c, types.get(c, LogicalType.TEXT)) for c in OWNED] + [Column(UNOWNED, LogicalType.TEXT)]
    return key, cols


def _pg_connect() -> Any:
    import psycopg

    return psycopg.connect(host=PG["host"], port=PG["port"], user=PG["user"], dbname=PG["dbname"], autocommit=False)


def _pg_copy_parquet(cur: Any, table_sql: str, path: Path, columns: list[str]) -> None:
    import io

    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    cols = ", ".join(f'"{c}"' for c in columns)
    with cur.copy(f"COPY {table_sql} ({cols}) FROM STDIN (FORMAT csv)") as copy:
        for batch in pq.ParquetFile(path).iter_batches(batch_size=100_000, columns=columns):
            out = io.BytesIO()
            pacsv.write_csv(batch, out, pacsv.WriteOptions(include_header=False))
            copy.write(out.getvalue())


def _mysql_root(database: str | None = None) -> Any:
    import pymysql

    return pymysql.connect(**MARIADB, database=database, autocommit=True, local_infile=True)


def load(backend: str, workdir: Path, name: str, *, target_only: bool = False, empty: bool = False) -> None:
    """(Re)create the source and target tables in the backend (not timed)."""
    import pyarrow.parquet as pq

    from sixtyfour_sync.warehouse import TableRef

    if backend == "mariadb" and not target_only:
        root = _mysql_root()
        with root.cursor() as cur:
            cur.execute(f"DROP DATABASE IF EXISTS `{name}`")
            cur.execute(f"CREATE DATABASE `{name}`")
        root.close()
    adapter = open_adapter(backend, workdir, name)
    try:
        if backend == "postgres" and not target_only:
            adapter.ensure_schema(name)
        key, cols = _columns()
        tgt = TableRef(TARGET)
        src = TableRef(SRC)
        with adapter.session() as s:
            s.execute(f"DROP TABLE IF EXISTS {adapter.table_sql(tgt)}")
        adapter.ensure_table(tgt, key, cols)
        if not target_only:
            from sixtyfour_sync.warehouse import Column, LogicalType

            src_cols = [Column(c, LogicalType.TEXT) for c in SOURCE_COLUMNS]
            src_cols[5] = Column("score", LogicalType.DOUBLE)
            src_cols[6] = Column("created_at", LogicalType.TIMESTAMP)
            with adapter.session() as s:
                s.execute(f"DROP TABLE IF EXISTS {adapter.table_sql(src)}")
            adapter.ensure_table(src, [Column(KEY, LogicalType.BIGINT)], src_cols)
        tables = [] if empty else [(tgt, workdir / "target.parquet")]
        if not target_only:
            tables.append((src, workdir / "source.parquet"))
        for table, path in tables:
            columns = pq.ParquetFile(path).schema_arrow.names
            if backend == "duckdb":
                with adapter.session() as s:
                    s.execute(
                        f"INSERT INTO {adapter.table_sql(table)} ({', '.join(columns)}) "
                        f"SELECT {', '.join(columns)} FROM read_parquet('{path}')"
                    )
            elif backend == "postgres":
                with _pg_connect() as conn, conn.cursor() as cur:
                    _pg_copy_parquet(cur, adapter.table_sql(table), path, columns)
                    conn.commit()
                    conn.autocommit = True
                    cur.execute(f"VACUUM ANALYZE {adapter.table_sql(table)}")
            elif backend == "mariadb":
                import duckdb

                csv_path = workdir / f"{table.name}.csv"
                ts = "_sixtyfour_enriched_at" if table.name == TARGET else "created_at"
                duckdb.sql(
                    f"COPY (SELECT * REPLACE (strftime(timezone('UTC', {ts}), '%Y-%m-%d %H:%M:%S') AS {ts}) "
                    f"FROM read_parquet('{path}')) TO '{csv_path}' (FORMAT csv, HEADER false)"
                )
                root = _mysql_root(name)
                with root.cursor() as cur:
                    cur.execute(
                        f"LOAD DATA LOCAL INFILE '{csv_path}' INTO TABLE `{table.name}` "
                        f"FIELDS TERMINATED BY ',' OPTIONALLY ENCLOSED BY '\"' ({', '.join(columns)})"
                    )
                root.close()
                csv_path.unlink()
            elif backend == "sqlite":
                import sqlite3

                db = sqlite3.connect(workdir / "bench.sqlite")
                marks = ", ".join("?" for _ in columns)
                ts = "_sixtyfour_enriched_at" if table.name == TARGET else "created_at"
                for batch in pq.ParquetFile(path).iter_batches(batch_size=100_000, columns=columns):
                    cols = []
                    for c in columns:
                        arr = batch.column(c)
                        if c == ts:
                            cols.append([v.strftime("%Y-%m-%d %H:%M:%S.%f") + "+00:00" for v in arr.to_pylist()])
                        else:
                            cols.append(arr.to_pylist())
                    db.executemany(
                        f'INSERT INTO "{table.name}" ({", ".join(columns)}) VALUES ({marks})',
                        list(zip(*cols, strict=True)),
                    )
                db.commit()
                db.close()
    finally:
        adapter.close()


def cleanup(backend: str, workdir: Path, name: str) -> None:
    """Drop what this run created in shared servers."""
    if backend == "postgres":
        with _pg_connect() as conn, conn.cursor() as cur:
            cur.execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')
            conn.commit()
    elif backend == "mariadb":
        root = _mysql_root()
        with root.cursor() as cur:
            cur.execute(f"DROP DATABASE IF EXISTS `{name}`")
        root.close()


# ---------------------------------------------------------------------------------------------- measurements


def _timed(fn: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    t0 = time.perf_counter()
    detail = fn()
    seconds = time.perf_counter() - t0
    return {"seconds": seconds, **detail}


def measure_extract(backend: str, workdir: Path, name: str, batch_rows: int, file_rows: int) -> dict[str, Any]:
    """adapter.stream() -> Arrow -> JSONL files via an in-memory DuckDB, as the engine does."""
    import duckdb
    import pyarrow as pa

    from sixtyfour_sync.warehouse import TableRef

    adapter = open_adapter(backend, workdir, name)
    out = workdir / "extract"
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir()
    con = duckdb.connect()
    stream_s = write_s = 0.0
    files = rows = 0

    def write(tbl: pa.Table) -> None:
        nonlocal files, write_s
        t = time.perf_counter()
        reader = pa.RecordBatchReader.from_batches(tbl.schema, tbl.to_batches())
        con.register("chunk", reader)
        con.execute(f"COPY chunk TO '{out / f'part-{files:05d}.jsonl'}' (FORMAT json)")
        con.unregister("chunk")
        files += 1
        write_s += time.perf_counter() - t

    def run() -> dict[str, Any]:
        nonlocal stream_s, rows
        pending: list[pa.RecordBatch] = []
        buffered = 0
        sql = adapter.source_sql(table=TableRef(SRC))
        it: Iterator[pa.RecordBatch] = iter(adapter.stream(sql, batch_rows=batch_rows))
        while True:
            t = time.perf_counter()
            batch = next(it, None)
            stream_s += time.perf_counter() - t
            if batch is None:
                break
            rows += batch.num_rows
            pending.append(batch)
            buffered += batch.num_rows
            while buffered >= file_rows:
                tbl = pa.Table.from_batches(pending)
                write(tbl.slice(0, file_rows))
                rest = tbl.slice(file_rows)
                pending, buffered = rest.to_batches(), rest.num_rows
        if buffered:
            write(pa.Table.from_batches(pending))
        return {}

    result = _timed(run)
    size = sum(p.stat().st_size for p in out.iterdir())
    adapter.close()
    shutil.rmtree(out, ignore_errors=True)
    return {**result, "rows": rows, "stream_s": stream_s, "jsonl_s": write_s, "files": files, "bytes": size}


def _raw_connect(backend: str, workdir: Path, name: str) -> Any:
    """A plain driver connection (opened before the clock starts, as the adapters' are)."""
    if backend == "duckdb":
        import duckdb

        con = duckdb.connect(str(workdir / "bench.duckdb"))
        con.execute("SET TimeZone = 'UTC'")
        return con
    if backend == "postgres":
        return _pg_connect()
    if backend == "mariadb":
        return _mysql_root(name)
    import sqlite3

    return sqlite3.connect(workdir / "bench.sqlite", isolation_level=None)


def measure_raw_extract(backend: str, workdir: Path, name: str, batch_rows: int, file_rows: int) -> dict[str, Any]:
    """The database's own fastest export of the same rows."""
    out = workdir / "raw_extract.out"
    conn = _raw_connect(backend, workdir, name)

    def run() -> dict[str, Any]:
        rows = 0
        if backend == "duckdb":
            conn.execute(f"COPY (SELECT * FROM main.{SRC}) TO '{out}' (FORMAT json)")
            rows = int(conn.fetchone()[0])
        elif backend == "postgres":
            sql = f'COPY (SELECT * FROM "{name}"."{SRC}") TO STDOUT (FORMAT csv)'
            with conn.cursor() as cur, out.open("wb") as fh, cur.copy(sql) as copy:
                for chunk in copy:
                    fh.write(chunk)
                    rows += bytes(chunk).count(b"\n")
        elif backend == "mariadb":
            import pymysql.cursors

            with conn.cursor(pymysql.cursors.SSCursor) as cur:
                cur.execute(f"SELECT * FROM `{SRC}`")
                while chunk := cur.fetchmany(batch_rows):
                    rows += len(chunk)
        else:
            cur = conn.execute(f'SELECT * FROM "{SRC}"')
            while chunk := cur.fetchmany(batch_rows):
                rows += len(chunk)
        return {"rows": rows}

    result = _timed(run)
    conn.close()
    if out.exists():
        result["bytes"] = out.stat().st_size
        out.unlink()
    return result


def _enriched() -> Any:
    import pyarrow as pa

    source = pa.memory_map(str(Path(os.environ["BENCH_WORKDIR"]) / "enriched.arrow"))
    table = pa.ipc.open_file(source).read_all()
    limit = int(os.environ.get("BENCH_UPSERT_ROWS") or 0)
    return table.slice(0, limit) if limit else table


def measure_upsert(backend: str, workdir: Path, name: str, batch_rows: int, file_rows: int) -> dict[str, Any]:
    """adapter.upsert() of every enriched row into the full target (ten owned columns)."""
    from sixtyfour_sync.warehouse import TableRef, UpsertPart

    data = _enriched()
    adapter = open_adapter(backend, workdir, name)

    def run() -> dict[str, Any]:
        res = adapter.upsert(TableRef(TARGET), [KEY], [UpsertPart(data, OWNED)])
        return {"rows": res.rows, "inserted": res.inserted, "updated": res.updated}

    result = _timed(run)
    adapter.close()
    return result


def measure_upsert_guarded(backend: str, workdir: Path, name: str, batch_rows: int, file_rows: int) -> dict[str, Any]:
    """adapter.upsert() of the same rows with two guarded columns (a flag true in 3 rows of 4)."""
    import numpy as np
    import pyarrow as pa

    from sixtyfour_sync.warehouse import Guard, TableRef, UpsertPart

    data = _enriched()
    data = data.append_column("__write_email", pa.array(np.arange(data.num_rows) % 4 != 0))
    guard = Guard(when="__write_email", not_below="email_confidence")
    part = UpsertPart(data, OWNED, guards={"email": guard, "email_confidence": guard})
    adapter = open_adapter(backend, workdir, name)

    def run() -> dict[str, Any]:
        res = adapter.upsert(TableRef(TARGET), [KEY], [part])
        return {"rows": res.rows, "inserted": res.inserted, "updated": res.updated}

    result = _timed(run)
    adapter.close()
    return result


def _measure_insert(backend: str, workdir: Path, name: str, *, insert_only: bool) -> dict[str, Any]:
    from sixtyfour_sync.warehouse import TableRef, UpsertPart

    data = _enriched()
    adapter = open_adapter(backend, workdir, name)

    def run() -> dict[str, Any]:
        res = adapter.upsert(TableRef(TARGET), [KEY], [UpsertPart(data, OWNED, insert_only=insert_only)])
        return {"rows": res.rows, "inserted": res.inserted, "updated": res.updated}

    result = _timed(run)
    adapter.close()
    return result


def measure_insert(backend: str, workdir: Path, name: str, batch_rows: int, file_rows: int) -> dict[str, Any]:
    """adapter.upsert() of every enriched row into an empty target (matching first, as a rerun must)."""
    return _measure_insert(backend, workdir, name, insert_only=False)


def measure_insert_only(backend: str, workdir: Path, name: str, batch_rows: int, file_rows: int) -> dict[str, Any]:
    """The same rows with ``insert_only=True``: no UPDATE, no anti-join."""
    return _measure_insert(backend, workdir, name, insert_only=True)


def measure_raw_upsert(backend: str, workdir: Path, name: str, batch_rows: int, file_rows: int) -> dict[str, Any]:
    """The hand-written minimum for the same change."""
    import io

    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.csv as pacsv

    cols = [KEY, *OWNED]
    data = _enriched().select(cols)
    sets = ", ".join(f"{c} = s.{c}" for c in OWNED)
    conn = _raw_connect(backend, workdir, name)

    def run() -> dict[str, Any]:
        if backend == "duckdb":
            conn.register("enriched", data)
            conn.execute("BEGIN")
            conn.execute(f"UPDATE main.{TARGET} AS t SET {sets} FROM enriched AS s WHERE t.{KEY} = s.{KEY}")
            rows = int(conn.fetchone()[0])
            conn.execute("COMMIT")
            return {"rows": rows}
        if backend == "postgres":
            with conn.cursor() as cur:
                cur.execute(
                    f'CREATE TEMP TABLE stage AS SELECT {", ".join(cols)} FROM "{name}"."{TARGET}" WITH NO DATA'
                )
                with cur.copy(f"COPY stage ({', '.join(cols)}) FROM STDIN (FORMAT csv)") as copy:
                    for batch in data.to_batches(max_chunksize=100_000):
                        buf = io.BytesIO()
                        pacsv.write_csv(batch, buf, pacsv.WriteOptions(include_header=False))
                        copy.write(buf.getvalue())
                cur.execute("ANALYZE stage")
                cur.execute("SET LOCAL enable_hashjoin = off")
                cur.execute(f'UPDATE "{name}"."{TARGET}" AS t SET {sets} FROM stage AS s WHERE t.{KEY} = s.{KEY}')
                rows = cur.rowcount
            conn.commit()
            return {"rows": rows}
        # MariaDB / SQLite: executemany into a temporary table, then the dialect's update-join.
        tbl = data
        i = cols.index("_sixtyfour_enriched_at")
        ts = tbl.column(i)
        if backend == "mariadb":
            tbl = tbl.set_column(i, cols[i], ts.cast(pa.timestamp("us")))
            marks = ", ".join(["%s"] * len(cols))
            conn.begin()
        else:
            text = pc.strftime(ts, format="%Y-%m-%d %H:%M:%S")
            tbl = tbl.set_column(i, cols[i], pc.binary_join_element_wise(text, "+00:00", ""))
            marks = ", ".join(["?"] * len(cols))
            conn.execute("BEGIN")
        cur = conn.cursor()
        cur.execute(f"CREATE TEMPORARY TABLE stage AS SELECT {', '.join(cols)} FROM {TARGET} WHERE 1 = 0")
        for batch in tbl.to_batches(max_chunksize=10_000):
            pylists = [batch.column(j).to_pylist() for j in range(len(cols))]
            cur.executemany(f"INSERT INTO stage VALUES ({marks})", list(zip(*pylists, strict=True)))
        if backend == "mariadb":
            mysql_sets = ", ".join(f"t.{c} = s.{c}" for c in OWNED)
            cur.execute(f"UPDATE {TARGET} AS t JOIN stage AS s ON t.{KEY} = s.{KEY} SET {mysql_sets}")
        else:
            cur.execute(f"UPDATE {TARGET} AS t SET {sets} FROM stage AS s WHERE t.{KEY} = s.{KEY}")
        rows = cur.rowcount
        if backend == "mariadb":
            conn.commit()
        else:
            conn.execute("COMMIT")
        return {"rows": rows}

    result = _timed(run)
    conn.close()
    return result


def measure_idle(backend: str, workdir: Path, name: str, batch_rows: int, file_rows: int) -> dict[str, Any]:
    """Peak RSS of a process that only imports the stack and connects: the floor under every step."""
    import duckdb  # noqa: F401 - the extract step's JSONL writer

    def run() -> dict[str, Any]:
        open_adapter(backend, workdir, name).close()
        return {"rows": 0}

    return _timed(run)


MEASURES = {
    "idle": measure_idle,
    "extract": measure_extract,
    "raw_extract": measure_raw_extract,
    "upsert": measure_upsert,
    "raw_upsert": measure_raw_upsert,
    "upsert_guarded": measure_upsert_guarded,
    "insert": measure_insert,
    "insert_only": measure_insert_only,
}


def child(args: argparse.Namespace) -> None:
    """Run one step in this process and print its result (with this process's peak RSS) as JSON."""
    workdir = Path(args.workdir)
    os.environ["BENCH_WORKDIR"] = str(workdir)
    os.environ["BENCH_UPSERT_ROWS"] = str(args.upsert_rows or "")
    if args.op == "generate":
        generate(workdir, args.rows)
        result: dict[str, Any] = {}
    elif args.op == "load":
        load(args.backend, workdir, args.name)
        result = {}
    elif args.op == "reset":
        load(args.backend, workdir, args.name, target_only=True)
        result = {}
    elif args.op == "reset_empty":
        load(args.backend, workdir, args.name, target_only=True, empty=True)
        result = {}
    elif args.op == "cleanup":
        cleanup(args.backend, workdir, args.name)
        result = {}
    else:
        result = MEASURES[args.op](args.backend, workdir, args.name, args.batch_rows, args.file_rows)
    result["maxrss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps(result))


# ---------------------------------------------------------------------------------------------- driver


def run_child(op: str, backend: str, args: argparse.Namespace, name: str) -> dict[str, Any]:
    cmd = [
        sys.executable,
        str(HERE),
        "--_child",
        op,
        "--backend",
        backend,
        "--workdir",
        str(args.workdir),
        "--name",
        name,
        "--rows",
        str(args.rows),
        "--batch-rows",
        str(args.batch_rows),
        "--file-rows",
        str(args.file_rows),
        "--upsert-rows",
        str(args.upsert_rows),
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"{op} on {backend} failed:\n{proc.stderr[-4000:]}")
    return dict(json.loads(proc.stdout.strip().splitlines()[-1]))


def bench_backend(backend: str, args: argparse.Namespace) -> dict[str, Any]:
    name = f"bench_{uuid.uuid4().hex[:8]}"
    t = time.perf_counter()
    run_child("load", backend, args, name)
    print(f"  {backend}: loaded {args.rows:,} source + target rows in {time.perf_counter() - t:.1f} s", flush=True)
    results: dict[str, list[dict[str, Any]]] = {op: [] for op in OPS}
    try:
        for _ in range(args.repeat):
            for op in OPS:
                if op in RESET_FULL:
                    run_child("reset", backend, args, name)
                elif op in RESET_EMPTY:
                    run_child("reset_empty", backend, args, name)
                r = run_child(op, backend, args, name)
                results[op].append(r)
                print(f"  {backend} {op}: {r['seconds']:.2f} s, peak RSS {r['maxrss_mb']:.0f} MB", flush=True)
    finally:
        run_child("cleanup", backend, args, name)
    summary: dict[str, Any] = {}
    for op, runs in results.items():
        med = statistics.median(r["seconds"] for r in runs)
        best = min(runs, key=lambda r: abs(r["seconds"] - med))
        summary[op] = {**best, "seconds": med, "maxrss_mb": max(r["maxrss_mb"] for r in runs)}
    return summary


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = ""
    try:
        kb = int(Path("/proc/meminfo").read_text().split()[1])
        mem = f", {kb / 1024 / 1024:.0f} GB RAM"
    except (OSError, ValueError, IndexError):
        pass
    system = f"{platform.system()} {platform.release()}"
    return f"{os.cpu_count()} cores ({cpu}){mem}, {system}, Python {platform.python_version()}"


def versions() -> str:
    from importlib.metadata import PackageNotFoundError, version

    out = []
    for pkg in ("duckdb", "pyarrow", "psycopg", "SQLAlchemy", "PyMySQL"):
        with contextlib.suppress(PackageNotFoundError):
            out.append(f"{pkg} {version(pkg)}")
    return ", ".join(out)


def table(all_results: dict[str, dict[str, Any]], rows: int) -> str:
    lines = [
        "| backend | rows | step | adapter s | adapter rows/s | raw s | raw rows/s | adapter/raw "
        "| peak RSS MB (adapter / raw / idle) |",
        "|---|---:|---|---:|---:|---:|---:|---:|---:|",
    ]
    for backend, res in all_results.items():
        n = res["_rows"]
        idle = res["idle"]["maxrss_mb"]
        a, r = res["extract"], res["raw_extract"]
        lines.append(
            f"| {backend} | {n:,} | extract: `stream()` to Arrow | {a['stream_s']:.2f} | {n / a['stream_s']:,.0f} | "
            f"{r['seconds']:.2f} | {n / r['seconds']:,.0f} | {a['stream_s'] / r['seconds']:.2f}x | "
            f"{a['maxrss_mb']:.0f} / {r['maxrss_mb']:.0f} / {idle:.0f} |"
        )
        lines.append(
            f"| {backend} | {n:,} | extract: + JSONL ({a['files']} files, {a['jsonl_s']:.2f} s) | "
            f"{a['seconds']:.2f} | {n / a['seconds']:,.0f} | | | | |"
        )
        a, r = res["upsert"], res["raw_upsert"]
        n = res.get("_upsert_rows") or n
        into = f" into {res['_rows']:,}" if n != res["_rows"] else ""
        lines.append(
            f"| {backend} | {n:,} | upsert{into} | {a['seconds']:.2f} | {n / a['seconds']:,.0f} | "
            f"{r['seconds']:.2f} | {n / r['seconds']:,.0f} | {a['seconds'] / r['seconds']:.2f}x | "
            f"{a['maxrss_mb']:.0f} / {r['maxrss_mb']:.0f} / {idle:.0f} |"
        )
        for step, base, label in (
            ("upsert_guarded", "upsert", f"upsert{into}, 2 columns guarded (vs upsert)"),
            ("insert_only", "insert", "insert-only into an empty target (vs upsert into it)"),
        ):
            if step in res and base in res:
                g, b = res[step], res[base]
                lines.append(
                    f"| {backend} | {n:,} | {label} | {g['seconds']:.2f} | {n / g['seconds']:,.0f} | "
                    f"{b['seconds']:.2f} | {n / b['seconds']:,.0f} | {g['seconds'] / b['seconds']:.2f}x | "
                    f"{g['maxrss_mb']:.0f} / {b['maxrss_mb']:.0f} / {idle:.0f} |"
                )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rows", type=int, default=1_000_000)
    p.add_argument("--backends", default="duckdb,postgres")
    p.add_argument("--repeat", type=int, default=1, help="runs per step; the median is reported")
    p.add_argument("--batch-rows", type=int, default=100_000, help="stream() batch size")
    p.add_argument("--file-rows", type=int, default=100_000, help="rows per JSONL file (the API's limit)")
    p.add_argument(
        "--upsert-rows", type=int, default=0, help="enriched rows per upsert (default: --rows, every target row)"
    )
    p.add_argument("--workdir", help="where data files go (default: a temporary directory)")
    p.add_argument("--keep", action="store_true", help="keep the work directory")
    p.add_argument("--json", action="store_true", help="print the results as JSON")
    p.add_argument("--_child", dest="child", help=argparse.SUPPRESS)
    p.add_argument("--backend", help=argparse.SUPPRESS)
    p.add_argument("--name", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        args.op = args.child
        child(args)
        return 0
    own_dir = args.workdir is None
    args.workdir = Path(args.workdir or tempfile.mkdtemp(prefix="sixtyfour-bench-"))
    args.workdir.mkdir(parents=True, exist_ok=True)
    results: dict[str, dict[str, Any]] = {}
    try:
        t = time.perf_counter()
        run_child("generate", "-", args, "-")
        print(f"generated {args.rows:,} rows in {time.perf_counter() - t:.1f} s", flush=True)
        for backend in [b.strip() for b in args.backends.split(",") if b.strip()]:
            results[backend] = {
                **bench_backend(backend, args),
                "_rows": args.rows,
                "_upsert_rows": args.upsert_rows or args.rows,
            }
    finally:
        if own_dir and not args.keep:
            shutil.rmtree(args.workdir, ignore_errors=True)
    print()
    print(f"{machine()}; {versions()}")
    print(table(results, args.rows))
    if args.json:
        print(json.dumps(results, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
