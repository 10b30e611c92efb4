"""The Airflow example DAGs under the current Airflow 3, in a virtualenv of its own (Airflow pins its own
dependencies), executed by Airflow's own `dag.test()` against a SQLite metadata database: the emulator on a
socket, a real dbt build of tests/fixtures/dbt_project into a DuckDB file.

The story, DAG run by DAG run (each in a process of its own, as a scheduler would start them):

1. `dbt_build` builds the project for the target DBT_TARGET names (not the profile's default);
   the model's Asset event queues `sixtyfour_enrich`, which `plan`s 27 rows and `run`s: both files are
   submitted, the jobs are still running when the sensor times out, and the DAG run fails with them in flight.
2. The jobs finish. `dbt_build` again: no new rows, but `plan` reports the jobs in flight, so `run` merges them
   (nothing submitted again) and updates the enriched table's Asset, with the target in the event.
3. A config mistake fails `plan` at once (AirflowFailException: no retry) and `run` never starts.

The virtualenv takes 30-90 s to install (pip's cache warm) and the DAG runs about 3 minutes;
SIXTYFOUR_SYNC_SKIP_AIRFLOW=1 skips the test.
With SIXTYFOUR_SYNC_AIRFLOW_TRANSCRIPT=<file> the task order of the DAG runs is also written there.
"""

from __future__ import annotations

import json
import os
import shutil
import site
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import duckdb
import pytest

from tests.e2e.conftest import unique_key
from tests.e2e.test_dbt import DBT, FIXTURE, _require_dbt
from tests.services import IN_CI

DAG_DIR = Path(__file__).resolve().parents[2] / "examples" / "airflow"
ASSET_PREFIX = "duckdb://wh.duckdb/wh/ci"  # as Cosmos names the tables of the profile's `ci` output
STG_LEADS = f"{ASSET_PREFIX}/stg_leads"
LEADS_ENRICHED = f"{ASSET_PREFIX}/leads_enriched"
PROFILES = """\
sf_fixture:
  target: dev
  outputs:
    dev:
      type: duckdb
      path: wh.duckdb
      schema: main
    ci:
      type: duckdb
      path: wh.duckdb
      schema: ci
"""

# argv: the DAG folder, the JSON file to write, then the DAGs to run with dag.test(), in order.
PROBE = textwrap.dedent(
    """
    import json, sys
    from airflow.dag_processing.dagbag import DagBag
    from airflow.models.asset import AssetDagRunQueue, AssetEvent
    from airflow.models.dag import DagModel
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session
    from sqlalchemy import delete, select

    bag = DagBag(dag_folder=sys.argv[1])
    out = {"errors": {k: str(v) for k, v in bag.import_errors.items()}, "dags": {}, "runs": []}
    for dag_id, dag in sorted(bag.dags.items()):
        schedule = [a.uri for a in dag.schedule] if isinstance(dag.schedule, list) else dag.schedule
        tasks = {
            t: {"type": type(o).__name__, "mode": getattr(o, "mode", None), "upstream": sorted(o.upstream_task_ids),
                "outlets": [a.uri for a in o.outlets], "retries": o.retries}
            for t, o in dag.task_dict.items()
        }
        out["dags"][dag_id] = {"schedule": schedule, "tasks": tasks}
    for dag_id in sys.argv[3:]:
        with create_session() as session:  # the scheduler empties a DAG's queue when it starts the run it asked for
            session.execute(delete(AssetDagRunQueue).where(AssetDagRunQueue.target_dag_id == dag_id))
        dr = bag.dags[dag_id].test()
        with create_session() as session:
            tis = sorted(dr.get_task_instances(session=session), key=lambda ti: str(ti.start_date or "~"))
            xcoms = session.scalars(select(XComModel).where(
                XComModel.dag_id == dag_id, XComModel.run_id == dr.run_id, XComModel.key == "return_value"))
            _, due = DagModel.dags_needing_dagruns(session)
            out["runs"].append({
                "dag_id": dag_id, "run_id": dr.run_id, "state": str(dr.state),
                "tis": [{"task_id": ti.task_id, "state": str(ti.state), "try_number": ti.try_number,
                         "start": ti.start_date, "end": ti.end_date} for ti in tis],
                "xcom": {x.task_id: XComModel.deserialize_value(x) for x in xcoms},
                "queued": sorted(q.target_dag_id for q in session.scalars(select(AssetDagRunQueue))),
                "due": sorted(due),
            })
            session.rollback()
    with create_session() as session:
        out["events"] = [
            {"uri": e.asset.uri, "source": f"{e.source_dag_id}.{e.source_task_id}", "run_id": e.source_run_id,
             "extra": e.extra, "at": e.timestamp}
            for e in session.scalars(select(AssetEvent).order_by(AssetEvent.timestamp))
        ]
    with open(sys.argv[2], "w") as f:
        json.dump(out, f, default=str)
    """
)


