"""Two runs of one sync at once: the second does not submit. (Kills at every transition: test_crash_matrix.py.)"""

from __future__ import annotations

from sixtyfour_sync import commands as api
from tests.e2e.conftest import E2EProject
from tests.e2e.test_run_duckdb import _setup_duckdb


def test_two_runs_at_once_do_not_both_submit(project: E2EProject) -> None:
    from sixtyfour_sync.config.profiles import load_target
    from sixtyfour_sync.engine.ledger.lease import Lease, lease_name
    from sixtyfour_sync.engine.ledger.store import Ledger
    from sixtyfour_sync.warehouse import TableRef, connect

    _setup_duckdb(project, 10)
    target = load_target(project_dir=project.dir)
    with connect(target, project_dir=project.dir) as adapter:
        ledger = Ledger(adapter)
        ledger.ensure()
        name = lease_name("enrich_leads", adapter.table_sql(TableRef("leads_enriched")))
        with Lease(ledger, name, "another-run"):  # held by a live process (this one), for this sync and target
            result = api.run(project.dir, api_key=project.api_key, api_url=project.url, env=project.env)
        assert result.exit_code == 1
        assert "is being run by run another-run" in result.syncs[0].errors[0]
        assert not project.emulator.submissions
