"""The measured things of bench/pipeline.py, each run in a child process of its own.

- ``raw``: the physical floor of the pipeline's stages on the same data: extract (DuckDB ``COPY ... TO``
  JSON lines, PostgreSQL ``COPY (SELECT row_to_json(t) ...) TO STDOUT``), parse (``pyarrow.csv.read_csv``
  of the result files, downloaded beforehand), upsert (DuckDB ``UPDATE ... FROM`` a registered Arrow
  table; PostgreSQL ``COPY`` into a TEMP table + ``ANALYZE`` + merge-join ``UPDATE ... FROM``) into a
  copy of the source keys prepared before the clock starts.
- ``script``: bench/script_pandas.py against the same emulator.
- ``engine``: ``sixtyfour_sync.run`` with the client's 10-submissions-a-minute limiter relaxed.
- ``refresh``: the engine again, measured on a second run after every source row changed (an update of the
  whole target).
- ``full``, ``noop``, ``one_pct``, ``diff``: the scheduled refresh. ``full`` is a first engine run that enriches
  the source (its wall is what 1% of a full run is measured against); then, on that enriched source and
  ledger: ``noop`` a run with nothing changed, ``one_pct`` a run after 1% of the rows' inputs changed
  (``city`` of every hundredth key gains a letter, before the clock starts), and ``diff`` the plain SQL diff
  of the same data by hand (every row's inputs hashed as the engine hashes them, LEFT JOIN the target on
  the key, the rows whose stored input hash differs or that have no target row counted), through the
  native driver.

Each child reports wall and CPU seconds (its own rusage, all threads), its peak RSS (``VmHWM``) and
the seconds during which at least one HTTP request to the API was in flight (any thread, from the
request until its body was read): ``rows / (wall - api)`` is the rate excluding API waits.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import resource
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx

BENCH = Path(__file__).resolve().parent
API_KEY = "bench-key"
PG_DSN = "host=127.0.0.1 port=5432 user=postgres dbname=test"
PG_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
COLUMNS = ["first_name", "last_name", "company", "domain", "city"]
FIELDS = ["email", "title", "employee_count"]
OWNED = [*FIELDS, *[f"{f}_confidence" for f in FIELDS]]
#: The source: lead ``i`` has the inputs of input id ``j``, each input id its own inputs (the domain tells them
#: apart). Leads up to ``distinct`` have their own; the others (a share of ``1 - distinct / rows``, see
#: :func:`source_select`) repeat the inputs of one of those, spread over the whole table.
SOURCE_SELECT = """
    SELECT i AS lead_id,
           ['Ada','Grace','Alan','Edsger','Barbara','Donald','Frances','Ken'][1 + j % 8] AS first_name,
           ['Lovelace','Hopper','Turing','Dijkstra','Liskov','Knuth'][1 + (j * 7) % 6] AS last_name,
           'Company ' || (j % 5000) AS company,
           'company' || j || '.com' AS domain,
           ['Austin','Berlin','Paris','Tokyo'][1 + j % 4] AS city
    FROM (SELECT i, CASE WHEN i <= {distinct} THEN i ELSE 1 + (i * 7919) % {distinct} END AS j
          FROM range(1, {rows} + 1) t(i)) s
"""
PG_SOURCE_SELECT = """
    SELECT i::bigint AS lead_id,
           (ARRAY['Ada','Grace','Alan','Edsger','Barbara','Donald','Frances','Ken'])[1 + j % 8] AS first_name,
           (ARRAY['Lovelace','Hopper','Turing','Dijkstra','Liskov','Knuth'])[1 + (j * 7) % 6] AS last_name,
           'Company ' || (j % 5000) AS company,
           'company' || j || '.com' AS domain,
           (ARRAY['Austin','Berlin','Paris','Tokyo'])[1 + j % 4] AS city
    FROM (SELECT i, CASE WHEN i <= {distinct} THEN i ELSE 1 + (i::bigint * 7919) % {distinct} END AS j
          FROM generate_series(1, {rows}) AS t(i)) s
