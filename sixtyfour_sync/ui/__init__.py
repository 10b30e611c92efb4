"""What people and schedulers see: progress while a run works, and the summaries at the end.

On a terminal: rich progress bars (rows extracted, files submitted, jobs finished, rows merged). Otherwise, or
with ``--log-format json``: one log line (or JSON object) per event, so a scheduler can follow and parse it.
"""

from __future__ import annotations

from sixtyfour_sync.ui.common import when
from sixtyfour_sync.ui.plans import print_plans
from sixtyfour_sync.ui.progress import LogReporter, RichReporter, make_reporter
from sixtyfour_sync.ui.runs import print_run
from sixtyfour_sync.ui.status import print_status, print_syncs, sync_row

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
