"""The Airflow example DAG under the current Airflow 3, in a virtualenv of its own (Airflow pins its own
dependencies): it imports, `plan` gates `run`, `run` is a rescheduling sensor, a config error fails without a
retry, and a run whose jobs are still running gives its slot back. The tasks' callables run for real against
the emulator on a socket and a DuckDB file.

The virtualenv takes about 30 s to install (pip's cache warm); SIXTYFOUR_SYNC_SKIP_AIRFLOW=1 skips the test.
"""

from __future__ import annotations

import json
import os
import site
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.e2e.conftest import E2EProject
from tests.e2e.test_run_duckdb import _setup_duckdb
from tests.services import IN_CI

DAG_DIR = Path(__file__).resolve().parents[2] / "examples" / "airflow"

PROBE = textwrap.dedent(
    """
    import json, os, sys
    from airflow.dag_processing.dagbag import DagBag
    from airflow.sdk.exceptions import AirflowFailException

    bag = DagBag(dag_folder=sys.argv[1])
    out = {"errors": {k: str(v) for k, v in bag.import_errors.items()}}
    dag = bag.dags["sixtyfour_enrich"]
    tasks = dag.task_dict
    out["tasks"] = {
        t: [type(o).__name__, getattr(o, "mode", None), sorted(o.upstream_task_ids)] for t, o in tasks.items()
    }
    planned = tasks["plan"].python_callable()
    out["planned"] = planned
    poke = tasks["run"].python_callable(planned)
    out["poke"] = {"is_done": poke.is_done, "status": (poke.xcom_value or {}).get("status")}
    os.environ["SIXTYFOUR_API_URL"] = sys.argv[2]  # a slow emulator: jobs still running after the poke
    model = os.path.join(os.environ["SIXTYFOUR_SYNC_PROJECT"], "models", "leads.yml")
    text = open(model).read()
    open(model, "w").write(text.replace("when: changed", "when: always"))
    slow = tasks["run"].python_callable(planned)
    out["slow_poke"] = {"is_done": slow.is_done}
    open(model, "w").write(text.replace("table: leads\\n", "table: no_such_table\\n"))
    try:
        tasks["plan"].python_callable()
        out["config_error"] = None
    except AirflowFailException as exc:
        out["config_error"] = str(exc)
    print(json.dumps(out, default=str))
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


@pytest.mark.slow
def test_the_airflow_3_example_gates_reschedules_and_fails_fast(
    airflow_python: Path, project: E2EProject, tmp_path: Path
) -> None:
    from sixtyfour_sync.emulator import Emulator, EmulatorSettings

    _setup_duckdb(project, 8)
    slow = Emulator(EmulatorSettings(api_keys=frozenset({project.api_key}), job_seconds=120))
    env = {**os.environ, **project.env, "SIXTYFOUR_SYNC_PROJECT": str(project.dir)}
    env |= {"AIRFLOW_HOME": str(tmp_path), "SIXTYFOUR_SYNC_WAIT_PER_POKE": "1"}
    with slow.serve() as server:
        out = subprocess.run(
            [str(airflow_python), "-c", PROBE, str(DAG_DIR), server.url],
            capture_output=True, text=True, env=env, timeout=600, cwd=tmp_path,
        )  # fmt: skip
    assert out.returncode == 0, out.stderr[-4000:]
    doc = json.loads(out.stdout.strip().splitlines()[-1])
    assert doc["errors"] == {}
    assert doc["tasks"]["plan"][0] == "_ShortCircuitDecoratedOperator"
    assert doc["tasks"]["run"] == ["DecoratedSensorOperator", "reschedule", ["plan"]]
    assert doc["planned"] == {"enrich_leads": {"rows": 8, "cost_cents": None}}
    assert doc["poke"] == {"is_done": True, "status": "success"}
    assert doc["slow_poke"] == {"is_done": False}  # still running: the slot is given back, nothing fails
    assert "source table no_such_table does not exist" in doc["config_error"]
    # under the DAG's budget a learned price is checked first: a one-row file, then the rest
    assert [x.row_count for x in slow.submissions] == [1, 7]