"""
#: Things that run the engine (``full``, ``noop``, ``one_pct``: on the source a ``full`` run enriched).
ENGINE_THINGS = ("engine", "refresh", "full", "noop", "one_pct")
#: The scheduled refresh's things, measured on one enriched source and ledger (see bench/pipeline.py).
REFRESH_THINGS = ("noop", "one_pct", "diff")


def source_select(rows: int, dup_share: float = 0.0, *, postgres: bool = False) -> str:
    """The source query of ``rows`` leads, ``dup_share`` of them sharing their inputs with another lead."""
    distinct = max(1, round(rows * (1.0 - dup_share)))
    return (PG_SOURCE_SELECT if postgres else SOURCE_SELECT).format(rows=rows, distinct=distinct)


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


class ApiClock:
    """Time with at least one HTTP request in flight, whatever the thread (a union of intervals)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._active = 0
        self._since = 0.0
        self.seconds = 0.0

    def enter(self) -> None:
        with self._lock:
            if self._active == 0:
                self._since = time.perf_counter()
            self._active += 1

    def leave(self) -> None:
        with self._lock:
            self._active -= 1
            if self._active == 0:
                self.seconds += time.perf_counter() - self._since

    def install(self) -> None:
        """Wrap httpx's transport so every request (and the reading of its body) is timed."""
        clock = self
        original = httpx.HTTPTransport.handle_request

        class _Timed(httpx.SyncByteStream):
            def __init__(self, inner: Any) -> None:
                self._inner = inner
                self._open = True

            def __iter__(self) -> Iterator[bytes]:
                yield from self._inner

            def close(self) -> None:
                try:
                    self._inner.close()
                finally:
                    if self._open:
                        self._open = False
                        clock.leave()

        def handle_request(transport: httpx.HTTPTransport, request: httpx.Request) -> httpx.Response:
            clock.enter()
            try:
                response = original(transport, request)
            except BaseException:
                clock.leave()
                raise
            response.stream = _Timed(response.stream)
            return response

        httpx.HTTPTransport.handle_request = handle_request  # type: ignore[method-assign]


def _cpu() -> float:
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


def vm_hwm_mb(pid: int | str = "self") -> float | None:
    """The peak RSS of a process's current address space (``VmHWM``), in MB; None once it is gone.

    Not ``ru_maxrss``: a spawned child's ``ru_maxrss`` also counts the parent's memory it ran in before
    ``exec``, so every child of a large parent would look as large.
    """
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        return None
    return None


def _peak_mb() -> float:
    peak = vm_hwm_mb()
    return peak if peak is not None else round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


# --------------------------------------------------------------------------------------------- raw


def _raw_extract(spec: dict[str, Any], out: Path) -> None:
    select = f"SELECT lead_id, {', '.join(COLUMNS)} FROM {spec['source']}"
    if spec["backend"] == "duckdb":
        import duckdb

        con = duckdb.connect(spec["db"])
        con.execute(f"COPY ({select}) TO '{out / 'extract.jsonl'}' (FORMAT json)")
        con.close()
        return
    import psycopg

    copy_sql = f"COPY (SELECT row_to_json(t) FROM ({select}) t) TO STDOUT"
    with (
        psycopg.connect(PG_DSN) as con,
        con.cursor() as cur,
        (out / "extract.jsonl").open("wb") as fh,
        cur.copy(copy_sql) as copy,
    ):
        for block in copy:
            fh.write(block)


def _raw_parse(files: list[str]) -> Any:
    import pyarrow as pa
    import pyarrow.csv as pacsv

    tables = []
    for f in files:
        table = pacsv.read_csv(
            f,
            parse_options=pacsv.ParseOptions(newlines_in_values=True),
            convert_options=pacsv.ConvertOptions(strings_can_be_null=True, include_columns=["lead_id", *OWNED]),
        )
        tables.append(table)
    return pa.concat_tables(tables)


