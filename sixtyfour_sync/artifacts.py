"""Run artifacts like dbt's: ``sixtyfour_run_results.json`` after every ``run`` and ``plan``.

The file is written in dbt's target directory (``--target-path``, ``DBT_TARGET_PATH``, ``dbt_project.yml``'s
``target-path``, else ``target/``; under the dbt project when there is one, else under the project), beside
dbt's own ``run_results.json``, atomically (a reader sees the old file or the new one). Its ``metadata``
carries a versioned schema id (:data:`SCHEMA_ID`); the layout is documented in ``docs/artifacts.md``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from sixtyfour_sync import __version__
from sixtyfour_sync._redact import redact
from sixtyfour_sync.engine.summary import RunResult, SyncPlan

__all__ = [
    "ARTIFACT_NAME",
    "SCHEMA_ID",
    "artifact_dir",
    "plan_results",
    "read_run_results",
    "run_results",
    "write_run_results",
]

ARTIFACT_NAME = "sixtyfour_run_results.json"
SCHEMA_ID = "https://sixtyfour-sync.dev/schemas/sixtyfour-run-results/v1.json"
#: Timing keys a SyncResult may carry; copied into each result's ``timing`` when present.
_TIMING_KEYS = ("started_at", "completed_at", "duration_seconds")
_JOB_KEYS = (
    "job_id", "file_name", "rows", "state", "task_id", "replay", "estimated_cost_cents", "charged_cents", "error",
)  # fmt: skip


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, tz=timezone.utc).isoformat().replace("+00:00", "Z")


def artifact_dir(
    project_dir: Path | str,
    *,
    dbt_project_dir: Path | str | None = None,
    target_path: Path | str | None = None,
    env: Mapping[str, str] | None = None,
) -> Path:
    """dbt's target directory for this project: where the artifact goes."""
    from sixtyfour_sync.engine.project import read_dbt_project

    dbt_dir = Path(dbt_project_dir or project_dir).resolve()
    return read_dbt_project(dbt_dir).target_dir(target_path, env)


def _fill_rate_summary(fill: Mapping[str, float]) -> float | None:
    return round(sum(fill.values()) / len(fill), 4) if fill else None


def run_results(result: RunResult) -> list[dict[str, Any]]:
    """One entry per sync of a run, from :meth:`RunResult.to_dict`."""
    out = []
    for s in result.to_dict()["syncs"]:
        jobs = s.get("jobs") or []
        entry: dict[str, Any] = {
            "unique_id": f"sync.{s['name']}",
            "name": s["name"],
            "status": s["status"],
            "rows": {
                "selected": s["rows_selected"],
                "by_reason": s["rows_by_reason"],
                "sent": s["rows_sent"],
                "enriched": s["rows_enriched"],
                "failed": s["rows_failed"],
                "not_returned": s["rows_not_returned"],
                "unexpected": s["rows_unexpected"],
                "merged": s["rows_merged"],
                "unsent_at_budget": s.get("rows_unsent", 0),
                "deduplicated": s.get("rows_deduplicated", 0),
                "reused": s.get("rows_reused", 0),
            },
            "saved_cents": s.get("saved_cents", 0.0),
            "reused_saved_cents": s.get("reused_saved_cents", 0.0),
            "jobs": [{k: j.get(k) for k in _JOB_KEYS} for j in jobs],
            "resumed_jobs": s["resumed_jobs"],
            "estimated_cost_cents": s["estimated_cost_cents"],
            "charged_cents": s["charged_cents"],
            "fill_rate": s["fill_rate"],
            "gated_below_confidence": s.get("gated_below_confidence", {}),
            "mean_fill_rate": _fill_rate_summary(s["fill_rate"]),
            "timing": {k: s[k] for k in _TIMING_KEYS if k in s},
            "errors": s["errors"],
            "warnings": s["warnings"],
        }
        out.append(entry)
    return out


def plan_results(plans: Sequence[SyncPlan]) -> list[dict[str, Any]]:
    """One entry per sync of a plan."""
    return [
        {
            "unique_id": f"sync.{p.name}",
            "name": p.name,
            "status": "planned" if p.rows else "nothing_to_do",
            "endpoint": p.endpoint,
            "tier": p.tier,
            "target": p.target,
            "target_exists": p.target_exists,
            "rows": {
                "selected": p.rows,
                "by_reason": dict(p.rows_by_reason),
                "questions": p.questions,
                "deduplicated": p.rows_deduplicated,
                "reused": p.rows_reused,
            },
            "files": p.files,
            "chunk_rows": p.chunk_rows,
            "price_cents_per_row": p.price_cents_per_row,
            "price_source": p.price_source,
            "estimated_cost_cents": p.estimated_cost_cents,
            "budget_cents": p.budget_cents,
            "over_budget": p.over_budget,
            "unfinished_jobs": p.unfinished_jobs,
            "key_problems": p.key_problems,
            "new_columns": list(p.new_columns),
            "preview": None if p.preview is None else p.preview.to_dict(),
            "new_fields": list(p.new_fields),
            "escalation": list(p.escalation),
        }
        for p in plans
    ]


def _document(
    payload: RunResult | Sequence[SyncPlan], *, command: str, started: float, args: Sequence[str]
) -> dict[str, Any]:
    now = time.time()
    if isinstance(payload, RunResult):
        results = run_results(payload)
        summary: dict[str, Any] = {
            "run_id": payload.run_id,
            "status": payload.status,
            "exit_code": payload.exit_code,
            "estimated_cost_cents": payload.estimated_cost_cents,
            "charged_cents": payload.charged_cents,
            "error": payload.error,
        }
        elapsed = payload.duration_seconds or (now - started)
    else:
        results = plan_results(payload)
        known = [r["estimated_cost_cents"] for r in results if r["rows"]["selected"]]
        summary = {
            "run_id": None,
            "status": "planned",
            "exit_code": 0,
            "estimated_cost_cents": sum(known) if all(k is not None for k in known) else None,
            "charged_cents": 0.0,
            "error": None,
        }
        elapsed = now - started
    return {
        "metadata": {
            "schema": SCHEMA_ID,
            "schema_version": 1,
            "sixtyfour_sync_version": __version__,
            "generated_at": _iso(now),
            "invocation_started_at": _iso(started),
            "command": command,
            "args": [redact(a) for a in args],
        },
        **summary,
        "elapsed_time": round(elapsed, 3),
        "results": results,
    }


def write_run_results(
    payload: RunResult | Sequence[SyncPlan],
    *,
    command: str,
    started: float,
    project_dir: Path | str,
    dbt_project_dir: Path | str | None = None,
    target_path: Path | str | None = None,
    args: Sequence[str] = (),
    env: Mapping[str, str] | None = None,
) -> Path:
    """Write ``sixtyfour_run_results.json`` for a run (a RunResult) or a plan (SyncPlans); returns its path."""
    from sixtyfour_sync.dbt import write_atomically

    directory = artifact_dir(project_dir, dbt_project_dir=dbt_project_dir, target_path=target_path, env=env)
    path = directory / ARTIFACT_NAME
    doc = _document(payload, command=command, started=started, args=args)
    write_atomically(path, redact(json.dumps(doc, indent=2, default=str, ensure_ascii=False)) + "\n")
    return path


def read_run_results(path: Path | str) -> dict[str, Any]:
    """Read an artifact back (for orchestrators and tests)."""
    data: dict[str, Any] = json.loads(Path(path).read_text(encoding="utf-8"))
    return data
