"""The dbt manifest reader on manifest v12 (dbt-core 1.x) and v20 (dbt v2): every path that reads one.

The fixtures are described in tests/fixtures/manifests.md.
"""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path
from typing import Any

import pytest

from sixtyfour_sync.dbt import (
    find_node,
    load_manifest,
    manifest_models,
    manifest_version,
    model_key_columns,
    rebuilt_models,
    resolve_ref,
)
from sixtyfour_sync.errors import ConfigError
from sixtyfour_sync.warehouse.types import TableRef

FIXTURES = Path(__file__).resolve().parent / "fixtures"
VERSIONS = ["manifest_v12", "manifest_v20"]


def _dbt_dir(tmp_path: Path, fixture: str, **edit: Any) -> Path:
    """A dbt directory whose target/ holds the fixture's manifest (``edit``: top-level metadata changes)."""
    target = tmp_path / "target"
    target.mkdir(parents=True, exist_ok=True)
    shutil.copy(FIXTURES / fixture / "run_results.json", target / "run_results.json")
    manifest = json.loads((FIXTURES / fixture / "manifest.json").read_text())
    manifest["metadata"].update(edit)
    (target / "manifest.json").write_text(json.dumps(manifest))
    return tmp_path


def _warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]


@pytest.mark.parametrize("fixture", VERSIONS)
def test_a_ref_resolves_to_the_relation_dbt_built(
    tmp_path: Path, fixture: str, caplog: pytest.LogCaptureFixture
) -> None:
    d = _dbt_dir(tmp_path, fixture)
    assert resolve_ref(d, "stg_leads") == TableRef("stg_leads", "main", "wh")
    assert resolve_ref(d, "lead_companies") == TableRef("companies", "main_crm", "wh")  # alias, custom schema
    assert resolve_ref(d, "raw_leads") == TableRef("raw_leads", "main", "wh")  # a seed
    with pytest.raises(ConfigError, match=r"'stg_lead' is not in the manifest \(models: .*stg_leads"):
        resolve_ref(d, "stg_lead")
    assert _warnings(caplog) == []


def test_the_two_fixtures_are_the_versions_they_claim() -> None:
    for fixture, version, dbt in (("manifest_v12", 12, "1.10"), ("manifest_v20", 20, "2.0")):
        data = json.loads((FIXTURES / fixture / "manifest.json").read_text())
        assert manifest_version(data) == ("manifest", version)
        assert data["metadata"]["dbt_version"].startswith(dbt)
    v20 = json.loads((FIXTURES / "manifest_v20" / "manifest.json").read_text())
    assert "primary_key" not in v20["nodes"]["model.sf_fixture.stg_leads"]  # dbt v2 leaves empty fields out


@pytest.mark.parametrize("fixture", VERSIONS)
def test_rebuilt_models_come_from_the_run_results_beside_the_manifest(tmp_path: Path, fixture: str) -> None:
    d = _dbt_dir(tmp_path, fixture)
    assert rebuilt_models(d) == {"raw_leads", "stg_leads", "lead_companies"}


def test_an_empty_database_from_dbt_v2_is_no_database(tmp_path: Path) -> None:
    d = _dbt_dir(tmp_path, "manifest_v20")
    path = d / "target" / "manifest.json"
    manifest = json.loads(path.read_text())
    manifest["nodes"]["model.sf_fixture.stg_leads"]["database"] = ""
    del manifest["nodes"]["model.sf_fixture.stg_leads"]["alias"]
    path.write_text(json.dumps(manifest))
    assert resolve_ref(d, "stg_leads") == TableRef("stg_leads", "main", None)


