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
