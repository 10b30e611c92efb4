"""Result rows are tied back by the key exactly as it was sent, whatever it spells.

Text keys spelled like a CSV null marker (``NA``, ``null``, ``N/A``, ``nan``, the empty string...) come back as
themselves: merged, never stored ``failed``, never paid again under ``retry_failed_after`` (simple and composite
keys, downloaded CSV and inline previews; DuckDB, PostgreSQL and MariaDB). A key returned in another letter case
is tied to the one sent key it matches; rows that cannot be tied back make the run partial and say so.
"""

from __future__ import annotations

import collections
import time
from typing import Any

import pytest

from sixtyfour_sync import commands as api
from sixtyfour_sync.emulator import Emulator, EmulatorSettings
from tests.e2e.conftest import E2EProject
from tests.e2e.warehouses import Warehouse, make_duckdb

SPELLINGS = ["NA", "null", "NULL", "N/A", "nan", "NaN", "#N/A", "None", "", "-", "n/a", "nil"]

MODEL = """\
syncs:
  - name: enrich_codes
    endpoint: people
    source:
      table: leads
      key: {key}
      columns: [first_name, last_name, company]
    struct:
      email: The individual's email address
      country: {{description: The country code of the company, type: str}}
    field_confidence: true
    target:
      table: leads_enriched
    refresh:
      retry_failed_after: 1s
"""


@pytest.fixture(params=["downloaded", "inline"])
def delivery(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def emulator_settings(api_key: str, delivery: str) -> EmulatorSettings:
    return EmulatorSettings(
        api_keys=frozenset({api_key}),
        job_seconds=0.05,
        failure_rate=0.0,
        seed=3,
        preview_max_rows=0 if delivery == "downloaded" else 25,
    )


def _setup(wh: Warehouse, project: E2EProject, *, composite: bool) -> list[tuple[Any, ...]]:
    wh.execute("DROP TABLE IF EXISTS {t:leads}")
    wh.execute(
        "CREATE TABLE {t:leads} (org VARCHAR(20), code VARCHAR(20), first_name VARCHAR(50), last_name VARCHAR(50), "
        "company VARCHAR(50))"
    )
    spellings = SPELLINGS
    if wh.kind == "mariadb":  # its default collation compares text without case: null and NULL are one key there
        spellings = list({s.lower(): s for s in reversed(SPELLINGS)}.values())
    rows = [("acme", s, f"First{i}", f"Last{i}", "Acme") for i, s in enumerate(spellings)]
    rows += [("acme", f"plain{i}", f"P{i}", f"Q{i}", "Globex") for i in range(4)]
    if composite:
        rows += [("NA", s, f"Other{i}", f"Name{i}", "Initech") for i, s in enumerate(spellings[:4])]
    wh.executemany("INSERT INTO {t:leads} VALUES (?, ?, ?, ?, ?)", rows)
    key = "[org, code]" if composite else "code"
    (project.dir / "models").mkdir(exist_ok=True)
    (project.dir / "models" / "leads.yml").write_text(MODEL.format(key=key))
    return rows


def _run(project: E2EProject) -> api.RunResult:
    return api.run(project.dir, api_key=project.api_key, api_url=project.url, env=project.env)


def _paid_rows(emu: Emulator) -> int:
    return sum(j.row_count for j in emu.jobs.values())


@pytest.mark.parametrize("composite", [False, True], ids=["key", "composite-key"])
def test_null_marker_keys_tie_back_and_are_never_paid_twice(
    project: E2EProject, wh3: Warehouse, delivery: str, composite: bool
) -> None:
    rows = _setup(wh3, project, composite=composite)
    first = _run(project)
    assert first.exit_code == 0, first.to_dict()
    s = first.syncs[0]
    assert s.rows_sent == len(rows) and s.rows_not_returned == 0 and s.rows_unexpected == 0
    target = wh3.query('SELECT org, code, email, _sixtyfour_status FROM {t:leads_enriched}' if composite else (
        'SELECT code, email, _sixtyfour_status FROM {t:leads_enriched}'))  # fmt: skip
    assert len(target) == len(rows)
    assert all(r[-1] == "enriched" and r[-2] for r in target), target
    stored = {r[:-2] for r in target}
    assert stored == {(r[0], r[1]) if composite else (r[1],) for r in rows}  # every spelling, as written
    paid = _paid_rows(project.emulator)
    time.sleep(1.2)  # past retry_failed_after: a row stored as failed would be asked (and paid) again
    again = _run(project)
    assert again.syncs[0].status == "nothing_to_do", again.to_dict()
    assert _paid_rows(project.emulator) == paid


class _Replace(api.Reporter):
    """Replace every result with ``body`` once the job is submitted."""

    def __init__(self, emu: Emulator, body: bytes) -> None:
        self.emu, self.body = emu, body

    def on(self, event_name: str, sync: str, **data: Any) -> None:
        if event_name == "submitted":
            self.emu.corrupt_result(data["task_id"], self.body)


@pytest.mark.parametrize("delivery", ["downloaded"], indirect=True)
def test_a_key_returned_in_another_case_is_tied_to_the_key_sent(project: E2EProject, delivery: str) -> None:
    wh = make_duckdb(project)
    _setup(wh, project, composite=False)
    wh.execute("DELETE FROM {t:leads} WHERE code NOT IN ('plain0', 'plain1', 'NA')")
    body = b"code,email,country\nPLAIN0,p0@globex.io,US\n  Plain1 ,p1@globex.io,US\nna,x@acme.com,NA\n"
    result = api.run(
        project.dir, api_key=project.api_key, api_url=project.url, env=project.env,
        reporter=_Replace(project.emulator, body),
    )  # fmt: skip
    assert result.exit_code == 0, result.to_dict()
    got = dict(wh.query("SELECT code, email FROM {t:leads_enriched}"))
    assert got == {"plain0": "p0@globex.io", "plain1": "p1@globex.io", "NA": "x@acme.com"}
    assert any("another letter case" in w for w in result.syncs[0].warnings)


@pytest.mark.parametrize("delivery", ["downloaded"], indirect=True)
def test_rows_that_cannot_be_tied_back_make_the_run_partial(project: E2EProject, delivery: str) -> None:
    wh = make_duckdb(project)
    _setup(wh, project, composite=False)
    header_only = b"code,email,country\n"
    result = api.run(
        project.dir, api_key=project.api_key, api_url=project.url, env=project.env,
        reporter=_Replace(project.emulator, header_only),
    )  # fmt: skip
    s = result.syncs[0]
    assert result.exit_code == 3 and s.status == "partial"
    assert s.rows_not_returned == s.rows_sent > 0
    assert any("came back without a result" in e for e in s.errors)
    statuses = collections.Counter(r[0] for r in wh.query("SELECT _sixtyfour_status FROM {t:leads_enriched}"))
    assert statuses == {"failed": s.rows_sent}