def _raw_prepare_target(spec: dict[str, Any]) -> None:
    cols = "lead_id, " + ", ".join(
        f"NULL::{'BIGINT' if c == 'employee_count' or c.endswith('_confidence') else 'VARCHAR'} AS {c}" for c in OWNED
    )
    if spec["backend"] == "duckdb":
        import duckdb

        con = duckdb.connect(spec["db"])
        con.execute(f"CREATE OR REPLACE TABLE leads_raw AS SELECT {cols} FROM leads")
        con.close()
        return
    import psycopg

    schema = spec["schema"]
    with psycopg.connect(PG_DSN, autocommit=True) as con:
        con.execute(f'DROP TABLE IF EXISTS "{schema}".leads_raw')
        con.execute(f'CREATE TABLE "{schema}".leads_raw AS SELECT {cols} FROM "{schema}".leads')
        con.execute(f'ALTER TABLE "{schema}".leads_raw ADD PRIMARY KEY (lead_id)')
        con.execute(f'VACUUM ANALYZE "{schema}".leads_raw')


def _raw_upsert(spec: dict[str, Any], table: Any) -> None:
    sets = ", ".join(f"{c} = s.{c}" for c in OWNED)
    if spec["backend"] == "duckdb":
        import duckdb

        con = duckdb.connect(spec["db"])
        con.register("enriched", table)
        con.execute(f"UPDATE leads_raw AS t SET {sets} FROM enriched AS s WHERE t.lead_id = s.lead_id")
        con.close()
        return
    import psycopg
    import pyarrow.csv as pacsv

    schema = spec["schema"]
    buf = io.BytesIO()
    pacsv.write_csv(table, buf)
    with psycopg.connect(PG_DSN) as con, con.cursor() as cur:
        types = ", ".join(
            f"{c} {'bigint' if c == 'employee_count' or c.endswith('_confidence') else 'text'}" for c in OWNED
        )
        cur.execute(f"CREATE TEMP TABLE stage (lead_id bigint, {types}) ON COMMIT DROP")
        with cur.copy("COPY stage FROM STDIN (FORMAT csv, HEADER)") as copy:
            copy.write(buf.getbuffer())
        cur.execute("ANALYZE stage")
        cur.execute("SET LOCAL enable_hashjoin = off")
        cur.execute(f'UPDATE "{schema}".leads_raw AS t SET {sets} FROM stage AS s WHERE t.lead_id = s.lead_id')


def measure_raw(spec: dict[str, Any]) -> dict[str, Any]:
    """The three raw stages, each timed; the target is prepared before the clock starts."""
    out = Path(spec["work"])
    _raw_prepare_target(spec)
    stages: dict[str, dict[str, float]] = {}
    table: Any = None
    for name in ("extract", "parse", "upsert"):
        w0, c0 = time.perf_counter(), _cpu()
        if name == "extract":
            _raw_extract(spec, out)
        elif name == "parse":
            table = _raw_parse(spec["result_files"])
        else:
            _raw_upsert(spec, table)
        stages[name] = {"wall_s": round(time.perf_counter() - w0, 3), "cpu_s": round(_cpu() - c0, 3)}
    (out / "extract.jsonl").unlink(missing_ok=True)
    return {
        "wall_s": round(sum(s["wall_s"] for s in stages.values()), 3),
        "cpu_s": round(sum(s["cpu_s"] for s in stages.values()), 3),
        "peak_rss_mb": _peak_mb(),
        "api_s": 0.0,
        "stages": stages,
        "rows_merged": table.num_rows if table is not None else 0,
    }


# --------------------------------------------------------------------------------------------- script, engine


def measure_script(spec: dict[str, Any], clock: ApiClock) -> dict[str, Any]:
    """bench/script_pandas.py, called in this process."""
    sys.path.insert(0, str(BENCH))
    import script_pandas

    url = f"duckdb:///{spec['db']}" if spec["backend"] == "duckdb" else PG_URL
    w0, c0 = time.perf_counter(), _cpu()
    merged = script_pandas.run(
        url,
        spec["url"],
        API_KEY,
        schema=spec.get("schema"),
        work=Path(spec["work"]) / "script",
        poll_seconds=spec["poll_seconds"],
    )
    return {
        "wall_s": round(time.perf_counter() - w0, 3),
        "cpu_s": round(_cpu() - c0, 3),
        "peak_rss_mb": _peak_mb(),
        "api_s": round(clock.seconds, 3),
        "rows_merged": merged,
    }


