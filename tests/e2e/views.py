"""Every view of a run, read the way its readers read it: the summary (human and JSON), the run artifact,
``status``, the report and the Dagster metadata; and what the emulator billed."""

from __future__ import annotations

import io
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from rich.console import Console

import sixtyfour_sync
from sixtyfour_sync.artifacts import run_results
from sixtyfour_sync.emulator import Emulator
from sixtyfour_sync.engine.project import Project
from sixtyfour_sync.engine.summary import RunResult
from sixtyfour_sync.report.collect import collect_report
from sixtyfour_sync.ui import print_run
from tests.e2e.conftest import E2EProject

#: The numbers every view must agree on.
NUMBERS = (
    "rows_sent",
    "rows_enriched",
    "rows_failed",
    "rows_deduplicated",
    "estimated_cost_cents",
    "charged_cents",
    "saved_cents",
    "rows_reused",
    "reused_saved_cents",
)


def billed(emu: Emulator) -> float:
    """What the emulator charged, every job."""
    return float(sum(j.charge_cents or 0 for j in emu.jobs.values()))


def run(project: E2EProject, **kw: Any) -> RunResult:
    """A run through the Python API, as an orchestrator calls it."""
    return sixtyfour_sync.run(project.dir, env=project.env, **kw)


def _round(d: Mapping[str, Any]) -> dict[str, Any]:
    return {k: round(float(v), 4) if isinstance(v, float) else v for k, v in d.items()}


def from_summary(result: RunResult) -> dict[str, Any]:
    """The JSON summary's totals."""
    d = result.to_dict()
    return _round({k: sum(s[k] or 0 for s in d["syncs"]) for k in NUMBERS})


def from_artifact(result: RunResult) -> dict[str, Any]:
    """The run artifact's totals (``sixtyfour_run_results.json``'s ``results``)."""
    entries = run_results(result)
    names = {
        "rows_sent": "sent",
        "rows_enriched": "enriched",
        "rows_failed": "failed",
        "rows_deduplicated": "deduplicated",
        "rows_reused": "reused",
    }
    out: dict[str, Any] = {k: sum(e["rows"][v] for e in entries) for k, v in names.items()}
    out["saved_cents"] = sum(e["saved_cents"] for e in entries)
    out["reused_saved_cents"] = sum(e["reused_saved_cents"] or 0 for e in entries)
    out["estimated_cost_cents"] = sum(e["estimated_cost_cents"] for e in entries)
    out["charged_cents"] = sum(e["charged_cents"] for e in entries)
    return _round(out)


def from_dagster(result: RunResult) -> dict[str, Any]:
    """The Dagster materialisation metadata's totals (dollars back to cents)."""
    from sixtyfour_sync.dagster import sync_metadata

    meta = [sync_metadata(result, s) for s in result.syncs]
    counted = ("rows_sent", "rows_enriched", "rows_failed", "rows_deduplicated", "rows_reused")
    out: dict[str, Any] = {k: sum(m[k] for m in meta) for k in counted}
    out["saved_cents"] = round(sum(m["saved_usd"] for m in meta) * 100, 2)
    out["reused_saved_cents"] = round(sum(m["reused_saved_usd"] for m in meta) * 100, 2)
    out["estimated_cost_cents"] = round(sum(m["estimated_cost_usd"] for m in meta) * 100, 2)
    out["charged_cents"] = round(sum(m["charged_usd"] for m in meta) * 100, 2)
    return _round(out)


def from_status(project: E2EProject, run_id: str, target: str | None = None) -> dict[str, Any]:
    """``status --run``'s numbers."""
    report = sixtyfour_sync.status(project.dir, run_id=run_id, env=project.env, target=target)
    row = report.runs[0]
    return _round({k: row[k] for k in NUMBERS} | {"charged_later_cents": row["charged_later_cents"]})


def from_report(project: E2EProject, run_id: str, target: str | None = None) -> dict[str, Any]:
    """The report's row for the run."""
    with Project.load(project.dir, env=project.env, target=target) as p:
        rep = collect_report(p, p.select(None))
    (row,) = [r for r in rep.runs if r.run_id == run_id]
    return _round(
        {
            "rows_sent": row.rows_sent,
            "rows_enriched": row.rows_enriched,
            "rows_failed": row.rows_failed,
            "rows_deduplicated": row.rows_deduplicated,
            "saved_cents": row.saved_cents,
            "rows_reused": row.rows_reused,
            "reused_saved_cents": row.reused_saved_cents,
            "estimated_cost_cents": row.estimated_cents,
            "charged_cents": row.charged_cents,
            "charged_later_cents": row.charged_later_cents,
        }
    )


def human_summary(result: RunResult) -> str:
    """The summary a run ends with, as a person reads it."""
    buf = io.StringIO()
    print_run(result, "text", Console(file=buf, width=200, color_system=None))
    return buf.getvalue()


def assert_views_agree(project: E2EProject, result: RunResult, target: str | None = None) -> dict[str, Any]:
    """Summary, JSON summary, artifact, Dagster metadata, status and report give the same numbers; returns them."""
    assert result.recorded, "a run that did something is in the ledger"
    summary = from_summary(result)
    views = {
        "artifact": from_artifact(result),
        "dagster": from_dagster(result),
        "status": {k: v for k, v in from_status(project, result.run_id, target).items() if k in NUMBERS},
        "report": {k: v for k, v in from_report(project, result.run_id, target).items() if k in NUMBERS},
    }
    for name, numbers in views.items():
        assert numbers == summary, f"{name} says {numbers}, the summary {summary}"
    text = human_summary(result)
    assert f"${summary['charged_cents'] / 100:,.2f}" in text
    return summary


def artifact_file(project: E2EProject) -> dict[str, Any]:
    """The artifact the CLI wrote."""
    return dict(json.loads((Path(project.dir) / "target" / "sixtyfour_run_results.json").read_text()))
