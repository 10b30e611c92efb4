"""`sixtyfour-sync init`: a scaffold that validates, from flags alone."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import duckdb
import pytest

from sixtyfour_sync.config.loading import load_models
from sixtyfour_sync.errors import ConfigError
from sixtyfour_sync.scaffold import InitAnswers, render_profiles, write_project


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "sixtyfour_sync", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=120,
        stdin=subprocess.DEVNULL,
    )


def test_init_from_flags_then_validate(tmp_path: Path) -> None:
    out = _cli(
        "init",
        "proj",
        "--no-input",
        "--table",
        "contacts",
        "--key",
        "contact_id",
        "--columns",
        "first_name,company",
        cwd=tmp_path,
    )
    assert out.returncode == 0, out.stderr
    project = tmp_path / "proj"
    [loaded] = load_models(project)
    assert loaded.spec.name == "enrich_contacts"
    assert loaded.spec.source.columns == ["first_name", "company"]
    con = duckdb.connect(str(project / "warehouse.duckdb"))
    con.execute("CREATE TABLE contacts (contact_id INT, first_name TEXT, company TEXT)")
    con.close()
    ok = _cli("--project-dir", str(project), "validate", cwd=tmp_path)
    assert ok.returncode == 0, ok.stderr
    again = _cli("init", "proj", "--no-input", cwd=tmp_path)
    assert again.returncode == 1
    assert "exists" in again.stderr and "--force" in again.stderr


@pytest.mark.parametrize("warehouse", ["duckdb", "postgres", "snowflake", "bigquery", "databricks", "sqlalchemy"])
def test_every_profile_scaffold_parses(tmp_path: Path, warehouse: str) -> None:
    from sixtyfour_sync.config.profiles import load_target

    write_project(tmp_path, InitAnswers(warehouse=warehouse))
    env = {"PGPASSWORD": "x", "SNOWFLAKE_PASSWORD": "x", "DATABASE_URL": "sqlite:///x.db", "DATABRICKS_TOKEN": "x"}
    target = load_target(project_dir=tmp_path, profiles_dir=tmp_path, env=env)
    assert target.config.type == warehouse
    assert 'password: "{{ env_var(' in render_profiles(InitAnswers(warehouse="postgres"))


def test_init_rejects_unsafe_names(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not a plain identifier"):
        write_project(tmp_path, InitAnswers(table="leads; drop table x"))


def test_init_in_a_dbt_project_from_the_command_line(tmp_path: Path) -> None:
    """The command's lines in a dbt project, as JSON events; `dbt parse` comes first when there is no manifest."""
    import json
    import shutil

    d = tmp_path / "analytics"
    d.mkdir()
    (d / "dbt_project.yml").write_text("name: sf_fixture\nprofile: sf_fixture\n")
    (d / "profiles.yml").write_text("sf_fixture:\n  outputs:\n    dev: {type: duckdb, path: wh.duckdb}\n")
    out = _cli("--log-format", "json", "init", "--no-input", "--model", "stg_leads", cwd=d)
    assert out.returncode == 0, out.stderr
    events = [json.loads(line) for line in out.stdout.splitlines()]
    assert [e["event"] for e in events] == ["init.dbt", "init.profiles", "init.wrote", "init.manifest", "init.next"]
    assert events[1]["profile"] == "sf_fixture" and events[1]["target"] == "dev"
    assert events[2]["path"] == str(d / "sixtyfour" / "enrich_stg_leads.yml")
    assert events[-1]["message"].startswith(f"next: cd {d} && dbt parse && ")

    (d / "target").mkdir()
    shutil.copy(Path(__file__).parent / "fixtures" / "manifest_v12" / "manifest.json", d / "target")
    again = _cli("init", "--no-input", "--force", cwd=d / "sixtyfour")
    assert again.returncode == 0, again.stderr
    assert "wrote " + str(d / "sixtyfour" / "enrich_lead_companies.yml") in again.stdout
    assert "dbt parse" not in again.stdout
    assert (d / "profiles.yml").read_text().startswith("sf_fixture:\n  outputs:")