@pytest.mark.parametrize("version", [13, 21])
def test_a_newer_manifest_is_read_with_one_warning(
    tmp_path: Path, version: int, caplog: pytest.LogCaptureFixture
) -> None:
    url = f"https://schemas.getdbt.com/dbt/manifest/v{version}.json"
    d = _dbt_dir(tmp_path, "manifest_v20", dbt_schema_version=url)
    assert resolve_ref(d, "stg_leads") == TableRef("stg_leads", "main", "wh")
    assert resolve_ref(d, "lead_companies").name == "companies"  # read once: warned once
    [warning] = _warnings(caplog)
    assert f"is manifest v{version}" in warning and "(it knows v12, v20)" in warning
    assert "upgrade sixtyfour-sync" in warning


@pytest.mark.parametrize("url", ["https://schemas.getdbt.com/dbt/manifest/v11.json", None])
def test_an_older_manifest_or_one_without_a_version_is_read_quietly(
    tmp_path: Path, url: str | None, caplog: pytest.LogCaptureFixture
) -> None:
    d = _dbt_dir(tmp_path, "manifest_v12", dbt_schema_version=url)
    assert resolve_ref(d, "stg_leads") == TableRef("stg_leads", "main", "wh")
    assert _warnings(caplog) == []


def test_what_cannot_be_read_as_a_manifest_is_refused_with_what_to_do(tmp_path: Path) -> None:
    target = tmp_path / "target"
    target.mkdir()
    path = target / "manifest.json"
    shutil.copy(FIXTURES / "manifest_v12" / "run_results.json", path)
    with pytest.raises(ConfigError) as err:
        load_manifest(tmp_path)
    assert f"{path}: this is a dbt run-results file (v6), not a manifest" in str(err.value)
    assert "dbt parse" in str(err.value)

    path.write_text(
        json.dumps({"metadata": {"dbt_schema_version": "https://schemas.getdbt.com/dbt/manifest/v20.json"}})
    )
    with pytest.raises(
        ConfigError, match=r"manifest.json: nodes: the manifest has no `nodes` object.*\(manifest v20\)"
    ):
        load_manifest(tmp_path)

    path.write_text('{"nodes": ')
    with pytest.raises(ConfigError, match="cannot read the dbt manifest"):
        load_manifest(tmp_path)


@pytest.mark.parametrize("fixture", VERSIONS)
def test_init_lists_the_projects_own_models_and_their_keys(tmp_path: Path, fixture: str) -> None:
    manifest = load_manifest(_dbt_dir(tmp_path, fixture))
    assert [n["name"] for n in manifest_models(manifest)] == ["lead_companies", "stg_leads"]
    for model, key in (("stg_leads", ["lead_id"]), ("lead_companies", ["domain"])):
        node = find_node(manifest, model)
        assert node is not None
        assert model_key_columns(manifest, node) == key  # v12: primary_key; v20: the unique test
    assert model_key_columns(manifest, {"unique_id": "model.sf_fixture.nothing"}) == []


@pytest.mark.slow  # importing dagster takes seconds
@pytest.mark.parametrize("fixture", VERSIONS)
def test_dagster_keys_read_the_manifest_nodes(tmp_path: Path, fixture: str) -> None:
    dg = pytest.importorskip("dagster")
    from sixtyfour_sync.dagster import build_sync_assets, dbt_asset_key

    d = _dbt_dir(tmp_path, fixture)
    manifest = load_manifest(d)
    assert dbt_asset_key("stg_leads", find_node(manifest, "stg_leads")) == dg.AssetKey(["stg_leads"])
    assert dbt_asset_key("lead_companies", find_node(manifest, "lead_companies")) == dg.AssetKey(["crm", "companies"])

    (d / "dbt_project.yml").write_text("name: sf_fixture\nprofile: sf_fixture\n")
    (d / "sixtyfour").mkdir()
    (d / "sixtyfour" / "companies.yml").write_text(
        "syncs:\n  - name: enrich_companies\n    endpoint: company\n"
        "    source: {ref: lead_companies, key: domain}\n"
        "    struct: {industry: The company's industry}\n    target: {table: companies_enriched}\n"
    )
    [asset] = build_sync_assets(d)
    assert dg.AssetKey(["crm", "companies"]) in {dep.asset_key for dep in asset.specs_by_key[asset.key].deps}
