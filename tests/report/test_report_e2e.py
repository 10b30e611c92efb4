"""`sixtyfour-sync report` after real runs against the emulator, on DuckDB and PostgreSQL.

The numbers on the page are read back from the HTML and compared with the ledger and the target, queried
independently here.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sixtyfour_sync.emulator import EmulatorSettings
from tests.e2e.conftest import E2EProject, run_cli
from tests.e2e.warehouses import Warehouse
from tests.report import scenario
from tests.report.htmltree import Node, parse

FIELDS = ("email", "title", "employee_count")


@pytest.fixture
def emulator_settings(api_key: str) -> EmulatorSettings:
    return scenario.settings(api_key)


def _cells(row: Node) -> dict[str, str]:
    return {c.attrs["data-col"]: c.attrs["data-value"] for c in row.find_all("td") if "data-col" in c.attrs}


def _money(cents: float) -> str:
    return f"${cents / 100:,.2f}"


def test_the_page_shows_what_the_ledger_and_the_target_hold(project: E2EProject, wh: Warehouse) -> None:
    sc = scenario.three_runs(project, wh)
    out = project.dir / "out" / "report.html"
    res = run_cli(project, "report", "--out", str(out))
    assert res.returncode == 0, res.stdout + res.stderr
    assert f"wrote {out}" in res.stdout and "(3 run(s), 1 sync(s))" in res.stdout
    doc = parse(out.read_text(encoding="utf-8"))

    # runs: one row each, newest first, with the rows and money of the jobs each submitted
    rows = doc.find("table", class_="runs").find_all("tr")[1:]
    assert [r.attrs["data-run"] for r in rows] == [r.run_id for r in reversed(sc.runs)]
    for r in rows:
        run_id = r.attrs["data-run"]
        cells = _cells(r)
        sent, enriched, failed, missing, est, charged = wh.query(
            "SELECT COALESCE(SUM(CASE WHEN task_id IS NOT NULL THEN rows ELSE 0 END), 0), "
            "COALESCE(SUM(rows_enriched), 0), COALESCE(SUM(rows_failed), 0), COALESCE(SUM(rows_not_returned), 0), "
            "COALESCE(SUM(estimated_cost_cents), 0), COALESCE(SUM(charged_cents), 0) "
            "FROM {t:_sixtyfour_sync_jobs} WHERE run_id = ?",
            [run_id],
        )[0]
        assert int(cells["rows_sent"]) == sent
        assert int(cells["rows_enriched"]) == enriched and int(cells["rows_failed"]) == failed
        assert int(cells["rows_not_returned"]) == missing
        assert float(cells["estimated_cents"]) == pytest.approx(float(est))
        assert float(cells["charged_cents"]) + float(cells["charged_later_cents"]) == pytest.approx(float(charged))
    first, second, third = (_cells(doc.find("tr", data_run=r.run_id)) for r in sc.runs)
    # run 1 finished its own merged job: the page agrees with the run's own row in the ledger
    (ledger_first,) = wh.query(
        "SELECT rows_enriched, rows_failed, charged_cents, status FROM {t:_sixtyfour_sync_runs} WHERE run_id = ?",
        [sc.runs[0].run_id],
    )
    assert (int(first["rows_enriched"]), int(first["rows_failed"])) == (ledger_first[0], ledger_first[1])
    assert float(first["charged_cents"]) == pytest.approx(float(ledger_first[2]))
    assert float(first["charged_later_cents"]) == 0
    # run 2 stopped waiting; run 3 finished its job: the charge is run 2's, paid after it ended
    (late_charge,) = wh.query("SELECT charged_cents FROM {t:_sixtyfour_sync_jobs} WHERE task_id = ?", [sc.late_task])[0]
    assert late_charge > 0
    assert float(second["charged_cents"]) == 0 and float(second["charged_later_cents"]) == pytest.approx(late_charge)
    assert int(third["rows_sent"]) == 0 and int(third["jobs_resumed"]) == 1

    # the header's totals
    header = doc.find("header")
    tiles = {t.attrs["data-tile"]: t.find(class_="value").text for t in header.find_all("div", class_="tile")}
    (total_charged,) = wh.query("SELECT SUM(charged_cents) FROM {t:_sixtyfour_sync_jobs}")[0]
    assert tiles["charged"] == _money(float(total_charged))
    (enriched_now,) = wh.query("SELECT count(*) FROM {t:leads_enriched} WHERE _sixtyfour_status = 'enriched'")[0]
    assert tiles["rows_enriched"] == f"{enriched_now:,}" and tiles["attention"] == "1" and tiles["runs"] == "3"
    assert wh.kind in header.find("dd").text

    # the sync: fill rates, statuses, confidence histograms, tiers, the held job
    sync = doc.find("section", data_sync="enrich_leads")
    counts = wh.query(
        "SELECT count(_sixtyfour_status), count(email), count(title), count(employee_count) FROM {t:leads_enriched}"
    )[0]
    answered = counts[0]
    assert answered == 20  # the lost job's 10 rows are held, not answered
    fill = [float(b.attrs["data-value"]) for b in sync.find("svg", class_="chart-fill").find_all("rect", class_="bar")]
    assert fill == pytest.approx([n / answered for n in counts[1:]])
    status = dict(wh.query("SELECT _sixtyfour_status, count(*) FROM {t:leads_enriched} GROUP BY 1"))
    shown = sync.find("svg", class_="chart-status").find_all("rect", class_="bar")
    assert [float(b.attrs["data-value"]) for b in shown] == pytest.approx(
        [n / answered for _, n in sorted(status.items(), key=lambda kv: (-kv[1], kv[0]))]
    )
    assert 0 < status["failed"] < status["enriched"]
    for f in FIELDS:
        values = [
            v for (v,) in wh.query(f"SELECT {f}_confidence FROM {{t:leads_enriched}} WHERE {f}_confidence IS NOT NULL")
        ]
        expected = [0] * 10
        for v in values:
            expected[min(max(int(v) // 10, 0), 9)] += 1
        hist = sync.find("figure", data_field=f).find_all("rect", class_="bar")
        assert [int(b.attrs["data-value"]) for b in hist] == expected, f
    (jobs, job_rows) = wh.query("SELECT count(*), SUM(rows) FROM {t:_sixtyfour_sync_jobs} WHERE tier = 'low'")[0]
    tier = _cells(sync.find("table", class_="tiers").find("tr", data_tier="low"))
    assert (int(tier["jobs"]), int(tier["rows"])) == (jobs, job_rows)
    held = sync.find("table", class_="attention").find_all("tr")[1:]
    assert [(h.attrs["data-state"], h.find("td", class_="mono").text) for h in held] == [("lost", sc.lost_task)]
    assert "--retry-lost" in held[0].text
    assert "No errors recorded." not in sync.text  # the lost job's 404 is among the last errors
    assert sc.lost_task in sync.find("table", class_="errors").text
    # nothing secret: the API key never reaches the page
    assert project.api_key not in out.read_text(encoding="utf-8")


def test_report_before_any_run_and_in_json(project: E2EProject, wh: Warehouse, tmp_path: Path) -> None:
    from tests.e2e.warehouses import setup_leads

    setup_leads(wh, 5)
    out = tmp_path / "r.html"
    res = run_cli(project, "report", "-o", str(out), "--log-format", "json", "--select", "enrich_leads")
    assert res.returncode == 0, res.stderr
    event = json.loads(res.stdout.strip().splitlines()[-1])
    assert event["event"] == "report.written" and event["path"] == str(out) and event["syncs"] == ["enrich_leads"]
    doc = parse(out.read_text(encoding="utf-8"))
    assert "No ledger yet" in doc.text and "does not exist yet" in doc.text
    assert not wh.exists("_sixtyfour_sync_runs")  # a report writes nothing to the warehouse
    bad = run_cli(project, "report", "-o", str(out), "--select", "nothing_like_it")
    assert bad.returncode == 1 and "no sync" in bad.stderr


@pytest.mark.parametrize(
    ("dbt_project", "args", "env", "expected"),
    [
        pytest.param("name: shop\ntarget-path: build\n", (), {}, "project/build/report.html", id="dbt-project"),
        pytest.param("name: shop\n", (), {}, "project/target/report.html", id="dbt-project-default-target"),
        pytest.param(None, ("--target-path", "out/t"), {}, "project/out/t/report.html", id="target-path"),
        pytest.param(None, (), {"DBT_TARGET_PATH": "ci"}, "project/ci/report.html", id="dbt-target-path-env"),
        pytest.param("name: shop\n", ("--out", "mine.html"), {}, "cwd/mine.html", id="explicit-out-wins"),
        pytest.param(None, (), {}, "cwd/report.html", id="not-dbt-current-directory"),
    ],
)
def test_report_goes_to_dbts_target_directory_by_default(
    project: E2EProject,
    tmp_path: Path,
    dbt_project: str | None,
    args: tuple[str, ...],
    env: dict[str, str],
    expected: str,
) -> None:
    from tests.e2e.warehouses import make_duckdb, setup_leads

    setup_leads(make_duckdb(project), 5)
    if dbt_project is not None:
        (project.dir / "dbt_project.yml").write_text(dbt_project)
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    res = run_cli(project, "report", *args, env=env, cwd=cwd)
    assert res.returncode == 0, res.stdout + res.stderr
    where, name = expected.split("/", 1)
    page = (project.dir if where == "project" else cwd) / name
    assert page.is_file() and "<html" in page.read_text(encoding="utf-8")
    assert f"wrote {page.resolve()}" in res.stdout
    # the one page, nowhere else: not in the project root, nor in the current directory
    written = sorted(p for p in tmp_path.rglob("*.html"))
    assert written == [page], written
