"""`sixtyfour-sync init` in a real dbt project (dbt-core 1.x and dbt-duckdb), then `validate` and `plan` on what
it wrote, and dbt still parses the project.

The profile is the dbt project's: in the project directory, or where DBT_PROFILES_DIR points; init writes no
profiles.yml of its own. The sync file is in sixtyfour/, outside the folders dbt parses.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.e2e.test_dbt import FIXTURE, _require_dbt

DBT = Path(sys.executable).parent / "dbt"
PROFILE = (
    "sf_fixture:\n  target: dev\n  outputs:\n    dev:\n      type: duckdb\n      path: {path}\n      schema: main\n"
)


def _env(home: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("DBT_PROFILES_DIR", "SIXTYFOUR_SYNC_PROFILES_DIR")}
    return {**env, "HOME": str(home), "DBT_SEND_ANONYMOUS_USAGE_STATS": "false", "DO_NOT_TRACK": "1", **extra}


def _run(args: list[str], cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, capture_output=True, text=True, timeout=300, cwd=cwd, env=env, stdin=subprocess.DEVNULL)


def _sync(cwd: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return _run([sys.executable, "-m", "sixtyfour_sync", *args], cwd, env)


def _dbt(cwd: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return _run([str(DBT), *args], cwd, env)


@pytest.fixture
def dbt_project(tmp_path: Path) -> Path:
    """The fixture dbt project without its sync definition (a dbt project as a team has it)."""
    _require_dbt()
    d = tmp_path / "analytics"
    shutil.copytree(FIXTURE, d)
    (d / "models" / "enrich_leads.yml").unlink()
    (tmp_path / "home").mkdir()
    return d


def _check_round_trip(d: Path, env: dict[str, str]) -> None:
    """init's sync validates and plans; dbt still parses the project with it there."""
    validated = _sync(d, env, "validate")
    assert validated.returncode == 0, validated.stdout + validated.stderr
    assert "1 sync(s) valid: enrich_stg_leads" in validated.stdout
    planned = _sync(d, env, "--log-format", "json", "plan")
    assert planned.returncode == 0, planned.stdout + planned.stderr
    summary = next(json.loads(line) for line in planned.stdout.splitlines()[::-1] if '"plans"' in line)
    [plan] = summary["plans"]
    assert plan["name"] == "enrich_stg_leads" and plan["rows"] == 27  # 30 seeded, 3 test accounts filtered
    parsed = _dbt(d, env, "parse")
    assert parsed.returncode == 0, parsed.stdout[-3000:]
    assert not [p for p in (d / "models").rglob("*.yml") if "syncs:" in p.read_text()]


def test_init_in_a_dbt_project_uses_its_profile_and_writes_a_ref_sync_that_plans(dbt_project: Path) -> None:
    d = dbt_project
    env = _env(d.parent / "home")
    profiles = PROFILE.format(path="wh.duckdb")
    (d / "profiles.yml").write_text(profiles)
    built = _dbt(d, env, "build")
    assert built.returncode == 0, built.stdout[-3000:]

    out = _sync(d / "models", env, "init", "--no-input")  # from a folder of the dbt project
    assert out.returncode == 0, out.stdout + out.stderr
    assert "profile: sf_fixture.dev: duckdb wh.duckdb (schema main)" in out.stdout
    assert f"wrote {d / 'sixtyfour' / 'enrich_stg_leads.yml'} (source.ref: stg_leads)" in out.stdout
    assert f"next: cd {d} && " in out.stdout
    assert (d / "profiles.yml").read_text() == profiles
    source = yaml.safe_load((d / "sixtyfour" / "enrich_stg_leads.yml").read_text())["syncs"][0]["source"]
    assert source == {"ref": "stg_leads", "key": "lead_id"}
    _check_round_trip(d, env)

    # --force rewrites the sync, never a profiles.yml that holds another profile
    shutil.move(d / "profiles.yml", d.parent / "home" / "kept.yml")
    other = "other:\n  outputs:\n    dev: {type: duckdb, path: other.duckdb}\n"
    (d / "profiles.yml").write_text(other)
    forced = _sync(d, env, "init", "--no-input", "--force")
    assert forced.returncode == 0, forced.stderr
    assert "has no profile 'sf_fixture' (it holds: other). Add it there" in forced.stdout
    assert (d / "profiles.yml").read_text() == other


def test_init_with_dbt_profiles_dir_elsewhere_writes_no_profiles_yml(dbt_project: Path) -> None:
    d = dbt_project
    profiles_dir = d.parent / "profiles"
    profiles_dir.mkdir()
    (profiles_dir / "profiles.yml").write_text(PROFILE.format(path=d / "wh.duckdb"))
    env = _env(d.parent / "home", DBT_PROFILES_DIR=str(profiles_dir))
    parsed = _dbt(d, env, "build")
    assert parsed.returncode == 0, parsed.stdout[-3000:]

    out = _sync(d, env, "init", "--no-input", "--model", "stg_leads")
    assert out.returncode == 0, out.stdout + out.stderr
    assert f"from {profiles_dir / 'profiles.yml'} (DBT_PROFILES_DIR={profiles_dir})" in out.stdout
    assert not (d / "profiles.yml").exists()
    _check_round_trip(d, env)
