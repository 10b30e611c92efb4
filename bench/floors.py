"""What the engine must do beyond the raw stages, each part measured on its own beside them, in one run.

The raw stages of ``bench/pipeline.py`` (extract, parse, update) are the floor of moving the rows. The engine
cannot stop there: it hashes every row's inputs and key in the selection (how a changed question is told
from one already paid for), counts the rows per key (a duplicated key is reported, never sent), uploads
and downloads every file over HTTP, and writes a keyed target with its bookkeeping columns. This script
measures each of those parts against its raw counterpart, on the same data and in the same process, and
adds them to the raw stages: the sum is a floor no engine that keeps those guarantees can go under.

    python bench/floors.py --backends duckdb postgres --rows 1000000 --repeat 3 --json docs/benchmarks-floors.json

Parts (each the median of ``--repeat`` runs, wall and CPU seconds of this process; a database server's
CPU is in no one's column, so PostgreSQL compares walls):

- ``raw``: the raw stages of bench/pipeline.py (extract, parse, update), as that benchmark measures them;
- ``select_plain`` / ``select_engine``: the source read through the adapter's own stream in key order,
  without and with what the engine's first-run selection adds (the two hashes, the count per key);
- ``http``: the JSONL files (100,000 rows each) uploaded to the emulator and their results downloaded with
  httpx, the client's side of the API, jobs instant (the emulator is another process);
- ``keyed_write``: the engine-shaped rows (key, three fields, three confidences, six bookkeeping columns)
  inserted by ``adapter.upsert(..., insert_only=True)`` in 250,000-row parts into a new table keyed by
  ``lead_id``, against ``raw``'s own update stage.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))

import pipeline as pl
import pipeline_stages as st

FILE_ROWS = 100_000
PART_ROWS = 250_000
#: issue targets: DuckDB CPU, PostgreSQL wall, each as a multiple of the raw stages.
TARGETS = {"duckdb": ("cpu_s", 1.5), "postgres": ("wall_s", 1.3)}


def _timed(fn: Callable[..., Any], *args: Any) -> dict[str, float]:
    w0, c0 = time.perf_counter(), st._cpu()
    fn(*args)
    return {"wall_s": round(time.perf_counter() - w0, 3), "cpu_s": round(st._cpu() - c0, 3)}


def _adapter(spec: dict[str, Any]) -> Any:
    from sixtyfour_sync.config.profiles import parse_target_config
    from sixtyfour_sync.warehouse import connect

    if spec["backend"] == "duckdb":
        return connect(parse_target_config({"type": "duckdb", "path": spec["db"]}))
    return connect(
        parse_target_config(
            {"type": "postgres", "host": "127.0.0.1", "user": "postgres", "dbname": "test", "schema": spec["schema"]}
        )
    )


def _engine_selection(spec: dict[str, Any], adapter: Any) -> str:
    """The engine's own first-run selection SQL for the bench model (no target yet)."""
    from sixtyfour_sync.engine.project import Project
    from sixtyfour_sync.engine.rows.select import build_selection, source_relation_sql
    from sixtyfour_sync.warehouse import TableRef

    project = Project.load(st.write_project(spec))
    sync = project.syncs[0].spec
    source_sql = source_relation_sql(adapter, sync)
    return build_selection(
        adapter,
        sync,
        source_sql=source_sql,
        inputs=st.COLUMNS,
        target=TableRef("leads_enriched_floor"),
        target_columns=None,
        spec_hash=sync.spec_hash(),
    ).sql


def _drain(adapter: Any, sql: str) -> None:
    for _batch in adapter.stream(sql, batch_rows=FILE_ROWS):
        pass


def _jsonl_parts(rows: int, out: Path) -> list[Path]:
    """The files the engine would upload (key, inputs, input hash), 100,000 rows each; not timed."""
    import duckdb

    con = duckdb.connect(":memory:")
    source = st.source_select(rows)
    parts = []
    for i, start in enumerate(range(0, rows, FILE_ROWS)):
        part = out / f"upload-{i:04d}.jsonl"
        con.execute(
            f"COPY (SELECT lead_id, {', '.join(st.COLUMNS)}, md5(lead_id::VARCHAR) AS _sixtyfour_input_hash "
            f"FROM ({source}) WHERE lead_id > {start} AND lead_id <= {start + FILE_ROWS}) TO '{part}' (FORMAT json)"
        )
        parts.append(part)
    con.close()
    return parts


