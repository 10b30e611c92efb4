"""sixtyfour-sync reads dbt's files, never dbt itself: `plan`, `run --only-rebuilt` and `dbt-sources` on a
dbt v2 (manifest v20) project import no module of dbt-core, which is installed here for the dbt round trip.

Each command runs in a child process whose import system refuses and records any `dbt`, `dbt.*`,
`dbt_common` or `dbt_adapters` module.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest
import yaml

from tests.e2e.conftest import E2EProject, lead_rows

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"

#: Runs the CLI with an import hook that refuses dbt-core's packages and writes down every attempt.
GUARDED = """
import atexit, importlib.abc, os, sys
tried = []
class RefuseDbt(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("dbt", "dbt_common", "dbt_adapters"):
            tried.append(name)
            raise ImportError(f"{name} must not be imported")
        return None
sys.meta_path.insert(0, RefuseDbt())
def report():
    loaded = [m for m in sys.modules if m.split(".")[0] in ("dbt", "dbt_common", "dbt_adapters")]
    with open(os.environ["IMPORT_REPORT"], "w") as f:
        f.write("\\n".join(tried + loaded))
atexit.register(report)
from sixtyfour_sync.cli import main
main()
"""


def _guarded(project: E2EProject, d: Path, report: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, **project.env, "IMPORT_REPORT": str(report)}
    return subprocess.run(
        [sys.executable, "-c", GUARDED, "--project-dir", str(d), *args],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
        stdin=subprocess.DEVNULL,
    )


@pytest.fixture
def v2_project(tmp_path: Path) -> Path:
    """A dbt v2 project as sixtyfour-sync sees it: dbt_project.yml, a profile, target/ with manifest v20 and run
    results, the model's table in DuckDB, and a ref: sync in sixtyfour/."""
    d = tmp_path / "analytics"
    (d / "target").mkdir(parents=True)
    for name in ("manifest.json", "run_results.json"):
        shutil.copy(FIXTURES / "manifest_v20" / name, d / "target" / name)
    (d / "dbt_project.yml").write_text("name: sf_fixture\nversion: '1.0'\nconfig-version: 2\nprofile: sf_fixture\n")
    (d / "profiles.yml").write_text(
        "sf_fixture:\n  target: dev\n  outputs:\n    dev:\n      type: duckdb\n      path: wh.duckdb\n"
    )
    (d / "sixtyfour").mkdir()
    (d / "sixtyfour" / "leads.yml").write_text(
        "syncs:\n  - name: enrich_stg_leads\n    endpoint: people\n"
        "    source: {ref: stg_leads, key: lead_id}\n"
        "    struct: {email: The individual's work email address}\n"
        "    target: {table: leads_enriched}\n"
    )
    con = duckdb.connect(str(d / "wh.duckdb"))
    con.execute("CREATE TABLE stg_leads (lead_id INT, first_name TEXT, last_name TEXT, company TEXT, domain TEXT)")
    con.executemany("INSERT INTO stg_leads VALUES (?, ?, ?, ?, ?)", [r[:5] for r in lead_rows(12)])
    con.close()
    return d


def test_plan_run_and_dbt_sources_never_import_dbt(project: E2EProject, v2_project: Path, tmp_path: Path) -> None:
    d = v2_project
    report = tmp_path / "imports.txt"

    planned = _guarded(project, d, report, "--log-format", "json", "plan")
    assert planned.returncode == 0, planned.stdout + planned.stderr
    assert report.read_text() == ""
    [plan] = json.loads(planned.stdout.splitlines()[-1])["plans"]
    assert plan["rows"] == 12  # stg_leads resolved through manifest v20 to wh.main.stg_leads

    ran = _guarded(project, d, report, "run", "--only-rebuilt", "--yes")
    assert ran.returncode in (0, 3), ran.stdout + ran.stderr  # 3: the emulator fails some rows on purpose
    assert report.read_text() == ""
    assert "enrich_stg_leads" in ran.stdout and project.emulator.submissions

    sources = _guarded(project, d, report, "dbt-sources")
    assert sources.returncode == 0, sources.stderr
    assert report.read_text() == ""
    assert yaml.safe_load(sources.stdout)["sources"][0]["tables"][0]["name"] == "leads_enriched"


def test_the_guard_sees_an_import_of_dbt(tmp_path: Path) -> None:
    """The hook is live: a command line that imports dbt is caught (so an empty report means something)."""
    report = tmp_path / "imports.txt"
    env = {**os.environ, "IMPORT_REPORT": str(report)}
    code = GUARDED.replace("from sixtyfour_sync.cli import main\nmain()", "import dbt.version")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 1 and "dbt must not be imported" in out.stderr
    assert report.read_text().splitlines() == ["dbt"]