def write_project(spec: dict[str, Any]) -> Path:
    """A sixtyfour-sync project for the engine: the model above, a profile for the backend."""
    project = Path(spec["work"]) / "project"
    (project / "models").mkdir(parents=True, exist_ok=True)
    # ``engine_unstored``: the engine with the answer store off, to show what storing the answers costs
    (project / "models" / "bench.yml").write_text(
        MODEL + ("    reuse: false\n" if spec.get("thing") == "engine_unstored" else "")
    )
    if spec["backend"] == "duckdb":
        profile = f"      type: duckdb\n      path: {spec['db']}\n"
        if spec.get("duckdb_memory_limit"):
            profile += f"      settings:\n        memory_limit: {spec['duckdb_memory_limit']}\n"
    else:
        profile = (
            "      type: postgres\n      host: 127.0.0.1\n      user: postgres\n      dbname: test\n"
            f"      schema: {spec['schema']}\n"
        )
    (project / "profiles.yml").write_text(f"sixtyfour:\n  target: bench\n  outputs:\n    bench:\n{profile}")
    return project


def _change_every_row(spec: dict[str, Any]) -> None:
    """Every source row's inputs change (``city`` gains a letter): the next run asks every row again."""
    if spec["backend"] == "duckdb":
        import duckdb

        con = duckdb.connect(spec["db"])
        con.execute("UPDATE leads SET city = city || 'x'")
        con.close()
        return
    import psycopg

    with psycopg.connect(PG_DSN, autocommit=True) as con:
        con.execute(f"UPDATE {spec['source']} SET city = city || 'x'")
        con.execute(f"VACUUM ANALYZE {spec['source']}")


def _change_one_pct(spec: dict[str, Any]) -> None:
    """1% of the source rows' inputs change (``city`` of every hundredth key gains a letter; again each time)."""
    if spec["backend"] == "duckdb":
        import duckdb

        con = duckdb.connect(spec["db"])
        con.execute("UPDATE leads SET city = city || 'x' WHERE lead_id % 100 = 0")
        con.close()
        return
    import psycopg

    with psycopg.connect(PG_DSN, autocommit=True) as con:
        con.execute(f"UPDATE {spec['source']} SET city = city || 'x' WHERE lead_id % 100 = 0")
        con.execute(f"VACUUM ANALYZE {spec['source']}")


def diff_sql(spec: dict[str, Any]) -> str:
    """The plain diff: hash every source row's inputs (as the engine does), LEFT JOIN the target on the key,
    count the rows that have no target row or whose stored input hash differs."""
    from sixtyfour_sync.warehouse.sql.select import row_hash_sql

    names = _names(spec["backend"])
    target = "leads_enriched" if spec["backend"] == "duckdb" else f'"{spec["schema"]}".leads_enriched'
    hashed = f"SELECT c.lead_id, {row_hash_sql(names, COLUMNS, alias='c')} AS h FROM {spec['source']} c"
    return (
        f"SELECT COUNT(*) FROM ({hashed}) s LEFT JOIN {target} t ON t.lead_id = s.lead_id "
        "WHERE t.lead_id IS NULL OR t._sixtyfour_input_hash IS DISTINCT FROM s.h"
    )


def _names(backend: str) -> Any:
    """The dialect's naming rules, as the adapter for ``backend`` builds them (no connection)."""
    from sixtyfour_sync.warehouse.dialect import DUCKDB, POSTGRES
    from sixtyfour_sync.warehouse.sql.identifiers import Names

    return Names(DUCKDB if backend == "duckdb" else POSTGRES)


def measure_diff(spec: dict[str, Any]) -> dict[str, Any]:
    """The plain SQL diff of the enriched source against its target, through the native driver."""
    sql = diff_sql(spec)
    if spec["backend"] == "duckdb":
        import duckdb

        w0, c0 = time.perf_counter(), _cpu()
        con = duckdb.connect(spec["db"])
        row = con.execute(sql).fetchone()
        con.close()
    else:
        import psycopg

        w0, c0 = time.perf_counter(), _cpu()
        with psycopg.connect(PG_DSN) as pg:
            row = pg.execute(sql).fetchone()
    wall, cpu = time.perf_counter() - w0, _cpu() - c0
    return {
        "wall_s": round(wall, 3),
        "cpu_s": round(cpu, 3),
        "peak_rss_mb": _peak_mb(),
        "api_s": 0.0,
        "rows_differ": int(row[0]) if row else None,
    }