def _http(url: str, parts: list[Path], out: Path) -> None:
    """Upload every part, then download every result (the jobs are instant)."""
    config = json.dumps({"struct": pl._struct(), "field_confidence": True, "columns": st.COLUMNS})
    with httpx.Client(base_url=url, headers={"x-api-key": st.API_KEY}, timeout=600) as http:
        tasks = []
        for part in parts:
            with part.open("rb") as fh:
                r = http.post("/bulk-intelligence/people", files={"file": (part.name, fh)}, data={"config": config})
            r.raise_for_status()
            tasks.append(r.json()["task_id"])
        for task in tasks:
            while True:
                status = http.get(f"/job-status/{task}").json()
                if str(status.get("status", "")).lower() == "completed" and status.get("results"):
                    break
                time.sleep(0.05)
            final = max(status["results"], key=lambda e: e["block_number"])
            with http.stream("GET", final["download_url"]) as resp, (out / "download.csv").open("wb") as fh:
                resp.raise_for_status()
                for chunk in resp.iter_bytes(1 << 20):
                    fh.write(chunk)


def _engine_rows(result_files: list[str]) -> Any:
    """The parsed results shaped as the engine writes them: key, fields, confidences, bookkeeping."""
    import pyarrow as pa
    import pyarrow.compute as pc

    table = st._raw_parse(result_files)
    n = table.num_rows
    now = int(time.time() * 1e6)
    hashes = pc.binary_join_element_wise(pc.cast(table.column("lead_id"), pa.string()), "h", "")
    extra = {
        "_sixtyfour_status": pa.array(["enriched"] * n),
        "_sixtyfour_enriched_at": pa.array([now] * n, pa.int64()).cast(pa.timestamp("us", tz="UTC")),
        "_sixtyfour_task_id": pa.array(["task-0000000000000000"] * n),
        "_sixtyfour_input_hash": hashes,
        "_sixtyfour_spec_hash": pa.array(["0123456789abcdef"] * n),
        "_sixtyfour_tier": pa.array(["base"] * n),
    }
    for name, col in extra.items():
        table = table.append_column(name, col)
    return table


def _keyed_write(adapter: Any, rows: Any) -> None:
    from sixtyfour_sync.warehouse import Column, LogicalType, TableRef, UpsertPart

    target = TableRef("leads_enriched_floor")
    owned = [c for c in rows.column_names if c != "lead_id"]
    types = {c: LogicalType.BIGINT for c in owned if c == "employee_count" or c.endswith("_confidence")}
    types["_sixtyfour_enriched_at"] = LogicalType.TIMESTAMP
    cols = [Column(c, types.get(c, LogicalType.TEXT)) for c in owned]
    adapter.ensure_table(target, [Column("lead_id", LogicalType.BIGINT)], cols)
    for start in range(0, rows.num_rows, PART_ROWS):
        part = rows.slice(start, PART_ROWS)
        adapter.upsert(target, ["lead_id"], [UpsertPart(part, owned, insert_only=True)])


def _drop_target(adapter: Any) -> None:
    from sixtyfour_sync.warehouse import TableRef

    with adapter.session() as s:
        s.execute(f"DROP TABLE IF EXISTS {adapter.table_sql(TableRef('leads_enriched_floor'))}")


