"""The local API emulator under load: upload, generate and download throughput, and its peak memory.

    python bench/emulator.py [--files 5] [--rows 100000] [--pad-bytes 0] [--json out.json]

The emulator runs in its own process (``sixtyfour-sync emulator``, jobs left running until told), so the
numbers are the server's alone. For each file, one after the other:

- **upload**: ``POST /bulk-intelligence/people`` of a JSONL file (streamed from disk by httpx), until the
  answer: multipart to disk, hashing, parsing, checks;
- **generate**: ``POST /_emulator/jobs/{id}/complete``: the output is generated and its CSV files written;
- **download**: ``/job-status`` for a fresh link, then the final CSV streamed to disk.

The emulator's peak RSS is its ``VmHWM`` just before it is stopped, its CPU seconds come from ``wait4``. Files look like
what the engine sends: a key, five text inputs and an input hash carried along; ``--pad-bytes N`` adds a text
column of about N bytes per row (``--pad-bytes 900`` makes each 100,000-row file about 100 MB).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
KEY = "bench-key"
STRUCT = {
    "email": "Work email",
    "linkedin": "LinkedIn URL",
    "title": "Job title",
    "employee_count": {"description": "Employees", "type": "int"},
    "summary": "Short bio",
}
COLUMNS = ["first_name", "last_name", "company", "domain", "city"]
MAX_FILE_BYTES = 100_000_000


def make_files(out_dir: Path, files: int, rows: int, pad_bytes: int) -> list[Path]:
    """Write ``files`` JSONL files of ``rows`` rows each with DuckDB (not timed)."""
    import duckdb

    con = duckdb.connect(":memory:")
    paths = []
    for f in range(files):
        path = out_dir / f"part-{f:03d}.jsonl"
        pad = f", repeat(md5(i::VARCHAR), {max(1, pad_bytes // 32)})[1:{pad_bytes}] AS notes" if pad_bytes else ""
        start = f * rows
        con.execute(
            f"""
            COPY (
              SELECT i AS lead_id,
                     ['Ada','Grace','Alan','Edsger','Barbara','Donald','Frances','Ken'][1 + i % 8] AS first_name,
                     ['Lovelace','Hopper','Turing','Dijkstra','Liskov','Knuth'][1 + (i * 7) % 6] AS last_name,
                     'Company ' || (i % 5000) AS company,
                     'company' || (i % 5000) || '.com' AS domain,
                     ['Austin','Berlin','Paris','Tokyo'][1 + i % 4] AS city,
                     md5(i::VARCHAR) AS _sixtyfour_input_hash{pad}
              FROM range({start}, {start + rows}) t(i)
            ) TO '{path}' (FORMAT json)
            """
        )
        size = path.stat().st_size
        if size > MAX_FILE_BYTES:
            raise SystemExit(f"{path.name} is {size:,} bytes, over the API's 100 MB limit: lower --pad-bytes")
        paths.append(path)
    con.close()
    return paths


def start_emulator(extra: list[str]) -> tuple[subprocess.Popen[str], str]:
    """Start ``sixtyfour-sync emulator`` on a free port; return the process and its URL."""
    cmd = [sys.executable, "-m", "sixtyfour_sync", "emulator", "--port", "0", "--api-key", KEY, *extra]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=ROOT)
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


def vm_hwm_mb(pid: int) -> float | None:
    """Peak RSS of the process's address space (``VmHWM``). Not ``ru_maxrss``, which for a spawned child
    also counts the parent's memory it ran in before ``exec``."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        return None
    return None


def stop_emulator(proc: subprocess.Popen[str]) -> dict[str, float]:
    """SIGTERM the emulator: its peak RSS read just before, its CPU seconds from the kernel after."""
    peak = vm_hwm_mb(proc.pid)
    proc.terminate()
    deadline = time.monotonic() + 30
    while True:
        pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            break
        if time.monotonic() > deadline:
            proc.kill()
            pid, status, usage = os.wait4(proc.pid, 0)
            break
        time.sleep(0.05)
    proc.returncode = os.waitstatus_to_exitcode(status)
    return {
        "emulator_peak_rss_mb": peak if peak is not None else round(usage.ru_maxrss / 1024, 1),
        "emulator_cpu_seconds": round(usage.ru_utime + usage.ru_stime, 2),
    }