@pytest.fixture(scope="module")
def airflow_python(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if os.environ.get("SIXTYFOUR_SYNC_SKIP_AIRFLOW"):
        pytest.skip("SIXTYFOUR_SYNC_SKIP_AIRFLOW is set")
    venv = tmp_path_factory.mktemp("airflow") / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    python = venv / "bin" / "python"
    pip = subprocess.run(
        [str(python), "-m", "pip", "install", "-q", "apache-airflow>=3,<4"],
        capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    if pip.returncode != 0:
        if IN_CI:
            pytest.fail(f"cannot install Airflow: {pip.stderr[-2000:]}", pytrace=False)
        pytest.skip("cannot install Airflow here (no package index?)")
    # sixtyfour_sync and its drivers from this environment, after Airflow's own packages (which win).
    target = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True, text=True, check=True,
    ).stdout.strip()  # fmt: skip
    ours = [p for p in site.getsitepackages() if Path(p).is_dir()]
    repo = str(Path(__file__).resolve().parents[2])
    (Path(target) / "zz_sixtyfour_sync_tests.pth").write_text("\n".join([repo, *ours]) + "\n")
    return python


def _dag_runs(python: Path, env: dict[str, str], out: Path, *dag_ids: str, timeout: float = 300) -> dict[str, Any]:
    """`dag.test()` for each DAG in order, in one process; what the DAGs are and what their runs did."""
    done = subprocess.run(
        [str(python), "-c", PROBE, str(DAG_DIR), str(out), *dag_ids],
        capture_output=True, text=True, env=env, timeout=timeout, cwd=out.parent,
    )  # fmt: skip
    assert done.returncode == 0, (done.stdout + done.stderr)[-4000:]
    doc: dict[str, Any] = json.loads(out.read_text())
    assert doc["errors"] == {}
    return doc


def _tis(run: dict[str, Any]) -> dict[str, tuple[str, int]]:
    return {ti["task_id"]: (ti["state"], ti["try_number"]) for ti in run["tis"]}


def _transcript(runs: list[dict[str, Any]], events: list[dict[str, Any]], notes: dict[int, str]) -> str:
    lines = ["Airflow 3 dag.test() runs of examples/airflow/sixtyfour_enrich.py, in the order they ran", ""]
    for n, run in enumerate(runs, 1):
        if n in notes:
            lines.append(f"-- {notes[n]}")
        lines.append(f"DAG run {n}: {run['dag_id']} {run['run_id']} -> {run['state']}")
        for ti in run["tis"]:
            lines.append(f"  {ti['task_id']:<6} {ti['state']:<16} try {ti['try_number']}  {ti['start']} .. {ti['end']}")
        for task_id, value in run["xcom"].items():
            if task_id == "build":
                continue
            text = json.dumps(value if task_id != "run" else {k: value[k] for k in ("run_id", "status")})
            lines.append(f"  xcom {task_id}: {text}")
        for event in events:
            if event["run_id"] == run["run_id"]:
                lines.append(f"  asset event {event['uri']} from {event['source']} extra={json.dumps(event['extra'])}")
        if run["queued"]:
            lines.append(f"  queued by asset events: {', '.join(run['queued'])}")
    return "\n".join(lines) + "\n"


def _airflow(python: Path, tmp_path: Path, project: Path, api_key: str) -> dict[str, str]:
    """The environment of every DAG run: a SQLite metadata database in tmp_path, migrated."""
    home = tmp_path / "airflow_home"
    home.mkdir()
    env = {
        **os.environ,
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(DAG_DIR),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
        "DBT_TARGET": "ci",  # the profile's default is dev
        "SIXTYFOUR_SYNC_PROJECT": str(project),
        "DBT_EXECUTABLE": str(DBT),
        "DBT_SEND_ANONYMOUS_USAGE_STATS": "false",
        "DO_NOT_TRACK": "1",
        "SIXTYFOUR_SYNC_ASSET_PREFIX": ASSET_PREFIX,
        "SIXTYFOUR_API_KEY": api_key,
        "SIXTYFOUR_SYNC_POLL_INTERVAL": "0.05",
        "SIXTYFOUR_SYNC_POKE_SECONDS": "1",
        "SIXTYFOUR_SYNC_WAIT_PER_POKE": "1",
        "SIXTYFOUR_SYNC_RUN_TIMEOUT": "1",  # the first DAG run's `run` gives up while its jobs still run
    }
    env.pop("DBT_PROFILES_DIR", None)
    migrate = subprocess.run(
        [str(python.parent / "airflow"), "db", "migrate"],
        capture_output=True, text=True, env=env, timeout=300, cwd=tmp_path,
    )  # fmt: skip
    assert migrate.returncode == 0, migrate.stderr[-3000:]
    return env


def _assert_declared(dags: dict[str, Any]) -> None:
    """dbt's outlet is the Asset sixtyfour_enrich is scheduled on; run's outlet is the enriched table."""
    assert dags["dbt_build"]["tasks"]["build"]["outlets"] == [STG_LEADS]
    assert dags["sixtyfour_enrich"]["schedule"] == [STG_LEADS]
    tasks = dags["sixtyfour_enrich"]["tasks"]
    assert tasks["plan"]["type"] == "_ShortCircuitDecoratedOperator" and tasks["plan"]["upstream"] == []
    assert tasks["run"]["type"] == "DecoratedSensorOperator"
    assert (tasks["run"]["mode"], tasks["run"]["upstream"]) == ("reschedule", ["plan"])
    assert tasks["run"]["outlets"] == [LEADS_ENRICHED]
    assert tasks["plan"]["retries"] == 2  # retries stay for what a retry can fix


def _assert_in_order(runs: list[dict[str, Any]]) -> None:
    """dbt's build, then plan, then run, each ended before the next started."""
    order = [(run["dag_id"], ti["task_id"], ti["start"], ti["end"]) for run in runs for ti in run["tis"]]
    expected = [("dbt_build", "build"), ("sixtyfour_enrich", "plan"), ("sixtyfour_enrich", "run")]
    assert [(d, t) for d, t, _, _ in order] == expected * (len(runs) // 2)
    assert all(order[i][3] <= order[i + 1][2] for i in range(len(order) - 1)), order


def _warehouse(project: Path) -> tuple[list[tuple[Any, ...]], int]:
    """The enriched rows by status in the `ci` output's schema, and the tables in the default output's."""
    con = duckdb.connect(str(project / "wh.duckdb"), read_only=True)
    try:
        statuses = con.execute("SELECT _sixtyfour_status, count(*) FROM ci.leads_enriched GROUP BY 1").fetchall()
        row = con.execute("SELECT count(*) FROM information_schema.tables WHERE table_schema = 'main'").fetchone()
    finally:
        con.close()
    return statuses, int(row[0]) if row else -1


@pytest.mark.slow
@pytest.mark.timeout(1800)  # the virtualenv (up to 900 s without pip's cache), two dbt builds, five DAG runs
def test_the_airflow_3_example_after_dbt_with_assets_a_target_and_jobs_in_flight(
    airflow_python: Path, tmp_path: Path
) -> None:
    from sixtyfour_sync.emulator import Emulator, EmulatorSettings

    _require_dbt()
    project = tmp_path / "analytics"
    shutil.copytree(FIXTURE, project)
    (project / "profiles.yml").write_text(PROFILES)
    key = unique_key()
    env = _airflow(airflow_python, tmp_path, project, key)
    # jobs run until the test finishes them
    emu = Emulator(EmulatorSettings(api_keys=frozenset({key}), job_seconds=3600, failure_rate=0.0))
    with emu.serve() as server:
        env["SIXTYFOUR_API_URL"] = server.url
        first = _dag_runs(airflow_python, env, tmp_path / "first.json", "dbt_build", "sixtyfour_enrich")
        _assert_declared(first["dags"])
        dbt_run, enrich_run = first["runs"]
        assert dbt_run["state"] == "success" and _tis(dbt_run) == {"build": ("success", 1)}
        assert dbt_run["queued"] == ["sixtyfour_enrich"]  # the model's Asset event queued the enrichment
        assert "sixtyfour_enrich" in dbt_run["due"]  # what the scheduler reads to start asset-triggered runs
        # plan got DBT_TARGET (dbt built for ci: under the default, dev, the manifest would be refused)
        assert enrich_run["xcom"]["plan"] == {
            "target": "ci",
            "syncs": {"enrich_stg_leads": {"rows": 27, "cost_cents": None, "jobs_in_flight": 0}},
        }
        # the sensor timed out (no retry) with both jobs running: the DAG run fails, the jobs stay in flight
        assert enrich_run["state"] == "failed"
        assert _tis(enrich_run) == {"plan": ("success", 1), "run": ("failed", 1)}
        assert [x.row_count for x in emu.submissions] == [1, 26]  # under a budget: a one-row file, then the rest
        assert [e["uri"] for e in first["events"]] == [STG_LEADS]  # no merge, no event for the enriched table

        for job in list(emu.jobs.values()):
            emu.complete(job.task_id)
        second = _dag_runs(airflow_python, env, tmp_path / "second.json", "dbt_build", "sixtyfour_enrich")
        dbt_again, enrich_again = second["runs"]
        assert dbt_again["state"] == "success" and dbt_again["queued"] == ["sixtyfour_enrich"]
        planned = enrich_again["xcom"]["plan"]
        assert planned["target"] == "ci"
        assert planned["syncs"]["enrich_stg_leads"]["rows"] == 0  # dbt brought no new rows...
        assert planned["syncs"]["enrich_stg_leads"]["jobs_in_flight"] == 2  # ...but the first DAG run's jobs run
        assert enrich_again["state"] == "success"
        assert _tis(enrich_again) == {"plan": ("success", 1), "run": ("success", 1)}
        ran = enrich_again["xcom"]["run"]
        assert ran["status"] == "success" and ran["syncs"][0]["resumed"]["rows_merged"] == 27
        assert len(emu.submissions) == 2  # merged, nothing submitted again
        event = second["events"][-1]
        assert (event["uri"], event["source"], event["run_id"]) == (LEADS_ENRICHED, "sixtyfour_enrich.run",
                                                                    enrich_again["run_id"])  # fmt: skip
        assert event["extra"] == {"target": "ci", "run_id": ran["run_id"], "status": "success"}
        _assert_in_order([*first["runs"], *second["runs"]])

        model = project / "models" / "enrich_leads.yml"
        model.write_text(model.read_text().replace("ref: stg_leads", "ref: stg_leadz"))
        third = _dag_runs(airflow_python, env, tmp_path / "third.json", "sixtyfour_enrich", timeout=200)
        (broken,) = third["runs"]
        assert broken["state"] == "failed"
        assert _tis(broken) == {"plan": ("failed", 1), "run": ("upstream_failed", 0)}  # failed once, not retried
        assert len(emu.submissions) == 2

    assert _warehouse(project) == ([("enriched", 27)], 0)  # nothing where the profile's default target points
    notes = {
        3: "between the DAG runs the API finishes the two jobs the timed-out `run` left in flight",
        5: "the sync's models file now refers to a model that does not exist (ref: stg_leadz)",
    }
    transcript = _transcript([*first["runs"], *second["runs"], *third["runs"]], third["events"], notes)
    (tmp_path / "task-order.txt").write_text(transcript)
    if os.environ.get("SIXTYFOUR_SYNC_AIRFLOW_TRANSCRIPT"):
        Path(os.environ["SIXTYFOUR_SYNC_AIRFLOW_TRANSCRIPT"]).write_text(transcript)
