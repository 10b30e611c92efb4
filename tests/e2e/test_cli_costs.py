"""Costs without surprises, through the command line against the emulator on a real socket and a DuckDB file:
an unknown price is said and explained, project-level ``prices:``, a price learned from a one-row first job
(kept and merged, never cancelled) and shown with its date, and ``plan --preview N``."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import duckdb

from tests.e2e.conftest import E2EProject, run_cli
from tests.e2e.test_run_duckdb import _setup_duckdb

PRICES = "prices:\n  people:\n    low: 3.5\n    medium: 9\n"


def _plan_json(project: E2EProject, *args: str) -> list[dict]:
    out = run_cli(project, "plan", "--log-format", "json", *args)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])["plans"]


def test_plan_without_any_price_says_so_and_how_to_set_it(project: E2EProject) -> None:
    _setup_duckdb(project, 5)
    out = run_cli(project, "plan", env={"COLUMNS": "200"})
    assert out.returncode == 0, out.stderr
    text = " ".join(out.stdout.split())
    assert "price per row unknown for people/low" in text
    assert "budget.price_cents_per_row" in text and "prices: {people: {low: CENTS}}" in text
    [p] = _plan_json(project)
    assert p["price_cents_per_row"] is None and p["estimated_cost_cents"] is None


def test_project_prices_give_plan_a_cost_and_a_sync_price_wins(project: E2EProject) -> None:
    _setup_duckdb(project, 10)
    (project.dir / "models" / "prices.yml").write_text(PRICES)  # a file that only sets prices
    [p] = _plan_json(project)
    assert p["price_cents_per_row"] == 3.5 and p["price_source"] == "prices: in the project"
    assert p["estimated_cost_cents"] == 35
    project.write_model(extra="budget:\n  price_cents_per_row: 1\n")
    [p] = _plan_json(project)
    assert p["price_cents_per_row"] == 1 and p["price_source"] == "budget.price_cents_per_row"


def test_two_prices_for_one_tier_or_an_unknown_tier_are_located_errors(project: E2EProject) -> None:
    _setup_duckdb(project, 3)
    (project.dir / "models" / "a.yml").write_text(PRICES)
    (project.dir / "models" / "b.yml").write_text("prices:\n  people:\n    low: 4\n")
    out = run_cli(project, "plan")
    assert out.returncode == 1
    assert "b.yml:3" in out.stderr and "prices.people.low" in out.stderr and "a.yml:3" in out.stderr
    (project.dir / "models" / "b.yml").write_text("prices:\n  company:\n    xhigh: 4\n")
    out = run_cli(project, "validate")
    assert out.returncode == 1
    assert "b.yml" in out.stderr and "'xhigh' is not offered by the company endpoint" in out.stderr


def test_a_budget_run_learns_the_price_from_one_row_keeps_it_and_plan_shows_it(project: E2EProject) -> None:
    db = _setup_duckdb(project, 40)
    project.write_model(chunk_rows=10, extra="budget:\n  max_cost_cents: 31\n")  # emulator: 2 cents a row
    out = run_cli(project, "run", "--yes", "--log-format", "json")
    assert out.returncode == 0, out.stderr  # stopped at the budget: a cap doing its job (a warning, exit 0)
    assert "budget_reached" in out.stdout
    sizes = [s.row_count for s in project.emulator.submissions]
    assert sizes[0] == 1, sizes  # one row first, to learn the price
    jobs = list(project.emulator.jobs.values())
    assert all(j.status != "cancelled" for j in jobs)  # the budget never cancels paid work
    # failed rows are not charged, so a closed job can leave room for a few more rows; never more than the budget
    spent = sum(j.charge_cents if j.charge_cents is not None else j.estimate_cents for j in jobs)
    assert spent <= 31 and sum(sizes) >= 15, (sizes, spent)
    con = duckdb.connect(str(db), read_only=True)
    try:
        merged = con.execute("SELECT count(*) FROM leads_enriched WHERE _sixtyfour_status IS NOT NULL").fetchone()
    finally:
        con.close()
    assert merged == (sum(sizes),)  # the learning row's answer was kept and merged with the rest
    [p] = _plan_json(project)
    assert p["price_cents_per_row"] == 2
    assert p["price_source"].startswith("learned from the API's estimate on 20")
    assert p["estimated_cost_cents"] == 2 * p["rows"]


def test_plan_preview_writes_the_exact_first_file_and_config_a_run_sends(project: E2EProject) -> None:
    _setup_duckdb(project, 30)
    project.write_model(chunk_rows=8)
    out = run_cli(project, "plan", "--preview", "8", env={"COLUMNS": "120"})
    assert out.returncode == 0, out.stderr
    folder = project.dir / "target" / "sixtyfour_preview" / "enrich_leads"
    rows = (folder / "rows.jsonl").read_bytes()
    config = json.loads((folder / "config.json").read_text())
    assert "preview of 8 row(s)" in out.stdout and '"lead_id":1' in out.stdout.replace(" ", "")
    assert config["struct"]["email"] and config["tier"] == "low" and config["field_confidence"] is True
    assert len(rows.splitlines()) == 8
    assert not project.emulator.submissions  # no API call
    doc = json.loads((project.dir / "target" / "sixtyfour_run_results.json").read_text())
    assert doc["results"][0]["preview"]["rows"] == 8
    ran = run_cli(project, "run", "--yes")
    assert ran.returncode == 0, ran.stderr
    first = min(project.emulator.jobs.values(), key=lambda j: j.created_at)
    assert first.file_sha256 == hashlib.sha256(rows).hexdigest()
    assert first.config == config


def test_preview_leaves_out_bad_keys_and_shows_a_long_file_in_part(project: E2EProject, tmp_path: Path) -> None:
    db = _setup_duckdb(project, 50)
    con = duckdb.connect(str(db))
    con.execute("INSERT INTO leads VALUES (NULL, 'No', 'Key', 'Acme', 'acme.com', 'US'), "
                "(3, 'Dup', 'Key', 'Acme', 'acme.com', 'US')")  # fmt: skip
    con.close()
    out = run_cli(project, "plan", "--preview", "45", "--target-path", str(tmp_path / "t"))
    assert out.returncode == 0, out.stderr
    lines = (tmp_path / "t" / "sixtyfour_preview" / "enrich_leads" / "rows.jsonl").read_text().splitlines()
    ids = [json.loads(line)["lead_id"] for line in lines]
    assert len(ids) == 45 and 3 not in ids and None not in ids  # as the run: NULL and duplicated keys skipped
    assert "25 more row(s) in the file" in out.stdout