class RssSampler:
    """Samples a process's RSS (anonymous and file-backed) from /proc every few ms; peaks per step."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.step = "idle"
        self.peaks: dict[str, dict[str, float]] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.wait(0.005):
            try:
                text = Path(f"/proc/{self.pid}/status").read_text()
            except OSError:
                return
            values = {
                k: int(v.split()[0]) / 1024
                for k, v in (line.split(":", 1) for line in text.splitlines())
                if k in ("VmRSS", "RssAnon", "RssFile")
            }
            peak = self.peaks.setdefault(self.step, {})
            for k, v in values.items():
                peak[k] = round(max(peak.get(k, 0.0), v), 1)


def run_file(client: httpx.Client, path: Path, out_dir: Path, sampler: RssSampler | None = None) -> dict[str, float]:
    """Upload, complete and download one file; return each step's seconds."""

    def step(name: str) -> None:
        if sampler is not None:
            sampler.step = name

    step("upload")
    config = json.dumps({"struct": STRUCT, "field_confidence": True, "columns": COLUMNS})
    t0 = time.perf_counter()
    with path.open("rb") as fh:
        r = client.post(
            "/bulk-intelligence/people",
            files={"file": (path.name, fh, "application/x-ndjson")},
            data={"config": config},
            headers={"Idempotency-Key": f"bench-{path.name}-{time.time_ns()}"},
        )
    r.raise_for_status()
    task_id = r.json()["task_id"]
    t1 = time.perf_counter()
    step("generate")
    client.post(f"/_emulator/jobs/{task_id}/complete").raise_for_status()
    t2 = time.perf_counter()
    step("download")
    status = client.get(f"/job-status/{task_id}").json()
    if status["status"] != "completed":
        raise RuntimeError(f"job {task_id} ended {status['status']}: {status.get('error')}")
    final = max(status["results"], key=lambda e: e["block_number"])
    size = 0
    with client.stream("GET", final["download_url"]) as resp, (out_dir / f"{task_id}.csv").open("wb") as out:
        resp.raise_for_status()
        for chunk in resp.iter_bytes(1 << 20):
            out.write(chunk)
            size += len(chunk)
    t3 = time.perf_counter()
    step("idle")
    (out_dir / f"{task_id}.csv").unlink()
    return {"upload": t1 - t0, "generate": t2 - t1, "download": t3 - t2, "output_bytes": size}


def measure(files: int, rows: int, pad_bytes: int, emulator_args: list[str]) -> dict[str, Any]:
    """The whole measurement; returns a JSON-ready dict."""
    work = Path(tempfile.mkdtemp(prefix="sf-bench-emu-"))
    paths = make_files(work, files, rows, pad_bytes)
    upload_bytes = sum(p.stat().st_size for p in paths)
    proc, url = start_emulator(["--job-seconds", "3600", "--rate-limit-per-minute", "100000", *emulator_args])
    steps: list[dict[str, float]] = []
    try:
        with (
            RssSampler(proc.pid) as sampler,
            httpx.Client(base_url=url, headers={"x-api-key": KEY}, timeout=600) as client,
        ):
            for path in paths:
                steps.append(run_file(client, path, work, sampler))
    finally:
        usage = stop_emulator(proc)
        for p in paths:
            p.unlink(missing_ok=True)
        work.rmdir()
    total_rows = files * rows
    result: dict[str, Any] = {
        "files": files,
        "rows_per_file": rows,
        "upload_mb_per_file": round(upload_bytes / files / 1e6, 1),
        "output_mb_per_file": round(sum(s["output_bytes"] for s in steps) / files / 1e6, 1),
        **usage,
        "emulator_rss_peaks_mb_by_step": sampler.peaks,
        "load_average": round(os.getloadavg()[0], 2),
    }
    for step in ("upload", "generate", "download"):
        seconds = sum(s[step] for s in steps)
        result[f"{step}_seconds"] = round(seconds, 2)
        result[f"{step}_rows_per_second"] = round(total_rows / seconds)
    total = sum(s["upload"] + s["generate"] + s["download"] for s in steps)
    result["total_seconds"] = round(total, 2)
    result["total_rows_per_second"] = round(total_rows / total)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--files", type=int, default=5, help="files to send, one after the other")
    parser.add_argument("--rows", type=int, default=100_000, help="rows per file (the API allows 100,000)")
    parser.add_argument("--pad-bytes", type=int, default=0, help="add a text column of about N bytes per row")
    parser.add_argument("--json", type=Path, default=None, help="also write the result as JSON here")
    parser.add_argument("emulator_args", nargs="*", help="extra options for `sixtyfour-sync emulator` (after --)")
    args = parser.parse_args()
    r = measure(args.files, args.rows, args.pad_bytes, args.emulator_args)
    print(
        f"{r['files']} files x {r['rows_per_file']:,} rows ({r['upload_mb_per_file']} MB JSONL in, "
        f"{r['output_mb_per_file']} MB CSV out per file), load average {r['load_average']}"
    )
    for step in ("upload", "generate", "download", "total"):
        print(f"  {step:9} {r[f'{step}_seconds']:7.2f} s  {r[f'{step}_rows_per_second']:>10,} rows/s")
    print(f"  emulator peak RSS {r['emulator_peak_rss_mb']} MB, CPU {r['emulator_cpu_seconds']} s")
    for step, peak in r["emulator_rss_peaks_mb_by_step"].items():
        print(
            f"    while {step:9} RSS {peak.get('VmRSS')} MB "
            f"(anonymous {peak.get('RssAnon')}, files {peak.get('RssFile')})"
        )
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(r, indent=2) + "\n")


if __name__ == "__main__":
    main()
