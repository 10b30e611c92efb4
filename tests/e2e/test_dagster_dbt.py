"""Lineage through dbt for real: dagster-dbt's @dbt_assets and the sync assets in one Definitions.

A dbt project (seed -> staging model), the sync reading the staging model (``source.ref``) into DuckDB with the
emulator on a socket, and a downstream model selecting from ``source('sixtyfour', ...)`` through the sources
file ``sixtyfour-sync dbt-sources`` wrote. The asset graph must chain staging model -> sync -> downstream model,
and materialising all of it must run them in that order.
"""

# No ``from __future__ import annotations``: dagster reads the asset functions' annotations at definition time.

import os
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import duckdb
import pytest

dg = pytest.importorskip("dagster")
dagster_dbt = pytest.importorskip("dagster_dbt")

from sixtyfour_sync.dagster import build_sync_assets  # noqa: E402
from tests.e2e.conftest import E2EProject, run_cli  # noqa: E402
from tests.e2e.test_dbt import DBT, FIXTURE, _dbt, _require_dbt  # noqa: E402

#: A file to save the printed edges to, when set (a record of the graph; tests write nothing else outside tmp).
EDGES_FILE = os.environ.get("SIXTYFOUR_SYNC_DAGSTER_EDGES")
STAGING = dg.AssetKey(["stg_leads"])
SYNC = dg.AssetKey(["sixtyfour", "leads_enriched"])
DOWNSTREAM = dg.AssetKey(["lead_emails"])


def _dbt_project(tmp_path: Path, project: E2EProject, *, parse: bool = True) -> Path:
    """The fixture's dbt project, a downstream model on the enriched table, and the sources file dbt-sources
    writes for it; then ``dbt parse`` for the manifest (unless ``parse`` is false)."""
    _require_dbt()
    d = tmp_path / "dbt_project"
    shutil.copytree(FIXTURE, d)
    (d / "profiles.yml").write_text(
        "sf_fixture:\n  target: dev\n  outputs:\n    dev:\n      type: duckdb\n      path: wh.duckdb\n"
        "      schema: main\n"
    )
    (d / "models" / "lead_emails.sql").write_text(
        "select lead_id, email\nfrom {{ source('sixtyfour', 'leads_enriched') }}\n"
        "where _sixtyfour_status = 'enriched'\n"
    )
    sources = run_cli(project, "dbt-sources", "-o", str(d / "models" / "sixtyfour_sources.yml"), project_dir=d)
    assert sources.returncode == 0, sources.stderr
    if parse:
        parsed = _dbt(d, "parse")
        assert parsed.returncode == 0, parsed.stdout[-3000:]
    return d


def _dbt_assets(d: Path, translator: Any = None) -> dg.AssetsDefinition:
    @dagster_dbt.dbt_assets(manifest=d / "target" / "manifest.json", dagster_dbt_translator=translator)
    def analytics(context: dg.AssetExecutionContext, dbt: dagster_dbt.DbtCliResource) -> Any:
        yield from dbt.cli(["build"], context=context).stream()

    return analytics


def _resources(d: Path) -> dict[str, Any]:
    return {"dbt": dagster_dbt.DbtCliResource(project_dir=str(d), profiles_dir=str(d), dbt_executable=str(DBT))}


def _edges(defs: dg.Definitions) -> list[tuple[dg.AssetKey, dg.AssetKey]]:
    graph = defs.resolve_asset_graph()
    return sorted(
        ((parent, key) for key in graph.get_all_asset_keys() for parent in graph.get(key).parent_keys),
        key=lambda e: (e[0].to_user_string(), e[1].to_user_string()),
    )


def _save(title: str, edges: list[tuple[dg.AssetKey, dg.AssetKey]], *notes: str) -> None:
    """Print the edges, one ``parent -> child`` a line, and keep them in EDGES_FILE when it is set."""
    lines = [f"  {a.to_user_string()} -> {b.to_user_string()}" for a, b in edges] + [f"  {n}" for n in notes]
    text = "\n".join([title, *lines])
    print(text)
    if EDGES_FILE:
        path = Path(EDGES_FILE)
        existing = path.read_text() if path.exists() else ""
        blocks = [b.strip("\n") for b in existing.split("\n\n") if b.strip() and not b.startswith(title)]
        path.write_text("\n\n".join([*blocks, text]) + "\n")


def _order(result: dg.ExecuteInProcessResult) -> list[dg.AssetKey]:
    return [
        e.event_specific_data.materialization.asset_key
        for e in result.all_events
        if e.event_type_value == "ASSET_MATERIALIZATION"
    ]


