"""The README's first command: the demo runs to completion on DuckDB and the in-process emulator."""

from __future__ import annotations

import filecmp
import os
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest

from sixtyfour_sync.demo import make_sample

ROOT = Path(__file__).resolve().parents[1]


def test_demo_runs_end_to_end(tmp_path: Path) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "sixtyfour_sync", "demo", "--dir", str(tmp_path / "demo"), "--job-seconds", "0.2"],
        capture_output=True,
        text=True,
        timeout=300,
        stdin=subprocess.DEVNULL,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert "submissions to the API this time: 0" in out.stdout
    con = duckdb.connect(str(tmp_path / "demo" / "demo.duckdb"), read_only=True)
    try:
        leads = con.execute("SELECT count(*) FROM leads WHERE country = 'US'").fetchall()[0][0]
        enriched = con.execute("SELECT count(*), count(email) FROM leads_enriched").fetchall()[0]
        companies = con.execute("SELECT count(*) FROM companies_enriched").fetchall()[0][0]
    finally:
        con.close()
    assert enriched[0] == leads
    assert 0 < enriched[1] < leads  # most rows enriched, a few failed
    assert companies > 250


def test_sample_is_deterministic_and_plausible() -> None:
    companies, leads = make_sample()
    assert (companies, leads) == make_sample()
    assert len(companies) == 300
    assert len(leads) == 3000
    assert len({c[1] for c in companies}) == 300
    assert all("." in (c[2] or "x.y") for c in companies)


def test_repo_models_are_the_packaged_examples() -> None:
    packaged = ROOT / "sixtyfour_sync" / "examples" / "models"
    names = sorted(p.name for p in packaged.glob("*.yml"))
    assert names == sorted(p.name for p in (ROOT / "models").glob("*.yml"))
    _, mismatch, errors = filecmp.cmpfiles(packaged, ROOT / "models", names, shallow=False)
    assert not mismatch and not errors


def test_the_next_line_names_a_command_that_runs_without_the_venv_on_path(tmp_path: Path) -> None:
    """As the README has it: `.venv/bin/sixtyfour-sync demo`, with the virtualenv not activated."""
    script = Path(sys.executable).parent / "sixtyfour-sync"
    rel = os.path.relpath(script, tmp_path)
    path = os.pathsep.join(p for p in os.environ.get("PATH", "").split(os.pathsep) if Path(p) != script.parent)
    env = {**os.environ, "PATH": path}
    out = subprocess.run(
        [rel, "demo", "--dir", "demo", "--job-seconds", "0.2"],
        capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL, cwd=tmp_path, env=env,
    )  # fmt: skip
    assert out.returncode == 0, out.stdout + out.stderr
    [line] = [ln for ln in out.stdout.splitlines() if ln.startswith("Next: ")]
    command = line.removeprefix("Next: ").split("   (")[0]
    assert "sixtyfour-sync status" in command and not command.split("&& ")[1].startswith("sixtyfour-sync")
    status = subprocess.run(
        ["sh", "-c", command], capture_output=True, text=True, timeout=120, cwd=tmp_path, env=env
    )  # fmt: skip
    assert status.returncode == 0, status.stdout + status.stderr
    assert "success" in status.stdout


def test_command_line_is_how_it_was_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from sixtyfour_sync.cli_options import command_line

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PATH", "/nonexistent")
    (tmp_path / "demo").mkdir()
    assert command_line(argv0=".venv/bin/sixtyfour-sync") == ".venv/bin/sixtyfour-sync"
    assert command_line(tmp_path / "demo", argv0=".venv/bin/sixtyfour-sync") == "../.venv/bin/sixtyfour-sync"
    assert command_line(argv0="sixtyfour-sync") == "sixtyfour-sync"
    assert command_line(argv0="/x/site-packages/sixtyfour_sync/__main__.py").endswith(" -m sixtyfour_sync")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    exe = bin_dir / "sixtyfour-sync"
    exe.write_text("#!/bin/sh\n")
    exe.chmod(0o755)
    monkeypatch.setenv("PATH", str(bin_dir))
    assert command_line(argv0=str(exe)) == "sixtyfour-sync"  # on PATH: its name
