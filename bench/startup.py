"""How fast the command line answers: ``--version``, ``--help`` and ``plan`` on the demo project, in one run.

Each command runs ``--repeat`` times in a fresh interpreter (``python -m sixtyfour_sync ...``, what the
``sixtyfour-sync`` script runs); the table shows the median wall seconds and the largest peak RSS of the runs,
beside ``python -c pass`` measured the same way, and the modules an import of the command line leaves loaded
that it should not (warehouse drivers, the emulator's server, pydantic, pyarrow, httpx, rich...).

    python bench/startup.py --repeat 7 --json startup.json

The plan runs on the demo's project (sixtyfour_sync/demo.py's ``write_project``: a DuckDB file with 3,000
leads and 300 companies, the example models) in a temporary directory; no API is called. Targets: ``--version``
and ``--help`` within 0.2 s; ``plan`` within 1 s and 100 MB.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

#: Modules that ``import sixtyfour_sync.cli``, ``--version`` and ``--help`` must not load.
HEAVY = (
    "duckdb", "psycopg", "snowflake", "google", "databricks", "sqlalchemy", "werkzeug", "pydantic", "pyarrow",
    "httpx", "rich", "sqlglot", "numpy", "yaml", "sixtyfour_sync.report", "sixtyfour_sync.emulator.app",
)  # fmt: skip

TARGETS = {"version": (0.2, None), "help": (0.2, None), "plan": (1.0, 100.0)}


def run_once(argv: list[str], cwd: Path | None = None) -> tuple[float, float, int]:
    """One run: (wall seconds, peak RSS in MB, exit code), the RSS from the child's own rusage."""
    started = time.perf_counter()
    proc = subprocess.Popen(argv, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - started
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.stderr is not None:
        proc.stderr.close()
    return wall, usage.ru_maxrss / 1024, proc.returncode


def measure(argv: list[str], repeat: int, cwd: Path | None = None) -> dict[str, Any]:
    runs = [run_once(argv, cwd) for _ in range(repeat)]
    codes = {code for _, _, code in runs}
    return {
        "wall_s": round(statistics.median(w for w, _, _ in runs), 4),
        "wall_min_s": round(min(w for w, _, _ in runs), 4),
        "peak_rss_mb": round(max(r for _, r, _ in runs), 1),
        "exit_codes": sorted(codes),
    }


def loaded_heavy() -> list[str]:
    """The heavy modules ``import sixtyfour_sync.cli`` plus ``--version`` and ``--help`` leave loaded."""
    code = (
        "import contextlib, io, sys\nimport sixtyfour_sync.cli as c\n"
        "for a in (['--version'], ['--help']):\n"
        "    with contextlib.suppress(SystemExit), contextlib.redirect_stdout(io.StringIO()):\n"
        "        c.cli.main(args=a, prog_name='sixtyfour-sync', standalone_mode=False)\n"
        "print('\\n'.join(sorted(sys.modules)))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return sorted(h for h in HEAVY if any(m == h or m.startswith(h + ".") for m in out.stdout.split()))


def make_demo(directory: Path) -> None:
    code = (
        "import sys, pathlib\nfrom sixtyfour_sync.demo import write_project\nwrite_project(pathlib.Path(sys.argv[1]))"
    )
    subprocess.run([sys.executable, "-c", code, str(directory)], check=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=7, help="runs per command (the median is reported)")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    cli = [sys.executable, "-m", "sixtyfour_sync"]
    results: dict[str, Any] = {"python": sys.version.split()[0], "cpus": os.cpu_count(), "repeat": args.repeat}
    rows: dict[str, dict[str, Any]] = {"python -c pass": measure([sys.executable, "-c", "pass"], args.repeat)}
    rows["version"] = measure([*cli, "--version"], args.repeat)
    rows["help"] = measure([*cli, "--help"], args.repeat)
    with tempfile.TemporaryDirectory(prefix="sixtyfour-startup-") as tmp:
        project = Path(tmp) / "demo"
        make_demo(project)
        rows["plan"] = measure([*cli, "plan"], args.repeat, cwd=project)
    for name, row in rows.items():
        wall_max, rss_max = TARGETS.get(name, (None, None))
        ok = row["exit_codes"] == [0]
        ok = (
            ok
            and (wall_max is None or row["wall_s"] <= wall_max)
            and (rss_max is None or row["peak_rss_mb"] <= rss_max)
        )
        row["target"] = {"wall_s": wall_max, "peak_rss_mb": rss_max}
        row["ok"] = ok
    results["commands"] = rows
    results["heavy_modules_after_import"] = loaded_heavy()

    print(f"{'command':<16} {'median s':>9} {'min s':>7} {'peak MB':>8} {'target':>14}  ok")
    for name, row in rows.items():
        target = row["target"]
        want = "" if target["wall_s"] is None else f"<={target['wall_s']}s"
        want += "" if target["peak_rss_mb"] is None else f" <={target['peak_rss_mb']:.0f}MB"
        print(
            f"{name:<16} {row['wall_s']:>9.3f} {row['wall_min_s']:>7.3f} {row['peak_rss_mb']:>8.1f} {want:>14}  "
            f"{'yes' if row['ok'] else 'NO'}"
        )
    heavy = results["heavy_modules_after_import"]
    print(f"heavy modules after import sixtyfour_sync.cli, --version, --help: {', '.join(heavy) or 'none'}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
