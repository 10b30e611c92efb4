"""A dbt user's habits on the command line, against the emulator on a real socket and a real DuckDB file:
options after the subcommand, several --select words and --exclude, --vars, located errors (also as JSON),
debug, --fail-fast, run artifacts, dbt-sources -o and init's profiles note."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import duckdb
import yaml

from tests.e2e.conftest import E2EProject, run_cli
from tests.e2e.test_run_duckdb import _setup_duckdb

SECOND = """\
  - name: enrich_more
    tags: [weekly]
    endpoint: people
    source:
      table: {table}
      key: lead_id
      columns: [first_name, company]
    struct:
      email: The individual's email address
    target:
      table: more_enriched
"""


def _two_syncs(project: E2EProject, second_table: str = "leads") -> None:
    path = project.dir / "models" / "leads.yml"
    path.write_text(path.read_text() + SECOND.format(table=second_table))


def _json_lines(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def test_global_options_work_after_the_subcommand(project: E2EProject, tmp_path: Path) -> None:
    _setup_duckdb(project, 5)
    other = project.dir / "other.duckdb"
    con = duckdb.connect(str(other))
    con.execute("CREATE TABLE leads AS SELECT * FROM read_csv_auto(?)", [str(_csv(tmp_path, 3))])
    con.close()
    (project.dir / "profiles.yml").write_text(
        "sixtyfour:\n  target: dev\n  outputs:\n    dev:\n      type: duckdb\n      path: wh.duckdb\n"
        "    other:\n      type: duckdb\n      path: other.duckdb\n"
    )
    env = {**os.environ, **project.env}
    out = subprocess.run(
        [sys.executable, "-m", "sixtyfour_sync", "plan", "--target", "other", "--project-dir", str(project.dir),
         "--log-format", "json"],
        capture_output=True, text=True, env=env, timeout=120, stdin=subprocess.DEVNULL, cwd=tmp_path,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    [plan] = json.loads(out.stdout)["plans"]
    assert plan["rows_by_reason"] == {"new": 3}  # the other target's table, not dev's 5 rows
    ran = run_cli(project, "run", "--yes", "--log-format", "json", "--target", "dev")
    assert ran.returncode == 0, ran.stderr
    assert all(isinstance(e, dict) for e in _json_lines(ran.stderr))
    assert _json_lines(ran.stdout)[-1]["syncs"][0]["rows_sent"] == 5


def _csv(tmp_path: Path, n: int) -> Path:
    path = tmp_path / "leads.csv"
    rows = ["lead_id,first_name,last_name,company,domain,country"]
    rows += [f"{i},Ada{i},Lovelace,Acme,acme.com,US" for i in range(1, n + 1)]
    path.write_text("\n".join(rows) + "\n")
    return path


def test_select_takes_several_words_and_exclude_removes(project: E2EProject) -> None:
    _setup_duckdb(project, 4)
    _two_syncs(project)
    out = run_cli(project, "plan", "--select", "enrich_leads", "enrich_more", "--exclude", "tag:weekly",
                  "--log-format", "json")  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert [p["name"] for p in json.loads(out.stdout)["plans"]] == ["enrich_leads"]
    both = run_cli(project, "--log-format", "json", "plan", "-s", "tag:daily", "tag:weekly")
    assert [p["name"] for p in json.loads(both.stdout)["plans"]] == ["enrich_leads", "enrich_more"]
    none = run_cli(project, "--log-format", "json", "plan", "-s", "tag:daily,tag:weekly")
    assert none.returncode == 0 and json.loads(none.stdout)["plans"] == []  # comma: both tags, which none has


def test_a_missing_source_table_is_a_located_error_everywhere(project: E2EProject) -> None:
    _setup_duckdb(project, 3)
    model = project.dir / "models" / "leads.yml"
    model.write_text(model.read_text().replace("table: leads\n", "table: leadz\n"))
    line = next(i for i, text in enumerate(model.read_text().splitlines(), 1) if "leadz" in text)
    for command in (["validate"], ["plan"], ["run", "--yes"]):
        out = run_cli(project, *command)
        text = out.stdout + out.stderr
        assert out.returncode == 1, text
        assert f"leads.yml:{line}: enrich_leads.source.table: source table leadz does not exist" in text
        assert "similar: leads" in text
        assert "This is a bug" not in text and "CatalogException" not in text
    assert not project.emulator.submissions


def test_a_missing_source_schema_is_reported_and_never_created(project: E2EProject) -> None:
    db = _setup_duckdb(project, 3)
    model = project.dir / "models" / "leads.yml"
    model.write_text(model.read_text().replace("table: leads\n", "table: leads\n      schema: crm\n"))
    out = run_cli(project, "plan")
    assert out.returncode == 1
    assert "schema 'crm' of source table crm.leads does not exist" in out.stderr
    assert "schemas: main" in out.stderr
    con = duckdb.connect(str(db), read_only=True)
    try:
        assert not con.execute("SELECT 1 FROM information_schema.schemata WHERE schema_name = 'crm'").fetchall()
    finally:
        con.close()


def test_missing_columns_list_what_the_source_has(project: E2EProject) -> None:
    _setup_duckdb(project, 3)
    model = project.dir / "models" / "leads.yml"
    model.write_text(model.read_text().replace("domain]", "domian]").replace("key: lead_id", "key: leadid"))
    out = run_cli(project, "plan")
    assert out.returncode == 1
    assert "enrich_leads.source.key: key column 'leadid' is not in the source (similar: lead_id)" in out.stderr
    assert "column 'domian' is not in the source (similar: domain" in out.stderr
    assert "source columns: lead_id, first_name, last_name, company, domain, country" in out.stderr


def test_under_json_every_error_line_is_json(project: E2EProject) -> None:
    _setup_duckdb(project, 3)
    model = project.dir / "models" / "leads.yml"
    good = model.read_text()
    model.write_text(good.replace("table: leads_enriched", "table: \"{{ var('out_table') }}\""))
    out = run_cli(project, "plan", "--log-format", "json")
    assert out.returncode == 1 and out.stdout == ""
    [error] = _json_lines(out.stderr)
    assert error["level"] == "error" and error["exit_code"] == 1
    [problem] = error["problems"]
    assert problem["file"] == str(model) and problem["line"] == good.splitlines().index("    target:") + 2
    assert "var 'out_table' is not defined" in problem["message"]
    assert run_cli(project, "plan", "--vars", "{out_table: from_vars}").returncode == 0
    usage = run_cli(project, "run", "--log-format", "json", "--max-cost-cents", "lots")
    assert usage.returncode == 2
    assert _json_lines(usage.stderr)[0]["event"] == "usage"
    model.write_text("syncs: [\n")
    broken = run_cli(project, "--log-format", "json", "validate")
    assert broken.returncode == 1
    assert [json.loads(x)["ok"] for x in broken.stdout.splitlines()] == [False]
    assert all(json.loads(x) for x in broken.stderr.splitlines() if x.strip())


def test_debug_reports_each_choice_and_check(project: E2EProject) -> None:
    _setup_duckdb(project, 3)
    out = run_cli(project, "debug")
    assert out.returncode == 0, out.stdout + out.stderr
    text = out.stdout
    assert f"{project.dir / 'profiles.yml'} (from the project directory)" in text
    assert "sixtyfour (the default profile name)" in text
    assert "dev (the profile's target:)" in text
    assert "SELECT 1 answered" in text
    assert "API key" in text and "accepted (GET /check-balance)" in text
    assert "credits" in text and "All checks passed." in text
    assert project.api_key not in text
    bad = run_cli(project, "debug", "--log-format", "json", env={"SIXTYFOUR_API_KEY": "sk-wrong"})
    assert bad.returncode == 1
    doc = json.loads(bad.stdout)
    assert doc["ok"] is False
    key = next(c for c in doc["checks"] if c["name"] == "API key")
    assert key["ok"] is False and "rejected" in key["detail"] and key["hint"]
    elsewhere = project.dir / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "profiles.yml").write_text((project.dir / "profiles.yml").read_text())
    env_pick = run_cli(project, "debug", env={"DBT_PROFILES_DIR": str(elsewhere)})
    assert f"{elsewhere / 'profiles.yml'} (from DBT_PROFILES_DIR={elsewhere})" in env_pick.stdout
    assert f"{project.dir / 'profiles.yml'} exists but is not used" in env_pick.stdout


def test_fail_fast_stops_at_the_first_failure_and_the_default_runs_the_rest(project: E2EProject) -> None:
    _setup_duckdb(project, 3)
    model = project.dir / "models" / "leads.yml"
    model.write_text(model.read_text().replace("table: leads\n", "table: nope\n"))
    _two_syncs(project)
    out = run_cli(project, "--log-format", "json", "run", "--yes")
    assert out.returncode == 1
    summary = _json_lines(out.stdout)[-1]
    assert [(s["name"], s["status"]) for s in summary["syncs"]] == [("enrich_leads", "failed"), ("enrich_more", "ok")]
    assert summary["syncs"][1]["rows_sent"] == 3
    fast = run_cli(project, "run", "--yes", "--fail-fast", "--full-refresh", "--log-format", "json")
    assert fast.returncode == 1
    statuses = [(s["name"], s["status"]) for s in _json_lines(fast.stdout)[-1]["syncs"]]
    assert statuses == [("enrich_leads", "failed"), ("enrich_more", "skipped")]
    assert len(project.emulator.submissions) == 1


def test_run_and_plan_write_run_results_under_the_dbt_target_path(project: E2EProject) -> None:
    _setup_duckdb(project, 6)
    plan = run_cli(project, "plan")
    assert plan.returncode == 0, plan.stderr
    doc = json.loads((project.dir / "target" / "sixtyfour_run_results.json").read_text())
    assert doc["metadata"]["command"] == "plan" and doc["metadata"]["schema_version"] == 1
    assert doc["results"][0]["rows"]["selected"] == 6 and doc["results"][0]["status"] == "planned"
    ran = run_cli(project, "run", "--yes", env={"DBT_TARGET_PATH": "custom_target"})
    assert ran.returncode == 0, ran.stderr
    doc = json.loads((project.dir / "custom_target" / "sixtyfour_run_results.json").read_text())
    assert doc["metadata"]["schema"].endswith("/sixtyfour-run-results/v1.json")
    assert doc["status"] == "success" and doc["run_id"]
    [result] = doc["results"]
    assert result["unique_id"] == "sync.enrich_leads" and result["rows"]["sent"] == 6
    assert result["charged_cents"] > 0 and set(result["fill_rate"]) == {"email", "title", "employee_count"}
    assert result["jobs"][0]["task_id"] and project.api_key not in json.dumps(doc)
    timing = result["timing"]
    assert timing["started_at"].endswith("Z") and timing["completed_at"] >= timing["started_at"]
    assert 0 <= timing["duration_seconds"] <= doc["elapsed_time"] + 1
    flag = run_cli(project, "plan", "--target-path", str(project.dir / "flagged"))
    assert flag.returncode == 0 and (project.dir / "flagged" / "sixtyfour_run_results.json").is_file()


def test_dbt_sources_writes_atomically_and_follows_the_dbt_target(project: E2EProject) -> None:
    _setup_duckdb(project, 2)
    out_file = project.dir / "models" / "sixtyfour_sources.yml"
    out_file.write_text("version: 2\nsources: []\n")
    out = run_cli(project, "dbt-sources", "-o", str(out_file))
    assert out.returncode == 0, out.stderr
    doc = yaml.safe_load(out_file.read_text())
    [source] = doc["sources"]
    assert source["schema"] == "{{ target.schema }}"
    table = source["tables"][0]
    assert table["loaded_at_field"] == "_sixtyfour_enriched_at"
    assert table["freshness"]["warn_after"] == {"count": 7, "period": "day"}
    assert not [p for p in out_file.parent.iterdir() if p.name.endswith(".tmp")]
    assert run_cli(project, "validate").returncode == 0  # a dbt file in models/ is not a sync file
    custom = run_cli(project, "dbt-sources", "--schema", "{{ var('enriched_schema') }}")
    assert yaml.safe_load(custom.stdout)["sources"][0]["schema"] == "{{ var('enriched_schema') }}"


def test_init_says_which_profiles_yml_will_win(project: E2EProject, tmp_path: Path) -> None:
    elsewhere = tmp_path / "dbt_home"
    elsewhere.mkdir()
    (elsewhere / "profiles.yml").write_text("other: {outputs: {dev: {type: duckdb}}}\n")
    env = {**os.environ, "DBT_PROFILES_DIR": str(elsewhere)}
    env.pop("SIXTYFOUR_SYNC_PROFILES_DIR", None)
    out = subprocess.run(
        [sys.executable, "-m", "sixtyfour_sync", "init", "fresh", "--no-input"],
        capture_output=True, text=True, cwd=tmp_path, env=env, timeout=120, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert f"warning: {elsewhere / 'profiles.yml'} wins over the profiles.yml just written" in out.stdout
    assert "DBT_PROFILES_DIR" in out.stdout
    first = (tmp_path / "fresh" / "models" / "enrich_leads.yml").read_text().splitlines()[0]
    assert first.startswith("# yaml-language-server: $schema=")
    env.pop("DBT_PROFILES_DIR")
    again = subprocess.run(
        [sys.executable, "-m", "sixtyfour_sync", "init", "fresh2", "--no-input"],
        capture_output=True, text=True, cwd=tmp_path, env=env, timeout=120, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    assert "will be used (the project directory)" in again.stdout


def test_schema_command_prints_the_shipped_schema(project: E2EProject) -> None:
    from sixtyfour_sync.config.reference import shipped_schema

    out = run_cli(project, "schema")
    assert out.returncode == 0 and out.stdout == shipped_schema()