def test_staging_model_sync_and_downstream_model_chain_and_run_in_order(project: E2EProject, tmp_path: Path) -> None:
    d = _dbt_project(tmp_path, project)
    dbt_assets = _dbt_assets(d)
    syncs = build_sync_assets(d, api_key=project.api_key, api_url=project.url, env=project.env)
    assert [a.key for a in syncs] == [SYNC]  # the key dagster-dbt gives source('sixtyfour', 'leads_enriched')
    defs = dg.Definitions(assets=[dbt_assets, *syncs], resources=_resources(d))
    edges = _edges(defs)
    assert (STAGING, SYNC) in edges and (SYNC, DOWNSTREAM) in edges
    assert (dg.AssetKey(["raw_leads"]), STAGING) in edges

    result = dg.materialize([dbt_assets, *syncs], resources=_resources(d), instance=dg.DagsterInstance.ephemeral())
    assert result.success
    order = _order(result)
    assert order.index(STAGING) < order.index(SYNC) < order.index(DOWNSTREAM), order
    _save(
        "staging model -> sync -> downstream model (default keys):",
        edges,
        "materialised in this order: " + ", ".join(k.to_user_string() for k in order),
    )
    [sync_mat] = [e for e in result.all_events if e.asset_key == SYNC and e.event_type_value == "ASSET_MATERIALIZATION"]
    meta = {k: v.value for k, v in sync_mat.event_specific_data.materialization.metadata.items()}
    assert meta["status"] == "ok" and meta["rows_sent"] == 27 and meta["rows_enriched"] > 0

    con = duckdb.connect(str(d / "wh.duckdb"), read_only=True)
    try:
        enriched = con.execute(
            "SELECT count(*) FROM leads_enriched WHERE _sixtyfour_status = 'enriched' AND email LIKE '%@%'"
        ).fetchone()
        downstream = con.execute("SELECT count(*), count(email) FROM lead_emails").fetchone()
    finally:
        con.close()
    assert enriched is not None and downstream is not None
    assert 0 < downstream[0] <= 27 and downstream[1] == enriched[0]  # built after the sync, from its rows


class _Prefixed(dagster_dbt.DagsterDbtTranslator):  # type: ignore[misc]
    def get_asset_key(self, dbt_resource_props: Mapping[str, Any]) -> dg.AssetKey:
        return super().get_asset_key(dbt_resource_props).with_prefix("analytics")


def test_keys_follow_the_manifest_a_source_name_and_a_translator(project: E2EProject, tmp_path: Path) -> None:
    d = _dbt_project(tmp_path, project, parse=False)
    [early] = build_sync_assets(d)  # before dbt has parsed the sources file: the key dbt-sources writes
    assert early.key == SYNC
    out = run_cli(
        project, "dbt-sources", "--name", "enriched", "-o", str(d / "models" / "sixtyfour_sources.yml"),
        project_dir=d,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    (d / "models" / "lead_emails.sql").write_text(
        "select lead_id, email from {{ source('enriched', 'leads_enriched') }}\n"
    )
    parsed = _dbt(d, "parse")
    assert parsed.returncode == 0, parsed.stdout[-3000:]
    [renamed] = build_sync_assets(d)  # found in the manifest by its meta, whatever the source is called
    assert renamed.key == dg.AssetKey(["enriched", "leads_enriched"])

    translator = _Prefixed()
    syncs = build_sync_assets(d, dbt_translator=translator, group_name="enrichment")
    edges = _edges(dg.Definitions(assets=[_dbt_assets(d, translator), *syncs], resources=_resources(d)))
    _save("with a DagsterDbtTranslator that prefixes every dbt key (dbt_translator=):", edges)
    sync = dg.AssetKey(["analytics", "enriched", "leads_enriched"])
    assert (dg.AssetKey(["analytics", "stg_leads"]), sync) in edges
    assert (sync, dg.AssetKey(["analytics", "lead_emails"])) in edges

    [prefixed] = build_sync_assets(d, key_prefix=["enrichment"])  # key_prefix still prefixes the sync's own key
    assert prefixed.key == dg.AssetKey(["enrichment", "enriched", "leads_enriched"])
    assert set(prefixed.asset_deps[prefixed.key]) == {STAGING}


def test_a_broken_sync_file_leaves_the_dbt_assets_and_the_lineage_alone(project: E2EProject, tmp_path: Path) -> None:
    """Syncs kept beside the dbt project (``dbt_project_dir``): one file with a YAML typo, one sound."""
    d = _dbt_project(tmp_path, project)
    syncs_dir = tmp_path / "syncs"
    (syncs_dir / "models").mkdir(parents=True)
    shutil.copy(d / "models" / "enrich_leads.yml", syncs_dir / "models")
    (syncs_dir / "models" / "contacts.yml").write_text("syncs:\n  - name: enrich_contacts\n   endpoint: people\n")
    assets = build_sync_assets(syncs_dir, dbt_project_dir=d)
    broken = dg.AssetKey(["sixtyfour_invalid_file", "models_contacts_yml"])
    assert {a.key for a in assets} == {SYNC, broken}
    defs = dg.Definitions(assets=[_dbt_assets(d), *assets], resources=_resources(d))
    edges = _edges(defs)
    assert (STAGING, SYNC) in edges and (SYNC, DOWNSTREAM) in edges
    assert broken in defs.resolve_asset_graph().get_all_asset_keys()
    _save(
        "with a broken sync file beside the good one:",
        edges,
        f"{broken.to_user_string()} (no edges; fails with the file's error)",
    )
