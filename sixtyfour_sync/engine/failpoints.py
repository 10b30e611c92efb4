"""A testing aid: ``SIXTYFOUR_SYNC_FAILPOINT=<name>`` kills the process with SIGKILL at that point.

The crash tests use it to stop a run between two of its steps, as a power cut or ``kill -9`` would.
"""

from __future__ import annotations

import os
import signal

__all__ = ["FAILPOINT_ENV", "failpoint"]

FAILPOINT_ENV = "SIXTYFOUR_SYNC_FAILPOINT"


def failpoint(name: str) -> None:
    """Kill this process with SIGKILL when ``SIXTYFOUR_SYNC_FAILPOINT`` names this point."""
    wanted = os.environ.get(FAILPOINT_ENV)
    if wanted and wanted == name:
        os.kill(os.getpid(), signal.SIGKILL)