def child(spec_json: str) -> None:
    """Every part, ``repeat`` times, in this one process; prints one JSON line."""
    import sixtyfour_sync.engine.runner  # noqa: F401  (imports are not what is measured)

    spec = json.loads(spec_json)
    work = Path(spec["work"])
    runs: dict[str, list[dict[str, float]]] = {}
    plain = f"SELECT lead_id, {', '.join(st.COLUMNS)} FROM {spec['source']} ORDER BY lead_id"
    parts = _jsonl_parts(spec["rows"], work)
    rows = _engine_rows(spec["result_files"])
    proc, url = pl.start_emulator()
    try:
        for _ in range(spec["repeat"]):
            raw = st.measure_raw(spec)  # its own connections (DuckDB: none of the adapter's may be open)
            runs.setdefault("raw", []).append({k: raw[k] for k in ("wall_s", "cpu_s")})
            for stage, t in raw["stages"].items():
                runs.setdefault(f"raw.{stage}", []).append(t)
            adapter = _adapter(spec)
            try:
                engine_sql = _engine_selection(spec, adapter)
                runs.setdefault("select_plain", []).append(_timed(_drain, adapter, plain))
                runs.setdefault("select_engine", []).append(_timed(_drain, adapter, engine_sql))
                runs.setdefault("http", []).append(_timed(_http, url, parts, work))
                _drop_target(adapter)
                runs.setdefault("keyed_write", []).append(_timed(_keyed_write, adapter, rows))
                _drop_target(adapter)
            finally:
                adapter.close()
    finally:
        pl.stop_emulator(proc)
    med = {k: {m: round(statistics.median(r[m] for r in v), 3) for m in ("wall_s", "cpu_s")} for k, v in runs.items()}
    print(json.dumps(med))


def floors(med: dict[str, dict[str, float]]) -> dict[str, dict[str, float]]:
    """The raw stages plus each part's extra over its raw counterpart (never below zero)."""
    out: dict[str, dict[str, float]] = {}
    for m in ("wall_s", "cpu_s"):
        extra = {
            "hashes_and_key_count": med["select_engine"][m] - med["select_plain"][m],
            "http": med["http"][m],
            "keyed_write": med["keyed_write"][m] - med["raw.upsert"][m],
        }
        out[m] = {"raw": med["raw"][m], **{k: round(max(v, 0.0), 3) for k, v in extra.items()}}
        out[m]["floor"] = round(sum(out[m].values()), 3)
        out[m]["floor_over_raw"] = round(out[m]["floor"] / med["raw"][m], 2) if med["raw"][m] else 0.0
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backends", nargs="+", choices=["duckdb", "postgres"], default=["duckdb", "postgres"])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child)
        return
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="floors-") as tmp:
        work = Path(tmp)
        for backend in args.backends:
            source = pl.make_source(backend, args.rows, work)
            try:
                thing = work / backend
                thing.mkdir()
                spec: dict[str, Any] = {
                    "backend": backend,
                    "rows": args.rows,
                    "repeat": args.repeat,
                    "work": str(thing),
                    "source": source["source"],
                    "schema": source.get("schema"),
                    "result_files": pl.result_files(args.rows, work),
                }
                if backend == "duckdb":
                    spec["db"] = source["db"]
                out = subprocess.run(
                    [sys.executable, __file__, "--child", json.dumps(spec)],
                    capture_output=True,
                    text=True,
                    check=False,
                    cwd=pl.ROOT,
                )
                if out.returncode != 0:
                    raise SystemExit(f"{backend} failed:\n{out.stderr[-3000:]}")
                med = json.loads(out.stdout.strip().splitlines()[-1])
                results[backend] = {"parts": med, "floors": floors(med)}
            finally:
                pl.drop_source(source)
                shutil.rmtree(work / backend, ignore_errors=True)
    for backend, r in results.items():
        metric, target = TARGETS[backend]
        print(f"\n{backend}, {args.rows:,} rows (medians of {args.repeat}; wall / CPU s)")
        for name, t in r["parts"].items():
            print(f"  {name:16} {t['wall_s']:7.2f} {t['cpu_s']:7.2f}")
        f = r["floors"]
        print(f"  {'floor':16} {f['wall_s']['floor']:7.2f} {f['cpu_s']['floor']:7.2f}")
        print(
            f"  floor / raw: wall {f['wall_s']['floor_over_raw']}x, CPU {f['cpu_s']['floor_over_raw']}x "
            f"(target: engine {metric.split('_')[0]} <= {target}x raw)"
        )
    if args.json:
        args.json.write_text(json.dumps({"rows": args.rows, "repeat": args.repeat, **results}, indent=2) + "\n")


if __name__ == "__main__":
    main()
