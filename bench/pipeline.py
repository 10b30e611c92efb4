"""The whole pipeline at scale: the raw stages, the hand-written script and the engine, side by side.

    python bench/pipeline.py [--backends duckdb postgres] [--rows 250000 1000000 5000000]
                             [--things raw script engine] [--repeat 1] [--json bench/out/pipeline.json]
    python bench/pipeline.py --things noop one_pct diff --rows 1000000 --repeat 3   # the scheduled refresh

For each backend and size, one source table of that many leads, then each measured thing (see
bench/pipeline_stages.py) in a child process of its own, against an emulator in a process of its own
(``--job-seconds 0``, no submission or request limit, 5% of rows fail). Every run starts as a first run:
DuckDB things each get a fresh copy of the same database file; in PostgreSQL everything but the source is
dropped from the ``bench_<hex>`` schema before each run.
The engine runs through the Python API with the client's 10-submissions-a-minute limiter relaxed to
10,000 (``SixtyfourClient(..., limiter=SubmissionLimiter(limit=10_000))``); real runs keep the default.

Printed per row: wall and CPU seconds, peak RSS, rows/s, rows/s excluding the time an API request was in
flight, the emulator's own CPU and peak RSS, and the 1-minute load average at start and end; then the
ratios engine/raw and script/engine. ``bench/plot_pipeline.py`` draws docs/benchmarks.png from the JSON.
``engine_unstored`` is the engine with ``reuse: false`` (the answer store neither written nor read): beside
``engine`` it prints what keeping every answer in the ledger costs a first run (engine_over_unstored).

The scheduled refresh (``--things noop one_pct diff``, any of them): one first engine run (``full``, shown,
its wall the base of "1% of a full run") enriches a copy of the source; then, ``--repeat`` rounds on that
enriched source and its ledger, each thing in a child of its own: ``diff`` (the plain SQL diff of the same
data: every row's inputs hashed, LEFT JOIN the target, the differences counted), ``noop`` (a run with
nothing changed) and ``one_pct`` (a run after 1% of the rows' inputs changed). Printed: the ratios
noop/diff (wall) and one_pct against the budget ``diff + 2 x 1% of the full run's wall``, each the median of
the rounds' own ratios (each round's things run one after the other, under the same load).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
import pipeline_stages as st

ROOT = Path(__file__).resolve().parents[1]
THINGS = ("raw", "script", "engine", "engine_unstored", "refresh", *st.REFRESH_THINGS)
DEFAULT_THINGS = ("raw", "script", "engine", "refresh")
POLL_SECONDS = 0.1


# --------------------------------------------------------------------------------------------- emulator


def start_emulator() -> tuple[subprocess.Popen[str], str]:
    """The emulator in its own process: jobs instant, no submission or request limit."""
    cmd = [sys.executable, "-m", "sixtyfour_sync", "emulator", "--port", "0", "--api-key", st.API_KEY]
    cmd += ["--job-seconds", "0", "--rate-limit-per-minute", "0", "--request-limit-per-minute", "0"]
    cmd += ["--balance-cents", str(10**12)]  # a refresh asks every row twice
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, cwd=ROOT)
    assert proc.stdout is not None
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line and proc.poll() is not None:
            break
        m = re.search(r"(http://127\.0\.0\.1:\d+)", line)
        if m:
            return proc, m.group(1)
    proc.kill()
    raise RuntimeError("the emulator did not start")


def stop_emulator(proc: subprocess.Popen[str]) -> dict[str, float]:
    """Stop it: its peak RSS (``VmHWM``) read just before, its CPU seconds from the kernel after."""
    peak = st.vm_hwm_mb(proc.pid)
    proc.terminate()
    try:
        _, status, usage = os.wait4(proc.pid, 0)
    except ChildProcessError:  # pragma: no cover - already reaped
        return {}
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.stdout is not None:
        proc.stdout.close()
    return {
        "emulator_cpu_s": round(usage.ru_utime + usage.ru_stime, 2),
        "emulator_peak_rss_mb": peak if peak is not None else round(usage.ru_maxrss / 1024, 1),
    }


# --------------------------------------------------------------------------------------------- data


def make_source(backend: str, rows: int, work: Path, dup_share: float = 0.0) -> dict[str, Any]:
    """The source table of ``rows`` leads (``dup_share`` of them sharing their inputs with another): a DuckDB
    file, or a PostgreSQL schema."""
    if backend == "duckdb":
        import duckdb

        db = work / f"base-{rows}-{dup_share:g}.duckdb"
        con = duckdb.connect(str(db))
        con.execute(f"CREATE TABLE leads AS {st.source_select(rows, dup_share)}")
        con.close()
        return {"db": str(db), "source": "leads"}
    import psycopg

    schema = f"bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(st.PG_DSN, autocommit=True) as con:
        con.execute(f'CREATE SCHEMA "{schema}"')
        con.execute(f'CREATE TABLE "{schema}".leads AS {st.source_select(rows, dup_share, postgres=True)}')
        con.execute(f'ALTER TABLE "{schema}".leads ADD PRIMARY KEY (lead_id)')
        con.execute(f'VACUUM ANALYZE "{schema}".leads')
    return {"schema": schema, "source": f'"{schema}".leads'}


def reset_postgres(source: dict[str, Any]) -> None:
    """Drop everything but the source in the schema, so each run starts as the first (no target, no ledger)."""
    if "schema" not in source:
        return
    import psycopg

    schema = source["schema"]
    with psycopg.connect(st.PG_DSN, autocommit=True) as con:
        tables = con.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = %s AND table_name <> 'leads'",
            [schema],
        ).fetchall()
        for (name,) in tables:
            con.execute(f'DROP TABLE IF EXISTS "{schema}"."{name}" CASCADE')


def drop_source(source: dict[str, Any]) -> None:
    """Remove a PostgreSQL schema (DuckDB files go with the work directory)."""
    if "schema" not in source:
        return
    import psycopg

    with psycopg.connect(st.PG_DSN, autocommit=True) as con:
        con.execute(f'DROP SCHEMA IF EXISTS "{source["schema"]}" CASCADE')


def result_files(rows: int, work: Path) -> list[str]:
    """The emulator's final CSVs for the source rows (for the raw parse and upsert; not timed)."""
    import duckdb

    out = work / f"results-{rows}"
    if out.exists():
        return sorted(str(p) for p in out.glob("*.csv"))
    out.mkdir()
    con = duckdb.connect(":memory:")
    proc, url = start_emulator()
    config = json.dumps({"struct": _struct(), "field_confidence": True, "columns": st.COLUMNS})
    try:
        with httpx.Client(base_url=url, headers={"x-api-key": st.API_KEY}, timeout=600) as http:
            for i, start in enumerate(range(0, rows, 100_000)):
                part = out / f"part-{i:04d}.jsonl"
                select = st.source_select(rows)
                con.execute(
                    f"COPY (SELECT lead_id, {', '.join(st.COLUMNS)} FROM ({select}) "
                    f"WHERE lead_id > {start} AND lead_id <= {start + 100_000}) TO '{part}' (FORMAT json)"
                )
                with part.open("rb") as fh:
                    r = http.post("/bulk-intelligence/people", files={"file": (part.name, fh)}, data={"config": config})
                r.raise_for_status()
                status = http.get(f"/job-status/{r.json()['task_id']}").json()
                final = max(status["results"], key=lambda e: e["block_number"])
                (out / f"part-{i:04d}.csv").write_bytes(http.get(final["download_url"]).content)
                part.unlink()
    finally:
        stop_emulator(proc)
        con.close()
    return sorted(str(p) for p in out.glob("*.csv"))


