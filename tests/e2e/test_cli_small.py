"""The command line without a server or a warehouse: selections that pick nothing, `ls`, help texts, completion.

Each command here reads only the models files (and profiles.yml when it connects), so a project directory with
a models file is enough.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

MODELS = """\
syncs:
  - name: enrich_leads
    tags: [daily, people]
    endpoint: people
    source:
      table: leads
      key: lead_id
      columns: [first_name, company]
    struct:
      email: The individual's email address
    target:
      table: leads_enriched
  - name: enrich_contacts
    tags: [daily]
    endpoint: people
    tier: medium
    source:
      table: contacts
      key: id
    struct:
      title: The individual's job title
    target:
      table: contacts_enriched
      schema: enriched
  - name: enrich_companies
    tags: [weekly]
    endpoint: company
    source:
      table: companies
      key: domain
    struct:
      industry: The company's industry
    target:
      table: companies_enriched
"""

PROFILES = "sixtyfour:\n  target: dev\n  outputs:\n    dev:\n      type: duckdb\n      path: wh.duckdb\n"


@pytest.fixture
def proj(tmp_path: Path) -> Path:
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "syncs.yml").write_text(MODELS)
    (tmp_path / "profiles.yml").write_text(PROFILES)
    return tmp_path


def cli(project: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    full = {k: v for k, v in os.environ.items() if not k.startswith(("SIXTYFOUR", "DBT_"))}
    # a key nobody checks: a run that selects nothing calls no API
    full.update({"SIXTYFOUR_API_KEY": "sk-unused", "SIXTYFOUR_API_URL": "http://127.0.0.1:9"}, **(env or {}))
    return subprocess.run(
        [sys.executable, "-m", "sixtyfour_sync", "--project-dir", str(project), *args],
        capture_output=True,
        text=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
        env=full,
        cwd=project,
    )


@pytest.mark.parametrize("command", ["plan", "run", "validate", "dbt-sources"])
def test_an_empty_intersection_warns_what_each_part_matched(proj: Path, command: str) -> None:
    out = cli(proj, command, "-s", "tag:daily,endpoint:company", *(["--yes"] if command == "run" else []))
    assert out.returncode == 0, out.stderr
    assert "nothing to do" in out.stderr
    assert "tag:daily matched enrich_leads, enrich_contacts" in out.stderr
    assert "endpoint:company matched enrich_companies" in out.stderr
    assert "Traceback" not in out.stderr


@pytest.mark.parametrize("command", ["plan", "run", "validate", "dbt-sources"])
def test_fail_on_empty_exits_1(proj: Path, command: str) -> None:
    out = cli(proj, command, "-s", "tag:daily,endpoint:company", "--fail-on-empty")
    assert out.returncode == 1, out.stdout + out.stderr
    assert "nothing to do" in out.stderr and "endpoint:company matched enrich_companies" in out.stderr
    removed = cli(proj, command, "-s", "tag:weekly", "--exclude", "endpoint:company", "--fail-on-empty")
    assert removed.returncode == 1
    assert "--exclude endpoint:company removed enrich_companies" in removed.stderr


def test_the_empty_selection_warning_is_json_under_json_logs(proj: Path) -> None:
    out = cli(proj, "--log-format", "json", "plan", "-s", "tag:daily,endpoint:company")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["plans"] == []
    [warning] = [json.loads(line) for line in out.stderr.splitlines() if line.strip()]
    assert warning["event"] == "selection.empty" and warning["level"] == "warning"


def test_an_unknown_word_is_still_an_error(proj: Path) -> None:
    out = cli(proj, "plan", "-s", "tag:monthly")
    assert out.returncode == 1
    assert "--select matched no sync for: tag:monthly" in out.stderr


BROKEN = """\
syncs:
  - name: enrich_leads
    endpoint: people
    source:
      table: leads
      key: lead_id
      colums: [first_name]
    struct:
      email: The individual's email address
    target:
      table: leads_enriched
  - name: enrich_contacts
    endpoint: people
    source:
      table: contacts
      key: id
      columns: [first_name, phone]
    struct:
      title: The individual's job title
    target:
      table: contacts_enriched
"""

OTHER = """\
syncs:
  - name: enrich_companies
    endpoint: company
    source:
      table: companiez
      key: domain
    struct:
      industry: The company's industry
    target:
      table: companies_enriched
