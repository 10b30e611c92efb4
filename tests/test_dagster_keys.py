"""The Dagster asset keys: dagster-dbt's default key of a dbt node, the source table ``dbt-sources`` writes for
each sync (the manifest's when parsed), and the key of a sync file that fails to load."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from sixtyfour_sync.config.models import LoadedSync, SyncSpec
from sixtyfour_sync.dagster_keys import default_key, invalid_file_name, manifest_sources, sync_source_props
from sixtyfour_sync.dbt import TARGET_SCHEMA, source_tables, sources_yaml

ROOT = Path("/p")


def _sync(name: str, table: str, *, schema: str | None = None, prefix: str = "", key: str = "lead_id") -> LoadedSync:
    target: dict[str, Any] = {"table": table, "prefix": prefix}
    if schema:
        target["schema"] = schema
    spec = SyncSpec.model_validate(
        {
            "name": name,
            "endpoint": "people",
            "source": {"table": "leads", "key": key},
            "struct": {"x": "X"},
            "target": target,
        }
    )
    return LoadedSync(spec, ROOT / "models" / f"{name}.yml", 1, None)


def _keys(syncs: list[LoadedSync], manifest: dict[str, Any] | None = None, **kw: Any) -> dict[str, list[str]]:
    kw.setdefault("source_name", "sixtyfour")
    kw.setdefault("schema", TARGET_SCHEMA)
    return {name: default_key(p) for name, p in sync_source_props(syncs, manifest, **kw).items()}


def test_default_key_is_dagster_dbts() -> None:
    assert default_key({"resource_type": "source", "source_name": "sixtyfour", "name": "t", "config": {}}) == [
        "sixtyfour",
        "t",
    ]
    assert default_key({"resource_type": "model", "name": "stg", "config": {}}) == ["stg"]
    assert default_key({"resource_type": "model", "name": "stg", "config": {"schema": "staging"}}) == ["staging", "stg"]
    assert default_key({"resource_type": "model", "name": "stg", "version": 2, "alias": "stg_v2", "config": {}}) == [
        "stg_v2"
    ]
    configured = {"meta": {"dagster": {"asset_key": ["crm", "leads"]}}}
    assert default_key({"resource_type": "source", "source_name": "s", "name": "t", "config": configured}) == [
        "crm",
        "leads",
    ]
    assert default_key({"resource_type": "model", "name": "m", "config": {}, **configured}) == ["crm", "leads"]


def test_keys_are_the_sources_dbt_sources_writes() -> None:
    syncs = [
        _sync("a", "leads_enriched"),
        _sync("b", "companies_enriched"),
        _sync("c", "archived", schema="archive"),
    ]
    keys = _keys(syncs)
    assert keys == {
        "a": ["sixtyfour", "leads_enriched"],
        "b": ["sixtyfour", "companies_enriched"],
        "c": ["sixtyfour_2", "archived"],
    }
    doc = yaml.safe_load(sources_yaml(syncs))
    written = {(s["name"], t["name"]): t["meta"]["sixtyfour_sync"] for s in doc["sources"] for t in s["tables"]}
    assert {sync: [source, table] for (source, table), sync in written.items()} == keys
    assert _keys(syncs, source_name="enriched")["a"] == ["enriched", "leads_enriched"]


def test_syncs_sharing_a_target_share_one_table_and_one_key() -> None:
    syncs = [_sync("emails", "leads_enriched"), _sync("titles", "leads_enriched", prefix="t_")]
    assert source_tables(syncs) == {("sixtyfour", "leads_enriched"): syncs}
    [source] = yaml.safe_load(sources_yaml(syncs))["sources"]
    [table] = source["tables"]  # dbt refuses a table listed twice
    names = [c["name"] for c in table["columns"]]
    assert names.count("lead_id") == 1 and "x" in names and "t_x" in names
    assert "_sixtyfour_enriched_at" in names and "_sixtyfour_t_enriched_at" in names
    assert table["meta"] == {"sixtyfour_sync": "emails", "sixtyfour_syncs": ["emails", "titles"]}
    assert _keys(syncs) == {"emails": ["sixtyfour", "leads_enriched"], "titles": ["sixtyfour", "leads_enriched"]}


def test_loaded_at_field_is_the_syncs_own_column() -> None:
    [source] = yaml.safe_load(sources_yaml([_sync("titles", "people_enriched", prefix="t_")]))["sources"]
    assert source["tables"][0]["loaded_at_field"] == "_sixtyfour_t_enriched_at"


def test_a_parsed_source_is_found_by_its_meta_whatever_its_name() -> None:
    node = {
        "resource_type": "source",
        "source_name": "crm_enriched",
        "name": "leads_enriched",
        "meta": {"sixtyfour_sync": "a"},
        "config": {"meta": {"sixtyfour_sync": "a"}},
    }
    manifest = {"sources": {"source.p.crm_enriched.leads_enriched": node}}
    assert manifest_sources(manifest) == {"a": node}
    keys = _keys([_sync("a", "leads_enriched"), _sync("b", "other")], manifest)
    assert keys == {"a": ["crm_enriched", "leads_enriched"], "b": ["sixtyfour", "other"]}
    node["config"]["meta"]["dagster"] = {"asset_key": ["warehouse", "leads"]}
    assert _keys([_sync("a", "leads_enriched")], manifest)["a"] == ["warehouse", "leads"]


def test_an_invalid_file_is_named_after_its_path_and_the_selection() -> None:
    assert invalid_file_name(ROOT / "models" / "leads.yml", ROOT, None, None) == "models_leads_yml"
    assert invalid_file_name(ROOT / "models" / "sub" / "a-b.yaml", ROOT, None, None) == "models_sub_a_b_yaml"
    assert invalid_file_name(ROOT / "models" / "x.yml", ROOT, ["tag:daily"], None) == "models_x_yml__tag_daily"
    assert invalid_file_name(ROOT / "models" / "x.yml", ROOT, None, ["old_*"]) == "models_x_yml__all_not_old"
    long = invalid_file_name(ROOT / "models" / "x.yml", ROOT, ["a_very_long_selector_word"] * 4, None)
    assert long.startswith("models_x_yml__selection_") and len(long) == len("models_x_yml__selection_") + 10
    assert invalid_file_name("/elsewhere/y.yml", ROOT, None, None) == "y_yml"