def _struct() -> dict[str, Any]:
    return {"email": "Work email", "title": "Job title", "employee_count": {"description": "Employees", "type": "int"}}


# --------------------------------------------------------------------------------------------- measuring


def measure(
    thing: str,
    backend: str,
    rows: int,
    source: dict[str, Any],
    work: Path,
    duckdb_memory_limit: str | None = None,
    enriched: dict[str, str] | None = None,
) -> dict[str, Any]:
    """One measured thing in its own child process, with its own emulator, on a fresh copy of the data.

    ``enriched`` (``db``, ``state``): the scheduled refresh's things run on that enriched source and ledger
    as they are (no copy, no reset), except ``full``, which starts them from a fresh copy.
    """
    if enriched is None or thing == "full":
        reset_postgres(source)
    thing_dir = work / f"{backend}-{rows}-{thing}"
    shutil.rmtree(thing_dir, ignore_errors=True)
    thing_dir.mkdir(parents=True)
    spec: dict[str, Any] = {
        "thing": thing,
        "backend": backend,
        "rows": rows,
        "work": str(thing_dir),
        "poll_seconds": POLL_SECONDS,
        "duckdb_memory_limit": duckdb_memory_limit,
        "source": source["source"],
        "schema": source.get("schema"),
    }
    if enriched is not None:
        spec["state_dir"] = enriched["state"]
    if backend == "duckdb":
        db = Path(enriched["db"]) if enriched is not None else thing_dir / "wh.duckdb"
        if enriched is None or thing == "full":
            shutil.copyfile(source["db"], db)
        spec["db"] = str(db)
    if thing == "raw":
        spec["result_files"] = result_files(rows, work)
    proc, spec["url"] = start_emulator()
    load_start = os.getloadavg()[0]
    try:
        out = subprocess.run(
            [sys.executable, __file__, "--child", json.dumps(spec)],
            capture_output=True,
            text=True,
            check=False,
            cwd=ROOT,
        )
    finally:
        emulator = stop_emulator(proc)
    if out.returncode != 0:
        raise RuntimeError(f"{thing} on {backend} at {rows:,} rows failed:\n{out.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    shutil.rmtree(thing_dir, ignore_errors=True)
    active = result["wall_s"] - result["api_s"]
    result.update(
        thing=thing,
        backend=backend,
        rows=rows,
        rows_per_s=round(rows / result["wall_s"]),
        rows_per_s_excl_api=round(rows / active) if active > 0 else None,
        load_avg_start=round(load_start, 2),
        load_avg_end=round(os.getloadavg()[0], 2),
        **emulator,
    )
    return result


def measure_refresh(
    things: list[str], backend: str, rows: int, source: dict[str, Any], work: Path, args: argparse.Namespace
) -> list[dict[str, Any]]:
    """The scheduled refresh: a ``full`` first run, then ``--repeat`` rounds of ``things`` on what it enriched
    (in the order diff, noop, one_pct), the median run of each shown, every round's wall kept."""
    base = work / f"{backend}-{rows}-enriched"
    shutil.rmtree(base, ignore_errors=True)
    base.mkdir(parents=True)
    enriched = {"db": str(base / "wh.duckdb"), "state": str(base / "state")}
    full = measure("full", backend, rows, source, work, args.duckdb_memory_limit, enriched)
    print(_fmt(full), flush=True)
    runs: dict[str, list[dict[str, Any]]] = {t: [] for t in things}
    for _ in range(args.repeat):
        for thing in things:
            runs[thing].append(measure(thing, backend, rows, source, work, args.duckdb_memory_limit, enriched))
    out = [full]
    for thing in things:
        rs = runs[thing]
        r = dict(sorted(rs, key=lambda x: x["wall_s"])[len(rs) // 2])
        r["walls_s"] = [x["wall_s"] for x in rs]  # in round order: the ratios pair them by round
        r["cpus_s"] = [x["cpu_s"] for x in rs]
        r["peak_rss_mbs"] = [x["peak_rss_mb"] for x in rs]
        print(_fmt(r), flush=True)
        out.append(r)
    shutil.rmtree(base, ignore_errors=True)
    return out


def _fmt(r: dict[str, Any]) -> str:
    excl = f"{r['rows_per_s_excl_api']:>10,}" if r.get("rows_per_s_excl_api") else f"{'':>10}"
    return (
        f"{r['backend']:8} {r['rows']:>9,} {r['thing'] + _dup(r):10} {r['wall_s']:8.2f} {r['cpu_s']:8.2f} "
        f"{r['peak_rss_mb']:8.1f} {r['rows_per_s']:>9,} {excl} {r['api_s']:7.2f} "
        f"{r.get('emulator_cpu_s', 0):7.2f} {r.get('emulator_peak_rss_mb', 0):7.1f} "
        f"{r['load_avg_start']:5.2f}/{r['load_avg_end']:<5.2f}"
    )


def _dup(r: dict[str, Any]) -> str:
    """`` dup30%`` for a source where 30% of the rows share their inputs with another."""
    return f" dup{r['dup_share']:.0%}" if r.get("dup_share") else ""


HEADER = (
    f"{'backend':8} {'rows':>9} {'thing':10} {'wall s':>8} {'CPU s':>8} {'RSS MB':>8} {'rows/s':>9} "
    f"{'excl. API':>10} {'API s':>7} {'emu CPU':>7} {'emu MB':>7} {'load':>11}"
)


def ratios(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """engine/raw (wall, CPU) and script/engine (wall) per backend and size; with ``--dup-share``, the engine on
    a source whose rows share their inputs against the engine on one whose rows do not (CPU, peak RSS)."""
    out = []
    keys = sorted({(r["backend"], r["rows"]) for r in results})
    for backend, rows in keys:
        here = [r for r in results if r["backend"] == backend and r["rows"] == rows]
        by = {r["thing"]: r for r in here if not r.get("dup_share")}
        entry: dict[str, Any] = {"backend": backend, "rows": rows}
        for dup in (r for r in here if r.get("dup_share") and r["thing"] == "engine"):
            if "engine" in by:
                name = f"engine_dup{round(dup['dup_share'] * 100)}_over_engine"
                entry[f"{name}_cpu"] = round(dup["cpu_s"] / by["engine"]["cpu_s"], 3)
                entry[f"{name}_rss"] = round(dup["peak_rss_mb"] / by["engine"]["peak_rss_mb"], 3)
        if "engine" in by and "engine_unstored" in by:  # what keeping every answer in the store costs
            entry["engine_over_unstored_cpu"] = round(by["engine"]["cpu_s"] / by["engine_unstored"]["cpu_s"], 3)
            entry["engine_over_unstored_wall"] = round(by["engine"]["wall_s"] / by["engine_unstored"]["wall_s"], 3)
            entry["engine_over_unstored_rss"] = round(
                by["engine"]["peak_rss_mb"] / by["engine_unstored"]["peak_rss_mb"], 3
            )
        if "engine" in by and "raw" in by:
            entry["engine_over_raw_wall"] = round(by["engine"]["wall_s"] / by["raw"]["wall_s"], 2)
            entry["engine_over_raw_cpu"] = round(by["engine"]["cpu_s"] / by["raw"]["cpu_s"], 2)
        if "engine" in by and "script" in by:
            entry["script_over_engine_wall"] = round(by["script"]["wall_s"] / by["engine"]["wall_s"], 2)
        entry.update(refresh_ratios(by))
        out.append(entry)
    return out


def refresh_ratios(by: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """noop/diff (wall, CPU) and one_pct over its budget (the diff + 2 x 1% of the full run's wall), each the
    median of the rounds' own ratios; the targets are 1.5x and 1.0x."""
    out: dict[str, Any] = {}
    diffs = _walls(by.get("diff"))
    if "noop" in by and diffs:
        noop = _walls(by["noop"])
        out["noop_over_diff_wall"] = _median_ratio(noop, diffs)
        out["noop_over_diff_cpu"] = round(by["noop"]["cpu_s"] / max(by["diff"]["cpu_s"], 1e-3), 2)
    if "one_pct" in by and diffs and "full" in by:
        one_pct = _walls(by["one_pct"])
        share = 2 * 0.01 * by["full"]["wall_s"]
        out["one_pct_budget_s"] = round(statistics.median(diffs) + share, 2)
        out["one_pct_over_budget"] = _median_ratio(one_pct, [d + share for d in diffs])
    return out


def _walls(r: dict[str, Any] | None) -> list[float]:
    if r is None:
        return []
    return list(r.get("walls_s") or [r["wall_s"]])


def _median_ratio(a: list[float], b: list[float]) -> float:
    """The median of a[i] / b[i] over the rounds both have (each round's things ran back to back)."""
    return round(statistics.median(x / y for x, y in zip(a, b, strict=False) if y > 0), 2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backends", nargs="+", choices=["duckdb", "postgres"], default=["duckdb", "postgres"])
    parser.add_argument("--rows", type=int, nargs="+", default=[250_000, 1_000_000, 5_000_000])
    parser.add_argument("--things", nargs="+", choices=THINGS, default=list(DEFAULT_THINGS))
    parser.add_argument("--repeat", type=int, default=1, help="runs of each thing; the median run (by wall) is shown")
    parser.add_argument("--json", type=Path, default=None, help="write every result (and the ratios) here")
    parser.add_argument("--work", type=Path, default=None, help="work directory (default: a temporary one)")
    parser.add_argument(
        "--duckdb-memory-limit",
        default=None,
        help="the engine's DuckDB profile gets settings: {memory_limit: ...} (default: the adapter's own cap)",
    )
    parser.add_argument(
        "--dup-share",
        type=float,
        nargs="+",
        default=[0.0],
        help="share of source rows whose inputs repeat another row's (asked once); several values: one source each",
    )
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        st.child(args.child)
        return
    # On SIGTERM, unwind: the finally blocks stop the emulators and drop the PostgreSQL schemas.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    work = args.work or Path(tempfile.mkdtemp(prefix="sf-bench-pipeline-"))
    work.mkdir(parents=True, exist_ok=True)
    print("engine: sixtyfour_sync.run with SixtyfourClient(..., limiter=SubmissionLimiter(limit=10_000));")
    print("emulator: its own process, --job-seconds 0, no rate limits; CPU and RSS are each process's own.")
    print(HEADER, flush=True)
    results: list[dict[str, Any]] = []
    try:
        for backend in args.backends:
            for rows, dup in [(r, d) for r in sorted(args.rows) for d in args.dup_share]:
                source = make_source(backend, rows, work, dup)
                try:
                    refresh = [t for t in st.REFRESH_THINGS if t in args.things]
                    if refresh:
                        results += measure_refresh(refresh, backend, rows, source, work, args)
                        if args.json:
                            _write(args.json, results)
                    for thing in (t for t in args.things if t not in st.REFRESH_THINGS):
                        if dup and thing in ("raw", "script"):
                            continue  # they ask every row: the shared inputs change nothing for them
                        runs = [
                            measure(thing, backend, rows, source, work, args.duckdb_memory_limit)
                            for _ in range(args.repeat)
                        ]
                        for x in runs:
                            x["dup_share"] = dup
                        r = sorted(runs, key=lambda x: x["wall_s"])[len(runs) // 2]  # the median run
                        if len(runs) > 1:
                            r["walls_s"] = [x["wall_s"] for x in runs]
                        results.append(r)
                        print(_fmt(r), flush=True)
                        if args.json:
                            _write(args.json, results)
                finally:
                    drop_source(source)
    finally:
        if args.work is None:
            shutil.rmtree(work, ignore_errors=True)
    print()
    for entry in ratios(results):
        parts = [f"{k} {v}{'' if k.endswith('_s') else 'x'}" for k, v in entry.items() if k not in ("backend", "rows")]
        if not parts:
            continue
        print(f"{entry['backend']:8} {entry['rows']:>9,}  " + ", ".join(parts))
    if args.json:
        _write(args.json, results)


def _write(path: Path, results: list[dict[str, Any]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    meta = {
        "measured_at": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "cpus": os.cpu_count(),
        "python": sys.version.split()[0],
        "engine_limiter": "SubmissionLimiter(limit=10_000)",
        "emulator": "--job-seconds 0 --rate-limit-per-minute 0 --request-limit-per-minute 0",
        "poll_seconds": POLL_SECONDS,
    }
    path.write_text(json.dumps({"meta": meta, "results": results, "ratios": ratios(results)}, indent=2) + "\n")


if __name__ == "__main__":
    main()
