"""Airflow 3 DAGs for a dbt team: dbt builds a model, the enrichment runs when that model's Asset is updated,
and the enriched table is an Asset for what comes after.

    dbt_build: dbt build --(Asset: the model)--> sixtyfour_enrich: plan --> run --(Asset: the enriched table)-->

- `dbt_build` stands for the DAG that already runs your dbt project. Its task lists the model the sync reads
  (`source.ref: stg_leads`) as an outlet, so a successful `dbt build` updates that Asset; a failed build or a
  failed dbt test updates nothing, and nothing is enriched or paid. With astronomer-cosmos, delete it: a
  `DbtDag` in `ExecutionMode.LOCAL` emits an Asset per model it runs, named on Airflow 3
  `<adapter>://<host>:<port>/<database>/<schema>/<table>` (DuckDB: `duckdb://<path>/<database>/<schema>/<table>`);
  give ASSET_PREFIX that name's first part and STG_LEADS is the Asset Cosmos updates.
- `sixtyfour_enrich` is scheduled on the model's Asset: it starts when dbt has rebuilt the model, whichever DAG
  ran dbt. Its `run` task has the enriched table as its outlet, so a DAG with `schedule=[LEADS_ENRICHED]`
  starts when new answers are merged; the asset event's `extra` says the target and the id of the last poke's
  run (`sixtyfour-sync status` lists it with the earlier pokes' runs).
- `plan` calls no paid endpoint. It lets `run` go when there are rows to send or jobs an earlier DAG run left
  in flight (`SyncPlan.unfinished_jobs`: a `run` task that timed out while a job was running, a DAG run marked
  failed), so a job is merged by the next DAG run even when dbt brought no new rows. A config mistake
  (ConfigError: a missing table, a wrong key, a manifest built for another target) fails the task with
  AirflowFailException: retrying cannot fix a file. An estimate over the budget fails before anything is paid.
- `run` is a sensor in reschedule mode: each poke calls `run(max_wait_seconds=...)`, which finishes the jobs
  an earlier poke (or DAG run) left running, never submitting them again (the ledger and the Idempotency-Key
  see to it), and returns. Exit 3 (jobs still running) gives the worker slot back until the next poke; exit 0
  ends the task and updates the enriched table's Asset; exit 1 fails it without retry.
- The profile target comes from DBT_TARGET in the worker's environment (the variable dbt itself reads), `prod`
  when unset: dbt builds for it and every sixtyfour_sync call gets it, so the manifest the sync reads its
  model's relation from and the profile it connects with agree. (An Airflow Variable read inside the tasks
  works too; Airflow then masks its value in the task logs.)

The API key comes from the worker's environment (SIXTYFOUR_API_KEY, e.g. from a secrets backend), never from
this file. Put the file in your dags/ folder and set PROJECT; the syncs' models/*.yml live in the dbt project.
"""

from __future__ import annotations

import os
import shlex
from datetime import datetime, timedelta
from typing import Any

from airflow.sdk import Asset, PokeReturnValue, dag, get_current_context, task
from airflow.sdk.exceptions import AirflowFailException

PROJECT = os.environ.get("SIXTYFOUR_SYNC_PROJECT", "/opt/airflow/analytics")  # dbt_project.yml, models/*.yml
DBT = os.environ.get("DBT_EXECUTABLE", "dbt")
TARGET = os.environ.get("DBT_TARGET", "prod")  # the profile target of dbt and of every sixtyfour_sync call
SELECT = ["enrich_stg_leads"]  # the syncs that read stg_leads
BUDGET_CENTS = 50_000
POKE_SECONDS = float(os.environ.get("SIXTYFOUR_SYNC_POKE_SECONDS", "600"))  # between pokes no worker is held
# how long one poke waits for running jobs before giving the slot back
WAIT_PER_POKE_SECONDS = float(os.environ.get("SIXTYFOUR_SYNC_WAIT_PER_POKE", "120"))
# how long `run` keeps poking; jobs still running then stay in flight and the next DAG run merges them
RUN_TIMEOUT_SECONDS = float(os.environ.get("SIXTYFOUR_SYNC_RUN_TIMEOUT", str(12 * 3600)))

