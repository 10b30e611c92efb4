"""Values a warehouse refuses never block a paid file.

Where the rule is obvious the value is made storable before the upsert (a NUL removed on PostgreSQL, an
infinite number stored as NULL, long text in a LONGTEXT column on MySQL/MariaDB). A row the warehouse still
refuses (a CHECK constraint, a column someone narrowed) is quarantined alone: the rest of its file merges, its
key and the warehouse's reason are in the ledger and in ``status``, it is never asked (or paid) again, and it
merges on the first run after the target is fixed.
"""

from __future__ import annotations

from typing import Any

import pytest

from sixtyfour_sync import commands as api
from sixtyfour_sync.emulator import Emulator
from tests.e2e.conftest import E2EProject, run_cli
from tests.e2e.warehouses import Warehouse, setup_leads


class _Replace(api.Reporter):
    """Replace the result of every submitted job with ``body(task_id)``."""

    def __init__(self, emu: Emulator, body: bytes) -> None:
        self.emu, self.body = emu, body

    def on(self, event_name: str, sync: str, **data: Any) -> None:
        if event_name == "submitted":
            self.emu.corrupt_result(data["task_id"], self.body)


def _csv(rows: list[tuple[int, str, str, str]]) -> bytes:
    """A result file: lead_id, email, title, employee_count (quoted as the API would)."""
    lines = ["lead_id,email,title,employee_count"]
    for lead, email, title, count in rows:
        lines.append(",".join([str(lead), '"' + email.replace('"', '""') + '"', f'"{title}"', count]))
    return ("\n".join(lines) + "\n").encode()


def _run(project: E2EProject, body: bytes | None = None) -> api.RunResult:
    reporter = _Replace(project.emulator, body) if body is not None else None
    return api.run(project.dir, api_key=project.api_key, api_url=project.url, env=project.env, reporter=reporter)


def _paid(emu: Emulator) -> int:
    return sum(j.row_count for j in emu.jobs.values())


def test_values_are_made_storable_and_the_file_merges(project: E2EProject, wh3: Warehouse) -> None:
    setup_leads(wh3, 5)
    project.write_model()
    long_text = "x" * 70_000  # more than MySQL's TEXT holds
    body = _csv(
        [
            (1, "a\x00b@acme.com", "CEO", "12"),  # a NUL: PostgreSQL text cannot hold it
            (2, "b@acme.com", long_text, "1e400"),  # 70 KB, and a number that is infinite as a double
            (3, "c@acme.com", "CTO", "inf"),
            (4, "d@acme.com", "VP", "7"),
            (5, "e@acme.com", "Engineer", "8"),
        ]
    )
    result = _run(project, body)
    assert result.exit_code == 0, result.to_dict()
    rows = {r[0]: r[1:] for r in wh3.target("lead_id, email, title, employee_count, _sixtyfour_status")}
    assert len(rows) == 5 and all(r[3] == "enriched" for r in rows.values())
    assert rows[1][0] == ("ab@acme.com" if wh3.kind == "postgres" else "a\x00b@acme.com")
    assert rows[2][1] == long_text and rows[2][2] is None  # 1e400 does not fit a number: no answer, not a block
    assert rows[3][2] is None and rows[4][2] == 7


@pytest.fixture
def narrowed(project: E2EProject, wh3: Warehouse) -> Warehouse:
    """A target made by hand before the first run, with a title column narrower than some answers: wide enough
    for the trial row the sync checks the target with before paying, too narrow for a long title."""
    setup_leads(wh3, 6)
    project.write_model()
    model = project.dir / "models" / "leads.yml"
    model.write_text(
        model.read_text().replace(
            "      table: leads_enriched\n", "      table: leads_enriched\n      adopt_columns: [email, title]\n"
        )
    )
    # DuckDB does not enforce a VARCHAR's length: a CHECK constraint refuses there
    title = "VARCHAR CHECK (length(title) <= 40)" if wh3.kind == "duckdb" else "VARCHAR(40)"
    wh3.execute(
        f"CREATE TABLE {{t:leads_enriched}} (lead_id BIGINT PRIMARY KEY, email VARCHAR(200), title {title}, "
        "notes VARCHAR(20))"
    )
    return wh3


def test_a_row_the_target_refuses_is_quarantined_alone(project: E2EProject, narrowed: Warehouse) -> None:
    wh = narrowed
    body = _csv(
        [
            (1, "a@acme.com", "CEO", "1"),
            (2, "b@acme.com", "Chief Revenue Officer of Everything Everywhere", "2"),  # too long for VARCHAR(40)
            (3, "c@acme.com", "CTO", "3"),
            (4, "d@acme.com", "VP", "4"),
            (5, "e@acme.com", "Head of Data Platform Engineering and Analytics", "5"),  # too long too
            (6, "f@acme.com", "Engineer", "6"),
        ]
    )
    first = _run(project, body)
    s = first.syncs[0]
    assert first.exit_code == 3 and s.status == "partial", first.to_dict()
    assert s.rows_quarantined == 2
    assert any("refused 2 paid row(s)" in e for e in s.errors)
    rows = {r[0]: r[1:] for r in wh.target("lead_id, email, title, _sixtyfour_status")}
    assert sorted(rows) == [1, 3, 4, 6]  # the rest of the file merged
    assert [r[0] for r in wh.jobs()] == ["merged"]
    held = wh.query("SELECT key_text, reason, released_at FROM {t:_sixtyfour_sync_quarantine} ORDER BY key_text")
    assert [h[0] for h in held] == ['{"lead_id": 2}', '{"lead_id": 5}'] and all(h[1] and h[2] is None for h in held)
    status = run_cli(project, "status")
    assert status.returncode == 0 and "quarantine" in status.stdout.lower() and '{"lead_id": 2}' in status.stdout
    # Held: the next run asks nothing again (nothing is paid twice), and still says why.
    paid = _paid(project.emulator)
    again = _run(project)
    assert again.exit_code == 3 and _paid(project.emulator) == paid
    assert again.syncs[0].rows_by_reason == {}
    assert any("still held" in e for e in again.syncs[0].errors)
    # The target is fixed: the next run merges the held answers, without asking the API.
    if wh.kind == "duckdb":  # a CHECK constraint cannot be dropped there: the table is copied without it
        wh.execute("ALTER TABLE {t:leads_enriched} RENAME TO narrowed")
        wh.execute("CREATE TABLE {t:leads_enriched} AS SELECT * FROM {t:narrowed}")
    elif wh.kind == "postgres":
        wh.execute("ALTER TABLE {t:leads_enriched} ALTER COLUMN title TYPE VARCHAR(200)")
    else:
        wh.execute("ALTER TABLE {t:leads_enriched} MODIFY title VARCHAR(200)")
    fixed = _run(project)
    assert fixed.exit_code == 0, fixed.to_dict()
    assert fixed.syncs[0].rows_released == 2 and _paid(project.emulator) == paid
    rows = {r[0]: r[1:] for r in wh.target("lead_id, email, title, _sixtyfour_status")}
    assert sorted(rows) == [1, 2, 3, 4, 5, 6]
    assert rows[2][1] == "Chief Revenue Officer of Everything Everywhere"
    assert _run(project).syncs[0].status == "nothing_to_do"
