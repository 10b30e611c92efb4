"""The SQL behind a run report: every count, sum and histogram is computed in the warehouse.

Pure builders: each takes the adapter only for its dialect (quoting, concatenation, LIMIT) and returns
``(sql, params)`` with ``?`` placeholders. Every identifier goes through :meth:`Adapter.quote`; values are
parameters. Nothing here reads whole tables: the target is scanned once per sync by one ``GROUP BY``, the
ledger is filtered by sync and run and aggregated.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sixtyfour_sync.report.model import CONFIDENCE_BUCKETS
from sixtyfour_sync.warehouse.adapter import Adapter
from sixtyfour_sync.warehouse.types import TableRef

__all__ = [
    "RUN_COLUMNS",
    "TargetColumns",
    "held_jobs_sql",
    "job_states_sql",
    "recent_errors_sql",
    "runs_sql",
    "target_stats_sql",
    "tier_jobs_sql",
]

#: The columns :func:`runs_sql` returns, in order.
RUN_COLUMNS = ("run_id", "status", "syncs", "started_at", "finished_at", "jobs_resumed", "error")


def _marks(n: int) -> str:
    return ", ".join("?" for _ in range(n))


def runs_sql(a: Adapter, runs: TableRef, names: Sequence[str], limit: int) -> tuple[str, list[object]]:
    """The latest ``limit`` runs whose sync list names one of ``names``, newest first.

    ``syncs`` is a comma-separated list: a name is the whole list, its first, last or a middle item
    (``= ?``, ``LIKE 'name,%'``, ``LIKE '%,name'``, ``LIKE '%,name,%'``, with LIKE's ``_`` and ``%`` escaped:
    sync names hold ``_``). Some warehouses compare case-insensitively, so callers still check membership
    exactly on the rows read.
    """
    q = a.quote
    cols = ", ".join(q(c) for c in RUN_COLUMNS)
    s = q("syncs")
    one = f"({s} = ? OR {s} LIKE ? ESCAPE '!' OR {s} LIKE ? ESCAPE '!' OR {s} LIKE ? ESCAPE '!')"
    where = " OR ".join(one for _ in names) or "1 = 0"
    sql = f"SELECT {cols} FROM {a.table_sql(runs)} WHERE {where} ORDER BY {q('started_at')} DESC"
    params: list[object] = []
    for n in names:
        p = _like(n)
        params += [n, f"{p},%", f"%,{p}", f"%,{p},%"]
    return a.limit_sql(sql, limit), params


def _like(text: str) -> str:
    """``text`` as a literal LIKE pattern under ``ESCAPE '!'``."""
    return text.replace("!", "!!").replace("%", "!%").replace("_", "!_")


@dataclass(frozen=True)
class TargetColumns:
    """The stored names of the target columns a report reads (None: the column is not in the table)."""

    status: str
    fields: tuple[tuple[str, str | None, str | None], ...]  # (field, value column, confidence column)
    tier: str | None = None


def target_stats_sql(a: Adapter, target: TableRef, cols: TargetColumns) -> tuple[str, list[object]]:
    """One scan of the target, grouped by the sync's status (and tier) column.

    Per group: rows, then per field the rows with a value (``COUNT(col)``), then per confidence column the
    rows in each of the ten buckets and the sum of the confidences (for the mean).
    """
    q = a.quote
    group = [q(cols.status)] + ([q(cols.tier)] if cols.tier else [])
    select = [*group, "COUNT(*)"]
    for _, value, _ in cols.fields:
        select.append(f"COUNT({q(value)})" if value else "0")
    for _, _, conf in cols.fields:
        if conf is None:
            continue
        c = q(conf)
        for i in range(CONFIDENCE_BUCKETS):
            lo, hi = i * 10, (i + 1) * 10
            if i == 0:
                cond = f"{c} < {hi}"
            elif i == CONFIDENCE_BUCKETS - 1:
                cond = f"{c} >= {lo}"
            else:
                cond = f"{c} >= {lo} AND {c} < {hi}"
            select.append(f"SUM(CASE WHEN {cond} THEN 1 ELSE 0 END)")
        select.append(f"SUM({c})")
    sql = f"SELECT {', '.join(select)} FROM {a.table_sql(target)} GROUP BY {', '.join(group)}"
    return sql, []


def tier_jobs_sql(a: Adapter, jobs: TableRef, name: str) -> tuple[str, list[object]]:
    """One sync's jobs by the tier they asked at: jobs, rows, enriched, failed, charged, estimated."""
    q = a.quote
    select = [
        q("tier"),
        "COUNT(*)",
        f"COALESCE(SUM({q('rows')}), 0)",
        f"COALESCE(SUM({q('rows_enriched')}), 0)",
        f"COALESCE(SUM({q('rows_failed')}), 0)",
        f"COALESCE(SUM({q('charged_cents')}), 0)",
        f"COALESCE(SUM({q('estimated_cost_cents')}), 0)",
    ]
    sql = (
        f"SELECT {', '.join(select)} FROM {a.table_sql(jobs)} WHERE {q('sync_name')} = ? "
        f"GROUP BY {q('tier')} ORDER BY {q('tier')}"
    )
    return sql, [name]


def job_states_sql(a: Adapter, jobs: TableRef, name: str) -> tuple[str, list[object]]:
    """One sync's jobs and rows by state."""
    q = a.quote
    sql = (
        f"SELECT {q('state')}, COUNT(*), COALESCE(SUM({q('rows')}), 0) FROM {a.table_sql(jobs)} "
        f"WHERE {q('sync_name')} = ? GROUP BY {q('state')}"
    )
    return sql, [name]


def held_jobs_sql(
    a: Adapter, jobs: TableRef, name: str, columns: Sequence[str], states: Sequence[str], limit: int
) -> tuple[str, list[object]]:
    """One sync's jobs in ``states`` (those needing a person), most recently updated first."""
    q = a.quote
    sql = (
        f"SELECT {', '.join(q(c) for c in columns)} FROM {a.table_sql(jobs)} "
        f"WHERE {q('sync_name')} = ? AND {q('state')} IN ({_marks(len(states))}) "
        f"ORDER BY {q('updated_at')} DESC, {q('job_id')}"
    )
    return a.limit_sql(sql, limit), [name, *states]


def recent_errors_sql(a: Adapter, jobs: TableRef, name: str, limit: int) -> tuple[str, list[object]]:
    """One sync's latest job errors: when, run, state, task id, message."""
    q = a.quote
    cols = ", ".join(q(c) for c in ("updated_at", "run_id", "state", "task_id", "error"))
    sql = (
        f"SELECT {cols} FROM {a.table_sql(jobs)} WHERE {q('sync_name')} = ? AND {q('error')} IS NOT NULL "
        f"ORDER BY {q('updated_at')} DESC, {q('job_id')}"
    )
    return a.limit_sql(sql, limit), [name]
