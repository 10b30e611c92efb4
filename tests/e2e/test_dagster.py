"""sixtyfour_sync.dagster for real: dagster's in-process materialize against the emulator on a socket."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

dg = pytest.importorskip("dagster")

from sixtyfour_sync.dagster import build_sync_assets, dbt_asset_key, invalid_file_key  # noqa: E402
from sixtyfour_sync.emulator import Emulator, EmulatorSettings  # noqa: E402
from tests.e2e.conftest import E2EProject  # noqa: E402
from tests.e2e.test_run_duckdb import _setup_duckdb  # noqa: E402

ENRICHED = dg.AssetKey(["sixtyfour", "leads_enriched"])
BROKEN_YAML = (  # line 5 is indented one space too far
    "syncs:\n  - name: enrich_contacts\n    endpoint: people\n    source: {table: contacts, key: id}\n"
    "     struct: {email: The email}\n"
)
BROKEN_SCHEMA = (
    "syncs:\n  - name: enrich_companies\n    tags: [daily]\n    endpoint: companies\n"
    "    source: {table: companies, key: id}\n    struct: {size: Employees}\n    target: {table: companies_enriched}\n"
)


def _events(result: dg.ExecuteInProcessResult) -> list[str]:
    return [e.event_type_value for e in result.all_events]


def test_one_asset_per_sync_materialises_with_logs_and_metadata(project: E2EProject) -> None:
    _setup_duckdb(project, 25)
    [asset] = build_sync_assets(project.dir, api_key=project.api_key, api_url=project.url, env=project.env)
    assert asset.key == ENRICHED  # the key dagster-dbt gives source('sixtyfour', 'leads_enriched')
    instance = dg.DagsterInstance.ephemeral()
    result = dg.materialize([asset], instance=instance)
    assert result.success
    [mat] = result.asset_materializations_for_node(asset.op.name)
    meta = {k: v.value for k, v in mat.metadata.items()}
    assert meta["status"] == "ok" and meta["rows_sent"] == 25 and meta["rows_enriched"] > 0
    assert meta["charged_usd"] > 0 and set(meta["fill_rate"]) == {"email", "title", "employee_count"}
    logs = " ".join(r.user_message for r in instance.all_logs(result.run_id))
    assert "enrich_leads: merged" in logs and "to send in 1 file(s)" in logs
    assert project.api_key not in logs


def test_a_partial_run_is_retried_and_a_config_error_is_not(project: E2EProject) -> None:
    _setup_duckdb(project, 5)
    slow = Emulator(EmulatorSettings(api_keys=frozenset({project.api_key}), job_seconds=60))
    policy = dg.RetryPolicy(max_retries=1, delay=0)
    with slow.serve() as server:
        [asset] = build_sync_assets(
            project.dir, api_key=project.api_key, api_url=server.url, env=project.env,
            max_wait_seconds=0.3, retry_policy=policy,
        )  # fmt: skip
        result = dg.materialize([asset], raise_on_error=False)
    assert not result.success
    events = _events(result)
    assert "STEP_UP_FOR_RETRY" in events  # exit 3: retryable
    assert len(slow.submissions) == 1  # the retry resumed the same job, it did not pay again

    model = project.dir / "models" / "leads.yml"
    model.write_text(model.read_text().replace("table: leads\n", "table: missing_leads\n"))
    [broken] = build_sync_assets(
        project.dir, api_key=project.api_key, api_url=project.url, env=project.env, retry_policy=policy
    )
    failed = dg.materialize([broken], raise_on_error=False)
    assert not failed.success
    assert "STEP_UP_FOR_RETRY" not in _events(failed)  # a config error needs a person, not a retry
    failure = next(e for e in failed.all_events if e.event_type_value == "STEP_FAILURE")
    assert "missing_leads does not exist" in str(failure.event_specific_data)


def test_deps_use_dagster_dbts_default_keys(project: E2EProject, tmp_path: Path) -> None:
    assert dbt_asset_key("stg_leads") == dg.AssetKey(["stg_leads"])
    assert dbt_asset_key("stg_leads", {"config": {"schema": "staging"}}) == dg.AssetKey(["staging", "stg_leads"])
    meta = {"config": {"meta": {"dagster": {"asset_key": ["crm", "leads"]}}}}
    assert dbt_asset_key("stg_leads", meta) == dg.AssetKey(["crm", "leads"])
    fixture = Path(__file__).resolve().parents[1] / "fixtures" / "dbt_project"
    [asset] = build_sync_assets(fixture, key_prefix=["enrichment"])
    assert asset.key == dg.AssetKey(["enrichment", "sixtyfour", "leads_enriched"])
    assert set(asset.asset_deps[asset.key]) == {dg.AssetKey(["stg_leads"])}


def _failure(result: dg.ExecuteInProcessResult) -> str:
    event = next(e for e in result.all_events if e.event_type_value == "STEP_FAILURE")
    return str(event.event_specific_data.error.message)


def test_a_broken_sync_file_fails_its_own_asset_and_the_others_run(
    project: E2EProject, caplog: pytest.LogCaptureFixture
) -> None:
    _setup_duckdb(project, 8)
    models = project.dir / "models"
    (models / "contacts.yml").write_text(BROKEN_YAML)  # a YAML typo
    (models / "companies.yml").write_text(BROKEN_SCHEMA)  # valid YAML, not a valid sync (endpoint)
    policy = dg.RetryPolicy(max_retries=2, delay=0)
    with caplog.at_level(logging.WARNING, logger="sixtyfour_sync.dagster"):
        assets = build_sync_assets(
            project.dir, api_key=project.api_key, api_url=project.url, env=project.env, retry_policy=policy
        )
    contacts = invalid_file_key(models / "contacts.yml", project.dir)
    companies = invalid_file_key(models / "companies.yml", project.dir)
    assert contacts == dg.AssetKey(["sixtyfour_invalid_file", "models_contacts_yml"])
    by_key = {a.key: a for a in assets}
    assert set(by_key) == {ENRICHED, contacts, companies}
    warned = caplog.text
    assert (
        f"{models / 'contacts.yml'}:5: invalid YAML" in warned
        and "sixtyfour_invalid_file/models_contacts_yml" in warned
    )
    assert f"{models / 'companies.yml'}:4: syncs.0.endpoint" in warned
    dg.Definitions(assets=assets).resolve_asset_graph()  # the code location loads

    good = dg.materialize([by_key[ENRICHED]], raise_on_error=False)
    assert good.success  # the good file's sync runs although another file is broken
    assert len(project.emulator.submissions) == 1

    for key, where, what in (
        (contacts, f"{models / 'contacts.yml'}:5", "invalid YAML"),
        (companies, f"{models / 'companies.yml'}:4", "syncs.0.endpoint: Input should be 'people' or 'company'"),
    ):
        failed = dg.materialize([by_key[key]], raise_on_error=False)
        assert not failed.success
        assert "STEP_UP_FOR_RETRY" not in _events(failed)  # a file to fix, not a retry
        message = _failure(failed)
        assert f"{where}: {what}" in message and "fix it, then reload the code location" in message, message

    # a selection naming a sync of a broken file does not stop the load either
    selected = build_sync_assets(project.dir, select=["enrich_leads", "enrich_contacts"], env=project.env)
    assert {a.key for a in selected} == {
        ENRICHED,
        invalid_file_key(models / "contacts.yml", project.dir, select=["enrich_leads", "enrich_contacts"]),
        invalid_file_key(models / "companies.yml", project.dir, select=["enrich_leads", "enrich_contacts"]),
    }

    # the good file broken after the code location loaded: its asset fails with the error, not retried, unpaid
    leads = models / "leads.yml"
    leads.write_text(leads.read_text().replace("endpoint: people", "endpoint: peple"))
    again = dg.materialize([by_key[ENRICHED]], raise_on_error=False)
    assert not again.success and "STEP_UP_FOR_RETRY" not in _events(again)
    assert f"{leads}:4: syncs.0.endpoint" in _failure(again)
    assert len(project.emulator.submissions) == 1
