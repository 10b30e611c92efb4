"""What people and schedulers see: progress while a run works, and the summaries at the end.

On a terminal: rich progress bars (rows extracted, files submitted, jobs finished, rows merged). Otherwise, or
with ``--log-format json``: one log line (or JSON object) per event, so a scheduler can follow and parse it.

The names load on first use: printing a plan does not import the runner the progress bars report on.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from sixtyfour_sync._lazy import lazy_names

if TYPE_CHECKING:
    from sixtyfour_sync.ui.common import when
    from sixtyfour_sync.ui.plans import print_plans
    from sixtyfour_sync.ui.progress import LogReporter, RichReporter, make_reporter
    from sixtyfour_sync.ui.runs import print_run
    from sixtyfour_sync.ui.status import print_status, print_syncs, sync_row

_WHERE = {
    "LogReporter": "sixtyfour_sync.ui.progress",
    "RichReporter": "sixtyfour_sync.ui.progress",
    "make_reporter": "sixtyfour_sync.ui.progress",
    "print_plans": "sixtyfour_sync.ui.plans",
    "print_run": "sixtyfour_sync.ui.runs",
    "print_status": "sixtyfour_sync.ui.status",
    "print_syncs": "sixtyfour_sync.ui.status",
    "sync_row": "sixtyfour_sync.ui.status",
    "when": "sixtyfour_sync.ui.common",
}

__all__ = [
    "LogReporter",
    "RichReporter",
    "make_reporter",
    "print_plans",
    "print_run",
    "print_status",
    "print_syncs",
    "sync_row",
    "when",
]


__getattr__ = lazy_names(__name__, _WHERE)
