"""sixtyfour_sync.dagster for real: dagster's in-process materialize against the emulator on a socket."""

from __future__ import annotations

from pathlib import Path

import pytest

dg = pytest.importorskip("dagster")

from sixtyfour_sync.dagster import build_sync_assets, dbt_asset_key  # noqa: E402
from sixtyfour_sync.emulator import Emulator, EmulatorSettings  # noqa: E402
from tests.e2e.conftest import E2EProject  # noqa: E402
from tests.e2e.test_run_duckdb import _setup_duckdb  # noqa: E402


def _events(result: dg.ExecuteInProcessResult) -> list[str]:
    return [e.event_type_value for e in result.all_events]


def test_one_asset_per_sync_materialises_with_logs_and_metadata(project: E2EProject) -> None:
    _setup_duckdb(project, 25)
    [asset] = build_sync_assets(project.dir, api_key=project.api_key, api_url=project.url, env=project.env)
    assert asset.key == dg.AssetKey(["enrich_leads"])
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
    assert asset.key == dg.AssetKey(["enrichment", "enrich_stg_leads"])
    assert set(asset.asset_deps[asset.key]) == {dg.AssetKey(["stg_leads"])}
