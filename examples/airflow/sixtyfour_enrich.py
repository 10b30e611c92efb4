"""An Airflow 3 DAG: `plan` gates `run`, the run waits for Sixtyfour without holding a worker, and config
errors fail at once instead of being retried.

- `plan` calls no paid endpoint. A config mistake (ConfigError: a missing table, a wrong key, a bad YAML key)
  fails the task with AirflowFailException: retrying cannot fix a file. Nothing to send skips `run`; an
  estimate over the budget fails before anything is paid.
- `run` is a sensor in reschedule mode: each poke calls `run(max_wait_seconds=...)`, which finishes the jobs
  an earlier poke left running (never submitting them again: the ledger and the Idempotency-Key see to it)
  and returns. Exit 3 (jobs still running) gives the worker slot back until the next poke; exit 0 ends the
  task; exit 1 fails it without retry.

The API key comes from the worker's environment (SIXTYFOUR_API_KEY, e.g. from a secrets backend), never from
this file. Put the file in your dags/ folder and set PROJECT.
"""

from __future__ import annotations

import os
from datetime import datetime, timedelta
from typing import Any

from airflow.sdk import PokeReturnValue, dag, task
from airflow.sdk.exceptions import AirflowFailException

PROJECT = os.environ.get("SIXTYFOUR_SYNC_PROJECT", "/opt/airflow/analytics")  # models/*.yml, profiles.yml
SELECT = ["tag:daily"]
BUDGET_CENTS = 50_000
POKE_SECONDS = 600  # between pokes the task waits in the scheduler, not on a worker
# how long one poke waits for running jobs before giving the slot back
WAIT_PER_POKE_SECONDS = float(os.environ.get("SIXTYFOUR_SYNC_WAIT_PER_POKE", "120"))


@dag(
    schedule="0 6 * * *",
    start_date=datetime(2026, 1, 1),
    catchup=False,
    tags=["enrichment", "sixtyfour"],
    default_args={"retries": 2, "retry_delay": timedelta(minutes=10)},
)
def sixtyfour_enrich() -> None:
    """Enrich the daily syncs after dbt has built their models."""

    @task.short_circuit
    def plan() -> dict[str, Any] | None:
        """Rows and estimated cost per sync; None (skip the run) when there is nothing to send."""
        from sixtyfour_sync import plan as plan_syncs
        from sixtyfour_sync.errors import ConfigError

        try:
            plans = plan_syncs(PROJECT, select=SELECT, max_cost_cents=BUDGET_CENTS)
        except ConfigError as exc:  # the files are wrong: a retry would fail the same way
            raise AirflowFailException(str(exc)) from exc
        over = [p.name for p in plans if p.over_budget]
        if over:
            raise AirflowFailException(f"estimated cost over the budget for {', '.join(over)}: raise it or limit rows")
        summary = {p.name: {"rows": p.rows, "cost_cents": p.estimated_cost_cents} for p in plans}
        return summary if any(p.rows for p in plans) else None

    @task.sensor(poke_interval=POKE_SECONDS, timeout=12 * 3600, mode="reschedule")
    def run(planned: dict[str, Any]) -> PokeReturnValue:
        """Submit, or finish what an earlier poke submitted; done when nothing is still running."""
        from sixtyfour_sync import run as run_syncs

        result = run_syncs(
            PROJECT, select=list(planned), max_cost_cents=BUDGET_CENTS, max_wait_seconds=WAIT_PER_POKE_SECONDS
        )
        if result.exit_code == 1:  # config, credits or bad data: a person has to act (a budget reached is exit 0)
            errors = "; ".join(e for s in result.syncs for e in s.errors) or result.status
            raise AirflowFailException(f"sixtyfour-sync run {result.run_id} failed: {errors}")
        return PokeReturnValue(is_done=result.exit_code == 0, xcom_value=result.to_dict())

    run(plan())


sixtyfour_enrich()
