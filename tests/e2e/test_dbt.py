"""A real dbt project: dbt builds a model, the sync reads it through the manifest, dbt sources the result.

`dbt build && sixtyfour-sync run --only-rebuilt`, then `sixtyfour-sync dbt-sources` lets a downstream dbt model
select from the enriched table, and that model builds.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import duckdb
import pytest
import yaml

from tests.e2e.conftest import E2EProject, run_cli
from tests.services import IN_CI, require_service

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "dbt_project"
DBT = Path(sys.executable).parent / "dbt"


def _require_dbt() -> None:
    if not DBT.exists():
        if IN_CI:
            pytest.fail("dbt is not installed; CI=true requires the test extras", pytrace=False)
        pytest.skip("dbt is not installed (pip install -e '.[test]')")


def _dbt(project_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DBT_SEND_ANONYMOUS_USAGE_STATS": "false", "DO_NOT_TRACK": "1"}
    return subprocess.run(
        [str(DBT), *args, "--profiles-dir", str(project_dir), "--project-dir", str(project_dir)],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
        cwd=project_dir,
    )


def _sync(project: E2EProject, project_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return run_cli(project, *args, project_dir=project_dir)


@pytest.fixture(params=["duckdb", "postgres"])
def warehouse(request: pytest.FixtureRequest) -> Iterator[tuple[str, str]]:
    """(kind, profile output YAML) for the dbt project; postgres gets a schema of its own."""
    if request.param == "duckdb":
        yield "duckdb", "      type: duckdb\n      path: wh.duckdb\n      schema: main\n"
        return
    require_service("postgres", "127.0.0.1", 5432)
    import psycopg

    schema = f"dbt_{uuid.uuid4().hex[:10]}"
    try:
        yield (
            "postgres",
            (
                "      type: postgres\n      host: 127.0.0.1\n      port: 5432\n      user: postgres\n"
                f"      password: ''\n      dbname: test\n      schema: {schema}\n      threads: 1\n"
            ),
        )
    finally:
        with psycopg.connect("host=127.0.0.1 user=postgres dbname=test", autocommit=True) as con:
            con.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


def _counts(kind: str, d: Path, profile: str) -> tuple[int, int, int]:
    queries = (
        "SELECT count(*) FROM stg_leads",
        "SELECT count(*) FROM leads_enriched",
        "SELECT count(*) FROM lead_emails WHERE email LIKE '%@%'",
    )
    if kind == "duckdb":
        con = duckdb.connect(str(d / "wh.duckdb"), read_only=True)
        try:
            return tuple(con.execute(q).fetchall()[0][0] for q in queries)  # type: ignore[return-value]
        finally:
            con.close()
    import psycopg

    schema = re.search(r"schema: (\S+)", profile).group(1)  # type: ignore[union-attr]
    with psycopg.connect("host=127.0.0.1 user=postgres dbname=test") as con:
        con.execute(f'SET search_path = "{schema}"')
        return tuple(con.execute(q).fetchone()[0] for q in queries)  # type: ignore[return-value,index]


def test_dbt_build_sync_and_a_downstream_model(project: E2EProject, tmp_path: Path, warehouse: tuple[str, str]) -> None:
    _require_dbt()
    kind, profile = warehouse
    d = tmp_path / "dbt_project"
    shutil.copytree(FIXTURE, d)
    (d / "profiles.yml").write_text("sf_fixture:\n  target: dev\n  outputs:\n    dev:\n" + profile)
    # before dbt has run, the ref cannot resolve: the error says what to do
    early = _sync(project, d, "plan")
    assert early.returncode == 1
    assert "dbt compile" in early.stderr

    built = _dbt(d, "build")
    assert built.returncode == 0, built.stdout[-3000:]

    # only syncs whose model was rebuilt run; the profile comes from dbt_project.yml
    ran = _sync(project, d, "run", "--only-rebuilt", "--yes")
    assert ran.returncode == 0, ran.stdout + ran.stderr
    assert "enrich_stg_leads" in ran.stdout

    sources = _sync(project, d, "dbt-sources")
    assert sources.returncode == 0, sources.stderr
    doc = yaml.safe_load(sources.stdout)
    table = doc["sources"][0]["tables"][0]
    assert table["name"] == "leads_enriched"
    assert {"name": "email", "description": "The individual's work email address"} in table["columns"]
    (d / "models" / "sixtyfour_sources.yml").write_text(sources.stdout)
    (d / "models" / "lead_emails.sql").write_text(
        "select lead_id, email, email_confidence\n"
        "from {{ source('sixtyfour', 'leads_enriched') }}\n"
        "where _sixtyfour_status = 'enriched'\n"
    )
    downstream = _dbt(d, "build", "--select", "lead_emails", "source:sixtyfour")
    assert downstream.returncode == 0, downstream.stdout[-3000:]

    staged, enriched, emails = _counts(kind, d, profile)
    assert staged == 27  # 30 seeded, 3 test accounts filtered by the model
    assert enriched == staged
    assert 0 < emails <= staged


def test_only_rebuilt_skips_syncs_whose_model_did_not_build(project: E2EProject, tmp_path: Path) -> None:
    d = tmp_path / "p"
    (d / "target").mkdir(parents=True)
    shutil.copy(FIXTURE / "dbt_project.yml", d / "dbt_project.yml")
    shutil.copytree(FIXTURE / "models", d / "models")
    (d / "profiles.yml").write_text(
        "sf_fixture:\n  target: dev\n  outputs:\n    dev:\n      type: duckdb\n      path: wh.duckdb\n"
    )
    (d / "target" / "run_results.json").write_text(
        '{"results": [{"unique_id": "model.sf_fixture.stg_leads", "status": "error"}]}'
    )
    out = _sync(project, d, "--log-format", "json", "run", "--only-rebuilt", "--yes")
    assert out.returncode == 0, out.stderr
    summary = yaml.safe_load(out.stdout.splitlines()[-1])
    assert summary["syncs"][0]["status"] == "skipped"
    assert not project.emulator.submissions


def test_a_manifest_built_for_another_target_is_a_located_error(project: E2EProject, tmp_path: Path) -> None:
    """dbt build for dev, sync for ci: refused with file:line; with ci's own target path all of it works, and
    dbt reads the enriched table through `dbt-sources -o`, with freshness."""
    _require_dbt()
    d = tmp_path / "dbt_project"
    shutil.copytree(FIXTURE, d)
    (d / "profiles.yml").write_text(
        "sf_fixture:\n  target: dev\n  outputs:\n"
        "    dev:\n      type: duckdb\n      path: wh.duckdb\n      schema: main\n"
        "    ci:\n      type: duckdb\n      path: wh.duckdb\n      schema: ci\n"
    )
    assert _dbt(d, "build").returncode == 0
    wrong = _sync(project, d, "plan", "--target", "ci")
    assert wrong.returncode == 1
    model = d / "models" / "enrich_leads.yml"
    line = next(i for i, text in enumerate(model.read_text().splitlines(), 1) if "ref: stg_leads" in text)
    assert f"enrich_leads.yml:{line}: enrich_stg_leads.source.ref" in wrong.stderr
    assert "the manifest puts it in schema 'main', but target sf_fixture.ci uses schema 'ci'" in wrong.stderr
    assert "dbt compile --target ci" in wrong.stderr and "This is a bug" not in wrong.stderr

    built = _dbt(d, "build", "--target", "ci", "--target-path", "target_ci")
    assert built.returncode == 0, built.stdout[-2000:]
    debug = _sync(project, d, "debug", "--target", "ci", "--target-path", "target_ci")
    assert "OK  dbt manifest              enrich_stg_leads: stg_leads -> wh.ci.stg_leads" in debug.stdout, debug.stdout
    ran = run_cli(project, "run", "--yes", "--target", "ci", project_dir=d, env={"DBT_TARGET_PATH": "target_ci"})
    assert ran.returncode == 0, ran.stdout + ran.stderr
    assert (d / "target_ci" / "sixtyfour_run_results.json").is_file()
    assert not (d / "target" / "sixtyfour_run_results.json").exists()

    sources = _sync(project, d, "dbt-sources", "-o", str(d / "models" / "sixtyfour_sources.yml"))
    assert sources.returncode == 0, sources.stderr
    fresh = _dbt(d, "source", "freshness", "--target", "ci", "--target-path", "target_ci")
    assert fresh.returncode == 0, fresh.stdout[-3000:]
    assert "PASS" in fresh.stdout and "sixtyfour.leads_enriched" in fresh.stdout
