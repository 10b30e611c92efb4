"""The benchmarks still run end to end (a few thousand rows; nothing here is timed or compared).

bench/pipeline.py and bench/floors.py are how the performance claims in docs/benchmarks.md are measured;
a benchmark that no longer runs cannot be rerun by anyone. Each is started as a user would start it, in
a process of its own, against its own emulator and a fresh DuckDB file (PostgreSQL for floors when up).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.services import require_service

ROOT = Path(__file__).resolve().parents[1]
ROWS = 3_000


def _bench(script: str, *args: str, out: Path) -> dict:
    done = subprocess.run(
        [sys.executable, str(ROOT / "bench" / script), *args, "--json", str(out)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(out.read_text())


def test_pipeline_measures_raw_and_engine_on_duckdb(tmp_path: Path) -> None:
    data = _bench(
        "pipeline.py", "--backends", "duckdb", "--rows", str(ROWS), "--things", "raw", "engine",
        "--work", str(tmp_path / "work"), out=tmp_path / "p.json",
    )  # fmt: skip
    by_thing = {r["thing"]: r for r in data["results"]}
    assert by_thing["raw"]["rows_merged"] == ROWS
    engine = by_thing["engine"]
    assert engine["exit_code"] == 0 and engine["rows_merged"] == ROWS and engine["jobs"] >= 1
    assert engine["cpu_s"] > 0 and engine["peak_rss_mb"] > 0 and engine["emulator_cpu_s"] > 0
    (ratio,) = data["ratios"]
    assert ratio["engine_over_raw_cpu"] > 0


@pytest.mark.parametrize("backend", ["duckdb", "postgres"])
def test_floors_add_the_engines_own_work_to_the_raw_stages(tmp_path: Path, backend: str) -> None:
    if backend == "postgres":
        require_service("postgres", "127.0.0.1", 5432)
    data = _bench("floors.py", "--backends", backend, "--rows", str(ROWS), "--repeat", "1", out=tmp_path / "f.json")
    parts, floors = data[backend]["parts"], data[backend]["floors"]
    assert {
        "raw",
        "raw.extract",
        "raw.parse",
        "raw.upsert",
        "select_plain",
        "select_engine",
        "http",
        "keyed_write",
    } <= set(parts)
    cpu = floors["cpu_s"]
    assert cpu["floor"] >= cpu["raw"] > 0
    assert cpu["floor"] == pytest.approx(
        cpu["raw"] + cpu["hashes_and_key_count"] + cpu["http"] + cpu["keyed_write"], abs=0.01
    )
