"""sixtyfour-sync: enrich warehouse rows with Sixtyfour's Bulk Intelligence API, safely and resumably.

The Python API (for orchestrators) mirrors the commands::

    from sixtyfour_sync import plan, run
    result = run("path/to/project", select=["tag:daily"], max_cost_cents=50_000)
"""

from __future__ import annotations

import os
import sys
from typing import Any

from sixtyfour_sync._redact import install_log_redaction
from sixtyfour_sync._version import __version__

if "pyarrow" not in sys.modules:
    # Arrow's allocator (mimalloc) keeps freed pages for a while before giving them back; a sync frees a result
    # file's worth of memory every few hundred milliseconds, so waiting only raises the peak (about 100 MB at
    # a million rows). Read when pyarrow loads; a value the environment sets wins.
    os.environ.setdefault("MIMALLOC_PURGE_DELAY", "0")

install_log_redaction()

_API = ("cancel", "dbt_sources", "plan", "run", "status", "validate")

__all__ = ["__version__", "cancel", "dbt_sources", "plan", "run", "status", "validate"]


def __getattr__(name: str) -> Any:
    # The engine (pyarrow, duckdb...) loads on first use, so `sixtyfour-sync --help` stays fast.
    if name in _API:
        from sixtyfour_sync import commands as api

        return getattr(api, name)
    raise AttributeError(f"module 'sixtyfour_sync' has no attribute {name!r}")