"""


def _warehouse(project: Path) -> None:
    import duckdb

    con = duckdb.connect(str(project / "wh.duckdb"))
    con.execute("CREATE TABLE leads (lead_id INTEGER, first_name TEXT)")
    con.execute("CREATE TABLE contacts (id INTEGER, first_name TEXT)")
    con.execute("CREATE TABLE companies (domain TEXT, name TEXT)")
    con.close()


def test_validate_lists_every_problem_in_every_file(proj: Path) -> None:
    """A schema mistake in one sync hides neither the warehouse checks of its neighbour nor of another file."""
    _warehouse(proj)
    (proj / "models" / "syncs.yml").write_text(BROKEN)
    (proj / "models" / "other.yml").write_text(OTHER)
    out = cli(proj, "validate")
    assert out.returncode == 1
    errors = [line for line in out.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 3, out.stderr
    assert any("syncs.yml:7" in e and "unknown key 'colums'" in e for e in errors)
    assert any("enrich_contacts.source.columns" in e and "'phone'" in e for e in errors)
    assert any("other.yml" in e and "source table companiez does not exist" in e for e in errors)
    assert "3 problem(s) found." in out.stderr
    as_json = cli(proj, "--log-format", "json", "validate")
    report = json.loads(as_json.stdout)
    assert len(report["problems"]) == 3 and report["ok"] is False


def test_validate_with_an_unknown_target_says_it_once(proj: Path) -> None:
    out = cli(proj, "validate", "-t", "prod")
    assert out.returncode == 1
    errors = [line for line in out.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and "target 'prod' not found in profile 'sixtyfour'" in errors[0], out.stderr
    assert "1 problem(s) found." in out.stderr


def test_the_target_comes_from_dbt_target_unless_the_command_line_names_one(proj: Path) -> None:
    """DBT_TARGET (as dbt reads it) and SIXTYFOUR_SYNC_TARGET choose the target; -t wins, wherever it is given."""
    said = "target 'ci' not found in profile 'sixtyfour'"
    for env in ({"DBT_TARGET": "ci"}, {"SIXTYFOUR_SYNC_TARGET": "ci", "DBT_TARGET": "other"}):
        out = cli(proj, "validate", env=env)
        assert out.returncode == 1 and said in out.stderr, out.stderr
    for args in (("-t", "prod", "validate"), ("validate", "-t", "prod")):
        out = cli(proj, *args, env={"DBT_TARGET": "ci"})
        assert out.returncode == 1 and "target 'prod' not found" in out.stderr and "'ci'" not in out.stderr


def _help(*args: str) -> str:
    from click.testing import CliRunner

    from sixtyfour_sync.cli import cli as group

    out = CliRunner().invoke(group, [*args, "--help"], terminal_width=200)
    assert out.exit_code == 0, out.output
    return " ".join(out.output.split())


@pytest.mark.parametrize(
    ("command", "says"),
    [
        ("run", "Syncs to run, as dbt selects"),
        ("plan", "Syncs to plan, as dbt selects"),
        ("validate", "Syncs to check, as dbt selects"),
        ("status", "Syncs whose runs and jobs to show, as dbt selects"),
        ("dbt-sources", "Syncs whose target tables to write as dbt sources, as dbt selects"),
        ("report", "Syncs to show in the report, as dbt selects"),
        ("cancel", "Syncs whose unfinished jobs to cancel, as dbt selects"),
        ("ls", "Syncs to list, as dbt selects"),
    ],
)
def test_select_help_says_what_each_command_does_with_it(command: str, says: str) -> None:
    text = _help(command)
    assert says in text
    if command != "run":
        assert "Syncs to run" not in text


def test_run_help_lists_the_exit_codes() -> None:
    text = _help("run")
    assert "Exit codes:" in text
    for code in ("0 success", "1 failure", "2 bad command-line usage", "3 partial", "130 stopped by Ctrl-C", "143"):
        assert code in text


def test_ls_lists_the_selected_syncs(proj: Path) -> None:
    table = cli(proj, "ls")
    assert table.returncode == 0, table.stderr
    lines = table.stdout.splitlines()
    assert lines[0].split() == ["name", "endpoint", "tier", "source", "target", "tags"]
    assert lines[2].split() == [
        "enrich_contacts",
        "people",
        "medium",
        "contacts",
        "enriched.contacts_enriched",
        "daily",
    ]
    names = cli(proj, "ls", "-s", "tag:daily", "endpoint:company", "--exclude", "enrich_leads", "--output", "name")
    assert names.stdout.splitlines() == ["enrich_contacts", "enrich_companies"]
    as_json = cli(proj, "ls", "-s", "tag:people", "--output", "json")
    [row] = json.loads(as_json.stdout)["syncs"]
    assert {k: row[k] for k in ("name", "endpoint", "tier", "source", "target", "tags")} == {
        "name": "enrich_leads",
        "endpoint": "people",
        "tier": "low",
        "source": "leads",
        "target": "leads_enriched",
        "tags": ["daily", "people"],
    }
    under_json_logs = cli(proj, "--log-format", "json", "ls", "-s", "enrich_companies")
    assert [r["name"] for r in json.loads(under_json_logs.stdout)["syncs"]] == ["enrich_companies"]
    empty = cli(proj, "ls", "-s", "tag:weekly,tag:daily", "--fail-on-empty")
    assert empty.returncode == 1 and "nothing to do" in empty.stderr


def _complete(cwd: Path, words: str) -> list[str]:
    env = {**os.environ, "_SIXTYFOUR_SYNC_COMPLETE": "bash_complete", "COMP_WORDS": words}
    env["COMP_CWORD"] = str(len(words.split()) - (0 if words.endswith(" ") else 1))
    out = subprocess.run(
        [sys.executable, "-m", "sixtyfour_sync"], capture_output=True, text=True, env=env, cwd=cwd, timeout=60
    )
    assert out.returncode == 0 and not out.stderr, out.stderr
    return [line.split(",", 1)[1] for line in out.stdout.splitlines()]


def test_select_completes_sync_names_and_tags(proj: Path, tmp_path_factory: pytest.TempPathFactory) -> None:
    assert _complete(proj, "sixtyfour-sync run -s enrich_c") == ["enrich_contacts", "enrich_companies"]
    assert "tag:weekly" in _complete(proj, "sixtyfour-sync plan --select tag:")
    assert "tag:daily,tag:people" in _complete(proj, "sixtyfour-sync ls -s tag:daily,tag:p")
    elsewhere = tmp_path_factory.mktemp("elsewhere")
    assert "enrich_leads" in _complete(elsewhere, f"sixtyfour-sync --project-dir {proj} run --exclude ")
    (proj / "models" / "broken.yml").write_text("syncs: [\n")
    assert "enrich_leads" in _complete(proj, "sixtyfour-sync run -s ")
    assert _complete(elsewhere, "sixtyfour-sync run -s en") == ["endpoint:people", "endpoint:company"]
