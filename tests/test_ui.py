"""What a person reads on a terminal: tables fold long cells on 60 columns, numbers align right, times carry
their zone, cancelled jobs cost $0, and --wide shows task ids whole."""

from __future__ import annotations

import io
from datetime import datetime, timezone

from rich.console import Console

from sixtyfour_sync.engine.summary import RunResult, SyncPlan, SyncResult
from sixtyfour_sync.ui import print_plans, print_run, print_status, when

TASK = "efd98125-4334-400f-8d2e-6b5c6d13d2f4"


def _console(width: int = 60) -> tuple[Console, io.StringIO]:
    out = io.StringIO()
    return Console(file=out, width=width, force_terminal=False, color_system=None, highlight=False), out


def _column(text: str, index: int) -> str:
    """The text of one table column across its folded lines (body rows only)."""
    cells = [line.split("│")[1:-1] for line in text.splitlines() if line.startswith("│")]
    return "".join(row[index].strip() for row in cells if len(row) > index)


def test_a_plan_on_60_columns_folds_names_instead_of_cutting_them() -> None:
    console, out = _console()
    plan = SyncPlan(
        name="enrich_leads_from_the_crm",
        endpoint="people",
        tier="low",
        target="analytics.leads_enriched",
        rows_by_reason={"new": 12_345, "changed": 7},
        files=1,
        price_cents_per_row=2.5,
        price_source="configured",
        estimated_cost_cents=30_880.0,
    )
    print_plans([plan], "text", console=console)
    text = out.getvalue()
    assert all(len(line) <= 60 for line in text.splitlines())
    assert "…" not in text and "..." not in text
    flat = "".join(text.split())
    assert "enrich_leads_from_the_crm" in flat.replace("│", "").replace("┃", "")
    assert "12,352" in text and "$308.80" in text
    assert "new 12,345, changed 7; 1 file(s)" in " ".join(text.split())  # the reasons that did not fit, in words
    assert _column(text, 0) == "enrich_leads_from_the_crm"


def test_status_times_have_a_zone_numbers_align_right_and_cancelled_costs_nothing() -> None:
    console, out = _console(160)
    runs = [
        {
            "run_id": "20261201T091334Z-cdffbf91",
            "status": "success",
            "syncs": "enrich_leads",
            "started_at": datetime(2026, 12, 1, 9, 13, 34, tzinfo=timezone.utc),
            "rows_sent": 1_000,
            "rows_enriched": 9,
            "rows_failed": 0,
            "estimated_cost_cents": 400.0,
            "charged_cents": 400.0,
        }
    ]
    jobs = [
        {"run_id": "r1", "sync_name": "enrich_leads", "file_name": "a.jsonl", "rows": 5, "state": "cancelled",
         "task_id": TASK, "estimated_cost_cents": 20.0, "charged_cents": None, "updated_at": "2026-12-01T09:14:00"},
        {"run_id": "r1", "sync_name": "enrich_leads", "file_name": "b.jsonl", "rows": 5, "state": "submitted",
         "task_id": TASK.replace("e", "f"), "estimated_cost_cents": 20.0, "charged_cents": None},
    ]  # fmt: skip
    print_status(runs, jobs, "text", console=console)
    text = out.getvalue()
    assert "2026-12-01 09:13:34 UTC" in text and "2026-12-01 09:14:00 UTC" in text
    cancelled = next(line for line in text.splitlines() if "cancelled" in line)
    assert "$0.00" in cancelled
    submitted = next(line for line in text.splitlines() if "submitted" in line)
    assert "unknown" in submitted  # not charged yet: truly unknown
    assert TASK not in text and "--wide" in text
    run_line = next(line for line in text.splitlines() if "cdffbf91" in line)
    cells = [c for c in run_line.split("│") if c.strip()]
    sent, enriched = cells[4], cells[5]
    assert sent.endswith("1,000 ") and enriched.endswith("9 ") and enriched.startswith("  ")  # right-aligned

    console, out = _console(200)
    print_status(runs, jobs, "text", wide=True, console=console)
    assert TASK in out.getvalue()


def test_status_on_60_columns_folds_task_ids_with_wide() -> None:
    console, out = _console()
    jobs = [{"run_id": "r1", "sync_name": "enrich_leads", "file_name": "a.jsonl", "rows": 5, "state": "merged",
             "task_id": TASK, "charged_cents": 20.0}]  # fmt: skip
    print_status([], jobs, "text", wide=True, console=console)
    text = out.getvalue()
    assert all(len(line) <= 60 for line in text.splitlines())
    assert "…" not in text
    assert _column(text, 5) == TASK


def test_run_summary_on_60_columns() -> None:
    console, out = _console()
    result = RunResult("20261201T091334Z-cdffbf91", [SyncResult("enrich_companies_by_domain", rows_sent=3)])
    print_run(result, "text", console=console)
    text = out.getvalue()
    assert all(len(line) <= 60 for line in text.splitlines())
    assert "…" not in text


def test_when_formats_with_a_zone() -> None:
    assert when(None) == "-"
    assert when(datetime(2026, 1, 2, 3, 4, 5)) == "2026-01-02 03:04:05 UTC"
    assert when("2026-01-02T03:04:05+01:00") == "2026-01-02 02:04:05 UTC"
    assert when("not a time") == "not a time"


def test_a_held_job_without_an_error_says_what_to_do_not_none() -> None:
    from sixtyfour_sync.engine.summary import JobOutcome

    console, out = _console(200)
    lost = JobOutcome("j1", "enrich_leads_0001.jsonl", 10, "lost", task_id=TASK)
    unreadable = JobOutcome("j2", "enrich_leads_0002.jsonl", 10, "result_unreadable", task_id=TASK, error="bad [gz]")
    result = RunResult("20261201T091334Z-cdffbf91", [SyncResult("enrich_leads", jobs=[lost, unreadable])])
    print_run(result, "text", console=console)
    text = out.getvalue()
    assert "None" not in text
    assert f"needs attention (lost, task {TASK}): the API does not know this task" in text
    assert "run --retry-lost" in text
    assert "needs attention (result_unreadable, task " in text and ": bad [gz]" in text
