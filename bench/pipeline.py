"""The whole pipeline at scale: rows/s and peak memory of `run` against the emulator.

    python bench/pipeline.py --rows 100000 1000000 [--backend duckdb|postgres] [--out bench/out/pipeline.json]

For each row count: a fresh warehouse with that many leads, the emulator in its own process (so its memory is
not counted), and `sixtyfour-sync run` in a child process whose peak RSS is read from the kernel
(its own ``ru_maxrss``). Memory must not grow with the row count: the engine holds one file (at most 100,000 rows) at a
time. The API's own pace (10 files a minute) is the real limit in production; the emulator's jobs take
``--job-seconds`` here, so the numbers measure the engine, not the API.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MODEL = """\
syncs:
  - name: bench_leads
    endpoint: people
    source:
      table: leads
      key: lead_id
      columns: [first_name, last_name, company, domain, city]
    struct:
      email: Work email
      title: Job title
      employee_count: {description: Employees, type: int}
    field_confidence: true
    target:
      table: leads_enriched
    chunk_rows: 100000
"""


def _make_duckdb(project: Path, rows: int) -> None:
    import duckdb

    con = duckdb.connect(str(project / "wh.duckdb"))
    con.execute(
        f"""
        CREATE TABLE leads AS
        SELECT i AS lead_id,
               ['Ada','Grace','Alan','Edsger','Barbara','Donald','Frances','Ken'][1 + i % 8] AS first_name,
               ['Lovelace','Hopper','Turing','Dijkstra','Liskov','Knuth'][1 + (i * 7) % 6] AS last_name,
               'Company ' || (i % 5000) AS company,
               'company' || (i % 5000) || '.com' AS domain,
               ['Austin','Berlin','Paris','Tokyo'][1 + i % 4] AS city
        FROM range(1, {rows + 1}) t(i)
        """
    )
    con.close()
    (project / "profiles.yml").write_text(
        "sixtyfour:\n  target: dev\n  outputs:\n    dev:\n      type: duckdb\n      path: wh.duckdb\n"
        + os.environ.get("BENCH_DUCKDB_EXTRA", "")
    )


def _make_postgres(project: Path, rows: int) -> str:
    import psycopg

    schema = f"bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect("host=127.0.0.1 user=postgres dbname=test", autocommit=True) as con:
        con.execute(f'CREATE SCHEMA "{schema}"')
        con.execute(
            f"""
            CREATE TABLE "{schema}".leads AS
            SELECT i::bigint AS lead_id,
                   (ARRAY['Ada','Grace','Alan','Edsger','Barbara','Donald','Frances','Ken'])[1 + i % 8] AS first_name,
                   (ARRAY['Lovelace','Hopper','Turing','Dijkstra','Liskov','Knuth'])[1 + (i * 7) % 6] AS last_name,
                   'Company ' || (i % 5000) AS company,
                   'company' || (i % 5000) || '.com' AS domain,
                   (ARRAY['Austin','Berlin','Paris','Tokyo'])[1 + i % 4] AS city
            FROM generate_series(1, {rows}) AS t(i)
            """
        )
    (project / "profiles.yml").write_text(
        "sixtyfour:\n  target: pg\n  outputs:\n    pg:\n      type: postgres\n      host: 127.0.0.1\n"
        f"      user: postgres\n      dbname: test\n      schema: {schema}\n"
    )
    return schema


def _drop_postgres(schema: str) -> None:
    import psycopg

    with psycopg.connect("host=127.0.0.1 user=postgres dbname=test", autocommit=True) as con:
        con.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


def _start_emulator(job_seconds: float) -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "sixtyfour_sync", "emulator", "--port", "0", "--api-key", "bench-key",
         "--job-seconds", str(job_seconds), "--rate-limit-per-minute", "1000", "--failure-rate", "0.05"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert proc.stdout is not None
    deadline = time.time() + 30
    while time.time() < deadline:
        line = proc.stdout.readline()
        m = re.search(r"(http://127\.0\.0\.1:\d+)", line)
        if m:
            return proc, m.group(1)
    proc.kill()
    raise RuntimeError("the emulator did not start")


def _child(project: str, url: str) -> None:
    from sixtyfour_sync.engine import api

    started = time.perf_counter()
    result = api.run(project, api_key="bench-key", api_url=url)
    elapsed = time.perf_counter() - started
    s = result.syncs[0]
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"seconds": elapsed, "exit_code": result.exit_code, "rows_sent": s.rows_sent,
                      "rows_merged": s.rows_merged, "jobs": len(s.jobs), "peak_rss_mb": round(peak_kb / 1024, 1)}))


def measure(rows: int, backend: str, job_seconds: float) -> dict[str, object]:
    project = Path(tempfile.mkdtemp(prefix="sf-bench-"))
    (project / "models").mkdir()
    (project / "models" / "bench.yml").write_text(MODEL)
    schema = _make_postgres(project, rows) if backend == "postgres" else None
    if backend == "duckdb":
        _make_duckdb(project, rows)
    emulator, url = _start_emulator(job_seconds)
    try:
        env = {**os.environ, "SIXTYFOUR_SYNC_POLL_INTERVAL": "0.2"}
        out = subprocess.run([sys.executable, __file__, "--child", str(project), url], env=env, capture_output=True,
                             text=True, check=False)
        if out.returncode != 0:
            raise RuntimeError(out.stderr[-2000:])
        data = json.loads(out.stdout.strip().splitlines()[-1])
    finally:
        emulator.terminate()
        emulator.wait(timeout=30)
        if schema:
            _drop_postgres(schema)
    data.update({
        "backend": backend,
        "rows": rows,
        "rows_per_second": round(rows / data["seconds"]),
        "job_seconds": job_seconds,
    })
    return data


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--backend", choices=["duckdb", "postgres"], default="duckdb")
    parser.add_argument("--job-seconds", type=float, default=1.0)
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--child", nargs=2, metavar=("PROJECT", "URL"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        _child(*args.child)
        return
    results = []
    for n in sorted(args.rows):
        r = measure(n, args.backend, args.job_seconds)
        results.append(r)
        print(f"{args.backend:9} {n:>10,} rows  {r['seconds']:7.1f} s  {r['rows_per_second']:>9,} rows/s  "
              f"peak RSS {r['peak_rss_mb']:7.1f} MB  jobs {r['jobs']}  exit {r['exit_code']}", flush=True)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    main()