# Where the tables live, as Cosmos names them on Airflow 3 (see above). An Asset made from one string, as Cosmos
# makes them, has it as both name and URI: Airflow 3 tells Assets apart by the two.
ASSET_PREFIX = os.environ.get("SIXTYFOUR_SYNC_ASSET_PREFIX", "postgres://warehouse:5432/analytics/marts")
STG_LEADS = Asset(f"{ASSET_PREFIX}/stg_leads")  # the dbt model enrich_stg_leads reads (source.ref)
LEADS_ENRICHED = Asset(f"{ASSET_PREFIX}/leads_enriched")  # its target table


@dag(schedule="0 5 * * *", start_date=datetime(2026, 1, 1), catchup=False, tags=["dbt"])
def dbt_build() -> None:
    """Build the dbt project; the models other DAGs read are the task's outlets."""

    @task.bash(outlets=[STG_LEADS], cwd=PROJECT)
    def build() -> str:
        return f"{shlex.quote(DBT)} build --project-dir {shlex.quote(PROJECT)} --target {shlex.quote(TARGET)}"

    build()


@dag(
    schedule=[STG_LEADS],
    start_date=datetime(2026, 1, 1),
    catchup=False,
    tags=["enrichment", "sixtyfour"],
    default_args={"retries": 2, "retry_delay": timedelta(minutes=10)},
)
def sixtyfour_enrich() -> None:
    """Enrich what reads stg_leads once dbt has rebuilt it; finish what an earlier DAG run left in flight."""

    @task.short_circuit
    def plan() -> dict[str, Any] | None:
        """The target, and per sync with work the rows, estimated cost and jobs in flight; None skips `run`."""
        from sixtyfour_sync import plan as plan_syncs
        from sixtyfour_sync.errors import ConfigError

        try:
            plans = plan_syncs(PROJECT, select=SELECT, target=TARGET, max_cost_cents=BUDGET_CENTS)
        except ConfigError as exc:  # the files are wrong: a retry would fail the same way
            raise AirflowFailException(str(exc)) from exc
        over = [p.name for p in plans if p.over_budget]
        if over:
            raise AirflowFailException(f"estimated cost over the budget for {', '.join(over)}: raise it or limit rows")
        work = {
            p.name: {"rows": p.rows, "cost_cents": p.estimated_cost_cents, "jobs_in_flight": p.unfinished_jobs}
            for p in plans
            if p.rows or p.unfinished_jobs
        }
        return {"target": TARGET, "syncs": work} if work else None

    @task.sensor(poke_interval=POKE_SECONDS, timeout=RUN_TIMEOUT_SECONDS, mode="reschedule", outlets=[LEADS_ENRICHED])
    def run(planned: dict[str, Any]) -> PokeReturnValue:
        """Submit, or finish what an earlier poke or DAG run submitted; done when nothing is still running."""
        from sixtyfour_sync import run as run_syncs

        result = run_syncs(
            PROJECT,
            select=list(planned["syncs"]),
            target=planned["target"],
            max_cost_cents=BUDGET_CENTS,
            max_wait_seconds=WAIT_PER_POKE_SECONDS,
        )
        if result.exit_code == 1:  # config, credits or bad data: a person has to act (a budget reached is exit 0)
            errors = "; ".join(e for s in result.syncs for e in s.errors) or result.status
            raise AirflowFailException(f"sixtyfour-sync run {result.run_id} failed: {errors}")
        done = result.exit_code == 0
        if done:  # said with the asset event that starts the DAGs scheduled on the enriched table
            extra = {"target": planned["target"], "run_id": result.run_id, "status": result.status}
            get_current_context()["outlet_events"][LEADS_ENRICHED].extra = extra
        return PokeReturnValue(is_done=done, xcom_value=result.to_dict())

    run(plan())


dbt_build()
sixtyfour_enrich()
