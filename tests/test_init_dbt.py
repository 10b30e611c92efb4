"""`init` inside a dbt project, in process: which profile, which model, which files, and what is never written.

The end-to-end round trip (a real dbt project, then `validate` and `plan`) is tests/e2e/test_init_dbt.py.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml

from sixtyfour_sync.config.loading import load_models
from sixtyfour_sync.errors import ConfigError
from sixtyfour_sync.scaffold import run_init
from sixtyfour_sync.scaffold_dbt import find_dbt_project

FIXTURES = Path(__file__).resolve().parent / "fixtures"
PROFILE = "sf_fixture:\n  target: dev\n  outputs:\n    dev:\n      type: duckdb\n      path: wh.duckdb\n"


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A home without ~/.dbt, and no profiles directory from the environment."""
    h = tmp_path / "home"
    h.mkdir()
    monkeypatch.setenv("HOME", str(h))
    for var in ("DBT_PROFILES_DIR", "SIXTYFOUR_SYNC_PROFILES_DIR", "DBT_TARGET_PATH"):
        monkeypatch.delenv(var, raising=False)
    return h


def _dbt_project(tmp_path: Path, manifest: str | None = "manifest_v20", extra: str = "") -> Path:
    d = tmp_path / "analytics"
    (d / "models").mkdir(parents=True)
    (d / "dbt_project.yml").write_text(
        f"name: sf_fixture\nversion: '1.0'\nconfig-version: 2\nprofile: sf_fixture\n{extra}"
    )
    if manifest:
        (d / "target").mkdir()
        shutil.copy(FIXTURES / manifest / "manifest.json", d / "target" / "manifest.json")
    return d


def _init(directory: Path, interactive: bool = False, prompt: Any = None, **flags: Any) -> Any:
    import os

    return run_init(
        directory, flags, interactive=interactive, force=flags.pop("force", False), env=os.environ, prompt=prompt
    )


def _texts(outcome: Any) -> str:
    return "\n".join(text for _, text, _ in outcome.messages)


def test_the_dbt_project_is_found_from_a_subdirectory_that_does_not_exist_yet(tmp_path: Path) -> None:
    d = _dbt_project(tmp_path, None)
    assert find_dbt_project(d / "sixtyfour" / "new") == d.resolve()
    assert find_dbt_project(tmp_path) is None


def test_with_the_projects_profile_it_writes_only_a_ref_sync_outside_dbts_paths(tmp_path: Path, home: Path) -> None:
    d = _dbt_project(tmp_path)
    (d / "profiles.yml").write_text(PROFILE)
    out = _init(d / "models")  # run from anywhere inside the dbt project
    assert out.run_dir == d.resolve() and out.before == []
    assert "profile: sf_fixture.dev: duckdb wh.duckdb (schema main) from" in _texts(out)
    assert (d / "profiles.yml").read_text() == PROFILE
    assert sorted(p.name for p in (d / "models").iterdir()) == []
    [loaded] = load_models(d)  # what every command run in the dbt project reads
    assert loaded.file == (d / "sixtyfour" / "enrich_lead_companies.yml").resolve()
    spec = loaded.spec
    assert (spec.source.ref, spec.source.table, spec.source.key) == ("lead_companies", None, ["domain"])
    assert spec.target.table == "lead_companies_enriched"


def test_no_input_takes_the_model_flag_and_the_key_dbt_knows(tmp_path: Path, home: Path) -> None:
    d = _dbt_project(tmp_path)
    (d / "profiles.yml").write_text(PROFILE)
    _init(d, model="stg_leads")
    doc = yaml.safe_load((d / "sixtyfour" / "enrich_stg_leads.yml").read_text())
    assert doc["syncs"][0]["source"] == {"ref": "stg_leads", "key": "lead_id"}
    with pytest.raises(ConfigError, match=r"--model 'stg_lead' is not a model.*\(models: lead_companies, stg_leads\)"):
        _init(d, model="stg_lead")
    with pytest.raises(ConfigError, match=r"enrich_stg_leads\.yml exists") as err:
        _init(d, model="stg_leads")
    assert err.value.hint and "--force" in err.value.hint
    _init(d, model="stg_leads", key="email", force=True)
    assert "key: email" in (d / "sixtyfour" / "enrich_stg_leads.yml").read_text()


def test_on_a_terminal_the_model_is_chosen_from_the_manifest(tmp_path: Path, home: Path) -> None:
    import click

    d = _dbt_project(tmp_path)
    (d / "profiles.yml").write_text(PROFILE)
    asked: list[tuple[str, Any, Any]] = []

    def prompt(text: str, default: Any = None, type: Any = None, show_choices: bool = True) -> Any:
        asked.append((text, default, type))
        return "stg_leads" if text.startswith("dbt model") else default

    _init(d, interactive=True, prompt=prompt)
    question, default, kind = asked[0]
    assert question == "dbt model to enrich (2 in the manifest)" and default == "lead_companies"
    assert isinstance(kind, click.Choice) and list(kind.choices) == ["lead_companies", "stg_leads"]
    assert ("Key column", "lead_id") in [(q, dflt) for q, dflt, _ in asked]
    assert not any(q.startswith("Warehouse") for q, _, _ in asked)  # the dbt project's profile is used
    assert "ref: stg_leads" in (d / "sixtyfour" / "enrich_stg_leads.yml").read_text()


