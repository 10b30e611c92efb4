"""The Python API behind the commands: ``validate``, ``plan``, ``run``, ``status``, ``cancel``, ``dbt_sources``.

Orchestrators (Airflow, Dagster, cron) call these directly::

    from sixtyfour_sync import run
    result = run("path/to/project", select=["tag:daily"], max_cost_cents=50_000)
    if result.exit_code != 0: ...

One module per command: validating.py, planning.py, running.py (one sync's life is engine/lifecycle.py),
ledger_views.py (``status``, ``cancel``), listing.py (``dbt-sources``, ``ls``), evaluating.py (``evaluate``); what
they share in _shared.py.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from sixtyfour_sync._lazy import lazy_names

if TYPE_CHECKING:
    from sixtyfour_sync.commands._shared import API_KEY_ENV, API_URL_ENV, run_account, selection_log
    from sixtyfour_sync.commands.evaluating import EvaluationResult, SampleResult, evaluate, sample
    from sixtyfour_sync.commands.ledger_views import StatusReport, cancel, open_ledgers, status
    from sixtyfour_sync.commands.listing import dbt_sources, list_syncs
    from sixtyfour_sync.commands.planning import plan
    from sixtyfour_sync.commands.running import run
    from sixtyfour_sync.commands.validating import ValidationReport, validate
    from sixtyfour_sync.engine.context import Reporter
    from sixtyfour_sync.engine.summary import RunResult, SyncPlan, SyncResult

#: Each name's module: a command imports only what it uses (``plan`` loads no API client and no runner).
_WHERE = {
    "API_KEY_ENV": "sixtyfour_sync.commands._shared",
    "API_URL_ENV": "sixtyfour_sync.commands._shared",
    "EvaluationResult": "sixtyfour_sync.commands.evaluating",
    "Reporter": "sixtyfour_sync.engine.context",
    "SampleResult": "sixtyfour_sync.commands.evaluating",
    "RunResult": "sixtyfour_sync.engine.summary",
    "StatusReport": "sixtyfour_sync.commands.ledger_views",
    "SyncPlan": "sixtyfour_sync.engine.summary",
    "SyncResult": "sixtyfour_sync.engine.summary",
    "ValidationReport": "sixtyfour_sync.commands.validating",
    "cancel": "sixtyfour_sync.commands.ledger_views",
    "dbt_sources": "sixtyfour_sync.commands.listing",
    "evaluate": "sixtyfour_sync.commands.evaluating",
    "list_syncs": "sixtyfour_sync.commands.listing",
    "open_ledgers": "sixtyfour_sync.commands.ledger_views",
    "plan": "sixtyfour_sync.commands.planning",
    "run": "sixtyfour_sync.commands.running",
    "run_account": "sixtyfour_sync.commands._shared",
    "sample": "sixtyfour_sync.commands.evaluating",
    "selection_log": "sixtyfour_sync.commands._shared",
    "status": "sixtyfour_sync.commands.ledger_views",
    "validate": "sixtyfour_sync.commands.validating",
}

__all__ = [
    "API_KEY_ENV",
    "API_URL_ENV",
    "EvaluationResult",
    "Reporter",
    "RunResult",
    "SampleResult",
    "StatusReport",
    "SyncPlan",
    "SyncResult",
    "ValidationReport",
    "cancel",
    "dbt_sources",
    "evaluate",
    "list_syncs",
    "open_ledgers",
    "plan",
    "run",
    "run_account",
    "sample",
    "selection_log",
    "status",
    "validate",
]


__getattr__ = lazy_names(__name__, _WHERE)