def _reset_peak_rss() -> None:
    """Start ``VmHWM`` again from the current RSS (Linux: ``5`` to ``/proc/self/clear_refs``)."""
    with contextlib.suppress(OSError):
        Path("/proc/self/clear_refs").write_text("5")


def measure_engine(spec: dict[str, Any], clock: ApiClock) -> dict[str, Any]:
    """``sixtyfour_sync.run`` through the Python API, the submission limiter relaxed to 10,000 a minute.

    ``refresh``: a first run (not measured), then every source row changed, then the measured run, which
    asks every row again and updates the whole target (peak RSS counted from the end of the first run).
    """
    import sixtyfour_sync
    from sixtyfour_sync.api import SixtyfourClient
    from sixtyfour_sync.api.ratelimit import SubmissionLimiter

    project = write_project(spec)
    client = SixtyfourClient(API_KEY, base_url=spec["url"], limiter=SubmissionLimiter(limit=10_000))
    state_dir = Path(spec.get("state_dir") or Path(spec["work"]) / "state")
    if spec["thing"] == "one_pct":
        _change_one_pct(spec)
    if spec["thing"] == "refresh":
        first = sixtyfour_sync.run(project, client=client, state_dir=state_dir)
        if first.exit_code != 0:
            raise RuntimeError(f"the first run failed: {first.to_dict()}")
        _change_every_row(spec)
        _reset_peak_rss()
        clock.seconds = 0.0
    w0, c0 = time.perf_counter(), _cpu()
    result = sixtyfour_sync.run(project, client=client, state_dir=state_dir)
    wall, cpu = time.perf_counter() - w0, _cpu() - c0
    client.close()
    sync = result.syncs[0]
    return {
        "wall_s": round(wall, 3),
        "cpu_s": round(cpu, 3),
        "peak_rss_mb": _peak_mb(),
        "api_s": round(clock.seconds, 3),
        "exit_code": result.exit_code,
        "rows_sent": sync.rows_sent,
        "rows_merged": sync.rows_merged,
        "jobs": len(sync.jobs),
    }


def preimport(spec: dict[str, Any]) -> None:
    """Import what the thing uses before its clock starts: start-up is not work per row, and every thing is
    measured the same way (the script's own imports were never in its time)."""
    import importlib

    driver = "duckdb" if spec["backend"] == "duckdb" else "psycopg"
    modules = {
        "raw": [driver, "pyarrow.csv"],
        "script": [driver, "pandas", "sqlalchemy", "duckdb_engine" if driver == "duckdb" else "psycopg"],
        "engine": [driver, "sixtyfour_sync.commands", "sixtyfour_sync.engine.runner"],
        "refresh": [driver, "sixtyfour_sync.commands", "sixtyfour_sync.engine.runner"],
        "diff": [driver, "sixtyfour_sync.warehouse.sql.select", "sixtyfour_sync.warehouse.sql.identifiers"],
    }.get(spec["thing"], [driver, "sixtyfour_sync.commands", "sixtyfour_sync.engine.runner"])
    if spec["thing"] in ENGINE_THINGS:
        modules.append(f"sixtyfour_sync.warehouse.{'duckdb' if driver == 'duckdb' else 'postgres'}")
    for name in modules:
        importlib.import_module(name)


def child(spec_json: str) -> None:
    """Run one measured thing and print its result as the last line of JSON."""
    spec = json.loads(spec_json)
    os.environ["SIXTYFOUR_SYNC_POLL_INTERVAL"] = str(spec["poll_seconds"])
    preimport(spec)
    clock = ApiClock()
    clock.install()
    if spec["thing"] == "raw":
        result = measure_raw(spec)
    elif spec["thing"] == "script":
        result = measure_script(spec, clock)
    elif spec["thing"] == "diff":
        result = measure_diff(spec)
    else:
        result = measure_engine(spec, clock)
    print(json.dumps(result))