def test_without_a_manifest_it_needs_a_model_name_and_says_to_parse(tmp_path: Path, home: Path) -> None:
    d = _dbt_project(tmp_path, None)
    (d / "profiles.yml").write_text(PROFILE)
    with pytest.raises(ConfigError, match=r"no dbt model to choose from \(.*manifest.json: no dbt manifest") as err:
        _init(d)
    assert err.value.hint and "dbt parse" in err.value.hint and "--model" in err.value.hint
    out = _init(d, model="stg_leads")
    assert out.before == ["dbt parse"]
    assert "run `dbt parse` before `plan`" in _texts(out)
    assert "key: id " in (d / "sixtyfour" / "enrich_stg_leads.yml").read_text()


def test_with_no_profiles_yml_anywhere_it_writes_the_dbt_profile_where_it_will_be_read(
    tmp_path: Path, home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    d = _dbt_project(tmp_path)
    _init(d, warehouse="duckdb", duckdb_path="wh.duckdb")
    assert yaml.safe_load((d / "profiles.yml").read_text())["sf_fixture"]["outputs"]["dev"]["path"] == "wh.duckdb"

    elsewhere = tmp_path / "profiles"  # DBT_PROFILES_DIR names a directory without one: written there
    monkeypatch.setenv("DBT_PROFILES_DIR", str(elsewhere))
    (d / "profiles.yml").unlink()
    out = _init(d, force=True)
    assert (elsewhere / "profiles.yml").is_file() and not (d / "profiles.yml").exists()
    assert f"wrote {elsewhere / 'profiles.yml'} (profile sf_fixture" in _texts(out)


def test_a_profiles_yml_elsewhere_wins_and_none_is_written_beside_dbt_project(
    tmp_path: Path, home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    d = _dbt_project(tmp_path)
    (home / ".dbt").mkdir()
    (home / ".dbt" / "profiles.yml").write_text(PROFILE)
    out = _init(d, warehouse="postgres")
    assert not (d / "profiles.yml").exists()
    assert f"from {home / '.dbt' / 'profiles.yml'} (~/.dbt)" in _texts(out)
    assert "ignored --warehouse: the sync uses profile 'sf_fixture'" in _texts(out)

    dbt_dir = tmp_path / "ci_profiles"
    dbt_dir.mkdir()
    (dbt_dir / "profiles.yml").write_text(PROFILE.replace("wh.duckdb", "ci.duckdb"))
    monkeypatch.setenv("DBT_PROFILES_DIR", str(dbt_dir))
    out = _init(d, force=True)
    assert "duckdb ci.duckdb" in _texts(out) and f"DBT_PROFILES_DIR={dbt_dir}" in _texts(out)
    assert not (d / "profiles.yml").exists()


@pytest.mark.parametrize("force", [False, True])
def test_a_profiles_yml_without_the_dbt_profile_is_never_rewritten(tmp_path: Path, home: Path, force: bool) -> None:
    d = _dbt_project(tmp_path)
    other = "other:\n  outputs:\n    dev: {type: duckdb, path: x.duckdb}\n"
    (d / "profiles.yml").write_text(other)
    out = _init(d, model="stg_leads", force=force)
    assert (d / "profiles.yml").read_text() == other
    text = _texts(out)
    assert (
        f"warning: {d / 'profiles.yml'} (the project directory) has no profile 'sf_fixture' (it holds: other)" in text
    )
    assert "Add it there: dbt needs it as well" in text and "--force or not" in text
    assert (d / "sixtyfour" / "enrich_stg_leads.yml").is_file()


def test_sync_files_never_go_into_a_folder_dbt_parses(tmp_path: Path, home: Path) -> None:
    d = _dbt_project(tmp_path, extra="model-paths: [sixtyfour]\n")
    (d / "profiles.yml").write_text(PROFILE)
    with pytest.raises(ConfigError, match=r"dbt_project.yml: dbt parses .*sixtyfour, which overlaps") as err:
        _init(d, model="stg_leads")
    assert "dbt v2 refuses" in str(err.value)
    assert not (d / "sixtyfour").exists()


def test_a_table_sync_in_a_dbt_project_needs_no_manifest(tmp_path: Path, home: Path) -> None:
    d = _dbt_project(tmp_path, None)
    (d / "profiles.yml").write_text(PROFILE)
    out = _init(d, table="raw_contacts", key="contact_id")
    assert out.before == []
    [loaded] = load_models(d)
    assert (loaded.spec.source.table, loaded.spec.source.ref) == ("raw_contacts", None)
    assert "# It lives in sixtyfour/, beside dbt_project.yml" in loaded.file.read_text()


def test_plain_init_refuses_a_model_outside_a_dbt_project(tmp_path: Path, home: Path) -> None:
    with pytest.raises(ConfigError, match=r"--model names a dbt model, but there is no dbt_project\.yml"):
        _init(tmp_path / "proj", model="stg_leads")
    assert not (tmp_path / "proj").exists()


def test_plain_init_force_keeps_a_profiles_yml_that_holds_another_profile(tmp_path: Path, home: Path) -> None:
    d = tmp_path / "proj"
    _init(d)
    own = (d / "profiles.yml").read_text()
    _init(d, force=True, warehouse="postgres")  # only the profile init writes: overwritten
    assert "type: postgres" in (d / "profiles.yml").read_text() and own != (d / "profiles.yml").read_text()

    shared = own + "analytics:\n  outputs:\n    dev: {type: duckdb, path: a.duckdb}\n"
    (d / "profiles.yml").write_text(shared)
    out = _init(d, force=True, warehouse="postgres", table="contacts")
    assert (d / "profiles.yml").read_text() == shared
    assert f"warning: kept {d / 'profiles.yml'}: it holds: analytics" in _texts(out)
    assert "not even with --force" in _texts(out)
    assert (d / "models" / "enrich_contacts.yml").is_file()
