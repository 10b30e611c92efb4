"""The hand-written alternative to sixtyfour-sync: what an analytics engineer would write in an afternoon.

    python bench/script_pandas.py --db-url postgresql+psycopg://postgres@127.0.0.1/test --schema bench \\
        --api-url http://127.0.0.1:8064 --api-key KEY

Read the source with pandas in chunks of 100,000 rows (the API's file limit), write each chunk as JSON
lines, submit it (multipart with the config as JSON and an Idempotency-Key), poll every job, download
each final CSV and read it with pandas, then load everything into a staging table with ``to_sql`` and
merge it into the target with one ``UPDATE ... FROM`` plus an ``INSERT`` of the keys that are missing.
No ledger, no resume, no budget: if it dies half way, it pays again next time.

DuckDB goes through SQLAlchemy too (``duckdb:///path``, duckdb_engine), so both backends run the same
code. With SQLAlchemy 2.1 duckdb_engine cannot reflect tables, which ``to_sql(if_exists="replace")``
needs, so the script drops the staging table itself first.
"""

from __future__ import annotations

import argparse
import io
import json
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import pandas as pd
import sqlalchemy as sa

KEY = "lead_id"
COLUMNS = ["first_name", "last_name", "company", "domain", "city"]
STRUCT: dict[str, Any] = {
    "email": "Work email",
    "title": "Job title",
    "employee_count": {"description": "Employees", "type": "int"},
}
FIELDS = ["email", "title", "employee_count"]
TYPES = {"email": "TEXT", "title": "TEXT", "employee_count": "BIGINT"}
CHUNK_ROWS = 100_000


def submit_all(engine: sa.Engine, http: httpx.Client, source: str, work: Path, run_id: str) -> list[str]:
    """Read the source in chunks, write each as JSONL and submit it; return the task ids."""
    config = json.dumps({"struct": STRUCT, "field_confidence": True, "columns": COLUMNS})
    tasks = []
    query = f"SELECT {KEY}, {', '.join(COLUMNS)} FROM {source}"
    for i, chunk in enumerate(pd.read_sql(query, engine, chunksize=CHUNK_ROWS)):
        path = work / f"part-{i:04d}.jsonl"
        chunk.to_json(path, orient="records", lines=True)
        with path.open("rb") as fh:
            response = http.post(
                "/bulk-intelligence/people",
                files={"file": (path.name, fh, "application/x-ndjson")},
                data={"config": config},
                headers={"Idempotency-Key": f"{run_id}-{i}"},
            )
        response.raise_for_status()
        tasks.append(response.json()["task_id"])
    return tasks


def wait_and_download(http: httpx.Client, task_id: str, poll_seconds: float) -> pd.DataFrame:
    """Poll one job until it completes, then read its final CSV."""
    while True:
        status = http.get(f"/job-status/{task_id}").json()
        state = status["status"].lower()
        if state == "completed":
            break
        if state in ("failed", "cancelled", "canceled", "terminated", "timed_out"):
            raise RuntimeError(f"job {task_id} {state}: {status.get('error')}")
        time.sleep(poll_seconds)
    final = max(status["results"], key=lambda r: r["block_number"])
    response = http.get(final["download_url"])
    response.raise_for_status()
    return pd.read_csv(io.BytesIO(response.content))


def merge(engine: sa.Engine, enriched: pd.DataFrame, target: str, staging: str) -> None:
    """Stage the results with to_sql, then one UPDATE ... FROM and an INSERT of the missing keys."""
    owned = [*FIELDS, *[f"{f}_confidence" for f in FIELDS]]
    with engine.begin() as con:
        con.exec_driver_sql(f"DROP TABLE IF EXISTS {staging}")
    enriched[[KEY, *owned]].to_sql(staging.split(".")[-1], engine, schema=_schema(staging), index=False)
    columns = ", ".join([f"{KEY} BIGINT PRIMARY KEY", *[f"{f} {TYPES[f]}" for f in FIELDS]])
    columns += "".join(f", {f}_confidence BIGINT" for f in FIELDS)
    with engine.begin() as con:
        con.exec_driver_sql(f"CREATE TABLE IF NOT EXISTS {target} ({columns})")
        sets = ", ".join(f"{c} = s.{c}" for c in owned)
        con.exec_driver_sql(f"UPDATE {target} AS t SET {sets} FROM {staging} AS s WHERE t.{KEY} = s.{KEY}")
        con.exec_driver_sql(
            f"INSERT INTO {target} ({KEY}, {', '.join(owned)}) "
            f"SELECT s.{KEY}, {', '.join(f's.{c}' for c in owned)} FROM {staging} AS s "
            f"WHERE NOT EXISTS (SELECT 1 FROM {target} AS t WHERE t.{KEY} = s.{KEY})"
        )
        con.exec_driver_sql(f"DROP TABLE {staging}")


def _schema(name: str) -> str | None:
    return name.split(".")[0] if "." in name else None


def run(
    db_url: str,
    api_url: str,
    api_key: str,
    *,
    schema: str | None = None,
    source: str = "leads",
    target: str = "leads_script",
    work: Path = Path("script-work"),
    poll_seconds: float = 5.0,
) -> int:
    """The whole script; returns the number of rows merged."""
    prefix = f"{schema}." if schema else ""
    engine = sa.create_engine(db_url)
    work.mkdir(parents=True, exist_ok=True)
    with httpx.Client(base_url=api_url, headers={"x-api-key": api_key}, timeout=300) as http:
        tasks = submit_all(engine, http, prefix + source, work, uuid.uuid4().hex)
        results = [wait_and_download(http, task_id, poll_seconds) for task_id in tasks]
    enriched = pd.concat(results, ignore_index=True)
    merge(engine, enriched, prefix + target, prefix + "leads_script_staging")
    engine.dispose()
    return len(enriched)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--db-url", required=True, help="SQLAlchemy URL (duckdb:///file.duckdb or postgresql+psycopg://...)"
    )
    parser.add_argument("--schema", default=None)
    parser.add_argument("--api-url", required=True)
    parser.add_argument("--api-key", required=True)
    parser.add_argument("--work", type=Path, default=Path("script-work"))
    parser.add_argument("--poll-seconds", type=float, default=5.0)
    args = parser.parse_args()
    rows = run(
        args.db_url,
        args.api_url,
        args.api_key,
        schema=args.schema,
        work=args.work,
        poll_seconds=args.poll_seconds,
    )
    print(f"merged {rows:,} rows")


if __name__ == "__main__":
    main()
